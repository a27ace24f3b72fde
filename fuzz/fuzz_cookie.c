
/*
 * Fuzzes kanka_cookie_find() and the session id codec.  The first input
 * byte is the cookie name length, the name follows, the rest is the header.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kanka_parse.h"


#define FUZZ_NAME_MAX  32


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_cookie_id(const unsigned char *text, size_t len);
static unsigned char *fuzz_cookie_dup(const unsigned char *p, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                i, name_len, hdr_len;
    kanka_str_t           value;
    unsigned char        *name, *hdr;
    unsigned char         raw[KANKA_ID_RAW], id[KANKA_ID_LEN];
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

        fuzz_cookie_id(value.data, value.len);
    }

    /* whatever the header holds, the codec must agree with itself */

    fuzz_cookie_id(hdr, hdr_len);

    if (hdr_len >= KANKA_ID_RAW) {
        kanka_id_encode(id, hdr);

        for (i = 0; i < KANKA_ID_LEN; i++) {
            if (!((id[i] >= 'A' && id[i] <= 'Z')
                  || (id[i] >= 'a' && id[i] <= 'z')
                  || (id[i] >= '0' && id[i] <= '9')
                  || id[i] == '-' || id[i] == '_'))
            {
                abort();
            }
        }

        if (kanka_id_decode(raw, id, KANKA_ID_LEN) != 0
            || memcmp(raw, hdr, KANKA_ID_RAW) != 0)
        {
            abort();
        }
    }

    free(name);
    free(hdr);

    return 0;
}


/* an accepted id must be the one canonical text of its bytes */

static void
fuzz_cookie_id(const unsigned char *text, size_t len)
{
    unsigned char  raw[KANKA_ID_RAW], id[KANKA_ID_LEN];

    if (kanka_id_decode(raw, text, len) != 0) {
        return;
    }

    kanka_id_encode(id, raw);

    if (len != KANKA_ID_LEN || memcmp(id, text, KANKA_ID_LEN) != 0) {
        abort();
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
