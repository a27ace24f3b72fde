#!/bin/bash
# Writes the seed corpus, one directory per harness under corpus/.  The
# output is the same on every run; the files it writes are committed.

set -euo pipefail
cd "$(dirname "$0")"


# hex N TAG: N bytes in hex that look random, the same for one TAG
hex() {
    local i

    for i in $(seq 1 $((($1 + 31) / 32))); do
        printf '%s %d' "$2" "$i" | sha256sum | cut -c1-64
    done | tr -d '\n' | head -c $((2 * $1))
}

b64url() {
    hex "$1" "$2" | xxd -r -p | basenc --base64url -w0 | tr -d =
}

# seed HARNESS NAME: the file is what comes on stdin
seed() {
    mkdir -p "corpus/$1"
    cat > "corpus/$1/$2"
}

# json NAME TEXT...: the pieces are joined as they are
json() {
    local name=$1

    shift
    printf '%s' "$@" | seed fuzz_token "$name"
}

# cookie NAME COOKIE-NAME HEADER...: the length byte, the name, then the
# header, in whose pieces printf %b escapes work
cookie() {
    local name=$1 cname=$2

    shift 2
    { printf "\\x$(printf %02x ${#cname})"; printf '%s' "$cname";
      printf '%b' "$@"; } | seed fuzz_cookie "$name"
}

# query NAME TEXT..., url NAME TEXT...: printf %b escapes work
query() {
    local name=$1

    shift
    printf '%b' "$@" | seed fuzz_query "$name"
}

url() {
    local name=$1

    shift
    printf '%b' "$@" | seed fuzz_return_url "$name"
}

# repeat N TEXT
repeat() {
    local i

    for i in $(seq 1 "$1"); do
        printf '%s' "$2"
    done
}


rm -rf corpus/fuzz_token corpus/fuzz_cookie corpus/fuzz_query \
       corpus/fuzz_return_url


# a Passport-style answer: an RS512 JWT of about 1000 characters and a
# "def50200" refresh token of 700 hex digits

jose=$(printf '{"typ":"JWT","alg":"RS512"}' | basenc --base64url -w0 | tr -d =)
claims=$(printf '%s' '{"aud":"87","jti":"' "$(hex 40 jti)" '",' \
         '"iat":1717171717.402515,"nbf":1717171717.402518,' \
         '"exp":1748707717.385634,"sub":"123456","scopes":[]}' \
         | basenc --base64url -w0 | tr -d =)
JWT="$jose.$claims.$(b64url 512 signature)"
REFRESH="def50200$(hex 346 refresh)"

B='"token_type":"Bearer"'
A='"access_token":"abc"'

GRANT="The provided authorization grant (e.g., authorization code, resource"
GRANT+=" owner credentials) or refresh token is invalid, expired, revoked,"
GRANT+=" does not match the redirection URI used in the authorization"
GRANT+=" request, or was issued to another client."
REQUEST="The request is missing a required parameter, includes an invalid"
REQUEST+=" parameter value, includes a parameter more than once, or is"
REQUEST+=" otherwise malformed."
GRANT_TYPE="The authorization grant type is not supported by the"
GRANT_TYPE+=" authorization server."
DENIED="The resource owner or authorization server denied the request."

json ok-full.json "{$B," '"expires_in":31536000,' \
    "\"access_token\":\"$JWT\",\"refresh_token\":\"$REFRESH\"}"
json ok-pretty.json '{' $'\n' '    "token_type": "Bearer",' $'\n' \
    '    "expires_in": 31536000,' $'\n' \
    "    \"access_token\": \"$JWT\"," $'\n' \
    "    \"refresh_token\": \"$REFRESH\"" $'\n' '}'
json ok-minimal.json '{"access_token":"abc","token_type":"bearer"}'
json ok-no-refresh.json "{$B," '"expires_in":3600,' \
    '"access_token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}'
json ok-padding.json \
    '{"token_type":"BEARER","access_token":"YWJjZA==","expires_in":0}'
json ok-slash-escape.json "{$B," \
    '"access_token":"a\/b+c~d.e_f-g=","refresh_token":"x\/y"}'
json ok-key-escape.json '{"access\u005ftoken":"abc","token\u005Ftype":"Bearer"}'
json ok-extra-fields.json "{$B," '"expires_in":3600,' "$A," \
    '"scope":"","id_token":null,' \
    '"user":{"id":1,"roles":["admin",{"x":[1,2.5,true,null]}]},"ok":true}'
json ok-llong-max.json "{$B,$A," '"expires_in":9223372036854775807}'
json bad-bom.json $'\xef\xbb\xbf' "{$B,$A}"

json err-invalid-grant.json '{"error":"invalid_grant",' \
    "\"error_description\":\"$GRANT\"," \
    '"hint":"Authorization code has been revoked",' \
    "\"message\":\"$GRANT\"}"
json err-invalid-client.json '{"error":"invalid_client",' \
    '"error_description":"Client authentication failed",' \
    '"message":"Client authentication failed"}'
json err-invalid-request.json '{"error":"invalid_request",' \
    "\"error_description\":\"$REQUEST\"," \
    '"hint":"Check the `code` parameter",' \
    "\"message\":\"$REQUEST\"}"
json err-unsupported-grant.json '{"error":"unsupported_grant_type",' \
    "\"error_description\":\"$GRANT_TYPE\"," \
    '"hint":"Check that all required parameters have been provided",' \
    "\"message\":\"$GRANT_TYPE\"}"
json err-access-denied.json '{"error":"access_denied",' \
    "\"error_description\":\"$DENIED\"," \
    '"hint":"The user denied the request",' \
    "\"message\":\"$DENIED\"}"
json err-server.json '{"message":"Server Error"}'
json err-throttled.json '{"message":"Too Many Attempts."}'
json err-empty.json '{"error":""}'
json err-quote-ctl.json '{"error":"bad \"quote\"\r\n\u0007\u001b[31m",' \
    '"error_description":"\u0000\t"}'
json err-with-crlf-token.json '{"error":"invalid_grant",' \
    '"access_token":"a\r\nSet-Cookie: x=1",' "$B}"
json err-long.json "{\"error\":\"$(hex 300 err)\"," \
    "\"error_description\":\"$(repeat 200 x)\"}"

json bad-crlf-access.json "{$B," \
    '"access_token":"abc\r\nSet-Cookie: kanka_session=x"}'
json bad-space-access.json "{$B," '"access_token":"abc def"}'
json bad-pad-middle.json "{$B," '"access_token":"ab=cd"}'
json bad-only-pad.json "{$B," '"access_token":"=="}'
json bad-empty-access.json "{$B," '"access_token":""}'
json bad-nul-access.json "{$B," '"access_token":"abc\u0000def"}'
json bad-unicode-access.json "{$B," '"access_token":"abc\u00e9"}'
json bad-type-mac.json '{"token_type":"mac",' "$A}"
json bad-type-missing.json "{$A," '"expires_in":3600}'
json bad-type-long.json '{"token_type":"Bearerx",' "$A}"
json bad-access-number.json "{$B," '"access_token":12345}'
json bad-access-bool.json "{$B," '"access_token":true}'
json bad-access-null.json "{$B," '"access_token":null}'
json bad-access-array.json "{$B," '"access_token":["abc"]}'
json bad-access-object.json "{$B," '"access_token":{"value":"abc"}}'
json bad-expires-string.json "{$B,$A," '"expires_in":"3600"}'
json bad-expires-negative.json "{$B,$A," '"expires_in":-1}'
json bad-expires-double.json "{$B,$A," '"expires_in":3600.5}'
json bad-expires-huge.json "{$B,$A," '"expires_in":99999999999999999999999}'
json bad-expires-exp.json "{$B,$A," '"expires_in":1e400}'
json bad-dup-access.json "{$B,$A," '"access_token":"def"}'
json bad-dup-error.json '{"error":"a","error":"b"}'
json bad-refresh-ctl.json "{$B,$A," '"refresh_token":"def\t502"}'
json bad-refresh-utf8.json "{$B,$A," '"refresh_token":"d\u00e9f"}'
json bad-refresh-long.json "{$B,$A," "\"refresh_token\":\"$(hex 1030 long)\"}"
json bad-access-long.json "{$B," "\"access_token\":\"$(b64url 3075 long)\"}"
json bad-nested-deep.json "$(repeat 17 '{"a":')" 1 "$(repeat 17 '}')"
json ok-nested-15.json "{$B,$A," '"x":' "$(repeat 14 '[')$(repeat 14 ']')}"
json bad-top-array.json "[{$B,$A}]"
json bad-top-string.json '"abc"'
json bad-top-number.json '42'
json bad-two-objects.json '{"error":"a"}{"error":"b"}'
json bad-empty-object.json '{}'
json bad-truncated.json "{$B," '"access_token":"abc'
json bad-trailing.json '{"error":"a"} x'
json bad-comment.json '{/* c */"error":"a"}'
json err-surrogate.json '{"error":"\ud800x",' \
    '"error_description":"\ud83d\ude00\udc00"}'
json bad-utf8.json '{"error":"caf' $'\xc3\xa9 \xff\xfe' '"}'
json bad-html.json '<html><head><title>502 Bad Gateway</title></head></html>'


ID1=$(b64url 32 session-1)
ID2=$(b64url 32 session-2)
S=kanka_session
L=kanka_session_login

cookie single "$S" "$S=$ID1"
cookie several "$S" "_ga=GA1.2.1357911.1717171717; " \
    "XSRF-TOKEN=$(b64url 120 xsrf)%3D; $S=$ID1; kanka_session_login=$ID2"
cookie quoted "$S" "$S=\"$ID1\""
cookie spaces "$S" "  ;; $S=$ID1 \t ;  "
cookie name-space "$S" "$S =$ID1; $S= $ID2"
cookie empty-header "$S" ""
cookie empty-value "$S" "$S=; other=1"
cookie name-only "$S" "$S; $S"
cookie first-bad "$S" "$S=x; $S=$ID2"
cookie prefix "$S" "x$S=$ID2; ${S}x=$ID2; $S=$ID1"
cookie login "$L" "$S=$ID1; $L=$ID2"
cookie short-id "$S" "$S=${ID1:0:42}"
cookie long-id "$S" "$S=${ID1}A"
cookie noncanon-id "$S" "$S=${ID1:0:42}B"
cookie std-b64 "$S" "$S=${ID1:0:10}+/${ID1:12}"
cookie lone-quote "$S" "$S=\""
cookie two-quotes "$S" "$S=\"\""
cookie equals "$S" "$S=a=b==; c=="
cookie tabs "$S" "\t$S=$ID1\t\t"
cookie binary "$S" "$S=\x00\xff\x7f;\x01=\x02"
cookie empty-name "" "=abc; =$ID1"
cookie laravel "$S" \
    "laravel_session=eyJpdiI6IjEyMyIsInZhbHVlIjoiYWJjIiwibWFjIjoiZGVmIn0%3D; " \
    "remember_web_59ba36addc2b2f9401580f014c7f58ea4e30989d=eyJpdiI6IjQ1NiJ9; " \
    "$S=$ID1"


CODE="def50200$(hex 300 code)"

query code-state "code=$CODE&state=$ID1"
query state-code "state=$ID1&code=$CODE"
query denied "error=access_denied&error_description=${DENIED// /+}" \
    "&hint=The+user+denied+the+request&message=${DENIED// /+}&state=$ID1"
query invalid-scope "error=invalid_scope&error_description=" \
    "The+requested+scope+is+invalid%2C+unknown%2C+or+malformed&state=$ID1"
query return "return=%2Fcampaigns%2F12%2Fcharacters%3Fpage%3D2%23top"
query return-evil "return=%2F%2Fevil.com&return=/ok"
query return-raw "return=//evil.com/%2e%2e"
query bad-percent "code=%ZZ%4&state=%&error=%%41%"
query mixed-case "state=%2f%2F%aB%Cd"
query nul "code=abc%00def&state=%0d%0a"
query utf8 "error=%C3%A9t%C3%A9+%E2%9C%93"
query bare "code&state&error&return"
query empty-values "code=&state=&error=&return="
query ampersands "&&&code=a&&state=b&&"
query near-names "codex=1&xcode=2&cod=3&code=4&States=5&state=6"
query equals "code=a=b=c&state==="
query duplicate "state=$ID1&state=$ID2&code=1&code=2"
query plus "error=a+b++c%2Bd"
query only-equals "="
query empty ""
query fragment "code=abc#frag&state=x;y"
query binary "code=\xff\xfe\x00&state=\x80"


url root "/"
url path-query "/a?b=c"
url realistic "/campaigns/12/characters?page=2&sort=name#top"
url tilde "/~user/a-b_c.d"
url percent "/a%20b/%2e%2e/c"
url slash-slash "//evil.com"
url slash-slash-path "//evil.com/a"
url slash-backslash '/\\evil.com'
url backslash-only '\\'
url encoded-slashes "/%2F%2Fevil.com"
url triple-slash "///evil.com"
url dot-slash "/./"
url dot-dot "/..//evil.com"
url javascript "javascript:alert(1)"
url http "http://evil.com/"
url https-one-slash "https:/evil.com"
url no-slash "campaigns/12"
url empty ""
url crlf "/a\r\nSet-Cookie: x=1"
url space "/a b"
url tab-slash "/\t/evil.com"
url leading-space " /a"
url del "/a\x7f"
url nul "/a\x00b"
url utf8 "/caf\xc3\xa9"
url high-byte "/\xff"
url inner-backslash '/a\\b'
url return-in-query "/?return=//evil.com"
url long-ok "/$(repeat 2047 a)"
url long-over "/$(repeat 2048 a)"
url b64token "$JWT"
url b64token-pad "YWJjZA=="
