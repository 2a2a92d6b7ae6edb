/* logq.h - a bounded FIFO of log lines in a byte ring (no threads, no I/O).
 *
 * The ring is bounded in bytes (the buffer given to logq_init) and in lines.
 * A line that does not fit is dropped and counted; the count of lines dropped
 * since the last notice (gap) lets the caller queue one "N log lines dropped"
 * line in the place where the lines went missing. The caller serialises
 * every call (log.c holds one mutex); logq_peek/logq_consume let one writer
 * write queued bytes without holding that lock, since pushes only ever fill
 * free space. */
#ifndef WSGATE_LOGQ_H
#define WSGATE_LOGQ_H

#include <stddef.h>
#include <stdint.h>

struct logq {
    char *buf;
    size_t cap;       /* bytes in buf */
    size_t head;      /* offset of the oldest queued byte */
    size_t used;      /* queued bytes */
    size_t lines;     /* queued lines (each ends in '\n') */
    size_t max_lines; /* bound on lines */
    uint64_t gap;     /* lines dropped since the last notice was queued */
    uint64_t dropped; /* lines dropped in all */
};

/* Use buf[0..cap) (cap > 0) for at most max_lines lines (> 0). */
void logq_init(struct logq *q, char *buf, size_t cap, size_t max_lines);

/* Queue notice[0..nlen) then line[0..len) (each one whole line ending in
 * '\n'); notice may be NULL (nlen 0), line may be NULL (len 0). Both go in,
 * or neither: then the line (if any) counts as dropped. When notice went in,
 * gap is reset to 0. Returns 0 when queued, -1 when dropped. */
int logq_push(struct logq *q, const char *notice, size_t nlen, const char *line, size_t len);

/* The oldest queued bytes lying contiguous in the ring: returns their start
 * and stores their count in *n (0 when empty). */
const char *logq_peek(const struct logq *q, size_t *n);

/* Remove the n oldest bytes (n <= used), e.g. after writing them. */
void logq_consume(struct logq *q, size_t n);

/* Remove every queued line, counting them as dropped (the output failed). */
void logq_discard(struct logq *q);

#endif
