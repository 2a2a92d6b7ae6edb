/* iptable.c - sharded, bounded per-address counters and token buckets. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "iptable.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NIL UINT32_MAX
#define IDLE_FORGET 1.0 /* seconds after which an idle entry carries no state */

struct entry {
    struct iptable_key key;
    uint32_t conns;
    float tokens;
    double refill;       /* when tokens was last brought up to date */
    double touched;      /* last use */
    uint32_t hnext;      /* hash chain */
    uint32_t prev, next; /* idle LRU list (conns == 0) or free list (next only) */
    bool used;
};

struct shard {
    pthread_mutex_t lock;
    struct entry *e;   /* cap entries */
    uint32_t *heads;   /* nbuckets hash chains */
    uint32_t nbuckets; /* power of two */
    uint32_t cap, used;
    uint32_t free_head;
    uint32_t idle_head, idle_tail; /* oldest, newest */
} __attribute__((aligned(64)));

struct iptable {
    struct shard shards[IPTABLE_SHARDS];
    uint64_t seed;
    size_t cap;
    size_t bytes;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t key_hash(const struct iptable *t, const struct iptable_key *k)
{
    uint64_t w[3];

    memcpy(w, k->addr.a, 16);
    w[2] = (uint64_t)k->addr.family << 32 | k->scope;
    uint64_t h = t->seed;
    for (int i = 0; i < 3; i++)
        h = mix(h ^ w[i]);
    return h;
}

static bool key_eq(const struct iptable_key *a, const struct iptable_key *b)
{
    return a->scope == b->scope && a->addr.family == b->addr.family &&
           memcmp(a->addr.a, b->addr.a, sizeof a->addr.a) == 0;
}

/* Contract in iptable.h. */
struct iptable *iptable_new(size_t cap)
{
    if (cap == 0)
        cap = IPTABLE_DEFAULT_CAP;
    size_t per = (cap + IPTABLE_SHARDS - 1) / IPTABLE_SHARDS;
    if (per >= NIL / 2)
        return NULL;
    struct iptable *t = aligned_alloc(64, sizeof *t);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != sizeof t->seed)
        t->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
    uint32_t nb = 1;
    while (nb < per)
        nb <<= 1;
    t->cap = per * IPTABLE_SHARDS;
    t->bytes = sizeof *t + IPTABLE_SHARDS * (per * sizeof(struct entry) + nb * sizeof(uint32_t));
    for (size_t s = 0; s < IPTABLE_SHARDS; s++) {
        struct shard *sh = &t->shards[s];
        pthread_mutex_init(&sh->lock, NULL);
        sh->e = calloc(per, sizeof *sh->e);
        sh->heads = malloc(nb * sizeof *sh->heads);
        if (sh->e == NULL || sh->heads == NULL) {
            iptable_free(t);
            return NULL;
        }
        memset(sh->heads, 0xff, nb * sizeof *sh->heads);
        sh->nbuckets = nb;
        sh->cap = (uint32_t)per;
        for (uint32_t i = 0; i < per; i++)
            sh->e[i].next = i + 1 < per ? i + 1 : NIL;
        sh->free_head = 0;
        sh->idle_head = sh->idle_tail = NIL;
    }
    return t;
}

/* Contract in iptable.h. */
void iptable_free(struct iptable *t)
{
    if (t == NULL)
        return;
    for (size_t s = 0; s < IPTABLE_SHARDS; s++) {
        free(t->shards[s].e);
        free(t->shards[s].heads);
        pthread_mutex_destroy(&t->shards[s].lock);
    }
    free(t);
}

static void idle_unlink(struct shard *sh, uint32_t i)
{
    struct entry *e = &sh->e[i];

    if (e->prev != NIL)
        sh->e[e->prev].next = e->next;
    else
        sh->idle_head = e->next;
    if (e->next != NIL)
        sh->e[e->next].prev = e->prev;
    else
        sh->idle_tail = e->prev;
    e->prev = e->next = NIL;
}

static void idle_append(struct shard *sh, uint32_t i)
{
    struct entry *e = &sh->e[i];

    e->prev = sh->idle_tail;
    e->next = NIL;
    if (sh->idle_tail != NIL)
        sh->e[sh->idle_tail].next = i;
    else
        sh->idle_head = i;
    sh->idle_tail = i;
}

/* Remove entry i from its hash chain (bucket b). */
static void hash_unlink(struct shard *sh, uint32_t b, uint32_t i)
{
    uint32_t *pp = &sh->heads[b];

    while (*pp != i)
        pp = &sh->e[*pp].hnext;
    *pp = sh->e[i].hnext;
}

/* The entry for key in shard sh (locked), created when create is set (a free
 * slot, else the least recently used idle entry). NIL when absent or full. */
static uint32_t lookup(const struct iptable *t, struct shard *sh, const struct iptable_key *key,
                       uint64_t h, bool create, double now)
{
    uint32_t b = (uint32_t)(h >> 8) & (sh->nbuckets - 1);

    for (uint32_t i = sh->heads[b]; i != NIL; i = sh->e[i].hnext)
        if (key_eq(&sh->e[i].key, key))
            return i;
    if (!create)
        return NIL;
    uint32_t i = sh->free_head;
    if (i != NIL) {
        sh->free_head = sh->e[i].next;
        sh->used++;
    } else if ((i = sh->idle_head) != NIL) {
        idle_unlink(sh, i);
        struct entry *old = &sh->e[i];
        hash_unlink(sh, (uint32_t)(key_hash(t, &old->key) >> 8) & (sh->nbuckets - 1), i);
    } else {
        return NIL;
    }
    struct entry *e = &sh->e[i];
    memset(e, 0, sizeof *e);
    e->key = *key;
    e->used = true;
    e->tokens = -1; /* bucket not started: full at the first take */
    e->refill = e->touched = now;
    e->hnext = sh->heads[b];
    sh->heads[b] = i;
    e->prev = e->next = NIL;
    idle_append(sh, i);
    return i;
}

/* Give entry i back to the free list when it carries no state. */
static void maybe_free(const struct iptable *t, struct shard *sh, uint32_t i)
{
    struct entry *e = &sh->e[i];

    if (e->conns != 0 || e->tokens >= 0)
        return;
    idle_unlink(sh, i);
    hash_unlink(sh, (uint32_t)(key_hash(t, &e->key) >> 8) & (sh->nbuckets - 1), i);
    e->used = false;
    e->next = sh->free_head;
    sh->free_head = i;
    sh->used--;
}

static struct shard *shard_of(struct iptable *t, uint64_t h)
{
    return &t->shards[h % IPTABLE_SHARDS];
}

/* Contract in iptable.h. */
int iptable_conn_acquire(struct iptable *t, const struct iptable_key *key, uint32_t max, double now)
{
    uint64_t h = key_hash(t, key);
    struct shard *sh = shard_of(t, h);
    int rc = -1;

    pthread_mutex_lock(&sh->lock);
    uint32_t i = lookup(t, sh, key, h, true, now);
    if (i != NIL) {
        struct entry *e = &sh->e[i];
        if (max == 0 || e->conns < max) {
            if (e->conns++ == 0)
                idle_unlink(sh, i);
            rc = 0;
        }
        e->touched = now;
        if (rc < 0)
            maybe_free(t, sh, i);
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

/* Contract in iptable.h. */
void iptable_conn_release(struct iptable *t, const struct iptable_key *key, double now)
{
    uint64_t h = key_hash(t, key);
    struct shard *sh = shard_of(t, h);

    pthread_mutex_lock(&sh->lock);
    uint32_t i = lookup(t, sh, key, h, false, now);
    if (i != NIL && sh->e[i].conns > 0) {
        struct entry *e = &sh->e[i];
        e->touched = now;
        if (--e->conns == 0) {
            idle_append(sh, i);
            maybe_free(t, sh, i);
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

/* Contract in iptable.h. */
int iptable_rate_take(struct iptable *t, const struct iptable_key *key, uint32_t rate, double now)
{
    if (rate == 0)
        return 0;
    uint64_t h = key_hash(t, key);
    struct shard *sh = shard_of(t, h);
    int rc = -1;

    pthread_mutex_lock(&sh->lock);
    uint32_t i = lookup(t, sh, key, h, true, now);
    if (i != NIL) {
        struct entry *e = &sh->e[i];
        double tokens = e->tokens;
        if (tokens < 0 || now - e->refill >= IDLE_FORGET) {
            tokens = rate; /* new, or idle long enough to be full again */
        } else if (now > e->refill) {
            tokens += (now - e->refill) * rate;
            if (tokens > rate)
                tokens = rate;
        }
        if (tokens > rate)
            tokens = rate; /* the rate went down on a reload */
        if (now > e->refill || e->tokens < 0)
            e->refill = now;
        if (tokens >= 1) {
            tokens -= 1;
            rc = 0;
        }
        e->tokens = (float)tokens;
        e->touched = now;
        if (e->conns == 0) { /* most recently used: to the end of the idle list */
            idle_unlink(sh, i);
            idle_append(sh, i);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

/* Contract in iptable.h. */
uint32_t iptable_conns(struct iptable *t, const struct iptable_key *key)
{
    uint64_t h = key_hash(t, key);
    struct shard *sh = shard_of(t, h);
    uint32_t n = 0;

    pthread_mutex_lock(&sh->lock);
    uint32_t i = lookup(t, sh, key, h, false, 0);
    if (i != NIL)
        n = sh->e[i].conns;
    pthread_mutex_unlock(&sh->lock);
    return n;
}

/* Contract in iptable.h. */
size_t iptable_used(struct iptable *t)
{
    size_t n = 0;

    for (size_t s = 0; s < IPTABLE_SHARDS; s++) {
        pthread_mutex_lock(&t->shards[s].lock);
        n += t->shards[s].used;
        pthread_mutex_unlock(&t->shards[s].lock);
    }
    return n;
}

/* Contract in iptable.h. */
size_t iptable_capacity(const struct iptable *t)
{
    return t->cap;
}

/* Contract in iptable.h. */
size_t iptable_bytes(const struct iptable *t)
{
    return t->bytes;
}
