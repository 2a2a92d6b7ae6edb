/* tlsmem.c - what OpenSSL itself holds per idle server-side TLS connection.
 *
 * usage: tlsmem CERT KEY [N]
 *
 * Runs N (100) TLS 1.3 connections (TLS_AES_256_GCM_SHA384, the given
 * certificate) in memory: a client and a server SSL per connection joined by
 * a BIO pair, handshake, the session ticket(s), a 129-byte "101" from the
 * server and a 70-byte frame from the client, then idle. Every OpenSSL
 * allocation goes through CRYPTO_set_mem_functions and is charged to the
 * side (server or client) whose call made it; prints the server side's live
 * bytes per idle connection and its peak per connection during the
 * handshake, for OpenSSL's defaults and for wsgate's server settings
 * (tls.c server_ctx_tune: released buffers, one ticket, no session cache),
 * as one JSON line each. */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLIENT, SERVER, N_SIDES };
static int side = CLIENT;
static long long live[N_SIDES], peak[N_SIDES];

struct hdr {
    size_t size;
    int side;
    int pad;
};

static void charge(int s, long long n)
{
    live[s] += n;
    if (live[s] > peak[s])
        peak[s] = live[s];
}

static void *m_malloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    struct hdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->size = n;
    h->side = side;
    charge(side, (long long)n);
    return h + 1;
}

static void m_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    if (!p)
        return;
    struct hdr *h = (struct hdr *)p - 1;
    live[h->side] -= (long long)h->size;
    free(h);
}

static void *m_realloc(void *p, size_t n, const char *file, int line)
{
    if (!p)
        return m_malloc(n, file, line);
    struct hdr *h = (struct hdr *)p - 1;
    size_t old = h->size;
    int s = h->side;
    struct hdr *nh = realloc(h, sizeof(*nh) + n);
    if (!nh)
        return NULL;
    nh->size = n;
    charge(s, (long long)n - (long long)old);
    return nh + 1;
}

static void die(const char *what)
{
    fprintf(stderr, "tlsmem: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

struct pair {
    SSL *c, *s;
};

/* Drive both ends until neither makes progress. */
static void pump(struct pair *p)
{
    for (int i = 0; i < 20; i++) {
        side = CLIENT;
        SSL_do_handshake(p->c);
        unsigned char buf[512];
        while (SSL_read(p->c, buf, sizeof(buf)) > 0)
            ;
        side = SERVER;
        SSL_do_handshake(p->s);
        while (SSL_read(p->s, buf, sizeof(buf)) > 0)
            ;
    }
}

static SSL_CTX *server_ctx(const char *cert, const char *key, int tuned)
{
    side = SERVER;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("server context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384");
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (tuned) { /* as tls.c server_ctx_tune() */
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 1);
    }
    return ctx;
}

static void run(const char *cert, const char *key, int n, int tuned)
{
    SSL_CTX *sctx = server_ctx(cert, key, tuned);
    side = CLIENT;
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (!cctx)
        die("client context");
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    struct pair *p = calloc((size_t)n, sizeof(*p));
    if (!p)
        die("calloc");
    /* one warm-up connection: lazily made OpenSSL tables are not per connection */
    for (int round = 0; round < 2; round++) {
        int count = round == 0 ? 1 : n;
        long long live0 = live[SERVER];
        peak[SERVER] = live[SERVER];
        for (int i = 0; i < count; i++) {
            BIO *bc, *bs;
            side = CLIENT;
            if (BIO_new_bio_pair(&bc, 0, &bs, 0) != 1)
                die("bio pair");
            p[i].c = SSL_new(cctx);
            side = SERVER;
            p[i].s = SSL_new(sctx);
            if (!p[i].c || !p[i].s)
                die("SSL_new");
            SSL_set_bio(p[i].s, bs, bs);
            side = CLIENT;
            SSL_set_bio(p[i].c, bc, bc);
            SSL_set_connect_state(p[i].c);
            SSL_set_accept_state(p[i].s);
            pump(&p[i]);
            char resp[129], frame[70];
            memset(resp, 'h', sizeof(resp));
            memset(frame, 'f', sizeof(frame));
            side = SERVER;
            if (SSL_write(p[i].s, resp, sizeof(resp)) != (int)sizeof(resp))
                die("server write");
            side = CLIENT;
            if (SSL_write(p[i].c, frame, sizeof(frame)) != (int)sizeof(frame))
                die("client write");
            pump(&p[i]);
            if (!SSL_is_init_finished(p[i].s))
                die("handshake");
        }
        if (round == 1)
            printf("{\"settings\":\"%s\",\"connections\":%d,\"server_live_b_per_conn\":%.0f,"
                   "\"server_peak_b_per_conn\":%.0f}\n",
                   tuned ? "wsgate" : "openssl-defaults", n, (double)(live[SERVER] - live0) / n,
                   (double)(peak[SERVER] - live0) / n);
        for (int i = 0; i < count; i++) {
            side = SERVER;
            SSL_free(p[i].s);
            side = CLIENT;
            SSL_free(p[i].c);
        }
    }
    free(p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        die("usage: tlsmem CERT KEY [N]");
    int n = argc > 3 ? atoi(argv[3]) : 100;
    if (n < 1)
        die("N must be at least 1");
    if (!CRYPTO_set_mem_functions(m_malloc, m_realloc, m_free))
        die("CRYPTO_set_mem_functions (called too late)");
    run(argv[1], argv[2], n, 0);
    run(argv[1], argv[2], n, 1);
    return 0;
}
