/* route.c - choosing the route for a request: host class first, then path.
 *
 * A route's `host =` is exact ("console.example.com"), a wildcard
 * ("*.example.com": any depth below example.com, not example.com itself) or
 * empty (any host). The request Host header is normalised (port and IPv6
 * brackets stripped, ASCII lower case, one trailing dot dropped) and the
 * classes are tried in order: exact, wildcards from the longest suffix to the
 * shortest, then any host. In a class the longest matching path wins; when no
 * route of a class matches the path, the next class is tried.
 *
 * route_table_build() turns the routes into one open-addressing hash keyed by
 * (class, host key, path), so a lookup costs a few hash probes per host class
 * and per '/' in the path, whatever the number of routes. A configuration
 * without a table (built by hand in the unit tests) is scanned linearly by
 * the same rules; the tests compare the two. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

enum host_class { HC_EXACT = 0, HC_WILD = 1, HC_ANY = 2 };

struct rt_slot {
    uint32_t hash;
    uint32_t route; /* index + 1; 0 = empty */
};

struct route_table {
    struct rt_slot *slots;
    size_t mask;
    char **keys;        /* per route: normalised host key ("" for any) */
    size_t *klen;       /* per route: its length */
    unsigned char *cls; /* per route: enum host_class */
    bool have_exact, have_wild, have_any;
};

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Contract in config.h. */
int route_host_normalize(const char *in, size_t len, char *out, size_t cap)
{
    const char *h = in;
    size_t n = len;

    if (in == NULL || len == 0)
        return -1;
    if (in[0] == '[') {
        const char *close = memchr(in, ']', len);
        if (close == NULL || close == in + 1)
            return -1;
        h = in + 1;
        n = (size_t)(close - h);
        const char *rest = close + 1;
        size_t rlen = len - (size_t)(rest - in);
        if (rlen > 0 && rest[0] != ':')
            return -1;
        for (size_t i = 1; i < rlen; i++)
            if (rest[i] < '0' || rest[i] > '9')
                return -1;
        for (size_t i = 0; i < n; i++)
            if (!(h[i] == ':' || h[i] == '.' || (h[i] >= '0' && h[i] <= '9') ||
                  (lower((unsigned char)h[i]) >= 'a' && lower((unsigned char)h[i]) <= 'f')))
                return -1;
    } else {
        const char *colon = memchr(in, ':', len);
        if (colon != NULL) {
            n = (size_t)(colon - in);
            for (const char *p = colon + 1; p < in + len; p++)
                if (*p < '0' || *p > '9')
                    return -1; /* a second ':' (bare IPv6) or a bad port */
        }
        if (n > 0 && h[n - 1] == '.')
            n--;
        if (n == 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)h[i];
            if (c <= ' ' || c >= 0x7f || c == '/' || c == '@' || c == '[' || c == ']')
                return -1;
        }
    }
    if (n + 1 > cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)lower((unsigned char)h[i]);
    out[n] = '\0';
    return (int)n;
}

/* The class and key of a configured host (NULL or "" = any host). key gets
 * the normalised name ("*." removed for a wildcard). -1 if malformed. */
static int host_key(const char *host, char *key, size_t cap, enum host_class *cls, size_t *klen)
{
    if (host == NULL || host[0] == '\0') {
        *cls = HC_ANY;
        key[0] = '\0';
        *klen = 0;
        return 0;
    }
    *cls = HC_EXACT;
    if (host[0] == '*') {
        if (host[1] != '.')
            return -1;
        host += 2;
        *cls = HC_WILD;
    }
    int n = route_host_normalize(host, strlen(host), key, cap);
    if (n < 0 || strchr(key, '*') != NULL || (*cls == HC_WILD && strchr(key, ':') != NULL))
        return -1;
    *klen = (size_t)n;
    return 0;
}

/* Contract in config.h. */
int route_host_check(const char *host, char *err, size_t errlen)
{
    char key[256];
    enum host_class cls;
    size_t klen;

    const char *close = host[0] == '[' ? strchr(host, ']') : NULL;
    bool port = close != NULL ? close[1] != '\0' : strchr(host, ':') != NULL;
    if (!port && host_key(host, key, sizeof key, &cls, &klen) == 0) {
        bool ok = true;
        for (size_t i = 0; i < klen && ok; i++) {
            unsigned char c = (unsigned char)key[i];
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                 c == '_' || c == ':';
            if (c == '.' && (i == 0 || key[i - 1] == '.'))
                ok = false;
        }
        if (ok)
            return 0;
    }
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "'%s' is not a host name (name, *.domain, IPv4 or [IPv6], no port)",
                 host);
    return -1;
}

/* Contract in config.h. */
bool route_same_host(const char *a, const char *b)
{
    char ka[256], kb[256];
    enum host_class ca, cb;
    size_t la, lb;

    if (host_key(a, ka, sizeof ka, &ca, &la) < 0 || host_key(b, kb, sizeof kb, &cb, &lb) < 0)
        return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
    return ca == cb && la == lb && memcmp(ka, kb, la) == 0;
}

/* True when route path rp (rlen bytes) matches the request path. A route path
 * ending in '/' is a prefix route: it matches every path under it and the path
 * without its trailing slash ("/vnc/" matches "/vnc", "/vnc/", "/vnc/x");
 * any other route path matches only itself. */
static int route_path_matches(const char *rp, size_t rlen, const char *path, size_t len)
{
    if (rlen > 0 && rp[rlen - 1] == '/') {
        if (len >= rlen && memcmp(path, rp, rlen) == 0)
            return 1;
        return len == rlen - 1 && memcmp(path, rp, len) == 0;
    }
    return len == rlen && memcmp(path, rp, len) == 0;
}

/* FNV-1a over the lookup key: class, host key, a separator, path (and a '/'
 * when slash is set). */
static uint32_t key_hash(enum host_class cls, const char *key, size_t klen, const char *path,
                         size_t plen, bool slash)
{
    uint32_t h = 2166136261u;
    h = (h ^ (uint32_t)cls) * 16777619u;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (size_t i = 0; i < plen; i++)
        h = (h ^ (unsigned char)path[i]) * 16777619u;
    if (slash)
        h = (h ^ '/') * 16777619u;
    return h;
}

/* The route with exactly this class, host key and path (path[0..plen) plus a
 * '/' when slash), or NULL. */
static const struct route *table_get(const struct config *c, enum host_class cls, const char *key,
                                     size_t klen, const char *path, size_t plen, bool slash)
{
    const struct route_table *t = c->route_table;
    uint32_t h = key_hash(cls, key, klen, path, plen, slash);
    size_t full = plen + (slash ? 1 : 0);

    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct rt_slot *s = &t->slots[i];
        if (s->route == 0)
            return NULL;
        if (s->hash != h)
            continue;
        size_t ri = s->route - 1;
        const struct route *r = &c->routes[ri];
        if (t->cls[ri] != cls || t->klen[ri] != klen || memcmp(t->keys[ri], key, klen) != 0)
            continue;
        if (strlen(r->path) != full || memcmp(r->path, path, plen) != 0 ||
            (slash && r->path[plen] != '/'))
            continue;
        return r;
    }
}

/* The longest path match among the routes of one host class and key, by hash
 * probes: path + "/", path itself, then each prefix ending in '/'. */
static const struct route *table_match(const struct config *c, enum host_class cls, const char *key,
                                       size_t klen, const char *path, size_t len)
{
    const struct route *r = table_get(c, cls, key, klen, path, len, true);
    if (r == NULL)
        r = table_get(c, cls, key, klen, path, len, false);
    for (size_t i = len; r == NULL && i-- > 1;)
        if (path[i - 1] == '/')
            r = table_get(c, cls, key, klen, path, i, false);
    return r;
}

/* The same by a scan of every route (configurations without a table). */
static const struct route *linear_match(const struct config *c, enum host_class cls,
                                        const char *key, size_t klen, const char *path, size_t len)
{
    const struct route *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < c->nroutes; i++) {
        const struct route *r = &c->routes[i];
        char rkey[256];
        enum host_class rcls;
        size_t rklen;
        if (r->path == NULL || host_key(r->host, rkey, sizeof rkey, &rcls, &rklen) < 0)
            continue;
        if (rcls != cls || rklen != klen || memcmp(rkey, key, klen) != 0)
            continue;
        size_t rlen = strlen(r->path);
        if (!route_path_matches(r->path, rlen, path, len))
            continue;
        if (best == NULL || rlen > best_len) {
            best = r;
            best_len = rlen;
        }
    }
    return best;
}

static const struct route *class_match(const struct config *c, enum host_class cls, const char *key,
                                       size_t klen, const char *path, size_t len)
{
    const struct route_table *t = c->route_table;
    if (t == NULL)
        return linear_match(c, cls, key, klen, path, len);
    if ((cls == HC_EXACT && !t->have_exact) || (cls == HC_WILD && !t->have_wild) ||
        (cls == HC_ANY && !t->have_any))
        return NULL;
    return table_match(c, cls, key, klen, path, len);
}

/* Contract in config.h. */
const struct route *config_match_route(const struct config *c, const char *host, size_t hlen,
                                       const char *path, size_t len)
{
    char key[256];
    const struct route *r;

    if (c == NULL || path == NULL)
        return NULL;
    int n = host != NULL ? route_host_normalize(host, hlen, key, sizeof key) : -1;
    if (n > 0) {
        size_t klen = (size_t)n;
        if ((r = class_match(c, HC_EXACT, key, klen, path, len)) != NULL)
            return r;
        /* "a.b.example.com": "*.b.example.com", "*.example.com", "*.com". */
        if (key[0] != '[' && memchr(key, ':', klen) == NULL)
            for (size_t i = 0; i < klen; i++)
                if (key[i] == '.' && i + 1 < klen &&
                    (r = class_match(c, HC_WILD, key + i + 1, klen - i - 1, path, len)) != NULL)
                    return r;
    }
    return class_match(c, HC_ANY, "", 0, path, len);
}

/* Contract in config.h. */
void route_table_free(struct route_table *t)
{
    if (t == NULL)
        return;
    free(t->slots);
    free(t->klen);
    free(t->cls);
    free(t->keys); /* one allocation holds every key (see route_table_build) */
    free(t);
}

/* Contract in config.h. */
int route_table_build(struct config *c, char *err, size_t errlen)
{
    struct route_table *t = calloc(1, sizeof *t);
    size_t n = c->nroutes, size = 16, keybytes = 0;

    while (size < 2 * n + 1)
        size *= 2;
    for (size_t i = 0; i < n; i++)
        keybytes += (c->routes[i].host ? strlen(c->routes[i].host) : 0) + 1;
    if (t != NULL) {
        t->slots = calloc(size, sizeof *t->slots);
        t->klen = calloc(n + 1, sizeof *t->klen);
        t->cls = calloc(n + 1, 1);
        /* The pointer array and the key bytes in one block. */
        t->keys = malloc((n + 1) * sizeof *t->keys + keybytes);
    }
    if (t == NULL || t->slots == NULL || t->klen == NULL || t->cls == NULL || t->keys == NULL) {
        route_table_free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->mask = size - 1;
    char *kb = (char *)(t->keys + n + 1);
    for (size_t i = 0; i < n; i++) {
        const struct route *r = &c->routes[i];
        enum host_class cls;
        char key[256];
        if (r->path == NULL || host_key(r->host, key, sizeof key, &cls, &t->klen[i]) < 0) {
            snprintf(err, errlen, "route '%s': bad host or path", r->name);
            route_table_free(t);
            return -1;
        }
        t->cls[i] = (unsigned char)cls;
        t->keys[i] = kb;
        memcpy(kb, key, t->klen[i] + 1);
        kb += t->klen[i] + 1;
        t->have_exact |= cls == HC_EXACT;
        t->have_wild |= cls == HC_WILD;
        t->have_any |= cls == HC_ANY;
        uint32_t h = key_hash(cls, key, t->klen[i], r->path, strlen(r->path), false);
        size_t s = h & t->mask;
        while (t->slots[s].route != 0)
            s = (s + 1) & t->mask;
        t->slots[s].hash = h;
        t->slots[s].route = (uint32_t)(i + 1);
    }
    c->route_table = t;
    return 0;
}
