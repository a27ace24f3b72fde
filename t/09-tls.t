# TLS on both sides: the code exchange verifies Kanka's certificate (a
# private CA, an unknown CA, a wrong name, an expired certificate, and
# verification turned off), and nginx serving HTTPS marks its cookies
# Secure.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();

my $day = 24 * 60 * 60;

# the test's CA signs all but the last; "other" is a CA nginx never trusts

my %certs = (
    good    => $t->make_cert('kanka-good'),
    named   => $t->make_cert('kanka-named', san => 'DNS:localhost',
                             cn => 'localhost'),
    expired => $t->make_cert('kanka-expired', not_before => time - 30 * $day,
                             not_after => time - $day),
    nginx   => $t->make_cert('nginx'),
    bad     => $t->make_cert('kanka-bad', ca => 'other',
                             san => 'DNS:elsewhere.example',
                             cn => 'elsewhere.example',
                             not_before => time - 30 * $day,
                             not_after => time - $day),
);

my $ca = $t->ca_cert();
my $other_ca = $t->ca_cert('other');

my %kanka;

for my $name (qw(good named expired bad)) {
    $kanka{$name} = $t->start_kanka(tls => 1, cert => $certs{$name},
                                    authorize_mode => 'approve');
}

like($kanka{good}->url, qr{^https://127\.0\.0\.1:\d+$}, 'Kanka speaks TLS');

my %url = map { $_ => $kanka{$_}->url } keys %kanka;
my $localhost = 'https://localhost:' . $kanka{named}->port;


# one location per case, each with its own callback

sub gated {
    my ($path, $kanka_url, @directives) = @_;

    my $more = join "\n", map { "            $_" } @directives;

    return <<"EOF";
        location /$path/ {
            kanka_oauth on;
            kanka_oauth_redirect_uri /$path/callback;
            kanka_oauth_authorize_url $kanka_url/oauth/authorize;
            kanka_oauth_token_url $kanka_url/oauth/token;
            kanka_oauth_api_url $kanka_url/api/1.0;
$more
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
EOF
}

my $locations = join "\n",
    gated('trusted', $url{good}, "kanka_oauth_ssl_trusted_certificate $ca;"),
    gated('untrusted', $url{good}),
    gated('wrongca', $url{good},
          "kanka_oauth_ssl_trusted_certificate $other_ca;"),
    gated('named', $url{named}, "kanka_oauth_ssl_trusted_certificate $ca;"),
    gated('localhost', $localhost,
          "kanka_oauth_ssl_trusted_certificate $ca;"),
    gated('expired', $url{expired},
          "kanka_oauth_ssl_trusted_certificate $ca;"),
    gated('noverify', $url{bad}, 'kanka_oauth_ssl_verify off;'),
    gated('noverify-good', $url{good}, 'kanka_oauth_ssl_verify off;');

my $conf = <<"EOF";
events { }
http {
    kanka_oauth_zone kanka:1m;

    server {
        listen 127.0.0.1:%%PORT0%%;

        kanka_oauth_client_id 42;
        kanka_oauth_client_secret s3cr3t-kanka-client;
        kanka_oauth_timeout 5s;

$locations
    }

    server {
        listen 127.0.0.1:%%PORT2%% ssl;

        ssl_certificate $certs{nginx}{cert};
        ssl_certificate_key $certs{nginx}{key};

        kanka_oauth_client_id 42;
        kanka_oauth_client_secret s3cr3t-kanka-client;
        kanka_oauth_authorize_url $url{good}/oauth/authorize;
        kanka_oauth_token_url $url{good}/oauth/token;
        kanka_oauth_api_url $url{good}/api/1.0;
        kanka_oauth_ssl_trusted_certificate $ca;

        location / {
            kanka_oauth on;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        location / {
            return 200 "upstream uri=\$request_uri auth=\$http_authorization\\n";
        }
    }
}
EOF

$t->write_conf($conf);
$t->run();

my $port = $t->port(0);


# the browser's way through a gated location; the module's lines since

sub login {
    my ($path) = @_;

    my $b = $t->browser(port => $port);
    my $from = length $t->error_log();
    my @chain = $b->follow("/$path/page");
    my @lines = grep { /\[(?:info|notice|warn|error|crit|alert)\]/
                       && /kanka_oauth/ } split /\n/, $t->log_since($from);

    return ($b, \@chain, \@lines);
}


sub works {
    my ($path, $kanka, $name) = @_;

    my $before = $kanka->stats()->{token}{authorization_code};
    my ($b, $chain, $lines) = login($path);
    my $last = $chain->[-1];

    is($last->{status}, 200, "$name: the login succeeds");
    like($last->{body}, qr{upstream uri=/\Q$path\E/page auth=Bearer \S{100,}},
         "$name: the upstream gets the token");
    is($kanka->stats()->{token}{authorization_code}, $before + 1,
       "$name: the code was exchanged over TLS");
    is(scalar @$lines, 0, "$name: nothing logged") or diag(join "\n", @$lines);
}


sub fails {
    my ($path, $kanka, $why, $name) = @_;

    my $before = $kanka->stats()->{token_total};
    my ($b, $chain, $lines) = login($path);
    my $last = $chain->[-1];

    like($last->{url}, qr{/\Q$path\E/callback\?},
         "$name: back at the callback");
    is($last->{status}, 502, "$name: 502");
    like($last->{body}, qr{<h1>502 Bad Gateway</h1>}, "$name: the error page");
    ok(!$b->cookie('kanka_session'), "$name: no session");
    is($kanka->stats()->{token_total}, $before,
       "$name: Kanka never saw the code");

    is(scalar @$lines, 1, "$name: one log line") or diag(join "\n", @$lines);
    like($lines->[0] // '', qr/\[error\] .*kanka_oauth: token request failed: /,
         "$name: an error");
    like($lines->[0] // '', $why, "$name: it says why");
    like($lines->[0] // '',
         qr/while exchanging the authorization code at Kanka/,
         "$name: and what was under way");
    unlike($lines->[0] // '', qr/code=|state=|s3cr3t/, "$name: and no secret");
}


# a private CA, given to the module: the login works

works('trusted', $kanka{good}, 'private CA');

# the same certificate with the CA left out: the system store does not
# know it, even with a verified connection to the same server kept open

fails('untrusted', $kanka{good},
      qr/SSL certificate problem: unable to get local issuer certificate/,
      'unknown CA');

fails('wrongca', $kanka{good},
      qr/SSL certificate problem: unable to get local issuer certificate/,
      'another CA given');

# a certificate for "localhost" at https://127.0.0.1: the name is checked

fails('named', $kanka{named},
      qr/no [ ] alternative [ ] certificate [ ] subject [ ] name [ ] matches
         [ ] target [ ] host [ ] name [ ] '127\.0\.0\.1'/x,
      'wrong host name');

works('localhost', $kanka{named}, 'the same certificate under its own name');

# expired, though from the trusted CA

fails('expired', $kanka{expired},
      qr/SSL certificate problem: certificate has expired/,
      'expired certificate');

# verification off: an unknown CA, a wrong name and an expired certificate
# all at once are accepted

works('noverify', $kanka{bad}, 'verification off');

# a connection made without verification is not reused where verification
# is on

works('noverify-good', $kanka{good}, 'verification off, good server');

fails('untrusted', $kanka{good},
      qr/SSL certificate problem: unable to get local issuer certificate/,
      'unknown CA after an unverified connection');

works('trusted', $kanka{good}, 'private CA again');


# nginx -t warns when verification is off, and only then

{
    my ($code, $out) = $t->nginx_t($conf);
    is($code, 0, 'nginx -t passes') or diag($out);

    my @warn = $out =~ /(\[warn\].*kanka_oauth_ssl_verify.*)/g;
    is(scalar @warn, 2, 'it warns once for each "kanka_oauth_ssl_verify off"');
    like($warn[0] // '',
         qr/"kanka_oauth_ssl_verify" is off: Kanka's certificate is not/,
         'saying what it means');

    (my $on = $conf) =~ s/kanka_oauth_ssl_verify off;//g;
    ($code, $out) = $t->nginx_t($on);
    is($code, 0, 'nginx -t passes without it');
    unlike($out, qr/kanka_oauth_ssl_verify/, 'and does not warn');

    like($t->error_log(), qr/\[warn\].*"kanka_oauth_ssl_verify" is off/,
         'the running nginx warned at start');
}


# nginx itself on HTTPS: with secure=auto, cookies are Secure

{
    my $b = $t->browser(port => $t->port(2), tls => 1);
    my $r = $b->get('/page');

    is($r->{status}, 302, 'HTTPS: to Kanka');

    my $q = parse_query($r->header('location'));
    is($q->{redirect_uri},
       'https://127.0.0.1:' . $t->port(2) . '/kanka/callback',
       'HTTPS: the redirect URI is https');

    my ($login) = grep { /^kanka_session_login=/ }
                  $r->header_values('set-cookie');
    like($login // '', qr/; Secure(?:;|$)/,
         'HTTPS: the login cookie is Secure');

    my @chain = $b->follow($r->header('location'));
    is($chain[-1]{status}, 200, 'HTTPS: the login succeeds');
    like($chain[-1]{body}, qr/auth=Bearer \S{100,}/, 'HTTPS: with a token');

    my ($callback) = grep { $_->{url} =~ m{/kanka/callback\?} } @chain;
    my ($session) = grep { /^kanka_session=/ }
                    $callback ? $callback->header_values('set-cookie') : ();

    like($session // '', qr/^kanka_session=[A-Za-z0-9_-]{43};/,
         'HTTPS: a session cookie');
    like($session // '', qr/; Secure(?:;|$)/, 'HTTPS: Secure');
    like($session // '', qr/; HttpOnly/, 'HTTPS: HttpOnly');

    $r = $b->get('/kanka/logout');
    my ($cleared) = grep { /^kanka_session=;/ } $r->header_values('set-cookie');
    like($cleared // '', qr/; Secure(?:;|$)/, 'HTTPS: the cleared cookie too');

    # the same module over plain HTTP, for contrast

    my $plain = $t->browser(port => $port);
    $r = $plain->get('/trusted/page');
    ($login) = grep { /^kanka_session_login=/ } $r->header_values('set-cookie');
    ok($login && $login !~ /Secure/, 'HTTP: the login cookie is not Secure');
}

$t->stop();

done_testing();
