/* tlsrec.c - TLS 1.3 records after OpenSSL's handshake (see tlsrec.h). */
#include "tlsrec.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Our own KeyUpdate after this many records under one key: well inside
 * RFC 8446 5.5's 2^24.5 full records for AES-GCM. */
#define TX_UPDATE_AFTER (1ULL << 24)

enum {
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPDATA = 23,
    HS_KEY_UPDATE = 24,
    HS_NEW_SESSION_TICKET = 4,
    HS_FINISHED = 20,
    HS_END_OF_EARLY_DATA = 5,
    AL_CLOSE_NOTIFY = 0,
    AL_UNEXPECTED = 10,
    AL_BAD_MAC = 20,
    AL_OVERFLOW = 22,
    AL_ILLEGAL = 47,
    AL_DECODE = 50,
    AL_USER_CANCELED = 90,
};

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static EVP_CIPHER *ciphers[3];   /* fetched once: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 */
static uint64_t last_key_id;     /* atomic */
static uint64_t n_taken, n_kept; /* atomic: connections taken over, and left to OpenSSL */

/* Each thread's cipher contexts, keyed: CACHE_SLOTS for sealing and as
 * many for opening, a key in the slot of its id (ids are handed out in
 * turn, so the connections a worker serves spread over the slots). A
 * record of a key already in its slot costs one IV setting; only a key
 * whose slot another one took is set up again (AES key schedule, GHASH
 * table). Contexts are made on first use and an idle connection holds
 * none: at most 2 x CACHE_SLOTS contexts (about 1 KiB each) per thread. */
#define CACHE_SLOTS 256
struct cipher_cache {
    EVP_CIPHER_CTX *ctx[2][CACHE_SLOTS];
    uint64_t key_id[2][CACHE_SLOTS];
};

static void ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    tlsrec_free(ptr);
}

static void cache_free(void *p)
{
    struct cipher_cache *c = p;
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < CACHE_SLOTS; i++)
            EVP_CIPHER_CTX_free(c->ctx[e][i]);
    free(c);
}

static void init_once(void)
{
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ex_free);
    if (pthread_key_create(&cache_key, cache_free) != 0)
        ex_index = -1;
    ciphers[0] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    ciphers[1] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    ciphers[2] = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

/* A key no longer used leaves this thread's contexts at once (its key
 * schedule is wiped, as OpenSSL wipes its own when the SSL is freed). */
static void forget(const struct tlsrec_keys *k, int enc)
{
    struct cipher_cache *c = k->key_id ? pthread_getspecific(cache_key) : NULL;
    size_t slot = k->key_id % CACHE_SLOTS;
    if (c && c->key_id[enc][slot] == k->key_id) {
        EVP_CIPHER_CTX_reset(c->ctx[enc][slot]);
        c->key_id[enc][slot] = 0;
    }
}

void tlsrec_free(struct tlsrec *r)
{
    if (!r)
        return;
    forget(&r->rx, 0);
    forget(&r->tx, 1);
    free(r->in);
    free(r->out);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

/* OpenSSL's message callback: count the records each way since the
 * Finished message that installed the application keys. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version, (void)arg;
    struct tlsrec *r = SSL_get_ex_data(ssl, ex_index);
    if (!r)
        return;
    if (content_type == SSL3_RT_HEADER) {
        if (write_p)
            r->tx_records++;
        else
            r->rx_records++;
        return;
    }
    if (content_type != SSL3_RT_HANDSHAKE || len < 1)
        return;
    uint8_t type = *(const uint8_t *)buf;
    if (type == HS_FINISHED) {
        if (write_p)
            r->tx_records = 0;
        else
            r->rx_records = 0;
    } else if (type == HS_KEY_UPDATE || type == HS_END_OF_EARLY_DATA) {
        r->flags |= TLSREC_NO_TAKEOVER;
    }
}

int tlsrec_watch(SSL *ssl, int client)
{
    pthread_once(&ex_once, init_once);
    if (ex_index < 0)
        return -1;
    struct tlsrec *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    if (SSL_set_ex_data(ssl, ex_index, r) != 1) {
        free(r);
        return -1;
    }
    if (client)
        r->flags |= TLSREC_CLIENT;
    SSL_set_msg_callback(ssl, msg_cb);
    return 0;
}

/* "LABEL <client random> <secret>" from OpenSSL's key log. */
void tlsrec_keylog(const SSL *ssl, const char *line)
{
    struct tlsrec *r = ex_index >= 0 ? SSL_get_ex_data(ssl, ex_index) : NULL;
    if (!r)
        return;
    unsigned have;
    struct tlsrec_keys *k;
    int client = (r->flags & TLSREC_CLIENT) != 0; /* which secret we write with */
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
        have = TLSREC_HAVE_CLIENT, k = client ? &r->tx : &r->rx;
    } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
        have = TLSREC_HAVE_SERVER, k = client ? &r->rx : &r->tx;
    } else {
        return;
    }
    const char *p = strchr(line + 24, ' ');
    if (!p)
        return;
    p++;
    size_t n = strlen(p);
    if (n != 64 && n != 96)
        return;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)p[2 * i]),
            lo = OPENSSL_hexchar2int((unsigned char)p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        k->secret[i] = (uint8_t)(hi << 4 | lo);
    }
    r->hashlen = (uint8_t)(n / 2);
    r->flags |= have;
}

static const EVP_MD *md_of(const struct tlsrec *r)
{
    return r->hashlen == 48 ? EVP_sha384() : EVP_sha256();
}

/* HKDF-Expand-Label(secret, label, "", outlen) (RFC 8446 7.1); one HMAC
 * block, as every output here is at most the hash's length. */
static int expand_label(const struct tlsrec *r, const uint8_t *secret, const char *label,
                        uint8_t *out, size_t outlen)
{
    uint8_t info[2 + 1 + 6 + 16 + 1 + 1];
    size_t ll = strlen(label), n = 0;
    info[n++] = (uint8_t)(outlen >> 8);
    info[n++] = (uint8_t)outlen;
    info[n++] = (uint8_t)(6 + ll);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, ll);
    n += ll;
    info[n++] = 0; /* empty context */
    info[n++] = 1; /* HKDF-Expand's block counter */
    uint8_t t[EVP_MAX_MD_SIZE];
    unsigned tl = 0;
    if (!HMAC(md_of(r), secret, r->hashlen, info, n, t, &tl) || tl < outlen)
        return -1;
    memcpy(out, t, outlen);
    OPENSSL_cleanse(t, sizeof(t));
    return 0;
}

static int install(struct tlsrec *r, struct tlsrec_keys *k)
{
    if (expand_label(r, k->secret, "key", k->key, r->keylen) < 0 ||
        expand_label(r, k->secret, "iv", k->iv, sizeof(k->iv)) < 0)
        return -1;
    k->seq = 0;
    k->key_id = __atomic_add_fetch(&last_key_id, 1, __ATOMIC_RELAXED);
    return 0;
}

/* application_traffic_secret_N+1 (RFC 8446 7.2). */
static int next_key(struct tlsrec *r, struct tlsrec_keys *k)
{
    uint8_t s[48];
    if (expand_label(r, k->secret, "traffic upd", s, r->hashlen) < 0)
        return -1;
    forget(k, k == &r->tx);
    memcpy(k->secret, s, r->hashlen);
    OPENSSL_cleanse(s, sizeof(s));
    return install(r, k);
}

int tlsrec_setup(struct tlsrec *r, uint16_t suite)
{
    pthread_once(&ex_once, init_once);
    unsigned hash = suite == 0x1302 ? 48 : 32;
    if (suite < 0x1301 || suite > 0x1303 || hash != r->hashlen || !ciphers[suite - 0x1301])
        return -1;
    r->suite = suite;
    r->keylen = suite == 0x1301 ? 16 : 32;
    return install(r, &r->rx) < 0 || install(r, &r->tx) < 0 ? -1 : 0;
}

struct tlsrec *tlsrec_take(SSL *ssl)
{
    struct tlsrec *r = ex_index >= 0 ? SSL_get_ex_data(ssl, ex_index) : NULL;
    const unsigned both = TLSREC_HAVE_CLIENT | TLSREC_HAVE_SERVER;
    if (!r)
        return NULL;
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    SSL_set_ex_data(ssl, ex_index, NULL); /* asked once: ours or freed now */
    SSL_set_msg_callback(ssl, NULL);
    if (SSL_version(ssl) != TLS1_3_VERSION || (r->flags & TLSREC_NO_TAKEOVER) ||
        (r->flags & both) != both || !c ||
        tlsrec_setup(r, (uint16_t)SSL_CIPHER_get_protocol_id(c)) < 0) {
        __atomic_add_fetch(&n_kept, 1, __ATOMIC_RELAXED);
        tlsrec_free(r);
        return NULL;
    }
    r->rx.seq = r->rx_records;
    r->tx.seq = r->tx_records;
    __atomic_add_fetch(&n_taken, 1, __ATOMIC_RELAXED);
    return r;
}

void tlsrec_counts(uint64_t *taken, uint64_t *kept)
{
    *taken = __atomic_load_n(&n_taken, __ATOMIC_RELAXED);
    *kept = __atomic_load_n(&n_kept, __ATOMIC_RELAXED);
}

/* This thread's context for k, keyed; enc 1 seals, 0 opens. */
static EVP_CIPHER_CTX *keyed(const struct tlsrec *r, const struct tlsrec_keys *k, int enc)
{
    struct cipher_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        if (!(c = calloc(1, sizeof(*c))) || pthread_setspecific(cache_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    size_t slot = k->key_id % CACHE_SLOTS;
    EVP_CIPHER_CTX **ctx = &c->ctx[enc][slot];
    if (!*ctx && !(*ctx = EVP_CIPHER_CTX_new()))
        return NULL;
    if (c->key_id[enc][slot] != k->key_id) {
        c->key_id[enc][slot] = 0;
        if (EVP_CipherInit_ex(*ctx, ciphers[r->suite - 0x1301], NULL, k->key, NULL, enc) != 1)
            return NULL;
        c->key_id[enc][slot] = k->key_id;
    }
    return *ctx;
}

/* The per-record nonce (RFC 8446 5.3) set on a keyed context. */
static EVP_CIPHER_CTX *nonced(const struct tlsrec *r, const struct tlsrec_keys *k, int enc)
{
    EVP_CIPHER_CTX *ctx = keyed(r, k, enc);
    if (!ctx)
        return NULL;
    uint8_t nonce[12];
    memcpy(nonce, k->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(k->seq >> (8 * i));
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, enc) != 1)
        return NULL;
    return ctx;
}

static void put_header(uint8_t *h, size_t cipherlen)
{
    h[0] = CT_APPDATA;
    h[1] = 3;
    h[2] = 3;
    h[3] = (uint8_t)(cipherlen >> 8);
    h[4] = (uint8_t)cipherlen;
}

/* Seal plain bytes of inner type type, gathered from iov[*i] at *pos on, at
 * out. Returns the record's plaintext length, or -1. */
static long seal_one(struct tlsrec *r, uint8_t type, const struct iovec *iov, int cnt, int *i,
                     size_t *pos, size_t plain, uint8_t *out)
{
    put_header(out, plain + 1 + TLSREC_TAG);
    EVP_CIPHER_CTX *ctx = nonced(r, &r->tx, 1);
    int ol;
    if (!ctx || EVP_CipherUpdate(ctx, NULL, &ol, out, TLSREC_HDR) != 1)
        return -1;
    uint8_t *w = out + TLSREC_HDR;
    size_t left = plain;
    while (left > 0 && *i < cnt) {
        size_t take = iov[*i].iov_len - *pos;
        if (take > left)
            take = left;
        if (take > 0 &&
            EVP_CipherUpdate(ctx, w, &ol, (const uint8_t *)iov[*i].iov_base + *pos, (int)take) != 1)
            return -1;
        w += take;
        left -= take;
        *pos += take;
        if (*pos == iov[*i].iov_len)
            (*i)++, *pos = 0;
    }
    if (EVP_CipherUpdate(ctx, w, &ol, &type, 1) != 1 || EVP_CipherFinal_ex(ctx, w + 1, &ol) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLSREC_TAG, w + 1) != 1)
        return -1;
    r->tx.seq++;
    return (long)(plain - left);
}

int tlsrec_seal(struct tlsrec *r, const struct iovec *iov, int cnt, size_t skip, uint8_t *out,
                size_t cap, size_t *ends, size_t *plains, int nmax, int *update)
{
    *update = 0;
    if (r->tx.seq >= TX_UPDATE_AFTER)
        r->flags |= TLSREC_UPDATE_OWED;
    if (r->flags & TLSREC_UPDATE_OWED) { /* KeyUpdate, update_not_requested */
        static const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
        if (cap < TLSREC_SEALED(sizeof(ku)) ||
            tlsrec_seal_inner(r, CT_HANDSHAKE, ku, sizeof(ku), out) < 0)
            return -1;
        ends[0] = TLSREC_SEALED(sizeof(ku));
        plains[0] = 0;
        *update = 1;
        return 1;
    }
    int i = 0, n = 0;
    size_t pos = skip, avail = 0;
    while (i < cnt && pos >= iov[i].iov_len)
        pos -= iov[i++].iov_len;
    for (int j = i; j < cnt; j++)
        avail += iov[j].iov_len;
    avail -= pos;
    size_t off = 0;
    while (n < nmax && avail > 0 && cap - off >= TLSREC_SEALED(1)) {
        size_t plain = cap - off - TLSREC_SEALED(0);
        if (plain > TLSREC_MAX_PLAIN)
            plain = TLSREC_MAX_PLAIN;
        if (plain > avail)
            plain = avail;
        if (seal_one(r, CT_APPDATA, iov, cnt, &i, &pos, plain, out + off) < 0) {
            tlsrec_unseal(r, n);
            return -1;
        }
        off += TLSREC_SEALED(plain);
        avail -= plain;
        ends[n] = off;
        plains[n++] = plain;
    }
    return n;
}

void tlsrec_unseal(struct tlsrec *r, int n)
{
    r->tx.seq -= (uint64_t)n;
}

int tlsrec_next_tx_key(struct tlsrec *r)
{
    r->flags &= ~(unsigned)TLSREC_UPDATE_OWED;
    return next_key(r, &r->tx);
}

long tlsrec_seal_inner(struct tlsrec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *out)
{
    struct iovec v = {(void *)p, n};
    int i = 0;
    size_t pos = 0;
    if (n > TLSREC_MAX_PLAIN || seal_one(r, type, &v, 1, &i, &pos, n, out) < 0)
        return -1;
    return (long)TLSREC_SEALED(n);
}

int tlsrec_alert(struct tlsrec *r, int desc, uint8_t *out)
{
    uint8_t a[2] = {desc == AL_CLOSE_NOTIFY ? 1 : 2, (uint8_t)desc};
    return (int)tlsrec_seal_inner(r, CT_ALERT, a, sizeof(a), out);
}

long tlsrec_wire_len(const uint8_t *p, size_t have, int *alert)
{
    if (have < TLSREC_HDR)
        return 0;
    size_t len = (size_t)p[3] << 8 | p[4];
    if (p[0] != CT_APPDATA) { /* after the handshake every record is protected */
        *alert = AL_UNEXPECTED;
        return -1;
    }
    if (len > TLSREC_MAX_WIRE - TLSREC_HDR) {
        *alert = AL_OVERFLOW;
        return -1;
    }
    if (len < 1 + TLSREC_TAG) {
        *alert = AL_DECODE;
        return -1;
    }
    return (long)(TLSREC_HDR + len);
}

/* Post-handshake messages in one record: a KeyUpdate (the last message of
 * its record, section 5.1) switches the read key; NewSessionTicket from a
 * server (we are its client) is let pass, we resume nothing; anything else
 * is unexpected. Returns 0, or -1 with *alert. */
static int handshake(struct tlsrec *r, const uint8_t *m, size_t len, int *alert)
{
    if (len == 0) { /* zero-length handshake fragments are forbidden (5.1) */
        *alert = AL_UNEXPECTED;
        return -1;
    }
    while (len > 0) {
        size_t body = len < 4 ? 0 : (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
        if (len < 4 || body > len - 4) {
            *alert = AL_DECODE; /* a message split across records: no peer sends one */
            return -1;
        }
        if (m[0] == HS_NEW_SESSION_TICKET && (r->flags & TLSREC_CLIENT)) {
            m += 4 + body;
            len -= 4 + body;
            continue;
        }
        if (m[0] != HS_KEY_UPDATE || body != 1 || len != 5) {
            /* anything but a KeyUpdate, or one not alone at its record's end */
            *alert = m[0] == HS_KEY_UPDATE && body != 1 ? AL_DECODE : AL_UNEXPECTED;
            return -1;
        }
        if (m[4] > 1) {
            *alert = AL_ILLEGAL;
            return -1;
        }
        if (m[4] == 1)
            r->flags |= TLSREC_UPDATE_OWED;
        if (next_key(r, &r->rx) < 0) {
            *alert = AL_DECODE;
            return -1;
        }
        len = 0;
    }
    return 0;
}

/* Open one whole record at p (wire bytes) in place. Returns the inner
 * content type with the plaintext at p + TLSREC_HDR (*plain bytes), or -1
 * with *alert. */
static int open_one(struct tlsrec *r, uint8_t *p, size_t wire, size_t *plain, int *alert)
{
    uint8_t *c = p + TLSREC_HDR;
    size_t clen = wire - TLSREC_HDR - TLSREC_TAG;
    EVP_CIPHER_CTX *ctx = nonced(r, &r->rx, 0);
    int ol;
    if (!ctx || EVP_CipherUpdate(ctx, NULL, &ol, p, TLSREC_HDR) != 1 ||
        EVP_CipherUpdate(ctx, c, &ol, c, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TLSREC_TAG, c + clen) != 1 ||
        EVP_CipherFinal_ex(ctx, c + clen, &ol) != 1) {
        *alert = AL_BAD_MAC;
        return -1;
    }
    r->rx.seq++;
    while (clen > 0 && c[clen - 1] == 0) /* padding */
        clen--;
    if (clen == 0) {
        *alert = AL_UNEXPECTED;
        return -1;
    }
    *plain = clen - 1;
    if (*plain > TLSREC_MAX_PLAIN) {
        *alert = AL_OVERFLOW;
        return -1;
    }
    return c[clen - 1];
}

long tlsrec_open(struct tlsrec *r, uint8_t *buf, size_t len, size_t *used, int *alert)
{
    size_t p = 0, w = 0;
    *alert = 0;
    if (r->flags & TLSREC_FAILED) {
        *alert = r->fail_alert;
        return -1;
    }
    while (!(r->flags & TLSREC_EOF)) {
        long wire = tlsrec_wire_len(buf + p, len - p, alert);
        if (wire < 0)
            goto fail;
        if (wire == 0 || (size_t)wire > len - p)
            break;
        size_t plain;
        int type = open_one(r, buf + p, (size_t)wire, &plain, alert);
        uint8_t *m = buf + p + TLSREC_HDR;
        p += (size_t)wire;
        if (type == CT_APPDATA) {
            memmove(buf + w, m, plain);
            w += plain;
        } else if (type == CT_ALERT) {
            if (plain != 2) {
                *alert = AL_DECODE;
                goto fail;
            }
            if (m[1] == AL_CLOSE_NOTIFY) {
                r->flags |= TLSREC_EOF;
            } else if (m[1] != AL_USER_CANCELED) {
                *alert = 0; /* the peer's own alert: nothing to answer */
                goto fail;
            }
        } else if (type == CT_HANDSHAKE) {
            if (handshake(r, m, plain, alert) < 0)
                goto fail;
        } else {
            if (type >= 0)
                *alert = AL_UNEXPECTED;
            goto fail;
        }
    }
    *used = (r->flags & TLSREC_EOF) ? len : p;
    return (long)w;
fail:
    /* what came before the bad record is given first; the failure next */
    r->flags |= TLSREC_FAILED;
    r->fail_alert = (uint8_t)*alert;
    *used = len;
    return w > 0 ? (long)w : -1;
}
