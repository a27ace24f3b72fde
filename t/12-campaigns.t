# kanka_oauth_campaign: only members of the campaigns pass; membership is
# read from every page of Kanka's campaigns, kept in the session, read again
# after kanka_oauth_campaign_recheck by one request, and the last known
# answer serves while Kanka's API fails or rate-limits.

use strict;
use warnings;

use IO::Socket::IP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Kanka::Test;
use Kanka::Gate;

my $t = Kanka::Test->new();
my $kanka = $t->start_kanka(authorize_mode => 'approve', rate_limit => 0);

my @users = (
    { id => 1, name => 'Ilsa Vance', campaigns => [101, 102] },
    { id => 2, name => 'Corin Ash', campaigns => [102] },
    { id => 3, name => 'Mara Quill', campaigns => [] },
    { id => 4, name => 'Tess Oakhart', campaigns => [200 .. 239] },
);

$t->write_conf(gate_conf(
    main => 'worker_processes 2;',
    server => q{
        kanka_oauth_timeout 1s;
        kanka_oauth_campaign_recheck 2s;
    },
    locations => q{
        location /c101/ {
            kanka_oauth on;
            kanka_oauth_campaign 101;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /c239/ {
            kanka_oauth on;
            kanka_oauth_campaign 999 239;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    },
));

$t->run();

my $port = $t->port(0);


sub login_as {
    my ($user) = @_;

    $kanka->set(default_user => $user);

    my $b = $t->browser(port => $port);
    my @chain = $b->follow('/');

    return $b;
}


sub campaign_calls {
    return $kanka->stats()->{campaigns} // 0;
}


sub status {
    my ($b, $path) = @_;

    return $b->get($path)->{status};
}


$kanka->set(users => \@users);

my $ilsa = login_as(1);
my $corin = login_as(2);
my $mara = login_as(3);
my $tess = login_as(4);

is(campaign_calls(), 0, 'no campaigns read where no rule asks');

# members pass, others get 403

is(status($ilsa, '/c101/wiki'), 200, 'a member passes');
is(campaign_calls(), 1, 'one page read');

is(status($ilsa, '/c101/wiki'), 200, 'again');
is(campaign_calls(), 1, 'from the session');

my $r = $corin->get('/c101/wiki');
is($r->{status}, 403, 'a member of other campaigns does not');
like($r->{body}, qr/not a member of a campaign allowed here/, 'and is told');
like($t->error_log(),
     qr/\[error\].*Kanka user "2" is in no campaign allowed by "kanka_oauth_campaign"/,
     'the log says which rule refused');

is(status($mara, '/c101/wiki'), 403, 'a user in no campaign does not');

$r = $t->http_get('/c101/api', port => $port,
                  headers => { Accept => 'application/json',
                               Cookie => 'kanka_session='
                                         . $mara->cookies()->{kanka_session} });
is(($r->json() || {})->{error}, 'forbidden', 'API clients get JSON');

# membership on a later page

my $before = campaign_calls();
is(status($tess, '/c239/map'), 200, 'member by a campaign on page 3');
is(campaign_calls() - $before, 3, 'every page read');

# read again after the interval, by one request

$users[1]{campaigns} = [102, 101];
$kanka->set(users => \@users);

is(status($corin, '/c101/wiki'), 403, 'within the interval the old answer');

sleep 2.2;

$before = campaign_calls();
is(status($corin, '/c101/wiki'), 200, 'after the interval, the new one');
is(campaign_calls() - $before, 1, 'read once');

sleep 2.2;
$kanka->set(api_delay => 0.5, api_fault_endpoint => 'campaigns');

my $cookie = 'kanka_session=' . $corin->cookies()->{kanka_session};
my @socks;

for my $i (1 .. 30) {
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print {$s} "GET /c101/burst/$i HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
               . "Cookie: $cookie\r\nConnection: close\r\n\r\n";
    push @socks, $s;
}

my $ok = 0;
for my $s (@socks) {
    local $/;
    my $raw = <$s> // '';
    $ok++ if $raw =~ m{^HTTP/1\.1 200 };
}

is($ok, 30, '30 requests at once after the interval all pass');
is(campaign_calls() - $before, 2, 'and the campaigns are read once more');

# the last known answer serves while the API fails

$kanka->reset(keep_tokens => 1);
$kanka->set(authorize_mode => 'approve', users => \@users, rate_limit => 0,
            api_fault_endpoint => 'campaigns', api_status => 500,
            api_body => 'oops');
sleep 2.2;

my $from = length $t->error_log();
is(status($ilsa, '/c101/wiki'), 200, 'API failing: the kept answer serves');
like($t->log_since($from), qr/\[error\].*campaigns endpoint answered 500/,
     'the failure is logged');

$kanka->set(api_status => 429, api_body => '["Too Many Attempts."]');
sleep 2.2;
is(status($ilsa, '/c101/wiki'), 200, 'rate limited: the kept answer serves');

# a first reading that is rate limited: try later

my $newcomer;
{
    $kanka->set(api_status => 0);
    $newcomer = login_as(2);
    $kanka->set(api_status => 429, api_body => '["Too Many Attempts."]');

    $r = $newcomer->get('/c101/first');
    is($r->{status}, 503, 'first reading rate limited: 503');
    is($r->header('retry-after'), '60', 'with Retry-After');
    like($r->{body}, qr/<h1>503 Service Temporarily Unavailable<\/h1>/,
         'and a page that says so');

    $kanka->set(api_status => 500, api_body => 'oops');
    $r = $newcomer->get('/c101/first');
    is($r->{status}, 503, 'no new try during the back-off');
}

# the request that refreshes the token reads the campaigns too

{
    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve', users => \@users,
                rate_limit => 0, expires_in => 1);

    my $b = login_as(1);

    $kanka->reset(keep_tokens => 1);
    $kanka->set(authorize_mode => 'approve', users => \@users,
                rate_limit => 0);
    sleep 2.1;

    my $calls = campaign_calls();
    is(status($b, '/c101/after-refresh'), 200,
       'a refresh and a first reading in one request');
    is($kanka->stats()->{token}{refresh_token}, 1, 'one refresh');
    is(campaign_calls() - $calls, 1, 'one reading');
}

$t->stop();

done_testing();
