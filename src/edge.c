/* edge.c - who is connecting (see edge.h). */
#include "edge.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

void edge_client(const struct config *cfg, const struct netaddr *start,
                 const struct http_request *req, struct netaddr *client)
{
    *client = *start;
    const char *name = real_ip_header_name((enum real_ip_header)cfg->real_ip_header);
    if (!name || cfg->ntrusted_proxies == 0 ||
        !netcidr_list_match(cfg->trusted_proxies, cfg->ntrusted_proxies, start))
        return;
    struct netaddr_hval vals[HTTP_MAX_HEADERS];
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0) {
            vals[n].p = h->value;
            vals[n].len = h->value_len;
            n++;
        }
    }
    if (n > 0)
        netaddr_client(start, cfg->trusted_proxies, cfg->ntrusted_proxies,
                       (enum real_ip_header)cfg->real_ip_header, vals, n, client);
}

uint32_t edge_route_scope(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h == 0 ? 1 : h;
}

/* The Host header without its port ("[::1]:80" -> "[::1]"), or len 0. */
static const char *authority(const struct http_request *req, size_t *len)
{
    const struct http_header *h = req ? http_find_header(req, "Host") : NULL;
    *len = 0;
    if (!h)
        return NULL;
    size_t n = h->value_len;
    const char *v = h->value;
    const char *close = n && v[0] == '[' ? memchr(v, ']', n) : NULL;
    if (close)
        n = (size_t)(close - v) + 1;
    else if (memchr(v, ':', n))
        n = (size_t)((const char *)memchr(v, ':', n) - v);
    *len = n;
    return v;
}

int edge_backend_header(const struct edge_backend_hdr *h, uint8_t **out, size_t *len)
{
    struct proxy_out o = {
        .version = h->version,
        .src = h->client,
        .dst = h->dst,
        .tls = h->tls_version != NULL,
        .tls_version = h->tls_version,
        .cert_verified = h->cert_name != NULL,
        .cn = h->cert_name,
    };
    o.authority = authority(h->req, &o.authority_len);
    uint8_t tmp[PROXY_MAX_OUT];
    int n = proxy_encode(&o, tmp, sizeof(tmp));
    if (n < 0)
        return -1;
    if (!(*out = malloc((size_t)n)))
        return -1;
    memcpy(*out, tmp, (size_t)n);
    *len = (size_t)n;
    return 0;
}
