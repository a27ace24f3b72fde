# Sessions in the shared-memory zone: idle timeout and absolute lifetime,
# eviction of idle sessions when the zone is full, survival
# across reloads and worker crashes, and several tabs logging in at once.

use strict;
use warnings;

use Time::HiRes qw(time sleep);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
# many logins of one user in a minute: Kanka's API limit is not the point here
my $kanka = $t->start_kanka(authorize_mode => 'approve', rate_limit => 0);

$t->write_conf(gate_conf(
    main => 'worker_processes 2;',
    zone => '32k',
    locations => q{
        location /short/ {
            kanka_oauth on;
            kanka_oauth_session_timeout 2s;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /brief/ {
            kanka_oauth on;
            kanka_oauth_session_lifetime 3s;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
));

$t->run();

my $port = $t->port(0);


sub login {
    my ($path) = @_;

    my $b = $t->browser(port => $port);
    my @chain = $b->follow($path // '/');

    return ($b, $chain[-1]);
}


sub gated {
    my ($b, $path) = @_;

    my $r = $b->get($path);

    return $r->{status} == 200 && $r->{body} =~ /auth=Bearer \S+/ ? 1 : 0;
}


# several tabs of one browser log in at once, each returns where it was

{
    my $b = $t->browser(port => $port);

    my $a = $b->get('/tab/a');
    my $c = $b->get('/tab/b');

    isnt(parse_query($a->header('location'))->{state},
         parse_query($c->header('location'))->{state}, 'one state per tab');

    my @b_chain = $b->follow($c->header('location'));
    like($b_chain[-1]{body}, qr{upstream uri=/tab/b }, 'second tab lands');

    my @a_chain = $b->follow($a->header('location'));
    like($a_chain[-1]{body}, qr{upstream uri=/tab/a }, 'first tab lands');

    is_deeply([ sort keys %{ $b->cookies() } ],
              [ 'kanka_session', 'kanka_session_login' ],
              'no cookies pile up');
}

# idle timeout

{
    my ($b, $r) = login('/short/x');
    is($r->{status}, 200, 'logged in');

    sleep 1.2;
    ok(gated($b, '/short/x'), 'used within the idle timeout');

    sleep 1.2;
    ok(gated($b, '/short/x'), 'each use moves the idle timeout');

    sleep 3.2;
    my $r2 = $b->get('/short/x');
    is($r2->{status}, 302, 'idle too long: login again');
}

# absolute lifetime, however busy the session

{
    my ($b, $r) = login('/brief/x');
    is($r->{status}, 200, 'logged in');

    my $ok = 1;
    for (1 .. 2) {
        sleep 1;
        $ok &&= gated($b, '/brief/x');
    }
    ok($ok, 'used within the lifetime');

    sleep 2.5;
    is($b->get('/brief/x')->{status}, 302, 'past the lifetime: login again');
}

# sessions survive a reload and the crash of a worker

{
    my ($b, $r) = login('/before');
    my ($token) = $r->{body} =~ /auth=Bearer (\S+)/;
    ok($token, 'logged in before the reload');

    $t->reload();

    $r = $b->get('/after');
    like($r->{body}, qr/auth=Bearer \Q$token\E\n/, 'same session after reload');

    my @workers = $t->worker_pids();
    kill 'KILL', @workers;
    $t->wait_for_workers(exclude => \@workers);
    $t->allow_log(qr/exited on signal 9/);

    my $all = 1;
    for (1 .. 6) {
        $r = $b->get('/after');
        $all &&= $r->{body} =~ /auth=Bearer \Q$token\E\n/;
    }
    ok($all, 'same session after the workers were killed');

    my ($b2) = login('/again');
    ok(gated($b2, '/again'), 'new logins work after the crash');
}

# a full zone evicts the least recently used sessions; logins never fail

{
    my $from = length $t->error_log();

    my ($first) = login('/first');
    ok(gated($first, '/first'), 'first session works');

    my ($b, $r, @ok);

    for my $i (1 .. 40) {
        ($b, $r) = login("/n$i");
        push @ok, $r->{status} == 200 ? 1 : 0;
    }

    is(scalar(grep { $_ } @ok), 40, 'every login succeeds in a full zone');
    ok(gated($b, '/last'), 'the newest session works');
    is($first->get('/first')->{status}, 302, 'the oldest was evicted');

    my @warn = grep { /\[warn\].*kanka_oauth zone "kanka" is full/ }
               split /\n/, $t->log_since($from);
    is(scalar @warn, 1, 'one warning for many evictions');
}

# a session in use is spared: eviction sends a record read since its last
# turn to the front instead, and takes an idle one

{
    my ($used) = login('/used');
    my ($idle) = login('/idle');
    my @kept;

    for my $i (1 .. 40) {
        login("/m$i");
        push @kept, gated($used, "/used$i");
    }

    is(scalar(grep { $_ } @kept), 40, 'a session in use survives a full zone');
    is($idle->get('/idle')->{status}, 302, 'an idle older one was evicted');
}

$t->stop();

done_testing();
