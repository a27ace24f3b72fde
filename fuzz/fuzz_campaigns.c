
/*
 * Fuzzes kanka_parse_campaigns() with pages of Kanka's campaigns answer,
 * and checks the bounds of what it returns.
 */


#include <stdint.h>
#include <stdlib.h>

#include "kanka_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc;
    kanka_campaigns_t  page;

    rc = kanka_parse_campaigns(data, size, &page);

    if (rc != 0 && (rc != -1 || page.problem == NULL)) {
        abort();
    }

    if (page.n > KANKA_CAMPAIGNS_PAGE_MAX || page.last_page < -1) {
        abort();
    }

    return 0;
}
