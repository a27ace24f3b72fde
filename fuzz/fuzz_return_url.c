
/*
 * Fuzzes kanka_return_url_ok(), and kanka_escape_form() and
 * kanka_token68_ok() which see the same kind of text.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kanka_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_return_url(const uint8_t *data, size_t size);
static void fuzz_escape_form(const uint8_t *data, size_t size);
static void fuzz_token68(const uint8_t *data, size_t size);
static int fuzz_unreserved(unsigned char c);
static int fuzz_upper_hex(unsigned char c);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_return_url(data, size);
    fuzz_escape_form(data, size);
    fuzz_token68(data, size);

    return 0;
}


/* an accepted URL is a path on this origin: checked here on its own terms */

static void
fuzz_return_url(const uint8_t *data, size_t size)
{
    size_t  i;

    if (!kanka_return_url_ok(data, size)) {
        return;
    }

    if (size == 0 || data[0] != '/') {
        abort();
    }

    if (size > 1 && (data[1] == '/' || data[1] == '\\')) {
        abort();
    }

    for (i = 0; i < size; i++) {
        if (data[i] <= 0x20 || data[i] >= 0x7f || data[i] == '\\') {
            abort();
        }
    }
}


static void
fuzz_escape_form(const uint8_t *data, size_t size)
{
    size_t          i, n, m;
    unsigned char  *dst, *back;

    n = kanka_escape_form(NULL, data, size);

    if (n < size || n > 3 * size) {
        abort();
    }

    /* the counted size exactly, as the module allocates it */

    dst = malloc(n ? n : 1);
    back = malloc(n ? n : 1);

    if (dst == NULL || back == NULL) {
        free(dst);
        free(back);
        return;
    }

    m = kanka_escape_form(dst, data, size);

    if (m != n) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (fuzz_unreserved(dst[i])) {
            continue;
        }

        if (dst[i] != '%' || i + 2 >= n
            || !fuzz_upper_hex(dst[i + 1]) || !fuzz_upper_hex(dst[i + 2]))
        {
            abort();
        }

        i += 2;
    }

    /* no "+" survives escaping, so unescaping gives the input back */

    m = kanka_unescape(back, dst, n);

    if (m != size || memcmp(back, data, size) != 0) {
        abort();
    }

    free(dst);
    free(back);
}


/* RFC 6750 b64token: letters, digits and "-._~+/", then only "=" */

static void
fuzz_token68(const uint8_t *data, size_t size)
{
    int     ok;
    size_t  i, end, max;

    end = size;

    while (end > 0 && data[end - 1] == '=') {
        end--;
    }

    ok = (end > 0);

    for (i = 0; ok && i < end; i++) {
        ok = fuzz_unreserved(data[i]) || data[i] == '+' || data[i] == '/';
    }

    if (kanka_token68_ok(data, size, KANKA_ACCESS_TOKEN_MAX)
        != (ok && size <= KANKA_ACCESS_TOKEN_MAX))
    {
        abort();
    }

    /* a max below the length refuses, whatever the text */

    max = size ? data[0] : 0;

    if (kanka_token68_ok(data, size, max) != (ok && size <= max)) {
        abort();
    }
}


static int
fuzz_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~';
}


static int
fuzz_upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}
