
/*
 * Fuzzes kanka_query_arg() and kanka_unescape() with the arguments of the
 * callback and login URIs, and kanka_log_safe() with what they yield.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kanka_parse.h"


#define FUZZ_LOG_BUF  64


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_query_found(const uint8_t *data, size_t size,
    const char *name, const kanka_str_t *v);
static void fuzz_query_unescape(const kanka_str_t *v);
static void fuzz_query_log(const unsigned char *src, size_t len);


static const char  *fuzz_query_names[] = {
    "code", "state", "error", "return"
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       i;
    kanka_str_t  v;

    for (i = 0; i < sizeof(fuzz_query_names) / sizeof(char *); i++) {

        if (!kanka_query_arg(data, size, fuzz_query_names[i], &v)) {
            continue;
        }

        fuzz_query_found(data, size, fuzz_query_names[i], &v);
        fuzz_query_unescape(&v);
    }

    return 0;
}


/* the value lies in the query, inside one argument that has the name */

static void
fuzz_query_found(const uint8_t *data, size_t size, const char *name,
    const kanka_str_t *v)
{
    size_t          name_len;
    const uint8_t  *a;

    name_len = strlen(name);

    if (v->data < data || v->data > data + size
        || v->len > size - (size_t) (v->data - data))
    {
        abort();
    }

    if (memchr(v->data, '&', v->len) != NULL) {
        abort();
    }

    if (v->data + v->len != data + size && v->data[v->len] != '&') {
        abort();
    }

    if ((size_t) (v->data - data) > name_len && v->data[-1] == '='
        && memcmp(v->data - 1 - name_len, name, name_len) == 0)
    {
        a = v->data - 1 - name_len;

    } else if (v->len == 0 && (size_t) (v->data - data) >= name_len
               && memcmp(v->data - name_len, name, name_len) == 0)
    {
        /* a bare "name" with no "=" */
        a = v->data - name_len;

    } else {
        abort();
    }

    if (a != data && a[-1] != '&') {
        abort();
    }
}


static void
fuzz_query_unescape(const kanka_str_t *v)
{
    size_t          n;
    unsigned char  *dst;

    /* the module allocates the escaped length, so that must be enough */

    dst = malloc(v->len ? v->len : 1);
    if (dst == NULL) {
        return;
    }

    n = kanka_unescape(dst, v->data, v->len);

    if (n > v->len) {
        abort();
    }

    if (memchr(v->data, '%', v->len) == NULL
        && memchr(v->data, '+', v->len) == NULL
        && (n != v->len || memcmp(dst, v->data, n) != 0))
    {
        abort();
    }

    fuzz_query_log(dst, n);

    free(dst);
}


static void
fuzz_query_log(const unsigned char *src, size_t len)
{
    size_t          i, n;
    unsigned char  *buf;

    buf = malloc(FUZZ_LOG_BUF);
    if (buf == NULL) {
        return;
    }

    n = kanka_log_safe(buf, FUZZ_LOG_BUF, src, len);

    if (n != (len < FUZZ_LOG_BUF ? len : FUZZ_LOG_BUF)) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (buf[i] < 0x20 || buf[i] > 0x7e || buf[i] == '"') {
            abort();
        }

        if (buf[i] != '?' && buf[i] != src[i]) {
            abort();
        }
    }

    free(buf);
}
