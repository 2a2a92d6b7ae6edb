/* jwt.c - compact JWS verification with OpenSSL 3 EVP and jansson.
 * Contracts in jwt.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "jwt.h"
#include "errbuf.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#define MAX_SECRET 4096
#define MAX_SIG 1024 /* RSA 8192 bits */
#define MIN_RSA_BITS 2048

/* What a key is; each algorithm needs one kind. */
enum key_kind { K_SECRET, K_RSA, K_P256, K_P384, K_ED25519 };

static const struct alg_info {
    const char *name;
    enum key_kind kind;
    const char *md; /* digest (HMAC, RSA, ECDSA); NULL for EdDSA */
    size_t size;    /* HMAC: minimal secret / MAC length; ECDSA: raw R||S length */
} algs[JWT_NALGS] = {
    [JWT_HS256] = {"HS256", K_SECRET, "SHA256", 32},
    [JWT_HS384] = {"HS384", K_SECRET, "SHA384", 48},
    [JWT_HS512] = {"HS512", K_SECRET, "SHA512", 64},
    [JWT_RS256] = {"RS256", K_RSA, "SHA256", 0},
    [JWT_PS256] = {"PS256", K_RSA, "SHA256", 0},
    [JWT_ES256] = {"ES256", K_P256, "SHA256", 64},
    [JWT_ES384] = {"ES384", K_P384, "SHA384", 96},
    [JWT_EDDSA] = {"EdDSA", K_ED25519, NULL, 64},
};

static const char *const kind_names[] = {
    [K_SECRET] = "an HMAC secret", [K_RSA] = "an RSA key",         [K_P256] = "an EC P-256 key",
    [K_P384] = "an EC P-384 key",  [K_ED25519] = "an Ed25519 key",
};

struct jwt_verifier {
    enum key_kind kind;
    EVP_PKEY *pkey; /* public key; NULL for a secret */
    unsigned char *secret;
    size_t secret_len;
    unsigned allowed; /* bit per enum jwt_alg */
    char *audience, *issuer;
    int64_t leeway_ms;
    /* Signatures already verified (SHA-256 of the whole token), so a token
     * that comes back (reconnects, churn) costs no public-key operation;
     * the claims are checked every time. Direct-mapped; only good
     * signatures enter it. */
    pthread_mutex_t lock;
    unsigned char seen[JWT_SIG_CACHE][32];
    bool seen_valid[JWT_SIG_CACHE];
};

/* Contract in jwt.h. */
int jwt_alg_from_name(const char *name, size_t len)
{
    for (int i = 0; i < JWT_NALGS; i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0)
            return i;
    return -1;
}

/* Contract in jwt.h. */
const char *jwt_alg_name(enum jwt_alg alg)
{
    return (unsigned)alg < JWT_NALGS ? algs[alg].name : "?";
}

/* Contract in jwt.h. */
int jwt_check_alg_name(const char *item, char *err, size_t errlen)
{
    if (strcasecmp(item, "none") == 0) {
        err_set(err, errlen, "'none' is never accepted");
        return -1;
    }
    if (jwt_alg_from_name(item, strlen(item)) < 0) {
        err_set(err, errlen,
                "unknown algorithm '%s' (HS256, HS384, HS512, RS256, PS256, ES256, ES384, EdDSA)",
                item);
        return -1;
    }
    return 0;
}

/* ---- base64url ----------------------------------------------------------- */

static bool b64url_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_';
}

/* Contract in jwt.h. Translated to standard base64 and decoded by
 * EVP_DecodeBlock (which takes whitespace, excluded here): the whole
 * groups straight into out, a last partial group padded, via a small
 * buffer. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    unsigned char tmp[JWT_MAX_TOKEN + 4], last[3];
    size_t full = len / 4 * 4, rest = len % 4;
    size_t outlen = full / 4 * 3 + (rest ? rest - 1 : 0);

    if (rest == 1 || len > JWT_MAX_TOKEN || outlen > cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!b64url_char(c))
            return -1;
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    if (full > 0 && EVP_DecodeBlock(out, tmp, (int)full) != (int)(full / 4 * 3))
        return -1;
    if (rest > 0) {
        memset(tmp + len, '=', 4 - rest);
        if (EVP_DecodeBlock(last, tmp + full, 4) != 3)
            return -1;
        memcpy(out + full / 4 * 3, last, rest - 1);
    }
    return (long)outlen;
}

/* ---- keys ---------------------------------------------------------------- */

/* The kind of a public key, or -1 (with a message) when unsupported. */
static int pkey_kind(EVP_PKEY *pkey, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < MIN_RSA_BITS) {
            err_set(err, errlen, "RSA key of %d bits (at least %d)", EVP_PKEY_get_bits(pkey),
                    MIN_RSA_BITS);
            return -1;
        }
        return K_RSA;
    }
    if (EVP_PKEY_is_a(pkey, "ED25519"))
        return K_ED25519;
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           &glen) == 1) {
            if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
                return K_P256;
            if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
                return K_P384;
            err_set(err, errlen, "EC curve %s is not supported (P-256 or P-384)", group);
            return -1;
        }
    }
    err_set(err, errlen, "unsupported key type %s (RSA, EC P-256/P-384 or Ed25519)",
            EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
    return -1;
}

/* A PEM public key (private keys give their public half). */
static EVP_PKEY *load_pem(const unsigned char *data, size_t len, char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, 0, NULL, NULL);
    const unsigned char *p = data;
    size_t left = len;

    if (dctx == NULL || OSSL_DECODER_from_data(dctx, &p, &left) != 1 || pkey == NULL) {
        err_set(err, errlen, "not a PEM public key OpenSSL can read");
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    OSSL_DECODER_CTX_free(dctx);
    return pkey;
}

/* The base64url member name of the JWK o, decoded into out[cap]; its length
 * must be exactly want when want is not 0. -1 with a message otherwise. */
static long jwk_bytes(json_t *o, const char *name, unsigned char *out, size_t cap, size_t want,
                      char *err, size_t errlen)
{
    const char *s = json_string_value(json_object_get(o, name));
    long n = s ? jwt_b64url_decode(s, strlen(s), out, cap) : -1;

    if (n <= 0 || (want != 0 && (size_t)n != want)) {
        err_set(err, errlen, "JWK: missing or invalid \"%s\"", name);
        return -1;
    }
    return n;
}

/* EVP_PKEY from OSSL_PARAMs of type type ("RSA", "EC"). */
static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *jwk_rsa(json_t *o, char *err, size_t errlen)
{
    unsigned char n[1024], e[16];
    long nl = jwk_bytes(o, "n", n, sizeof n, 0, err, errlen);
    long el = nl < 0 ? -1 : jwk_bytes(o, "e", e, sizeof e, 0, err, errlen);
    EVP_PKEY *pkey = NULL;

    if (el < 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
        pkey = pkey_fromdata("RSA", params);
    if (pkey == NULL)
        err_set(err, errlen, "JWK: invalid RSA key");
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

/* The EC coordinate member name of o into out[sz], right-aligned: RFC 7518
 * wants all sz bytes, but some minters drop leading zero bytes (python3-jwt
 * 2.6's to_jwk, one key in 128 for P-384) and jwcrypto, whose reading of a
 * JWK the contract follows, takes them; longer is refused. */
static int jwk_coord(json_t *o, const char *name, unsigned char *out, size_t sz, char *err,
                     size_t errlen)
{
    unsigned char tmp[48];
    long n = jwk_bytes(o, name, tmp, sz, 0, err, errlen);
    if (n < 0)
        return -1;
    memset(out, 0, sz - (size_t)n);
    memcpy(out + sz - (size_t)n, tmp, (size_t)n);
    return 0;
}

static EVP_PKEY *jwk_ec(json_t *o, char *err, size_t errlen)
{
    const char *crv = json_string_value(json_object_get(o, "crv"));
    unsigned char pt[1 + 2 * 48];
    const char *group;
    size_t sz;

    if (crv && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        sz = 32;
    } else if (crv && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        sz = 48;
    } else {
        err_set(err, errlen, "JWK: EC \"crv\" must be P-256 or P-384");
        return NULL;
    }
    pt[0] = POINT_CONVERSION_UNCOMPRESSED;
    if (jwk_coord(o, "x", pt + 1, sz, err, errlen) < 0 ||
        jwk_coord(o, "y", pt + 1 + sz, sz, err, errlen) < 0)
        return NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * sz),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *pkey = pkey_fromdata("EC", params);
    if (pkey == NULL)
        err_set(err, errlen, "JWK: invalid EC point");
    return pkey;
}

/* A JWK (one JSON object) into v: a secret or a public key. */
static int load_jwk(struct jwt_verifier *v, const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    const char *kty = json_string_value(json_object_get(o, "kty"));
    const char *use = json_string_value(json_object_get(o, "use"));
    int rc = -1;

    if (!json_is_object(o)) {
        err_set(err, errlen, "JWK: invalid JSON (line %d: %s)", je.line, je.text);
    } else if (json_object_get(o, "keys") != NULL) {
        err_set(err, errlen, "JWK: a key set is not supported (one key per file)");
    } else if (use != NULL && strcmp(use, "sig") != 0) {
        err_set(err, errlen, "JWK: \"use\" is not \"sig\"");
    } else if (kty == NULL) {
        err_set(err, errlen, "JWK: no \"kty\"");
    } else if (strcmp(kty, "oct") == 0) {
        unsigned char k[MAX_SECRET];
        long n = jwk_bytes(o, "k", k, sizeof k, 0, err, errlen);
        if (n > 0 && (v->secret = malloc((size_t)n)) != NULL) {
            memcpy(v->secret, k, (size_t)n);
            v->secret_len = (size_t)n;
            v->kind = K_SECRET;
            rc = 0;
        } else if (n > 0) {
            err_set(err, errlen, "out of memory");
        }
        OPENSSL_cleanse(k, sizeof k);
    } else if (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0) {
        v->pkey = kty[0] == 'R' ? jwk_rsa(o, err, errlen) : jwk_ec(o, err, errlen);
    } else if (strcmp(kty, "OKP") == 0) {
        const char *crv = json_string_value(json_object_get(o, "crv"));
        unsigned char x[32];
        if (crv == NULL || strcmp(crv, "Ed25519") != 0)
            err_set(err, errlen, "JWK: OKP \"crv\" must be Ed25519");
        else if (jwk_bytes(o, "x", x, sizeof x, sizeof x, err, errlen) == 32 &&
                 (v->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32)) == NULL)
            err_set(err, errlen, "JWK: invalid Ed25519 key");
    } else {
        err_set(err, errlen, "JWK: unsupported \"kty\" (oct, RSA, EC or OKP)");
    }
    if (v->pkey != NULL) {
        int kind = pkey_kind(v->pkey, err, errlen);
        if (kind >= 0) {
            v->kind = (enum key_kind)kind;
            rc = 0;
        }
    }
    /* A JWK that names its algorithm allows only that one. */
    const char *alg = rc == 0 ? json_string_value(json_object_get(o, "alg")) : NULL;
    if (alg != NULL) {
        int a = jwt_alg_from_name(alg, strlen(alg));
        if (a < 0 || (v->allowed & ~(1u << a)) != 0) {
            err_set(err, errlen, "JWK: its \"alg\" does not match token_jwt_algorithms");
            rc = -1;
        }
    }
    json_decref(o);
    return rc;
}

/* Contract in jwt.h. */
int jwt_verifier_from_mem(const void *key, size_t len, const struct jwt_settings *s,
                          struct jwt_verifier **out, char *err, size_t errlen)
{
    const char *text = key;
    struct jwt_verifier *v = calloc(1, sizeof *v);
    size_t skip = 0;
    int rc = -1;

    *out = NULL;
    if (v == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&v->lock, NULL);
    for (size_t i = 0; i < s->nalgorithms; i++) {
        int a = jwt_alg_from_name(s->algorithms[i], strlen(s->algorithms[i]));
        if (a < 0) {
            jwt_check_alg_name(s->algorithms[i], err, errlen);
            goto done;
        }
        v->allowed |= 1u << a;
    }
    if (v->allowed == 0) {
        err_set(err, errlen, "token_jwt_algorithms is required with token_jwt_key");
        goto done;
    }
    while (skip < len && isspace((unsigned char)text[skip]))
        skip++;
    if (len - skip >= 10 && memcmp(text + skip, "-----BEGIN", 10) == 0) {
        v->pkey = load_pem((const unsigned char *)key, len, err, errlen);
        int kind = v->pkey ? pkey_kind(v->pkey, err, errlen) : -1;
        if (kind < 0)
            goto done;
        v->kind = (enum key_kind)kind;
    } else if (skip < len && text[skip] == '{') {
        if (load_jwk(v, text, len, err, errlen) < 0)
            goto done;
    } else {
        size_t n = len;
        if (n > 0 && text[n - 1] == '\n')
            n -= 1 + (n > 1 && text[n - 2] == '\r');
        if (n == 0 || n > MAX_SECRET) {
            err_set(err, errlen, "empty secret, or over %d bytes", MAX_SECRET);
            goto done;
        }
        if ((v->secret = malloc(n)) == NULL) {
            err_set(err, errlen, "out of memory");
            goto done;
        }
        memcpy(v->secret, text, n);
        v->secret_len = n;
        v->kind = K_SECRET;
    }
    for (int a = 0; a < JWT_NALGS; a++) {
        if (!(v->allowed & (1u << a)))
            continue;
        if (algs[a].kind != v->kind) {
            err_set(err, errlen, "%s needs %s, the key is %s", algs[a].name,
                    kind_names[algs[a].kind], kind_names[v->kind]);
            goto done;
        }
        if (v->kind == K_SECRET && v->secret_len < algs[a].size) {
            err_set(err, errlen, "%s needs a secret of at least %zu bytes (has %zu)", algs[a].name,
                    algs[a].size, v->secret_len);
            goto done;
        }
    }
    if ((s->audience && !(v->audience = strdup(s->audience))) ||
        (s->issuer && !(v->issuer = strdup(s->issuer)))) {
        err_set(err, errlen, "out of memory");
        goto done;
    }
    v->leeway_ms = s->leeway_ms;
    *out = v;
    rc = 0;
done:
    if (rc < 0)
        jwt_verifier_free(v);
    return rc;
}

/* Contract in jwt.h. */
int jwt_verifier_new(const char *path, const struct jwt_settings *s, struct jwt_verifier **out,
                     char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;
    int rc;

    *out = NULL;
    if (f == NULL) {
        err_set(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(JWT_MAX_KEY_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    n = fread(buf, 1, JWT_MAX_KEY_FILE + 1, f);
    if (ferror(f) || n > JWT_MAX_KEY_FILE) {
        err_set(err, errlen, "cannot read '%s': %s", path,
                ferror(f) ? "read error" : "larger than 64 KiB");
        rc = -1;
    } else {
        rc = jwt_verifier_from_mem(buf, n, s, out, err, errlen);
    }
    fclose(f);
    OPENSSL_cleanse(buf, JWT_MAX_KEY_FILE + 1);
    free(buf);
    return rc;
}

/* Contract in jwt.h. */
void jwt_verifier_free(struct jwt_verifier *v)
{
    if (v == NULL)
        return;
    EVP_PKEY_free(v->pkey);
    pthread_mutex_destroy(&v->lock);
    if (v->secret)
        OPENSSL_cleanse(v->secret, v->secret_len);
    free(v->secret);
    free(v->audience);
    free(v->issuer);
    free(v);
}

/* ---- signatures ---------------------------------------------------------- */

/* Raw ECDSA R||S (n bytes) as DER into der[cap]; its length or -1. */
static int ecdsa_raw_to_der(const unsigned char *sig, size_t n, unsigned char *der, size_t cap)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(n / 2), NULL), *s = BN_bin2bn(sig + n / 2, (int)(n / 2), NULL);
    int len = -1;

    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es */
        if (i2d_ECDSA_SIG(es, NULL) <= (int)cap) {
            unsigned char *p = der;
            len = i2d_ECDSA_SIG(es, &p);
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* Whether sig[0..n) is alg's signature of msg[0..mlen) under v's key. */
static bool sig_ok(const struct jwt_verifier *v, enum jwt_alg alg, const char *msg, size_t mlen,
                   const unsigned char *sig, size_t n)
{
    const struct alg_info *ai = &algs[alg];
    unsigned char der[MAX_SIG];
    bool ok = false;

    if (ai->kind == K_SECRET) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t maclen = 0;
        return n == ai->size &&
               EVP_Q_mac(NULL, "HMAC", NULL, ai->md, NULL, v->secret, v->secret_len,
                         (const unsigned char *)msg, mlen, mac, sizeof mac, &maclen) != NULL &&
               maclen == n && CRYPTO_memcmp(mac, sig, n) == 0;
    }
    if ((ai->kind == K_P256 || ai->kind == K_P384 || ai->kind == K_ED25519) && n != ai->size)
        return false;
    if (ai->kind == K_P256 || ai->kind == K_P384) {
        int dl = ecdsa_raw_to_der(sig, n, der, sizeof der);
        if (dl < 0)
            return false;
        sig = der;
        n = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx != NULL &&
        EVP_DigestVerifyInit_ex(ctx, &pctx, ai->md, NULL, NULL, v->pkey, NULL) == 1 &&
        (alg != JWT_PS256 ||
         (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
          EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
        (alg != JWT_RS256 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1))
        ok = EVP_DigestVerify(ctx, sig, n, (const unsigned char *)msg, mlen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* sig_ok() through the verifier's cache of good signatures: token[0..len)
 * is the whole token (header.payload.signature). */
static bool sig_ok_cached(const struct jwt_verifier *cv, enum jwt_alg alg, const char *token,
                          size_t len, size_t mlen, const unsigned char *sig, size_t n)
{
    struct jwt_verifier *v = (struct jwt_verifier *)cv; /* the cache is the mutable part */
    unsigned char h[32];
    unsigned int hl = 0;
    if (EVP_Digest(token, len, h, &hl, EVP_sha256(), NULL) != 1 || hl != sizeof h)
        return sig_ok(cv, alg, token, mlen, sig, n);
    size_t slot = ((size_t)h[0] << 8 | h[1]) % JWT_SIG_CACHE;
    pthread_mutex_lock(&v->lock);
    bool hit = v->seen_valid[slot] && CRYPTO_memcmp(v->seen[slot], h, sizeof h) == 0;
    pthread_mutex_unlock(&v->lock);
    if (hit)
        return true;
    if (!sig_ok(cv, alg, token, mlen, sig, n))
        return false;
    pthread_mutex_lock(&v->lock);
    memcpy(v->seen[slot], h, sizeof h);
    v->seen_valid[slot] = true;
    pthread_mutex_unlock(&v->lock);
    return true;
}

/* ---- claims -------------------------------------------------------------- */

/* A JSON value is "host" or "port"-style text without controls. */
static bool host_ok(const char *h, size_t len, bool *v6)
{
    bool colon = memchr(h, ':', len) != NULL;

    *v6 = colon;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (colon ? !(isxdigit(c) || c == ':' || c == '.')
                  : !(isalnum(c) || c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* port claim: integer or string of digits, 1..65535. -1 when invalid. */
static long claim_port(json_t *p)
{
    if (json_is_integer(p)) {
        json_int_t n = json_integer_value(p);
        return n >= 1 && n <= 65535 ? (long)n : -1;
    }
    const char *s = json_string_value(p);
    size_t len = s ? json_string_length(p) : 0;
    long n = 0;
    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        n = n * 10 + (s[i] - '0');
    }
    return n >= 1 && n <= 65535 ? n : -1;
}

/* exp/nbf when present: a number; -1 otherwise. *t in milliseconds. */
static int claim_time(json_t *o, const char *name, bool *present, double *t)
{
    json_t *x = json_object_get(o, name);

    *present = x != NULL;
    if (x == NULL)
        return 0;
    if (!json_is_number(x))
        return -1;
    *t = json_number_value(x) * 1000.0;
    return 0;
}

/* The claims of a verified payload. 0 with target set, or -1 with why. */
static int check_claims(const struct jwt_verifier *v, json_t *c, const char *route, int64_t now,
                        char *target, size_t cap, const char **why)
{
    double nowms = (double)now * 1000.0, t;
    bool present;

    if (!json_is_object(c))
        return *why = "payload is not a JSON object", -1;
    if (claim_time(c, "exp", &present, &t) < 0)
        return *why = "exp is not a number", -1;
    if (present && nowms >= t + (double)v->leeway_ms)
        return *why = "expired", -1;
    if (claim_time(c, "nbf", &present, &t) < 0)
        return *why = "nbf is not a number", -1;
    if (present && nowms + (double)v->leeway_ms < t)
        return *why = "not valid yet (nbf)", -1;
    if (v->issuer) {
        const char *iss = json_string_value(json_object_get(c, "iss"));
        if (iss == NULL || strcmp(iss, v->issuer) != 0)
            return *why = "issuer mismatch", -1;
    }
    if (v->audience) {
        json_t *aud = json_object_get(c, "aud"), *item;
        size_t i;
        bool found = json_is_string(aud) && strcmp(json_string_value(aud), v->audience) == 0;
        json_array_foreach(aud, i, item) found =
            found || (json_is_string(item) && strcmp(json_string_value(item), v->audience) == 0);
        if (!found)
            return *why = "audience mismatch", -1;
    }
    json_t *r = json_object_get(c, "route");
    if (r != NULL && route != NULL &&
        (!json_is_string(r) || strcmp(json_string_value(r), route) != 0 ||
         strlen(route) != json_string_length(r)))
        return *why = "route mismatch", -1;
    json_t *h = json_object_get(c, "host");
    const char *host = json_string_value(h);
    long port = claim_port(json_object_get(c, "port"));
    bool v6;
    if (host == NULL || port < 0)
        return *why = "no valid host and port claims", -1;
    if (!host_ok(host, json_string_length(h), &v6))
        return *why = "invalid host claim", -1;
    int n = snprintf(target, cap, v6 ? "[%s]:%ld" : "%s:%ld", host, port);
    if (n < 0 || (size_t)n >= cap)
        return *why = "target too long", -1;
    return 0;
}

/* ---- verification -------------------------------------------------------- */

/* Contract in jwt.h. */
int jwt_verify(const struct jwt_verifier *v, const char *token, size_t len, const char *route,
               int64_t now, char *target, size_t cap, char *why, size_t whylen)
{
    unsigned char buf[JWT_MAX_TOKEN];
    const char *reason = NULL;
    json_t *hdr = NULL, *claims = NULL;
    json_error_t je;
    int rc = -1;

    if (cap > 0)
        target[0] = '\0';
    if (len == 0 || len > JWT_MAX_TOKEN) {
        reason = len ? "token too long" : "empty token";
        goto done;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
        reason = "not a compact JWS (three parts)";
        goto done;
    }
    long n = jwt_b64url_decode(token, (size_t)(d1 - token), buf, sizeof buf);
    if (n <= 0 ||
        (hdr = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &je)) == NULL ||
        !json_is_object(hdr)) {
        reason = "malformed header";
        goto done;
    }
    json_t *ja = json_object_get(hdr, "alg");
    const char *alg_name = json_string_value(ja);
    if (alg_name == NULL) {
        reason = "no alg in header";
        goto done;
    }
    int alg = jwt_alg_from_name(alg_name, json_string_length(ja));
    if (alg < 0 || !(v->allowed & (1u << alg))) {
        reason = strcasecmp(alg_name, "none") == 0 ? "alg none refused" : "algorithm not allowed";
        goto done;
    }
    if (algs[alg].kind != v->kind) { /* cannot happen: the allow-list fits the key */
        reason = "algorithm does not fit the key";
        goto done;
    }
    if (json_object_get(hdr, "crit") != NULL) {
        reason = "crit header not supported";
        goto done;
    }
    n = jwt_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), buf, MAX_SIG);
    if (n <= 0 ||
        !sig_ok_cached(v, (enum jwt_alg)alg, token, len, (size_t)(d2 - token), buf, (size_t)n)) {
        reason = "bad signature";
        goto done;
    }
    n = jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof buf);
    if (n <= 0 ||
        (claims = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &je)) == NULL) {
        reason = "malformed payload";
        goto done;
    }
    rc = check_claims(v, claims, route, now, target, cap, &reason);
done:
    if (rc < 0) {
        err_set(why, whylen, "%s", reason);
        if (cap > 0)
            target[0] = '\0';
    }
    json_decref(hdr);
    json_decref(claims);
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}
