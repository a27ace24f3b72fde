# Token refresh against Kanka's rotating refresh tokens: one refresh per
# session however many requests arrive, in any worker, through failures,
# a killed worker and a reload.

use strict;
use warnings;

use IO::Socket::IP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve');

$t->write_conf(gate_conf(
    main => 'worker_processes 2;',
    server => q{
        kanka_oauth_timeout 1s;
    },
    location => q{
            add_header X-Pid $pid;
    },
    locations => q{
        location /slow/ {
            kanka_oauth on;
            kanka_oauth_timeout 5s;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /norefresh/ {
            kanka_oauth on;
            kanka_oauth_refresh_before 0;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
));

$t->run();

my $port = $t->port(0);


sub login {
    my (%settings) = @_;

    $kanka->reset();
    $kanka->set(authorize_mode => 'approve', %settings);

    # a location that refreshes only expired tokens shows the first one

    my $b = $t->browser(port => $port);
    my @chain = $b->follow('/norefresh/start');
    my ($token) = ($chain[-1]{body} // '') =~ /auth=Bearer (\S+)/;

    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve');

    return ($b, $token);
}


sub token_of {
    my ($r) = @_;

    my ($token) = ($r->{body} // '') =~ /auth=Bearer (\S+)/;

    return $token // '';
}


sub refreshes {
    return $kanka->stats()->{token}{refresh_token} // 0;
}


# n requests with the same cookie, all sent before any answer is read

sub burst {
    my ($n, $cookie, $path) = @_;

    my @socks;

    for my $i (1 .. $n) {
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                    PeerPort => $port, Timeout => 5)
            or die "connect: $!";
        print {$s} "GET " . ($path // "/burst/$i") . " HTTP/1.1\r\n"
                   . "Host: 127.0.0.1:$port\r\nAccept: text/html\r\n"
                   . "Cookie: $cookie\r\nConnection: close\r\n\r\n";
        push @socks, $s;
    }

    my @out;

    for my $s (@socks) {
        local $/;
        $s->timeout(10);
        my $raw = <$s> // '';
        my ($status) = $raw =~ m{^HTTP/1\.1 (\d+)};
        my ($pid) = $raw =~ /^X-Pid: (\d+)/mi;
        push @out, { status => $status // 0, body => $raw, pid => $pid };
    }

    return @out;
}


sub cookie_of {
    my ($b) = @_;

    return 'kanka_session=' . $b->cookies()->{kanka_session};
}


# a token near its end is refreshed once, and the new one is used after

{
    my ($b, $old) = login(expires_in => 100);
    ok($old, 'logged in with a token that ends in 100 s');

    my $r = $b->get('/one');
    my $new = token_of($r);

    is(refreshes(), 1, 'refreshed within refresh_before');
    ok($new && $new ne $old, 'the upstream gets the new token');

    $r = $b->get('/two');
    is(token_of($r), $new, 'and keeps getting it');
    is(refreshes(), 1, 'no second refresh for a fresh token');

    my @sent = $kanka->requests(path => '/oauth/token');
    my $form = parse_query($sent[-1]{body});
    is($form->{grant_type}, 'refresh_token', 'refresh grant');
    is($form->{client_secret}, 's3cr3t-kanka-client', 'with the secret');
    ok(exists $form->{scope} && $form->{scope} eq '', 'and an empty scope');
}

# 100 requests of one session with an expired token, over two workers

{
    my ($b, $old) = login(expires_in => 1);
    sleep 2.1;

    # a short delay at Kanka lets all 100 arrive while the refresh runs

    $kanka->set(token_delay => 0.5);

    my @r = burst(100, cookie_of($b));
    my %tokens = map { token_of($_) => 1 } @r;
    my %pids = map { ($_->{pid} // 0) => 1 } @r;

    is(scalar(grep { $_->{status} == 200 } @r), 100, 'all 100 succeed');
    is(refreshes(), 1, 'exactly one refresh at Kanka');
    is(scalar keys %tokens, 1, 'all carry one token');
    ok(!$tokens{$old}, 'the new one');
    is(scalar keys %pids, 2, 'served by both workers');
}

# the same with Kanka slow: one refresh, and the worker serves others

{
    my ($b) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_delay => 2);

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        my @r = burst(30, cookie_of($b), '/slow/page');
        my $ok = grep { $_->{status} == 200 } @r;
        my %tokens = map { token_of($_) => 1 } @r;
        POSIX::_exit($ok == 30 && keys %tokens == 1 ? 0 : 1);
    }

    sleep 0.3;

    my $max = 0;
    for (1 .. 20) {
        my $start = time;
        $t->http_get('/open', port => $port);
        $max = time - $start if time - $start > $max;
    }

    waitpid $pid, 0;
    is($? >> 8, 0, 'slow Kanka: 30 requests succeed with one token');
    is(refreshes(), 1, 'slow Kanka: exactly one refresh');
    ok($max < 0.1, sprintf 'other requests served meanwhile (max %.1f ms)',
                           $max * 1000);
}

# Kanka refuses the refresh token: a new login, back where it was

{
    my ($b, $old) = login(expires_in => 1);
    sleep 2.1;

    $kanka->revoke_all();

    my $r = $t->http_get('/api/data', port => $port,
                         headers => { Accept => 'application/json',
                                      Cookie => cookie_of($b) });
    is($r->{status}, 401, 'refused refresh: 401 for an API client');

    my ($b2) = login(expires_in => 1);
    sleep 2.1;
    $kanka->revoke_all();

    my @chain = $b2->follow('/where/i/was');
    is($chain[0]{status}, 302, 'refused refresh: browser sent to login');
    like($chain[0]->header('location') // '', qr{/oauth/authorize\?},
         'to Kanka');
    like($chain[-1]{body}, qr{upstream uri=/where/i/was }, 'and back');
    is($kanka->stats()->{token}{refresh_token}, 1, 'one refresh tried');
}

# Kanka fails while the old token is still valid: the old one serves

{
    my ($b, $old) = login(expires_in => 100);

    $kanka->set(token_status => 503, token_body => 'down',
                token_content_type => 'text/plain');

    my $from = length $t->error_log();

    my $r = $b->get('/during');
    is($r->{status}, 200, 'Kanka down, token valid: served');
    is(token_of($r), $old, 'with the old token');

    $r = $b->get('/during/again');
    is(token_of($r), $old, 'again');
    is(refreshes(), 1, 'no new try before the back-off ends');

    like($t->log_since($from), qr/\[error\].*token endpoint answered 503.*refreshing the access token at Kanka/,
         'the failure is logged');
}

# Kanka fails once the token has expired: 502/504, the session is kept

{
    my ($b, $old) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_mode => 'close');

    my $r = $b->get('/expired');
    is($r->{status}, 502, 'Kanka down, token expired: 502');

    my $tries = refreshes();

    $r = $b->get('/expired');
    is($r->{status}, 502, 'still 502 during the back-off');
    is(refreshes(), $tries, 'without a new try');

    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve', token_mode => 'hang');
    sleep 2.2;

    my $start = time;
    $r = $b->get('/expired');
    my $took = time - $start;
    is($r->{status}, 504, 'Kanka hangs, token expired: 504');
    ok($took < 2.5, sprintf 'after the timeout (%.1f s)', $took);

    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve');
    sleep 4.2;

    $r = $b->get('/back');
    is($r->{status}, 200, 'Kanka back: the session works');
    ok(token_of($r) && token_of($r) ne $old, 'with a new token');
}

# a worker killed while it holds the lease does not leave the session stuck

{
    my ($b) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_mode => 'hang');

    my $from = length $t->error_log();

    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print {$s} "GET /lease HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
               . "Cookie: " . cookie_of($b) . "\r\nConnection: close\r\n\r\n";

    my $line = $t->wait_for_log(qr/kanka_oauth: refreshing the access token/,
                                from => $from);
    my ($holder) = ($line // '') =~ /\[debug\] (\d+)#/;
    ok($holder, 'a worker holds the lease');

    kill 'KILL', $holder if $holder;
    $t->allow_log(qr/exited on signal 9/);
    $t->wait_for_workers(exclude => [ $holder // 0 ]);
    close $s;

    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve');

    my $r = $b->get('/after-kill');
    is($r->{status}, 200, 'the session recovers');
    is(refreshes(), 1, 'with exactly one more refresh');

    $r = $b->get('/after-kill/again');
    is(refreshes(), 1, 'and no other');
}

# a client that leaves during the refresh: the answer is kept all the same,
# since Kanka has already revoked the old tokens

{
    my ($b, $old) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_delay => 0.8);

    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print {$s} "GET /leaving HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
               . "Cookie: " . cookie_of($b) . "\r\nConnection: close\r\n\r\n";
    sleep 0.3;
    close $s;
    sleep 1;

    my $r = $b->get('/after-leaving');
    is($r->{status}, 200, 'client gone during the refresh: session kept');
    ok(token_of($r) && token_of($r) ne $old, 'with the refreshed token');
    is(refreshes(), 1, 'from the one refresh');
}

# Kanka gives no new refresh token: the session lasts as long as the token

{
    my ($b) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_fault_grant => 'refresh_token', token_status => 200,
                token_content_type => 'application/json',
                token_body => '{"token_type":"Bearer","expires_in":1,'
                              . '"access_token":"last.token"}');

    my $r = $b->get('/last');
    is(token_of($r), 'last.token', 'a token without a refresh token serves');

    sleep 2.1;
    $r = $b->get('/after-last');
    is($r->{status}, 302, 'then a new login');
    is(refreshes(), 1, 'without a refresh that cannot work');
}

# a reload during a refresh: the old worker finishes it

{
    my ($b) = login(expires_in => 1);
    sleep 2.1;

    $kanka->set(token_delay => 0.8);

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        my @r = burst(5, cookie_of($b));
        POSIX::_exit((grep { $_->{status} == 200 } @r) == 5 ? 0 : 1);
    }

    sleep 0.3;
    $t->reload();

    waitpid $pid, 0;
    is($? >> 8, 0, 'requests during the reload succeed');

    my $r = $b->get('/after-reload');
    is($r->{status}, 200, 'the session works after the reload');
    is(refreshes(), 1, 'one refresh in all');
}

# Kanka-sized tokens fit; over the limits they are refused, not truncated

{
    my ($b, $token) = login(access_token_len => 4096, refresh_token_len => 2048,
                            expires_in => 100);
    is(length $token, 4096, 'a 4 KB access token');

    my $r = $b->get('/big');
    is($r->{status}, 200, 'refreshing a 2 KB refresh token');

    ($b, $token) = login(access_token_len => 4097);
    ok(!$token, 'a 4097-byte access token is refused');
    like($t->error_log(), qr/access token is too long/, 'and logged');

    ($b, $token) = login(refresh_token_len => 2049);
    ok(!$token, 'a 2049-byte refresh token is refused');
    like($t->error_log(), qr/refresh token is too long/, 'and logged');
}

$t->stop();

done_testing();
