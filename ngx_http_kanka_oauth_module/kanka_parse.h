
/*
 * Parsers for what clients and Kanka send: token answers, cookie headers,
 * query strings, return URLs.  No nginx here, so fuzzers link them alone.
 */


#ifndef _KANKA_PARSE_H_INCLUDED_
#define _KANKA_PARSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define KANKA_ACCESS_TOKEN_MAX    4096
#define KANKA_REFRESH_TOKEN_MAX   2048
#define KANKA_JSON_DEPTH_MAX      16

#define KANKA_ID_RAW              32    /* session id, state: random bytes */
#define KANKA_ID_LEN              43    /* the same in base64url */


typedef struct {
    const unsigned char   *data;
    size_t                 len;
} kanka_str_t;


/* what the token endpoint answered, its strings copied to a scratch buffer */

typedef struct {
    kanka_str_t            access_token;
    kanka_str_t            refresh_token;
    kanka_str_t            token_type;
    kanka_str_t            error;
    kanka_str_t            error_description;
    long long              expires_in;      /* -1 when absent */
    const char            *problem;         /* why the answer was refused */
} kanka_token_t;


/* what the profile endpoint answered: {"data":{"id":..,"name":..,...}} */

typedef struct {
    long long              id;              /* -1 when absent */
    kanka_str_t            name;
    const char            *problem;
} kanka_profile_t;


#define KANKA_NAME_MAX            256


/* one page of {"data":[{"id":..},..],"meta":{"last_page":..}} */

#define KANKA_CAMPAIGNS_PAGE_MAX  100

typedef struct {
    uint64_t               ids[KANKA_CAMPAIGNS_PAGE_MAX];
    size_t                 n;
    long long              last_page;       /* -1 when absent */
    const char            *problem;
} kanka_campaigns_t;


int kanka_parse_token(const unsigned char *in, size_t len,
    unsigned char *scratch, kanka_token_t *tok);

int kanka_parse_campaigns(const unsigned char *in, size_t len,
    kanka_campaigns_t *page);

int kanka_parse_profile(const unsigned char *in, size_t len,
    unsigned char *scratch, kanka_profile_t *profile);

int kanka_cookie_find(const unsigned char *hdr, size_t len,
    const unsigned char *name, size_t name_len, kanka_str_t *value);

int kanka_query_arg(const unsigned char *args, size_t len,
    const char *name, kanka_str_t *value);

size_t kanka_unescape(unsigned char *dst, const unsigned char *src,
    size_t len);

int kanka_return_url_ok(const unsigned char *url, size_t len);

int kanka_token68_ok(const unsigned char *p, size_t len, size_t max);

void kanka_id_encode(unsigned char *dst, const unsigned char *raw);

size_t kanka_escape_form(unsigned char *dst, const unsigned char *src,
    size_t len);

size_t kanka_log_safe(unsigned char *dst, size_t size,
    const unsigned char *src, size_t len);


#endif /* _KANKA_PARSE_H_INCLUDED_ */
