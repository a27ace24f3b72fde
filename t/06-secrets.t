# Nothing secret reaches a log: the client secret, codes, states, PKCE
# values, tokens and session cookies, through logins that work and fail.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

use List::Util qw(min);
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time);

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', record => 200);

my @ALNUM = ('A' .. 'Z', 'a' .. 'z', 0 .. 9);

sub random_word {
    my ($n) = @_;

    return join '', map { $ALNUM[rand @ALNUM] } 1 .. $n;
}


# an id as the module writes them: 32 bytes in base64url, 43 characters

sub random_id {
    return encode_base64url(join '', map { chr int rand 256 } 1 .. 32);
}


# a client secret of our own, read from a file the module loads

my $secret = 'S3CR3T-' . random_word(24);

Kanka::Test::spew($t->dir . '/client.secret', "$secret\n");
$kanka->set(client_secret => $secret);

my $conf = gate_conf(
    server => q{
        kanka_oauth_timeout 1s;
    },
);

my $n = $conf =~ s{kanka_oauth_client_secret \S+;}
                  {kanka_oauth_client_secret_file %%TESTDIR%%/client.secret;};
is($n, 1, 'the configuration names the secret file, not the secret');

$t->write_conf($conf);
$t->run();

my $base = 'http://127.0.0.1:' . $t->port(0);

# every secret the run sees, by kind

my %secrets = map { $_ => {} } qw(client_secret code state verifier
                                  challenge access refresh cookie);

$secrets{client_secret}{$secret} = 1;


# takes the secrets a chain of responses shows: the state and challenge in
# the redirect to Kanka, the code in the redirect back, the cookies nginx
# sets and the token the upstream got

sub collect {
    my (@chain) = @_;

    for my $r (@chain) {
        my $loc = $r->header('location') // '';
        my $q = parse_query($loc);

        $secrets{state}{ $q->{state} } = 1 if $q->{state};
        $secrets{challenge}{ $q->{code_challenge} } = 1
            if $q->{code_challenge};
        $secrets{code}{ $q->{code} } = 1 if $q->{code};

        if (($r->{url} // '') =~ m{\A\Q$base\E/}) {
            my $c = $r->set_cookies;
            $secrets{cookie}{$_} = 1 for grep { $_ ne '' } values %$c;
        }

        if (($r->{body} // '') =~ /auth=Bearer (\S+)/) {
            $secrets{access}{$1} = 1;
        }
    }

    return wantarray ? @chain : $chain[-1];
}


# 1. a login that works, and requests with its session

my $b1 = $t->browser();
my @chain = collect($b1->follow('/wiki/one?x=1'));

is($chain[-1]{status}, 200, 'a login succeeds');

my $state1 = parse_query($chain[0]->header('location'))->{state};
like($chain[-1]{body}, qr/auth=Bearer \S{500,}/, 'with a token upstream');

for my $path ('/wiki/two', '/wiki/three?y=2', '/api/list') {
    my $r = collect($b1->get($path));
    is($r->{status}, 200, "the session serves $path");
}

my $r = collect($t->http_get('/api/list', headers => {
    Accept => 'application/json',
    Cookie => 'kanka_session=' . $b1->cookies->{kanka_session},
}));
is($r->{status}, 200, 'the session cookie works for an API client');


# 2. a login whose tokens we choose, so that the refresh token is known

my $at = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.' . random_word(400)
         . '.' . random_word(200);
my $rt = 'def50200RT' . random_word(300);

$secrets{access}{$at} = 1;
$secrets{refresh}{$rt} = 1;

$kanka->set(token_access_token => $at, token_refresh_token => $rt);

my $b2 = $t->browser();
@chain = collect($b2->follow('/wiki/known'));

is($chain[-1]{status}, 200, 'a login with known tokens succeeds');
like($chain[-1]{body}, qr/auth=Bearer \Q$at\E\n/, 'the known access token');


$kanka->set(token_access_token => '', token_refresh_token => '');


# 3. the token endpoint refuses the code with a JSON error

$kanka->set(token_status => 400, token_fault_times => 1,
            token_fault_process => 0,
            token_body => '{"error":"invalid_grant","error_description":"The '
                          . 'provided authorization grant is invalid","hint":'
                          . '"Authorization code has been revoked"}');

@chain = collect($t->browser()->follow('/wiki/refused'));
is($chain[-1]{status}, 502, 'a refused code gives 502');


# 4. malformed answers, which hold token-like values

my $mat = 'MALFORMED-AT-' . random_word(40);
my $mrt = 'MALFORMED-RT-' . random_word(40);

$secrets{access}{$mat} = 1;
$secrets{refresh}{$mrt} = 1;

for my $body (
    qq({"token_type":"Bearer","access_token":"$mat","refresh_token":"$mrt",),
    qq({"token_type":"Bearer","access_token":"$mat\\u0001",)
        . qq("refresh_token":"$mrt","expires_in":1}),
    qq(<html><body>access_token=$mat&refresh_token=$mrt</body></html>),
)
{
    $kanka->set(token_status => 200, token_fault_times => 1,
                token_fault_process => 1, token_body => $body);

    @chain = collect($t->browser()->follow('/wiki/malformed'));
    is($chain[-1]{status}, 502, 'a malformed token answer gives 502');
}


# 5. the token endpoint does not answer in time

$kanka->set(token_status => 0, token_body => '', token_mode => 'hang',
            token_fault_times => 1, token_fault_process => 0);

my $t0 = time;
@chain = collect($t->browser()->follow('/wiki/timeout'));
is($chain[-1]{status}, 504, 'a timeout gives 504');
cmp_ok(time - $t0, '<', 3, 'after kanka_oauth_timeout');

$kanka->set(token_mode => 'normal');


# 6. the user denies access at Kanka

$kanka->set(authorize_mode => 'deny');
@chain = collect($t->browser()->follow('/wiki/denied'));
is($chain[-1]{status}, 403, 'a denial gives 403');
$kanka->set(authorize_mode => 'approve');


# 7. callbacks with codes and states nginx never issued or used already

my $b7 = $t->browser();
collect($b7->get('/wiki/forged-callback'));

for my $state (random_id(), random_word(44), $state1) {
    my $code = 'def50200' . random_word(60);

    $secrets{code}{$code} = 1;
    $secrets{state}{$state} = 1;

    $r = collect($b7->get("/kanka/callback?code=$code&state=$state"));
    is($r->{status}, 302, 'a callback with a stray state restarts the login');
}


# 8. Kanka sends the browser back with an error other than a denial

my $b8 = $t->browser();

$r = collect($b8->get('/wiki/kanka-error'));
my $state = parse_query($r->header('location'))->{state};

$r = collect($b8->get("/kanka/callback?state=$state&error=server_error"
                      . '&error_description=Kanka+broke'));
is($r->{status}, 502, 'an error from Kanka gives 502');


# 9. forged session cookies

for my $forged (random_id(), random_word(44), 'x' . random_word(80)) {
    $secrets{cookie}{$forged} = 1;

    $r = collect($t->browser()->get('/wiki/forged', headers => {
        Cookie => "kanka_session=$forged",
    }));
    is($r->{status}, 302, 'a forged session cookie is sent to log in');

    $r = collect($t->http_get('/api/forged', headers => {
        Accept => 'application/json',
        Cookie => "kanka_session=$forged",
    }));
    is($r->{status}, 401, 'or gets 401 as an API client');
}


# 10. logout, and the ended session

my $old = $b1->cookies->{kanka_session};

$r = collect($b1->get('/kanka/logout?return=/open'));
is($r->{status}, 302, 'logout');

$r = collect($t->http_get('/wiki/two', headers => {
    Accept => 'text/html',
    Cookie => "kanka_session=$old",
}));
is($r->{status}, 302, 'the ended session is sent to log in');

collect($b2->get('/kanka/logout'));

$t->stop_nginx();


# what Kanka was sent: the codes, the verifiers and the client secret

my @sent = $kanka->requests(path => '/oauth/token');

for my $req (@sent) {
    my $form = parse_query($req->{body});

    $secrets{code}{ $form->{code} } = 1 if $form->{code};
    $secrets{verifier}{ $form->{code_verifier} } = 1
        if $form->{code_verifier};
}

is(scalar @sent, 7, 'Kanka saw the seven code exchanges');
is(scalar(grep { parse_query($_->{body})->{client_secret} eq $secret } @sent),
   7, 'each with the secret from the file');

for my $kind (sort keys %secrets) {
    cmp_ok(scalar keys %{ $secrets{$kind} }, '>', 0,
           "secrets collected: $kind");
}

cmp_ok(scalar keys %{ $secrets{code} }, '>=', 10, 'codes of every kind');
cmp_ok(scalar keys %{ $secrets{cookie} }, '>=', 10, 'cookies of every kind');


# the error log as entries: a multi-line debug dump is one entry

my $log = $t->error_log;
my @entries;

for my $line (split /\n/, $log) {
    my ($level, $conn, $msg) = $line =~ m{\A\d{4}/\d\d/\d\d[ ][\d:]{8}[ ]
                                          \[(\w+)\][ ]\d+\#\d+:[ ]
                                          (?:\*(\d+)[ ])?(.*)}sx;

    if (defined $level) {
        push @entries, { level => $level, conn => $conn // 0, msg => $msg,
                         text => $line };

    } elsif (@entries) {
        $entries[-1]{text} .= "\n$line";
    }
}

cmp_ok(scalar @entries, '>', 1000, 'a debug log to look through');


# the kinds of secret a text holds, and a few entries shown on failure

sub kinds_in {
    my ($text, @kinds) = @_;

    @kinds = sort keys %secrets unless @kinds;

    return grep {
        my $kind = $_;
        grep { index($text, $_) >= 0 } keys %{ $secrets{$kind} };
    } @kinds;
}


sub show {
    my (@e) = @_;

    diag(join "\n", map { substr $_->{text}, 0, 300 } @e[0 .. min(4, $#e)])
        if @e;

    return scalar @e;
}


# (a) nothing secret in what the module writes, at any level

my @module = grep { $_->{msg} =~ /kanka_oauth/ } @entries;
my @bad = grep { kinds_in($_->{text}) } @module;

cmp_ok(scalar @module, '>', 20, 'the module wrote to the log');
is(show(@bad), 0, 'no secret in a line the module wrote');


# (b) nothing secret above the debug level, though nginx adds the request
# line of the callback to such lines

my @loud = grep { $_->{level} ne 'debug' } @entries;
@bad = grep { kinds_in($_->{text}) } @loud;

is(show(@bad), 0, 'no secret in an info, notice, warn or error line');

my @cut = grep { $_->{msg} =~ /kanka_oauth: /
                 && $_->{text} =~ m{request: "GET /kanka/callback\?\.\.\. } }
          @loud;

cmp_ok(scalar @cut, '>=', 10, 'the callback\'s failures are logged, its query '
                             . 'cut from the request line');

for my $what ('token endpoint answered 400 "invalid_grant"',
              'bad answer from token endpoint',
              'token endpoint timed out',
              'the user denied access at Kanka',
              'unknown, used or expired state',
              'callback without a valid state',
              'Kanka refused the authorization: "server_error"')
{
    ok((grep { index($_->{msg}, $what) >= 0 } @cut), "logged: $what");
}


# (c) where a secret may show at all: only in nginx core's debug lines that
# echo what a client sent or what nginx sends, which no module controls

my %upstream = map { $_->{conn} => 1 } grep {
    $_->{msg} =~ /\Ahttp header: "Host: 127\.0\.0\.1:${\ $t->port(1) }"/
} @entries;

cmp_ok(scalar keys %upstream, '>', 0, 'the upstream\'s connections are known');

my @core = (
    # the request line as nginx reads it, before the module cuts the
    # callback's query: the code and the state Kanka sent back
    [ qr/\Ahttp request line:/, [qw(code state)] ],
    [ qr/\Ahttp args:/, [qw(code state)] ],

    # the request headers nginx reads: the browser's cookies; and at the
    # test's upstream, an nginx server too, the Authorization header
    [ qr/\Ahttp header:/, [qw(cookie)] ],
    [ qr/\Ahttp header:/, [qw(access)], 'upstream' ],

    # the proxy module dumps the request it sends upstream: the cookies it
    # passes on and the Authorization header with the token for the backend
    [ qr/\Ahttp proxy header:/, [qw(access cookie)] ],

    # the test's upstream echoes $http_authorization, whose value the
    # script engine logs
    [ qr/\Ahttp script var:/, [qw(access)], 'upstream' ],

    # the header filter dumps each response: the redirect to Kanka with the
    # state and the challenge, and the cookies it sets
    [ qr{\AHTTP/1\.[01] \d{3} }, [qw(challenge cookie state)] ],
);

sub allowed {
    my ($e, $kind) = @_;

    return 0 unless $e->{level} eq 'debug';

    for my $rule (@core) {
        my ($re, $kinds, $where) = @$rule;

        next unless $e->{msg} =~ $re && grep { $_ eq $kind } @$kinds;
        next if $where && !$upstream{ $e->{conn} };

        return 1;
    }

    return 0;
}

my %seen;

for my $e (@entries) {
    for my $kind (kinds_in($e->{text})) {
        push @{ $seen{$kind}{ allowed($e, $kind) ? 'core' : 'bad' } }, $e;
    }
}

sub bad_lines {
    my (@kinds) = @_;

    return show(map { @{ ($seen{$_} || {})->{bad} || [] } } @kinds);
}


# no rule allows these three: nginx never sees them in a request or a
# response of its own

is(bad_lines('client_secret'), 0,
   'the client secret is in no line at all, debug included');
is(bad_lines('refresh'), 0, 'a refresh token is in no line at all');
is(bad_lines('verifier'), 0, 'a PKCE verifier is in no line at all');

is(bad_lines('access'), 0,
   'an access token only where nginx dumps the headers of a request');
ok(($seen{access} || {})->{core}, 'which the check does see');

is(bad_lines(qw(code state challenge cookie)), 0,
   'codes, states, challenges and cookies only where nginx echoes a '
   . 'request or its own response');
ok(($seen{$_} || {})->{core}, "the check sees the ${_}s nginx echoes")
    for qw(code state challenge cookie);


# the stand-in's own refresh tokens are unknown here, but they look like
# its codes: "def50200" and hex; every such string in a log must be a code

my %codes = %{ $secrets{code} };
my @blobs = grep { !$codes{$_} } $log =~ /(def50200[0-9a-f]{16,})/g;

is(scalar @blobs, 0, 'no stand-in refresh token in the log');


# which core debug lines echo which secrets, for the record

my %echo;

for my $e (@entries) {
    my @k = kinds_in($e->{text}) or next;
    my ($prefix) = $e->{msg} =~ /\A([^:"\r]*)/;
    $echo{"[$e->{level}] $prefix"}{$_}++ for @k;
}

for my $k (sort keys %echo) {
    note("$k: " . join ', ', map { "$_ $echo{$k}{$_}" }
                             sort keys %{ $echo{$k} });
}


# the access log has the callback without its query, and no secret at all

my $access = Kanka::Test::slurp($t->dir . '/access.log') // '';

like($access, qr{"GET /kanka/callback\?\.\.\. HTTP/1\.1" 502 }, 'callback '
     . 'in the access log');
unlike($access, qr/[?&](?:code|state)=/, 'without code or state');
is(join(', ', kinds_in($access)), '', 'no secret in the access log');

my $stderr = Kanka::Test::slurp($t->dir . '/nginx.stderr') // '';
is(join(', ', kinds_in($stderr)), '', 'none on nginx\'s stderr');

$kanka->stop();

done_testing();
