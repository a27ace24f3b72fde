# A stand-in for Kanka's OAuth server (Laravel Passport) and API: one process,
# one non-blocking event loop, with a JSON control API for tests and demos.

package Kanka::Standin;

use strict;
use warnings;

use Digest::SHA qw(sha256 sha1_hex);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX qw(strftime);
use Time::HiRes qw(time);

use constant {
    MAX_HEAD      => 64 * 1024,
    MAX_BODY      => 8 * 1024 * 1024,
    IDLE_TIMEOUT  => 60,
    HANG_TIMEOUT  => 600,
    CHUNK         => 16384,
    PER_PAGE      => 15,
    RATE_WINDOW   => 60,
};

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 204 => 'No Content',
    301 => 'Moved Permanently', 302 => 'Found', 303 => 'See Other',
    304 => 'Not Modified', 307 => 'Temporary Redirect',
    400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
    404 => 'Not Found', 405 => 'Method Not Allowed', 408 => 'Request Timeout',
    413 => 'Payload Too Large', 417 => 'Expectation Failed',
    422 => 'Unprocessable Content', 429 => 'Too Many Requests',
    431 => 'Request Header Fields Too Large', 500 => 'Internal Server Error',
    501 => 'Not Implemented', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

# error bodies as league/oauth2-server words them; "message" repeats the
# description, as the library still does for older clients
my %OAUTH_ERROR = (
    invalid_request => [400, 'invalid_request',
        'The request is missing a required parameter, includes an invalid '
        . 'parameter value, includes a parameter more than once, or is '
        . 'otherwise malformed.'],
    invalid_client => [401, 'invalid_client', 'Client authentication failed'],
    invalid_grant => [400, 'invalid_grant',
        'The provided authorization grant (e.g., authorization code, '
        . 'resource owner credentials) or refresh token is invalid, expired, '
        . 'revoked, does not match the redirection URI used in the '
        . 'authorization request, or was issued to another client.'],
    invalid_refresh_token => [400, 'invalid_grant',
        'The refresh token is invalid.'],
    unsupported_grant_type => [400, 'unsupported_grant_type',
        'The authorization grant type is not supported by the '
        . 'authorization server.'],
    invalid_scope => [400, 'invalid_scope',
        'The requested scope is invalid, unknown, or malformed'],
    access_denied => [401, 'access_denied',
        'The resource owner or authorization server denied the request.'],
    login_required => [400, 'login_required',
        'The authorization server requires end-user authentication.'],
    consent_required => [400, 'consent_required',
        'The authorization server requires end-user consent.'],
);

my $PKCE_RE = qr/\A[A-Za-z0-9\-._~]{43,128}\z/;
my $USER_COOKIE = 'kanka_standin_user';


sub defaults {
    return {
        # the authorize endpoint: an HTML consent page, or an automatic answer
        authorize_mode   => 'page',
        remember_consent => 1,

        client_id     => '42',
        client_secret => 's3cr3t-kanka-client',
        client_name   => 'Campaign Wiki',
        redirect_uri  => '',

        users => [
            { id => 1, name => 'Ilsa Vance', campaigns => [101, 102] },
            { id => 2, name => 'Corin Ash', campaigns => [102] },
            { id => 3, name => 'Mara Quill', campaigns => [] },
            { id => 4, name => 'Tess Oakhart', subscriber => 1,
              campaigns => [200 .. 239] },
        ],
        default_user   => 1,
        campaign_names => {
            101 => 'The Shattered Coast',
            102 => 'Embers of Valdmoor',
        },

        code_ttl           => 600,
        code_len           => 900,
        expires_in         => 31536000,
        refresh_expires_in => 31536000,
        access_token_len   => 1000,
        refresh_token_len  => 700,
        token_access_token => '',
        token_refresh_token => '',

        # faults of the token endpoint; they apply to the grant named in
        # token_fault_grant (all when empty), token_fault_times times (always
        # when 0); token_fault_process runs the grant before the fault
        token_delay         => 0,
        token_mode          => 'normal',
        token_status        => 0,
        token_body          => '',
        token_content_type  => 'application/json',
        token_headers       => {},
        token_fault_grant   => '',
        token_fault_times   => 0,
        token_fault_process => 0,
        token_rate_limit    => 0,

        # the same for the API; api_fault_endpoint is profile or campaigns
        api_delay          => 0,
        api_mode           => 'normal',
        api_status         => 0,
        api_body           => '',
        api_content_type   => 'application/json',
        api_headers        => {},
        api_fault_endpoint => '',
        api_fault_times    => 0,

        rate_limit            => 1,
        rate_limit_per_minute => 30,
        drip_interval         => 1,
        record                => 20,
    };
}


sub new {
    my ($class, %args) = @_;

    my $self = bless {
        listen_addr => $args{listen} // '127.0.0.1:0',
        base_url    => $args{base_url},
        tls_cert    => $args{tls_cert},
        tls_key     => $args{tls_key},
        log_fh      => $args{log_fh},
        conns       => {},
        timers      => [],
        next_id     => 0,
    }, $class;

    $self->reset_state();

    if ($args{settings}) {
        my $err = $self->apply_settings($args{settings});
        die "$err\n" if $err;
    }

    return $self;
}


# with keep_tokens, what was issued stays valid: only the settings, the
# counters and the records start again

sub reset_state {
    my ($self, %o) = @_;

    $self->{settings} = defaults();
    $self->{stats} = {
        token       => { authorization_code => 0, refresh_token => 0 },
        token_total => 0,
        token_errors => 0,
        token_inflight => 0,
        token_concurrent_max => 0,
        authorize   => 0,
        approved    => 0,
        denied      => 0,
        profile     => 0,
        campaigns   => 0,
        rate_limited => 0,
        requests    => 0,
        connections => 0,
    };
    if (!$o{keep_tokens}) {
        $self->{codes} = {};
        $self->{access} = {};
        $self->{refresh} = {};
    }

    $self->{records} = [];
    $self->{rate} = {};
    $self->{token_rate} = {};
    $self->{token_faults_left} = 0;
    $self->{api_faults_left} = 0;

    # connections still open keep counting towards the concurrency figures
    for my $c (values %{ $self->{conns} }) {
        $self->{stats}{token_inflight}++ if $c->{token_inflight};
    }
}


sub listen {
    my ($self) = @_;

    my ($host, $port) = $self->{listen_addr} =~ /\A\[?([^\]]*?)\]?:(\d+)\z/
        or die "invalid listen address \"$self->{listen_addr}\"\n";

    # a non-blocking socket would hide a failed bind behind port 0

    my $sock = IO::Socket::IP->new(
        LocalHost => $host,
        LocalPort => $port,
        Listen    => 128,
        ReuseAddr => 1,
    ) or die "cannot listen on $self->{listen_addr}: $@\n";

    $sock->blocking(0);

    $self->{listener} = $sock;
    $self->{port} = $sock->sockport;
    $self->{host} = $host;

    if ($self->{tls_cert}) {
        require IO::Socket::SSL;
        $self->{ssl_ctx} = IO::Socket::SSL::SSL_Context->new(
            SSL_server    => 1,
            SSL_cert_file => $self->{tls_cert},
            SSL_key_file  => $self->{tls_key},
        ) or die "cannot load TLS certificate: "
            . IO::Socket::SSL::errstr() . "\n";
    }

    my $scheme = $self->{ssl_ctx} ? 'https' : 'http';
    my $h = $host =~ /:/ ? "[$host]" : $host;
    $self->{base_url} //= "$scheme://$h:$self->{port}";
    $self->{base_url} =~ s{/+\z}{};

    return $self->{port};
}


sub port { $_[0]{port} }
sub base_url { $_[0]{base_url} }


sub stop { $_[0]{stopping} = 1 }


sub run {
    my ($self) = @_;

    local $SIG{PIPE} = 'IGNORE';

    $self->listen() unless $self->{listener};

    my $last_sweep = time;

    until ($self->{stopping}) {
        my $rs = IO::Select->new($self->{listener});
        my $ws = IO::Select->new();

        for my $c (values %{ $self->{conns} }) {
            if ($c->{handshake}) {
                ($c->{hs_want} eq 'write' ? $ws : $rs)->add($c->{sock});
                next;
            }
            $rs->add($c->{sock});
            $ws->add($c->{sock}) if length $c->{out};
        }

        my ($r, $w) = IO::Select::select($rs, $ws, undef,
                                         $self->timer_wait());

        # one bad connection must not take the server down
        eval {
            for my $fh (@{ $r || [] }) {
                if ($fh == $self->{listener}) {
                    $self->accept_all();
                    next;
                }
                my $c = $self->conn_of($fh) or next;
                $self->on_readable($c);
            }

            for my $fh (@{ $w || [] }) {
                my $c = $self->conn_of($fh) or next;
                if ($c->{handshake}) {
                    $self->handshake($c);
                } else {
                    $self->flush($c);
                }
            }

            $self->run_timers();
            1;
        } or $self->logline("event loop: $@");

        if (time - $last_sweep >= 1) {
            $self->sweep();
            $last_sweep = time;
        }
    }

    $self->close_conn($_) for values %{ $self->{conns} };
    close $self->{listener};
}


sub conn_of {
    my ($self, $fh) = @_;

    my $fd = fileno $fh;
    return unless defined $fd;

    my $c = $self->{conns}{$fd};
    return unless $c && $c->{sock} == $fh;

    return $c;
}


# timers

sub after {
    my ($self, $delay, $cb) = @_;

    push @{ $self->{timers} }, [time + $delay, $cb];
}


sub timer_wait {
    my ($self) = @_;

    my $wait = 1;
    my $now = time;

    for my $t (@{ $self->{timers} }) {
        my $d = $t->[0] - $now;
        $wait = $d if $d < $wait;
    }

    return $wait < 0 ? 0 : $wait;
}


sub run_timers {
    my ($self) = @_;

    my $now = time;
    my (@due, @rest);

    for my $t (@{ $self->{timers} }) {
        if ($t->[0] <= $now) {
            push @due, $t;
        } else {
            push @rest, $t;
        }
    }

    $self->{timers} = \@rest;

    for my $t (sort { $a->[0] <=> $b->[0] } @due) {
        eval { $t->[1]->(); 1 } or $self->logline("timer failed: $@");
    }
}


sub sweep {
    my ($self) = @_;

    my $now = time;

    for my $c (values %{ $self->{conns} }) {
        my $limit = $c->{hanging} ? HANG_TIMEOUT : IDLE_TIMEOUT;
        next if $c->{busy} && !$c->{hanging};
        $self->close_conn($c) if $now - $c->{last} > $limit;
    }
}


# connections

sub accept_all {
    my ($self) = @_;

    for (1 .. 64) {
        my $sock = $self->{listener}->accept or last;

        $sock->blocking(0);

        my $c = {
            id   => ++$self->{next_id},
            sock => $sock,
            fd   => fileno $sock,
            peer => $sock->peerhost // '',
            in   => '',
            out  => '',
            last => time,
        };

        $self->{conns}{ $c->{fd} } = $c;
        $self->{stats}{connections}++;

        next unless $self->{ssl_ctx};

        my $ok = IO::Socket::SSL->start_SSL($sock,
            SSL_server          => 1,
            SSL_reuse_ctx       => $self->{ssl_ctx},
            SSL_startHandshake  => 0,
        );

        unless ($ok) {
            $self->close_conn($c);
            next;
        }

        $c->{tls} = 1;
        $c->{handshake} = 1;
        $c->{hs_want} = 'read';
        $self->handshake($c);
    }
}


sub handshake {
    my ($self, $c) = @_;

    $c->{last} = time;

    if ($c->{sock}->accept_SSL()) {
        $c->{handshake} = 0;
        # the client may have sent its request along with the last flight
        $self->on_readable($c);
        return;
    }

    my $e = do { no warnings 'once'; $IO::Socket::SSL::SSL_ERROR } // 0;

    if ($e == IO::Socket::SSL::SSL_WANT_READ()) {
        $c->{hs_want} = 'read';
    } elsif ($e == IO::Socket::SSL::SSL_WANT_WRITE()) {
        $c->{hs_want} = 'write';
    } else {
        $self->close_conn($c);
    }
}


sub on_readable {
    my ($self, $c) = @_;

    if ($c->{handshake}) {
        $self->handshake($c);
        return;
    }

    while (1) {
        my $buf;
        my $n = sysread $c->{sock}, $buf, 65536;

        if (defined $n && $n > 0) {
            $c->{in} .= $buf;
            $c->{last} = time;

            if (length $c->{in} > MAX_HEAD + MAX_BODY + 65536) {
                $self->close_conn($c);
                return;
            }
            next;
        }

        if (defined $n) {
            # the client went away; anything still pending goes with it
            $self->close_conn($c);
            return;
        }

        last if $! == EAGAIN || $! == EWOULDBLOCK;
        next if $! == EINTR;

        $self->close_conn($c);
        return;
    }

    $self->process($c);
}


sub flush {
    my ($self, $c) = @_;

    return if $c->{closed};

    while (length $c->{out}) {
        my $n = syswrite $c->{sock}, $c->{out}, CHUNK;

        if (defined $n) {
            substr $c->{out}, 0, $n, '';
            $c->{last} = time;
            next;
        }

        return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;

        $self->close_conn($c);
        return;
    }

    if ($c->{close_after_write} && !$c->{busy}) {
        $self->close_conn($c);
    }
}


sub close_conn {
    my ($self, $c) = @_;

    return if $c->{closed};

    $c->{closed} = 1;
    delete $self->{conns}{ $c->{fd} };

    if ($c->{token_inflight}) {
        $c->{token_inflight} = 0;
        $self->{stats}{token_inflight}--;
    }

    if ($c->{tls}) {
        $c->{sock}->close(SSL_no_shutdown => 1);
    } else {
        close $c->{sock};
    }
}


# request parsing

sub process {
    my ($self, $c) = @_;

    return if $c->{in_process};
    local $c->{in_process} = 1;

    while (!$c->{closed} && !$c->{busy} && !$c->{close_after_write}) {
        my $req = $self->parse_request($c) or last;

        $c->{busy} = 1;
        $c->{req} = $req;
        $c->{want_close} = $req->{close};
        $self->{stats}{requests}++;

        my $ok = eval { $self->dispatch($c, $req); 1 };

        if (!$ok) {
            my $err = $@;
            $self->logline("handler failed: $err");
            if ($c->{busy} && !$c->{closed} && !$c->{answered}) {
                $self->respond($c, 500, ['Content-Type' => 'application/json'],
                               $JSON->encode({ message => 'Server Error' }),
                               close => 1);
            }
        }
    }

    $self->flush($c);
}


sub parse_request {
    my ($self, $c) = @_;

    # empty lines before a request line are allowed and ignored
    $c->{in} =~ s/\A(?:\r?\n)+//;

    my $end = index $c->{in}, "\r\n\r\n";
    my $sep = 4;

    if ($end < 0) {
        $end = index $c->{in}, "\n\n";
        $sep = 2;
    }

    if ($end < 0) {
        if (length $c->{in} > MAX_HEAD) {
            $self->bad_request($c, 431, 'request header too large');
        }
        return;
    }

    if ($end > MAX_HEAD) {
        $self->bad_request($c, 431, 'request header too large');
        return;
    }

    my $head = substr $c->{in}, 0, $end;
    my @lines = split /\r?\n/, $head, -1;
    my $line = shift @lines;

    my ($method, $target, $major, $minor) =
        $line =~ m{\A([A-Z][A-Z_-]*) (\S+) HTTP/(\d)\.(\d)\z};

    unless (defined $method) {
        $self->bad_request($c, 400, 'invalid request line');
        return;
    }

    my (%headers, @list);

    for my $l (@lines) {
        my ($name, $value) =
            $l =~ /\A([!#\$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*\z/;

        unless (defined $name) {
            $self->bad_request($c, 400, 'invalid header line');
            return;
        }

        push @{ $headers{lc $name} }, $value;
        push @list, [$name, $value];
    }

    my $version = "$major.$minor";

    if ($version ne '1.1' && $version ne '1.0') {
        $self->bad_request($c, 400, 'unsupported HTTP version');
        return;
    }

    if ($version eq '1.1' && !$headers{host}) {
        $self->bad_request($c, 400, 'missing Host header');
        return;
    }

    my $conn_hdr = lc join ',', @{ $headers{connection} || [] };
    my $close = $version eq '1.0'
                ? $conn_hdr !~ /\bkeep-alive\b/
                : $conn_hdr =~ /\bclose\b/;

    my $body_start = $end + $sep;
    my ($body, $consumed);

    my $te = lc join ',', @{ $headers{'transfer-encoding'} || [] };
    my @cl = @{ $headers{'content-length'} || [] };

    if ($te ne '') {
        if ($te ne 'chunked' || @cl) {
            $self->bad_request($c, 400, 'unsupported transfer encoding');
            return;
        }

        my $r = decode_chunked(\$c->{in}, $body_start);

        if (!defined $r) {
            $self->send_continue($c, \%headers);
            return;
        }

        if (!ref $r) {
            $self->bad_request($c, 400, $r);
            return;
        }

        ($body, $consumed) = @$r;

    } else {
        my %seen = map { $_ => 1 } map { split /\s*,\s*/ } @cl;
        my @v = keys %seen;

        if (@v > 1 || (@v && $v[0] !~ /\A\d{1,12}\z/)) {
            $self->bad_request($c, 400, 'invalid Content-Length');
            return;
        }

        my $len = @v ? $v[0] + 0 : 0;

        if ($len > MAX_BODY) {
            $self->bad_request($c, 413, 'request body too large');
            return;
        }

        if (length($c->{in}) - $body_start < $len) {
            $self->send_continue($c, \%headers);
            return;
        }

        $body = substr $c->{in}, $body_start, $len;
        $consumed = $body_start + $len;
    }

    my $expect = lc join ',', @{ $headers{expect} || [] };

    if ($expect ne '' && $expect ne '100-continue') {
        substr $c->{in}, 0, $consumed, '';
        $self->bad_request($c, 417, 'unsupported expectation');
        return;
    }

    substr $c->{in}, 0, $consumed, '';
    $c->{continued} = 0;

    my ($path, $query) = $target =~ /\A([^?#]*)(?:\?([^#]*))?/;

    return {
        method  => $method,
        target  => $target,
        path    => url_decode_path($path),
        query   => $query // '',
        params  => parse_form($query // ''),
        version => $version,
        headers => \%headers,
        list    => \@list,
        head    => $head,
        body    => $body,
        close   => $close,
        peer    => $c->{peer},
        time    => time,
    };
}


sub send_continue {
    my ($self, $c, $headers) = @_;

    return if $c->{continued};

    my $expect = lc join ',', @{ $headers->{expect} || [] };
    return unless $expect eq '100-continue';

    $c->{continued} = 1;
    $c->{out} .= "HTTP/1.1 100 Continue\r\n\r\n";
    $self->flush($c);
}


sub bad_request {
    my ($self, $c, $status, $why) = @_;

    $c->{busy} = 1;
    $c->{req} = { method => 'GET', path => '-', version => '1.1' };
    $self->respond($c, $status, ['Content-Type' => 'application/json'],
                   $JSON->encode({ message => $why }), close => 1);
}


# returns [body, end offset], undef when more data is needed, or an error
sub decode_chunked {
    my ($bufref, $pos) = @_;

    my $body = '';

    while (1) {
        my $eol = index $$bufref, "\r\n", $pos;
        if ($eol < 0) {
            return undef if length($$bufref) - $pos <= 1024;
            return 'invalid chunk size';
        }

        my $line = substr $$bufref, $pos, $eol - $pos;
        my ($hex) = $line =~ /\A([0-9A-Fa-f]{1,8})(?:[ \t]*;.*)?\z/
            or return 'invalid chunk size';

        my $size = hex $hex;
        return 'request body too large' if length($body) + $size > MAX_BODY;

        $pos = $eol + 2;

        if ($size == 0) {
            # trailer fields up to an empty line
            while (1) {
                my $e = index $$bufref, "\r\n", $pos;
                return undef if $e < 0;
                my $empty = $e == $pos;
                $pos = $e + 2;
                return [$body, $pos] if $empty;
            }
        }

        return undef if length($$bufref) < $pos + $size + 2;
        return 'invalid chunk' if substr($$bufref, $pos + $size, 2) ne "\r\n";

        $body .= substr $$bufref, $pos, $size;
        $pos += $size + 2;
    }
}


# responses

sub respond {
    my ($self, $c, $status, $headers, $body, %o) = @_;

    return if $c->{closed};

    my $req = $c->{req} || {};
    $body //= '';
    utf8::encode($body) if utf8::is_utf8($body);

    my $close = $o{close} || $c->{want_close};
    my @h = ('Date' => http_date(time), @{ $headers || [] });

    push @h, 'Content-Length' => length $body
        unless $status == 204 || $status == 304;

    if ($close) {
        push @h, 'Connection' => 'close';
    } elsif (($req->{version} // '') eq '1.0') {
        push @h, 'Connection' => 'keep-alive';
    }

    my $head = "HTTP/1.1 $status " . ($REASON{$status} // 'Unknown') . "\r\n";

    while (my ($k, $v) = splice @h, 0, 2) {
        $head .= "$k: $v\r\n";
    }

    my $bytes = $head . "\r\n";
    $bytes .= $body unless ($req->{method} // '') eq 'HEAD';

    $c->{answered} = 1;
    $self->logline(sprintf '%s %s %d', $req->{method} // '-',
                           $req->{path} // '-', $status);

    if ($o{drip}) {
        $c->{drip} = $bytes;
        $c->{close_after_write} = 1 if $close;
        $self->drip($c);
        return;
    }

    $c->{out} .= $bytes;
    $c->{close_after_write} = 1 if $close;
    $self->finish($c);
}


# one byte at a time, so that a client's timeout fires mid-answer
sub drip {
    my ($self, $c) = @_;

    return if $c->{closed};

    if ($c->{drip} eq '') {
        delete $c->{drip};
        $self->finish($c);
        return;
    }

    $c->{out} .= substr $c->{drip}, 0, 1, '';
    $self->flush($c);

    $self->after($self->{settings}{drip_interval}, sub { $self->drip($c) });
}


sub finish {
    my ($self, $c) = @_;

    $c->{busy} = 0;
    $c->{answered} = 0;
    $c->{hanging} = 0;

    if ($c->{token_inflight}) {
        $c->{token_inflight} = 0;
        $self->{stats}{token_inflight}--;
    }

    $self->flush($c);
    $self->process($c) unless $c->{closed};
}


sub json_response {
    my ($self, $c, $status, $data, @headers) = @_;

    $self->respond($c, $status,
                   ['Content-Type' => 'application/json', @headers],
                   $JSON->encode($data));
}


sub html_response {
    my ($self, $c, $status, $html, @headers) = @_;

    $self->respond($c, $status,
                   ['Content-Type' => 'text/html; charset=UTF-8',
                    'Cache-Control' => 'no-cache, private', @headers],
                   $html);
}


sub redirect {
    my ($self, $c, $location, @headers) = @_;

    $self->respond($c, 302, ['Location' => $location,
                             'Content-Type' => 'text/html; charset=UTF-8',
                             'Cache-Control' => 'no-cache, private',
                             @headers],
                   redirect_page($location));
}


# runs now or after a delay; mode normal, hang, close or drip
sub deliver {
    my ($self, $c, $delay, $mode, @response) = @_;

    my $go = sub {
        return if $c->{closed};

        if ($mode eq 'close') {
            $self->close_conn($c);
        } elsif ($mode eq 'hang') {
            $c->{hanging} = 1;
        } else {
            $self->respond($c, @response, drip => $mode eq 'drip');
        }
    };

    if ($delay > 0) {
        $self->after($delay, $go);
    } else {
        $go->();
    }
}


sub dispatch {
    my ($self, $c, $req) = @_;

    my $p = $req->{path};

    return $self->h_authorize($c, $req) if $p eq '/oauth/authorize';
    return $self->h_token($c, $req) if $p eq '/oauth/token';

    if ($p =~ m{\A((?:/api)?/1\.0)/(profile|campaigns)/?\z}) {
        return $self->h_api($c, $req, $2, $1);
    }

    return $self->h_control($c, $req, $1) if $p =~ m{\A/_control(?:/(\w+))?\z};
    return $self->h_avatar($c, $req, $1) if $p =~ m{\A/avatars/(\d+)\.svg\z};
    return $self->h_index($c, $req) if $p eq '/';

    $self->json_response($c, 404, { message => 'Not Found' });
}


sub method_not_allowed {
    my ($self, $c, $req, @allowed) = @_;

    my $route = $req->{path};
    $route =~ s{\A/}{};

    $self->json_response($c, 405, {
        message => "The $req->{method} method is not supported for route "
                   . "$route. Supported methods: " . join(', ', @allowed) . '.',
    }, 'Allow' => join ', ', @allowed);
}


# the authorization endpoint

sub h_authorize {
    my ($self, $c, $req) = @_;

    my $m = $req->{method};

    return $self->h_authorize_decision($c, $req) if $m eq 'POST';
    return $self->method_not_allowed($c, $req, 'GET', 'HEAD', 'POST')
        unless $m eq 'GET' || $m eq 'HEAD';

    $self->{stats}{authorize}++;

    my $s = $self->{settings};
    my ($ar, @fail) = $self->validate_authorization($req->{params});

    return $self->respond($c, @fail) unless $ar;

    if ($s->{authorize_mode} eq 'approve') {
        return $self->approve($c, $ar, $s->{default_user});
    }

    if ($s->{authorize_mode} eq 'deny') {
        return $self->deny($c, $ar);
    }

    my $prompt = $req->{params}{prompt} // '';
    my $uid = $self->remembered_user($req);

    if ($prompt ne 'consent' && $prompt ne 'login'
        && defined $uid && $self->holds_token($uid, $ar->{client_id}))
    {
        return $self->approve($c, $ar, $uid);
    }

    if ($prompt eq 'none') {
        my $kind = defined $uid ? 'consent_required' : 'login_required';
        return $self->redirect($c, $self->error_redirect($ar, $kind));
    }

    $self->html_response($c, 200, $self->consent_page($ar));
}


sub h_authorize_decision {
    my ($self, $c, $req) = @_;

    my $form = parse_form($req->{body} // '');
    my ($ar, @fail) = $self->validate_authorization({
        %$form, response_type => 'code',
    });

    return $self->respond($c, @fail) unless $ar;

    # Passport's deny form is a DELETE spoofed through _method
    if ($form->{deny} || lc($form->{_method} // '') eq 'delete') {
        return $self->deny($c, $ar);
    }

    unless ($form->{approve}) {
        return $self->html_response($c, 422,
            $self->consent_page($ar, 'Choose Authorize or Cancel.'));
    }

    my $uid = $form->{user} // $self->{settings}{default_user};
    $uid =~ s/\A\s+|\s+\z//g;

    unless ($self->find_user($uid)) {
        return $self->html_response($c, 422,
            $self->consent_page($ar, "There is no user with id \"$uid\".",
                                $uid));
    }

    $self->approve($c, $ar, $uid);
}


sub validate_authorization {
    my ($self, $p) = @_;

    my $s = $self->{settings};

    # the grant is chosen before anything else is looked at, so a wrong
    # response type or a missing client id means no grant can answer
    if (($p->{response_type} // '') ne 'code' || !defined $p->{client_id}) {
        return (undef, $self->oauth_error('unsupported_grant_type',
            'Check that all required parameters have been provided'));
    }

    if ($p->{client_id} ne $s->{client_id}) {
        return (undef, $self->oauth_error('invalid_client'));
    }

    my $redirect = $p->{redirect_uri};

    if (defined $redirect && $redirect ne '') {
        unless ($self->redirect_allowed($redirect)) {
            return (undef, $self->oauth_error('invalid_client'));
        }
    } elsif ($s->{redirect_uri} ne '') {
        $redirect = undef;
    } else {
        return (undef, $self->oauth_error('invalid_client'));
    }

    my $ar = {
        client_id    => $p->{client_id},
        redirect_uri => $redirect // $s->{redirect_uri},
        sent_redirect => $redirect,
        state        => $p->{state},
        scope        => $p->{scope} // '',
    };

    if (defined $p->{code_challenge} && $p->{code_challenge} ne '') {
        my $method = $p->{code_challenge_method};
        $method = 'plain' if !defined $method || $method eq '';

        if ($method ne 'plain' && $method ne 'S256') {
            return (undef, $self->oauth_error('invalid_request',
                'Code challenge method must be one of `plain`, `S256`'));
        }

        if ($p->{code_challenge} !~ $PKCE_RE) {
            return (undef, $self->oauth_error('invalid_request',
                'Code challenge must follow the specifications of RFC-7636.'));
        }

        $ar->{challenge} = $p->{code_challenge};
        $ar->{challenge_method} = $method;
    }

    if ($ar->{scope} =~ /\S/) {
        my ($first) = $ar->{scope} =~ /(\S+)/;
        return (undef, 302, ['Location' =>
            $self->error_redirect($ar, 'invalid_scope',
                                  "Check the `$first` scope")], '');
    }

    return $ar;
}


# exact match, except that the port of an http loopback URI may differ
sub redirect_allowed {
    my ($self, $uri) = @_;

    my $reg = $self->{settings}{redirect_uri};

    if ($reg eq '') {
        return $uri =~ m{\Ahttps?://[^/?#\s]+(?:[/?#]\S*)?\z};
    }

    return 1 if $uri eq $reg;

    my $loop = qr{\Ahttp://(127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(.*)\z}s;
    my ($h1, $r1) = $uri =~ $loop or return 0;
    my ($h2, $r2) = $reg =~ $loop or return 0;

    return $h1 eq $h2 && $r1 eq $r2;
}


sub approve {
    my ($self, $c, $ar, $uid) = @_;

    my $s = $self->{settings};
    my $code = 'def50200' . random_hex(max($s->{code_len} - 8, 16));

    $self->{codes}{$code} = {
        client_id    => $ar->{client_id},
        redirect_uri => $ar->{sent_redirect},
        challenge    => $ar->{challenge},
        method       => $ar->{challenge_method},
        user         => $uid,
        expires      => time + $s->{code_ttl},
    };

    $self->{stats}{approved}++;

    my @q = (code => $code);
    push @q, state => $ar->{state} if defined $ar->{state};

    my @cookie;
    if ($s->{remember_consent}) {
        @cookie = ('Set-Cookie' =>
                   "$USER_COOKIE=$uid; path=/; httponly; samesite=lax");
    }

    $self->redirect($c, add_query($ar->{redirect_uri}, @q), @cookie);
}


sub deny {
    my ($self, $c, $ar) = @_;

    $self->{stats}{denied}++;
    $self->redirect($c, $self->error_redirect($ar, 'access_denied',
                                              'The user denied the request'));
}


sub error_redirect {
    my ($self, $ar, $kind, $hint) = @_;

    my (undef, $payload) = oauth_payload($kind, $hint);
    my @q;

    push @q, state => $ar->{state} if defined $ar->{state};
    push @q, error => $payload->{error},
             error_description => $payload->{error_description};
    push @q, hint => $payload->{hint} if defined $payload->{hint};
    push @q, message => $payload->{message};

    return add_query($ar->{redirect_uri}, @q);
}


sub remembered_user {
    my ($self, $req) = @_;

    return unless $self->{settings}{remember_consent};

    for my $h (@{ $req->{headers}{cookie} || [] }) {
        for my $pair (split /;\s*/, $h) {
            my ($k, $v) = split /=/, $pair, 2;
            next unless defined $v && $k eq $USER_COOKIE;
            return $v if $self->find_user($v);
        }
    }

    return;
}


sub holds_token {
    my ($self, $uid, $client) = @_;

    my $now = time;

    for my $t (values %{ $self->{access} }) {
        return 1 if $t->{user} eq $uid && $t->{client} eq $client
                    && !$t->{revoked} && $t->{expires} > $now;
    }

    return 0;
}


# the token endpoint

sub h_token {
    my ($self, $c, $req) = @_;

    return $self->method_not_allowed($c, $req, 'POST')
        unless $req->{method} eq 'POST';

    my $s = $self->{settings};
    my $st = $self->{stats};
    my $params = request_params($req);
    my $grant = $params->{grant_type} // '';

    $st->{token}{ $grant eq '' ? 'none' : $grant }++;
    $st->{token_total}++;
    $self->record($req);

    $c->{token_inflight} = 1;
    $st->{token_inflight}++;
    $st->{token_concurrent_max} = $st->{token_inflight}
        if $st->{token_inflight} > $st->{token_concurrent_max};

    if ($s->{token_rate_limit} > 0) {
        my $hits = $self->hit($self->{token_rate}, $req->{peer});
        if ($hits > $s->{token_rate_limit}) {
            $st->{token_errors}++;
            return $self->json_response($c, 429,
                { message => 'Too Many Attempts.' },
                'Retry-After' => RATE_WINDOW,
                'X-RateLimit-Limit' => $s->{token_rate_limit},
                'X-RateLimit-Remaining' => 0);
        }
    }

    my $fault = $self->token_fault($grant);
    my $canned = $fault && $s->{token_status};
    my $silent = $fault && $s->{token_mode} =~ /\A(?:hang|close)\z/;
    my @response;

    if (!($canned || $silent) || $s->{token_fault_process}) {
        @response = $self->grant($req, $params, $grant);
    }

    if ($canned) {
        @response = ($s->{token_status},
                     ['Content-Type' => $s->{token_content_type},
                      %{ $s->{token_headers} }],
                     $s->{token_body});
    }

    $st->{token_errors}++ if !@response || $response[0] != 200;

    if (!$fault) {
        return $self->respond($c, @response);
    }

    $self->deliver($c, $s->{token_delay}, $s->{token_mode}, @response);
}


sub token_fault {
    my ($self, $grant) = @_;

    my $s = $self->{settings};

    return 0 if $s->{token_fault_grant} ne ''
                && $s->{token_fault_grant} ne $grant;

    return 0 if $s->{token_mode} eq 'normal' && !$s->{token_status}
                && !$s->{token_delay};

    if ($s->{token_fault_times}) {
        return 0 if $self->{token_faults_left} <= 0;
        $self->{token_faults_left}--;
    }

    return 1;
}


sub grant {
    my ($self, $req, $p, $grant) = @_;

    if ($grant ne 'authorization_code' && $grant ne 'refresh_token') {
        return $self->oauth_error('unsupported_grant_type',
            'Check that all required parameters have been provided');
    }

    my ($client, @fail) = $self->authenticate_client($req, $p);
    return @fail unless defined $client;

    return $grant eq 'authorization_code'
           ? $self->grant_code($p, $client)
           : $self->grant_refresh($p, $client);
}


sub authenticate_client {
    my ($self, $req, $p) = @_;

    my $s = $self->{settings};
    my ($buser, $bpass, $basic);

    for my $h (@{ $req->{headers}{authorization} || [] }) {
        next unless $h =~ /\ABasic\s+(\S+)\s*\z/i;
        my $dec = decode_base64($1);
        ($buser, $bpass) = split /:/, $dec, 2;
        $basic = 1;
    }

    my $id = $p->{client_id} // $buser;
    my $secret = $p->{client_secret} // $bpass;

    unless (defined $id && $id ne '') {
        return (undef, $self->oauth_error('invalid_request',
                                          'Check the `client_id` parameter'));
    }

    if ($id ne $s->{client_id} || !defined $secret
        || $secret ne $s->{client_secret})
    {
        my @h = $basic ? ('WWW-Authenticate' => 'Basic realm="OAuth"') : ();
        return (undef, $self->oauth_error('invalid_client', undef, @h));
    }

    return $id;
}


sub grant_code {
    my ($self, $p, $client) = @_;

    my $code = $p->{code};

    unless (defined $code && $code ne '') {
        return $self->oauth_error('invalid_request',
                                  'Check the `code` parameter');
    }

    my $rec = $self->{codes}{$code};

    return $self->oauth_error('invalid_grant',
                              'Cannot decrypt the authorization code')
        unless $rec;

    return $self->oauth_error('invalid_grant', 'Authorization code has expired')
        if time > $rec->{expires};

    return $self->oauth_error('invalid_grant',
                              'Authorization code has been revoked')
        if $rec->{used};

    return $self->oauth_error('invalid_request',
        'Authorization code was not issued to this client')
        if $rec->{client_id} ne $client;

    if (defined $rec->{redirect_uri}) {
        my $r = $p->{redirect_uri};

        return $self->oauth_error('invalid_request',
                                  'Check the `redirect_uri` parameter')
            unless defined $r && $r ne '';

        return $self->oauth_error('invalid_request', 'Invalid redirect URI')
            if $r ne $rec->{redirect_uri};
    }

    my $verifier = $p->{code_verifier};

    if (defined $rec->{challenge}) {
        return $self->oauth_error('invalid_request',
                                  'Check the `code_verifier` parameter')
            unless defined $verifier && $verifier ne '';

        return $self->oauth_error('invalid_request',
            'Code Verifier must follow the specifications of RFC-7636.')
            unless $verifier =~ $PKCE_RE;

        my $expect = $rec->{method} eq 'S256'
                     ? base64url(sha256($verifier))
                     : $verifier;

        return $self->oauth_error('invalid_grant',
                                  'Failed to verify `code_verifier`.')
            unless $expect eq $rec->{challenge};

    } elsif (defined $verifier && $verifier ne '') {
        # a verifier without a challenge is how a PKCE downgrade looks
        return $self->oauth_error('invalid_request',
            'Failed to verify `code_verifier`: no code challenge was sent.');
    }

    $rec->{used} = 1;

    return $self->token_response($client, $rec->{user});
}


sub grant_refresh {
    my ($self, $p, $client) = @_;

    my $rt = $p->{refresh_token};

    unless (defined $rt && $rt ne '') {
        return $self->oauth_error('invalid_request',
                                  'Check the `refresh_token` parameter');
    }

    my $rec = $self->{refresh}{$rt};

    return $self->oauth_error('invalid_refresh_token',
                              'Cannot decrypt the refresh token')
        unless $rec;

    return $self->oauth_error('invalid_refresh_token',
                              'Token is not linked to client')
        if $rec->{client} ne $client;

    return $self->oauth_error('invalid_refresh_token', 'Token has expired')
        if time > $rec->{expires};

    return $self->oauth_error('invalid_refresh_token', 'Token has been revoked')
        if $rec->{revoked};

    if (($p->{scope} // '') =~ /(\S+)/) {
        return $self->oauth_error('invalid_scope', "Check the `$1` scope");
    }

    # rotation: both old tokens die at once, with no grace period
    $rec->{revoked} = 1;
    my $old = $self->{access}{ $rec->{access} };
    $old->{revoked} = 1 if $old;

    return $self->token_response($client, $rec->{user});
}


sub token_response {
    my ($self, $client, $uid) = @_;

    my ($at, $rt, $expires_in) = $self->issue_tokens($client, $uid);

    my $body = sprintf '{"token_type":"Bearer","expires_in":%d,'
                       . '"access_token":%s,"refresh_token":%s}',
                       $expires_in, $JSON->encode($at), $JSON->encode($rt);

    return (200, ['Content-Type' => 'application/json; charset=UTF-8',
                  'Cache-Control' => 'no-store',
                  'Pragma' => 'no-cache'], $body);
}


sub issue_tokens {
    my ($self, $client, $uid, $expires_in) = @_;

    my $s = $self->{settings};
    my $now = time;

    $expires_in //= $s->{expires_in};

    my $at = $s->{token_access_token} ne ''
             ? $s->{token_access_token}
             : make_jwt($client, $uid, $now, $expires_in,
                        $s->{access_token_len});

    my $rt = $s->{token_refresh_token} ne ''
             ? $s->{token_refresh_token}
             : 'def50200' . random_hex(max($s->{refresh_token_len} - 8, 16));

    $self->{access}{$at} = {
        client  => $client,
        user    => $uid,
        expires => $now + $expires_in,
        revoked => 0,
    };

    $self->{refresh}{$rt} = {
        client  => $client,
        user    => $uid,
        access  => $at,
        expires => $now + $s->{refresh_expires_in},
        revoked => 0,
    };

    return ($at, $rt, $expires_in);
}


sub oauth_error {
    my ($self, $kind, $hint, @headers) = @_;

    my ($status, $payload) = oauth_payload($kind, $hint);

    return ($status, ['Content-Type' => 'application/json', @headers],
            $JSON->encode($payload));
}


sub oauth_payload {
    my ($kind, $hint) = @_;

    my ($status, $error, $desc) = @{ $OAUTH_ERROR{$kind} };
    my %p = (error => $error, error_description => $desc, message => $desc);
    $p{hint} = $hint if defined $hint;

    return ($status, \%p);
}


# the API

sub h_api {
    my ($self, $c, $req, $what, $prefix) = @_;

    return $self->method_not_allowed($c, $req, 'GET', 'HEAD')
        unless $req->{method} eq 'GET' || $req->{method} eq 'HEAD';

    my $s = $self->{settings};

    $self->{stats}{$what}++;
    $self->record($req);

    my $token;
    for my $h (@{ $req->{headers}{authorization} || [] }) {
        $token = $1 if $h =~ /\ABearer\s+(\S+)\s*\z/i;
    }

    my $rec = defined $token ? $self->{access}{$token} : undef;

    if (!$rec || $rec->{revoked} || time > $rec->{expires}
        || !$self->find_user($rec->{user}))
    {
        return $self->json_response($c, 401, {
            code  => 401,
            error => 'Invalid authentication token.',
        });
    }

    my $user = $self->find_user($rec->{user});
    my $limit = $self->user_rate_limit($user);
    my @rl;

    if ($s->{rate_limit}) {
        my $hits = $self->hit($self->{rate}, $user->{id});
        my $left = $limit - $hits;

        @rl = ('X-RateLimit-Limit' => $limit,
               'X-RateLimit-Remaining' => $left < 0 ? 0 : $left);

        if ($hits > $limit) {
            $self->{stats}{rate_limited}++;
            return $self->json_response($c, 429, ['Too Many Attempts.'], @rl);
        }
    }

    my @response;

    if ($what eq 'profile') {
        @response = (200, $self->profile_json($user, $limit));
    } else {
        my $page = $req->{params}{page} // 1;
        $page = 1 unless $page =~ /\A\d{1,6}\z/ && $page > 0;
        @response = (200, $self->campaigns_json($user, $page + 0, $prefix));
    }

    @response = ($response[0], ['Content-Type' => 'application/json', @rl],
                 $JSON->encode($response[1]));

    my $fault = $self->api_fault($what);

    return $self->respond($c, @response) unless $fault;

    if ($s->{api_status}) {
        @response = ($s->{api_status},
                     ['Content-Type' => $s->{api_content_type},
                      %{ $s->{api_headers} }],
                     $s->{api_body});
    }

    $self->deliver($c, $s->{api_delay}, $s->{api_mode}, @response);
}


sub api_fault {
    my ($self, $what) = @_;

    my $s = $self->{settings};

    return 0 if $s->{api_fault_endpoint} ne ''
                && $s->{api_fault_endpoint} ne $what;

    return 0 if $s->{api_mode} eq 'normal' && !$s->{api_status}
                && !$s->{api_delay};

    if ($s->{api_fault_times}) {
        return 0 if $self->{api_faults_left} <= 0;
        $self->{api_faults_left}--;
    }

    return 1;
}


sub user_rate_limit {
    my ($self, $user) = @_;

    my $base = $self->{settings}{rate_limit_per_minute};

    return $user->{subscriber} ? $base * 3 : $base;
}


# counts a hit in a sliding one-minute window
sub hit {
    my ($self, $table, $key) = @_;

    my $now = time;
    my $list = $table->{$key} ||= [];

    shift @$list while @$list && $list->[0] <= $now - RATE_WINDOW;
    push @$list, $now;

    return scalar @$list;
}


sub profile_json {
    my ($self, $user, $limit) = @_;

    my $base = $self->{base_url};
    my @camps = @{ $user->{campaigns} || [] };

    return {
        data => {
            id                 => $user->{id} + 0,
            name               => $user->{name},
            avatar             => "$base/avatars/$user->{id}.svg",
            avatar_thumb       => "$base/avatars/$user->{id}.svg",
            locale             => 'en',
            timezone           => 'UTC',
            date_format        => 'Y-m-d',
            default_pagination => PER_PAGE,
            last_campaign_id   => @camps ? $camps[0] + 0 : undef,
            is_patreon         => $user->{subscriber}
                                  ? JSON::PP::true : JSON::PP::false,
            is_subscriber      => $user->{subscriber}
                                  ? JSON::PP::true : JSON::PP::false,
            rate_limit         => $limit,
        },
    };
}


sub campaigns_json {
    my ($self, $user, $page, $prefix) = @_;

    my $api = "$self->{base_url}$prefix/campaigns";
    my @ids = @{ $user->{campaigns} || [] };
    my $total = @ids;
    my $last = $total ? int(($total + PER_PAGE - 1) / PER_PAGE) : 1;
    my $from = ($page - 1) * PER_PAGE;
    my @slice = $from < $total
                ? @ids[$from .. min($from + PER_PAGE, $total) - 1]
                : ();

    return {
        data  => [ map { $self->campaign_json($_) } @slice ],
        links => {
            first => "$api?page=1",
            last  => "$api?page=$last",
            prev  => $page > 1 ? "$api?page=" . ($page - 1) : undef,
            next  => $page < $last ? "$api?page=" . ($page + 1) : undef,
        },
        meta => {
            current_page => $page,
            from         => @slice ? $from + 1 : undef,
            last_page    => $last,
            path         => $api,
            per_page     => PER_PAGE,
            to           => @slice ? $from + @slice : undef,
            total        => $total,
        },
    };
}


sub campaign_json {
    my ($self, $id) = @_;

    my $name = $self->{settings}{campaign_names}{$id} // "Campaign $id";

    return {
        id            => $id + 0,
        name          => $name,
        locale        => 'en',
        entry         => '<p>' . html_escape($name) . '</p>',
        image         => undef,
        image_full    => undef,
        image_thumb   => undef,
        visibility    => 'private',
        visibility_id => 1,
        created_at    => '2024-03-02T18:20:11.000000Z',
        updated_at    => '2025-11-14T09:41:52.000000Z',
    };
}


sub find_user {
    my ($self, $id) = @_;

    return unless defined $id;

    for my $u (@{ $self->{settings}{users} }) {
        return $u if "$u->{id}" eq "$id";
    }

    return;
}


sub record {
    my ($self, $req) = @_;

    my $n = $self->{settings}{record};
    return unless $n > 0;

    my $recs = $self->{records};

    push @$recs, {
        time    => $req->{time},
        method  => $req->{method},
        target  => $req->{target},
        path    => $req->{path},
        version => $req->{version},
        headers => $req->{headers},
        header_list => $req->{list},
        head    => $req->{head},
        body    => $req->{body},
        peer    => $req->{peer},
    };

    splice @$recs, 0, @$recs - $n if @$recs > $n;
}


# the control API

sub h_control {
    my ($self, $c, $req, $what) = @_;

    my $m = $req->{method};
    $what //= '';

    if ($what eq '') {
        return $self->json_response($c, 200, $self->{settings})
            if $m eq 'GET' || $m eq 'HEAD';

        return $self->method_not_allowed($c, $req, 'GET', 'POST')
            unless $m eq 'POST';

        my $data = eval { $JSON->decode($req->{body} // '') };

        unless (ref $data eq 'HASH') {
            return $self->json_response($c, 400,
                { error => 'the body must be a JSON object' });
        }

        my $err = $self->apply_settings($data);

        return $self->json_response($c, 400, { error => $err }) if $err;
        return $self->json_response($c, 200, $self->{settings});
    }

    if ($what eq 'stats') {
        return $self->json_response($c, 200, $self->{stats});
    }

    if ($what eq 'requests') {
        return $self->json_response($c, 200, $self->{records});
    }

    return $self->method_not_allowed($c, $req, 'POST') unless $m eq 'POST';

    if ($what eq 'reset') {
        my $data = eval { $JSON->decode($req->{body} || '{}') } || {};
        $self->reset_state(keep_tokens => ref $data eq 'HASH'
                                          && $data->{keep_tokens});
        return $self->json_response($c, 200, { reset => JSON::PP::true });
    }

    if ($what eq 'revoke_all') {
        $_->{revoked} = 1 for values %{ $self->{access} },
                              values %{ $self->{refresh} };
        return $self->json_response($c, 200, { revoked => JSON::PP::true });
    }

    if ($what eq 'issue') {
        my $data = eval { $JSON->decode($req->{body} || '{}') } || {};
        my $uid = $data->{user} // $self->{settings}{default_user};

        return $self->json_response($c, 400, { error => "unknown user $uid" })
            unless $self->find_user($uid);

        my ($at, $rt, $exp) = $self->issue_tokens(
            $data->{client_id} // $self->{settings}{client_id},
            $uid, $data->{expires_in});

        return $self->json_response($c, 200, {
            token_type    => 'Bearer',
            expires_in    => $exp + 0,
            access_token  => $at,
            refresh_token => $rt,
        });
    }

    $self->json_response($c, 404, { message => 'Not Found' });
}


sub apply_settings {
    my ($self, $data) = @_;

    my $s = $self->{settings};
    my $def = defaults();
    my @unknown = grep { !exists $def->{$_} } sort keys %$data;

    return 'unknown setting: ' . join(', ', @unknown) if @unknown;

    my %enum = (
        authorize_mode => [qw(page approve deny)],
        token_mode     => [qw(normal hang close drip)],
        api_mode       => [qw(normal hang close drip)],
        token_fault_grant => ['', 'authorization_code', 'refresh_token'],
        api_fault_endpoint => ['', 'profile', 'campaigns'],
    );

    for my $k (sort keys %$data) {
        $data->{$k} = $data->{$k} ? 1 : 0
            if JSON::PP::is_bool($data->{$k});

        my $v = $data->{$k};
        my $d = $def->{$k};

        if ($enum{$k}) {
            return "invalid value for $k" unless defined $v
                && grep { $_ eq $v } @{ $enum{$k} };
        } elsif (ref $d eq 'HASH' || ref $d eq 'ARRAY') {
            my $type = ref $d eq 'HASH' ? 'object' : 'array';
            return "$k must be a JSON $type" unless ref $v eq ref $d;
        } elsif ($d =~ /\A\d+\z/ && $k !~ /\A(?:client_id|default_user)\z/) {
            return "$k must be a non-negative number"
                unless defined $v && !ref $v && $v =~ /\A\d+(?:\.\d+)?\z/;
        } else {
            return "$k must be a string" if !defined $v || ref $v;
        }
    }

    if ($data->{users}) {
        for my $u (@{ $data->{users} }) {
            return 'each user needs an id and a name'
                unless ref $u eq 'HASH' && defined $u->{id}
                       && defined $u->{name};
            $u->{campaigns} ||= [];
        }
    }

    @$s{ keys %$data } = values %$data;

    $self->{token_faults_left} = $s->{token_fault_times}
        if exists $data->{token_fault_times};
    $self->{api_faults_left} = $s->{api_fault_times}
        if exists $data->{api_fault_times};

    splice @{ $self->{records} }, 0, @{ $self->{records} } - $s->{record}
        if @{ $self->{records} } > $s->{record};

    return;
}


# pages for people

sub h_index {
    my ($self, $c, $req) = @_;

    my $s = $self->{settings};
    my $base = html_escape($self->{base_url});
    my $rows = join '', map {
        sprintf '<tr><td>%s</td><td>%s</td><td>%s</td></tr>',
            html_escape($_->{id}), html_escape($_->{name}),
            html_escape(join(', ', @{ $_->{campaigns} }) || '-')
    } @{ $s->{users} };

    my $body = <<"HTML";
<h1>Kanka stand-in</h1>
<p>A local server that answers like Kanka's OAuth server and API, for tests
and demos. Nothing here talks to kanka.io.</p>
<h2>Endpoints</h2>
<ul>
<li>Authorize: <code>$base/oauth/authorize</code></li>
<li>Token: <code>$base/oauth/token</code></li>
<li>API: <code>$base/api/1.0</code> (profile, campaigns)</li>
</ul>
<h2>Users</h2>
<table><tr><th>id</th><th>name</th><th>campaigns</th></tr>$rows</table>
<p class="note">OAuth client id
<code>${\ html_escape($s->{client_id}) }</code>.</p>
HTML

    $self->html_response($c, 200, page('Kanka stand-in', $body));
}


sub consent_page {
    my ($self, $ar, $error, $user) = @_;

    my $s = $self->{settings};
    my $name = html_escape($s->{client_name});
    $user //= $s->{default_user};

    my $hidden = '';
    for my $k (qw(client_id redirect_uri state)) {
        my $v = $k eq 'redirect_uri' ? $ar->{sent_redirect} : $ar->{$k};
        next unless defined $v;
        $hidden .= hidden($k, $v);
    }
    if (defined $ar->{challenge}) {
        $hidden .= hidden('code_challenge', $ar->{challenge});
        $hidden .= hidden('code_challenge_method', $ar->{challenge_method});
    }

    my $options = join '', map {
        sprintf '<option value="%s">%s</option>', html_escape($_->{id}),
            html_escape($_->{name})
    } @{ $s->{users} };

    my $known = join ', ', map {
        html_escape("$_->{id} ($_->{name})")
    } @{ $s->{users} };

    my $err = defined $error
              ? '<p class="error">' . html_escape($error) . '</p>'
              : '';

    my $body = <<"HTML";
<h1>Authorize $name?</h1>
<p><strong>$name</strong> asks to use your Kanka account. It will see your
profile and the campaigns you belong to, and may use the API as you.</p>
$err
<form method="post" action="/oauth/authorize">
$hidden
<label for="user">Signed in as user</label>
<input type="text" id="user" name="user" value="${\ html_escape($user) }"
 list="users" autocomplete="off">
<datalist id="users">$options</datalist>
<p class="note">Known users: $known.</p>
<div class="buttons">
<button class="approve" type="submit" name="approve" value="1">
Authorize</button>
<button class="deny" type="submit" name="deny" value="1">Cancel</button>
</div>
</form>
HTML

    return page("Authorize $s->{client_name}", $body);
}


sub h_avatar {
    my ($self, $c, $req, $id) = @_;

    my $user = $self->find_user($id);
    my $initials = '?';

    if ($user) {
        $initials = join '', map { uc substr $_, 0, 1 }
                    (split /\s+/, $user->{name})[0, -1];
    }

    my $hue = ($id * 67) % 360;
    my $svg = <<"SVG";
<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"
 viewBox="0 0 96 96">
<rect width="96" height="96" rx="48" fill="hsl($hue,45%,45%)"/>
<text x="48" y="58" font-family="sans-serif" font-size="34" fill="#fff"
 text-anchor="middle">${\ html_escape($initials) }</text>
</svg>
SVG

    $self->respond($c, 200, ['Content-Type' => 'image/svg+xml',
                             'Cache-Control' => 'max-age=3600'], $svg);
}


sub page {
    my ($title, $body) = @_;

    $title = html_escape($title);

    return <<"HTML";
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { margin: 0; background: #f2f0f7; color: #2b2735;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 30rem; margin: 4rem auto; padding: 2rem;
       background: #fff; border-radius: 10px;
       box-shadow: 0 2px 14px rgba(45, 25, 90, .12); }
.brand { color: #7048c8; font-weight: 700; letter-spacing: .04em;
         text-transform: uppercase; font-size: .85rem; }
h1 { font-size: 1.35rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.05rem; margin-top: 1.5rem; }
label { display: block; font-size: .9rem; margin: 1.2rem 0 .3rem; }
input[type=text] { width: 100%; box-sizing: border-box; padding: .5rem;
                   font: inherit; border: 1px solid #c8c0dc;
                   border-radius: 6px; }
.buttons { display: flex; gap: .75rem; margin-top: 1.5rem; }
button { flex: 1; padding: .6rem; font: inherit; cursor: pointer;
         border-radius: 6px; border: 1px solid #7048c8; }
.approve { background: #7048c8; color: #fff; }
.deny { background: #fff; color: #7048c8; }
.note { font-size: .85rem; color: #6a6478; }
.error { color: #b3261e; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem;
         border-bottom: 1px solid #e4e0ee; }
code { font-size: .85rem; }
</style>
</head>
<body>
<main>
<div class="brand">Kanka &middot; local stand-in</div>
$body
</main>
</body>
</html>
HTML
}


sub redirect_page {
    my ($location) = @_;

    my $l = html_escape($location);

    return "<!DOCTYPE html>\n<html><head><meta charset=\"UTF-8\">"
         . "<title>Redirecting</title></head><body>"
         . "Redirecting to <a href=\"$l\">$l</a>.</body></html>\n";
}


sub hidden {
    my ($name, $value) = @_;

    return sprintf qq{<input type="hidden" name="%s" value="%s">\n},
        html_escape($name), html_escape($value);
}


# helpers

sub logline {
    my ($self, $msg) = @_;

    my $fh = $self->{log_fh} or return;
    chomp $msg;
    printf {$fh} "%s %s\n", strftime('%H:%M:%S', localtime), $msg;
}


sub request_params {
    my ($req) = @_;

    my $ct = lc(($req->{headers}{'content-type'} || [''])->[0]);

    if ($ct =~ m{\Aapplication/json}) {
        my $d = eval { $JSON->decode($req->{body}) };
        return {} unless ref $d eq 'HASH';
        return { map { $_ => ref $d->{$_} ? '' : $d->{$_} } keys %$d };
    }

    return parse_form($req->{body} // '');
}


sub parse_form {
    my ($s) = @_;

    my %p;

    for my $pair (split /&/, $s) {
        next if $pair eq '';
        my ($k, $v) = split /=/, $pair, 2;
        $p{ url_decode($k) } = url_decode($v // '');
    }

    return \%p;
}


sub url_decode {
    my ($s) = @_;

    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;

    return $s;
}


sub url_decode_path {
    my ($s) = @_;

    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;

    return $s;
}


# the way PHP's http_build_query encodes
sub url_encode {
    my ($s) = @_;

    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-_. ])/sprintf '%%%02X', ord $1/ge;
    $s =~ tr/ /+/;

    return $s;
}


sub add_query {
    my ($uri, @pairs) = @_;

    my @q;
    while (my ($k, $v) = splice @pairs, 0, 2) {
        push @q, url_encode($k) . '=' . url_encode($v);
    }

    # a redirection URI carries no fragment
    $uri =~ s/#.*\z//s;
    my $sep = $uri =~ /\?/ ? '&' : '?';

    return $uri . $sep . join('&', @q);
}


sub html_escape {
    my ($s) = @_;

    $s //= '';
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/"/&quot;/g;
    $s =~ s/'/&#39;/g;

    return $s;
}


sub http_date {
    return strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime shift);
}


sub base64url {
    my ($bytes) = @_;

    my $s = encode_base64($bytes, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+\z//;

    return $s;
}


my $urandom;

sub random_bytes {
    my ($n) = @_;

    unless ($urandom) {
        open $urandom, '<:raw', '/dev/urandom'
            or die "cannot open /dev/urandom: $!\n";
    }

    my $buf;
    my $got = read $urandom, $buf, $n;
    die "short read from /dev/urandom\n" unless $got && $got == $n;

    return $buf;
}


sub random_hex {
    my ($len) = @_;

    return substr unpack('H*', random_bytes(int($len / 2) + 1)), 0, $len;
}


sub random_b64url {
    my ($len) = @_;

    return substr base64url(random_bytes(int($len * 3 / 4) + 3)), 0, $len;
}


# shaped like Passport's RS256 tokens; the signature is filler
sub make_jwt {
    my ($client, $uid, $now, $expires_in, $len) = @_;

    my $header = base64url('{"typ":"JWT","alg":"RS256"}');
    my $payload = base64url(sprintf
        '{"aud":%s,"jti":"%s","iat":%.6f,"nbf":%.6f,"exp":%.6f,'
        . '"sub":%s,"scopes":[]}',
        $JSON->encode("$client"), random_hex(80), $now, $now,
        $now + $expires_in, $JSON->encode("$uid"));

    my $sig = max($len - length($header) - length($payload) - 2, 86);
    $sig++ if $sig % 4 == 1;

    return "$header.$payload." . random_b64url($sig);
}


sub max { $_[0] > $_[1] ? $_[0] : $_[1] }
sub min { $_[0] < $_[1] ? $_[0] : $_[1] }


1;
