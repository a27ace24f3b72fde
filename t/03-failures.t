# Failures answer clearly: denial at Kanka, a token endpoint that refuses,
# breaks, lies or hangs, and callbacks that are stale, replayed or from
# another browser.  One log line each; never a loop, never a 500.

use strict;
use warnings;

use Time::HiRes qw(time);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve');

my $closed = $t->free_port();

$t->write_conf(gate_conf(
    server => q{
        kanka_oauth_timeout 1s;
    },
    locations => qq{
        location /refused/ {
            kanka_oauth on;
            kanka_oauth_redirect_uri /refused/callback;
            kanka_oauth_token_url http://127.0.0.1:$closed/oauth/token;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /custom/ {
            kanka_oauth on;
            kanka_oauth_redirect_uri /custom/callback;
            error_page 502 /custom-502.html;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location = /custom-502.html {
            return 502 "our own 502 page\\n";
        }
    },
));

$t->run();

my $port = $t->port(0);


# a browser's way to the callback: the gated page, then Kanka, which sends
# it back; returns the browser and the callback URL

sub to_callback {
    my ($path, $b) = @_;

    $b //= $t->browser(port => $port);

    my $r = $b->get($path // '/page');
    my $authorize = $r->header('location') // '';
    $r = $b->get($authorize);

    return ($b, $r->header('location') // '');
}


# the lines of the module at info level and above since $from

sub module_lines {
    my ($from) = @_;

    return grep { /\[(?:info|notice|warn|error|crit|alert)\].*kanka_oauth/ }
           split /\n/, $t->log_since($from);
}


sub failure {
    my (%o) = @_;

    $kanka->reset();
    $kanka->set(authorize_mode => 'approve', %{ $o{settings} || {} });

    my ($b, $callback) = to_callback($o{path});
    like($callback, qr{/callback\?}, "$o{name}: back from Kanka");

    my $from = length $t->error_log();
    my $start = time;
    my $r = $b->get($callback);
    my $took = time - $start;

    is($r->{status}, $o{status}, "$o{name}: $o{status}");

    if ($o{page}) {
        like($r->{body}, $o{page}, "$o{name}: page");
    }

    is($r->header('referrer-policy'), 'no-referrer',
       "$o{name}: the page's URL is sent nowhere as a Referer");

    ok(!$b->cookie('kanka_session'), "$o{name}: no session");

    my @lines = module_lines($from);
    is(scalar @lines, 1, "$o{name}: one log line") or diag(join "\n", @lines);
    like($lines[0] // '', $o{log}, "$o{name}: log says why");
    unlike($lines[0] // '', qr/code=|state=|s3cr3t/,
           "$o{name}: log line has no secret");

    return ($r, $took);
}


failure(name => 'denied', settings => { authorize_mode => 'deny' },
        status => 403, page => qr/<h1>403 Forbidden<\/h1>.*denied at Kanka/s,
        log => qr/\[info\].*the user denied access at Kanka/);

failure(name => 'invalid grant',
        settings => { token_status => 400, token_content_type => 'application/json',
                      token_body => '{"error":"invalid_grant","error_description":'
                                    . '"The authorization code has expired",'
                                    . '"message":"The authorization code has expired"}' },
        status => 502, page => qr/<h1>502 Bad Gateway<\/h1>/,
        log => qr/\[error\].*token endpoint answered 400 "invalid_grant"/);

failure(name => 'invalid client',
        settings => { client_secret => 'another' },
        status => 502,
        log => qr/\[error\].*token endpoint answered 401 "invalid_client"/);

failure(name => 'server error',
        settings => { token_status => 500, token_content_type => 'text/html',
                      token_body => "<html><body>Server Error</body></html>\n" },
        status => 502,
        log => qr/\[error\].*token endpoint answered 500/);

failure(name => 'malformed JSON',
        settings => { token_status => 200, token_content_type => 'application/json',
                      token_body => '{"access_token": "abc", ' },
        status => 502,
        log => qr/\[error\].*bad answer from token endpoint: answer is not valid JSON/);

failure(name => 'no access token',
        settings => { token_status => 200, token_content_type => 'application/json',
                      token_body => '{"token_type":"Bearer","expires_in":3600}' },
        status => 502,
        log => qr/bad answer from token endpoint: no "access_token" in answer/);

failure(name => 'not an object',
        settings => { token_status => 200, token_content_type => 'application/json',
                      token_body => '["access_token"]' },
        status => 502,
        log => qr/bad answer from token endpoint: answer is not a JSON object/);

failure(name => 'header injection',
        settings => { token_access_token => "abc\r\nX-Injected: 1" },
        status => 502,
        log => qr/bad answer from token endpoint: access token has characters/);

failure(name => 'wrong token type',
        settings => { token_status => 200, token_content_type => 'application/json',
                      token_body => '{"token_type":"MAC","access_token":"abc"}' },
        status => 502,
        log => qr/bad answer from token endpoint: "token_type" is not "Bearer"/);

failure(name => 'redirect',
        settings => { token_status => 302,
                      token_headers => { Location => "http://127.0.0.1:$port/open" },
                      token_body => '' },
        status => 502,
        log => qr/token endpoint answered 302/);

failure(name => 'too large',
        settings => { token_status => 200, token_content_type => 'application/json',
                      token_body => '{"x":"' . ('a' x 70000) . '"}' },
        status => 502,
        log => qr/token endpoint sent more than 65536 bytes/);

my (undef, $took) = failure(name => 'timeout', settings => { token_mode => 'hang' },
        status => 504, page => qr/<h1>504 Gateway Time-out<\/h1>/,
        log => qr/\[error\].*token endpoint timed out/);
ok($took < 2.5, "timeout bounded by kanka_oauth_timeout ($took s)");

(undef, $took) = failure(name => 'slow drip',
        settings => { token_mode => 'drip', drip_interval => 0.2 },
        status => 504, log => qr/\[error\].*token endpoint timed out/);
ok($took < 2.5, "a dripping answer is bounded too ($took s)");

failure(name => 'closed', settings => { token_mode => 'close' },
        status => 502, log => qr/\[error\].*token request failed/);

failure(name => 'refused', path => '/refused/page',
        status => 502, log => qr/\[error\].*token request failed: .*refused/i);

# an error other than a denial, sent by Kanka in the redirect

{
    $kanka->reset();
    $kanka->set(authorize_mode => 'approve');

    my ($b, $callback) = to_callback();
    $callback =~ s/code=[^&]*/error=server_error&error_description=Oops/;

    my $from = length $t->error_log();
    my $r = $b->get($callback);

    is($r->{status}, 502, 'authorization error: 502');
    my @lines = module_lines($from);
    is(scalar @lines, 1, 'authorization error: one log line');
    like($lines[0] // '', qr/Kanka refused the authorization: "server_error"/,
         'authorization error: log says why');
}

# an error_page for the status replaces the module's page

failure(name => 'error_page', path => '/custom/page',
        settings => { token_status => 500, token_body => 'no' },
        status => 502, page => qr/^our own 502 page$/,
        log => qr/token endpoint answered 500/);

# stale, replayed and foreign callbacks start a new login

$kanka->reset();
$kanka->set(authorize_mode => 'approve');

{
    my ($b, $callback) = to_callback('/first?x=1');

    my $r = $b->get($callback);
    is($r->{status}, 302, 'callback works once');
    like($r->header('location'), qr{/first\?x=1$}, 'back at the page');

    my $session = $b->cookie('kanka_session');
    ok($session, 'session made');

    my $from = length $t->error_log();

    $r = $b->get($callback);
    is($r->{status}, 302, 'replayed callback: redirect');
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'replayed callback: a new login');
    my @lines = module_lines($from);
    like($lines[0] // '', qr/\[info\].*unknown, used or expired state/,
         'replayed callback: logged at info');

    is($kanka->stats()->{token}{authorization_code}, 1,
       'replayed callback: the code was not sent again');
}

{
    my $b = $t->browser(port => $port);
    my $r = $b->get('/kanka/callback?code=abc&state=' . ('A' x 43));
    is($r->{status}, 302, 'unknown state: redirect');
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'unknown state: a new login');

    $r = $b->get('/kanka/callback?code=abc&state=short');
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'malformed state: a new login');

    $r = $b->get('/kanka/callback?code=abc');
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'no state: a new login');

    my @chain = $b->follow($r->header('location'));
    is($chain[-1]{status}, 200, 'and that login succeeds');
    like($chain[-1]{url}, qr{:$port/$}, 'at the root');
}

{
    # the state was issued to one browser; another presents it

    my ($alice, $callback) = to_callback('/alice');

    # a browser with a login cookie of its own

    my $mallory = $t->browser(port => $port);
    $mallory->get('/mallory');
    ok($mallory->cookie('kanka_session_login'), 'the other browser has a login');

    my $from = length $t->error_log();
    my $r = $mallory->get($callback);

    is($r->{status}, 302, 'foreign callback: redirect');
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'foreign callback: a new login');
    ok(!$mallory->cookie('kanka_session'), 'foreign callback: no session');
    like(join("\n", module_lines($from)), qr/issued to another browser/,
         'foreign callback: logged');

    $r = $alice->get($callback);
    like($r->header('location') // '', qr{/oauth/authorize\?},
         'the state is spent, even for its own browser');
    ok(!$alice->cookie('kanka_session'), 'no session from a spent state');
}

{
    # a browser that keeps no cookies gets one retry, then a page: no loop

    my $b = $t->browser(port => $port);
    my $r = $b->get('/nocookies');
    my $loc = $r->header('location');
    my $hops = 0;
    my $status;

    for (1 .. 10) {
        $b->clear_cookies();
        $r = $b->get($loc);
        $hops++;
        $loc = $r->header('location');
        $status = $r->{status};
        last unless $r->is_redirect;
    }

    is($status, 400, 'no cookies: 400 in the end');
    ok($hops <= 4, "no cookies: no loop ($hops hops)");
    like($r->{body}, qr/does not keep cookies/, 'no cookies: says why');
}

# the callback is for browsers coming back from Kanka

{
    my $r = $t->http(method => 'POST', path => '/kanka/callback?code=a&state=b',
                     port => $port, body => 'x=1',
                     headers => { 'Content-Type' => 'text/plain' });
    is($r->{status}, 405, 'POST to the callback: 405');
}

$t->stop();

done_testing();
