/* test_token.c - websockify TokenFile sources: parsing, lookups, directory
 * sources, change detection, the shared cache and ?token= extraction. Files
 * live in a mkdtemp directory made per test. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "token.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/un.h>
#include <time.h>

struct fixture {
    char dir[256];
    char path[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/wsgate-token-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Write content to DIR/rel (mode "w" or "a") and return the full path. */
static const char *put(struct fixture *f, const char *rel, const char *mode, const char *content)
{
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, rel);
    FILE *fp = fopen(f->path, mode);
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return f->path;
}

/* Set a file's mtime to a fixed second, so a rewrite in the same clock tick
 * cannot hide behind an unchanged timestamp in these tests. */
static void set_mtime(const char *path, time_t sec)
{
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static const char *lk(const struct token_table *t, const char *tok)
{
    return token_lookup(t, tok, strlen(tok));
}

static void test_basic_file(void **state)
{
    struct fixture *f = *state;
    const char *p = put(f, "tokens", "w",
                        "# websockify token file\n"
                        "\n"
                        "vnc1: 127.0.0.1:5901\n"
                        "  vnc2:\tlocalhost:5902  \n"
                        "vnc3 : [::1]:5903\r\n"
                        "vnc4:   host.example:5904\n"
                        "   # indented comment\n"
                        "sock: unix_socket:/run/vnc.sock\n"
                        "sock2: unix:/run/other.sock\n"
                        "a:b: 10.0.0.1:1\n"
                        "last: 192.0.2.1:65535");
    struct token_table *t = NULL;
    char err[512];
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(token_count(t), 8);
    assert_string_equal(lk(t, "vnc1"), "127.0.0.1:5901");
    assert_string_equal(lk(t, "vnc2"), "localhost:5902");
    assert_string_equal(lk(t, "vnc3"), "[::1]:5903");
    assert_string_equal(lk(t, "vnc4"), "host.example:5904");
    assert_string_equal(lk(t, "sock"), "unix:/run/vnc.sock");
    assert_string_equal(lk(t, "sock2"), "unix:/run/other.sock");
    assert_string_equal(lk(t, "a:b"), "10.0.0.1:1"); /* split at the first ": " */
    assert_string_equal(lk(t, "last"), "192.0.2.1:65535");
    assert_null(lk(t, "vnc"));
    assert_null(lk(t, "vnc11"));
    assert_null(lk(t, "VNC1"));
    assert_null(lk(t, ""));
    assert_null(lk(t, "# websockify token file"));
    assert_null(token_lookup(t, NULL, 0));
    assert_null(token_lookup(NULL, "vnc1", 4));
    /* The token need not be NUL-terminated. */
    assert_string_equal(token_lookup(t, "vnc1&x=1", 4), "127.0.0.1:5901");
    token_free(t);
    token_free(NULL);
}

static void test_malformed_lines(void **state)
{
    struct fixture *f = *state;
    const char *p = put(f, "tokens", "w",
                        "good: 127.0.0.1:1\n"         /* 1 */
                        "SECRETA\n"                   /* 2 no separator */
                        "SECRETB:127.0.0.1:2\n"       /* 3 no space after the colon */
                        ": 127.0.0.1:3\n"             /* 4 empty token */
                        "SECRETC: 127.0.0.1\n"        /* 5 no port */
                        "SECRETD: 127.0.0.1:0\n"      /* 6 port 0 */
                        "SECRETE: 127.0.0.1:70000\n"  /* 7 port too big */
                        "SECRETF: 127.0.0.1:59x\n"    /* 8 port not a number */
                        "SECRETG: ::1:5900\n"         /* 9 IPv6 without brackets */
                        "SECRETH: [::1]5900\n"        /* 10 no colon after ']' */
                        "SECRETI: a b:1\n"            /* 11 whitespace in target */
                        "SECRETJ:\n"                  /* 12 no target */
                        "SECRETK: unix_socket:rel\n"  /* 13 relative socket path */
                        "SECRETL: :5900\n"            /* 14 no host */
                        "SECRETM: []:5900\n"          /* 15 empty brackets */
                        "SECRETN: 127.0.0.1:123456\n" /* 16 six digits */
                        "also_good : [2001:db8::1]:2\n" /* 17 */);
    struct token_table *t = NULL;
    char err[4096];
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 15);
    assert_int_equal(token_count(t), 2);
    assert_string_equal(lk(t, "good"), "127.0.0.1:1");
    assert_string_equal(lk(t, "also_good"), "[2001:db8::1]:2");
    for (int line = 2; line <= 16; line++) {
        char want[64];
        snprintf(want, sizeof(want), ": line %d: ", line);
        assert_non_null(strstr(err, want));
    }
    assert_null(strstr(err, "line 1:"));
    assert_null(strstr(err, "line 17:"));
    /* Messages name the file and line, never the token or the line. */
    assert_non_null(strstr(err, p));
    assert_null(strstr(err, "SECRET"));
    assert_null(strstr(err, "127.0.0.1"));
    token_free(t);
}

static void test_err_truncated(void **state)
{
    struct fixture *f = *state;
    const char *p = put(f, "tokens", "w", "x\ny\nz\nok: h:1\n");
    struct token_table *t = NULL;
    char err[16];
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 3);
    assert_true(strlen(err) < sizeof(err));
    assert_int_equal(token_count(t), 1);
    token_free(t);
    /* No err buffer at all. */
    assert_int_equal(token_load(p, &t, NULL, 0), 3);
    token_free(t);
}

static void test_duplicates_last_wins(void **state)
{
    struct fixture *f = *state;
    const char *p = put(f, "tokens", "w",
                        "dup: 127.0.0.1:1\n"
                        "other: 127.0.0.1:9\n"
                        "dup: 127.0.0.1:2\n"
                        "dup: 127.0.0.1:3\n");
    struct token_table *t = NULL;
    char err[512];
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 2);
    assert_int_equal(token_count(t), 2);
    assert_string_equal(lk(t, "dup"), "127.0.0.1:3");
    assert_non_null(strstr(err, "line 1: duplicate token"));
    assert_non_null(strstr(err, "line 3: duplicate token"));
    assert_null(strstr(err, "dup:"));
    token_free(t);
}

static void test_empty_and_missing(void **state)
{
    struct fixture *f = *state;
    struct token_table *t = NULL;
    char err[512];
    const char *p = put(f, "empty", "w", "");
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 0);
    assert_int_equal(token_count(t), 0);
    assert_null(lk(t, "x"));
    token_free(t);
    p = put(f, "comments", "w", "# only\n\n   \n#x: h:1\n");
    assert_int_equal(token_load(p, &t, err, sizeof(err)), 0);
    assert_int_equal(token_count(t), 0);
    token_free(t);

    t = NULL;
    snprintf(f->path, sizeof(f->path), "%s/nope", f->dir);
    assert_int_equal(token_load(f->path, &t, err, sizeof(err)), -1);
    assert_null(t);
    assert_non_null(strstr(err, "nope"));
    assert_non_null(strstr(err, "No such file"));
}

static void test_many_tokens(void **state)
{
    struct fixture *f = *state;
    snprintf(f->path, sizeof(f->path), "%s/many", f->dir);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++)
        fprintf(fp, "tok%d: 10.0.%d.%d:%d\n", (i * 7919) % 5000, i / 256, i % 256, 1000 + i);
    fclose(fp);
    struct token_table *t = NULL;
    assert_int_equal(token_load(f->path, &t, NULL, 0), 0);
    assert_int_equal(token_count(t), 5000);
    for (int i = 0; i < 5000; i++) {
        char tok[32], want[64];
        snprintf(tok, sizeof(tok), "tok%d", (i * 7919) % 5000);
        snprintf(want, sizeof(want), "10.0.%d.%d:%d", i / 256, i % 256, 1000 + i);
        assert_string_equal(lk(t, tok), want);
    }
    assert_null(lk(t, "tok5000"));
    token_free(t);
}

static void test_directory(void **state)
{
    struct fixture *f = *state;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/tokens.d", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    put(f, "tokens.d/a.conf", "w", "alpha: 127.0.0.1:1\nshared: 127.0.0.1:10\n");
    put(f, "tokens.d/b", "w", "# b\nbeta: [::1]:2\nshared: 127.0.0.1:20\nbroken\n");
    put(f, "tokens.d/.hidden.swp", "w", "hidden: 127.0.0.1:3\n");
    snprintf(f->path, sizeof(f->path), "%s/tokens.d/subdir", f->dir);
    assert_int_equal(mkdir(f->path, 0755), 0);
    put(f, "tokens.d/subdir/c", "w", "gamma: 127.0.0.1:4\n");
    struct token_table *t = NULL;
    char err[1024];
    assert_int_equal(token_load(dir, &t, err, sizeof(err)), 2); /* broken + duplicate */
    assert_int_equal(token_count(t), 3);
    assert_string_equal(lk(t, "alpha"), "127.0.0.1:1");
    assert_string_equal(lk(t, "beta"), "[::1]:2");
    assert_string_equal(lk(t, "shared"), "127.0.0.1:20"); /* b is read after a.conf */
    assert_null(lk(t, "hidden"));
    assert_null(lk(t, "gamma"));
    assert_non_null(strstr(err, "tokens.d/b: line 4: "));
    assert_non_null(strstr(err, "tokens.d/a.conf: line 2: duplicate token, "));
    assert_null(strstr(err, "shared"));
    token_free(t);

    /* An empty directory is an empty table. */
    snprintf(dir, sizeof(dir), "%s/empty.d", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(token_load(dir, &t, err, sizeof(err)), 0);
    assert_int_equal(token_count(t), 0);
    token_free(t);
}

static void test_change_file(void **state)
{
    struct fixture *f = *state;
    char p[512];
    snprintf(p, sizeof(p), "%s", put(f, "tokens", "w", "one: 127.0.0.1:1\n"));
    set_mtime(p, 1000000);
    struct token_table *t = NULL;
    assert_int_equal(token_load(p, &t, NULL, 0), 0);
    assert_false(token_source_changed(p, t));
    assert_false(token_source_changed(p, t));
    assert_true(token_source_changed(p, NULL));

    /* Appending changes size and mtime. */
    put(f, "tokens", "a", "two: 127.0.0.1:2\n");
    assert_true(token_source_changed(p, t));
    token_free(t);
    assert_int_equal(token_load(p, &t, NULL, 0), 0);
    assert_string_equal(lk(t, "two"), "127.0.0.1:2");
    assert_false(token_source_changed(p, t));

    /* Same size, other content, mtime changed. */
    put(f, "tokens", "w", "one: 127.0.0.1:1\ntwo: 127.0.0.1:3\n");
    set_mtime(p, 2000000);
    assert_true(token_source_changed(p, t));
    token_free(t);
    assert_int_equal(token_load(p, &t, NULL, 0), 0);
    assert_string_equal(lk(t, "two"), "127.0.0.1:3");

    /* Replaced by rename (how editors and config managers write). */
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s", put(f, "tokens.new", "w", "three: 127.0.0.1:3\n"));
    assert_false(token_source_changed(p, t));
    assert_int_equal(rename(tmp, p), 0);
    assert_true(token_source_changed(p, t));
    token_free(t);
    assert_int_equal(token_load(p, &t, NULL, 0), 0);

    /* Removed. */
    assert_int_equal(unlink(p), 0);
    assert_true(token_source_changed(p, t));
    token_free(t);
}

static void test_change_directory(void **state)
{
    struct fixture *f = *state;
    char dir[300], p[600];
    snprintf(dir, sizeof(dir), "%s/d", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof(p), "%s", put(f, "d/a", "w", "a: 127.0.0.1:1\n"));
    struct token_table *t = NULL;
    assert_int_equal(token_load(dir, &t, NULL, 0), 0);
    assert_false(token_source_changed(dir, t));

    /* A file edited in place (the directory itself does not change). */
    put(f, "d/a", "a", "b: 127.0.0.1:2\n");
    assert_true(token_source_changed(dir, t));
    token_free(t);
    assert_int_equal(token_load(dir, &t, NULL, 0), 0);
    assert_false(token_source_changed(dir, t));

    /* A file added. */
    put(f, "d/c", "w", "c: 127.0.0.1:3\n");
    assert_true(token_source_changed(dir, t));
    token_free(t);
    assert_int_equal(token_load(dir, &t, NULL, 0), 0);
    assert_string_equal(lk(t, "c"), "127.0.0.1:3");

    /* A file removed. */
    assert_int_equal(unlink(p), 0);
    assert_true(token_source_changed(dir, t));
    token_free(t);
    assert_int_equal(token_load(dir, &t, NULL, 0), 0);
    assert_null(lk(t, "a"));
    assert_false(token_source_changed(dir, t));
    token_free(t);
}

static void test_cache(void **state)
{
    struct fixture *f = *state;
    char p[512], target[64], err[512];
    snprintf(p, sizeof(p), "%s", put(f, "tokens", "w", "one: 127.0.0.1:1\n"));
    struct token_cache *c = NULL;
    assert_int_equal(token_cache_open(p, &c, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(token_cache_lookup(c, "one", 3, target, sizeof(target), err, sizeof(err)), 1);
    assert_string_equal(target, "127.0.0.1:1");
    assert_string_equal(err, "");
    assert_int_equal(token_cache_lookup(c, "two", 3, target, sizeof(target), err, sizeof(err)), 0);
    assert_int_equal(token_cache_refresh(c, err, sizeof(err)), 0); /* unchanged: no re-read */

    /* A lookup never reads the source: a new token shows after a refresh. */
    put(f, "tokens", "a", "two: 127.0.0.1:2\nbad line\n");
    assert_int_equal(token_cache_lookup(c, "two", 3, target, sizeof(target), err, sizeof(err)), 0);
    assert_int_equal(token_cache_refresh(c, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "line 3:")); /* reported by the re-read */
    assert_int_equal(token_cache_lookup(c, "two", 3, target, sizeof(target), err, sizeof(err)), 1);
    assert_string_equal(target, "127.0.0.1:2");
    assert_string_equal(err, "");
    assert_int_equal(token_cache_refresh(c, err, sizeof(err)), 0);

    /* A target that does not fit is not returned cut. */
    assert_int_equal(token_cache_lookup(c, "one", 3, target, 5, err, sizeof(err)), 0);

    /* The source disappears: no token is valid after the re-read. */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(token_cache_refresh(c, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(token_cache_lookup(c, "one", 3, target, sizeof(target), err, sizeof(err)), 0);
    assert_int_equal(token_cache_refresh(c, err, sizeof(err)), 0);

    /* It comes back. */
    put(f, "tokens", "w", "one: 127.0.0.1:11\n");
    assert_int_equal(token_cache_refresh(c, NULL, 0), 1);
    assert_int_equal(token_cache_lookup(c, "one", 3, target, sizeof(target), NULL, 0), 1);
    assert_string_equal(target, "127.0.0.1:11");
    token_cache_free(c);
    token_cache_free(NULL);

    /* Opening an unreadable source fails and says why. */
    assert_int_equal(token_cache_open(p, &c, err, sizeof(err)), 0);
    token_cache_free(c);
    c = NULL;
    snprintf(p, sizeof(p), "%s/none", f->dir);
    assert_int_equal(token_cache_open(p, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_null(c);
}

/* Targets are resolved when the table is loaded: a lookup yields addresses. */
static void test_cache_resolve(void **state)
{
    struct fixture *f = *state;
    char p[512], err[512];
    snprintf(p, sizeof(p), "%s",
             put(f, "tokens", "w",
                 "v4: 127.0.0.1:5901\nv6: [::1]:5902\nname: localhost:5903\n"
                 "same: localhost:5903\nsock: unix_socket:/run/vnc.sock\n"
                 "bad: no-such-host.invalid:5904\n"));
    struct token_cache *c = NULL;
    assert_int_equal(token_cache_open(p, &c, err, sizeof(err)), 0);
    /* The unresolvable target is a warning, not an error. */
    assert_non_null(strstr(err, "no-such-host.invalid"));
    struct backend_spec b;
    assert_int_equal(token_cache_resolve(c, "v4", 2, &b, err, sizeof(err)), 1);
    assert_string_equal(b.text, "127.0.0.1:5901");
    assert_string_equal(b.host, "127.0.0.1");
    assert_int_equal(b.naddrs, 1);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&b.addrs[0].ss;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 5901);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    config_free_backend(&b);

    assert_int_equal(token_cache_resolve(c, "v6", 2, &b, err, sizeof(err)), 1);
    assert_int_equal(b.naddrs, 1);
    assert_int_equal(((struct sockaddr_in6 *)&b.addrs[0].ss)->sin6_family, AF_INET6);
    config_free_backend(&b);

    assert_int_equal(token_cache_resolve(c, "name", 4, &b, err, sizeof(err)), 1);
    assert_string_equal(b.host, "localhost");
    assert_true(b.naddrs >= 1);
    int loopback = 0;
    for (size_t i = 0; i < b.naddrs; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&b.addrs[i].ss;
        if (sa->sa_family == AF_INET)
            loopback |= ntohs(((const struct sockaddr_in *)sa)->sin_port) == 5903 &&
                        ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) == 0x7f000001;
    }
    assert_true(loopback);
    config_free_backend(&b);

    assert_int_equal(token_cache_resolve(c, "sock", 4, &b, err, sizeof(err)), 1);
    assert_string_equal(b.text, "unix:/run/vnc.sock");
    assert_null(b.host);
    assert_int_equal(((struct sockaddr *)&b.addrs[0].ss)->sa_family, AF_UNIX);
    config_free_backend(&b);

    assert_int_equal(token_cache_resolve(c, "bad", 3, &b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no-such-host.invalid"));
    assert_int_equal(token_cache_resolve(c, "nope", 4, &b, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    token_cache_free(c);
}

static pthread_mutex_t reports_lock = PTHREAD_MUTEX_INITIALIZER;
static char reports[4096];

static void report(const char *path, const char *msg)
{
    pthread_mutex_lock(&reports_lock);
    size_t n = strlen(reports);
    snprintf(reports + n, sizeof(reports) - n, "%s|%s", path, msg);
    pthread_mutex_unlock(&reports_lock);
}

static int reported(const char *needle)
{
    pthread_mutex_lock(&reports_lock);
    int yes = strstr(reports, needle) != NULL;
    pthread_mutex_unlock(&reports_lock);
    return yes;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The watcher thread picks a change up within about one interval, reports
 * its warnings, and forgets a freed cache. */
static void test_watcher(void **state)
{
    struct fixture *f = *state;
    char dir[300], p[600], err[256], target[64];
    snprintf(dir, sizeof(dir), "%s/d", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    put(f, "d/a", "w", "a: 127.0.0.1:1\n");
    struct token_cache *c = NULL, *gone = NULL;
    assert_int_equal(token_cache_open(dir, &c, err, sizeof(err)), 0);
    snprintf(p, sizeof(p), "%s", put(f, "other", "w", "x: 127.0.0.1:9\n"));
    assert_int_equal(token_cache_open(p, &gone, err, sizeof(err)), 0);
    token_cache_free(gone); /* no longer watched: its changes are never read */
    reports[0] = '\0';
    assert_int_equal(token_watch_start(report), 0);

    put(f, "d/b", "w", "b: 127.0.0.1:2\nbroken\n");
    put(f, "other", "w", "x: 127.0.0.1:9\nbroken too\n");
    double t0 = mono();
    while (token_cache_lookup(c, "b", 1, target, sizeof(target), NULL, 0) != 1 && mono() - t0 < 3.0)
        usleep(10000);
    double took = mono() - t0;
    assert_true(took < 2.0 * TOKEN_WATCH_INTERVAL_MS / 1000.0 + 0.2);
    assert_string_equal(target, "127.0.0.1:2");
    t0 = mono();
    while (!reported("line 2:") && mono() - t0 < 1.0)
        usleep(10000);
    assert_true(reported(dir));
    assert_true(reported("d/b: line 2:"));
    /* The freed cache's file changed too, but nobody re-read it. */
    usleep(2 * TOKEN_WATCH_INTERVAL_MS * 1000);
    assert_false(reported(p));
    token_watch_stop();
    token_cache_free(c);
}

static int q(const char *query, char *out, size_t cap)
{
    return token_from_query(query, strlen(query), out, cap);
}

static void test_from_query(void **state)
{
    char out[32];
    assert_int_equal(q("token=abc", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(q("a=1&token=x%2Fy&b=2", out, sizeof(out)), 3);
    assert_string_equal(out, "x/y");
    assert_int_equal(q("tokens=1&token=z", out, sizeof(out)), 1);
    assert_string_equal(out, "z");
    assert_int_equal(q("token=a+b%20c", out, sizeof(out)), 5);
    assert_string_equal(out, "a b c");
    assert_int_equal(q("token=%41%62", out, sizeof(out)), 2);
    assert_string_equal(out, "Ab");
    assert_int_equal(q("token=&token=second", out, sizeof(out)), 6); /* blank values skipped */
    assert_string_equal(out, "second");
    assert_int_equal(q("token=first&token=second", out, sizeof(out)), 5);
    assert_string_equal(out, "first");
    assert_int_equal(q("token=abc%0A", out, sizeof(out)), 3); /* trailing newline stripped */
    assert_string_equal(out, "abc");
    assert_int_equal(q("&&token=k&&", out, sizeof(out)), 1);
    assert_string_equal(out, "k");
    assert_int_equal(q("token=a=b", out, sizeof(out)), 3);
    assert_string_equal(out, "a=b");
}

static void test_from_query_absent_or_bad(void **state)
{
    char out[8];
    assert_int_equal(q("", out, sizeof(out)), -1);
    assert_int_equal(q("token", out, sizeof(out)), -1);
    assert_int_equal(q("token=", out, sizeof(out)), -1);
    assert_int_equal(q("xtoken=1", out, sizeof(out)), -1);
    assert_int_equal(q("Token=1", out, sizeof(out)), -1);
    assert_int_equal(q("a=1&b=2", out, sizeof(out)), -1);
    assert_int_equal(token_from_query(NULL, 0, out, sizeof(out)), -1);
    assert_int_equal(q("token=%zz", out, sizeof(out)), -2);
    assert_int_equal(q("token=%4", out, sizeof(out)), -2);
    assert_int_equal(q("token=%", out, sizeof(out)), -2);
    assert_int_equal(q("token=a%00b", out, sizeof(out)), -2);
    assert_int_equal(q("token=1234567", out, sizeof(out)), 7); /* fits with its NUL */
    assert_int_equal(q("token=12345678", out, sizeof(out)), -2);
    assert_int_equal(token_from_query("token=abc", 9, out, 0), -2);
    /* The length is respected: the query need not be NUL-terminated. */
    assert_int_equal(token_from_query("token=abcdef", 8, out, sizeof(out)), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(token_from_query("token=%41", 8, out, sizeof(out)), -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_last_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watcher, setup, teardown),
        cmocka_unit_test(test_from_query),
        cmocka_unit_test(test_from_query_absent_or_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
