/* pmd.c - permessage-deflate (RFC 7692): extension negotiation and the two
 * zlib streams of a session. No I/O, no logging; zlib allocates through
 * counting hooks so a session's memory is known (pmd.mem). */
#include "pmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ---- negotiation ------------------------------------------------------ */

/* RFC 7230 tchar. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A cursor over one header value. */
struct cur {
    const char *p, *end;
};

static void skip_ows(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* A token at the cursor: its start and length (0 = none). */
static size_t token(struct cur *c, const char **tok)
{
    *tok = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p))
        c->p++;
    return (size_t)(c->p - *tok);
}

/* A token or quoted-string value, unescaped into v (cap bytes, NUL-terminated;
 * longer values are cut, which makes them invalid for every parameter).
 * Returns false on malformed syntax. */
static bool value(struct cur *c, char *v, size_t cap)
{
    size_t n = 0;

    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p == c->end)
                return false; /* unterminated */
            char ch = *c->p++;
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (c->p == c->end)
                    return false;
                ch = *c->p++;
            }
            if ((unsigned char)ch < 0x20 && ch != '\t')
                return false;
            if (n + 1 < cap)
                v[n] = ch;
            n++;
        }
    } else {
        const char *t;
        size_t len = token(c, &t);
        if (len == 0)
            return false;
        for (size_t i = 0; i < len; i++) {
            if (n + 1 < cap)
                v[n] = t[i];
            n++;
        }
    }
    v[n < cap ? n : cap - 1] = '\0';
    if (n >= cap)
        v[0] = '?'; /* too long: never a valid value */
    return true;
}

/* Skip to just after the next ',' outside a quoted string (or the end). */
static void skip_element(struct cur *c)
{
    bool q = false;

    while (c->p < c->end) {
        char ch = *c->p++;
        if (q && ch == '\\' && c->p < c->end)
            c->p++;
        else if (ch == '"')
            q = !q;
        else if (ch == ',' && !q)
            return;
    }
}

/* Window bits "8".."15", decimal without leading zeros. -1 if not. */
static int window_bits(const char *v)
{
    if (v[0] >= '8' && v[0] <= '9' && v[1] == '\0')
        return v[0] - '0';
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
        return 10 + (v[1] - '0');
    return -1;
}

enum { P_SNCT, P_CNCT, P_SMWB, P_CMWB, P_COUNT };
static const char *const param_names[P_COUNT] = {
    "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
    "client_max_window_bits"};

/* One offer being parsed. */
struct offer {
    bool ours;          /* named permessage-deflate */
    bool bad;           /* a parameter makes it unacceptable */
    bool seen[P_COUNT]; /* each parameter at most once */
    int smwb, cmwb;     /* values; cmwb 0 = given without a value */
};

/* Check one parameter of a permessage-deflate offer (RFC 7692 7.1). */
static void offer_param(struct offer *o, const char *name, size_t len, bool has_value,
                        const char *v)
{
    int k;

    for (k = 0; k < P_COUNT; k++)
        if (strlen(param_names[k]) == len && memcmp(param_names[k], name, len) == 0)
            break;
    if (k == P_COUNT || o->seen[k]) {
        o->bad = true; /* unknown or repeated */
        return;
    }
    o->seen[k] = true;
    switch (k) {
    case P_SNCT:
    case P_CNCT:
        if (has_value)
            o->bad = true;
        break;
    case P_SMWB:
        o->smwb = has_value ? window_bits(v) : -1;
        /* zlib can not compress with a 256-byte window: decline 8 */
        if (o->smwb < PMD_MIN_BITS)
            o->bad = true;
        break;
    case P_CMWB:
        o->cmwb = has_value ? window_bits(v) : 0;
        if (o->cmwb < 0)
            o->bad = true;
        break;
    }
}

/* Accept offer o: fill the agreed parameters and the response value. */
static void accept_offer(const struct offer *o, const struct pmd_settings *s,
                         struct pmd_params *out, char *resp)
{
    int sbits = s->window_bits;
    size_t n;

    out->server_no_context_takeover = o->seen[P_SNCT];
    /* A client that can not be asked for a smaller window compresses with
     * 15 bits: its inflater (39928 B) would be held between messages. It is
     * told not to take the context over (RFC 7692 7.1.1.1 lets a server add
     * this), and pmd_inflate frees the inflater after each message. */
    out->client_no_context_takeover =
        o->seen[P_CNCT] || (!o->seen[P_CMWB] && s->window_bits < PMD_MAX_BITS);
    if (o->seen[P_SMWB] && o->smwb < sbits)
        sbits = o->smwb;
    out->server_window_bits = sbits;
    out->client_window_bits = PMD_MAX_BITS;
    if (o->seen[P_CMWB]) {
        int cbits = o->cmwb ? o->cmwb : PMD_MAX_BITS;
        if (s->window_bits < cbits)
            cbits = s->window_bits;
        out->client_window_bits = cbits;
    }
    n = (size_t)snprintf(resp, PMD_RESPONSE_MAX, "permessage-deflate");
    if (out->server_no_context_takeover)
        n += (size_t)snprintf(resp + n, PMD_RESPONSE_MAX - n, "; server_no_context_takeover");
    if (out->client_no_context_takeover)
        n += (size_t)snprintf(resp + n, PMD_RESPONSE_MAX - n, "; client_no_context_takeover");
    if (o->seen[P_SMWB])
        n += (size_t)snprintf(resp + n, PMD_RESPONSE_MAX - n, "; server_max_window_bits=%d", sbits);
    if (o->seen[P_CMWB])
        snprintf(resp + n, PMD_RESPONSE_MAX - n, "; client_max_window_bits=%d",
                 out->client_window_bits);
}

/* Parse one element of the extension list at c (up to and including its
 * ','). Returns true when it is an acceptable permessage-deflate offer. */
static bool parse_offer(struct cur *c, struct offer *o)
{
    const char *name;
    size_t len;

    memset(o, 0, sizeof *o);
    skip_ows(c);
    len = token(c, &name);
    if (len == 0) {
        bool empty = c->p == c->end || *c->p == ',';
        skip_element(c);
        (void)empty; /* an empty list element is allowed and ignored */
        return false;
    }
    o->ours = len == 18 && memcmp(name, "permessage-deflate", 18) == 0;
    for (;;) {
        skip_ows(c);
        if (c->p == c->end)
            break;
        if (*c->p == ',') {
            c->p++;
            break;
        }
        if (*c->p != ';')
            goto malformed;
        c->p++;
        skip_ows(c);
        const char *pname;
        size_t plen = token(c, &pname);
        if (plen == 0)
            goto malformed;
        skip_ows(c);
        char v[8];
        bool has_value = false;
        v[0] = '\0';
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (!value(c, v, sizeof v))
                goto malformed;
            has_value = true;
        }
        if (o->ours)
            offer_param(o, pname, plen, has_value, v);
    }
    return o->ours && !o->bad;
malformed:
    skip_element(c);
    return false;
}

/* Walk every element of every header value in order; the first acceptable
 * permessage-deflate offer wins. */
bool pmd_negotiate(const char *const *vals, const size_t *lens, size_t n,
                   const struct pmd_settings *s, struct pmd_params *out, char *resp)
{
    resp[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        struct cur c = {vals[i], vals[i] + lens[i]};
        while (c.p < c.end) {
            struct offer o;
            if (parse_offer(&c, &o)) {
                accept_offer(&o, s, out, resp);
                return true;
            }
        }
    }
    return false;
}

/* ---- streams ---------------------------------------------------------- */

/* zlib allocations carry their size in front so zfree can count them. */
struct zhdr {
    size_t size;
    max_align_t align;
};

static voidpf pmd_zalloc(voidpf opaque, uInt items, uInt size)
{
    struct pmd *p = opaque;
    size_t n = (size_t)items * size;
    struct zhdr *h = malloc(offsetof(struct zhdr, align) + n);

    if (!h)
        return Z_NULL;
    h->size = n;
    p->mem += n;
    if (p->mem > p->mem_peak)
        p->mem_peak = p->mem;
    return &h->align;
}

static void pmd_zfree(voidpf opaque, voidpf addr)
{
    struct pmd *p = opaque;
    struct zhdr *h = (struct zhdr *)((char *)addr - offsetof(struct zhdr, align));

    p->mem -= h->size;
    free(h);
}

/* Remember the settings; no stream yet. */
void pmd_init(struct pmd *p, const struct pmd_params *params, int level, uint64_t max_message)
{
    memset(p, 0, sizeof *p);
    p->params = *params;
    p->level = level;
    p->max_message = max_message;
    p->utf8 = UTF8_ACCEPT;
}

/* End and free whichever streams exist. */
void pmd_free(struct pmd *p)
{
    if (p->inf) {
        inflateEnd(p->inf);
        free(p->inf);
        p->inf = NULL;
    }
    if (p->def) {
        deflateEnd(p->def);
        free(p->def);
        p->def = NULL;
    }
}

/* A new z_stream with the counting hooks, or NULL. */
static z_stream *new_stream(struct pmd *p)
{
    z_stream *z = calloc(1, sizeof *z);

    if (z) {
        z->zalloc = pmd_zalloc;
        z->zfree = pmd_zfree;
        z->opaque = p;
    }
    return z;
}

/* The inflater, made on first use: raw deflate, the agreed client window (at
 * least 9: a client zlib asked for 8 really uses 9). */
static z_stream *inflater(struct pmd *p)
{
    if (!p->inf) {
        z_stream *z = new_stream(p);
        int bits = p->params.client_window_bits < 9 ? 9 : p->params.client_window_bits;
        if (!z)
            return NULL;
        if (inflateInit2(z, -bits) != Z_OK) {
            free(z);
            return NULL;
        }
        p->inf = z;
    }
    return p->inf;
}

/* The message in progress is over (or failed): clear its state. */
static void inflate_message_end(struct pmd *p)
{
    p->msg_out = 0;
    p->tail_fed = 0;
    p->boundary = false;
    p->ended = false;
    p->in_msg = false;
    p->msg_in = false;
    p->pending = false;
    p->text = false;
    p->utf8 = UTF8_ACCEPT;
}

static enum pmd_status inflate_fail(struct pmd *p, uint16_t *code, const char **reason, uint16_t c,
                                    const char *why)
{
    inflate_message_end(p);
    *code = c;
    *reason = why;
    return PMD_ERROR;
}

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Feed the data, then (at fin) the tail, while output room lasts; a call
 * that filled the output is followed by one with no input, which collects
 * what zlib still holds. The block boundary check at the end uses zlib's
 * data_type bit 128 ("at the start of a block"), which holds after the
 * empty stored block of the tail. */
enum pmd_status pmd_inflate(struct pmd *p, const uint8_t *in, size_t inlen, bool fin, bool text,
                            uint8_t *out, size_t outcap, size_t *consumed, size_t *produced,
                            uint16_t *code, const char **reason)
{
    z_stream *z;
    size_t used = 0, made = 0;

    *consumed = *produced = 0;
    if (!(z = inflater(p)))
        return inflate_fail(p, code, reason, WS_CLOSE_INTERNAL, "out of memory");
    if (!p->in_msg) {
        p->in_msg = true;
        p->text = text;
    }
    for (;;) {
        bool data_left = used < inlen;
        /* a message with no payload at all is taken as empty (lenient:
         * 7.2.3.6 says one 00 byte); the tail alone is not a block */
        bool tail_left = fin && !p->ended && p->tail_fed < 4 && (p->msg_in || inlen);
        if (!data_left && !tail_left && !p->pending)
            break;
        if (made == outcap) {
            *consumed = used;
            *produced = made;
            return PMD_MORE;
        }
        if (p->ended && data_left)
            return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA, "data after the final block");
        if (data_left) {
            size_t left = inlen - used;
            z->next_in = (Bytef *)(in + used);
            z->avail_in = (uInt)(left > UINT32_MAX ? UINT32_MAX : left);
        } else if (tail_left) {
            z->next_in = (Bytef *)(sync_tail + p->tail_fed);
            z->avail_in = 4u - p->tail_fed;
        } else {
            z->next_in = (Bytef *)sync_tail;
            z->avail_in = 0; /* only collect pending output */
        }
        size_t room = outcap - made;
        z->next_out = out + made;
        z->avail_out = (uInt)(room > UINT32_MAX ? UINT32_MAX : room);
        uInt in0 = z->avail_in, out0 = z->avail_out;
        int rc = inflate(z, Z_SYNC_FLUSH);
        size_t got = out0 - z->avail_out, ate = in0 - z->avail_in;
        /* zlib's "at a block boundary" (data_type bit 128) is only true
         * right after a call that moved data: a later call with nothing to
         * do leaves it at TYPEDO, which clears the bit */
        if (got || ate)
            p->boundary = (z->data_type & 128) != 0;
        if (data_left) {
            used += ate;
            p->msg_in = true;
        } else if (tail_left)
            p->tail_fed = (uint8_t)(p->tail_fed + ate);
        if (got) {
            /* the first fault in byte order wins, however input and output
             * are cut: the output zlib made before it found bad data, and
             * bad UTF-8 within the allowed size before "too big" */
            bool big = p->max_message && got > p->max_message - p->msg_out;
            size_t ok = big ? (size_t)(p->max_message - p->msg_out) : got;
            if (p->text) {
                p->utf8 = utf8_feed(p->utf8, out + made, ok);
                if (p->utf8 == UTF8_REJECT)
                    return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA, "invalid UTF-8");
            }
            if (big)
                return inflate_fail(p, code, reason, WS_CLOSE_TOO_BIG, "message too big");
            p->msg_out += got;
            made += got;
        }
        p->pending = z->avail_out == 0;
        if (rc == Z_STREAM_END) {
            p->ended = true;
            p->pending = false;
            inflateReset(z);
        } else if (rc == Z_MEM_ERROR) {
            return inflate_fail(p, code, reason, WS_CLOSE_INTERNAL, "out of memory");
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            inflateReset(z);
            return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA, "invalid compressed data");
        } else if (in0 > 0 && got == 0 && ate == 0 && out0 > 0) {
            return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA, "invalid compressed data");
        }
    }
    *consumed = used;
    *produced = made;
    if (fin) {
        if (p->msg_in && !p->ended && !p->boundary) {
            inflateReset(z);
            return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA, "truncated compressed message");
        }
        if (p->text && p->utf8 != UTF8_ACCEPT)
            return inflate_fail(p, code, reason, WS_CLOSE_BAD_DATA,
                                "truncated UTF-8 at message end");
        if (p->params.client_no_context_takeover) { /* nothing to keep: free it */
            inflateEnd(z);
            free(z);
            p->inf = NULL;
        }
        inflate_message_end(p);
    }
    return PMD_DONE;
}

/* The conservative deflateBound for non-default parameters, plus the sync
 * flush marker (an empty stored block, at most 6 bytes with its bit padding). */
size_t pmd_deflate_bound(size_t n)
{
    return n + ((n + 7) >> 3) + ((n + 63) >> 6) + 5 + 6;
}

/* memLevel for a window: the hash table and the literal buffer grow with it,
 * so a small window gets small tables (12 -> 5, 9 -> 2, 15 -> 8). */
static int mem_level(int bits)
{
    int m = bits - 7;
    return m < 1 ? 1 : m > 8 ? 8 : m;
}

/* The deflater, made on first use. */
static z_stream *deflater(struct pmd *p)
{
    if (!p->def) {
        z_stream *z = new_stream(p);
        int bits = p->params.server_window_bits;
        if (!z)
            return NULL;
        if (deflateInit2(z, p->level, Z_DEFLATED, -bits, mem_level(bits), Z_DEFAULT_STRATEGY) !=
            Z_OK) {
            free(z);
            return NULL;
        }
        p->def = z;
    }
    return p->def;
}

/* One deflate call with Z_SYNC_FLUSH over the whole input; with outcap at
 * least the bound it finishes in one call (the loop guards against a short
 * buffer all the same). The flush ends in 00 00 ff ff, removed (7.2.1). */
size_t pmd_deflate(struct pmd *p, const uint8_t *in, size_t n, uint8_t *out, size_t outcap)
{
    z_stream *z;
    size_t len;

    if (n == 0) /* an empty message is one 00 byte (7.2.3.6); no stream needed */
        return outcap ? (out[0] = 0x00, 1) : 0;
    if (!(z = deflater(p)) || outcap < 5)
        return 0;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)(outcap > UINT32_MAX ? UINT32_MAX : outcap);
    int rc = deflate(z, Z_SYNC_FLUSH);
    len = (size_t)(z->next_out - out);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in != 0 || z->avail_out == 0 || len < 4 ||
        memcmp(out + len - 4, sync_tail, 4) != 0) {
        deflateReset(z); /* cannot happen with outcap >= the bound */
        return 0;
    }
    len -= 4;
    if (p->params.server_no_context_takeover)
        deflateReset(z);
    return len;
}

/* Payload at out + WS_MAX_SERVER_HEADER, then the header right before it. */
size_t pmd_frame(struct pmd *p, enum ws_opcode op, const uint8_t *in, size_t n, uint8_t *out,
                 size_t outcap, size_t *start)
{
    uint8_t *pay = out + WS_MAX_SERVER_HEADER;
    size_t plen, hlen;
    bool z = n >= PMD_MIN_COMPRESS;

    if (outcap < WS_MAX_SERVER_HEADER + (z ? pmd_deflate_bound(n) : n))
        return 0;
    if (z) {
        plen = pmd_deflate(p, in, n, pay, outcap - WS_MAX_SERVER_HEADER);
        if (plen == 0)
            return 0;
    } else {
        memcpy(pay, in, n);
        plen = n;
    }
    hlen = ws_header_len(plen);
    *start = WS_MAX_SERVER_HEADER - hlen;
    if (z)
        ws_header_rsv1(out + *start, op, plen);
    else
        ws_header(out + *start, op, plen);
    return hlen + plen;
}
