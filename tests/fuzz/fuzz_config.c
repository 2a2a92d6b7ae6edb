/* fuzz_config.c - libFuzzer harness for the configuration loader
 * (src/config.c, src/route.c).
 *
 * The input is INI text (up to its first NUL byte). Checked for every input:
 *  - config_load_string returns 0 with a configuration or -1 with a
 *    non-empty, NUL-terminated message of "NAME:LINE: ..." / "NAME: ..."
 *    lines (no empty line, no trailing newline), for any errlen (also tiny
 *    ones);
 *  - a loaded configuration is consistent: refcount 1, every route has a
 *    path starting with '/', at least one backend with at least one address
 *    or else a token file,
 *    prefix set exactly for paths ending in '/', and config_match_route
 *    finds each route by its own path (or a longer route that also matches);
 *  - the effective configuration config_dump() prints loads again, and
 *    dumping that gives the same text (a fixed point);
 *  - config_ref/config_unref count, and nothing leaks (LeakSanitizer).
 * The harness stays hermetic: config_load_string resolves host names, so
 * getaddrinfo is wrapped (link with -Wl,--wrap=getaddrinfo) and only numeric
 * hosts and "localhost" resolve (no input ever waits on DNS); token_file is
 * read from disk, so token_load is wrapped too (-Wl,--wrap=token_load):
 * "/fuzz/tokens" and "/fuzz/tokens.d" are a token file and a token
 * directory made at start-up, and every other path is looked up under a
 * directory that does not exist (no fuzzed path ever reads /dev/zero). */
#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "config.h"
#include "token.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int __wrap_token_load(const char *path, struct token_table **out, char *err, size_t errlen);
int __real_token_load(const char *path, struct token_table **out, char *err, size_t errlen);
#define NAME "fuzz.ini"

/* ---- token sources ----------------------------------------------------- */

static char fixture_dir[64];
static char fixture_file[PATH_MAX], fixture_subdir[PATH_MAX];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    CHECK(f != NULL);
    fputs(text, f);
    CHECK(fclose(f) == 0);
}

static void remove_fixtures(void)
{
    char p[PATH_MAX + 8];

    snprintf(p, sizeof p, "%s/a", fixture_subdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/b", fixture_subdir);
    unlink(p);
    rmdir(fixture_subdir);
    unlink(fixture_file);
    rmdir(fixture_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char p[PATH_MAX + 8];
    const char *tmp = getenv("TMPDIR");

    snprintf(fixture_dir, sizeof fixture_dir, "%s/wsgate-fuzz-config.XXXXXX",
             tmp != NULL && strlen(tmp) < 24 ? tmp : "/tmp");
    CHECK(mkdtemp(fixture_dir) != NULL);
    snprintf(fixture_file, sizeof fixture_file, "%s/tokens", fixture_dir);
    snprintf(fixture_subdir, sizeof fixture_subdir, "%s/tokens.d", fixture_dir);
    write_file(fixture_file, "# websockify TokenFile\n"
                             "vnc1: 127.0.0.1:5900\n"
                             "vnc2 : [::1]:5901\n"
                             "sock: unix_socket:/run/vnc.sock\n"
                             "broken line\n"
                             "vnc1: 127.0.0.1:5902\n");
    CHECK(mkdir(fixture_subdir, 0700) == 0);
    snprintf(p, sizeof p, "%s/a", fixture_subdir);
    write_file(p, "a: 127.0.0.1:1\n");
    snprintf(p, sizeof p, "%s/b", fixture_subdir);
    write_file(p, "b: localhost:2\nno separator\n");
    atexit(remove_fixtures);
    return 0;
}

/* The two fixtures by their fixed names; anything else does not exist. */
int __wrap_token_load(const char *path, struct token_table **out, char *err, size_t errlen)
{
    char p[PATH_MAX + 64];

    if (strcmp(path, "/fuzz/tokens") == 0)
        return __real_token_load(fixture_file, out, err, errlen);
    if (strcmp(path, "/fuzz/tokens.d") == 0)
        return __real_token_load(fixture_subdir, out, err, errlen);
    snprintf(p, sizeof p, "/nonexistent-wsgate-fuzz/%s", path);
    return __real_token_load(p, out, err, errlen);
}

/* ---- checks ------------------------------------------------------------- */

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
    /* every listener has an address, but for the sockets systemd passes */
    for (size_t i = 0; i < c->nlistens; i++)
        CHECK(c->listens[i].text != NULL &&
              (c->listens[i].addr.len > 0) == (c->listens[i].kind != LISTEN_SYSTEMD));
    CHECK(c->max_connections >= 1);
    CHECK(c->buffer_size >= 4096 && c->buffer_size <= 16u << 20);
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct route *r = &c->routes[i];
        CHECK(r->index == i && r->name != NULL && r->name[0] != '\0');
        CHECK(r->path != NULL && r->path[0] == '/');
        size_t plen = strlen(r->path);
        CHECK(r->prefix == (r->path[plen - 1] == '/'));
        /* Backends, or one token source that names them (not both). */
        bool token_source = r->token_file != NULL || r->redis != NULL || r->jwt != NULL;
        CHECK((r->nbackends >= 1) != token_source);
        CHECK((r->token_file != NULL) == (r->tokens != NULL));
        for (size_t b = 0; b < r->nbackends; b++) {
            CHECK(r->backends[b].text != NULL);
            /* numeric addresses are parsed now, names resolved at connect */
            CHECK((r->backends[b].naddrs >= 1 && r->backends[b].addrs != NULL) ||
                  (r->backends[b].naddrs == 0 && r->backends[b].host != NULL));
        }
        for (size_t k = 0; k < r->norigins; k++)
            CHECK(r->origins[k] != NULL && r->origins[k][0] != '\0');
        for (size_t k = 0; k < r->nsubprotocols; k++)
            CHECK(r->subprotocols[k] != NULL && r->subprotocols[k][0] != '\0');
        CHECK(r->p.connect_timeout_ms >= 1 && r->p.pong_timeout_ms >= 1);

        /* Its own path finds it, or a longer route that also matches. */
        const struct route *m =
            config_match_route(c, r->host, r->host ? strlen(r->host) : 0, r->path, plen);
        CHECK(m != NULL);
        CHECK(m == r || strlen(m->path) >= plen);
        if (r->prefix) {
            m = config_match_route(c, r->host, r->host ? strlen(r->host) : 0, r->path, plen - 1);
            CHECK(m != NULL);
        }
    }
    CHECK(config_match_route(c, NULL, 0, NULL, 0) == NULL);
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
