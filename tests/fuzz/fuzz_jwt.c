/* fuzz_jwt.c - libFuzzer harness for JWT verification (src/jwt.c) and the
 * token/credential parsers of src/auth.c.
 *
 * The first byte picks the target, the rest is the input:
 *   0: jwt_verify with an HS256 secret, an ES256 JWK and an Ed25519 PEM key;
 *      a result is 0 with a NUL-terminated target or -1 with a reason, and
 *      never both (a forged token never verifies: the keys' private halves
 *      are unknown and the secret is random per run);
 *   1: a request head -> auth_token_from_request (token within cap, source
 *      consistent) and basic_auth_check with an empty table (always 401);
 *   2: auth_cookie_find / auth_bearer / auth_basic_parse on one value;
 *   3: jwt_b64url_decode (length bound) and jwt_verifier_from_mem on the
 *      input as key material;
 *   4: redis_value_parse (a Redis value as websockify's TokenRedis stores
 *      it: the target is NUL-terminated, ends in ":PORT" with PORT 1..65535,
 *      and has no bytes no host name has) and redis_target_parse;
 *   5: auth_backend_pattern_parse, then auth_backend_allowed of the
 *      pattern against a fixed host:port and address (defined answers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "auth.h"
#include "fuzz.h"
#include "http.h"
#include "jwt.h"
#include "redis_target.h"

#include <arpa/inet.h>
#include <ctype.h>
#include "config.h"

static struct jwt_verifier *hs, *es, *ed;

static struct jwt_verifier *make(const char *key, size_t len, char *alg)
{
    struct jwt_settings s = {&alg, 1, "aud", "iss", 30000};
    struct jwt_verifier *v = NULL;
    char err[256];
    CHECK(jwt_verifier_from_mem(key, len, &s, &v, err, sizeof err) == 0);
    return v;
}

static void init(void)
{
    unsigned char secret[48];
    char hex[97];

    CHECK(RAND_bytes(secret, sizeof secret) == 1);
    for (size_t i = 0; i < sizeof secret; i++)
        snprintf(hex + 2 * i, 3, "%02x", secret[i]);
    hs = make(hex, 96, "HS256");
    static const char jwk[] = "{\"kty\":\"EC\",\"crv\":\"P-256\","
                              "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                              "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}";
    es = make(jwk, strlen(jwk), "ES256");
    static const char pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                              "-----END PUBLIC KEY-----\n";
    ed = make(pem, strlen(pem), "EdDSA");
}

static void fuzz_redis(const char *in, size_t len)
{
    char target[300];
    memset(target, 'x', sizeof target);
    if (redis_value_parse(in, len, target, sizeof target) == 0) {
        size_t n = strnlen(target, sizeof target);
        CHECK(n < sizeof target);
        const char *colon = strrchr(target, ':');
        CHECK(colon != NULL && colon > target);
        long port = strtol(colon + 1, NULL, 10);
        CHECK(port >= 1 && port <= 65535);
        for (const char *c = target; *c; c++)
            CHECK(isgraph((unsigned char)*c));
    }
    char src[512];
    if (len < sizeof src) {
        memcpy(src, in, len);
        src[len] = '\0';
        struct redis_target t;
        char err[256];
        if (redis_target_parse(src, &t, err, sizeof err) == 0) {
            CHECK(t.host != NULL && t.port >= 1 && t.port <= 65535 && t.name != NULL);
            redis_target_free(&t);
        }
    }
}

static void fuzz_pattern(const char *in, size_t len)
{
    char src[400];
    if (len >= sizeof src)
        return;
    memcpy(src, in, len);
    src[len] = '\0';
    struct backend_pattern p;
    char err[256];
    if (auth_backend_pattern_parse(src, &p, err, sizeof err) < 0)
        return;
    struct sockaddr_any a = {.len = sizeof(struct sockaddr_in)};
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "10.1.2.3", &sin->sin_addr);
    int r1 = auth_backend_allowed(&p, 1, "host.example", 5900, NULL, 0);
    int r2 = auth_backend_allowed(&p, 1, "host.example", 5900, &a, 1);
    CHECK(r1 >= -1 && r1 <= 1 && r2 >= 0 && r2 <= 1);
    CHECK(p.kind == BP_CIDR ? r1 == -1 : r2 == r1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (hs == NULL)
        init();
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char target[JWT_TARGET_MAX], why[128], out[256], u[64], p[64];
    switch (data[0] % 6) {
    case 0: {
        struct jwt_verifier *vs[] = {hs, es, ed};
        for (size_t i = 0; i < 3; i++) {
            why[0] = '\0';
            int rc =
                jwt_verify(vs[i], in, len, "r", 1700000000, target, sizeof target, why, sizeof why);
            CHECK(rc == -1); /* nothing forged verifies */
            CHECK(why[0] != '\0' && target[0] == '\0');
        }
        break;
    }
    case 1: {
        struct http_request req;
        if (http_parse_request(in, len, 0, &req) > 0) {
            size_t n = 99;
            int src = auth_token_from_request(&req, "tok", out, sizeof out, &n);
            CHECK(src >= AUTH_TOKEN_INVALID && src <= AUTH_TOKEN_BEARER);
            if (src > 0)
                CHECK(n > 0 && n < sizeof out && strlen(out) <= n);
            else
                CHECK(n == 0);
            CHECK(basic_auth_check(NULL, &req) == 401);
        }
        break;
    }
    case 2: {
        const char *v;
        size_t vl;
        if (auth_cookie_find(in, len, "tok", &v, &vl))
            CHECK(v >= in && v + vl <= in + len);
        if (auth_bearer(in, len, &v, &vl))
            CHECK(vl > 0 && v >= in && v + vl == in + len);
        if (auth_basic_parse(in, len, u, sizeof u, p, sizeof p) == 0)
            CHECK(u[0] != '\0' && strlen(u) < sizeof u && strlen(p) < sizeof p);
        break;
    }
    case 3: {
        unsigned char buf[JWT_MAX_TOKEN];
        long n = jwt_b64url_decode(in, len, buf, sizeof buf);
        CHECK(n == -1 || (n >= 0 && (size_t)n <= len * 3 / 4));
        char *alg = "ES256";
        struct jwt_settings s = {&alg, 1, NULL, NULL, 0};
        struct jwt_verifier *v = NULL;
        if (jwt_verifier_from_mem(in, len, &s, &v, why, sizeof why) == 0)
            jwt_verifier_free(v);
        else
            CHECK(v == NULL);
        break;
    }
    case 4:
        fuzz_redis(in, len);
        break;
    case 5:
        fuzz_pattern(in, len);
        break;
    }
    return 0;
}
