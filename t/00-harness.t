#!/usr/bin/perl
# The test harness and the Kanka stand-in, checked on their own: no module.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;

use Digest::SHA qw(sha256);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time);

my $t = Kanka::Test->new(no_module => 1);
my $kanka = $t->start_kanka(authorize_mode => 'approve');
my $k = $kanka->url;
my $cb = 'http://127.0.0.1:' . $t->port(0) . '/kanka/callback';
my $secret = 's3cr3t-kanka-client';


sub b64url {
    my $s = encode_base64(shift, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+\z//;
    return $s;
}


sub form {
    my @p = @_;
    my @q;
    while (my ($n, $v) = splice @p, 0, 2) {
        $v =~ s/([^A-Za-z0-9\-_.~])/sprintf '%%%02X', ord $1/ge;
        push @q, "$n=$v";
    }
    return join '&', @q;
}


sub authorize {
    my (%q) = @_;
    return $t->http_get("$k/oauth/authorize?" . form(client_id => 42,
        redirect_uri => $cb, response_type => 'code', %q));
}


sub token {
    my (%p) = @_;
    my $timeout = delete $p{timeout};
    return $t->http(url => "$k/oauth/token", method => 'POST',
        headers => { 'Content-Type' => 'application/x-www-form-urlencoded',
                     Accept => 'application/json' },
        body => form(%p), timeout => $timeout);
}


sub exchange {
    my ($code, %p) = @_;
    return token(grant_type => 'authorization_code', client_id => 42,
                 client_secret => $secret, redirect_uri => $cb,
                 code => $code, %p);
}


sub refresh {
    my ($rt, %p) = @_;
    return token(grant_type => 'refresh_token', refresh_token => $rt,
                 client_id => 42, client_secret => $secret, scope => '', %p);
}


sub api {
    my ($what, $token) = @_;
    return $t->http_get("$k/api/1.0/$what", headers => {
        Accept => 'application/json',
        defined $token ? (Authorization => "Bearer $token") : (),
    });
}


sub claims {
    my ($jwt) = @_;
    my $payload = (split /\./, $jwt)[1];
    $payload =~ tr{-_}{+/};
    return decode_json(decode_base64($payload));
}


sub code_of {
    my ($r) = @_;
    my ($code) = ($r->header('location') // '') =~ /[?&]code=([^&]+)/;
    return $code;
}


# authorization code with PKCE S256

my $verifier = b64url(join '', map { chr int rand 256 } 1 .. 48);
my $challenge = b64url(sha256($verifier));

my $r = authorize(state => 'st4te', code_challenge => $challenge,
                  code_challenge_method => 'S256');

is($r->{status}, 302, 'authorize redirects when approving by itself');
like($r->header('location'), qr{\A\Q$cb\E\?code=[0-9a-f]{800,}&state=st4te\z},
     'the redirect carries a long code and the state');

my $code = code_of($r);

$r = exchange($code, code_verifier => 'x' x 43);
is($r->{status}, 400, 'a wrong verifier is refused');
is($r->json->{error}, 'invalid_grant', 'as invalid_grant');

$r = exchange($code, code_verifier => $verifier, client_secret => 'nope');
is($r->{status}, 401, 'a wrong secret is refused');
is($r->json->{error}, 'invalid_client', 'as invalid_client');

$r = exchange($code, code_verifier => $verifier,
              redirect_uri => "$cb/other");
is($r->json->{error}, 'invalid_request', 'another redirect URI is refused');

$r = exchange($code, code_verifier => $verifier);
is($r->{status}, 200, 'the code is exchanged');
is($r->header('cache-control'), 'no-store', 'with Cache-Control: no-store');

my $tok = $r->json;
is($tok->{token_type}, 'Bearer', 'token_type');
is($tok->{expires_in}, 31536000, 'expires_in is a year');
like($tok->{access_token}, qr/\A[\w-]+\.[\w-]+\.[\w-]+\z/,
     'the access token looks like a JWT');
cmp_ok(abs(length($tok->{access_token}) - 1000), '<', 10,
       'of about 1,000 characters');
like($tok->{refresh_token}, qr/\A[0-9a-f]{690,710}\z/,
     'the refresh token is about 700 hex characters');
like($r->{body}, qr/\A\{"token_type":"Bearer","expires_in":31536000,/,
     'the fields come in Passport\'s order');

my $claims = claims($tok->{access_token});
is($claims->{aud}, '42', 'aud is the client id');
is($claims->{sub}, '1', 'sub is the default user');

$r = exchange($code, code_verifier => $verifier);
is($r->{status}, 400, 'a code works once');
is($r->json->{hint}, 'Authorization code has been revoked',
   'the second use is told the code is revoked');

# the API

$r = api('profile', $tok->{access_token});
is($r->{status}, 200, 'the profile is served with the token');
is($r->json->{data}{id}, 1, 'profile id is the user');
is($r->json->{data}{name}, 'Ilsa Vance', 'profile name');

$r = api('profile');
is($r->{status}, 401, 'no token, no profile');
is($r->json->{code}, 401, 'the 401 body has a code');

$r = api('campaigns', $tok->{access_token});
is_deeply([ map { $_->{id} } @{ $r->json->{data} } ], [101, 102],
          'campaigns of the user');
is($r->json->{meta}{last_page}, 1, 'on one page');

$r = $t->http_get("$k/1.0/profile",
    headers => { Authorization => "Bearer $tok->{access_token}" });
is($r->{status}, 200, 'the API answers without the /api prefix too');

# refresh rotation

$r = refresh($tok->{refresh_token});
is($r->{status}, 200, 'refresh works');

my $tok2 = $r->json;
isnt($tok2->{access_token}, $tok->{access_token}, 'with a new access token');
isnt($tok2->{refresh_token}, $tok->{refresh_token}, 'and a new refresh token');

is(api('profile', $tok->{access_token})->{status}, 401,
   'the old access token is revoked at once');
is(api('profile', $tok2->{access_token})->{status}, 200,
   'the new one works');

$r = refresh($tok->{refresh_token});
is($r->{status}, 400, 'a replayed refresh token is refused');
is_deeply($r->json, {
    error => 'invalid_grant',
    error_description => 'The refresh token is invalid.',
    hint => 'Token has been revoked',
    message => 'The refresh token is invalid.',
}, 'as Passport words it');

$r = token(grant_type => 'refresh_token',
           refresh_token => $tok2->{refresh_token}, scope => '');
is($r->{status}, 400, 'refresh without client credentials is refused');

$r = $t->http(url => "$k/oauth/token", method => 'POST',
    headers => {
        'Content-Type' => 'application/x-www-form-urlencoded',
        Authorization => 'Basic ' . encode_base64("42:$secret", ''),
    },
    body => form(grant_type => 'refresh_token',
                 refresh_token => $tok2->{refresh_token}));
is($r->{status}, 200, 'client credentials may come as HTTP Basic');

my $stats = $kanka->stats;
is($stats->{token}{authorization_code}, 5, 'code exchanges are counted');
is($stats->{token}{refresh_token}, 4, 'refreshes are counted');
is($stats->{token_total}, 9, 'token requests are counted');
is($stats->{profile}, 5, 'profile calls are counted');
is($stats->{campaigns}, 1, 'campaign calls are counted');
is($stats->{authorize}, 1, 'authorize calls are counted');

my @recs = $kanka->requests(path => '/oauth/token');
like($recs[0]{body}, qr/code_verifier=x{43}/, 'token requests are recorded');
is($recs[-1]{headers}{authorization}[0],
   'Basic ' . encode_base64("42:$secret", ''), 'with their headers');

# authorize errors and decisions

$kanka->set(authorize_mode => 'deny');
$r = authorize(state => 'abc');
is($r->{status}, 302, 'a denial redirects');
like($r->header('location'),
     qr{\A\Q$cb\E\?state=abc&error=access_denied
        &error_description=The\+resource\+owner\+or\+authorization\+server
        \+denied\+the\+request\.&hint=The\+user\+denied\+the\+request
        &message=}x,
     'with access_denied after the state');

$r = authorize(client_id => 7);
is($r->{status}, 401, 'an unknown client is refused');
is($r->json->{error}, 'invalid_client', 'as invalid_client');
ok(!defined $r->header('location'), 'without a redirect');

$r = authorize(response_type => 'token');
is($r->{status}, 400, 'another response type is refused');

$r = authorize(code_challenge => 'short', code_challenge_method => 'S256');
is($r->json->{error}, 'invalid_request', 'a short challenge is refused');

$kanka->set(authorize_mode => 'approve', redirect_uri => $cb);
is(authorize(redirect_uri => 'http://127.0.0.1:1/elsewhere')->{status}, 401,
   'a redirect URI other than the registered one is refused');
is(authorize(redirect_uri => 'http://127.0.0.1:9/kanka/callback')->{status},
   302, 'but a loopback URI may differ in its port');

$r = authorize(code_challenge => 'p' x 43);
$r = exchange(code_of($r), code_verifier => 'p' x 43);
is($r->{status}, 200, 'the challenge method defaults to plain');

# pagination and rate limits

$kanka->reset();
my $t4 = $kanka->issue(user => 4);

$r = api('campaigns?page=1', $t4->{access_token});
is(scalar @{ $r->json->{data} }, 15, '15 campaigns a page');
is($r->json->{meta}{last_page}, 3, 'three pages of 40 campaigns');
like($r->json->{links}{next}, qr{\Q$k\E/api/1\.0/campaigns\?page=2\z},
     'links.next names page 2');

$r = api('campaigns?page=3', $t4->{access_token});
is(scalar @{ $r->json->{data} }, 10, 'the last page holds the rest');
ok(!defined $r->json->{links}{next}, 'and no next link');

$kanka->set(rate_limit_per_minute => 3);
my $t2 = $kanka->issue(user => 2);
my @st = map { api('profile', $t2->{access_token})->{status} } 1 .. 4;
is_deeply(\@st, [200, 200, 200, 429], 'the fourth call in a minute is limited');

$r = api('profile', $t2->{access_token});
is(ref $r->json, 'ARRAY', 'the 429 body is an array');
is(scalar @{ $r->json }, 1, 'of one message');

$kanka->set(rate_limit => 0);
is(api('profile', $t2->{access_token})->{status}, 200,
   'the rate limit can be switched off');

# faults of the token endpoint

$kanka->reset();
$kanka->set(token_delay => 1);

my $p = $t->parallel(10, sub { refresh('unknown')->{status} });
is_deeply($p->{values}, [(400) x 10], 'ten delayed token calls are answered');
cmp_ok($p->{elapsed}, '>=', 0.9, 'after the delay');
cmp_ok($p->{elapsed}, '<', 2.5, 'all at once, not one after the other');
is($kanka->stats->{token_concurrent_max}, 10, 'all ten were in flight at once');

$kanka->set(token_delay => 0, token_mode => 'hang');
my $t0 = time;
$r = refresh('unknown', timeout => 1);
is($r->{status}, 0, 'a hanging token endpoint times the client out');
like($r->{error}, qr/timeout/, 'with a timeout error');
cmp_ok(time - $t0, '<', 3, 'after the client\'s own timeout');

$kanka->set(token_mode => 'close');
$r = refresh('unknown');
is($r->{status}, 0, 'a closed connection gives no status');
like($r->{error}, qr/closed/, 'and says so');

$kanka->set(token_mode => 'drip');
$r = refresh('unknown', timeout => 1.5);
is($r->{status}, 0, 'a dripping answer times the client out');
like($r->{raw}, qr{\AH}, 'after the first bytes arrived');

$kanka->set(token_mode => 'normal', token_status => 500,
            token_content_type => 'text/html',
            token_body => '<h1>Server Error</h1>', token_fault_times => 1);
$r = refresh('unknown');
is($r->{status}, 500, 'a canned answer');
is($r->{body}, '<h1>Server Error</h1>', 'with its body');
is(refresh('unknown')->{status}, 400, 'only as often as asked');

$kanka->reset();
$kanka->set(authorize_mode => 'approve', token_mode => 'close',
            token_fault_grant => 'refresh_token', token_fault_process => 1);
$r = exchange(code_of(authorize()));
is($r->{status}, 200, 'a fault for refreshes leaves code exchanges alone');
is(refresh($r->json->{refresh_token})->{status}, 0,
   'a refresh whose answer is lost');
$kanka->set(token_mode => 'normal');
is(refresh($r->json->{refresh_token})->json->{hint}, 'Token has been revoked',
   'has still rotated the tokens');

$kanka->reset();
$kanka->set(authorize_mode => 'approve',
            token_access_token => "abc\r\nX-Injected: 1");
$r = exchange(code_of(authorize()));
is($r->json->{access_token}, "abc\r\nX-Injected: 1",
   'a literal access token can be forced');
is(api('profile', 'abc')->{status}, 401, 'a prefix of it is not a token');

$kanka->set(token_access_token => '', access_token_len => 5000,
            refresh_token_len => 4100);
$r = exchange(code_of(authorize()));
cmp_ok(length $r->json->{access_token}, '>=', 5000, 'tokens can be large');
cmp_ok(length $r->json->{refresh_token}, '>=', 4100, 'refresh tokens too');

# bad clients, keep-alive, Expect

$r = $t->http_raw("GARBAGE\r\n\r\n", url => "$k/");
is($r->{status}, 400, 'a malformed request line gets 400');

$r = $t->http_raw("POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
                  . "Content-Length: many\r\n\r\n", url => "$k/");
is($r->{status}, 400, 'a malformed Content-Length gets 400');

$r = $t->http_raw("GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                  url => "$k/");
is($r->{status}, 400, 'a malformed header gets 400');

is($t->http_get("$k/_control/stats")->{status}, 200,
   'the stand-in survives bad clients');

my $before = $kanka->stats->{connections};
$r = $t->http_raw("GET /_control/stats HTTP/1.1\r\nHost: x\r\n\r\n"
                  . "GET /_control HTTP/1.1\r\nHost: x\r\n\r\n",
                  url => "$k/", keepalive => 1);
is($r->{status}, 200, 'the first of two pipelined requests');
ok($r->{socket}, 'keeps the connection');

my $r2 = $t->http_raw('', url => "$k/", keepalive => $r->{socket});
is($r2->{status}, 200, 'the second pipelined request is answered');
ok(exists $r2->json->{authorize_mode}, 'by its own handler');

my $r3 = $t->http(url => "$k/_control/stats", keepalive => $r2->{socket});
is($r3->{status}, 200, 'a third request on the same connection');
is($kanka->stats->{connections} - $before, 2,
   'one connection for three requests');
close $r3->{socket} if $r3->{socket};

{
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $kanka->port, Timeout => 5);
    my $body = form(grant_type => 'refresh_token', refresh_token => 'x',
                    client_id => 42, client_secret => $secret);
    print {$s} "POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
        . "Content-Type: application/x-www-form-urlencoded\r\n"
        . "Expect: 100-continue\r\nConnection: close\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n";

    my $got = '';
    my $sel = IO::Select->new($s);
    while ($got !~ /\r\n\r\n/ && $sel->can_read(5)) {
        sysread($s, $got, 4096, length $got) or last;
    }
    like($got, qr{\AHTTP/1\.1 100 Continue\r\n\r\n\z},
         'Expect: 100-continue is answered before the body');

    print {$s} $body;
    $got = '';
    while ($sel->can_read(5)) {
        sysread($s, $got, 4096, length $got) or last;
    }
    like($got, qr{\AHTTP/1\.1 400 }, 'and the request after the body');
}

# TLS

my $tk = $t->start_kanka(tls => 1);
$r = $t->http(url => $tk->url . '/_control/stats',
              ssl => { SSL_verify_mode => 1, SSL_ca_file => $tk->ca });
is($r->{status}, 200, 'the stand-in speaks TLS with a verifiable certificate');

$r = $t->http(url => $tk->url . '/_control/stats',
              ssl => { SSL_verify_mode => 1, SSL_ca_file => '/dev/null' });
is($r->{status}, 0, 'which an unknown CA does not verify');

my $tp = $t->parallel(5, sub {
    $t->http(url => $tk->url . '/_control/stats')->{status};
});
is_deeply($tp->{values}, [(200) x 5], 'parallel TLS clients are served');
$tk->stop();

# nginx, without the module

$kanka->reset();
$kanka->set(redirect_uri => $cb);

$t->write_conf(<<'EOF');
events { }
http {
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { return 200 "ok\n"; }
        location /kanka/callback { return 200 "callback $arg_state\n"; }
        location /go {
            set $query client_id=42&state=s1&response_type=code;
            set $cb http%3A%2F%2F127.0.0.1%3A%%PORT0%%%2Fkanka%2Fcallback;
            return 302 "%%KANKA%%/oauth/authorize?$query&redirect_uri=$cb";
        }
        location /set {
            add_header Set-Cookie "s=1; Path=/; HttpOnly";
            return 200 "set\n";
        }
        location /unset {
            add_header Set-Cookie "s=; Path=/; Max-Age=0";
            return 200 "unset\n";
        }
        location /echo { return 200 "[$http_cookie]\n"; }
    }
}
EOF

like($t->conf, qr{client_body_temp_path \Q${\ $t->dir }\E/client_body_temp;},
     'the prelude puts temp paths in the test directory');

$t->run();

$r = $t->http_get('/');
is($r->{status}, 200, 'nginx answers');
is($r->{body}, "ok\n", 'with the body');

my $b = $t->browser();
$b->get('/set');
is($b->cookies->{s}, '1', 'the browser keeps a cookie');
is($b->get('/echo')->{body}, "[s=1]\n", 'and sends it');
$b->get('/unset');
ok(!exists $b->cookies->{s}, 'Max-Age=0 deletes it');
is($b->get('/echo')->{body}, "[]\n", 'and it is no longer sent');

$kanka->set(authorize_mode => 'page');
my @chain = $b->follow('/go');
is(scalar @chain, 2, 'nginx sends the browser to the stand-in');
is($chain[-1]{status}, 200, 'which shows a consent page');
like($chain[-1]{body}, qr/Authorize Campaign Wiki\?/, 'naming the client');

@chain = $b->submit_form($chain[-1], button => 'approve',
                         fields => { user => 2 });
is_deeply([ map { $_->{status} } @chain ], [302, 200],
          'approving leads back to nginx');
is($chain[-1]{body}, "callback s1\n", 'at the callback');

$r = exchange(code_of($chain[0]));
is(claims($r->json->{access_token})->{sub}, '2',
   'the code belongs to the user picked on the page');

@chain = $b->follow('/go');
is_deeply([ map { $_->{status} } @chain ], [302, 302, 200],
          'a user who holds a token is not asked again');

$b->clear_cookies();
@chain = $b->follow('/go');
@chain = $b->submit_form($chain[-1], button => 'deny');
like($chain[-1]{url}, qr/error=access_denied/, 'Cancel denies');

# reload, workers, parallel clients

my @w = $t->worker_pids;
is(scalar @w, 1, 'one worker');
ok($t->reload(), 'reload');
my @w2 = $t->worker_pids;
is(scalar @w2, 1, 'one worker after the reload');
isnt($w2[0], $w[0], 'a new one');
is($t->http_get('/')->{status}, 200, 'still answering');

kill 'KILL', $w2[0];
my @w3 = $t->wait_for_workers(exclude => [$w2[0]]);
is(scalar @w3, 1, 'a killed worker is replaced');
ok($t->wait_for_log(qr/exited on signal 9/), 'the master logs the crash');
is(scalar @{ $t->log_problems->{signals} }, 1,
   'which the log checks would report');
$t->allow_log(qr/exited on signal 9/);
is(scalar @{ $t->log_problems->{alerts} }, 0, 'unless it is allowed');

my $par = $t->parallel(20, sub { $t->http_get('/')->{status} });
is_deeply($par->{values}, [(200) x 20], 'twenty clients at once');
cmp_ok($_->{elapsed}, '<', 1, "client $_->{index} is quick")
    for @{ $par->{results} }[0, 19];

my ($rc, $out) = $t->nginx_t("events { }\nhttp { server { listen "
                             . '127.0.0.1:%%PORT1%%; } }');
is($rc, 0, 'nginx -t accepts a good configuration') or diag($out);

($rc, $out) = $t->nginx_t("events { }\nhttp { bogus_directive on; }");
isnt($rc, 0, 'and refuses a bad one');
like($out, qr/unknown directive "bogus_directive"/, 'saying why');

$t->write_conf("events { }\nhttp { bogus_directive on; }");
is($t->reload(allow_failure => 1), 0,
   'a reload with a bad configuration fails');
$t->allow_log(qr/unknown directive "bogus_directive"/);
is($t->http_get('/')->{status}, 200, 'and the old workers go on');

$t->stop();

ok(!kill(0, @w3), 'no worker is left');

done_testing();
