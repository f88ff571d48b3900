/* Who gets in when the server is full. Idle keep-alive connections are cheap for a client
 * to hold and would otherwise lock every newcomer out, the liveness probe included, so a
 * new connection closes the oldest idle one instead of being refused: of its own address
 * at the per-address cap, of anyone at max_connections. Only when nothing suitable is idle
 * is the newcomer refused. Design notes: docs/internals/http_server.md. */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/list.h"

#define PEER_BUCKETS_MIN 64
#define PEER_BUCKETS_MAX 65536

struct http_peer {
    struct list_node chain; /* in its bucket */
    struct list_node idle;  /* this address's idle connections, least recently active first */
    unsigned nconns;
    unsigned char len;      /* 4 or 16 */
    unsigned char addr[16]; /* IPv4 or IPv6 address, network order */
};

/* ---- the peer table ------------------------------------------------------------------- */

/* Enough buckets for short chains even when every connection has its own address. */
static size_t bucket_count(unsigned max_connections)
{
    size_t want = max_connections != 0 ? max_connections / 4 : 1024;
    size_t n = PEER_BUCKETS_MIN;
    while (n < want && n < PEER_BUCKETS_MAX)
        n *= 2;
    return n;
}

int http_limit_init(struct http_server *srv)
{
    struct http_peer_table *t = &srv->peers;
    list_init(&srv->idle);
    if (srv->cfg.max_connections_per_client == 0)
        return 0;
    size_t n = bucket_count(srv->cfg.max_connections);
    t->buckets = malloc(n * sizeof(*t->buckets));
    if (t->buckets == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        list_init(&t->buckets[i]);
    t->mask = n - 1;
    if (crypto_random(&t->seed, sizeof(t->seed)) != 0)
        t->seed = (uint64_t)(uintptr_t)srv ^ uv_hrtime();
    return 0;
}

void http_limit_free(struct http_server *srv)
{
    free(srv->peers.buckets);
    srv->peers.buckets = NULL;
}

/* FNV-1a, started from a random seed. */
static size_t peer_hash(const struct http_peer_table *t, const unsigned char *addr, size_t len)
{
    uint64_t h = t->seed ^ 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= addr[i];
        h *= 0x100000001b3ULL;
    }
    return (size_t)(h ^ (h >> 32)) & t->mask;
}

/* The peer's address as bytes. Dual-stack listeners see IPv4 clients as mapped IPv6
 * addresses, each client always the same way, so no normalisation is needed. */
static int peer_address(struct conn *c, unsigned char addr[16], unsigned char *len)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    int err = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n);
    if (err)
        return err;
    if (ss.ss_family == AF_INET) {
        memcpy(addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        *len = 4;
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        memcpy(addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        *len = 16;
        return 0;
    }
    return ERR_INVALID_INPUT;
}

static struct http_peer *peer_find(struct list_node *bucket, const unsigned char *addr, size_t len)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, bucket)
    {
        struct http_peer *p = LIST_ENTRY(n, struct http_peer, chain);
        if (p->len == len && memcmp(p->addr, addr, len) == 0)
            return p;
    }
    return NULL;
}

/* Counts c against its address, creating the entry on first sight. */
static int peer_attach(struct conn *c)
{
    struct http_peer_table *t = &c->srv->peers;
    unsigned char addr[16];
    unsigned char len;
    int err = peer_address(c, addr, &len);
    if (err)
        return err;
    struct list_node *bucket = &t->buckets[peer_hash(t, addr, len)];
    struct http_peer *p = peer_find(bucket, addr, len);
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return UV_ENOMEM;
        list_init(&p->idle);
        memcpy(p->addr, addr, len);
        p->len = len;
        list_push_head(bucket, &p->chain);
    }
    p->nconns++;
    c->peer = p;
    return 0;
}

static void peer_detach(struct conn *c)
{
    struct http_peer *p = c->peer;
    if (p == NULL)
        return;
    c->peer = NULL;
    if (--p->nconns > 0)
        return;
    list_remove(&p->chain);
    free(p);
}

/* ---- idleness and admission ------------------------------------------------------------ */

/* A connection that has sent nothing yet counts as idle: otherwise connecting and staying
 * silent (slowloris) would hold a slot until the header timeout. A connection part-way
 * through a request, handled, writing or lingering is not idle. */
static bool is_idle(const struct conn *c)
{
    return !c->closing && (c->phase == PHASE_WAIT || c->phase == PHASE_IDLE);
}

void http_limit_phase(struct conn *c)
{
    list_remove(&c->idle_node);
    list_remove(&c->peer_node);
    if (!is_idle(c))
        return;
    list_push_tail(&c->srv->idle, &c->idle_node);
    if (c->peer != NULL)
        list_push_tail(&c->peer->idle, &c->peer_node);
}

void http_limit_forget(struct conn *c)
{
    list_remove(&c->idle_node);
    list_remove(&c->peer_node);
    peer_detach(c);
}

/* The connection to close to make room for c, or NULL when none is needed; *refuse is set
 * when room is needed and nothing idle can give it. */
static struct conn *choose_victim(struct conn *c, bool *refuse)
{
    struct http_server *srv = c->srv;
    struct list_node *n = NULL;
    *refuse = false;
    if (c->peer != NULL && c->peer->nconns > srv->cfg.max_connections_per_client) {
        n = list_first(&c->peer->idle);
        *refuse = n == NULL;
        return n != NULL ? LIST_ENTRY(n, struct conn, peer_node) : NULL;
    }
    if (srv->cfg.max_connections != 0 && srv->nconns > srv->cfg.max_connections) {
        n = list_first(&srv->idle);
        *refuse = n == NULL;
        return n != NULL ? LIST_ENTRY(n, struct conn, idle_node) : NULL;
    }
    return NULL;
}

int http_limit_admit(struct conn *c)
{
    if (c->srv->peers.buckets != NULL) {
        int err = peer_attach(c);
        if (err)
            return err;
    }
    bool refuse;
    struct conn *victim = choose_victim(c, &refuse);
    if (refuse)
        return ERR_UNAVAILABLE;
    if (victim != NULL)
        http_conn_close(victim);
    return 0;
}
