/* jwt.h - verify a compact JWS (a signed JWT) and extract its backend target.
 *
 * Pure: no socket I/O; only jwt_verifier_new() reads a file (the key, at
 * configuration load). OpenSSL 3 EVP does signatures and base64, jansson
 * parses JSON. Algorithms: HS256/384/512, RS256, PS256, ES256/384, EdDSA
 * (Ed25519). "none" is never accepted.
 *
 * A key is a PEM public key (RSA, EC P-256/P-384, Ed25519), a JWK (JSON
 * object, kty oct/RSA/EC/OKP) or a raw HMAC secret (the file minus one
 * trailing newline). Every configured algorithm must fit the key's type, so
 * an RSA/EC/Ed25519 public key is never used as an HMAC secret (algorithm
 * confusion), and a token's "alg" must be one of the configured ones.
 *
 * Claims: exp/nbf (numbers, seconds) with leeway; aud (string or array) must
 * contain the configured audience when one is set; iss must equal the
 * configured issuer when set; "route", when present, must equal the route's
 * name; websockify JWTTokenApi's "host" and "port" (a number or a string of
 * digits) give the target. A header with "crit" is refused (RFC 7515 4.1.11).
 *
 * Reasons (why) are short fixed texts for logs; they never contain the token
 * or any value taken from it. A verifier may be used by several threads at
 * once: its key and settings are immutable; it remembers (under its own
 * mutex) the SHA-256 of the last JWT_SIG_CACHE tokens whose signature
 * verified, so a token seen again skips the public-key operation (its
 * claims, exp and nbf included, are checked on every call). */
#ifndef WSGATE_JWT_H
#define WSGATE_JWT_H

#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN 8192     /* longest token accepted, in bytes */
#define JWT_MAX_KEY_FILE 65536 /* largest key file read */
#define JWT_TARGET_MAX 272     /* room for "[v6]:port" / "host:port" + NUL */
#define JWT_SIG_CACHE 256      /* good signatures remembered per verifier */

enum jwt_alg {
    JWT_HS256,
    JWT_HS384,
    JWT_HS512,
    JWT_RS256,
    JWT_PS256,
    JWT_ES256,
    JWT_ES384,
    JWT_EDDSA,
    JWT_NALGS
};

/* The algorithm called name (exact JOSE spelling, "EdDSA"), or -1. */
int jwt_alg_from_name(const char *name, size_t len);
/* The JOSE name of alg ("ES256"). */
const char *jwt_alg_name(enum jwt_alg alg);

/* Configuration item check for token_jwt_algorithms: 0, or -1 with a
 * message ("none" has its own). */
int jwt_check_alg_name(const char *item, char *err, size_t errlen);

struct jwt_settings {
    char *const *algorithms; /* names, as configured */
    size_t nalgorithms;      /* at least one */
    const char *audience;    /* NULL: aud is not checked */
    const char *issuer;      /* NULL: iss is not checked */
    uint32_t leeway_ms;      /* clock skew allowed for exp and nbf */
};

struct jwt_verifier;

/* Read the key file at path and make a verifier for s. Returns 0 with the
 * verifier in *out, or -1 with one line in err (unreadable file, bad key,
 * an algorithm that does not fit the key, a secret shorter than the hash). */
int jwt_verifier_new(const char *path, const struct jwt_settings *s, struct jwt_verifier **out,
                     char *err, size_t errlen);

/* Same, for key material key[0..len) already in memory. */
int jwt_verifier_from_mem(const void *key, size_t len, const struct jwt_settings *s,
                          struct jwt_verifier **out, char *err, size_t errlen);

void jwt_verifier_free(struct jwt_verifier *v);

/* Verify token[0..len) at time now (seconds since the epoch) for the route
 * named route (NULL: the "route" claim is not checked). Returns 0 with the
 * target ("host:port" or "[v6addr]:port", NUL-terminated) in target[cap], or
 * -1 with a short reason in why[whylen]. Allocates only inside jansson and
 * OpenSSL; the token is never copied anywhere the caller can see. */
int jwt_verify(const struct jwt_verifier *v, const char *token, size_t len, const char *route,
               int64_t now, char *target, size_t cap, char *why, size_t whylen);

/* base64url (RFC 4648 section 5, no padding) of in[0..len) into out[cap].
 * Returns the decoded length, or -1 for a character outside the alphabet
 * ('=' included), an impossible length, or output that does not fit. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif
