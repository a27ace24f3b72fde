# Who the user is: the profile read at login, the user variables, the
# kanka_oauth_user rule, and what a failing profile endpoint does to a login.

use strict;
use warnings;

use Time::HiRes qw(time);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', record => 50);

$t->write_conf(gate_conf(
    http => q{
    log_format who '$request_uri id=$kanka_oauth_user_id name="$kanka_oauth_user_name"';
    },
    server => q{
        access_log %%TESTDIR%%/who.log who;
        kanka_oauth_timeout 1s;
    },
    location => q{
            proxy_set_header X-Kanka-User $kanka_oauth_user_id;
            proxy_set_header X-Kanka-Name $kanka_oauth_user_name;
            add_header X-User $kanka_oauth_user_id;
    },
    locations => q{
        location /staff/ {
            kanka_oauth on;
            kanka_oauth_user 2 3;
            add_header X-User $kanka_oauth_user_id;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /maybe/ {
            kanka_oauth optional;
            add_header X-User $kanka_oauth_user_id;
            add_header X-Authenticated $kanka_oauth_authenticated;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
    upstream => q{
        location /headers {
            return 200 "user=$http_x_kanka_user name=$http_x_kanka_name\n";
        }
    },
));

$t->run();

my $port = $t->port(0);


sub login_as {
    my ($user, $path) = @_;

    $kanka->set(default_user => $user);

    my $b = $t->browser(port => $port);
    my @chain = $b->follow($path // '/');

    return ($b, $chain[-1]);
}


# the profile is read once, at login, with the new token

my ($ilsa, $r) = login_as(1, '/home');

is($r->{status}, 200, 'logged in');
is($r->header('x-user'), '1', '$kanka_oauth_user_id');

my @calls = $kanka->requests(path => '/api/1.0/profile');
is(scalar @calls, 1, 'one profile call');
like($calls[0]{headers}{authorization}[0] // '', qr/^Bearer \S{500,}$/,
     'with the access token');
like($calls[0]{headers}{accept}[0] // '', qr{application/json},
     'asking for JSON');

for (1 .. 5) {
    $ilsa->get("/page/$_");
}

is($kanka->stats()->{profile}, 1, 'no profile call per request');

# the variables at the upstream and in the access log

$r = $ilsa->get('/headers');
is($r->header('x-user'), '1', 'user id in add_header');
is($r->{body}, "user=1 name=Ilsa Vance\n", 'user id and name at the upstream');

# kanka_oauth_user lets only the listed users in

$r = $ilsa->get('/staff/board');
is($r->{status}, 403, 'a user not listed gets 403');
like($r->{body}, qr/<h1>403 Forbidden<\/h1>.*not allowed here/s,
     'with a page for browsers');
like($t->error_log(), qr/\[error\].*Kanka user "1" is not allowed by "kanka_oauth_user"/,
     'the log says which rule refused');

$r = $t->http_get('/staff/board', port => $port,
                  headers => { Accept => 'application/json',
                               Cookie => 'kanka_session='
                                         . $ilsa->cookies()->{kanka_session} });
is($r->{status}, 403, '403 for an API client');
is(($r->json() || {})->{error}, 'forbidden', 'as JSON');

my ($corin) = login_as(2, '/staff/board');
$r = $corin->get('/staff/board');
is($r->{status}, 200, 'a listed user passes');
is($r->header('x-user'), '2', 'as themselves');

# optional: anonymous requests have no identity

$r = $t->http_get('/maybe/x', port => $port);
is($r->header('x-authenticated'), '0', 'optional, anonymous');
ok(!defined $r->header('x-user'), 'no user id');

$r = $corin->get('/maybe/x');
is($r->header('x-user'), '2', 'optional, signed in: user id');

# a name with characters that need care is passed as Kanka gave it

$kanka->set(users => [ { id => 9, name => "Zo\x{eb} \"Quill\" <b>",
                         campaigns => [] },
                       { id => 10, name => "Evil\r\nX-Injected: yes",
                         campaigns => [] } ]);
my ($zoe, $zr) = login_as(9, '/zoe');
is($zr->header('x-user'), '9', 'another user');

# a name cannot carry a header into the upstream request

my ($evil) = login_as(10, '/evil');
$r = $evil->get('/headers');
is($r->{body}, "user=10 name=Evil??X-Injected: yes\n",
   'control characters in a name are replaced');

$t->stop();

my $who = Kanka::Test::slurp($t->dir . '/who.log') // '';
like($who, qr{^/home id=1 name="Ilsa Vance"$}m, 'user variables in the log');
like($who, qr{^/zoe id=9 name="Zo\\xC3\\xAB \\x22Quill\\x22 <b>"$}m,
     'the log escapes what it must');

# a profile endpoint that fails makes the login fail clearly

my $t2 = Kanka::Test->new();
my $k2 = $t2->start_kanka(authorize_mode => 'approve');
$t2->write_conf(gate_conf(server => 'kanka_oauth_timeout 1s;'));
$t2->run();


sub failing_login {
    my (%o) = @_;

    $k2->reset();
    $k2->set(authorize_mode => 'approve', api_fault_endpoint => 'profile',
             %{ $o{settings} });

    my $b = $t2->browser(port => $t2->port(0));
    my $r = $b->get('/x');
    $r = $b->get($r->header('location'));

    my $from = length $t2->error_log();
    my $start = time;
    $r = $b->get($r->header('location'));
    my $took = time - $start;

    is($r->{status}, $o{status}, "$o{name}: $o{status}");
    ok(!$b->cookie('kanka_session'), "$o{name}: no session");
    like($t2->log_since($from), $o{log}, "$o{name}: logged");

    return ($r, $took);
}

my ($fr) = failing_login(name => 'rate limited', status => 503,
              settings => { api_status => 429, api_body => '["Too Many Attempts."]' },
              log => qr/\[error\].*rate limiting the user while reading the user's profile/);
is($fr->header('retry-after'), '60', 'rate limited: Retry-After');

failing_login(name => 'token refused', status => 502,
              settings => { api_status => 401,
                            api_body => '{"code":401,"error":"Invalid authentication token..."}' },
              log => qr/profile endpoint answered 401/);

failing_login(name => 'malformed', status => 502,
              settings => { api_status => 200, api_body => '{"data":{"name":"x"}}' },
              log => qr/bad answer from profile endpoint: no user id in profile/);

failing_login(name => 'server error', status => 502,
              settings => { api_status => 500, api_body => 'oops' },
              log => qr/profile endpoint answered 500/);

my (undef, $took) = failing_login(name => 'timeout', status => 504,
              settings => { api_mode => 'hang' },
              log => qr/profile endpoint timed out/);
ok($took < 2.5, sprintf 'timeout: bounded (%.1f s)', $took);

$t2->stop();

done_testing();
