/* echo.c - a fast TCP echo backend for the benchmarks.
 *
 * usage: echo [-t THREADS] [-b BUFSIZE] HOST:PORT
 *
 * Every byte a client sends comes back to it. Each thread runs one epoll loop
 * over the shared listening socket (EPOLLEXCLUSIVE) and its own connections.
 * Input is read into a per-thread scratch buffer and written back at once;
 * only what the socket does not take is copied into a per-connection buffer
 * (at most BUFSIZE bytes, allocated on demand and freed when drained), and
 * the connection is not read again until that buffer is empty. Idle
 * connections therefore cost a few bytes each, and a slow reader can never
 * make the process grow. Prints "port N" on stdout once it listens (PORT may
 * be 0 to pick a free one). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

#define PROG "echo"
#define EVENTS_MAX 256

struct conn {
    int fd;
    uint32_t pend_off, pend_len; /* unsent bytes in pend[pend_off..pend_len) */
    char *pend;
};

struct thread {
    pthread_t tid;
    int ep;
    int lfd;
    size_t bufsize;
    char *scratch;
};

/* Change the epoll interest of c to events. */
static void conn_watch(struct thread *t, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    free(c->pend);
    free(c);
}

/* Accept every pending connection on the listening socket. */
static void accept_all(struct thread *t)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(c);
    }
}

/* Write the pending bytes of c; once drained, free them and read c again. A
 * failed connection is closed. */
static void conn_flush(struct thread *t, struct conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (w < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR)
                continue;
            conn_close(c);
            return;
        }
        c->pend_off += (uint32_t)w;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_off = c->pend_len = 0;
    conn_watch(t, c, EPOLLIN);
}

/* Read once from c and echo it; keep what the socket does not take. */
static void conn_echo(struct thread *t, struct conn *c)
{
    ssize_t n = read(c->fd, t->scratch, t->bufsize);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
    ssize_t w = write(c->fd, t->scratch, (size_t)n);
    if (w < 0) {
        if (errno != EAGAIN) {
            conn_close(c);
            return;
        }
        w = 0;
    }
    if (w == n)
        return;
    c->pend = malloc(t->bufsize);
    if (!c->pend) {
        conn_close(c);
        return;
    }
    c->pend_len = (uint32_t)(n - w);
    memcpy(c->pend, t->scratch + w, c->pend_len);
    conn_watch(t, c, EPOLLOUT);
}

static void *thread_main(void *arg)
{
    struct thread *t = arg;
    struct epoll_event evs[EVENTS_MAX];
    for (;;) {
        int n = epoll_wait(t->ep, evs, EVENTS_MAX, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c)
                accept_all(t);
            else if (c->pend)
                conn_flush(t, c);
            else
                conn_echo(t, c);
        }
    }
    return NULL;
}

/* Open the listening socket on text ("HOST:PORT") and return it. */
static int listen_on(const char *text)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (bench_parse_addr(text, &ss, &len) < 0)
        bench_die(PROG, 0, "bad address '%s' (want HOST:PORT)", text);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        bench_die(PROG, errno, "socket");
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0)
        bench_die(PROG, errno, "cannot listen on %s", text);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        bench_die(PROG, errno, "getsockname");
    in_port_t port = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port;
    printf("port %u\n", ntohs(port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    int threads = 1;
    size_t bufsize = 65536;
    int opt;
    while ((opt = getopt(argc, argv, "t:b:h")) != -1) {
        switch (opt) {
        case 't':
            threads = atoi(optarg);
            break;
        case 'b':
            bufsize = (size_t)strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS] [-b BUFSIZE] HOST:PORT\n", PROG);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1 || threads < 1 || threads > 64 || bufsize < 1024 ||
        bufsize > (1u << 24)) {
        fprintf(stderr, "usage: %s [-t THREADS] [-b BUFSIZE] HOST:PORT\n", PROG);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    bench_raise_nofile();
    int lfd = listen_on(argv[optind]);

    struct thread *ts = calloc((size_t)threads, sizeof(*ts));
    if (!ts)
        bench_die(PROG, errno, "calloc");
    for (int i = 0; i < threads; i++) {
        struct thread *t = &ts[i];
        t->lfd = lfd;
        t->bufsize = bufsize;
        t->scratch = malloc(bufsize);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
        if (!t->scratch || t->ep < 0 || epoll_ctl(t->ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
            bench_die(PROG, errno, "thread setup");
        if (i > 0 && pthread_create(&t->tid, NULL, thread_main, t) != 0)
            bench_die(PROG, 0, "pthread_create failed");
    }
    thread_main(&ts[0]);
    return 0;
}
