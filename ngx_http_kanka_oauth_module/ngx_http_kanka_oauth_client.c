
/*
 * Outbound calls to Kanka on libcurl's multi-socket interface.  Each socket
 * curl opens is wrapped in an nginx connection with level-triggered events,
 * since curl does not promise to drain a socket; one timer event serves
 * curl's timeouts.  Nothing here blocks the worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "ngx_http_kanka_oauth_client.h"


#define NGX_HTTP_KANKA_OAUTH_USER_AGENT  "ngx_http_kanka_oauth_module/0.1"


typedef struct {
    ngx_queue_t          queue;
    ngx_connection_t    *connection;
    curl_socket_t        fd;
} ngx_http_kanka_oauth_sock_t;


typedef struct {
    CURLM               *multi;
    ngx_event_t          timer;
    ngx_connection_t     timer_conn;    /* names the timer in debug logs */
    ngx_queue_t          calls;
    ngx_queue_t          sockets;
    ngx_queue_t          free_sockets;
    ngx_log_t           *log;
} ngx_http_kanka_oauth_client_t;


static int ngx_http_kanka_oauth_socket_cb(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_kanka_oauth_timer_cb(CURLM *multi, long timeout_ms,
    void *userp);
static int ngx_http_kanka_oauth_close_cb(void *clientp, curl_socket_t fd);
static size_t ngx_http_kanka_oauth_write_cb(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static ngx_http_kanka_oauth_sock_t *ngx_http_kanka_oauth_sock_get(
    curl_socket_t s);
static ngx_http_kanka_oauth_sock_t *ngx_http_kanka_oauth_sock_find(
    curl_socket_t s);
static void ngx_http_kanka_oauth_sock_free(ngx_http_kanka_oauth_sock_t *sock,
    ngx_uint_t closed);
static void ngx_http_kanka_oauth_socket_handler(ngx_event_t *ev);
static void ngx_http_kanka_oauth_timer_handler(ngx_event_t *ev);
static void ngx_http_kanka_oauth_action(curl_socket_t s, int mask);
static void ngx_http_kanka_oauth_call_done(ngx_http_kanka_oauth_call_t *call,
    CURLcode code);
static void ngx_http_kanka_oauth_call_release(
    ngx_http_kanka_oauth_call_t *call);


static ngx_http_kanka_oauth_client_t  *ngx_http_kanka_oauth_client;


ngx_int_t
ngx_http_kanka_oauth_client_init(ngx_cycle_t *cycle)
{
    ngx_http_kanka_oauth_client_t  *cl;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "kanka_oauth: curl_global_init() failed");
        return NGX_ERROR;
    }

    cl = ngx_pcalloc(cycle->pool, sizeof(ngx_http_kanka_oauth_client_t));
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->multi = curl_multi_init();
    if (cl->multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "kanka_oauth: curl_multi_init() failed");
        return NGX_ERROR;
    }

    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_kanka_oauth_socket_cb);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_kanka_oauth_timer_cb);

    ngx_queue_init(&cl->calls);
    ngx_queue_init(&cl->sockets);
    ngx_queue_init(&cl->free_sockets);

    cl->log = cycle->log;

    cl->timer_conn.fd = (ngx_socket_t) -1;
    cl->timer.data = &cl->timer_conn;
    cl->timer.handler = ngx_http_kanka_oauth_timer_handler;
    cl->timer.log = cycle->log;
    cl->timer.cancelable = 1;

    ngx_http_kanka_oauth_client = cl;

    return NGX_OK;
}


void
ngx_http_kanka_oauth_client_exit(ngx_cycle_t *cycle)
{
    ngx_queue_t                    *q;
    ngx_http_kanka_oauth_sock_t    *sock;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    if (cl == NULL) {
        return;
    }

    while (!ngx_queue_empty(&cl->calls)) {
        q = ngx_queue_head(&cl->calls);
        call = ngx_queue_data(q, ngx_http_kanka_oauth_call_t, queue);
        ngx_http_kanka_oauth_call_cancel(call);
    }

    /* closes the pooled connections through the close callback */

    curl_multi_cleanup(cl->multi);

    while (!ngx_queue_empty(&cl->sockets)) {
        q = ngx_queue_head(&cl->sockets);
        sock = ngx_queue_data(q, ngx_http_kanka_oauth_sock_t, queue);
        ngx_http_kanka_oauth_sock_free(sock, 1);
    }

    while (!ngx_queue_empty(&cl->free_sockets)) {
        q = ngx_queue_head(&cl->free_sockets);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_kanka_oauth_sock_t, queue));
    }

    if (cl->timer.timer_set) {
        ngx_del_timer(&cl->timer);
    }

    if (cl->timer.posted) {
        ngx_delete_posted_event(&cl->timer);
    }

    ngx_http_kanka_oauth_client = NULL;

    curl_global_cleanup();
}


ngx_int_t
ngx_http_kanka_oauth_call_start(ngx_http_kanka_oauth_call_t *call)
{
    CURL                           *easy;
    CURLMcode                       mc;
    struct curl_slist              *headers, *h;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    if (cl == NULL) {
        ngx_log_error(NGX_LOG_ALERT, call->log, 0,
                      "kanka_oauth: no http client in this process");
        return NGX_ERROR;
    }

    call->error = ngx_pcalloc(call->pool, CURL_ERROR_SIZE);
    if (call->error == NULL) {
        return NGX_ERROR;
    }

    call->result = NGX_HTTP_KANKA_OAUTH_CALL_OK;
    call->status = 0;
    call->response.len = 0;
    call->response.data = NULL;
    call->size = 0;

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ALERT, call->log, 0,
                      "kanka_oauth: curl_easy_init() failed");
        return NGX_ERROR;
    }

    /* an empty Expect keeps curl from waiting for "100 Continue" */

    headers = curl_slist_append(NULL, "Accept: application/json");
    h = headers ? curl_slist_append(headers, "Expect:") : NULL;

    if (h != NULL && call->bearer.len) {
        h = curl_slist_append(headers, (char *) call->bearer.data);
    }

    if (h == NULL) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(easy);
        return NGX_ERROR;
    }

    call->easy = easy;
    call->headers = headers;

    curl_easy_setopt(easy, CURLOPT_URL, (char *) call->url.data);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                     ngx_http_kanka_oauth_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     ngx_http_kanka_oauth_close_cb);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) call->timeout);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) call->timeout);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     NGX_HTTP_KANKA_OAUTH_USER_AGENT);

#if (LIBCURL_VERSION_NUM >= 0x075500)
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
                     (long) (CURLPROTO_HTTP|CURLPROTO_HTTPS));
#endif

    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, call->ssl_verify ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, call->ssl_verify ? 2L : 0L);

    if (call->ca_file.len) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, (char *) call->ca_file.data);
    }

    if (call->body.len) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, (char *) call->body.data);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) call->body.len);
    }

    ngx_queue_insert_tail(&cl->calls, &call->queue);
    call->running = 1;

    /* while a call is under way, a graceful shutdown waits for curl's timer */

    cl->timer.cancelable = 0;

    mc = curl_multi_add_handle(cl->multi, easy);

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, call->log, 0,
                      "kanka_oauth: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));
        ngx_http_kanka_oauth_call_release(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_kanka_oauth_call_cancel(ngx_http_kanka_oauth_call_t *call)
{
    if (!call->running) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "kanka_oauth: call cancelled");

    ngx_http_kanka_oauth_call_release(call);
}


static void
ngx_http_kanka_oauth_call_release(ngx_http_kanka_oauth_call_t *call)
{
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    (void) curl_multi_remove_handle(cl->multi, call->easy);

    curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);

    call->easy = NULL;
    call->headers = NULL;
    call->running = 0;

    ngx_queue_remove(&call->queue);

    if (ngx_queue_empty(&cl->calls)) {
        cl->timer.cancelable = 1;
    }
}


static size_t
ngx_http_kanka_oauth_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    size_t                        n, want;
    u_char                       *p;
    ngx_http_kanka_oauth_call_t  *call = userdata;

    n = size * nmemb;

    if (n > call->max_size - call->response.len) {
        call->result = NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE;
        return 0;
    }

    if (call->response.len + n > call->size) {
        want = ngx_max(call->size * 2, call->response.len + n);
        want = ngx_max(want, 2048);
        want = ngx_min(want, call->max_size);

        p = ngx_pnalloc(call->pool, want + 1);
        if (p == NULL) {
            return 0;
        }

        if (call->response.len) {
            ngx_memcpy(p, call->response.data, call->response.len);
        }

        call->response.data = p;
        call->size = want;
    }

    ngx_memcpy(call->response.data + call->response.len, ptr, n);
    call->response.len += n;

    return n;
}


static int
ngx_http_kanka_oauth_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_event_t                    *rev, *wev;
    ngx_connection_t               *c;
    ngx_http_kanka_oauth_sock_t    *sock = socketp;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                   "kanka_oauth: curl socket %d wants %d", (int) s, what);

    if (what == CURL_POLL_REMOVE) {
        if (sock != NULL) {
            ngx_http_kanka_oauth_sock_free(sock, 0);
        }

        return 0;
    }

    if (sock == NULL) {
        sock = ngx_http_kanka_oauth_sock_get(s);
        if (sock == NULL) {
            return -1;
        }

        curl_multi_assign(cl->multi, s, sock);
    }

    c = sock->connection;
    rev = c->read;
    wev = c->write;

    if ((what & CURL_POLL_IN) && !rev->active) {
        if (ngx_add_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_IN) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if ((what & CURL_POLL_OUT) && !wev->active) {
        if (ngx_add_event(wev, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_OUT) && wev->active) {
        if (ngx_del_event(wev, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


static ngx_http_kanka_oauth_sock_t *
ngx_http_kanka_oauth_sock_get(curl_socket_t s)
{
    ngx_queue_t                    *q;
    ngx_connection_t               *c;
    ngx_http_kanka_oauth_sock_t    *sock;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    /*
     * curl closed a descriptor of this number without telling us (the
     * resolver's socket pair does so): its events left epoll with it
     */

    sock = ngx_http_kanka_oauth_sock_find(s);
    if (sock != NULL) {
        ngx_http_kanka_oauth_sock_free(sock, 1);
    }

    if (!ngx_queue_empty(&cl->free_sockets)) {
        q = ngx_queue_head(&cl->free_sockets);
        ngx_queue_remove(q);
        sock = ngx_queue_data(q, ngx_http_kanka_oauth_sock_t, queue);

    } else {
        sock = ngx_alloc(sizeof(ngx_http_kanka_oauth_sock_t), cl->log);
        if (sock == NULL) {
            return NULL;
        }
    }

    c = ngx_get_connection(s, cl->log);
    if (c == NULL) {
        ngx_queue_insert_head(&cl->free_sockets, &sock->queue);
        return NULL;
    }

    c->data = sock;
    c->read->handler = ngx_http_kanka_oauth_socket_handler;
    c->write->handler = ngx_http_kanka_oauth_socket_handler;
    c->read->log = cl->log;
    c->write->log = cl->log;

    sock->connection = c;
    sock->fd = s;

    ngx_queue_insert_tail(&cl->sockets, &sock->queue);

    return sock;
}


static ngx_http_kanka_oauth_sock_t *
ngx_http_kanka_oauth_sock_find(curl_socket_t s)
{
    ngx_queue_t                    *q;
    ngx_http_kanka_oauth_sock_t    *sock;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    for (q = ngx_queue_head(&cl->sockets);
         q != ngx_queue_sentinel(&cl->sockets);
         q = ngx_queue_next(q))
    {
        sock = ngx_queue_data(q, ngx_http_kanka_oauth_sock_t, queue);

        if (sock->fd == s) {
            return sock;
        }
    }

    return NULL;
}


/*
 * Lets go of the wrapper, never of the descriptor, which curl owns.
 * With "closed" set the descriptor is gone or about to go, and epoll
 * forgets it by itself.
 */

static void
ngx_http_kanka_oauth_sock_free(ngx_http_kanka_oauth_sock_t *sock,
    ngx_uint_t closed)
{
    ngx_uint_t                      flags;
    ngx_connection_t               *c;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;
    c = sock->connection;

    flags = closed ? NGX_CLOSE_EVENT : 0;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    ngx_queue_remove(&sock->queue);
    ngx_queue_insert_head(&cl->free_sockets, &sock->queue);
}


static int
ngx_http_kanka_oauth_close_cb(void *clientp, curl_socket_t fd)
{
    ngx_http_kanka_oauth_sock_t  *sock;

    if (ngx_http_kanka_oauth_client != NULL) {
        sock = ngx_http_kanka_oauth_sock_find(fd);

        if (sock != NULL) {
            ngx_http_kanka_oauth_sock_free(sock, 1);
        }
    }

    return close(fd);
}


static int
ngx_http_kanka_oauth_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_event_t  *ev;

    ev = &ngx_http_kanka_oauth_client->timer;

    /* curl must not be called back from here: a zero wait is posted */

    if (timeout_ms < 0) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }

        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }

        return 0;
    }

    if (timeout_ms == 0) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }

        if (!ev->posted) {
            ngx_post_event(ev, &ngx_posted_events);
        }

        return 0;
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    ngx_add_timer(ev, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_http_kanka_oauth_timer_handler(ngx_event_t *ev)
{
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    if (cl == NULL || (ngx_exiting && ngx_queue_empty(&cl->calls))) {
        return;
    }

    ngx_http_kanka_oauth_action(CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_http_kanka_oauth_socket_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    ngx_http_kanka_oauth_action(c->fd, ev->write ? CURL_CSELECT_OUT
                                                 : CURL_CSELECT_IN);
}


static void
ngx_http_kanka_oauth_action(curl_socket_t s, int mask)
{
    int                             running, left;
    CURLMsg                        *msg;
    CURLMcode                       mc;
    ngx_http_kanka_oauth_call_t    *call;
    ngx_http_kanka_oauth_client_t  *cl;

    cl = ngx_http_kanka_oauth_client;

    mc = curl_multi_socket_action(cl->multi, s, mask, &running);

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, cl->log, 0,
                      "kanka_oauth: curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(mc));
    }

    /*
     * a finished call is handed back only here, outside curl's callbacks,
     * so that its handler may start or cancel other calls
     */

    for ( ;; ) {
        msg = curl_multi_info_read(cl->multi, &left);

        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call);

        if (call == NULL || !call->running) {
            continue;
        }

        ngx_http_kanka_oauth_call_done(call, msg->data.result);
    }
}


static void
ngx_http_kanka_oauth_call_done(ngx_http_kanka_oauth_call_t *call,
    CURLcode code)
{
    long  status;

    status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);

    ngx_http_kanka_oauth_call_release(call);

    call->status = (ngx_uint_t) status;

    if (code == CURLE_OK) {
        call->result = NGX_HTTP_KANKA_OAUTH_CALL_OK;

    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        call->result = NGX_HTTP_KANKA_OAUTH_CALL_TIMEDOUT;

    } else if (call->result != NGX_HTTP_KANKA_OAUTH_CALL_TOO_LARGE) {
        call->result = NGX_HTTP_KANKA_OAUTH_CALL_FAILED;
    }

    if (call->error[0] == '\0') {
        (void) ngx_cpystrn(call->error, (u_char *) curl_easy_strerror(code),
                           CURL_ERROR_SIZE);
    }

    if (call->response.data == NULL) {
        call->response.data = (u_char *) "";
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "kanka_oauth: call done, result:%ui status:%ui size:%uz",
                   call->result, call->status, call->response.len);

    call->handler(call);
}
