/* log.c - text and JSON log lines on stderr, written by their own thread. */
#include "log.h"

#include "logq.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level_now = WLOG_INFO;
static int log_format_now = LOGF_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Set the process-wide level and format. */
void log_setup(enum log_level level, enum log_format format)
{
    __atomic_store_n(&log_level_now, (int)level, __ATOMIC_RELAXED);
    __atomic_store_n(&log_format_now, (int)format, __ATOMIC_RELAXED);
}

/* True when messages at level are written. */
int log_enabled(enum log_level level)
{
    return (int)level <= __atomic_load_n(&log_level_now, __ATOMIC_RELAXED);
}

/* A line under construction; too long lines are cut, never overflow. */
struct line {
    char b[2048];
    size_t n;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > sizeof(l->b) - 2 - l->n)
        n = sizeof(l->b) - 2 - l->n;
    memcpy(l->b + l->n, s, n);
    l->n += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(l->b) - 2 - l->n;
    va_start(ap, fmt);
    int k = vsnprintf(l->b + l->n, room + 1, fmt, ap);
    va_end(ap);
    if (k > 0)
        l->n += (size_t)k < room ? (size_t)k : room;
}

/* Append s as the inside of a JSON string (quotes, backslashes and control
 * characters escaped). */
static void put_json_str(struct line *l, const char *s)
{
    puts_(l, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20) {
            putf(l, "\\u%04x", c);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
    puts_(l, "\"");
}

/* Append s for a text line inside double quotes: quotes, backslashes and
 * control characters are escaped so no value can end a field or a line. */
static void put_text_str(struct line *l, const char *s)
{
    puts_(l, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c < 0x20 || c == 0x7f)
            putf(l, "\\x%02x", c);
        else
            put(l, (const char *)&c, 1);
    }
    puts_(l, "\"");
}

static void put_time(struct line *l)
{
    struct timeval tv;
    struct tm tm;
    char ts[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    putf(l, "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
}

/* Write p[0..n) to stderr in full (blocking). Returns 0, or -1 when stderr
 * failed (errno set). */
static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(STDERR_FILENO, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
            poll(&pfd, 1, 100); /* a stderr someone made non-blocking */
            continue;
        }
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- the queue and its writer thread ------------------------------------- */

enum { MODE_DIRECT, MODE_QUEUE, MODE_DEAD };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* lines queued, or stop */
    pthread_cond_t idle; /* the queue became empty */
    struct logq q;
    int mode;    /* MODE_*, changed under lock */
    int writing; /* the writer is inside write(2) with bytes it has not consumed */
    int stop;
    pthread_t thread;
} lg = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .wake = PTHREAD_COND_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER};

static char ring[LOG_QUEUE_BYTES];
static uint64_t dropped_total; /* mirrors lg.q.dropped for lock-free readers */

static void make_notice(struct line *l, uint64_t n);

/* Queue a finished line (lock held). */
static void enqueue_locked(const char *p, size_t n)
{
    struct line notice = {.n = 0};
    if (lg.q.gap > 0) {
        make_notice(&notice, lg.q.gap);
        notice.b[notice.n++] = '\n';
    }
    logq_push(&lg.q, notice.n ? notice.b : NULL, notice.n, p, n);
    __atomic_store_n(&dropped_total, lg.q.dropped, __ATOMIC_RELAXED);
    pthread_cond_signal(&lg.wake);
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lg.lock);
    for (;;) {
        if (lg.q.used == 0 && lg.q.gap > 0)
            enqueue_locked(NULL, 0); /* writing resumed: say how many went missing */
        if (lg.q.used == 0) {
            pthread_cond_broadcast(&lg.idle);
            if (lg.stop)
                break;
            pthread_cond_wait(&lg.wake, &lg.lock);
            continue;
        }
        size_t n;
        const char *p = logq_peek(&lg.q, &n);
        lg.writing = 1;
        pthread_mutex_unlock(&lg.lock);
        int rc = write_all(p, n); /* producers only fill free space: p stays valid */
        pthread_mutex_lock(&lg.lock);
        lg.writing = 0;
        if (lg.mode == MODE_DEAD)
            break; /* log_shutdown gave up on this thread: write nothing more */
        if (rc == 0) {
            logq_consume(&lg.q, n);
        } else {
            logq_discard(&lg.q); /* stderr is gone: count, do not spin */
            __atomic_store_n(&dropped_total, lg.q.dropped, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&lg.lock);
    return NULL;
}

int log_start(void)
{
    pthread_mutex_lock(&lg.lock);
    if (lg.mode == MODE_QUEUE) {
        pthread_mutex_unlock(&lg.lock);
        return 0;
    }
    logq_init(&lg.q, ring, sizeof(ring), LOG_QUEUE_LINES);
    lg.q.dropped = __atomic_load_n(&dropped_total, __ATOMIC_RELAXED);
    lg.stop = 0;
    int rc = pthread_create(&lg.thread, NULL, writer_main, NULL);
    if (rc == 0)
        lg.mode = MODE_QUEUE;
    pthread_mutex_unlock(&lg.lock);
    if (rc != 0)
        errno = rc;
    return rc == 0 ? 0 : -1;
}

int log_shutdown(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += LOG_SHUTDOWN_WAIT_MS / 1000;
    deadline.tv_nsec += (long)(LOG_SHUTDOWN_WAIT_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lg.lock);
    if (lg.mode != MODE_QUEUE) {
        pthread_mutex_unlock(&lg.lock);
        return 0;
    }
    while (lg.q.used > 0 || lg.q.gap > 0 || lg.writing) {
        if (pthread_cond_timedwait(&lg.idle, &lg.lock, &deadline) == ETIMEDOUT)
            break;
    }
    int drained = lg.q.used == 0 && lg.q.gap == 0 && !lg.writing;
    if (drained) {
        /* The writer waits on wake with nothing to do: it sees stop and ends. */
        lg.stop = 1;
        pthread_cond_signal(&lg.wake);
        lg.mode = MODE_DIRECT;
    } else {
        lg.mode = MODE_DEAD; /* stuck in write(2): leave it, drop what follows */
    }
    pthread_mutex_unlock(&lg.lock);
    if (drained)
        pthread_join(lg.thread, NULL);
    else
        pthread_detach(lg.thread);
    return drained ? 0 : -1;
}

uint64_t log_lines_dropped(void)
{
    return __atomic_load_n(&dropped_total, __ATOMIC_RELAXED);
}

/* Hand a finished line to the writer thread, or write it here before the
 * thread runs (and after a clean shutdown). */
static void emit(struct line *l)
{
    l->b[l->n++] = '\n';
    pthread_mutex_lock(&lg.lock);
    int mode = lg.mode;
    if (mode == MODE_QUEUE) {
        enqueue_locked(l->b, l->n);
    } else if (mode == MODE_DEAD) {
        lg.q.dropped++;
        __atomic_store_n(&dropped_total, lg.q.dropped, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&lg.lock);
    if (mode == MODE_DIRECT)
        write_all(l->b, l->n);
}

static int json_mode(void)
{
    return __atomic_load_n(&log_format_now, __ATOMIC_RELAXED) == LOGF_JSON;
}

/* A message line at level (without its newline). */
static void format_msg(struct line *l, enum log_level level, const char *msg)
{
    if (json_mode()) {
        puts_(l, "{\"time\":\"");
        put_time(l);
        putf(l, "\",\"level\":\"%s\",\"msg\":", level_names[level]);
        put_json_str(l, msg);
        puts_(l, "}");
    } else {
        put_time(l);
        putf(l, " %s: %s", level_names[level], msg);
    }
}

/* The "N log lines dropped" line (without its newline). */
static void make_notice(struct line *l, uint64_t n)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "%llu log lines dropped (stderr was not read fast enough)",
             (unsigned long long)n);
    format_msg(l, WLOG_WARN, msg);
}

/* Log a message at level. */
void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct line l = {.n = 0};
    format_msg(&l, level, msg);
    emit(&l);
}

/* Write the access-log line for a finished session. */
void log_access(const struct access_record *r)
{
    if (!log_enabled(WLOG_INFO))
        return;
    struct line l = {.n = 0};
    if (json_mode()) {
        puts_(&l, "{\"time\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"info\",\"msg\":\"access\",\"event\":\"session\",\"client\":");
        put_json_str(&l, r->client);
        if (r->peer) {
            puts_(&l, ",\"peer\":");
            put_json_str(&l, r->peer);
        }
        puts_(&l, ",\"route\":");
        put_json_str(&l, r->route);
        puts_(&l, ",\"backend\":");
        put_json_str(&l, r->backend);
        putf(&l,
             ",\"status\":%d,\"duration\":%.3f,\"bytes_up\":%llu,\"bytes_down\":%llu,"
             "\"close_code\":%d,\"closed_by\":",
             r->status, r->duration, (unsigned long long)r->bytes_up,
             (unsigned long long)r->bytes_down, r->close_code);
        put_json_str(&l, r->closed_by);
        puts_(&l, ",\"reason\":");
        put_json_str(&l, r->reason);
        if (r->client_name) {
            puts_(&l, ",\"client_cert\":");
            put_json_str(&l, r->client_name);
        }
        puts_(&l, "}");
    } else {
        put_time(&l);
        putf(&l,
             " access: client=%s route=%s backend=%s status=%d duration=%.3f up=%llu down=%llu "
             "close=%d by=%s reason=",
             r->client, r->route, r->backend, r->status, r->duration,
             (unsigned long long)r->bytes_up, (unsigned long long)r->bytes_down, r->close_code,
             r->closed_by);
        put_text_str(&l, r->reason);
        if (r->client_name) {
            puts_(&l, " client_cert=");
            put_text_str(&l, r->client_name);
        }
        if (r->peer)
            putf(&l, " peer=%s", r->peer);
    }
    emit(&l);
}
