# The whole login: redirect to Kanka, callback, code exchange, the session,
# the bearer token at the upstream, logout, and 401 for API clients.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', record => 20);

$t->write_conf(gate_conf(
    http => q{
    log_format gate '$request_uri auth=$kanka_oauth_authenticated';
    },
    server => q{
        access_log %%TESTDIR%%/access.log;
        access_log %%TESTDIR%%/gate.log gate;
    },
    location => q{
            add_header X-Authenticated $kanka_oauth_authenticated;
    },
    locations => q{
        location /token-var {
            kanka_oauth on;
            add_header X-Token $kanka_oauth_access_token;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /maybe {
            kanka_oauth optional;
            add_header X-Authenticated $kanka_oauth_authenticated;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /nopass {
            kanka_oauth on;
            kanka_oauth_pass_token off;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
));

$t->run();

my $base = 'http://127.0.0.1:' . $t->port(0);

# a browser's first visit goes to Kanka with everything it needs

my $b = $t->browser(port => $t->port(0));
my $r = $b->get('/wiki/page?x=1&y=%20z');

is($r->{status}, 302, 'navigation without a session is redirected');

my $loc = $r->header('location') // '';
like($loc, qr{^\Q${\ $kanka->url}\E/oauth/authorize\?}, 'to the authorize URL');

my $q = parse_query($loc);

is($q->{client_id}, '42', 'client_id');
is($q->{redirect_uri}, "$base/kanka/callback", 'redirect_uri');
is($q->{response_type}, 'code', 'response_type');
like($q->{state}, qr/^[A-Za-z0-9_-]{43}$/, 'random state');
like($q->{code_challenge}, qr/^[A-Za-z0-9_-]{43}$/, 'code challenge');
is($q->{code_challenge_method}, 'S256', 'S256');
is($r->header('cache-control'), 'no-store', 'login redirect is not cached');

my ($login_cookie) = grep { /^kanka_session_login=/ }
                     $r->header_values('set-cookie');
like($login_cookie // '', qr/HttpOnly/, 'login cookie is HttpOnly');
like($login_cookie // '', qr/SameSite=Lax/, 'login cookie is SameSite=Lax');
like($login_cookie // '', qr/Max-Age=600/, 'login cookie lives 10 minutes');

# the whole flow, followed like a browser

my @chain = $b->follow($loc);
my $last = $chain[-1];

is($last->{status}, 200, 'after login the page is served');
like($last->{body}, qr{upstream uri=/wiki/page\?x=1&y=%20z },
     'at the URL first asked for');
like($last->{body}, qr/auth=Bearer [A-Za-z0-9_.-]{500,}\n/,
     'upstream gets the bearer token');
is($last->header('x-authenticated'), '1', '$kanka_oauth_authenticated');

my ($callback) = grep { $_->{url} =~ m{/kanka/callback} } @chain;
ok($callback, 'the chain passed through the callback');

my ($session) = grep { /^kanka_session=/ } $callback->header_values('set-cookie');
like($session // '', qr/^kanka_session=[A-Za-z0-9_-]{43};/,
     'session id of 256 bits');
like($session // '', qr/HttpOnly/, 'session cookie is HttpOnly');
like($session // '', qr/SameSite=Lax/, 'session cookie is SameSite=Lax');
like($session // '', qr/Path=\//, 'session cookie path');
like($session // '', qr/Max-Age=604800/, 'session cookie lives 7 days');
unlike($session // '', qr/Secure/, 'no Secure flag over plain http');
is($callback->header('cache-control'), 'no-store', 'callback is not cached');

# what the module sent to the token endpoint

my @sent = @{ $kanka->requests(path => '/oauth/token') || [] };
is(scalar @sent, 1, 'one token request');

my $form = parse_query($sent[0]{body});
is($form->{grant_type}, 'authorization_code', 'grant_type');
is($form->{client_id}, '42', 'client_id sent');
is($form->{client_secret}, 's3cr3t-kanka-client', 'client_secret_post');
is($form->{redirect_uri}, "$base/kanka/callback", 'same redirect_uri');
like($form->{code_verifier} // '', qr/^[A-Za-z0-9_-]{43}$/, 'PKCE verifier');
is($kanka->stats()->{token}{authorization_code}, 1, 'stand-in accepted it');

my ($token) = $last->{body} =~ /auth=Bearer (\S+)/;

# the client's own Authorization header is replaced

$r = $b->get('/api', headers => { Authorization => 'Basic Zm9vOmJhcg==' });
like($r->{body}, qr/auth=Bearer \Q$token\E\n/, 'client Authorization replaced');

$r = $b->get('/token-var');
is($r->header('x-token'), $token, '$kanka_oauth_access_token');

$r = $b->get('/nopass', headers => { Authorization => 'Basic Zm9vOmJhcg==' });
like($r->{body}, qr/auth=Basic Zm9vOmJhcg==/, 'pass_token off keeps the header');

$r = $b->get('/maybe');
is($r->header('x-authenticated'), '1', 'optional, signed in');
like($r->{body}, qr/auth=Bearer /, 'optional, signed in, token passed');

$r = $t->http_get('/maybe', port => $t->port(0));
is($r->{status}, 200, 'optional lets anonymous requests through');
is($r->header('x-authenticated'), '0', 'optional, anonymous');
like($r->{body}, qr/auth=\n/, 'optional, anonymous, no token');

$r = $t->http_get('/open', port => $t->port(0));
is($r->{body}, "open\n", 'ungated location');

# API clients get 401, never a redirect

for my $case (
    [ 'fetch', { Accept => '*/*', 'Sec-Fetch-Mode' => 'cors' } ],
    [ 'json', { Accept => 'application/json' } ],
    [ 'xhr', { Accept => 'text/html', 'X-Requested-With' => 'XMLHttpRequest' } ],
    [ 'no accept', { Accept => undef } ],
    [ 'iframe', { Accept => 'text/html', 'Sec-Fetch-Mode' => 'no-cors' } ],
)
{
    my ($name, $h) = @$case;

    $r = $t->http_get('/api/data?q=1', port => $t->port(0), headers => $h);
    is($r->{status}, 401, "401 for $name");
    like($r->header('www-authenticate') // '', qr/^Bearer realm="kanka"/,
         "WWW-Authenticate for $name");
}

$r = $t->http(method => 'POST', path => '/api/data', port => $t->port(0),
              headers => { Accept => 'text/html',
                           'Content-Type' => 'application/x-www-form-urlencoded' },
              body => 'a=b');
is($r->{status}, 401, '401 for POST');

$r = $t->http_get('/api/data?q=1', port => $t->port(0),
                  headers => { Accept => 'application/json' });
is($r->header('content-type'), 'application/json', 'JSON body');

my $json = $r->json() || {};
is($json->{error}, 'unauthorized', 'error code in body');
is($json->{login_url}, '/kanka/callback?return=%2Fapi%2Fdata%3Fq%3D1',
   'login URL in body');

# the login URL starts a login that returns to the API path

my $b2 = $t->browser(port => $t->port(0));
@chain = $b2->follow($json->{login_url});
is($chain[0]{status}, 302, 'login URL redirects');
like($chain[-1]{body}, qr{upstream uri=/api/data\?q=1 }, 'and returns to it');

# logout ends the session and clears the cookie

$r = $b->get('/kanka/logout?return=/open');
is($r->{status}, 302, 'logout redirects');
is($r->header('location'), "$base/open", 'to the return path');
ok((grep { /^kanka_session=; Max-Age=0/ } $r->header_values('set-cookie')),
   'cookie cleared');

my ($old) = $session =~ /^([^;]+)/;

$r = $t->http_get('/api', port => $t->port(0),
                  headers => { Accept => 'text/html', Cookie => $old });
is($r->{status}, 302, 'the ended session no longer works');

$r = $b->get('/kanka/logout?return=//evil.example/');
is($r->header('location'), "$base/", 'logout returns to this origin only');

$r = $b->get('/kanka/logout?return=https://evil.example/');
is($r->header('location'), "$base/", 'no absolute return URL');

$t->stop();

# the code and the state stay out of the request line that nginx logs

my $access = Kanka::Test::slurp($t->dir . '/access.log') // '';
my $gate = Kanka::Test::slurp($t->dir . '/gate.log') // '';

like($access, qr{"GET /kanka/callback\?\.\.\. HTTP/1.1" 302}, 'callback logged');
unlike($access, qr/code=|state=/, 'without its code and state');
like($gate, qr{^/kanka/callback\?\.\.\. auth=0$}m, 'nor in $request_uri');

like($gate, qr{^/wiki/page\?x=1&y=%20z auth=1$}m, 'variable in the access log');

done_testing();
