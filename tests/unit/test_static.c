/* test_static.c - static files under web_root: traversal attempts, content
 * types, index.html, 301/304/405 and the response heads. Each test run builds
 * its own tree in a mkdtemp directory:
 *
 *   BASE/www/            the root
 *     index.html a.js style.css pic.PNG noext "sp ace.txt" .hidden
 *     sub/index.html  sub/deep/x.mjs  empty/ (no index)  fifo
 *     link_in -> index.html          (inside: served)
 *     link_passwd -> /etc/passwd     (outside: refused)
 *     link_outdir -> BASE/outside    (outside: refused)
 *     link_up -> ..                  (outside: refused)
 *   BASE/outside/secret.txt  BASE/outside/index.html
 *   BASE/wwwlink -> www              (a root given through a symlink)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "http.h"
#include "static.h"

static char base[512];
static char root[PATH_MAX]; /* realpath of BASE/www */

static void write_file(const char *rel, const char *content)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void make_dir(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void make_link(const char *target, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    assert_int_equal(symlink(target, p), 0);
}

static int setup(void **state)
{
    char outside[PATH_MAX + 16];
    snprintf(base, sizeof(base), "%s/wsgate-static-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(base));
    make_dir("www");
    make_dir("outside");
    write_file("outside/secret.txt", "secret\n");
    write_file("outside/index.html", "secret\n");
    write_file("www/index.html", "<!doctype html><title>root</title>\n");
    write_file("www/a.js", "console.log(1);\n");
    write_file("www/style.css", "body{}\n");
    write_file("www/pic.PNG", "\x89PNG");
    write_file("www/noext", "x");
    write_file("www/sp ace.txt", "space\n");
    write_file("www/.hidden", "hidden\n");
    make_dir("www/sub");
    write_file("www/sub/index.html", "<p>sub</p>\n");
    make_dir("www/sub/deep");
    write_file("www/sub/deep/x.mjs", "export {};\n");
    make_dir("www/empty");
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/www/fifo", base);
    assert_int_equal(mkfifo(p, 0644), 0);
    make_link("index.html", "www/link_in");
    make_link("/etc/passwd", "www/link_passwd");
    snprintf(outside, sizeof(outside), "%s/outside", base);
    make_link(outside, "www/link_outdir");
    make_link("..", "www/link_up");
    make_link("www", "wwwlink");
    snprintf(p, sizeof(p), "%s/www", base);
    assert_non_null(realpath(p, root));
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* static_open on a NUL-terminated path; closes the file. Returns the status
 * (0 -> 200) and the content type in *type when given. */
static int open_status(const char *r, const char *path, const char **type, uint64_t *size)
{
    struct static_file f;
    int st = static_open(r, path, strlen(path), &f);
    if (st == 0) {
        assert_true(f.fd >= 0);
        if (type)
            *type = f.content_type;
        if (size)
            *size = f.size;
    } else {
        assert_int_equal(f.fd, -1);
    }
    static_close(&f);
    static_close(&f); /* twice is safe */
    return st == 0 ? 200 : st;
}

static int st(const char *path)
{
    return open_status(root, path, NULL, NULL);
}

/* ---- traversal: every attempt is refused --------------------------------- */

static void test_dotdot_plain(void **state)
{
    assert_int_equal(st("/../outside/secret.txt"), 403);
    assert_int_equal(st("/sub/../../outside/secret.txt"), 403);
    assert_int_equal(st("/sub/../index.html"), 403); /* even when it stays inside */
    assert_int_equal(st("/.."), 403);
    assert_int_equal(st("/sub/.."), 403); /* trailing ".." */
    assert_int_equal(st("/sub/../"), 403);
}

static void test_dotdot_encoded(void **state)
{
    assert_int_equal(st("/%2e%2e/outside/secret.txt"), 403);
    assert_int_equal(st("/%2E%2E/outside/secret.txt"), 403);
    assert_int_equal(st("/.%2e/outside/secret.txt"), 403);
    assert_int_equal(st("/%2e./outside/secret.txt"), 403);
    assert_int_equal(st("/sub/%2e%2e"), 403);
}

static void test_encoded_slash(void **state)
{
    assert_int_equal(st("/%2E%2E%2Foutside%2Fsecret.txt"), 403);
    assert_int_equal(st("/..%2foutside/secret.txt"), 403);
    assert_int_equal(st("/..%2Foutside/secret.txt"), 403);
    assert_int_equal(st("/sub%2findex.html"), 403);
    assert_int_equal(st("/%2fetc/passwd"), 403);
    assert_int_equal(st("%2f"), 400); /* not origin-form */
}

static void test_double_slash(void **state)
{
    assert_int_equal(st("//etc/passwd"), 403);
    assert_int_equal(st("//"), 403);
    assert_int_equal(st("/sub//index.html"), 403);
    assert_int_equal(st("/sub/deep//x.mjs"), 403);
}

static void test_backslash(void **state)
{
    assert_int_equal(st("/..\\outside\\secret.txt"), 403);
    assert_int_equal(st("/sub\\index.html"), 403);
    assert_int_equal(st("/..%5coutside%5csecret.txt"), 403);
    assert_int_equal(st("/sub%5Cindex.html"), 403);
}

static void test_nul_and_controls(void **state)
{
    assert_int_equal(st("/index.html%00"), 400);
    assert_int_equal(st("/index.html%00.png"), 400);
    assert_int_equal(st("/%00/../etc/passwd"), 400);
    assert_int_equal(st("/index%0a.html"), 400);
    assert_int_equal(st("/index%0D.html"), 400);
    assert_int_equal(st("/index%7f.html"), 400);
}

static void test_bad_escapes(void **state)
{
    assert_int_equal(st("/%"), 400);
    assert_int_equal(st("/%2"), 400);
    assert_int_equal(st("/index.html%"), 400);
    assert_int_equal(st("/%zz"), 400);
    assert_int_equal(st("/%g0"), 400);
    assert_int_equal(st(""), 400);
    assert_int_equal(st("index.html"), 400);
    assert_int_equal(st("http://example.com/index.html"), 400);
    assert_int_equal(st("*"), 400);
}

static void test_dot_segments(void **state)
{
    assert_int_equal(st("/./index.html"), 403);
    assert_int_equal(st("/sub/./index.html"), 403);
    assert_int_equal(st("/%2e/index.html"), 403);
    assert_int_equal(st("/sub/."), 403);
    assert_int_equal(st("/."), 403);
    assert_int_equal(st("/.hidden"), 403);
    assert_int_equal(st("/%2ehidden"), 403);
}

static void test_symlink_to_file_outside(void **state)
{
    assert_int_equal(st("/link_passwd"), 403);
}

static void test_symlink_to_dir_outside(void **state)
{
    assert_int_equal(st("/link_outdir/secret.txt"), 403);
    assert_int_equal(st("/link_outdir"), 403); /* no 301 that would reveal a directory */
    assert_int_equal(st("/link_outdir/"), 403);
    assert_int_equal(st("/link_up/outside/secret.txt"), 403);
    /* Through a symlink that leaves and comes back: it resolves inside. */
    assert_int_equal(st("/link_up/www/index.html"), 200);
}

static void test_double_encoding_not_decoded_twice(void **state)
{
    /* "%252e%252e" is the name "%2e%2e": decoded once, it names no file. */
    assert_int_equal(st("/%252e%252e/outside/secret.txt"), 404);
    /* Overlong UTF-8 for '.' is a name like any other. */
    assert_int_equal(st("/%c0%ae%c0%ae/outside/secret.txt"), 404);
}

static void test_root_must_be_realpath(void **state)
{
    char linked[PATH_MAX + 16];
    snprintf(linked, sizeof(linked), "%s/wwwlink", base);
    /* A root given through a symlink resolves elsewhere: nothing is "under" it. */
    assert_int_equal(open_status(linked, "/index.html", NULL, NULL), 403);
    assert_int_equal(open_status("relative/dir", "/index.html", NULL, NULL), 500);
    assert_int_equal(open_status("", "/index.html", NULL, NULL), 500);
    /* A trailing slash on the root is harmless. */
    char slashed[PATH_MAX + 16];
    snprintf(slashed, sizeof(slashed), "%s/", root);
    assert_int_equal(open_status(slashed, "/index.html", NULL, NULL), 200);
    assert_int_equal(open_status(slashed, "/../outside/secret.txt", NULL, NULL), 403);
    assert_int_equal(open_status(slashed, "/link_passwd", NULL, NULL), 403);
}

static void test_root_slash(void **state)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/a.js", root);
    assert_int_equal(open_status("/", p, NULL, NULL), 200);
    snprintf(p, sizeof(p), "%s/../outside/secret.txt", root);
    assert_int_equal(open_status("/", p, NULL, NULL), 403);
}

/* ---- files that are served ----------------------------------------------- */

static void test_serves_files(void **state)
{
    const char *type;
    uint64_t size;
    assert_int_equal(open_status(root, "/index.html", &type, &size), 200);
    assert_string_equal(type, "text/html; charset=utf-8");
    assert_int_equal(size, strlen("<!doctype html><title>root</title>\n"));
    assert_int_equal(open_status(root, "/a.js", &type, NULL), 200);
    assert_string_equal(type, "text/javascript; charset=utf-8");
    assert_int_equal(open_status(root, "/style.css", &type, NULL), 200);
    assert_string_equal(type, "text/css; charset=utf-8");
    assert_int_equal(open_status(root, "/pic.PNG", &type, NULL), 200);
    assert_string_equal(type, "image/png");
    assert_int_equal(open_status(root, "/noext", &type, NULL), 200);
    assert_string_equal(type, "application/octet-stream");
    assert_int_equal(open_status(root, "/sp%20ace.txt", &type, NULL), 200);
    assert_string_equal(type, "text/plain; charset=utf-8");
    assert_int_equal(open_status(root, "/%69ndex.html", NULL, NULL), 200);
    assert_int_equal(open_status(root, "/sub/deep/x.mjs", &type, NULL), 200);
    assert_string_equal(type, "text/javascript; charset=utf-8");
    assert_int_equal(open_status(root, "/link_in", &type, NULL), 200); /* symlink inside */
    assert_string_equal(type, "application/octet-stream");             /* by the requested name */
}

static void test_index_for_directories(void **state)
{
    const char *type;
    uint64_t size;
    assert_int_equal(open_status(root, "/", &type, &size), 200);
    assert_string_equal(type, "text/html; charset=utf-8");
    assert_int_equal(size, strlen("<!doctype html><title>root</title>\n"));
    assert_int_equal(open_status(root, "/sub/", &type, &size), 200);
    assert_int_equal(size, strlen("<p>sub</p>\n"));
    assert_int_equal(st("/sub"), 301);
    assert_int_equal(st("/sub/deep"), 301);
    assert_int_equal(st("/sub/deep/"), 404); /* no index.html */
    assert_int_equal(st("/empty/"), 404);
    assert_int_equal(st("/index.html/"), 404);
}

static void test_not_found_and_special(void **state)
{
    assert_int_equal(st("/missing.html"), 404);
    assert_int_equal(st("/missing/"), 404);
    assert_int_equal(st("/index.html/x"), 404);
    assert_int_equal(st("/fifo"), 404); /* opened without blocking, refused */
    char longp[PATH_MAX + 64];
    longp[0] = '/';
    memset(longp + 1, 'a', sizeof(longp) - 2);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(st(longp), 404);
}

static void test_unreadable(void **state)
{
    if (geteuid() == 0)
        skip(); /* root reads everything */
    char p[PATH_MAX + 32];
    write_file("www/locked.txt", "x");
    snprintf(p, sizeof(p), "%s/www/locked.txt", base);
    assert_int_equal(chmod(p, 0), 0);
    assert_int_equal(st("/locked.txt"), 403);
}

/* ---- content types ------------------------------------------------------- */

static void test_content_types(void **state)
{
    static const char *const cases[][2] = {
        {"a.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"A.HTML", "text/html; charset=utf-8"},
        {"x/y.js", "text/javascript; charset=utf-8"},
        {"m.mjs", "text/javascript; charset=utf-8"},
        {"s.css", "text/css; charset=utf-8"},
        {"i.svg", "image/svg+xml"},
        {"i.png", "image/png"},
        {"i.jpg", "image/jpeg"},
        {"i.jpeg", "image/jpeg"},
        {"i.gif", "image/gif"},
        {"favicon.ico", "image/x-icon"},
        {"m.wasm", "application/wasm"},
        {"d.json", "application/json"},
        {"r.txt", "text/plain; charset=utf-8"},
        {"a.js.map", "application/json"},
        {"f.woff", "font/woff"},
        {"f.woff2", "font/woff2"},
        {"noext", "application/octet-stream"},
        {".bashrc", "application/octet-stream"},
        {"dir.js/file", "application/octet-stream"},
        {"a.", "application/octet-stream"},
        {"a.exe", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(static_content_type(cases[i][0]), cases[i][1]);
}

/* ---- dates and 304 ------------------------------------------------------- */

static int nm(const char *v, time_t mtime)
{
    return static_not_modified(v, strlen(v), mtime);
}

static void test_http_date(void **state)
{
    char d[30];
    assert_int_equal(static_http_date(784111777, d), 29);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(static_http_date(0, d), 29);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void test_not_modified(void **state)
{
    const time_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_true(nm("Sun, 06 Nov 1994 08:49:37 GMT", t));
    assert_true(nm("Sun, 06 Nov 1994 08:49:37 GMT", t - 100));
    assert_false(nm("Sun, 06 Nov 1994 08:49:37 GMT", t + 1));
    assert_true(nm("Sunday, 06-Nov-94 08:49:37 GMT", t)); /* RFC 850 */
    assert_false(nm("Sunday, 06-Nov-94 08:49:36 GMT", t));
    assert_true(nm("Sun Nov  6 08:49:37 1994", t)); /* asctime */
    assert_true(nm("Sun Nov 16 08:49:37 1994", t));
    assert_false(nm("Sun Nov  5 08:49:37 1994", t));
    assert_true(nm("Fri, 31 Dec 2100 23:59:59 GMT", t));
    assert_true(nm("Thu, 01-Jan-70 00:00:00 GMT", 0));
    assert_true(nm("Wed, 31-Dec-69 23:59:59 GMT", t));  /* two-digit 69 is 2069 */
    assert_false(nm("Thu, 31-Dec-70 23:59:59 GMT", t)); /* 70 is 1970 */
}

static void test_not_modified_invalid(void **state)
{
    const time_t t = 0;
    assert_false(nm("", t));
    assert_false(nm("garbage", t));
    assert_false(nm("Sun, 06 Nov 1994 08:49:37 UTC", t));
    assert_false(nm("Sun, 06 Nov 1994 08:49:37 GMT junk", t));
    assert_false(nm("Sun, 06 Nov 1994 08:49:37", t));
    assert_false(nm("Sun, 6 Nov 1994 08:49:37 GMT", t));
    assert_false(nm("Sun, 06 Foo 1994 08:49:37 GMT", t));
    assert_false(nm("Sun, 32 Nov 1994 08:49:37 GMT", t));
    assert_false(nm("Sun, 00 Nov 1994 08:49:37 GMT", t));
    assert_false(nm("Sun, 06 Nov 1994 24:49:37 GMT", t));
    assert_false(nm("Sun, 06 Nov 1994 8:49:37 GMT", t));
    assert_false(nm("Sun, 06 Nov 94 08:49:37 GMT", t));
    assert_false(nm("Sun Nov  6 08:49:37 1994 GMT", t));
    assert_false(nm(", 06 Nov 1994 08:49:37 GMT", t));
    assert_false(static_not_modified(NULL, 0, t));
    /* A prefix of a valid date is not valid (length is respected). */
    assert_false(static_not_modified("Sun, 06 Nov 1994 08:49:37 GMT", 20, t));
}

/* ---- whole requests and response heads ----------------------------------- */

static char reqbuf[4096];

static void parse(const char *text, struct http_request *req)
{
    snprintf(reqbuf, sizeof(reqbuf), "%s", text);
    assert_true(http_parse_request(reqbuf, strlen(reqbuf), 0, req) > 0);
}

static int request(const char *text, struct static_file *f)
{
    struct http_request req;
    parse(text, &req);
    return static_request(root, &req, f);
}

static void test_request_get(void **state)
{
    struct static_file f;
    char head[1024];
    assert_int_equal(request("GET /a.js?v=1 HTTP/1.1\r\nHost: x\r\n\r\n", &f), 200);
    assert_true(f.fd >= 0);
    assert_false(f.head_only);
    size_t n = static_response_head(&f, 200, head, sizeof(head) - 1);
    assert_true(n > 0);
    head[n] = '\0';
    assert_memory_equal(head, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(head, "\r\nContent-Type: text/javascript; charset=utf-8\r\n"));
    assert_non_null(strstr(head, "\r\nContent-Length: 16\r\n"));
    assert_non_null(strstr(head, "\r\nLast-Modified: "));
    assert_non_null(strstr(head, "\r\nDate: "));
    assert_non_null(strstr(head, "\r\nCache-Control: no-cache\r\n"));
    assert_non_null(strstr(head, "\r\nX-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(head, "\r\nConnection: close\r\n"));
    assert_string_equal(head + n - 4, "\r\n\r\n");
    /* The body comes from the fd. */
    char body[64];
    assert_int_equal(read(f.fd, body, sizeof(body)), 16);
    assert_memory_equal(body, "console.log(1);\n", 16);
    static_close(&f);
    assert_int_equal(f.fd, -1);
    /* Too small a buffer: 0, never a cut head. */
    assert_int_equal(request("GET /a.js HTTP/1.1\r\nHost: x\r\n\r\n", &f), 200);
    assert_int_equal(static_response_head(&f, 200, head, 40), 0);
    static_close(&f);
}

static void test_request_head(void **state)
{
    struct static_file f;
    char head[1024];
    assert_int_equal(request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", &f), 200);
    assert_true(f.head_only);
    assert_int_equal(f.size, strlen("<!doctype html><title>root</title>\n"));
    size_t n = static_response_head(&f, 200, head, sizeof(head) - 1);
    head[n] = '\0';
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n",
             strlen("<!doctype html><title>root</title>\n"));
    assert_non_null(strstr(head, cl));
    assert_non_null(strstr(head, "text/html"));
    static_close(&f);
    /* A HEAD error response has no body but says how long it would be. */
    assert_int_equal(request("HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n", &f), 404);
    n = static_response_head(&f, 404, head, sizeof(head) - 1);
    head[n] = '\0';
    assert_string_equal(head + n - 4, "\r\n\r\n");
    assert_non_null(strstr(head, "Content-Length: 14\r\n"));
    static_close(&f);
}

static void test_request_405(void **state)
{
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "get", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct static_file f;
        char text[128], head[1024];
        snprintf(text, sizeof(text), "%s /index.html HTTP/1.1\r\nHost: x\r\n\r\n", methods[i]);
        assert_int_equal(request(text, &f), 405);
        assert_int_equal(f.fd, -1);
        size_t n = static_response_head(&f, 405, head, sizeof(head) - 1);
        head[n] = '\0';
        assert_memory_equal(head, "HTTP/1.1 405 Method Not Allowed\r\n", 33);
        assert_non_null(strstr(head, "\r\nAllow: GET, HEAD\r\n"));
        assert_non_null(strstr(head, "\r\n\r\n405 Method Not Allowed\n"));
        static_close(&f);
    }
}

static void test_request_304(void **state)
{
    struct static_file f;
    char text[256], date[30], head[1024];
    /* Give index.html a known mtime. */
    char p[PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/index.html", root);
    struct timeval tv[2] = {{784111777, 0}, {784111777, 0}};
    assert_int_equal(utimes(p, tv), 0);

    static_http_date(784111777, date);
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: %s\r\n\r\n",
             date);
    assert_int_equal(request(text, &f), 304);
    assert_int_equal(f.fd, -1);
    assert_int_equal(f.mtime, 784111777);
    size_t n = static_response_head(&f, 304, head, sizeof(head) - 1);
    head[n] = '\0';
    assert_memory_equal(head, "HTTP/1.1 304 Not Modified\r\n", 27);
    assert_non_null(strstr(head, "\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
    assert_null(strstr(head, "Content-Length"));
    assert_string_equal(head + n - 4, "\r\n\r\n");
    static_close(&f);

    /* HEAD gets 304 as well. */
    snprintf(text, sizeof(text), "HEAD / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: %s\r\n\r\n",
             date);
    assert_int_equal(request(text, &f), 304);
    static_close(&f);

    /* Older date: the file is newer, 200. */
    static_http_date(784111776, date);
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: %s\r\n\r\n",
             date);
    assert_int_equal(request(text, &f), 200);
    static_close(&f);

    /* Invalid date: ignored. */
    assert_int_equal(
        request("GET / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: yesterday\r\n\r\n", &f), 200);
    static_close(&f);

    /* If-None-Match present: If-Modified-Since is ignored. */
    assert_int_equal(request("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n"
                             "If-Modified-Since: Fri, 31 Dec 2100 23:59:59 GMT\r\n\r\n",
                             &f),
                     200);
    static_close(&f);
}

static void test_request_301(void **state)
{
    struct static_file f;
    char head[1024];
    assert_int_equal(request("GET /sub?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &f), 301);
    size_t n = static_response_head(&f, 301, head, sizeof(head) - 1);
    head[n] = '\0';
    assert_non_null(strstr(head, "\r\nLocation: /sub/?x=1\r\n"));
    static_close(&f);
    assert_int_equal(request("GET /s%75b HTTP/1.1\r\nHost: x\r\n\r\n", &f), 301);
    n = static_response_head(&f, 301, head, sizeof(head) - 1);
    head[n] = '\0';
    assert_non_null(strstr(head, "\r\nLocation: /s%75b/\r\n"));
    static_close(&f);
}

static void test_request_errors(void **state)
{
    static const struct {
        const char *target;
        int status;
    } cases[] = {
        {"/../outside/secret.txt", 403},
        {"/%2e%2e/outside/secret.txt", 403},
        {"/link_passwd", 403},
        {"/missing", 404},
        {"/%zz", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct static_file f;
        char text[256], head[1024];
        snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        assert_int_equal(request(text, &f), cases[i].status);
        assert_int_equal(f.fd, -1);
        size_t n = static_response_head(&f, cases[i].status, head, sizeof(head) - 1);
        assert_true(n > 0);
        head[n] = '\0';
        assert_non_null(strstr(head, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert_non_null(strstr(head, "\r\nConnection: close\r\n"));
        assert_null(strstr(head, "secret"));
        static_close(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dotdot_plain),
        cmocka_unit_test(test_dotdot_encoded),
        cmocka_unit_test(test_encoded_slash),
        cmocka_unit_test(test_double_slash),
        cmocka_unit_test(test_backslash),
        cmocka_unit_test(test_nul_and_controls),
        cmocka_unit_test(test_bad_escapes),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_symlink_to_file_outside),
        cmocka_unit_test(test_symlink_to_dir_outside),
        cmocka_unit_test(test_double_encoding_not_decoded_twice),
        cmocka_unit_test(test_root_must_be_realpath),
        cmocka_unit_test(test_root_slash),
        cmocka_unit_test(test_serves_files),
        cmocka_unit_test(test_index_for_directories),
        cmocka_unit_test(test_not_found_and_special),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_not_modified),
        cmocka_unit_test(test_not_modified_invalid),
        cmocka_unit_test(test_request_get),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_request_405),
        cmocka_unit_test(test_request_304),
        cmocka_unit_test(test_request_301),
        cmocka_unit_test(test_request_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
