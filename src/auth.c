/* auth.c - tokens from requests, and HTTP Basic authentication with crypt(3)
 * hashes (libxcrypt). Contracts in auth.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "auth.h"
#include "errbuf.h"

#include "config.h"
#include "token.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MAX_FILE (1024 * 1024) /* a basic_auth_file larger than this is refused */

/* ---- tokens -------------------------------------------------------------- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Contract in auth.h. RFC 6265 4.2.1: cookie-pair *( ";" SP cookie-pair );
 * extra blanks around names and values are tolerated. */
int auth_cookie_find(const char *value, size_t len, const char *name, const char **val,
                     size_t *vlen)
{
    size_t nlen = strlen(name), i = 0;

    while (i < len) {
        const char *semi = memchr(value + i, ';', len - i);
        size_t end = semi ? (size_t)(semi - value) : len;
        size_t s = i, e = end;
        while (s < e && is_ows(value[s]))
            s++;
        const char *eq = memchr(value + s, '=', e - s);
        if (eq != NULL) {
            size_t ne = (size_t)(eq - value);
            while (ne > s && is_ows(value[ne - 1]))
                ne--;
            if (ne - s == nlen && memcmp(value + s, name, nlen) == 0) {
                size_t vs = (size_t)(eq - value) + 1;
                while (vs < e && is_ows(value[vs]))
                    vs++;
                while (e > vs && is_ows(value[e - 1]))
                    e--;
                if (e - vs >= 2 && value[vs] == '"' && value[e - 1] == '"') {
                    vs++;
                    e--;
                }
                *val = value + vs;
                *vlen = e - vs;
                return 1;
            }
        }
        i = end + 1;
    }
    return 0;
}

/* token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool token68(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && (isalnum((unsigned char)s[i]) || strchr("-._~+/", s[i]) != NULL))
        i++;
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

/* "SCHEME 1*SP rest": 1 with the rest when value starts with scheme. */
static int auth_scheme(const char *value, size_t len, const char *scheme, const char **rest,
                       size_t *rlen)
{
    size_t sl = strlen(scheme), i;

    if (len <= sl || strncasecmp(value, scheme, sl) != 0 || value[sl] != ' ')
        return 0;
    for (i = sl; i < len && value[i] == ' '; i++)
        ;
    *rest = value + i;
    *rlen = len - i;
    return 1;
}

/* Contract in auth.h. */
int auth_bearer(const char *value, size_t len, const char **tok, size_t *tlen)
{
    return auth_scheme(value, len, "Bearer", tok, tlen) && token68(*tok, *tlen);
}

/* Copy s[0..n) into out[cap]. 0 or -1 when it does not fit. */
static int copy_token(const char *s, size_t n, char *out, size_t cap, size_t *outlen)
{
    if (n + 1 > cap)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *outlen = n;
    return 0;
}

static bool name_is(const struct http_header *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* Contract in auth.h. */
int auth_token_from_request(const struct http_request *req, const char *cookie, char *out,
                            size_t cap, size_t *outlen)
{
    const char *v;
    size_t vl;

    *outlen = 0;
    if (cap == 0)
        return AUTH_TOKEN_INVALID;
    out[0] = '\0';
    if (req->query != NULL) {
        int n = token_from_query(req->query, req->query_len, out, cap);
        if (n == -2) {
            out[0] = '\0';
            return AUTH_TOKEN_INVALID;
        }
        if (n > 0) {
            *outlen = (size_t)n;
            return AUTH_TOKEN_QUERY;
        }
    }
    for (size_t i = 0; cookie != NULL && *cookie && i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (name_is(h, "Cookie") && auth_cookie_find(h->value, h->value_len, cookie, &v, &vl) &&
            vl > 0)
            return copy_token(v, vl, out, cap, outlen) < 0 ? AUTH_TOKEN_INVALID : AUTH_TOKEN_COOKIE;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (name_is(h, "Authorization") && auth_bearer(h->value, h->value_len, &v, &vl))
            return copy_token(v, vl, out, cap, outlen) < 0 ? AUTH_TOKEN_INVALID : AUTH_TOKEN_BEARER;
    }
    return AUTH_TOKEN_NONE;
}

/* ---- allowed_backends ---------------------------------------------------- */

/* "1".."65535" or "*" (0). -1 when invalid. */
static long pattern_port(const char *s)
{
    long n = 0;

    if (strcmp(s, "*") == 0)
        return 0;
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n >= 1 && n <= 65535 ? n : -1;
}

/* Contract in auth.h. */
int auth_backend_pattern_parse(const char *s, struct backend_pattern *p, char *err, size_t errlen)
{
    char buf[300];
    const char *slash = strchr(s, '/');

    memset(p, 0, sizeof *p);
    if (strlen(s) >= sizeof buf)
        goto bad;
    /* CIDR, or a bare address */
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, p->addr) == 1 || inet_pton(AF_INET6, buf, p->addr) == 1) {
        p->kind = BP_CIDR;
        p->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
        unsigned max = p->family == AF_INET ? 32 : 128;
        long pl = max;
        if (slash) {
            pl = pattern_port(slash + 1); /* digits, 1..65535 */
            if (strcmp(slash + 1, "0") == 0)
                pl = 0;
            if (pl < 0 || pl > (long)max) {
                err_set(err, errlen, "'%s': prefix length must be 0..%u", s, max);
                return -1;
            }
        }
        p->prefix = (unsigned)pl;
        for (unsigned bit = p->prefix; bit < max; bit++) /* host bits must be zero */
            if (p->addr[bit / 8] & (0x80u >> (bit % 8))) {
                err_set(err, errlen, "'%s': address has bits set beyond /%u", s, p->prefix);
                return -1;
            }
        return 0;
    }
    if (slash)
        goto bad;
    /* host:port patterns */
    const char *h = s, *he, *port;
    if (*s == '[') {
        he = strchr(s, ']');
        if (he == NULL || he[1] != ':')
            goto bad;
        h = s + 1;
        port = he + 2;
        memcpy(buf, h, (size_t)(he - h));
        buf[he - h] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            goto bad;
    } else {
        he = strrchr(s, ':');
        if (he == NULL || memchr(s, ':', (size_t)(he - s)) != NULL)
            goto bad;
        port = he + 1;
        memcpy(buf, h, (size_t)(he - h));
        buf[he - h] = '\0';
        if (buf[0] == '\0')
            goto bad;
        if (strcmp(buf, "*") != 0)
            for (const char *c = buf; *c; c++)
                if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
                    goto bad;
    }
    long pt = pattern_port(port);
    if (pt < 0 || strlen(buf) >= sizeof p->host)
        goto bad;
    if (strcmp(buf, "*") == 0 && pt == 0) {
        err_set(err, errlen, "'%s': *:* allows everything (leave allowed_backends empty)", s);
        return -1;
    }
    p->kind = BP_HOSTPORT;
    for (size_t i = 0; buf[i]; i++)
        p->host[i] = (char)tolower((unsigned char)buf[i]);
    p->port = (unsigned)pt;
    return 0;
bad:
    err_set(err, errlen, "'%s': expected CIDR (10.0.0.0/8), host:port, host:*, *:port", s);
    return -1;
}

/* True when the address a lies in the CIDR pattern p. */
static bool cidr_has(const struct backend_pattern *p, const struct sockaddr_any *a)
{
    const unsigned char *b;
    if (a->ss.ss_family != p->family)
        return false;
    if (p->family == AF_INET)
        b = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    else
        b = (const unsigned char *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    unsigned full = p->prefix / 8, rest = p->prefix % 8;
    if (memcmp(b, p->addr, full) != 0)
        return false;
    return rest == 0 || ((b[full] ^ p->addr[full]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}

/* Contract in auth.h. */
int auth_backend_allowed(const struct backend_pattern *p, size_t n, const char *host, unsigned port,
                         const struct sockaddr_any *addrs, size_t naddrs)
{
    bool cidrs = false;
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i].kind == BP_CIDR) {
            cidrs = true;
            continue;
        }
        if ((p[i].port == 0 || p[i].port == port) && host != NULL &&
            (strcmp(p[i].host, "*") == 0 || strcasecmp(p[i].host, host) == 0))
            return 1;
    }
    if (!cidrs || host == NULL)
        return 0;
    if (naddrs == 0)
        return -1;
    for (size_t a = 0; a < naddrs; a++) {
        bool in = false;
        for (size_t i = 0; i < n && !in; i++)
            in = p[i].kind == BP_CIDR && cidr_has(&p[i], &addrs[a]);
        if (!in)
            return 0;
    }
    return 1;
}

/* ---- Basic --------------------------------------------------------------- */

/* Contract in auth.h. */
int auth_basic_parse(const char *value, size_t len, char *user, size_t ucap, char *pass,
                     size_t pcap)
{
    unsigned char dec[AUTH_MAX_USER + AUTH_MAX_PASSWORD + 8];
    unsigned char in[sizeof dec / 3 * 4 + 8];
    const char *b;
    size_t bl;
    int rc = -1;

    if (!auth_scheme(value, len, "Basic", &b, &bl) || bl == 0 || bl % 4 != 0 || bl >= sizeof in ||
        !token68(b, bl))
        return -1;
    for (size_t i = 0; i < bl; i++)
        if (b[i] == '-' || b[i] == '_' || b[i] == '.' || b[i] == '~')
            return -1; /* not in the base64 alphabet */
    memcpy(in, b, bl);
    int n = EVP_DecodeBlock(dec, in, (int)bl);
    if (n < 0)
        return -1;
    size_t pad = (size_t)(b[bl - 1] == '=') + (size_t)(bl > 1 && b[bl - 2] == '=');
    size_t dl = (size_t)n - pad;
    const unsigned char *colon = memchr(dec, ':', dl);
    if (colon == NULL || memchr(dec, '\0', dl) != NULL)
        goto done;
    size_t ul = (size_t)(colon - dec), pl = dl - ul - 1;
    if (ul == 0 || ul + 1 > ucap || pl + 1 > pcap)
        goto done;
    memcpy(user, dec, ul);
    user[ul] = '\0';
    memcpy(pass, colon + 1, pl);
    pass[pl] = '\0';
    rc = 0;
done:
    OPENSSL_cleanse(dec, sizeof dec);
    return rc;
}

struct basic_user {
    char *name;
    char *hash;
};

#define VERIFIED_MAX 64 /* credentials remembered per table (SHA-256 of user and password) */

/* Credentials this table verified: a crypt(3) check costs milliseconds on
 * a worker loop (yescrypt, bcrypt), so a browser that sends the same
 * Authorization on every upgrade pays it once. Only successful checks are
 * remembered; a reload makes a new table and forgets them. */
struct verified {
    pthread_mutex_t lock;
    uint8_t digest[VERIFIED_MAX][32];
    size_t n, next;
};

struct basic_auth {
    struct basic_user *u;
    size_t n;
    struct stat st; /* of the file when it was read */
    bool have_st;
    struct verified *seen;
};

/* SHA-256 of user NUL password. false when OpenSSL fails. */
static bool credential_digest(const char *user, const char *password, uint8_t out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned len = 0;
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(c, user, strlen(user) + 1) == 1 &&
              EVP_DigestUpdate(c, password, strlen(password)) == 1 &&
              EVP_DigestFinal_ex(c, out, &len) == 1 && len == 32;
    EVP_MD_CTX_free(c);
    return ok;
}

/* True when t verified these credentials before (constant time per entry). */
static bool verified_before(const struct basic_auth *t, const uint8_t d[32])
{
    bool hit = false;
    pthread_mutex_lock(&t->seen->lock);
    for (size_t i = 0; i < t->seen->n; i++)
        hit |= CRYPTO_memcmp(t->seen->digest[i], d, 32) == 0;
    pthread_mutex_unlock(&t->seen->lock);
    return hit;
}

static void remember_verified(const struct basic_auth *t, const uint8_t d[32])
{
    struct verified *v = t->seen;
    pthread_mutex_lock(&v->lock);
    memcpy(v->digest[v->next], d, 32);
    v->next = (v->next + 1) % VERIFIED_MAX;
    if (v->n < VERIFIED_MAX)
        v->n++;
    pthread_mutex_unlock(&v->lock);
}

/* A hash of a supported method that libxcrypt accepts. */
static bool hash_supported(const char *h)
{
    static const char *const prefixes[] = {"$y$", "$6$", "$2b$", "$2y$", "$2a$"};
    bool known = false;

    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        known = known || strncmp(h, prefixes[i], strlen(prefixes[i])) == 0;
    return known && crypt_checksalt(h) == CRYPT_SALT_OK;
}

/* Parse text (the whole file) into t; returns the number of lines skipped. */
static int parse_users(const char *path, char *text, struct basic_auth *t, char *err, size_t errlen,
                       bool *oom)
{
    int skipped = 0, line = 0;
    char *save = NULL;

    for (char *p = text; p != NULL; p = save) {
        char *nl = strchr(p, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        line++;
        size_t len = strlen(p);
        if (len > 0 && p[len - 1] == '\r')
            p[--len] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *colon = strchr(p, ':');
        const char *why = NULL;
        if (colon == NULL)
            why = "expected user:hash";
        else if (colon == p)
            why = "empty user name";
        else if ((size_t)(colon - p) >= AUTH_MAX_USER)
            why = "user name too long";
        else if (!hash_supported(colon + 1))
            why = "unsupported or malformed hash (use yescrypt $y$, sha512-crypt $6$ or bcrypt "
                  "$2b$)";
        if (why != NULL) {
            err_add_line(err, errlen, "%s:%d: %s", path, line, why);
            skipped++;
            continue;
        }
        *colon = '\0';
        size_t i;
        for (i = 0; i < t->n && strcmp(t->u[i].name, p) != 0; i++)
            ;
        char *name = strdup(p), *hash = strdup(colon + 1);
        struct basic_user *grown = i == t->n ? realloc(t->u, (t->n + 1) * sizeof *grown) : t->u;
        if (!name || !hash || !grown) {
            free(name);
            free(hash);
            *oom = true;
            return skipped;
        }
        t->u = grown;
        if (i == t->n) {
            t->n++;
        } else { /* a later line for the same user wins */
            free(t->u[i].name);
            free(t->u[i].hash);
        }
        t->u[i] = (struct basic_user){name, hash};
    }
    return skipped;
}

/* Contract in auth.h. */
int basic_auth_load(const char *path, struct basic_auth **out, char *err, size_t errlen)
{
    struct basic_auth *t = calloc(1, sizeof *t);
    if (t && (t->seen = calloc(1, sizeof *t->seen)))
        pthread_mutex_init(&t->seen->lock, NULL);
    FILE *f = NULL;
    char *text = NULL;
    bool oom = false;
    int rc = -1;

    if (err && errlen)
        err[0] = '\0';
    if (t == NULL || (text = malloc(MAX_FILE + 1)) == NULL) {
        err_add_line(err, errlen, "%s: out of memory", path);
        goto done;
    }
    if ((f = fopen(path, "r")) == NULL || fstat(fileno(f), &t->st) < 0) {
        err_add_line(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    t->have_st = true;
    size_t n = fread(text, 1, MAX_FILE + 1, f);
    if (ferror(f) || n > MAX_FILE) {
        err_add_line(err, errlen, "%s: %s", path, ferror(f) ? "read error" : "larger than 1 MiB");
        goto done;
    }
    text[n] = '\0';
    if (memchr(text, '\0', n) != NULL) {
        err_add_line(err, errlen, "%s: binary file (NUL byte)", path);
        goto done;
    }
    rc = parse_users(path, text, t, err, errlen, &oom);
    if (oom) {
        err_add_line(err, errlen, "%s: out of memory", path);
        rc = -1;
    }
done:
    if (f)
        fclose(f);
    if (text)
        OPENSSL_cleanse(text, MAX_FILE + 1);
    free(text);
    if (rc < 0)
        basic_auth_free(t);
    else
        *out = t;
    return rc;
}

/* Contract in auth.h. */
size_t basic_auth_count(const struct basic_auth *t)
{
    return t ? t->n : 0;
}

/* Contract in auth.h. */
int basic_auth_changed(const char *path, const struct basic_auth *t)
{
    struct stat st;
    bool exists = stat(path, &st) == 0;

    if (t == NULL || !t->have_st || !exists)
        return t == NULL || t->have_st != exists;
    return st.st_ino != t->st.st_ino || st.st_dev != t->st.st_dev || st.st_size != t->st.st_size ||
           st.st_mtim.tv_sec != t->st.st_mtim.tv_sec ||
           st.st_mtim.tv_nsec != t->st.st_mtim.tv_nsec ||
           st.st_ctim.tv_sec != t->st.st_ctim.tv_sec || st.st_ctim.tv_nsec != t->st.st_ctim.tv_nsec;
}

/* Contract in auth.h. */
int basic_auth_crypt_matches(const char *hash, const char *password)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return 0;
    const char *r = crypt_rn(password, hash, cd, (int)sizeof *cd);
    size_t hl = strlen(hash);
    int ok = r != NULL && strlen(r) == hl && CRYPTO_memcmp(r, hash, hl) == 0;
    OPENSSL_cleanse(cd, sizeof *cd);
    free(cd);
    return ok;
}

/* basic_auth_verify() without the hashing: 200 (verified before, or pass >
 * 0 for a known user), 401 (pass < 0, unknown user with pass > 0), or 0
 * with *need filled. */
static int verify_begin(const struct basic_auth *t, const char *user, const char *password,
                        int pass, struct auth_crypt *need)
{
    const struct basic_user *u = NULL;
    if (t == NULL || t->n == 0 || pass < 0)
        return 401;
    for (size_t i = 0; i < t->n && u == NULL; i++)
        if (strcmp(t->u[i].name, user) == 0)
            u = &t->u[i];
    uint8_t d[32];
    bool digested = t->seen && u && credential_digest(user, password, d);
    int st = 0;
    if (digested && verified_before(t, d)) {
        st = 200;
    } else if (pass > 0) {
        st = u ? 200 : 401;
        if (u && digested)
            remember_verified(t, d);
    } else if ((need->hash = strdup(u ? u->hash : t->u[0].hash)) == NULL) {
        st = 401;
    } else {
        snprintf(need->password, sizeof need->password, "%s", password);
        need->known = u != NULL;
    }
    OPENSSL_cleanse(d, sizeof d);
    return st;
}

/* Contract in auth.h: verify_begin(), the check, and verify_begin() again
 * with its answer (the path the workers take, in one call). */
int basic_auth_verify(const struct basic_auth *t, const char *user, const char *password)
{
    struct auth_crypt need = {0};
    int st = verify_begin(t, user, password, 0, &need);
    if (st == 0) {
        /* hashed for an unknown user too: timing does not tell users apart */
        int good = basic_auth_crypt_matches(need.hash, need.password) && need.known;
        free(need.hash);
        OPENSSL_cleanse(need.password, sizeof need.password);
        st = verify_begin(t, user, password, good ? 1 : -1, &need);
    }
    return st == 200;
}

/* Contract in auth.h. */
void basic_auth_free(struct basic_auth *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->u[i].name);
        free(t->u[i].hash);
    }
    free(t->u);
    if (t->seen) {
        pthread_mutex_destroy(&t->seen->lock);
        OPENSSL_cleanse(t->seen->digest, sizeof t->seen->digest);
        free(t->seen);
    }
    free(t);
}

/* basic_auth_check(), or with need its first step (verify_begin()). */
static int check_request(const struct basic_auth *t, const struct http_request *req, int pass,
                         struct auth_crypt *need)
{
    char user[AUTH_MAX_USER], password[AUTH_MAX_PASSWORD];
    int status = 401;

    for (size_t i = 0; t != NULL && i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (!name_is(h, "Authorization") ||
            auth_basic_parse(h->value, h->value_len, user, sizeof user, password, sizeof password) <
                0)
            continue;
        if (need)
            status = verify_begin(t, user, password, pass, need);
        else if (basic_auth_verify(t, user, password))
            status = 200;
        break; /* one Basic credential per request */
    }
    OPENSSL_cleanse(password, sizeof password);
    return status;
}

/* Contract in auth.h. */
int basic_auth_check(const struct basic_auth *t, const struct http_request *req)
{
    return check_request(t, req, 0, NULL);
}

/* ---- the shared cache ---------------------------------------------------- */

/* A table with a reference count, so a check may run outside the lock. */
struct ref_table {
    struct basic_auth *t; /* NULL: the file could not be read */
    int refs;             /* under the cache lock */
};

struct basic_auth_cache {
    pthread_mutex_t lock;
    char *path;
    struct ref_table *cur;
    struct basic_auth_cache *next; /* in the registry basic_auth_watch_pass() walks */
};

/* Every live cache, for the watcher (a pass holds the lock while it reads
 * changed files: they are small, and only the main thread waits for it). */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct basic_auth_cache *registry;
static basic_auth_report_fn *registry_report;

static void ref_drop(struct basic_auth_cache *c, struct ref_table *r)
{
    pthread_mutex_lock(&c->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (last) {
        basic_auth_free(r->t);
        free(r);
    }
}

/* Load c->path into a new ref_table and make it current. */
static int cache_load(struct basic_auth_cache *c, char *err, size_t errlen)
{
    struct ref_table *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->refs = 1;
    if (basic_auth_load(c->path, &r->t, err, errlen) < 0)
        r->t = NULL;
    pthread_mutex_lock(&c->lock);
    struct ref_table *old = c->cur;
    c->cur = r;
    pthread_mutex_unlock(&c->lock);
    if (old)
        ref_drop(c, old);
    return 0;
}

/* Contract in auth.h. */
struct basic_auth_cache *basic_auth_cache_new(const char *path, char *err, size_t errlen)
{
    struct basic_auth_cache *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    if ((c->path = strdup(path)) == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->path);
        free(c);
        return NULL;
    }
    if (cache_load(c, err, errlen) < 0) {
        basic_auth_cache_free(c);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    c->next = registry;
    registry = c;
    pthread_mutex_unlock(&registry_lock);
    return c;
}

/* Contract in auth.h. */
void basic_auth_cache_free(struct basic_auth_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    for (struct basic_auth_cache **pp = &registry; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
    if (c->cur)
        ref_drop(c, c->cur);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

/* Contract in auth.h. Only the watcher thread replaces c->cur. */
int basic_auth_cache_reload(struct basic_auth_cache *c, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    pthread_mutex_lock(&c->lock);
    const struct basic_auth *t = c->cur ? c->cur->t : NULL;
    int changed = t ? basic_auth_changed(c->path, t) : 1;
    pthread_mutex_unlock(&c->lock);
    if (!changed)
        return 0;
    return cache_load(c, err, errlen) == 0;
}

/* Contract in auth.h. */
int basic_auth_cache_check(struct basic_auth_cache *c, const struct http_request *req)
{
    return basic_auth_cache_begin(c, req, 0, NULL);
}

/* Contract in auth.h. */
int basic_auth_cache_begin(struct basic_auth_cache *c, const struct http_request *req, int pass,
                           struct auth_crypt *need)
{
    pthread_mutex_lock(&c->lock);
    struct ref_table *r = c->cur;
    if (r)
        r->refs++;
    pthread_mutex_unlock(&c->lock);
    if (r == NULL)
        return 401;
    int status = check_request(r->t, req, pass, need);
    ref_drop(c, r);
    return status;
}

/* Contract in auth.h. */
void basic_auth_watch_report(basic_auth_report_fn *report)
{
    pthread_mutex_lock(&registry_lock);
    registry_report = report;
    pthread_mutex_unlock(&registry_lock);
}

/* Contract in auth.h. */
void basic_auth_watch_pass(void)
{
    pthread_mutex_lock(&registry_lock);
    for (struct basic_auth_cache *c = registry; c; c = c->next) {
        char err[1024];
        if (basic_auth_cache_reload(c, err, sizeof err) == 1 && registry_report)
            registry_report(c->path, err[0] ? err : "re-read");
    }
    pthread_mutex_unlock(&registry_lock);
}
