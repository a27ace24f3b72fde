# A small HTTP/1.1 client over raw sockets for the tests: every call is
# bounded in time and reports failures as status 0 instead of dying.

package Kanka::Test::HTTP;

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time);

# leftover bytes of kept-alive sockets, by socket address
my %PENDING;


sub request {
    my (%a) = @_;

    local $SIG{PIPE} = 'IGNORE';

    my $start = time;
    my $timeout = $a{timeout} // 10;
    my $deadline = $start + $timeout;
    my $method = uc($a{method} // 'GET');

    my ($scheme, $host, $port, $path);

    if (defined $a{url}) {
        ($scheme, $host, $port, $path) = parse_url($a{url})
            or return failure($start, "invalid URL \"$a{url}\"");
    } else {
        $scheme = $a{tls} ? 'https' : 'http';
        $host = $a{host} // '127.0.0.1';
        $port = $a{port} or return failure($start, 'no port given');
        $path = $a{path} // '/';
    }

    my $url = "$scheme://" . ($host =~ /:/ ? "[$host]" : $host)
              . ":$port$path";

    my $keep = $a{keepalive};
    my $data = $a{raw} // build_request($method, $host, $port, $path, $keep,
                                        $a{headers}, $a{body});

    my $sock = ref $keep && $keep->opened ? $keep : undef;

    unless ($sock) {
        $sock = connect_to($scheme, $host, $port, $deadline, $a{ssl})
            or return failure($start, $@, url => $url);
    }

    my $werr = write_all($sock, $data, $deadline);

    # a server may answer and close before it has read the whole body
    my $res = read_response($sock, $method, $deadline);
    $res->{url} = $url;
    $res->{elapsed} = time - $start;

    if (!$res->{status} && $werr) {
        $res->{error} = $werr;
    }

    if ($keep && $res->{status} && !$res->{closed}) {
        $res->{socket} = $sock;
    } else {
        delete $PENDING{"$sock"};
        close $sock;
    }

    return $res;
}


sub parse_url {
    my ($url) = @_;

    my ($scheme, $host, $port, $path) =
        $url =~ m{\A(https?)://(\[[^\]]+\]|[^/:?#]+)(?::(\d+))?([^#]*)}i
        or return;

    $scheme = lc $scheme;
    $host =~ s/\A\[|\]\z//g;
    $port //= $scheme eq 'https' ? 443 : 80;
    $path = "/$path" unless $path =~ m{\A/};

    return ($scheme, $host, $port, $path);
}


sub build_request {
    my ($method, $host, $port, $path, $keep, $headers, $body) = @_;

    my @pairs = ref $headers eq 'ARRAY' ? @$headers
              : map { $_ => $headers->{$_} } sort keys %{ $headers || {} };
    my %given = map { lc $pairs[$_ * 2] => 1 } 0 .. @pairs / 2 - 1;

    my @h;
    push @h, Host => ($host =~ /:/ ? "[$host]" : $host) . ":$port"
        unless $given{host};
    push @h, 'User-Agent' => 'kanka-test/1' unless $given{'user-agent'};
    push @h, Connection => 'close' unless $keep || $given{connection};

    if (defined $body && !$given{'content-length'}
        && !$given{'transfer-encoding'})
    {
        push @h, 'Content-Length' => length $body;
    } elsif (!defined $body && $method =~ /\A(?:POST|PUT|PATCH)\z/
             && !$given{'content-length'})
    {
        push @h, 'Content-Length' => 0;
    }

    push @h, @pairs;

    my $req = "$method $path HTTP/1.1\r\n";

    while (my ($k, $v) = splice @h, 0, 2) {
        # undef drops a header the client would add by itself
        next unless defined $v;
        $req .= "$k: $_\r\n" for ref $v eq 'ARRAY' ? @$v : $v;
    }

    return $req . "\r\n" . ($body // '');
}


sub connect_to {
    my ($scheme, $host, $port, $deadline, $ssl) = @_;

    my $left = $deadline - time;
    $left = 0.1 if $left < 0.1;

    my $sock;

    if ($scheme eq 'https') {
        require IO::Socket::SSL;

        my %ssl = (SSL_verify_mode => 0, %{ $ssl || {} });
        $ssl{SSL_hostname} //= $host if $host !~ /\A[\d.:]+\z/;

        $sock = IO::Socket::SSL->new(
            PeerHost => $host,
            PeerPort => $port,
            Timeout  => $left,
            %ssl,
        );

        unless ($sock) {
            $@ = 'tls connect: ' . IO::Socket::SSL::errstr();
            return;
        }
    } else {
        $sock = IO::Socket::IP->new(
            PeerHost => $host,
            PeerPort => $port,
            Timeout  => $left,
        );

        unless ($sock) {
            $@ = "connect: $@";
            return;
        }
    }

    $sock->blocking(0);

    return $sock;
}


sub write_all {
    my ($sock, $data, $deadline) = @_;

    my $off = 0;
    my $sel = IO::Select->new($sock);

    while ($off < length $data) {
        my $left = $deadline - time;
        return 'timeout while sending' if $left <= 0;

        $sel->can_write($left) or next;

        my $n = syswrite $sock, $data, 16384, $off;

        if (defined $n) {
            $off += $n;
            next;
        }

        next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;

        return "write: $!";
    }

    return;
}


# reads more bytes into the socket's buffer: 1 on data, 0 on end of file,
# undef with an error on a timeout or a failure
sub fill {
    my ($sock, $buf, $deadline) = @_;

    my $sel = IO::Select->new($sock);

    while (1) {
        my $left = $deadline - time;
        return (undef, 'timeout') if $left <= 0;

        my $pending = $sock->can('pending') && $sock->pending;

        unless ($pending) {
            $sel->can_read($left) or next;
        }

        my $chunk;
        my $n = sysread $sock, $chunk, 65536;

        if (defined $n) {
            return 0 if $n == 0;
            $$buf .= $chunk;
            return 1;
        }

        next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;

        return (undef, "read: $!");
    }
}


sub read_response {
    my ($sock, $method, $deadline) = @_;

    my $key = "$sock";
    my $buf = delete $PENDING{$key} // '';
    my $raw = '';
    my @interim;

    my $fail = sub {
        my ($err) = @_;
        return Kanka::Test::Response->new(status => 0, error => $err,
                                          raw => $raw . $buf, closed => 1);
    };

    my ($status, $reason, $version, $headers, $order);

    while (1) {
        my $end = index $buf, "\r\n\r\n";

        if ($end < 0) {
            my ($ok, $err) = fill($sock, \$buf, $deadline);
            next if $ok;
            return $fail->($err // 'connection closed before a response');
        }

        my $head = substr $buf, 0, $end + 4, '';
        $raw .= $head;

        my @lines = split /\r\n/, $head;
        my $line = shift @lines;

        ($version, $status, $reason) =
            $line =~ m{\AHTTP/(\d\.\d) (\d{3})(?: (.*))?\z}
            or return $fail->("invalid status line \"$line\"");

        $headers = {};
        $order = [];

        for my $l (@lines) {
            my ($k, $v) = $l =~ /\A([^:\s]+):[ \t]*(.*?)[ \t]*\z/
                or return $fail->("invalid header line \"$l\"");
            push @{ $headers->{lc $k} }, $v;
            push @$order, [$k, $v];
        }

        if ($status >= 100 && $status < 200 && $status != 101) {
            push @interim, $status;
            next;
        }

        last;
    }

    my $body = '';
    my $closed = 0;
    my $no_body = $method eq 'HEAD' || $status == 204 || $status == 304
                  || ($status >= 100 && $status < 200);
    my $te = lc join ',', @{ $headers->{'transfer-encoding'} || [] };
    my $cl = $headers->{'content-length'};

    if ($no_body) {
        # nothing to read

    } elsif ($te =~ /chunked/) {
        my $pos = 0;

        while (1) {
            my $eol = index $buf, "\r\n", $pos;

            if ($eol < 0) {
                my ($ok, $err) = fill($sock, \$buf, $deadline);
                next if $ok;
                return $fail->($err // 'connection closed inside a chunk');
            }

            my ($size) = substr($buf, $pos, $eol - $pos) =~ /\A([0-9a-fA-F]+)/
                or return $fail->('invalid chunk size');
            $size = hex $size;

            if ($size == 0) {
                # skip trailers up to the empty line
                my $tend = index $buf, "\r\n\r\n", $eol;

                if ($tend < 0) {
                    my ($ok, $err) = fill($sock, \$buf, $deadline);
                    next if $ok;
                    return $fail->($err // 'connection closed in trailers');
                }

                $pos = $tend + 4;
                last;
            }

            if (length($buf) < $eol + 2 + $size + 2) {
                my ($ok, $err) = fill($sock, \$buf, $deadline);
                next if $ok;
                return $fail->($err // 'connection closed inside a chunk');
            }

            $body .= substr $buf, $eol + 2, $size;
            $pos = $eol + 2 + $size + 2;
        }

        $raw .= substr $buf, 0, $pos, '';

    } elsif ($cl) {
        my $len = $cl->[0];
        return $fail->("invalid Content-Length \"$len\"")
            unless $len =~ /\A\d+\z/;

        while (length $buf < $len) {
            my ($ok, $err) = fill($sock, \$buf, $deadline);
            next if $ok;
            return $fail->($err // 'connection closed before the whole body');
        }

        $body = substr $buf, 0, $len, '';
        $raw .= $body;

    } else {
        while (1) {
            my ($ok, $err) = fill($sock, \$buf, $deadline);
            next if $ok;
            return $fail->($err) if defined $err;
            last;
        }

        $body = $buf;
        $raw .= $buf;
        $buf = '';
        $closed = 1;
    }

    my $conn = lc join ',', @{ $headers->{connection} || [] };
    $closed = 1 if $conn =~ /\bclose\b/;

    $PENDING{$key} = $buf if length $buf && !$closed;

    return Kanka::Test::Response->new(
        status  => $status + 0,
        reason  => $reason // '',
        version => $version,
        headers => $headers,
        header_order => $order,
        body    => $body,
        raw     => $raw,
        interim => \@interim,
        closed  => $closed,
    );
}


sub failure {
    my ($start, $err, %f) = @_;

    return Kanka::Test::Response->new(status => 0, error => $err,
                                      elapsed => time - $start, %f);
}


package Kanka::Test::Response;

use strict;
use warnings;

use JSON::PP ();


sub new {
    my ($class, %f) = @_;

    my $self = bless {
        status  => 0,
        reason  => '',
        headers => {},
        body    => '',
        raw     => '',
        error   => undef,
        %f,
    }, $class;

    my $h = $self->{headers};
    $self->{header} = sub {
        my $v = $h->{ lc shift };
        return $v ? $v->[0] : undef;
    };

    return $self;
}


sub status { $_[0]{status} }
sub body { $_[0]{body} }


sub header {
    my ($self, $name) = @_;

    my $v = $self->{headers}{lc $name};

    return $v ? $v->[0] : undef;
}


sub header_values {
    my ($self, $name) = @_;

    return @{ $self->{headers}{lc $name} || [] };
}


sub json {
    my ($self) = @_;

    return eval { JSON::PP->new->utf8->allow_nonref->decode($self->{body}) };
}


sub is_redirect {
    my ($self) = @_;

    return $self->{status} =~ /\A30[12378]\z/
           && defined $self->header('location');
}


# cookies the response sets, as name => value
sub set_cookies {
    my ($self) = @_;

    my %c;

    for my $sc ($self->header_values('set-cookie')) {
        my ($pair) = split /;/, $sc, 2;
        my ($k, $v) = split /=/, $pair, 2;
        next unless defined $v;
        $k =~ s/\A\s+|\s+\z//g;
        $v =~ s/\A\s+|\s+\z//g;
        $c{$k} = $v;
    }

    return \%c;
}


1;
