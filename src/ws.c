/* ws.c - RFC 6455 frame codec: streaming client-frame decoder, server-frame
 * encoder, UTF-8 validation, close-code rules and base64.
 * Pure: no I/O, no allocation, no mutable globals. */
#include "ws.h"

#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------ */

/* Byte classes for the validator:
 *  0 00..7F   1 80..8F   2 90..9F   3 A0..BF   4 C2..DF   5 E0
 *  6 E1..EC, EE..EF      7 ED       8 F0       9 F1..F3  10 F4
 * 11 C0, C1, F5..FF (never valid) */
/* clang-format off */
static const uint8_t utf8_class[256] = {
    /* 00 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 10 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 20 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 30 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 40 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 50 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 60 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 70 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 80 */  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
    /* 90 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* A0 */  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,
    /* B0 */  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,
    /* C0 */ 11, 11,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    /* D0 */  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    /* E0 */  5,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  7,  6,  6,
    /* F0 */  8,  9,  9,  9, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,
};
/* clang-format on */

/* Validator states: 0 ACCEPT, 1 REJECT, and inside a character:
 * 2 one continuation byte (80..BF) left
 * 3 two left (80..BF, 80..BF)
 * 4 after E0: A0..BF then one more (no overlongs)
 * 5 after ED: 80..9F then one more (no surrogates)
 * 6 three left (80..BF, then state 3)
 * 7 after F0: 90..BF then two more (no overlongs)
 * 8 after F4: 80..8F then two more (nothing above U+10FFFF) */
#define UTF8_NCLASS 12
static const uint8_t utf8_next[9][UTF8_NCLASS] = {
    /*       00 80 90 A0 C2 E0 E1 ED F0 F1 F4 bad */
    /* 0 */ {0, 1, 1, 1, 2, 4, 3, 5, 7, 6, 8, 1},
    /* 1 */ {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 2 */ {1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 3 */ {1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 4 */ {1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 5 */ {1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 6 */ {1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 7 */ {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 8 */ {1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
};

#define HIGH_BITS UINT64_C(0x8080808080808080)

/* Table-driven DFA; ASCII runs at a character boundary are skipped eight
 * bytes at a time. Returns UTF8_REJECT at the first impossible byte. */
utf8_state utf8_feed(utf8_state st, const uint8_t *p, size_t n)
{
    size_t i = 0;

    if (st == UTF8_REJECT)
        return st;
    while (i < n) {
        if (st == UTF8_ACCEPT) {
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & HIGH_BITS)
                    break;
                i += 8;
            }
            while (i < n && p[i] < 0x80)
                i++;
            if (i == n)
                break;
        }
        st = utf8_next[st][utf8_class[p[i]]];
        i++;
        if (st == UTF8_REJECT)
            return st;
    }
    return st;
}

/* ---- masking ---------------------------------------------------------- */

/* XOR with the mask rotated to phase: bytes until data is 32-byte aligned,
 * then 32 bytes at a time (a GCC vector type, which becomes SSE2 or AVX2
 * instructions; the mask repeated eight times), then the tail. Works for any
 * alignment and any phase; memcpy keeps it free of aliasing problems. */
typedef uint8_t unmask_vec __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) void unmask_body(uint8_t *data, size_t n,
                                                              const uint8_t mask[4], size_t phase)
{
    uint8_t m[4];
    size_t i = 0;

    for (size_t k = 0; k < 4; k++)
        m[k] = mask[(phase + k) & 3];
    while (i < n && ((uintptr_t)(data + i) & 31) != 0) {
        data[i] ^= m[i & 3];
        i++;
    }
    if (n - i >= 32) {
        uint8_t rot[32];
        unmask_vec mv;
        for (size_t k = 0; k < 32; k++)
            rot[k] = m[(i + k) & 3];
        memcpy(&mv, rot, 32);
        for (; n - i >= 32; i += 32) {
            unmask_vec w;
            memcpy(&w, data + i, 32);
            w ^= mv;
            memcpy(data + i, &w, 32);
        }
    }
    for (; i < n; i++)
        data[i] ^= m[i & 3];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same loop compiled for AVX2, chosen at run time where the CPU has it. */
__attribute__((target("avx2"))) static void unmask_avx2(uint8_t *data, size_t n,
                                                        const uint8_t mask[4], size_t phase)
{
    unmask_body(data, n, mask, phase);
}
#endif

void ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], size_t phase)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (n >= 64 && __builtin_cpu_supports("avx2")) {
        unmask_avx2(data, n, mask, phase);
        return;
    }
#endif
    unmask_body(data, n, mask, phase);
}

/* ---- decoder ---------------------------------------------------------- */

/* Decoder states: which part of the frame the next bytes complete. Header
 * bytes are gathered in d->hdr until hdr_have reaches hdr_need. */
enum {
    ST_B0,     /* FIN, RSV, opcode */
    ST_B1,     /* MASK bit, 7-bit length */
    ST_EXTLEN, /* 16- or 64-bit length */
    ST_MASK,   /* masking key */
    ST_PAYLOAD,
};

/* Close, ping and pong (and the reserved 0xB-0xF) have the high opcode bit. */
static bool op_is_control(uint8_t op)
{
    return (op & 0x8) != 0;
}

/* Back to the start of a frame header. */
static void next_frame(struct ws_decoder *d)
{
    d->state = ST_B0;
    d->hdr_have = 0;
    d->hdr_need = 1;
}

/* The data message in progress ended. */
static void end_message(struct ws_decoder *d)
{
    d->msg_op = 0;
    d->msg_len = 0;
    d->msg_compressed = false;
    d->utf8 = UTF8_ACCEPT;
}

/* Enter the failed state and report it; returns consumed for the caller. */
static size_t fail(struct ws_decoder *d, struct ws_event *ev, uint16_t code, const char *reason,
                   size_t consumed)
{
    d->failed = true;
    d->err_code = code;
    d->err_reason = reason;
    ev->type = WS_EV_ERROR;
    ev->close_code = code;
    ev->reason = reason;
    return consumed;
}

/* Zeroed state, waiting for the first header byte; no message in progress. */
void ws_decoder_init(struct ws_decoder *d, uint64_t max_message)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message;
    d->utf8 = UTF8_ACCEPT;
    next_frame(d);
}

/* Payload length known (in any encoding, minimal or not): a control frame
 * may carry 125 bytes; a data frame is checked against max_message and
 * counted. Returns 0 or the close code of the failure. */
static uint16_t set_length(struct ws_decoder *d, uint64_t len, const char **reason)
{
    d->remaining = len;
    if (op_is_control(d->op)) {
        if (len > WS_MAX_CONTROL) {
            *reason = "control frame too long";
            return WS_CLOSE_PROTOCOL;
        }
        return 0;
    }
    if (d->msg_compressed)
        return 0; /* the decompressed size is what counts (pmd.c) */
    if (d->max_message && len > d->max_message - d->msg_len) {
        *reason = "message too big";
        return WS_CLOSE_TOO_BIG;
    }
    /* Saturate: only compared against max_message, which bounds it when set. */
    d->msg_len = (len > UINT64_MAX - d->msg_len) ? UINT64_MAX : d->msg_len + len;
    return 0;
}

/* hdr[0..hdr_need) is complete for the current state: check it and move on.
 * Returns 0 or the close code of the failure (with *reason set). Each check is
 * made as soon as its bytes are there, so errors are reported early. */
static uint16_t header_step(struct ws_decoder *d, const char **reason)
{
    *reason = NULL;
    switch (d->state) {
    case ST_B0: {
        uint8_t b = d->hdr[0];
        uint8_t op = b & 0x0F;
        d->fin = (b & 0x80) != 0;
        d->op = op;
        if (b & 0x30)
            *reason = "reserved bits set";
        else if ((b & 0x40) && !d->rsv1_ok)
            *reason = "reserved bits set";
        else if ((b & 0x40) && op_is_control(op))
            *reason = "RSV1 on a control frame";
        else if ((b & 0x40) && op == WS_OP_CONT)
            *reason = "RSV1 on a continuation frame";
        else if (op == WS_OP_CONT && d->msg_op == 0)
            *reason = "continuation without a message";
        else if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && d->msg_op != 0)
            *reason = "new message inside a fragmented one";
        else if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY && op != WS_OP_CLOSE &&
                 op != WS_OP_PING && op != WS_OP_PONG)
            *reason = "reserved opcode";
        else if (op_is_control(op) && !d->fin)
            *reason = "fragmented control frame";
        if (*reason)
            return WS_CLOSE_PROTOCOL;
        if (op == WS_OP_TEXT || op == WS_OP_BINARY) {
            d->msg_op = op;
            d->msg_len = 0;
            d->msg_compressed = (b & 0x40) != 0;
            d->utf8 = UTF8_ACCEPT;
        }
        d->state = ST_B1;
        d->hdr_need = 2;
        return 0;
    }
    case ST_B1: {
        uint8_t b = d->hdr[1];
        uint8_t len7 = b & 0x7F;
        if (!(b & 0x80)) {
            *reason = "unmasked frame";
            return WS_CLOSE_PROTOCOL;
        }
        if (len7 < 126) {
            d->state = ST_MASK;
            d->hdr_need = 2 + 4;
            return set_length(d, len7, reason);
        }
        d->state = ST_EXTLEN;
        d->hdr_need = 2 + (len7 == 126 ? 2 : 8);
        return 0;
    }
    case ST_EXTLEN: {
        uint64_t len = 0;
        for (size_t i = 2; i < d->hdr_need; i++)
            len = (len << 8) | d->hdr[i];
        if (len >> 63) {
            *reason = "frame length over 2^63";
            return WS_CLOSE_PROTOCOL;
        }
        d->state = ST_MASK;
        d->hdr_need += 4;
        return set_length(d, len, reason);
    }
    case ST_MASK:
        memcpy(d->mask, d->hdr + d->hdr_need - 4, 4);
        d->mask_pos = 0;
        d->ctl_len = 0;
        d->state = ST_PAYLOAD;
        return 0;
    default:
        *reason = "decoder state";
        return WS_CLOSE_INTERNAL;
    }
}

/* The control frame in d->ctl is complete: validate a close payload and
 * report the event. */
static size_t control_done(struct ws_decoder *d, struct ws_event *ev, size_t pos)
{
    next_frame(d);
    if (d->op == WS_OP_CLOSE) {
        if (d->ctl_len == 0) {
            ev->close_code = WS_CLOSE_NO_STATUS;
        } else if (d->ctl_len == 1) {
            return fail(d, ev, WS_CLOSE_PROTOCOL, "close frame of 1 byte", pos);
        } else {
            uint16_t code = (uint16_t)((d->ctl[0] << 8) | d->ctl[1]);
            if (!ws_close_code_valid(code))
                return fail(d, ev, WS_CLOSE_PROTOCOL, "invalid close code", pos);
            if (utf8_feed(UTF8_ACCEPT, d->ctl + 2, d->ctl_len - 2) != UTF8_ACCEPT)
                return fail(d, ev, WS_CLOSE_BAD_DATA, "invalid UTF-8 in close reason", pos);
            ev->close_code = code;
        }
    }
    ev->type = WS_EV_CONTROL;
    ev->opcode = (enum ws_opcode)d->op;
    ev->off = 0;
    ev->len = d->ctl_len;
    return pos;
}

/* A data range buf[off..off+n) was unmasked (and validated); if it ends the
 * frame, finish the frame and possibly the message. Reports WS_EV_DATA. */
static size_t data_range(struct ws_decoder *d, struct ws_event *ev, size_t off, size_t n)
{
    bool fin = false;

    if (d->remaining == 0) {
        next_frame(d);
        if (d->fin) {
            if (d->msg_op == WS_OP_TEXT && !d->msg_compressed && d->utf8 != UTF8_ACCEPT)
                return fail(d, ev, WS_CLOSE_BAD_DATA, "truncated UTF-8 at message end", off + n);
            fin = true;
        }
    }
    ev->type = WS_EV_DATA;
    ev->opcode = (enum ws_opcode)d->msg_op;
    ev->off = off;
    ev->len = n;
    ev->fin = fin;
    ev->compressed = d->msg_compressed;
    if (fin)
        end_message(d);
    return off + n;
}

/* Streaming decoder: gathers the header (checking each part as soon as it
 * is complete), then unmasks the payload in place. Returns at the first
 * event; an empty non-final data frame gives none and decoding goes on. */
size_t ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len, struct ws_event *ev)
{
    size_t pos = 0;

    memset(ev, 0, sizeof *ev);
    ev->type = WS_EV_NONE;
    if (d->failed) {
        ev->type = WS_EV_ERROR;
        ev->close_code = d->err_code;
        ev->reason = d->err_reason;
        return 0;
    }
    for (;;) {
        if (d->state != ST_PAYLOAD) {
            if (pos == len)
                return pos;
            size_t take = d->hdr_need - d->hdr_have;
            if (take > len - pos)
                take = len - pos;
            memcpy(d->hdr + d->hdr_have, buf + pos, take);
            d->hdr_have += take;
            pos += take;
            if (d->hdr_have < d->hdr_need)
                return pos; /* every byte consumed: need more */
            const char *reason;
            uint16_t code = header_step(d, &reason);
            if (code)
                return fail(d, ev, code, reason, pos);
            if (d->state != ST_PAYLOAD || d->remaining > 0)
                continue;
            /* An empty frame is complete as soon as its header is. */
            if (op_is_control(d->op))
                return control_done(d, ev, pos);
            if (!d->fin) {
                next_frame(d);
                continue;
            }
            return data_range(d, ev, pos, 0);
        }

        if (pos == len)
            return pos;
        size_t n = len - pos;
        if (n > d->remaining)
            n = (size_t)d->remaining;

        if (op_is_control(d->op)) {
            memcpy(d->ctl + d->ctl_len, buf + pos, n);
            ws_unmask(d->ctl + d->ctl_len, n, d->mask, d->mask_pos);
            d->ctl_len += n;
            d->mask_pos = (d->mask_pos + n) & 3;
            d->remaining -= n;
            pos += n;
            if (d->remaining == 0)
                return control_done(d, ev, pos);
            continue;
        }

        uint8_t *p = buf + pos;
        ws_unmask(p, n, d->mask, d->mask_pos);
        d->mask_pos = (d->mask_pos + n) & 3;
        d->remaining -= n;
        if (d->msg_op == WS_OP_TEXT && !d->msg_compressed) {
            d->utf8 = utf8_feed(d->utf8, p, n);
            if (d->utf8 == UTF8_REJECT)
                return fail(d, ev, WS_CLOSE_BAD_DATA, "invalid UTF-8", pos + n);
        }
        return data_range(d, ev, pos, n);
    }
}

/* ---- encoder ---------------------------------------------------------- */

/* 2, 4 or 10: the length ws_header writes for a payload of len bytes. */
size_t ws_header_len(uint64_t len)
{
    if (len < 126)
        return 2;
    if (len <= 0xFFFF)
        return 4;
    return 10;
}

/* ws_header, then RSV1 added to the first byte. */
size_t ws_header_rsv1(uint8_t *out, enum ws_opcode op, uint64_t len)
{
    size_t n = ws_header(out, op, len);
    out[0] |= 0x40;
    return n;
}

/* FIN + opcode, then the shortest length encoding; servers never mask. */
size_t ws_header(uint8_t *out, enum ws_opcode op, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (op & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* Payload = code (big endian) + reason cut to 123 bytes, never inside a
 * UTF-8 character (the cut moves back over continuation bytes). */
size_t ws_close_frame(uint8_t *out, uint16_t code, const char *reason)
{
    size_t rlen = 0;

    if (code == 0)
        return ws_header(out, WS_OP_CLOSE, 0);
    if (reason) {
        rlen = strlen(reason);
        if (rlen > WS_MAX_CONTROL - 2) {
            rlen = WS_MAX_CONTROL - 2;
            while (rlen > 0 && ((uint8_t)reason[rlen] & 0xC0) == 0x80)
                rlen--;
        }
    }
    size_t h = ws_header(out, WS_OP_CLOSE, 2 + rlen);
    out[h] = (uint8_t)(code >> 8);
    out[h + 1] = (uint8_t)code;
    if (rlen)
        memcpy(out + h + 2, reason, rlen);
    return h + 2 + rlen;
}

/* 1000-1003, 1007-1014 (1012-1014 are IANA-registered) and 3000-4999 for
 * libraries and applications. 1004-1006 and 1015 must not be sent. */
bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- base64 ----------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet, '=' padding; out needs 4*ceil(n/3) bytes (no NUL). */
size_t ws_base64_encode(char *out, const uint8_t *in, size_t n)
{
    size_t o = 0, i = 0;

    for (; n - i >= 3; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

#define B64_PAD 64
#define B64_BAD 255
/* Sextet value of each byte; B64_PAD for '=', B64_BAD outside the alphabet. */
/* clang-format off */
static const uint8_t b64_value[256] = {
    /* 00 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* 10 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* 20 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, 255,  63,
    /* 30 */  52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255,  64, 255, 255,
    /* 40 */ 255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
    /* 50 */  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255, 255,
    /* 60 */ 255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
    /* 70 */  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    /* 80 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* 90 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* A0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* B0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* C0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* D0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* E0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    /* F0 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};
/* clang-format on */

/* Each character after the first of a quantum completes exactly one output
 * byte, which is written at once: so the output index never passes the input
 * index, even with sextets carried over from an earlier call. Padding may
 * only close a quantum ("xx==" or "xxx="); nothing may follow it. Non-zero
 * bits under the padding are ignored, as Python's b64decode does. */
long ws_b64_decode(struct ws_b64dec *st, uint8_t *p, size_t n)
{
    size_t o = 0;

    if (st->nacc < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t v = b64_value[p[i]];
        if (v == B64_BAD)
            goto bad;
        if (v == B64_PAD) {
            /* '=' at quantum position 2 (then another '=') or 3 */
            if (st->nacc < 2)
                goto bad;
            st->pad++;
            st->nacc = (st->nacc + 1) & 3;
            st->acc = 0;
            continue;
        }
        if (st->pad)
            goto bad; /* data after padding, or "xx=x" */
        st->acc = (st->acc << 6) | v;
        switch (st->nacc) {
        case 0:
            break;
        case 1: /* 12 bits: emit 8, keep 4 */
            p[o++] = (uint8_t)(st->acc >> 4);
            st->acc &= 0x0F;
            break;
        case 2: /* 10 bits: emit 8, keep 2 */
            p[o++] = (uint8_t)(st->acc >> 2);
            st->acc &= 0x03;
            break;
        default: /* 8 bits */
            p[o++] = (uint8_t)st->acc;
            st->acc = 0;
            break;
        }
        st->nacc = (st->nacc + 1) & 3;
    }
    return (long)o;
bad:
    st->nacc = -1;
    return -1;
}

/* A message may end only between quanta (after "xxxx", "xx==" or "xxx="). */
bool ws_b64_complete(const struct ws_b64dec *st)
{
    return st->nacc == 0;
}
