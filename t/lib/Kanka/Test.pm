# Test harness: runs nginx and the Kanka stand-in in a temporary prefix,
# talks HTTP to them and checks nginx's error log when a test stops.

package Kanka::Test;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp ();
use IO::Select;
use IO::Socket::IP;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More ();
use Time::HiRes qw(time sleep);

use Kanka::Test::Browser;
use Kanka::Test::HTTP;

my $LIB = abs_path(dirname(__FILE__) . '/..');
my $ROOT = abs_path("$LIB/../..");
my $STANDIN = "$LIB/kanka-standin.pl";

# process groups started here, by pid, with the pid of the process that
# started them: only that process may clean them up
my %LIVE;


sub import {
    my $caller = caller;

    # a test file gets Test::More's functions along with the harness
    eval "package $caller; Test::More->import(); 1" or die $@;
}


sub new {
    my ($class, %o) = @_;

    my $keep = $ENV{KANKA_TEST_KEEP};
    my $tmp = File::Temp->newdir('kanka-test-XXXXXX', TMPDIR => 1,
                                 CLEANUP => $keep ? 0 : 1);
    my $dir = $tmp->dirname;

    # workers drop privileges to an unprivileged user when run as root
    chmod 0755, $dir;

    my $self = bless {
        tmp       => $tmp,
        dir       => $dir,
        nginx     => $ENV{KANKA_NGINX} // '/usr/sbin/nginx',
        module    => $ENV{KANKA_MODULE}
                     // "$ROOT/build/ngx_http_kanka_oauth_module.so",
        no_module => $o{no_module},
        prelude   => $o{prelude} // 1,
        log_level => $o{log_level} // $ENV{KANKA_TEST_LOG_LEVEL} // 'debug',
        timeout   => $o{timeout} // 10,
        ports     => {},
        taken     => {},
        allow     => [],
        kankas    => [],
        creator   => $$,
    }, $class;

    unless ($self->{no_module}) {
        $self->{module} = abs_path($self->{module}) // $self->{module};
        die "the module is not built: $self->{module} does not exist; "
            . "run make, or point KANKA_MODULE at it\n"
            unless -f $self->{module};
    }

    die "no nginx binary at $self->{nginx}; set KANKA_NGINX\n"
        unless -x $self->{nginx};

    Test::More::diag("keeping $dir") if $keep;

    # an interrupted run still ends in END, which stops what was started
    my %signo = (HUP => 1, INT => 2, PIPE => 13, TERM => 15);

    for my $sig (keys %signo) {
        my $h = $SIG{$sig};
        next if defined $h && $h ne '' && $h ne 'DEFAULT';
        $SIG{$sig} = sub { exit 128 + $signo{$sig} };
    }

    return $self;
}


sub dir { $_[0]{dir} }
sub testdir { $_[0]{dir} }
sub module { $_[0]{module} }
sub conf { $_[0]{conf} }
sub master_pid { $_[0]{pid} }
sub kanka { $_[0]{kankas}[0] }
sub root { $ROOT }


# ports

sub port {
    my ($self, $n) = @_;

    $n //= 0;

    return $self->{ports}{$n} //= $self->free_port();
}


sub free_port {
    my ($self) = @_;

    for (1 .. 100) {
        my $s = IO::Socket::IP->new(
            LocalHost => '127.0.0.1',
            LocalPort => 0,
            Listen    => 1,
        ) or die "cannot bind a port on 127.0.0.1: $@\n";

        my $port = $s->sockport;
        close $s;

        next if $self->{taken}{$port}++;

        return $port;
    }

    die "no free port found\n";
}


# the stand-in Kanka

sub start_kanka {
    my ($self, %o) = @_;

    my $tls = delete $o{tls};
    my $given = delete $o{cert};
    my $settings = { %{ delete $o{settings} || {} }, %o };

    my $port = $self->free_port();
    my $url = ($tls ? 'https' : 'http') . "://127.0.0.1:$port";
    my $log = "$self->{dir}/kanka-$port.log";

    my @cmd = ($^X, $STANDIN, '--listen', "127.0.0.1:$port",
               '--base-url', $url, '--log', $log);
    my $ca;

    if ($tls) {
        my $cert = $given // $self->make_cert("kanka-$port");
        push @cmd, '--tls-cert', $cert->{cert}, '--tls-key', $cert->{key};
        $ca = $cert->{ca};
    }

    pipe my $rd, my $wr or die "pipe: $!\n";

    my $pid = fork // die "fork: $!\n";

    if (!$pid) {
        close $rd;
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $wr;
        open STDERR, '>>', $log;
        exec @cmd or POSIX::_exit(127);
    }

    close $wr;
    POSIX::setpgid($pid, $pid);
    $LIVE{$pid} = $$;

    my $line = read_line($rd, time + 10);
    close $rd;

    unless (defined $line && $line eq "ready\n") {
        stop_group($pid, 0);
        die "the Kanka stand-in did not start:\n" . (slurp($log) // '');
    }

    my $k = Kanka::Test::Standin->new(
        pid     => $pid,
        port    => $port,
        url     => $url,
        ca      => $ca,
        log     => $log,
        timeout => $self->{timeout},
    );

    $k->set(%$settings) if %$settings;

    push @{ $self->{kankas} }, $k;

    return $k;
}


# a certificate signed by a per-test CA, for 127.0.0.1 and localhost and
# valid for two days unless told otherwise: san (the subjectAltName value,
# "" for none), cn, days, ca (the name of another CA, made on first use),
# not_before and not_after (epoch seconds, for certificates not yet or no
# longer valid)
sub make_cert {
    my ($self, $name, %o) = @_;

    my $d = $self->{dir};
    my $ca = $o{ca} // 'ca';
    my $san = $o{san} // 'IP:127.0.0.1,DNS:localhost';
    my $cn = $o{cn} // '127.0.0.1';

    # loaded once here rather than in every client forked by parallel()
    require IO::Socket::SSL;

    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes');

    unless (-f "$d/$ca.crt") {
        my $subj = $ca eq 'ca' ? 'Kanka Test CA' : "Kanka Test CA $ca";

        $self->openssl('req', '-x509', @ec, '-keyout', "$d/$ca.key",
                       '-out', "$d/$ca.crt", '-days', '2',
                       '-subj', "/CN=$subj",
                       '-addext', 'basicConstraints=critical,CA:TRUE',
                       '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    }

    spew("$d/$name.ext", ($san ne '' ? "subjectAltName=$san\n" : '')
                         . "basicConstraints=CA:FALSE\n"
                         . "keyUsage=digitalSignature\n"
                         . "extendedKeyUsage=serverAuth\n");

    $self->openssl('req', '-new', @ec, '-keyout', "$d/$name.key",
                   '-out', "$d/$name.csr", '-subj', "/CN=$cn");

    if (defined $o{not_before} || defined $o{not_after}) {
        $self->sign_dated("$d/$name", $ca, $o{not_before} // time - 86400,
                          $o{not_after} // time + 86400);

    } else {
        $self->openssl('x509', '-req', '-in', "$d/$name.csr",
                       '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key",
                       '-CAcreateserial', '-out', "$d/$name.crt",
                       '-days', $o{days} // 2, '-extfile', "$d/$name.ext");
    }

    return { cert => "$d/$name.crt", key => "$d/$name.key",
             ca => "$d/$ca.crt" };
}


# OpenSSL 3.0's "x509 -req" counts days from now; "ca" takes any dates
sub sign_dated {
    my ($self, $base, $ca, $from, $to) = @_;

    my $d = $self->{dir};
    my $db = "$d/$ca-db";
    my $date = sub { POSIX::strftime('%Y%m%d%H%M%SZ', gmtime shift) };

    unless (-d $db) {
        mkdir $db or die "cannot create $db: $!\n";
        spew("$db/index", '');
        spew("$db/serial", sprintf "%08X%08X\n", $$, int rand 0xffffffff);
        spew("$db/ca.conf", <<"CONF");
[ ca ]
default_ca = test_ca

[ test_ca ]
database = $db/index
new_certs_dir = $db
serial = $db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none

[ any ]
commonName = supplied
CONF
    }

    $self->openssl('ca', '-batch', '-notext', '-config', "$db/ca.conf",
                   '-cert', "$d/$ca.crt", '-keyfile', "$d/$ca.key",
                   '-in', "$base.csr", '-out', "$base.crt",
                   '-startdate', $date->($from), '-enddate', $date->($to),
                   '-extfile', "$base.ext");
}


sub ca_cert {
    my ($self, $ca) = @_;

    my $file = "$self->{dir}/" . ($ca // 'ca') . '.crt';

    return -f $file ? $file : undef;
}


sub openssl {
    my ($self, @args) = @_;

    my ($code, $out) = $self->run_command(
        [$ENV{KANKA_OPENSSL} // 'openssl', @args], 30);

    die "openssl @args[0, 1] failed:\n$out" if $code;
}


# configuration

sub expand {
    my ($self, $text, $vars) = @_;

    $text =~ s/%%PORT(\d+)%%/$self->port($1)/ge;
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;
    $text =~ s/%%MODULE%%/$self->{module}/g;

    if ($text =~ /%%KANKA(?:_PORT|_CA)?%%/) {
        my $k = $self->kanka
            or die "the configuration uses %%KANKA%%: start_kanka() first\n";
        $text =~ s/%%KANKA%%/$k->url/ge;
        $text =~ s/%%KANKA_PORT%%/$k->port/ge;
        $text =~ s{%%KANKA_CA%%}{$k->ca // ''}ge;
    }

    for my $k (keys %{ $vars || {} }) {
        $text =~ s/%%\Q$k\E%%/$vars->{$k}/g;
    }

    die "unknown placeholder $1 in the configuration\n"
        if $text =~ /(%%[A-Z][A-Z0-9_]*%%)/;

    return $text;
}


sub http_prelude {
    my ($self, $text) = @_;

    my $d = $self->{dir};
    my @lines;

    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if defined $text && $text =~ /^\s*${kind}_temp_path\b/m;
        push @lines, "${kind}_temp_path $d/${kind}_temp;";
    }

    push @lines, "access_log $d/access.log;"
        unless defined $text && $text =~ /^\s*access_log\b/m;

    return join '', map { "    $_\n" } @lines;
}


sub frame_conf {
    my ($self, $text, %o) = @_;

    my $d = $self->{dir};
    my @head;

    push @head, "load_module $self->{module};"
        unless $self->{no_module} || $text =~ /^\s*load_module\b/m;
    push @head, 'pid ' . ($o{pid} // "$d/nginx.pid") . ';'
        unless $text =~ /^\s*pid\s/m;
    push @head, 'error_log ' . ($o{error_log} // "$d/error.log")
                . " $self->{log_level};";
    push @head, 'worker_processes 1;'
        unless $text =~ /^\s*worker_processes\s/m;

    if ($self->{prelude}) {
        my $prelude = $self->http_prelude($text);
        $text =~ s/^(\s*http\s*\{)/$1\n$prelude/m;
    }

    return join("\n", @head) . "\n\n" . $text;
}


sub write_conf {
    my ($self, $text, %o) = @_;

    my $conf = $self->frame_conf($self->expand($text, $o{vars}));

    spew("$self->{dir}/nginx.conf", $conf);
    $self->{conf} = $conf;

    return $conf;
}


sub nginx_t {
    my ($self, $text, %o) = @_;

    my $n = ++$self->{nginx_t};
    my $d = $self->{dir};
    my $file = "$d/nginx-t-$n.conf";
    my $log = "$d/nginx-t-$n.log";

    # nginx -t creates the pid file, which must not be the running one's
    spew($file, $self->frame_conf($self->expand($text, $o{vars}),
                                  error_log => $log,
                                  pid => "$d/nginx-t-$n.pid"));

    # a module built with a sanitizer needs its runtime here too
    local $ENV{LD_PRELOAD} = $ENV{KANKA_PRELOAD}
        if defined $ENV{KANKA_PRELOAD} && $ENV{KANKA_PRELOAD} ne '';

    my ($code, $out) = $self->run_command(
        [$self->{nginx}, '-t', '-p', "$d/", '-c', $file, '-e', $log], 30);

    if ($out !~ /\S/) {
        $out = slurp($log) // '';
    }

    return ($code, $out);
}


# nginx

sub run {
    my ($self) = @_;

    die "write_conf() first\n" unless defined $self->{conf};
    die "nginx is already running\n" if $self->{pid};

    my $d = $self->{dir};
    my @cmd = ($self->{nginx}, '-p', "$d/", '-c', "$d/nginx.conf",
               '-e', "$d/error.log", '-g', 'daemon off;');

    my $pid = fork // die "fork: $!\n";

    if (!$pid) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/nginx.stderr";
        open STDERR, '>&', \*STDOUT;

        # lets a sanitizer runtime be preloaded into nginx alone
        $ENV{LD_PRELOAD} = $ENV{KANKA_PRELOAD}
            if defined $ENV{KANKA_PRELOAD} && $ENV{KANKA_PRELOAD} ne '';

        exec @cmd or POSIX::_exit(127);
    }

    POSIX::setpgid($pid, $pid);
    $LIVE{$pid} = $$;
    $self->{pid} = $pid;

    my $deadline = time + 10;

    $self->wait_listening($deadline);
    $self->wait_for_workers(deadline => $deadline);

    return $self;
}


sub listen_addrs {
    my ($self) = @_;

    my @addrs;

    while (($self->{conf} // '') =~ /^\s*listen\s+([^\s;]+)/mg) {
        my $a = $1;
        my ($host, $port);

        next if $a =~ /\Aunix:/;

        if ($a =~ /\A\[([^\]]+)\]:(\d+)\z/) {
            ($host, $port) = ($1, $2);
        } elsif ($a =~ /\A([^:]+):(\d+)\z/) {
            ($host, $port) = ($1, $2);
        } elsif ($a =~ /\A\d+\z/) {
            ($host, $port) = ('127.0.0.1', $a);
        } else {
            ($host, $port) = ($a, 80);
        }

        $host = '127.0.0.1' if $host eq '*' || $host eq '0.0.0.0'
                               || $host eq 'localhost';
        $host = '::1' if $host eq '::';

        push @addrs, [$host, $port];
    }

    return @addrs;
}


sub wait_listening {
    my ($self, $deadline) = @_;

    my @todo = $self->listen_addrs;

    while (@todo) {
        $self->check_alive();

        @todo = grep {
            my $s = IO::Socket::IP->new(PeerHost => $_->[0],
                                        PeerPort => $_->[1], Timeout => 0.5);
            close $s if $s;
            !$s;
        } @todo;

        last unless @todo;

        if (time > $deadline) {
            my $list = join ', ', map { "$_->[0]:$_->[1]" } @todo;
            die "nginx does not accept connections on $list\n"
                . $self->log_tail();
        }

        sleep 0.05;
    }
}


sub check_alive {
    my ($self) = @_;

    my $pid = $self->{pid} or die "nginx is not running\n";

    return if waitpid($pid, WNOHANG) != $pid;

    my $status = $?;
    delete $self->{pid};
    delete $LIVE{$pid};
    stop_group($pid, 0);

    die "nginx exited (status $status):\n" . $self->log_tail();
}


sub log_tail {
    my ($self) = @_;

    my $d = $self->{dir};
    my $out = '';

    for my $f ("$d/nginx.stderr", "$d/error.log") {
        my $text = slurp($f) // next;
        my @l = grep { !/\[debug\]/ } split /\n/, $text;
        splice @l, 0, @l - 30 if @l > 30;
        $out .= "--- $f\n" . join("\n", @l) . "\n" if @l;
    }

    return $out;
}


sub expected_workers {
    my ($self) = @_;

    my $conf = $self->{conf} // '';

    return 0 if $conf =~ /^\s*master_process\s+off\b/m;

    my ($n) = $conf =~ /^\s*worker_processes\s+(\w+)/m;

    return $n if defined $n && $n =~ /\A\d+\z/;

    if (defined $n && $n eq 'auto') {
        my $cpus = () = (slurp('/proc/cpuinfo') // '') =~ /^processor\s/mg;
        return $cpus || 1;
    }

    return 1;
}


sub worker_pids {
    my ($self, %o) = @_;

    my $master = $self->{pid} or return;
    my @pids;

    opendir my $dh, '/proc' or return;

    for my $p (grep { /\A\d+\z/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat") // next;
        my ($ppid) = $stat =~ /\A\d+ \(.*\) \S+ (\d+)/s or next;
        next unless $ppid == $master;

        my $cmd = slurp("/proc/$p/cmdline") // next;
        $cmd =~ tr/\0/ /;

        next unless $cmd =~ /worker process/;
        next if !$o{all} && $cmd =~ /shutting down/;

        push @pids, $p + 0;
    }

    closedir $dh;

    return sort { $a <=> $b } @pids;
}


# waits until the expected number of workers runs, none of them in exclude
sub wait_for_workers {
    my ($self, %o) = @_;

    my $want = $o{count} // $self->expected_workers;
    my %skip = map { $_ => 1 } @{ $o{exclude} || [] };
    my $deadline = $o{deadline} // time + ($o{timeout} // 10);

    while (1) {
        $self->check_alive();

        my @w = grep { !$skip{$_} } $self->worker_pids;
        return @w if @w >= $want;

        die "nginx did not start $want worker(s) in time\n"
            . $self->log_tail() if time > $deadline;

        sleep 0.05;
    }
}


sub reload {
    my ($self, %o) = @_;

    my $pid = $self->{pid} or die "nginx is not running\n";
    my %old = map { $_ => 1 } $self->worker_pids(all => 1);
    my $log = "$self->{dir}/error.log";
    my $pos = -s $log // 0;
    my $deadline = time + ($o{timeout} // 10);

    die "reload needs master_process on\n" unless $self->expected_workers;

    kill 'HUP', $pid;

    while (1) {
        $self->check_alive();

        my @new = grep { !$old{$_} } $self->worker_pids;
        last if @new >= $self->expected_workers;

        my ($emerg) = $self->log_since($pos) =~ /^(.*\[emerg\].*)$/m;

        if (defined $emerg) {
            return 0 if $o{allow_failure};
            die "nginx refused the new configuration: $emerg\n";
        }

        die "nginx did not start new workers after a reload\n"
            . $self->log_tail() if time > $deadline;

        sleep 0.05;
    }

    # old workers that are still idle go as soon as they see the signal
    while (grep { $old{$_} } $self->worker_pids) {
        die "old workers do not stop after a reload\n" . $self->log_tail()
            if time > $deadline;
        sleep 0.02;
    }

    $self->wait_listening($deadline);

    if ($o{wait_old}) {
        while (grep { kill 0, $_ } keys %old) {
            die "old workers still run after a reload\n" if time > $deadline;
            sleep 0.05;
        }
    }

    return 1;
}


sub stop {
    my ($self) = @_;

    $self->stop_nginx();
    $_->stop() for grep { defined } @{ $self->{kankas} };
}


# stops nginx alone and checks its logs; run() may start it again
sub stop_nginx {
    my ($self) = @_;

    my $pid = delete $self->{pid} or return;

    kill 'QUIT', $pid;

    my $graceful = wait_pid($pid, $self->{stop_timeout} // 10);

    # whatever is left of the group, a stuck worker included
    kill 'KILL', -$pid;
    wait_pid($pid, 5) unless $graceful;
    delete $LIVE{$pid};

    Test::More::ok($graceful, 'nginx exits on QUIT');
    $self->check_logs();
}


sub allow_log {
    my ($self, @re) = @_;

    push @{ $self->{allow} }, @re;
}


# lines of the logs, since the last check, that fail a test unless allowed
sub log_problems {
    my ($self) = @_;

    my $log = $self->error_log();
    my $err = slurp("$self->{dir}/nginx.stderr") // '';
    my ($lpos, $epos) = @{ $self->{checked} || [0, 0] };

    my @all = split /\n/, substr $log, $lpos;
    my @lines = grep {
        my $l = $_;
        !grep { $l =~ $_ } @{ $self->{allow} };
    } @all;

    # nginx points its stderr at the error log once it has read its
    # configuration, so a sanitizer in a worker reports there
    return {
        alerts    => [ grep { /\[(?:alert|crit|emerg)\]/ } @lines ],
        signals   => [ grep { /exited on signal/ } @lines ],
        sanitizer => [ grep {
            /ERROR: (?:Address|Leak|Memory|Thread)Sanitizer|runtime error:/
        } @all, split /\n/, substr $err, $epos ],
        end       => [length $log, length $err],
    };
}


sub check_logs {
    my ($self) = @_;

    my $p = $self->log_problems();

    $self->{checked} = $p->{end};

    for ([alerts => 'no alert, crit or emerg in the error log'],
         [signals => 'no worker exited on a signal'],
         [sanitizer => 'no sanitizer report'])
    {
        my ($kind, $name) = @$_;
        my $found = $p->{$kind};

        Test::More::ok(!@$found, $name)
            or Test::More::diag(join "\n", @$found[0 .. min(9, $#$found)]);
    }
}


sub error_log {
    my ($self) = @_;

    return slurp("$self->{dir}/error.log") // '';
}


sub log_since {
    my ($self, $pos) = @_;

    my $text = $self->error_log();

    return length $text > $pos ? substr $text, $pos : '';
}


# waits for a line of the error log to match; returns it, or undef
sub wait_for_log {
    my ($self, $re, %o) = @_;

    my $deadline = time + ($o{timeout} // 5);
    my $from = $o{from} // 0;

    while (1) {
        my $text = $self->log_since($from);

        for my $l (split /\n/, $text) {
            return $l if $l =~ $re;
        }

        return if time > $deadline;
        sleep 0.05;
    }
}


# HTTP

sub http {
    my ($self, %o) = @_;

    if (defined $o{path} && $o{path} =~ m{\Ahttps?://}i) {
        $o{url} = delete $o{path};
    }

    $o{port} //= $self->port(0) unless defined $o{url};
    $o{timeout} //= $self->{timeout};

    return Kanka::Test::HTTP::request(%o);
}


sub http_get {
    my ($self, $path, %o) = @_;

    return $self->http(%o, method => 'GET', path => $path);
}


sub http_raw {
    my ($self, $bytes, %o) = @_;

    return $self->http(%o, raw => $bytes);
}


sub browser {
    my ($self, %o) = @_;

    return Kanka::Test::Browser->new(
        port    => $self->port(0),
        timeout => $self->{timeout},
        %o,
    );
}


# runs $n copies of $code at once, each in its own process; each returns a
# plain value (no objects); closures must not call Test::More themselves
sub parallel {
    my ($self, $n, $code, %o) = @_;

    my $timeout = $o{timeout} // 60;
    my $json = JSON::PP->new->utf8->allow_nonref->allow_unknown
                   ->allow_blessed;

    pipe my $go_r, my $go_w or die "pipe: $!\n";

    my %kids;

    for my $i (0 .. $n - 1) {
        pipe my $r, my $w or die "pipe: $!\n";

        my $pid = fork // die "fork: $!\n";

        if (!$pid) {
            close $r;
            close $go_w;

            # all start together once the parent closes the pipe
            IO::Select->new($go_r)->can_read($timeout);

            my $start = time;
            my ($value, $err);

            eval { $value = $code->($i); 1 } or $err = "$@";

            my $out = eval {
                $json->encode({ value => $value, error => $err,
                                start => $start, end => time });
            } // $json->encode({ error => "cannot encode the result: $@",
                                 start => $start, end => time });

            while (length $out) {
                my $n = syswrite $w, $out;
                last unless defined $n;
                substr $out, 0, $n, '';
            }

            POSIX::_exit(0);
        }

        close $w;
        $kids{$pid} = { index => $i, fh => $r, buf => '' };
    }

    close $go_r;

    my $start = time;
    my $deadline = $start + $timeout;

    close $go_w;

    my %open = map { fileno $kids{$_}{fh} => $_ } keys %kids;
    my $sel = IO::Select->new(map { $_->{fh} } values %kids);

    while ($sel->count && time < $deadline) {
        for my $fh ($sel->can_read($deadline - time)) {
            my $k = $kids{ $open{ fileno $fh } };
            my $chunk;
            my $n = sysread $fh, $chunk, 65536;

            if ($n) {
                $k->{buf} .= $chunk;
                next;
            }

            $sel->remove($fh);
            close $fh;
            $k->{done} = time;
        }
    }

    my $elapsed = time - $start;
    my @results;

    for my $pid (keys %kids) {
        my $k = $kids{$pid};

        kill 'KILL', $pid unless $k->{done};
        wait_pid($pid, 5);

        my $r = $k->{done} && eval { $json->decode($k->{buf}) }
                || { error => $k->{done} ? 'no result' : 'timeout' };

        $r->{index} = $k->{index};
        $r->{elapsed} = defined $r->{end} ? $r->{end} - $r->{start} : undef;

        $results[ $k->{index} ] = $r;
    }

    return {
        elapsed => $elapsed,
        results => \@results,
        values  => [ map { $_->{value} } @results ],
        errors  => [ grep { defined } map { $_->{error} } @results ],
    };
}


# processes

sub run_command {
    my ($self, $cmd, $timeout) = @_;

    my $out = "$self->{dir}/command.out";
    my $pid = fork // die "fork: $!\n";

    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec @$cmd or POSIX::_exit(127);
    }

    my $code;

    if (wait_pid($pid, $timeout // 30)) {
        $code = $? >> 8 || $? & 127;
    } else {
        kill 'KILL', $pid;
        wait_pid($pid, 5);
        $code = -1;
    }

    my $text = slurp($out) // '';
    unlink $out;

    return ($code, $text);
}


sub wait_pid {
    my ($pid, $timeout) = @_;

    my $deadline = time + $timeout;

    while (1) {
        my $r = waitpid $pid, WNOHANG;
        return 1 if $r == $pid || $r == -1;
        return 0 if time > $deadline;
        sleep 0.02;
    }
}


# stops a process group: politely first unless $grace is 0
sub stop_group {
    my ($pid, $grace, $signal) = @_;

    if ($grace) {
        kill $signal // 'TERM', $pid;
        return 1 if wait_pid($pid, $grace) && !kill 0, -$pid;
    }

    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    wait_pid($pid, 5);

    return 0;
}


sub cleanup {
    my ($self) = @_;

    return unless $self->{creator} == $$;

    if (my $pid = delete $self->{pid}) {
        stop_group($pid, 3, 'QUIT');
        delete $LIVE{$pid};
    }

    $_->stop() for grep { defined } @{ $self->{kankas} };
}


sub DESTROY {
    my ($self) = @_;

    local ($?, $@, $!);
    $self->cleanup();
}


END {
    local $?;

    for my $pid (keys %LIVE) {
        next unless $LIVE{$pid} == $$;
        stop_group($pid, 2);
        delete $LIVE{$pid};
    }
}


# small file and pipe helpers

sub read_line {
    my ($fh, $deadline) = @_;

    my $sel = IO::Select->new($fh);
    my $buf = '';

    while (index($buf, "\n") < 0) {
        my $left = $deadline - time;
        return if $left <= 0;
        $sel->can_read($left) or next;

        my $n = sysread $fh, $buf, 4096, length $buf;
        return if !$n;
    }

    return substr $buf, 0, index($buf, "\n") + 1;
}


sub slurp {
    my ($file) = @_;

    open my $fh, '<:raw', $file or return;
    local $/;
    my $text = <$fh>;

    return $text // '';
}


sub spew {
    my ($file, $text) = @_;

    open my $fh, '>:raw', $file or die "cannot write $file: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $file: $!\n";
}


sub min { $_[0] < $_[1] ? $_[0] : $_[1] }


# a running stand-in, as the tests see it

package Kanka::Test::Standin;

use strict;
use warnings;

use JSON::PP ();

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;


sub new {
    my ($class, %a) = @_;

    return bless { %a, owner => $$ }, $class;
}


sub url { $_[0]{url} }
sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub ca { $_[0]{ca} }
sub log_file { $_[0]{log} }


sub log {
    my ($self) = @_;

    return Kanka::Test::slurp($self->{log}) // '';
}


sub call {
    my ($self, $method, $path, $data) = @_;

    my $r = Kanka::Test::HTTP::request(
        url     => $self->{url} . $path,
        method  => $method,
        headers => { 'Content-Type' => 'application/json' },
        body    => defined $data ? $JSON->encode($data) : undef,
        timeout => $self->{timeout} // 10,
    );

    unless ($r->{status} == 200) {
        my $why = $r->{status} ? "$r->{status} $r->{body}" : $r->{error};
        die "stand-in $method $path failed: $why\n";
    }

    return $JSON->decode($r->{body});
}


sub set {
    my ($self, %settings) = @_;

    return $self->call(POST => '/_control', \%settings);
}


sub settings { $_[0]->call(GET => '/_control') }
sub stats { $_[0]->call(GET => '/_control/stats') }
# reset(keep_tokens => 1) keeps what was issued valid
sub reset {
    my ($self, %o) = @_;

    return $self->call(POST => '/_control/reset',
                       { keep_tokens => $o{keep_tokens} ? 1 : 0 });
}

sub revoke_all { $_[0]->call(POST => '/_control/revoke_all', {}) }


sub issue {
    my ($self, %o) = @_;

    return $self->call(POST => '/_control/issue', \%o);
}


sub requests {
    my ($self, %o) = @_;

    my @r = @{ $self->call(GET => '/_control/requests') };

    @r = grep { $_->{path} eq $o{path} } @r if defined $o{path};

    return wantarray ? @r : \@r;
}


sub stop {
    my ($self) = @_;

    my $pid = delete $self->{pid} or return;
    return unless $self->{owner} == $$;

    Kanka::Test::stop_group($pid, 5);
    delete $LIVE{$pid};
}


1;
