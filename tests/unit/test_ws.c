/* test_ws.c - unit tests for the RFC 6455 codec in src/ws.c: the streaming
 * decoder fed whole, byte by byte and split at every point, UTF-8 validation
 * (Autobahn TestSuite section 6 sequences and an exhaustive comparison with a
 * reference validator), close rules, max_message, the encoder and base64. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

/* ---- helpers ------------------------------------------------------------ */

#define FIN 0x80
#define NOPOS ((size_t)-1)

static uint64_t rng = UINT64_C(0x9E3779B97F4A7C15);

/* xorshift64*: deterministic pseudo-random numbers. */
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(0x2545F4914F6CDD1D);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

static void rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 32);
}

/* A random mask with no zero byte, so a missing unmask can not go unseen. */
static void rnd_mask(uint8_t m[4])
{
    for (int i = 0; i < 4; i++)
        m[i] = (uint8_t)(1 + rnd_below(255));
}

/* Write a client frame header. lenenc: 0 minimal, 1 7-bit, 2 16-bit,
 * 8 64-bit. Returns its length. */
static size_t mkhdr(uint8_t *out, uint8_t b0, bool masked, const uint8_t mask[4], uint64_t len,
                    int lenenc)
{
    size_t h = 0;
    uint8_t mbit = masked ? 0x80 : 0;

    if (lenenc == 0)
        lenenc = len < 126 ? 1 : len <= 0xFFFF ? 2 : 8;
    out[h++] = b0;
    if (lenenc == 1) {
        out[h++] = (uint8_t)(mbit | len);
    } else if (lenenc == 2) {
        out[h++] = mbit | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[h++] = (uint8_t)(len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(out + h, mask, 4);
        h += 4;
    }
    return h;
}

/* Write a whole client frame with a random mask (masked by hand, not with
 * ws_unmask). Returns its length. */
static size_t mkframe_ex(uint8_t *out, uint8_t b0, bool masked, int lenenc, const void *payload,
                         size_t len)
{
    uint8_t mask[4];
    const uint8_t *p = payload;

    rnd_mask(mask);
    size_t h = mkhdr(out, b0, masked, mask, len, lenenc);
    for (size_t i = 0; i < len; i++)
        out[h + i] = (uint8_t)(p[i] ^ (masked ? mask[i & 3] : 0));
    return h + len;
}

static size_t mkframe(uint8_t *out, uint8_t b0, const void *payload, size_t len)
{
    return mkframe_ex(out, b0, true, 0, payload, len);
}

/* What a decoder run produced. Data is checked against expect as it comes;
 * messages, control frames and errors are written to trace:
 * "T<len>;" / "B<len>;" a text/binary message ended, "P:<payload>;" ping,
 * "O:<payload>;" pong, "C<code>:<reason>;" close, "E<code>;" error. */
struct result {
    const uint8_t *expect;
    size_t expect_len;
    size_t got;    /* data bytes delivered */
    bool mismatch; /* some delivered byte differed from expect */
    size_t msg_len;
    int msg_op;
    size_t data_events;
    char trace[2048];
    size_t trace_len;
    bool error;
    uint16_t err_code;
    size_t err_at; /* stream offset of the end of the bytes consumed with the error */
    size_t fed;    /* bytes given in earlier feed() calls */
    uint8_t ctl[WS_MAX_CONTROL];
    size_t ctl_len;
    uint8_t *sink; /* if set, data is stored here (sink_cap bytes) instead of compared */
    size_t sink_cap;
};

static void tracef(struct result *r, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof r->trace - r->trace_len;

    va_start(ap, fmt);
    int n = vsnprintf(r->trace + r->trace_len, room, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < room);
    r->trace_len += (size_t)n;
}

static void result_init(struct result *r, const uint8_t *expect, size_t expect_len)
{
    memset(r, 0, sizeof *r);
    r->expect = expect;
    r->expect_len = expect_len;
}

/* Feed buf[0..len) as one read: call ws_decode until it returns WS_EV_NONE
 * (or an error), checking the API contract on every event. */
static void feed(struct ws_decoder *d, uint8_t *buf, size_t len, struct result *r)
{
    size_t pos = 0;

    if (r->error)
        return;
    for (;;) {
        struct ws_event ev;
        memset(&ev, 0x5A, sizeof ev);
        size_t n = ws_decode(d, buf + pos, len - pos, &ev);
        assert_true(n <= len - pos);
        if (ev.type == WS_EV_NONE) {
            assert_int_equal(n, len - pos);
            r->fed += len;
            return;
        }
        if (ev.type == WS_EV_ERROR) {
            assert_non_null(ev.reason);
            assert_true(ev.close_code == WS_CLOSE_PROTOCOL || ev.close_code == WS_CLOSE_BAD_DATA ||
                        ev.close_code == WS_CLOSE_TOO_BIG);
            r->error = true;
            r->err_code = ev.close_code;
            r->err_at = r->fed + pos + n;
            tracef(r, "E%u;", ev.close_code);
            /* The decoder stays failed and consumes nothing. */
            for (int i = 0; i < 2; i++) {
                struct ws_event ev2;
                size_t n2 = ws_decode(d, buf + pos + n, len - pos - n, &ev2);
                assert_int_equal(n2, 0);
                assert_int_equal(ev2.type, WS_EV_ERROR);
                assert_int_equal(ev2.close_code, ev.close_code);
                assert_non_null(ev2.reason);
            }
            r->fed += len;
            return;
        }
        assert_true(n > 0); /* progress on every event */
        if (ev.type == WS_EV_DATA) {
            assert_true(ev.off <= n && ev.len <= n - ev.off);
            assert_true(ev.len > 0 || ev.fin);
            assert_true(ev.opcode == WS_OP_TEXT || ev.opcode == WS_OP_BINARY);
            if (r->msg_op == 0)
                r->msg_op = ev.opcode;
            assert_int_equal(r->msg_op, ev.opcode);
            if (r->sink) {
                assert_true(ev.len <= r->sink_cap - r->got);
                memcpy(r->sink + r->got, buf + pos + ev.off, ev.len);
            } else if (r->got > r->expect_len || ev.len > r->expect_len - r->got ||
                       memcmp(buf + pos + ev.off, r->expect + r->got, ev.len) != 0) {
                r->mismatch = true;
            }
            r->got += ev.len;
            r->msg_len += ev.len;
            r->data_events++;
            if (ev.fin) {
                tracef(r, "%c%zu;", ev.opcode == WS_OP_TEXT ? 'T' : 'B', r->msg_len);
                r->msg_len = 0;
                r->msg_op = 0;
            }
        } else {
            assert_int_equal(ev.type, WS_EV_CONTROL);
            assert_true(d->ctl_len <= WS_MAX_CONTROL);
            memcpy(r->ctl, d->ctl, d->ctl_len);
            r->ctl_len = d->ctl_len;
            const char *c = (const char *)d->ctl;
            int cl = (int)d->ctl_len;
            switch (ev.opcode) {
            case WS_OP_PING:
                tracef(r, "P:%.*s;", cl, c);
                break;
            case WS_OP_PONG:
                tracef(r, "O:%.*s;", cl, c);
                break;
            case WS_OP_CLOSE:
                tracef(r, "C%u:%.*s;", ev.close_code, cl >= 2 ? cl - 2 : 0, cl >= 2 ? c + 2 : c);
                break;
            default:
                fail_msg("control event with opcode %d", ev.opcode);
            }
        }
        pos += n;
    }
}

/* Decode a copy of in[0..n) fed as reads ending at cuts[0..ncuts) and n. */
static void decode_cuts(const uint8_t *in, size_t n, uint64_t max, const size_t *cuts, size_t ncuts,
                        struct result *r)
{
    uint8_t *work = malloc(n ? n : 1);
    struct ws_decoder d;
    size_t prev = 0;

    assert_non_null(work);
    memcpy(work, in, n);
    ws_decoder_init(&d, max);
    for (size_t i = 0; i < ncuts; i++) {
        assert_true(cuts[i] >= prev && cuts[i] <= n);
        feed(&d, work + prev, cuts[i] - prev, r);
        prev = cuts[i];
    }
    feed(&d, work + prev, n - prev, r);
    free(work);
}

static void decode_whole(const uint8_t *in, size_t n, uint64_t max, struct result *r)
{
    decode_cuts(in, n, max, NULL, 0, r);
}

/* Reads of `step` bytes (1 = byte by byte). */
static void decode_steps(const uint8_t *in, size_t n, uint64_t max, size_t step, struct result *r)
{
    uint8_t *work = malloc(n ? n : 1);
    struct ws_decoder d;

    assert_non_null(work);
    memcpy(work, in, n);
    ws_decoder_init(&d, max);
    feed(&d, work, 0, r); /* an empty read is harmless */
    for (size_t i = 0; i < n; i += step)
        feed(&d, work + i, n - i < step ? n - i : step, r);
    free(work);
}

/* Reads of random sizes in [1, maxstep]. */
static void decode_random_reads(const uint8_t *in, size_t n, uint64_t max, size_t maxstep,
                                struct result *r)
{
    uint8_t *work = malloc(n ? n : 1);
    struct ws_decoder d;

    assert_non_null(work);
    memcpy(work, in, n);
    ws_decoder_init(&d, max);
    for (size_t i = 0; i < n;) {
        size_t step = 1 + rnd_below(maxstep);
        if (step > n - i)
            step = n - i;
        feed(&d, work + i, step, r);
        i += step;
    }
    free(work);
}

static void assert_same(const struct result *want, const struct result *got)
{
    assert_string_equal(want->trace, got->trace);
    assert_int_equal(want->got, got->got);
    assert_false(got->mismatch);
    assert_int_equal(want->error, got->error);
    assert_int_equal(want->err_code, got->err_code);
}

/* Decode whole, byte by byte, in random reads and split in two at every
 * position; each must give want_trace and the expected data. */
static void check_all_splits(const uint8_t *in, size_t n, uint64_t max, const uint8_t *expect,
                             size_t expect_len, const char *want_trace)
{
    struct result ref, r;

    result_init(&ref, expect, expect_len);
    decode_whole(in, n, max, &ref);
    assert_string_equal(ref.trace, want_trace);
    assert_false(ref.mismatch);
    if (!ref.error)
        assert_int_equal(ref.got, expect_len);

    result_init(&r, expect, expect_len);
    decode_steps(in, n, max, 1, &r);
    assert_same(&ref, &r);

    result_init(&r, expect, expect_len);
    decode_random_reads(in, n, max, 17, &r);
    assert_same(&ref, &r);

    for (size_t k = 0; k <= n; k++) {
        result_init(&r, expect, expect_len);
        decode_cuts(in, n, max, &k, 1, &r);
        assert_same(&ref, &r);
    }
}

/* Decode in[0..n) whole, byte by byte and at every split: each must fail
 * with code. fail_byte: index of the byte that must trigger the error when
 * fed byte by byte (NOPOS: do not check). */
static void expect_error(const uint8_t *in, size_t n, uint64_t max, uint16_t code, size_t fail_byte)
{
    struct result r;

    result_init(&r, NULL, 0);
    decode_whole(in, n, max, &r);
    assert_true(r.error);
    assert_int_equal(r.err_code, code);

    result_init(&r, NULL, 0);
    decode_steps(in, n, max, 1, &r);
    assert_true(r.error);
    assert_int_equal(r.err_code, code);
    if (fail_byte != NOPOS)
        assert_int_equal(r.err_at, fail_byte + 1);

    for (size_t k = 0; k <= n; k++) {
        result_init(&r, NULL, 0);
        decode_cuts(in, n, max, &k, 1, &r);
        assert_true(r.error);
        assert_int_equal(r.err_code, code);
    }
}

/* A growing byte stream of client frames and the data they carry. */
struct stream {
    uint8_t buf[16384];
    size_t len;
    uint8_t data[16384];
    size_t data_len;
};

static void s_frame_ex(struct stream *s, uint8_t b0, int lenenc, const void *p, size_t n)
{
    assert_true(s->len + WS_MAX_HEADER + n <= sizeof s->buf);
    s->len += mkframe_ex(s->buf + s->len, b0, true, lenenc, p, n);
    if ((b0 & 0x0F) < 8) {
        assert_true(s->data_len + n <= sizeof s->data);
        if (n)
            memcpy(s->data + s->data_len, p, n);
        s->data_len += n;
    }
}

static void s_frame(struct stream *s, uint8_t b0, const char *text)
{
    s_frame_ex(s, b0, 0, text, strlen(text));
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Reference validator, written independently of the DFA: -1 when the bytes
 * can not start valid UTF-8, 0 when complete, 1 when a valid prefix. */
static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        size_t k;
        for (k = 1; k <= need && i + k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i + k] & 0x3F);
            /* every completion of the bytes so far */
            unsigned left = (unsigned)(need - k);
            uint32_t lo = cp << (6 * left), hi = lo | ((UINT32_C(1) << (6 * left)) - 1);
            if (hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF))
                return -1;
        }
        if (k <= need)
            return 1; /* ran out inside the character */
        i += need + 1;
    }
    return 0;
}

static int dfa_class(utf8_state st)
{
    return st == UTF8_REJECT ? -1 : st == UTF8_ACCEPT ? 0 : 1;
}

/* Feed p one byte at a time. */
static utf8_state utf8_bytewise(const uint8_t *p, size_t n)
{
    utf8_state st = UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
        st = utf8_feed(st, p + i, 1);
    return st;
}

/* Encode a code point (any value up to 0x10FFFF, surrogates included). */
static size_t enc_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static const char valid_text[] =
    "Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!"
    "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"      /* κόσμε */
    "\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\x7F"; /* €😀 */

/* Valid sequences of Autobahn 6.2, 6.5, 6.7, 6.9, 6.11, 6.22, 6.23. */
static const char *const utf8_valid_cases[] = {
    "",
    "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
    "\x00",
    "\xC2\x80",
    "\xE0\xA0\x80",
    "\xF0\x90\x80\x80",
    "\x7F",
    "\xDF\xBF",
    "\xEF\xBF\xBF",
    "\xF4\x8F\xBF\xBF",
    "\xED\x9F\xBF",
    "\xEE\x80\x80",
    "\xEF\xBF\xBD",
    "\xEF\xBF\xBE",
    "\xF0\x9F\xBF\xBE",
    "\xF4\x8F\xBF\xBE",
    valid_text,
};

struct bad_utf8 {
    const char *s;
    size_t n;
    size_t fail; /* index of the first impossible byte; NOPOS: only truncated */
};
#define BAD(lit, at)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1, at                                                                   \
    }

/* Invalid sequences of Autobahn 6.3, 6.4, 6.6, 6.8, 6.10, 6.12-6.21. */
static const struct bad_utf8 utf8_bad_cases[] = {
    /* 6.3.1: κόσμε + surrogate + "edited" */
    BAD("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64", 12),
    /* 6.4.1: κόσμε + U+110000 + "edited" */
    BAD("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80\x65\x64\x69\x74\x65\x64", 12),
    /* 6.6.x: κόσμε cut inside a character */
    BAD("\xCE", NOPOS),
    BAD("\xCE\xBA\xE1", NOPOS),
    BAD("\xCE\xBA\xE1\xBD", NOPOS),
    BAD("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE", NOPOS),
    /* 6.8, 6.10: 5- and 6-byte forms */
    BAD("\xF8\x88\x80\x80\x80", 0),
    BAD("\xFC\x84\x80\x80\x80\x80", 0),
    BAD("\xFB\xBF\xBF\xBF\xBF", 0),
    BAD("\xFD\xBF\xBF\xBF\xBF\xBF", 0),
    /* above U+10FFFF, F5..F7 leads */
    BAD("\xF4\x90\x80\x80", 1),
    BAD("\xF5\x80\x80\x80", 0),
    BAD("\xF7\xBF\xBF\xBF", 0),
    /* 6.12: unexpected continuation bytes */
    BAD("\x80", 0),
    BAD("\xBF", 0),
    BAD("\x80\xBF", 0),
    BAD("\x80\xBF\x80", 0),
    BAD("a\x80", 1),
    BAD("\xC2\x80\x80", 2),
    /* 6.13: lonely start characters */
    BAD("\xC0\x20", 0),
    BAD("\xC2\x20", 1),
    BAD("\xDF\x20", 1),
    BAD("\xE0\x20", 1),
    BAD("\xEF\x20", 1),
    BAD("\xF0\x20", 1),
    BAD("\xF4\x20", 1),
    /* 6.14: last continuation byte missing */
    BAD("\xC0", 0),
    BAD("\xE0\x80", 1),
    BAD("\xF0\x80\x80", 1),
    BAD("\xF8\x80\x80\x80", 0),
    BAD("\xFC\x80\x80\x80\x80", 0),
    BAD("\xDF", NOPOS),
    BAD("\xEF\xBF", NOPOS),
    BAD("\xF4\x8F\xBF", NOPOS),
    BAD("\xF7\xBF\xBF", 0),
    /* 6.15: concatenated incomplete sequences */
    BAD("\xC0\xE0\x80\xF0\x80\x80\xF8\x80\x80\x80\xFC\x80\x80\x80\x80\xDF\xEF\xBF\xF7\xBF\xBF", 0),
    BAD("\xDF\xEF\xBF", 1),
    /* 6.16: impossible bytes */
    BAD("\xFE", 0),
    BAD("\xFF", 0),
    BAD("\xFE\xFE\xFF\xFF", 0),
    /* 6.17: overlong ASCII */
    BAD("\xC0\xAF", 0),
    BAD("\xE0\x80\xAF", 1),
    BAD("\xF0\x80\x80\xAF", 1),
    BAD("\xF8\x80\x80\x80\xAF", 0),
    BAD("\xFC\x80\x80\x80\x80\xAF", 0),
    /* 6.18: maximum overlongs */
    BAD("\xC1\xBF", 0),
    BAD("\xE0\x9F\xBF", 1),
    BAD("\xF0\x8F\xBF\xBF", 1),
    BAD("\xF8\x87\xBF\xBF\xBF", 0),
    BAD("\xFC\x83\xBF\xBF\xBF\xBF", 0),
    /* 6.19: overlong NUL */
    BAD("\xC0\x80", 0),
    BAD("\xE0\x80\x80", 1),
    BAD("\xF0\x80\x80\x80", 1),
    BAD("\xF8\x80\x80\x80\x80", 0),
    BAD("\xFC\x80\x80\x80\x80\x80", 0),
    /* 6.20: single UTF-16 surrogates */
    BAD("\xED\xA0\x80", 1),
    BAD("\xED\xAD\xBF", 1),
    BAD("\xED\xAE\x80", 1),
    BAD("\xED\xAF\xBF", 1),
    BAD("\xED\xB0\x80", 1),
    BAD("\xED\xBE\x80", 1),
    BAD("\xED\xBF\xBF", 1),
    /* 6.21: paired surrogates */
    BAD("\xED\xA0\x80\xED\xB0\x80", 1),
    BAD("\xED\xAF\xBF\xED\xBF\xBF", 1),
    /* the fast path must not skip a bad byte after ASCII runs */
    BAD("0123456789abcdefghijklmnopqrstuv\xF5", 32),
    BAD("0123456789abcdefghijklmnopqrstuv\xE2\x82", NOPOS),
    BAD("0123456\xC3\xA9"
        "89abcdefghijkl\xC0\xAF",
        23),
};

static void test_utf8_valid(void **state)
{
    for (size_t c = 0; c < sizeof utf8_valid_cases / sizeof *utf8_valid_cases; c++) {
        const uint8_t *s = (const uint8_t *)utf8_valid_cases[c];
        size_t n = c == 2 ? 1 : strlen(utf8_valid_cases[c]); /* case 2 is a NUL byte */
        assert_int_equal(utf8_feed(UTF8_ACCEPT, s, n), UTF8_ACCEPT);
        assert_int_equal(utf8_bytewise(s, n), UTF8_ACCEPT);
        for (size_t k = 0; k <= n; k++) {
            utf8_state st = utf8_feed(UTF8_ACCEPT, s, k);
            assert_int_not_equal(st, UTF8_REJECT);
            assert_int_equal(utf8_feed(st, s + k, n - k), UTF8_ACCEPT);
        }
    }
    /* every code point but the surrogates */
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t n = enc_utf8(b, cp);
        utf8_state st = utf8_feed(UTF8_ACCEPT, b, n);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            assert_int_equal(st, UTF8_REJECT);
        else
            assert_int_equal(st, UTF8_ACCEPT);
    }
}

static void test_utf8_invalid(void **state)
{
    for (size_t c = 0; c < sizeof utf8_bad_cases / sizeof *utf8_bad_cases; c++) {
        const struct bad_utf8 *b = &utf8_bad_cases[c];
        const uint8_t *s = (const uint8_t *)b->s;
        utf8_state st = utf8_feed(UTF8_ACCEPT, s, b->n);
        assert_int_not_equal(st, UTF8_ACCEPT);
        assert_int_equal(utf8_bytewise(s, b->n), st);
        assert_int_equal(ref_utf8(s, b->n), dfa_class(st));
        if (b->fail == NOPOS) {
            assert_int_not_equal(st, UTF8_REJECT); /* only incomplete */
            continue;
        }
        /* fail fast: the first impossible byte rejects, not the end */
        assert_int_equal(st, UTF8_REJECT);
        assert_int_not_equal(utf8_feed(UTF8_ACCEPT, s, b->fail), UTF8_REJECT);
        assert_int_equal(utf8_feed(UTF8_ACCEPT, s, b->fail + 1), UTF8_REJECT);
        /* REJECT is final */
        assert_int_equal(utf8_feed(UTF8_REJECT, (const uint8_t *)"abc", 3), UTF8_REJECT);
    }
}

/* Every 1-, 2- and 3-byte sequence and many 4-byte ones agree with the
 * reference validator, whole and byte by byte. */
static void test_utf8_exhaustive(void **state)
{
    uint8_t b[4];

    for (uint32_t v = 0; v < (1u << 24); v++) {
        b[0] = (uint8_t)(v >> 16);
        b[1] = (uint8_t)(v >> 8);
        b[2] = (uint8_t)v;
        utf8_state st = utf8_feed(UTF8_ACCEPT, b, 3);
        assert_int_equal(dfa_class(st), ref_utf8(b, 3));
        if ((v & 0xFF) == 0) /* each 2-byte prefix once */
            assert_int_equal(dfa_class(utf8_feed(UTF8_ACCEPT, b, 2)), ref_utf8(b, 2));
        if ((v & 0xFFFF) == 0) /* each single byte once */
            assert_int_equal(dfa_class(utf8_feed(UTF8_ACCEPT, b, 1)), ref_utf8(b, 1));
    }
    static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    for (unsigned lead = 0xF0; lead <= 0xFF; lead++)
        for (unsigned b1 = 0; b1 < 256; b1++)
            for (size_t i = 0; i < sizeof edge; i++)
                for (size_t j = 0; j < sizeof edge; j++) {
                    b[0] = (uint8_t)lead, b[1] = (uint8_t)b1, b[2] = edge[i], b[3] = edge[j];
                    utf8_state st = utf8_feed(UTF8_ACCEPT, b, 4);
                    assert_int_equal(dfa_class(st), ref_utf8(b, 4));
                    assert_int_equal(utf8_bytewise(b, 4), st);
                }
}

/* The ASCII fast path: long runs at every alignment, with a multi-byte
 * character or a bad byte at every position. */
static void test_utf8_fast_path(void **state)
{
    uint8_t buf[80];

    for (size_t at = 0; at + 4 <= sizeof buf; at++) {
        for (size_t off = 0; off < 8; off++) {
            size_t n = sizeof buf - off;
            uint8_t *p = buf + off;
            memset(p, 'a', n);
            if (at + 4 <= n) {
                memcpy(p + at, "\xF0\x9F\x98\x80", 4); /* U+1F600 */
                assert_int_equal(utf8_feed(UTF8_ACCEPT, p, n), UTF8_ACCEPT);
                memset(p, 'a', n);
            }
            if (at < n) {
                p[at] = 0xFF;
                assert_int_equal(utf8_feed(UTF8_ACCEPT, p, n), UTF8_REJECT);
                assert_int_not_equal(utf8_feed(UTF8_ACCEPT, p, at), UTF8_REJECT);
                p[at] = 0xC3; /* incomplete at the end of the run */
                assert_int_equal(dfa_class(utf8_feed(UTF8_ACCEPT, p, at + 1)), 1);
            }
        }
    }
    /* a state carried in from an earlier chunk is not skipped by the fast path */
    utf8_state st = utf8_feed(UTF8_ACCEPT, (const uint8_t *)"\xE2", 1);
    assert_int_equal(utf8_feed(st, (const uint8_t *)"abcdefghijklmnop", 16), UTF8_REJECT);
}

/* ---- masking ------------------------------------------------------------ */

static void test_unmask(void **state)
{
    uint8_t mask[4] = {0x12, 0x34, 0xAB, 0xCD};
    /* every offset from a 32-byte boundary; lengths past the vector loops */
    _Alignas(32) uint8_t buf[224], want[224], orig[224];

    for (size_t off = 0; off < 32; off++)
        for (size_t n = 0; n + off <= 200; n++)
            for (size_t phase = 0; phase < 8; phase++) {
                rnd_fill(orig, sizeof orig);
                memcpy(buf, orig, sizeof buf);
                memcpy(want, orig, sizeof want);
                for (size_t i = 0; i < n; i++)
                    want[off + i] ^= mask[(phase + i) & 3];
                ws_unmask(buf + off, n, mask, phase);
                assert_memory_equal(buf, want, sizeof buf); /* nothing outside touched */
                /* split in two with the phase carried */
                for (size_t k = 0; k <= n; k += 7) {
                    memcpy(buf, orig, sizeof buf);
                    ws_unmask(buf + off, k, mask, phase);
                    ws_unmask(buf + off + k, n - k, mask, phase + k);
                    assert_memory_equal(buf, want, sizeof buf);
                }
            }
}

/* ---- decoding: sizes, splits, encodings --------------------------------- */

/* A binary frame of each size fed whole, byte by byte and at every split. */
static void test_decode_sizes_every_split(void **state)
{
    static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 125, 126, 127, 128, 65535, 65536};

    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        uint8_t *payload = malloc(n + 1);
        uint8_t *frame = malloc(n + WS_MAX_HEADER);
        char want[64];
        assert_non_null(payload);
        assert_non_null(frame);
        rnd_fill(payload, n);
        size_t flen = mkframe(frame, FIN | WS_OP_BINARY, payload, n);
        assert_int_equal(flen, n + (n < 126 ? 6 : n < 65536 ? 8 : 14));
        snprintf(want, sizeof want, "B%zu;", n);
        check_all_splits(frame, flen, 0, payload, n, want);
        free(payload);
        free(frame);
    }
}

/* A text frame of valid multi-byte UTF-8 at every split (characters cut
 * across reads). */
static void test_decode_text_every_split(void **state)
{
    uint8_t frame[256];
    char want[32];
    size_t n = strlen(valid_text);
    size_t flen = mkframe(frame, FIN | WS_OP_TEXT, valid_text, n);

    snprintf(want, sizeof want, "T%zu;", n);
    check_all_splits(frame, flen, 0, (const uint8_t *)valid_text, n, want);
}

/* 1 MiB: a few split points, reads of several sizes, byte by byte. */
static void test_decode_1mib(void **state)
{
    size_t n = 1u << 20;
    uint8_t *payload = malloc(n);
    uint8_t *frame = malloc(n + WS_MAX_HEADER);
    struct result ref, r;
    static const size_t steps[] = {1, 7, 1000, 4096, 65536};

    assert_non_null(payload);
    assert_non_null(frame);
    rnd_fill(payload, n);
    size_t flen = mkframe(frame, FIN | WS_OP_BINARY, payload, n);
    assert_int_equal(flen, n + 14);

    result_init(&ref, payload, n);
    decode_whole(frame, flen, 0, &ref);
    assert_string_equal(ref.trace, "B1048576;");
    assert_int_equal(ref.got, n);
    assert_false(ref.mismatch);
    assert_int_equal(ref.data_events, 1);

    size_t splits[] = {1, 2, 9, 13, 14, 15, 17, 4096, 524289, flen - 3, flen - 1};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++) {
        result_init(&r, payload, n);
        decode_cuts(frame, flen, 0, &splits[i], 1, &r);
        assert_same(&ref, &r);
    }
    result_init(&r, payload, n);
    decode_cuts(frame, flen, 0, splits, sizeof splits / sizeof *splits, &r);
    assert_same(&ref, &r);
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        result_init(&r, payload, n);
        decode_steps(frame, flen, 0, steps[i], &r);
        assert_same(&ref, &r);
    }
    /* the same as text (ASCII and multi-byte mixed) through the validator */
    for (size_t i = 0; i < n; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    for (size_t i = 1000; i + 4 < n; i += 4099)
        memcpy(payload + i, "\xF0\x9F\x98\x80", 4);
    flen = mkframe(frame, FIN | WS_OP_TEXT, payload, n);
    result_init(&ref, payload, n);
    decode_random_reads(frame, flen, 0, 3000, &ref);
    assert_string_equal(ref.trace, "T1048576;");
    assert_false(ref.mismatch);
    free(payload);
    free(frame);
}

/* 16- and 64-bit lengths, including non-minimal encodings (accepted). */
static void test_length_encodings(void **state)
{
    static const struct {
        size_t n;
        int enc;
    } cases[] = {{0, 2}, {5, 2},   {125, 2},   {126, 2},   {65535, 2}, {0, 8},
                 {5, 8}, {300, 8}, {65535, 8}, {65536, 8}, {70000, 8}};
    uint8_t *payload = malloc(70000);
    uint8_t *frame = malloc(70000 + WS_MAX_HEADER);

    assert_non_null(payload);
    assert_non_null(frame);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = cases[i].n;
        char want[32];
        struct result r;
        rnd_fill(payload, n);
        size_t flen = mkframe_ex(frame, FIN | WS_OP_BINARY, true, cases[i].enc, payload, n);
        assert_int_equal(flen, n + 2 + (size_t)cases[i].enc + 4);
        assert_int_equal(frame[1] & 0x7F, cases[i].enc == 2 ? 126 : 127);
        snprintf(want, sizeof want, "B%zu;", n);
        if (n <= 300) {
            check_all_splits(frame, flen, 0, payload, n, want);
        } else {
            result_init(&r, payload, n);
            decode_steps(frame, flen, 0, 1, &r);
            assert_string_equal(r.trace, want);
            assert_false(r.mismatch);
        }
    }
    /* control frames may use a non-minimal length too */
    struct stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s_frame_ex(s, FIN | WS_OP_PING, 2, "ab", 2);
    s_frame_ex(s, FIN | WS_OP_PONG, 8, "cd", 2);
    s_frame_ex(s, FIN | WS_OP_PING, 8, "", 0);
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "P:ab;O:cd;P:;");
    free(s);

    /* a 2^63-1 byte frame is accepted: the header alone gives no event */
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t mask[4] = {1, 2, 3, 4};
    size_t h = mkhdr(hdr, WS_OP_BINARY, true, mask, UINT64_MAX >> 1, 8);
    struct ws_decoder d;
    struct ws_event ev;
    ws_decoder_init(&d, 0);
    assert_int_equal(ws_decode(&d, hdr, h, &ev), h);
    assert_int_equal(ev.type, WS_EV_NONE);
    uint8_t two[2] = {'x' ^ 1, 'y' ^ 2};
    assert_int_equal(ws_decode(&d, two, 2, &ev), 2);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.off, 0);
    assert_int_equal(ev.len, 2);
    assert_false(ev.fin);
    assert_memory_equal(two, "xy", 2);
    free(payload);
    free(frame);
}

/* Events one by one: offsets are relative to each call's buffer, a range
 * never spans two frames, the decoder returns at the first event. */
static void test_decode_event_details(void **state)
{
    uint8_t buf[64];
    size_t n = 0;
    struct ws_decoder d;
    struct ws_event ev;

    n += mkframe(buf + n, WS_OP_TEXT, "abc", 3);
    n += mkframe(buf + n, FIN | WS_OP_PING, "p", 1);
    n += mkframe(buf + n, FIN | WS_OP_CONT, "de", 2);
    ws_decoder_init(&d, 0);

    size_t c = ws_decode(&d, buf, n, &ev);
    assert_int_equal(c, 9);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_int_equal(ev.off, 6);
    assert_int_equal(ev.len, 3);
    assert_false(ev.fin);
    assert_memory_equal(buf + 6, "abc", 3);

    size_t c2 = ws_decode(&d, buf + c, n - c, &ev);
    assert_int_equal(c2, 7);
    assert_int_equal(ev.type, WS_EV_CONTROL);
    assert_int_equal(ev.opcode, WS_OP_PING);
    assert_int_equal(d.ctl_len, 1);
    assert_int_equal(d.ctl[0], 'p');
    c += c2;

    c2 = ws_decode(&d, buf + c, n - c, &ev);
    assert_int_equal(c2, 8);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT); /* the message's opcode, not CONT */
    assert_int_equal(ev.off, 6);
    assert_int_equal(ev.len, 2);
    assert_true(ev.fin);
    assert_memory_equal(buf + c + 6, "de", 2);
    c += c2;
    assert_int_equal(c, n);

    c2 = ws_decode(&d, buf + c, 0, &ev);
    assert_int_equal(c2, 0);
    assert_int_equal(ev.type, WS_EV_NONE);

    /* a read ending inside a payload: the range ends with it */
    n = mkframe(buf, FIN | WS_OP_BINARY, "0123456789", 10);
    ws_decoder_init(&d, 0);
    c = ws_decode(&d, buf, 9, &ev);
    assert_int_equal(c, 9);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
    assert_int_equal(ev.off, 6);
    assert_int_equal(ev.len, 3);
    assert_false(ev.fin);
    c2 = ws_decode(&d, buf + 9, n - 9, &ev);
    assert_int_equal(c2, n - 9);
    assert_int_equal(ev.off, 0);
    assert_int_equal(ev.len, 7);
    assert_true(ev.fin);
    assert_memory_equal(buf + 6, "0123456789", 10);
}

/* A fragmented text message with a ping, a pong and a close between the
 * fragments and binary messages after it. */
static void test_fragmented_interleaved(void **state)
{
    struct stream *s = calloc(1, sizeof *s);
    static const uint8_t bin[] = {0, 1, 2, 0xFF};

    assert_non_null(s);
    s_frame(s, WS_OP_TEXT, "Hello, ");
    s_frame(s, FIN | WS_OP_PING, "p1");
    s_frame(s, WS_OP_CONT, "wor");
    s_frame(s, FIN | WS_OP_PONG, "");
    s_frame(s, WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_CONT, "ld");
    s_frame_ex(s, FIN | WS_OP_BINARY, 0, bin, sizeof bin);
    s_frame_ex(s, WS_OP_BINARY, 0, bin, 1);
    s_frame(s, FIN | WS_OP_PING, "");
    s_frame_ex(s, FIN | WS_OP_CONT, 0, bin + 1, 3);
    uint8_t close[5] = {0x03, 0xE8, 'b', 'y', 'e'};
    s_frame_ex(s, FIN | WS_OP_CLOSE, 0, close, sizeof close);
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "P:p1;O:;T12;B4;P:;B4;C1000:bye;");
    free(s);
}

/* Code points cut across fragments: one byte per frame. */
static void test_utf8_across_fragments(void **state)
{
    static const char kosme[] = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";
    size_t n = sizeof kosme - 1;
    struct stream *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s_frame_ex(s, (uint8_t)((i == 0 ? WS_OP_TEXT : WS_OP_CONT) | (i == n - 1 ? FIN : 0)), 0,
                   kosme + i, 1);
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "T11;");

    /* fragments cut anywhere, with pings in between */
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            memset(s, 0, sizeof *s);
            s_frame_ex(s, WS_OP_TEXT, 0, kosme, a);
            s_frame(s, FIN | WS_OP_PING, "x");
            s_frame_ex(s, WS_OP_CONT, 0, kosme + a, b - a);
            s_frame_ex(s, FIN | WS_OP_CONT, 0, kosme + b, n - b);
            struct result r;
            result_init(&r, s->data, s->data_len);
            decode_steps(s->buf, s->len, 0, 1, &r);
            assert_string_equal(r.trace, "P:x;T11;");
            assert_false(r.mismatch);
        }
    free(s);
}

/* The Autobahn sequences through the decoder: as one text frame and as one
 * frame per byte. The error comes on the first impossible byte (fail fast)
 * or, for a truncated character, when the final frame ends. */
static void test_decode_invalid_utf8(void **state)
{
    struct stream *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (size_t c = 0; c < sizeof utf8_bad_cases / sizeof *utf8_bad_cases; c++) {
        const struct bad_utf8 *b = &utf8_bad_cases[c];
        uint8_t frame[64];
        size_t flen = mkframe(frame, FIN | WS_OP_TEXT, b->s, b->n);
        expect_error(frame, flen, 0, WS_CLOSE_BAD_DATA, b->fail == NOPOS ? flen - 1 : 6 + b->fail);

        memset(s, 0, sizeof *s);
        for (size_t i = 0; i < b->n; i++)
            s_frame_ex(s, (uint8_t)((i == 0 ? WS_OP_TEXT : WS_OP_CONT) | (i == b->n - 1 ? FIN : 0)),
                       0, b->s + i, 1);
        expect_error(s->buf, s->len, 0, WS_CLOSE_BAD_DATA,
                     b->fail == NOPOS ? s->len - 1 : 7 * b->fail + 6);

        /* the same bytes as a binary message are fine */
        frame[0] = FIN | WS_OP_BINARY;
        struct result r;
        result_init(&r, (const uint8_t *)b->s, b->n);
        decode_whole(frame, flen, 0, &r);
        assert_false(r.error);
        assert_false(r.mismatch);
    }
    /* fail fast inside a long frame, long before its end */
    uint8_t big[1100];
    uint8_t frame[1200];
    memset(big, 'a', sizeof big);
    big[500] = 0xC0;
    size_t flen = mkframe(frame, FIN | WS_OP_TEXT, big, sizeof big);
    expect_error(frame, flen, 0, WS_CLOSE_BAD_DATA, 8 + 500);
    /* truncated in a non-final frame, completed in the next: fine */
    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_TEXT, "a\xE2\x82");
    s_frame(s, FIN | WS_OP_CONT,
            "\xAC"
            "b");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "T5;");
    /* a new message starts at a character boundary */
    memset(s, 0, sizeof *s);
    s_frame(s, FIN | WS_OP_BINARY, "\xE2\x82");
    s_frame(s, FIN | WS_OP_TEXT, "\xAC");
    expect_error(s->buf, s->len, 0, WS_CLOSE_BAD_DATA, s->len - 1);
    free(s);
}

/* Empty frames: an empty final frame ends its message with a DATA event of
 * length 0 (fin set); empty non-final frames give no event. */
static void test_empty_frames(void **state)
{
    struct stream *s = calloc(1, sizeof *s);
    struct result r;
    struct ws_decoder d;
    struct ws_event ev;
    uint8_t buf[32];

    assert_non_null(s);
    size_t n = mkframe(buf, FIN | WS_OP_TEXT, "", 0);
    assert_int_equal(n, 6);
    ws_decoder_init(&d, 0);
    assert_int_equal(ws_decode(&d, buf, n, &ev), 6);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_int_equal(ev.off, 6);
    assert_int_equal(ev.len, 0);
    assert_true(ev.fin);

    s_frame(s, FIN | WS_OP_TEXT, "");
    s_frame(s, FIN | WS_OP_BINARY, "");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "T0;B0;");

    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_BINARY, "");
    s_frame(s, WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_CONT, "abc");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "B3;");
    result_init(&r, s->data, s->data_len);
    decode_whole(s->buf, s->len, 0, &r);
    assert_int_equal(r.data_events, 1);

    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_TEXT, "ab");
    s_frame(s, WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_CONT, "");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "T2;");
    result_init(&r, s->data, s->data_len);
    decode_whole(s->buf, s->len, 0, &r);
    assert_int_equal(r.data_events, 2);

    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_TEXT, "");
    s_frame(s, WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_TEXT, "x");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "T0;T1;");

    /* truncated UTF-8 ended by an empty final frame */
    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_TEXT, "\xCE");
    s_frame(s, WS_OP_CONT, "");
    s_frame(s, FIN | WS_OP_CONT, "");
    expect_error(s->buf, s->len, 0, WS_CLOSE_BAD_DATA, s->len - 1);
    free(s);
}

/* Valid random streams: messages of random sizes cut into random fragments
 * (characters cut too), pings and pongs in between, every length encoding;
 * decoded whole, in random reads and byte by byte. */
static void test_random_streams(void **state)
{
    static const char *const chars[] = {"a",
                                        "Z",
                                        " ",
                                        "\xC3\xA9",
                                        "\xE2\x82\xAC",
                                        "\xF0\x9F\x98\x80",
                                        "\x7F",
                                        "\xF4\x8F\xBF\xBF",
                                        "\xED\x9F\xBF",
                                        "\xEE\x80\x80"};
    static const int encs[] = {0, 0, 2, 8};
    struct stream *s = malloc(sizeof *s);
    char want[2048];
    uint8_t msg[600];

    assert_non_null(s);
    for (int round = 0; round < 60; round++) {
        size_t wl = 0;
        memset(s, 0, sizeof *s);
        want[0] = 0;
        for (int m = 0; m < 10; m++) {
            bool text = rnd() & 1;
            size_t target = rnd_below(4) == 0 ? 0 : rnd_below(500), len = 0;
            if (text) {
                while (len < target) {
                    const char *c = chars[rnd_below(sizeof chars / sizeof *chars)];
                    memcpy(msg + len, c, strlen(c));
                    len += strlen(c);
                }
            } else {
                rnd_fill(msg, target);
                len = target;
            }
            size_t nfrag = 1 + rnd_below(4), at = 0;
            for (size_t f = 0; f < nfrag; f++) {
                bool last = f == nfrag - 1;
                size_t end = last ? len : at + rnd_below(len - at + 1);
                uint8_t b0 = f == 0 ? (text ? WS_OP_TEXT : WS_OP_BINARY) : WS_OP_CONT;
                s_frame_ex(s, (uint8_t)(b0 | (last ? FIN : 0)), encs[rnd_below(4)], msg + at,
                           end - at);
                at = end;
                if (last)
                    wl += (size_t)snprintf(want + wl, sizeof want - wl, "%c%zu;", text ? 'T' : 'B',
                                           len);
                if (rnd_below(3) == 0) {
                    char ping[16];
                    size_t pl = rnd_below(sizeof ping);
                    for (size_t i = 0; i < pl; i++)
                        ping[i] = (char)('a' + rnd_below(26));
                    bool pong = rnd() & 1;
                    s_frame_ex(s, (uint8_t)(FIN | (pong ? WS_OP_PONG : WS_OP_PING)), 0, ping, pl);
                    wl += (size_t)snprintf(want + wl, sizeof want - wl, "%c:%.*s;",
                                           pong ? 'O' : 'P', (int)pl, ping);
                }
                assert_true(wl < sizeof want);
            }
        }
        struct result r;
        result_init(&r, s->data, s->data_len);
        decode_whole(s->buf, s->len, 0, &r);
        assert_string_equal(r.trace, want);
        assert_false(r.mismatch);
        assert_int_equal(r.got, s->data_len);
        static const size_t maxsteps[] = {3, 40, 700};
        for (size_t i = 0; i < 3; i++) {
            struct result r2;
            result_init(&r2, s->data, s->data_len);
            decode_random_reads(s->buf, s->len, 0, maxsteps[i], &r2);
            assert_same(&r, &r2);
        }
        if (round % 10 == 0) {
            struct result r2;
            result_init(&r2, s->data, s->data_len);
            decode_steps(s->buf, s->len, 0, 1, &r2);
            assert_same(&r, &r2);
        }
    }
    free(s);
}

/* Damaged streams (valid frames, some bits flipped, a few bad text bytes): the
 * outcome must not depend on how the bytes are split into reads. */
static void test_split_invariance(void **state)
{
    struct stream *s = malloc(sizeof *s);
    uint8_t *data = malloc(sizeof s->data);
    struct result ref, r;
    size_t errors = 0;

    assert_non_null(s);
    assert_non_null(data);
    for (int round = 0; round < 400; round++) {
        memset(s, 0, sizeof *s);
        bool in_msg = false;
        for (int f = 0; f < 8; f++) {
            uint8_t p[300];
            size_t n = rnd_below(sizeof p);
            uint8_t b0;
            if (rnd_below(4) == 0) {
                b0 = rnd_below(4) ? FIN | WS_OP_PING : FIN | WS_OP_CLOSE;
                n = rnd_below(WS_MAX_CONTROL + 1);
            } else {
                b0 = in_msg ? WS_OP_CONT : rnd_below(2) ? WS_OP_TEXT : WS_OP_BINARY;
                in_msg = rnd_below(2);
                if (!in_msg)
                    b0 |= FIN;
            }
            for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)(rnd_below(200) ? 'a' + rnd_below(26) : rnd());
            if ((b0 & 0x0F) == WS_OP_CLOSE && n >= 2)
                p[0] = 0x03, p[1] = (uint8_t)(0xE8 + rnd_below(16));
            s_frame_ex(s, b0, (int)rnd_below(3) * 2, p, n);
        }
        for (int k = 0, nk = (int)rnd_below(3); k < nk; k++)
            s->buf[rnd_below(s->len)] ^= (uint8_t)(1u << rnd_below(8));
        uint64_t max = rnd_below(3) ? 0 : rnd_below(600);

        /* Byte by byte delivers the most data before an error (a read that
         * holds a bad byte may be failed without its valid prefix). */
        result_init(&ref, NULL, 0);
        ref.sink = data;
        ref.sink_cap = sizeof s->data;
        decode_steps(s->buf, s->len, max, 1, &ref);
        errors += ref.error;
        for (int way = 0; way < 3; way++) {
            size_t k = rnd_below(s->len + 1);
            result_init(&r, data, ref.got);
            if (way == 0)
                decode_whole(s->buf, s->len, max, &r);
            else if (way == 1)
                decode_random_reads(s->buf, s->len, max, 30, &r);
            else
                decode_cuts(s->buf, s->len, max, &k, 1, &r);
            assert_string_equal(ref.trace, r.trace);
            assert_false(r.mismatch);
            assert_int_equal(ref.error, r.error);
            assert_int_equal(ref.err_code, r.err_code);
            if (ref.error)
                assert_true(r.got <= ref.got);
            else
                assert_int_equal(r.got, ref.got);
        }
    }
    /* both outcomes were exercised */
    assert_true(errors > 40 && errors < 360);
    free(s);
    free(data);
}

/* ---- protocol errors (1002) --------------------------------------------- */

static void test_err_unmasked(void **state)
{
    uint8_t buf[32];
    size_t n = mkframe_ex(buf, FIN | WS_OP_TEXT, false, 0, "hi", 2);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 1);
    n = mkframe_ex(buf, FIN | WS_OP_PING, false, 0, "", 0);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 1);
    n = mkframe_ex(buf, FIN | WS_OP_BINARY, false, 2, "hi", 2);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 1);
}

static void test_err_rsv(void **state)
{
    uint8_t buf[32];
    for (uint8_t rsv = 0x10; rsv <= 0x70; rsv += 0x10) {
        size_t n = mkframe(buf, (uint8_t)(FIN | rsv | WS_OP_TEXT), "hi", 2);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 0);
        n = mkframe(buf, (uint8_t)(FIN | rsv | WS_OP_PING), "", 0);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 0);
    }
    /* RSV on a continuation frame */
    struct stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s_frame(s, WS_OP_BINARY, "a");
    s_frame(s, FIN | 0x40 | WS_OP_CONT, "b");
    expect_error(s->buf, s->len, 0, WS_CLOSE_PROTOCOL, 7);
    free(s);
}

static void test_err_reserved_opcodes(void **state)
{
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    uint8_t buf[32];
    for (size_t i = 0; i < sizeof ops; i++) {
        size_t n = mkframe(buf, (uint8_t)(FIN | ops[i]), "", 0);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 0);
        n = mkframe(buf, ops[i], "abc", 3);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 0);
    }
}

static void test_err_control_fragmented(void **state)
{
    uint8_t buf[32];
    static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < sizeof ops; i++) {
        size_t n = mkframe(buf, ops[i], "ab", 2);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 0);
    }
}

static void test_err_control_too_long(void **state)
{
    uint8_t payload[200];
    uint8_t buf[256];
    memset(payload, 'x', sizeof payload);

    /* 125 is the limit */
    size_t n = mkframe(buf, FIN | WS_OP_PING, payload, 125);
    char want[140];
    snprintf(want, sizeof want, "P:%.125s;", (const char *)payload);
    check_all_splits(buf, n, 0, NULL, 0, want);

    n = mkframe(buf, FIN | WS_OP_PING, payload, 126);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 3);
    n = mkframe(buf, FIN | WS_OP_PONG, payload, 200);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 3);
    n = mkframe_ex(buf, FIN | WS_OP_CLOSE, true, 8, payload, 126);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 9);
    /* a huge announced length fails on the header alone */
    uint8_t mask[4] = {1, 2, 3, 4};
    n = mkhdr(buf, FIN | WS_OP_PING, true, mask, UINT64_C(1) << 40, 8);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 9);
}

static void test_err_continuation_without_message(void **state)
{
    struct stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s_frame(s, FIN | WS_OP_CONT, "abc");
    expect_error(s->buf, s->len, 0, WS_CLOSE_PROTOCOL, 0);

    memset(s, 0, sizeof *s);
    s_frame(s, WS_OP_CONT, "");
    expect_error(s->buf, s->len, 0, WS_CLOSE_PROTOCOL, 0);

    /* after a complete message */
    memset(s, 0, sizeof *s);
    s_frame(s, FIN | WS_OP_TEXT, "ab");
    s_frame(s, FIN | WS_OP_PING, "");
    s_frame(s, FIN | WS_OP_CONT, "cd");
    expect_error(s->buf, s->len, 0, WS_CLOSE_PROTOCOL, 8 + 6);
    free(s);
}

static void test_err_new_message_in_fragmented(void **state)
{
    struct stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    static const uint8_t firsts[] = {WS_OP_TEXT, WS_OP_BINARY};
    static const uint8_t news[] = {WS_OP_TEXT, WS_OP_BINARY, FIN | WS_OP_TEXT, FIN | WS_OP_BINARY};
    for (size_t i = 0; i < sizeof firsts; i++)
        for (size_t j = 0; j < sizeof news; j++) {
            memset(s, 0, sizeof *s);
            s_frame(s, firsts[i], "ab");
            s_frame(s, WS_OP_CONT, "cd");
            s_frame(s, FIN | WS_OP_PING, "");
            size_t at = s->len;
            s_frame(s, news[j], "ef");
            expect_error(s->buf, s->len, 0, WS_CLOSE_PROTOCOL, at);
        }
    free(s);
}

static void test_err_length_top_bit(void **state)
{
    uint8_t buf[WS_MAX_HEADER + 4];
    uint8_t mask[4] = {9, 8, 7, 6};
    size_t n = mkhdr(buf, FIN | WS_OP_BINARY, true, mask, UINT64_C(1) << 63, 8);
    memcpy(buf + n, "abcd", 4);
    expect_error(buf, n + 4, 0, WS_CLOSE_PROTOCOL, 9);
    n = mkhdr(buf, FIN | WS_OP_BINARY, true, mask, UINT64_MAX, 8);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 9);
}

/* After an error the decoder reports it again and consumes nothing (feed()
 * checks this on every error); a valid frame after it is not decoded. */
static void test_err_sticky(void **state)
{
    uint8_t buf[64];
    struct ws_decoder d;
    struct ws_event ev;
    size_t n = mkframe_ex(buf, FIN | WS_OP_TEXT, false, 0, "hi", 2);
    size_t m = mkframe(buf + n, FIN | WS_OP_TEXT, "ok", 2);

    ws_decoder_init(&d, 0);
    size_t c = ws_decode(&d, buf, n + m, &ev);
    assert_true(c <= n);
    assert_int_equal(ev.type, WS_EV_ERROR);
    assert_int_equal(ev.close_code, WS_CLOSE_PROTOCOL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ws_decode(&d, buf + n, m, &ev), 0);
        assert_int_equal(ev.type, WS_EV_ERROR);
        assert_int_equal(ev.close_code, WS_CLOSE_PROTOCOL);
    }
    assert_int_equal(ws_decode(&d, buf, 0, &ev), 0);
    assert_int_equal(ev.type, WS_EV_ERROR);
}

/* ---- close frames ------------------------------------------------------- */

/* The RFC 6455 / IANA rule, written as its list of invalid ranges. */
static bool close_code_ok_spec(unsigned code)
{
    if (code < 1000 || code >= 5000)
        return false;
    if (code == 1004 || code == 1005 || code == 1006 || code == 1015)
        return false;
    if (code >= 1016 && code <= 2999)
        return false;
    return true;
}

static void test_close_code_valid(void **state)
{
    static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                       1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        assert_true(ws_close_code_valid(valid[i]));
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        assert_false(ws_close_code_valid(invalid[i]));
    for (unsigned c = 0; c <= 0xFFFF; c++)
        assert_int_equal(ws_close_code_valid((uint16_t)c), close_code_ok_spec(c));
}

/* Every possible code through the decoder. */
static void test_close_decode_codes(void **state)
{
    for (unsigned code = 0; code <= 0xFFFF; code++) {
        uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        uint8_t buf[16];
        struct result r;
        size_t n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 2);
        result_init(&r, NULL, 0);
        decode_whole(buf, n, 0, &r);
        if (close_code_ok_spec(code)) {
            char want[16];
            snprintf(want, sizeof want, "C%u:;", code);
            assert_string_equal(r.trace, want);
        } else {
            assert_true(r.error);
            assert_int_equal(r.err_code, WS_CLOSE_PROTOCOL);
        }
    }
}

static void test_close_frames(void **state)
{
    uint8_t buf[160];
    uint8_t payload[130];
    char want[160];
    size_t n;

    /* empty: 1005 */
    n = mkframe(buf, FIN | WS_OP_CLOSE, "", 0);
    check_all_splits(buf, n, 0, NULL, 0, "C1005:;");
    /* one byte: 1002 */
    n = mkframe(buf, FIN | WS_OP_CLOSE, "\x03", 1);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, n - 1);
    /* code only, code and reason */
    n = mkframe(buf, FIN | WS_OP_CLOSE, "\x03\xE8", 2);
    check_all_splits(buf, n, 0, NULL, 0, "C1000:;");
    n = mkframe(buf, FIN | WS_OP_CLOSE, "\x0F\xA0gone \xE2\x82\xAC", 10);
    check_all_splits(buf, n, 0, NULL, 0, "C4000:gone \xE2\x82\xAC;");
    /* invalid codes: 1002 */
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        payload[0] = (uint8_t)(bad[i] >> 8);
        payload[1] = (uint8_t)bad[i];
        memcpy(payload + 2, "why", 3);
        n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 5);
        expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, n - 1);
    }
    /* reason of 123 bytes (the most that fits), ASCII and multi-byte */
    payload[0] = 0x03, payload[1] = 0xE9;
    memset(payload + 2, 'r', 123);
    n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 125);
    snprintf(want, sizeof want, "C1001:%.123s;", (const char *)payload + 2);
    check_all_splits(buf, n, 0, NULL, 0, want);
    for (size_t i = 0; i < 41; i++)
        memcpy(payload + 2 + 3 * i, "\xE2\x82\xAC", 3);
    n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 125);
    snprintf(want, sizeof want, "C1001:%.123s;", (const char *)payload + 2);
    check_all_splits(buf, n, 0, NULL, 0, want);
    /* 124 bytes of reason do not fit in a control frame */
    memset(payload + 2, 'r', 124);
    n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 126);
    expect_error(buf, n, 0, WS_CLOSE_PROTOCOL, 3);
    /* invalid UTF-8 reasons: 1007 */
    static const char *const bad_reasons[] = {"\xFF",     "ok\xCE",           "\xED\xA0\x80",
                                              "\xC0\x80", "\xF4\x90\x80\x80", "\x80"};
    for (size_t i = 0; i < sizeof bad_reasons / sizeof *bad_reasons; i++) {
        size_t rl = strlen(bad_reasons[i]);
        payload[0] = 0x03, payload[1] = 0xE8;
        memcpy(payload + 2, bad_reasons[i], rl);
        n = mkframe(buf, FIN | WS_OP_CLOSE, payload, 2 + rl);
        expect_error(buf, n, 0, WS_CLOSE_BAD_DATA, n - 1);
    }
    /* a close frame between fragments is delivered */
    struct stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s_frame(s, WS_OP_BINARY, "ab");
    s_frame(s, FIN | WS_OP_CLOSE, "\x03\xE8");
    check_all_splits(s->buf, s->len, 0, s->data, s->data_len, "C1000:;");
    free(s);
}

/* Control payloads of every length up to 125, random bytes, every split. */
static void test_control_payloads(void **state)
{
    uint8_t payload[WS_MAX_CONTROL], buf[WS_MAX_CONTROL + WS_MAX_HEADER];
    struct result r;

    for (size_t n = 0; n <= WS_MAX_CONTROL; n++) {
        rnd_fill(payload, n);
        size_t flen = mkframe(buf, FIN | WS_OP_PING, payload, n);
        for (size_t k = 0; k <= flen; k++) {
            result_init(&r, NULL, 0);
            decode_cuts(buf, flen, 0, &k, 1, &r);
            assert_false(r.error);
            assert_int_equal(r.ctl_len, n);
            assert_memory_equal(r.ctl, payload, n);
        }
        /* pong too, byte by byte */
        flen = mkframe(buf, FIN | WS_OP_PONG, payload, n);
        result_init(&r, NULL, 0);
        decode_steps(buf, flen, 0, 1, &r);
        assert_int_equal(r.trace[0], 'O');
        assert_int_equal(r.ctl_len, n);
        assert_memory_equal(r.ctl, payload, n);
    }
}

/* ---- max_message (1009) ------------------------------------------------- */

static void test_max_message(void **state)
{
    uint8_t payload[70000];
    uint8_t *buf = malloc(sizeof payload + 64);
    struct stream *s = calloc(1, sizeof *s);
    size_t n;

    assert_non_null(buf);
    assert_non_null(s);
    memset(payload, 'm', sizeof payload);
    /* exactly the limit is fine, one more fails on the header */
    n = mkframe(buf, FIN | WS_OP_BINARY, payload, 100);
    check_all_splits(buf, n, 100, payload, 100, "B100;");
    n = mkframe(buf, FIN | WS_OP_BINARY, payload, 101);
    expect_error(buf, n, 100, WS_CLOSE_TOO_BIG, 1);
    n = mkframe(buf, FIN | WS_OP_TEXT, payload, 1000);
    expect_error(buf, n, 999, WS_CLOSE_TOO_BIG, 3);
    n = mkframe(buf, FIN | WS_OP_BINARY, payload, 70000);
    expect_error(buf, 14, 65536, WS_CLOSE_TOO_BIG, 9); /* the header alone */
    expect_error(buf, n, 65536, WS_CLOSE_TOO_BIG, 9);
    /* an announced 2^62 bytes */
    uint8_t mask[4] = {1, 2, 3, 4};
    n = mkhdr(buf, WS_OP_BINARY, true, mask, UINT64_C(1) << 62, 8);
    expect_error(buf, n, 1u << 20, WS_CLOSE_TOO_BIG, 9);

    /* across fragments; control frames do not count */
    s_frame(s, WS_OP_TEXT, "0123456789");
    s_frame(s, FIN | WS_OP_PING, "0123456789");
    s_frame(s, WS_OP_CONT, "0123456789");
    check_all_splits(s->buf, s->len, 30, s->data, s->data_len, "P:0123456789;");
    size_t at = s->len;
    s_frame(s, FIN | WS_OP_CONT, "01234567890");
    expect_error(s->buf, s->len, 30, WS_CLOSE_TOO_BIG, at + 1);
    /* the count starts again with each message */
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 4; i++) {
        s_frame(s, WS_OP_BINARY, "0123456789");
        s_frame(s, FIN | WS_OP_CONT, "0123456789");
    }
    check_all_splits(s->buf, s->len, 20, s->data, s->data_len, "B20;B20;B20;B20;");
    /* 0 = unlimited */
    n = mkframe(buf, FIN | WS_OP_BINARY, payload, 70000);
    struct result r;
    result_init(&r, payload, 70000);
    decode_whole(buf, n, 0, &r);
    assert_string_equal(r.trace, "B70000;");
    free(buf);
    free(s);
}

/* ---- encoder ------------------------------------------------------------ */

static void test_header_encoder(void **state)
{
    uint8_t h[WS_MAX_SERVER_HEADER];

    assert_int_equal(ws_header_len(0), 2);
    assert_int_equal(ws_header_len(125), 2);
    assert_int_equal(ws_header_len(126), 4);
    assert_int_equal(ws_header_len(65535), 4);
    assert_int_equal(ws_header_len(65536), 10);
    assert_int_equal(ws_header_len(UINT64_MAX >> 1), 10);

    assert_int_equal(ws_header(h, WS_OP_BINARY, 0), 2);
    assert_memory_equal(h, "\x82\x00", 2);
    assert_int_equal(ws_header(h, WS_OP_TEXT, 125), 2);
    assert_memory_equal(h, "\x81\x7D", 2);
    assert_int_equal(ws_header(h, WS_OP_BINARY, 126), 4);
    assert_memory_equal(h, "\x82\x7E\x00\x7E", 4);
    assert_int_equal(ws_header(h, WS_OP_BINARY, 65535), 4);
    assert_memory_equal(h, "\x82\x7E\xFF\xFF", 4);
    assert_int_equal(ws_header(h, WS_OP_BINARY, 65536), 10);
    assert_memory_equal(h, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ws_header(h, WS_OP_TEXT, UINT64_C(0x0102030405060708)), 10);
    assert_memory_equal(h, "\x81\x7F\x01\x02\x03\x04\x05\x06\x07\x08", 10);
    assert_int_equal(ws_header(h, WS_OP_PING, 3), 2);
    assert_memory_equal(h, "\x89\x03", 2);
    assert_int_equal(ws_header(h, WS_OP_PONG, 0), 2);
    assert_memory_equal(h, "\x8A\x00", 2);
    assert_int_equal(ws_header(h, WS_OP_CLOSE, 2), 2);
    assert_memory_equal(h, "\x88\x02", 2);
    for (uint64_t len = 0; len < 70000; len++)
        assert_int_equal(ws_header(h, WS_OP_BINARY, len), ws_header_len(len));
}

/* Turn a server close frame (2-byte header) into a masked client frame. */
static size_t mask_server_close(uint8_t *out, const uint8_t *in, size_t n)
{
    assert_true(n >= 2 && (size_t)(in[1] & 0x7F) == n - 2);
    return mkframe(out, in[0], in + 2, n - 2);
}

static void test_close_frame_encoder(void **state)
{
    uint8_t f[WS_MAX_CONTROL + 2], c[WS_MAX_CONTROL + WS_MAX_HEADER];
    char reason[300];
    struct result r;

    assert_int_equal(ws_close_frame(f, 0, "ignored"), 2);
    assert_memory_equal(f, "\x88\x00", 2);
    assert_int_equal(ws_close_frame(f, 1000, NULL), 4);
    assert_memory_equal(f, "\x88\x02\x03\xE8", 4);
    assert_int_equal(ws_close_frame(f, 1000, ""), 4);
    assert_int_equal(ws_close_frame(f, 1001, "idle timeout"), 16);
    assert_memory_equal(f, "\x88\x0E\x03\xE9idle timeout", 16);

    /* ASCII: cut at 123 bytes */
    for (size_t len = 120; len < 300; len++) {
        memset(reason, 'x', len);
        reason[len] = 0;
        size_t n = ws_close_frame(f, 1011, reason);
        size_t want = len < 123 ? len : 123;
        assert_int_equal(n, 4 + want);
        assert_int_equal(f[1], 2 + want);
        assert_memory_equal(f + 4, reason, want);
    }
    /* multi-byte characters straddling the cut: never split */
    static const char *const chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    for (size_t ci = 0; ci < 3; ci++)
        for (size_t pre = 110; pre <= 123; pre++) {
            size_t cl = strlen(chars[ci]);
            memset(reason, 'y', pre);
            memcpy(reason + pre, chars[ci], cl);
            memcpy(reason + pre + cl, "tail-tail-tail", 15);
            size_t n = ws_close_frame(f, 4000, reason);
            size_t rl = n - 4;
            assert_true(rl <= 123);
            assert_memory_equal(f + 4, reason, rl);
            size_t expect = pre + cl <= 123 ? (pre + cl + 14 <= 123 ? pre + cl + 14 : 123) : pre;
            assert_int_equal(rl, expect);
            assert_int_equal(utf8_feed(UTF8_ACCEPT, f + 4, rl), UTF8_ACCEPT);
            /* and the decoder accepts it */
            size_t cn = mask_server_close(c, f, n);
            result_init(&r, NULL, 0);
            decode_whole(c, cn, 0, &r);
            assert_false(r.error);
            assert_int_equal(r.ctl_len, 2 + rl);
            assert_memory_equal(r.ctl + 2, reason, rl);
        }
    /* all 3-byte characters: the cut lands inside one */
    for (size_t i = 0; i < 50; i++)
        memcpy(reason + 3 * i, "\xE2\x82\xAC", 3);
    reason[150] = 0;
    assert_int_equal(ws_close_frame(f, 1000, reason), 4 + 123);
    for (size_t i = 0; i < 50; i++)
        memcpy(reason + 4 * i, "\xF0\x9F\x98\x80", 4);
    reason[200] = 0;
    assert_int_equal(ws_close_frame(f, 1000, reason), 4 + 120);
    assert_int_equal(utf8_feed(UTF8_ACCEPT, f + 4, 120), UTF8_ACCEPT);
}

/* ---- base64 ------------------------------------------------------------- */

static const struct {
    const char *plain, *b64;
} b64_vectors[] = {
    /* RFC 4648 section 10 */
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
    /* both alphabet ends */
    {"\xFB\xFF\xBF", "+/+/"},
    {"\x00\x10\x83", "ABCD"},
};

static void test_base64_encode(void **state)
{
    char out[512];
    uint8_t all[256];

    for (size_t i = 0; i < sizeof b64_vectors / sizeof *b64_vectors; i++) {
        size_t n = strlen(b64_vectors[i].plain);
        if (i == 8)
            n = 3; /* starts with NUL */
        size_t o = ws_base64_encode(out, (const uint8_t *)b64_vectors[i].plain, n);
        assert_int_equal(o, strlen(b64_vectors[i].b64));
        assert_memory_equal(out, b64_vectors[i].b64, o);
    }
    for (size_t i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    size_t o = ws_base64_encode(out, all, 256);
    assert_int_equal(o, 344);
    assert_memory_equal(out, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
                        64);
    assert_memory_equal(out + 336, "/P3+/w==", 8);
}

/* Decode in[0..n) fed as reads ending at cuts (in place); the decoded bytes
 * of each read are gathered into out. Returns the total or -1. */
static long b64_cuts(struct ws_b64dec *st, const char *in, size_t n, const size_t *cuts,
                     size_t ncuts, uint8_t *out)
{
    uint8_t work[512];
    size_t prev = 0, o = 0;

    assert_true(n <= sizeof work);
    memcpy(work, in, n);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        long r = ws_b64_decode(st, work + prev, end - prev);
        if (r < 0)
            return -1;
        assert_true((size_t)r <= end - prev);
        memcpy(out + o, work + prev, (size_t)r);
        o += (size_t)r;
        prev = end;
    }
    return (long)o;
}

static void test_base64_decode_splits(void **state)
{
    uint8_t out[512];
    char enc[512];
    uint8_t plain[300];

    for (size_t v = 0; v < sizeof b64_vectors / sizeof *b64_vectors; v++) {
        const char *b = b64_vectors[v].b64;
        size_t n = strlen(b), pn = v == 8 ? 3 : strlen(b64_vectors[v].plain);
        for (size_t i = 0; i <= n; i++)
            for (size_t j = i; j <= n; j++) {
                struct ws_b64dec st = {0};
                size_t cuts[2] = {i, j};
                assert_int_equal(b64_cuts(&st, b, n, cuts, 2, out), (long)pn);
                assert_memory_equal(out, b64_vectors[v].plain, pn);
                assert_true(ws_b64_complete(&st));
            }
        struct ws_b64dec st = {0};
        size_t cuts[16];
        for (size_t i = 0; i < n; i++)
            cuts[i] = i + 1;
        assert_int_equal(b64_cuts(&st, b, n, cuts, n, out), (long)pn);
        assert_true(ws_b64_complete(&st));
    }
    /* random round trips at every split */
    for (size_t pn = 0; pn < 300; pn += 1 + pn / 8) {
        rnd_fill(plain, pn);
        size_t n = ws_base64_encode(enc, plain, pn);
        for (size_t k = 0; k <= n; k++) {
            struct ws_b64dec st = {0};
            assert_int_equal(b64_cuts(&st, enc, n, &k, 1, out), (long)pn);
            assert_memory_equal(out, plain, pn);
            assert_true(ws_b64_complete(&st));
        }
    }
    /* one message after another: the caller resets between them */
    struct ws_b64dec st = {0};
    assert_int_equal(b64_cuts(&st, "Zg==", 4, NULL, 0, out), 1);
    assert_true(ws_b64_complete(&st));
    memset(&st, 0, sizeof st);
    assert_int_equal(b64_cuts(&st, "Zm8=", 4, NULL, 0, out), 2);
    assert_memory_equal(out, "fo", 2);
    /* unpadded multiples of 4 chain within a message */
    memset(&st, 0, sizeof st);
    assert_int_equal(b64_cuts(&st, "Zm9vYmFyZm9v", 12, NULL, 0, out), 9);
    assert_memory_equal(out, "foobarfoo", 9);
}

static void test_base64_decode_incomplete(void **state)
{
    static const char *const partial[] = {"Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zm9vYg="};
    uint8_t out[16];

    for (size_t i = 0; i < sizeof partial / sizeof *partial; i++) {
        struct ws_b64dec st = {0};
        assert_true(b64_cuts(&st, partial[i], strlen(partial[i]), NULL, 0, out) >= 0);
        assert_false(ws_b64_complete(&st));
    }
    struct ws_b64dec st = {0};
    assert_true(ws_b64_complete(&st)); /* an empty message */
}

static void test_base64_decode_errors(void **state)
{
    static const char *const bad[] = {"Zg== ", " Zg==", "Zm9v\n", "Zm9v\r\n", "Zm-v",
                                      "Zm_v",  "Zm.v",  "Zm*v",   "Zm9v:",    "=",
                                      "Z=",    "Z===",  "====",   "Zg=a",     "Zg==Z",
                                      "Zg===", "Zm8=Z", "Zm8==",  "Zm8=Zm8=", "Zg==Zg=="};
    uint8_t out[64];

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = strlen(bad[i]);
        struct ws_b64dec st = {0};
        assert_int_equal(b64_cuts(&st, bad[i], n, NULL, 0, out), -1);
        assert_false(ws_b64_complete(&st));
        /* stays failed */
        uint8_t ok[4] = {'Z', 'm', '9', 'v'};
        assert_int_equal(ws_b64_decode(&st, ok, 4), -1);
        for (size_t k = 0; k <= n; k++) {
            memset(&st, 0, sizeof st);
            assert_int_equal(b64_cuts(&st, bad[i], n, &k, 1, out), -1);
        }
    }
    /* bytes outside the alphabet, NUL and high bytes included */
    for (unsigned c = 0; c < 256; c++) {
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '+' || c == '/';
        uint8_t buf[4] = {'Z', 'm', (uint8_t)c, 'v'};
        struct ws_b64dec st = {0};
        long r = ws_b64_decode(&st, buf, 4);
        if (alpha)
            assert_int_equal(r, 3);
        else
            assert_int_equal(r, -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_utf8_fast_path),
        cmocka_unit_test(test_unmask),
        cmocka_unit_test(test_decode_sizes_every_split),
        cmocka_unit_test(test_decode_text_every_split),
        cmocka_unit_test(test_decode_1mib),
        cmocka_unit_test(test_length_encodings),
        cmocka_unit_test(test_decode_event_details),
        cmocka_unit_test(test_fragmented_interleaved),
        cmocka_unit_test(test_utf8_across_fragments),
        cmocka_unit_test(test_decode_invalid_utf8),
        cmocka_unit_test(test_empty_frames),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_split_invariance),
        cmocka_unit_test(test_err_unmasked),
        cmocka_unit_test(test_err_rsv),
        cmocka_unit_test(test_err_reserved_opcodes),
        cmocka_unit_test(test_err_control_fragmented),
        cmocka_unit_test(test_err_control_too_long),
        cmocka_unit_test(test_err_continuation_without_message),
        cmocka_unit_test(test_err_new_message_in_fragmented),
        cmocka_unit_test(test_err_length_top_bit),
        cmocka_unit_test(test_err_sticky),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_close_decode_codes),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_control_payloads),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_header_encoder),
        cmocka_unit_test(test_close_frame_encoder),
        cmocka_unit_test(test_base64_encode),
        cmocka_unit_test(test_base64_decode_splits),
        cmocka_unit_test(test_base64_decode_incomplete),
        cmocka_unit_test(test_base64_decode_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
