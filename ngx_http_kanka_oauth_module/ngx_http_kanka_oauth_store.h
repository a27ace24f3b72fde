
/*
 * The session store: sessions and pending logins, keyed by random ids.
 *
 * Every operation returns NGX_OK, NGX_DECLINED (no such record, or it has
 * expired) or NGX_ERROR.  A store that answers later (Redis) will return
 * NGX_AGAIN and post the request when the answer is in; the caller then
 * calls again with the same arguments.  The shared-memory store always
 * answers at once.
 */


#ifndef _NGX_HTTP_KANKA_OAUTH_STORE_H_INCLUDED_
#define _NGX_HTTP_KANKA_OAUTH_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "kanka_parse.h"


#define NGX_HTTP_KANKA_OAUTH_SESSION    1
#define NGX_HTTP_KANKA_OAUTH_LOGIN      2
#define NGX_HTTP_KANKA_OAUTH_BEARER     3     /* a token Kanka accepted */
#define NGX_HTTP_KANKA_OAUTH_REJECTED   4     /* a token Kanka refused */

/*
 * The fields of a session, in the order they lie in the zone: those that
 * every request reads come first, together, so that one copy takes them
 */
#define NGX_HTTP_KANKA_OAUTH_ACCESS     0
#define NGX_HTTP_KANKA_OAUTH_USER_ID    1
#define NGX_HTTP_KANKA_OAUTH_USER_NAME  2
#define NGX_HTTP_KANKA_OAUTH_CAMPAIGNS  3     /* uint64_t ids */
#define NGX_HTTP_KANKA_OAUTH_REFRESH    4

/* the fields of a pending login */
#define NGX_HTTP_KANKA_OAUTH_VERIFIER   0
#define NGX_HTTP_KANKA_OAUTH_RETURN     1
#define NGX_HTTP_KANKA_OAUTH_BINDING    2
#define NGX_HTTP_KANKA_OAUTH_RETRY      3

#define NGX_HTTP_KANKA_OAUTH_NFIELDS    5

/* what a get says of the session's token, or of its campaigns */
#define NGX_HTTP_KANKA_OAUTH_FRESH      0   /* use it */
#define NGX_HTTP_KANKA_OAUTH_MINE       1   /* refresh it: the lease is ours */
#define NGX_HTTP_KANKA_OAUTH_BUSY       2   /* another request refreshes it */
#define NGX_HTTP_KANKA_OAUTH_STALE      3   /* expired, refresh failed lately */


typedef struct {
    ngx_uint_t          kind;             /* 0: any, told by a get */
    u_char              id[KANKA_ID_LEN];   /* as cookies carry it */
    time_t              created;
    time_t              expires;          /* the record goes then */
    time_t              token_expires;
    ngx_uint_t          failures;         /* refreshes failed in a row */
    ngx_uint_t          refresh;          /* FRESH, MINE, BUSY or STALE */
    time_t              checked;          /* when campaigns were read */
    ngx_uint_t          rechecks;         /* rechecks failed in a row */
    ngx_uint_t          recheck;          /* the campaigns: FRESH, MINE... */
    ngx_str_t           field[NGX_HTTP_KANKA_OAUTH_NFIELDS];
} ngx_http_kanka_oauth_record_t;


typedef struct {
    time_t              idle;             /* a get moves expiry this far */
    time_t              deadline;         /* ... but never past this */
    ngx_uint_t          fields;           /* bit per field to copy out */
    size_t              reserve;          /* bytes left before the copy */
    ngx_uint_t          take;             /* delete the record once read */
    time_t              refresh_at;       /* refresh a token expiring by then */
    ngx_msec_t          lease;            /* for this long, by one request */
    ngx_uint_t          keep_busy;        /* if BUSY, copy nothing again */
    time_t              recheck_at;       /* read campaigns read before */
    ngx_msec_t          recheck_lease;
} ngx_http_kanka_oauth_get_t;


typedef struct ngx_http_kanka_oauth_shctx_s  ngx_http_kanka_oauth_shctx_t;

typedef struct {
    ngx_http_kanka_oauth_shctx_t  *sh;
    ngx_slab_pool_t               *shpool;
    ngx_str_t                      name;
} ngx_http_kanka_oauth_zone_t;


ngx_int_t ngx_http_kanka_oauth_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_kanka_oauth_store_put(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_record_t *rec, ngx_log_t *log);
ngx_int_t ngx_http_kanka_oauth_store_get(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_record_t *rec, ngx_http_kanka_oauth_get_t *how,
    ngx_pool_t *pool);
ngx_int_t ngx_http_kanka_oauth_store_update(
    ngx_http_kanka_oauth_zone_t *zone, ngx_http_kanka_oauth_record_t *rec,
    ngx_log_t *log);
ngx_int_t ngx_http_kanka_oauth_store_release(
    ngx_http_kanka_oauth_zone_t *zone, u_char *id, time_t retry,
    ngx_uint_t recheck);
ngx_int_t ngx_http_kanka_oauth_store_delete(
    ngx_http_kanka_oauth_zone_t *zone, ngx_uint_t kind, u_char *id);
size_t ngx_http_kanka_oauth_store_node_size(
    ngx_http_kanka_oauth_record_t *rec);


#endif /* _NGX_HTTP_KANKA_OAUTH_STORE_H_INCLUDED_ */
