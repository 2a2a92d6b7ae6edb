/* fuzz_ws.c - libFuzzer harness for the RFC 6455 codec (src/ws.c).
 *
 * Input layout: byte 0 picks the decoder's max_message (low 2 bits); bytes
 * 1..4 seed the chunking; the rest is the client byte stream.
 *
 * The stream is decoded three ways: in one piece, one byte per call, and in
 * chunks whose sizes come from the seed. Each chunk is an exact-size heap
 * copy, so ASan catches a read past what the decoder was given. A
 * differential property must hold: every chunking yields the same events
 * (complete messages with their opcode and bytes, control frames with their
 * payload and close code, and the error with its close code and reason).
 * The only allowed difference is in the data of the message in progress when
 * an error ends the stream: the decoder fails fast and does not deliver the
 * bytes of a failing frame that arrived in the same call, so one run's
 * partial data is a prefix of the other's.
 * Per call: the result is at most what was given, WS_EV_NONE means every byte
 * was consumed, a data range lies inside the bytes consumed, a control payload
 * fits 125 bytes, a received close code is valid, and after an error the
 * decoder repeats it and consumes nothing.
 * Also: utf8_feed gives the same state however the stream is split;
 * ws_b64_decode gives the same output however a message is split, never
 * writes more than it read, and decodes what ws_base64_encode made back to
 * the original; a close frame from ws_close_frame, masked, decodes to its code
 * and reason; ws_header agrees with ws_header_len. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ws.h"

/* ---- a growable byte buffer ------------------------------------------- */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *grown = realloc(b->p, cap);
        CHECK(grown != NULL);
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bytes_u64(struct bytes *b, uint64_t v)
{
    bytes_add(b, &v, sizeof v);
}

static void bytes_free(struct bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- chunkings -------------------------------------------------------- */

/* xorshift32; never 0. */
static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

enum mode { WHOLE, BYTES, RANDOM };

/* Size of the next chunk (at least 1) with left bytes left. */
static size_t chunk_size(enum mode m, uint32_t *rs, size_t left)
{
    size_t n;

    if (m == WHOLE)
        return left;
    if (m == BYTES)
        return 1;
    uint32_t r = next_rand(rs);
    switch (r & 3) {
    case 0:
        n = 1 + (r >> 8) % 3; /* splits inside headers */
        break;
    case 1:
        n = 1 + (r >> 8) % 16;
        break;
    case 2:
        n = 1 + (r >> 8) % 200;
        break;
    default:
        n = 1 + (r >> 8) % 5000;
        break;
    }
    return n < left ? n : left;
}

/* ---- one decoding run ------------------------------------------------- */

struct run {
    struct bytes trace; /* events, comparable between runs */
    struct bytes msg;   /* data of the message in progress */
    struct bytes msgs;  /* complete messages: [u64 opcode][u64 len][bytes] ... */
    int msg_op;         /* opcode of the message in progress, 0 = none */
    int failed;         /* an error was reported */
    uint16_t err_code;
    const char *err_reason;
};

static void run_free(struct run *r)
{
    bytes_free(&r->trace);
    bytes_free(&r->msg);
    bytes_free(&r->msgs);
}

/* Record one event produced from chunk buf (after ws_decode returned used). */
static void record(struct run *r, const struct ws_decoder *d, const struct ws_event *ev,
                   const uint8_t *buf, size_t used)
{
    switch (ev->type) {
    case WS_EV_NONE:
        break;
    case WS_EV_DATA:
        CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        CHECK(ev->off <= used && ev->len <= used - ev->off);
        CHECK(ev->len > 0 || ev->fin);
        if (r->msg_op == 0)
            r->msg_op = ev->opcode;
        CHECK(r->msg_op == (int)ev->opcode);
        bytes_add(&r->msg, buf + ev->off, ev->len);
        if (ev->fin) {
            if (ev->opcode == WS_OP_TEXT)
                CHECK(utf8_feed(UTF8_ACCEPT, r->msg.p, r->msg.len) == UTF8_ACCEPT);
            bytes_u64(&r->trace, 'M');
            bytes_u64(&r->trace, (uint64_t)r->msg_op);
            bytes_u64(&r->trace, r->msg.len);
            bytes_add(&r->trace, r->msg.p, r->msg.len);
            bytes_u64(&r->msgs, (uint64_t)r->msg_op);
            bytes_u64(&r->msgs, r->msg.len);
            bytes_add(&r->msgs, r->msg.p, r->msg.len);
            r->msg.len = 0;
            r->msg_op = 0;
        }
        break;
    case WS_EV_CONTROL:
        CHECK(ev->opcode == WS_OP_CLOSE || ev->opcode == WS_OP_PING || ev->opcode == WS_OP_PONG);
        CHECK(ev->len == d->ctl_len && ev->len <= WS_MAX_CONTROL);
        if (ev->opcode == WS_OP_CLOSE) {
            if (ev->len == 0) {
                CHECK(ev->close_code == WS_CLOSE_NO_STATUS);
            } else {
                CHECK(ev->len >= 2);
                CHECK(ws_close_code_valid(ev->close_code));
                CHECK(ev->close_code == ((d->ctl[0] << 8) | d->ctl[1]));
                CHECK(utf8_feed(UTF8_ACCEPT, d->ctl + 2, ev->len - 2) == UTF8_ACCEPT);
            }
        }
        bytes_u64(&r->trace, 'C');
        bytes_u64(&r->trace, ev->opcode);
        bytes_u64(&r->trace, ev->opcode == WS_OP_CLOSE ? ev->close_code : 0);
        bytes_u64(&r->trace, r->msg.len); /* earlier data frames are complete */
        bytes_u64(&r->trace, ev->len);
        bytes_add(&r->trace, d->ctl, ev->len);
        break;
    case WS_EV_ERROR:
        CHECK(ev->close_code == WS_CLOSE_PROTOCOL || ev->close_code == WS_CLOSE_BAD_DATA ||
              ev->close_code == WS_CLOSE_TOO_BIG);
        CHECK(ev->reason != NULL && ev->reason[0] != '\0');
        r->failed = 1;
        r->err_code = ev->close_code;
        r->err_reason = ev->reason;
        break;
    }
}

/* Decode stream[0..n) in chunks chosen by mode; fills r. */
static void decode_run(const uint8_t *stream, size_t n, uint64_t max_message, enum mode m,
                       uint32_t seed, struct run *r)
{
    struct ws_decoder d;
    uint32_t rs = seed ? seed : 0x9E3779B9u;
    size_t at = 0;

    memset(r, 0, sizeof *r);
    ws_decoder_init(&d, max_message);
    while (at < n && !r->failed) {
        size_t len = chunk_size(m, &rs, n - at);
        uint8_t *chunk = malloc(len);
        CHECK(chunk != NULL);
        memcpy(chunk, stream + at, len);
        size_t pos = 0;
        for (;;) {
            struct ws_event ev;
            size_t used = ws_decode(&d, chunk + pos, len - pos, &ev);
            CHECK(used <= len - pos);
            record(r, &d, &ev, chunk + pos, used);
            pos += used;
            if (ev.type == WS_EV_ERROR) {
                /* Sticky: the same error again, nothing consumed. */
                struct ws_event again;
                CHECK(ws_decode(&d, chunk + pos, len - pos, &again) == 0);
                CHECK(again.type == WS_EV_ERROR && again.close_code == ev.close_code);
                CHECK(again.reason == ev.reason);
                break;
            }
            if (ev.type == WS_EV_NONE) {
                CHECK(pos == len);
                break;
            }
            CHECK(used > 0);
        }
        free(chunk);
        at += len;
    }
}

/* a[0..na) is a prefix of b[0..nb) or the other way round. */
static int prefix_related(const struct bytes *a, const struct bytes *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    return n == 0 || memcmp(a->p, b->p, n) == 0;
}

static void compare_runs(const struct run *a, const struct run *b)
{
    CHECK(a->trace.len == b->trace.len);
    CHECK(a->trace.len == 0 || memcmp(a->trace.p, b->trace.p, a->trace.len) == 0);
    CHECK(a->failed == b->failed);
    if (a->failed) {
        CHECK(a->err_code == b->err_code);
        CHECK(strcmp(a->err_reason, b->err_reason) == 0);
        CHECK(a->msg_op == b->msg_op || a->msg_op == 0 || b->msg_op == 0);
        CHECK(prefix_related(&a->msg, &b->msg));
    } else {
        CHECK(a->msg_op == b->msg_op);
        CHECK(a->msg.len == b->msg.len);
        CHECK(a->msg.len == 0 || memcmp(a->msg.p, b->msg.p, a->msg.len) == 0);
    }
}

/* ---- the other codec functions ---------------------------------------- */

/* UTF-8 validation does not depend on how the bytes are split. */
static void check_utf8_splits(const uint8_t *p, size_t n, uint32_t seed)
{
    utf8_state whole = utf8_feed(UTF8_ACCEPT, p, n);
    utf8_state st = UTF8_ACCEPT, bytewise = UTF8_ACCEPT;
    uint32_t rs = seed ? seed : 1;

    for (size_t i = 0; i < n; i++)
        bytewise = utf8_feed(bytewise, p + i, 1);
    for (size_t at = 0; at < n;) {
        size_t len = chunk_size(RANDOM, &rs, n - at);
        st = utf8_feed(st, p + at, len);
        at += len;
    }
    CHECK(whole == bytewise && whole == st);
}

/* Decode src[0..n) as base64 in chunks; the output goes to out (n bytes).
 * Returns the decoded length or -1. */
static long b64_chunked(const uint8_t *src, size_t n, enum mode m, uint32_t seed, uint8_t *out,
                        int *complete)
{
    struct ws_b64dec st;
    uint32_t rs = seed ? seed : 7;
    size_t o = 0;

    memset(&st, 0, sizeof st);
    for (size_t at = 0; at < n;) {
        size_t len = chunk_size(m, &rs, n - at);
        uint8_t *chunk = malloc(len);
        CHECK(chunk != NULL);
        memcpy(chunk, src + at, len);
        long k = ws_b64_decode(&st, chunk, len);
        if (k < 0) {
            free(chunk);
            CHECK(ws_b64_decode(&st, out, 0) == -1); /* stays failed */
            return -1;
        }
        CHECK((size_t)k <= len);
        memcpy(out + o, chunk, (size_t)k);
        o += (size_t)k;
        free(chunk);
        at += len;
    }
    *complete = ws_b64_complete(&st);
    return (long)o;
}

static void check_base64(const uint8_t *msg, size_t n, uint32_t seed)
{
    uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *c = malloc(n + 1);
    int ca = 0, cb = 0, cc = 0;

    CHECK(a && b && c);
    long ka = b64_chunked(msg, n, WHOLE, seed, a, &ca);
    long kb = b64_chunked(msg, n, BYTES, seed, b, &cb);
    long kc = b64_chunked(msg, n, RANDOM, seed, c, &cc);
    CHECK(ka == kb && ka == kc);
    if (ka >= 0) {
        CHECK((size_t)ka <= n / 4 * 3 + 2);
        CHECK(ca == cb && ca == cc);
        CHECK(memcmp(a, b, (size_t)ka) == 0 && memcmp(a, c, (size_t)ka) == 0);
    }
    free(a);
    free(b);
    free(c);

    /* Round trip: encode the message, decode it back. */
    size_t elen = (n + 2) / 3 * 4;
    char *enc = malloc(elen + 1);
    uint8_t *dec = malloc(elen + 1);
    CHECK(enc && dec);
    CHECK(ws_base64_encode(enc, msg, n) == elen);
    int complete = 0;
    long k = b64_chunked((const uint8_t *)enc, elen, RANDOM, seed, dec, &complete);
    CHECK(k >= 0 && (size_t)k == n && complete);
    CHECK(n == 0 || memcmp(dec, msg, n) == 0);
    free(enc);
    free(dec);
}

/* A close frame we build, masked like a client would, decodes to what we
 * put in (when it is something a client may send). */
static void check_close_frame(uint16_t code, const uint8_t *reason_src, size_t n, uint32_t seed)
{
    char reason[160];
    uint8_t frame[WS_MAX_SERVER_HEADER + WS_MAX_CONTROL + 8];
    uint8_t client[sizeof frame + 4];

    if (n > sizeof reason - 1)
        n = sizeof reason - 1;
    memcpy(reason, reason_src, n);
    reason[n] = '\0';
    size_t rlen = strlen(reason);

    size_t flen = ws_close_frame(frame, code, reason);
    CHECK(flen >= 2 && flen <= 2 + WS_MAX_CONTROL);
    CHECK(frame[0] == (0x80 | WS_OP_CLOSE));
    size_t plen = frame[1];
    CHECK(plen <= WS_MAX_CONTROL && flen == 2 + plen);
    if (code == 0) {
        CHECK(plen == 0);
        return;
    }
    CHECK(plen >= 2 && frame[2] == (code >> 8) && frame[3] == (code & 0xFF));
    size_t got = plen - 2;
    CHECK(got <= rlen && memcmp(frame + 4, reason, got) == 0);
    if (rlen <= WS_MAX_CONTROL - 2)
        CHECK(got == rlen);
    int valid_text = utf8_feed(UTF8_ACCEPT, (const uint8_t *)reason, got) == UTF8_ACCEPT;
    /* Valid UTF-8 is cut at a character start (bytes that are not UTF-8
     * may be cut anywhere: wsgate only sends its own ASCII reasons). */
    if (got < rlen && utf8_feed(UTF8_ACCEPT, (const uint8_t *)reason, rlen) == UTF8_ACCEPT)
        CHECK(((uint8_t)reason[got] & 0xC0) != 0x80 && valid_text);

    /* Mask it as a client frame and decode. */
    uint8_t mask[4] = {(uint8_t)seed, (uint8_t)(seed >> 8), (uint8_t)(seed >> 16),
                       (uint8_t)(seed >> 24)};
    client[0] = frame[0];
    client[1] = (uint8_t)(0x80 | plen);
    memcpy(client + 2, mask, 4);
    for (size_t i = 0; i < plen; i++)
        client[6 + i] = frame[2 + i] ^ mask[i & 3];
    struct ws_decoder d;
    struct ws_event ev;
    ws_decoder_init(&d, 0);
    size_t used = ws_decode(&d, client, 6 + plen, &ev);
    CHECK(used == 6 + plen);
    if (ws_close_code_valid(code) && valid_text) {
        CHECK(ev.type == WS_EV_CONTROL && ev.opcode == WS_OP_CLOSE);
        CHECK(ev.close_code == code && ev.len == plen);
        CHECK(memcmp(d.ctl + 2, reason, got) == 0);
    } else {
        CHECK(ev.type == WS_EV_ERROR);
        CHECK(ev.close_code == (ws_close_code_valid(code) ? WS_CLOSE_BAD_DATA : WS_CLOSE_PROTOCOL));
    }
}

static void check_header(uint64_t len, uint8_t op)
{
    uint8_t out[WS_MAX_SERVER_HEADER + 4];

    memset(out, 0xEE, sizeof out);
    size_t h = ws_header(out, (enum ws_opcode)(op & 0x0F), len);
    CHECK(h == ws_header_len(len) && h <= WS_MAX_SERVER_HEADER);
    CHECK(out[h] == 0xEE);
    CHECK(out[0] == (0x80 | (op & 0x0F)) && (out[1] & 0x80) == 0);
    uint64_t back = out[1] & 0x7F;
    if (back == 126)
        back = (uint64_t)out[2] << 8 | out[3];
    else if (back == 127)
        for (int i = 0; i < 8; i++)
            back = (i == 0 ? 0 : back << 8) | out[2 + i];
    CHECK(back == len);
}

/* ---- entry point ------------------------------------------------------ */

static const uint64_t max_messages[4] = {0, 1, 125, 1000};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run whole, bytes, chunks;

    if (size < 5)
        return 0;
    uint64_t max_message = max_messages[data[0] & 3];
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    const uint8_t *stream = data + 5;
    size_t n = size - 5;

    decode_run(stream, n, max_message, WHOLE, seed, &whole);
    decode_run(stream, n, max_message, BYTES, seed, &bytes);
    decode_run(stream, n, max_message, RANDOM, seed, &chunks);
    compare_runs(&whole, &bytes);
    compare_runs(&whole, &chunks);

    /* Every complete message through the base64 decoder. */
    for (size_t at = 0; at < whole.msgs.len;) {
        uint64_t op, len;
        memcpy(&op, whole.msgs.p + at, 8);
        memcpy(&len, whole.msgs.p + at + 8, 8);
        at += 16;
        check_base64(whole.msgs.p + at, (size_t)len, seed);
        at += (size_t)len;
    }
    if (whole.msgs.len == 0)
        check_base64(stream, n < 512 ? n : 512, seed);

    check_utf8_splits(stream, n, seed);
    check_close_frame((uint16_t)(seed & 0xFFFF), stream, n, seed);
    uint64_t hlen = 0;
    for (size_t i = 0; i < 8 && i < n; i++)
        hlen = hlen << 8 | stream[i];
    check_header(hlen >> (seed % 64), (uint8_t)(seed >> 24));

    run_free(&whole);
    run_free(&bytes);
    run_free(&chunks);
    return 0;
}
