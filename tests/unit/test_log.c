/* test_log.c - the log queue (logq.c: bounds, drop counting, order, the
 * dropped-lines notice) and the logger's writer thread (log.c) with stderr on
 * a pipe that is not read: callers never block, drops are counted exactly,
 * the notice appears where lines went missing, and log_shutdown gives up
 * after LOG_SHUTDOWN_WAIT_MS. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "logq.h"

/* Everything queued, oldest first, as one string (peek/consume round trip). */
static void drain(struct logq *q, char *out, size_t cap)
{
    size_t k = 0, n;
    while (q->used > 0) {
        const char *p = logq_peek(q, &n);
        assert_true(n > 0 && k + n < cap);
        memcpy(out + k, p, n);
        k += n;
        logq_consume(q, n);
    }
    out[k] = '\0';
    assert_int_equal(q->lines, 0);
}

static void test_queue_order_and_wrap(void **state)
{
    (void)state;
    char buf[16], out[256];
    struct logq q;
    logq_init(&q, buf, sizeof(buf), 8);
    assert_int_equal(logq_push(&q, NULL, 0, "aaaa\n", 5), 0);
    assert_int_equal(logq_push(&q, NULL, 0, "bbbbb\n", 6), 0);
    assert_int_equal(q.lines, 2);
    /* Write part of the first line: it stays queued until its newline goes. */
    size_t n;
    const char *p = logq_peek(&q, &n);
    assert_int_equal(n, 11);
    assert_memory_equal(p, "aaaa\nbbbbb\n", 11);
    logq_consume(&q, 3);
    assert_int_equal(q.lines, 2);
    logq_consume(&q, 2);
    assert_int_equal(q.lines, 1);
    /* The next line wraps around the end of the ring. */
    assert_int_equal(logq_push(&q, NULL, 0, "cccccccc\n", 9), 0);
    p = logq_peek(&q, &n);
    assert_int_equal(n, 11); /* up to the end of the ring */
    assert_memory_equal(p, "bbbbb\nccccc", 11);
    drain(&q, out, sizeof(out));
    assert_string_equal(out, "bbbbb\ncccccccc\n");
    assert_int_equal(q.dropped, 0);
}

static void test_queue_drops_and_notice(void **state)
{
    (void)state;
    char buf[32], out[256];
    struct logq q;
    logq_init(&q, buf, sizeof(buf), 3);
    assert_int_equal(logq_push(&q, NULL, 0, "1111111111\n", 11), 0);
    assert_int_equal(logq_push(&q, NULL, 0, "2222222222\n", 11), 0);
    /* 10 bytes free: an 11-byte line is dropped, a 10-byte one is not. */
    assert_int_equal(logq_push(&q, NULL, 0, "3333333333\n", 11), -1);
    assert_int_equal(q.dropped, 1);
    assert_int_equal(q.gap, 1);
    assert_int_equal(logq_push(&q, NULL, 0, "444444444\n", 10), 0);
    /* Line bound: 3 lines queued, a 1-byte line does not go in. */
    assert_int_equal(logq_push(&q, NULL, 0, "\n", 1), -1);
    assert_int_equal(q.dropped, 2);
    assert_int_equal(q.gap, 2);
    /* Room again; the notice and the line go in together or not at all. */
    logq_consume(&q, 22);
    assert_int_equal(q.lines, 1);
    assert_int_equal(logq_push(&q, "2 dropped\n", 10, "5555555555555\n", 14), -1);
    assert_int_equal(q.dropped, 3);
    assert_int_equal(q.gap, 3); /* the notice did not go in: gap kept */
    assert_int_equal(logq_push(&q, "3 dropped\n", 10, "55\n", 3), 0);
    assert_int_equal(q.gap, 0);
    assert_int_equal(q.lines, 3);
    /* A notice alone (the writer after the queue emptied). */
    drain(&q, out, sizeof(out));
    assert_string_equal(out, "444444444\n3 dropped\n55\n");
    assert_int_equal(logq_push(&q, "x\n", 2, NULL, 0), 0);
    assert_int_equal(q.lines, 1);
    /* Output failed: queued lines count as dropped. */
    logq_discard(&q);
    assert_int_equal(q.dropped, 4);
    assert_int_equal(q.gap, 1);
    assert_int_equal(q.used, 0);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read everything the pipe gives within ms milliseconds of silence. */
static size_t read_pipe(int fd, char *out, size_t cap, int ms)
{
    size_t k = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, ms) <= 0)
            break;
        ssize_t n = read(fd, out + k, cap - 1 - k);
        if (n <= 0)
            break;
        k += (size_t)n;
        assert_true(k < cap - 1);
    }
    out[k] = '\0';
    return k;
}

#define NLINES 3000

static void test_writer_thread(void **state)
{
    (void)state;
    static char out[4 << 20];
    int fds[2], saved = dup(STDERR_FILENO);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[1], F_SETPIPE_SZ, 4096), 4096);
    assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    close(fds[1]);
    alarm(20); /* a blocking log call fails the test instead of hanging it */
    log_setup(WLOG_INFO, LOGF_TEXT);
    uint64_t before = log_lines_dropped();

    /* 1. Nobody reads: 3,000 lines, none of the calls blocks. */
    assert_int_equal(log_start(), 0);
    double t0 = now();
    for (int i = 0; i < NLINES; i++)
        log_msg(WLOG_INFO, "line %d %s", i, "padding padding padding padding padding padding");
    double took = now() - t0;
    assert_true(took < 2.0);
    uint64_t dropped = log_lines_dropped() - before;
    /* The pipe holds 4096 bytes (< 60 lines), the queue LOG_QUEUE_LINES. */
    assert_true(dropped >= NLINES - LOG_QUEUE_LINES - 60);

    /* 2. Reading resumes: the kept lines arrive in order, then one notice
     * with the exact number dropped; kept + dropped = all. */
    size_t len = read_pipe(fds[0], out, sizeof(out), 300);
    assert_true(len > 0);
    int next = 0, kept = 0, notices = 0;
    unsigned long long said = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        assert_true(strlen(line) > 24 && line[23] == 'Z');
        int k;
        unsigned long long n;
        if (sscanf(line + 24, " info: line %d", &k) == 1) {
            assert_int_equal(k, next); /* the oldest are kept, in order */
            assert_int_equal(notices, 0);
            next = k + 1;
            kept++;
        } else {
            assert_int_equal(sscanf(line + 24, " warn: %llu log lines dropped", &n), 1);
            said += n;
            notices++;
        }
    }
    assert_int_equal(notices, 1);
    assert_int_equal(next, kept);
    assert_int_equal(said, dropped);
    assert_int_equal((uint64_t)kept + dropped, NLINES);
    assert_int_equal(log_lines_dropped() - before, dropped); /* the notice is not a drop */

    /* 3. A drained queue: log_shutdown joins at once, later lines go direct. */
    t0 = now();
    assert_int_equal(log_shutdown(), 0);
    assert_true(now() - t0 < 0.5);
    log_msg(WLOG_INFO, "direct");
    len = read_pipe(fds[0], out, sizeof(out), 100);
    assert_non_null(strstr(out, " info: direct\n"));

    /* 4. Stuck stderr at exit: log_shutdown gives up after the wait. */
    assert_int_equal(log_start(), 0);
    for (int i = 0; i < 200; i++)
        log_msg(WLOG_INFO, "stuck %d %s", i, "padding padding padding padding padding padding");
    t0 = now();
    assert_int_equal(log_shutdown(), -1);
    took = now() - t0;
    assert_true(took >= LOG_SHUTDOWN_WAIT_MS / 1000.0 - 0.05 &&
                took < LOG_SHUTDOWN_WAIT_MS / 1000.0 + 0.5);
    /* Afterwards a line is dropped and counted, never written or blocked on. */
    uint64_t d = log_lines_dropped();
    log_msg(WLOG_INFO, "after");
    assert_int_equal(log_lines_dropped(), d + 1);
    alarm(0);

    /* The abandoned writer is stuck in write(2) on the pipe: closing the
     * reading end fails that write, and the thread ends without writing to
     * the restored stderr. */
    dup2(saved, STDERR_FILENO);
    close(saved);
    signal(SIGPIPE, SIG_IGN);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_order_and_wrap),
        cmocka_unit_test(test_queue_drops_and_notice),
        cmocka_unit_test(test_writer_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
