/* test_jwt.c - JWS verification against tokens and keys minted by an
 * independent implementation: tests/data/jwt/mint.py (python3-jwt and
 * python3-cryptography) runs in the fixture and writes cases.txt, one case
 * per line with the exact result jwt_verify() must give. Plus the verifier's
 * key/algorithm rules and base64url vectors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "jwt.h"

#ifndef PYTHON3
#define PYTHON3 "/usr/bin/python3"
#endif
#define NOW 1700000000

static char dir[256];

static int group_setup(void **state)
{
    char cmd[1024];

    (void)state;
    snprintf(dir, sizeof dir, "%s/wsgate-jwt-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cmd, sizeof cmd, "'%s' '%s/jwt/mint.py' '%s' %d", PYTHON3, TEST_DATA_DIR, dir, NOW);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[512];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *key_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* A verifier for key file name with a comma list of algorithms. */
static int make(const char *key, const char *algs, const char *aud, const char *iss,
                struct jwt_verifier **v, char *err, size_t errlen)
{
    char buf[256], *list[8];
    size_t n = 0;

    snprintf(buf, sizeof buf, "%s", algs);
    for (char *save, *t = strtok_r(buf, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save))
        list[n++] = t;
    struct jwt_settings s = {list, n, aud, iss, 30000};
    return jwt_verifier_new(key[0] == '/' ? key : key_path(key), &s, v, err, errlen);
}

/* Every minted case gives exactly its expected target or reason. */
static void test_minted_cases(void **state)
{
    char path[512], line[16384];
    int nok = 0, nfail = 0, bad = 0;

    (void)state;
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *field[8], *save = NULL, *p = line;
        for (int i = 0; i < 8; i++) {
            field[i] = strtok_r(p, "|", &save);
            p = NULL;
            assert_non_null(field[i]);
        }
        const char *name = field[0], *expect = field[6], *token = field[7];
        const char *aud = strcmp(field[3], "-") ? field[3] : NULL;
        const char *iss = strcmp(field[4], "-") ? field[4] : NULL;
        const char *route = strcmp(field[5], "-") ? field[5] : NULL;
        struct jwt_verifier *v;
        char err[256], target[JWT_TARGET_MAX], why[128], got[512];
        if (make(field[1], field[2], aud, iss, &v, err, sizeof err) < 0) {
            print_error("%s: verifier: %s\n", name, err);
            bad++;
            continue;
        }
        int rc =
            jwt_verify(v, token, strlen(token), route, NOW, target, sizeof target, why, sizeof why);
        snprintf(got, sizeof got, "%s:%s", rc == 0 ? "ok" : "fail", rc == 0 ? target : why);
        if (strcmp(got, expect) != 0) {
            print_error("%s: expected %s, got %s\n", name, expect, got);
            bad++;
        }
        if (rc == 0)
            nok++;
        else
            nfail++;
        /* A reason never quotes the token. */
        if (rc != 0 && strlen(token) >= 8) {
            char head[9];
            memcpy(head, token, 8);
            head[8] = '\0';
            assert_null(strstr(why, head));
        }
        jwt_verifier_free(v);
    }
    fclose(f);
    assert_int_equal(bad, 0);
    assert_int_equal(nok, 14 + 9); /* 14 algorithm/key pairs + 9 valid claim cases */
    assert_int_equal(nfail, 54 - nok);
}

/* base64url of in[0..n) without padding into out (NUL-terminated). */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    int k = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (k > 0 && out[k - 1] == '=')
        out[--k] = '\0';
    for (int i = 0; i < k; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/* An EC JWK whose coordinate lost its leading zero byte (as python3-jwt
 * 2.6's to_jwk writes one key in 128) is read as the same point; one with
 * a byte too many is refused. */
static void test_jwk_short_coordinate(void **state)
{
    unsigned char pt[65];
    size_t len = 0;
    (void)state;
    for (int tries = 0; tries < 100000; tries++) { /* a key with x or y < 2^248 */
        EVP_PKEY *k = EVP_EC_gen("P-256");
        assert_non_null(k);
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &len), 1);
        EVP_PKEY_free(k);
        if (pt[1] == 0 || pt[33] == 0)
            break;
    }
    assert_int_equal(len, 65);
    assert_true(pt[1] == 0 || pt[33] == 0);
    char x[64], y[64], jwk[256], err[256];
    unsigned char *cx = pt + 1, *cy = pt + 33, longer[33] = {0};
    size_t nx = 32, ny = 32;
    while (nx > 1 && *cx == 0) /* drop the leading zero bytes, as those minters do */
        cx++, nx--;
    while (ny > 1 && *cy == 0)
        cy++, ny--;
    b64url(cx, nx, x);
    b64url(cy, ny, y);
    snprintf(jwk, sizeof jwk, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    char *es = "ES256";
    struct jwt_settings ses = {&es, 1, NULL, NULL, 0};
    struct jwt_verifier *v = NULL;
    if (jwt_verifier_from_mem(jwk, strlen(jwk), &ses, &v, err, sizeof err) != 0)
        fail_msg("%s: %s", jwk, err);
    jwt_verifier_free(v);
    memcpy(longer + 1, pt + 1, 32); /* 33 bytes: refused */
    b64url(longer, 33, x);
    b64url(pt + 33, 32, y);
    snprintf(jwk, sizeof jwk, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    assert_int_equal(jwt_verifier_from_mem(jwk, strlen(jwk), &ses, &v, err, sizeof err), -1);
    assert_string_equal(err, "JWK: missing or invalid \"x\"");
}

/* route NULL: the route claim is not checked. */
static void test_route_unchecked(void **state)
{
    char path[512], line[16384], target[JWT_TARGET_MAX], why[128], err[256];
    struct jwt_verifier *v;

    (void)state;
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    const char *token = NULL;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "route-wrong|", 12) == 0) {
            line[strcspn(line, "\n")] = '\0';
            token = strrchr(line, '|') + 1;
            break;
        }
    fclose(f);
    assert_non_null(token);
    assert_int_equal(make("p256.pem", "ES256", NULL, NULL, &v, err, sizeof err), 0);
    assert_int_equal(
        jwt_verify(v, token, strlen(token), NULL, NOW, target, sizeof target, why, sizeof why), 0);
    assert_string_equal(target, "10.0.0.7:5901");
    assert_int_equal(
        jwt_verify(v, token, strlen(token), "vnc", NOW, target, sizeof target, why, sizeof why),
        -1);
    assert_string_equal(why, "route mismatch");
    assert_string_equal(target, "");
    jwt_verifier_free(v);
}

/* Key and algorithm rules at load time. */
static void test_verifier_rules(void **state)
{
    struct jwt_verifier *v = NULL;
    char err[256];
    static const struct {
        const char *key, *algs, *msg;
    } bad[] = {
        {"rsa.pem", "HS256", "HS256 needs an HMAC secret, the key is an RSA key"},
        {"rsa.pem", "RS256,HS256", "HS256 needs an HMAC secret, the key is an RSA key"},
        {"p256.pem", "HS512", "HS512 needs an HMAC secret, the key is an EC P-256 key"},
        {"ed25519.pem", "ES256", "ES256 needs an EC P-256 key, the key is an Ed25519 key"},
        {"p256.pem", "ES384", "ES384 needs an EC P-384 key, the key is an EC P-256 key"},
        {"secret.txt", "ES256", "ES256 needs an EC P-256 key, the key is an HMAC secret"},
        {"secret.jwk", "RS256", "RS256 needs an RSA key, the key is an HMAC secret"},
        {"p384.jwk", "EdDSA", "EdDSA needs an Ed25519 key, the key is an EC P-384 key"},
        {"short.txt", "HS256", "HS256 needs a secret of at least 32 bytes (has 16)"},
        {"p256.pem", "none", "'none' is never accepted"},
        {"p256.pem", "ES512",
         "unknown algorithm 'ES512' (HS256, HS384, HS512, RS256, PS256, "
         "ES256, ES384, EdDSA)"},
        {"p256.pem", "", "token_jwt_algorithms is required with token_jwt_key"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(make(bad[i].key, bad[i].algs, NULL, NULL, &v, err, sizeof err), -1);
        assert_null(v);
        assert_string_equal(err, bad[i].msg);
    }
    assert_int_equal(make("/nonexistent/key.pem", "ES256", NULL, NULL, &v, err, sizeof err), -1);
    assert_string_equal(err, "cannot read '/nonexistent/key.pem': No such file or directory");
    /* The secret is the file minus its trailing newline: 64 bytes fit HS512. */
    assert_int_equal(make("secret.txt", "HS256,HS384,HS512", NULL, NULL, &v, err, sizeof err), 0);
    jwt_verifier_free(v);
    /* A private key gives its public half. */
    assert_int_equal(make("rsa-private.pem", "RS256,PS256", NULL, NULL, &v, err, sizeof err), 0);
    jwt_verifier_free(v);
}

/* JWK shapes that are refused. */
static void test_jwk_rules(void **state)
{
    struct jwt_verifier *v = NULL;
    char err[256], *rs = "RS256", *es = "ES256", *hs = "HS256";
    struct jwt_settings srs = {&rs, 1, NULL, NULL, 0}, ses = {&es, 1, NULL, NULL, 0},
                        shs = {&hs, 1, NULL, NULL, 0};
    static const struct {
        const char *jwk, *msg;
        int set;
    } bad[] = {
        {"{\"keys\":[]}", "JWK: a key set is not supported (one key per file)", 0},
        {"{\"kty\":\"XYZ\"}", "JWK: unsupported \"kty\" (oct, RSA, EC or OKP)", 0},
        {"{\"x\":1}", "JWK: no \"kty\"", 0},
        {"{\"kty\":\"oct\",\"k\":\"QUFBQQ\",\"use\":\"enc\"}", "JWK: \"use\" is not \"sig\"", 2},
        {"{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"}",
         "JWK: EC \"crv\" must be P-256 or P-384", 1},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}", "JWK: invalid EC point",
         1},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"\",\"y\":\"AA\"}",
         "JWK: missing or invalid \"x\"", 1},
        {"{\"kty\":\"RSA\",\"e\":\"AQAB\"}", "JWK: missing or invalid \"n\"", 0},
        {"{\"kty\":\"oct\",\"k\":\"QUFB*\"}", "JWK: missing or invalid \"k\"", 2},
        {"{\"kty\":\"oct\",\"k\":\"x\",\"k\":\"y\"}",
         "JWK: invalid JSON (line 1: duplicate object key near '\"k\"')", 2},
        {"{\"kty\":\"oct\",\"alg\":\"HS512\","
         "\"k\":\"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\"}",
         "JWK: its \"alg\" does not match token_jwt_algorithms", 2},
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct jwt_settings *s = bad[i].set == 0 ? &srs : bad[i].set == 1 ? &ses : &shs;
        err[0] = '\0';
        assert_int_equal(
            jwt_verifier_from_mem(bad[i].jwk, strlen(bad[i].jwk), s, &v, err, sizeof err), -1);
        assert_string_equal(err, bad[i].msg);
    }
    const char *ok = "{\"kty\":\"oct\",\"alg\":\"HS256\","
                     "\"k\":\"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\"}";
    assert_int_equal(jwt_verifier_from_mem(ok, strlen(ok), &shs, &v, err, sizeof err), 0);
    jwt_verifier_free(v);
}

/* Structure and size bounds, on a real verifier. */
static void test_bounds(void **state)
{
    struct jwt_verifier *v;
    char err[256], target[JWT_TARGET_MAX], why[128];
    static char big[JWT_MAX_TOKEN + 2];

    (void)state;
    assert_int_equal(make("secret.txt", "HS256", NULL, NULL, &v, err, sizeof err), 0);
    memset(big, 'A', sizeof big - 1);
    big[10] = '.';
    big[20] = '.';
    assert_int_equal(
        jwt_verify(v, big, JWT_MAX_TOKEN + 1, NULL, NOW, target, sizeof target, why, sizeof why),
        -1);
    assert_string_equal(why, "token too long");
    /* JWT_MAX_TOKEN itself is parsed (and fails later, on the header). */
    assert_int_equal(
        jwt_verify(v, big, JWT_MAX_TOKEN, NULL, NOW, target, sizeof target, why, sizeof why), -1);
    assert_string_equal(why, "malformed header");
    assert_int_equal(jwt_verify(v, "", 0, NULL, NOW, target, sizeof target, why, sizeof why), -1);
    assert_string_equal(why, "empty token");
    assert_int_equal(jwt_verify(v, "a.b", 3, NULL, NOW, target, sizeof target, why, sizeof why),
                     -1);
    assert_string_equal(why, "not a compact JWS (three parts)");
    /* header {"typ":"JWT"} without alg */
    const char *noalg = "eyJ0eXAiOiJKV1QifQ.e30.AAAA";
    assert_int_equal(
        jwt_verify(v, noalg, strlen(noalg), NULL, NOW, target, sizeof target, why, sizeof why), -1);
    assert_string_equal(why, "no alg in header");
    /* alg "NONE" (any case) is named as none */
    const char *none = "eyJhbGciOiJOT05FIn0.e30.";
    assert_int_equal(
        jwt_verify(v, none, strlen(none), NULL, NOW, target, sizeof target, why, sizeof why), -1);
    assert_string_equal(why, "alg none refused");
    jwt_verifier_free(v);
}

static void test_b64url(void **state)
{
    unsigned char out[16];

    (void)state;
    assert_int_equal(jwt_b64url_decode("", 0, out, sizeof out), 0);
    assert_int_equal(jwt_b64url_decode("Zg", 2, out, sizeof out), 1);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(jwt_b64url_decode("Zm8", 3, out, sizeof out), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(jwt_b64url_decode("Zm9v", 4, out, sizeof out), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(jwt_b64url_decode("-_8", 3, out, sizeof out), 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_int_equal(jwt_b64url_decode("Zg==", 4, out, sizeof out), -1);  /* no padding */
    assert_int_equal(jwt_b64url_decode("+/8", 3, out, sizeof out), -1);   /* not url-safe */
    assert_int_equal(jwt_b64url_decode("Zm9vY", 5, out, sizeof out), -1); /* length 4n+1 */
    assert_int_equal(jwt_b64url_decode("Zm 9", 4, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("Zm9vZm9v", 8, out, 5), -1); /* does not fit */
    assert_int_equal(jwt_b64url_decode("Zm9vZm9v", 8, out, 6), 6);
}

static void test_alg_names(void **state)
{
    (void)state;
    assert_int_equal(jwt_alg_from_name("EdDSA", 5), JWT_EDDSA);
    assert_int_equal(jwt_alg_from_name("eddsa", 5), -1);
    assert_int_equal(jwt_alg_from_name("ES256", 5), JWT_ES256);
    assert_int_equal(jwt_alg_from_name("ES2560", 6), -1);
    assert_string_equal(jwt_alg_name(JWT_PS256), "PS256");
    assert_int_equal(jwt_check_alg_name("None", NULL, 0), -1);
    assert_int_equal(jwt_check_alg_name("HS384", NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minted_cases),
        cmocka_unit_test(test_route_unchecked),
        cmocka_unit_test(test_verifier_rules),
        cmocka_unit_test(test_jwk_rules),
        cmocka_unit_test(test_jwk_short_coordinate),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_alg_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
