# Configuration mistakes fail "nginx -t" with a message that names the
# directive; good configurations pass.

use strict;
use warnings;

use lib 't/lib';
use Kanka::Test;

my $t = Kanka::Test->new();

Kanka::Test::spew($t->dir . '/secret.txt', "from-a-file\n");
Kanka::Test::spew($t->dir . '/empty.txt', "\n");


sub conf {
    my (%o) = @_;

    my $zone = exists $o{zone} ? $o{zone} : 'kanka_oauth_zone kanka:1m;';
    my $client = exists $o{client} ? $o{client}
        : "kanka_oauth_client_id 42;\n kanka_oauth_client_secret s;";

    return <<"EOF";
events { }
http {
    $zone
    $o{http}
    server {
        listen 127.0.0.1:%%PORT0%%;
        $client
        $o{server}
        location / {
            kanka_oauth on;
            $o{location}
        }
    }
}
EOF
}


sub fails {
    my ($conf, $re, $name) = @_;

    my ($code, $out) = $t->nginx_t($conf);

    isnt($code, 0, "$name: nginx -t fails");
    like($out, $re, "$name: message");
}


sub passes {
    my ($conf, $name) = @_;

    my ($code, $out) = $t->nginx_t($conf);

    is($code, 0, "$name: nginx -t passes") or diag($out);

    return $out;
}



my %e = (http => '', server => '', location => '');

passes(conf(%e), 'minimal');

passes(conf(%e, client => '',
            http => "kanka_oauth_client_id 42;\n"
                    . "kanka_oauth_client_secret_file secret.txt;"),
       'client at http level, secret from a file');

fails(conf(%e, client => 'kanka_oauth_client_secret s;'),
      qr/"kanka_oauth" is on but "kanka_oauth_client_id" is not set/,
      'no client id');

fails(conf(%e, client => 'kanka_oauth_client_id 42;'),
      qr/"kanka_oauth_client_secret"/, 'no client secret');

fails(conf(%e, zone => ''),
      qr/"kanka_oauth" is on but no "kanka_oauth_zone" is defined/,
      'no zone');

fails(conf(%e, zone => 'kanka_oauth_zone a:1m; kanka_oauth_zone b:1m;'),
      qr/"kanka_oauth_session_zone" must name one/, 'two zones, none named');

passes(conf(%e, zone => 'kanka_oauth_zone a:1m; kanka_oauth_zone b:1m;',
            server => 'kanka_oauth_session_zone b;'),
       'two zones, one named');

fails(conf(%e, server => 'kanka_oauth_session_zone nope;'),
      qr/"kanka_oauth_session_zone": unknown zone "nope"/, 'unknown zone');

fails(conf(%e, zone => 'kanka_oauth_zone kanka:16k;'),
      qr/zone "kanka:16k" in "kanka_oauth_zone" directive is too small/, 'zone too small');

fails(conf(%e, zone => 'kanka_oauth_zone kanka;'),
      qr/invalid zone "kanka" in "kanka_oauth_zone" directive/, 'zone without size');

fails(conf(%e, zone => 'kanka_oauth_zone kanka:lots;'),
      qr/invalid zone size "kanka:lots"/, 'zone with a bad size');

fails(conf(%e, zone => 'kanka_oauth_zone kanka:1m; kanka_oauth_zone kanka:1m;'),
      qr/duplicate zone "kanka" in "kanka_oauth_zone"/, 'duplicate zone');

fails(conf(%e, zone => 'kanka_oauth_zone kanka:1m bogus=1;'),
      qr/invalid parameter "bogus=1" in "kanka_oauth_zone"/, 'unknown zone parameter');

fails(conf(%e, server => 'kanka_oauth_token_url ftp://kanka.example/token;'),
      qr/invalid URL "ftp:\/\/kanka.example\/token" in "kanka_oauth_token_url"/,
      'token URL scheme');

fails(conf(%e, server => 'kanka_oauth_authorize_url https:///authorize;'),
      qr/invalid URL "https:\/\/\/authorize" in "kanka_oauth_authorize_url"/, 'authorize URL host');

fails(conf(%e, server => 'kanka_oauth_api_url kanka.io/api;'),
      qr/invalid URL "kanka.io\/api" in "kanka_oauth_api_url"/, 'API URL');

fails(conf(%e, server => 'kanka_oauth_redirect_uri callback;'),
      qr/invalid value "callback" in "kanka_oauth_redirect_uri"/,
      'relative redirect URI');

fails(conf(%e, server => 'kanka_oauth_redirect_uri /cb?x=1;'),
      qr/invalid value "\/cb\?x=1"/, 'redirect URI with a query');

passes(conf(%e, server =>
            'kanka_oauth_redirect_uri https://wiki.example/kanka/cb;'),
       'absolute redirect URI');

fails(conf(%e, server => 'kanka_oauth_logout_uri https://x.example/out;'),
      qr/invalid value ".*" in "kanka_oauth_logout_uri"/, 'logout URI must be a path');

fails(conf(%e, server => 'kanka_oauth_cookie sid flavour=mint;'),
      qr/invalid parameter "flavour=mint" in "kanka_oauth_cookie"/,
      'unknown cookie parameter');

fails(conf(%e, server => 'kanka_oauth_cookie sid samesite=sometimes;'),
      qr/invalid parameter "samesite=sometimes"/, 'bad samesite');

fails(conf(%e, server => 'kanka_oauth_cookie "s;d";'),
      qr/invalid cookie name/, 'bad cookie name');

passes(conf(%e, server => 'kanka_oauth_cookie sid domain=example.org '
                          . 'path=/app secure=on samesite=strict;'),
       'cookie with every parameter');

fails(conf(%e, server => 'kanka_oauth sometimes;'),
      qr/invalid value "sometimes"/, 'bad gate mode');

fails(conf(%e, client => 'kanka_oauth_client_id 42;'
                         . 'kanka_oauth_client_secret_file missing.txt;'),
      qr/missing\.txt.*failed/, 'missing secret file');

fails(conf(%e, client => 'kanka_oauth_client_id 42;'
                         . 'kanka_oauth_client_secret_file empty.txt;'),
      qr/secret file ".*empty\.txt" is empty/, 'empty secret file');

fails(conf(%e, client => 'kanka_oauth_client_id 42;'
                         . 'kanka_oauth_client_secret s;'
                         . 'kanka_oauth_client_secret_file secret.txt;'),
      qr/"kanka_oauth_client_secret_file" directive is duplicate/,
      'secret given twice');

fails(conf(%e, server => 'kanka_oauth_timeout soon;'),
      qr/"kanka_oauth_timeout" directive invalid value/, 'bad timeout');

fails(conf(%e, server => 'kanka_oauth_session_timeout 0;'),
      qr/must be more than 0/, 'zero session timeout');

fails(conf(%e, server => 'kanka_oauth_ssl_trusted_certificate none.pem;'),
      qr/none\.pem.*failed/, 'missing CA file');

my $out = passes(conf(%e, server => 'kanka_oauth_ssl_verify off;'),
                 'verification off');
like($out, qr/\[warn\].*"kanka_oauth_ssl_verify" is off/,
     'verification off is warned about');

fails(conf(%e, location => 'kanka_oauth_zone other:1m;'),
      qr/"kanka_oauth_zone" directive is not allowed here/,
      'zone outside http');

# a gate that is off needs nothing

passes(<<'EOF', 'module loaded, nothing configured');
events { }
http {
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { kanka_oauth off; }
    }
}
EOF

done_testing();
