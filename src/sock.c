/* sock.c - socket helpers. */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A non-blocking listening socket bound to addr. */
int sock_listen(const struct sockaddr_any *addr, int reuseport)
{
    int family = addr->ss.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Linux copies TCP_NODELAY to every socket accept() returns: the small
     * writes after a handshake (session tickets, 101, first frames) never
     * wait for the client's delayed ACK, at no syscall per connection. */
    if ((family == AF_INET || family == AF_INET6) &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        goto fail;
    if (listen(fd, 1024) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* A listening Unix socket; a stale socket file is replaced. */
int sock_listen_unix(const struct sockaddr_any *addr, unsigned mode)
{
    const char *path = ((const struct sockaddr_un *)&addr->ss)->sun_path;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            errno = EEXIST;
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -1;
        int rc = connect(probe, (const struct sockaddr *)&addr->ss, addr->len);
        int e = errno;
        close(probe);
        if (rc == 0 || e != ECONNREFUSED) {
            errno = EADDRINUSE; /* someone listens there (or might: EAGAIN) */
            return -1;
        }
        if (unlink(path) < 0 && errno != ENOENT)
            return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        goto fail;
    /* before listen(): nobody can connect with the wrong permissions */
    if (chmod(path, mode) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        unlink(path);
        errno = e;
        goto fail;
    }
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* Check that addr is free for us to listen on. */
int sock_probe_bind(const struct sockaddr_any *addr)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&addr->ss, addr->len);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Start a non-blocking connect to addr. */
int sock_connect(const struct sockaddr_any *addr)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* EAGAIN is a failure too: a Unix listener's backlog is full, or no
     * local port is left; nothing is in progress then. */
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Where a started connect stands: connect() again answers 0 (or EISCONN)
 * once connected, EALREADY while in progress, and the error after a failure. */
int sock_connect_check(int fd, const struct sockaddr_any *addr)
{
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0 || errno == EISCONN)
        return 1;
    if (errno == EALREADY || errno == EINPROGRESS || errno == EINTR)
        return 0;
    return -1;
}

/* The pending error of a socket (0 = none). */
int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

/* True when the peer has closed or reset the connection (a reset or any
 * other fatal error leaves the socket in state CLOSE). */
int sock_peer_gone(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE ||
           ti.tcpi_state == TCP_LAST_ACK;
}

int sock_all_acked(int fd)
{
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) < 0)
        return 0;
    return queued == 0;
}

/* TCP_NODELAY and keepalive on TCP sockets. */
void sock_tune(int fd, const struct sockaddr_any *addr)
{
    if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6)
        return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void sock_keepalive(int fd, const struct sockaddr_any *addr)
{
    if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6)
        return;
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Format an address for logs. */
char *sock_addr_str(const struct sockaddr_any *addr, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    switch (addr->ss.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&addr->ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(out, len, "%s:%u", host, ntohs(a->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&addr->ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(out, len, "[%s]:%u", host, ntohs(a->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)&addr->ss;
        snprintf(out, len, "unix:%s", a->sun_path);
        break;
    }
    default:
        snprintf(out, len, "?");
    }
    return out;
}
