/* record.h - per-session recordings, written off the event loop.
 *
 * One writer thread per process owns every recording file. Workers hand it
 * their bytes through one bounded queue (a byte ring of record_start()'s
 * size): record_data() copies the bytes into the ring and returns; it never
 * blocks on I/O and allocates nothing. When the ring has no room, or when a
 * write to the file fails (ENOSPC, EIO, ...), only that recording stops: the
 * writer closes its file with a final "stop" line (raw format, when it can),
 * logs one line, and later record_data() calls for it do nothing. The
 * session goes on. The writer holds at most record_open_files() files open
 * (not one per session); it lets chunks gather for a few milliseconds (or
 * until 2 MiB is queued) and writes each file's chunks with one
 * writev(2) from the ring.
 *
 * Files are named ROUTE-YYYYMMDDTHHMMSSZ-ID.wsrec (raw) or .cast (asciicast
 * v2), ID being letters and digits, created with O_EXCL and mode 0640 by the
 * writer thread. The raw format is described in wsgate.ini(5); in short:
 *
 *   WSREC 1
 *   route: NAME
 *   client: ADDR
 *   backend: SPEC
 *   start: 2024-05-06T07:08:09.123456Z
 *   session: ID
 *   (empty line)
 *   +SECONDS DIR LEN\n  LEN payload bytes verbatim  \n      (one per chunk)
 *   +SECONDS stop REASON\n                                  (last line)
 *
 * DIR is "i" (client -> backend) or "o" (backend -> client); SECONDS is the
 * offset from the start with 6 decimals. asciicast v2 uses the same
 * directions; its text is the bytes decoded as UTF-8 (U+FFFD for invalid
 * bytes, sequences split across chunks joined). */
#ifndef WSGATE_RECORD_H
#define WSGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "recfmt.h"

/* Default ring size of the writer queue. A big recording is written with
 * O_DIRECT (record.c), so the writer waits for the disk on each batch while
 * the workers go on filling the ring: 8 MiB covers that wait (make
 * bench-stream, one 1 GB recorded session, 5 alternating rounds: 2 MiB 696,
 * 4 MiB 686, 8 MiB 943, 16 MiB 865 MB/s against 1102 unrecorded; over 9
 * later rounds 8 and 16 MiB alike, 79% and 80% of unrecorded). */
#define RECORD_QUEUE_DEFAULT (8u << 20)

/* Write-behind step: each time this many more bytes of a file have been
 * written through the page cache, the writer starts their writeback and
 * drops from the cache what was written two steps before, once it is on
 * disk (record.c, written()); a recording holds at most about three steps
 * of cache. Past the first step, a raw recording's big batches (64 KiB and
 * more) bypass the cache with O_DIRECT. */
#define RECORD_WRITE_BEHIND (2u << 20)

/* Default bound on the recording files the writer holds open at once. */
#define RECORD_OPEN_FILES_DEFAULT 256u

struct recording;

/* Start the writer thread with a queue of queue_bytes (>= 4096; the ring is
 * allocated at the first record_open()). Returns 0, or -1 with errno (when
 * already started: EALREADY). */
int record_start(size_t queue_bytes);

/* Write everything queued, close the files of recordings still open (as if
 * record_close() had been called), stop and join the thread. Call after the
 * workers have stopped. No-op when not started. */
void record_stop(void);

/* Begin the recording of one session, in directory dir (must exist), at
 * start (seconds since the epoch, e.g. ev_now()). route: the route name
 * (letters, digits, '_', '.', '-'); client and backend: text for the header
 * (control characters are replaced). session_id makes the file name unique
 * together with the process. Returns a handle owned by the caller until
 * record_close(), or NULL when the writer is not running, the queue is full
 * or memory is short (the session then goes on unrecorded). The file itself
 * is created by the writer; failures are logged by it. */
struct recording *record_open(const char *dir, enum record_format format, const char *route,
                              const char *client, const char *backend, double start,
                              uint64_t session_id);

/* Record len bytes of payload going in direction dir at time now (seconds
 * since the epoch). Copies them into the queue; never blocks. After a stop
 * (queue full, write error) it does nothing. h may be NULL (no-op). */
void record_data(struct recording *h, enum record_dir dir, const void *buf, size_t len, double now);

/* Congestion: more than half of the queue is in use (it stays set until the
 * writer has brought it down to a quarter). Sessions that record should stop
 * reading their peers meanwhile, so that their bytes wait in the kernel
 * rather than overflow the queue. Lock-free. */
bool record_congested(void);
/* h is recording (not stopped by a full queue, an error or
 * record_abandon()). Lock-free. */
bool record_live(const struct recording *h);
/* fn is called on the writer thread each time congestion ends (NULL: none).
 * It must only post to the workers (e.g. ev_async_send). */
void record_on_drained(void (*fn)(void));
/* Stop recording h now as a full queue does: its file ends with
 * "stop queue-full", a log line says so, later record_data() calls do
 * nothing. For a session that waited too long for a congested queue. */
void record_abandon(struct recording *h, double now);
/* End the recording at time now: the writer writes what is queued, the
 * closing line, closes the file and frees h. h may be NULL. h must not be
 * used afterwards. Never blocks. */
void record_close(struct recording *h, double now);

/* The file path of h ("DIR/ROUTE-STAMP-ID.EXT"), fixed at record_open(). If
 * the name was taken, the writer picks another and this reports the final
 * one after record_flush(). */
const char *record_path(const struct recording *h);

/* Wait until everything queued so far has been written (tests, shutdown). */
void record_flush(void);

/* Bound the files the writer holds open at once to n (>= 1; default
 * RECORD_OPEN_FILES_DEFAULT), so that recordings cost no descriptor per
 * session: beyond it the least recently written file is closed, and reopened
 * with O_APPEND when its recording writes again. Takes effect at the next
 * record_start(). Returns 0, or -1 with errno EINVAL when n is 0. */
int record_open_files(unsigned n);

/* Counters since record_start(). */
struct record_stats {
    uint64_t opened;        /* files created */
    uint64_t stopped;       /* recordings stopped early (queue full, write error, open error) */
    uint64_t bytes_written; /* payload bytes written to files */
    uint64_t bytes_dropped; /* payload bytes not recorded because a recording stopped */
    uint64_t reopened;      /* files reopened after the open-files bound closed them */
    uint64_t files_open;    /* recording files open now (at most the bound) */
    uint64_t bytes_direct;  /* file bytes written with O_DIRECT (big recordings) */
};
void record_get_stats(struct record_stats *out);

/* Tests only: while held, the writer takes nothing from the queue. */
void record_hold(int on);

/* `wsgate --replay FILE`: print a raw recording (header lines, then each
 * chunk as "[+SECONDS DIR LEN]" on a line followed by the payload verbatim
 * and a newline when the payload did not end with one) or the output text of
 * an asciicast file to out. Returns 0, or 1 after writing a message naming
 * FILE to errout. */
int record_replay(const char *file, FILE *out, FILE *errout);

#endif
