/* test_record.c - unit tests for session recordings (src/record.c,
 * src/replay.c): the UTF-8/JSON encoder, the raw chunk-line parser, a raw
 * round trip with every byte value through the replay reader, asciicast
 * output checked exactly and by the real `asciinema cat`, the bounded queue
 * (a full queue stops only the recording that hit it; the ring wraps), and
 * write errors on a 64 KiB tmpfs, more recordings than the bound on open
 * files (each reopened for appending, every byte in its own file), and the
 * write-behind that keeps a long recording out of the page cache. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../../src/record.h"

#define T0 1700000000.0 /* 2023-11-14T22:13:20Z */

static char tmpdir[64];
static char diskdir[64]; /* test_write_behind's, in the build tree */

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wsgate-rec-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return record_start(RECORD_QUEUE_DEFAULT);
}

static int teardown(void **state)
{
    char cmd[160];
    (void)state;
    record_stop();
    snprintf(cmd, sizeof cmd, "%s/tiny", tmpdir);
    umount(cmd); /* when test_disk_full failed */
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", tmpdir, diskdir);
    diskdir[0] = '\0';
    return system(cmd) == 0 ? 0 : -1;
}

/* The whole content of a file (NUL-terminated; *len without it). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    char tmp[4096];
    size_t k;

    assert_non_null(f);
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
        fwrite(tmp, 1, k, m);
    fclose(f);
    fclose(m);
    if (len)
        *len = n;
    return buf;
}

/* record_replay() of path: its exit code, output in *out (malloc'd). */
static int replay(const char *path, char **out, size_t *outlen, char **errs)
{
    size_t elen;
    char *ebuf = NULL;
    FILE *o = open_memstream(out, outlen), *e = open_memstream(&ebuf, &elen);
    int rc = record_replay(path, o, e);
    fclose(o);
    fclose(e);
    if (errs)
        *errs = ebuf;
    else
        free(ebuf);
    return rc;
}

/* Encode in[0..len) in pieces of the given sizes (0-terminated list), then
 * the end of stream; compare with want. */
static void check_json(const char *in, size_t len, const size_t *pieces, const char *want)
{
    struct record_utf8 st = {0};
    char out[1024];
    size_t n = 0, at = 0;

    for (size_t i = 0; pieces[i] != 0 && at < len; i++) {
        size_t k = pieces[i] < len - at ? pieces[i] : len - at;
        n += record_json_text(&st, (const unsigned char *)in + at, k, out + n, sizeof out - n);
        at += k;
    }
    n += record_json_text(&st, (const unsigned char *)in + at, len - at, out + n, sizeof out - n);
    n += record_json_text(&st, NULL, 0, out + n, sizeof out - n);
    out[n] = '\0';
    if (strcmp(out, want) != 0)
        fail_msg("want \"%s\" got \"%s\"", want, out);
}

static void test_json_text(void **state)
{
    static const size_t whole[] = {0};
    static const size_t ones[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    static const size_t twos[] = {2, 2, 2, 2, 2, 2, 2, 2, 0};
    (void)state;

    /* Valid UTF-8 passes whole, however it is split. */
    const char *text = "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!";
    check_json(text, strlen(text), whole, "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!");
    check_json(text, strlen(text), ones, "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!");
    check_json(text, strlen(text), twos, "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!");
    /* Control characters, quotes, backslash, DEL are escaped. */
    check_json("\x01\x1b[0m\"q\"\\\n\r\t\b\f\x7f/", 16, whole,
               "\\u0001\\u001b[0m\\\"q\\\"\\\\\\n\\r\\t\\b\\f\\u007f/");
    check_json("a\0b", 3, whole, "a\\u0000b");
    /* Invalid bytes: one U+FFFD per maximal subpart (WHATWG). */
    check_json("\xff", 1, whole, "\xef\xbf\xbd");
    check_json("\xe2\x82"
               "A",
               3, whole,
               "\xef\xbf\xbd"
               "A");
    check_json("\xe2\x82"
               "A",
               3, ones,
               "\xef\xbf\xbd"
               "A");
    check_json("\xc0\x80", 2, whole, "\xef\xbf\xbd\xef\xbf\xbd");
    check_json("\xed\xa0\x80", 3, whole, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    check_json("\xf4\x90\x80\x80", 4, whole, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    check_json("\x80"
               "x",
               2, whole,
               "\xef\xbf\xbd"
               "x");
    /* A sequence cut by the end of the stream. */
    check_json("ok\xf0\x9f\x98", 5, whole, "ok\xef\xbf\xbd");
    check_json("ok\xf0\x9f\x98", 5, ones, "ok\xef\xbf\xbd");

    /* Output limit: too small a buffer writes nothing. */
    struct record_utf8 st = {0};
    char small[18];
    assert_int_equal(record_json_text(&st, (const unsigned char *)"ab", 2, small, 17), 0);
    assert_int_equal(record_json_text(&st, (const unsigned char *)"ab", 2, small, 18), 2);
}

static void test_chunk_line(void **state)
{
    double t;
    enum record_dir d;
    uint64_t len;
    const char *why;
    (void)state;

    assert_int_equal(record_parse_chunk_line("+1.250000 o 42", &t, &d, &len, &why), 0);
    assert_true(t == 1.25);
    assert_int_equal(d, RECORD_OUT);
    assert_int_equal(len, 42);
    assert_int_equal(record_parse_chunk_line("+0 i 0", &t, &d, &len, &why), 0);
    assert_int_equal(d, RECORD_IN);
    assert_int_equal(len, 0);
    assert_int_equal(record_parse_chunk_line("+3.5 stop queue-full", &t, &d, &len, &why), 1);
    assert_true(t == 3.5);
    assert_string_equal(why, "queue-full");
    static const char *const bad[] = {
        "1.0 o 4",           "+1.0 x 4", "+1.0 o",    "+1.0 o 4 ",  "+1.0 o -4", "+1.0  o 4",
        "+.5 o 4",           "+1. o 4",  "+1.0 o 4x", "+1.0 stop ", "+1.0 stop", "",
        "+1.0 o 4294967296",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (record_parse_chunk_line(bad[i], &t, &d, &len, &why) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
}

/* The file name: ROUTE-YYYYMMDDTHHMMSSZ-ID.EXT, ID letters and digits. */
static void check_name(const char *path, const char *route, const char *ext)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/%s-20231114T221320Z-", tmpdir, route);
    assert_memory_equal(path, prefix, strlen(prefix));
    const char *id = path + strlen(prefix);
    size_t n = strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789");
    assert_true(n >= 6);
    assert_string_equal(id + n, ext);
}

static void test_raw_round_trip(void **state)
{
    unsigned char all[256];
    (void)state;

    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    mode_t mask = umask(077); /* the file is 0640 whatever the umask */
    struct recording *r = record_open(tmpdir, RECORD_RAW, "term", "127.0.0.1:5555",
                                      "unix:/run/x\n.sock", T0 + 0.25, 35);
    assert_non_null(r);
    record_data(r, RECORD_IN, all, sizeof all, T0 + 0.5);
    record_data(r, RECORD_OUT, "hello\n", 6, T0 + 1.75);
    record_data(r, RECORD_OUT, "", 0, T0 + 1.8); /* nothing */
    record_data(r, RECORD_OUT, "no newline", 10, T0 + 2);
    char path[512];
    snprintf(path, sizeof path, "%s", record_path(r));
    record_close(r, T0 + 3);
    record_flush();
    check_name(path, "term", ".wsrec");
    umask(mask);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    /* The file, byte for byte. */
    const char *id = strrchr(path, '-') + 1;
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "WSREC 1\nroute: term\nclient: 127.0.0.1:5555\nbackend: unix:/run/x?.sock\n"
                      "start: 2023-11-14T22:13:20.250000Z\nsession: %.*s\n\n"
                      "+0.250000 i 256\n",
                      (int)(strlen(id) - 6), id);
    assert_memory_equal(id, "z", 1); /* 35 in base 36 */
    size_t flen;
    char *file = slurp(path, &flen);
    static const char tail[] =
        "\n+1.500000 o 6\nhello\n\n+1.750000 o 10\nno newline\n+2.750000 stop closed\n";
    assert_int_equal(flen, (size_t)hn + 256 + sizeof tail - 1);
    assert_memory_equal(file, head, (size_t)hn);
    assert_memory_equal(file + hn, all, 256);
    assert_memory_equal(file + hn + 256, tail, sizeof tail - 1);
    free(file);

    /* --replay: header, then each chunk after its line, payload verbatim. */
    char *out, *errs;
    size_t olen;
    assert_int_equal(replay(path, &out, &olen, &errs), 0);
    assert_string_equal(errs, "");
    hn = snprintf(head, sizeof head,
                  "WSREC 1\nroute: term\nclient: 127.0.0.1:5555\nbackend: unix:/run/x?.sock\n"
                  "start: 2023-11-14T22:13:20.250000Z\nsession: %.*s\n[+0.250000 i 256]\n",
                  (int)(strlen(id) - 6), id);
    static const char rtail[] = "\n[+1.500000 o 6]\nhello\n[+1.750000 o 10]\nno newline\n"
                                "[+2.750000 stop closed]\n";
    assert_int_equal(olen, (size_t)hn + 256 + sizeof rtail - 1);
    assert_memory_equal(out, head, (size_t)hn);
    assert_memory_equal(out + hn, all, 256);
    assert_memory_equal(out + hn + 256, rtail, sizeof rtail - 1);
    free(out);
    free(errs);

    struct record_stats s;
    record_get_stats(&s);
    assert_int_equal(s.bytes_written, 256 + 6 + 10);
}

/* Chunks larger than the writer's 64 KiB buffer: split into 64 KiB records,
 * each written whole after the bytes buffered before it. */
static void test_big_chunks(void **state)
{
    (void)state;
    size_t n = 200 * 1024 + 7;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    struct record_stats before, after;
    record_get_stats(&before);
    struct recording *r = record_open(tmpdir, RECORD_RAW, "big", "c", "b", T0, 12);
    record_data(r, RECORD_OUT, "x", 1, T0);
    record_data(r, RECORD_IN, big, n, T0 + 1);
    record_data(r, RECORD_OUT, "y", 1, T0 + 2);
    char *path = strdup(record_path(r));
    record_close(r, T0 + 3);
    record_flush();
    record_get_stats(&after);
    assert_int_equal(after.bytes_written - before.bytes_written, n + 2);
    char *out;
    size_t olen;
    assert_int_equal(replay(path, &out, &olen, NULL), 0);
    char *p = strstr(out, "[+0.000000 o 1]\nx\n");
    assert_non_null(p);
    p += strlen("[+0.000000 o 1]\nx\n");
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 65536 ? n - done : 65536;
        char line[64];
        int ln = snprintf(line, sizeof line, "[+1.000000 i %zu]\n", k);
        assert_memory_equal(p, line, (size_t)ln);
        p += ln;
        assert_memory_equal(p, big + done, k);
        p += k;
        if (big[done + k - 1] != '\n')
            assert_int_equal(*p++, '\n');
        done += k;
    }
    assert_string_equal(p, "[+2.000000 o 1]\ny\n[+3.000000 stop closed]\n");
    free(out);
    free(path);
    free(big);
}

/* Write text to a file in tmpdir; returns its path (static). */
static const char *put_file(const char *name, const char *text, size_t len)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static void expect_replay_error(const char *name, const char *text, const char *want_err, int rc)
{
    const char *path = put_file(name, text, strlen(text));
    char *out, *errs, want[512];
    size_t olen;
    assert_int_equal(replay(path, &out, &olen, &errs), rc);
    snprintf(want, sizeof want, "wsgate: %s%s\n", path, want_err);
    if (strcmp(errs, want) != 0)
        fail_msg("want %s got %s", want, errs);
    free(out);
    free(errs);
}

static void test_replay_bad(void **state)
{
    (void)state;
#define H "WSREC 1\nroute: r\nclient: c\nbackend: b\nstart: s\nsession: x\n\n"
    expect_replay_error("a", "hello\n",
                        ": line 1 (offset 0): not a wsgate recording (no 'WSREC 1' line) nor an "
                        "asciicast file",
                        1);
    expect_replay_error("b", H "+0.5 o 10\nabc",
                        ": line 8 (offset 59): chunk cut short (the recording was stopped by "
                        "an error?)",
                        1);
    expect_replay_error("c", H "+0.5 o 2\nabc\n",
                        ": line 8 (offset 59): chunk not followed by a newline (wrong length?)", 1);
    expect_replay_error("d", H "+0.5 q 2\nab\n",
                        ": line 8 (offset 59): expected '+SECONDS i|o LENGTH' or '+SECONDS stop "
                        "REASON'",
                        1);
    expect_replay_error("e", "WSREC 1\nroute: r\nclient: c\n",
                        ": line 4 (offset 27): the header is cut short", 1);
    expect_replay_error("f", "WSREC 1\nwho: r\n\n", ": line 2 (offset 8): expected 'route: ...'",
                        1);
    expect_replay_error("g", H "+1 stop closed\n+2 o 0\n\n",
                        ": line 9 (offset 74): data after the stop line", 1);
    expect_replay_error("h", H "+0.5 o 2\nab\n", ": no stop line: the recording was cut short", 0);
    expect_replay_error("i", "{\"version\": 1}\n",
                        ": line 1 (offset 0): not an asciicast v2 header (no \"version\": 2)", 1);
    expect_replay_error("j", "{\"version\": 2}\n[0.5, \"o\", \"ab]\n",
                        ": line 2 (offset 15): bad event data", 1);
    expect_replay_error("k", "{\"version\": 2}\n[x, \"o\", \"ab\"]\n",
                        ": line 2 (offset 15): bad event time", 1);
    expect_replay_error("l", "{\"version\": 2}\n[1, \"o\", \"a\\qb\"]\n",
                        ": line 2 (offset 15): bad event data", 1);
#undef H
    char *out, *errs;
    size_t olen;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.wsrec", tmpdir);
    assert_int_equal(replay(missing, &out, &olen, &errs), 1);
    assert_non_null(strstr(errs, "none.wsrec: No such file or directory\n"));
    free(out);
    free(errs);
}

/* The asciicast file written for a session with split and invalid UTF-8 and
 * control characters; replay prints the "o" text. */
static const char cast_o1[] = "h\xc3";
static const char cast_o2[] = "\xa9llo\xff\x1b[1m\"q\"\\\r\n";
static const char cast_text[] = "h\xc3\xa9llo\xef\xbf\xbd\x1b[1m\"q\"\\\r\n\xef\xbf\xbd";

static char *write_cast(void)
{
    struct recording *r =
        record_open(tmpdir, RECORD_ASCIICAST, "sh", "[::1]:4000", "127.0.0.1:22", T0, 7);
    assert_non_null(r);
    record_data(r, RECORD_OUT, cast_o1, strlen(cast_o1), T0 + 0.5);
    record_data(r, RECORD_IN, "ls\r", 3, T0 + 1);
    record_data(r, RECORD_OUT, cast_o2, strlen(cast_o2), T0 + 1.5);
    record_data(r, RECORD_OUT, "\xe2\x82", 2, T0 + 2); /* cut by the end */
    char *path = strdup(record_path(r));
    record_close(r, T0 + 3);
    record_flush();
    return path;
}

static void test_asciicast(void **state)
{
    (void)state;
    char *path = write_cast();
    check_name(path, "sh", ".cast");
    char *file = slurp(path, NULL);
    static const char want[] =
        "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1700000000, "
        "\"title\": \"wsgate sh: [::1]:4000 -> 127.0.0.1:22\"}\n"
        "[0.500000, \"o\", \"h\"]\n"
        "[1.000000, \"i\", \"ls\\r\"]\n"
        "[1.500000, \"o\", \"\xc3\xa9llo\xef\xbf\xbd\\u001b[1m\\\"q\\\"\\\\\\r\\n\"]\n"
        "[3.000000, \"o\", \"\xef\xbf\xbd\"]\n";
    assert_string_equal(file, want);
    free(file);

    char *out;
    size_t olen;
    assert_int_equal(replay(path, &out, &olen, NULL), 0);
    assert_int_equal(olen, strlen(cast_text));
    assert_memory_equal(out, cast_text, olen);
    free(out);
    free(path);
}

/* The real asciinema player's `cat` reproduces the text. */
static void test_asciinema_cat(void **state)
{
    (void)state;
    char *path = write_cast();
    char cmd[512], buf[4096];
    /* asciinema cat needs a terminal (it puts /dev/tty in raw mode, so the
     * pty passes the bytes untranslated): script(1) gives it one. */
    snprintf(cmd, sizeof cmd, "HOME=%s script -qec \"asciinema cat '%s'\" /dev/null </dev/null",
             tmpdir, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(buf, 1, sizeof buf, p);
    assert_int_equal(pclose(p), 0);
    assert_int_equal(n, strlen(cast_text));
    assert_memory_equal(buf, cast_text, n);
    free(path);
}

/* Recordings in a fresh directory; returns its path (static). */
static const char *subdir(const char *name)
{
    static char d[256];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(d, 0755), 0);
    return d;
}

/* The one file in dir (static path). */
static const char *only_file(const char *dir)
{
    static char path[512];
    DIR *dp = opendir(dir);
    struct dirent *de;
    int n = 0;
    assert_non_null(dp);
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(dp);
    assert_int_equal(n, 1);
    return path;
}

/* A full queue stops the recording that hit it; the others go on; after the
 * writer catches up new data flows again, through many wraps of the ring. */
static void test_queue_full(void **state)
{
    (void)state;
    record_stop();
    assert_int_equal(record_start(8192), 0); /* pieces of at most 1 KiB */
    char big[8000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);

    const char *da = strdup(subdir("qa")), *db = strdup(subdir("qb"));
    struct recording *a = record_open(da, RECORD_RAW, "a", "c", "b", T0, 1);
    struct recording *b = record_open(db, RECORD_RAW, "b", "c", "b", T0, 2);
    assert_non_null(a);
    assert_non_null(b);
    record_hold(1);
    record_data(a, RECORD_OUT, big, 7000, T0 + 1); /* 2 x 24 + 6 x 1048 + 880 = 7216 */
    record_data(a, RECORD_OUT, big, 2000, T0 + 2); /* a 1048-byte piece: 8264 > 8192 */
    record_data(b, RECORD_IN, big, 500, T0 + 3);   /* 528 more: 7744, fits */
    record_data(a, RECORD_OUT, big, 10, T0 + 4);   /* a stays stopped */
    record_hold(0);
    record_flush();
    record_data(b, RECORD_IN, big, 100, T0 + 5);
    record_data(a, RECORD_OUT, big, 10, T0 + 6);
    record_close(a, T0 + 7);
    record_close(b, T0 + 8);
    record_flush();

    struct record_stats s;
    record_get_stats(&s);
    assert_int_equal(s.opened, 2);
    assert_int_equal(s.stopped, 1);
    assert_int_equal(s.bytes_written, 7000 + 500 + 100);
    assert_int_equal(s.bytes_dropped, 2000 + 10 + 10);

    char *out, *errs;
    size_t olen;
    assert_int_equal(replay(only_file(da), &out, &olen, &errs), 0);
    assert_string_equal(errs, "");
    assert_non_null(strstr(out, "[+2.000000 stop queue-full]\n"));
    assert_null(strstr(out, "[+4.000000"));
    assert_null(strstr(out, "[+6.000000"));
    /* 7000 bytes in 7 chunks of at most 1024 */
    assert_non_null(strstr(out, "[+1.000000 o 1024]\n"));
    assert_non_null(strstr(out, "[+1.000000 o 856]\n"));
    free(out);
    free(errs);
    assert_int_equal(replay(only_file(db), &out, &olen, &errs), 0);
    assert_non_null(strstr(out, "[+3.000000 i 500]\n"));
    assert_non_null(strstr(out, "[+5.000000 i 100]\n"));
    assert_non_null(strstr(out, "[+8.000000 stop closed]\n"));
    free(out);
    free(errs);

    /* The ring wraps many times; every byte arrives in order. */
    const char *dc = strdup(subdir("qc"));
    struct recording *c = record_open(dc, RECORD_RAW, "c", "c", "b", T0, 4);
    size_t total = 0;
    for (int i = 0; i < 200; i++) {
        size_t n = 300 + (size_t)(i * 37) % 700;
        record_data(c, RECORD_OUT, big + i % 26, n, T0 + i);
        total += n;
        if (i % 5 == 4)
            record_flush();
    }
    record_close(c, T0 + 300);
    record_flush();
    record_get_stats(&s);
    assert_int_equal(s.stopped, 1);
    assert_int_equal(s.bytes_written, 7600 + total);
    assert_int_equal(replay(only_file(dc), &out, &olen, &errs), 0);
    assert_string_equal(errs, "");
    char *p = out;
    for (int i = 0; i < 200; i++) {
        size_t n = 300 + (size_t)(i * 37) % 700;
        char line[64];
        snprintf(line, sizeof line, "[+%d.000000 o %zu]\n", i, n);
        p = strstr(p, line);
        assert_non_null(p);
        p += strlen(line);
        assert_memory_equal(p, big + i % 26, n);
        p += n;
    }
    free(out);
    free(errs);
    free((void *)da);
    free((void *)db);
    free((void *)dc);
    record_stop();
    assert_int_equal(record_start(RECORD_QUEUE_DEFAULT), 0);
}

/* Run fn with stderr going to a file; returns what was written (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[300];
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *s = slurp(path, NULL);
    unlink(path);
    return s;
}

struct disk_case {
    const char *dir, *other;
    char path[512];
};

static void fill_disk(void *arg)
{
    struct disk_case *dc = arg;
    static char block[4096];
    memset(block, 'x', sizeof block);
    struct recording *r = record_open(dc->dir, RECORD_RAW, "full", "c", "b", T0, 9);
    struct recording *o = record_open(dc->other, RECORD_RAW, "ok", "c", "b", T0, 10);
    assert_non_null(r);
    snprintf(dc->path, sizeof dc->path, "%s", record_path(r));
    for (int i = 0; i < 40; i++) { /* 160 KiB: more than the 64 KiB disk */
        record_data(r, RECORD_OUT, block, sizeof block, T0 + i);
        record_data(o, RECORD_OUT, block, 16, T0 + i);
        record_flush();
    }
    record_close(r, T0 + 50);
    record_close(o, T0 + 50);
    record_flush();
}

/* ENOSPC on a 64 KiB tmpfs stops that recording with one log line; the
 * other recording (another disk) has every byte. */
static void test_disk_full(void **state)
{
    (void)state;
    struct disk_case dc;
    char mnt[256];
    snprintf(mnt, sizeof mnt, "%s/tiny", tmpdir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0)
        fail_msg("mount -t tmpfs -o size=64k tmpfs %s: %m (the test needs root)", mnt);
    dc.dir = mnt;
    dc.other = subdir("other");
    struct record_stats before, after;
    record_get_stats(&before);
    char *log = capture_stderr(fill_disk, &dc);
    record_get_stats(&after);

    char want[700];
    snprintf(want, sizeof want,
             "recording %s stopped: write failed: No space left on device; the session goes on",
             dc.path);
    char *hit = strstr(log, want);
    if (hit == NULL)
        fail_msg("log has no '%s':\n%s", want, log);
    if (strstr(hit + strlen(want), "stopped") != NULL)
        fail_msg("logged more than once:\n%s", log);
    free(log);
    assert_int_equal(after.stopped - before.stopped, 1);
    assert_int_equal(after.opened - before.opened, 2);
    /* The other recording: all 40 x 16 bytes. */
    uint64_t full = after.bytes_written - before.bytes_written - 40 * 16;
    assert_true(full < 64 * 1024);
    assert_true(full >= 8 * 4096);
    assert_int_equal(after.bytes_dropped - before.bytes_dropped, 40 * 4096 - full);
    char *out, *errs;
    size_t olen;
    assert_int_equal(replay(only_file(dc.other), &out, &olen, &errs), 0);
    assert_non_null(strstr(out, "[+39.000000 o 16]\n"));
    assert_non_null(strstr(out, "[+50.000000 stop closed]\n"));
    free(out);
    free(errs);
    /* The cut file is refused by --replay as cut short. */
    assert_int_equal(replay(dc.path, &out, &olen, &errs), 1);
    assert_non_null(strstr(errs, "chunk cut short"));
    free(out);
    free(errs);
    assert_int_equal(umount(mnt), 0);
}

/* Page-cache bytes of path that are resident (mincore(2)). */
static size_t resident_bytes(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)st.st_size + page - 1) / page;
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    unsigned char *vec = malloc(pages);
    assert_int_equal(mincore(map, (size_t)st.st_size, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    munmap(map, (size_t)st.st_size);
    close(fd);
    *size = (size_t)st.st_size;
    return n * page;
}

/* A 32 MiB recording written in batches of `batch` bytes into dir (each
 * flushed when under 1 MiB, else every 4 MiB); returns its path (malloc'd),
 * the stats before and after. */
static char *record_batches(const char *dir, size_t batch, struct record_stats *before,
                            struct record_stats *after)
{
    size_t total = 32u << 20;
    unsigned char *buf = malloc(batch);
    for (size_t i = 0; i < batch; i++)
        buf[i] = (unsigned char)(i * 13 + i / 4099);
    record_get_stats(before);
    struct recording *r = record_open(dir, RECORD_RAW, "wb", "c", "b", T0, 21);
    assert_non_null(r);
    char *path = strdup(record_path(r));
    for (size_t done = 0; done < total; done += batch) {
        size_t k = total - done < batch ? total - done : batch;
        record_data(r, RECORD_OUT, buf, k, T0 + 1);
        if (batch < (1u << 20) || (done + k) % (4u << 20) == 0)
            record_flush(); /* big batches: 4 MiB at a time, so that one
                               direct batch follows another as it streams */
    }
    record_close(r, T0 + 2);
    record_flush();
    record_get_stats(after);
    free(buf);
    assert_int_equal(after->bytes_written - before->bytes_written, total);
    assert_int_equal(after->stopped, before->stopped);
    return path;
}

/* record_batches()'s file holds every chunk in order, then the stop line. */
static void check_batches(const char *path, size_t batch)
{
    size_t total = 32u << 20, size, k = 0;
    char *blob = slurp(path, &size), *p = strstr(blob, "\n\n") + 2;
    for (size_t done = 0; done < total; done += k) {
        k = total - done < 65536 ? total - done : 65536; /* record_data() splits */
        k = k < batch - done % batch ? k : batch - done % batch;
        char line[64];
        int n = snprintf(line, sizeof line, "+1.000000 o %zu\n", k);
        assert_memory_equal(p, line, (size_t)n);
        p += n;
        for (size_t i = 0; i < k; i++) {
            size_t j = done % batch + i;
            if ((unsigned char)p[i] != (unsigned char)(j * 13 + j / 4099))
                fail_msg("%s: byte %zu of the payload differs", path, done + i);
        }
        p += k;
        assert_int_equal(*p++, '\n');
    }
    assert_string_equal(p, "+2.000000 stop closed\n");
    free(blob);
}

/* A 32 MiB recording leaves at most three write-behind steps (each one
 * batch of at most 2 MiB over RECORD_WRITE_BEHIND) in the page cache:
 * written in 60 KiB batches (under DIO_MIN) the rest was written back and
 * dropped while it was being written; in 1 MiB batches, past the first
 * step, it bypassed the cache (O_DIRECT), the file's partial last block
 * appended after each batch, read back and rewritten with the next. The
 * file lives on a disk (not tmpfs, whose pages cannot be dropped). */
static void test_write_behind(void **state)
{
    (void)state;
    char *dir = strcpy(diskdir, "wsgate-rec-wb-XXXXXX");
    struct statfs sf;
    assert_non_null(mkdtemp(dir)); /* in the build tree: /tmp may be a tmpfs */
    assert_int_equal(statfs(dir, &sf), 0);
    if (sf.f_type == TMPFS_MAGIC)
        fail_msg("%s is on a tmpfs: the test needs a directory on a disk", dir);
    size_t mib = 1u << 20, total = 32 * mib;
    const size_t batches[] = {60 * 1024, mib};
    for (int i = 0; i < 2; i++) {
        struct record_stats before, after;
        char *path = record_batches(dir, batches[i], &before, &after);
        uint64_t direct = after.bytes_direct - before.bytes_direct;
        if (i == 0)
            assert_int_equal(direct, 0);
        else /* all but the first step and the last partial block */
            assert_true(direct > total - RECORD_WRITE_BEHIND - 2 * mib);
        size_t size, res = resident_bytes(path, &size);
        assert_true(size > total);
        if (res > 3 * (RECORD_WRITE_BEHIND + 2 * mib + 4096))
            fail_msg("%zu of the %zu bytes of %s are in the page cache", res, size, path);
        check_batches(path, batches[i]); /* reads it all into the cache */
        unlink(path);
        free(path);
    }
}

/* A directory that vanished: the file cannot be created, logged once. */
static void open_gone(void *arg)
{
    const char *dir = arg;
    struct recording *r = record_open(dir, RECORD_ASCIICAST, "g", "c", "b", T0, 11);
    assert_non_null(r);
    record_data(r, RECORD_OUT, "abc", 3, T0 + 1);
    record_close(r, T0 + 2);
    record_flush();
}

static void test_open_error(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/gone", tmpdir);
    struct record_stats before, after;
    record_get_stats(&before);
    char *log = capture_stderr(open_gone, dir);
    record_get_stats(&after);
    assert_non_null(strstr(log, "stopped: cannot create the file: No such file or directory; "
                                "the session goes on"));
    assert_int_equal(after.stopped - before.stopped, 1);
    assert_int_equal(after.opened, before.opened);
    assert_int_equal(after.bytes_dropped - before.bytes_dropped, 3);
    free(log);
}

/* Descriptors of this process open on files in dir. */
static int fds_in(const char *dir)
{
    DIR *dp = opendir("/proc/self/fd");
    struct dirent *de;
    size_t n = strlen(dir);
    int count = 0;
    assert_non_null(dp);
    while ((de = readdir(dp)) != NULL) {
        char link[300], target[600];
        snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k <= 0)
            continue;
        target[k] = '\0';
        if (strncmp(target, dir, n) == 0 && target[n] == '/')
            count++;
    }
    closedir(dp);
    return count;
}

static void bound_chunk(unsigned char *c, size_t len, int i, int round)
{
    for (size_t k = 0; k < len; k++)
        c[k] = (unsigned char)(i * 7 + round * 13 + (int)k);
}

/* More recordings than the open-files bound (3): exactly the bound stays
 * open while they all write, a file the bound closed is reopened for
 * appending (the cyclic order misses every time: 10 x 12 reopens), and
 * every chunk lands in its own file, in order, after one header. */
static void test_open_bound(void **state)
{
    enum { N = 10, ROUNDS = 12 };
    struct recording *r[N];
    char *paths[N];
    unsigned char chunk[600];
    struct record_stats s;
    (void)state;

    record_stop();
    errno = 0;
    assert_int_equal(record_open_files(0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(record_open_files(3), 0);
    assert_int_equal(record_start(RECORD_QUEUE_DEFAULT), 0);
    char *d = strdup(subdir("bound"));
    record_hold(1); /* the creations and round 0 in one batch */
    for (int i = 0; i < N; i++) {
        r[i] = record_open(d, RECORD_RAW, "b", "c", "s", T0, 100 + (uint64_t)i);
        assert_non_null(r[i]);
        paths[i] = strdup(record_path(r[i]));
    }
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            size_t len = 50 + (size_t)(i * 31 + round * 17) % 500;
            bound_chunk(chunk, len, i, round);
            record_data(r[i], round & 1 ? RECORD_OUT : RECORD_IN, chunk, len,
                        T0 + round + i / 100.0);
        }
        record_hold(0);
        record_flush();
        assert_int_equal(fds_in(d), 3);
        record_get_stats(&s);
        assert_int_equal(s.files_open, 3);
    }
    record_get_stats(&s);
    assert_int_equal(s.opened, N);
    assert_int_equal(s.reopened, N * ROUNDS);
    assert_int_equal(s.stopped, 0);
    for (int i = 0; i < N; i++)
        record_close(r[i], T0 + 50);
    record_flush();
    assert_int_equal(fds_in(d), 0);
    record_get_stats(&s);
    assert_int_equal(s.files_open, 0);

    for (int i = 0; i < N; i++) {
        struct stat st;
        assert_int_equal(stat(paths[i], &st), 0);
        assert_int_equal(st.st_mode & 0777, 0640);
        size_t flen;
        char *file = slurp(paths[i], &flen);
        assert_memory_equal(file, "WSREC 1\nroute: b\nclient: c\nbackend: s\n", 38);
        char *p = strstr(file, "\n\n");
        assert_non_null(p);
        p += 2;
        for (int round = 0; round < ROUNDS; round++) {
            size_t len = 50 + (size_t)(i * 31 + round * 17) % 500;
            char line[64];
            int k = snprintf(line, sizeof line, "+%.6f %c %zu\n", T0 + round + i / 100.0 - T0,
                             round & 1 ? 'o' : 'i', len);
            assert_memory_equal(p, line, (size_t)k);
            p += k;
            bound_chunk(chunk, len, i, round);
            assert_memory_equal(p, chunk, len);
            p += len;
            assert_int_equal(*p++, '\n');
        }
        assert_string_equal(p, "+50.000000 stop closed\n");
        assert_int_equal((size_t)(p - file) + 23, flen);
        free(file);
        free(paths[i]);
    }

    /* The default bound: 300 recordings hold 256 files. */
    record_stop();
    assert_int_equal(record_open_files(RECORD_OPEN_FILES_DEFAULT), 0);
    assert_int_equal(record_start(RECORD_QUEUE_DEFAULT), 0);
    char *d2 = strdup(subdir("bound300"));
    static struct recording *many[300];
    for (int i = 0; i < 300; i++) {
        char text[32];
        int k = snprintf(text, sizeof text, "rec %d\n", i);
        many[i] = record_open(d2, RECORD_RAW, "m", "c", "s", T0, 1000 + (uint64_t)i);
        record_data(many[i], RECORD_OUT, text, (size_t)k, T0 + 1);
    }
    record_flush();
    assert_int_equal(fds_in(d2), 256);
    record_get_stats(&s);
    assert_int_equal(s.files_open, 256);
    /* Least recently written, not first opened: 44 written again stays
     * open when 0 is reopened (45 is closed instead). */
    uint64_t reopened = s.reopened;
    record_data(many[44], RECORD_OUT, "again\n", 6, T0 + 1.5);
    record_flush();
    record_data(many[0], RECORD_OUT, "again\n", 6, T0 + 1.5);
    record_flush();
    record_data(many[44], RECORD_OUT, "again\n", 6, T0 + 1.5);
    record_flush();
    record_get_stats(&s);
    assert_int_equal(s.reopened - reopened, 1);
    assert_int_equal(fds_in(d2), 256);
    for (int i = 0; i < 300; i++) {
        char *path = strdup(record_path(many[i])), want[128];
        record_close(many[i], T0 + 2);
        record_flush();
        size_t flen;
        char *file = slurp(path, &flen);
        static const char again[] = "+1.500000 o 6\nagain\n\n";
        int digits = i < 10 ? 6 : i < 100 ? 7 : 8;
        snprintf(want, sizeof want, "\n\n+1.000000 o %d\nrec %d\n\n%s%s+2.000000 stop closed\n",
                 digits, i, i == 0 || i == 44 ? again : "", i == 44 ? again : "");
        assert_non_null(strstr(file, want));
        assert_int_equal(strlen(strstr(file, want)), strlen(want));
        free(file);
        free(path);
    }
    assert_int_equal(fds_in(d2), 0);
    record_get_stats(&s);
    assert_int_equal(s.bytes_written, 8 * 300 - 10 - 100 + 3 * 6);
    free(d);
    free(d2);
}

struct reopen_case {
    char *dir;
    char path_a[512];
};

static void reopen_gone(void *arg)
{
    struct reopen_case *rc = arg;
    struct recording *a = record_open(rc->dir, RECORD_RAW, "a", "c", "s", T0, 7);
    struct recording *b = record_open(rc->dir, RECORD_RAW, "b", "c", "s", T0, 8);
    snprintf(rc->path_a, sizeof rc->path_a, "%s", record_path(a));
    record_data(a, RECORD_OUT, "one\n", 4, T0 + 1);
    record_flush();
    record_data(b, RECORD_OUT, "two\n", 4, T0 + 1); /* closes a's file (bound 1) */
    record_flush();
    assert_int_equal(unlink(rc->path_a), 0);
    record_data(a, RECORD_OUT, "three\n", 6, T0 + 2); /* cannot reopen: a stops */
    record_flush();
    record_data(a, RECORD_OUT, "four\n", 5, T0 + 3); /* nothing */
    record_data(b, RECORD_OUT, "five\n", 5, T0 + 3);
    record_close(a, T0 + 4);
    record_close(b, T0 + 4);
    record_flush();
}

/* A file the bound closed and that vanished before its recording wrote
 * again: that recording stops with one log line, the other goes on. */
static void test_reopen_error(void **state)
{
    struct reopen_case rc;
    struct record_stats before, after;
    (void)state;

    record_stop();
    assert_int_equal(record_open_files(1), 0);
    assert_int_equal(record_start(RECORD_QUEUE_DEFAULT), 0);
    rc.dir = strdup(subdir("reopen"));
    record_get_stats(&before);
    char *log = capture_stderr(reopen_gone, &rc);
    record_get_stats(&after);
    char want[700];
    snprintf(want, sizeof want,
             "recording %s stopped: cannot reopen the file: No such file or directory; the "
             "session goes on",
             rc.path_a);
    char *hit = strstr(log, want);
    if (hit == NULL)
        fail_msg("log has no '%s':\n%s", want, log);
    if (strstr(hit + strlen(want), "stopped") != NULL)
        fail_msg("logged more than once:\n%s", log);
    free(log);
    assert_int_equal(after.stopped - before.stopped, 1);
    assert_int_equal(after.bytes_written - before.bytes_written, 4 + 4 + 5);
    assert_int_equal(after.bytes_dropped - before.bytes_dropped, 6 + 5);
    size_t flen;
    char *file = slurp(only_file(rc.dir), &flen);
    const char *body = strstr(file, "\n\n");
    assert_non_null(body);
    assert_string_equal(body, "\n\n+1.000000 o 4\ntwo\n\n+3.000000 o 5\nfive\n\n"
                              "+4.000000 stop closed\n");
    free(file);
    free(rc.dir);
    record_stop();
    assert_int_equal(record_open_files(RECORD_OPEN_FILES_DEFAULT), 0);
    assert_int_equal(record_start(RECORD_QUEUE_DEFAULT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_text),      cmocka_unit_test(test_chunk_line),
        cmocka_unit_test(test_raw_round_trip), cmocka_unit_test(test_replay_bad),
        cmocka_unit_test(test_big_chunks),     cmocka_unit_test(test_asciicast),
        cmocka_unit_test(test_asciinema_cat),  cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_disk_full),      cmocka_unit_test(test_open_error),
        cmocka_unit_test(test_open_bound),     cmocka_unit_test(test_reopen_error),
        cmocka_unit_test(test_write_behind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
