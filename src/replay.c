/* replay.c - `wsgate --replay FILE`: print a recording made by record.c.
 *
 * Raw recordings (.wsrec) are printed as their header lines, then each chunk
 * as a "[+SECONDS DIR LEN]" line followed by the payload bytes verbatim (and
 * a newline when the payload did not end with one), then the stop line.
 * asciicast files print the text of their "o" events (what the client saw).
 * A file that is neither, or that breaks its format, is refused with a
 * message naming the file and the line or offset. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "http.h"

#define MAX_HEADER_LINES 64

struct reader {
    FILE *in, *out, *err;
    const char *file;
    char *line;
    size_t cap;
    ssize_t len;     /* of line, without the newline; -1 at EOF */
    bool had_nl;     /* line ended with '\n' */
    long lineno;     /* of the line just read */
    long long where; /* byte offset of the line just read */
    long long pos;   /* bytes read so far */
};

static void next_line(struct reader *r)
{
    r->where = r->pos;
    r->len = getline(&r->line, &r->cap, r->in);
    if (r->len < 0) {
        r->lineno++; /* messages name the missing line */
        return;
    }
    r->pos += r->len;
    r->lineno++;
    r->had_nl = r->len > 0 && r->line[r->len - 1] == '\n';
    if (r->had_nl)
        r->line[--r->len] = '\0';
}

static int bad(struct reader *r, const char *fmt, const char *detail)
{
    fprintf(r->err, "wsgate: %s: line %ld (offset %lld): ", r->file, r->lineno, r->where);
    fprintf(r->err, fmt, detail);
    fputc('\n', r->err);
    return 1;
}

/* The raw format; the "WSREC 1" line has been read. */
static int replay_raw(struct reader *r)
{
    static const char *const fields[] = {
        "route: ", "client: ", "backend: ", "start: ", "session: "};
    char buf[65536];

    fprintf(r->out, "WSREC 1\n");
    for (size_t i = 0;; i++) {
        next_line(r);
        if (r->len < 0 || !r->had_nl)
            return bad(r, "%s", "the header is cut short");
        if (r->len == 0)
            break;
        if (i >= MAX_HEADER_LINES)
            return bad(r, "%s", "header too long (no empty line)");
        if (i < sizeof fields / sizeof fields[0] &&
            strncmp(r->line, fields[i], strlen(fields[i])) != 0)
            return bad(r, "expected '%s...'", fields[i]);
        fprintf(r->out, "%s\n", r->line);
    }
    for (;;) {
        double t;
        enum record_dir dir;
        uint64_t len;
        const char *reason;

        next_line(r);
        if (r->len < 0) {
            fprintf(r->err, "wsgate: %s: no stop line: the recording was cut short\n", r->file);
            return 0;
        }
        int kind = r->had_nl ? record_parse_chunk_line(r->line, &t, &dir, &len, &reason) : -1;
        if (kind < 0)
            return bad(r, "%s", "expected '+SECONDS i|o LENGTH' or '+SECONDS stop REASON'");
        if (kind == 1) {
            fprintf(r->out, "[+%.6f stop %s]\n", t, reason);
            next_line(r);
            if (r->len >= 0)
                return bad(r, "%s", "data after the stop line");
            return 0;
        }
        fprintf(r->out, "[+%.6f %c %llu]\n", t, dir == RECORD_OUT ? 'o' : 'i',
                (unsigned long long)len);
        int last = '\n';
        for (uint64_t left = len; left > 0;) {
            size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
            size_t got = fread(buf, 1, want, r->in);
            r->pos += (long long)got;
            fwrite(buf, 1, got, r->out);
            if (got > 0)
                last = (unsigned char)buf[got - 1];
            if (got < want)
                return bad(r, "%s", "chunk cut short (the recording was stopped by an error?)");
            left -= got;
        }
        int c = fgetc(r->in);
        r->pos++;
        if (c != '\n')
            return bad(r, "%s", "chunk not followed by a newline (wrong length?)");
        if (last != '\n')
            fputc('\n', r->out);
    }
}

/* Four hex digits at p. -1 when not. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = http_hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static void put_utf8(FILE *out, unsigned long cp)
{
    if (cp < 0x80) {
        fputc((int)cp, out);
    } else if (cp < 0x800) {
        fputc((int)(0xc0 | (cp >> 6)), out);
        fputc((int)(0x80 | (cp & 0x3f)), out);
    } else if (cp < 0x10000) {
        fputc((int)(0xe0 | (cp >> 12)), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3f)), out);
        fputc((int)(0x80 | (cp & 0x3f)), out);
    } else {
        fputc((int)(0xf0 | (cp >> 18)), out);
        fputc((int)(0x80 | ((cp >> 12) & 0x3f)), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3f)), out);
        fputc((int)(0x80 | (cp & 0x3f)), out);
    }
}

/* Decode the JSON string starting after its opening quote at *p, writing it
 * to out when out is not NULL; *p ends after the closing quote. 0 or -1. */
static int json_string(const char **p, FILE *out)
{
    const char *s = *p;

    for (;;) {
        unsigned char c = (unsigned char)*s++;
        if (c == '"')
            break;
        if (c == '\0' || c < 0x20)
            return -1;
        if (c != '\\') {
            if (out)
                fputc(c, out);
            continue;
        }
        c = (unsigned char)*s++;
        const char *simple = strchr("\"\\/bfnrt", c);
        if (c != '\0' && simple != NULL) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            if (out)
                fputc(map[simple - "\"\\/bfnrt"], out);
            continue;
        }
        if (c != 'u')
            return -1;
        long cp = hex4(s);
        if (cp < 0)
            return -1;
        s += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && s[0] == '\\' && s[1] == 'u') {
            long lo = hex4(s + 2);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s += 6;
            }
        }
        if (cp >= 0xd800 && cp <= 0xdfff)
            cp = 0xfffd; /* lone surrogate */
        if (out)
            put_utf8(out, (unsigned long)cp);
    }
    *p = s;
    return 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* asciicast v2; the header line is in r->line. */
static int replay_cast(struct reader *r)
{
    const char *v = strstr(r->line, "\"version\"");
    if (v == NULL || *(v = skip_ws(v + 9)) != ':' || *(v = skip_ws(v + 1)) != '2')
        return bad(r, "%s", "not an asciicast v2 header (no \"version\": 2)");
    for (;;) {
        next_line(r);
        if (r->len < 0)
            return 0;
        if (r->len == 0)
            continue;
        const char *p = skip_ws(r->line);
        char *end;
        if (*p++ != '[')
            return bad(r, "%s", "expected an event [time, code, data]");
        errno = 0;
        double t = strtod(skip_ws(p), &end);
        if (end == skip_ws(p) || errno != 0 || t < 0)
            return bad(r, "%s", "bad event time");
        p = skip_ws(end);
        if (*p++ != ',' || *(p = skip_ws(p)) != '"')
            return bad(r, "%s", "expected the event code");
        bool output = strncmp(p, "\"o\"", 3) == 0;
        p++;
        if (json_string(&p, NULL) < 0)
            return bad(r, "%s", "bad event code");
        p = skip_ws(p);
        if (*p++ != ',' || *(p = skip_ws(p)) != '"')
            return bad(r, "%s", "expected the event data string");
        p++;
        /* check before printing, so a bad line prints nothing */
        const char *q = p;
        if (json_string(&q, NULL) < 0 || *(q = skip_ws(q)) != ']' || *skip_ws(q + 1) != '\0')
            return bad(r, "%s", "bad event data");
        if (output)
            json_string(&p, r->out);
    }
}

/* Contract in record.h. */
int record_replay(const char *file, FILE *out, FILE *errout)
{
    struct reader r = {.out = out, .err = errout, .file = file};
    int rc;

    r.in = fopen(file, "rb");
    if (r.in == NULL) {
        fprintf(errout, "wsgate: %s: %s\n", file, strerror(errno));
        return 1;
    }
    next_line(&r);
    if (r.len >= 0 && r.had_nl && strcmp(r.line, "WSREC 1") == 0)
        rc = replay_raw(&r);
    else if (r.len > 0 && r.line[0] == '{')
        rc = replay_cast(&r);
    else
        rc = bad(&r, "%s", "not a wsgate recording (no 'WSREC 1' line) nor an asciicast file");
    if (rc == 0 && ferror(r.in)) {
        fprintf(errout, "wsgate: %s: %s\n", file, strerror(errno));
        rc = 1;
    }
    free(r.line);
    fclose(r.in);
    if (rc == 0 && fflush(out) != 0) {
        fprintf(errout, "wsgate: writing the output: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}
