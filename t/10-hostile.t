# Hostile input, a table at a time: callbacks, return URLs, request
# headers, cookies and the token endpoint's answers.  Each row is an input
# and the answer it must get.  After the tables: no worker died, and no
# secret reached a line of the error log above debug or a line of the
# module's own.

use strict;
use warnings;

use IO::Compress::Gzip qw(gzip);
use MIME::Base64 qw(encode_base64url);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', rate_limit => 0,
                            record => 50);

# headers as long as the tests send must reach the module, not be cut by
# nginx first, on the gated server and on the upstream it proxies to

$t->write_conf(gate_conf(
    http => q{
    large_client_header_buffers 4 64k;
    },
    server => q{
        kanka_oauth_timeout 3s;
    },
));

$t->run();

my $port = $t->port(0);
my $base = "http://127.0.0.1:$port";
my $kurl = $kanka->url;
my $login_re = qr{^\Q$kurl\E/oauth/authorize\?};
my @workers = $t->worker_pids();

my %NAV = (Accept => 'text/html', 'Sec-Fetch-Mode' => 'navigate');


# every secret the run sees, with its kind; short values would match
# anything, and none of the module's secrets is short

my %secret;

sub keep {
    my ($kind, @values) = @_;

    for my $v (grep { defined && length >= 16 } @values) {
        $secret{$v} //= $kind;
    }
}

keep(client_secret => 's3cr3t-kanka-client');


sub random_id {
    return encode_base64url(join '', map { chr int rand 256 } 1 .. 32);
}


sub random_word {
    my ($n) = @_;

    my @c = ('A' .. 'Z', 'a' .. 'z', 0 .. 9);

    return join '', map { $c[rand @c] } 1 .. $n;
}


sub escape_all {
    my ($s) = @_;

    return join '', map { sprintf '%%%02X', ord } split //, $s;
}


# takes what a response shows: states and challenges on the way to Kanka,
# codes on the way back, cookies nginx sets, tokens the upstream got

sub collect {
    my ($r) = @_;

    my $q = parse_query($r->header('location') // '');

    keep(state => $q->{state});
    keep(challenge => $q->{code_challenge});
    keep(code => $q->{code});

    for my $sc ($r->header_values('set-cookie')) {
        keep(cookie => $1) if $sc =~ /^kanka_session(?:_login)?=([^;]+)/;
    }

    keep(token => $1) if ($r->{body} // '') =~ /auth=Bearer (\S+)/;

    return $r;
}


sub send_req {
    my (%o) = @_;

    return collect($t->http_raw($o{raw})) if defined $o{raw};

    return collect($t->http(method => $o{method} // 'GET',
                            path => $o{path}, headers => $o{headers} || [],
                            body => $o{body}));
}


# the codes and verifiers Kanka was sent

sub harvest {
    for my $req ($kanka->requests(path => '/oauth/token')) {
        my $form = parse_query($req->{body});
        keep(code => $form->{code});
        keep(verifier => $form->{code_verifier});
    }
}


# a login under way: started at the callback with a return URL, or at a
# gated path; Kanka approves at once and names the way back

sub start {
    my (%o) = @_;

    my $r = defined $o{path}
            ? send_req(path => $o{path}, headers => [%NAV])
            : send_req(path => "/kanka/callback?return=$o{return}");

    my $loc = $r->header('location') // '';
    my ($bind) = map { /^kanka_session_login=([^;]+)/ ? $1 : () }
                 $r->header_values('set-cookie');

    return unless $r->{status} == 302 && $loc =~ $login_re && $bind;

    my $back = $t->http(url => $loc);
    my $callback = $back->header('location') // '';
    my $q = parse_query($callback);

    keep(code => $q->{code});

    return unless $q->{code} && $q->{state};

    return { state => parse_query($loc)->{state}, code => $q->{code},
             bind => $bind };
}


sub finish {
    my ($l, %o) = @_;

    return send_req(method => $o{method},
                    path => "/kanka/callback?code=$l->{code}&state=$l->{state}",
                    headers => [Cookie => "kanka_session_login=$l->{bind}"]);
}


# a session for the rows that need one: its cookie value and its token

sub session {
    my ($path) = @_;

    my $l = start(path => $path) or return;
    my $r = finish($l);
    my $cookie = session_cookie($r) or return;

    $cookie =~ s/^kanka_session=//;

    $r = send_req(path => $path,
                  headers => [%NAV, Cookie => "kanka_session=$cookie"]);

    my ($token) = $r->{body} =~ /auth=Bearer (\S+)/ or return;

    return { cookie => $cookie, token => $token };
}


# checks a response against a row

sub check {
    my ($name, $row, $r, %c) = @_;

    is($r->{status}, $row->{status}, "$name: $row->{status}")
        or diag($r->{error} // substr($r->{body}, 0, 200));

    if (defined(my $want = $row->{location})) {
        my $loc = $r->header('location') // '';

        if ($want eq 'login') {
            like($loc, $login_re, "$name: a new login");

        } else {
            my $path = $want eq 'return' ? $c{return} : $want;
            is($loc, "$base$path", "$name: to $path");
        }
    }

    if ($row->{body}) {
        like($r->{body}, $row->{body}, "$name: body");
    }

    if ($row->{log}) {
        like($t->log_since($c{from}), $row->{log}, "$name: logged");
    }

    if ($row->{after}) {
        $row->{after}->($r, $name);
    }
}


sub expand {
    my ($s, $v) = @_;

    return $s unless defined $s;

    $s =~ s/\{(\w+)\}/exists $v->{$1} ? $v->{$1}
                                     : die "no value for {$1}\n"/ge;

    return $s;
}


my $S = session('/s/first');

unless (ok($S, 'a session to start from')) {
    $t->stop();
    done_testing();
    exit;
}


# the callback

my $row_no = 0;

sub no_token_call {
    my ($r, $name) = @_;

    my @calls = $kanka->requests(path => '/oauth/token');

    is(scalar @calls, 0, "$name: no call to Kanka");
}

sub no_injection {
    my ($r, $name) = @_;

    my ($req) = $kanka->requests(path => '/oauth/token');
    my $form = parse_query($req->{body} // '');

    unlike($req->{head} // '', qr/X-Injected/i, "$name: no header injected");
    unlike($req->{body} // '', qr/[\r\n]/, "$name: the body is one line");
    is($form->{client_id}, '42', "$name: client_id untouched");
    is($form->{grant_type}, 'authorization_code', "$name: grant untouched");
}

my @callback = (
    { name => 'no query', query => '', cookie => undef,
      status => 302, location => 'login' },
    { name => 'code and state', query => 'code={CODE}&state={STATE}',
      status => 302, location => 'return' },
    { name => 'state first', query => 'state={STATE}&code={CODE}',
      status => 302, location => 'return' },
    { name => 'no state', query => 'code={CODE}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'no code', query => 'state={STATE}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'empty code', query => 'state={STATE}&code=',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'empty state', query => 'state=&code={CODE}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'bare state', query => 'state&code={CODE}',
      status => 302, location => 'login' },
    { name => 'bare code', query => 'state={STATE}&code',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'forged state, then the real one',
      query => 'state={FORGED}&state={STATE}&code={CODE}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'real state, then a forged one',
      query => 'state={STATE}&state={FORGED}&code={CODE}',
      status => 302, location => 'return' },
    { name => 'real code, then a forged one',
      query => 'state={STATE}&code={CODE}&code=def50200forged',
      status => 302, location => 'return' },
    { name => 'forged code, then the real one',
      query => 'state={STATE}&code=def50200forged&code={CODE}',
      status => 502, log => qr/token endpoint answered 400 "invalid_grant"/ },
    { name => 'state percent-encoded', query => 'state={STATE_PCT}&code={CODE}',
      status => 302, location => 'return' },
    { name => 'code percent-encoded', query => 'state={STATE}&code={CODE_PCT}',
      status => 302, location => 'return' },
    { name => 'state and %00', query => 'state={STATE}%00&code={CODE}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'state cut by %00', query => 'state={STATE_42}%00&code={CODE}',
      status => 302, location => 'login' },
    { name => 'state one character short',
      query => 'state={STATE_42}&code={CODE}',
      status => 302, location => 'login' },
    { name => 'state one character long', query => 'state={STATE}A&code={CODE}',
      status => 302, location => 'login' },
    { name => 'state with a "+"', query => 'state=+{STATE_TAIL}&code={CODE}',
      status => 302, location => 'login' },
    { name => 'state with a "!"', query => 'state=!{STATE_TAIL}&code={CODE}',
      status => 302, location => 'login' },
    { name => 'a forged state of the right form',
      query => 'state={FORGED}&code={CODE}',
      status => 302, location => 'login',
      log => qr/\[info\].*unknown, used or expired state/ },
    { name => 'code with %00', query => 'state={STATE}&code=%00{CODE}',
      status => 502, log => qr/token endpoint answered 400 "invalid_grant"/ },
    { name => 'code with CR LF',
      query => 'state={STATE}&code={CODE}%0D%0AX-Injected:%201',
      status => 502, after => \&no_injection },
    { name => 'code with form syntax',
      query => 'state={STATE}&code={CODE}%26client_id%3D7%26grant_type%3D'
               . 'password',
      status => 502, after => \&no_injection },
    { name => 'code of 4096 bytes', query => 'state={STATE}&code=' . 'A' x 4096,
      status => 502, log => qr/token endpoint answered 400 "invalid_grant"/ },
    { name => 'code of 4097 bytes', query => 'state={STATE}&code=' . 'A' x 4097,
      status => 302, location => 'login', after => \&no_token_call,
      log => qr/\[info\].*callback without a usable code/ },
    { name => 'code of 4096 escaped bytes',
      query => 'state={STATE}&code=' . '%41' x 4096,
      status => 502, log => qr/token endpoint answered 400 "invalid_grant"/ },
    { name => 'code of 30000 bytes',
      query => 'state={STATE}&code=' . 'A' x 30000,
      status => 302, location => 'login', after => \&no_token_call },
    { name => '60K of other arguments first',
      query => 'x=' . 'j' x 60000 . '&state={STATE}&code={CODE}',
      status => 302, location => 'return' },
    { name => 'error=access_denied',
      query => 'state={STATE}&error=access_denied&error_description=No',
      status => 403, body => qr/Access was denied at Kanka/,
      after => \&no_token_call },
    { name => 'error and a code',
      query => 'state={STATE}&code={CODE}&error=access_denied',
      status => 403, after => \&no_token_call },
    { name => 'error=access_denied escaped',
      query => 'state={STATE}&error=access%5Fdenied', status => 403 },
    { name => 'error=server_error', query => 'state={STATE}&error=server_error',
      status => 502,
      log => qr/\[error\].*Kanka refused the authorization: "server_error"/ },
    { name => 'empty error', query => 'state={STATE}&error=',
      status => 502, log => qr/Kanka refused the authorization: ""/ },
    { name => 'error in capitals', query => 'state={STATE}&error=ACCESS_DENIED',
      status => 502 },
    { name => 'error with CR LF',
      query => 'state={STATE}&error=x%0D%0AX-Injected:%201',
      status => 502,
      log => qr/Kanka refused the authorization: "x\?\?X-Injected: 1"/ },
    { name => 'error of 10000 bytes',
      query => 'state={STATE}&error=' . 'e' x 10000,
      status => 502, log => qr/authorization: "e{64}"/ },
    { name => 'error without a state', query => 'error=access_denied',
      cookie => undef, status => 302, location => 'login' },
    { name => 'error with a forged state',
      query => 'state={FORGED}&error=access_denied',
      status => 302, location => 'login' },
    { name => 'no login cookie', query => 'state={STATE}&code={CODE}',
      cookie => undef, status => 302, location => 'login',
      after => \&no_token_call,
      log => qr/\[info\].*issued to another browser/ },
    { name => 'a forged login cookie', query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login={FORGED}',
      status => 302, location => 'login', after => \&no_token_call },
    { name => 'the login cookie quoted', query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login="{BIND}"',
      status => 302, location => 'return' },
    { name => 'the login cookie one character short',
      query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login={BIND_42}',
      status => 302, location => 'login' },
    { name => 'a forged login cookie, then the real one',
      query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login={FORGED}; kanka_session_login={BIND}',
      status => 302, location => 'return' },
    { name => 'the real login cookie, then a forged one',
      query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login={BIND}; kanka_session_login={FORGED}',
      status => 302, location => 'return' },
    { name => 'the login cookie in a second Cookie header',
      query => 'state={STATE}&code={CODE}',
      cookie => ['a=1; b=2', 'kanka_session_login={BIND}'],
      status => 302, location => 'return' },
    { name => 'a session id as the login cookie',
      query => 'state={STATE}&code={CODE}',
      cookie => 'kanka_session_login={SESSION}',
      status => 302, location => 'login' },
    { name => 'the login cookie under the session\'s name',
      query => 'state={STATE}&code={CODE}', cookie => 'kanka_session={BIND}',
      status => 302, location => 'login' },
    { name => 'POST', method => 'POST', query => 'state={STATE}&code={CODE}',
      status => 405, after => \&no_token_call },
    { name => 'PUT', method => 'PUT', query => 'state={STATE}&code={CODE}',
      status => 405 },
    { name => 'DELETE', method => 'DELETE',
      query => 'state={STATE}&code={CODE}', status => 405 },
    { name => 'HEAD', method => 'HEAD', query => 'state={STATE}&code={CODE}',
      status => 302, location => 'return' },
    { name => 'a return argument beside the state',
      query => 'state={STATE}&code={CODE}&return=%2F%2Fevil.example',
      status => 302, location => 'return' },
);

for my $row (@callback) {
    my $name = "callback, $row->{name}";
    my $return = '/cb/' . ++$row_no;
    my $cookie = exists $row->{cookie} ? $row->{cookie}
                                       : 'kanka_session_login={BIND}';
    my @cookies = grep { defined } ref $cookie ? @$cookie : $cookie;

    my %v = (FORGED => random_id(), SESSION => $S->{cookie});

    keep(forged => $v{FORGED});

    if (join(' ', $row->{query}, @cookies) =~ /\{(?:STATE|CODE|BIND)/) {
        my $l = start(return => $return);

        ok($l, "$name: a login to begin with") or next;

        %v = (%v,
              STATE => $l->{state}, STATE_PCT => escape_all($l->{state}),
              STATE_42 => substr($l->{state}, 0, 42),
              STATE_TAIL => substr($l->{state}, 1),
              CODE => $l->{code}, CODE_PCT => escape_all($l->{code}),
              BIND => $l->{bind}, BIND_42 => substr($l->{bind}, 0, 42));
    }

    harvest();
    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve', rate_limit => 0, record => 50);

    my $query = expand($row->{query}, \%v);
    my $from = length $t->error_log();

    my $r = send_req(method => $row->{method},
                     path => '/kanka/callback'
                             . (length $query ? "?$query" : ''),
                     headers => [map { (Cookie => expand($_, \%v)) }
                                 @cookies]);

    check($name, $row, $r, return => $return, from => $from);

    my $made = session_cookie($r);

    if (($row->{location} // '') eq 'return') {
        ok($made, "$name: a session");
    } else {
        ok(!$made, "$name: no session");
    }
}

# a state serves once

{
    my $l = start(return => '/replayed');
    my $r = finish($l);

    is($r->header('location'), "$base/replayed", 'a state, used');

    $r = finish($l);
    is($r->{status}, 302, 'the same state again: 302');
    like($r->header('location') // '', $login_re,
         'the same state again: login');
    ok(!session_cookie($r), 'the same state again: no session');
}

# a restarted login whose cookie is missing again ends, without a loop

{
    my $l = start(return => '/nocookie');
    my $r = send_req(path => "/kanka/callback?code=$l->{code}"
                             . "&state=$l->{state}");

    like($r->header('location') // '', $login_re, 'no cookie: a new login');

    my $back = $t->http(url => $r->header('location'));
    my $q = parse_query($back->header('location') // '');

    keep(code => $q->{code});

    $r = send_req(path => "/kanka/callback?code=$q->{code}&state=$q->{state}");
    is($r->{status}, 400, 'no cookie twice: 400');
    like($r->{body}, qr/does not keep cookies/, 'no cookie twice: says why');
}

harvest();


# return URLs: the start of a login at the callback, and logout; anything
# but a path on this site becomes "/"

my @returns = (
    # paths on this site pass
    ['a path', '/ok/path', '/ok/path'],
    ['a path with a query, escaped', '%2Fok%3Fx%3D1%26y%3D2', '/ok?x=1&y=2'],
    ['a path of 2048 bytes', '/' . 'a' x 2047, '/' . 'a' x 2047],
    ['an escaped "%"', '/%252F%252Fevil.example', '/%2F%2Fevil.example'],
    ['";", "@" and "~"', '/a;b@c~d', '/a;b@c~d'],

    # anything else does not
    ['//host/', '//evil.example/', '/'],
    ['//host', '//evil.example', '/'],
    ['///host', '///evil.example', '/'],
    ['/\\host', '/\\evil.example/', '/'],
    ['\\/host', '\\/evil.example', '/'],
    ['/%5Chost', '/%5Cevil.example', '/'],
    ['%5C%5Chost', '%5C%5Cevil.example', '/'],
    ['/%2F%2Fhost', '/%2F%2Fevil.example', '/'],
    ['/%2f%2fhost', '/%2f%2fevil.example', '/'],
    ['%2F%2Fhost', '%2F%2Fevil.example', '/'],
    ['/%2Fhost', '/%2Fevil.example', '/'],
    ['%2F%5Chost', '%2F%5Cevil.example', '/'],
    ['//%65vil', '//%65vil.example', '/'],
    ['a tab between slashes', '/%09/evil.example', '/'],
    ['a tab inside', '/x%09y', '/'],
    ['%0d%0a and a header', '/%0d%0aSet-Cookie:%20x=1', '/'],
    ['%0D%0A first', '%0D%0ALocation:%20http://evil.example', '/'],
    ['%0a', '/x%0Ay', '/'],
    ['%0d', '/x%0Dy', '/'],
    ['%00', '/x%00y', '/'],
    ['%7f', '/x%7Fy', '/'],
    ['non-ASCII', '/caf%C3%A9', '/'],
    ['a space', '/a%20b', '/'],
    ['a "+" as a space', '/a+b', '/'],
    ['a space first', '%20/x', '/'],
    ['javascript:', 'javascript:alert(1)', '/'],
    ['javascript: escaped', 'javascript%3Aalert%281%29', '/'],
    ['javascript: with a tab', 'java%09script:alert(1)', '/'],
    ['data:', 'data:text/html,%3Cscript%3Ealert(1)%3C/script%3E', '/'],
    ['an https URL', 'https://evil.example/', '/'],
    ['an http URL escaped', 'http%3A%2F%2Fevil.example%2F', '/'],
    ['a relative path', 'ok/path', '/'],
    ['a dot path', './ok', '/'],
    ['a query alone', '%3Fx%3D1', '/'],
    ['a fragment alone', '%23top', '/'],
    ['empty', '', '/'],
    ['2049 bytes', '/' . 'a' x 2048, '/'],
    ['2049 escaped bytes', '/' . '%61' x 2048, '/'],
    ['10000 bytes', '/' . 'a' x 9999, '/'],
);

for my $row (@returns) {
    my ($what, $raw, $want) = @$row;
    my $name = "return URL, $what";

    my $l = start(return => $raw);

    if (ok($l, "$name: the login starts")) {
        my $r = finish($l);

        is($r->{status}, 302, "$name: 302 after the login");
        is($r->header('location'), "$base$want", "$name: to $want");
    }

    my $r = send_req(path => "/kanka/logout?return=$raw");

    is($r->{status}, 302, "$name: logout, 302");
    is($r->header('location'), "$base$want", "$name: logout to $want");
}

# the URL a navigation asked for is checked as it is, unescaped

for my $row (
    ['//host', '//evil.example/x', '/'],
    ['/\\host', '/\\evil.example/x', '/'],
    ['3000 bytes', '/' . 'p' x 2999, '/'],
    ['a query', '/ok/gated?x=1&y=%20z', '/ok/gated?x=1&y=%20z'],
    ['escaped CR LF', '/x%0d%0aSet-Cookie:%20a=1', '/x%0d%0aSet-Cookie:%20a=1'],
)
{
    my ($what, $path, $want) = @$row;
    my $name = "return URL of a navigation, $what";

    my $l = start(path => $path);

    ok($l, "$name: the login starts") or next;

    my $r = finish($l);

    is($r->{status}, 302, "$name: 302");
    is($r->header('location'), "$base$want", "$name: to $want");
}

harvest();


# request headers: who is sent to Kanka, who gets 401, and what reaches
# the upstream

my $api = qr{^\{"error":"unauthorized",.*"login_url":"/kanka/callback\?return=};
my $own = qr/auth=Bearer \Q$S->{token}\E\n/;

my @headers = (
    # the Accept header
    { name => 'Accept text/html', headers => [Accept => 'text/html'],
      status => 302, location => 'login' },
    { name => 'Accept TEXT/HTML', headers => [Accept => 'TEXT/HTML'],
      status => 302, location => 'login' },
    { name => 'a browser\'s Accept',
      headers => [Accept => 'text/html,application/xhtml+xml,application/'
                            . 'xml;q=0.9,*/*;q=0.8'],
      status => 302, location => 'login' },
    { name => 'Accept */*', headers => [Accept => '*/*'],
      status => 401, body => $api },
    { name => 'Accept application/json',
      headers => [Accept => 'application/json'], status => 401, body => $api },
    { name => 'no Accept', headers => [], status => 401, body => $api },
    { name => 'empty Accept', headers => [Accept => ''], status => 401 },
    { name => 'Accept text/htm', headers => [Accept => 'text/htm'],
      status => 401 },
    { name => 'Accept application/xhtml+xml alone',
      headers => [Accept => 'application/xhtml+xml'], status => 401 },
    { name => 'Accept text/*', headers => [Accept => 'text/plain, text/*'],
      status => 401 },
    { name => 'two Accept headers, the second with HTML',
      headers => [Accept => 'application/json', Accept => 'text/html'],
      status => 302, location => 'login' },
    { name => 'Accept of 30K, HTML at the end',
      headers => [Accept => 'x/y, ' x 6000 . 'text/html'],
      status => 302, location => 'login' },
    { name => 'Accept with bytes above 0x7f',
      headers => [Accept => "text/html\x80\xfe\xff"],
      status => 302, location => 'login' },

    # Sec-Fetch-Mode
    { name => 'Sec-Fetch-Mode navigate', headers => [%NAV],
      status => 302, location => 'login' },
    { name => 'Sec-Fetch-Mode NAVIGATE',
      headers => [Accept => 'text/html', 'Sec-Fetch-Mode' => 'NAVIGATE'],
      status => 302, location => 'login' },
    map({
        +{ name => "Sec-Fetch-Mode \"$_\"",
          headers => [Accept => 'text/html', 'Sec-Fetch-Mode' => $_],
          status => 401, body => $api }
    } 'cors', 'no-cors', 'same-origin', 'websocket', '', 'navigated',
      'navigate, cors', 'navigat'),
    { name => 'two Sec-Fetch-Mode headers, navigate and cors',
      headers => [Accept => 'text/html', 'Sec-Fetch-Mode' => 'navigate',
                  'Sec-Fetch-Mode' => 'cors'],
      status => 401 },

    # X-Requested-With
    { name => 'X-Requested-With XMLHttpRequest',
      headers => [%NAV, 'X-Requested-With' => 'XMLHttpRequest'],
      status => 401, body => $api },
    { name => 'X-Requested-With empty',
      headers => [%NAV, 'X-Requested-With' => ''], status => 401 },
    { name => 'x-requested-with in lower case',
      headers => [%NAV, 'x-requested-with' => 'anything'], status => 401 },

    # methods
    map({
        +{ name => "$_ wanting HTML", method => $_, headers => [%NAV],
          status => 401, body => $api }
    } qw(POST PUT DELETE PATCH OPTIONS)),
    { name => 'HEAD wanting HTML', method => 'HEAD', headers => [%NAV],
      status => 302, location => 'login' },

    # Authorization without a session opens nothing
    { name => 'a foreign bearer token, navigation',
      headers => [%NAV, Authorization => 'Bearer ' . random_word(40)],
      status => 302, location => 'login' },
    { name => 'a foreign bearer token, API client',
      headers => [Accept => 'application/json',
                  Authorization => 'Bearer ' . random_word(40)],
      status => 401, body => $api },
    { name => 'Basic credentials, API client',
      headers => [Accept => 'application/json',
                  Authorization => 'Basic dXNlcjpwYXNz'],
      status => 401 },

    # with a session, the upstream gets the session's token whatever the
    # client sent
    map({
        my ($what, $value) = @$_;
        +{ name => "a session and Authorization: $what",
          headers => [%NAV, Cookie => "kanka_session=$S->{cookie}",
                      Authorization => $value],
          status => 200, body => $own }
    } ['a forged bearer token', 'Bearer ' . random_word(60)],
      ['Basic credentials', 'Basic dXNlcjpwYXNz'],
      ['"Bearer" alone', 'Bearer'],
      ['empty', ''],
      ['30K of junk', 'Bearer ' . random_word(30000)],
      ['bytes above 0x7f', "Bearer \x80\xfe\xff\x81"],
      ['a quote and a comma', 'Bearer a"b,c=d']),
    { name => 'a session and two Authorization headers (nginx refuses)',
      headers => [%NAV, Cookie => "kanka_session=$S->{cookie}",
                  Authorization => 'Bearer a', Authorization => 'Bearer b'],
      status => 400 },

    # the host the redirect URI is built from
    map({
        my ($what, $host) = @$_;
        +{ name => "Host $what", headers => [%NAV, Host => $host],
          status => 302, location => 'login',
          after => sub {
              my ($r, $name) = @_;
              my $loc = $r->header('location') // '';
              is(parse_query($loc)->{redirect_uri},
                 "http://$host/kanka/callback", "$name: in the redirect URI");
              unlike($loc, qr/[\s"<>\\]/, "$name: escaped there");
          } }
    } ['of another site', 'evil.example'],
      ['with a port', 'evil.example:8443'],
      ['in capitals', 'EVIL.EXAMPLE'],
      ['with a trailing dot', 'evil.example.'],
      ['an IPv6 literal', '[::1]:8080'],
      ['of 3000 bytes', 'h' x 3000 . '.example'],
      ['with a "\\"', 'evil.example\\x']),
    { name => 'Host with a "/" (nginx refuses)',
      headers => [%NAV, Host => 'evil.example/x'], status => 400 },
    { name => 'two Host headers (nginx refuses)',
      headers => [%NAV, Host => 'a.example', Host => 'b.example'],
      status => 400 },
    # no Host and no server_name: no redirect URI can be built
    { name => 'HTTP/1.0 without Host',
      raw => "GET /g HTTP/1.0\r\nAccept: text/html\r\n\r\n",
      status => 400 },
);

for my $row (@headers) {
    my $name = "headers, $row->{name}";
    my $from = length $t->error_log();
    my $path = '/g/' . ++$row_no;

    my $r = send_req(method => $row->{method}, path => $path,
                     headers => $row->{headers}, raw => $row->{raw});

    check($name, $row, $r, from => $from);

    if ($row->{status} == 401) {
        like($r->header('www-authenticate') // '', qr/^Bearer realm="kanka"/,
             "$name: WWW-Authenticate");
    }
}


# session cookies: only the exact id a login made opens a session

my $id = $S->{cookie};
my @b64 = ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_');
my %b64 = map { $b64[$_] => $_ } 0 .. 63;

# the same 32 bytes spelled another way: the last character carries two
# bits too many, which a decoder that ignores them would accept
my $alias = substr($id, 0, 42) . $b64[ $b64{ substr $id, 42 } | 1 ];

# the first half of the real id and the second half of another
my $selector = substr($id, 0, 22) . substr(random_id(), 22);

# one bit of the second half flipped
my $flipped = substr($id, 0, 30) . $b64[ $b64{ substr $id, 30, 1 } ^ 1 ]
              . substr($id, 31);

my $many = join '', map { "c$_=" . 'v' x 30 . '; ' } 1 .. 1200;

keep(forged => $selector, $flipped, $alias);

my @cookie_rows = (
    ['the session', "kanka_session=$id", 200],
    ['the session quoted', qq{kanka_session="$id"}, 200],
    ['the session and spaces after it', "kanka_session=$id   ", 200],
    ['the session after a tab', "a=1;\tkanka_session=$id", 200],
    ['the session, then a forged one',
     'kanka_session=' . $id . '; kanka_session=' . random_id(), 200],
    ['a forged one, then the session',
     'kanka_session=' . random_id() . "; kanka_session=$id", 200],
    ['two Cookie headers, a malformed one first',
     ['kanka_session=' . random_word(20), "kanka_session=$id"], 200],
    # a cookie of a parent domain may come first: the session still counts
    ['two Cookie headers, a forged one first',
     ['kanka_session=' . random_id(), "kanka_session=$id"], 200],
    ['a malformed one, then the session',
     'kanka_session=' . random_word(20) . "; kanka_session=$id", 200],
    ['40K of cookies, the session last', $many . "kanka_session=$id", 200],
    ['40K of cookies, no session', $many . 'z=1', 302],
    ['42 characters', 'kanka_session=' . substr($id, 0, 42), 302],
    ['44 characters', "kanka_session=${id}A", 302],
    ['a "=" for the last character',
     'kanka_session=' . substr($id, 0, 42) . '=', 302],
    ['a "+" first', 'kanka_session=+' . substr($id, 1), 302],
    ['a "/" first', 'kanka_session=/' . substr($id, 1), 302],
    ['percent-encoded', 'kanka_session=' . escape_all($id), 302],
    ['the last character not canonical', "kanka_session=$alias", 302],
    ['the first half right, the rest not', "kanka_session=$selector", 302],
    ['the first 8 characters right: the same bucket',
     'kanka_session=' . substr($id, 0, 8) . substr(random_id(), 8), 302],
    ['one bit of the second half flipped', "kanka_session=$flipped", 302],
    ['a forged id of the right form', 'kanka_session=' . random_id(), 302],
    ['one quote only', qq{kanka_session="$id}, 302],
    ['empty', 'kanka_session=', 302],
    ['the name alone', 'kanka_session', 302],
    ['the name in capitals', "KANKA_SESSION=$id", 302],
    ['a longer name', "xkanka_session=$id", 302],
    ['a name with a suffix', "kanka_sessionx=$id", 302],
    ['a space before "="', "kanka_session =$id", 302],
    ['only semicolons', ';;;;;', 302],
    ['only "="', '=', 302],
    ['a value of 60000 bytes', 'kanka_session=' . 'A' x 60000, 302],
    ['the login cookie\'s name', "kanka_session_login=$id", 302],
);

for my $c (@cookie_rows) {
    my ($what, $cookie, $status) = @$c;
    my $name = "cookie, $what";
    my @cookies = ref $cookie ? @$cookie : ($cookie);

    keep(forged => map { /kanka_session=([A-Za-z0-9_-]{43})/g } @cookies);

    my $r = send_req(path => '/c/' . ++$row_no,
                     headers => [%NAV, map { (Cookie => $_) } @cookies]);

    check($name, { status => $status,
                   location => $status == 302 ? 'login' : undef,
                   body => $status == 200 ? $own : undef }, $r);

    next if $status == 200;

    # an API client gets 401 for the same cookie
    $r = send_req(path => '/c/' . ++$row_no,
                  headers => [Accept => 'application/json',
                              map { (Cookie => $_) } @cookies]);
    is($r->{status}, 401, "$name: 401 for an API client");
}

# a logout with a wrong verifier ends nothing

{
    my $r = send_req(path => '/kanka/logout',
                     headers => [Cookie => "kanka_session=$selector"]);
    is($r->{status}, 302, 'logout with a forged verifier: 302');

    $r = send_req(path => '/c/after',
                  headers => [%NAV, Cookie => "kanka_session=$id"]);
    is($r->{status}, 200, 'logout with a forged verifier: the session lives');
}

# an ended session stays ended

{
    my $s = session('/s/second');

    ok($s, 'a second session');

    my $r = send_req(path => '/kanka/logout',
                     headers => [Cookie => "kanka_session=$s->{cookie}"]);
    ok((grep { /^kanka_session=; Max-Age=0/ } $r->header_values('set-cookie')),
       'logout clears the cookie');

    $r = send_req(path => '/c/ended',
                  headers => [%NAV, Cookie => "kanka_session=$s->{cookie}"]);
    is($r->{status}, 302, 'the ended session: 302');
}


# what the token endpoint answers

my $VALID = '{"token_type":"Bearer","expires_in":3600,'
            . '"access_token":"{AT}","refresh_token":"{RT}"}';

sub answer {
    my ($name, $body, $status, %o) = @_;

    return {
        name     => $name,
        status   => $status,
        pad_to   => $o{pad_to},
        log      => $o{log},
        token    => $o{token},
        settings => {
            token_status       => $o{http} // 200,
            token_content_type => $o{type} // 'application/json',
            token_body         => $body,
            %{ $o{settings} || {} },
        },
    };
}

sub stand_in {
    my ($name, $settings, $status, %o) = @_;

    return { name => $name, settings => $settings, status => $status, %o };
}

my $bad = qr/\[error\].*kanka_oauth: bad answer from token endpoint: /;
my $type = qr/${bad}field of a wrong type in answer/;
my $json = qr/${bad}answer is not valid JSON/;
my $object = qr/${bad}answer is not a JSON object/;
my $chars = qr/${bad}access token has characters a bearer token cannot/;
my $dup = qr/${bad}duplicate field in answer/;
my $deep = qr/${bad}answer is nested too deeply/;

my $gz;
gzip(\'{"token_type":"Bearer","access_token":"abcdef"}' => \$gz);

my $nest = sub {
    my ($n, $open, $close) = @_;
    return '{"x":' . $open x $n . $close x $n
           . ',"token_type":"Bearer","access_token":"{AT}"}';
};

my @answers = (
    # controls: answers a login takes
    stand_in('Kanka\'s own answer', {}, 302, token => 'any'),
    answer('the same, canned', $VALID, 302, token => '{AT}'),
    answer('token_type in lower case',
           '{"token_type":"bearer","access_token":"{AT}"}', 302,
           token => '{AT}'),
    answer('no refresh_token', '{"token_type":"Bearer","access_token":"{AT}"}',
           302, token => '{AT}'),
    answer('expires_in null', '{"token_type":"Bearer","expires_in":null,'
           . '"access_token":"{AT}"}', 302, token => '{AT}'),
    answer('expires_in 0', '{"token_type":"Bearer","expires_in":0,'
           . '"access_token":"{AT}","refresh_token":"{RT}"}', 302,
           token => 'any'),
    answer('expires_in the largest integer', '{"token_type":"Bearer",'
           . '"expires_in":9223372036854775807,"access_token":"{AT}"}', 302,
           token => '{AT}'),
    answer('refresh_token null', '{"token_type":"Bearer","access_token":"{AT}",'
           . '"refresh_token":null}', 302, token => '{AT}'),
    answer('a refresh token of 2048 bytes', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":"' . 'r' x 2048 . '"}',
           302, token => '{AT}'),
    answer('the access token escaped', '{"token_type":"Bearer",'
           . '"access_token":"{AT_ESC}"}', 302, token => '{AT}'),
    answer('an access_token nested deeper too', '{"x":{"access_token":"zz"},'
           . '"token_type":"Bearer","access_token":"{AT}"}', 302,
           token => '{AT}'),
    answer('an unknown key twice', '{"x":1,"x":2,"token_type":"Bearer",'
           . '"access_token":"{AT}"}', 302, token => '{AT}'),
    answer('white space after', "$VALID\n \r\n\t", 302, token => '{AT}'),
    answer('16 levels', $nest->(15, '[', ']'), 302, token => '{AT}'),
    answer('a field of 60000 bytes', '{"pad":"' . 'p' x 60000 . '",'
           . '"token_type":"Bearer","access_token":"{AT}"}', 302,
           token => '{AT}'),
    answer('exactly 64K', $VALID, 302, token => '{AT}', pad_to => 65536),
    answer('text/plain', $VALID, 302, type => 'text/plain', token => '{AT}'),
    answer('a response header of 20K', $VALID, 302, token => '{AT}',
           settings => { token_headers => { 'X-Pad' => 'p' x 20000 } }),
    stand_in('an access token of 4096 bytes',
             { token_access_token => 'T' . random_word(4095) }, 302,
             token => 'set'),
    stand_in('an access token ending in "=="',
             { token_access_token => random_word(40) . '==' }, 302,
             token => 'set'),

    # wrong types
    answer('access_token a number',
           '{"token_type":"Bearer","access_token":12345}', 502, log => $type),
    answer('access_token true',
           '{"token_type":"Bearer","access_token":true}', 502, log => $type),
    answer('access_token an object',
           '{"token_type":"Bearer","access_token":{"v":"{AT}"}}', 502,
           log => $type),
    answer('access_token an array',
           '{"token_type":"Bearer","access_token":["{AT}"]}', 502,
           log => $type),
    answer('access_token null', '{"token_type":"Bearer","access_token":null}',
           502, log => qr/${bad}no "access_token" in answer/),
    answer('token_type a number', '{"token_type":1,"access_token":"{AT}"}',
           502, log => $type),
    answer('expires_in a string', '{"token_type":"Bearer","expires_in":"3600",'
           . '"access_token":"{AT}"}', 502, log => $type),
    answer('expires_in 1.5', '{"token_type":"Bearer","expires_in":1.5,'
           . '"access_token":"{AT}"}', 502, log => $type),
    answer('expires_in 1e3', '{"token_type":"Bearer","expires_in":1e3,'
           . '"access_token":"{AT}"}', 502, log => $type),
    answer('expires_in true', '{"token_type":"Bearer","expires_in":true,'
           . '"access_token":"{AT}"}', 502, log => $type),
    answer('refresh_token a number', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":7}', 502, log => $type),
    answer('an error of a wrong type', '{"error":7}', 502, http => 400,
           log => qr/token endpoint answered 400 while/),

    # missing or refused fields
    answer('no access_token', '{"token_type":"Bearer","expires_in":3600}', 502,
           log => qr/${bad}no "access_token" in answer/),
    answer('an empty object', '{}', 502,
           log => qr/${bad}no "access_token" in answer/),
    answer('access_token only deeper down',
           '{"x":{"token_type":"Bearer","access_token":"{AT}"}}', 502,
           log => qr/${bad}no "access_token" in answer/),
    answer('no token_type', '{"access_token":"{AT}"}', 502,
           log => qr/${bad}"token_type" is not "Bearer"/),
    answer('token_type MAC', '{"token_type":"MAC","access_token":"{AT}"}', 502,
           log => qr/"token_type" is not "Bearer"/),
    answer('token_type "Bearer " with a space',
           '{"token_type":"Bearer ","access_token":"{AT}"}', 502,
           log => qr/"token_type" is not "Bearer"/),
    answer('token_type "Bearer" and \u0000',
           '{"token_type":"Bearer\u0000","access_token":"{AT}"}', 502,
           log => qr/"token_type" is not "Bearer"/),
    answer('expires_in -1', '{"token_type":"Bearer","expires_in":-1,'
           . '"access_token":"{AT}"}', 502,
           log => qr/${bad}negative "expires_in"/),
    answer('expires_in -9223372036854775807', '{"token_type":"Bearer",'
           . '"expires_in":-9223372036854775807,"access_token":"{AT}"}', 502,
           log => qr/${bad}negative "expires_in"/),
    answer('expires_in beyond 64 bits', '{"token_type":"Bearer",'
           . '"expires_in":99999999999999999999,"access_token":"{AT}"}', 502,
           log => $json),
    answer('a refresh token of 2049 bytes', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":"' . 'r' x 2049 . '"}',
           502, log => qr/${bad}refresh token is too long/),
    answer('a refresh token with \u0001', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":"{RT}\u0001"}', 502,
           log => qr/${bad}refresh token has control characters/),
    answer('a refresh token with a space', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":"{RT} x"}', 502,
           log => qr/${bad}refresh token has control characters/),
    answer('a 200 with an error', '{"error":"invalid_grant"}', 502,
           log => qr/token endpoint answered 200 "invalid_grant"/),
    answer('an error with CR LF', '{"error":"x\r\nX-Injected: 1"}', 502,
           http => 400,
           log => qr/token endpoint answered 400 "x\?\?X-Injected: 1"/),
    answer('an error of 10000 bytes', '{"error":"' . 'e' x 10000 . '"}', 502,
           http => 400, log => qr/token endpoint answered 400 "e{128}" while/),

    # access tokens a header cannot carry, as Kanka itself would send them
    map({
        my ($what, $token) = @$_;
        stand_in("an access token with $what",
                 { token_access_token => $token }, 502, log => $chars)
    } ['CR LF', "abc\r\nX-Injected: 1"], ['LF', "abc\ndef"],
      ['CR', "abc\rdef"], ['a space', 'abc def'], ['a tab', "abc\tdef"],
      ['a quote', 'abc"def'], ['a comma', 'abc,def'],
      ['"=" inside', 'abc=def'], ['"=" first', '=abc'],
      ['a backslash', 'abc\\def'], ['"é"', "caf\x{e9}"]),
    answer('an access token with \u0000', '{"token_type":"Bearer",'
           . '"access_token":"{AT}\u0000x"}', 502, log => $chars),
    answer('an empty access token', '{"token_type":"Bearer",'
           . '"access_token":""}', 502, log => $chars),
    stand_in('an access token of 4097 bytes',
             { token_access_token => random_word(4097) }, 502,
             log => qr/${bad}access token is too long/),
    answer('an access token of 60000 bytes', '{"token_type":"Bearer",'
           . '"access_token":"' . 'a' x 60000 . '"}', 502,
           log => qr/${bad}access token is too long/),

    # fields twice
    answer('access_token twice', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","access_token":"{AT2}"}', 502, log => $dup),
    answer('access_token twice, once escaped', '{"token_type":"Bearer",'
           . '"access_token":"zz","access\u005ftoken":"{AT}"}', 502,
           log => $dup),
    answer('token_type twice', '{"token_type":"Bearer","token_type":"MAC",'
           . '"access_token":"{AT}"}', 502, log => $dup),
    answer('expires_in twice', '{"token_type":"Bearer","expires_in":1,'
           . '"expires_in":2,"access_token":"{AT}"}', 502, log => $dup),
    answer('refresh_token twice', '{"token_type":"Bearer",'
           . '"access_token":"{AT}","refresh_token":"{RT}",'
           . '"refresh_token":"{RT}"}', 502, log => $dup),
    answer('error twice', '{"error":"a","error":"b"}', 502, http => 400,
           log => qr/token endpoint answered 400 while/),

    # not an object
    answer('an array', '[{"token_type":"Bearer","access_token":"{AT}"}]', 502,
           log => $object),
    answer('a string', '"{AT}"', 502, log => $object),
    answer('a number', '42', 502, log => $object),
    answer('null', 'null', 502, log => $object),
    answer('true', 'true', 502, log => $object),
    answer('two objects', "$VALID$VALID", 502, log => $json),
    answer('an empty body', '', 502, log => $json),
    answer('white space alone', " \n\t ", 502, log => $json),

    # not JSON
    answer('a byte order mark', "\x{feff}$VALID", 502, log => $json),
    answer('trailing garbage', "$VALID xyz", 502, log => $json),
    answer('a trailing comma', '{"token_type":"Bearer","access_token":"{AT}",}',
           502, log => $json),
    answer('a comment', "/* x */$VALID", 502, log => $json),
    answer('single quotes', q{{'token_type':'Bearer','access_token':'{AT}'}},
           502, log => $json),
    answer('cut short', substr($VALID, 0, 40), 502, log => $json),
    answer('gzip bytes', "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" . 'z' x 40,
           502, log => $json),
    answer('gzip with Content-Encoding', $gz, 502, log => $bad,
           settings => { token_headers => { 'Content-Encoding' => 'gzip' } }),
    answer('an HTML page with 200',
           "<!DOCTYPE html>\n<html><body>Server Error</body></html>\n", 502,
           type => 'text/html', log => $json),

    # nesting
    answer('17 levels of arrays', $nest->(16, '[', ']'), 502, log => $deep),
    answer('17 levels of objects',
           '{"token_type":"Bearer","access_token":"{AT}","x":'
           . '{"a":' x 16 . '1' . '}' x 16 . '}', 502, log => $deep),
    answer('10000 levels', '{"x":' . '[' x 10000, 502, log => $deep),

    # size
    answer('64K and a byte', $VALID, 502, pad_to => 65537,
           log => qr/token endpoint sent more than 65536 bytes/),
    answer('a megabyte', '{"x":"' . 'm' x 1_000_000 . '"}', 502,
           log => qr/token endpoint sent more than 65536 bytes/),

    # statuses
    answer('an HTML page with 500', "<html><body>Oops</body></html>\n", 502,
           http => 500, type => 'text/html',
           log => qr/token endpoint answered 500/),
    answer('a 503', 'busy', 502, http => 503, type => 'text/plain',
           settings => { token_headers => { 'Retry-After' => '120' } },
           log => qr/token endpoint answered 503/),
    map({
        my $code = $_;
        answer("a $code with tokens", $VALID, 502, http => $code,
               settings => { token_headers => {
                   Location => "http://127.0.0.1:$port/open" } },
               log => qr/token endpoint answered $code/)
    } 301, 302, 303, 307, 308),
    answer('a 201 with tokens', $VALID, 502, http => 201,
           log => qr/token endpoint answered 201/),
    answer('a 204', '', 502, http => 204,
           log => qr/token endpoint answered 204/),
    stand_in('the connection closed', { token_mode => 'close' }, 502,
             log => qr/\[error\].*token request failed/),
);

# the stand-in applies canned answers to the code exchange alone, so that
# a refresh right after a login gets its own answer

for my $row (@answers) {
    my $name = "token answer, $row->{name}";
    my $return = '/tk/' . ++$row_no;

    harvest();

    $kanka->reset(keep_tokens => 1);

    my %v;

    # tokens Kanka knows, so that whatever else it is asked with them works
    if (grep { /\{(?:AT|RT|AT2|AT_ESC)\}/ } values %{ $row->{settings} }) {
        my $one = $kanka->issue();
        my $two = $kanka->issue();

        %v = (AT => $one->{access_token}, RT => $one->{refresh_token},
              AT2 => $two->{access_token});

        $v{AT_ESC} = sprintf '\\u%04x', ord $v{AT};
        $v{AT_ESC} .= substr $v{AT}, 1;

        keep(token => $one->{access_token}, $two->{access_token});
        keep(refresh => $one->{refresh_token}, $two->{refresh_token});
    }

    my %s;

    for my $k (keys %{ $row->{settings} }) {
        my $v = $row->{settings}{$k};
        $s{$k} = ref $v ? $v : expand($v, \%v);
    }

    if ($row->{pad_to}) {
        $s{token_body} .= ' ' x ($row->{pad_to} - length $s{token_body});
    }

    keep(token => $s{token_access_token});

    $kanka->set(authorize_mode => 'approve', rate_limit => 0, record => 50,
                token_fault_grant => 'authorization_code', %s);

    my $l = start(return => $return);

    ok($l, "$name: the login starts") or next;

    my $from = length $t->error_log();
    my $r = finish($l);

    check($name,
          { %$row, location => $row->{status} == 302 ? 'return' : undef },
          $r, return => $return, from => $from);

    my $cookie = session_cookie($r);

    if ($row->{status} != 302) {
        ok(!$cookie, "$name: no session");
        next;
    }

    $r = send_req(path => $return, headers => [%NAV, Cookie => $cookie]);

    my $want = $row->{token} eq 'set' ? $s{token_access_token}
             : $row->{token} eq 'any' ? undef
             : expand($row->{token}, \%v);

    if (defined $want) {
        like($r->{body}, qr/auth=Bearer \Q$want\E\n/,
             "$name: the token upstream");
    } else {
        like($r->{body}, qr/auth=Bearer \S+\n/, "$name: a token upstream");
    }
}

harvest();
$kanka->reset(keep_tokens => 1);


# after all that

is_deeply([$t->worker_pids()], \@workers, 'the worker that started is alive');

my $log_at_stop = length $t->error_log();

$t->stop_nginx();

unlike($t->error_log(), qr/exited on signal/, 'no worker died on a signal');

cmp_ok(scalar keys %secret, '>', 200, 'secrets collected');

my %kinds;
$kinds{$_}++ for values %secret;

for my $kind (qw(client_secret state challenge code verifier cookie token
                 refresh forged))
{
    ok($kinds{$kind}, "secrets collected: $kind");
}


# the error log as entries: a multi-line dump belongs to the line before

my @entries;

for my $line (split /\n/, $t->error_log()) {
    if ($line =~ m{\A\d{4}/\d\d/\d\d [\d:]{8} \[(\w+)\] }) {
        push @entries, { level => $1, text => $line };

    } elsif (@entries) {
        $entries[-1]{text} .= "\n$line";
    }
}

my @watched = grep { $_->{level} ne 'debug' || $_->{text} =~ /kanka_oauth/ }
              @entries;

cmp_ok(scalar @watched, '>', 500, 'log lines to look through');

# one pass over the log for all secrets: by the lengths they come in

my %by_len;
push @{ $by_len{ length $_ } }, $_ for keys %secret;

my @leaks;

for my $e (@watched) {
    my $text = $e->{text};

    for my $len (keys %by_len) {
        next if $len > length $text;

        for my $s (@{ $by_len{$len} }) {
            next if index($text, $s) < 0;
            push @leaks, "$secret{$s} in: " . substr($text, 0, 300);
        }
    }
}

is(scalar @leaks, 0, 'no secret in a line above debug or of the module')
    or diag(join "\n", @leaks[0 .. ($#leaks > 4 ? 4 : $#leaks)]);

# refresh tokens of Kanka's own making look like its codes; in a log,
# every such string must be a code

my @blobs = grep { ($secret{$_} // '') ne 'code' }
            map { $_->{text} =~ /(def50200[0-9a-f]{16,})/g } @watched;

is(scalar @blobs, 0, 'no refresh token of Kanka\'s in those lines');

$t->stop();

done_testing();
