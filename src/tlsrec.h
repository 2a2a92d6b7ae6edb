/* tlsrec.h - TLS 1.3 records sealed and opened by wsgate once OpenSSL has
 * done the handshake ([tls] record_offload).
 *
 * During the handshake OpenSSL tells us the application traffic secrets
 * (its key log callback) and every record it reads and writes (its message
 * callback), so that when the session starts relaying and OpenSSL holds no
 * unread or unwritten byte, the connection's keys and record sequence
 * numbers can be taken over and the SSL object freed: an idle wss
 * connection then holds this struct (about 250 bytes) instead of OpenSSL's
 * 13-14 KiB, and a busy one reads ciphertext straight into the relay's
 * buffer and opens it there (no copy out of an OpenSSL buffer). This is
 * what Linux kTLS does in the kernel; the kernel here has no TLS module.
 *
 * RFC 8446 section 5 (records, padding, limits) and 7 (key schedule,
 * KeyUpdate); AEAD and HMAC from OpenSSL's libcrypto. Pure: no socket is
 * touched here; io.c does the reading and writing. */
#ifndef WSGATE_TLSREC_H
#define WSGATE_TLSREC_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define TLSREC_HDR 5
#define TLSREC_TAG 16
#define TLSREC_MAX_PLAIN 16384
/* The most bytes one record may take on the wire (2^14 + 256 of
 * ciphertext, section 5.2), and so a buffer that holds any record. */
#define TLSREC_MAX_WIRE (TLSREC_HDR + TLSREC_MAX_PLAIN + 256)
/* One sealed record of ours: header, plaintext, content type, tag. */
#define TLSREC_SEALED(n) (TLSREC_HDR + (n) + 1 + TLSREC_TAG)

/* One direction's keys. */
struct tlsrec_keys {
    uint8_t secret[48]; /* application traffic secret N */
    uint8_t key[32];
    uint8_t iv[12];
    uint64_t seq;    /* records sealed/opened with this key */
    uint64_t key_id; /* process-wide unique per installed key (the cached cipher contexts) */
};

enum {
    TLSREC_HAVE_CLIENT = 1, /* CLIENT_TRAFFIC_SECRET_0 seen */
    TLSREC_HAVE_SERVER = 2, /* SERVER_TRAFFIC_SECRET_0 seen */
    TLSREC_NO_TAKEOVER = 4, /* a KeyUpdate or early data during OpenSSL's part: keep OpenSSL */
    TLSREC_UPDATE_OWED = 8, /* the peer asked for a KeyUpdate: ours goes before our next record */
    TLSREC_EOF = 16,        /* close_notify or end of stream read */
    TLSREC_FAILED = 32,     /* a bad record or the peer's fatal alert: fail_alert says which */
    TLSREC_REPORTED = 64,   /* ... and the caller has been told */
    TLSREC_TX_CLOSED = 128, /* close_notify sent (or a failure): nothing more goes out */
    TLSREC_CLIENT = 256,    /* we are the client (a backend connection) */
};

struct tlsrec {
    unsigned flags;
    uint8_t fail_alert; /* with TLSREC_FAILED: the alert to send, 0 for the peer's own */
    uint16_t suite;     /* 0x1301 AES-128-GCM, 0x1302 AES-256-GCM, 0x1303 ChaCha20-Poly1305 */
    uint8_t keylen, hashlen;
    uint32_t rx_records, tx_records; /* counted by OpenSSL's message callback */
    struct tlsrec_keys rx, tx;
    /* io.c's buffers, each NULL unless in use:
     * in: bytes of a record not complete yet (in_len), or, when the caller's
     * buffer was too small for a record, its opened plaintext left to give
     * (plain_off, plain_len); out: the unwritten rest of a record partly
     * written (out_off..out_len), standing for out_plain of the caller's
     * bytes, which the caller offers again. */
    uint8_t *in;
    size_t in_len, plain_off, plain_len;
    uint8_t *out;
    size_t out_off, out_len, out_plain;
};

/* Watch a new SSL's handshake (its message callback and the context's key
 * log callback, set by tls.c); client is 1 for our side of a backend
 * connection, 0 for a client's connection to us. Returns 0, or -1 out of
 * memory. */
int tlsrec_watch(SSL *ssl, int client);
/* The SSL_CTX key log callback that captures the traffic secrets. */
void tlsrec_keylog(const SSL *ssl, const char *line);
/* The record layer of a finished TLS 1.3 handshake, if it can be taken over
 * now (a supported suite, both secrets seen, no KeyUpdate, nothing read
 * ahead or left unwritten by OpenSSL: the caller checks the last two), or
 * NULL (asked once: the SSL stops being watched either way). On success the
 * SSL no longer owns it and may be freed. */
struct tlsrec *tlsrec_take(SSL *ssl);
/* Install the keys of r->rx.secret and r->tx.secret (r->hashlen bytes
 * each) for suite (0x1301..0x1303), sequence numbers 0. Returns 0, or -1
 * for a suite not taken or a hash length not the suite's. */
int tlsrec_setup(struct tlsrec *r, uint16_t suite);
void tlsrec_free(struct tlsrec *r);
/* Connections taken over so far, and those left to OpenSSL (TLS 1.2, a
 * suite not listed, a KeyUpdate during the handshake's part). */
void tlsrec_counts(uint64_t *taken, uint64_t *kept);

/* Seal the plaintext of iov (skipping its first skip bytes) into out (cap
 * bytes) as records of at most 16 KiB, first our KeyUpdate when one is owed
 * (*update is set then; it is alone in out when given). ends[] gets each
 * record's end offset in out and plains[] its plaintext length (at most
 * nmax records). Returns the number of records, 0 when nothing to seal, -1
 * on a cipher failure. */
int tlsrec_seal(struct tlsrec *r, const struct iovec *iov, int cnt, size_t skip, uint8_t *out,
                size_t cap, size_t *ends, size_t *plains, int nmax, int *update);
/* Seal one record of n <= 16 KiB bytes of inner content type type at out
 * (TLSREC_SEALED(n) bytes). Returns that length, or -1. */
long tlsrec_seal_inner(struct tlsrec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *out);
/* Forget the last n records sealed (never written: their sequence numbers
 * are used again; no byte sealed under them left the process). */
void tlsrec_unseal(struct tlsrec *r, int n);
/* Our KeyUpdate record went out: switch to the next write key. */
int tlsrec_next_tx_key(struct tlsrec *r);
/* An alert record (level 1 close_notify when desc is 0, else level 2) into
 * out (at least TLSREC_SEALED(2) bytes). Returns its length, or -1. */
int tlsrec_alert(struct tlsrec *r, int desc, uint8_t *out);

/* Open the complete records at the start of buf[0..len) in place: the
 * application data is moved to buf's start. Returns the plaintext length;
 * *used gets the bytes of whole records taken (the rest is an incomplete
 * record). On a protocol failure TLSREC_FAILED is set and the plaintext
 * before the bad record returned; once none is left, -1 with *alert the
 * alert to send (RFC 8446 6.2), or 0 after a fatal alert from the peer.
 * close_notify sets TLSREC_EOF (later bytes are ignored). */
long tlsrec_open(struct tlsrec *r, uint8_t *buf, size_t len, size_t *used, int *alert);
/* Bytes the record starting at p (have bytes of it) takes in all, or 0 when
 * fewer than a header; -1 when its header is invalid (*alert set). */
long tlsrec_wire_len(const uint8_t *p, size_t have, int *alert);

#endif
