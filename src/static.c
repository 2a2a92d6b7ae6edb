/* static.c - serving files under web_root (contract in static.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const wdays[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void file_init(struct static_file *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->content_type = "application/octet-stream";
}

void static_close(struct static_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

/* Percent-decode the request path p[0..n) into out (cap bytes, NUL added).
 * Returns 0, or 400 for a bad escape, NUL or control byte, 403 for an
 * encoded '/' or any backslash, 404 when it does not fit. */
static int decode_path(const char *p, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t j = 0;
    if (n == 0 || p[0] != '/')
        return 400;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int encoded = 0;
        if (c == '%') {
            int hi = i + 2 < n ? http_hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? http_hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return 400;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            encoded = 1;
        }
        if (c == '\\' || (encoded && c == '/'))
            return 403;
        if (c < 0x20 || c == 0x7f)
            return 400;
        if (j + 1 >= cap)
            return 404;
        out[j++] = (char)c;
    }
    out[j] = '\0';
    *outlen = j;
    return 0;
}

/* Check the segments of a decoded path (starts with '/'): no empty segment
 * except after a final '/', no segment starting with '.' (".", ".." and
 * hidden names). Returns 0 or 403. */
static int check_segments(const char *d, size_t n)
{
    size_t i = 1;
    while (i < n) {
        const char *seg = d + i;
        const char *slash = memchr(seg, '/', n - i);
        size_t len = slash ? (size_t)(slash - seg) : n - i;
        if (len == 0 || seg[0] == '.')
            return 403;
        i += len + 1;
    }
    return 0;
}

/* True when resolved (a realpath) is the root root[0..rl) itself or lies
 * under it; rl == 0 is the root "/". */
static int under_root(const char *root, size_t rl, const char *resolved)
{
    if (rl == 0)
        return resolved[0] == '/';
    return strncmp(resolved, root, rl) == 0 && (resolved[rl] == '/' || resolved[rl] == '\0');
}

static int open_errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    case EACCES:
    case EPERM:
    case ELOOP:
        return 403;
    default:
        return 500;
    }
}

int static_open(const char *root, const char *path, size_t path_len, struct static_file *out)
{
    char full[PATH_MAX];
    size_t rl = strlen(root), dl;
    struct stat st, rst;

    file_init(out);
    out->path = path;
    out->path_len = path_len;
    if (rl == 0 || root[0] != '/')
        return 500;
    while (rl > 0 && root[rl - 1] == '/')
        rl--; /* "/srv/www/" is "/srv/www"; "/" leaves 0: the decoded path is the file path */
    if (rl >= sizeof(full))
        return 500;
    memcpy(full, root, rl);
    int r = decode_path(path, path_len, full + rl, sizeof(full) - rl, &dl);
    if (r == 0)
        r = check_segments(full + rl, dl);
    if (r != 0)
        return r;
    int want_dir = full[rl + dl - 1] == '/';
    if (want_dir) {
        static const char index[] = "index.html";
        if (rl + dl + sizeof(index) > sizeof(full))
            return 404;
        memcpy(full + rl + dl, index, sizeof(index));
    }

    /* O_NONBLOCK: a FIFO must not block the open; it is refused below. */
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return open_errno_status(errno);
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 500;
    }
    /* What was opened must be reachable under the root once every symlink
     * is resolved; comparing inodes closes the race with a path that changes
     * between the open and the check. */
    char *resolved = realpath(full, NULL);
    int inside = resolved && under_root(root, rl, resolved) && stat(resolved, &rst) == 0 &&
                 rst.st_dev == st.st_dev && rst.st_ino == st.st_ino;
    free(resolved);
    if (!inside) {
        close(fd);
        return 403;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return want_dir ? 404 : 301;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return 404;
    }
    out->fd = fd;
    out->size = (uint64_t)st.st_size;
    out->mtime = st.st_mtim.tv_sec;
    out->content_type = static_content_type(full);
    return 0;
}

static int method_is(const struct http_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->method_len == n && memcmp(req->method, m, n) == 0;
}

int static_request(const char *root, const struct http_request *req, struct static_file *f)
{
    int get = method_is(req, "GET"), head = method_is(req, "HEAD");
    file_init(f);
    f->path = req->path;
    f->path_len = req->path_len;
    f->query = req->query;
    f->query_len = req->query_len;
    f->head_only = head;
    if (!get && !head)
        return 405;
    int r = static_open(root, req->path, req->path_len, f);
    f->query = req->query; /* static_open reset them */
    f->query_len = req->query_len;
    f->head_only = head;
    if (r != 0)
        return r;
    const struct http_header *ims = http_find_header(req, "If-Modified-Since");
    if (ims && !http_find_header(req, "If-None-Match") &&
        static_not_modified(ims->value, ims->value_len, f->mtime)) {
        static_close(f);
        return 304;
    }
    return 200;
}

const char *static_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"txt", "text/plain; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"ico", "image/x-icon"},
        {"webp", "image/webp"},
        {"wasm", "application/wasm"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"xml", "application/xml"},
        {"pdf", "application/pdf"},
        {"oga", "audio/ogg"},
        {"mp3", "audio/mpeg"},
    };
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

size_t static_http_date(time_t t, char *out)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year < 0) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    return (size_t)snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday],
                            tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                            tm.tm_sec);
}

/* ---- If-Modified-Since ------------------------------------------------ */

struct scan {
    const char *p, *end;
};

static int scan_char(struct scan *s, char c)
{
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* Between min and max decimal digits into *v. */
static int scan_num(struct scan *s, int min, int max, int *v)
{
    int n = 0, k = 0;
    while (k < max && s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        n = n * 10 + (*s->p - '0');
        s->p++;
        k++;
    }
    *v = n;
    return k >= min;
}

static int scan_month(struct scan *s, int *mon)
{
    if (s->end - s->p < 3)
        return 0;
    for (int i = 0; i < 12; i++) {
        if (memcmp(s->p, months[i], 3) == 0) {
            *mon = i;
            s->p += 3;
            return 1;
        }
    }
    return 0;
}

/* "HH:MM:SS" */
static int scan_time(struct scan *s, struct tm *tm)
{
    return scan_num(s, 2, 2, &tm->tm_hour) && scan_char(s, ':') && scan_num(s, 2, 2, &tm->tm_min) &&
           scan_char(s, ':') && scan_num(s, 2, 2, &tm->tm_sec);
}

/* Parse an HTTP-date (RFC 9110 section 5.6.7) into *t. Returns 1 or 0. */
static int parse_http_date(const char *v, size_t len, time_t *t)
{
    struct scan s = {v, v + len};
    struct tm tm;
    int ok;
    memset(&tm, 0, sizeof(tm));
    while (s.p < s.end && ((*s.p >= 'A' && *s.p <= 'Z') || (*s.p >= 'a' && *s.p <= 'z')))
        s.p++; /* day name, not checked against the date */
    if (s.p == v)
        return 0;
    if (scan_char(&s, ',')) {
        if (!scan_char(&s, ' '))
            return 0;
        int day = 0, mon = 0, year = 0;
        if (!scan_num(&s, 2, 2, &day))
            return 0;
        if (scan_char(&s, ' ')) { /* IMF-fixdate: "06 Nov 1994 08:49:37 GMT" */
            ok = scan_month(&s, &mon) && scan_char(&s, ' ') && scan_num(&s, 4, 4, &year);
        } else { /* RFC 850: "06-Nov-94 08:49:37 GMT" */
            ok = scan_char(&s, '-') && scan_month(&s, &mon) && scan_char(&s, '-') &&
                 scan_num(&s, 2, 2, &year);
            year += year < 70 ? 2000 : 1900;
        }
        ok = ok && scan_char(&s, ' ') && scan_time(&s, &tm) && scan_char(&s, ' ') &&
             s.end - s.p == 3 && memcmp(s.p, "GMT", 3) == 0;
        tm.tm_mday = day;
        tm.tm_mon = mon;
        tm.tm_year = year - 1900;
    } else { /* asctime: "Nov  6 08:49:37 1994" */
        int day = 0, mon = 0, year = 0;
        ok = scan_char(&s, ' ') && scan_month(&s, &mon) && scan_char(&s, ' ');
        if (ok && s.p < s.end && *s.p == ' ') {
            s.p++;
            ok = scan_num(&s, 1, 1, &day);
        } else {
            ok = ok && scan_num(&s, 2, 2, &day);
        }
        ok = ok && scan_char(&s, ' ') && scan_time(&s, &tm) && scan_char(&s, ' ') &&
             scan_num(&s, 4, 4, &year) && s.p == s.end;
        if (ok) {
            tm.tm_mday = day;
            tm.tm_mon = mon;
            tm.tm_year = year - 1900;
        }
    }
    if (!ok || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return 0;
    *t = timegm(&tm);
    return 1;
}

int static_not_modified(const char *if_modified_since, size_t len, time_t mtime)
{
    time_t t;
    if (!if_modified_since || !parse_http_date(if_modified_since, len, &t))
        return 0;
    return mtime <= t;
}

/* ---- responses -------------------------------------------------------- */

struct out {
    char *p;
    size_t len, cap;
    int overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->overflow || o->len + n > o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->overflow = 1;
        return;
    }
    put(o, tmp, (size_t)n);
}

size_t static_response_head(const struct static_file *f, int status, char *out, size_t cap)
{
    struct out o = {out, 0, cap, 0};
    char date[30], lm[30];
    const char *reason = http_reason(status);
    static_http_date(time(NULL), date);

    putf(&o, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason, date);
    if (status == 200 || status == 304) {
        static_http_date(f->mtime, lm);
        if (status == 200)
            putf(&o, "Content-Type: %s\r\nContent-Length: %llu\r\n", f->content_type,
                 (unsigned long long)f->size);
        putf(&o, "Last-Modified: %s\r\n", lm);
        puts_(&o, "Cache-Control: no-cache\r\n"
                  "X-Content-Type-Options: nosniff\r\n"
                  "Connection: close\r\n\r\n");
    } else {
        char body[96];
        int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason);
        if (status == 301 && f->path) {
            /* The request path is echoed as sent (percent-encoding kept); it
             * starts with one '/' (no "//host" redirect) and has no CR/LF. */
            puts_(&o, "Location: ");
            put(&o, f->path, f->path_len);
            puts_(&o, "/");
            if (f->query) {
                puts_(&o, "?");
                put(&o, f->query, f->query_len);
            }
            puts_(&o, "\r\n");
        }
        if (status == 405)
            puts_(&o, "Allow: GET, HEAD\r\n");
        putf(&o,
             "Content-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %d\r\n"
             "Cache-Control: no-cache\r\n"
             "X-Content-Type-Options: nosniff\r\n"
             "Connection: close\r\n\r\n",
             blen);
        if (!f->head_only)
            put(&o, body, (size_t)blen);
    }
    return o.overflow ? 0 : o.len;
}
