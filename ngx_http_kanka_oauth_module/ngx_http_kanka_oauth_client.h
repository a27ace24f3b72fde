
/*
 * Outbound HTTP(S) calls to Kanka: one libcurl multi handle per worker,
 * its sockets and timer driven by nginx events.
 */


#ifndef _NGX_HTTP_KANKA_OAUTH_CLIENT_H_INCLUDED_
#define _NGX_HTTP_KANKA_OAUTH_CLIENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_KANKA_OAUTH_CALL_OK         0
#define NGX_HTTP_KANKA_OAUTH_CALL_FAILED     1
#define NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT   2
#define NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE  3


typedef struct ngx_http_kanka_oauth_call_s  ngx_http_kanka_oauth_call_t;

typedef void (*ngx_http_kanka_oauth_call_pt)(
    ngx_http_kanka_oauth_call_t *call);


struct ngx_http_kanka_oauth_call_s {
    /* set by the caller; strings are null-terminated */
    ngx_str_t                       url;
    ngx_str_t                       body;        /* POST when not empty */
    ngx_str_t                       bearer;      /* a whole header line */
    ngx_str_t                       ca_file;
    ngx_msec_t                      timeout;
    size_t                          max_size;
    ngx_flag_t                      ssl_verify;
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    ngx_http_kanka_oauth_call_pt    handler;
    void                           *data;

    /* the outcome, when the handler is called */
    ngx_uint_t                      result;
    ngx_uint_t                      status;      /* HTTP status, 0 if none */
    ngx_str_t                       response;
    u_char                         *error;       /* curl's words, for logs */

    /* private */
    void                           *easy;
    void                           *headers;
    size_t                          size;
    ngx_queue_t                     queue;
    unsigned                        running:1;
};


ngx_int_t ngx_http_kanka_oauth_client_init(ngx_cycle_t *cycle);
void ngx_http_kanka_oauth_client_exit(ngx_cycle_t *cycle);
ngx_int_t ngx_http_kanka_oauth_call_start(ngx_http_kanka_oauth_call_t *call);
void ngx_http_kanka_oauth_call_cancel(ngx_http_kanka_oauth_call_t *call);


#endif /* _NGX_HTTP_KANKA_OAUTH_CLIENT_H_INCLUDED_ */
