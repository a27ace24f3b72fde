# What the benchmarks share: nginx instances started through the test
# harness, wrk runs and their figures, rounds that alternate variants,
# sessions made in bulk, login loops, CPU time and callgrind dumps.

package Kanka::Bench;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);

use Kanka::Test ();
use Kanka::Test::HTTP ();

my $BENCH = abs_path(dirname(__FILE__) . '/../..');
my $WRK = $ENV{KANKA_WRK} // 'wrk';
my $VALGRIND = $ENV{KANKA_VALGRIND} // 'valgrind';
my $TICK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

# Kanka's sizes: an RS256 JWT of about 1,000 characters, an opaque
# refresh token of about 700
my $ACCESS_LEN = 1000;
my $REFRESH_LEN = 700;

my $STATIC = 'x' x 99 . "\n";

# login loops forked here, stopped on the way out whatever happens
my %KIDS;


sub new {
    my ($class, %o) = @_;

    my $tmp = File::Temp->newdir('kanka-bench-XXXXXX', TMPDIR => 1,
                                 CLEANUP => $ENV{KANKA_TEST_KEEP} ? 0 : 1);

    chmod 0755, $tmp->dirname;

    return bless {
        tmp     => $tmp,
        dir     => $tmp->dirname,
        rounds  => $o{rounds} // 5,
        seconds => $o{seconds} // 4,
        verbose => $o{verbose},
        perf    => $o{perf},
        log     => $o{log} // \*STDERR,
        pid     => $$,
    }, $class;
}


sub dir { $_[0]{dir} }
sub rounds { $_[0]{rounds} }
sub seconds { $_[0]{seconds} }


sub note {
    my ($self, $fmt, @args) = @_;

    printf { $self->{log} } "  $fmt\n", @args;
}


# nginx instances

# %o: conf (with the harness's placeholders), vars, no_module, nginx (a
# wrapper to start instead of the real binary)

sub nginx {
    my ($self, %o) = @_;

    local $ENV{KANKA_NGINX} = $o{nginx} if defined $o{nginx};

    my $t = Kanka::Test->new(log_level => $o{log_level} // 'warn',
                             no_module => $o{no_module});
    my $www = $t->dir . '/www';

    for my $d ($www, "$www/open", "$www/gate") {
        mkdir $d or die "cannot create $d: $!\n";
    }

    Kanka::Test::spew("$www/open/f.txt", $STATIC);
    Kanka::Test::spew("$www/gate/f.txt", $STATIC);

    $t->write_conf($o{conf}, vars => $o{vars});
    $t->run();

    return $t;
}


sub base_url {
    my ($t, $n) = @_;

    return 'http://127.0.0.1:' . $t->port($n // 0);
}


# a server with ungated and gated locations, static and proxied (the
# gated ones with the token passed on, or kept; an ungated one that sends
# the upstream an Authorization header of a Kanka token's size from the
# configuration, so that the upstream gets the same bytes as from the gate
# with pass_token); the same locations without the module when "plain" is
# set.  The paths are of one length, so that parsing them costs the same.

sub gate_conf {
    my (%o) = @_;

    my $workers = $o{workers} // 1;
    my $main = $o{main} // '';
    my $zone = $o{zone} // '64m';

    my $http = <<"EOF";
    kanka_oauth_zone gate:$zone;
EOF

    my $server = <<'EOF';
        kanka_oauth_client_id 42;
        kanka_oauth_client_secret s3cr3t-kanka-client;
        kanka_oauth_authorize_url %%AUTHORIZE%%;
        kanka_oauth_token_url %%TOKEN%%;
        kanka_oauth_api_url %%API%%;
EOF

    my $gate = 'kanka_oauth on;';
    my $pass = 'kanka_oauth_pass_token on;';
    my $keep = 'kanka_oauth_pass_token off;';
    my $fixed = 'Bearer ' . ('t' x $ACCESS_LEN);

    if ($o{plain}) {
        $http = $server = $gate = $pass = $keep = '';
    }

    return <<"EOF";
worker_processes $workers;
$main

events {
    worker_connections 4096;
}

http {
    access_log off;

    # a connection lasts the whole run, as a counted batch needs
    keepalive_requests 1000000;

$http
    upstream backend {
        server 127.0.0.1:%%PORT1%%;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:%%PORT0%% reuseport;
        root %%TESTDIR%%/www;

$server
        location /open/ {
        }

        location /gate/ {
            $gate
        }

        location /open-proxy/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /gate-proxy/ {
            $gate
            $pass
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /gate-local/ {
            $gate
            $keep
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /open-token/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "$fixed";
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;

        location / {
            return 200 "a small answer from the upstream\\n";
        }
    }
}
EOF
}


# zones of their own on ports of their own, one worker; a session zone
# per server: PORT0 uses the first zone, PORT1 the second, and so on

sub zones_conf {
    my (@zones) = @_;

    my $http = '';
    my $servers = '';
    my $n = 0;

    for my $z (@zones) {
        my ($name, $size) = @$z;

        $http .= "    kanka_oauth_zone $name:$size;\n";
        $servers .= <<"EOF";

    server {
        listen 127.0.0.1:%%PORT$n%%;
        root %%TESTDIR%%/www;
        kanka_oauth_session_zone $name;

        location /gate/ {
            kanka_oauth on;
        }
    }
EOF
        $n++;
    }

    return <<"EOF";
worker_processes 1;

events {
    worker_connections 4096;
}

http {
    access_log off;
    keepalive_requests 1000000;

$http
    kanka_oauth_client_id 42;
    kanka_oauth_client_secret s3cr3t-kanka-client;
    kanka_oauth_authorize_url %%AUTHORIZE%%;
    kanka_oauth_token_url %%TOKEN%%;
    kanka_oauth_api_url %%API%%;
$servers}
EOF
}


# a token endpoint that grants any code at once, with Kanka-sized tokens
# that differ per answer, and a profile endpoint: stands in for Kanka
# where sessions are made in bulk and only the module's side of a login
# is of interest

sub token_conf {
    my (%o) = @_;

    my $id = '${request_id}';
    my $access_len = $o{access} // $ACCESS_LEN;

    srand 1;

    my @b64 = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_');
    my $random = sub { join '', map { $b64[rand @b64] } 1 .. $_[0] };

    my $head = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.';
    my $sig = 342;
    my $access = $head . $random->($access_len - length($head) - 32 - $sig
                                   - 1)
                 . '.' . $random->($sig) . $id;
    my $refresh = 'def50200' . lc($random->($REFRESH_LEN - 8 - 32)) . $id;

    my $token = '{"token_type":"Bearer","expires_in":31536000,'
                . qq{"access_token":"$access","refresh_token":"$refresh"\}};

    my $profile = '{"data":{"id":1,"name":"Ilsa Vance",'
                  . '"avatar":"https://th.kanka.io/avatar.png",'
                  . '"avatar_thumb":"https://th.kanka.io/avatar.png",'
                  . '"locale":"en","timezone":"UTC","date_format":"Y-m-d",'
                  . '"default_pagination":15,"last_campaign_id":101,'
                  . '"is_patreon":false,"is_subscriber":false,'
                  . '"rate_limit":30}}';

    return <<"EOF";
worker_processes 1;

events {
    worker_connections 4096;
}

http {
    access_log off;
    default_type application/json;

    server {
        listen 127.0.0.1:%%PORT0%%;

        location = /oauth/token {
            return 200 '$token';
        }

        location = /api/1.0/profile {
            return 200 '$profile';
        }

        location / {
            return 404;
        }
    }
}
EOF
}


# wrk

sub wrk {
    my ($self, %o) = @_;

    my @cmd = ($WRK, '-t', $o{threads} // 1, '-c', $o{conns} // 8,
               '-d', ($o{seconds} // $self->{seconds}) . 's',
               '--timeout', $o{timeout} // '5s');

    push @cmd, '--latency';
    push @cmd, '-H', $_ for @{ $o{headers} || [] };
    push @cmd, '-s', "$BENCH/wrk/$o{script}" if $o{script};
    push @cmd, $o{url};
    push @cmd, @{ $o{args} || [] };

    my @pids = @{ $o{pids} || [] };
    my $perf = $self->perf_start($o{name}, @pids);
    my $cpu = @pids ? cpu(@pids) : undef;
    my $out = $self->capture(\@cmd, $o{pid_cb});

    $self->perf_stop($perf);
    my $r = parse_wrk($out);

    # the workers' CPU time a request: what the machine's other load
    # sways least
    if (@pids && $r->{requests}) {
        $r->{cpu} = 1e6 * (cpu(@pids) - $cpu) / $r->{requests};
    }

    if ($self->{verbose}) {
        $self->note('%s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, '
                    . '%.2f us of CPU a request', $o{name} // $o{url},
                    $r->{rps} // 0, $r->{p50} // 0, $r->{p99} // 0,
                    $r->{cpu} // 0);
    }

    unless (defined $r->{rps}) {
        die "wrk gave no figures:\n$out";
    }

    if ($r->{errors}) {
        die "wrk saw $r->{errors} failed requests at $o{url}:\n$out";
    }

    return $r;
}


# with a directory for profiles, "perf record" samples the workers while
# wrk runs, a file for each variant (the last round's); the figures of
# such a run carry perf's own cost

sub perf_start {
    my ($self, $name, @pids) = @_;

    return undef unless $self->{perf} && @pids && defined $name;

    (my $file = "$self->{perf}/$name.data") =~ s/[^\w\/.-]/_/g;

    # perf would keep the round before as .old
    unlink $file;

    my $pid = fork // die "fork: $!\n";

    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec 'perf', 'record', '-q', '-e', 'cpu-clock', '-g', '-o', $file,
             '-p', join(',', @pids)
            or POSIX::_exit(127);
    }

    $KIDS{$pid} = $$;

    return $pid;
}


sub perf_stop {
    my ($self, $pid) = @_;

    return unless $pid;

    kill 'INT', $pid;
    waitpid $pid, 0;
    delete $KIDS{$pid};
}


sub parse_wrk {
    my ($out) = @_;

    my %r = (raw => $out, errors => 0);
    my %unit = (us => 0.001, ms => 1, s => 1000, m => 60000);

    ($r{rps}) = $out =~ /^Requests\/sec:\s+([\d.]+)/m;

    # "Latency  avg  stdev  max  +/- stdev"
    if ($out =~ /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b/m) {
        $r{max} = $1 * $unit{$2};
    }

    ($r{requests}) = $out =~ /^\s+(\d+) requests in/m;

    for my $p (50, 75, 90, 99) {
        my ($v, $u) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s|m)\b/m or next;
        $r{"p$p"} = $v * $unit{$u};
    }

    if ($out =~ /^\s+Non-2xx or 3xx responses:\s+(\d+)/m) {
        $r{errors} += $1;
    }

    # connect, read, write and timeout
    if ($out =~ /^\s*Socket errors: (.*)$/m) {
        $r{errors} += $_ for $1 =~ /(\d+)/g;
    }

    return \%r;
}


# runs a command, returns what it printed; pid_cb sees the pid first

sub capture {
    my ($self, $cmd, $pid_cb) = @_;

    my $pid = open(my $fh, '-|') // die "fork: $!\n";

    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec @$cmd or POSIX::_exit(127);
    }

    $KIDS{$pid} = $$;
    $pid_cb->($pid) if $pid_cb;

    local $/;
    my $out = <$fh> // '';

    close $fh;
    delete $KIDS{$pid};

    die "$cmd->[0] failed (status $?):\n$out" if $? && !$pid_cb;

    return $out;
}


# rounds: variants alternate, in the order A B, then B A, so that a drift
# of the machine's speed weighs on all of them alike

sub alternate {
    my ($self, @variants) = @_;

    my %runs;
    my @names;

    while (my ($name, $code) = splice @variants, 0, 2) {
        push @names, [$name, $code];
    }

    for my $round (1 .. $self->{rounds}) {
        my @order = $round % 2 ? @names : reverse @names;

        for my $v (@order) {
            push @{ $runs{ $v->[0] } }, $v->[1]->($round);
        }
    }

    return \%runs;
}


sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;

    return undef unless @v;

    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}


# the median of a field over runs
sub med {
    my ($runs, $field) = @_;

    return median(map { $_->{$field} } @$runs);
}


# the median of the ratio b/a of runs paired by round
sub ratio {
    my ($base, $var, $field) = @_;

    my @r;

    for my $i (0 .. $#$base) {
        next unless $var->[$i] && $base->[$i]{$field};
        push @r, $var->[$i]{$field} / $base->[$i]{$field};
    }

    return median(@r);
}


# HTTP with keep-alive: $socks keeps one socket per host

sub get {
    my ($socks, $url, %h) = @_;

    my ($host) = $url =~ m{\Ahttps?://([^/]+)} or die "bad URL \"$url\"\n";

    my $r = Kanka::Test::HTTP::request(
        url       => $url,
        method    => 'GET',
        headers   => \%h,
        keepalive => $socks->{$host} // 1,
        timeout   => 30,
    );

    if ($r->{socket}) {
        $socks->{$host} = $r->{socket};
    } else {
        delete $socks->{$host};
    }

    return $r;
}


sub cookie_of {
    my ($r, $name) = @_;

    for my $sc ($r->header_values('set-cookie')) {
        return $1 if $sc =~ /^(\Q$name\E=[^;]+)/;
    }

    return undef;
}


my %NAV = (
    'Accept'         => 'text/html,application/xhtml+xml,*/*;q=0.8',
    'Sec-Fetch-Mode' => 'navigate',
    'User-Agent'     => 'kanka-bench',
);


# the whole login as a browser goes through it, at Kanka (the stand-in)
# and back; returns the session cookie

sub login {
    my ($base, $socks) = @_;

    $socks //= {};

    my $page = "$base/gate/f.txt";
    my $r = get($socks, $page, %NAV);

    die "the gated page did not send to Kanka: $r->{status} "
        . ($r->{error} // '') . "\n" unless $r->{status} == 302;

    my $login = cookie_of($r, 'kanka_session_login')
        or die "no login cookie\n";

    $r = get($socks, $r->header('location'), %NAV);

    die "Kanka did not send back: $r->{status}\n" unless $r->{status} == 302;

    my $callback = $r->header('location');

    $r = get($socks, $callback, %NAV, Cookie => $login);

    my $session = cookie_of($r, 'kanka_session');

    die "the callback made no session: $r->{status}\n"
        unless $r->{status} == 302 && $session;

    $r = get($socks, $page, %NAV, Cookie => $session);

    die "the session does not open the page: $r->{status}\n"
        unless $r->{status} == 200;

    return $session;
}


# the module's side of a login alone, against the bench token endpoint

sub quick_login {
    my ($base, $socks) = @_;

    $socks //= {};

    my $r = get($socks, "$base/gate/f.txt", %NAV);

    die "the gated page did not start a login: $r->{status}\n"
        unless $r->{status} == 302;

    my ($state) = ($r->header('location') // '') =~ /[?&]state=([\w-]+)/;
    my $login = cookie_of($r, 'kanka_session_login');

    $r = get($socks, "$base/kanka/callback?code=bench&state=$state", %NAV,
             Cookie => $login);

    my $session = cookie_of($r, 'kanka_session');

    die "the callback made no session: $r->{status}\n"
        unless $r->{status} == 302 && $session;

    return $session;
}


# asks for a page with a session, as an API client would; the status
sub check_session {
    my ($socks, $url, $cookie) = @_;

    my $r = get($socks, $url, Accept => 'application/json',
                Cookie => $cookie);

    return $r->{status};
}


# sessions in bulk, through wrk; returns the file of cookies and the time

sub make_sessions {
    my ($self, %o) = @_;

    my $count = $o{count};
    my $threads = $o{threads} // 8;
    my $per = int(($count + $threads - 1) / $threads);
    my $prefix = "$self->{dir}/sessions-" . ++$self->{batch};
    my $file = $o{file} // "$prefix.txt";
    my $start = time;
    my $wrk;

    # wrk sleeps for its whole duration: an interrupt ends it once every
    # thread has made its share

    my $watch = sub {
        my ($pid) = @_;

        my $deadline = time + ($o{timeout} // 600);

        until (time > $deadline) {
            last if $threads == grep { -e "$prefix.$_.done" } 1 .. $threads;
            sleep 0.05;
        }

        kill 'INT', $pid;
    };

    my $out = $self->capture(
        [$WRK, '-t', $threads, '-c', $threads, '-d', '3600s',
         '--timeout', '10s', '-s', "$BENCH/wrk/make-sessions.lua",
         $o{url}, $prefix, $per, $o{path} // '/gate/f.txt'],
        $watch);

    my $elapsed = time - $start;
    my @cookies;

    for my $i (1 .. $threads) {
        my $text = Kanka::Test::slurp("$prefix.$i") // '';
        push @cookies, split /\n/, $text;
    }

    my ($made, $failed) = $out =~ /sessions made (\d+) failed (\d+)/;

    die "making sessions failed:\n$out"
        unless defined $made && @cookies >= $count;

    splice @cookies, $count;
    Kanka::Test::spew($file, join '', map { "$_\n" } @cookies);

    return {
        file    => $file,
        cookies => \@cookies,
        made    => $made,
        failed  => $failed,
        seconds => $elapsed,
    };
}


# login loops in processes of their own, each until $until; %o: stagger
# (the first logins spread over so many seconds), pace (a login every so
# many seconds at most), nice (their priority).  Returns what reap_logins
# waits for.

sub spawn_logins {
    my ($self, $n, $base, $until, %o) = @_;

    my @pids;

    for my $i (1 .. $n) {
        pipe my $r, my $w or die "pipe: $!\n";

        my $pid = fork // die "fork: $!\n";

        if (!$pid) {
            close $r;
            $SIG{TERM} = sub { POSIX::_exit(0) };

            my ($done, $err) = (0, '');
            my $socks = {};

            POSIX::nice($o{nice}) if $o{nice};
            idle_class($$) if $o{idle};

            srand($$ ^ time);
            sleep rand $o{stagger} if $o{stagger};

            while (time < $until) {
                my $start = time;

                eval { login($base, $socks); $done++; 1 } or do {
                    $err = $@;
                    last;
                };

                my $left = ($o{pace} // 0) - (time - $start);
                sleep $left if $left > 0;
            }

            syswrite $w, "$done $err";
            POSIX::_exit(0);
        }

        close $w;
        $KIDS{$pid} = $$;
        push @pids, [$pid, $r];
    }

    return \@pids;
}


# Linux's SCHED_IDLE for a process and its threads (0 puts it back): it
# runs on a core that nothing else wants, and never holds one back from
# a process that wakes.  chrt is in util-linux, on every Debian.
sub idle_class {
    my ($pid, $off) = @_;

    system('chrt', '-a', $off ? ('--other', '-p', 0, $pid)
                              : ('--idle', '-p', 0, $pid)) == 0
        or die "chrt failed for $pid\n";
}


# waits for login loops (killing them with $kill); the logins they made
sub reap_logins {
    my ($self, $kids, %o) = @_;

    my ($done, @errors) = (0);

    kill 'TERM', map { $_->[0] } @$kids if $o{kill};

    for my $k (@$kids) {
        my ($pid, $fh) = @$k;

        my $line = '';
        1 while sysread $fh, $line, 4096, length $line;
        close $fh;

        waitpid $pid, 0;
        delete $KIDS{$pid};

        my ($n, $err) = $line =~ /\A(\d+) ?(.*)\z/s;
        $done += $n // 0;
        push @errors, $err if defined $err && $err ne '';
    }

    die "a login failed: $errors[0]" if @errors && !$o{kill};

    return $done;
}


# CPU seconds used by processes so far

sub cpu {
    my (@pids) = @_;

    my $sum = 0;

    for my $pid (@pids) {
        my $stat = Kanka::Test::slurp("/proc/$pid/stat")
            or die "process $pid is gone\n";

        $stat =~ s/\A.*\)\s+//s;

        my @f = split ' ', $stat;

        # utime and stime, the 14th and 15th fields
        $sum += $f[11] + $f[12];
    }

    return $sum / $TICK;
}


# callgrind

# a wrapper that starts nginx under callgrind, its dumps in $out
sub callgrind_wrapper {
    my ($self, $name) = @_;

    my $out = "$self->{dir}/callgrind-$name";
    my $wrapper = "$self->{dir}/nginx-$name";

    mkdir $out or die "cannot create $out: $!\n";

    Kanka::Test::spew($wrapper, <<"EOF");
#!/bin/sh
exec $VALGRIND --tool=callgrind --callgrind-out-file=$out/callgrind.out \\
    /usr/sbin/nginx "\$@" 2>>$out/valgrind.log
EOF

    chmod 0755, $wrapper;

    return ($wrapper, $out);
}


sub callgrind_control {
    my ($self, $pid, $what) = @_;

    my $out = $self->capture(['callgrind_control', $what, $pid]);

    die "callgrind_control $what $pid failed:\n$out" unless $out =~ /OK/;
}


# sends the same request $n times on one kept-alive connection
sub batch {
    my ($port, $request, $n, $sock) = @_;

    my $bad = 0;

    for (1 .. $n) {
        my $r = Kanka::Test::HTTP::request(
            port      => $port,
            path      => '/',
            raw       => $request,
            keepalive => $sock // 1,
            timeout   => 60,
        );

        $bad++ unless $r->{status} == 200;
        $sock = $r->{socket} or die "the connection was closed\n";
    }

    die "$bad of $n requests did not get 200\n" if $bad;

    return $sock;
}


# instructions of the batch that a zero and a dump frame
sub callgrind_batch {
    my ($self, %o) = @_;

    my $pid = $o{pid};
    my $n = $o{count} // 1000;
    my $out = $o{dir};

    my $sock = batch($o{port}, $o{request}, $o{warmup} // 100, $o{socket});

    $self->callgrind_control($pid, '-z');
    $sock = batch($o{port}, $o{request}, $n, $sock);
    $self->callgrind_control($pid, '-d');

    # dumps are numbered in the order they were made
    my ($file) = sort { ($b =~ /(\d+)\z/)[0] <=> ($a =~ /(\d+)\z/)[0] }
                 glob "$out/callgrind.out.*";

    die "no callgrind dump in $out\n" unless $file;

    my ($total) = (Kanka::Test::slurp($file) // '') =~ /^summary:\s+(\d+)/m
        or die "no summary in $file\n";

    return {
        file    => $file,
        total   => $total,
        per     => $total / $n,
        socket  => $sock,
    };
}


# instructions by function in a callgrind dump: its own ("self") and with
# what it calls ("inclusive"), keyed "function<TAB>object".  Read here
# rather than through callgrind_annotate, which counts the calls that were
# under way at the zeroing (main, the event loop) as their callers' own.

sub callgrind_costs {
    my ($file) = @_;

    open my $fh, '<', $file or die "cannot read $file: $!\n";

    my (%names, %self, %incl);
    my ($ob, $fn, $in_call) = ('?', '?', 0);

    while (my $l = <$fh>) {
        if ($l =~ /^(c?)(ob|fn)=\((\d+)\)(?: (.*?))?\s*$/) {
            my ($called, $kind, $id, $name) = ($1, $2, $3, $4);

            $names{$kind}{$id} = $name if defined $name;
            $name = $names{$kind}{$id} // "($id)";

            next if $called;

            if ($kind eq 'ob') {
                $ob = (split m{/}, $name)[-1];
            } else {
                $fn = "$name\t$ob";
            }

            next;
        }

        if ($l =~ /^calls=/) {
            $in_call = 1;
            next;
        }

        if ($l =~ /^(?:[+-]?\d+|\*)\s+(\d+)/) {
            $incl{$fn} += $1;
            $self{$fn} += $1 unless $in_call;
            $in_call = 0;
        }
    }

    close $fh;

    return { self => \%self, inclusive => \%incl };
}


sub cleanup {
    my ($self) = @_;

    return unless $self->{pid} == $$;

    for my $pid (keys %KIDS) {
        next unless $KIDS{$pid} == $$;
        kill 'KILL', $pid;
        waitpid $pid, 0;
        delete $KIDS{$pid};
    }
}


sub DESTROY {
    my ($self) = @_;

    local ($?, $@, $!);
    $self->cleanup();
}


END {
    local $?;

    for my $pid (keys %KIDS) {
        next unless $KIDS{$pid} == $$;
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}


1;
