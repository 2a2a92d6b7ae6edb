/* route.c - choosing the route for a request path. */
#include <string.h>

#include "config.h"

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

/* Contract in config.h. The comparison is byte for byte (case-sensitive, no
 * decoding or normalisation); among matching routes the longest route path
 * wins, the first one in file order on a tie. */
const struct route *config_match_route(const struct config *c, const char *path, size_t len)
{
    const struct route *best = NULL;
    size_t best_len = 0;

    if (c == NULL || path == NULL)
        return NULL;
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct route *r = &c->routes[i];
        if (r->path == NULL)
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
