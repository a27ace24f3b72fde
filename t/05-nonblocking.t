# A slow Kanka never blocks the worker: other requests, concurrent logins, a
# client that leaves, a reload and the timeout, all over one worker process.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', record => 100);

# a second gated server on PORT2 with a short timeout for Kanka's answers

$t->write_conf(gate_conf(
    main => 'worker_processes 1;',
    http => q{
    server {
        listen 127.0.0.1:%%PORT2%%;

        kanka_oauth_client_id 42;
        kanka_oauth_client_secret s3cr3t-kanka-client;
        kanka_oauth_authorize_url %%KANKA%%/oauth/authorize;
        kanka_oauth_token_url %%KANKA%%/oauth/token;
        kanka_oauth_timeout 1s;

        location / {
            kanka_oauth on;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
    },
));

$t->run();

my @workers = $t->worker_pids;
is(scalar @workers, 1, 'one worker process');


# a login that stops in front of the callback: the callback URL with the
# code, and the browser that holds the login cookie

sub login_until_callback {
    my ($path, %o) = @_;

    my $br = $t->browser(port => $o{port} // $t->port(0));
    my $r = $br->get($path);
    my $loc = $r->header('location') // '';

    return ($br, undef) unless $r->{status} == 302 && $loc =~ /authorize/;

    $r = $br->get($loc, from => $r->{url});
    $loc = $r->header('location') // '';

    return ($br, undef) unless $r->{status} == 302 && $loc =~ /code=/;

    return ($br, $br->absolute($loc));
}


# sends the browser's GET of $url on a connection of its own and returns the
# socket without waiting for the answer

sub send_get {
    my ($br, $url) = @_;

    my (undef, $host, $port, $path) = Kanka::Test::HTTP::parse_url($url);

    my $sock = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
                                   Timeout => 5)
        or die "cannot connect to $host:$port: $@\n";

    my $req = Kanka::Test::HTTP::build_request('GET', $host, $port, $path, 0,
        { Accept => 'text/html', Cookie => $br->cookie_header_for($url) });

    syswrite($sock, $req) == length $req or die "cannot send: $!\n";

    return $sock;
}


# reads the answer of send_get(), at most until the deadline; the browser
# keeps the cookies it sets

sub read_answer {
    my ($br, $url, $sock, $deadline) = @_;

    my $res = Kanka::Test::HTTP::read_response($sock, 'GET', $deadline);
    close $sock;

    $res->{url} = $url;
    $br->store_cookies($url, $res) if $res->{status};

    return $res;
}


# waits until the stand-in holds $n token requests unanswered

sub wait_inflight {
    my ($n, $timeout) = @_;

    my $deadline = time + ($timeout // 5);

    while (time < $deadline) {
        return 1 if $kanka->stats->{token_inflight} == $n;
        sleep 0.02;
    }

    return 0;
}


# 1. a login waits 2 s at Kanka while other requests go through

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_delay => 2, record => 100);

my ($br, $cb) = login_until_callback('/wiki/slow');
ok($cb, 'a login reaches the callback');

my $t0 = time;
my $sock = send_get($br, $cb);

ok(wait_inflight(1), 'the code exchange is under way at Kanka');

my @lat;
my $ok = 0;

for (1 .. 50) {
    my $s = time;
    my $r = $t->http_get('/open', timeout => 3);
    push @lat, time - $s;
    $ok++ if $r->{status} == 200 && $r->{body} eq "open\n";
}

my $t50 = time - $t0;
my ($max) = sort { $b <=> $a } @lat;

is($ok, 50, '50 requests to /open answered during the exchange');
cmp_ok($max, '<', 0.1, 'each in less than 100 ms');
note(sprintf 'slowest of 50 requests: %.1f ms, all 50 within %.3f s of the '
             . 'callback', $max * 1000, $t50);

ok(!IO::Select->new($sock)->can_read(0), 'the callback is still waiting');
is($kanka->stats->{token_inflight}, 1, 'and so is its token request');
cmp_ok($t50, '<', 2, 'the 50 requests ended before the token answer');

my $r = read_answer($br, $cb, $sock, time + 5);
my $took = time - $t0;

is($r->{status}, 302, 'the callback ends in a redirect');
cmp_ok($took, '>=', 1.9, 'after the 2 s Kanka took');
cmp_ok($took, '<', 3, 'and not much more');

my @chain = $br->follow($r->header('location') // '/');
like($chain[-1]{body}, qr{upstream uri=/wiki/slow auth=Bearer \S{500,}\n},
     'the slow login ends at the page with the token');


# 2. twenty logins at once, each waiting 2 s at Kanka

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_delay => 2, record => 100);

my $p = $t->parallel(20, sub {
    my ($i) = @_;

    my $one = $t->browser(port => $t->port(0));
    my @c = $one->follow("/wiki/many/$i", max => 6);
    my ($token) = ($c[-1]{body} // '') =~ /auth=Bearer (\S+)/;

    return {
        status => $c[-1]{status},
        body   => $c[-1]{body},
        token  => $token,
        steps  => scalar @c,
    };
}, timeout => 20);

my @res = @{ $p->{values} };
my $stats = $kanka->stats;
my %tokens = map { ($_->{token} // '') => 1 } grep { ref } @res;

is(scalar @{ $p->{errors} }, 0, 'no login process failed')
    or diag(join "\n", @{ $p->{errors} });
is(scalar(grep { ref && $_->{status} == 200 } @res), 20,
   'all 20 logins end at the page');
my $at_page = grep {
    ref $res[$_] && $res[$_]{body}
        =~ m{\Aupstream uri=/wiki/many/$_ auth=Bearer \S{500,}\n\z}
} 0 .. 19;

is($at_page, 20, 'each at its own page with a bearer token');
is(scalar(grep { $_ ne '' } keys %tokens), 20, 'twenty different tokens');

my ($slowest) = sort { $b <=> $a } map { $_->{elapsed} // 99 }
                @{ $p->{results} };

cmp_ok($slowest, '>=', 1.9, 'each login waited for Kanka');
cmp_ok($p->{elapsed}, '<', 3, 'all 20 logins within 3 s');
is($stats->{token}{authorization_code}, 20, 'Kanka saw 20 code exchanges');
cmp_ok($stats->{token_concurrent_max}, '>=', 15,
       'which were in flight at the same time');
note(sprintf '20 logins: %.3f s for the batch, slowest %.3f s, '
             . 'token_concurrent_max %d', $p->{elapsed}, $slowest,
             $stats->{token_concurrent_max});

is_deeply([$t->worker_pids], \@workers, 'over the one worker');


# 3. a client that leaves during the exchange

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_delay => 2, record => 100);

($br, $cb) = login_until_callback('/wiki/gone');
ok($cb, 'another login reaches the callback');

my $pos = length $t->error_log;

$t0 = time;
$sock = send_get($br, $cb);

ok(wait_inflight(1), 'its exchange is under way');

sleep 0.3 - (time - $t0) if time - $t0 < 0.3;
close $sock;

ok($t->wait_for_log(qr/kanka_oauth: call cancelled/, from => $pos,
                    timeout => 1.5),
   'the module cancels the call when the client leaves');
ok(wait_inflight(0, 1), 'and drops its connection to Kanka');
cmp_ok(time - $t0, '<', 2, 'before Kanka answered');

is($t->http_get('/open')->{status}, 200, 'the worker serves requests');

sleep 2.3 - (time - $t0) if time - $t0 < 2.3;

is_deeply([$t->worker_pids], \@workers, 'the same worker is alive');
is($t->http_get('/open')->{status}, 200, 'and still serves after 2 s');

my $since = $t->log_since($pos);
unlike($since, qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');
like($since, qr/\[info\].*client prematurely closed connection/,
     'nginx noticed the client leave');
is($kanka->stats->{token}{authorization_code}, 1, 'one exchange was started');


# 4. a reload while an exchange is under way

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_delay => 2, record => 100);

($br, $cb) = login_until_callback('/wiki/reload');
ok($cb, 'a login before the reload reaches the callback');

$pos = length $t->error_log;

$t0 = time;
$sock = send_get($br, $cb);

ok(wait_inflight(1), 'its exchange is under way');
ok($t->reload(), 'nginx reloads');

my @new = $t->worker_pids;
isnt($new[0], $workers[0], 'a new worker serves');
ok(kill(0, $workers[0]), 'the old one still finishes its work');
is($t->http_get('/open')->{status}, 200, 'requests go on during the reload');

$r = read_answer($br, $cb, $sock, time + 5);
$took = time - $t0;

is($r->{status}, 302, 'the login in flight completes');
ok(defined session_cookie($r), 'with a session');
cmp_ok($took, '>=', 1.9, 'once Kanka answered');

my $deadline = time + 5;
sleep 0.05 while kill(0, $workers[0]) && time < $deadline;
ok(!kill(0, $workers[0]), 'then the old worker exits');

@chain = $br->follow($r->header('location') // '/');
like($chain[-1]{body}, qr{upstream uri=/wiki/reload auth=Bearer \S{500,}\n},
     'the new worker honours the session');

$since = $t->log_since($pos);
unlike($since, qr/open socket/, 'no socket left open by the old worker');
unlike($since, qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');

@workers = @new;


# 5. a hanging Kanka is bounded by kanka_oauth_timeout

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_mode => 'hang', record => 100);

($br, $cb) = login_until_callback('/wiki/hang', port => $t->port(2));
ok($cb, 'a login on the server with a 1 s timeout reaches the callback');

$pos = length $t->error_log;

$t0 = time;
$r = $br->get($cb, timeout => 5);
$took = time - $t0;

is($r->{status}, 504, 'a hanging token endpoint gives 504');
cmp_ok($took, '>=', 0.9, 'after the timeout');
cmp_ok($took, '<', 2.5, 'within the timeout and a little');
like($t->log_since($pos), qr/\[error\].*kanka_oauth: token endpoint timed out/,
     'the timeout is logged');
is($t->http_get('/open')->{status}, 200, 'the worker still serves');

$kanka->set(token_mode => 'normal');

$t->stop();

done_testing();
