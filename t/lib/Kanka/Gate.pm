# What the module's tests share: a gated nginx.conf and small helpers.

package Kanka::Gate;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(gate_conf parse_query unescape session_cookie);


# a server on PORT0 gated in front of an echoing upstream on PORT1;
# %o adds directives: http, server, location (the gated "/"), locations,
# main (before events), zone (size), upstream (locations of the upstream)

sub gate_conf {
    my (%o) = @_;

    my $zone = $o{zone} // '1m';
    my $main = $o{main} // '';
    my $http = $o{http} // '';
    my $server = $o{server} // '';
    my $location = $o{location} // '';
    my $locations = $o{locations} // '';
    my $upstream = $o{upstream} // '';

    return <<"EOF";
$main
events { }
http {
    kanka_oauth_zone kanka:$zone;
$http
    server {
        listen 127.0.0.1:%%PORT0%%;

        kanka_oauth_client_id 42;
        kanka_oauth_client_secret s3cr3t-kanka-client;
        kanka_oauth_authorize_url %%KANKA%%/oauth/authorize;
        kanka_oauth_token_url %%KANKA%%/oauth/token;
        kanka_oauth_api_url %%KANKA%%/api/1.0;
$server
        location / {
            kanka_oauth on;
$location
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /open {
            return 200 "open\\n";
        }
$locations
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        location / {
            return 200 "upstream uri=\$request_uri auth=\$http_authorization\\n";
        }
$upstream
    }
}
EOF
}


sub unescape {
    my ($s) = @_;

    return undef unless defined $s;

    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;

    return $s;
}


# the query of a URL (or a form body) as a hash of unescaped values

sub parse_query {
    my ($s) = @_;

    $s //= '';
    $s = (split /\?/, $s, 2)[1] // '' if $s =~ /\?/;

    my %q;

    for my $pair (split /&/, $s) {
        my ($k, $v) = split /=/, $pair, 2;
        $q{ unescape($k) } = unescape($v // '');
    }

    return \%q;
}


# the session cookie a response sets, as "name=value", or undef

sub session_cookie {
    my ($r, $name) = @_;

    $name //= 'kanka_session';

    for my $sc ($r->header_values('set-cookie')) {
        return $1 if $sc =~ /^(\Q$name\E=[^;]+)/;
    }

    return undef;
}


1;
