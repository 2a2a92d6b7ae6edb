/* listener.c - accepting client connections. */
#include "listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "sock.h"
#include "worker.h"

#define ACCEPT_BATCH 64
#define BACKOFF_SECONDS 0.1

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener *l = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_any peer;
        peer.len = sizeof(peer.ss);
        int fd =
            accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_msg(WLOG_WARN, "%s: accept: %s; pausing accepts for %.0f ms", l->name,
                        strerror(errno), BACKOFF_SECONDS * 1000);
                ev_io_stop(loop, &l->io);
                ev_timer_set(&l->backoff, BACKOFF_SECONDS, 0);
                ev_timer_start(loop, &l->backoff);
                return;
            }
            log_msg(WLOG_ERROR, "%s: accept: %s", l->name, strerror(errno));
            return;
        }
        session_start(l->w, fd, &peer, l->tls);
    }
}

static void backoff_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;
    ev_io_start(loop, &l->io);
}

/* Open a listener for spec on worker w. */
struct listener *listener_open(struct worker *w, const struct config *cfg,
                               const struct listen_spec *spec, char *err, size_t errlen)
{
    int fd = sock_listen(&spec->addr, 1);
    if (fd < 0) {
        snprintf(err, errlen, "%s:%d: listen: cannot listen on %s: %s", cfg->file, spec->line,
                 spec->text, strerror(errno));
        return NULL;
    }
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->w = w;
    l->fd = fd;
    l->addr = spec->addr;
    l->tls = spec->tls;
    snprintf(l->name, sizeof(l->name), "%s", spec->text);
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    l->io.data = l;
    ev_timer_init(&l->backoff, backoff_cb, 0, 0);
    l->backoff.data = l;
    ev_io_start(w->loop, &l->io);
    return l;
}

/* True when l listens as spec says. */
int listener_matches(const struct listener *l, const struct listen_spec *spec)
{
    return l->tls == spec->tls && l->addr.len == spec->addr.len &&
           memcmp(&l->addr.ss, &spec->addr.ss, l->addr.len) == 0;
}

/* Stop accepting and close. */
void listener_close(struct listener *l)
{
    ev_io_stop(l->w->loop, &l->io);
    ev_timer_stop(l->w->loop, &l->backoff);
    close(l->fd);
    free(l);
}
