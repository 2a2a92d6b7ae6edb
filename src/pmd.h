/* pmd.h - permessage-deflate (RFC 7692): negotiation of the extension
 * (pure: header values in, response value and agreed parameters out) and the
 * two per-session zlib streams (an inflater for client messages, a deflater
 * for backend bytes).
 *
 * No I/O and no logging. The streams are allocated on the first message that
 * needs them, sized by the negotiated window bits, and never per frame: the
 * inflater writes into a caller buffer in bounded chunks and the deflater
 * into a caller frame buffer. Memory per session (measured by the unit test
 * through the zalloc/zfree hooks, zlib 1.2.13, x86-64):
 *   nothing before the first compressed message in either direction;
 *   inflater, window bits W: 2^W + ~7 KiB       (9: 7672 B, 12: 11256 B, 15: 39928 B)
 *   deflater, window bits W, memLevel W-7: 8 * 2^W + ~5.8 KiB
 *                                              (9: 10048 B, 12: 38720 B, 15: 268096 B)
 * With compression_window_bits = 12 and a client that offered
 * client_max_window_bits (Chromium does) a session holds 49976 B once both
 * directions were used (test_memory asserts <= 64 KiB); a client that did not
 * (Firefox) compresses with 15 bits: when our window is under 15 it is then
 * answered client_no_context_takeover and the inflater is freed after each
 * message, so between messages such a session holds the deflater alone
 * (38720 B; 38720 + 39928 B only while a message is inflated). See
 * tests/unit/test_pmd.c (test_memory) for the exact figures it asserts. */
#ifndef WSGATE_PMD_H
#define WSGATE_PMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws.h"

#define PMD_MIN_BITS 9       /* smallest window wsgate compresses with (zlib refuses 8) */
#define PMD_MAX_BITS 15      /* the deflate maximum */
#define PMD_RESPONSE_MAX 160 /* longest response value pmd_negotiate writes, NUL included */
/* Backend chunks shorter than this go out as uncompressed messages. */
#define PMD_MIN_COMPRESS 64

/* Route settings (compression_level, compression_window_bits). */
struct pmd_settings {
    int level;       /* 0..9 */
    int window_bits; /* 9..15: the server's (deflater's) largest window, and the
                        client window asked for when the client allows it */
};

/* The agreed parameters of one session. */
struct pmd_params {
    bool server_no_context_takeover; /* the deflater resets after each message */
    bool client_no_context_takeover; /* the inflater resets after each message */
    int server_window_bits;          /* deflater window, 9..15 */
    int client_window_bits;          /* inflater window, 8..15 */
};

/* Choose permessage-deflate from the Sec-WebSocket-Extensions header values
 * vals[0..n) (one per header line, lens[i] bytes each; several offers per
 * line, comma separated, in the client's preference order). The first
 * acceptable permessage-deflate offer wins. An offer is declined (the next one
 * is tried) when it has an unknown parameter, a parameter twice, a value
 * where none is allowed, a missing or bad value (window bits not 8..15 in
 * decimal without leading zeros; quoted values are unquoted first), or a
 * server_max_window_bits below 9 (zlib can not compress with a 256-byte
 * window). Malformed syntax declines the offer it is in; other extensions are
 * ignored. Never fails the handshake.
 * Returns true when an offer was accepted: *out holds the agreed parameters
 * and resp (PMD_RESPONSE_MAX bytes) the NUL-terminated value of the
 * Sec-WebSocket-Extensions response header, e.g.
 * "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12".
 * Returns false (resp = "") when none was. */
bool pmd_negotiate(const char *const *vals, const size_t *lens, size_t n,
                   const struct pmd_settings *s, struct pmd_params *out, char *resp);

/* Result of pmd_inflate. */
enum pmd_status {
    PMD_DONE,  /* every input byte was used and nothing is pending; at fin the
                  message is complete */
    PMD_MORE,  /* out is full: make room and call again with the unused input
                  (possibly none) and the same fin */
    PMD_ERROR, /* fail the connection: *code 1007 (bad data), 1009 (too big)
                  or 1011 (out of memory), *reason a static text */
};

/* One session's streams and counters. Zero-initialised by pmd_init. */
struct pmd {
    struct pmd_params params;
    int level;
    uint64_t max_message; /* decompressed size limit per message, 0 = none */
    void *inf;            /* z_stream, allocated on the first compressed client message */
    void *def;            /* z_stream, allocated on the first compressed backend chunk */
    size_t mem;           /* bytes zlib holds for this session now */
    size_t mem_peak;
    /* inflate: the message in progress */
    uint64_t msg_out; /* decompressed bytes of it so far */
    uint8_t tail_fed; /* bytes of 00 00 ff ff given to zlib at fin (0..4) */
    bool ended;       /* a block with BFINAL ended the deflate stream */
    bool in_msg;      /* a message is in progress */
    bool msg_in;      /* it had compressed bytes */
    bool pending;     /* the last call filled the output: zlib may hold more */
    bool boundary;    /* the last inflate call that moved data ended at a block boundary */
    bool text;        /* a text message: its output is validated as UTF-8 */
    utf8_state utf8;
};

/* Set up p for the agreed parameters; allocates nothing. level is
 * compression_level, max_message the route's max_message_size (0 = none). */
void pmd_init(struct pmd *p, const struct pmd_params *params, int level, uint64_t max_message);

/* Free both streams (session end). p may be reused after pmd_init. */
void pmd_free(struct pmd *p);

/* Inflate part of a compressed client message: in[0..inlen) is payload of a
 * frame of it (unmasked); fin says this part ends the message; text says the
 * message is a text message (its output must be UTF-8). Output goes to
 * out[0..outcap), outcap > 0; *consumed and *produced say how many bytes were used and
 * written. At fin the 00 00 ff ff tail is appended internally, the message is
 * checked to end at a block boundary (else 1007), and the inflater is reset
 * when client_no_context_takeover was agreed. Decompressed bytes count against
 * max_message (over it -> 1009; memory stays bounded by outcap, so a zip bomb
 * costs time, not memory). A message may arrive in any number of parts; the
 * text flag of its first part counts. After PMD_ERROR the session must close. */
enum pmd_status pmd_inflate(struct pmd *p, const uint8_t *in, size_t inlen, bool fin, bool text,
                            uint8_t *out, size_t outcap, size_t *consumed, size_t *produced,
                            uint16_t *code, const char **reason);

/* Largest compressed payload pmd_deflate writes for n input bytes. */
size_t pmd_deflate_bound(size_t n);

/* Compress in[0..n) as one whole message (Z_SYNC_FLUSH, the 4-byte tail
 * removed) into out (outcap >= pmd_deflate_bound(n)). Returns the payload
 * length, or 0 when out of memory (the session fails with 1011). The deflater
 * is reset after the message when server_no_context_takeover was agreed. */
size_t pmd_deflate(struct pmd *p, const uint8_t *in, size_t n, uint8_t *out, size_t outcap);

/* Make one complete server frame (FIN, opcode op) of in[0..n) in out:
 * compressed with RSV1 when n >= PMD_MIN_COMPRESS, else uncompressed. out
 * must hold WS_MAX_SERVER_HEADER + pmd_deflate_bound(n) bytes; the payload is
 * written at out + WS_MAX_SERVER_HEADER and the header just before it, so the
 * frame is out[*start .. *start + return value). Returns 0 when out of
 * memory. */
size_t pmd_frame(struct pmd *p, enum ws_opcode op, const uint8_t *in, size_t n, uint8_t *out,
                 size_t outcap, size_t *start);

#endif
