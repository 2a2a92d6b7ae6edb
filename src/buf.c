/* buf.c - byte buffers and the per-worker buffer pool. */
#include "buf.h"

#include <stdlib.h>

/* Set up an empty pool of buffers with capacity cap. */
void buf_pool_init(struct buf_pool *p, size_t cap, size_t max_free)
{
    p->cap = cap;
    p->nfree = 0;
    p->max_free = max_free;
    p->out = 0;
    p->free = NULL;
}

/* Free every pooled buffer. */
void buf_pool_destroy(struct buf_pool *p)
{
    while (p->free) {
        struct buf *b = p->free;
        p->free = b->next_free;
        free(b);
    }
    p->nfree = 0;
}

/* An empty buffer of at least cap bytes, pooled when it fits the pool size. */
struct buf *buf_get(struct buf_pool *p, size_t cap)
{
    struct buf *b;
    if (cap <= p->cap && p->free) {
        b = p->free;
        p->free = b->next_free;
        p->nfree--;
    } else {
        size_t c = cap <= p->cap ? p->cap : cap;
        b = malloc(sizeof(*b) + c);
        if (!b)
            return NULL;
        b->cap = c;
    }
    b->start = b->end = 0;
    b->next_free = NULL;
    p->out++;
    return b;
}

/* Give a buffer back: kept for reuse when it has the pool's size and the free
 * list has room, else freed. */
void buf_put(struct buf_pool *p, struct buf *b)
{
    if (!b)
        return;
    p->out--;
    if (b->cap == p->cap && p->nfree < p->max_free) {
        b->next_free = p->free;
        p->free = b;
        p->nfree++;
        return;
    }
    free(b);
}
