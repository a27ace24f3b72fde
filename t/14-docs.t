# The directive reference matches the code: every directive of the command
# table has a block with Syntax, Default and Context, in the same order, with
# the contexts of its flags; the docs name no directive the code lacks.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Kanka::Test ();

my $root = Kanka::Test->root();
my $code = Kanka::Test::slurp("$root/ngx_http_kanka_oauth_module/"
                              . 'ngx_http_kanka_oauth_module.c') // '';
my $doc = Kanka::Test::slurp("$root/docs/directives.md") // '';

my ($commands) = $code =~ /_commands\[\] = \{(.*?)ngx_null_command/s;
$commands //= '';

my @code;

while ($commands =~ /\{ ngx_string\("(kanka_oauth\w*)"\),\s*([^,]+),/g) {
    my ($name, $flags) = ($1, $2);
    my @ctx;

    push @ctx, 'http' if $flags =~ /NGX_HTTP_MAIN_CONF/;
    push @ctx, 'server' if $flags =~ /NGX_HTTP_SRV_CONF/;
    push @ctx, 'location' if $flags =~ /NGX_HTTP_LOC_CONF/;

    push @code, [ $name, join ', ', @ctx ];
}

ok(@code >= 20, scalar(@code) . ' directives in the command table');

my @doc = $doc =~ /^### (kanka_oauth\w*)$/mg;

is_deeply(\@doc, [ map { $_->[0] } @code ],
          'the reference has a block for each, in the same order');

for my $d (@code) {
    my ($name, $ctx) = @$d;

    my ($block) = $doc =~ /^### \Q$name\E\n(.*?)(?=^### |^## |\z)/ms;
    $block //= '';

    like($block, qr/^\s+Syntax:\s+\Q$name\E\b.*;$/m, "$name: Syntax");
    like($block, qr/^\s+Default:\s+(?:\Q$name\E\b.*;|—)$/m, "$name: Default");
    like($block, qr/^\s+Context:\s+\Q$ctx\E$/m, "$name: Context $ctx");
}

# every directive has a merge rule, so that it is inherited

my ($merge) = $code =~ /^(ngx_http_kanka_oauth_merge_loc_conf\(.*?^\})$/ms;
$merge //= '';

for my $field ($code =~ /offsetof\(ngx_http_kanka_oauth_loc_conf_t, (\w+)\)/g) {
    like($merge, qr/conf->\Q$field\E\b/, "$field is merged");
}

done_testing();
