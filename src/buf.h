/* buf.h - fixed-capacity byte buffers and a per-worker pool of them.
 *
 * Relay buffers are taken from the pool when data starts to flow and given
 * back as soon as they are empty, so idle sessions hold none. */
#ifndef WSGATE_BUF_H
#define WSGATE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    size_t cap;   /* bytes in data[] */
    size_t start; /* first byte not yet consumed */
    size_t end;   /* one past the last byte stored */
    struct buf *next_free;
    uint8_t data[];
};

struct buf_pool {
    size_t cap;      /* capacity of pooled buffers */
    size_t nfree;    /* buffers on the free list */
    size_t max_free; /* free list bound; more are given back to malloc */
    size_t out;      /* buffers handed out and not yet returned */
    struct buf *free;
};

/* Set up an empty pool of buffers with capacity cap. */
void buf_pool_init(struct buf_pool *p, size_t cap, size_t max_free);
/* Free every pooled buffer (handed-out ones must be returned first). */
void buf_pool_destroy(struct buf_pool *p);
/* An empty buffer of at least cap bytes (pooled when cap <= p->cap), or NULL
 * when out of memory. */
struct buf *buf_get(struct buf_pool *p, size_t cap);
/* Give a buffer back (NULL is ignored). */
void buf_put(struct buf_pool *p, struct buf *b);

static inline size_t buf_len(const struct buf *b)
{
    return b->end - b->start;
}

static inline size_t buf_room(const struct buf *b)
{
    return b->cap - b->end;
}

#endif
