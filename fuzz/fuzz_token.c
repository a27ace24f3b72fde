
/*
 * Fuzzes kanka_parse_token() with token endpoint answers, and checks what
 * the module relies on when an answer is accepted.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kanka_parse.h"


#define FUZZ_LOG_BUF  128


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_token_inside(const kanka_str_t *s,
    const unsigned char *scratch, size_t size);
static void fuzz_token_apart(const kanka_str_t *a, const kanka_str_t *b);
static int fuzz_token68(const unsigned char *p, size_t len);
static void fuzz_token_log(const kanka_str_t *s);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    size_t          i, j;
    kanka_str_t    *str[5];
    kanka_token_t   tok;
    unsigned char  *scratch;

    /* exactly the len bytes the parser asks for, so ASan sees an overrun */

    scratch = malloc(size);
    if (scratch == NULL && size != 0) {
        return 0;
    }

    rc = kanka_parse_token(data, size, scratch, &tok);

    if (rc != 0 && (rc != -1 || tok.problem == NULL)) {
        abort();
    }

    str[0] = &tok.access_token;
    str[1] = &tok.refresh_token;
    str[2] = &tok.token_type;
    str[3] = &tok.error;
    str[4] = &tok.error_description;

    /* even a refused answer must leave nothing pointing elsewhere */

    for (i = 0; i < 5; i++) {
        fuzz_token_inside(str[i], scratch, size);

        for (j = i + 1; j < 5; j++) {
            fuzz_token_apart(str[i], str[j]);
        }
    }

    if (tok.expires_in < -1) {
        abort();
    }

    /* the module stores these only when there is no "error" */

    if (rc == 0 && tok.error.data == NULL) {

        if (tok.access_token.data == NULL
            || tok.access_token.len > KANKA_ACCESS_TOKEN_MAX
            || !fuzz_token68(tok.access_token.data, tok.access_token.len))
        {
            abort();
        }

        if (tok.token_type.len != 6
            || strncasecmp((const char *) tok.token_type.data, "bearer", 6)
               != 0)
        {
            abort();
        }

        if (tok.refresh_token.len > KANKA_REFRESH_TOKEN_MAX) {
            abort();
        }

        for (i = 0; i < tok.refresh_token.len; i++) {
            if (tok.refresh_token.data[i] < 0x21
                || tok.refresh_token.data[i] > 0x7e)
            {
                abort();
            }
        }
    }

    fuzz_token_log(&tok.error);
    fuzz_token_log(&tok.error_description);

    free(scratch);

    return 0;
}


static void
fuzz_token_inside(const kanka_str_t *s, const unsigned char *scratch,
    size_t size)
{
    size_t  off;

    if (s->data == NULL) {
        if (s->len != 0) {
            abort();
        }

        return;
    }

    if (s->data < scratch || s->data > scratch + size) {
        abort();
    }

    off = s->data - scratch;

    if (s->len > size - off) {
        abort();
    }
}


static void
fuzz_token_apart(const kanka_str_t *a, const kanka_str_t *b)
{
    if (a->data == NULL || b->data == NULL || a->len == 0 || b->len == 0) {
        return;
    }

    if (a->data < b->data + b->len && b->data < a->data + a->len) {
        abort();
    }
}


/* RFC 6750 b64token, written apart from the parser's own check */

static int
fuzz_token68(const unsigned char *p, size_t len)
{
    size_t              i, pad;
    static const char   b64token[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";

    pad = 0;

    while (pad < len && p[len - 1 - pad] == '=') {
        pad++;
    }

    if (pad == len) {
        return 0;
    }

    for (i = 0; i < len - pad; i++) {
        if (memchr(b64token, p[i], sizeof(b64token) - 1) == NULL) {
            return 0;
        }
    }

    return 1;
}


/* the module logs "error" through a fixed buffer; any byte must be safe */

static void
fuzz_token_log(const kanka_str_t *s)
{
    size_t          i, n;
    unsigned char  *buf;

    buf = malloc(FUZZ_LOG_BUF);
    if (buf == NULL) {
        return;
    }

    n = kanka_log_safe(buf, FUZZ_LOG_BUF, s->data, s->len);

    if (n != (s->len < FUZZ_LOG_BUF ? s->len : FUZZ_LOG_BUF)) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (buf[i] < 0x20 || buf[i] > 0x7e || buf[i] == '"') {
            abort();
        }

        if (buf[i] != '?' && buf[i] != s->data[i]) {
            abort();
        }
    }

    free(buf);
}
