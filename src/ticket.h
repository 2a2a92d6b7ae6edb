/* ticket.h - TLS session-ticket keys, one set for the whole process so that
 * every server SSL_CTX and every worker thread seals and opens the same
 * tickets: a current key that seals new tickets and the previous one, still
 * opened (and its tickets renewed) until the next rotation. Stateless: no
 * session is kept in memory on the server. */
#ifndef WSGATE_TICKET_H
#define WSGATE_TICKET_H

#include <openssl/ssl.h>

/* Make a fresh random current key; the old current key becomes the previous
 * one (the first call leaves no previous key). Safe against concurrent
 * ticket_key_cb calls from worker threads. Returns 0, or -1 when the random
 * generator failed (the keys are then unchanged). */
int ticket_rotate(void);

/* Forget both keys (tickets sealed so far no longer open); for tests and
 * shutdown. */
void ticket_reset(void);

/* The OpenSSL ticket-key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * enc = 1 seals with the current key (returns 1, or -1 without one); enc = 0
 * opens with the key named key_name: 1 for the current key, 2 for the
 * previous one (OpenSSL then issues a new ticket under the current key), 0
 * for an unknown name (a full handshake follows), -1 on an OpenSSL error. */
int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                  EVP_MAC_CTX *hctx, int enc);

#endif
