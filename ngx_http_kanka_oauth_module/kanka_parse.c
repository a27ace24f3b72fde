
/*
 * Parsers for what clients and Kanka send.  Every function here is bounded
 * by its input length and allocates nothing but yajl's own parser state.
 */


#include <string.h>
#include <yajl/yajl_parse.h>

#include "kanka_parse.h"


enum {
    KANKA_KEY_OTHER = 0,
    KANKA_KEY_ACCESS_TOKEN,
    KANKA_KEY_REFRESH_TOKEN,
    KANKA_KEY_TOKEN_TYPE,
    KANKA_KEY_EXPIRES_IN,
    KANKA_KEY_ERROR,
    KANKA_KEY_ERROR_DESCRIPTION,
    KANKA_KEY_MAX
};


typedef struct {
    kanka_token_t   *tok;
    unsigned char   *scratch;
    unsigned         depth;
    unsigned         key;
    unsigned         seen;          /* bit per known key */
    unsigned         started:1;
} kanka_token_ctx_t;


static const char  *kanka_token_keys[KANKA_KEY_MAX] = {
    "",
    "access_token",
    "refresh_token",
    "token_type",
    "expires_in",
    "error",
    "error_description"
};


static const char  kanka_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


static int
kanka_token_value(kanka_token_ctx_t *ctx, const char *what)
{
    /* a scalar or a container at the top level is not an object */

    if (ctx->depth == 0) {
        ctx->tok->problem = "answer is not a JSON object";
        return 0;
    }

    if (ctx->depth > 1 || ctx->key == KANKA_KEY_OTHER) {
        return 1;
    }

    if (ctx->seen & (1u << ctx->key)) {
        ctx->tok->problem = "duplicate field in answer";
        return 0;
    }

    ctx->seen |= 1u << ctx->key;

    if (what != NULL) {
        ctx->tok->problem = what;
        return 0;
    }

    return 1;
}


static int
kanka_token_null(void *data)
{
    kanka_token_ctx_t  *ctx = data;

    if (!kanka_token_value(ctx, NULL)) {
        return 0;
    }

    return 1;
}


static int
kanka_token_boolean(void *data, int value)
{
    kanka_token_ctx_t  *ctx = data;

    (void) value;

    return kanka_token_value(ctx, ctx->key == KANKA_KEY_OTHER
                                  ? NULL : "field of a wrong type in answer");
}


static int
kanka_token_integer(void *data, long long value)
{
    kanka_token_ctx_t  *ctx = data;

    if (ctx->depth == 1 && ctx->key == KANKA_KEY_EXPIRES_IN) {
        if (!kanka_token_value(ctx, value < 0 ? "negative \"expires_in\""
                                              : NULL))
        {
            return 0;
        }

        ctx->tok->expires_in = value;
        return 1;
    }

    return kanka_token_value(ctx, ctx->key == KANKA_KEY_OTHER || ctx->depth > 1
                                  ? NULL : "field of a wrong type in answer");
}


static int
kanka_token_double(void *data, double value)
{
    kanka_token_ctx_t  *ctx = data;

    (void) value;

    return kanka_token_value(ctx, ctx->key == KANKA_KEY_OTHER || ctx->depth > 1
                                  ? NULL : "field of a wrong type in answer");
}


static int
kanka_token_string(void *data, const unsigned char *s, size_t len)
{
    kanka_str_t        *dst;
    kanka_token_ctx_t  *ctx = data;

    if (ctx->depth != 1 || ctx->key == KANKA_KEY_OTHER) {
        return kanka_token_value(ctx, NULL);
    }

    if (ctx->key == KANKA_KEY_EXPIRES_IN) {
        return kanka_token_value(ctx, "field of a wrong type in answer");
    }

    if (!kanka_token_value(ctx, NULL)) {
        return 0;
    }

    switch (ctx->key) {

    case KANKA_KEY_ACCESS_TOKEN:
        dst = &ctx->tok->access_token;
        break;

    case KANKA_KEY_REFRESH_TOKEN:
        dst = &ctx->tok->refresh_token;
        break;

    case KANKA_KEY_TOKEN_TYPE:
        dst = &ctx->tok->token_type;
        break;

    case KANKA_KEY_ERROR:
        dst = &ctx->tok->error;
        break;

    default: /* KANKA_KEY_ERROR_DESCRIPTION */
        dst = &ctx->tok->error_description;
        break;
    }

    /* decoded strings are never longer than the text they came from */

    memcpy(ctx->scratch, s, len);
    dst->data = ctx->scratch;
    dst->len = len;
    ctx->scratch += len;

    return 1;
}


static int
kanka_token_map_key(void *data, const unsigned char *key, size_t len)
{
    unsigned            i;
    kanka_token_ctx_t  *ctx = data;

    ctx->key = KANKA_KEY_OTHER;

    if (ctx->depth != 1) {
        return 1;
    }

    for (i = 1; i < KANKA_KEY_MAX; i++) {
        if (strlen(kanka_token_keys[i]) == len
            && memcmp(kanka_token_keys[i], key, len) == 0)
        {
            ctx->key = i;
            break;
        }
    }

    return 1;
}


static int
kanka_token_start(kanka_token_ctx_t *ctx, int map)
{
    if (ctx->depth == 0) {
        if (ctx->started || !map) {
            ctx->tok->problem = "answer is not a JSON object";
            return 0;
        }

        ctx->started = 1;

    } else if (ctx->depth == 1 && ctx->key != KANKA_KEY_OTHER) {
        if (!kanka_token_value(ctx, "field of a wrong type in answer")) {
            return 0;
        }
    }

    if (++ctx->depth > KANKA_JSON_DEPTH_MAX) {
        ctx->tok->problem = "answer is nested too deeply";
        return 0;
    }

    ctx->key = KANKA_KEY_OTHER;

    return 1;
}


static int
kanka_token_start_map(void *data)
{
    return kanka_token_start(data, 1);
}


static int
kanka_token_start_array(void *data)
{
    return kanka_token_start(data, 0);
}


static int
kanka_token_end(void *data)
{
    kanka_token_ctx_t  *ctx = data;

    ctx->depth--;
    ctx->key = KANKA_KEY_OTHER;

    return 1;
}


static const yajl_callbacks  kanka_token_callbacks = {
    kanka_token_null,
    kanka_token_boolean,
    kanka_token_integer,
    kanka_token_double,
    NULL,
    kanka_token_string,
    kanka_token_start_map,
    kanka_token_map_key,
    kanka_token_end,
    kanka_token_start_array,
    kanka_token_end
};


/*
 * Returns 0 when the answer is a well-formed token or error object,
 * -1 with tok->problem set otherwise.  The scratch buffer must hold len
 * bytes; the strings in tok point into it.
 */

int
kanka_parse_token(const unsigned char *in, size_t len, unsigned char *scratch,
    kanka_token_t *tok)
{
    int                 ok;
    yajl_handle         h;
    yajl_status         st;
    kanka_token_ctx_t   ctx;

    memset(tok, 0, sizeof(kanka_token_t));
    tok->expires_in = -1;

    memset(&ctx, 0, sizeof(kanka_token_ctx_t));
    ctx.tok = tok;
    ctx.scratch = scratch;

    h = yajl_alloc(&kanka_token_callbacks, NULL, &ctx);
    if (h == NULL) {
        tok->problem = "out of memory";
        return -1;
    }

    st = yajl_parse(h, in, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok || !ctx.started) {
        if (tok->problem == NULL) {
            tok->problem = "answer is not valid JSON";
        }

        return -1;
    }

    if (tok->error.data != NULL) {
        return 0;
    }

    if (tok->access_token.data == NULL) {
        tok->problem = "no \"access_token\" in answer";
        return -1;
    }

    if (tok->token_type.len != 6
        || strncasecmp((const char *) tok->token_type.data, "bearer", 6) != 0)
    {
        tok->problem = "\"token_type\" is not \"Bearer\"";
        return -1;
    }

    if (tok->access_token.len > KANKA_ACCESS_TOKEN_MAX) {
        tok->problem = "access token is too long";
        return -1;
    }

    ok = kanka_token68_ok(tok->access_token.data, tok->access_token.len,
                          KANKA_ACCESS_TOKEN_MAX);
    if (!ok) {
        tok->problem = "access token has characters a bearer token cannot";
        return -1;
    }

    if (tok->refresh_token.data != NULL) {
        size_t  i;

        if (tok->refresh_token.len > KANKA_REFRESH_TOKEN_MAX) {
            tok->problem = "refresh token is too long";
            return -1;
        }

        for (i = 0; i < tok->refresh_token.len; i++) {
            if (tok->refresh_token.data[i] < 0x21
                || tok->refresh_token.data[i] > 0x7e)
            {
                tok->problem = "refresh token has control characters";
                return -1;
            }
        }
    }

    return 0;
}


typedef struct {
    kanka_profile_t  *profile;
    unsigned char    *scratch;
    unsigned          depth;
    unsigned          in_data:1;    /* the key at depth 1 was "data" */
    unsigned          data_seen:1;
    unsigned          key:2;        /* at depth 2: 1 id, 2 name */
} kanka_profile_ctx_t;


static int
kanka_profile_fail(kanka_profile_ctx_t *ctx, const char *problem)
{
    ctx->profile->problem = problem;
    return 0;
}


static int
kanka_profile_scalar(kanka_profile_ctx_t *ctx)
{
    if (ctx->depth == 0) {
        return kanka_profile_fail(ctx, "answer is not a JSON object");
    }

    if (ctx->depth == 1 && ctx->in_data) {
        return kanka_profile_fail(ctx, "\"data\" is not an object");
    }

    if (ctx->depth == 2 && ctx->in_data && ctx->key != 0) {
        return kanka_profile_fail(ctx, "profile field of a wrong type");
    }

    return 1;
}


static int
kanka_profile_null(void *data)
{
    return kanka_profile_scalar(data);
}


static int
kanka_profile_boolean(void *data, int value)
{
    (void) value;

    return kanka_profile_scalar(data);
}


static int
kanka_profile_integer(void *data, long long value)
{
    kanka_profile_ctx_t  *ctx = data;

    if (ctx->depth == 2 && ctx->in_data && ctx->key == 1) {
        if (value < 0 || ctx->profile->id != -1) {
            return kanka_profile_fail(ctx, "bad or duplicate user id");
        }

        ctx->profile->id = value;
        return 1;
    }

    return kanka_profile_scalar(ctx);
}


static int
kanka_profile_double(void *data, double value)
{
    (void) value;

    return kanka_profile_scalar(data);
}


static int
kanka_profile_string(void *data, const unsigned char *s, size_t len)
{
    size_t                i;
    kanka_profile_ctx_t  *ctx = data;

    if (ctx->depth == 2 && ctx->in_data && ctx->key == 2) {
        if (ctx->profile->name.data != NULL) {
            return kanka_profile_fail(ctx, "duplicate user name");
        }

        if (len > KANKA_NAME_MAX) {
            len = KANKA_NAME_MAX;

            /* do not cut a UTF-8 sequence in two */

            while (len > 0 && (s[len] & 0xc0) == 0x80) {
                len--;
            }
        }

        /* a name goes into headers and logs: no control characters */

        for (i = 0; i < len; i++) {
            ctx->scratch[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
        }

        ctx->profile->name.data = ctx->scratch;
        ctx->profile->name.len = len;
        ctx->scratch += len;

        return 1;
    }

    return kanka_profile_scalar(ctx);
}


static int
kanka_profile_map_key(void *data, const unsigned char *key, size_t len)
{
    kanka_profile_ctx_t  *ctx = data;

    if (ctx->depth == 1) {
        ctx->in_data = (len == 4 && memcmp(key, "data", 4) == 0);

        if (ctx->in_data) {
            if (ctx->data_seen) {
                return kanka_profile_fail(ctx, "duplicate \"data\"");
            }

            ctx->data_seen = 1;
        }

    } else if (ctx->depth == 2 && ctx->in_data) {
        ctx->key = (len == 2 && memcmp(key, "id", 2) == 0) ? 1
                   : (len == 4 && memcmp(key, "name", 4) == 0) ? 2 : 0;
    }

    return 1;
}


static int
kanka_profile_start(kanka_profile_ctx_t *ctx, int map)
{
    if (ctx->depth == 0 && !map) {
        return kanka_profile_fail(ctx, "answer is not a JSON object");
    }

    if (ctx->depth == 1 && ctx->in_data && !map) {
        return kanka_profile_fail(ctx, "\"data\" is not an object");
    }

    if (ctx->depth == 2 && ctx->in_data && ctx->key != 0) {
        return kanka_profile_fail(ctx, "profile field of a wrong type");
    }

    if (++ctx->depth > KANKA_JSON_DEPTH_MAX) {
        return kanka_profile_fail(ctx, "answer is nested too deeply");
    }

    return 1;
}


static int
kanka_profile_start_map(void *data)
{
    return kanka_profile_start(data, 1);
}


static int
kanka_profile_start_array(void *data)
{
    return kanka_profile_start(data, 0);
}


static int
kanka_profile_end(void *data)
{
    kanka_profile_ctx_t  *ctx = data;

    ctx->depth--;

    if (ctx->depth == 1) {
        ctx->in_data = 0;
    }

    ctx->key = 0;

    return 1;
}


static const yajl_callbacks  kanka_profile_callbacks = {
    kanka_profile_null,
    kanka_profile_boolean,
    kanka_profile_integer,
    kanka_profile_double,
    NULL,
    kanka_profile_string,
    kanka_profile_start_map,
    kanka_profile_map_key,
    kanka_profile_end,
    kanka_profile_start_array,
    kanka_profile_end
};


/*
 * Reads the user's id and name from Kanka's profile answer.  Returns 0 or
 * -1 with profile->problem set; the name points into scratch (len bytes).
 * A name longer than KANKA_NAME_MAX bytes is cut.
 */

int
kanka_parse_profile(const unsigned char *in, size_t len,
    unsigned char *scratch, kanka_profile_t *profile)
{
    yajl_handle          h;
    yajl_status          st;
    kanka_profile_ctx_t  ctx;

    memset(profile, 0, sizeof(kanka_profile_t));
    profile->id = -1;

    memset(&ctx, 0, sizeof(kanka_profile_ctx_t));
    ctx.profile = profile;
    ctx.scratch = scratch;

    h = yajl_alloc(&kanka_profile_callbacks, NULL, &ctx);
    if (h == NULL) {
        profile->problem = "out of memory";
        return -1;
    }

    st = yajl_parse(h, in, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok) {
        if (profile->problem == NULL) {
            profile->problem = "answer is not valid JSON";
        }

        return -1;
    }

    if (profile->id < 0) {
        profile->problem = "no user id in profile";
        return -1;
    }

    return 0;
}


typedef struct {
    kanka_campaigns_t  *page;
    unsigned            depth;
    unsigned            top:2;       /* key at depth 1: 1 data, 2 meta */
    unsigned            id:1;        /* key at depth 3 in data is "id" */
    unsigned            last:1;      /* key at depth 2 in meta: last_page */
    unsigned            has_id:1;    /* the current campaign had an id */
    unsigned            data_seen:1;
} kanka_campaigns_ctx_t;


static int
kanka_campaigns_fail(kanka_campaigns_ctx_t *ctx, const char *problem)
{
    ctx->page->problem = problem;
    return 0;
}


static int
kanka_campaigns_scalar(kanka_campaigns_ctx_t *ctx, int integer,
    long long value)
{
    kanka_campaigns_t  *page = ctx->page;

    if (ctx->depth == 0) {
        return kanka_campaigns_fail(ctx, "answer is not a JSON object");
    }

    if (ctx->depth == 1 && ctx->top == 1) {
        return kanka_campaigns_fail(ctx, "\"data\" is not an array");
    }

    if (ctx->depth == 2 && ctx->top == 1) {
        return kanka_campaigns_fail(ctx, "a campaign is not an object");
    }

    if (ctx->depth == 3 && ctx->top == 1 && ctx->id) {
        if (!integer || value < 0 || ctx->has_id) {
            return kanka_campaigns_fail(ctx, "bad campaign id");
        }

        if (page->n == KANKA_CAMPAIGNS_PAGE_MAX) {
            return kanka_campaigns_fail(ctx, "too many campaigns on a page");
        }

        page->ids[page->n++] = (uint64_t) value;
        ctx->has_id = 1;
        return 1;
    }

    if (ctx->depth == 2 && ctx->top == 2 && ctx->last) {
        if (!integer || value < 0) {
            return kanka_campaigns_fail(ctx, "bad \"last_page\"");
        }

        page->last_page = value;
    }

    return 1;
}


static int
kanka_campaigns_null(void *data)
{
    return kanka_campaigns_scalar(data, 0, 0);
}


static int
kanka_campaigns_boolean(void *data, int value)
{
    (void) value;

    return kanka_campaigns_scalar(data, 0, 0);
}


static int
kanka_campaigns_integer(void *data, long long value)
{
    return kanka_campaigns_scalar(data, 1, value);
}


static int
kanka_campaigns_double(void *data, double value)
{
    (void) value;

    return kanka_campaigns_scalar(data, 0, 0);
}


static int
kanka_campaigns_string(void *data, const unsigned char *s, size_t len)
{
    (void) s;
    (void) len;

    return kanka_campaigns_scalar(data, 0, 0);
}


static int
kanka_campaigns_map_key(void *data, const unsigned char *key, size_t len)
{
    kanka_campaigns_ctx_t  *ctx = data;

    if (ctx->depth == 1) {
        ctx->top = (len == 4 && memcmp(key, "data", 4) == 0) ? 1
                   : (len == 4 && memcmp(key, "meta", 4) == 0) ? 2 : 0;

        if (ctx->top == 1) {
            if (ctx->data_seen) {
                return kanka_campaigns_fail(ctx, "duplicate \"data\"");
            }

            ctx->data_seen = 1;
        }

    } else if (ctx->depth == 3 && ctx->top == 1) {
        ctx->id = (len == 2 && memcmp(key, "id", 2) == 0);

    } else if (ctx->depth == 2 && ctx->top == 2) {
        ctx->last = (len == 9 && memcmp(key, "last_page", 9) == 0);
    }

    return 1;
}


static int
kanka_campaigns_start(kanka_campaigns_ctx_t *ctx, int map)
{
    if (ctx->depth == 0 && !map) {
        return kanka_campaigns_fail(ctx, "answer is not a JSON object");
    }

    if (ctx->depth == 1 && ctx->top == 1 && map) {
        return kanka_campaigns_fail(ctx, "\"data\" is not an array");
    }

    if (ctx->depth == 2 && ctx->top == 1) {
        if (!map) {
            return kanka_campaigns_fail(ctx, "a campaign is not an object");
        }

        ctx->has_id = 0;
    }

    if (ctx->depth == 3 && ctx->top == 1 && ctx->id) {
        return kanka_campaigns_fail(ctx, "bad campaign id");
    }

    if (++ctx->depth > KANKA_JSON_DEPTH_MAX) {
        return kanka_campaigns_fail(ctx, "answer is nested too deeply");
    }

    ctx->id = 0;
    ctx->last = 0;

    return 1;
}


static int
kanka_campaigns_start_map(void *data)
{
    return kanka_campaigns_start(data, 1);
}


static int
kanka_campaigns_start_array(void *data)
{
    return kanka_campaigns_start(data, 0);
}


static int
kanka_campaigns_end(void *data)
{
    kanka_campaigns_ctx_t  *ctx = data;

    ctx->depth--;

    if (ctx->depth == 2 && ctx->top == 1 && !ctx->has_id) {
        return kanka_campaigns_fail(ctx, "a campaign without an id");
    }

    if (ctx->depth == 1) {
        ctx->top = 0;
    }

    ctx->id = 0;
    ctx->last = 0;

    return 1;
}


static int
kanka_campaigns_end_map(void *data)
{
    return kanka_campaigns_end(data);
}


static const yajl_callbacks  kanka_campaigns_callbacks = {
    kanka_campaigns_null,
    kanka_campaigns_boolean,
    kanka_campaigns_integer,
    kanka_campaigns_double,
    NULL,
    kanka_campaigns_string,
    kanka_campaigns_start_map,
    kanka_campaigns_map_key,
    kanka_campaigns_end_map,
    kanka_campaigns_start_array,
    kanka_campaigns_end
};


/*
 * Reads the campaign ids of one page of Kanka's campaigns answer, and the
 * number of the last page.  Returns 0, or -1 with page->problem set.
 */

int
kanka_parse_campaigns(const unsigned char *in, size_t len,
    kanka_campaigns_t *page)
{
    yajl_handle            h;
    yajl_status            st;
    kanka_campaigns_ctx_t  ctx;

    page->n = 0;
    page->last_page = -1;
    page->problem = NULL;

    memset(&ctx, 0, sizeof(kanka_campaigns_ctx_t));
    ctx.page = page;

    h = yajl_alloc(&kanka_campaigns_callbacks, NULL, &ctx);
    if (h == NULL) {
        page->problem = "out of memory";
        return -1;
    }

    st = yajl_parse(h, in, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok) {
        if (page->problem == NULL) {
            page->problem = "answer is not valid JSON";
        }

        return -1;
    }

    if (!ctx.data_seen) {
        page->problem = "no \"data\" in answer";
        return -1;
    }

    return 0;
}


/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-._~+/" ) *"=" */

int
kanka_token68_ok(const unsigned char *p, size_t len, size_t max)
{
    size_t  i;

    if (len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = p[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~' || c == '+' || c == '/')
        {
            continue;
        }

        break;
    }

    if (i == 0) {
        return 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (p[i] != '=') {
            return 0;
        }
    }

    return 1;
}


/*
 * Finds the first cookie of that name in one Cookie header value; the
 * value is returned without surrounding quotes.  memchr() steps from one
 * cookie to the next, as a header may hold many.
 */

int
kanka_cookie_find(const unsigned char *hdr, size_t len,
    const unsigned char *name, size_t name_len, kanka_str_t *value)
{
    const unsigned char  *p, *end, *ce, *v, *ve;

    p = hdr;
    end = hdr + len;

    while (p < end) {

        while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) {
            p++;
        }

        if (p == end) {
            break;
        }

        ce = memchr(p, ';', end - p);

        if (ce == NULL) {
            ce = end;
        }

        if ((size_t) (ce - p) > name_len && p[name_len] == '='
            && memcmp(p, name, name_len) == 0)
        {
            v = p + name_len + 1;
            ve = ce;

            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }

            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }

            value->data = v;
            value->len = ve - v;

            return 1;
        }

        p = ce;
    }

    return 0;
}


/* finds an argument in a query string; the value is still escaped */

int
kanka_query_arg(const unsigned char *args, size_t len, const char *name,
    kanka_str_t *value)
{
    size_t                name_len;
    const unsigned char  *p, *end, *a, *ae;

    name_len = strlen(name);
    p = args;
    end = args + len;

    while (p < end) {
        a = p;

        while (p < end && *p != '&') {
            p++;
        }

        ae = p;

        if (p < end) {
            p++;
        }

        if ((size_t) (ae - a) > name_len && a[name_len] == '='
            && memcmp(a, name, name_len) == 0)
        {
            value->data = a + name_len + 1;
            value->len = ae - value->data;
            return 1;
        }

        if ((size_t) (ae - a) == name_len && memcmp(a, name, name_len) == 0) {
            value->data = ae;
            value->len = 0;
            return 1;
        }
    }

    return 0;
}


static int
kanka_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* form-style unescaping: "+" is a space, a bad "%" sequence stays as it is */

size_t
kanka_unescape(unsigned char *dst, const unsigned char *src, size_t len)
{
    int             hi, lo;
    size_t          i;
    unsigned char  *d;

    d = dst;

    for (i = 0; i < len; i++) {

        if (src[i] == '+') {
            *d++ = ' ';
            continue;
        }

        if (src[i] == '%' && i + 2 < len) {
            hi = kanka_hex(src[i + 1]);
            lo = kanka_hex(src[i + 2]);

            if (hi >= 0 && lo >= 0) {
                *d++ = (unsigned char) (hi << 4 | lo);
                i += 2;
                continue;
            }
        }

        *d++ = src[i];
    }

    return d - dst;
}


#define KANKA_RETURN_URL_MAX  2048

/*
 * A return URL must be a path on this origin: it starts with a single "/",
 * and has no character a browser would drop, fold into "/" or use to end
 * a header.
 */

int
kanka_return_url_ok(const unsigned char *url, size_t len)
{
    size_t  i;

    if (len == 0 || len > KANKA_RETURN_URL_MAX || url[0] != '/') {
        return 0;
    }

    if (len > 1 && (url[1] == '/' || url[1] == '\\')) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (url[i] <= 0x20 || url[i] >= 0x7f || url[i] == '\\') {
            return 0;
        }
    }

    return 1;
}


void
kanka_id_encode(unsigned char *dst, const unsigned char *raw)
{
    size_t    i;
    uint32_t  v;

    /* 32 bytes: ten groups of three, then two bytes left */

    for (i = 0; i + 3 <= KANKA_ID_RAW; i += 3) {
        v = (uint32_t) raw[i] << 16 | (uint32_t) raw[i + 1] << 8 | raw[i + 2];
        *dst++ = kanka_b64url[v >> 18 & 0x3f];
        *dst++ = kanka_b64url[v >> 12 & 0x3f];
        *dst++ = kanka_b64url[v >> 6 & 0x3f];
        *dst++ = kanka_b64url[v & 0x3f];
    }

    v = (uint32_t) raw[i] << 16 | (uint32_t) raw[i + 1] << 8;
    *dst++ = kanka_b64url[v >> 18 & 0x3f];
    *dst++ = kanka_b64url[v >> 12 & 0x3f];
    *dst = kanka_b64url[v >> 6 & 0x3f];
}


/*
 * Escapes a value for a query string or a form body: everything but the
 * unreserved characters of RFC 3986.  With dst NULL, only counts.
 */

size_t
kanka_escape_form(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t          i, n;
    unsigned char   c;
    static const char  hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < len; i++) {
        c = src[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            if (dst) {
                dst[n] = c;
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '%';
            dst[n + 1] = hex[c >> 4];
            dst[n + 2] = hex[c & 0xf];
        }

        n += 3;
    }

    return n;
}


/* copies text from Kanka for a log line: printable ASCII only, bounded */

size_t
kanka_log_safe(unsigned char *dst, size_t size, const unsigned char *src,
    size_t len)
{
    size_t  i;

    if (len > size) {
        len = size;
    }

    for (i = 0; i < len; i++) {
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f && src[i] != '"')
                 ? src[i] : '?';
    }

    return len;
}
