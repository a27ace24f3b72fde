#!/usr/bin/perl
# Runs the Kanka stand-in: a local OAuth server and API that answer like
# Kanka, for the test suite and the demo.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin";

use Getopt::Long qw(GetOptions);
use IO::Handle;
use JSON::PP;
use Kanka::Standin;

my %opt = (listen => '127.0.0.1:8900');

GetOptions(\%opt,
    'listen=s', 'base-url=s', 'tls-cert=s', 'tls-key=s', 'log=s',
    'settings=s', 'quiet', 'help',
) or usage(2);

usage(0) if $opt{help};

if (($opt{'tls-cert'} // '') ne '' xor ($opt{'tls-key'} // '') ne '') {
    die "--tls-cert and --tls-key go together\n";
}

if ($opt{listen} !~ /\A(?:127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+\z/) {
    die "refusing to listen on \"$opt{listen}\": loopback addresses only\n";
}

my $log_fh;

if (defined $opt{log}) {
    open $log_fh, '>>', $opt{log} or die "cannot open $opt{log}: $!\n";
} elsif (!$opt{quiet}) {
    $log_fh = \*STDERR;
}

$log_fh->autoflush(1) if $log_fh;

my $settings;

if (defined $opt{settings}) {
    $settings = eval { JSON::PP->new->decode($opt{settings}) };
    die "--settings must be a JSON object\n" unless ref $settings eq 'HASH';
}

my $server = Kanka::Standin->new(
    listen   => $opt{listen},
    base_url => $opt{'base-url'},
    tls_cert => $opt{'tls-cert'},
    tls_key  => $opt{'tls-key'},
    log_fh   => $log_fh,
    settings => $settings,
);

$server->listen();

$SIG{TERM} = $SIG{INT} = sub { $server->stop() };

STDOUT->autoflush(1);
print "ready\n";

# whoever waited for "ready" may stop reading
open STDOUT, '>', '/dev/null';

print {$log_fh} 'listening on ' . $server->base_url . "\n" if $log_fh;

$server->run();

exit 0;


sub usage {
    my ($code) = @_;

    print <<'EOF';
usage: kanka-standin.pl [--listen 127.0.0.1:PORT] [--base-url URL]
                        [--tls-cert FILE --tls-key FILE] [--log FILE]
                        [--settings JSON] [--quiet]

Answers like Kanka's OAuth server and API: /oauth/authorize, /oauth/token,
/api/1.0/profile and /api/1.0/campaigns, with a control API under /_control.
Prints "ready" once it listens; stops on SIGTERM or SIGINT.
EOF

    exit $code;
}
