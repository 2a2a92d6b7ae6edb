/* io.c - plain and TLS transports. */
#include "io.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tlsrec.h"

/* ---- TLS 1.3 records of our own (tlsrec.c), once OpenSSL is gone ------ */

/* send(2)'s flags: our last bytes wait for the FIN that follows them. */
static int send_flags(const struct io *io)
{
    return MSG_NOSIGNAL | (io->want & IO_LAST ? MSG_MORE : 0);
}

/* Records sealed per write: what one send(2) takes. */
#define SEAL_RECORDS 4
static _Thread_local uint8_t seal_buf[SEAL_RECORDS * TLSREC_SEALED(TLSREC_MAX_PLAIN)];

static void rec_drop_in(struct tlsrec *r)
{
    free(r->in);
    r->in = NULL;
    r->in_len = r->plain_off = r->plain_len = 0;
}

/* Our last record: alert desc (0: close_notify), best effort (a socket
 * that cannot take it now never will in time), after which nothing goes
 * out; not while the rest of a record waits in r->out. */
static void rec_last_alert(struct io *io, int desc)
{
    struct tlsrec *r = io->rec;
    if (!r->out && !(r->flags & TLSREC_TX_CLOSED)) {
        uint8_t a[TLSREC_SEALED(2)];
        int n = tlsrec_alert(r, desc, a);
        if (n > 0)
            (void)!send(io->fd, a, (size_t)n, send_flags(io) | MSG_DONTWAIT);
    }
    r->flags |= TLSREC_TX_CLOSED;
}

/* Fail the connection, with our alert (alert > 0) or after the peer's. */
static ssize_t rec_fail(struct io *io, int alert)
{
    struct tlsrec *r = io->rec;
    r->flags |= TLSREC_FAILED | TLSREC_REPORTED;
    if (alert > 0)
        rec_last_alert(io, alert);
    r->fail_alert = 0; /* said once */
    r->flags |= TLSREC_TX_CLOSED;
    errno = alert > 0 ? EPROTO : ECONNRESET;
    return -1;
}

/* The caller's buffer holds two whole records: read into it and open the
 * records there (no copy but the move past each header); an incomplete
 * record at the end waits in r->in. */
static ssize_t rec_read_direct(struct io *io, uint8_t *buf, size_t n)
{
    struct tlsrec *r = io->rec;
    size_t have = r->in_len;
    if (have)
        memcpy(buf, r->in, have);
    ssize_t k = read(io->fd, buf + have, n - have);
    if (k < 0) {
        if (!have && errno == EAGAIN)
            rec_drop_in(r); /* idle: hold no buffer */
        return -1;
    }
    if (k == 0) { /* end of stream without close_notify: an end all the same */
        r->flags |= TLSREC_EOF;
        return 0;
    }
    size_t total = have + (size_t)k, used = 0;
    int alert;
    long w = tlsrec_open(r, buf, total, &used, &alert);
    if (w < 0)
        return rec_fail(io, alert);
    size_t tail = total - used;
    if (tail) {
        if (!r->in && !(r->in = malloc(TLSREC_MAX_WIRE))) {
            errno = ENOMEM;
            return -1;
        }
        memmove(r->in, buf + used, tail);
        r->in_len = tail;
    } else {
        rec_drop_in(r);
    }
    if (w == 0) {
        if (r->flags & TLSREC_EOF)
            return 0;
        io->want |= IO_READ_STARVED;
        errno = EAGAIN;
        return -1;
    }
    return w;
}

/* A small caller buffer: read one record at a time into r->in, open it
 * there and give what fits; the rest is given by the next reads. */
static ssize_t rec_read_staged(struct io *io, uint8_t *buf, size_t n)
{
    struct tlsrec *r = io->rec;
    if (!r->in && !(r->in = malloc(TLSREC_MAX_WIRE))) {
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        int alert;
        long wire = tlsrec_wire_len(r->in, r->in_len, &alert);
        if (wire < 0)
            return rec_fail(io, alert);
        size_t need = wire == 0 ? TLSREC_HDR - r->in_len : (size_t)wire - r->in_len;
        if (need > 0) {
            ssize_t k = read(io->fd, r->in + r->in_len, need);
            if (k <= 0) {
                if (k == 0)
                    r->flags |= TLSREC_EOF;
                else if (errno == EAGAIN)
                    io->want |= IO_READ_STARVED;
                return k;
            }
            r->in_len += (size_t)k;
            continue;
        }
        size_t used;
        long w = tlsrec_open(r, r->in, r->in_len, &used, &alert);
        if (w < 0)
            return rec_fail(io, alert);
        r->in_len = 0;
        if (w > 0) {
            size_t k = (size_t)w < n ? (size_t)w : n;
            memcpy(buf, r->in, k);
            r->plain_off = k;
            r->plain_len = (size_t)w - k;
            if (!r->plain_len)
                rec_drop_in(r);
            return (ssize_t)k;
        }
        if (r->flags & TLSREC_EOF)
            return 0;
    }
}

static ssize_t rec_read(struct io *io, void *buf, size_t n)
{
    struct tlsrec *r = io->rec;
    io->want &= ~(unsigned)IO_READ_STARVED;
    if (r->plain_len) { /* opened earlier, did not fit then */
        size_t k = r->plain_len < n ? r->plain_len : n;
        memcpy(buf, r->in + r->plain_off, k);
        r->plain_off += k;
        r->plain_len -= k;
        if (!r->plain_len)
            rec_drop_in(r);
        return (ssize_t)k;
    }
    if (r->flags & TLSREC_FAILED)
        return rec_fail(io, r->fail_alert);
    if (r->flags & TLSREC_EOF)
        return 0;
    if (n == 0)
        return 0;
    if (n >= 2 * TLSREC_MAX_WIRE)
        return rec_read_direct(io, buf, n);
    return rec_read_staged(io, buf, n);
}

/* The rest of a record partly written: out before anything else. Returns
 * 0 when it is out (or there was none), -1 (EAGAIN) while it is not. */
static int rec_flush(struct io *io)
{
    struct tlsrec *r = io->rec;
    if (!r->out)
        return 0;
    ssize_t k = send(io->fd, r->out + r->out_off, r->out_len - r->out_off, send_flags(io));
    if (k < 0)
        return -1;
    r->out_off += (size_t)k;
    if (r->out_off < r->out_len) {
        errno = EAGAIN;
        return -1;
    }
    free(r->out);
    r->out = NULL;
    return 0;
}

/* Keep what the socket did not take of record i (sealed at seal_buf,
 * ends[]): its bytes wait in r->out, its plaintext counts as not written
 * until they are out. Returns 0, or -1 out of memory. */
static int rec_keep(struct tlsrec *r, size_t sent, size_t end, size_t plain)
{
    if (!(r->out = malloc(end - sent))) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(r->out, seal_buf + sent, end - sent);
    r->out_off = 0;
    r->out_len = end - sent;
    r->out_plain = plain;
    return 0;
}

static ssize_t rec_writev(struct io *io, const struct iovec *iov, int cnt)
{
    struct tlsrec *r = io->rec;
    if (r->flags & TLSREC_TX_CLOSED) {
        errno = EPIPE;
        return -1;
    }
    size_t done = 0;
    if (r->out) {
        size_t plain = r->out_plain;
        if (rec_flush(io) < 0)
            return -1;
        done = plain; /* the caller offers these again: they are out now */
        size_t offered = 0;
        for (int i = 0; i < cnt; i++)
            offered += iov[i].iov_len;
        if (offered < done) {
            errno = EPROTO;
            return -1;
        }
    }
    for (;;) {
        size_t ends[SEAL_RECORDS], plains[SEAL_RECORDS];
        int update;
        int n = tlsrec_seal(r, iov, cnt, done, seal_buf, sizeof(seal_buf), ends, plains,
                            SEAL_RECORDS, &update);
        if (n < 0) {
            errno = EPROTO;
            return -1;
        }
        if (n == 0)
            return (ssize_t)done;
        ssize_t k = send(io->fd, seal_buf, ends[n - 1], send_flags(io));
        if (k < 0) {
            int e = errno;
            tlsrec_unseal(r, n);
            errno = e;
            return done > 0 ? (ssize_t)done : -1;
        }
        int i = 0;
        while (i < n && ends[i] <= (size_t)k)
            done += plains[i++];
        if (i < n) {
            size_t start = i ? ends[i - 1] : 0;
            int partly = (size_t)k > start;
            tlsrec_unseal(r, n - i - partly);
            if (partly && rec_keep(r, (size_t)k, ends[i], plains[i]) < 0)
                return -1;
            if (update && partly && tlsrec_next_tx_key(r) < 0)
                return -1;
            if (done > 0)
                return (ssize_t)done;
            errno = EAGAIN;
            return -1;
        }
        if (!update)
            return (ssize_t)done;
        if (tlsrec_next_tx_key(r) < 0) /* our KeyUpdate is out: the data follows */
            return -1;
    }
}

/* close_notify after what is left of a record partly written (best
 * effort: if that cannot go now, neither can the alert). */
static void rec_notify_close(struct io *io)
{
    struct tlsrec *r = io->rec;
    if ((r->flags & TLSREC_TX_CLOSED) || rec_flush(io) < 0)
        return;
    rec_last_alert(io, 0);
}

int io_offload(struct io *io)
{
    if (!io->ssl || !io->handshaken)
        return 0;
    if ((io->want & IO_SSL_WRITE_HELD) || SSL_has_pending(io->ssl)) {
        io->want |= IO_OFFLOAD_WANTED;
        return 0;
    }
    io->want &= ~(unsigned)IO_OFFLOAD_WANTED;
    if (SSL_get_shutdown(io->ssl))
        return 0;
    struct tlsrec *r = tlsrec_take(io->ssl);
    if (!r)
        return 0;
    SSL_free(io->ssl);
    io->ssl = NULL;
    io->rec = r;
    io->want = 0;
    return 1;
}

/* ---- OpenSSL --------------------------------------------------------- */

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
    if (io->rec)
        return rec_read(io, buf, n);
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
    if (io->want & IO_OFFLOAD_WANTED)
        io_offload(io);
    return (ssize_t)total;
}

ssize_t io_write(struct io *io, const void *buf, size_t n)
{
    if (io->rec) {
        struct iovec v = {(void *)buf, n};
        return rec_writev(io, &v, 1);
    }
    if (!io->ssl)
        return send(io->fd, buf, n, send_flags(io));
    io->want &= ~(unsigned)IO_WRITE_WANTS_READ;
    ERR_clear_error();
    size_t put = 0;
    int r = SSL_write_ex(io->ssl, buf, n, &put);
    if (r == 1) {
        io->want &= ~(unsigned)IO_SSL_WRITE_HELD;
        if (io->want & IO_OFFLOAD_WANTED)
            io_offload(io);
        return (ssize_t)put;
    }
    io->want |= IO_SSL_WRITE_HELD;
    ssize_t k = ssl_result(io, r, IO_WRITE_WANTS_READ, 0);
    if (k == 0) { /* a peer that sent close_notify cannot take more */
        errno = EPIPE;
        return -1;
    }
    return k;
}

ssize_t io_writev(struct io *io, const struct iovec *iov, int cnt)
{
    if (io->rec)
        return rec_writev(io, iov, cnt);
    if (!io->ssl && !(io->want & IO_LAST))
        return writev(io->fd, iov, cnt);
    if (!io->ssl) {
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
        return sendmsg(io->fd, &m, send_flags(io));
    }
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
    if (io->rec)
        return io->rec->plain_len > 0 ||
               (io->rec->flags & (TLSREC_FAILED | TLSREC_REPORTED)) == TLSREC_FAILED;
    if (!io->ssl || !io->handshaken) /* a handshake waiting to read waits for the socket */
        return 0;
    return SSL_pending(io->ssl) > 0 || (!(io->want & IO_READ_STARVED) && SSL_has_pending(io->ssl));
}

void io_notify_close(struct io *io)
{
    if (io->rec)
        rec_notify_close(io);
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
    tlsrec_free(io->rec);
    io->rec = NULL;
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
    io->want = 0;
    io->handshaken = 0;
}
