
/*
 * Fuzzes kanka_parse_profile() with answers of Kanka's profile endpoint,
 * and checks what the module stores of an accepted one.
 */


#include <stdint.h>
#include <stdlib.h>

#include "kanka_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc;
    size_t            i;
    kanka_profile_t   profile;
    unsigned char    *scratch;

    /* exactly the len bytes the parser asks for, so ASan sees an overrun */

    scratch = malloc(size);
    if (scratch == NULL && size != 0) {
        return 0;
    }

    rc = kanka_parse_profile(data, size, scratch, &profile);

    if (rc != 0 && (rc != -1 || profile.problem == NULL)) {
        abort();
    }

    if (rc == 0 && profile.id < 0) {
        abort();
    }

    if (profile.name.data != NULL
        && (profile.name.data < scratch
            || profile.name.data + profile.name.len > scratch + size
            || profile.name.len > KANKA_NAME_MAX))
    {
        abort();
    }

    /* a name goes into headers: no control characters may come through */

    for (i = 0; profile.name.data != NULL && i < profile.name.len; i++) {
        if (profile.name.data[i] < 0x20 || profile.name.data[i] == 0x7f) {
            abort();
        }
    }

    free(scratch);

    return 0;
}
