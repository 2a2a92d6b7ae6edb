/* test_session.c - the session core driven through socketpairs, without the
 * Python suite: one worker set up by hand, a client that is one end of a
 * socketpair handed to session_start(), and a backend the test accepts itself
 * on a Unix socket (the route's backend is unix:DIR/b.sock). The worker's loop
 * is pumped with ev_run(EVRUN_NOWAIT) until a condition holds or a time limit
 * passes.
 *
 * Covered: upgrade and echo both ways (exact bytes); every close path; every
 * timeout; error responses and the linger; backpressure both ways; the
 * per-wake-up budget; a ping flood. Every test ends with w->nsessions == 0 and
 * no pool buffer handed out (the ASan build runs this too). */
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
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "session.h"
#include "worker.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 1.3 */
#define BUDGET 65536                          /* DESIGN.md Hardening: min(buffer_size, 64 KiB) */
#define CLOSE_WAIT 5.0                        /* session.c: close handshake bound */
#define LINGER 2.0                            /* session.c: draining a client after our last byte */

/* A growable byte buffer for what one side received. */
struct bytes {
    uint8_t *p;
    size_t len, cap, pos; /* pos: parsed so far (client frames) */
};

static struct fx {
    char dir[64];
    int lfd; /* the backend's listening Unix socket */
    struct gateway gw;
    struct worker w;
    struct config *cfg;
    int cl;      /* the test's end of the client socketpair, -1 when closed */
    int sess_fd; /* the session's end (owned by the session) */
    bool cl_reading, cl_eof;
    int cl_err;
    struct bytes cr; /* received by the client */
    int be;          /* accepted backend connection, -1 before */
    bool be_reading, be_eof;
    int be_err;
    struct bytes br; /* received by the backend */
} F;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void set_nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* Read what fd has into b; notes EOF or an error. */
static void fill(int fd, struct bytes *b, bool *eof, int *err)
{
    uint8_t tmp[65536];
    while (fd >= 0 && !*eof && !*err) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n > 0)
            bytes_add(b, tmp, (size_t)n);
        else if (n == 0)
            *eof = true;
        else if (errno != EAGAIN && errno != EINTR)
            *err = errno;
        if (n <= 0)
            return;
    }
}

static void pump_once(void)
{
    ev_run(F.w.loop, EVRUN_NOWAIT);
    if (F.be == -1) {
        int fd = accept4(F.lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0)
            F.be = fd;
    }
    if (F.cl_reading)
        fill(F.cl, &F.cr, &F.cl_eof, &F.cl_err);
    if (F.be_reading)
        fill(F.be, &F.br, &F.be_eof, &F.be_err);
}

/* Pump the loop until cond holds; fail after secs. */
#define PUMP_UNTIL(cond, secs)                                                                     \
    do {                                                                                           \
        double end_ = now_s() + (secs);                                                            \
        while (!(cond)) {                                                                          \
            if (now_s() > end_)                                                                    \
                fail_msg("line %d: not within %.1fs: %s", __LINE__, (double)(secs), #cond);        \
            pump_once();                                                                           \
            usleep(200);                                                                           \
        }                                                                                          \
    } while (0)

/* Pump the loop for secs. */
static void pump_for(double secs)
{
    double end = now_s() + secs;
    while (now_s() < end) {
        pump_once();
        usleep(200);
    }
}

/* ---- set-up ----------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A worker for a configuration with extra [gateway] lines gw_extra and
 * buffer_size bufsize. Routes: /ws -> unix:DIR/b.sock (the test listens),
 * /dead -> unix:DIR/none.sock (nobody listens). */
static void setup_with(const char *bufsize, const char *gw_extra)
{
    memset(&F, 0, sizeof(F));
    F.cl = F.be = F.sess_fd = -1;
    F.cl_reading = F.be_reading = true;
    snprintf(F.dir, sizeof(F.dir), "/tmp/test_session.XXXXXX");
    assert_non_null(mkdtemp(F.dir));

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s/b.sock", F.dir);
    F.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(bind(F.lfd, (struct sockaddr *)&un, sizeof(un)), 0);
    assert_int_equal(listen(F.lfd, 16), 0);

    char ini[2048], err[1024];
    snprintf(ini, sizeof(ini),
             "[gateway]\nlisten = 127.0.0.1:%d\nworkers = 1\nbuffer_size = %s\n"
             "handshake_timeout = 300ms\nlog_level = error\n%s\n"
             "[route:r]\npath = /ws\nbackend = unix:%s/b.sock\n"
             "[route:dead]\npath = /dead\nbackend = unix:%s/none.sock\n",
             free_port(), bufsize, gw_extra, F.dir, F.dir);
    if (config_load_string("test", ini, &F.cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    log_setup(WLOG_ERROR, LOGF_TEXT);
    assert_int_equal(pthread_mutex_init(&F.gw.lock, NULL), 0);
    assert_int_equal(metrics_init(&F.gw.metrics, 1), 0);
    assert_int_equal(gateway_attach_stats(&F.gw, F.cfg), 0);
    F.gw.cfg = F.cfg;
    F.gw.workers = &F.w;
    F.gw.nworkers = 1;
    if (worker_init(&F.w, &F.gw, 0, F.cfg, err, sizeof(err)) != 0)
        fail_msg("worker_init: %s", err);
}

static int setup(void **state)
{
    setup_with("64k", "ping_interval = 0\n");
    return 0;
}

static int teardown(void **state)
{
    if (F.cl >= 0)
        close(F.cl);
    if (F.be >= 0)
        close(F.be);
    assert_int_equal(F.w.nsessions, 0);
    assert_int_equal(F.w.nbusy, 0);
    assert_int_equal(F.w.pool.out, 0);
    assert_int_equal(F.gw.active, 0);
    worker_destroy(&F.w);
    config_unref(F.cfg);
    metrics_free(&F.gw.metrics);
    pthread_mutex_destroy(&F.gw.lock);
    close(F.lfd);
    char p[128];
    snprintf(p, sizeof(p), "%s/b.sock", F.dir);
    unlink(p);
    rmdir(F.dir);
    free(F.cr.p);
    free(F.br.p);
    return 0;
}

/* A new session whose client is one end of a socketpair (the test keeps the
 * other). sndbuf: SO_SNDBUFFORCE for the test's end (0 = default). */
static void start_client(int sndbuf)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
    if (sndbuf)
        assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)), 0);
    struct sockaddr_any peer = {.len = sizeof(struct sockaddr_in)};
    struct sockaddr_in *in = (struct sockaddr_in *)&peer.ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons(40000);
    unsigned before = F.w.nsessions;
    session_start(&F.w, sv[0], &peer, 0);
    assert_int_equal(F.w.nsessions, before + 1);
    F.sess_fd = sv[0];
    F.cl = sv[1];
}

/* Write all of p to fd, pumping the loop while the socket is full. */
static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    double end = now_s() + 20;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            assert_true(errno == EAGAIN || errno == EINTR);
            assert_true(now_s() < end);
            pump_once();
            continue;
        }
        b += k;
        n -= (size_t)k;
    }
}

static void cl_send(const void *p, size_t n)
{
    write_all(F.cl, p, n);
}

/* Bytes of one masked client frame into out; returns its length. */
static size_t client_frame(uint8_t *out, int op, const void *payload, size_t len, bool mask)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | op);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[h++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = mask ? src[i] ^ key[i & 3] : src[i];
    return h + len;
}

static void send_frame(int op, const void *payload, size_t len)
{
    uint8_t *f = malloc(len + 14);
    assert_non_null(f);
    cl_send(f, client_frame(f, op, payload, len, true));
    free(f);
}

static void send_close(uint16_t code, const char *reason)
{
    uint8_t p[125] = {(uint8_t)(code >> 8), (uint8_t)code};
    size_t n = strlen(reason);
    memcpy(p + 2, reason, n);
    send_frame(8, p, 2 + n);
}

struct sframe {
    int op;
    bool fin, masked;
    const uint8_t *payload;
    size_t len;
};

/* The next complete server frame in what the client received (consumed), or
 * false when none is complete yet. */
static bool next_frame(struct sframe *f)
{
    const uint8_t *p = F.cr.p + F.cr.pos;
    size_t avail = F.cr.len - F.cr.pos, h = 2;
    if (avail < 2)
        return false;
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        if (avail < 4)
            return false;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        if (avail < 10)
            return false;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        h = 10;
    }
    f->masked = p[1] & 0x80;
    if (f->masked)
        h += 4;
    if (avail < h + len)
        return false;
    f->fin = p[0] & 0x80;
    f->op = p[0] & 0x0f;
    f->payload = p + h;
    f->len = (size_t)len;
    F.cr.pos += h + (size_t)len;
    return true;
}

/* Wait for the next server frame. */
static void expect_frame(struct sframe *f, double secs)
{
    PUMP_UNTIL(next_frame(f), secs);
    assert_false(f->masked);
}

/* Wait for a close frame with code (and reason, unless NULL). */
static void expect_close(uint16_t code, const char *reason, double secs)
{
    struct sframe f = {0};
    PUMP_UNTIL(next_frame(&f), secs);
    assert_int_equal(f.op, 8);
    assert_true(f.len >= 2);
    assert_int_equal((f.payload[0] << 8) | f.payload[1], code);
    if (reason) {
        assert_int_equal(f.len - 2, strlen(reason));
        assert_memory_equal(f.payload + 2, reason, strlen(reason));
    }
}

/* Upgrade on path; the backend is accepted before this returns. */
static void upgrade(void)
{
    const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n";
    cl_send(req, strlen(req));
    PUMP_UNTIL(F.cr.len >= 4 && memmem(F.cr.p, F.cr.len, "\r\n\r\n", 4) && F.be >= 0, 2);
    uint8_t *end = memmem(F.cr.p, F.cr.len, "\r\n\r\n", 4);
    size_t head = (size_t)(end - F.cr.p) + 4;
    assert_memory_equal(F.cr.p, "HTTP/1.1 101 ", 13);
    assert_non_null(memmem(F.cr.p, head, "Sec-WebSocket-Accept: " ACCEPT "\r\n",
                           strlen("Sec-WebSocket-Accept: " ACCEPT "\r\n")));
    F.cr.pos = head;
}

/* An HTTP request with nothing after it; returns once the response and the
 * EOF after it arrived; the status line is checked. */
static void request_expect(const char *req, const char *status_line)
{
    cl_send(req, strlen(req));
    PUMP_UNTIL(F.cl_eof, 2);
    assert_true(F.cr.len > strlen(status_line));
    assert_memory_equal(F.cr.p, status_line, strlen(status_line));
}

static void close_client(void)
{
    close(F.cl);
    F.cl = -1;
}

/* Byte i of a test stream. */
static uint8_t pat(size_t i, unsigned seed)
{
    return (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* Collect the payload of data frames the client received into out, until
 * want bytes; control frames fail the test. */
static void client_data(struct bytes *out, size_t want, double secs)
{
    double end = now_s() + secs;
    while (out->len < want) {
        struct sframe f;
        if (!next_frame(&f)) {
            if (now_s() > end)
                fail_msg("client got %zu of %zu bytes", out->len, want);
            assert_false(F.cl_eof);
            pump_once();
            continue;
        }
        assert_true(f.op == 2 && !f.masked);
        bytes_add(out, f.payload, f.len);
    }
    assert_int_equal(out->len, want);
}

/* ---- upgrade and echo -------------------------------------------------- */

static void test_echo_both_ways(void **state)
{
    start_client(0);
    upgrade();
    /* client -> backend: frames of each length form, exact bytes */
    size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 200000};
    struct bytes want = {0};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++)
            p[k] = pat(want.len + k, 1);
        send_frame(2, p, sizes[i]);
        bytes_add(&want, p, sizes[i]);
        free(p);
    }
    PUMP_UNTIL(F.br.len >= want.len, 5);
    assert_int_equal(F.br.len, want.len);
    assert_memory_equal(F.br.p, want.p, want.len);

    /* backend -> client: binary frames holding exactly the bytes, in order */
    size_t n = 300000;
    uint8_t *down = malloc(n);
    for (size_t k = 0; k < n; k++)
        down[k] = pat(k, 2);
    write_all(F.be, down, n);
    struct bytes got = {0};
    client_data(&got, n, 5);
    assert_memory_equal(got.p, down, n);
    free(down);
    free(got.p);
    free(want.p);

    send_close(1000, "");
    expect_close(1000, NULL, 2);
    PUMP_UNTIL(F.cl_eof && F.be_eof, 2);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 1);
}

/* ---- close paths -------------------------------------------------------- */

/* The client's close frame: the reply is 1000, the backend gets EOF, and
 * with nothing unread from the client the session closes TCP at once (no
 * linger). */
static void test_client_close_frame(void **state)
{
    start_client(0);
    upgrade();
    send_frame(2, "abc", 3);
    send_close(1000, "bye");
    expect_close(1000, "", 2);
    PUMP_UNTIL(F.cl_eof && F.be_eof, 1);
    assert_int_equal(F.br.len, 3);
    assert_memory_equal(F.br.p, "abc", 3);
    PUMP_UNTIL(F.w.nsessions == 0, 0.5); /* nothing unread: no linger */
    close_client();
}

/* The backend's EOF: every byte it sent reaches the client, then close 1000;
 * the client's reply ends the session. */
static void test_backend_eof(void **state)
{
    start_client(0);
    upgrade();
    size_t n = 500000;
    uint8_t *p = malloc(n);
    for (size_t k = 0; k < n; k++)
        p[k] = pat(k, 3);
    write_all(F.be, p, n);
    shutdown(F.be, SHUT_WR);
    struct bytes got = {0};
    client_data(&got, n, 5);
    assert_memory_equal(got.p, p, n);
    expect_close(1000, "", 2);
    assert_false(F.be_eof); /* the client has not answered yet */
    send_close(1000, "");
    PUMP_UNTIL(F.cl_eof && F.be_eof, 1);
    assert_int_equal(F.cl_err, 0);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
    free(p);
    free(got.p);
}

/* The client drops TCP without a close frame: the backend is closed at once. */
static void test_client_drop(void **state)
{
    start_client(0);
    upgrade();
    send_frame(2, "xyz", 3);
    PUMP_UNTIL(F.br.len == 3, 1);
    double t0 = now_s();
    close_client();
    PUMP_UNTIL(F.be_eof, 0.5);
    assert_true(now_s() - t0 < 0.2);
    PUMP_UNTIL(F.w.nsessions == 0, 0.1);
}

/* An unmasked client frame: close 1002, nothing of it reaches the backend,
 * the client is not waited for. */
static void test_protocol_error(void **state)
{
    start_client(0);
    upgrade();
    uint8_t f[32];
    size_t n = client_frame(f, 2, "bad", 3, false);
    cl_send(f, n);
    expect_close(1002, NULL, 1);
    PUMP_UNTIL(F.cl_eof && F.be_eof, 1);
    assert_int_equal(F.br.len, 0);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* Reset the backend: close it with unread bytes in its receive queue (a Unix
 * socket's peer then reads ECONNRESET). */
static void reset_backend(void)
{
    F.be_reading = false;
    send_frame(2, "unread", 6);
    int q = 0;
    PUMP_UNTIL(ioctl(F.be, FIONREAD, &q) == 0 && q == 6, 1);
    close(F.be);
    F.be = -2; /* not -1: pump_once must not accept again */
}

/* A backend reset: close 1011. */
static void test_backend_reset(void **state)
{
    start_client(0);
    upgrade();
    reset_backend();
    expect_close(1011, "backend error", 1);
    send_close(1011, "");
    PUMP_UNTIL(F.cl_eof, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* After a backend error the session still reads the client's frames (their
 * payload discarded) and its close reply: the client sees an orderly EOF
 * promptly, not a reset and not the close timeout. */
static void test_close_after_backend_error_reads_reply(void **state)
{
    start_client(0);
    upgrade();
    reset_backend();
    expect_close(1011, NULL, 1);
    double t0 = now_s();
    send_frame(2, "late payload", 12);
    send_close(1000, "");
    PUMP_UNTIL(F.cl_eof || F.cl_err, CLOSE_WAIT + 1);
    assert_int_equal(F.cl_err, 0);
    assert_true(F.cl_eof);
    assert_true(now_s() - t0 < 0.5);
    struct sframe f;
    assert_false(next_frame(&f)); /* nothing after the close frame */
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* ---- timeouts ----------------------------------------------------------- */

static void test_handshake_timeout(void **state)
{
    start_client(0);
    double t0 = now_s();
    const char *part = "GET /ws HTTP/1.1\r\nHost: x\r\n";
    cl_send(part, strlen(part));
    PUMP_UNTIL(F.cl_eof, 2);
    double took = now_s() - t0;
    assert_true(took >= 0.29 && took < 0.6);
    assert_int_equal(F.cr.len, 0); /* closed without a response */
    PUMP_UNTIL(F.w.nsessions == 0, 0.1);
}

/* Connecting to a Unix path nobody listens on: 502, then the linger. */
static void test_connect_refused_502(void **state)
{
    start_client(0);
    request_expect("GET /dead HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   "HTTP/1.1 502 ");
    assert_non_null(memmem(F.cr.p, F.cr.len, "backend unavailable", 19));
    assert_int_equal(F.gw.active, 0); /* the slot went back with the answer */
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

static int setup_ping(void **state)
{
    setup_with("64k", "ping_interval = 200ms\npong_timeout = 300ms\n");
    return 0;
}

/* A ping after ping_interval of silence; a pong keeps the session; no
 * answer to the next drops it after pong_timeout (TCP closed, backend EOF). */
static void test_ping_then_pong_timeout(void **state)
{
    start_client(0);
    upgrade();
    double t0 = now_s();
    struct sframe f = {0};
    expect_frame(&f, 1);
    double t1 = now_s();
    assert_int_equal(f.op, 9);
    assert_true(t1 - t0 >= 0.19 && t1 - t0 < 0.4);
    send_frame(10, f.payload, f.len);
    expect_frame(&f, 1); /* the next ping, ping_interval after the pong */
    double t2 = now_s();
    assert_int_equal(f.op, 9);
    assert_true(t2 - t1 >= 0.19 && t2 - t1 < 0.4);
    PUMP_UNTIL(F.cl_eof, 1);
    double t3 = now_s();
    assert_true(t3 - t2 >= 0.29 && t3 - t2 < 0.5);
    PUMP_UNTIL(F.be_eof && F.w.nsessions == 0, 0.2);
}

static int setup_idle(void **state)
{
    setup_with("64k", "ping_interval = 0\nidle_timeout = 300ms\n");
    return 0;
}

/* idle_timeout: close 1001 "idle timeout"; a client that never answers it
 * is dropped after the close timeout. */
static void test_idle_then_close_timeout(void **state)
{
    start_client(0);
    upgrade();
    send_frame(2, "q", 1); /* payload resets the idle clock */
    double t0 = now_s();
    expect_close(1001, "idle timeout", 1);
    double t1 = now_s();
    assert_true(t1 - t0 >= 0.29 && t1 - t0 < 0.5);
    assert_int_equal(F.br.len, 1);
    pump_for(0.2);
    assert_false(F.be_eof); /* the client may still send until it answers */
    assert_int_equal(F.w.nsessions, 1);
    PUMP_UNTIL(F.cl_eof, CLOSE_WAIT + 1);
    double t2 = now_s();
    assert_true(t2 - t1 >= CLOSE_WAIT - 0.05 && t2 - t1 < CLOSE_WAIT + 0.5);
    PUMP_UNTIL(F.be_eof && F.w.nsessions == 0, 0.1);
}

/* ---- error responses and the linger ------------------------------------ */

/* 404: the response, TCP shut down; what the client still sends is read and
 * discarded (no reset) until LINGER runs out. */
static void test_404_and_linger(void **state)
{
    start_client(0);
    double t0 = now_s();
    /* 40 KB of junk pipelined after the head (the head read takes 16 KB of
     * it, a discarding read 4 KB more): still unread when the 404 is
     * out, so the session lingers (reading and discarding) instead of
     * closing at once, which could reset our 404 away. */
    static const char head[] = "GET /nothere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n";
    uint8_t req[sizeof(head) - 1 + 40000];
    memcpy(req, head, sizeof(head) - 1);
    memset(req + sizeof(head) - 1, 'j', 40000);
    cl_send(req, sizeof(req));
    PUMP_UNTIL(F.cl_eof, 2);
    assert_true(F.cr.len > 13);
    assert_memory_equal(F.cr.p, "HTTP/1.1 404 ", 13);
    int q = 1;
    PUMP_UNTIL(ioctl(F.sess_fd, FIONREAD, &q) == 0 && q == 0, 1); /* it was read */
    assert_int_equal(F.w.nsessions, 1);
    PUMP_UNTIL(F.w.nsessions == 0, LINGER + 1);
    double took = now_s() - t0;
    assert_true(took >= LINGER - 0.05 && took < LINGER + 0.5);
}

/* A 404 with nothing unread: closed at once. */
static void test_404_closes_at_once(void **state)
{
    start_client(0);
    request_expect("GET /nothere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   "HTTP/1.1 404 ");
    PUMP_UNTIL(F.w.nsessions == 0, 0.2);
}

/* 400 for a malformed head; the client's close ends the linger at once. */
static void test_400(void **state)
{
    start_client(0);
    request_expect("BLAH\r\n\r\n", "HTTP/1.1 400 ");
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.2);
}

/* ---- backpressure ------------------------------------------------------- */

/* A backend that reads nothing: the session stops reading the client and
 * holds one buffer (buffer_size) for that direction; once the backend reads,
 * every byte arrives in order. */
static void test_backpressure_backend_slow(void **state)
{
    start_client(0);
    upgrade();
    F.be_reading = false;
    size_t fl = 16384, sent = 0;
    uint8_t payload[16384], frame[16384 + 14];
    struct bytes want = {0};
    double last_progress = now_s();
    while (now_s() - last_progress < 0.3) {
        for (size_t k = 0; k < fl; k++)
            payload[k] = pat(sent + k, 4);
        size_t n = client_frame(frame, 2, payload, fl, true);
        /* one whole frame or nothing: retry while the session makes room */
        size_t off = 0;
        while (off < n && now_s() - last_progress < 0.3) {
            ssize_t k = write(F.cl, frame + off, n - off);
            if (k > 0) {
                off += (size_t)k;
                last_progress = now_s();
            } else {
                pump_once();
                usleep(200);
            }
        }
        if (off < n) { /* stuck inside a frame: finish it later */
            assert_true(F.w.pool.out <= 1);
            int q = 0;
            assert_int_equal(ioctl(F.sess_fd, FIONREAD, &q), 0);
            assert_true(q > 0); /* the session leaves the client's bytes unread */
            pump_for(0.2);
            int q2 = 0;
            assert_int_equal(ioctl(F.sess_fd, FIONREAD, &q2), 0);
            assert_int_equal(q2, q);
            assert_int_equal(F.w.pool.out, 1);
            F.be_reading = true;
            write_all(F.cl, frame + off, n - off);
        }
        bytes_add(&want, payload, fl);
        sent += fl;
        if (F.be_reading)
            break;
    }
    assert_true(F.be_reading);
    PUMP_UNTIL(F.br.len >= want.len, 5);
    assert_int_equal(F.br.len, want.len);
    assert_memory_equal(F.br.p, want.p, want.len);
    free(want.p);
    send_close(1000, "");
    expect_close(1000, NULL, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* A client that reads nothing: the session stops reading the backend and
 * holds one buffer for that direction; once the client reads, every byte. */
static void test_backpressure_client_slow(void **state)
{
    start_client(0);
    upgrade();
    F.cl_reading = false;
    size_t sent = 0;
    uint8_t chunk[8192];
    struct bytes want = {0};
    double last = now_s();
    while (now_s() - last < 0.3) {
        for (size_t k = 0; k < sizeof(chunk); k++)
            chunk[k] = pat(sent + k, 5);
        ssize_t n = write(F.be, chunk, sizeof(chunk));
        if (n > 0) {
            bytes_add(&want, chunk, (size_t)n);
            sent += (size_t)n;
            last = now_s();
        } else {
            pump_once();
            usleep(200);
        }
    }
    int q = 0, q2 = 0;
    assert_int_equal(ioctl(F.be, SIOCOUTQ, &q), 0);
    assert_true(q > 0); /* bytes the session does not read */
    pump_for(0.2);
    assert_int_equal(ioctl(F.be, SIOCOUTQ, &q2), 0);
    assert_int_equal(q2, q);
    assert_int_equal(F.w.pool.out, 1);
    assert_true(sent > 64 * 1024);
    F.cl_reading = true;
    struct bytes got = {0};
    client_data(&got, want.len, 5);
    assert_memory_equal(got.p, want.p, want.len);
    free(want.p);
    free(got.p);
    send_close(1000, "");
    expect_close(1000, NULL, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* ---- the per-wake-up budget and the ping flood ---------------------------- */

static int setup_16m(void **state)
{
    setup_with("16m", "ping_interval = 0\n");
    return 0;
}

/* buffer_size = 16m and 1 MiB of 1-byte frames already in the socket: one
 * loop iteration delivers at most 64 KiB + one frame of input (so at most
 * that many 1-byte payloads) to the backend; all of it arrives, exactly. */
static void test_budget_per_wakeup(void **state)
{
    start_client(8 << 20);
    upgrade();
    size_t nframes = (1 << 20) / 7; /* 7 bytes per masked 1-byte frame */
    uint8_t *wire = malloc(nframes * 7), *want = malloc(nframes);
    for (size_t i = 0; i < nframes; i++) {
        want[i] = pat(i, 6);
        client_frame(wire + 7 * i, 2, &want[i], 1, true);
    }
    ssize_t n = write(F.cl, wire, nframes * 7);
    assert_int_equal(n, (ssize_t)(nframes * 7)); /* all in the socket at once */
    size_t max_step = 0, steps = 0;
    double end = now_s() + 10;
    while (F.br.len < nframes && now_s() < end) {
        size_t before = F.br.len;
        ev_run(F.w.loop, EVRUN_NOWAIT);
        fill(F.be, &F.br, &F.be_eof, &F.be_err);
        size_t step = F.br.len - before;
        if (step > max_step)
            max_step = step;
        steps += step > 0;
    }
    print_message("budget: %zu frames in %zu iterations, at most %zu per iteration\n", nframes,
                  steps, max_step);
    assert_int_equal(F.br.len, nframes);
    assert_memory_equal(F.br.p, want, nframes);
    assert_true(max_step <= BUDGET / 7 + 1);
    assert_true(steps >= nframes * 7 / (BUDGET + 7));
    free(wire);
    free(want);
    send_close(1000, "");
    expect_close(1000, NULL, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* 10,000 pings in one write get few pongs (at most one per wake-up), and the
 * last pong carries the last ping's payload. */
static void test_ping_flood(void **state)
{
    start_client(8 << 20);
    upgrade();
    enum { PINGS = 10000, FL = 2 + 4 + 4 };
    uint8_t *wire = malloc(PINGS * FL);
    for (uint32_t i = 0; i < PINGS; i++) {
        uint8_t p[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        client_frame(wire + FL * i, 9, p, 4, true);
    }
    assert_int_equal(write(F.cl, wire, PINGS * FL), PINGS * FL);
    send_frame(2, "end", 3); /* once this reached the backend every ping was decoded */
    PUMP_UNTIL(F.br.len == 3, 5);
    pump_for(0.05);
    size_t pongs = 0;
    struct sframe f, last = {0};
    while (next_frame(&f)) {
        assert_int_equal(f.op, 10);
        assert_int_equal(f.len, 4);
        pongs++;
        last = f;
    }
    print_message("ping flood: %d pings (%d bytes) -> %zu pongs\n", PINGS, PINGS * FL, pongs);
    assert_true(pongs >= 1);
    assert_true(pongs <= (PINGS * FL + BUDGET - 1) / BUDGET + 1);
    uint8_t lastp[4] = {0, 0, (PINGS - 1) >> 8, (PINGS - 1) & 0xff};
    assert_memory_equal(last.payload, lastp, 4);
    free(wire);
    send_close(1000, "");
    expect_close(1000, NULL, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

/* ---- recording ---------------------------------------------------------- */

static char rec_dir[64];

/* Route r records into rec_dir; the writer's queue is 1 MiB (congested past
 * 512 KiB). */
static int setup_rec(void **state)
{
    snprintf(rec_dir, sizeof(rec_dir), "/tmp/test_session_rec.XXXXXX");
    assert_non_null(mkdtemp(rec_dir));
    char extra[128];
    snprintf(extra, sizeof(extra), "ping_interval = 0\nrecord = %s\n", rec_dir);
    setup_with("64k", extra);
    assert_int_equal(record_start(1 << 20), 0);
    return 0;
}

static int teardown_rec(void **state)
{
    record_hold(0);
    record_stop();
    teardown(state);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", rec_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* A writer that takes nothing (held, as a stuck disk would): past half the
 * queue the session stops reading; after RECORD_WAIT (1 s) it gives the
 * recording up ("stop queue-full", counted as stopped) and relays the rest:
 * every byte arrives, none is lost to the queue. */
static void test_record_stuck_writer(void **state)
{
    struct record_stats before, after;
    record_get_stats(&before);
    start_client(0);
    upgrade();
    record_hold(1);
    size_t n = 4 << 20;
    uint8_t *down = malloc(n);
    for (size_t k = 0; k < n; k++)
        down[k] = pat(k, 5);
    struct bytes got = {0};
    size_t off = 0;
    double t0 = now_s();
    /* the backend writes what its socket takes; the client reads everything */
    while (got.len < n) {
        if (off < n) {
            ssize_t k = write(F.be, down + off, n - off);
            off += k > 0 ? (size_t)k : 0;
        }
        pump_once();
        struct sframe f;
        while (next_frame(&f))
            bytes_add(&got, f.payload, f.len);
        if (now_s() - t0 < 0.5) /* waiting: no more than the queue's half and one read */
            assert_true(got.len <= (512u << 10) + (64u << 10));
        assert_true(now_s() - t0 < 10);
    }
    assert_memory_equal(got.p, down, n);
    record_hold(0);
    record_flush();
    record_get_stats(&after);
    assert_int_equal(after.stopped - before.stopped, 1);
    assert_true(after.bytes_dropped - before.bytes_dropped > 0);
    free(down);
    free(got.p);
    send_close(1000, "");
    expect_close(1000, NULL, 1);
    close_client();
    PUMP_UNTIL(F.w.nsessions == 0, 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_close_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_after_backend_error_reads_reply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_then_pong_timeout, setup_ping, teardown),
        cmocka_unit_test_setup_teardown(test_idle_then_close_timeout, setup_idle, teardown),
        cmocka_unit_test_setup_teardown(test_404_and_linger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_closes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_backend_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_client_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_per_wakeup, setup_16m, teardown),
        cmocka_unit_test_setup_teardown(test_ping_flood, setup_16m, teardown),
        cmocka_unit_test_setup_teardown(test_record_stuck_writer, setup_rec, teardown_rec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
