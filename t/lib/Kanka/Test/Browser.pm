# A cookie-keeping client that navigates like a browser: it sends navigation
# headers, keeps cookies per host and port, and follows redirects across hosts.

package Kanka::Test::Browser;

use strict;
use warnings;

use Kanka::Test::HTTP;
use Time::Local qw(timegm);

my %MONTH = (jan => 0, feb => 1, mar => 2, apr => 3, may => 4, jun => 5,
             jul => 6, aug => 7, sep => 8, oct => 9, nov => 10, dec => 11);


sub new {
    my ($class, %a) = @_;

    my $scheme = $a{tls} ? 'https' : 'http';
    my $host = $a{host} // '127.0.0.1';
    my $port = $a{port} or die "Kanka::Test::Browser needs a port\n";

    return bless {
        base    => "$scheme://$host:$port",
        origin  => "$host:$port",
        jar     => {},
        timeout => $a{timeout} // 10,
        headers => $a{headers} || {},
        last    => undef,
    }, $class;
}


sub base { $_[0]{base} }


sub get {
    my ($self, $url, %o) = @_;

    return $self->request('GET', $url, %o);
}


sub head {
    my ($self, $url, %o) = @_;

    return $self->request('HEAD', $url, %o);
}


sub post {
    my ($self, $url, %o) = @_;

    if (my $form = delete $o{form}) {
        my @pairs = ref $form eq 'ARRAY' ? @$form
                  : map { $_ => $form->{$_} } sort keys %$form;
        my @q;
        while (my ($k, $v) = splice @pairs, 0, 2) {
            push @q, form_encode($k) . '=' . form_encode($v);
        }
        $o{body} = join '&', @q;
        $o{headers} = {
            'Content-Type' => 'application/x-www-form-urlencoded',
            %{ $o{headers} || {} },
        };
    }

    return $self->request('POST', $url, %o);
}


sub request {
    my ($self, $method, $url, %o) = @_;

    # a bare path is typed against the browser's own host
    $url = $self->absolute($url, $o{from});

    my ($scheme, $host, $port, $path) = Kanka::Test::HTTP::parse_url($url)
        or die "cannot navigate to \"$url\"\n";

    my $site = 'none';
    if (my $prev = $o{from} // $self->{last}) {
        my (undef, $ph, $pp) = Kanka::Test::HTTP::parse_url($prev);
        $site = defined $ph && "$ph:$pp" eq "$host:$port"
                ? 'same-origin' : 'cross-site';
    }
    $site = 'none' if $o{typed};

    my %h = (
        'User-Agent' => 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) '
                        . 'Gecko/20100101 Firefox/128.0',
        'Accept' => 'text/html,application/xhtml+xml,application/xml;'
                    . 'q=0.9,*/*;q=0.8',
        'Accept-Language' => 'en-US,en;q=0.5',
        'Upgrade-Insecure-Requests' => 1,
        'Sec-Fetch-Dest' => 'document',
        'Sec-Fetch-Mode' => 'navigate',
        'Sec-Fetch-Site' => $site,
        'Sec-Fetch-User' => '?1',
        %{ $self->{headers} },
    );

    if ($method eq 'POST' && $site ne 'none') {
        my ($ps, $ph, $pp) = Kanka::Test::HTTP::parse_url(
            $o{from} // $self->{last});
        $h{Origin} = "$ps://$ph:$pp";
    }

    my $cookie = $self->cookie_header_for($url);
    $h{Cookie} = $cookie if $cookie ne '';

    my %extra = %{ $o{headers} || {} };
    for my $k (keys %extra) {
        delete $h{$_} for grep { lc $_ eq lc $k } keys %h;
    }
    %h = (%h, %extra);

    my $res = Kanka::Test::HTTP::request(
        url     => $url,
        method  => $method,
        headers => \%h,
        body    => $o{body},
        timeout => $o{timeout} // $self->{timeout},
    );

    $res->{url} = $url;
    $res->{method} = $method;
    $self->store_cookies($url, $res);
    $self->{last} = $url;

    return $res;
}


# follows redirects from $url; returns every response of the chain in order
sub follow {
    my ($self, $url, %o) = @_;

    my $max = $o{max} // 10;
    my @chain = ($self->get($url, headers => $o{headers}, typed => 1));

    return $self->continue_chain(\@chain, $max, %o);
}


sub continue_chain {
    my ($self, $chain, $max, %o) = @_;

    while ($chain->[-1]->is_redirect && @$chain <= $max) {
        my $prev = $chain->[-1];
        my $next = $self->absolute($prev->header('location'), $prev->{url});
        push @$chain, $self->get($next, headers => $o{headers},
                                 from => $prev->{url});
    }

    return @$chain;
}


# submits the first form of an HTML page, pressing the named button
sub submit_form {
    my ($self, $res, %o) = @_;

    my ($attrs, $inner) = $res->{body} =~ m{<form\b([^>]*)>(.*?)</form>}si
        or die "no form in the page from $res->{url}\n";

    my $action = attr($attrs, 'action') // $res->{url};
    my $method = uc(attr($attrs, 'method') // 'GET');
    my @fields;

    while ($inner =~ /<input\b([^>]*)>/gi) {
        my $a = $1;
        my $name = attr($a, 'name') // next;
        my $type = lc(attr($a, 'type') // 'text');
        next if $type eq 'submit' || $type eq 'button';
        push @fields, $name => attr($a, 'value') // '';
    }

    if (defined $o{button}) {
        my $found;
        while ($inner =~ /<button\b([^>]*)>/gi) {
            my $a = $1;
            next unless (attr($a, 'name') // '') eq $o{button};
            push @fields, $o{button} => attr($a, 'value') // '';
            $found = 1;
        }
        die "no button \"$o{button}\" in the form\n" unless $found;
    }

    my %set = %{ $o{fields} || {} };

    for (my $i = 0; $i < @fields; $i += 2) {
        my $k = $fields[$i];
        $fields[$i + 1] = delete $set{$k} if exists $set{$k};
    }

    push @fields, map { $_ => $set{$_} } sort keys %set;

    my $url = $self->absolute($action, $res->{url});
    my $first;

    if ($method eq 'POST') {
        $first = $self->post($url, form => \@fields, from => $res->{url});
    } else {
        my @q;
        while (my ($k, $v) = splice @fields, 0, 2) {
            push @q, form_encode($k) . '=' . form_encode($v);
        }
        $url =~ s/\?.*\z//s;
        $first = $self->get("$url?" . join('&', @q), from => $res->{url});
    }

    return $self->continue_chain([$first], $o{max} // 10);
}


sub absolute {
    my ($self, $url, $from) = @_;

    return $url if $url =~ m{\Ahttps?://}i;

    $from //= $self->{base} . '/';
    my ($scheme, $host, $port, $path) = Kanka::Test::HTTP::parse_url($from);
    my $origin = "$scheme://" . ($host =~ /:/ ? "[$host]" : $host) . ":$port";

    return "$scheme:$url" if $url =~ m{\A//};
    return $origin . $url if $url =~ m{\A/};

    if ($url =~ /\A\?/) {
        $path =~ s/\?.*\z//s;
        return $origin . $path . $url;
    }

    $path =~ s/\?.*\z//s;
    $path =~ s{[^/]*\z}{};

    return $origin . $path . $url;
}


# cookies

sub store_cookies {
    my ($self, $url, $res) = @_;

    my ($scheme, $host, $port, $path) = Kanka::Test::HTTP::parse_url($url);
    my $jar = $self->{jar}{"$host:$port"} ||= {};

    for my $sc ($res->header_values('set-cookie')) {
        my ($pair, @attrs) = split /;/, $sc;
        my ($name, $value) = split /=/, $pair, 2;
        next unless defined $value;

        $name =~ s/\A\s+|\s+\z//g;
        $value =~ s/\A\s+|\s+\z//g;
        next if $name eq '';

        my $dir = $path;
        $dir =~ s/\?.*\z//s;
        $dir =~ s{/[^/]*\z}{};

        my %c = (value => $value, path => $dir eq '' ? '/' : $dir);
        my $delete;

        for my $a (@attrs) {
            my ($k, $v) = split /=/, $a, 2;
            $k = lc $k;
            $k =~ s/\A\s+|\s+\z//g;
            $v //= '';
            $v =~ s/\A\s+|\s+\z//g;

            if ($k eq 'path' && $v =~ m{\A/}) {
                $c{path} = $v;
            } elsif ($k eq 'max-age' && $v =~ /\A-?\d+\z/) {
                $c{expires} = time + $v;
                $c{max_age} = $v;
            } elsif ($k eq 'expires' && !exists $c{max_age}) {
                my $t = parse_date($v);
                $c{expires} = $t if defined $t;
            } elsif ($k eq 'domain') {
                $c{domain} = $v;
            } elsif ($k eq 'secure' || $k eq 'httponly') {
                $c{$k} = 1;
            } elsif ($k eq 'samesite') {
                $c{samesite} = $v;
            }
        }

        $delete = defined $c{expires} && $c{expires} <= time;

        my $key = "$name\t$c{path}";

        if ($delete) {
            delete $jar->{$key};
        } else {
            $jar->{$key} = { name => $name, %c, raw => $sc };
        }
    }
}


sub cookie_header_for {
    my ($self, $url) = @_;

    my ($scheme, $host, $port, $path) = Kanka::Test::HTTP::parse_url($url)
        or return '';
    my $jar = $self->{jar}{"$host:$port"} or return '';

    $path =~ s/\?.*\z//s;

    my @send;

    for my $c (values %$jar) {
        next if defined $c->{expires} && $c->{expires} <= time;
        next if $c->{secure} && $scheme ne 'https';
        next unless path_match($path, $c->{path});
        push @send, $c;
    }

    @send = sort { length $b->{path} <=> length $a->{path}
                   || $a->{name} cmp $b->{name} } @send;

    return join '; ', map { "$_->{name}=$_->{value}" } @send;
}


# name => value of the cookies held for the browser's own host
sub cookies {
    my ($self, $host_port) = @_;

    my $jar = $self->{jar}{ $host_port // $self->{origin} } || {};
    my %c;

    for my $c (values %$jar) {
        next if defined $c->{expires} && $c->{expires} <= time;
        $c{ $c->{name} } = $c->{value};
    }

    return wantarray ? %c : \%c;
}


# every attribute of one cookie of the browser's own host
sub cookie {
    my ($self, $name, $host_port) = @_;

    my $jar = $self->{jar}{ $host_port // $self->{origin} } || {};
    my ($c) = grep { $_->{name} eq $name } values %$jar;

    return $c;
}


sub set_cookie {
    my ($self, $name, $value, %o) = @_;

    my $origin = $o{host_port} // $self->{origin};
    my $path = $o{path} // '/';

    $self->{jar}{$origin}{"$name\t$path"} = {
        name => $name, value => $value, path => $path,
    };
}


sub clear_cookies {
    my ($self) = @_;

    $self->{jar} = {};
}


sub path_match {
    my ($path, $cpath) = @_;

    return 1 if $path eq $cpath;
    return 0 unless index($path, $cpath) == 0;
    return 1 if $cpath =~ m{/\z};

    return substr($path, length $cpath, 1) eq '/';
}


sub parse_date {
    my ($s) = @_;

    my ($d, $mon, $y, $hh, $mm, $ss) =
        $s =~ /(\d{1,2})[\s-]+([A-Za-z]{3})[a-z]*[\s-]+(\d{2,4})\s+
               (\d{1,2}):(\d{2}):(\d{2})/x
        or return;

    my $m = $MONTH{lc $mon} // return;
    $y += $y < 70 ? 2000 : 1900 if $y < 100;

    return eval { timegm($ss, $mm, $hh, $d, $m, $y) };
}


sub attr {
    my ($attrs, $name) = @_;

    return unless $attrs =~
        /(?:\A|\s)\Q$name\E\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;

    my $v = $1 // $2 // $3;
    $v =~ s/&quot;/"/g;
    $v =~ s/&#39;/'/g;
    $v =~ s/&lt;/</g;
    $v =~ s/&gt;/>/g;
    $v =~ s/&amp;/&/g;

    return $v;
}


sub form_encode {
    my ($s) = @_;

    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-_.~ ])/sprintf '%%%02X', ord $1/ge;
    $s =~ tr/ /+/;

    return $s;
}


1;
