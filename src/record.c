/* record.c - per-session recordings written by one writer thread.
 *
 * The queue is one byte ring shared by every worker: an entry is a struct
 * entry header followed by its payload, both 8-byte aligned and contiguous
 * (an entry that does not fit before the end of the ring leaves a pad). The
 * ring's bytes [tail, tail + used) belong to the writer, the rest to the
 * producers; `used`, `head` and `tail` change under the lock only (an
 * empty ring starts over at offset 0, so a writer that keeps up leaves only
 * its front warm in the cache), and the writer
 * reads its entries without the lock. Events that must happen once and may
 * not be lost to a full ring (a recording stopped for lack of room, a
 * recording closed) are flags on the handle plus an intrusive list, taken by
 * the writer together with the ring snapshot, and handled after the entries
 * of that snapshot: so every byte queued before a close is written before
 * the file is closed.
 *
 * The writer takes the entries in batches (at most BATCH_SLOTS chunks or
 * BATCH_BYTES of ring): it collects each recording's chunks of the batch in
 * order, then writes them per file with writev(2) straight from the ring
 * (raw) or through its buffer (asciicast), and only then releases the
 * batch's ring space (a big raw recording's batch goes through an aligned
 * stage and O_DIRECT instead, see "direct writes"; everything else written
 * through the page cache is dropped from it behind the writer, see
 * written()). Files stay open in an LRU list of at most
 * q.max_files; a file closed by it is reopened with O_APPEND. Producers
 * wake the writer only when it sleeps with nothing queued or when a nap
 * (BATCH_DELAY_NS, to let chunks gather) has more than wake_bytes()
 * waiting: no syscall per chunk on the workers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "record.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define MAX_PIECE (64u * 1024)     /* record_data() splits larger chunks */
#define WAKE_BYTES (2048u * 1024)  /* a napping writer is woken at this much */
#define BATCH_DELAY_NS 10000000L   /* the nap: 10 ms */
#define BATCH_SLOTS 1024           /* chunks per batch */
#define BATCH_BYTES (2048u * 1024) /* ring bytes per batch */
#define IOV_BATCH 1020             /* iovecs per writev(2), <= IOV_MAX */
#define OBUF_SIZE (64u * 1024)
#define JSON_SLICE 4096u
#define DIO_ALIGN 4096u      /* O_DIRECT offsets and lengths */
#define DIO_MIN (64u * 1024) /* a file's batch at least this big goes direct */
#define STAGE_SIZE (BATCH_BYTES + DIO_ALIGN)

#define STAT_ADD(field, n) __atomic_add_fetch(&q.stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

enum kind { E_PAD = 0, E_OPEN, E_DATA };

struct entry {
    struct recording *r;
    double t;
    uint32_t len; /* payload bytes after the header (E_PAD: bytes to skip) */
    uint8_t kind;
    uint8_t dir;
};

#define W_FULL 1u  /* stop: no room in the queue */
#define W_CLOSE 2u /* record_close() */

struct recording {
    char *path;    /* "DIR/NAME.EXT", room for a longer ID on EEXIST */
    size_t id_end; /* offset of the extension in path */
    char *header;  /* file header, written when the writer creates it */
    enum record_format format;
    double start;
    int dead; /* atomic: producers queue nothing more */

    /* under q.lock */
    unsigned want;
    double close_t;
    double stop_t; /* when the queue was found full */
    bool listed;
    struct recording *next;                /* attention list */
    struct recording *all_prev, *all_next; /* every handle not yet freed */

    /* writer only */
    int fd;      /* -1 when not open (not created yet, closed by the LRU, ended) */
    bool live;   /* created, not stopped, not ended */
    bool failed; /* stopped by the writer (open or write error) */
    bool header_due, in_batch;
    bool no_direct;          /* O_DIRECT refused for this file */
    uint64_t wpos;           /* bytes written to the file */
    uint64_t wb_done;        /* write-behind (written()): [0, wb_done) dropped from the cache, */
    uint64_t wb_mid;         /* [wb_done, wb_sent) being written back, */
    uint64_t wb_sent;        /* [wb_sent, wpos) dirty */
    int bfirst, blast;       /* r's chunks in the batch (w.slots), -1 */
    struct recording *bnext; /* recordings in the batch */
    struct recording *lru_prev, *lru_next; /* open files, most recently written first */
    struct record_utf8 utf[2];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
    pthread_t thread;
    bool running, stopping, held, busy;
    bool populate;            /* the ring is new: the writer faults its pages in */
    int congested;            /* atomic: more than half the ring is used */
    void (*on_drained)(void); /* called by the writer when congestion ends */
    bool sleeping, napping;   /* the writer waits: for anything / for more */
    unsigned flushers;        /* record_flush() callers waiting */
    unsigned max_files, next_max_files;
    unsigned char *ring;
    size_t cap, head, used, tail; /* tail: the writer's, changed under the lock */
    struct recording *attention;
    struct recording *all;
    struct record_stats stats;
    uint64_t rand_state;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER,
       .next_max_files = RECORD_OPEN_FILES_DEFAULT};

/* ---- file names and headers ------------------------------------------- */

static uint64_t next_rand(void)
{
    /* xorshift64*, seeded once per process (under q.lock) */
    uint64_t x = q.rand_state;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
            0x9e3779b97f4a7c15ull;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    q.rand_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* n in base 36 (digits and lower-case letters) at o; returns the length. */
static size_t base36(uint64_t n, char *o)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char tmp[16];
    size_t k = 0;

    do {
        tmp[k++] = digits[n % 36];
        n /= 36;
    } while (n != 0);
    for (size_t i = 0; i < k; i++)
        o[i] = tmp[k - 1 - i];
    return k;
}

/* ---- the queue (producers) -------------------------------------------- */

/* Put the entry and its payload in the ring, under q.lock. 0, or -1 when
 * there is no room. */
static int ring_put(struct recording *r, enum kind kind, int dir, double t, const void *buf,
                    size_t len)
{
    size_t n = sizeof(struct entry) + ALIGN8(len);
    if (q.used == 0) /* empty: start over at the front, where the ring is warm */
        q.head = q.tail = 0;
    size_t to_end = q.cap - q.head;

    if (q.ring == NULL || q.used + n > q.cap)
        return -1;
    if (to_end < n) { /* wrap: pad the end, use the start */
        if (q.used + to_end + n > q.cap)
            return -1;
        if (to_end >= sizeof(struct entry)) {
            struct entry pad = {.kind = E_PAD, .len = (uint32_t)(to_end - sizeof pad)};
            memcpy(q.ring + q.head, &pad, sizeof pad);
        }
        q.used += to_end;
        q.head = 0;
    }
    struct entry e = {
        .r = r, .t = t, .len = (uint32_t)len, .kind = (uint8_t)kind, .dir = (uint8_t)dir};
    memcpy(q.ring + q.head, &e, sizeof e);
    if (len > 0)
        memcpy(q.ring + q.head + sizeof e, buf, len);
    q.head += n;
    if (q.head == q.cap)
        q.head = 0;
    q.used += n;
    if (q.used > q.cap / 2 && !q.congested)
        __atomic_store_n(&q.congested, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Ask the writer to look at r (under q.lock). */
static void attend(struct recording *r, unsigned want)
{
    r->want |= want;
    if (!r->listed) {
        r->listed = true;
        r->next = q.attention;
        q.attention = r;
    }
}

/* Wake the writer when it sleeps with nothing to do (under q.lock). */
static void wake_writer(void)
{
    if (q.sleeping) {
        q.sleeping = false;
        pthread_cond_signal(&q.wake);
    }
}

/* Queued bytes at which a napping writer is woken. */
static size_t wake_bytes(void)
{
    return q.cap / 4 < WAKE_BYTES ? q.cap / 4 : WAKE_BYTES;
}

/* Contract in record.h. */
struct recording *record_open(const char *dir, enum record_format format, const char *route,
                              const char *client, const char *backend, double start,
                              uint64_t session_id)
{
    char id[40], stamp[32];
    time_t sec = (time_t)start;
    struct tm tm;
    struct recording *r = calloc(1, sizeof *r);

    if (r == NULL)
        return NULL;
    pthread_mutex_lock(&q.lock);
    size_t k = base36(session_id, id);
    id[k++] = 'r';
    uint64_t x = next_rand();
    for (int i = 0; i < 5; i++, x /= 36)
        k += base36(x % 36, id + k);
    id[k] = '\0';
    pthread_mutex_unlock(&q.lock);

    gmtime_r(&sec, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    const char *ext = format == RECORD_ASCIICAST ? ".cast" : ".wsrec";
    /* 4 spare bytes for the EEXIST suffix */
    if (asprintf(&r->path, "%s/%s-%s-%s%s    ", dir, route, stamp, id, ext) < 0) {
        r->path = NULL;
        goto fail;
    }
    r->path[strlen(r->path) - 4] = '\0';
    r->id_end = strlen(r->path) - strlen(ext);
    r->header = record_header(format, route, client, backend, start, id);
    if (r->header == NULL)
        goto fail;
    r->format = format;
    r->start = start;
    r->fd = -1;
    r->bfirst = r->blast = -1;
    record_utf8_init(&r->utf[0]);
    record_utf8_init(&r->utf[1]);

    pthread_mutex_lock(&q.lock);
    if (q.running && !q.stopping && q.ring == NULL) {
        void *m = mmap(NULL, q.cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        q.ring = m == MAP_FAILED ? NULL : m;
        q.head = q.used = q.tail = 0;
        q.populate = q.ring != NULL;
    }
    if (!q.running || q.stopping || ring_put(r, E_OPEN, 0, start, NULL, 0) < 0) {
        if (q.running)
            STAT_ADD(stopped, 1);
        pthread_mutex_unlock(&q.lock);
        goto fail;
    }
    r->all_next = q.all;
    if (q.all)
        q.all->all_prev = r;
    q.all = r;
    wake_writer();
    pthread_mutex_unlock(&q.lock);
    return r;
fail:
    free(r->path);
    free(r->header);
    free(r);
    return NULL;
}

/* Under q.lock: producers queue nothing more for r; the writer ends its file
 * with "stop queue-full" (as of now) and logs it. */
static void stop_full(struct recording *r, double now)
{
    __atomic_store_n(&r->dead, 1, __ATOMIC_RELAXED);
    r->stop_t = now;
    attend(r, W_FULL);
}

/* Contract in record.h. */
void record_data(struct recording *r, enum record_dir dir, const void *buf, size_t len, double now)
{
    const unsigned char *p = buf;

    if (r == NULL || len == 0)
        return;
    if (__atomic_load_n(&r->dead, __ATOMIC_RELAXED)) {
        STAT_ADD(bytes_dropped, len);
        return;
    }
    pthread_mutex_lock(&q.lock);
    while (len > 0) {
        size_t piece = len < MAX_PIECE ? len : MAX_PIECE;
        if (piece > q.cap / 8)
            piece = q.cap / 8;
        if (ring_put(r, E_DATA, dir, now, p, piece) < 0) {
            STAT_ADD(bytes_dropped, len);
            stop_full(r, now);
            break;
        }
        p += piece;
        len -= piece;
    }
    wake_writer();
    if (q.napping && q.used >= wake_bytes()) {
        q.napping = false;
        pthread_cond_signal(&q.wake);
    }
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
bool record_congested(void)
{
    return __atomic_load_n(&q.congested, __ATOMIC_RELAXED) != 0;
}

/* Contract in record.h. */
bool record_live(const struct recording *r)
{
    return r != NULL && !__atomic_load_n(&r->dead, __ATOMIC_RELAXED);
}

/* Contract in record.h. */
void record_on_drained(void (*fn)(void))
{
    pthread_mutex_lock(&q.lock);
    q.on_drained = fn;
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
void record_abandon(struct recording *r, double now)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&q.lock);
    if (!r->dead) {
        stop_full(r, now);
        wake_writer();
    }
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
void record_close(struct recording *r, double now)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&q.lock);
    r->close_t = now;
    attend(r, W_CLOSE);
    wake_writer();
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
const char *record_path(const struct recording *r)
{
    return r->path;
}

/* ---- the writer ------------------------------------------------------- */

struct slot {
    size_t off;    /* the entry's offset in the ring */
    int next;      /* the recording's next chunk in the batch, -1 */
    char line[44]; /* "+SECONDS DIR LEN\n" */
};

static struct {
    char buf[OBUF_SIZE];
    size_t n;
    struct recording *r; /* whose bytes buf holds */
    uint64_t payload;    /* payload bytes of complete chunks among them */
    char json[6 * JSON_SLICE + 64];

    struct slot slots[BATCH_SLOTS];
    int nslots;
    struct recording *batch, *batch_last; /* in order of first chunk */
    struct iovec iov[IOV_BATCH];

    struct recording *lru_head, *lru_tail; /* open files */
    unsigned nopen;

    unsigned char *stage;     /* direct writes: STAGE_SIZE, DIO_ALIGN-aligned */
    size_t sn, sold;          /* bytes staged; of them, already in the file */
    uint64_t sbase;           /* file offset of stage[0], DIO_ALIGN-aligned */
    struct recording *staged; /* whose bytes the stage holds, to be written */
    uint64_t staged_payload;  /* payload bytes of its batch */
} w;

static void lru_unlink(struct recording *r)
{
    if (r->lru_prev)
        r->lru_prev->lru_next = r->lru_next;
    else
        w.lru_head = r->lru_next;
    if (r->lru_next)
        r->lru_next->lru_prev = r->lru_prev;
    else
        w.lru_tail = r->lru_prev;
    r->lru_prev = r->lru_next = NULL;
}

static void lru_push(struct recording *r)
{
    r->lru_prev = NULL;
    r->lru_next = w.lru_head;
    if (w.lru_head)
        w.lru_head->lru_prev = r;
    else
        w.lru_tail = r;
    w.lru_head = r;
}

/* r's file descriptor becomes fd (>= 0), the most recently used. */
static void file_opened(struct recording *r, int fd)
{
    r->fd = fd;
    lru_push(r);
    w.nopen++;
    __atomic_store_n(&q.stats.files_open, (uint64_t)w.nopen, __ATOMIC_RELAXED);
}

/* Close r's file if open. Returns 0, or the errno of a failed close(2). */
static int file_close(struct recording *r)
{
    if (r->fd < 0)
        return 0;
    int rc = close(r->fd), err = rc < 0 && errno != EINTR ? errno : 0;
    r->fd = -1;
    lru_unlink(r);
    w.nopen--;
    __atomic_store_n(&q.stats.files_open, (uint64_t)w.nopen, __ATOMIC_RELAXED);
    return err;
}

/* Stop r after an error: close its file, log once. */
static void writer_fail(struct recording *r, const char *why, int err)
{
    (void)file_close(r);
    r->live = false;
    r->failed = true;
    __atomic_store_n(&r->dead, 1, __ATOMIC_RELAXED);
    STAT_ADD(stopped, 1);
    log_msg(WLOG_WARN, "recording %s stopped: %s%s%s; the session goes on", r->path, why,
            err ? ": " : "", err ? strerror(err) : "");
}

/* Close least recently written files until one more may be opened. */
static void lru_make_room(void)
{
    while (w.nopen >= q.max_files && w.lru_tail != NULL) {
        struct recording *v = w.lru_tail;
        int err = file_close(v);
        if (err)
            writer_fail(v, "close failed", err);
    }
}

/* r's file open for appending and the most recently used; false when r is
 * not live or after stopping it (the file could not be reopened). */
static bool file_ready(struct recording *r)
{
    if (!r->live)
        return false;
    if (r->fd >= 0) {
        if (w.lru_head != r) {
            lru_unlink(r);
            lru_push(r);
        }
        return true;
    }
    lru_make_room();
    int fd = open(r->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        writer_fail(r, "cannot reopen the file", errno);
        return false;
    }
    file_opened(r, fd);
    STAT_ADD(reopened, 1);
    return true;
}

/* Wait until bytes [from, to) of r's file are on disk, then drop them from
 * the page cache. Returns sync_file_range()'s result. */
static int drop_written(struct recording *r, uint64_t from, uint64_t to)
{
    int rc = sync_file_range(r->fd, (off_t)from, (off_t)(to - from),
                             SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                 SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(r->fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
    return rc;
}

/* Write-behind, for k more bytes written to r's file. A recording is
 * written once and never read back by wsgate, so its pages need not stay in
 * the page cache: each time RECORD_WRITE_BEHIND more bytes have been
 * written, start their writeback (sync_file_range(2) WRITE), then wait for
 * the writeback of the step two before (started two steps ago, so the disk
 * has had that long and the wait is rarely felt) and drop it from the cache
 * (POSIX_FADV_DONTNEED). A long recording then holds at most three steps of
 * the page cache instead of growing dirty memory until the kernel throttles
 * every writer on the host, the pages it frees are reused hot by its next
 * writes, and the audit trail reaches the disk within a few steps rather
 * than after vm.dirty_expire_centisecs. Short recordings (under one step)
 * make no extra call. A failed writeback (EIO, ENOSPC on a thin disk) stops
 * the recording like a failed write. */
static void written(struct recording *r, size_t k)
{
    r->wpos += k;
    if (r->wpos - r->wb_sent < RECORD_WRITE_BEHIND || r->fd < 0)
        return;
    uint64_t done = r->wb_done, mid = r->wb_mid, sent = r->wb_sent;
    int rc = sync_file_range(r->fd, (off_t)sent, (off_t)(r->wpos - sent), SYNC_FILE_RANGE_WRITE);
    if (rc == 0 && mid > done)
        rc = drop_written(r, done, mid);
    if (rc < 0 && errno != ENOSYS && errno != EINVAL && errno != ESPIPE) {
        writer_fail(r, "write-behind failed", errno);
        return;
    }
    r->wb_done = mid;
    r->wb_mid = sent;
    r->wb_sent = r->wpos;
}

/* Bytes [from, to) of r's file were written with O_DIRECT (which drops
 * their cached pages): what write-behind had not yet dropped before them is
 * dropped now, once, and its marks move past them, so the small appends
 * between direct writes make no write-behind calls of their own. */
static void behind_direct(struct recording *r, uint64_t from, uint64_t to)
{
    if (r->wb_done < from)
        (void)drop_written(r, r->wb_done, from);
    r->wb_done = r->wb_mid = r->wb_sent = to;
}

/* write(2) all of buf to r's (open) file; on error stop r. */
static void write_all(struct recording *r, const char *buf, size_t len)
{
    while (len > 0 && r->fd >= 0) {
        ssize_t k = write(r->fd, buf, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            writer_fail(r, "write failed", k < 0 ? errno : EIO);
            return;
        }
        buf += k;
        len -= (size_t)k;
        written(r, (size_t)k);
    }
}

/* writev(2) all of iov[0..n) to r's file (iov is consumed); false after
 * stopping r on an error. */
static bool writev_all(struct recording *r, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t k = writev(r->fd, iov, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            writer_fail(r, "write failed", k < 0 ? errno : EIO);
            return false;
        }
        size_t left = (size_t)k;
        written(r, left);
        if (r->fd < 0)
            return false;
        for (; n > 0 && left >= iov->iov_len; iov++, n--)
            left -= iov->iov_len;
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return true;
}

/* Write the buffered bytes; their chunks count as written only when all of
 * them reached the file. */
static void out_flush(void)
{
    if (w.r != NULL && w.n > 0 && file_ready(w.r))
        write_all(w.r, w.buf, w.n);
    if (w.r != NULL && w.payload > 0) {
        if (w.r->live)
            STAT_ADD(bytes_written, w.payload);
        else
            STAT_ADD(bytes_dropped, w.payload);
    }
    w.n = 0;
    w.payload = 0;
    w.r = NULL;
}

/* Buffer bytes for r's file. */
static void out_put(struct recording *r, const void *p, size_t len)
{
    if (w.r != r)
        out_flush();
    w.r = r;
    if (len > sizeof w.buf - w.n) {
        out_flush(); /* counts the chunks before this one */
        w.r = r;
        if (len >= sizeof w.buf) {
            if (file_ready(r))
                write_all(r, p, len);
            return;
        }
    }
    memcpy(w.buf + w.n, p, len);
    w.n += len;
}

static double offset(const struct recording *r, double t)
{
    return t > r->start ? t - r->start : 0.0;
}

/* Create r's file; its header is written with r's first batch. */
static void writer_open(struct recording *r)
{
    int fd = -1;

    lru_make_room();
    for (int attempt = 0; attempt < 10; attempt++) {
        if (attempt > 0) { /* the name is taken: another ID suffix */
            const char *ext = r->format == RECORD_ASCIICAST ? ".cast" : ".wsrec";
            snprintf(r->path + r->id_end, 4 + strlen(ext) + 1, "x%d%s", attempt, ext);
        }
        fd = open(r->path, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        writer_fail(r, "cannot create the file", errno);
        return;
    }
    (void)fchmod(fd, 0640); /* whatever the umask */
    r->live = true;
    r->header_due = true;
    file_opened(r, fd);
    STAT_ADD(opened, 1);
}

/* One asciicast event for text already JSON-escaped. */
static void cast_event(struct recording *r, double t, int dir, const char *text, size_t n)
{
    char pre[64];
    int k = snprintf(pre, sizeof pre, "[%.6f, \"%c\", \"", offset(r, t), dir ? 'o' : 'i');
    out_put(r, pre, (size_t)k);
    out_put(r, text, n);
    out_put(r, "\"]\n", 3);
}

/* One asciicast chunk through the buffer. */
static void cast_data(struct recording *r, const struct entry *e, const unsigned char *p)
{
    struct record_utf8 *st = &r->utf[e->dir ? 1 : 0];
    size_t done = 0, n;
    bool started = false;
    char pre[64];

    do {
        size_t slice = e->len - done < JSON_SLICE ? e->len - done : JSON_SLICE;
        n = record_json_text(st, p + done, slice, w.json, sizeof w.json);
        done += slice;
        if (n == 0)
            continue;
        if (!started) {
            int k =
                snprintf(pre, sizeof pre, "[%.6f, \"%c\", \"", offset(r, e->t), e->dir ? 'o' : 'i');
            out_put(r, pre, (size_t)k);
            started = true;
        }
        out_put(r, w.json, n);
    } while (done < e->len);
    if (started)
        out_put(r, "\"]\n", 3);
    w.payload += e->len; /* counted by out_flush() */
}

/* Add the chunk at ring offset off (or only r, off == SIZE_MAX) to the batch. */
static void batch_add(struct recording *r, size_t off)
{
    if (!r->in_batch) {
        r->in_batch = true;
        r->bfirst = r->blast = -1;
        r->bnext = NULL;
        if (w.batch_last)
            w.batch_last->bnext = r;
        else
            w.batch = r;
        w.batch_last = r;
    }
    if (off == SIZE_MAX)
        return;
    int i = w.nslots++;
    w.slots[i].off = off;
    w.slots[i].next = -1;
    if (r->blast >= 0)
        w.slots[r->blast].next = i;
    else
        r->bfirst = i;
    r->blast = i;
}

/* The raw format's line for the chunk e of r, into sl->line; its length. */
static size_t chunk_line(const struct recording *r, struct slot *sl, const struct entry *e)
{
    return (size_t)snprintf(sl->line, sizeof sl->line, "+%.6f %c %u\n", offset(r, e->t),
                            e->dir ? 'o' : 'i', e->len);
}

/* ---- direct writes ----
 * A big recording's batches bypass the page cache altogether: its bytes are
 * copied into the stage (aligned) after the file's last partial block (read
 * back), the whole blocks are written with O_DIRECT, and the rest is
 * appended through the cache, so the file holds every byte after each batch
 * (an idle session leaves nothing behind in wsgate's memory). This skips the
 * filesystem's per-page work of a buffered write, its writeback and the
 * drop: on ext4 here about two thirds of the writer's CPU. O_DIRECT is
 * switched on and off with fcntl(2) around each write; a filesystem that
 * refuses it (EINVAL) leaves that file buffered. */

/* Begin staging for r: the file's last partial block into the stage. */
static bool stage_begin(struct recording *r)
{
    w.sbase = r->wpos & ~(uint64_t)(DIO_ALIGN - 1);
    w.sold = w.sn = (size_t)(r->wpos - w.sbase);
    if (w.sold == 0)
        return true;
    ssize_t k = pread(r->fd, w.stage, w.sold, (off_t)w.sbase);
    if (k == (ssize_t)w.sold)
        return true;
    writer_fail(r, "cannot read back the last block", k < 0 ? errno : EIO);
    return false;
}

/* Write the stage's whole blocks with O_DIRECT, and at the end (last) its
 * remainder through the cache; keep the remainder staged otherwise. */
static bool stage_flush(struct recording *r, bool last)
{
    size_t e = w.sn & ~(size_t)(DIO_ALIGN - 1);
    if (e > 0 && !r->no_direct) {
        ssize_t k = -1;
        if (fcntl(r->fd, F_SETFL, O_DIRECT) == 0) {
            do
                k = pwrite(r->fd, w.stage, e, (off_t)w.sbase);
            while (k < 0 && errno == EINTR);
            int err = errno;
            (void)fcntl(r->fd, F_SETFL, O_APPEND);
            errno = err;
        }
        if ((k < 0 && errno != EINVAL) || (k >= 0 && k != (ssize_t)e)) {
            writer_fail(r, "write failed", k < 0 ? errno : ENOSPC); /* short: full */
            return false;
        }
        if (k == (ssize_t)e) {
            if (w.sbase + e > r->wpos)
                r->wpos = w.sbase + e;
            behind_direct(r, w.sbase, w.sbase + e);
            STAT_ADD(bytes_direct, e - w.sold);
            memmove(w.stage, w.stage + e, w.sn - e);
            w.sn -= e;
            w.sbase += e;
            w.sold = 0;
        } else {
            r->no_direct = true; /* EINVAL: the rest is appended */
        }
    }
    if (r->no_direct || last) {
        write_all(r, (char *)w.stage + w.sold, w.sn - w.sold);
        w.sold = w.sn;
        if (!last && r->fd >= 0 && stage_begin(r)) /* r->no_direct: start over */
            return true;
        /* The partial last block, now dirty in the cache, is rewritten by
         * the next direct write, which would first have to wait for its
         * writeback: start that now, while the writer copies the next batch. */
        if (last && !r->no_direct && w.sn > 0 && r->fd >= 0)
            (void)sync_file_range(r->fd, (off_t)w.sbase, (off_t)w.sn, SYNC_FILE_RANGE_WRITE);
    }
    return r->fd >= 0;
}

/* Append len bytes to r's stage, writing when it is full. */
static bool stage_put(struct recording *r, const void *p, size_t len)
{
    while (len > 0) {
        size_t k = STAGE_SIZE - w.sn < len ? STAGE_SIZE - w.sn : len;
        memcpy(w.stage + w.sn, p, k);
        w.sn += k;
        p = (const char *)p + k;
        len -= k;
        if (w.sn == STAGE_SIZE && !stage_flush(r, false))
            return false;
    }
    return true;
}

/* Write the stage of the batch's last direct recording (stage_flush()) and
 * count its payload. The writer calls it before it touches any other file,
 * and after it has released the batch's ring space: so the workers fill the
 * ring again while the writer waits for the disk. */
static void stage_finish(void)
{
    struct recording *r = w.staged;
    if (r == NULL)
        return;
    w.staged = NULL;
    if (r->fd >= 0 && stage_flush(r, true))
        STAT_ADD(bytes_written, w.staged_payload);
    else
        STAT_ADD(bytes_dropped, w.staged_payload);
}

/* r's chunks of the batch as batch_write_raw() writes them, staged (a full
 * stage is written on the way, the rest by stage_finish()); false when r
 * stopped. */
static bool batch_write_direct(struct recording *r)
{
    static const char nl[] = "\n";
    bool ok = stage_begin(r);

    if (ok && r->header_due)
        ok = stage_put(r, r->header, strlen(r->header));
    r->header_due = false;
    for (int i = r->bfirst; ok && i >= 0; i = w.slots[i].next) {
        struct slot *sl = &w.slots[i];
        struct entry e;
        memcpy(&e, q.ring + sl->off, sizeof e);
        ok = stage_put(r, sl->line, chunk_line(r, sl, &e)) &&
             stage_put(r, q.ring + sl->off + sizeof e, e.len) && stage_put(r, nl, 1);
    }
    return ok;
}

/* The payload bytes of r's batch when it is to be written direct (r is
 * past its first write-behind step, the batch is at least DIO_MIN, the
 * stage exists), else 0. */
static uint64_t direct_bytes(struct recording *r)
{
    uint64_t bytes = 0;
    if (r->no_direct || r->wpos < RECORD_WRITE_BEHIND)
        return 0;
    for (int i = r->bfirst; i >= 0; i = w.slots[i].next) {
        struct entry e;
        memcpy(&e, q.ring + w.slots[i].off, sizeof e);
        bytes += e.len;
    }
    if (bytes < DIO_MIN)
        return 0;
    if (w.stage == NULL && posix_memalign((void **)&w.stage, DIO_ALIGN, STAGE_SIZE) != 0) {
        w.stage = NULL;
        return 0;
    }
    return bytes;
}

/* Write r's chunks of the batch in the raw format: one writev(2) (per
 * IOV_BATCH iovecs) of the header when due, then for each chunk its line,
 * its payload straight from the ring and a newline. */
static void batch_write_raw(struct recording *r)
{
    static const char nl[] = "\n";
    uint64_t payload = 0, bytes = 0;
    int n = 0;
    bool ok = file_ready(r);

    if (ok && (bytes = direct_bytes(r)) > 0) {
        if (batch_write_direct(r)) {
            w.staged = r;
            w.staged_payload = bytes;
        } else {
            STAT_ADD(bytes_dropped, bytes); /* all of the batch, as below */
        }
        return;
    }

    if (ok && r->header_due)
        w.iov[n++] = (struct iovec){r->header, strlen(r->header)};
    r->header_due = false;
    for (int i = r->bfirst; i >= 0; i = w.slots[i].next) {
        struct slot *sl = &w.slots[i];
        struct entry e;
        memcpy(&e, q.ring + sl->off, sizeof e);
        payload += e.len;
        if (!ok)
            continue;
        if (n + 3 > IOV_BATCH) {
            ok = writev_all(r, w.iov, n);
            n = 0;
        }
        w.iov[n++] = (struct iovec){sl->line, chunk_line(r, sl, &e)};
        w.iov[n++] = (struct iovec){q.ring + sl->off + sizeof e, e.len};
        w.iov[n++] = (struct iovec){(void *)nl, 1};
    }
    if (ok && n > 0)
        ok = writev_all(r, w.iov, n);
    if (ok)
        STAT_ADD(bytes_written, payload);
    else
        STAT_ADD(bytes_dropped, payload);
}

/* Write the batch, file by file, and empty it. */
static void batch_write(void)
{
    for (struct recording *r = w.batch; r != NULL; r = r->bnext) {
        r->in_batch = false;
        stage_finish(); /* before r's file may close another's (the LRU) */
        if (r->format == RECORD_RAW) {
            batch_write_raw(r);
            continue;
        }
        if (r->header_due)
            out_put(r, r->header, strlen(r->header));
        r->header_due = false;
        for (int i = r->bfirst; i >= 0; i = w.slots[i].next) {
            struct entry e;
            memcpy(&e, q.ring + w.slots[i].off, sizeof e);
            if (r->live)
                cast_data(r, &e, q.ring + w.slots[i].off + sizeof e);
            else
                STAT_ADD(bytes_dropped, e.len);
        }
        out_flush();
    }
    w.batch = w.batch_last = NULL;
    w.nslots = 0;
}

/* The last line and close(2); reason NULL for a normal end. */
static void writer_finish(struct recording *r, double t, const char *reason)
{
    if (!r->live)
        return;
    if (r->format == RECORD_RAW) {
        char line[96];
        int k = snprintf(line, sizeof line, "+%.6f stop %s\n", offset(r, t),
                         reason ? reason : "closed");
        out_put(r, line, (size_t)k);
    } else {
        for (int d = 0; d < 2; d++) {
            size_t n = record_json_text(&r->utf[d], NULL, 0, w.json, sizeof w.json);
            if (n > 0)
                cast_event(r, t, d, w.json, n);
        }
    }
    out_flush();
    int err = file_close(r);
    if (err && r->live)
        writer_fail(r, "close failed", err);
    r->live = false;
}

/* Handle the flags of the attention list taken with the last snapshot. */
static void writer_attend(struct recording *list)
{
    while (list != NULL) {
        struct recording *r = list;
        list = r->next;
        pthread_mutex_lock(&q.lock);
        unsigned want = r->want;
        r->want = 0;
        pthread_mutex_unlock(&q.lock);
        if ((want & W_FULL) && r->live) {
            writer_finish(r, r->stop_t, "queue-full");
            r->failed = true;
            STAT_ADD(stopped, 1);
            log_msg(WLOG_WARN,
                    "recording %s stopped: the recording queue is full; the session goes on",
                    r->path);
        }
        if (want & W_CLOSE) {
            writer_finish(r, r->close_t, NULL);
            pthread_mutex_lock(&q.lock);
            if (r->all_prev)
                r->all_prev->all_next = r->all_next;
            else
                q.all = r->all_next;
            if (r->all_next)
                r->all_next->all_prev = r->all_prev;
            pthread_mutex_unlock(&q.lock);
            free(r->path);
            free(r->header);
            free(r);
        }
    }
}

/* Process `used` bytes of entries from q.tail in batches: collect, write,
 * then release the batch's ring space. */
static void writer_drain(size_t used)
{
    size_t done = 0;

    while (done < used) {
        size_t taken = 0, pos = q.tail; /* producers change it only when used == 0 */
        while (done + taken < used && w.nslots < BATCH_SLOTS && taken < BATCH_BYTES) {
            size_t step;
            if (q.cap - pos < sizeof(struct entry)) {
                step = q.cap - pos;
            } else {
                struct entry e;
                memcpy(&e, q.ring + pos, sizeof e);
                step = e.kind == E_PAD ? sizeof e + e.len : sizeof e + ALIGN8(e.len);
                assert(e.kind <= E_DATA && step <= q.cap - pos && done + taken + step <= used);
                if (e.kind == E_OPEN) {
                    writer_open(e.r);
                    if (e.r->live)
                        batch_add(e.r, SIZE_MAX);
                } else if (e.kind == E_DATA) {
                    if (e.r->live)
                        batch_add(e.r, pos);
                    else
                        STAT_ADD(bytes_dropped, e.len);
                }
            }
            pos += step;
            if (pos == q.cap)
                pos = 0;
            taken += step;
        }
        batch_write();
        done += taken;
        pthread_mutex_lock(&q.lock);
        q.tail = pos;
        q.used -= taken;
        bool drained = q.congested && q.used <= q.cap / 4;
        if (drained)
            __atomic_store_n(&q.congested, 0, __ATOMIC_RELAXED);
        void (*hook)(void) = q.on_drained;
        pthread_mutex_unlock(&q.lock);
        if (drained && hook)
            hook();
        stage_finish();
    }
}

static bool has_work(void)
{
    return q.used > 0 || q.attention != NULL;
}

/* Under q.lock: wait until there is something to do and it has had a nap
 * to gather (unless a flush, the stop or wake_bytes() cut it short).
 * Returns false when stopping with nothing left. */
static bool writer_wait(void)
{
    for (;;) {
        while (q.held || (!has_work() && !q.stopping)) {
            q.sleeping = true;
            pthread_cond_wait(&q.wake, &q.lock);
            q.sleeping = false;
        }
        if (!has_work())
            return false; /* stopping */
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until); /* q.wake's clock */
        until.tv_nsec += BATCH_DELAY_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        q.napping = true;
        while (q.napping && !q.stopping && q.flushers == 0 && q.used < wake_bytes())
            if (pthread_cond_timedwait(&q.wake, &q.lock, &until) == ETIMEDOUT)
                break;
        q.napping = false;
        if (!q.held)
            return true;
    }
}

static void *writer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "wsgate-record"); /* top -H, tests */
    (void)arg;
    pthread_mutex_lock(&q.lock);
    while (writer_wait()) {
        size_t used = q.used;
        struct recording *list = q.attention;
        q.attention = NULL;
        for (struct recording *r = list; r != NULL; r = r->next)
            r->listed = false;
        q.busy = true;
        unsigned char *fresh = q.populate ? q.ring : NULL;
        q.populate = false;
        pthread_mutex_unlock(&q.lock);

        /* The whole ring's pages (8 MiB of RSS once a process records),
         * now and off the workers, rather than one fault at a time on the
         * workers' copies into it. Page tables only: the bytes producers
         * are writing meanwhile are left alone. */
        if (fresh)
            (void)madvise(fresh, q.cap, MADV_POPULATE_WRITE);
        writer_drain(used);
        writer_attend(list);

        pthread_mutex_lock(&q.lock);
        q.busy = false;
        pthread_cond_broadcast(&q.idle);
    }
    /* Recordings never closed: end their files, keep the handles. */
    for (struct recording *r = q.all; r != NULL; r = r->all_next) {
        pthread_mutex_unlock(&q.lock);
        writer_finish(r, r->start, "shutdown");
        pthread_mutex_lock(&q.lock);
    }
    pthread_cond_broadcast(&q.idle);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

/* Contract in record.h. */
int record_start(size_t queue_bytes)
{
    int rc;

    if (queue_bytes < 4096) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&q.lock);
    if (q.running) {
        pthread_mutex_unlock(&q.lock);
        errno = EALREADY;
        return -1;
    }
    q.cap = ALIGN8(queue_bytes);
    q.ring = NULL;
    q.head = q.used = q.tail = 0;
    q.stopping = q.held = q.busy = q.sleeping = q.napping = false;
    q.congested = 0;
    q.max_files = q.next_max_files;
    static bool monotonic; /* q.wake times its naps on CLOCK_MONOTONIC */
    if (!monotonic) {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_destroy(&q.wake);
        pthread_cond_init(&q.wake, &a);
        pthread_condattr_destroy(&a);
        monotonic = true;
    }
    memset(&q.stats, 0, sizeof q.stats);
    rc = pthread_create(&q.thread, NULL, writer_main, NULL);
    q.running = rc == 0;
    pthread_mutex_unlock(&q.lock);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* Contract in record.h. */
void record_stop(void)
{
    pthread_mutex_lock(&q.lock);
    if (!q.running) {
        pthread_mutex_unlock(&q.lock);
        return;
    }
    q.stopping = true;
    q.held = false;
    pthread_cond_signal(&q.wake);
    pthread_mutex_unlock(&q.lock);
    pthread_join(q.thread, NULL);
    pthread_mutex_lock(&q.lock);
    q.running = false;
    if (q.ring)
        munmap(q.ring, q.cap);
    q.ring = NULL;
    free(w.stage);
    w.stage = NULL;
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
void record_flush(void)
{
    pthread_mutex_lock(&q.lock);
    q.flushers++;
    if (q.napping) {
        q.napping = false;
        pthread_cond_signal(&q.wake);
    }
    while (q.running && (q.used > 0 || q.attention != NULL || q.busy))
        pthread_cond_wait(&q.idle, &q.lock);
    q.flushers--;
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
void record_get_stats(struct record_stats *out)
{
    out->opened = __atomic_load_n(&q.stats.opened, __ATOMIC_RELAXED);
    out->stopped = __atomic_load_n(&q.stats.stopped, __ATOMIC_RELAXED);
    out->bytes_written = __atomic_load_n(&q.stats.bytes_written, __ATOMIC_RELAXED);
    out->bytes_dropped = __atomic_load_n(&q.stats.bytes_dropped, __ATOMIC_RELAXED);
    out->reopened = __atomic_load_n(&q.stats.reopened, __ATOMIC_RELAXED);
    out->files_open = __atomic_load_n(&q.stats.files_open, __ATOMIC_RELAXED);
    out->bytes_direct = __atomic_load_n(&q.stats.bytes_direct, __ATOMIC_RELAXED);
}

/* Contract in record.h. */
void record_hold(int on)
{
    pthread_mutex_lock(&q.lock);
    q.held = on != 0;
    if (!q.held)
        pthread_cond_signal(&q.wake);
    pthread_mutex_unlock(&q.lock);
}

/* Contract in record.h. */
int record_open_files(unsigned n)
{
    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&q.lock);
    q.next_max_files = n;
    pthread_mutex_unlock(&q.lock);
    return 0;
}
