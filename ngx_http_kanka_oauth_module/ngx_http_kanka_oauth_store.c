
/*
 * The shared-memory store: a hash table of records by id, sized by the
 * zone when it is made, and a queue of them, newest first, that eviction
 * walks from the cold end.  All work happens under the slab pool's own
 * mutex, which the master frees when a worker dies holding it.
 *
 * A look-up touches the bucket and the record, and nothing else: a
 * record read is only marked as used.  Eviction gives a marked record a
 * second chance, moving it to the front, instead of every read moving it
 * there and touching its neighbours, which in a large zone are as cold
 * as the record was.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_http_kanka_oauth_store.h"


#define NGX_HTTP_KANKA_OAUTH_MAGIC      0x4b4f4104    /* layout version */
#define NGX_HTTP_KANKA_OAUTH_LOG_EVERY  60
#define NGX_HTTP_KANKA_OAUTH_BUCKET     1024          /* of zone a bucket */
#define NGX_HTTP_KANKA_OAUTH_SPARE      8             /* second chances */


typedef struct ngx_http_kanka_oauth_node_s  ngx_http_kanka_oauth_node_t;

struct ngx_http_kanka_oauth_shctx_s {
    ngx_http_kanka_oauth_node_t   **buckets;
    uint64_t                        mult;           /* random, odd */
    ngx_uint_t                      shift;
    ngx_queue_t                     queue;
    ngx_uint_t                      magic;
    ngx_uint_t                      records;
    ngx_uint_t                      evicted;
    time_t                          evict_logged;
};


struct ngx_http_kanka_oauth_node_s {
    ngx_http_kanka_oauth_node_t    *next;           /* in the bucket */
    ngx_queue_t                     queue;
    u_char                          kind;
    u_char                          used;           /* read since it moved */
    u_char                          id[KANKA_ID_LEN];
    time_t                          created;
    time_t                          expires;
    time_t                          token_expires;
    time_t                          retry;          /* no refresh before */
    ngx_msec_t                      lease;          /* a refresh runs until */
    ngx_uint_t                      failures;
    time_t                          checked;        /* campaigns read at */
    time_t                          rretry;         /* no recheck before */
    ngx_msec_t                      rlease;         /* a recheck runs until */
    ngx_uint_t                      rechecks;
    uint16_t                        len[NGX_HTTP_KANKA_OAUTH_NFIELDS];
    u_char                          data[1];
};


static ngx_http_kanka_oauth_node_t **ngx_http_kanka_oauth_bucket(
    ngx_http_kanka_oauth_zone_t *zone, u_char *id);
static ngx_http_kanka_oauth_node_t *ngx_http_kanka_oauth_lookup(
    ngx_http_kanka_oauth_zone_t *zone, u_char *id);
static void ngx_http_kanka_oauth_expire(ngx_http_kanka_oauth_zone_t *zone,
    ngx_uint_t n);
static ngx_http_kanka_oauth_node_t *ngx_http_kanka_oauth_alloc(
    ngx_http_kanka_oauth_zone_t *zone, size_t size, ngx_log_t *log);
static void ngx_http_kanka_oauth_fill(ngx_http_kanka_oauth_node_t *kn,
    ngx_http_kanka_oauth_record_t *rec, ngx_http_kanka_oauth_node_t *old);
static void ngx_http_kanka_oauth_remove(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_node_t *kn);
static ngx_uint_t ngx_http_kanka_oauth_equal(const u_char *a,
    const u_char *b);


ngx_int_t
ngx_http_kanka_oauth_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_kanka_oauth_zone_t  *ozone = data;

    size_t                        len;
    ngx_uint_t                    n, bits;
    ngx_http_kanka_oauth_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_alloc(zone->shpool,
                              sizeof(ngx_http_kanka_oauth_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    /* about a bucket for every record the zone can hold */

    for (n = 2, bits = 1;
         n * NGX_HTTP_KANKA_OAUTH_BUCKET < shm_zone->shm.size;
         n *= 2, bits++)
    {
        /* void */
    }

    zone->sh->buckets = ngx_slab_calloc(zone->shpool,
                                    n * sizeof(ngx_http_kanka_oauth_node_t *));
    if (zone->sh->buckets == NULL) {
        return NGX_ERROR;
    }

    zone->sh->shift = 64 - bits;

    /*
     * ids of bearer records are digests of tokens that a client chooses:
     * a secret multiplier keeps it from choosing their buckets too
     */

    if (RAND_bytes((u_char *) &zone->sh->mult, sizeof(uint64_t)) != 1) {
        return NGX_ERROR;
    }

    zone->sh->mult |= 1;

    ngx_queue_init(&zone->sh->queue);

    zone->sh->magic = NGX_HTTP_KANKA_OAUTH_MAGIC;
    zone->sh->records = 0;
    zone->sh->evicted = 0;
    zone->sh->evict_logged = 0;

    len = sizeof(" in kanka_oauth zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in kanka_oauth zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is handled by eviction, not worth a line per allocation */

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


size_t
ngx_http_kanka_oauth_store_node_size(ngx_http_kanka_oauth_record_t *rec)
{
    size_t      size;
    ngx_uint_t  i;

    size = offsetof(ngx_http_kanka_oauth_node_t, data);

    for (i = 0; i < NGX_HTTP_KANKA_OAUTH_NFIELDS; i++) {
        size += rec->field[i].len;
    }

    return size;
}


ngx_int_t
ngx_http_kanka_oauth_store_put(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_record_t *rec, ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_http_kanka_oauth_node_t  *kn, *old, **b;

    for (i = 0; i < NGX_HTTP_KANKA_OAUTH_NFIELDS; i++) {
        if (rec->field[i].len > 0xffff) {
            return NGX_ERROR;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (zone->sh->magic != NGX_HTTP_KANKA_OAUTH_MAGIC) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "kanka_oauth zone \"%V\" has an unknown layout",
                      &zone->name);
        return NGX_ERROR;
    }

    ngx_http_kanka_oauth_expire(zone, 2);

    kn = ngx_http_kanka_oauth_alloc(zone,
                                  ngx_http_kanka_oauth_store_node_size(rec),
                                  log);
    if (kn == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_http_kanka_oauth_fill(kn, rec, NULL);

    /* two requests may learn the same thing at once: the later one wins */

    old = ngx_http_kanka_oauth_lookup(zone, rec->id);

    if (old) {
        ngx_http_kanka_oauth_remove(zone, old);
    }

    b = ngx_http_kanka_oauth_bucket(zone, kn->id);
    kn->next = *b;
    *b = kn;

    ngx_queue_insert_head(&zone->sh->queue, &kn->queue);
    zone->sh->records++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/*
 * Puts refreshed tokens (rec has an access token) or campaigns read again
 * in a session, and ends the lease of that work.  A field of rec with no
 * data keeps the session's value.
 */

ngx_int_t
ngx_http_kanka_oauth_store_update(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_record_t *rec, ngx_log_t *log)
{
    size_t                        size;
    ngx_uint_t                    i;
    ngx_http_kanka_oauth_node_t  *kn, *old, **b;

    ngx_shmtx_lock(&zone->shpool->mutex);

    old = ngx_http_kanka_oauth_lookup(zone, rec->id);

    if (old == NULL || old->kind != rec->kind) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    size = offsetof(ngx_http_kanka_oauth_node_t, data);

    for (i = 0; i < NGX_HTTP_KANKA_OAUTH_NFIELDS; i++) {
        size += rec->field[i].data ? rec->field[i].len : old->len[i];
    }

    /* the session must not be evicted to make room for itself */

    ngx_queue_remove(&old->queue);

    kn = ngx_http_kanka_oauth_alloc(zone, size, log);

    if (kn == NULL) {
        if (rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS].data) {
            old->lease = 0;

        } else {
            old->rlease = 0;
        }

        ngx_queue_insert_head(&zone->sh->queue, &old->queue);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_http_kanka_oauth_fill(kn, rec, old);

    /* the new node takes the old one's place in the bucket */

    for (b = ngx_http_kanka_oauth_bucket(zone, old->id); *b != old;
         b = &(*b)->next)
    {
        /* void */
    }

    kn->next = old->next;
    *b = kn;

    ngx_slab_free_locked(zone->shpool, old);

    ngx_queue_insert_head(&zone->sh->queue, &kn->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/*
 * A refresh (or with "recheck", a reading of campaigns) failed: end the
 * lease, and wait till "retry" for the next try
 */

ngx_int_t
ngx_http_kanka_oauth_store_release(ngx_http_kanka_oauth_zone_t *zone,
    u_char *id, time_t retry, ngx_uint_t recheck)
{
    ngx_int_t                     rc;
    ngx_http_kanka_oauth_node_t  *kn;

    ngx_shmtx_lock(&zone->shpool->mutex);

    kn = ngx_http_kanka_oauth_lookup(zone, id);

    if (kn != NULL && kn->kind != NGX_HTTP_KANKA_OAUTH_LOGIN) {

        if (recheck) {
            kn->rlease = 0;
            kn->rretry = retry;
            kn->rechecks++;

        } else {
            kn->lease = 0;
            kn->retry = retry;
            kn->failures++;
        }

        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/*
 * With the lock held: a node, evicting from the cold end of the queue for
 * room.  A record read since it was last there goes to the front instead,
 * a few of them an allocation at most.
 */

static ngx_http_kanka_oauth_node_t *
ngx_http_kanka_oauth_alloc(ngx_http_kanka_oauth_zone_t *zone, size_t size,
    ngx_log_t *log)
{
    time_t                        now;
    ngx_uint_t                    evicted, spared;
    ngx_queue_t                  *q;
    ngx_http_kanka_oauth_node_t  *kn;

    evicted = 0;
    spared = 0;

    for ( ;; ) {
        kn = ngx_slab_alloc_locked(zone->shpool, size);

        if (kn != NULL) {
            break;
        }

        if (ngx_queue_empty(&zone->sh->queue)) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "kanka_oauth zone \"%V\" cannot hold a record "
                          "of %uz bytes", &zone->name, size);
            return NULL;
        }

        q = ngx_queue_last(&zone->sh->queue);
        kn = ngx_queue_data(q, ngx_http_kanka_oauth_node_t, queue);

        if (kn->used && spared < NGX_HTTP_KANKA_OAUTH_SPARE) {
            kn->used = 0;
            ngx_queue_remove(q);
            ngx_queue_insert_head(&zone->sh->queue, q);
            spared++;
            continue;
        }

        ngx_http_kanka_oauth_remove(zone, kn);
        evicted++;
    }

    if (evicted == 0) {
        return kn;
    }

    zone->sh->evicted += evicted;
    now = ngx_time();

    /* logging under the lock is rare: once a minute at most */

    if (now - zone->sh->evict_logged >= NGX_HTTP_KANKA_OAUTH_LOG_EVERY) {
        zone->sh->evict_logged = now;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "kanka_oauth zone \"%V\" is full, least recently used "
                      "records evicted", &zone->name);
    }

    return kn;
}


static void
ngx_http_kanka_oauth_fill(ngx_http_kanka_oauth_node_t *kn,
    ngx_http_kanka_oauth_record_t *rec, ngx_http_kanka_oauth_node_t *old)
{
    u_char      *p, *src;
    ngx_uint_t   i;

    if (old) {
        kn->kind = old->kind;
        ngx_memcpy(kn->id, old->id, KANKA_ID_LEN);
        kn->created = old->created;
        kn->expires = old->expires;
        kn->token_expires = old->token_expires;
        kn->retry = old->retry;
        kn->lease = old->lease;
        kn->failures = old->failures;
        kn->checked = old->checked;
        kn->rretry = old->rretry;
        kn->rlease = old->rlease;
        kn->rechecks = old->rechecks;
        src = old->data;

    } else {
        kn->kind = (u_char) rec->kind;
        ngx_memcpy(kn->id, rec->id, KANKA_ID_LEN);
        kn->created = rec->created;
        kn->expires = rec->expires;
        kn->checked = rec->checked;
        kn->rretry = 0;
        kn->rlease = 0;
        kn->rechecks = 0;
        src = NULL;
    }

    if (old == NULL || rec->field[NGX_HTTP_KANKA_OAUTH_ACCESS].data) {
        kn->token_expires = rec->token_expires;
        kn->retry = 0;
        kn->lease = 0;
        kn->failures = 0;
    }

    if (old && rec->field[NGX_HTTP_KANKA_OAUTH_CAMPAIGNS].data) {
        kn->checked = rec->checked;
        kn->rretry = 0;
        kn->rlease = 0;
        kn->rechecks = 0;
    }

    p = kn->data;

    for (i = 0; i < NGX_HTTP_KANKA_OAUTH_NFIELDS; i++) {

        if (rec->field[i].data || old == NULL) {
            kn->len[i] = (uint16_t) rec->field[i].len;

            if (rec->field[i].len) {
                p = ngx_cpymem(p, rec->field[i].data, rec->field[i].len);
            }

        } else {
            kn->len[i] = old->len[i];
            p = ngx_cpymem(p, src, old->len[i]);
        }

        if (src) {
            src += old->len[i];
        }
    }

    kn->used = 0;
}


ngx_int_t
ngx_http_kanka_oauth_store_get(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_record_t *rec, ngx_http_kanka_oauth_get_t *how,
    ngx_pool_t *pool)
{
    size_t                        size;
    u_char                       *p, *src, *from;
    time_t                        now;
    ngx_uint_t                    i, fields;
    ngx_http_kanka_oauth_node_t  *kn;

    now = ngx_time();

    ngx_shmtx_lock(&zone->shpool->mutex);

    kn = ngx_http_kanka_oauth_lookup(zone, rec->id);

    if (kn == NULL || (rec->kind && kn->kind != rec->kind)) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    rec->kind = kn->kind;

    if (kn->expires < now || (how->deadline && kn->created + how->deadline
                                               < now))
    {
        ngx_http_kanka_oauth_remove(zone, kn);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    rec->created = kn->created;
    rec->token_expires = kn->token_expires;
    rec->failures = kn->failures;
    rec->refresh = NGX_HTTP_KANKA_OAUTH_FRESH;

    fields = how->fields;

    /*
     * one request at a time refreshes a session, in any worker: it holds
     * a lease, which ends by itself if its worker dies
     */

    if (how->refresh_at && kn->token_expires
        && kn->token_expires <= how->refresh_at
        && kn->len[NGX_HTTP_KANKA_OAUTH_REFRESH] == 0)
    {
        /* no refresh token: the session ends with its access token */

        if (kn->token_expires <= now) {
            ngx_http_kanka_oauth_remove(zone, kn);
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_DECLINED;
        }

    } else if (how->refresh_at && kn->token_expires
               && kn->token_expires <= how->refresh_at)
    {
        if (kn->lease && (ngx_msec_int_t) (kn->lease - ngx_current_msec) > 0) {
            rec->refresh = NGX_HTTP_KANKA_OAUTH_BUSY;

        } else if (now < kn->retry) {
            if (kn->token_expires <= now) {
                rec->refresh = NGX_HTTP_KANKA_OAUTH_STALE;
            }

        } else {
            kn->lease = ngx_current_msec + how->lease;

            if (kn->lease == 0) {
                kn->lease = 1;
            }

            rec->refresh = NGX_HTTP_KANKA_OAUTH_MINE;
            fields |= 1 << NGX_HTTP_KANKA_OAUTH_REFRESH;
        }
    }

    if (how->idle) {
        kn->expires = now + how->idle;

        if (how->deadline && kn->expires > kn->created + how->deadline) {
            kn->expires = kn->created + how->deadline;
        }
    }

    kn->used = !how->take;

    rec->expires = kn->expires;
    rec->checked = kn->checked;
    rec->rechecks = kn->rechecks;
    rec->recheck = NGX_HTTP_KANKA_OAUTH_FRESH;

    /* campaigns are read again by one request at a time, too */

    if (how->recheck_at && kn->checked <= how->recheck_at
        && rec->refresh == NGX_HTTP_KANKA_OAUTH_FRESH)
    {
        if (kn->rlease
            && (ngx_msec_int_t) (kn->rlease - ngx_current_msec) > 0)
        {
            rec->recheck = NGX_HTTP_KANKA_OAUTH_BUSY;

        } else if (now < kn->rretry) {
            rec->recheck = NGX_HTTP_KANKA_OAUTH_STALE;

        } else {
            kn->rlease = ngx_current_msec + how->recheck_lease;

            if (kn->rlease == 0) {
                kn->rlease = 1;
            }

            rec->recheck = NGX_HTTP_KANKA_OAUTH_MINE;
        }
    }

    /* a request waiting for a refresh has its copy from the first look */

    if (how->keep_busy && rec->refresh == NGX_HTTP_KANKA_OAUTH_BUSY) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_OK;
    }

    size = how->reserve;

    for (i = 0; fields >> i; i++) {
        if (fields & (1 << i)) {
            size += kn->len[i];
        }
    }

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }

    p += how->reserve;
    src = kn->data;
    from = NULL;

    /* fields wanted that lie side by side are copied at once */

    for (i = 0; fields >> i; i++) {

        if (fields & (1 << i)) {
            if (from == NULL) {
                from = src;
            }

            rec->field[i].data = p + (src - from);
            rec->field[i].len = kn->len[i];

        } else {
            if (from) {
                p = ngx_cpymem(p, from, src - from);
                from = NULL;
            }

            rec->field[i].len = 0;
            rec->field[i].data = NULL;
        }

        src += kn->len[i];
    }

    if (from) {
        ngx_memcpy(p, from, src - from);
    }

    for ( /* void */ ; i < NGX_HTTP_KANKA_OAUTH_NFIELDS; i++) {
        rec->field[i].len = 0;
        rec->field[i].data = NULL;
    }

    if (how->take) {
        ngx_http_kanka_oauth_remove(zone, kn);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_http_kanka_oauth_store_delete(ngx_http_kanka_oauth_zone_t *zone,
    ngx_uint_t kind, u_char *id)
{
    ngx_int_t                     rc;
    ngx_http_kanka_oauth_node_t  *kn;

    ngx_shmtx_lock(&zone->shpool->mutex);

    kn = ngx_http_kanka_oauth_lookup(zone, id);

    if (kn != NULL && kn->kind == kind) {
        ngx_http_kanka_oauth_remove(zone, kn);
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/*
 * Multiplicative hashing of the id's first bytes: ids of sessions and
 * logins are random, and the multiplier is a secret of the zone.
 */

static ngx_http_kanka_oauth_node_t **
ngx_http_kanka_oauth_bucket(ngx_http_kanka_oauth_zone_t *zone, u_char *id)
{
    uint64_t  key;

    ngx_memcpy(&key, id, sizeof(uint64_t));

    return &zone->sh->buckets[(key * zone->sh->mult) >> zone->sh->shift];
}


/*
 * Every id in the bucket is compared whole and in constant time: how long
 * a look-up takes tells nothing of the ids that the zone holds.
 */

static ngx_http_kanka_oauth_node_t *
ngx_http_kanka_oauth_lookup(ngx_http_kanka_oauth_zone_t *zone, u_char *id)
{
    ngx_http_kanka_oauth_node_t  *kn;

    for (kn = *ngx_http_kanka_oauth_bucket(zone, id); kn; kn = kn->next) {
        if (ngx_http_kanka_oauth_equal(id, kn->id)) {
            return kn;
        }
    }

    return NULL;
}


/*
 * Looks at n records at most from the cold end of the queue: drops those
 * expired and sends those read lately to the front
 */

static void
ngx_http_kanka_oauth_expire(ngx_http_kanka_oauth_zone_t *zone, ngx_uint_t n)
{
    time_t                        now;
    ngx_queue_t                  *q;
    ngx_http_kanka_oauth_node_t  *kn;

    now = ngx_time();

    while (n-- && !ngx_queue_empty(&zone->sh->queue)) {
        q = ngx_queue_last(&zone->sh->queue);
        kn = ngx_queue_data(q, ngx_http_kanka_oauth_node_t, queue);

        if (kn->expires < now) {
            ngx_http_kanka_oauth_remove(zone, kn);
            continue;
        }

        if (!kn->used) {
            return;
        }

        kn->used = 0;
        ngx_queue_remove(q);
        ngx_queue_insert_head(&zone->sh->queue, q);
    }
}


static void
ngx_http_kanka_oauth_remove(ngx_http_kanka_oauth_zone_t *zone,
    ngx_http_kanka_oauth_node_t *kn)
{
    ngx_http_kanka_oauth_node_t  **b;

    for (b = ngx_http_kanka_oauth_bucket(zone, kn->id); *b != kn;
         b = &(*b)->next)
    {
        /* void */
    }

    *b = kn->next;

    ngx_queue_remove(&kn->queue);
    ngx_slab_free_locked(zone->shpool, kn);
    zone->sh->records--;
}


/* a word at a time, the last one overlapping the one before it */

static ngx_uint_t
ngx_http_kanka_oauth_equal(const u_char *a, const u_char *b)
{
    size_t    i;
    uint64_t  x, y, diff;

    diff = 0;

    for (i = 0; i + 8 < KANKA_ID_LEN; i += 8) {
        ngx_memcpy(&x, a + i, 8);
        ngx_memcpy(&y, b + i, 8);
        diff |= x ^ y;
    }

    ngx_memcpy(&x, a + KANKA_ID_LEN - 8, 8);
    ngx_memcpy(&y, b + KANKA_ID_LEN - 8, 8);
    diff |= x ^ y;

    return diff == 0;
}
