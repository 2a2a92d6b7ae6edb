/* test_pmd.c - unit tests for permessage-deflate (src/pmd.c) and the RSV1
 * handling of the frame decoder (src/ws.c): every RFC 7692 section 7
 * negotiation case, inflate and deflate against Python's zlib (an
 * independent implementation, run at test time through pmd_zlib.py) with and
 * without context takeover, fragmented messages, tiny output buffers, a zip
 * bomb, corrupt data, and the memory each stream holds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "pmd.h"
#include "ws.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(0x2545F4914F6CDD1D);
}

/* Text-like bytes: words from a small vocabulary, so they compress. */
static void text_fill(uint8_t *p, size_t n)
{
    static const char *const words[] = {"the ",   "session ",    "gateway ", "frame ", "\r\n",
                                        "ls -l ", "drwxr-xr-x ", "root ",    "4096 ",  "Jan "};
    size_t i = 0;
    while (i < n) {
        const char *w = words[rnd() % 10];
        for (size_t k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

static const struct pmd_settings S12 = {.level = 1, .window_bits = 12};

/* Negotiate one header value with settings S12. */
static bool nego1(const char *v, struct pmd_params *pp, char *resp)
{
    const char *vals[1] = {v};
    size_t lens[1] = {strlen(v)};
    return pmd_negotiate(vals, lens, 1, &S12, pp, resp);
}

/* Accepted, with exactly this response and these parameters. */
static void accepts(const char *offer, const char *want, bool snct, bool cnct, int sbits, int cbits)
{
    struct pmd_params pp;
    char resp[PMD_RESPONSE_MAX];

    if (!nego1(offer, &pp, resp))
        fail_msg("declined: %s", offer);
    assert_string_equal(resp, want);
    assert_int_equal(pp.server_no_context_takeover, snct);
    assert_int_equal(pp.client_no_context_takeover, cnct);
    assert_int_equal(pp.server_window_bits, sbits);
    assert_int_equal(pp.client_window_bits, cbits);
}

static void declines(const char *offer)
{
    struct pmd_params pp;
    char resp[PMD_RESPONSE_MAX];

    if (nego1(offer, &pp, resp))
        fail_msg("accepted: %s -> %s", offer, resp);
    assert_string_equal(resp, "");
}

/* Messages as 4-byte big-endian length + bytes, the pmd_zlib.py format. */
struct msgs {
    uint8_t *p[16];
    size_t n[16];
    size_t count;
};

static void msgs_free(struct msgs *m)
{
    for (size_t i = 0; i < m->count; i++)
        free(m->p[i]);
    m->count = 0;
}

/* Run pmd_zlib.py MODE WBITS TAKEOVER over in; out gets its messages. */
static void py(const char *mode, int wbits, bool takeover, const struct msgs *in, struct msgs *out)
{
    char src[] = "/tmp/test_pmd_inXXXXXX", dst[] = "/tmp/test_pmd_outXXXXXX", cmd[512];
    int fd = mkstemp(src), fd2 = mkstemp(dst);
    assert_true(fd >= 0 && fd2 >= 0);
    FILE *f = fdopen(fd, "wb");
    for (size_t i = 0; i < in->count; i++) {
        uint8_t h[4] = {(uint8_t)(in->n[i] >> 24), (uint8_t)(in->n[i] >> 16),
                        (uint8_t)(in->n[i] >> 8), (uint8_t)in->n[i]};
        fwrite(h, 1, 4, f);
        fwrite(in->p[i], 1, in->n[i], f);
    }
    fclose(f);
    close(fd2);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %d %d %s %s", PMD_ZLIB_PY, mode, wbits,
             takeover ? 1 : 0, src, dst);
    assert_int_equal(system(cmd), 0);
    f = fopen(dst, "rb");
    assert_non_null(f);
    out->count = 0;
    uint8_t h[4];
    while (fread(h, 1, 4, f) == 4) {
        size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        out->p[out->count] = malloc(n ? n : 1);
        assert_int_equal(fread(out->p[out->count], 1, n, f), n);
        out->n[out->count++] = n;
    }
    fclose(f);
    unlink(src);
    unlink(dst);
}

static struct pmd_params params(bool snct, bool cnct, int sbits, int cbits)
{
    struct pmd_params pp = {snct, cnct, sbits, cbits};
    return pp;
}

/* Inflate one whole message given in parts of `part` bytes (0 = one part)
 * through an output buffer of outcap bytes into res. Returns the status of
 * the last call; *code on error. */
static enum pmd_status inflate_msg(struct pmd *p, const uint8_t *in, size_t n, bool text,
                                   size_t part, size_t outcap, uint8_t *res, size_t rescap,
                                   size_t *reslen, uint16_t *code)
{
    uint8_t *out = malloc(outcap);
    const char *reason = NULL;
    size_t off = 0;
    enum pmd_status st = PMD_DONE;

    *reslen = 0;
    *code = 0;
    do {
        size_t len = part && n - off > part ? part : n - off;
        bool fin = off + len == n;
        size_t pos = 0;
        for (;;) {
            size_t used, made;
            st = pmd_inflate(p, in + off + pos, len - pos, fin, text, out, outcap, &used, &made,
                             code, &reason);
            assert_true(used <= len - pos && made <= outcap);
            if (st == PMD_ERROR) {
                assert_non_null(reason);
                free(out);
                return st;
            }
            assert_true(*reslen + made <= rescap);
            memcpy(res + *reslen, out, made);
            *reslen += made;
            pos += used;
            if (st == PMD_DONE)
                break;
            assert_int_equal(made, outcap); /* MORE only with a full buffer */
        }
        assert_int_equal(pos, len); /* DONE: every byte used */
        off += len;
    } while (off < n);
    free(out);
    return st;
}

/* ---- negotiation (RFC 7692 section 7) -------------------------------- */

static void test_negotiate_accepts(void **state)
{
    (void)state;
    /* no parameters: our window stays 12 unannounced, the client's 15; a
     * client that can not be asked for a smaller window is told not to
     * take the context over (its inflater is freed between messages) */
    accepts("permessage-deflate", "permessage-deflate; client_no_context_takeover", false, true, 12,
            15);
    /* Chromium and Firefox offers */
    accepts("permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=12", false, false, 12, 12);
    /* a smaller client window than ours is kept; a larger one is lowered */
    accepts("permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=10", false, false, 12, 10);
    accepts("permessage-deflate; client_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=12", false, false, 12, 12);
    accepts("permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=8", false, false, 12, 8);
    /* server_max_window_bits: the same or smaller value is answered */
    accepts("permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10", false,
            true, 10, 15);
    accepts("permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12", false,
            true, 12, 15);
    accepts("permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=9", false, true,
            9, 15);
    /* no context takeover, both ways, echoed */
    accepts("permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true,
            true, 12, 15);
    accepts("permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover", false, true, 12, 15);
    accepts("permessage-deflate;client_no_context_takeover;server_no_context_takeover;"
            "client_max_window_bits=9;server_max_window_bits=11",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=11; client_max_window_bits=9",
            true, true, 11, 9);
    /* quoted values (RFC 7692 7.1.2: the token form after unquoting) */
    accepts("permessage-deflate; server_max_window_bits=\"10\"",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10", false,
            true, 10, 15);
    accepts("permessage-deflate; client_max_window_bits=\"1\\1\"",
            "permessage-deflate; client_max_window_bits=11", false, false, 12, 11);
    /* blanks around ';' and '=' */
    accepts("  permessage-deflate ;\tclient_max_window_bits = 9 ",
            "permessage-deflate; client_max_window_bits=9", false, false, 12, 9);
    /* other extensions before it are skipped */
    accepts("x-webkit-deflate-frame, foo; bar=\"a,b\"; baz, permessage-deflate",
            "permessage-deflate; client_no_context_takeover", false, true, 12, 15);
}

static void test_negotiate_declines(void **state)
{
    (void)state;
    declines("");
    declines("x-webkit-deflate-frame");
    declines("permessage-deflate; foo");   /* unknown parameter */
    declines("permessage-deflate; foo=1"); /* unknown parameter */
    declines("permessage-deflate; client_no_context_takeover; client_no_context_takeover");
    declines("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10");
    declines("permessage-deflate; client_max_window_bits; client_max_window_bits=9");
    declines("permessage-deflate; server_no_context_takeover=1"); /* no value allowed */
    declines("permessage-deflate; client_no_context_takeover=\"\"");
    declines("permessage-deflate; server_max_window_bits");   /* value required */
    declines("permessage-deflate; server_max_window_bits=8"); /* zlib can not */
    declines("permessage-deflate; server_max_window_bits=16");
    declines("permessage-deflate; server_max_window_bits=7");
    declines("permessage-deflate; server_max_window_bits=010"); /* leading zero */
    declines("permessage-deflate; server_max_window_bits=1.0");
    declines("permessage-deflate; client_max_window_bits=16");
    declines("permessage-deflate; client_max_window_bits=0");
    declines("permessage-deflate; client_max_window_bits=\"\"");
    declines("permessage-deflate; client_max_window_bits=\"12 \"");
    declines("permessage-deflate; client_max_window_bits=100000000000000000000012");
    declines("permessage-deflate; client_max_window_bits=\"12"); /* unterminated */
    declines("permessage-deflate; =12");
    declines("permessage-deflate client_max_window_bits");
    declines("permessage-deflate;");
    declines("permessage-deflate-x");
    declines(", ,");
}

static void test_negotiate_fallback(void **state)
{
    struct pmd_params pp;
    char resp[PMD_RESPONSE_MAX];
    (void)state;

    /* a declined offer makes the next one count (RFC 7692 5: in order) */
    accepts("permessage-deflate; server_max_window_bits=8, permessage-deflate; "
            "client_max_window_bits",
            "permessage-deflate; client_max_window_bits=12", false, false, 12, 12);
    accepts("permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true,
            true, 12, 15);
    /* a malformed element is skipped up to its comma (quotes respected) */
    accepts("permessage-deflate; x=\"a, b\" junk, permessage-deflate",
            "permessage-deflate; client_no_context_takeover", false, true, 12, 15);
    accepts("permessage-deflate; =, permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover", false, true, 12, 15);
    /* the first acceptable offer wins, not the best */
    accepts("permessage-deflate; server_no_context_takeover, permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true,
            true, 12, 15);

    /* several header lines, in order */
    const char *vals[3] = {"foo", "permessage-deflate; server_max_window_bits=8",
                           "permessage-deflate; client_max_window_bits=11"};
    size_t lens[3] = {3, strlen(vals[1]), strlen(vals[2])};
    assert_true(pmd_negotiate(vals, lens, 3, &S12, &pp, resp));
    assert_string_equal(resp, "permessage-deflate; client_max_window_bits=11");
    assert_false(pmd_negotiate(vals, lens, 2, &S12, &pp, resp));
    assert_false(pmd_negotiate(vals, lens, 0, &S12, &pp, resp));
    /* the length counts, not a NUL */
    lens[2] = strlen("permessage-deflate");
    assert_true(pmd_negotiate(vals, lens, 3, &S12, &pp, resp));
    assert_string_equal(resp, "permessage-deflate; client_no_context_takeover");
    /* with a 15-bit window of our own nothing is saved: no such answer */
    struct pmd_settings s15b = {.level = 1, .window_bits = 15};
    assert_true(pmd_negotiate(vals, lens, 3, &s15b, &pp, resp));
    assert_string_equal(resp, "permessage-deflate");
    assert_false(pp.client_no_context_takeover);

    /* settings 15: a bare client_max_window_bits gets 15 */
    struct pmd_settings s15 = {.level = 9, .window_bits = 15};
    const char *v = "permessage-deflate; client_max_window_bits";
    size_t l = strlen(v);
    assert_true(pmd_negotiate(&v, &l, 1, &s15, &pp, resp));
    assert_string_equal(resp, "permessage-deflate; client_max_window_bits=15");
    assert_int_equal(pp.server_window_bits, 15);
    assert_int_equal(pp.client_window_bits, 15);
}

/* ---- inflate against Python's zlib ------------------------------------ */

/* Three messages; the second (200 bytes) repeats the end of the first, so
 * with context takeover it is one back-reference into the first. */
static void three_msgs(struct msgs *m, size_t n)
{
    m->count = 3;
    for (size_t i = 0; i < 3; i++) {
        m->p[i] = malloc(n);
        m->n[i] = i == 1 ? 200 : n;
    }
    text_fill(m->p[0], n);
    memcpy(m->p[1], m->p[0] + n - 200, 200);
    text_fill(m->p[2], n);
}

static void check_inflate(bool takeover, int wbits, size_t part, size_t outcap)
{
    struct msgs plain, z;
    struct pmd p;
    struct pmd_params pp = params(false, !takeover, 12, wbits);
    uint8_t *res = malloc(70000);

    three_msgs(&plain, 60000);
    py("c", wbits, takeover, &plain, &z);
    /* with takeover the second message is a reference into the first */
    if (takeover)
        assert_true(z.n[1] < 10);
    else
        assert_true(z.n[1] > 50);
    pmd_init(&p, &pp, 1, 0);
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        uint16_t code;
        assert_int_equal(
            inflate_msg(&p, z.p[i], z.n[i], true, part, outcap, res, 70000, &len, &code), PMD_DONE);
        assert_int_equal(len, plain.n[i]);
        assert_memory_equal(res, plain.p[i], len);
    }
    pmd_free(&p);
    assert_int_equal(p.mem, 0);
    msgs_free(&plain);
    msgs_free(&z);
    free(res);
}

static void test_inflate_python(void **state)
{
    (void)state;
    check_inflate(true, 15, 0, 65536);
    check_inflate(false, 15, 0, 65536);
    check_inflate(true, 12, 0, 65536);
    check_inflate(true, 9, 0, 4096);
    /* fragmented: parts of 1000 and of 7 bytes; output buffers of 1 and 13 */
    check_inflate(true, 12, 1000, 4096);
    check_inflate(true, 15, 7, 13);
    check_inflate(false, 10, 3, 1);
}

/* Every byte of a message comes out before its final frame: PMD_DONE for a
 * non-final part means zlib holds nothing more (output buffers of 1..9). */
static void test_inflate_no_pending(void **state)
{
    struct msgs plain, z;
    uint8_t res[70000];
    (void)state;

    three_msgs(&plain, 20000);
    /* a message ending in a long match: its input is used up while zlib
     * still copies the match */
    plain.p[3] = malloc(300);
    for (size_t i = 0; i < 300; i++)
        plain.p[3][i] = (uint8_t)("abc"[i % 3]);
    plain.n[3] = 300;
    plain.count = 4;
    py("c", 15, true, &plain, &z);
    for (size_t outcap = 1; outcap < 10; outcap++) {
        struct pmd p;
        struct pmd_params pp = params(false, false, 12, 15);
        size_t len, used, made;
        uint16_t code;
        const char *reason;
        pmd_init(&p, &pp, 1, 0);
        for (size_t i = 0; i < 4; i++) {
            /* the whole message as a non-final part, then an empty final one */
            size_t pos = 0;
            len = 0;
            for (;;) {
                enum pmd_status st = pmd_inflate(&p, z.p[i] + pos, z.n[i] - pos, false, false,
                                                 res + len, outcap, &used, &made, &code, &reason);
                pos += used;
                len += made;
                if (st == PMD_DONE)
                    break;
                assert_int_equal(st, PMD_MORE);
            }
            assert_int_equal(len, plain.n[i]);
            assert_memory_equal(res, plain.p[i], len);
            assert_int_equal(
                pmd_inflate(&p, NULL, 0, true, false, res, outcap, &used, &made, &code, &reason),
                PMD_DONE);
            assert_int_equal(made, 0);
        }
        pmd_free(&p);
    }
    msgs_free(&plain);
    msgs_free(&z);
}

/* A stream that uses the context fails on an inflater that resets after each
 * message (client_no_context_takeover): proof that the reset happens. */
static void test_inflate_no_takeover_resets(void **state)
{
    struct msgs plain, z;
    struct pmd p;
    struct pmd_params pp = params(false, true, 12, 15);
    uint8_t res[70000];
    size_t len;
    uint16_t code;
    (void)state;

    three_msgs(&plain, 60000);
    py("c", 15, true, &plain, &z);
    pmd_init(&p, &pp, 1, 0);
    assert_int_equal(inflate_msg(&p, z.p[0], z.n[0], false, 0, 65536, res, sizeof res, &len, &code),
                     PMD_DONE);
    assert_int_equal(inflate_msg(&p, z.p[1], z.n[1], false, 0, 65536, res, sizeof res, &len, &code),
                     PMD_ERROR);
    assert_int_equal(code, WS_CLOSE_BAD_DATA);
    pmd_free(&p);
    msgs_free(&plain);
    msgs_free(&z);
}

/* Messages ending in a BFINAL block (7.2.3.4) are accepted; the next message
 * starts a new stream. */
static void test_inflate_final_block(void **state)
{
    struct msgs plain, z;
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    uint8_t res[70000];
    size_t len;
    uint16_t code;
    (void)state;

    three_msgs(&plain, 5000);
    py("f", 15, false, &plain, &z);
    pmd_init(&p, &pp, 1, 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(
            inflate_msg(&p, z.p[i], z.n[i], true, 100, 512, res, sizeof res, &len, &code),
            PMD_DONE);
        assert_int_equal(len, plain.n[i]);
        assert_memory_equal(res, plain.p[i], len);
    }
    /* bytes after the final block -> 1007 */
    uint8_t bad[8000];
    memcpy(bad, z.p[0], z.n[0]);
    bad[z.n[0]] = 0x00;
    assert_int_equal(inflate_msg(&p, bad, z.n[0] + 1, true, 0, 65536, res, sizeof res, &len, &code),
                     PMD_ERROR);
    assert_int_equal(code, WS_CLOSE_BAD_DATA);
    pmd_free(&p);
    msgs_free(&plain);
    msgs_free(&z);
}

/* ---- deflate, checked by Python's zlib -------------------------------- */

static void check_deflate(bool takeover, int level, int wbits)
{
    struct msgs plain, z, back;
    struct pmd p;
    struct pmd_params pp = params(!takeover, false, wbits, 15);

    three_msgs(&plain, 30000);
    pmd_init(&p, &pp, level, 0);
    z.count = 3;
    for (size_t i = 0; i < 3; i++) {
        size_t cap = pmd_deflate_bound(plain.n[i]);
        z.p[i] = malloc(cap);
        z.n[i] = pmd_deflate(&p, plain.p[i], plain.n[i], z.p[i], cap);
        assert_true(z.n[i] > 0 && z.n[i] <= cap);
        if (level > 0 && i != 1)
            assert_true(z.n[i] < plain.n[i] / 2);
    }
    if (level > 0)
        assert_true(takeover ? z.n[1] < 10 : z.n[1] > 50);
    /* with takeover one decompressor for all; without, a fresh one each
     * (which fails if the deflater kept its context) */
    py("d", 15, takeover, &z, &back);
    assert_int_equal(back.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(back.n[i], plain.n[i]);
        assert_memory_equal(back.p[i], plain.p[i], plain.n[i]);
    }
    pmd_free(&p);
    msgs_free(&plain);
    msgs_free(&z);
    msgs_free(&back);
}

static void test_deflate_python(void **state)
{
    (void)state;
    check_deflate(true, 1, 12);
    check_deflate(false, 1, 12);
    check_deflate(true, 9, 15);
    check_deflate(true, 0, 9);
    check_deflate(false, 6, 9);
}

/* Our deflater into our inflater, random sizes, both buffers tiny or not;
 * incompressible data stays within pmd_deflate_bound. */
static void test_round_trip(void **state)
{
    static uint8_t in[70000], z[80000], res[70000];
    struct pmd a, b;
    struct pmd_params pp = params(false, false, 10, 10);
    (void)state;

    pmd_init(&a, &pp, 1, 0);
    pmd_init(&b, &pp, 1, 0);
    for (int i = 0; i < 60; i++) {
        size_t n = i == 0 ? 0 : (size_t)(rnd() % (i % 3 == 0 ? 65536 : 300));
        if (i % 2)
            text_fill(in, n);
        else
            for (size_t k = 0; k < n; k++)
                in[k] = (uint8_t)rnd();
        size_t zn = pmd_deflate(&a, in, n, z, pmd_deflate_bound(n));
        assert_true(zn > 0 && zn <= pmd_deflate_bound(n));
        size_t len;
        uint16_t code;
        assert_int_equal(inflate_msg(&b, z, zn, (i % 2) != 0, (size_t)(rnd() % 50),
                                     1 + (size_t)(rnd() % 3000), res, sizeof res, &len, &code),
                         PMD_DONE);
        assert_int_equal(len, n);
        assert_memory_equal(res, in, n);
    }
    pmd_free(&a);
    pmd_free(&b);
}

/* pmd_frame: small chunks plain, others compressed with RSV1; the header sits
 * right before the payload. */
static void test_frame(void **state)
{
    static uint8_t in[3000], out[WS_MAX_SERVER_HEADER + 4000], res[3000];
    struct pmd p, q;
    struct pmd_params pp = params(false, false, 12, 15);
    size_t start, len;
    uint16_t code;
    (void)state;

    pmd_init(&p, &pp, 1, 0);
    pmd_init(&q, &pp, 1, 0);
    memcpy(in, "hello", 5);
    len = pmd_frame(&p, WS_OP_BINARY, in, 5, out, sizeof out, &start);
    assert_int_equal(len, 7);
    assert_int_equal(start, WS_MAX_SERVER_HEADER - 2);
    assert_int_equal(out[start], 0x82);
    assert_int_equal(out[start + 1], 5);
    assert_memory_equal(out + start + 2, "hello", 5);
    assert_null(p.def); /* nothing allocated for a plain frame */
    assert_int_equal(p.mem, 0);

    text_fill(in, sizeof in);
    len = pmd_frame(&p, WS_OP_TEXT, in, sizeof in, out, sizeof out, &start);
    assert_int_equal(out[start], 0xC1); /* FIN, RSV1, text */
    size_t plen = out[start + 1];
    size_t hlen = 2;
    if (plen == 126) {
        plen = (size_t)out[start + 2] << 8 | out[start + 3];
        hlen = 4;
    }
    assert_int_equal(start + hlen, WS_MAX_SERVER_HEADER);
    assert_int_equal(len, hlen + plen);
    assert_true(plen < sizeof in / 2);
    assert_int_equal(
        inflate_msg(&q, out + start + hlen, plen, true, 0, 512, res, sizeof res, &len, &code),
        PMD_DONE);
    assert_int_equal(len, sizeof in);
    assert_memory_equal(res, in, sizeof in);
    /* too small an output buffer is refused, not overrun */
    assert_int_equal(pmd_frame(&p, WS_OP_TEXT, in, sizeof in, out, 100, &start), 0);
    pmd_free(&p);
    pmd_free(&q);
}

/* ---- bad input -------------------------------------------------------- */

/* 1 GiB of zeros: 1 MiB of zeros compressed once, the flushed chunk repeated
 * 1024 times (each chunk is whole blocks whose references stay inside it). */
static uint8_t *zip_bomb(size_t *n)
{
    size_t mib = 1 << 20, chunk;
    uint8_t *zeros = calloc(1, mib), *one = malloc(mib), *bomb;
    z_stream z = {0};

    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = zeros;
    z.avail_in = (uInt)mib;
    z.next_out = one;
    z.avail_out = (uInt)mib;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    chunk = mib - z.avail_out;
    deflateEnd(&z);
    bomb = malloc(chunk * 1024);
    for (size_t i = 0; i < 1024; i++)
        memcpy(bomb + i * chunk, one, chunk);
    *n = chunk * 1024 - 4; /* the last flush marker is the tail (7.2.1) */
    free(zeros);
    free(one);
    return bomb;
}

static void test_zip_bomb(void **state)
{
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    uint8_t out[65536];
    size_t n, used, made, total = 0, pos = 0;
    uint16_t code = 0;
    const char *reason;
    enum pmd_status st;
    uint8_t *bomb = zip_bomb(&n);
    (void)state;

    assert_true(n < 2 * 1024 * 1024); /* about 1 MiB on the wire */
    /* max_message_size 1 MiB: 1009 once more than that came out */
    pmd_init(&p, &pp, 1, 1 << 20);
    for (;;) {
        st = pmd_inflate(&p, bomb + pos, n - pos, true, false, out, sizeof out, &used, &made, &code,
                         &reason);
        pos += used;
        total += made;
        if (st != PMD_MORE)
            break;
    }
    assert_int_equal(st, PMD_ERROR);
    assert_int_equal(code, WS_CLOSE_TOO_BIG);
    assert_string_equal(reason, "message too big");
    assert_true(total <= (1 << 20));
    assert_true(total > (1 << 20) - (int)sizeof out);
    assert_true(pos < n / 100); /* stopped early */
    /* memory: the inflater only (2^15 window + state), never the output */
    assert_true(p.mem_peak < 48 * 1024);
    pmd_free(&p);

    /* unlimited: all 1 GiB streams through the 64 KiB buffer, memory flat */
    pmd_init(&p, &pp, 1, 0);
    size_t peak_after_first = 0;
    pos = total = 0;
    for (;;) {
        st = pmd_inflate(&p, bomb + pos, n - pos, true, false, out, sizeof out, &used, &made, &code,
                         &reason);
        for (size_t i = 0; i < made; i += 4096)
            if (out[i])
                fail();
        pos += used;
        total += made;
        if (!peak_after_first)
            peak_after_first = p.mem_peak;
        if (st != PMD_MORE)
            break;
    }
    assert_int_equal(st, PMD_DONE);
    assert_int_equal(pos, n);
    assert_int_equal(total, (size_t)1 << 30);
    assert_int_equal(p.mem_peak, peak_after_first);
    pmd_free(&p);
    free(bomb);
}

static void check_bad(const uint8_t *in, size_t n, bool text, const char *why)
{
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    uint8_t res[4096];
    size_t len;
    uint16_t code;

    pmd_init(&p, &pp, 1, 0);
    assert_int_equal(inflate_msg(&p, in, n, text, 0, sizeof res, res, sizeof res, &len, &code),
                     PMD_ERROR);
    assert_int_equal(code, WS_CLOSE_BAD_DATA);
    (void)why;
    pmd_free(&p);
}

static void test_corrupt(void **state)
{
    uint8_t z[256], bad[256];
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    const char *text = "caf\xc3\xa9 \xe2\x82\xac and more text to make it longer than 64 bytes.";
    (void)state;

    static const uint8_t reserved_btype[] = {0x07, 0x00}; /* BTYPE 11 */
    check_bad(reserved_btype, sizeof reserved_btype, false, "reserved block type");
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0x00, 0x00}; /* NLEN != ~LEN */
    check_bad(bad_stored, sizeof bad_stored, false, "stored length");
    /* a stored block of 100 bytes with 3 given: the tail is taken as more
     * of its bytes, so only the block boundary check sees it */
    static const uint8_t short_stored[] = {0x00, 0x64, 0x00, 0x9b, 0xff, 'a', 'b', 'c'};
    check_bad(short_stored, sizeof short_stored, false, "truncated stored block");

    pmd_init(&p, &pp, 1, 0);
    size_t n = pmd_deflate(&p, (const uint8_t *)text, strlen(text), z, sizeof z);
    pmd_free(&p);
    /* truncated: half a message does not end at a block boundary */
    check_bad(z, n / 2, false, "truncated");
    /* a flipped bit in the middle */
    memcpy(bad, z, n);
    bad[n / 2] ^= 0x10;
    {
        struct pmd q;
        uint8_t res[512];
        size_t len;
        uint16_t code;
        pmd_init(&q, &pp, 1, 0);
        enum pmd_status st =
            inflate_msg(&q, bad, n, false, 0, sizeof res, res, sizeof res, &len, &code);
        /* either zlib sees it, or the output differs: never silently equal */
        if (st == PMD_DONE)
            assert_true(len != strlen(text) || memcmp(res, text, len) != 0);
        else
            assert_int_equal(code, WS_CLOSE_BAD_DATA);
        pmd_free(&q);
    }
    /* text: valid UTF-8 passes, invalid and truncated UTF-8 -> 1007 */
    {
        struct pmd q;
        uint8_t res[512];
        size_t len;
        uint16_t code;
        pmd_init(&q, &pp, 1, 0);
        assert_int_equal(inflate_msg(&q, z, n, true, 1, 7, res, sizeof res, &len, &code), PMD_DONE);
        assert_int_equal(len, strlen(text));
        pmd_free(&q);
    }
    static const uint8_t invalid[] = "ok \xc0\xaf overlong";
    pmd_init(&p, &pp, 1, 0);
    n = pmd_deflate(&p, invalid, sizeof invalid - 1, z, sizeof z);
    pmd_free(&p);
    check_bad(z, n, true, "invalid UTF-8");
    static const uint8_t cut[] = "cut \xe2\x82";
    pmd_init(&p, &pp, 1, 0);
    n = pmd_deflate(&p, cut, sizeof cut - 1, z, sizeof z);
    pmd_free(&p);
    check_bad(z, n, true, "truncated UTF-8");
    /* the same bytes as a binary message are fine */
    {
        struct pmd q;
        uint8_t res[64];
        size_t len;
        uint16_t code;
        pmd_init(&q, &pp, 1, 0);
        assert_int_equal(inflate_msg(&q, z, n, false, 0, 64, res, sizeof res, &len, &code),
                         PMD_DONE);
        assert_int_equal(len, sizeof cut - 1);
        pmd_free(&q);
    }
}

/* Empty messages: no payload at all, or the single 00 byte of 7.2.3.6. */
static void test_empty(void **state)
{
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    uint8_t res[16], z[16];
    size_t len;
    uint16_t code;
    static const uint8_t zero = 0x00;
    (void)state;

    pmd_init(&p, &pp, 1, 0);
    assert_int_equal(inflate_msg(&p, NULL, 0, true, 0, 16, res, sizeof res, &len, &code), PMD_DONE);
    assert_int_equal(len, 0);
    assert_int_equal(inflate_msg(&p, &zero, 1, true, 0, 16, res, sizeof res, &len, &code),
                     PMD_DONE);
    assert_int_equal(len, 0);
    assert_int_equal(pmd_deflate(&p, NULL, 0, z, sizeof z), 1);
    assert_int_equal(z[0], 0x00);
    assert_null(p.def);
    pmd_free(&p);
}

/* ---- memory ----------------------------------------------------------- */

static void test_memory(void **state)
{
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 12);
    uint8_t in[4096], z[8192], res[4096];
    size_t len, inf, def;
    uint16_t code;
    (void)state;

    text_fill(in, sizeof in);
    pmd_init(&p, &pp, 1, 0);
    assert_int_equal(p.mem, 0); /* nothing before the first message */
    size_t zn = pmd_deflate(&p, in, sizeof in, z, sizeof z);
    def = p.mem;
    assert_int_equal(inflate_msg(&p, z, zn, false, 0, sizeof res, res, sizeof res, &len, &code),
                     PMD_DONE);
    inf = p.mem - def;
    printf("pmd memory, window bits 12: deflater %zu B, inflater %zu B, total %zu B\n", def, inf,
           p.mem);
    assert_true(p.mem <= 64 * 1024);
    /* the window sizes show: 2 * 2^12 (+ prev 2 * 2^12) deflate, 2^12 inflate */
    assert_true(def >= 4 * 4096 && inf >= 4096);
    /* further messages allocate nothing */
    for (int i = 0; i < 10; i++) {
        zn = pmd_deflate(&p, in, sizeof in, z, sizeof z);
        assert_int_equal(inflate_msg(&p, z, zn, false, 0, 100, res, sizeof res, &len, &code),
                         PMD_DONE);
    }
    assert_int_equal(p.mem_peak, def + inf);
    pmd_free(&p);
    assert_int_equal(p.mem, 0);

    /* client_no_context_takeover (answered to a client that did not offer
     * client_max_window_bits, whose window is then 15): the inflater is
     * freed after each message, so between messages only the deflater */
    pp = params(false, true, 12, 15);
    pmd_init(&p, &pp, 1, 0);
    zn = pmd_deflate(&p, in, sizeof in, z, sizeof z);
    def = p.mem;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(inflate_msg(&p, z, zn, false, 0, sizeof res, res, sizeof res, &len, &code),
                         PMD_DONE);
        assert_int_equal(len, sizeof in);
        assert_memory_equal(res, in, sizeof in);
        assert_null(p.inf);
        assert_int_equal(p.mem, def); /* the deflater alone: 38720 B */
    }
    assert_true(p.mem_peak > def + 32768); /* the 15-bit inflater while in use */
    pmd_free(&p);

    /* other windows, for the record in pmd.h */
    for (int bits = 9; bits <= 15; bits++) {
        pp = params(false, false, bits, bits);
        pmd_init(&p, &pp, 1, 0);
        zn = pmd_deflate(&p, in, sizeof in, z, sizeof z);
        def = p.mem;
        inflate_msg(&p, z, zn, false, 0, sizeof res, res, sizeof res, &len, &code);
        printf("pmd memory, window bits %d: deflater %zu B, inflater %zu B\n", bits, def,
               p.mem - def);
        pmd_free(&p);
    }
}

/* ---- decoder: RSV1 ---------------------------------------------------- */

/* A masked client frame (mask 01 02 03 04) into out; returns its length. */
static size_t frame(uint8_t *out, uint8_t b0, const uint8_t *pay, size_t n)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    size_t h = 0;
    out[h++] = b0;
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = pay[i] ^ mask[i & 3];
    return h + n;
}

/* Decode buf whole; returns the first error code (0 if none) and counts data
 * events and compressed ones. */
static uint16_t decode_all(struct ws_decoder *d, uint8_t *buf, size_t n, int *data, int *comp)
{
    size_t pos = 0;
    struct ws_event ev;

    *data = *comp = 0;
    for (;;) {
        pos += ws_decode(d, buf + pos, n - pos, &ev);
        if (ev.type == WS_EV_ERROR)
            return ev.close_code;
        if (ev.type == WS_EV_DATA) {
            (*data)++;
            *comp += ev.compressed;
        }
        if (ev.type == WS_EV_NONE && pos == n)
            return 0;
    }
}

static void test_decoder_rsv1(void **state)
{
    uint8_t buf[4096];
    static const uint8_t bad_utf8[] = {0xff, 0xfe, 0xfd};
    struct ws_decoder d;
    int data, comp;
    size_t n;
    (void)state;

    /* without negotiation RSV1 stays a protocol error */
    ws_decoder_init(&d, 0);
    n = frame(buf, 0xC2, (const uint8_t *)"abc", 3);
    assert_int_equal(decode_all(&d, buf, n, &data, &comp), WS_CLOSE_PROTOCOL);

    /* negotiated: RSV1 on the first frame marks every range compressed;
     * the compressed bytes are not UTF-8 checked */
    ws_decoder_init(&d, 0);
    d.rsv1_ok = true;
    n = frame(buf, 0x41, bad_utf8, 3);      /* text, RSV1, not FIN */
    n += frame(buf + n, 0x00, bad_utf8, 3); /* continuation */
    n += frame(buf + n, 0x89, NULL, 0);     /* a ping between */
    n += frame(buf + n, 0x80, bad_utf8, 3); /* final continuation */
    n += frame(buf + n, 0x82, bad_utf8, 3); /* then an uncompressed message */
    assert_int_equal(decode_all(&d, buf, n, &data, &comp), 0);
    assert_int_equal(data, 4);
    assert_int_equal(comp, 3);
    /* an uncompressed text message is still UTF-8 checked */
    n = frame(buf, 0x81, bad_utf8, 3);
    assert_int_equal(decode_all(&d, buf, n, &data, &comp), WS_CLOSE_BAD_DATA);

    /* RSV1 on a continuation or a control frame, RSV2/RSV3 -> 1002 */
    static const uint8_t bad_b0[][2] = {{0x01, 0xC0}, {0x02, 0xC0}, {0x00, 0xC9}, {0x00, 0xCA},
                                        {0x00, 0xC8}, {0x00, 0xA2}, {0x00, 0x92}, {0x00, 0xE2}};
    for (size_t i = 0; i < sizeof bad_b0 / sizeof bad_b0[0]; i++) {
        ws_decoder_init(&d, 0);
        d.rsv1_ok = true;
        n = 0;
        if (bad_b0[i][0])
            n = frame(buf, bad_b0[i][0], (const uint8_t *)"x", 1);
        n += frame(buf + n, bad_b0[i][1], NULL, 0);
        assert_int_equal(decode_all(&d, buf, n, &data, &comp), WS_CLOSE_PROTOCOL);
    }

    /* max_message: a compressed message's wire size is not counted (pmd
     * counts the decompressed size), an uncompressed one's is */
    static uint8_t big[300];
    ws_decoder_init(&d, 100);
    d.rsv1_ok = true;
    n = frame(buf, 0xC2, big, sizeof big);
    assert_int_equal(decode_all(&d, buf, n, &data, &comp), 0);
    n = frame(buf, 0x82, big, sizeof big);
    assert_int_equal(decode_all(&d, buf, n, &data, &comp), WS_CLOSE_TOO_BIG);

    /* the encoder */
    assert_int_equal(ws_header_rsv1(buf, WS_OP_TEXT, 300), 4);
    assert_int_equal(buf[0], 0xC1);
    assert_int_equal(buf[1], 126);
}

/* A whole path: a client frame holding Python-compressed text, decoded and
 * inflated. */
static void test_decoder_and_inflate(void **state)
{
    struct msgs plain, z;
    struct ws_decoder d;
    struct ws_event ev;
    struct pmd p;
    struct pmd_params pp = params(false, false, 12, 15);
    uint8_t buf[8192], out[256], res[4096];
    size_t n, pos = 0, rl = 0;
    (void)state;

    plain.count = 1;
    plain.p[0] = (uint8_t *)strdup("Hello, compressed world! Hello, compressed world! Hello!");
    plain.n[0] = strlen((char *)plain.p[0]);
    py("c", 15, true, &plain, &z);
    ws_decoder_init(&d, 0);
    d.rsv1_ok = true;
    size_t half = z.n[0] / 2;
    n = frame(buf, 0x41, z.p[0], half);
    n += frame(buf + n, 0x80, z.p[0] + half, z.n[0] - half);
    pmd_init(&p, &pp, 1, 0);
    for (;;) {
        uint8_t *base = buf + pos;
        pos += ws_decode(&d, base, n - pos, &ev);
        if (ev.type == WS_EV_NONE)
            break;
        assert_int_equal(ev.type, WS_EV_DATA);
        assert_true(ev.compressed);
        size_t used, made;
        uint16_t code;
        const char *reason;
        assert_int_equal(pmd_inflate(&p, base + ev.off, ev.len, ev.fin, ev.opcode == WS_OP_TEXT,
                                     out, sizeof out, &used, &made, &code, &reason),
                         PMD_DONE);
        memcpy(res + rl, out, made);
        rl += made;
    }
    assert_int_equal(rl, plain.n[0]);
    assert_memory_equal(res, plain.p[0], rl);
    pmd_free(&p);
    msgs_free(&plain);
    msgs_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_accepts),
        cmocka_unit_test(test_negotiate_declines),
        cmocka_unit_test(test_negotiate_fallback),
        cmocka_unit_test(test_inflate_python),
        cmocka_unit_test(test_inflate_no_pending),
        cmocka_unit_test(test_inflate_no_takeover_resets),
        cmocka_unit_test(test_inflate_final_block),
        cmocka_unit_test(test_deflate_python),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_zip_bomb),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_decoder_rsv1),
        cmocka_unit_test(test_decoder_and_inflate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
