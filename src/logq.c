/* logq.c - bounded FIFO of log lines (contract in logq.h). */
#include "logq.h"

#include <string.h>

void logq_init(struct logq *q, char *buf, size_t cap, size_t max_lines)
{
    memset(q, 0, sizeof(*q));
    q->buf = buf;
    q->cap = cap;
    q->max_lines = max_lines;
}

/* Copy p[0..n) in at the tail, wrapping around the end of the ring. */
static void put(struct logq *q, const char *p, size_t n)
{
    size_t tail = (q->head + q->used) % q->cap;
    size_t first = q->cap - tail < n ? q->cap - tail : n;
    memcpy(q->buf + tail, p, first);
    memcpy(q->buf, p + first, n - first);
    q->used += n;
}

int logq_push(struct logq *q, const char *notice, size_t nlen, const char *line, size_t len)
{
    size_t nl = (nlen > 0) + (len > 0);
    if (nlen + len > q->cap - q->used || nl > q->max_lines - q->lines) {
        if (len > 0) {
            q->gap++;
            q->dropped++;
        }
        return -1;
    }
    if (nlen > 0) {
        put(q, notice, nlen);
        q->gap = 0;
    }
    if (len > 0)
        put(q, line, len);
    q->lines += nl;
    return 0;
}

const char *logq_peek(const struct logq *q, size_t *n)
{
    size_t to_end = q->cap - q->head;
    *n = q->used < to_end ? q->used : to_end;
    return q->buf + q->head;
}

/* Lines ending in buf[head..head+n) (n within one contiguous run). */
static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

void logq_consume(struct logq *q, size_t n)
{
    while (n > 0) {
        size_t to_end = q->cap - q->head;
        size_t k = n < to_end ? n : to_end;
        size_t done = count_lines(q->buf + q->head, k);
        q->lines = done < q->lines ? q->lines - done : 0;
        q->head = (q->head + k) % q->cap;
        q->used -= k;
        n -= k;
    }
    if (q->used == 0)
        q->head = 0;
}

void logq_discard(struct logq *q)
{
    q->dropped += q->lines;
    q->gap += q->lines;
    q->head = q->used = q->lines = 0;
}
