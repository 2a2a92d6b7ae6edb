/* fuzz_tlsrec.c - libFuzzer harness for the TLS 1.3 record opener
 * (src/tlsrec.c): what a client may send once wsgate has taken its
 * connection's records over.
 *
 * The first byte picks the mode:
 *  - even: the rest is raw wire bytes given to tlsrec_open (headers,
 *    lengths, records that cannot authenticate): it returns -1 or a
 *    plaintext length, never reads or writes outside the buffer, and *used
 *    is at most the input;
 *  - odd: the rest is a script of records the client seals with its real
 *    keys (type selector, length, content: application data, alerts,
 *    KeyUpdates valid or not, bare content types, padding), optionally one
 *    byte of the wire flipped, opened by the server in fuzz-chosen pieces.
 *    The plaintext given is always a prefix of the script's application
 *    data, and without a flipped byte exactly what a model of RFC 8446 5
 *    says: all of it up to close_notify or the first record refused, with
 *    the failure or end flagged. */
#include <string.h>

#include "fuzz.h"
#include "tlsrec.h"

#define WIRE_MAX (64 * TLSREC_SEALED(300))

/* A server and the client mirroring it (each one's read key the other's
 * write key). Freed with tlsrec_free, so that their keys leave the
 * thread's cipher contexts and an input allocates no more than it frees
 * (libFuzzer would otherwise run a leak scan after it). */
static void pair(struct tlsrec **server, struct tlsrec **client)
{
    struct tlsrec *s = calloc(1, sizeof(*s)), *c = malloc(sizeof(*c));
    CHECK(s != NULL && c != NULL);
    memset(s->rx.secret, 0x11, 32);
    memset(s->tx.secret, 0x22, 32);
    s->hashlen = 32;
    CHECK(tlsrec_setup(s, 0x1301) == 0);
    *c = *s;
    c->rx = s->tx;
    c->tx = s->rx;
    *server = s;
    *client = c;
}

static void raw(const uint8_t *data, size_t size)
{
    struct tlsrec *server, *client;
    pair(&server, &client);
    uint8_t *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    size_t used = (size_t)-1;
    int alert;
    long w = tlsrec_open(server, buf, size, &used, &alert);
    CHECK(w >= -1);
    if (w >= 0) {
        CHECK(used <= size);
        CHECK((size_t)w <= used);
    }
    free(buf);
    tlsrec_free(server);
    tlsrec_free(client);
}

/* The model's verdict on one record's inner content (type after padding). */
enum verdict { GO, STOP_EOF, STOP_FAIL };

static enum verdict model(uint8_t type, const uint8_t *c, size_t n, uint8_t *expect, size_t *elen,
                          struct tlsrec *client)
{
    if (type == 0) { /* the content's own last non-zero byte becomes the type */
        while (n > 0 && c[n - 1] == 0)
            n--;
        if (n == 0)
            return STOP_FAIL;
        type = c[--n];
    }
    if (type == 23) {
        memcpy(expect + *elen, c, n);
        *elen += n;
        return GO;
    }
    if (type == 21) {
        if (n != 2)
            return STOP_FAIL;
        return c[1] == 0 ? STOP_EOF : c[1] == 90 ? GO : STOP_FAIL;
    }
    if (type == 22 && n == 5 && c[0] == 24 && c[1] == 0 && c[2] == 0 && c[3] == 1 && c[4] <= 1) {
        CHECK(tlsrec_next_tx_key(client) == 0); /* the client's key follows its KeyUpdate */
        return GO;
    }
    return STOP_FAIL;
}

static void script(const uint8_t *data, size_t size)
{
    static uint8_t wire[WIRE_MAX], expect[WIRE_MAX];
    if (size < 3)
        return;
    struct tlsrec *server, *client;
    pair(&server, &client);
    size_t wlen = 0, elen = 0, piece = 1 + (size_t)data[0] * 67;
    enum verdict end = GO;
    int flip = data[1] & 0x80;
    size_t flip_at = data[2], i = 3;
    while (i + 2 <= size && wlen + TLSREC_SEALED(300) <= WIRE_MAX) {
        static const uint8_t types[8] = {23, 23, 23, 21, 22, 0, 24, 20};
        uint8_t type = types[data[i] & 7];
        size_t n = data[i + 1] + ((data[i] & 8) ? 40 : 0);
        i += 2;
        if (n > size - i)
            n = size - i;
        uint8_t content[300];
        memcpy(content, data + i, n);
        i += n;
        if (type == 22 && (data[i - n - 2] & 16) && n >= 5) { /* a valid KeyUpdate, mostly */
            static const uint8_t ku[4] = {24, 0, 0, 1};
            memcpy(content, ku, 4);
            content[4] &= 1;
            n = 5;
        }
        long k = tlsrec_seal_inner(client, type, content, n, wire + wlen);
        CHECK(k == (long)TLSREC_SEALED(n));
        wlen += (size_t)k;
        if (end == GO)
            end = model(type, content, n, expect, &elen, client);
    }
    if (flip && wlen)
        wire[flip_at % wlen] ^= 0x40;
    /* open in pieces, as a socket gives them */
    static uint8_t buf[2 * TLSREC_MAX_WIRE + 4096], got[WIRE_MAX];
    size_t have = 0, at = 0, glen = 0;
    int failed = 0;
    while (at < wlen && !failed) {
        size_t take = wlen - at < piece ? wlen - at : piece;
        if (take > sizeof(buf) - have)
            take = sizeof(buf) - have;
        memcpy(buf + have, wire + at, take);
        at += take;
        have += take;
        size_t used;
        int alert;
        long w = tlsrec_open(server, buf, have, &used, &alert);
        if (w < 0) {
            failed = 1;
            break;
        }
        CHECK(used <= have && glen + (size_t)w <= sizeof(got));
        memcpy(got + glen, buf, (size_t)w);
        glen += (size_t)w;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (server->flags & TLSREC_FAILED)
            failed = 1;
    }
    CHECK(glen <= elen && memcmp(got, expect, glen) == 0);
    if (!flip) {
        CHECK(glen == elen);
        CHECK(failed == (end == STOP_FAIL));
        CHECK(!!(server->flags & TLSREC_EOF) == (end == STOP_EOF));
    }
    tlsrec_free(server);
    tlsrec_free(client);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        script(data + 1, size - 1);
    else
        raw(data + 1, size - 1);
    return 0;
}
