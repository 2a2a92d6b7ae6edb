/* fuzz_config.c - libFuzzer harness for the configuration loader
 * (src/config.c, src/route.c).
 *
 * The input is INI text (up to its first NUL byte). Checked for every input:
 *  - config_load_string returns 0 with a configuration or -1 with a
 *    non-empty, NUL-terminated message of "NAME:LINE: ..." / "NAME: ..."
 *    lines, for any errlen (also tiny ones);
 *  - a loaded configuration is consistent: refcount 1, every route has a
 *    path starting with '/', at least one backend with at least one address,
 *    prefix set exactly for paths ending in '/', and config_match_route
 *    finds each route by its own path (or a longer route that also matches);
 *  - the effective configuration config_dump() prints loads again, and
 *    dumping that gives the same text (a fixed point);
 *  - config_ref/config_unref count, and nothing leaks (LeakSanitizer).
 * config_load_string resolves host names: getaddrinfo is wrapped (link with
 * -Wl,--wrap=getaddrinfo) so only numeric hosts and "localhost" resolve and
 * no input ever waits on DNS. */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define NAME "fuzz.ini"

/* Offline: names other than "localhost" never reach DNS. */
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    struct addrinfo h;

    if (node == NULL || strcmp(node, "localhost") == 0)
        return __real_getaddrinfo(node, service, hints, res);
    if (hints != NULL)
        h = *hints;
    else
        memset(&h, 0, sizeof h);
    h.ai_flags |= AI_NUMERICHOST;
    return __real_getaddrinfo(node, service, &h, res);
}

/* config_dump() output as a malloc'd string. */
static char *dump(const struct config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    CHECK(f != NULL);
    config_dump(c, f);
    CHECK(fclose(f) == 0);
    CHECK(text != NULL && strlen(text) == len);
    return text;
}

static void check_error_text(const char *err)
{
    CHECK(err[0] != '\0');
    for (const char *line = err; line != NULL;) {
        CHECK(strncmp(line, NAME ":", strlen(NAME ":")) == 0);
        const char *nl = strchr(line, '\n');
        line = nl != NULL ? nl + 1 : NULL;
    }
}

static void check_config(const struct config *c)
{
    CHECK(c->refcount == 1);
    CHECK(c->file != NULL && strcmp(c->file, NAME) == 0);
    CHECK(c->nlistens >= 1 && c->listens != NULL);
    for (size_t i = 0; i < c->nlistens; i++)
        CHECK(c->listens[i].text != NULL && c->listens[i].addr.len > 0);
    CHECK(c->max_connections >= 1);
    CHECK(c->buffer_size >= 4096 && c->buffer_size <= 16u << 20);
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct route *r = &c->routes[i];
        CHECK(r->index == i && r->name != NULL && r->name[0] != '\0');
        CHECK(r->path != NULL && r->path[0] == '/');
        size_t plen = strlen(r->path);
        CHECK(r->prefix == (r->path[plen - 1] == '/'));
        CHECK(r->nbackends >= 1);
        for (size_t b = 0; b < r->nbackends; b++) {
            CHECK(r->backends[b].text != NULL);
            CHECK(r->backends[b].naddrs >= 1 && r->backends[b].addrs != NULL);
        }
        for (size_t k = 0; k < r->norigins; k++)
            CHECK(r->origins[k] != NULL && r->origins[k][0] != '\0');
        for (size_t k = 0; k < r->nsubprotocols; k++)
            CHECK(r->subprotocols[k] != NULL && r->subprotocols[k][0] != '\0');
        CHECK(r->p.connect_timeout_ms >= 1 && r->p.pong_timeout_ms >= 1);

        /* Its own path finds it, or a longer route that also matches. */
        const struct route *m = config_match_route(c, r->path, plen);
        CHECK(m != NULL);
        CHECK(m == r || strlen(m->path) >= plen);
        if (r->prefix) {
            m = config_match_route(c, r->path, plen - 1);
            CHECK(m != NULL);
        }
    }
    CHECK(config_match_route(c, NULL, 0) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t errlens[] = {1, 2, 17, 4096};
    char *text = malloc(size + 1);
    struct config *c = NULL;
    char err[4096];

    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    memset(err, 'X', sizeof err);
    int rc = config_load_string(NAME, text, &c, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        CHECK(c == NULL);
        CHECK(memchr(err, '\0', sizeof err) != NULL);
        check_error_text(err);
        /* Short error buffers are truncated, still terminated. */
        for (size_t i = 0; i < sizeof errlens / sizeof errlens[0] - 1; i++) {
            char small[32];
            struct config *c2 = NULL;
            memset(small, 'X', sizeof small);
            CHECK(config_load_string(NAME, text, &c2, small, errlens[i]) == -1 && c2 == NULL);
            CHECK(strlen(small) < errlens[i]);
            CHECK(strncmp(small, err, strlen(small)) == 0);
        }
        free(text);
        return 0;
    }

    CHECK(c != NULL);
    check_config(c);
    CHECK(config_ref(c) == c && c->refcount == 2);
    config_unref(c);
    CHECK(c->refcount == 1);

    /* The dump is a fixed point. */
    char *d1 = dump(c);
    struct config *c2 = NULL;
    if (config_load_string(NAME, d1, &c2, err, sizeof err) != 0) {
        fprintf(stderr, "dump does not load again:\n%s\n---- errors:\n%s\n", d1, err);
        abort();
    }
    check_config(c2);
    CHECK(c2->nroutes == c->nroutes && c2->nlistens == c->nlistens);
    char *d2 = dump(c2);
    if (strcmp(d1, d2) != 0) {
        fprintf(stderr, "dump is not a fixed point:\n%s\n---- second:\n%s\n", d1, d2);
        abort();
    }
    free(d1);
    free(d2);
    config_unref(c2);
    config_unref(c);
    free(text);
    return 0;
}
