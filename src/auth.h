/* auth.h - who may open a session: the token a request carries, and HTTP
 * Basic authentication against a basic_auth_file.
 *
 * Pure except basic_auth_load()/basic_auth_changed() (they read the file)
 * and the cache (a mutex). Nothing here logs; no result or message ever
 * contains a token, a cookie, a password or an Authorization value. */
#ifndef WSGATE_AUTH_H
#define WSGATE_AUTH_H

#include <stddef.h>

#include "http.h"

#define AUTH_MAX_TOKEN 8192 /* longest token taken from a request */
#define AUTH_WWW_AUTHENTICATE "Basic realm=\"wsgate\""

/* ---- tokens -------------------------------------------------------------- */

enum auth_token_source {
    AUTH_TOKEN_INVALID = -1, /* malformed ?token= or over cap: 403, no fallback */
    AUTH_TOKEN_NONE = 0,     /* no token anywhere: 403 on a token route */
    AUTH_TOKEN_QUERY,        /* ?token= */
    AUTH_TOKEN_COOKIE,       /* the token_cookie cookie */
    AUTH_TOKEN_BEARER,       /* Authorization: Bearer */
};

/* The request's token: the first non-empty ?token= (percent-decoded), else
 * the cookie named cookie (NULL or "": not looked at) from any Cookie header,
 * else the first "Authorization: Bearer X". Copies it NUL-terminated into
 * out[cap] with its length in *outlen and returns where it came from. A
 * ?token= that is present but malformed or too long is AUTH_TOKEN_INVALID:
 * the cookie and header are not tried; the same for a cookie or bearer token
 * that does not fit in cap. */
int auth_token_from_request(const struct http_request *req, const char *cookie, char *out,
                            size_t cap, size_t *outlen);

/* In one Cookie header value ("a=1; b=\"2\""), the value of the first cookie
 * called name, without surrounding double quotes: 1 with *val and *vlen set
 * (pointing into value), 0 when absent. Pairs without '=' are skipped. */
int auth_cookie_find(const char *value, size_t len, const char *name, const char **val,
                     size_t *vlen);

/* "Bearer X" (scheme case-insensitive, one or more spaces, X a token68):
 * 1 with *tok and *tlen pointing into value, else 0. */
int auth_bearer(const char *value, size_t len, const char **tok, size_t *tlen);

/* ---- allowed_backends ---------------------------------------------------- */

/* One allowed_backends entry: a CIDR ("10.0.0.0/8", "2001:db8::/32"; a bare
 * address is /32 or /128), checked against resolved addresses, or a
 * host:port pattern ("host:port", "[v6]:port", "host:*", "*:port"). */
struct backend_pattern {
    enum { BP_CIDR, BP_HOSTPORT } kind;
    int family;             /* BP_CIDR: AF_INET or AF_INET6 */
    unsigned char addr[16]; /* BP_CIDR: network, host bits zero */
    unsigned prefix;        /* BP_CIDR: 0..32 or 0..128 */
    char host[256];         /* BP_HOSTPORT: lower-case name/address, "*" = any */
    unsigned port;          /* BP_HOSTPORT: 1..65535, 0 = any ("*") */
};

/* Parse one entry. 0, or -1 with a message in err. */
int auth_backend_pattern_parse(const char *s, struct backend_pattern *p, char *err, size_t errlen);

struct sockaddr_any; /* config.h */

/* May a token target host:port (host without brackets, any case) with the
 * resolved addresses addrs[0..naddrs) be dialled under the patterns
 * p[0..n)? 1 when n is 0, when a host:port pattern matches, or when naddrs
 * > 0 and every address lies in a CIDR pattern; -1 when no host:port
 * pattern matches, naddrs is 0 and a CIDR pattern exists (resolve the name,
 * then ask again with its addresses); else 0 (refuse: 403). */
int auth_backend_allowed(const struct backend_pattern *p, size_t n, const char *host, unsigned port,
                         const struct sockaddr_any *addrs, size_t naddrs);

/* ---- Basic authentication ------------------------------------------------ */

#define AUTH_MAX_USER 256
#define AUTH_MAX_PASSWORD 1024

/* "Basic BASE64(user:password)" -> user and password, NUL-terminated, split
 * at the first ':' (RFC 7617). 0, or -1 when malformed or too long. */
int auth_basic_parse(const char *value, size_t len, char *user, size_t ucap, char *pass,
                     size_t pcap);

struct basic_auth; /* users and hashes of one file; immutable once loaded */

/* Read "user:hash" lines (blank lines and '#' comments skipped; hashes are
 * yescrypt $y$, sha512-crypt $6$ or bcrypt $2b$/$2y$/$2a$). Returns -1 when
 * the file cannot be read (err says why), else the number of lines skipped,
 * with one "PATH:LINE: why" line per skipped line in err (never the hash
 * or the line's text). A later line for the same user wins. */
int basic_auth_load(const char *path, struct basic_auth **out, char *err, size_t errlen);

/* Number of users. */
size_t basic_auth_count(const struct basic_auth *t);

/* 1 when the file at path may differ from what t was read from (another
 * inode, size, mtime or ctime, or it vanished/appeared), else 0. One stat(). */
int basic_auth_changed(const char *path, const struct basic_auth *t);

/* 1 when password matches user's hash (crypt_rn, constant-time compare of
 * the results), else 0. Costs one hash computation (yescrypt: milliseconds)
 * even for an unknown user, so timing does not tell users apart. */
int basic_auth_verify(const struct basic_auth *t, const char *user, const char *password);

void basic_auth_free(struct basic_auth *t);

/* The decision for a request on a route with a basic_auth_file: 200 when
 * an Authorization: Basic header names a user of t with the right password,
 * else 401 (answer with WWW-Authenticate: AUTH_WWW_AUTHENTICATE). A NULL t
 * (file unreadable) refuses everyone. */
int basic_auth_check(const struct basic_auth *t, const struct http_request *req);

/* The current table of one basic_auth_file, shared by the workers: a
 * watcher thread calls basic_auth_cache_reload(); workers call
 * basic_auth_cache_check(). */
struct basic_auth_cache;

/* A cache for path, loaded now. NULL on ENOMEM; a load error or warnings
 * are in err (the cache then refuses everyone until the file is fixed). */
struct basic_auth_cache *basic_auth_cache_new(const char *path, char *err, size_t errlen);
void basic_auth_cache_free(struct basic_auth_cache *c);

/* Re-read the file when basic_auth_changed() says so (never on a worker
 * loop: it reads the file). Returns 1 when it was re-read (err has the
 * warnings or the read error, possibly empty), 0 when unchanged. */
int basic_auth_cache_reload(struct basic_auth_cache *c, char *err, size_t errlen);

/* basic_auth_check() against the current table (the lock is held only to
 * take a reference, not while hashing). */
int basic_auth_cache_check(struct basic_auth_cache *c, const struct http_request *req);

/* A password check left to the caller (basic_auth_cache_begin()): crypt(3)
 * costs milliseconds (yescrypt here: ~60 ms), so a worker hands it to a
 * thread of its own (pwcheck.c). hash is malloc'd (the caller frees it);
 * known is 0 for an unknown user, whose password is checked against the
 * first user's hash all the same (timing does not tell users apart) and
 * never matches. */
struct auth_crypt {
    char *hash;
    char password[AUTH_MAX_PASSWORD];
    int known;
};

/* 1 when password matches hash (crypt_rn, constant-time compare), else 0. */
int basic_auth_crypt_matches(const char *hash, const char *password);

/* basic_auth_cache_check() in two steps, without hashing: 200 when the
 * request's credentials were verified before (or pass > 0: the caller
 * checked them, and they are remembered now), 401 when there are none, they
 * are malformed or pass < 0 (the caller's check failed), else 0 with *need
 * filled: check it (known && basic_auth_crypt_matches()) and call again with
 * the same request and pass = 1 or -1. need NULL: the check is done here
 * (basic_auth_cache_check()). */
int basic_auth_cache_begin(struct basic_auth_cache *c, const struct http_request *req, int pass,
                           struct auth_crypt *need);

/* Told about each re-read (path, and its warnings or "re-read"). */
typedef void basic_auth_report_fn(const char *path, const char *msg);
void basic_auth_watch_report(basic_auth_report_fn *report);

/* Re-read every live cache whose file changed (the token watcher thread
 * calls it each pass, see token_watch_hook; never a worker loop). */
void basic_auth_watch_pass(void);

#endif
