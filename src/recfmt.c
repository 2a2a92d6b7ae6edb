/* recfmt.c - the recording file formats, pure. Contracts in recfmt.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "recfmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* JSON text for one code point (escaped when ASCII needs it). */
static size_t put_cp(char *o, uint32_t cp)
{
    static const char hex[] = "0123456789abcdef";

    if (cp < 0x80) {
        switch (cp) {
        case '"':
            memcpy(o, "\\\"", 2);
            return 2;
        case '\\':
            memcpy(o, "\\\\", 2);
            return 2;
        case '\b':
            memcpy(o, "\\b", 2);
            return 2;
        case '\f':
            memcpy(o, "\\f", 2);
            return 2;
        case '\n':
            memcpy(o, "\\n", 2);
            return 2;
        case '\r':
            memcpy(o, "\\r", 2);
            return 2;
        case '\t':
            memcpy(o, "\\t", 2);
            return 2;
        default:
            break;
        }
        if (cp < 0x20 || cp == 0x7f) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[cp >> 4];
            o[5] = hex[cp & 15];
            return 6;
        }
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Contract in recfmt.h. */
void record_utf8_init(struct record_utf8 *st)
{
    st->cp = 0;
    st->need = st->seen = 0;
    st->lower = 0x80;
    st->upper = 0xbf;
}

/* Contract in record.h. The WHATWG UTF-8 decoder, one byte at a time. */
size_t record_json_text(struct record_utf8 *st, const unsigned char *in, size_t len, char *out,
                        size_t cap)
{
    size_t n = 0;

    if (cap < 6 * len + 6)
        return 0;
    if (st->lower == 0)
        record_utf8_init(st);
    if (in == NULL) {
        if (st->need != 0)
            n += put_cp(out + n, 0xfffd);
        record_utf8_init(st);
        return n;
    }
    for (size_t i = 0; i < len;) {
        unsigned b = in[i];
        if (st->need == 0) {
            i++;
            if (b < 0x80) {
                n += put_cp(out + n, b);
            } else if (b >= 0xc2 && b <= 0xdf) {
                st->need = 1;
                st->cp = b & 0x1f;
            } else if (b >= 0xe0 && b <= 0xef) {
                if (b == 0xe0)
                    st->lower = 0xa0;
                if (b == 0xed)
                    st->upper = 0x9f;
                st->need = 2;
                st->cp = b & 0xf;
            } else if (b >= 0xf0 && b <= 0xf4) {
                if (b == 0xf0)
                    st->lower = 0x90;
                if (b == 0xf4)
                    st->upper = 0x8f;
                st->need = 3;
                st->cp = b & 0x7;
            } else {
                n += put_cp(out + n, 0xfffd);
            }
            continue;
        }
        if (b < st->lower || b > st->upper) {
            record_utf8_init(st);
            n += put_cp(out + n, 0xfffd);
            continue; /* the byte starts over */
        }
        i++;
        st->lower = 0x80;
        st->upper = 0xbf;
        st->cp = (st->cp << 6) | (b & 0x3f);
        if (++st->seen == st->need) {
            n += put_cp(out + n, st->cp);
            record_utf8_init(st);
        }
    }
    return n;
}

/* Digits at *p into *v (at most max); advances *p. 0 or -1. */
static int take_digits(const char **p, uint64_t *v, uint64_t max)
{
    const char *s = *p;
    uint64_t n = 0;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        n = n * 10 + (uint64_t)(*s - '0');
        if (n > max)
            return -1;
    }
    *p = s;
    *v = n;
    return 0;
}

/* Contract in record.h. */
int record_parse_chunk_line(const char *line, double *t, enum record_dir *dir, uint64_t *len,
                            const char **reason)
{
    const char *p = line;
    uint64_t sec, frac = 0;
    double scale = 1;

    if (*p++ != '+' || take_digits(&p, &sec, 1ull << 40) < 0)
        return -1;
    if (*p == '.') {
        p++;
        const char *f = p;
        if (take_digits(&p, &frac, 999999999ull) < 0)
            return -1;
        for (; f < p; f++)
            scale *= 10;
    }
    *t = (double)sec + (double)frac / scale;
    if (*p++ != ' ')
        return -1;
    if (strncmp(p, "stop ", 5) == 0 && p[5] != '\0') {
        *reason = p + 5;
        return 1;
    }
    if ((p[0] != 'i' && p[0] != 'o') || p[1] != ' ')
        return -1;
    *dir = p[0] == 'i' ? RECORD_IN : RECORD_OUT;
    p += 2;
    if (take_digits(&p, len, UINT32_MAX) < 0 || *p != '\0')
        return -1;
    return 0;
}

/* Copy s into o replacing control characters and (in quoted JSON) escaping;
 * at most max bytes of s. Returns bytes written. */
static size_t clean_text(const char *s, char *o, size_t max)
{
    size_t n = 0;

    for (; *s && n < max; s++)
        o[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    return n;
}

/* Contract in recfmt.h. */
char *record_header(enum record_format format, const char *route, const char *client,
                    const char *backend, double start, const char *id)
{
    char r[256], c[256], b[512], stamp[64];
    time_t sec = (time_t)start;
    struct tm tm;
    char *out = NULL;
    long usec = (long)((start - (double)sec) * 1e6);

    if (usec < 0)
        usec = 0;
    if (usec > 999999)
        usec = 999999;
    r[clean_text(route, r, sizeof r - 1)] = '\0';
    c[clean_text(client ? client : "-", c, sizeof c - 1)] = '\0';
    b[clean_text(backend ? backend : "-", b, sizeof b - 1)] = '\0';
    gmtime_r(&sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (format == RECORD_RAW) {
        if (asprintf(&out,
                     "WSREC 1\nroute: %s\nclient: %s\nbackend: %s\nstart: %s.%06ldZ\n"
                     "session: %s\n\n",
                     r, c, b, stamp, usec, id) < 0)
            return NULL;
        return out;
    }
    char title[1200], esc[6 * sizeof title + 6];
    struct record_utf8 st = {0};
    snprintf(title, sizeof title, "wsgate %s: %s -> %s", r, c, b);
    size_t n = record_json_text(&st, (const unsigned char *)title, strlen(title), esc, sizeof esc);
    n += record_json_text(&st, NULL, 0, esc + n, sizeof esc - n);
    esc[n] = '\0';
    if (asprintf(&out,
                 "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": %lld, "
                 "\"title\": \"%s\"}\n",
                 (long long)sec, esc) < 0)
        return NULL;
    return out;
}
