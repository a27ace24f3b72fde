# A worker killed while it holds the zone's lock leaves every session
# usable: the lock is the slab pool's own, which nginx frees when its
# holder dies.  gdb stops the worker inside the lock before it is killed.

use strict;
use warnings;

use IO::Socket::IP;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

plan(skip_all => 'gdb is not installed') unless -x '/usr/bin/gdb';

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve');

$t->write_conf(gate_conf());
$t->run();

my $port = $t->port(0);

my $b = $t->browser(port => $port);
my @chain = $b->follow('/before');
is($chain[-1]{status}, 200, 'logged in');

my $cookie = 'kanka_session=' . $b->cookies()->{kanka_session};

my ($worker) = $t->worker_pids();
ok($worker, 'one worker');

# stop the worker in the store's lookup, which runs under the lock, then
# kill it there

my $gdb = $t->dir . '/gdb.log';
my $pid = fork() // die "fork: $!";

if ($pid == 0) {
    open STDOUT, '>', $gdb;
    open STDERR, '>&', \*STDOUT;
    exec('gdb', '-q', '-batch', '-p', $worker,
         '-ex', 'break ngx_http_kanka_oauth_lookup',
         '-ex', 'continue',
         '-ex', 'signal SIGKILL') or POSIX::_exit(127);
}

# gdb is attached once the breakpoint is set

my $deadline = time + 20;
sleep 0.1 until (Kanka::Test::slurp($gdb) // '') =~ /Breakpoint 1 at/
                || time > $deadline;

like(Kanka::Test::slurp($gdb) // '', qr/Breakpoint 1 at/, 'gdb attached');

my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    or die "connect: $!";
print {$s} "GET /during HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
           . "Cookie: $cookie\r\nConnection: close\r\n\r\n";

waitpid $pid, 0;
close $s;

like(Kanka::Test::slurp($gdb) // '', qr/Breakpoint 1, ngx_http_kanka_oauth_lookup/,
     'the worker stopped inside the lock');

$t->allow_log(qr/exited on signal 9/, qr/was locked by $worker/);
$t->wait_for_workers(exclude => [ $worker ]);

ok(!kill(0, $worker), 'the worker is gone');
like($t->wait_for_log(qr/was locked by $worker/) // '',
     qr/shared memory zone "kanka" was locked by $worker/,
     'nginx freed the lock of the dead worker');

my $r = $t->http_get('/after', port => $port,
                     headers => { Accept => 'text/html', Cookie => $cookie },
                     timeout => 5);
is($r->{status}, 200, 'the session still works');
like($r->{body}, qr/auth=Bearer \S+/, 'with its token');

my $b2 = $t->browser(port => $port);
@chain = $b2->follow('/new');
is($chain[-1]{status}, 200, 'a new login works');

$t->stop();

done_testing();
