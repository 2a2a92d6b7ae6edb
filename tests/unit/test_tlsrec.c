/* test_tlsrec.c - tlsrec.c against OpenSSL's own TLS 1.3 client: a real
 * handshake in process (a BIO pair between an OpenSSL client and server),
 * the server's records taken over, then bytes both ways, KeyUpdate both
 * ways, close_notify, and every malformed record refused with its alert. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tlsrec.h"

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *server, *client;
    BIO *net; /* the server's end: what the client sent is read here, ours written here */
    struct tlsrec *rec;
};

/* A throwaway P-256 certificate for the server context. */
static void self_signed(SSL_CTX *ctx)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Handshake over a BIO pair with suite and tickets session tickets, then
 * take the server's records over (the client has read its tickets, so the
 * server's OpenSSL holds nothing). */
static void connect_pair(struct pair *p, const char *suite, int tickets)
{
    memset(p, 0, sizeof(*p));
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    self_signed(p->sctx);
    SSL_CTX_set_min_proto_version(p->sctx, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(p->sctx, suite);
    SSL_CTX_set_ciphersuites(p->cctx, suite);
    SSL_CTX_set_num_tickets(p->sctx, (size_t)tickets);
    SSL_CTX_set_keylog_callback(p->sctx, tlsrec_keylog);
    p->server = SSL_new(p->sctx);
    p->client = SSL_new(p->cctx);
    assert_int_equal(tlsrec_watch(p->server, 0), 0);
    BIO *a, *b;
    assert_int_equal(BIO_new_bio_pair(&a, 1 << 21, &b, 1 << 21), 1);
    SSL_set_bio(p->client, a, a);
    SSL_set_bio(p->server, b, b);
    p->net = b;
    SSL_set_connect_state(p->client);
    SSL_set_accept_state(p->server);
    int cd = 0, sd = 0;
    for (int i = 0; i < 20 && !(cd && sd); i++) {
        if (!cd)
            cd = SSL_do_handshake(p->client) == 1;
        if (!sd)
            sd = SSL_do_handshake(p->server) == 1;
    }
    assert_true(cd && sd);
    char c;
    assert_true(SSL_read(p->client, &c, 1) <= 0); /* takes the tickets, no data */
    assert_int_equal(SSL_has_pending(p->server), 0);
    p->rec = tlsrec_take(p->server);
    assert_non_null(p->rec);
    assert_int_equal(p->rec->tx.seq, (uint64_t)tickets);
    assert_int_equal(p->rec->rx.seq, 0);
}

static void close_pair(struct pair *p)
{
    tlsrec_free(p->rec);
    SSL_free(p->client);
    SSL_free(p->server); /* frees the BIO pair */
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
}

/* Everything the client wrote, as the server's socket would read it. */
static size_t wire_from_client(struct pair *p, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    int k;
    while (n < cap && (k = BIO_read(p->net, buf + n, (int)(cap - n))) > 0)
        n += (size_t)k;
    return n;
}

/* The client's SSL_read of exactly n bytes. */
static void client_reads(struct pair *p, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n + 1);
    size_t have = 0;
    while (have < n) {
        int k = SSL_read(p->client, got + have, (int)(n - have));
        assert_true(k > 0);
        have += (size_t)k;
    }
    assert_memory_equal(got, want, n);
    free(got);
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

/* The server seals iov (skipping skip bytes), all of it, and writes it to
 * the client's side. Returns the plaintext sealed. */
static size_t server_sends(struct pair *p, const struct iovec *iov, int cnt, size_t skip)
{
    static uint8_t out[4 * TLSREC_SEALED(TLSREC_MAX_PLAIN)];
    size_t sent = 0;
    for (;;) {
        size_t ends[4], plains[4];
        int update;
        int n =
            tlsrec_seal(p->rec, iov, cnt, skip + sent, out, sizeof(out), ends, plains, 4, &update);
        assert_true(n >= 0);
        if (n == 0)
            return sent;
        assert_int_equal(BIO_write(p->net, out, (int)ends[n - 1]), (int)ends[n - 1]);
        for (int i = 0; i < n; i++) {
            sent += plains[i];
            if (i > 0)
                assert_true(ends[i] - ends[i - 1] == TLSREC_SEALED(plains[i]));
        }
        if (update)
            assert_int_equal(tlsrec_next_tx_key(p->rec), 0);
    }
}

/* The bytes the client wrote, opened by the server, in pieces as a socket
 * may give them (piece bytes at a time, an incomplete record carried). */
static size_t server_opens(struct pair *p, uint8_t *plain, size_t cap, size_t piece)
{
    static uint8_t wire[1 << 20];
    size_t n = wire_from_client(p, wire, sizeof(wire)), at = 0, out = 0;
    uint8_t buf[2 * TLSREC_MAX_WIRE + 4096];
    size_t have = 0;
    while (at < n) {
        size_t take = n - at < piece ? n - at : piece;
        memcpy(buf + have, wire + at, take);
        at += take;
        have += take;
        size_t used;
        int alert;
        long w = tlsrec_open(p->rec, buf, have, &used, &alert);
        assert_true(w >= 0);
        assert_true(out + (size_t)w <= cap);
        memcpy(plain + out, buf, (size_t)w);
        out += (size_t)w;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    assert_int_equal(have, 0);
    return out;
}

static void roundtrip(const char *suite)
{
    struct pair p;
    connect_pair(&p, suite, 1);
    size_t n = 100000;
    uint8_t *data = malloc(n), *got = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = pattern(i);
    /* client -> server, read back in odd pieces */
    for (size_t off = 0; off < n; off += 30000)
        assert_true(SSL_write(p.client, data + off, (int)(n - off < 30000 ? n - off : 30000)) > 0);
    assert_int_equal(server_opens(&p, got, n, 7777), n);
    assert_memory_equal(got, data, n);
    /* server -> client: three iovecs, the first 10 bytes already sent */
    struct iovec iov[3] = {{data, 10}, {data + 10, 40000}, {data + 40010, n - 40010}};
    assert_int_equal(server_sends(&p, iov, 3, 10), n - 10);
    client_reads(&p, data + 10, n - 10);
    free(data);
    free(got);
    close_pair(&p);
}

static void test_aes128(void **state)
{
    (void)state;
    roundtrip("TLS_AES_128_GCM_SHA256");
}

static void test_aes256(void **state)
{
    (void)state;
    roundtrip("TLS_AES_256_GCM_SHA384");
}

static void test_chacha(void **state)
{
    (void)state;
    roundtrip("TLS_CHACHA20_POLY1305_SHA256");
}

/* Sequence numbers carried over: no ticket, and two. */
static void test_ticket_counts(void **state)
{
    (void)state;
    for (int t = 0; t <= 2; t += 2) {
        struct pair p;
        connect_pair(&p, "TLS_AES_128_GCM_SHA256", t);
        uint8_t msg[] = "after tickets";
        struct iovec v = {msg, sizeof(msg)};
        assert_int_equal(server_sends(&p, &v, 1, 0), sizeof(msg));
        client_reads(&p, msg, sizeof(msg));
        close_pair(&p);
    }
}

/* The client asks for a KeyUpdate: its next record is opened with its new
 * key, ours goes before our next data, and both sides go on. */
static void test_key_update(void **state)
{
    (void)state;
    struct pair p;
    connect_pair(&p, "TLS_AES_256_GCM_SHA384", 1);
    assert_int_equal(SSL_key_update(p.client, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_write(p.client, "one", 3), 3);
    uint8_t got[64];
    assert_int_equal(server_opens(&p, got, sizeof(got), 1 << 20), 3);
    assert_memory_equal(got, "one", 3);
    assert_true(p.rec->flags & TLSREC_UPDATE_OWED);
    uint64_t id = p.rec->tx.key_id;
    struct iovec v = {"two", 3};
    assert_int_equal(server_sends(&p, &v, 1, 0), 3);
    assert_false(p.rec->flags & TLSREC_UPDATE_OWED);
    assert_true(p.rec->tx.key_id != id);
    assert_int_equal(p.rec->tx.seq, 1); /* "two", under the new key */
    client_reads(&p, (const uint8_t *)"two", 3);
    /* not requested: no answer owed */
    assert_int_equal(SSL_key_update(p.client, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    assert_int_equal(SSL_write(p.client, "three", 5), 5);
    assert_int_equal(server_opens(&p, got, sizeof(got), 9), 5);
    assert_memory_equal(got, "three", 5);
    assert_false(p.rec->flags & TLSREC_UPDATE_OWED);
    close_pair(&p);
}

/* close_notify: ours ends the client's stream cleanly; the client's sets EOF. */
static void test_close_notify(void **state)
{
    (void)state;
    struct pair p;
    connect_pair(&p, "TLS_AES_128_GCM_SHA256", 1);
    uint8_t a[TLSREC_SEALED(2)];
    int n = tlsrec_alert(p.rec, 0, a);
    assert_int_equal(n, (int)sizeof(a));
    assert_int_equal(BIO_write(p.net, a, n), n);
    char c;
    int k = SSL_read(p.client, &c, 1);
    assert_int_equal(SSL_get_error(p.client, k), SSL_ERROR_ZERO_RETURN);
    assert_int_equal(SSL_write(p.client, "last", 4), 4);
    SSL_shutdown(p.client);
    uint8_t got[16];
    assert_int_equal(server_opens(&p, got, sizeof(got), 1 << 20), 4);
    assert_memory_equal(got, "last", 4);
    assert_true(p.rec->flags & TLSREC_EOF);
    close_pair(&p);
}

/* The client's side of p as our own record layer (each one's read key the
 * other's write key), to seal what OpenSSL's client would never send. */
static struct tlsrec mirror(const struct pair *p)
{
    struct tlsrec c = *p->rec;
    c.rx = p->rec->tx;
    c.tx = p->rec->rx;
    c.in = c.out = NULL;
    return c;
}

/* One record the client wrote, as wire bytes. */
static size_t one_record(struct pair *p, uint8_t *wire, size_t cap)
{
    assert_int_equal(SSL_write(p->client, "payload", 7), 7);
    return wire_from_client(p, wire, cap);
}

static long open_all(struct pair *p, uint8_t *wire, size_t n, int *alert)
{
    size_t used;
    return tlsrec_open(p->rec, wire, n, &used, alert);
}

/* A flipped bit in the header's version (authenticated data), the
 * ciphertext or the tag fails authentication; what came before the bad
 * record is still given. */
static void test_bad_mac(void **state)
{
    (void)state;
    for (int s = 0; s < 4; s++) {
        struct pair p;
        connect_pair(&p, "TLS_AES_128_GCM_SHA256", 1);
        uint8_t wire[256];
        size_t n1 = one_record(&p, wire, sizeof(wire));
        size_t n2 = one_record(&p, wire + n1, sizeof(wire) - n1);
        size_t spots[4] = {n1 + 2, n1 + TLSREC_HDR, n1 + TLSREC_HDR + 5, n1 + n2 - 1};
        wire[spots[s]] ^= 0x01;
        int alert = -1;
        long w = open_all(&p, wire, n1 + n2, &alert);
        assert_int_equal(w, 7); /* the good record first */
        assert_memory_equal(wire, "payload", 7);
        assert_true(p.rec->flags & TLSREC_FAILED);
        assert_int_equal(open_all(&p, wire, 0, &alert), -1);
        assert_int_equal(alert, 20); /* bad_record_mac */
        close_pair(&p);
    }
}

/* Headers refused before any decryption. */
static void test_bad_headers(void **state)
{
    (void)state;
    struct {
        uint8_t hdr[5];
        int alert;
    } cases[] = {
        {{22, 3, 3, 0, 40}, 10},      /* a plaintext handshake record: unexpected_message */
        {{20, 3, 3, 0, 1}, 10},       /* change_cipher_spec after the handshake */
        {{23, 3, 3, 0x41, 0x01}, 22}, /* 16641 > 2^14 + 256: record_overflow */
        {{23, 3, 3, 0, 16}, 50},      /* shorter than type + tag: decode_error */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int alert = -1;
        assert_int_equal(tlsrec_wire_len(cases[i].hdr, 5, &alert), -1);
        assert_int_equal(alert, cases[i].alert);
    }
    uint8_t ok[5] = {23, 3, 3, 0x41, 0x00}; /* exactly 2^14 + 256 */
    int alert = -1;
    assert_int_equal(tlsrec_wire_len(ok, 5, &alert), 5 + 16640);
    assert_int_equal(tlsrec_wire_len(ok, 4, &alert), 0);
}

/* Inner contents a client must not send, sealed with the client's keys
 * (the server's, mirrored), each refused with its alert. */
static void test_bad_inner(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint8_t body[8];
        size_t len;
        int alert;
    } cases[] = {
        {22, {24, 0, 0, 1, 2}, 5, 47},           /* KeyUpdate 2: illegal_parameter */
        {22, {24, 0, 0, 2, 0, 0}, 6, 50},        /* KeyUpdate of 2 bytes: decode_error */
        {22, {4, 0, 0, 0}, 4, 10},               /* NewSessionTicket from a client */
        {22, {0}, 0, 10},                        /* an empty handshake record */
        {22, {24, 0, 0, 1, 0, 24, 0, 0}, 8, 10}, /* a KeyUpdate not last in its record */
        {21, {2}, 1, 50},                        /* an alert of one byte */
        {24, {1}, 1, 10},                        /* content type 24 */
        {0, {0}, 0, 10},                         /* all padding: no content type */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pair p;
        connect_pair(&p, "TLS_CHACHA20_POLY1305_SHA256", 1);
        struct tlsrec client = mirror(&p);
        uint8_t wire[64];
        uint8_t body[9];
        memcpy(body, cases[i].body, cases[i].len);
        long n = cases[i].type ? tlsrec_seal_inner(&client, cases[i].type, body, cases[i].len, wire)
                               : tlsrec_seal_inner(&client, 0, body, 0, wire);
        assert_true(n > 0);
        int alert = -1;
        assert_int_equal(open_all(&p, wire, (size_t)n, &alert), -1);
        assert_int_equal(alert, cases[i].alert);
        OPENSSL_cleanse(&client, sizeof(client));
        close_pair(&p);
    }
}

/* Padding after the content type is removed; a peer's fatal alert fails
 * the connection with nothing to answer (alert 0). */
static void test_padding_and_peer_alert(void **state)
{
    (void)state;
    struct pair p;
    connect_pair(&p, "TLS_AES_128_GCM_SHA256", 1);
    struct tlsrec client = mirror(&p);
    uint8_t padded[] = {'h', 'i', 23, 0, 0, 0, 0}; /* "hi", type 23, then zeros */
    uint8_t wire[128];
    /* seal_inner appends its own type byte: give the padded content as type 0
     * so the record's last non-zero byte is our 23 */
    long n = tlsrec_seal_inner(&client, 0, padded, sizeof(padded), wire);
    assert_true(n > 0);
    uint8_t fatal[2] = {2, 40}; /* handshake_failure */
    long m = tlsrec_seal_inner(&client, 21, fatal, 2, wire + n);
    assert_true(m > 0);
    int alert = -1;
    assert_int_equal(open_all(&p, wire, (size_t)(n + m), &alert), 2);
    assert_memory_equal(wire, "hi", 2);
    assert_int_equal(open_all(&p, wire, 0, &alert), -1);
    assert_int_equal(alert, 0);
    OPENSSL_cleanse(&client, sizeof(client));
    close_pair(&p);
}

/* Our side of a backend connection: the client's records taken over while
 * the server's tickets are still on the wire (they are let pass), then data
 * both ways and a KeyUpdate the server asks us to answer. */
static void test_client_role(void **state)
{
    (void)state;
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
    self_signed(sctx);
    SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(sctx, 2);
    SSL_CTX_set_keylog_callback(cctx, tlsrec_keylog);
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    assert_int_equal(tlsrec_watch(client, 1), 0);
    BIO *a, *b;
    assert_int_equal(BIO_new_bio_pair(&a, 1 << 21, &b, 1 << 21), 1);
    SSL_set_bio(client, a, a);
    SSL_set_bio(server, b, b);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    int cd = 0, sd = 0;
    for (int i = 0; i < 20 && !(cd && sd); i++) {
        if (!cd)
            cd = SSL_do_handshake(client) == 1;
        if (!sd)
            sd = SSL_do_handshake(server) == 1;
    }
    assert_true(cd && sd);
    assert_int_equal(SSL_has_pending(client), 0); /* the tickets wait in the BIO, unread */
    struct tlsrec *rec = tlsrec_take(client);
    assert_non_null(rec);
    assert_int_equal(rec->tx.seq, 0);
    assert_int_equal(rec->rx.seq, 0);
    struct pair p = {.net = a, .rec = rec}; /* the client's end: what the server sent */
    /* server -> us: two tickets, then data */
    assert_int_equal(SSL_write(server, "from server", 11), 11);
    uint8_t got[64];
    assert_int_equal(server_opens(&p, got, sizeof(got), 13), 11);
    assert_memory_equal(got, "from server", 11);
    /* us -> server */
    struct iovec v = {"from us", 7};
    assert_int_equal(server_sends(&p, &v, 1, 0), 7);
    char back[16];
    assert_int_equal(SSL_read(server, back, sizeof(back)), 7);
    assert_memory_equal(back, "from us", 7);
    /* the server asks for a KeyUpdate: ours goes first, then data */
    assert_int_equal(SSL_key_update(server, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_write(server, "ku", 2), 2);
    assert_int_equal(server_opens(&p, got, sizeof(got), 1 << 20), 2);
    assert_true(rec->flags & TLSREC_UPDATE_OWED);
    struct iovec v2 = {"after", 5};
    assert_int_equal(server_sends(&p, &v2, 1, 0), 5);
    assert_int_equal(SSL_read(server, back, sizeof(back)), 5);
    assert_memory_equal(back, "after", 5);
    tlsrec_free(rec);
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* A server's NewSessionTicket after the takeover is refused when we are
 * the server (a client sends none). */
static void test_server_refuses_ticket(void **state)
{
    (void)state;
    struct pair p;
    connect_pair(&p, "TLS_AES_128_GCM_SHA256", 1);
    struct tlsrec client = mirror(&p);
    uint8_t nst[] = {4, 0, 0, 4, 1, 2, 3, 4}, wire[64];
    long n = tlsrec_seal_inner(&client, 22, nst, sizeof(nst), wire);
    int alert = -1;
    assert_int_equal(open_all(&p, wire, (size_t)n, &alert), -1);
    assert_int_equal(alert, 10);
    OPENSSL_cleanse(&client, sizeof(client));
    close_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes128),      cmocka_unit_test(test_aes256),
        cmocka_unit_test(test_chacha),      cmocka_unit_test(test_ticket_counts),
        cmocka_unit_test(test_key_update),  cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_bad_mac),     cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_inner),   cmocka_unit_test(test_padding_and_peer_alert),
        cmocka_unit_test(test_client_role), cmocka_unit_test(test_server_refuses_ticket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
