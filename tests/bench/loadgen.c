/* loadgen.c - WebSocket and raw TCP load generator for the benchmarks.
 *
 * usage: loadgen -m MODE [options] HOST:PORT      (loadgen -h lists options)
 *
 * Modes, all against an echo service (directly, or through a relay):
 *   bulk     N connections each keep WINDOW messages of SIZE bytes in flight
 *            and read the echo back; reports payload MB/s echoed (10^6 bytes,
 *            one direction counted).
 *   latency  N connections each send one SIZE-byte message, wait for its echo,
 *            and repeat; reports round-trip percentiles in microseconds.
 *   churn    N concurrent workers loop: connect, (upgrade), one echo,
 *            (close handshake), close; reports completed cycles per second.
 *   idle     open N connections (at most -C handshakes in flight), then hold
 *            them for --hold seconds or until SIGINT/SIGTERM/SIGUSR1; reports
 *            the time to open them all.
 *
 * Every echoed byte is checked against the connection's own pattern (each
 * connection repeats one SIZE-byte payload made from its own seed), so lost,
 * duplicated, reordered or crossed bytes are reported as verify failures.
 * WebSocket mode performs the RFC 6455 client handshake (the accept key is
 * checked), sends masked binary frames, and parses server frames of any size
 * and fragmentation; pings get pongs. --tls puts TLS under either protocol
 * (wss://; no certificate verification, SNI only with --sni), non-blocking:
 * SSL_ERROR_WANT_READ/WANT_WRITE become epoll interest, a blocked SSL_write is
 * retried with the same bytes, and reads drain what OpenSSL already holds
 * (SSL_pending) before waiting for epoll again. --watch-pid PID reads the CPU time
 * (including reaped children) of PID over the measured window and its VmRSS
 * before and after opening connections, so the runner can attribute cost to
 * the relay under test.
 *
 * One JSON object is printed on stdout at the end (idle mode prints an
 * {"event":"open"} line first, once every connection is open); a human
 * summary goes to stderr. Threads (-t) split the connections; each runs its
 * own epoll loop and the main thread only coordinates and measures. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define PROG "loadgen"
#define EVENTS_MAX 256
#define SCRATCH_SIZE (256 * 1024)
#define HS_MAX 2048u /* largest upgrade response accepted */
#define IOV_USED 64
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { M_BULK, M_LATENCY, M_CHURN, M_IDLE };
static const char *const mode_names[] = {"bulk", "latency", "churn", "idle"};

enum phase { PH_WARMUP, PH_MEASURE, PH_STOP };

enum cstate { CS_IDLE, CS_CONNECTING, CS_TLS, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_DEAD };

/* A TLS write that must be retried with the same buffer (OpenSSL's rule). */
enum { WR_NONE, WR_DATA, WR_CONTROL };

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

static struct options {
    const char *target;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *path;
    const char *label;
    enum mode mode;
    bool ws;
    bool tls;    /* TLS to the target (wss://), no certificate verification */
    bool resume; /* churn with TLS: offer each slot's last session again */
    const char *sni;
    const char *host; /* Host header (default: the target HOST:PORT) */
    int conns;
    int threads;
    int window;
    int pace; /* connections opening at once (all threads) */
    size_t size;
    double duration;
    double warmup;
    double hold;
    long samples;
    int watch_pid;
} opt = {
    .path = "/",
    .label = "",
    .mode = M_BULK,
    .ws = true,
    .conns = 1,
    .threads = 1,
    .window = 4,
    .pace = 256,
    .size = 65536,
    .duration = 5,
    .warmup = 0.5,
    .hold = 0,
    .samples = 20000,
};

struct thread;

/* Per-thread counters the main thread samples. */
enum counter {
    CNT_BYTES,       /* payload bytes echoed back */
    CNT_CYCLES,      /* churn cycles completed */
    CNT_OPENED,      /* connections opened for the first time */
    CNT_OPEN_FAILED, /* connections that failed before they opened */
    CNT_RESUMED,     /* churn --resume: cycles whose TLS handshake resumed */
    N_COUNTERS
};

/* One client connection; in churn mode one worker slot reused per cycle.
 * conn_start() zeroes the fields from state up to (not including) hs. */
struct conn {
    struct thread *t;
    uint8_t *frame;   /* one data frame: header + masked payload (raw: payload) */
    uint8_t *pattern; /* the payload, as it must come back */
    size_t frame_len;
    uint8_t mask[4]; /* masking key of every frame this connection sends */
    uint32_t gen;    /* bumped whenever the socket is closed */
    int fd;
    uint8_t state;
    uint8_t events;    /* EPOLL interest now registered (EPOLLIN/EPOLLOUT bits) */
    bool want_out;     /* a write was blocked: wait for EPOLLOUT */
    bool pacing;       /* counted in the thread's opening budget */
    bool in_payload;   /* frame parser: inside a frame's payload */
    bool rd_want_out;  /* TLS: SSL_read wants the socket writable */
    uint8_t wretry;    /* TLS: WR_* write to retry with the same buffer */
    uint8_t hdr_len;   /* frame parser: header bytes collected */
    uint8_t opcode;    /* frame parser: opcode of the current frame */
    uint8_t ctrl_len;  /* frame parser: control payload collected */
    uint8_t pend_off;  /* outgoing control frame: bytes written */
    uint8_t pend_len;  /* outgoing control frame: length, 0 = none */
    uint16_t hs_len;   /* handshake response bytes collected */
    uint32_t out_off;  /* bytes of the current data frame written */
    uint64_t left;     /* frame parser: payload bytes left in this frame */
    uint64_t started;  /* data frames started (fully or partly written) */
    uint64_t recv;     /* payload bytes echoed back */
    uint64_t t_send;   /* latency: when the outstanding message was sent */
    char accept[32];   /* expected Sec-WebSocket-Accept */
    uint8_t hdr[14];   /* frame parser: header being collected */
    uint8_t ctrl[125]; /* frame parser: control frame payload */
    uint8_t pend[131]; /* outgoing control frame */
    char *hs;          /* handshake response being collected */
    SSL *ssl;          /* --tls: the session on fd */
    SSL_SESSION *sess; /* --resume: the session the next cycle offers */
};

struct thread {
    pthread_t tid;
    int ep;
    struct conn *conns;
    int nconns;
    int next_open; /* next connection to open for the first time */
    int opening;   /* paced connections not yet open or failed */
    int pace;      /* this thread's share of opt.pace */
    int alive;     /* connections not dead (bulk, latency, idle) */
    uint64_t rng;
    uint8_t *scratch;
    uint64_t *samples;
    long quota; /* latency samples this thread records */
    long nsamples;
    uint64_t errors;
    uint64_t verify_failures;
    char first_error[160];
    char tls_desc[64];                  /* --tls: protocol and cipher of the first session */
    _Atomic uint64_t count[N_COUNTERS]; /* read by the main thread while running */
    _Atomic bool done;                  /* the thread left its loop */
};

static SSL_CTX *ssl_ctx; /* --tls */
static _Atomic int phase = PH_WARMUP;
static volatile sig_atomic_t got_signal;

static void conn_send(struct conn *c);
static void conn_start(struct conn *c, bool paced);

/* The next xorshift64* pseudo-random number from state *s (never 0). */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Write a masked client frame header for a payload of len bytes into h;
 * returns its length (6, 8 or 14). */
static size_t ws_header(uint8_t *h, int opcode, uint64_t len, const uint8_t mask[4])
{
    size_t n;
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
        n = 2;
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(h + n, mask, 4);
    return n + 4;
}

/* Build a complete masked frame of payload p (len bytes) into out; returns its
 * length. out must hold len + 14 bytes. */
static size_t ws_frame(uint8_t *out, int opcode, const uint8_t *p, size_t len,
                       const uint8_t mask[4])
{
    size_t h = ws_header(out, opcode, len, mask);
    for (size_t i = 0; i < len; i++)
        out[h + i] = p[i] ^ mask[i & 3];
    return h + len;
}

/* Fill c->accept with the Sec-WebSocket-Accept a server must answer to key. */
static void ws_expect_accept(struct conn *c, const char *key)
{
    char buf[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)c->accept, md, (int)mdlen);
}

static double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* Record why c failed (the first failure of each thread is kept verbatim). */
static void note_error(struct thread *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_error(struct thread *t, const char *fmt, ...)
{
    if (t->errors++ > 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_error, sizeof(t->first_error), fmt, ap);
    va_end(ap);
    for (char *p = t->first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
}

/* Register the epoll interest c needs now: EPOLLOUT while connecting or while
 * a write (or a TLS read or handshake) waits for it, EPOLLIN once connected. */
static void conn_watch(struct conn *c)
{
    uint8_t ev = c->state == CS_CONNECTING
                     ? EPOLLOUT
                     : (EPOLLIN | (c->want_out || c->rd_want_out ? EPOLLOUT : 0));
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(c->t->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e);
    c->events = ev;
}

static void count_add(struct thread *t, enum counter which, uint64_t n)
{
    atomic_fetch_add_explicit(&t->count[which], n, memory_order_relaxed);
}

/* Leave the opening budget: c opened or failed before opening. */
static void conn_paced_done(struct conn *c, bool ok)
{
    if (!c->pacing)
        return;
    c->pacing = false;
    c->t->opening--;
    count_add(c->t, ok ? CNT_OPENED : CNT_OPEN_FAILED, 1);
}

/* Close c's socket and free its handshake buffer. */
static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->gen++;
    }
    c->fd = -1;
    c->events = 0;
    free(c->hs);
    c->hs = NULL;
}

/* Count an error of c (what, and errno err when not 0) and close c. */
static void conn_error(struct conn *c, const char *what, int err)
{
    note_error(c->t, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    conn_paced_done(c, false);
    conn_close(c);
}

/* End c for good after an error. */
static void conn_die(struct conn *c, const char *what, int err)
{
    conn_error(c, what, err);
    c->state = CS_DEAD;
    c->t->alive--;
}

/* End c after an error on its socket; in churn mode start the slot again (the
 * run's duration bounds a failing server). */
static void conn_fail(struct conn *c, const char *what, int err)
{
    if (opt.mode != M_CHURN || atomic_load(&phase) == PH_STOP) {
        conn_die(c, what, err);
        return;
    }
    conn_error(c, what, err);
    conn_start(c, false);
}

/* A churn cycle is complete: count it and start the next one. */
static void conn_cycle_done(struct conn *c)
{
    if (opt.resume && c->ssl) {
        if (SSL_session_reused(c->ssl))
            count_add(c->t, CNT_RESUMED, 1);
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(c->sess);
            c->sess = s;
        } else {
            SSL_SESSION_free(s);
        }
        /* SSL_free() of a connection not shut down marks its session not
         * resumable; the cycle ended cleanly, so say it was shut down. */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    conn_close(c);
    count_add(c->t, CNT_CYCLES, 1);
    if (atomic_load(&phase) != PH_STOP) {
        conn_start(c, false);
        return;
    }
    c->state = CS_DEAD;
    c->t->alive--;
}

/* Fail c after the TLS call what returned SSL_get_error() code e, with
 * OpenSSL's reason when it queued one. */
static void tls_fail(struct conn *c, const char *what, int e)
{
    unsigned long code = ERR_get_error();
    int err = errno;
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && code == 0 && err == 0)) {
        conn_fail(c, "connection closed by server", 0);
        return;
    }
    if (code == 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%s: SSL error %d", what, e);
        conn_fail(c, msg, e == SSL_ERROR_SYSCALL ? err : 0);
        return;
    }
    char reason[120], msg[160];
    ERR_error_string_n(code, reason, sizeof(reason));
    snprintf(msg, sizeof(msg), "%s: %s", what, reason);
    conn_fail(c, msg, 0);
}

/* Read up to len bytes of c's stream (TLS or not) into buf. Returns the
 * bytes read (> 0); 0 when nothing is there now (wait for the next event);
 * -1 when c failed (end of stream or error). */
static ssize_t conn_recv(struct conn *c, uint8_t *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n = read(c->fd, buf, len);
        if (n > 0)
            return n;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        conn_fail(c, n == 0 ? "connection closed by server" : "read", n == 0 ? 0 : errno);
        return -1;
    }
    ERR_clear_error();
    c->rd_want_out = false;
    int n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->rd_want_out = true; /* conn_event reads again once writable */
        return 0;
    }
    tls_fail(c, "TLS read", e);
    return -1;
}

/* Write len bytes at p to c's stream. Returns the bytes taken (> 0); 0 when
 * the write is blocked (want_out is set when it waits for EPOLLOUT; EPOLLIN is
 * always watched); -1 when c failed. A blocked TLS write must be retried with
 * the same bytes: the callers track that in c->wretry. */
static ssize_t conn_write(struct conn *c, const uint8_t *p, size_t len)
{
    if (!c->ssl) {
        ssize_t w = write(c->fd, p, len);
        if (w >= 0)
            return w;
        if (errno == EAGAIN || errno == EINTR) {
            c->want_out = true;
            return 0;
        }
        conn_fail(c, "write", errno);
        return -1;
    }
    ERR_clear_error();
    int w = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (w > 0)
        return w;
    int e = SSL_get_error(c->ssl, w);
    if (e == SSL_ERROR_WANT_WRITE) {
        c->want_out = true;
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    tls_fail(c, "TLS write", e);
    return -1;
}

/* Prepare c's data frame and the pattern it must get back (once per slot). */
static int conn_alloc_frame(struct conn *c)
{
    uint32_t m = (uint32_t)rng_next(&c->t->rng);
    memcpy(c->mask, &m, 4);
    if (opt.mode == M_IDLE)
        return 0;
    c->pattern = malloc(opt.size);
    c->frame = malloc(opt.size + 14);
    if (!c->pattern || !c->frame)
        return -1;
    uint64_t x = rng_next(&c->t->rng) | 1;
    for (size_t i = 0; i < opt.size; i++)
        c->pattern[i] = (uint8_t)(rng_next(&x) >> 56);
    if (opt.ws) {
        c->frame_len = ws_frame(c->frame, OP_BIN, c->pattern, opt.size, c->mask);
    } else {
        memcpy(c->frame, c->pattern, opt.size);
        c->frame_len = opt.size;
    }
    return 0;
}

/* Open a new connection (or the next churn cycle) for slot c; a paced one
 * counts against the thread's opening budget until it opens or fails. */
static void conn_start(struct conn *c, bool paced)
{
    memset(&c->state, 0, offsetof(struct conn, hs) - offsetof(struct conn, state));
    c->hs = NULL;
    c->pacing = paced;
    c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_die(c, "socket", errno);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = CS_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0 && errno != EINPROGRESS) {
        conn_die(c, "connect", errno); /* e.g. no local port left: retrying would spin */
        return;
    }
    conn_watch(c);
}

/* Open more connections while the thread's opening budget allows. */
static void open_more(struct thread *t)
{
    while (t->opening < t->pace && t->next_open < t->nconns) {
        t->opening++;
        conn_start(&t->conns[t->next_open++], true);
    }
}

/* The connection is ready for payload (raw: connected; WebSocket: upgraded). */
static void conn_opened(struct conn *c)
{
    c->state = CS_OPEN;
    conn_paced_done(c, true);
    conn_send(c);
}

/* The stream is up (connected; with --tls, the TLS handshake done): send the
 * upgrade request, or start the payload in raw mode. */
static void conn_stream_ready(struct conn *c)
{
    if (!opt.ws) {
        conn_opened(c);
        return;
    }
    uint8_t raw[16];
    char key[32], req[512];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next(&c->t->rng);
        memcpy(raw + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)key, raw, 16);
    ws_expect_accept(c, key);
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host ? opt.host : opt.target, key);
    c->want_out = false;
    ssize_t w = conn_write(c, (const uint8_t *)req, (size_t)n);
    if (w < 0)
        return;
    if (w != n) { /* a fresh socket takes ~200 bytes at once: no retry logic */
        conn_fail(c, "write upgrade request: short write", 0);
        return;
    }
    c->state = CS_HANDSHAKE;
    conn_watch(c);
}

/* Drive c's TLS handshake as far as the socket allows; when it is done, go on
 * with the upgrade request. */
static void conn_tls_step(struct conn *c)
{
    ERR_clear_error();
    c->want_out = false;
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        struct thread *t = c->t;
        if (!t->tls_desc[0])
            snprintf(t->tls_desc, sizeof(t->tls_desc), "%s %s", SSL_get_version(c->ssl),
                     SSL_get_cipher_name(c->ssl));
        conn_stream_ready(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE) {
        c->want_out = true;
    } else if (e != SSL_ERROR_WANT_READ) {
        tls_fail(c, "TLS handshake", e);
        return;
    }
    conn_watch(c);
}

/* Connect finished: check its result, then start TLS or the upgrade. */
static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_fail(c, "connect", err);
        return;
    }
    if (!opt.tls) {
        conn_stream_ready(c);
        return;
    }
    c->ssl = SSL_new(ssl_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
        (opt.sni && !SSL_set_tlsext_host_name(c->ssl, opt.sni))) {
        tls_fail(c, "TLS setup", SSL_ERROR_SSL);
        return;
    }
    if (opt.resume && c->sess && SSL_set_session(c->ssl, c->sess) != 1) {
        tls_fail(c, "TLS session", SSL_ERROR_SSL);
        return;
    }
    SSL_set_connect_state(c->ssl);
    c->state = CS_TLS;
    conn_tls_step(c);
}

/* Count n echoed payload bytes at p and check them against the pattern. */
static void on_payload(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->recv + n > c->started * opt.size) {
        c->t->verify_failures++;
        conn_fail(c, "more bytes echoed than sent", 0);
        return;
    }
    for (size_t done = 0; done < n;) {
        size_t off = (size_t)((c->recv + done) % opt.size);
        size_t k = opt.size - off < n - done ? opt.size - off : n - done;
        if (memcmp(p + done, c->pattern + off, k) != 0) {
            c->t->verify_failures++;
            conn_fail(c, "echoed bytes differ from those sent", 0);
            return;
        }
        done += k;
    }
    c->recv += n;
    count_add(c->t, CNT_BYTES, n);
    if (c->recv != c->started * opt.size || c->out_off != 0)
        return;
    /* Everything sent has come back. */
    if (opt.mode == M_LATENCY) {
        struct thread *t = c->t;
        if (atomic_load_explicit(&phase, memory_order_relaxed) == PH_MEASURE &&
            t->nsamples < t->quota)
            t->samples[t->nsamples++] = bench_now_ns() - c->t_send;
    } else if (opt.mode == M_CHURN) {
        if (!opt.ws) {
            conn_cycle_done(c);
            return;
        }
        static const uint8_t code[2] = {0x03, 0xe8};
        c->pend_len = (uint8_t)ws_frame(c->pend, OP_CLOSE, code, 2, c->mask);
        c->pend_off = 0;
        c->state = CS_CLOSING;
    }
}

/* A whole server frame (data or control) has been parsed. */
static void on_frame_end(struct conn *c)
{
    switch (c->opcode) {
    case OP_CLOSE:
        if (c->state == CS_CLOSING) {
            conn_cycle_done(c);
            return;
        }
        char what[64];
        snprintf(what, sizeof(what), "server sent close %u",
                 c->ctrl_len >= 2 ? (unsigned)(c->ctrl[0] << 8 | c->ctrl[1]) : 1005u);
        conn_fail(c, what, 0);
        return;
    case OP_PING:
        if (c->pend_len == 0) {
            c->pend_len = (uint8_t)ws_frame(c->pend, OP_PONG, c->ctrl, c->ctrl_len, c->mask);
            c->pend_off = 0;
        }
        return;
    default:
        return;
    }
}

/* Parse a complete server frame header in c->hdr (c->hdr_len bytes, already
 * known to be complete). Returns 0, or -1 after failing c. */
static int ws_parse_header(struct conn *c)
{
    uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
    uint64_t len = b1 & 0x7f;
    if (len == 126)
        len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
    else if (len == 127)
        for (int i = 0; i < 8; i++)
            len = (i ? len << 8 : 0) | c->hdr[2 + i];
    c->opcode = b0 & 0x0f;
    bool control = c->opcode >= 8;
    bool known = c->opcode <= OP_BIN || (control && c->opcode <= OP_PONG);
    if ((b0 & 0x70) || (b1 & 0x80) || !known || (control && (len > 125 || !(b0 & 0x80)))) {
        conn_fail(c, "invalid frame from server", 0);
        return -1;
    }
    c->left = len;
    c->ctrl_len = 0;
    c->hdr_len = 0;
    c->in_payload = true;
    return 0;
}

/* Feed n bytes of server frames to c's parser. Returns 0, or -1 when c ended
 * (failed or finished its cycle) and the rest must be dropped. */
static int ws_feed(struct conn *c, const uint8_t *p, size_t n)
{
    uint32_t gen = c->gen;
    while (n > 0) {
        if (!c->in_payload) {
            size_t need = 2;
            if (c->hdr_len >= 2) {
                uint8_t l7 = c->hdr[1] & 0x7f;
                need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
            }
            size_t k = need - c->hdr_len < n ? need - c->hdr_len : n;
            memcpy(c->hdr + c->hdr_len, p, k);
            c->hdr_len = (uint8_t)(c->hdr_len + k);
            p += k;
            n -= k;
            if (c->hdr_len < 2 || c->hdr_len < need || (need == 2 && (c->hdr[1] & 0x7f) >= 126))
                continue;
            if (ws_parse_header(c) < 0)
                return -1;
        } else {
            size_t k = c->left < n ? (size_t)c->left : n;
            if (c->opcode >= 8) {
                memcpy(c->ctrl + c->ctrl_len, p, k);
                c->ctrl_len = (uint8_t)(c->ctrl_len + k);
            } else {
                on_payload(c, p, k);
                if (c->gen != gen)
                    return -1;
            }
            c->left -= k;
            p += k;
            n -= k;
        }
        if (c->in_payload && c->left == 0) {
            c->in_payload = false;
            on_frame_end(c);
            if (c->gen != gen)
                return -1;
        }
    }
    return 0;
}

/* Collect the upgrade response; once complete, check it and pass any frame
 * bytes behind it to the parser. Returns 0, or -1 when c failed. */
static int handshake_feed(struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->hs && !(c->hs = malloc(HS_MAX + 1))) {
        conn_fail(c, "out of memory", 0);
        return -1;
    }
    size_t k = HS_MAX - c->hs_len < n ? HS_MAX - c->hs_len : n;
    memcpy(c->hs + c->hs_len, p, k);
    c->hs_len = (uint16_t)(c->hs_len + k);
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len == HS_MAX) {
            conn_fail(c, "upgrade response too long", 0);
            return -1;
        }
        return 0;
    }
    *end = '\0';
    bool ok = strncmp(c->hs, "HTTP/1.1 101 ", 13) == 0;
    const char *h = c->hs;
    bool accepted = false;
    while (ok && (h = strstr(h, "\r\n")) != NULL) {
        h += 2;
        if (strncasecmp(h, "Sec-WebSocket-Accept:", 21) == 0) {
            const char *v = h + 21;
            while (*v == ' ' || *v == '\t')
                v++;
            accepted = strncmp(v, c->accept, 28) == 0;
        }
    }
    if (!ok || !accepted) {
        char what[128];
        char *eol = strstr(c->hs, "\r\n");
        if (eol)
            *eol = '\0';
        snprintf(what, sizeof(what), "upgrade refused: %.60s%s", c->hs,
                 ok ? " (bad Sec-WebSocket-Accept)" : "");
        conn_fail(c, what, 0);
        return -1;
    }
    /* Frame bytes behind the head: the tail of this read, copied or not. */
    size_t tail = c->hs_len - ((size_t)(end - c->hs) + 4);
    const uint8_t *extra = p + (k - tail);
    size_t extra_len = n - (k - tail);
    uint32_t gen = c->gen;
    free(c->hs);
    c->hs = NULL;
    conn_opened(c);
    if (c->gen != gen)
        return -1;
    return extra_len ? ws_feed(c, extra, extra_len) : 0;
}

/* Read what c's stream has and process it. */
static void conn_read(struct conn *c)
{
    struct thread *t = c->t;
    /* TLS reads until OpenSSL wants the socket: bytes it holds already
     * (SSL_pending) would get no epoll event. Each connection's echo is
     * bounded by its window, so this ends. */
    for (int round = 0; c->ssl || round < 4; round++) {
        ssize_t n = conn_recv(c, t->scratch, SCRATCH_SIZE);
        if (n <= 0)
            return;
        int r;
        if (c->state == CS_HANDSHAKE)
            r = handshake_feed(c, t->scratch, (size_t)n);
        else if (opt.ws)
            r = ws_feed(c, t->scratch, (size_t)n);
        else {
            uint32_t gen = c->gen;
            on_payload(c, t->scratch, (size_t)n);
            r = c->gen != gen ? -1 : 0;
        }
        if (r < 0 || (!c->ssl && (size_t)n < SCRATCH_SIZE))
            return;
    }
}

/* How many new data frames c may start now. */
static uint64_t frames_allowed(const struct conn *c)
{
    if (c->state != CS_OPEN || opt.mode == M_IDLE)
        return 0;
    if (opt.mode == M_CHURN)
        return c->started ? 0 : 1;
    uint64_t inflight = c->started * opt.size - c->recv;
    uint64_t win = (opt.mode == M_LATENCY ? 1 : (uint64_t)opt.window) * opt.size;
    return inflight >= win ? 0 : (win - inflight) / opt.size;
}

/* Write the pending control frame, if any, at a frame boundary. Returns true
 * when the socket took all of it. */
static bool conn_send_control(struct conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t w = conn_write(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (w <= 0) {
            if (w == 0)
                c->wretry = WR_CONTROL;
            return false;
        }
        c->wretry = WR_NONE;
        c->pend_off = (uint8_t)(c->pend_off + w);
    }
    c->pend_len = c->pend_off = 0;
    return true;
}

/* conn_send over TLS: one SSL_write per frame (or per record, as partial
 * writes are on). A data frame counts as started at its first SSL_write,
 * since part of it may reach the server even when the call reports WANT_*;
 * a blocked write is retried with the same bytes before anything else. */
static void conn_send_tls(struct conn *c)
{
    uint32_t gen = c->gen;
    c->want_out = false;
    for (;;) {
        if (c->out_off == 0 && c->wretry != WR_DATA && c->pend_len && !conn_send_control(c))
            break;
        if (c->out_off == 0 && c->wretry == WR_NONE) {
            if (frames_allowed(c) == 0)
                break;
            c->started++;
            c->t_send = bench_now_ns();
        }
        ssize_t w = conn_write(c, c->frame + c->out_off, c->frame_len - c->out_off);
        if (w <= 0) {
            if (w == 0)
                c->wretry = WR_DATA;
            break;
        }
        c->wretry = WR_NONE;
        c->out_off += (uint32_t)w;
        if (c->out_off == c->frame_len)
            c->out_off = 0;
    }
    if (c->gen == gen)
        conn_watch(c);
}

/* Write as many data frames as the window allows (one writev, the same frame
 * repeated), then any control frame, and register the interest this leaves. */
static void conn_send(struct conn *c)
{
    if (c->ssl) {
        conn_send_tls(c);
        return;
    }
    uint32_t gen = c->gen;
    c->want_out = false;
    for (;;) {
        if (c->out_off == 0 && c->pend_len && !conn_send_control(c))
            break;
        struct iovec iov[IOV_USED];
        int niov = 0;
        if (c->out_off) {
            iov[niov].iov_base = c->frame + c->out_off;
            iov[niov++].iov_len = c->frame_len - c->out_off;
        }
        uint64_t fresh = frames_allowed(c);
        for (uint64_t i = 0; i < fresh && niov < IOV_USED; i++) {
            iov[niov].iov_base = c->frame;
            iov[niov++].iov_len = c->frame_len;
        }
        if (niov == 0)
            break;
        if (c->out_off == 0)
            c->t_send = bench_now_ns();
        ssize_t w = writev(c->fd, iov, niov);
        if (w < 0) {
            if (errno == EAGAIN) {
                c->want_out = true;
                break;
            }
            conn_fail(c, "write", errno);
            return;
        }
        size_t left = (size_t)w;
        if (c->out_off) {
            size_t k = c->frame_len - c->out_off;
            if (left < k) {
                c->out_off += (uint32_t)left;
                c->want_out = true;
                break;
            }
            left -= k;
            c->out_off = 0;
        }
        c->started += left / c->frame_len;
        if (left % c->frame_len) {
            c->started++;
            c->out_off = (uint32_t)(left % c->frame_len);
            c->want_out = true;
            break;
        }
    }
    if (c->gen == gen)
        conn_watch(c);
}

/* Handle epoll events for c. */
static void conn_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_CONNECTING) {
        conn_connected(c);
        return;
    }
    if (c->state == CS_TLS) {
        conn_tls_step(c);
        return;
    }
    uint32_t gen = c->gen;
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->rd_want_out && (ev & EPOLLOUT)))
        conn_read(c);
    if (c->gen == gen && (c->state == CS_OPEN || c->state == CS_CLOSING))
        conn_send(c);
    else if (c->gen == gen)
        conn_watch(c); /* e.g. a TLS read in the upgrade that wants EPOLLOUT */
}

static void *thread_main(void *arg)
{
    struct thread *t = arg;
    struct epoll_event evs[EVENTS_MAX];
    open_more(t);
    while (atomic_load(&phase) != PH_STOP && t->alive > 0) {
        if (opt.mode == M_LATENCY && t->nsamples >= t->quota)
            break;
        int n = epoll_wait(t->ep, evs, EVENTS_MAX, 20);
        for (int i = 0; i < n; i++)
            conn_event(evs[i].data.ptr, evs[i].events);
        open_more(t);
    }
    atomic_store(&t->done, true);
    return NULL;
}

/* Read /proc/PID/stat: the parent pid, and the CPU clock ticks used (utime +
 * stime, plus cutime + cstime of reaped children when with_reaped). Returns
 * the ticks, or -1. */
static long long proc_stat_ticks(const char *pid, int *ppid, bool with_reaped)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long v[4];
    /* fields after ")": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) */
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", ppid,
                     &v[0], &v[1], &v[2], &v[3]) != 5)
        return -1;
    return (long long)(v[0] + v[1] + (with_reaped ? v[2] + v[3] : 0));
}

/* CPU seconds used by pid, its reaped children and its live children (a
 * forking server such as websockify runs one child per connection), or -1. */
static double proc_cpu_s(int pid)
{
    char me[16];
    int ppid;
    snprintf(me, sizeof(me), "%d", pid);
    long long ticks = proc_stat_ticks(me, &ppid, true);
    if (ticks < 0)
        return -1;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        long long t = proc_stat_ticks(e->d_name, &ppid, false);
        if (t > 0 && ppid == pid)
            ticks += t;
    }
    if (d)
        closedir(d);
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of pid in KiB, or -1. */
static long proc_rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static struct thread *threads;

/* One counter summed over all threads. */
static uint64_t sum(enum counter which)
{
    uint64_t s = 0;
    for (int i = 0; i < opt.threads; i++)
        s += atomic_load_explicit(&threads[i].count[which], memory_order_relaxed);
    return s;
}

static bool all_done(void)
{
    for (int i = 0; i < opt.threads; i++)
        if (!atomic_load(&threads[i].done))
            return false;
    return true;
}

/* Sleep until deadline (monotonic ns), a signal, or every thread has left
 * its loop. With deadline 0, only the other two end the wait. */
static void wait_until(uint64_t deadline)
{
    while ((deadline == 0 || bench_now_ns() < deadline) && !got_signal && !all_done()) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Wait until every connection opened or failed; returns the seconds it took
 * since start, or -1 when a limit of 120 s was hit. */
static double wait_opened(uint64_t start)
{
    while (sum(CNT_OPENED) + sum(CNT_OPEN_FAILED) < (uint64_t)opt.conns) {
        if (got_signal || all_done() || bench_now_ns() - start > 120ull * 1000000000u)
            return -1;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return ns_to_s(bench_now_ns() - start);
}

static void on_signal(int sig)
{
    got_signal = sig;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of the sorted samples s[0..n), in microseconds. */
static double pct_us(const uint64_t *s, long n, double q)
{
    if (n == 0)
        return 0;
    long i = (long)(q * (double)n);
    return (double)s[i < n ? i : n - 1] / 1e3;
}

/* The protocol name in the result: ws, wss, tcp or tls. */
static const char *proto_name(void)
{
    return opt.ws ? (opt.tls ? "wss" : "ws") : (opt.tls ? "tls" : "tcp");
}

/* Result fields common to every mode; the caller finishes the JSON object. */
static void print_common(uint64_t errors, uint64_t verify)
{
    const char *first = "";
    for (int i = 0; i < opt.threads && !*first; i++)
        first = threads[i].first_error;
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"proto\":\"%s\",\"conns\":%d,\"size\":%zu,"
           "\"threads\":%d,\"errors\":%llu,\"verify_failures\":%llu,\"first_error\":\"%s\"",
           opt.label, mode_names[opt.mode], proto_name(), opt.conns, opt.size, opt.threads,
           (unsigned long long)errors, (unsigned long long)verify, first);
    if (opt.tls) {
        const char *desc = "";
        for (int i = 0; i < opt.threads && !*desc; i++)
            desc = threads[i].tls_desc;
        printf(",\"tls\":\"%s\"", desc);
    }
    if (errors)
        fprintf(stderr, "%s: %llu errors, first: %s\n", PROG, (unsigned long long)errors, first);
}

/* Merge latency samples of all threads into one sorted array; sets *n. */
static uint64_t *merge_samples(long *n)
{
    long total = 0;
    for (int i = 0; i < opt.threads; i++)
        total += threads[i].nsamples;
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)(total ? total : 1));
    if (!all)
        bench_die(PROG, errno, "malloc");
    long k = 0;
    for (int i = 0; i < opt.threads; i++) {
        memcpy(all + k, threads[i].samples, sizeof(uint64_t) * (size_t)threads[i].nsamples);
        k += threads[i].nsamples;
    }
    qsort(all, (size_t)total, sizeof(uint64_t), cmp_u64);
    *n = total;
    return all;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s -m MODE [options] HOST:PORT\n"
            "  -m, --mode MODE        bulk | latency | churn | idle (default bulk)\n"
            "  -p, --proto PROTO      ws | tcp (default ws)\n"
            "  -T, --tls              TLS to the target (wss://; certificate not verified)\n"
            "      --sni NAME         TLS: server name to send (default none)\n"
            "      --host NAME        Host header of the upgrade (default HOST:PORT)\n"
            "  -R, --resume           churn with TLS: resume each worker's last session\n"
            "  -u, --path PATH        WebSocket request path (default /)\n"
            "  -c, --conns N          connections (churn: concurrent workers) (1)\n"
            "  -s, --size BYTES       message size (65536)\n"
            "  -w, --window N         bulk: messages in flight per connection (4)\n"
            "  -d, --duration SEC     measured time; latency: upper bound (5)\n"
            "  -W, --warmup SEC       unmeasured time before measuring (0.5)\n"
            "  -n, --samples N        latency: round trips to record (20000)\n"
            "  -C, --pace N           connections opening at once (256)\n"
            "  -H, --hold SEC         idle: hold time, 0 = until a signal (0)\n"
            "  -t, --threads N        threads (1)\n"
            "  -P, --watch-pid PID    report CPU and RSS of this process\n"
            "  -l, --label TEXT       copied into the JSON result\n",
            PROG);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"mode", 1, 0, 'm'},      {"proto", 1, 0, 'p'},  {"path", 1, 0, 'u'},
        {"conns", 1, 0, 'c'},     {"size", 1, 0, 's'},   {"window", 1, 0, 'w'},
        {"duration", 1, 0, 'd'},  {"warmup", 1, 0, 'W'}, {"samples", 1, 0, 'n'},
        {"pace", 1, 0, 'C'},      {"hold", 1, 0, 'H'},   {"threads", 1, 0, 't'},
        {"watch-pid", 1, 0, 'P'}, {"label", 1, 0, 'l'},  {"tls", 0, 0, 'T'},
        {"sni", 1, 0, 'S'},       {"host", 1, 0, 'A'},   {"help", 0, 0, 'h'},
        {"resume", 0, 0, 'R'},    {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:p:TRu:c:s:w:d:W:n:C:H:t:P:l:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'm':
            opt.mode = (enum mode) - 1;
            for (int i = 0; i < 4; i++)
                if (strcmp(optarg, mode_names[i]) == 0)
                    opt.mode = (enum mode)i;
            if ((int)opt.mode < 0)
                bench_die(PROG, 0, "unknown mode '%s'", optarg);
            break;
        case 'p':
            if (strcmp(optarg, "ws") != 0 && strcmp(optarg, "tcp") != 0)
                bench_die(PROG, 0, "unknown protocol '%s'", optarg);
            opt.ws = optarg[0] == 'w';
            break;
        case 'T':
            opt.tls = true;
            break;
        case 'R':
            opt.resume = true;
            break;
        case 'S':
            opt.sni = optarg;
            break;
        case 'A':
            opt.host = optarg;
            break;
        case 'u':
            opt.path = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 's':
            opt.size = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'w':
            opt.window = atoi(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'W':
            opt.warmup = atof(optarg);
            break;
        case 'n':
            opt.samples = atol(optarg);
            break;
        case 'C':
            opt.pace = atoi(optarg);
            break;
        case 'H':
            opt.hold = atof(optarg);
            break;
        case 't':
            opt.threads = atoi(optarg);
            break;
        case 'P':
            opt.watch_pid = atoi(optarg);
            break;
        case 'l':
            opt.label = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    opt.target = argv[optind];
    if (bench_parse_addr(opt.target, &opt.addr, &opt.addrlen) < 0)
        bench_die(PROG, 0, "bad target '%s' (want HOST:PORT)", opt.target);
    if (opt.conns < 1 || opt.threads < 1 || opt.threads > opt.conns || opt.window < 1 ||
        opt.pace < 1 || opt.size < 1 || opt.size > (1u << 30) || opt.duration <= 0 ||
        opt.samples < 1 || strlen(opt.path) > 256 || opt.path[0] != '/' || strchr(opt.label, '"') ||
        strchr(opt.label, '\\') || (opt.resume && (!opt.tls || opt.mode != M_CHURN)))
        bench_die(PROG, 0, "invalid option value (see -h)");
}

/* Create the threads, their connections and buffers, and start them. */
static void start_threads(void)
{
    threads = calloc((size_t)opt.threads, sizeof(*threads));
    if (!threads)
        bench_die(PROG, errno, "calloc");
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the main thread */
    for (int i = 0; i < opt.threads; i++) {
        struct thread *t = &threads[i];
        t->nconns = opt.conns / opt.threads + (i < opt.conns % opt.threads);
        t->alive = t->nconns;
        t->pace = opt.pace / opt.threads > 0 ? opt.pace / opt.threads : 1;
        t->rng = (bench_now_ns() ^ ((uint64_t)getpid() << 32)) * 2654435761u + (uint64_t)i + 1;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->conns = calloc((size_t)t->nconns, sizeof(struct conn));
        t->scratch = malloc(SCRATCH_SIZE);
        if (opt.mode == M_LATENCY) {
            t->quota = opt.samples / opt.threads + (i < opt.samples % opt.threads);
            t->samples = malloc(sizeof(uint64_t) * (size_t)t->quota);
        }
        if (t->ep < 0 || !t->conns || !t->scratch || (opt.mode == M_LATENCY && !t->samples))
            bench_die(PROG, errno, "thread setup");
        for (int k = 0; k < t->nconns; k++) {
            t->conns[k].t = t;
            t->conns[k].fd = -1;
            if (conn_alloc_frame(&t->conns[k]) < 0)
                bench_die(PROG, errno, "malloc");
        }
    }
    for (int i = 0; i < opt.threads; i++)
        if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0)
            bench_die(PROG, 0, "pthread_create failed");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stop the threads and close every connection. */
static void stop_threads(void)
{
    atomic_store(&phase, PH_STOP);
    for (int i = 0; i < opt.threads; i++) {
        pthread_join(threads[i].tid, NULL);
        for (int k = 0; k < threads[i].nconns; k++)
            conn_close(&threads[i].conns[k]);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    long nofile = bench_raise_nofile();
    if (nofile > 0 && opt.conns + 64 > nofile)
        bench_die(PROG, 0, "%d connections need more than the %ld open files allowed", opt.conns,
                  nofile);

    if (opt.tls) {
        ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!ssl_ctx)
            bench_die(PROG, 0, "SSL_CTX_new failed");
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL); /* a benchmark, not a client */
        SSL_CTX_set_mode(ssl_ctx,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    }

    long rss0 = opt.watch_pid ? proc_rss_kib(opt.watch_pid) : -1;
    uint64_t start = bench_now_ns();
    start_threads();

    double open_s = opt.mode == M_CHURN ? 0 : wait_opened(start);
    if (opt.mode == M_IDLE) {
        int opened = (int)sum(CNT_OPENED);
        printf("{\"event\":\"open\",\"opened\":%d,\"open_s\":%.3f}\n", opened, open_s);
        fflush(stdout);
        fprintf(stderr, "%s: %d of %d connections open in %.3f s; holding\n", PROG, opened,
                opt.conns, open_s);
        wait_until(opt.hold > 0 ? bench_now_ns() + (uint64_t)(opt.hold * 1e9) : 0);
    } else {
        wait_until(bench_now_ns() + (uint64_t)(opt.warmup * 1e9));
    }
    long rss1 = opt.watch_pid ? proc_rss_kib(opt.watch_pid) : -1;

    /* The measured window (idle mode measured its opening above). */
    uint64_t b0 = sum(CNT_BYTES), c0 = sum(CNT_CYCLES), t0 = bench_now_ns();
    uint64_t r0 = sum(CNT_RESUMED);
    double cpu0 = opt.watch_pid ? proc_cpu_s(opt.watch_pid) : -1, self0 = self_cpu_s();
    if (opt.mode != M_IDLE) {
        atomic_store(&phase, PH_MEASURE);
        wait_until(t0 + (uint64_t)(opt.duration * 1e9));
    }
    uint64_t b1 = sum(CNT_BYTES), c1 = sum(CNT_CYCLES), t1 = bench_now_ns();
    uint64_t r1 = sum(CNT_RESUMED);
    double cpu1 = opt.watch_pid ? proc_cpu_s(opt.watch_pid) : -1, self1 = self_cpu_s();
    stop_threads();

    int opened = (int)sum(CNT_OPENED);
    uint64_t errors = 0, verify = 0;
    for (int i = 0; i < opt.threads; i++) {
        errors += threads[i].errors;
        verify += threads[i].verify_failures;
    }
    double secs = ns_to_s(t1 - t0);
    double peer_cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    print_common(errors, verify);
    printf(",\"open_s\":%.3f,\"opened\":%d", open_s, opened);
    switch (opt.mode) {
    case M_BULK: {
        double mbps = (double)(b1 - b0) / secs / 1e6;
        printf(",\"window\":%d,\"seconds\":%.3f,\"bytes\":%llu,\"mb_per_s\":%.1f", opt.window, secs,
               (unsigned long long)(b1 - b0), mbps);
        fprintf(stderr, "%s: bulk %s %d x %zu B: %.1f MB/s echoed over %.2f s\n", opt.label,
                proto_name(), opt.conns, opt.size, mbps, secs);
        break;
    }
    case M_LATENCY: {
        long n;
        uint64_t *s = merge_samples(&n);
        double sum = 0;
        for (long i = 0; i < n; i++)
            sum += (double)s[i];
        printf(",\"samples\":%ld,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"max_us\":%.1f,\"mean_us\":%.1f",
               n, pct_us(s, n, 0.5), pct_us(s, n, 0.9), pct_us(s, n, 0.99), pct_us(s, n, 0.999),
               pct_us(s, n, 1.0), n ? sum / (double)n / 1e3 : 0);
        fprintf(stderr,
                "%s: latency %s %zu B, %ld samples: p50 %.1f p90 %.1f p99 %.1f p999 %.1f us\n",
                opt.label, proto_name(), opt.size, n, pct_us(s, n, 0.5), pct_us(s, n, 0.9),
                pct_us(s, n, 0.99), pct_us(s, n, 0.999));
        free(s);
        break;
    }
    case M_CHURN: {
        double rate = (double)(c1 - c0) / secs;
        printf(",\"seconds\":%.3f,\"cycles\":%llu,\"per_s\":%.1f", secs,
               (unsigned long long)(c1 - c0), rate);
        if (opt.resume)
            printf(",\"resumed\":%llu", (unsigned long long)(r1 - r0));
        fprintf(stderr, "%s: churn %s, %d concurrent: %.1f connections/s over %.2f s\n", opt.label,
                proto_name(), opt.conns, rate, secs);
        break;
    }
    case M_IDLE: {
        double per =
            opened > 0 && rss0 >= 0 && rss1 >= 0 ? (double)(rss1 - rss0) * 1024 / opened : -1;
        printf(",\"peer_rss_before_kib\":%ld,\"peer_rss_after_kib\":%ld,\"rss_per_conn_b\":%.0f",
               rss0, rss1, per);
        fprintf(stderr, "%s: idle %s: %d connections open in %.3f s", opt.label, proto_name(),
                opened, open_s);
        if (per >= 0)
            fprintf(stderr, ", watched RSS %ld -> %ld KiB (%.0f B/connection)", rss0, rss1, per);
        fputc('\n', stderr);
        break;
    }
    }
    if (opt.mode != M_IDLE) {
        printf(",\"peer_cpu_s\":%.3f,\"self_cpu_s\":%.3f", peer_cpu, self1 - self0);
        if (opt.mode != M_LATENCY && peer_cpu >= 0 && b1 > b0)
            printf(",\"peer_cpu_s_per_gb\":%.3f", peer_cpu / ((double)(b1 - b0) / 1e9));
    }
    printf("}\n");
    return errors || verify ? 1 : 0;
}
