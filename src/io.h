/* io.h - the transport under a session half: a plain socket or TLS over it,
 * behind one read/write interface so the relay does not know which it has.
 *
 * Calls never block. They return what read(2)/write(2) would: bytes moved,
 * 0 for end of stream (reads), or -1 with errno (EAGAIN when the socket must
 * become ready first). With TLS a read may need the socket writable and a
 * write may need it readable: io->want says which readiness the last
 * blocked call needs, and the caller adds it to its watcher. */
#ifndef WSGATE_IO_H
#define WSGATE_IO_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

enum {
    IO_READ_WANTS_WRITE = 1, /* the last read needs EV_WRITE to go on */
    IO_WRITE_WANTS_READ = 2, /* the last write needs EV_READ to go on */
    IO_HS_WANTS_READ = 4,    /* the handshake waits for EV_READ */
    IO_HS_WANTS_WRITE = 8,   /* the handshake waits for EV_WRITE */
    IO_READ_STARVED = 16,    /* the last read found only part of a record: wait for the socket */
    IO_SSL_WRITE_HELD = 32,  /* OpenSSL holds part of a record: its write must be offered again */
    IO_OFFLOAD_WANTED = 64,  /* io_offload waits for OpenSSL to hold no byte */
    IO_LAST = 128,           /* what is written now is our last: io_close's or io_shutdown's FIN
                              * goes out in the same segment (MSG_MORE; not with OpenSSL) */
};

struct tlsrec;

struct io {
    int fd;
    SSL *ssl;           /* NULL for a plain socket, and once records are ours */
    struct tlsrec *rec; /* TLS 1.3 records sealed and opened by tlsrec.c (ssl is NULL then) */
    unsigned want;
    int handshaken;
};

ssize_t io_read(struct io *io, void *buf, size_t n);
ssize_t io_write(struct io *io, const void *buf, size_t n);
/* Write the iovecs in order; with TLS one record per call may be written. */
ssize_t io_writev(struct io *io, const struct iovec *iov, int cnt);
/* Drive the TLS handshake: 1 done (always for plain sockets), 0 in progress
 * (io->want says what it waits for), -1 failed (why describes it). */
int io_handshake(struct io *io, char *why, size_t whylen);
/* Bytes waiting inside OpenSSL that a read can use without the socket:
 * decrypted ones, or (with read-ahead) whole records read ahead. Not after a
 * read found only part of a record (that needs the socket first). */
int io_pending(const struct io *io);
/* The events a watcher on this transport must wait for, given what the
 * caller wants to do next (EV_READ to read, EV_WRITE to write, or both): a
 * TLS handshake in progress waits for what it asked, a blocked TLS read may
 * need writability and a blocked TLS write readability. */
int io_events(const struct io *io, int want);
/* What may make progress after a watcher saw revents: EV_READ when a read
 * (or the TLS handshake) may, EV_WRITE when a write may. */
int io_ready(const struct io *io, int revents);
/* Take a TLS 1.3 connection's records over from OpenSSL and free its SSL ([tls] record_offload;
 * tlsrec.h). Done at once when OpenSSL holds no byte read ahead or left to write, else after the
 * read or write that empties it. Returns 1 when taken over now. */
int io_offload(struct io *io);
/* Send our end of stream: TLS close_notify (best effort), then SHUT_WR. */
void io_shutdown(struct io *io);
/* TLS close_notify (best effort), for a transport about to be closed. */
void io_notify_close(struct io *io);
/* Free TLS state and close the socket. */
void io_close(struct io *io);

#endif
