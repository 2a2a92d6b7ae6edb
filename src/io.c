/* io.c - plain and TLS transports. */
#include "io.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Map an OpenSSL result onto the read/write convention; sets io->want. */
static ssize_t ssl_result(struct io *io, int r, unsigned want_read, unsigned want_write)
{
    int e = SSL_get_error(io->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        io->want |= want_read;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        io->want |= want_write;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            return 0; /* EOF without close_notify */
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

ssize_t io_read(struct io *io, void *buf, size_t n)
{
    if (!io->ssl)
        return read(io->fd, buf, n);
    io->want &= ~(unsigned)(IO_READ_WANTS_WRITE | IO_READ_STARVED);
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(io->ssl, buf, n, &got);
    if (r != 1)
        return ssl_result(io, r, IO_READ_STARVED, IO_READ_WANTS_WRITE);
    /* One SSL_read gives at most one record (16 KiB): take the records
     * already read ahead too, so one call moves what one read(2) would. */
    size_t total = got;
    while (total < n && SSL_has_pending(io->ssl)) {
        ERR_clear_error();
        r = SSL_read_ex(io->ssl, (char *)buf + total, n - total, &got);
        if (r != 1) { /* a partial record: wait for the socket; report it later */
            int e = SSL_get_error(io->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                io->want |= IO_READ_STARVED;
            else if (e == SSL_ERROR_WANT_WRITE)
                io->want |= IO_READ_WANTS_WRITE;
            ERR_clear_error();
            break;
        }
        total += got;
    }
    return (ssize_t)total;
}

ssize_t io_write(struct io *io, const void *buf, size_t n)
{
    if (!io->ssl)
        return send(io->fd, buf, n, MSG_NOSIGNAL);
    io->want &= ~(unsigned)IO_WRITE_WANTS_READ;
    ERR_clear_error();
    size_t put = 0;
    int r = SSL_write_ex(io->ssl, buf, n, &put);
    if (r == 1)
        return (ssize_t)put;
    ssize_t k = ssl_result(io, r, IO_WRITE_WANTS_READ, 0);
    if (k == 0) { /* a peer that sent close_notify cannot take more */
        errno = EPIPE;
        return -1;
    }
    return k;
}

ssize_t io_writev(struct io *io, const struct iovec *iov, int cnt)
{
    if (!io->ssl)
        return writev(io->fd, iov, cnt);
    ssize_t total = 0;
    for (int i = 0; i < cnt; i++) {
        ssize_t k = io_write(io, iov[i].iov_base, iov[i].iov_len);
        if (k < 0)
            return total > 0 ? total : -1;
        total += k;
        if ((size_t)k < iov[i].iov_len)
            break;
    }
    return total;
}

int io_handshake(struct io *io, char *why, size_t whylen)
{
    if (!io->ssl || io->handshaken)
        return 1;
    io->want &= ~(unsigned)(IO_HS_WANTS_READ | IO_HS_WANTS_WRITE);
    ERR_clear_error();
    int r = SSL_do_handshake(io->ssl);
    if (r == 1) {
        io->handshaken = 1;
        return 1;
    }
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        io->want |= IO_HS_WANTS_READ;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        io->want |= IO_HS_WANTS_WRITE;
        return 0;
    }
    unsigned long err = ERR_peek_error();
    if (err) {
        char buf[256];
        ERR_error_string_n(err, buf, sizeof(buf));
        long vr = SSL_get_verify_result(io->ssl);
        if (vr != X509_V_OK)
            snprintf(why, whylen, "%s (%s)", buf, X509_verify_cert_error_string(vr));
        else
            snprintf(why, whylen, "%s", buf);
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, whylen, "connection closed");
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(why, whylen, "%s", errno ? strerror(errno) : "connection closed");
    } else {
        snprintf(why, whylen, "TLS error %d", e);
    }
    ERR_clear_error();
    return -1;
}

int io_events(const struct io *io, int want)
{
    if (!io->ssl)
        return want;
    if (!io->handshaken)
        return (io->want & IO_HS_WANTS_WRITE) ? EV_WRITE : EV_READ;
    int ev = want;
    if ((want & EV_READ) && (io->want & IO_READ_WANTS_WRITE))
        ev |= EV_WRITE;
    if ((want & EV_WRITE) && (io->want & IO_WRITE_WANTS_READ))
        ev |= EV_READ;
    return ev;
}

int io_ready(const struct io *io, int revents)
{
    int r = revents & (EV_READ | EV_WRITE);
    if (!io->ssl || !r)
        return r;
    if (!io->handshaken)
        return EV_READ | ((io->want & IO_HS_WANTS_WRITE) ? EV_WRITE : 0);
    if ((io->want & IO_WRITE_WANTS_READ) && (revents & EV_READ))
        r |= EV_WRITE;
    if ((io->want & IO_READ_WANTS_WRITE) && (revents & EV_WRITE))
        r |= EV_READ;
    return r;
}

int io_pending(const struct io *io)
{
    if (!io->ssl || !io->handshaken) /* a handshake waiting to read waits for the socket */
        return 0;
    return SSL_pending(io->ssl) > 0 || (!(io->want & IO_READ_STARVED) && SSL_has_pending(io->ssl));
}

void io_notify_close(struct io *io)
{
    if (io->ssl && io->handshaken) {
        ERR_clear_error();
        SSL_shutdown(io->ssl);
        ERR_clear_error();
    }
}

void io_shutdown(struct io *io)
{
    io_notify_close(io);
    shutdown(io->fd, SHUT_WR);
}

void io_close(struct io *io)
{
    if (io->ssl) {
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
    io->want = 0;
    io->handshaken = 0;
}
