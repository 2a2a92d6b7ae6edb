/* listener.c - accepting client connections; shared unix and systemd sockets. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "sock.h"
#include "worker.h"

#define ACCEPT_BATCH 64
#define BACKOFF_SECONDS 0.1
#define SD_LISTEN_FDS_START 3

/* A socket that exists once per process, watched by every worker. */
struct shared_sock {
    struct shared_sock *next;
    enum listen_kind kind;
    int fd;
    int refs;      /* holders: the configuration (retained) + worker listeners */
    bool retained; /* the configuration's reference is held */
    unsigned mode; /* unix */
    struct sockaddr_any addr;
    char name[256]; /* unix: the path; systemd: the FileDescriptorName */
};

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared_sock *shared_list;

/* Drop one reference (shared_lock held); the last one closes a unix socket
 * and removes its file. systemd sockets stay. */
static void shared_unref_locked(struct shared_sock *s)
{
    if (--s->refs > 0 || s->kind == LISTEN_SYSTEMD)
        return;
    struct shared_sock **pp = &shared_list;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    close(s->fd);
    unlink(s->name);
    free(s);
}

static const char *unix_path(const struct sockaddr_any *a)
{
    return ((const struct sockaddr_un *)&a->ss)->sun_path;
}

static struct shared_sock *find_unix_locked(const char *path)
{
    for (struct shared_sock *s = shared_list; s; s = s->next)
        if (s->kind == LISTEN_UNIX && strcmp(s->name, path) == 0)
            return s;
    return NULL;
}

static bool systemd_match(const struct shared_sock *s, const struct listen_spec *spec)
{
    return s->kind == LISTEN_SYSTEMD &&
           (spec->systemd_name == NULL || strcmp(s->name, spec->systemd_name) == 0);
}

#define ACCEPT_CHECK 0.005 /* seconds between checks while max_handshakes pauses accepts */

/* One more connection in its handshake, when fewer than max_handshakes are
 * (process-wide). True when counted: session_start() takes it over. */
static bool handshake_reserve(struct worker *w)
{
    uint32_t max = w->cfg->max_handshakes;
    if (__atomic_add_fetch(&w->gw->handshaking, 1, __ATOMIC_RELAXED) <= max)
        return true;
    __atomic_sub_fetch(&w->gw->handshaking, 1, __ATOMIC_RELAXED);
    return false;
}

/* max_handshakes reached: stop every listener of w until a handshake (of
 * any worker) finishes; listeners_accept_check() resumes them. */
static void pause_accepts(struct worker *w)
{
    for (struct listener *l = w->listeners; l; l = l->next)
        ev_io_stop(w->loop, &l->io);
    w->accept_paused = true;
    ev_timer_set(&w->accept_check, ACCEPT_CHECK, ACCEPT_CHECK);
    ev_timer_start(w->loop, &w->accept_check);
}

void listeners_accept_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    if (__atomic_load_n(&w->gw->handshaking, __ATOMIC_RELAXED) >= w->cfg->max_handshakes)
        return;
    ev_timer_stop(loop, t);
    w->accept_paused = false;
    for (struct listener *l = w->listeners; l; l = l->next)
        if (!ev_is_active(&l->backoff))
            ev_io_start(loop, &l->io);
}

static unsigned session_flags(const struct listener *l)
{
    return (l->tls && !l->tls_auto ? SESSION_TLS : 0) | (l->tls_auto ? SESSION_TLS_AUTO : 0) |
           (l->proxy ? SESSION_PROXY : 0) | (l->admin ? SESSION_ADMIN : 0);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener *l = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (!handshake_reserve(l->w)) {
            pause_accepts(l->w);
            return;
        }
        struct sockaddr_any peer;
        peer.len = sizeof(peer.ss);
        int fd =
            accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            __atomic_sub_fetch(&l->w->gw->handshaking, 1, __ATOMIC_RELAXED);
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
        if (peer.ss.ss_family == AF_UNIX || peer.len < sizeof(sa_family_t)) {
            /* an unnamed Unix peer: say so in the address */
            peer.ss.ss_family = AF_UNIX;
            peer.len = sizeof(sa_family_t);
        }
        session_start(l->w, fd, &peer, session_flags(l));
    }
}

static void backoff_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;
    if (!l->w->accept_paused)
        ev_io_start(loop, &l->io);
}

/* A listener on fd for spec (shared: the shared socket it holds). */
static struct listener *listener_new(struct worker *w, const struct listen_spec *spec, int fd,
                                     struct shared_sock *shared, const char *name)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->w = w;
    l->fd = fd;
    l->addr = spec->addr;
    l->tls = spec->tls;
    l->tls_auto = spec->tls_auto;
    l->proxy = spec->proxy;
    l->admin = spec->admin;
    l->kind = spec->kind;
    l->shared = shared;
    if (shared && shared->kind == LISTEN_SYSTEMD)
        l->addr = shared->addr;
    snprintf(l->name, sizeof(l->name), "%s", name);
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    l->io.data = l;
    ev_timer_init(&l->backoff, backoff_cb, 0, 0);
    l->backoff.data = l;
    if (!w->accept_paused)
        ev_io_start(w->loop, &l->io);
    return l;
}

/* Open the listeners for spec on worker w. */
struct listener *listener_open(struct worker *w, const struct config *cfg,
                               const struct listen_spec *spec, char *err, size_t errlen)
{
    if (spec->kind == LISTEN_INET) {
        int fd = sock_listen(&spec->addr, 1);
        if (fd < 0) {
            snprintf(err, errlen, "%s:%d: listen: cannot listen on %s: %s", cfg->file, spec->line,
                     spec->text, strerror(errno));
            return NULL;
        }
        struct listener *l = listener_new(w, spec, fd, NULL, spec->text);
        if (!l) {
            close(fd);
            snprintf(err, errlen, "out of memory");
        }
        return l;
    }
    struct listener *chain = NULL;
    pthread_mutex_lock(&shared_lock);
    for (struct shared_sock *s = shared_list; s; s = s->next) {
        char name[120];
        if (spec->kind == LISTEN_UNIX
                ? !(s->kind == LISTEN_UNIX && strcmp(s->name, unix_path(&spec->addr)) == 0)
                : !systemd_match(s, spec))
            continue;
        if (s->kind == LISTEN_SYSTEMD)
            snprintf(name, sizeof(name), "systemd:%.100s", s->name);
        else
            snprintf(name, sizeof(name), "%s", spec->text);
        struct listener *l = listener_new(w, spec, s->fd, s, name);
        if (!l)
            break;
        s->refs++;
        l->next = chain;
        chain = l;
    }
    pthread_mutex_unlock(&shared_lock);
    if (!chain)
        snprintf(err, errlen, "%s:%d: listen: %s: no such socket (not prepared or not passed)",
                 cfg->file, spec->line, spec->text);
    return chain;
}

/* True when l listens as spec says. */
int listener_matches(const struct listener *l, const struct listen_spec *spec)
{
    if (l->tls != spec->tls || l->tls_auto != spec->tls_auto || l->proxy != spec->proxy ||
        l->admin != spec->admin || l->kind != spec->kind)
        return 0;
    if (l->kind == LISTEN_SYSTEMD)
        return systemd_match(l->shared, spec);
    return l->addr.len == spec->addr.len && memcmp(&l->addr.ss, &spec->addr.ss, l->addr.len) == 0;
}

/* Stop accepting and close. */
void listener_close(struct listener *l)
{
    ev_io_stop(l->w->loop, &l->io);
    ev_timer_stop(l->w->loop, &l->backoff);
    if (l->shared) {
        pthread_mutex_lock(&shared_lock);
        shared_unref_locked(l->shared);
        pthread_mutex_unlock(&shared_lock);
    } else {
        close(l->fd);
    }
    free(l);
}

/* Contract in listener.h. */
int listeners_systemd_init(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    char *end;
    int n = 0;

    if (pid == NULL || fds == NULL)
        return 0;
    long p = strtol(pid, &end, 10);
    long nf = strtol(fds, &end, 10);
    if (p != (long)getpid() || *end != '\0' || nf <= 0 || nf > 1024)
        goto done;
    for (long i = 0; i < nf; i++) {
        int fd = SD_LISTEN_FDS_START + (int)i;
        struct shared_sock *s = calloc(1, sizeof(*s));
        if (!s)
            break;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0) {
            free(s);
            continue;
        }
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        s->kind = LISTEN_SYSTEMD;
        s->fd = fd;
        s->refs = 1;
        s->addr.len = sizeof(s->addr.ss);
        if (getsockname(fd, (struct sockaddr *)&s->addr.ss, &s->addr.len) < 0)
            s->addr.len = 0;
        /* the i-th colon-separated name; systemd's default is "unknown" */
        const char *nm = names;
        for (long k = 0; nm && k < i; k++) {
            nm = strchr(nm, ':');
            if (nm)
                nm++;
        }
        size_t nl = nm ? strcspn(nm, ":") : 0;
        if (nl == 0 || nl >= sizeof(s->name))
            snprintf(s->name, sizeof(s->name), "unknown");
        else
            snprintf(s->name, sizeof(s->name), "%.*s", (int)nl, nm);
        pthread_mutex_lock(&shared_lock);
        struct shared_sock **pp = &shared_list;
        while (*pp)
            pp = &(*pp)->next;
        *pp = s;
        pthread_mutex_unlock(&shared_lock);
        n++;
    }
done:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return n;
}

/* Contract in listener.h. */
int listeners_prepare(const struct config *cfg, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&shared_lock);
    for (size_t i = 0; rc == 0 && i < cfg->nlistens; i++) {
        const struct listen_spec *spec = &cfg->listens[i];
        if (spec->kind == LISTEN_SYSTEMD) {
            bool any = false;
            for (struct shared_sock *s = shared_list; s; s = s->next)
                any |= systemd_match(s, spec);
            if (!any) {
                snprintf(err, errlen,
                         "%s:%d: listen: %s: no such socket passed by systemd (LISTEN_FDS%s)",
                         cfg->file, spec->line, spec->text,
                         spec->systemd_name ? ", LISTEN_FDNAMES" : "");
                rc = -1;
            }
            continue;
        }
        if (spec->kind != LISTEN_UNIX)
            continue;
        const char *path = unix_path(&spec->addr);
        struct shared_sock *s = find_unix_locked(path);
        if (s) {
            if (s->mode != spec->mode && chmod(path, spec->mode) == 0)
                s->mode = spec->mode;
            if (!s->retained) {
                s->retained = true;
                s->refs++;
            }
            continue;
        }
        int fd = sock_listen_unix(&spec->addr, spec->mode);
        if (fd < 0) {
            const char *why = errno == EEXIST       ? "a file that is not a socket is in the way"
                              : errno == EADDRINUSE ? "another process listens there"
                                                    : strerror(errno);
            snprintf(err, errlen, "%s:%d: listen: cannot listen on %s: %s", cfg->file, spec->line,
                     spec->text, why);
            rc = -1;
            continue;
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
            close(fd);
            unlink(path);
            snprintf(err, errlen, "out of memory");
            rc = -1;
            continue;
        }
        s->kind = LISTEN_UNIX;
        s->fd = fd;
        s->refs = 1;
        s->retained = true;
        s->mode = spec->mode;
        s->addr = spec->addr;
        snprintf(s->name, sizeof(s->name), "%s", path);
        s->next = shared_list;
        shared_list = s;
    }
    pthread_mutex_unlock(&shared_lock);
    return rc;
}

/* Contract in listener.h. */
void listeners_retain(const struct config *cfg)
{
    pthread_mutex_lock(&shared_lock);
    for (struct shared_sock *s = shared_list, *next; s; s = next) {
        next = s->next;
        if (s->kind != LISTEN_UNIX || !s->retained)
            continue;
        bool named = false;
        for (size_t i = 0; cfg && i < cfg->nlistens; i++)
            named |= cfg->listens[i].kind == LISTEN_UNIX &&
                     strcmp(unix_path(&cfg->listens[i].addr), s->name) == 0;
        if (!named) {
            s->retained = false;
            shared_unref_locked(s);
        }
    }
    pthread_mutex_unlock(&shared_lock);
}
