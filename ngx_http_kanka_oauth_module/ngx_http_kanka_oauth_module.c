
/*
 * "Log in with Kanka" in front of nginx locations: directives, the
 * access-phase gate, the OAuth callback and logout, and the variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kanka_parse.h"
#include "ngx_http_kanka_oauth_client.h"
#include "ngx_http_kanka_oauth_store.h"


#define NGX_HTTP_KANKA_OAUTH_OFF         0
#define NGX_HTTP_KANKA_OAUTH_ON          1
#define NGX_HTTP_KANKA_OAUTH_OPTIONAL    2

#define NGX_HTTP_KANKA_OAUTH_SECURE_OFF  0
#define NGX_HTTP_KANKA_OAUTH_SECURE_ON   1
#define NGX_HTTP_KANKA_OAUTH_SECURE_AUTO 2

#define NGX_HTTP_KANKA_OAUTH_LOGIN_TTL   600
#define NGX_HTTP_KANKA_OAUTH_CODE_MAX    4096
#define NGX_HTTP_KANKA_OAUTH_ANSWER_MAX  65536

/* marks a login restarted once, which a browser without cookies repeats */
#define NGX_HTTP_KANKA_OAUTH_RETRIED     "r"

#define NGX_HTTP_KANKA_OAUTH_SCHEME      "Bearer "

/* what a call of the request to Kanka is for */
#define NGX_HTTP_KANKA_OAUTH_EXCHANGING  1
#define NGX_HTTP_KANKA_OAUTH_PROFILING   2
#define NGX_HTTP_KANKA_OAUTH_CHECKING    3
#define NGX_HTTP_KANKA_OAUTH_VERIFYING   4     /* a bearer token */

/* how long a token that Kanka refused is remembered, at most */
#define NGX_HTTP_KANKA_OAUTH_REJECTED_TTL  60

/* pages of campaigns read at most: 15 campaigns a page */
#define NGX_HTTP_KANKA_OAUTH_PAGES_MAX     20


typedef struct {
    ngx_array_t                  zones;        /* ngx_shm_zone_t * */
} ngx_http_kanka_oauth_main_conf_t;


typedef struct {
    ngx_uint_t                   mode;
    ngx_shm_zone_t              *zone;
    ngx_str_t                    zone_name;

    ngx_str_t                    client_id;
    ngx_str_t                    client_secret;
    ngx_str_t                    redirect_uri;
    ngx_str_t                    redirect_path;
    ngx_str_t                    logout_uri;
    ngx_str_t                    authorize_url;
    ngx_str_t                    token_url;
    ngx_str_t                    api_url;

    ngx_str_t                    cookie_name;
    ngx_str_t                    binding_name;     /* cookie_name "_login" */
    ngx_str_t                    cookie_domain;
    ngx_str_t                    cookie_path;
    ngx_uint_t                   cookie_secure;
    ngx_str_t                    cookie_samesite;

    time_t                       session_timeout;
    time_t                       session_lifetime;
    time_t                       refresh_before;
    ngx_flag_t                   pass_token;
    ngx_msec_t                   timeout;
    ngx_flag_t                   ssl_verify;
    ngx_str_t                    ssl_trusted_certificate;
    ngx_flag_t                   pkce;
    ngx_array_t                 *users;            /* of ngx_uint_t */
    ngx_array_t                 *campaigns;        /* of ngx_uint_t */
    time_t                       campaign_recheck;
    ngx_flag_t                   bearer;
    time_t                       bearer_cache;
} ngx_http_kanka_oauth_loc_conf_t;


/*
 * A refresh outlives the request that started it: Kanka revokes the old
 * tokens as it answers, so the answer must be kept even if the client
 * has gone.  It has a pool of its own.
 */

typedef struct {
    ngx_pool_t                      *pool;
    ngx_http_request_t              *request;    /* NULL once it has gone */
    ngx_http_kanka_oauth_zone_t     *zone;
    ngx_http_kanka_oauth_call_t     *call;
    ngx_uint_t                       failures;
    u_char                           id[KANKA_ID_LEN];
} ngx_http_kanka_oauth_refresh_t;


typedef struct {
    ngx_http_kanka_oauth_call_t     *call;
    ngx_http_kanka_oauth_refresh_t  *refresh;
    ngx_int_t                        refreshed;   /* what the refresh gave */
    ngx_str_t                        new_token;
    ngx_http_kanka_oauth_record_t   *login;       /* at the callback */
    ngx_http_kanka_oauth_record_t    session;
    ngx_str_t                        token;
    ngx_str_t                        bearer;
    ngx_int_t                        rc;
    ngx_event_t                     *timer;       /* waits for a refresh */
    ngx_msec_t                       deadline;
    ngx_str_t                        user_id;
    ngx_str_t                        user_name;
    ngx_uint_t                       stage;       /* what the call is for */
    ngx_uint_t                       page;
    ngx_str_t                        api_token;   /* the request's own */
    ngx_array_t                     *campaigns;   /* of uint64_t, read */
    unsigned                         waiting:1;
    unsigned                         refreshed_now:1;
    unsigned                         polling:1;
    unsigned                         cleanup:1;
    unsigned                         done:1;
    unsigned                         authenticated:1;
} ngx_http_kanka_oauth_ctx_t;


static ngx_int_t ngx_http_kanka_oauth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_check(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_bearer(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_invalid_token(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_verify(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_verified(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_session(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_anonymous(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_use_token(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *token, size_t reserved);
static ngx_int_t ngx_http_kanka_oauth_refresh(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static void ngx_http_kanka_oauth_refresh_done(
    ngx_http_kanka_oauth_call_t *call);
static ngx_int_t ngx_http_kanka_oauth_refreshed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_wait(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static void ngx_http_kanka_oauth_poll(ngx_event_t *ev);
static ngx_int_t ngx_http_kanka_oauth_api_call(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *path, ngx_str_t *token, ngx_uint_t stage);
static ngx_int_t ngx_http_kanka_oauth_busy(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_start_call(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *url, ngx_str_t *body, ngx_str_t *bearer);
static ngx_int_t ngx_http_kanka_oauth_profiled(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_allowed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_recheck(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_campaigns_page(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_campaigns_read(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_recheck_failed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_int_t status);
static ngx_int_t ngx_http_kanka_oauth_unchecked(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_int_t status);
static ngx_int_t ngx_http_kanka_oauth_answer(ngx_log_t *log, ngx_pool_t *pool,
    ngx_http_kanka_oauth_call_t *call, kanka_token_t *tok,
    ngx_uint_t refresh);
static ngx_int_t ngx_http_kanka_oauth_add_cleanup(ngx_http_request_t *r,
    ngx_http_kanka_oauth_ctx_t *ctx);
static void ngx_http_kanka_oauth_resume(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_login(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *return_url,
    ngx_uint_t retried);
static ngx_int_t ngx_http_kanka_oauth_unauthorized(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf);
static ngx_int_t ngx_http_kanka_oauth_callback(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf);
static ngx_int_t ngx_http_kanka_oauth_exchange(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *code);
static void ngx_http_kanka_oauth_call_done(
    ngx_http_kanka_oauth_call_t *call);
static void ngx_http_kanka_oauth_cleanup(void *data);
static ngx_int_t ngx_http_kanka_oauth_exchanged(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx);
static ngx_int_t ngx_http_kanka_oauth_logout(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf);

static ngx_int_t ngx_http_kanka_oauth_navigation(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_get_cookie(ngx_http_request_t *r,
    ngx_str_t *name, u_char *id, ngx_uint_t skip);
static ngx_int_t ngx_http_kanka_oauth_set_cookie(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *name, u_char *id,
    time_t max_age, ngx_uint_t login);
static ngx_int_t ngx_http_kanka_oauth_set_authorization(ngx_http_request_t *r,
    ngx_str_t *value);
static ngx_int_t ngx_http_kanka_oauth_redirect(ngx_http_request_t *r,
    ngx_str_t *location);
static ngx_int_t ngx_http_kanka_oauth_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *text);
static ngx_uint_t ngx_http_kanka_oauth_error_page(ngx_http_request_t *r,
    ngx_uint_t status);
static ngx_int_t ngx_http_kanka_oauth_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_str_t *body);
static ngx_int_t ngx_http_kanka_oauth_redirect_uri(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *uri);
static void ngx_http_kanka_oauth_hide_args(ngx_http_request_t *r);
static ngx_int_t ngx_http_kanka_oauth_new_id(ngx_http_request_t *r,
    u_char *id);
static ngx_int_t ngx_http_kanka_oauth_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);

static ngx_int_t ngx_http_kanka_oauth_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_kanka_oauth_authenticated_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_kanka_oauth_add_variables(ngx_conf_t *cf);
static void *ngx_http_kanka_oauth_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_kanka_oauth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kanka_oauth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_kanka_oauth_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kanka_oauth_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_kanka_oauth_set_uri(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kanka_oauth_set_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kanka_oauth_cookie(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kanka_oauth_ids(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kanka_oauth_ssl_verify(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_kanka_oauth_trusted_certificate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_kanka_oauth_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_kanka_oauth_init_process(ngx_cycle_t *cycle);
static void ngx_http_kanka_oauth_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_kanka_oauth_modes[] = {
    { ngx_string("off"), NGX_HTTP_KANKA_OAUTH_OFF },
    { ngx_string("on"), NGX_HTTP_KANKA_OAUTH_ON },
    { ngx_string("optional"), NGX_HTTP_KANKA_OAUTH_OPTIONAL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_kanka_oauth_commands[] = {

    { ngx_string("kanka_oauth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, mode),
      &ngx_http_kanka_oauth_modes },

    { ngx_string("kanka_oauth_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_kanka_oauth_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kanka_oauth_session_zone"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, zone_name),
      NULL },

    { ngx_string("kanka_oauth_client_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, client_id),
      NULL },

    { ngx_string("kanka_oauth_client_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, client_secret),
      NULL },

    { ngx_string("kanka_oauth_client_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, client_secret),
      NULL },

    { ngx_string("kanka_oauth_redirect_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_set_uri,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, redirect_uri),
      NULL },

    { ngx_string("kanka_oauth_logout_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_set_uri,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, logout_uri),
      NULL },

    { ngx_string("kanka_oauth_authorize_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_set_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, authorize_url),
      NULL },

    { ngx_string("kanka_oauth_token_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_set_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, token_url),
      NULL },

    { ngx_string("kanka_oauth_api_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_set_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, api_url),
      NULL },

    { ngx_string("kanka_oauth_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_kanka_oauth_cookie,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kanka_oauth_session_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, session_timeout),
      NULL },

    { ngx_string("kanka_oauth_session_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, session_lifetime),
      NULL },

    { ngx_string("kanka_oauth_refresh_before"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, refresh_before),
      NULL },

    { ngx_string("kanka_oauth_pass_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, pass_token),
      NULL },

    { ngx_string("kanka_oauth_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, timeout),
      NULL },

    { ngx_string("kanka_oauth_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_kanka_oauth_ssl_verify,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, ssl_verify),
      NULL },

    { ngx_string("kanka_oauth_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kanka_oauth_trusted_certificate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("kanka_oauth_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_kanka_oauth_ids,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, users),
      NULL },

    { ngx_string("kanka_oauth_campaign"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_kanka_oauth_ids,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, campaigns),
      NULL },

    { ngx_string("kanka_oauth_campaign_recheck"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, campaign_recheck),
      NULL },

    { ngx_string("kanka_oauth_bearer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, bearer),
      NULL },

    { ngx_string("kanka_oauth_bearer_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, bearer_cache),
      NULL },

    { ngx_string("kanka_oauth_pkce"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kanka_oauth_loc_conf_t, pkce),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kanka_oauth_module_ctx = {
    ngx_http_kanka_oauth_add_variables,    /* preconfiguration */
    ngx_http_kanka_oauth_init,             /* postconfiguration */

    ngx_http_kanka_oauth_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_kanka_oauth_create_loc_conf,  /* create location configuration */
    ngx_http_kanka_oauth_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_kanka_oauth_module = {
    NGX_MODULE_V1,
    &ngx_http_kanka_oauth_module_ctx,      /* module context */
    ngx_http_kanka_oauth_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_kanka_oauth_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_kanka_oauth_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_kanka_oauth_vars[] = {

    { ngx_string("kanka_oauth_access_token"), NULL,
      ngx_http_kanka_oauth_str_variable,
      offsetof(ngx_http_kanka_oauth_ctx_t, token),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kanka_oauth_user_id"), NULL,
      ngx_http_kanka_oauth_str_variable,
      offsetof(ngx_http_kanka_oauth_ctx_t, user_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kanka_oauth_user_name"), NULL,
      ngx_http_kanka_oauth_str_variable,
      offsetof(ngx_http_kanka_oauth_ctx_t, user_name),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kanka_oauth_authenticated"), NULL,
      ngx_http_kanka_oauth_authenticated_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_kanka_oauth_html = ngx_string("text/html");
static ngx_str_t  ngx_http_kanka_oauth_json = ngx_string("application/json");
static ngx_str_t  ngx_http_kanka_oauth_root = ngx_string("/");

static ngx_uint_t  ngx_http_kanka_oauth_authorization_hash;


static ngx_int_t
ngx_http_kanka_oauth_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_kanka_oauth_ctx_t       *ctx;
    ngx_http_kanka_oauth_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kanka_oauth_module);

    if (klcf->zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_kanka_oauth_module);

    if (ctx != NULL) {

        /* back here while waiting, or once a call or a wait is over */

        if (ctx->waiting) {
            return NGX_AGAIN;
        }

        if (ctx->done) {
            return ctx->rc;
        }

        if (ctx->refresh != NULL) {
            ctx->refresh = NULL;
            rc = ngx_http_kanka_oauth_refreshed(r, klcf, ctx);

        } else if (ctx->call != NULL) {
            switch (ctx->stage) {

            case NGX_HTTP_KANKA_OAUTH_EXCHANGING:
                rc = ngx_http_kanka_oauth_exchanged(r, klcf, ctx);
                break;

            case NGX_HTTP_KANKA_OAUTH_PROFILING:
                rc = ngx_http_kanka_oauth_profiled(r, klcf, ctx);
                break;

            case NGX_HTTP_KANKA_OAUTH_VERIFYING:
                rc = ngx_http_kanka_oauth_verified(r, klcf, ctx);
                break;

            default: /* NGX_HTTP_KANKA_OAUTH_CHECKING */
                rc = ngx_http_kanka_oauth_campaigns_read(r, klcf, ctx);
                break;
            }

        } else {
            rc = ngx_http_kanka_oauth_check(r, klcf, ctx);
        }

        /* a session gone meanwhile is no session: never a pass */

        if (rc == NGX_DECLINED) {
            rc = ngx_http_kanka_oauth_anonymous(r, klcf, ctx);
        }

        goto done;
    }

    if (r->uri.len == klcf->redirect_path.len
        && ngx_strncmp(r->uri.data, klcf->redirect_path.data, r->uri.len) == 0)
    {
        return ngx_http_kanka_oauth_callback(r, klcf);
    }

    if (r->uri.len == klcf->logout_uri.len
        && ngx_strncmp(r->uri.data, klcf->logout_uri.data, r->uri.len) == 0)
    {
        return ngx_http_kanka_oauth_logout(r, klcf);
    }

    if (klcf->mode == NGX_HTTP_KANKA_OAUTH_OFF) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kanka_oauth_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_kanka_oauth_module);

    rc = ngx_http_kanka_oauth_check(r, klcf, ctx);

done:

    /* NGX_DONE: the answer is sent and the request may be freed already */

    if (rc != NGX_AGAIN && rc != NGX_DONE) {
        ctx->done = 1;
        ctx->rc = rc;
    }

    return rc;
}


/* a session cookie, else a bearer token if allowed, else anonymous */

static ngx_int_t
ngx_http_kanka_oauth_check(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_kanka_oauth_session(r, klcf, ctx);

    if (rc == NGX_DECLINED && klcf->bearer && ctx->api_token.len == 0
        && r->headers_in.authorization)
    {
        rc = ngx_http_kanka_oauth_bearer(r, klcf, ctx);

        if (rc == NGX_OK) {
            rc = ngx_http_kanka_oauth_session(r, klcf, ctx);
        }
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_kanka_oauth_anonymous(r, klcf, ctx);
    }

    return rc;
}


/*
 * A request with "Authorization: Bearer": the token is known by a hash of
 * it, never kept itself.  NGX_DECLINED: not a bearer token.
 */

static ngx_int_t
ngx_http_kanka_oauth_bearer(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char        *p, *last, digest[EVP_MAX_MD_SIZE];
    unsigned int   md_len;

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    if (last - p < 7 || ngx_strncasecmp(p, (u_char *) "bearer ", 7) != 0) {
        return NGX_DECLINED;
    }

    for (p += 7; p < last && *p == ' '; p++) { /* void */ }

    if (!kanka_token68_ok(p, last - p, KANKA_ACCESS_TOKEN_MAX)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: malformed bearer token");
        return ngx_http_kanka_oauth_invalid_token(r);
    }

    ctx->api_token.data = p;
    ctx->api_token.len = last - p;

    /* the verdict on a token is kept under its digest */

    if (EVP_Digest(p, last - p, digest, &md_len, EVP_sha256(), NULL) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kanka_oauth: EVP_Digest() failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kanka_id_encode(ctx->session.id, digest);

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_invalid_token(ngx_http_request_t *r)
{
    ngx_str_t         body;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer realm=\"kanka\", error=\"invalid_token\"");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    r->headers_out.www_authenticate = h;

    if (ngx_http_kanka_oauth_error_page(r, NGX_HTTP_UNAUTHORIZED)) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    ngx_str_set(&body, "{\"error\":\"invalid_token\",\"message\":"
                       "\"Kanka does not accept this token.\"}");

    return ngx_http_kanka_oauth_send(r, NGX_HTTP_UNAUTHORIZED,
                                     &ngx_http_kanka_oauth_json, &body);
}


/* a bearer token not seen lately: Kanka's profile endpoint judges it */

static ngx_int_t
ngx_http_kanka_oauth_verify(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    static ngx_str_t  profile = ngx_string("/profile");

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: verifying a bearer token");

    return ngx_http_kanka_oauth_api_call(r, klcf, ctx, &profile,
                                         &ctx->api_token,
                                         NGX_HTTP_KANKA_OAUTH_VERIFYING);
}


static ngx_int_t
ngx_http_kanka_oauth_verified(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char                         *scratch, id[NGX_INT64_LEN];
    ngx_int_t                       rc;
    kanka_profile_t                 profile;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_record_t   rec;

    call = ctx->call;
    ctx->call = NULL;

    ngx_memzero(&rec, sizeof(ngx_http_kanka_oauth_record_t));
    ngx_memcpy(rec.id, ctx->session.id, KANKA_ID_LEN);
    rec.created = ngx_time();

    if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: profile endpoint timed out while "
                      "verifying a bearer token: %s", call->error);
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                   "Kanka did not answer in time. Please try again.");
    }

    if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_OK
        && (call->status == NGX_HTTP_UNAUTHORIZED
            || call->status == NGX_HTTP_FORBIDDEN))
    {
        /* remembered a while, so a bad token does not cost a call each */

        rec.kind = NGX_HTTP_KANKA_OAUTH_REJECTED;
        rec.expires = rec.created + ngx_min(klcf->bearer_cache,
                                        NGX_HTTP_KANKA_OAUTH_REJECTED_TTL);

        (void) ngx_http_kanka_oauth_store_put(klcf->zone->data, &rec,
                                              r->connection->log);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: Kanka refused a bearer token");

        return ngx_http_kanka_oauth_invalid_token(r);
    }

    if (call->result != NGX_HTTP_KANKA_OAUTH_CALL_OK
        || call->status != 200)
    {
        if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_OK
            && call->status == NGX_HTTP_TOO_MANY_REQUESTS)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "kanka_oauth: Kanka's API is rate limiting the "
                          "user of a bearer token");
            return ngx_http_kanka_oauth_unchecked(r, klcf, ctx,
                                                NGX_HTTP_TOO_MANY_REQUESTS);
        }

        if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "kanka_oauth: profile endpoint answered %ui while "
                          "verifying a bearer token", call->status);

        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "kanka_oauth: verifying a bearer token failed: %s",
                          call->error);
        }

        return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
                   "Kanka could not check the token. Please try again.");
    }

    scratch = ngx_pnalloc(r->pool, call->response.len + 1);
    if (scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (kanka_parse_profile(call->response.data, call->response.len, scratch,
                            &profile)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: bad answer from profile endpoint: %s",
                      profile.problem);
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
                   "Kanka could not check the token. Please try again.");
    }

    rec.kind = NGX_HTTP_KANKA_OAUTH_BEARER;
    rec.expires = rec.created + klcf->bearer_cache;

    rec.field[NGX_HTTP_KANKA_OAUTH_USER_ID].data = id;
    rec.field[NGX_HTTP_KANKA_OAUTH_USER_ID].len =
                            ngx_sprintf(id, "%L", (int64_t) profile.id) - id;
    rec.field[NGX_HTTP_KANKA_OAUTH_USER_NAME].data =
                                                (u_char *) profile.name.data;
    rec.field[NGX_HTTP_KANKA_OAUTH_USER_NAME].len = profile.name.len;

    rc = ngx_http_kanka_oauth_store_put(klcf->zone->data, &rec,
                                        r->connection->log);
    if (rc != NGX_OK) {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "The token could not be remembered. Please try again.");
    }

    return ngx_http_kanka_oauth_session(r, klcf, ctx);
}


/*
 * The valid-session path: one lock hold, one copy of the token.  The same
 * hold takes the refresh lease when the token is about to expire.  With a
 * bearer token of the request, its cached verdict is looked up instead.
 */

static ngx_int_t
ngx_http_kanka_oauth_session(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_uint_t                      n;
    ngx_http_kanka_oauth_get_t      how;
    ngx_http_kanka_oauth_record_t  *rec;

    rec = &ctx->session;

    if (ctx->api_token.len) {
        rec->kind = 0;
        how.idle = 0;
        how.deadline = 0;
        how.fields = 1 << NGX_HTTP_KANKA_OAUTH_USER_ID
                     | 1 << NGX_HTTP_KANKA_OAUTH_USER_NAME;
        how.reserve = 0;
        how.refresh_at = 0;

    } else {
        rec->kind = NGX_HTTP_KANKA_OAUTH_SESSION;

        how.idle = klcf->session_timeout;
        how.deadline = klcf->session_lifetime;
        how.fields = 1 << NGX_HTTP_KANKA_OAUTH_ACCESS
                     | 1 << NGX_HTTP_KANKA_OAUTH_USER_ID
                     | 1 << NGX_HTTP_KANKA_OAUTH_USER_NAME;
        how.reserve = sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1;
        how.refresh_at = ngx_time() + klcf->refresh_before;
    }

    how.take = 0;
    how.lease = klcf->timeout + 1000;
    how.keep_busy = ctx->polling;
    how.recheck_at = 0;
    how.recheck_lease = klcf->timeout * NGX_HTTP_KANKA_OAUTH_PAGES_MAX + 1000;

    if (ctx->refreshed_now) {
        /* one refresh a request, however short the new token's life */
        how.refresh_at = 0;
    }

    if (klcf->campaigns) {
        how.fields |= 1 << NGX_HTTP_KANKA_OAUTH_CAMPAIGNS;
        how.recheck_at = ngx_time() - klcf->campaign_recheck;
    }

    if (ctx->api_token.len) {
        rc = ngx_http_kanka_oauth_store_get(klcf->zone->data, rec, &how,
                                            r->pool);

    } else {

        /* a cookie of another origin may come first: a few are tried */

        rc = NGX_DECLINED;

        for (n = 0; rc == NGX_DECLINED && n < 4; n++) {
            if (ngx_http_kanka_oauth_get_cookie(r, &klcf->cookie_name,
                                                rec->id, n)
                != NGX_OK)
            {
                break;
            }

            rec->kind = NGX_HTTP_KANKA_OAUTH_SESSION;

            rc = ngx_http_kanka_oauth_store_get(klcf->zone->data, rec, &how,
                                                r->pool);
        }
    }

    if (ctx->api_token.len) {
        if (rc == NGX_DECLINED) {
            return ngx_http_kanka_oauth_verify(r, klcf, ctx);
        }

        if (rc == NGX_OK && rec->kind == NGX_HTTP_KANKA_OAUTH_REJECTED) {
            return ngx_http_kanka_oauth_invalid_token(r);
        }

        rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS] = ctx->api_token;
        how.reserve = 0;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    switch (rec->refresh) {

    case NGX_HTTP_KANKA_OAUTH_MINE:
        return ngx_http_kanka_oauth_refresh(r, klcf, ctx);

    case NGX_HTTP_KANKA_OAUTH_BUSY:
        return ngx_http_kanka_oauth_wait(r, klcf, ctx);

    case NGX_HTTP_KANKA_OAUTH_STALE:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: access token expired and its refresh "
                      "failed a moment ago");
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
                   "Kanka could not renew the login just now. Please try "
                   "again in a moment.");
    }

    if (rec->recheck == NGX_HTTP_KANKA_OAUTH_MINE) {
        return ngx_http_kanka_oauth_recheck(r, klcf, ctx);
    }

    if (klcf->campaigns && rec->checked == 0) {

        if (rec->recheck == NGX_HTTP_KANKA_OAUTH_BUSY) {
            /* another request reads the campaigns for the first time */
            return ngx_http_kanka_oauth_wait(r, klcf, ctx);
        }

        /* the first reading failed a moment ago */

        return ngx_http_kanka_oauth_unchecked(r, klcf, ctx,
                                              NGX_HTTP_TOO_MANY_REQUESTS);
    }

    return ngx_http_kanka_oauth_use_token(r, klcf, ctx,
                                 &rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                                 how.reserve);
}


/* no session: let it through, send it to Kanka, or answer 401 */

static ngx_int_t
ngx_http_kanka_oauth_anonymous(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    if (klcf->mode == NGX_HTTP_KANKA_OAUTH_OPTIONAL) {
        return NGX_OK;
    }

    if (!ngx_http_kanka_oauth_navigation(r)) {
        return ngx_http_kanka_oauth_unauthorized(r, klcf);
    }

    return ngx_http_kanka_oauth_login(r, klcf, &r->unparsed_uri, 0);
}


/* "reserved" bytes before the token are free for "Bearer " */

static ngx_int_t
ngx_http_kanka_oauth_use_token(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *token, size_t reserved)
{
    u_char     *p;
    size_t      len;
    ngx_int_t   rc;

    ctx->user_id = ctx->session.field[NGX_HTTP_KANKA_OAUTH_USER_ID];
    ctx->user_name = ctx->session.field[NGX_HTTP_KANKA_OAUTH_USER_NAME];

    rc = ngx_http_kanka_oauth_allowed(r, klcf, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    len = sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1;

    if (reserved >= len) {
        p = token->data - len;

    } else {
        p = ngx_pnalloc(r->pool, len + token->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p + len, token->data, token->len);
    }

    ngx_memcpy(p, NGX_HTTP_KANKA_OAUTH_SCHEME, len);

    ctx->bearer.data = p;
    ctx->bearer.len = len + token->len;
    ctx->token.data = p + len;
    ctx->token.len = token->len;
    ctx->authenticated = 1;

    if (klcf->pass_token) {
        return ngx_http_kanka_oauth_set_authorization(r, &ctx->bearer);
    }

    return NGX_OK;
}


/* the rules of the location about who may pass */

static ngx_int_t
ngx_http_kanka_oauth_allowed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char      *p, *last;
    uint64_t     member;
    ngx_int_t    id;
    ngx_str_t   *ids;
    ngx_uint_t   i, *users, *campaigns;

    if (klcf->users) {
        id = ngx_atoi(ctx->user_id.data, ctx->user_id.len);
        users = klcf->users->elts;

        for (i = 0; i < klcf->users->nelts; i++) {
            if (id != NGX_ERROR && users[i] == (ngx_uint_t) id) {
                break;
            }
        }

        if (i == klcf->users->nelts) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "kanka_oauth: Kanka user \"%V\" is not allowed by "
                          "\"kanka_oauth_user\"", &ctx->user_id);

            return ngx_http_kanka_oauth_error(r, NGX_HTTP_FORBIDDEN,
                       "Your Kanka account is not allowed here.");
        }
    }

    if (klcf->campaigns == NULL) {
        return NGX_OK;
    }

    if (ctx->session.checked == 0) {
        /* never read: no way to tell a member yet */
        return ngx_http_kanka_oauth_unchecked(r, klcf, ctx,
                                              NGX_HTTP_TOO_MANY_REQUESTS);
    }

    ids = &ctx->session.field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS];
    campaigns = klcf->campaigns->elts;

    p = ids->data;
    last = p ? p + ids->len - ids->len % sizeof(uint64_t) : NULL;

    for ( /* void */ ; p < last; p += sizeof(uint64_t)) {
        ngx_memcpy(&member, p, sizeof(uint64_t));

        for (i = 0; i < klcf->campaigns->nelts; i++) {
            if (campaigns[i] == member) {
                return NGX_OK;
            }
        }
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "kanka_oauth: Kanka user \"%V\" is in no campaign allowed "
                  "by \"kanka_oauth_campaign\"", &ctx->user_id);

    return ngx_http_kanka_oauth_error(r, NGX_HTTP_FORBIDDEN,
               "Your Kanka account is not a member of a campaign allowed "
               "here.");
}


/*
 * Reads the user's campaigns, every page of them; one request of the
 * session at a time does, when the last reading is too old.
 */

static ngx_int_t
ngx_http_kanka_oauth_recheck(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ctx->page = 1;

    ctx->campaigns = ngx_array_create(r->pool, 16, sizeof(uint64_t));
    if (ctx->campaigns == NULL) {
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                        NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: reading the user's campaigns");

    return ngx_http_kanka_oauth_campaigns_page(r, klcf, ctx);
}


static ngx_int_t
ngx_http_kanka_oauth_campaigns_page(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char      buf[sizeof("/campaigns?page=") + NGX_INT_T_LEN];
    ngx_int_t   rc;
    ngx_str_t   path;

    path.data = buf;
    path.len = ngx_sprintf(buf, "/campaigns?page=%ui", ctx->page) - buf;

    rc = ngx_http_kanka_oauth_api_call(r, klcf, ctx, &path,
                            &ctx->session.field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                            NGX_HTTP_KANKA_OAUTH_CHECKING);

    if (rc != NGX_AGAIN) {
        (void) ngx_http_kanka_oauth_store_release(klcf->zone->data,
                                                  ctx->session.id, 0, 1);
    }

    return rc;
}


static ngx_int_t
ngx_http_kanka_oauth_campaigns_read(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    size_t                          size;
    uint64_t                       *id;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    kanka_campaigns_t              *page;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_record_t   rec;

    call = ctx->call;
    ctx->call = NULL;

    r->connection->log->action = "reading the user's campaigns at Kanka";

    if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: campaigns endpoint timed out: %s",
                      call->error);
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                                NGX_HTTP_GATEWAY_TIME_OUT);
    }

    if (call->result != NGX_HTTP_KANKA_OAUTH_CALL_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: campaigns request failed: %s",
                      call->result == NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE
                      ? (u_char *) "answer too large" : call->error);
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                                   NGX_HTTP_BAD_GATEWAY);
    }

    if (call->status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: Kanka's API is rate limiting the user");
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                                   call->status);
    }

    if (call->status != 200) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: campaigns endpoint answered %ui",
                      call->status);
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                                   NGX_HTTP_BAD_GATEWAY);
    }

    page = ngx_palloc(r->pool, sizeof(kanka_campaigns_t));
    if (page == NULL) {
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                        NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    if (kanka_parse_campaigns(call->response.data, call->response.len, page)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: bad answer from campaigns endpoint: %s",
                      page->problem);
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                                   NGX_HTTP_BAD_GATEWAY);
    }

    id = ngx_array_push_n(ctx->campaigns, page->n ? page->n : 1);
    if (id == NULL) {
        return ngx_http_kanka_oauth_recheck_failed(r, klcf, ctx,
                                        NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ctx->campaigns->nelts -= page->n ? 0 : 1;

    for (i = 0; i < page->n; i++) {
        id[i] = page->ids[i];
    }

    if (page->last_page > (long long) ctx->page) {

        if (ctx->page < NGX_HTTP_KANKA_OAUTH_PAGES_MAX) {
            ctx->page++;
            r->connection->log->action = NULL;
            return ngx_http_kanka_oauth_campaigns_page(r, klcf, ctx);
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "kanka_oauth: the user has more than %d pages of "
                      "campaigns, the rest is not read",
                      NGX_HTTP_KANKA_OAUTH_PAGES_MAX);
    }

    r->connection->log->action = NULL;

    ngx_memzero(&rec, sizeof(ngx_http_kanka_oauth_record_t));

    size = ctx->campaigns->nelts * sizeof(uint64_t);

    ngx_memcpy(rec.id, ctx->session.id, KANKA_ID_LEN);
    rec.kind = ctx->session.kind;
    rec.checked = ngx_time();
    rec.field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS].data =
                     size ? (u_char *) ctx->campaigns->elts : (u_char *) "";
    rec.field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS].len = size;

    rc = ngx_http_kanka_oauth_store_update(klcf->zone->data, &rec,
                                           r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_kanka_oauth_anonymous(r, klcf, ctx);
    }

    if (rc != NGX_OK) {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "The session could not be kept. Please try again.");
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: %ui campaigns read", ctx->campaigns->nelts);

    ctx->session.checked = rec.checked;
    ctx->session.field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS] =
                                    rec.field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS];

    return ngx_http_kanka_oauth_use_token(r, klcf, ctx,
                            &ctx->session.field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                            ctx->api_token.len
                            ? 0 : sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1);
}


/*
 * Campaigns could not be read: the last known answer serves, if there is
 * one.  Kanka's API allows few calls a minute, so the next try waits.
 */

static ngx_int_t
ngx_http_kanka_oauth_recheck_failed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_int_t status)
{
    time_t  backoff;

    r->connection->log->action = NULL;

    backoff = (time_t) 15 << ngx_min(ctx->session.rechecks, 5);

    (void) ngx_http_kanka_oauth_store_release(klcf->zone->data,
                                              ctx->session.id,
                                              ngx_time()
                                              + ngx_min(backoff, 300), 1);

    if (ctx->session.checked != 0) {
        return ngx_http_kanka_oauth_use_token(r, klcf, ctx,
                            &ctx->session.field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                            ctx->api_token.len
                            ? 0 : sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1);
    }

    return ngx_http_kanka_oauth_unchecked(r, klcf, ctx, status);
}


/*
 * Kanka allows 30 API calls a minute per user: a minute's wait helps
 */

static ngx_int_t
ngx_http_kanka_oauth_busy(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "60");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return ngx_http_kanka_oauth_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
               "Kanka is busy. Please try again in a minute.");
}


/* campaigns never read yet: no way to tell a member, try later */

static ngx_int_t
ngx_http_kanka_oauth_unchecked(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_int_t status)
{
    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return ngx_http_kanka_oauth_busy(r);
    }

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        return ngx_http_kanka_oauth_error(r, status,
                   "Kanka did not answer in time. Please try again.");
    }

    return ngx_http_kanka_oauth_error(r, status == NGX_HTTP_BAD_GATEWAY
                                         ? NGX_HTTP_BAD_GATEWAY
                                         : NGX_HTTP_INTERNAL_SERVER_ERROR,
               "Kanka could not say which campaigns you are in. Please try "
               "again in a moment.");
}


/*
 * The lease is ours: exchange the refresh token.  Kanka revokes the old
 * tokens as it answers, so no other request may do the same meanwhile.
 */

static ngx_int_t
ngx_http_kanka_oauth_refresh(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char                          *p;
    size_t                           len;
    ngx_pool_t                      *pool;
    ngx_str_t                       *refresh;
    ngx_http_kanka_oauth_call_t     *call;
    ngx_http_kanka_oauth_refresh_t  *job;

    /* the store grants no lease to a session without a refresh token */

    refresh = &ctx->session.field[NGX_HTTP_KANKA_OAUTH_REFRESH];

    if (ngx_http_kanka_oauth_add_cleanup(r, ctx) != NGX_OK) {
        goto failed;
    }

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_kanka_oauth_refresh_t));
    call = ngx_pcalloc(pool, sizeof(ngx_http_kanka_oauth_call_t));

    len = sizeof("grant_type=refresh_token&refresh_token=") - 1
          + kanka_escape_form(NULL, refresh->data, refresh->len)
          + sizeof("&client_id=") - 1
          + kanka_escape_form(NULL, klcf->client_id.data, klcf->client_id.len)
          + sizeof("&client_secret=") - 1
          + kanka_escape_form(NULL, klcf->client_secret.data,
                              klcf->client_secret.len)
          + sizeof("&scope=") - 1 + 1;

    p = ngx_pnalloc(pool, len);

    if (job == NULL || call == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    call->body.data = p;

    p = ngx_cpymem(p, "grant_type=refresh_token&refresh_token=",
                   sizeof("grant_type=refresh_token&refresh_token=") - 1);
    p += kanka_escape_form(p, refresh->data, refresh->len);
    p = ngx_cpymem(p, "&client_id=", sizeof("&client_id=") - 1);
    p += kanka_escape_form(p, klcf->client_id.data, klcf->client_id.len);
    p = ngx_cpymem(p, "&client_secret=", sizeof("&client_secret=") - 1);
    p += kanka_escape_form(p, klcf->client_secret.data,
                           klcf->client_secret.len);
    p = ngx_cpymem(p, "&scope=", sizeof("&scope=") - 1);
    *p = '\0';

    call->body.len = p - call->body.data;
    call->url = klcf->token_url;
    call->ca_file = klcf->ssl_trusted_certificate;
    call->ssl_verify = klcf->ssl_verify;
    call->timeout = klcf->timeout;
    call->max_size = NGX_HTTP_KANKA_OAUTH_ANSWER_MAX;
    call->pool = pool;
    call->log = r->connection->log;
    call->handler = ngx_http_kanka_oauth_refresh_done;
    call->data = job;

    job->pool = pool;
    job->request = r;
    job->zone = klcf->zone->data;
    job->call = call;
    job->failures = ctx->session.failures;
    ngx_memcpy(job->id, ctx->session.id, KANKA_ID_LEN);

    if (ngx_http_kanka_oauth_call_start(call) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: refreshing the access token");

    ctx->refresh = job;
    ctx->waiting = 1;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;

failed:

    (void) ngx_http_kanka_oauth_store_release(klcf->zone->data,
                                              ctx->session.id, 0, 0);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * Kanka answered a refresh: the zone learns the outcome whether or not
 * the request that asked is still there.
 */

static void
ngx_http_kanka_oauth_refresh_done(ngx_http_kanka_oauth_call_t *call)
{
    time_t                           now, backoff;
    ngx_int_t                        rc;
    ngx_log_t                       *log;
    kanka_token_t                    tok;
    ngx_http_request_t              *r;
    ngx_http_kanka_oauth_ctx_t      *ctx;
    ngx_http_kanka_oauth_record_t    rec;
    ngx_http_kanka_oauth_refresh_t  *job;

    job = call->data;
    r = job->request;
    log = call->log;

    if (r) {
        log->action = "refreshing the access token at Kanka";
    }

    rc = ngx_http_kanka_oauth_answer(log, job->pool, call, &tok, 1);

    if (r) {
        log->action = NULL;
    }

    now = ngx_time();

    if (rc == NGX_OK) {
        ngx_memzero(&rec, sizeof(ngx_http_kanka_oauth_record_t));

        ngx_memcpy(rec.id, job->id, KANKA_ID_LEN);
        rec.kind = NGX_HTTP_KANKA_OAUTH_SESSION;
        rec.token_expires = tok.expires_in >= 0
                            ? now + (time_t) ngx_min(tok.expires_in,
                                                     NGX_MAX_INT32_VALUE)
                            : 0;

        rec.field[NGX_HTTP_KANKA_OAUTH_ACCESS].data =
                                             (u_char *) tok.access_token.data;
        rec.field[NGX_HTTP_KANKA_OAUTH_ACCESS].len = tok.access_token.len;

        /* with no new refresh token, the session ends with this token */

        rec.field[NGX_HTTP_KANKA_OAUTH_REFRESH].data =
                                        tok.refresh_token.data
                                        ? (u_char *) tok.refresh_token.data
                                        : (u_char *) "";
        rec.field[NGX_HTTP_KANKA_OAUTH_REFRESH].len = tok.refresh_token.len;

        rc = ngx_http_kanka_oauth_store_update(job->zone, &rec, log);

        if (rc == NGX_ERROR) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                       "kanka_oauth: access token refreshed");

    } else if (rc == NGX_DECLINED) {

        /* revoked, expired or replayed: only a new login helps */

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "kanka_oauth: Kanka refused the refresh token, "
                      "session ended");

        (void) ngx_http_kanka_oauth_store_delete(job->zone,
                                                 NGX_HTTP_KANKA_OAUTH_SESSION,
                                                 job->id);

    } else {

        /* a passing failure: no new try before a back-off */

        backoff = (time_t) 2 << ngx_min(job->failures, 8);

        (void) ngx_http_kanka_oauth_store_release(job->zone, job->id,
                                                  now + ngx_min(backoff, 300),
                                                  0);
    }

    if (r == NULL) {
        ngx_destroy_pool(job->pool);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_kanka_oauth_module);

    ctx->refreshed = rc;
    ctx->waiting = 0;

    if (rc == NGX_OK) {
        ctx->new_token.len = tok.access_token.len;
        ctx->new_token.data = ngx_pnalloc(r->pool, tok.access_token.len);

        if (ctx->new_token.data == NULL) {
            ctx->refreshed = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ngx_memcpy(ctx->new_token.data, tok.access_token.data,
                       tok.access_token.len);
        }
    }

    ngx_destroy_pool(job->pool);

    ngx_http_kanka_oauth_resume(r);
}


static ngx_int_t
ngx_http_kanka_oauth_refreshed(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_http_kanka_oauth_record_t  *session;

    session = &ctx->session;

    switch (ctx->refreshed) {

    case NGX_OK:
        /* look again: the campaigns may want reading too */
        ctx->refreshed_now = 1;
        return ngx_http_kanka_oauth_session(r, klcf, ctx);

    case NGX_DECLINED:
        /* refused, or the session ended meanwhile at a logout */
        return ngx_http_kanka_oauth_anonymous(r, klcf, ctx);

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "The session could not be kept. Please try again.");
    }

    /* the old token serves while it is valid */

    if (session->token_expires > ngx_time()) {
        return ngx_http_kanka_oauth_use_token(r, klcf, ctx,
                            &session->field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                            sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1);
    }

    if (ctx->refreshed == NGX_HTTP_GATEWAY_TIME_OUT) {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                   "Kanka did not answer in time. Please try again.");
    }

    return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
               "Kanka could not renew the login just now. Please try again "
               "in a moment.");
}


/*
 * Another request, maybe in another worker, refreshes this session: look
 * again shortly, until its lease ends one way or the other.
 */

static ngx_int_t
ngx_http_kanka_oauth_wait(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_http_kanka_oauth_record_t  *rec;

    rec = &ctx->session;

    if (!ctx->polling) {
        ctx->polling = 1;
        ctx->deadline = ngx_current_msec + 2 * klcf->timeout + 1000;

        if (ngx_http_kanka_oauth_add_cleanup(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->timer = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
        if (ctx->timer == NULL) {
            return NGX_ERROR;
        }

        ctx->timer->handler = ngx_http_kanka_oauth_poll;
        ctx->timer->data = r->connection;
        ctx->timer->log = r->connection->log;

    } else if ((ngx_msec_int_t) (ngx_current_msec - ctx->deadline) >= 0) {

        if (rec->token_expires > ngx_time()) {
            return ngx_http_kanka_oauth_use_token(r, klcf, ctx,
                            &rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                            sizeof(NGX_HTTP_KANKA_OAUTH_SCHEME) - 1);
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: timed out waiting for a token refresh");

        return ngx_http_kanka_oauth_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                   "Kanka did not answer in time. Please try again.");
    }

    ngx_add_timer(ctx->timer, 20);

    ctx->waiting = 1;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


static void
ngx_http_kanka_oauth_poll(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_kanka_oauth_ctx_t  *ctx;

    c = ev->data;
    r = c->data;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kanka_oauth_module);
    ctx->waiting = 0;

    ngx_http_kanka_oauth_resume(r);
}


/*
 * Sends a browser to Kanka.  The state, the PKCE verifier and the return
 * URL stay in the zone under the state; a cookie binds them to this
 * browser, one cookie for all the logins a browser has under way.
 */

static ngx_int_t
ngx_http_kanka_oauth_login(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *return_url,
    ngx_uint_t retried)
{
    size_t                          len;
    u_char                         *p;
    ngx_str_t                       location, redirect_uri;
    u_char                          verifier[KANKA_ID_LEN];
    u_char                          challenge[KANKA_ID_LEN];
    u_char                          binding[KANKA_ID_LEN];
    u_char                          digest[EVP_MAX_MD_SIZE];
    unsigned int                    md_len;
    ngx_http_kanka_oauth_record_t   rec;

    if (!kanka_return_url_ok(return_url->data, return_url->len)) {
        return_url = &ngx_http_kanka_oauth_root;
    }

    if (ngx_http_kanka_oauth_redirect_uri(r, klcf, &redirect_uri) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_kanka_oauth_get_cookie(r, &klcf->binding_name, binding, 0)
        != NGX_OK
        && ngx_http_kanka_oauth_new_id(r, binding) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&rec, sizeof(ngx_http_kanka_oauth_record_t));

    rec.kind = NGX_HTTP_KANKA_OAUTH_LOGIN;
    rec.created = ngx_time();
    rec.expires = rec.created + NGX_HTTP_KANKA_OAUTH_LOGIN_TTL;

    /* the state is the id of the pending login */

    if (ngx_http_kanka_oauth_new_id(r, rec.id) != NGX_OK
        || ngx_http_kanka_oauth_new_id(r, verifier) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec.field[NGX_HTTP_KANKA_OAUTH_VERIFIER].data = verifier;
    rec.field[NGX_HTTP_KANKA_OAUTH_VERIFIER].len = KANKA_ID_LEN;
    rec.field[NGX_HTTP_KANKA_OAUTH_RETURN] = *return_url;
    rec.field[NGX_HTTP_KANKA_OAUTH_BINDING].data = binding;
    rec.field[NGX_HTTP_KANKA_OAUTH_BINDING].len = KANKA_ID_LEN;

    if (retried) {
        rec.field[NGX_HTTP_KANKA_OAUTH_RETRY].data =
                                      (u_char *) NGX_HTTP_KANKA_OAUTH_RETRIED;
        rec.field[NGX_HTTP_KANKA_OAUTH_RETRY].len = 1;
    }

    if (ngx_http_kanka_oauth_store_put(klcf->zone->data, &rec,
                                       r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (klcf->pkce) {
        if (EVP_Digest(verifier, KANKA_ID_LEN, digest, &md_len,
                       EVP_sha256(), NULL)
            != 1)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "kanka_oauth: EVP_Digest() failed");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        kanka_id_encode(challenge, digest);
    }

    len = klcf->authorize_url.len + sizeof("?client_id=") - 1
          + kanka_escape_form(NULL, klcf->client_id.data, klcf->client_id.len)
          + sizeof("&redirect_uri=") - 1
          + kanka_escape_form(NULL, redirect_uri.data, redirect_uri.len)
          + sizeof("&response_type=code&state=") - 1 + KANKA_ID_LEN
          + sizeof("&code_challenge=") - 1 + KANKA_ID_LEN
          + sizeof("&code_challenge_method=S256") - 1;

    location.data = ngx_pnalloc(r->pool, len);
    if (location.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(location.data, klcf->authorize_url.data,
                   klcf->authorize_url.len);

    *p++ = ngx_strlchr(klcf->authorize_url.data,
                       klcf->authorize_url.data + klcf->authorize_url.len,
                       '?')
           ? '&' : '?';

    p = ngx_cpymem(p, "client_id=", sizeof("client_id=") - 1);
    p += kanka_escape_form(p, klcf->client_id.data, klcf->client_id.len);
    p = ngx_cpymem(p, "&redirect_uri=", sizeof("&redirect_uri=") - 1);
    p += kanka_escape_form(p, redirect_uri.data, redirect_uri.len);
    p = ngx_cpymem(p, "&response_type=code&state=",
                   sizeof("&response_type=code&state=") - 1);
    p = ngx_cpymem(p, rec.id, KANKA_ID_LEN);

    if (klcf->pkce) {
        p = ngx_cpymem(p, "&code_challenge=", sizeof("&code_challenge=") - 1);
        p = ngx_cpymem(p, challenge, KANKA_ID_LEN);
        p = ngx_cpymem(p, "&code_challenge_method=S256",
                       sizeof("&code_challenge_method=S256") - 1);
    }

    location.len = p - location.data;

    /* set again each time, so that it outlives the newest login */

    if (ngx_http_kanka_oauth_set_cookie(r, klcf, &klcf->binding_name, binding,
                                        NGX_HTTP_KANKA_OAUTH_LOGIN_TTL, 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: login started");

    return ngx_http_kanka_oauth_redirect(r, &location);
}


static ngx_int_t
ngx_http_kanka_oauth_unauthorized(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf)
{
    size_t            len;
    u_char           *p;
    ngx_str_t         body;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer realm=\"kanka\"");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    r->headers_out.www_authenticate = h;

    if (ngx_http_kanka_oauth_error_page(r, NGX_HTTP_UNAUTHORIZED)) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    /* a login URL that a browser can open: the callback without a code */

    len = sizeof("{\"error\":\"unauthorized\",\"message\":\"Log in with Kanka "
                 "first.\",\"login_url\":\"?return=\"}") - 1
          + klcf->redirect_path.len
          + kanka_escape_form(NULL, r->unparsed_uri.data,
                              r->unparsed_uri.len);

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, "{\"error\":\"unauthorized\",\"message\":"
                   "\"Log in with Kanka first.\",\"login_url\":\"",
                   sizeof("{\"error\":\"unauthorized\",\"message\":"
                          "\"Log in with Kanka first.\",\"login_url\":\"")
                   - 1);
    p = ngx_cpymem(p, klcf->redirect_path.data, klcf->redirect_path.len);
    p = ngx_cpymem(p, "?return=", sizeof("?return=") - 1);
    p += kanka_escape_form(p, r->unparsed_uri.data, r->unparsed_uri.len);
    p = ngx_cpymem(p, "\"}", 2);

    body.len = p - body.data;

    return ngx_http_kanka_oauth_send(r, NGX_HTTP_UNAUTHORIZED,
                                     &ngx_http_kanka_oauth_json, &body);
}


/*
 * The callback: Kanka sends the browser back with a code (or an error) and
 * the state.  Without either, it starts a login that returns to "return".
 */

static ngx_int_t
ngx_http_kanka_oauth_callback(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf)
{
    u_char                         *binding;
    u_char                          cookie[KANKA_ID_LEN];
    ngx_int_t                       rc;
    ngx_str_t                       state, code, error, ret;
    ngx_uint_t                      n, retried, matched;
    ngx_table_elt_t                *h;
    ngx_http_kanka_oauth_ctx_t     *ctx;
    ngx_http_kanka_oauth_get_t      how;
    ngx_http_kanka_oauth_record_t  *rec;

    /*
     * the URL of a page served here holds a code and a state: the page's
     * own requests (a favicon, say) must not send it on as a Referer
     */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Referrer-Policy");
    ngx_str_set(&h->value, "no-referrer");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_http_kanka_oauth_hide_args(r);
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_kanka_oauth_arg(r, "state", &state) == NGX_ERROR
        || ngx_http_kanka_oauth_arg(r, "code", &code) == NGX_ERROR
        || ngx_http_kanka_oauth_arg(r, "error", &error) == NGX_ERROR
        || ngx_http_kanka_oauth_arg(r, "return", &ret) == NGX_ERROR)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (state.data == NULL && code.data == NULL && error.data == NULL) {

        if (ret.data == NULL) {
            ret = ngx_http_kanka_oauth_root;
        }

        return ngx_http_kanka_oauth_login(r, klcf, &ret, 0);
    }

    ngx_http_kanka_oauth_hide_args(r);

    ctx = ngx_http_get_module_ctx(r, ngx_http_kanka_oauth_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kanka_oauth_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_kanka_oauth_module);
    }

    ctx->login = ngx_pcalloc(r->pool, sizeof(ngx_http_kanka_oauth_record_t));
    if (ctx->login == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec = ctx->login;
    rec->kind = NGX_HTTP_KANKA_OAUTH_LOGIN;

    if (state.len != KANKA_ID_LEN) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: callback without a valid state, "
                      "login restarted");
        return ngx_http_kanka_oauth_login(r, klcf, &ngx_http_kanka_oauth_root,
                                          1);
    }

    ngx_memcpy(rec->id, state.data, KANKA_ID_LEN);

    /* a state serves once: it is deleted as it is read */

    how.idle = 0;
    how.deadline = 0;
    how.fields = (1 << NGX_HTTP_KANKA_OAUTH_NFIELDS) - 1;
    how.reserve = 0;
    how.take = 1;
    how.refresh_at = 0;
    how.lease = 0;
    how.keep_busy = 0;
    how.recheck_at = 0;
    how.recheck_lease = 0;

    rc = ngx_http_kanka_oauth_store_get(klcf->zone->data, rec, &how, r->pool);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: callback with an unknown, used or "
                      "expired state, login restarted");
        return ngx_http_kanka_oauth_login(r, klcf, &ngx_http_kanka_oauth_root,
                                          1);
    }

    retried = rec->field[NGX_HTTP_KANKA_OAUTH_RETRY].len != 0;
    ret = rec->field[NGX_HTTP_KANKA_OAUTH_RETURN];
    binding = rec->field[NGX_HTTP_KANKA_OAUTH_BINDING].data;

    matched = 0;

    for (n = 0; n < 4 && !matched; n++) {
        if (ngx_http_kanka_oauth_get_cookie(r, &klcf->binding_name, cookie,
                                            n)
            != NGX_OK)
        {
            break;
        }

        matched = (CRYPTO_memcmp(cookie, binding, KANKA_ID_LEN) == 0);
    }

    if (!matched) {
        if (retried) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kanka_oauth: callback from a browser that did not "
                          "keep the login cookie");
            return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                       "The login could not be completed: this browser does "
                       "not keep cookies for this site.");
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: callback with a state issued to another "
                      "browser, login restarted");
        return ngx_http_kanka_oauth_login(r, klcf, &ret, 1);
    }

    if (error.data != NULL) {
        u_char  buf[64];
        size_t  n;

        n = kanka_log_safe(buf, sizeof(buf), error.data, error.len);

        if (error.len == sizeof("access_denied") - 1
            && ngx_strncmp(error.data, "access_denied", error.len) == 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kanka_oauth: the user denied access at Kanka");
            return ngx_http_kanka_oauth_error(r, NGX_HTTP_FORBIDDEN,
                       "Access was denied at Kanka.");
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: Kanka refused the authorization: \"%*s\"",
                      n, buf);
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
                   "Kanka refused the login.");
    }

    if (code.data == NULL || code.len == 0
        || code.len > NGX_HTTP_KANKA_OAUTH_CODE_MAX)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: callback without a usable code, "
                      "login restarted");
        return ngx_http_kanka_oauth_login(r, klcf, &ret, 1);
    }

    return ngx_http_kanka_oauth_exchange(r, klcf, ctx, &code);
}


static ngx_int_t
ngx_http_kanka_oauth_exchange(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *code)
{
    size_t      len;
    u_char     *p;
    ngx_str_t   redirect_uri, body, *verifier;

    if (ngx_http_kanka_oauth_redirect_uri(r, klcf, &redirect_uri) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    verifier = &ctx->login->field[NGX_HTTP_KANKA_OAUTH_VERIFIER];

    len = sizeof("grant_type=authorization_code&client_id=") - 1
          + kanka_escape_form(NULL, klcf->client_id.data, klcf->client_id.len)
          + sizeof("&client_secret=") - 1
          + kanka_escape_form(NULL, klcf->client_secret.data,
                              klcf->client_secret.len)
          + sizeof("&redirect_uri=") - 1
          + kanka_escape_form(NULL, redirect_uri.data, redirect_uri.len)
          + sizeof("&code=") - 1
          + kanka_escape_form(NULL, code->data, code->len)
          + sizeof("&code_verifier=") - 1 + verifier->len + 1;

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, "grant_type=authorization_code&client_id=",
                   sizeof("grant_type=authorization_code&client_id=") - 1);
    p += kanka_escape_form(p, klcf->client_id.data, klcf->client_id.len);
    p = ngx_cpymem(p, "&client_secret=", sizeof("&client_secret=") - 1);
    p += kanka_escape_form(p, klcf->client_secret.data,
                           klcf->client_secret.len);
    p = ngx_cpymem(p, "&redirect_uri=", sizeof("&redirect_uri=") - 1);
    p += kanka_escape_form(p, redirect_uri.data, redirect_uri.len);
    p = ngx_cpymem(p, "&code=", sizeof("&code=") - 1);
    p += kanka_escape_form(p, code->data, code->len);

    if (klcf->pkce) {
        p = ngx_cpymem(p, "&code_verifier=", sizeof("&code_verifier=") - 1);
        p = ngx_cpymem(p, verifier->data, verifier->len);
    }

    *p = '\0';
    body.len = p - body.data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: exchanging authorization code");

    ctx->stage = NGX_HTTP_KANKA_OAUTH_EXCHANGING;

    return ngx_http_kanka_oauth_start_call(r, klcf, ctx, &klcf->token_url,
                                           &body, NULL);
}


/* starts a call to Kanka; the request waits for its end */

static ngx_int_t
ngx_http_kanka_oauth_start_call(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *url, ngx_str_t *body, ngx_str_t *bearer)
{
    ngx_http_kanka_oauth_call_t  *call;

    if (ngx_http_kanka_oauth_add_cleanup(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call = ngx_pcalloc(r->pool, sizeof(ngx_http_kanka_oauth_call_t));
    if (call == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call->url = *url;

    if (body) {
        call->body = *body;
    }

    if (bearer) {
        call->bearer = *bearer;
    }

    call->ca_file = klcf->ssl_trusted_certificate;
    call->ssl_verify = klcf->ssl_verify;
    call->timeout = klcf->timeout;
    call->max_size = NGX_HTTP_KANKA_OAUTH_ANSWER_MAX;
    call->pool = r->pool;
    call->log = r->connection->log;
    call->handler = ngx_http_kanka_oauth_call_done;
    call->data = r;

    if (ngx_http_kanka_oauth_call_start(call) != NGX_OK) {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "The request could not be completed.");
    }

    ctx->call = call;
    ctx->waiting = 1;

    /* notice a client that goes away while Kanka answers */

    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


static void
ngx_http_kanka_oauth_call_done(ngx_http_kanka_oauth_call_t *call)
{
    ngx_http_request_t          *r;
    ngx_http_kanka_oauth_ctx_t  *ctx;

    r = call->data;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kanka_oauth_module);
    ctx->waiting = 0;

    ngx_http_kanka_oauth_resume(r);
}


/* runs the request's phases again, as if an event of its own had come */

static void
ngx_http_kanka_oauth_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_set_log_request(c->log, r);

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


/* a request that goes away leaves no call and no timer behind */

static ngx_int_t
ngx_http_kanka_oauth_add_cleanup(ngx_http_request_t *r,
    ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_http_cleanup_t  *cln;

    if (ctx->cleanup) {
        return NGX_OK;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_kanka_oauth_cleanup;
    cln->data = ctx;

    ctx->cleanup = 1;

    return NGX_OK;
}


static void
ngx_http_kanka_oauth_cleanup(void *data)
{
    ngx_http_kanka_oauth_ctx_t  *ctx = data;

    if (ctx->call) {
        ngx_http_kanka_oauth_call_cancel(ctx->call);
    }

    /* a refresh goes on without the request, and logs to the cycle's log */

    if (ctx->refresh) {
        ctx->refresh->request = NULL;
        ctx->refresh->call->log = ngx_cycle->log;
        ctx->refresh = NULL;
    }

    if (ctx->timer && ctx->timer->timer_set) {
        ngx_del_timer(ctx->timer);
    }
}


static ngx_int_t
ngx_http_kanka_oauth_exchanged(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_str_t                       profile;
    kanka_token_t                   tok;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_record_t  *rec;

    call = ctx->call;
    ctx->call = NULL;

    r->connection->log->action = "exchanging the authorization code at Kanka";

    rc = ngx_http_kanka_oauth_answer(r->connection->log, r->pool, call, &tok,
                                     0);

    r->connection->log->action = NULL;

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        return ngx_http_kanka_oauth_error(r, rc,
                   "Kanka did not answer in time. Please try again.");
    }

    if (rc != NGX_OK) {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
                   "The login could not be completed: Kanka gave an "
                   "unexpected answer.");
    }

    /* the tokens wait in the request until Kanka says who the user is */

    ngx_str_set(&profile, "/profile");

    rec = &ctx->session;

    ngx_memzero(rec, sizeof(ngx_http_kanka_oauth_record_t));

    rec->kind = NGX_HTTP_KANKA_OAUTH_SESSION;
    rec->token_expires = tok.expires_in >= 0
                         ? ngx_time() + (time_t) ngx_min(tok.expires_in,
                                                         NGX_MAX_INT32_VALUE)
                         : 0;

    rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS].data =
                                            (u_char *) tok.access_token.data;
    rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS].len = tok.access_token.len;
    rec->field[NGX_HTTP_KANKA_OAUTH_REFRESH].data =
                                            (u_char *) tok.refresh_token.data;
    rec->field[NGX_HTTP_KANKA_OAUTH_REFRESH].len = tok.refresh_token.len;

    return ngx_http_kanka_oauth_api_call(r, klcf, ctx, &profile,
                                &rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS],
                                NGX_HTTP_KANKA_OAUTH_PROFILING);
}


/* a GET of Kanka's API with the user's token; the request waits for it */

static ngx_int_t
ngx_http_kanka_oauth_api_call(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx,
    ngx_str_t *path, ngx_str_t *token, ngx_uint_t stage)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   url, bearer;

    len = klcf->api_url.len;

    if (klcf->api_url.data[len - 1] == '/') {
        len--;
    }

    url.len = len + path->len;
    url.data = ngx_pnalloc(r->pool, url.len + 1);

    bearer.len = sizeof("Authorization: Bearer ") - 1 + token->len;
    bearer.data = ngx_pnalloc(r->pool, bearer.len + 1);

    if (url.data == NULL || bearer.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(url.data, klcf->api_url.data, len);
    p = ngx_cpymem(p, path->data, path->len);
    *p = '\0';

    p = ngx_cpymem(bearer.data, "Authorization: Bearer ",
                   sizeof("Authorization: Bearer ") - 1);
    p = ngx_cpymem(p, token->data, token->len);
    *p = '\0';

    ctx->stage = stage;

    return ngx_http_kanka_oauth_start_call(r, klcf, ctx, &url, NULL, &bearer);
}


/* Kanka said who the user is: the session begins */

static ngx_int_t
ngx_http_kanka_oauth_profiled(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_http_kanka_oauth_ctx_t *ctx)
{
    u_char                         *scratch;
    ngx_str_t                      *ret;
    kanka_profile_t                 profile;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_record_t  *rec;

    call = ctx->call;
    ctx->call = NULL;
    rec = &ctx->session;

    r->connection->log->action = "reading the user's profile at Kanka";

    if (call->result == NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: profile endpoint timed out: %s",
                      call->error);
        r->connection->log->action = NULL;
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                   "Kanka did not answer in time. Please try again.");
    }

    if (call->result != NGX_HTTP_KANKA_OAUTH_CALL_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: profile request failed: %s",
                      call->result == NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE
                      ? (u_char *) "answer too large" : call->error);
        goto bad_gateway;
    }

    if (call->status == NGX_HTTP_TOO_MANY_REQUESTS) {

        /* Kanka allows 30 calls a minute per user: a minute's wait helps */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: Kanka's API is rate limiting the user");
        r->connection->log->action = NULL;

        return ngx_http_kanka_oauth_busy(r);
    }

    if (call->status != 200) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: profile endpoint answered %ui",
                      call->status);
        goto bad_gateway;
    }

    scratch = ngx_pnalloc(r->pool, call->response.len + 1);
    if (scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (kanka_parse_profile(call->response.data, call->response.len, scratch,
                            &profile)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kanka_oauth: bad answer from profile endpoint: %s",
                      profile.problem);
        goto bad_gateway;
    }

    r->connection->log->action = NULL;

    rec->field[NGX_HTTP_KANKA_OAUTH_USER_ID].data =
                                            ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (rec->field[NGX_HTTP_KANKA_OAUTH_USER_ID].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec->field[NGX_HTTP_KANKA_OAUTH_USER_ID].len =
        ngx_sprintf(rec->field[NGX_HTTP_KANKA_OAUTH_USER_ID].data, "%L",
                    (int64_t) profile.id)
        - rec->field[NGX_HTTP_KANKA_OAUTH_USER_ID].data;

    rec->field[NGX_HTTP_KANKA_OAUTH_USER_NAME].data =
                                                (u_char *) profile.name.data;
    rec->field[NGX_HTTP_KANKA_OAUTH_USER_NAME].len = profile.name.len;

    rec->created = ngx_time();
    rec->expires = rec->created + ngx_min(klcf->session_timeout,
                                          klcf->session_lifetime);

    if (ngx_http_kanka_oauth_new_id(r, rec->id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_kanka_oauth_store_put(klcf->zone->data, rec,
                                       r->connection->log)
        != NGX_OK)
    {
        return ngx_http_kanka_oauth_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "The session could not be kept. Please try again.");
    }

    if (ngx_http_kanka_oauth_set_cookie(r, klcf, &klcf->cookie_name, rec->id,
                                        klcf->session_lifetime, 0)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kanka_oauth: session created");

    ret = &ctx->login->field[NGX_HTTP_KANKA_OAUTH_RETURN];

    if (!kanka_return_url_ok(ret->data, ret->len)) {
        ret = &ngx_http_kanka_oauth_root;
    }

    return ngx_http_kanka_oauth_redirect(r, ret);

bad_gateway:

    r->connection->log->action = NULL;

    return ngx_http_kanka_oauth_error(r, NGX_HTTP_BAD_GATEWAY,
               "The login could not be completed: Kanka gave an unexpected "
               "answer.");
}


/*
 * Reads an answer of the token endpoint.  NGX_OK: tokens in tok.  With
 * "refresh", NGX_DECLINED: Kanka refused the grant for good.  Otherwise
 * the status to answer with (502 or 504), the failure logged.
 */

static ngx_int_t
ngx_http_kanka_oauth_answer(ngx_log_t *log, ngx_pool_t *pool,
    ngx_http_kanka_oauth_call_t *call, kanka_token_t *tok, ngx_uint_t refresh)
{
    size_t   n;
    u_char  *scratch, buf[128];

    switch (call->result) {

    case NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "kanka_oauth: token endpoint timed out: %s",
                      call->error);
        return NGX_HTTP_GATEWAY_TIME_OUT;

    case NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "kanka_oauth: token endpoint sent more than %uz bytes",
                      call->max_size);
        return NGX_HTTP_BAD_GATEWAY;

    case NGX_HTTP_KANKA_OAUTH_CALL_FAILED:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "kanka_oauth: token request failed: %s", call->error);
        return NGX_HTTP_BAD_GATEWAY;
    }

    scratch = ngx_pnalloc(pool, call->response.len + 1);
    if (scratch == NULL) {
        return NGX_HTTP_BAD_GATEWAY;
    }

    if (kanka_parse_token(call->response.data, call->response.len, scratch,
                          tok)
        != 0)
    {
        if (call->status != 200) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "kanka_oauth: token endpoint answered %ui",
                          call->status);

        } else {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "kanka_oauth: bad answer from token endpoint: %s",
                          tok->problem);
        }

        return NGX_HTTP_BAD_GATEWAY;
    }

    if (tok->error.data == NULL && call->status == 200) {
        return NGX_OK;
    }

    if (refresh && tok->error.len == sizeof("invalid_grant") - 1
        && ngx_strncmp(tok->error.data, "invalid_grant", tok->error.len) == 0)
    {
        return NGX_DECLINED;
    }

    n = kanka_log_safe(buf, sizeof(buf), tok->error.data, tok->error.len);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "kanka_oauth: token endpoint answered %ui \"%*s\"",
                  call->status, n, buf);

    return NGX_HTTP_BAD_GATEWAY;
}


static ngx_int_t
ngx_http_kanka_oauth_logout(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf)
{
    u_char     id[KANKA_ID_LEN];
    ngx_str_t  ret;

    if (ngx_http_kanka_oauth_get_cookie(r, &klcf->cookie_name, id, 0)
        == NGX_OK)
    {
        (void) ngx_http_kanka_oauth_store_delete(klcf->zone->data,
                                                 NGX_HTTP_KANKA_OAUTH_SESSION,
                                                 id);

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "kanka_oauth: session ended");
    }

    if (ngx_http_kanka_oauth_set_cookie(r, klcf, &klcf->cookie_name, NULL, 0,
                                        0)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_kanka_oauth_arg(r, "return", &ret) == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ret.data == NULL || !kanka_return_url_ok(ret.data, ret.len)) {
        ret = ngx_http_kanka_oauth_root;
    }

    return ngx_http_kanka_oauth_redirect(r, &ret);
}


/*
 * A request that can follow a redirect to a login page: a top-level
 * navigation that wants HTML.  Everything else gets 401.
 */

static ngx_int_t
ngx_http_kanka_oauth_navigation(ngx_http_request_t *r)
{
    ngx_uint_t        i, html;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return 0;
    }

    html = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("accept") - 1
            && ngx_strncmp(h[i].lowcase_key, "accept", h[i].key.len) == 0)
        {
            if (ngx_strlcasestrn(h[i].value.data,
                                 h[i].value.data + h[i].value.len,
                                 (u_char *) "text/html",
                                 sizeof("text/html") - 2)
                != NULL)
            {
                html = 1;
            }

            continue;
        }

        if (h[i].key.len == sizeof("sec-fetch-mode") - 1
            && ngx_strncmp(h[i].lowcase_key, "sec-fetch-mode", h[i].key.len)
               == 0)
        {
            if (h[i].value.len != sizeof("navigate") - 1
                || ngx_strncasecmp(h[i].value.data, (u_char *) "navigate",
                                   h[i].value.len)
                   != 0)
            {
                return 0;
            }

            continue;
        }

        if (h[i].key.len == sizeof("x-requested-with") - 1
            && ngx_strncmp(h[i].lowcase_key, "x-requested-with", h[i].key.len)
               == 0)
        {
            return 0;
        }
    }

    return html;
}


/*
 * Finds a cookie of an id's length and copies it to "id", skipping "skip"
 * such cookies first; a value of another length is ignored.  The text is
 * not checked: the store knows only ids that it made.
 */

static ngx_int_t
ngx_http_kanka_oauth_get_cookie(ngx_http_request_t *r, ngx_str_t *name,
    u_char *id, ngx_uint_t skip)
{
    u_char           *p, *last;
    kanka_str_t       value;
    ngx_table_elt_t  *h;

#if (nginx_version >= 1023000)

    for (h = r->headers_in.cookie; h; h = h->next) {

#else

    ngx_uint_t        i;
    ngx_table_elt_t **hh;

    hh = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        h = hh[i];

#endif

        p = h->value.data;
        last = p + h->value.len;

        /*
         * a cookie of the same name set for a parent domain or another
         * path may come first: every one is tried
         */

        while (kanka_cookie_find(p, last - p, name->data, name->len, &value)) {

            if (value.len == KANKA_ID_LEN && skip-- == 0) {
                ngx_memcpy(id, value.data, KANKA_ID_LEN);
                return NGX_OK;
            }

            p = (u_char *) value.data + value.len;
        }
    }

    return NGX_DECLINED;
}


/* id NULL clears the cookie */

static ngx_int_t
ngx_http_kanka_oauth_set_cookie(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *name, u_char *id,
    time_t max_age, ngx_uint_t login)
{
    size_t            len;
    u_char           *p;
    ngx_uint_t        secure;
    ngx_table_elt_t  *h;

    secure = klcf->cookie_secure == NGX_HTTP_KANKA_OAUTH_SECURE_ON;

#if (NGX_HTTP_SSL)
    if (klcf->cookie_secure == NGX_HTTP_KANKA_OAUTH_SECURE_AUTO
        && r->connection->ssl)
    {
        secure = 1;
    }
#endif

    len = name->len + 1 + KANKA_ID_LEN
          + sizeof("; Max-Age=") - 1 + NGX_TIME_T_LEN
          + sizeof("; Path=") - 1 + klcf->cookie_path.len
          + sizeof("; Domain=") - 1 + klcf->cookie_domain.len
          + sizeof("; HttpOnly; SameSite=") - 1 + klcf->cookie_samesite.len
          + sizeof("; Secure") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->value.data = p;

    p = ngx_cpymem(p, name->data, name->len);
    *p++ = '=';

    if (id) {
        p = ngx_cpymem(p, id, KANKA_ID_LEN);
    }

    p = ngx_sprintf(p, "; Max-Age=%T", max_age);

    p = ngx_cpymem(p, "; Path=", sizeof("; Path=") - 1);

    /*
     * the login cookie must come back to the callback, wherever it is, and
     * on the top-level navigation from Kanka
     */

    if (login) {
        *p++ = '/';

    } else {
        p = ngx_cpymem(p, klcf->cookie_path.data, klcf->cookie_path.len);
    }

    if (klcf->cookie_domain.len) {
        p = ngx_cpymem(p, "; Domain=", sizeof("; Domain=") - 1);
        p = ngx_cpymem(p, klcf->cookie_domain.data, klcf->cookie_domain.len);
    }

    p = ngx_cpymem(p, "; HttpOnly; SameSite=",
                   sizeof("; HttpOnly; SameSite=") - 1);

    if (login) {
        p = ngx_cpymem(p, "Lax", 3);

    } else {
        p = ngx_cpymem(p, klcf->cookie_samesite.data,
                       klcf->cookie_samesite.len);
    }

    if (secure) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    h->value.len = p - h->value.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_set_authorization(ngx_http_request_t *r,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h == NULL) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = ngx_http_kanka_oauth_authorization_hash;
        ngx_str_set(&h->key, "Authorization");
        h->lowcase_key = (u_char *) "authorization";
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        r->headers_in.authorization = h;
    }

    h->value = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_redirect(ngx_http_request_t *r, ngx_str_t *location)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = *location;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    r->headers_out.location = h;

    return NGX_HTTP_MOVED_TEMPORARILY;
}


/*
 * A short page for the browser; the details are in the error log.  An
 * error_page for the status takes precedence.
 */

static ngx_int_t
ngx_http_kanka_oauth_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *text)
{
    u_char      *p;
    ngx_str_t    body, *line, *code;
    ngx_uint_t   n;

    static ngx_str_t  lines[] = {
        ngx_string("400 Bad Request"),
        ngx_string("403 Forbidden"),
        ngx_string("500 Internal Server Error"),
        ngx_string("502 Bad Gateway"),
        ngx_string("504 Gateway Time-out"),
        ngx_string("503 Service Temporarily Unavailable")
    };

    static ngx_str_t  codes[] = {
        ngx_string("bad_request"),
        ngx_string("forbidden"),
        ngx_string("internal_error"),
        ngx_string("bad_gateway"),
        ngx_string("gateway_timeout"),
        ngx_string("service_unavailable")
    };

    if (ngx_http_kanka_oauth_error_page(r, status)) {
        return status;
    }

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        n = 0;
        break;
    case NGX_HTTP_FORBIDDEN:
        n = 1;
        break;
    case NGX_HTTP_BAD_GATEWAY:
        n = 3;
        break;
    case NGX_HTTP_GATEWAY_TIME_OUT:
        n = 4;
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        n = 5;
        break;
    default:
        n = 2;
        break;
    }

    line = &lines[n];
    code = &codes[n];

    /* the texts are the module's own: nothing in them needs escaping */

    if (!ngx_http_kanka_oauth_navigation(r)) {
        body.len = sizeof("{\"error\":\"\",\"message\":\"\"}") - 1
                   + code->len + ngx_strlen(text);

        body.data = ngx_pnalloc(r->pool, body.len);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body.data, "{\"error\":\"%V\",\"message\":\"%s\"}",
                        code, text);
        body.len = p - body.data;

        return ngx_http_kanka_oauth_send(r, status, &ngx_http_kanka_oauth_json,
                                         &body);
    }

    body.len = sizeof("<!DOCTYPE html>\n<html><head><title></title></head>\n"
                      "<body><h1></h1>\n<p></p></body></html>\n") - 1
               + 2 * line->len + ngx_strlen(text);

    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body.data, "<!DOCTYPE html>\n<html><head><title>%V"
                    "</title></head>\n<body><h1>%V</h1>\n<p>%s</p>"
                    "</body></html>\n", line, line, text);

    body.len = p - body.data;

    return ngx_http_kanka_oauth_send(r, status, &ngx_http_kanka_oauth_html,
                                     &body);
}


static ngx_uint_t
ngx_http_kanka_oauth_error_page(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->error_pages == NULL) {
        return 0;
    }

    err_page = clcf->error_pages->elts;

    for (i = 0; i < clcf->error_pages->nelts; i++) {
        if ((ngx_uint_t) err_page[i].status == status) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_kanka_oauth_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


/* the absolute redirect URI that Kanka compares with the registered one */

static ngx_int_t
ngx_http_kanka_oauth_redirect_uri(ngx_http_request_t *r,
    ngx_http_kanka_oauth_loc_conf_t *klcf, ngx_str_t *uri)
{
    u_char                    *p;
    ngx_str_t                  host, scheme;
    ngx_http_core_srv_conf_t  *cscf;

    if (klcf->redirect_uri.data[0] != '/') {
        *uri = klcf->redirect_uri;
        return NGX_OK;
    }

    if (r->headers_in.host) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    if (host.len == 0) {
        /* HTTP/1.0 without Host: the server's name */
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        host = cscf->server_name;
    }

    if (host.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kanka_oauth: no host name to build the redirect URI, "
                      "set \"server_name\" or \"kanka_oauth_redirect_uri\"");
        return NGX_ERROR;
    }

    ngx_str_set(&scheme, "http://");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    }
#endif

    uri->len = scheme.len + host.len + klcf->redirect_uri.len;
    uri->data = ngx_pnalloc(r->pool, uri->len);
    if (uri->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(uri->data, scheme.data, scheme.len);
    p = ngx_cpymem(p, host.data, host.len);
    ngx_memcpy(p, klcf->redirect_uri.data, klcf->redirect_uri.len);

    return NGX_OK;
}


/*
 * The callback's query holds a code and a state.  Once read, they are cut
 * from the request line, $request_uri and $args, which logs show.
 */

static void
ngx_http_kanka_oauth_hide_args(ngx_http_request_t *r)
{
    u_char     *p, *start, *end, *args;
    size_t      len;
    ngx_str_t   line, uri;

    start = r->request_line.data;
    end = start + r->request_line.len;
    args = r->args.data;
    len = r->args.len;

    ngx_str_set(&r->args, "...");

    if (len == 0 || args < start || args + len > end) {
        return;
    }

    line.len = r->request_line.len - len + 3;
    line.data = ngx_pnalloc(r->pool, line.len);
    if (line.data == NULL) {
        return;
    }

    p = ngx_cpymem(line.data, start, args - start);
    p = ngx_cpymem(p, "...", 3);
    ngx_memcpy(p, args + len, end - (args + len));

    r->request_line = line;

    if (r->unparsed_uri.data < start || args + len > end
        || args < r->unparsed_uri.data)
    {
        return;
    }

    uri.len = args - r->unparsed_uri.data + 3;
    uri.data = ngx_pnalloc(r->pool, uri.len);
    if (uri.data == NULL) {
        return;
    }

    ngx_memcpy(ngx_cpymem(uri.data, r->unparsed_uri.data,
                          args - r->unparsed_uri.data),
               "...", 3);

    r->unparsed_uri = uri;
}


static ngx_int_t
ngx_http_kanka_oauth_new_id(ngx_http_request_t *r, u_char *id)
{
    u_char  raw[KANKA_ID_RAW];

    if (RAND_bytes(raw, KANKA_ID_RAW) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kanka_oauth: RAND_bytes() failed");
        return NGX_ERROR;
    }

    kanka_id_encode(id, raw);

    return NGX_OK;
}


/* an unescaped query argument; value->data is NULL when it is absent */

static ngx_int_t
ngx_http_kanka_oauth_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    kanka_str_t  v;

    value->data = NULL;
    value->len = 0;

    if (!kanka_query_arg(r->args.data, r->args.len, name, &v)) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, v.len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    value->len = kanka_unescape(value->data, v.data, v.len);

    return NGX_OK;
}


/* a string of the context of an authenticated request, found by offset */

static ngx_int_t
ngx_http_kanka_oauth_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s;
    ngx_http_kanka_oauth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_kanka_oauth_module);

    if (ctx == NULL || !ctx->authenticated) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) ctx + data);

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_authenticated_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_kanka_oauth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_kanka_oauth_module);

    v->data = (u_char *) ((ctx && ctx->authenticated) ? "1" : "0");
    v->len = 1;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_kanka_oauth_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_kanka_oauth_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_kanka_oauth_main_conf_t  *kmcf;

    kmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kanka_oauth_main_conf_t));
    if (kmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&kmcf->zones, cf->pool, 2, sizeof(ngx_shm_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return kmcf;
}


static void *
ngx_http_kanka_oauth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_kanka_oauth_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kanka_oauth_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->zone = NULL;
     *     conf->zone_name = { 0, NULL };
     *     conf->client_id = { 0, NULL };
     *     conf->client_secret = { 0, NULL };
     *     conf->redirect_uri = { 0, NULL };
     *     conf->redirect_path = { 0, NULL };
     *     conf->logout_uri = { 0, NULL };
     *     conf->authorize_url = { 0, NULL };
     *     conf->token_url = { 0, NULL };
     *     conf->api_url = { 0, NULL };
     *     conf->cookie_name = { 0, NULL };
     *     conf->cookie_domain = { 0, NULL };
     *     conf->cookie_path = { 0, NULL };
     *     conf->cookie_samesite = { 0, NULL };
     *     conf->ssl_trusted_certificate = { 0, NULL };
     */

    conf->mode = NGX_CONF_UNSET_UINT;
    conf->cookie_secure = NGX_CONF_UNSET_UINT;
    conf->session_timeout = NGX_CONF_UNSET;
    conf->session_lifetime = NGX_CONF_UNSET;
    conf->refresh_before = NGX_CONF_UNSET;
    conf->pass_token = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->ssl_verify = NGX_CONF_UNSET;
    conf->pkce = NGX_CONF_UNSET;
    conf->users = NGX_CONF_UNSET_PTR;
    conf->campaigns = NGX_CONF_UNSET_PTR;
    conf->campaign_recheck = NGX_CONF_UNSET;
    conf->bearer = NGX_CONF_UNSET;
    conf->bearer_cache = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_kanka_oauth_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kanka_oauth_loc_conf_t *prev = parent;
    ngx_http_kanka_oauth_loc_conf_t *conf = child;

    ngx_uint_t                         i;
    ngx_shm_zone_t                   **zones;
    ngx_http_kanka_oauth_main_conf_t  *kmcf;

    ngx_conf_merge_uint_value(conf->mode, prev->mode,
                              NGX_HTTP_KANKA_OAUTH_OFF);

    ngx_conf_merge_str_value(conf->zone_name, prev->zone_name, "");
    ngx_conf_merge_str_value(conf->client_id, prev->client_id, "");
    ngx_conf_merge_str_value(conf->client_secret, prev->client_secret, "");

    if (conf->redirect_uri.data == NULL) {
        conf->redirect_uri = prev->redirect_uri;
        conf->redirect_path = prev->redirect_path;
    }

    if (conf->redirect_uri.data == NULL) {
        ngx_str_set(&conf->redirect_uri, "/kanka/callback");
        conf->redirect_path = conf->redirect_uri;
    }

    ngx_conf_merge_str_value(conf->logout_uri, prev->logout_uri,
                             "/kanka/logout");
    ngx_conf_merge_str_value(conf->authorize_url, prev->authorize_url,
                             "https://app.kanka.io/oauth/authorize");
    ngx_conf_merge_str_value(conf->token_url, prev->token_url,
                             "https://app.kanka.io/oauth/token");
    ngx_conf_merge_str_value(conf->api_url, prev->api_url,
                             "https://api.kanka.io/1.0");

    if (conf->cookie_name.data == NULL) {
        conf->cookie_name = prev->cookie_name;
        conf->cookie_domain = prev->cookie_domain;
        conf->cookie_path = prev->cookie_path;
        conf->cookie_secure = prev->cookie_secure;
        conf->cookie_samesite = prev->cookie_samesite;
    }

    if (conf->cookie_name.data == NULL) {
        ngx_str_set(&conf->cookie_name, "kanka_session");
        ngx_str_set(&conf->cookie_path, "/");
        conf->cookie_secure = NGX_HTTP_KANKA_OAUTH_SECURE_AUTO;
        ngx_str_set(&conf->cookie_samesite, "Lax");
    }

    conf->binding_name.len = conf->cookie_name.len + sizeof("_login") - 1;
    conf->binding_name.data = ngx_pnalloc(cf->pool, conf->binding_name.len);
    if (conf->binding_name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(ngx_cpymem(conf->binding_name.data, conf->cookie_name.data,
                          conf->cookie_name.len),
               "_login", sizeof("_login") - 1);

    ngx_conf_merge_sec_value(conf->session_timeout, prev->session_timeout,
                             8 * 60 * 60);
    ngx_conf_merge_sec_value(conf->session_lifetime, prev->session_lifetime,
                             7 * 24 * 60 * 60);
    ngx_conf_merge_sec_value(conf->refresh_before, prev->refresh_before,
                             5 * 60);
    ngx_conf_merge_value(conf->pass_token, prev->pass_token, 1);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 10000);
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_value(conf->pkce, prev->pkce, 1);
    ngx_conf_merge_ptr_value(conf->users, prev->users, NULL);
    ngx_conf_merge_ptr_value(conf->campaigns, prev->campaigns, NULL);
    ngx_conf_merge_sec_value(conf->campaign_recheck, prev->campaign_recheck,
                             10 * 60);
    ngx_conf_merge_value(conf->bearer, prev->bearer, 0);
    ngx_conf_merge_sec_value(conf->bearer_cache, prev->bearer_cache, 5 * 60);

    if (conf->session_timeout <= 0 || conf->session_lifetime <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"kanka_oauth_session_timeout\" and "
                           "\"kanka_oauth_session_lifetime\" must be "
                           "more than 0");
        return NGX_CONF_ERROR;
    }

    /* a zone serves where a client is configured, even if the gate is off */

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kanka_oauth_module);
    zones = kmcf->zones.elts;

    conf->zone = NULL;

    if (conf->zone_name.len) {
        for (i = 0; i < kmcf->zones.nelts; i++) {
            if (zones[i]->shm.name.len == conf->zone_name.len
                && ngx_strncmp(zones[i]->shm.name.data, conf->zone_name.data,
                               conf->zone_name.len)
                   == 0)
            {
                conf->zone = zones[i];
                break;
            }
        }

        if (conf->zone == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"kanka_oauth_session_zone\": unknown zone "
                               "\"%V\"", &conf->zone_name);
            return NGX_CONF_ERROR;
        }

    } else if (kmcf->zones.nelts == 1) {
        conf->zone = zones[0];
    }

    if (conf->mode == NGX_HTTP_KANKA_OAUTH_OFF) {
        if (conf->client_id.len == 0 || conf->client_secret.len == 0) {
            conf->zone = NULL;
        }

        return NGX_CONF_OK;
    }

    if (conf->client_id.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"kanka_oauth\" is on but "
                           "\"kanka_oauth_client_id\" is not set");
        return NGX_CONF_ERROR;
    }

    if (conf->client_secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"kanka_oauth\" is on but neither "
                           "\"kanka_oauth_client_secret\" nor "
                           "\"kanka_oauth_client_secret_file\" is set");
        return NGX_CONF_ERROR;
    }

    if (conf->zone == NULL) {
        if (kmcf->zones.nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"kanka_oauth\" is on but no "
                               "\"kanka_oauth_zone\" is defined");

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"kanka_oauth\" is on and several zones are "
                               "defined: \"kanka_oauth_session_zone\" must "
                               "name one");
        }

        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kanka_oauth_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kanka_oauth_main_conf_t  *kmcf = conf;

    u_char                        *p;
    ssize_t                        size;
    ngx_str_t                     *value, name, s;
    ngx_shm_zone_t                *shm_zone, **zp;
    ngx_http_kanka_oauth_zone_t   *zone;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\" in \"%V\" directive, "
                           "expected name:size", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" in \"%V\" directive is too small",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts > 2) {
        /* TODO: redis=, the store shared by several hosts */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive",
                           &value[2], &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_kanka_oauth_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_kanka_oauth_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\" in \"%V\" directive",
                           &name, &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone->name = name;

    shm_zone->init = ngx_http_kanka_oauth_init_zone;
    shm_zone->data = zone;

    zp = ngx_array_push(&kmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = shm_zone;

    return NGX_CONF_OK;
}


static char *
ngx_http_kanka_oauth_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_kanka_oauth_loc_conf_t *klcf = conf;

    u_char           *buf;
    size_t            len;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, name;
    ngx_file_info_t   fi;

    if (klcf->client_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is not a small regular file",
                           &name);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    len = (size_t) ngx_file_size(&fi);

    buf = ngx_pnalloc(cf->pool, len + 1);
    if (buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, len);

    ngx_close_file(fd);

    if (n == -1 || (size_t) n != len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read secret file \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
                   || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    {
        len--;
    }

    if (len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is empty", &name);
        return NGX_CONF_ERROR;
    }

    buf[len] = '\0';

    klcf->client_secret.data = buf;
    klcf->client_secret.len = len;

    return NGX_CONF_OK;
}


/* a path, or for the redirect URI also an absolute URL */

static char *
ngx_http_kanka_oauth_set_uri(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kanka_oauth_loc_conf_t *klcf = conf;

    u_char      *p, *end;
    ngx_str_t   *value, *field;
    ngx_uint_t   i;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= 0x20 || value[1].data[i] >= 0x7f) {
            goto invalid;
        }
    }

    if (value[1].len && value[1].data[0] == '/') {
        if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '?')) {
            goto invalid;
        }

        *field = value[1];

        if (field == &klcf->redirect_uri) {
            klcf->redirect_path = value[1];
        }

        return NGX_CONF_OK;
    }

    if (field != &klcf->redirect_uri) {
        goto invalid;
    }

    if (ngx_strncmp(value[1].data, "http://", 7) == 0) {
        p = value[1].data + 7;

    } else if (ngx_strncmp(value[1].data, "https://", 8) == 0) {
        p = value[1].data + 8;

    } else {
        goto invalid;
    }

    end = value[1].data + value[1].len;
    p = ngx_strlchr(p, end, '/');

    if (p == NULL || p == value[1].data + 8 || p == value[1].data + 7
        || ngx_strlchr(p, end, '?'))
    {
        goto invalid;
    }

    klcf->redirect_uri = value[1];
    klcf->redirect_path.data = p;
    klcf->redirect_path.len = end - p;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


/* an absolute http or https URL with a host; kept null-terminated for curl */

static char *
ngx_http_kanka_oauth_set_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char      *host;
    ngx_str_t   *value, *field;
    ngx_uint_t   i;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 7 && ngx_strncmp(value[1].data, "http://", 7) == 0) {
        host = value[1].data + 7;

    } else if (value[1].len > 8
               && ngx_strncmp(value[1].data, "https://", 8) == 0)
    {
        host = value[1].data + 8;

    } else {
        goto invalid;
    }

    if (*host == '/' || *host == ':' || *host == '?' || *host == '#') {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= 0x20 || value[1].data[i] >= 0x7f) {
            goto invalid;
        }
    }

    *field = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid URL \"%V\" in \"%V\" directive, expected "
                       "http:// or https:// and a host", &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_kanka_oauth_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kanka_oauth_loc_conf_t *klcf = conf;

    u_char      c;
    ngx_str_t  *value, v;
    ngx_uint_t  i;

    if (klcf->cookie_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        goto invalid_name;
    }

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        if (c <= 0x20 || c >= 0x7f || ngx_strchr("()<>@,;:\\\"/[]?={}", c)) {
            goto invalid_name;
        }
    }

    klcf->cookie_name = value[1];
    ngx_str_set(&klcf->cookie_path, "/");
    klcf->cookie_secure = NGX_HTTP_KANKA_OAUTH_SECURE_AUTO;
    ngx_str_set(&klcf->cookie_samesite, "Lax");

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "domain=", 7) == 0) {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

            if (v.len == 0 || ngx_strlchr(v.data, v.data + v.len, ';')) {
                goto invalid;
            }

            klcf->cookie_domain = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "path=", 5) == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;

            if (v.len == 0 || v.data[0] != '/'
                || ngx_strlchr(v.data, v.data + v.len, ';'))
            {
                goto invalid;
            }

            klcf->cookie_path = v;
            continue;
        }

        if (ngx_strcmp(value[i].data, "secure=on") == 0) {
            klcf->cookie_secure = NGX_HTTP_KANKA_OAUTH_SECURE_ON;
            continue;
        }

        if (ngx_strcmp(value[i].data, "secure=off") == 0) {
            klcf->cookie_secure = NGX_HTTP_KANKA_OAUTH_SECURE_OFF;
            continue;
        }

        if (ngx_strcmp(value[i].data, "secure=auto") == 0) {
            klcf->cookie_secure = NGX_HTTP_KANKA_OAUTH_SECURE_AUTO;
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=lax") == 0) {
            ngx_str_set(&klcf->cookie_samesite, "Lax");
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=strict") == 0) {
            ngx_str_set(&klcf->cookie_samesite, "Strict");
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=none") == 0) {
            ngx_str_set(&klcf->cookie_samesite, "None");
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;

invalid_name:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid cookie name \"%V\" in \"%V\" directive",
                       &value[1], &cmd->name);
    return NGX_CONF_ERROR;
}


/* a list of Kanka ids: users or campaigns */

static char *
ngx_http_kanka_oauth_ids(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_int_t     id;
    ngx_str_t    *value;
    ngx_uint_t    i, *p;
    ngx_array_t  **ids;

    ids = (ngx_array_t **) ((u_char *) conf + cmd->offset);

    if (*ids != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *ids = ngx_array_create(cf->pool, cf->args->nelts - 1,
                            sizeof(ngx_uint_t));
    if (*ids == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        id = ngx_atoi(value[i].data, value[i].len);

        if (id == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid id \"%V\" in \"%V\" directive",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        p = ngx_array_push(*ids);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        *p = (ngx_uint_t) id;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kanka_oauth_ssl_verify(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char        *rv;
    ngx_flag_t  *fp;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    fp = (ngx_flag_t *) ((u_char *) conf + cmd->offset);

    if (!*fp) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"kanka_oauth_ssl_verify\" is off: Kanka's "
                           "certificate is not checked, and tokens can be "
                           "stolen by anyone on the path to it");
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kanka_oauth_trusted_certificate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t        *value, *field;
    ngx_file_info_t   fi;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    *field = value[1];

    if (ngx_conf_full_name(cf->cycle, field, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(field->data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_file_info_n " \"%V\" failed", field);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_init(ngx_conf_t *cf)
{
    ngx_array_t                *handlers;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * access handlers run from the last pushed to the first: at the head of
     * the array the gate runs after allow, deny and auth_basic, so that with
     * "satisfy any" they can let a request in before a login is asked for
     */

    handlers = &cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers;

    h = ngx_array_push(handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h = handlers->elts;
    ngx_memmove(&h[1], &h[0],
                (handlers->nelts - 1) * sizeof(ngx_http_handler_pt));
    h[0] = ngx_http_kanka_oauth_handler;

    ngx_http_kanka_oauth_authorization_hash =
                        ngx_hash_key((u_char *) "authorization",
                                     sizeof("authorization") - 1);

    return NGX_OK;
}


static ngx_int_t
ngx_http_kanka_oauth_init_process(ngx_cycle_t *cycle)
{
    ngx_http_kanka_oauth_main_conf_t  *kmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    kmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_kanka_oauth_module);

    if (kmcf == NULL || kmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    return ngx_http_kanka_oauth_client_init(cycle);
}


static void
ngx_http_kanka_oauth_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_kanka_oauth_client_exit(cycle);
}
