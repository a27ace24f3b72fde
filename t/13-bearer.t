# kanka_oauth_bearer: scripts with a Kanka token (a personal access token,
# say) and no session are let in when Kanka's profile endpoint accepts the
# token; the verdict is cached under a hash of the token, so a busy script
# costs Kanka one call.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', rate_limit => 0);

$t->write_conf(gate_conf(
    http => q{
    log_format who '$request_uri id=$kanka_oauth_user_id';
    },
    server => q{
        access_log %%TESTDIR%%/who.log who;
        kanka_oauth_timeout 1s;
    },
    locations => q{
        location /api/ {
            kanka_oauth on;
            kanka_oauth_bearer on;
            kanka_oauth_bearer_cache 2s;
            add_header X-User $kanka_oauth_user_id;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /members/ {
            kanka_oauth on;
            kanka_oauth_bearer on;
            kanka_oauth_campaign 101;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
));

$t->run();

my $port = $t->port(0);


sub token_for {
    my ($user) = @_;

    return $kanka->issue(user => $user)->{access_token};
}


sub api {
    my ($path, $token, %o) = @_;

    return $t->http_get($path, port => $port, %o,
                        headers => { Accept => 'application/json',
                                     Authorization => "Bearer $token" });
}


sub profile_calls {
    return $kanka->stats()->{profile} // 0;
}


my $token = token_for(1);
ok($token, 'a token from Kanka');

# accepted, with the user's identity, and the token passed on

my $r = api('/api/items', $token);
is($r->{status}, 200, 'a bearer token Kanka accepts lets the script in');
like($r->{body}, qr/auth=Bearer \Q$token\E\n/, 'the upstream gets the token');
is($r->header('x-user'), '1', 'and the user is known');
is(profile_calls(), 1, 'after one profile call');

# a thousand requests, one call

my ($sock, $ok) = (1, 0);

for my $i (1 .. 1000) {
    $r = $t->http(path => "/api/items/$i", port => $port, keepalive => $sock,
                  headers => { Accept => 'application/json',
                               Authorization => "Bearer $token" });
    $sock = $r->{socket} // 1;
    $ok++ if $r->{status} == 200;
}

is($ok, 1000, '1,000 requests pass');
is(profile_calls(), 1, 'and cost Kanka no other call');

# the verdict is cached for kanka_oauth_bearer_cache only

sleep 3.1;
api('/api/again', $token);
is(profile_calls(), 2, 'asked again once the cache has expired');

# a token Kanka refuses: 401, remembered too

my $bad = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.bm90LWEtdG9rZW4.c2lnbmF0dXJl';

my $before = profile_calls();
$r = api('/api/items', $bad);
is($r->{status}, 401, 'a refused token gets 401');
like($r->header('www-authenticate') // '', qr/error="invalid_token"/,
     'naming the error');
is(($r->json() || {})->{error}, 'invalid_token', 'in JSON');

for (1 .. 20) {
    api('/api/items', $bad);
}

is(profile_calls() - $before, 1, 'a refused token costs one call');

$r = api('/api/items', 'not a token, with spaces');
is($r->{status}, 401, 'a malformed token gets 401');
is(profile_calls() - $before, 1, 'without a call');

$r = api('/api/items', '');
is($r->{status}, 401, 'an empty one too');

# where bearer tokens are not accepted, they are no session

$r = api('/plain', $token);
is($r->{status}, 401, 'kanka_oauth_bearer off: 401');
is(($r->json() || {})->{error}, 'unauthorized', 'asking for a login');

# campaign rules hold for scripts too

$r = api('/members/list', $token);
is($r->{status}, 200, 'a member\'s token passes a campaign rule');

$r = api('/members/list', token_for(3));
is($r->{status}, 403, 'a non-member\'s token does not');

# a session cookie wins over a bearer token

{
    my $b = $t->browser(port => $port);
    my @chain = $b->follow('/api/page');
    my ($session_token) = ($chain[-1]{body} // '') =~ /auth=Bearer (\S+)/;

    $r = $t->http_get('/api/page', port => $port,
                      headers => { Accept => 'application/json',
                                   Authorization => "Bearer $token",
                                   Cookie => 'kanka_session='
                                             . $b->cookies()->{kanka_session} });
    like($r->{body}, qr/auth=Bearer \Q$session_token\E\n/,
         'the session\'s token is passed');
}

# Kanka rate-limits the profile call: try later

$kanka->set(api_fault_endpoint => 'profile', api_status => 429,
            api_body => '["Too Many Attempts."]');

$r = api('/api/items', token_for(2));
is($r->{status}, 503, 'rate limited: 503');
is($r->header('retry-after'), '60', 'with Retry-After');

$kanka->set(api_status => 0, api_mode => 'hang');
$r = api('/api/items', token_for(4));
is($r->{status}, 504, 'Kanka hangs: 504');

$t->stop();

# nginx itself echoes request headers at debug level; nothing else may

my @leaks = grep { /\Q$token\E/ && (/kanka_oauth/ || !/\[debug\]/) }
            split /\n(?=\d{4}\/\d\d\/\d\d )/, $t->error_log();
is(scalar @leaks, 0, 'the token is in no line of the module, nor above debug');

my $who = Kanka::Test::slurp($t->dir . '/who.log') // '';
like($who, qr{^/api/items/1000 id=1$}m, 'the user id in the access log');

done_testing();
