/* log.c - text and JSON log lines on stderr. */
#include "log.h"

#include <errno.h>
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

static void emit(struct line *l)
{
    l->b[l->n++] = '\n';
    const char *p = l->b;
    size_t left = l->n;
    while (left > 0) {
        ssize_t k = write(STDERR_FILENO, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        left -= (size_t)k;
    }
}

static int json_mode(void)
{
    return __atomic_load_n(&log_format_now, __ATOMIC_RELAXED) == LOGF_JSON;
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
    if (json_mode()) {
        puts_(&l, "{\"time\":\"");
        put_time(&l);
        putf(&l, "\",\"level\":\"%s\",\"msg\":", level_names[level]);
        put_json_str(&l, msg);
        puts_(&l, "}");
    } else {
        put_time(&l);
        putf(&l, " %s: %s", level_names[level], msg);
    }
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
        puts_(&l, "\",\"level\":\"info\",\"event\":\"session\",\"client\":");
        put_json_str(&l, r->client);
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
    }
    emit(&l);
}
