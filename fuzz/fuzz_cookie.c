
/*
 * Fuzzes kanka_cookie_find() and the id encoder.  The first input byte is
 * the cookie name length, the name follows, the rest is the header.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kanka_parse.h"


#define FUZZ_NAME_MAX  32


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_cookie_encode(unsigned char *dst, const unsigned char *raw);
static unsigned char *fuzz_cookie_dup(const unsigned char *p, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                name_len, hdr_len;
    kanka_str_t           value;
    unsigned char        *name, *hdr;
    unsigned char         id[KANKA_ID_LEN], expect[KANKA_ID_LEN];
    const unsigned char  *v, *n;

    if (size == 0) {
        return 0;
    }

    name_len = data[0] % FUZZ_NAME_MAX;

    if (name_len > size - 1) {
        name_len = size - 1;
    }

    hdr_len = size - 1 - name_len;

    /* apart and exactly sized, so a read past either one is reported */

    name = fuzz_cookie_dup(data + 1, name_len);
    hdr = fuzz_cookie_dup(data + 1 + name_len, hdr_len);

    if (name == NULL || hdr == NULL) {
        free(name);
        free(hdr);
        return 0;
    }

    if (kanka_cookie_find(hdr, hdr_len, name, name_len, &value)) {

        if (value.data < hdr || value.data > hdr + hdr_len
            || value.len > hdr_len - (size_t) (value.data - hdr))
        {
            abort();
        }

        if (memchr(value.data, ';', value.len) != NULL) {
            abort();
        }

        /* the bytes before the value are the name and "=", maybe a quote */

        v = value.data;

        if (v > hdr && v[-1] == '"') {
            v--;
        }

        if ((size_t) (v - hdr) < name_len + 1 || v[-1] != '='
            || memcmp(v - 1 - name_len, name, name_len) != 0)
        {
            abort();
        }

        n = v - 1 - name_len;

        if (n != hdr && n[-1] != ';' && n[-1] != ' ' && n[-1] != '\t') {
            abort();
        }
    }

    /* any 32 bytes: the encoder agrees with one written bit by bit */

    if (hdr_len >= KANKA_ID_RAW) {
        kanka_id_encode(id, hdr);
        fuzz_cookie_encode(expect, hdr);

        if (memcmp(id, expect, KANKA_ID_LEN) != 0) {
            abort();
        }
    }

    free(name);
    free(hdr);

    return 0;
}


/* base64url without padding, six bits at a time */

static void
fuzz_cookie_encode(unsigned char *dst, const unsigned char *raw)
{
    size_t       bit, i, k;
    unsigned     v;
    const char  *digits;

    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789-_";

    for (i = 0; i < KANKA_ID_LEN; i++) {
        v = 0;

        for (k = 0; k < 6; k++) {
            bit = i * 6 + k;
            v <<= 1;

            if (bit < KANKA_ID_RAW * 8) {
                v |= (raw[bit / 8] >> (7 - bit % 8)) & 1;
            }
        }

        dst[i] = (unsigned char) digits[v];
    }
}


static unsigned char *
fuzz_cookie_dup(const unsigned char *p, size_t len)
{
    unsigned char  *d;

    /* malloc(0) may give NULL; the one byte then is never read */

    d = malloc(len ? len : 1);
    if (d == NULL) {
        return NULL;
    }

    memcpy(d, p, len);

    return d;
}
