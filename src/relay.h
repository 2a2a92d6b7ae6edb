/* relay.h - the data path of an upgraded session: client frames in, payload
 * to the backend; backend bytes in, frames to the client; heartbeats and the
 * close handshake.
 *
 * Two buffers, taken from the worker's pool only while data is in flight:
 *
 *   in:  raw client frames. The decoder unmasks payload in place and records
 *        the payload ranges ("spans"); the backend gets them with writev, so
 *        client payload is never copied in user space.
 *   out: one frame for the client at a time: backend bytes are read after
 *        WS_MAX_SERVER_HEADER bytes of headroom and the header is written just
 *        before them, so the frame goes out in one write.
 *
 * Control frames (pong, ping, close) are written between data frames, never
 * inside one; a pong answers the latest ping not yet answered.
 *
 * The relay does no event handling and never ends the session: it reads and
 * writes when told to, returns -1 when the client connection is finished,
 * and notes every reason in its outcome. The session (session.c) derives
 * from the relay_wants_* queries which events to wait for, and from
 * relay_client_done()/relay_backend_done() when each half is over.
 *
 * Bytes held in the buffers are counted in the route's buffered gauges
 * (metrics.h) at the end of every call that changes them: up is the part of
 * `in` still needed (from the first undelivered payload byte or undecoded
 * frame byte to its end) plus the inflated bytes in zout not yet written;
 * down is the frame in `out` not yet written. Neither exceeds buffer_size
 * (the buffers' capacity; the frame header's headroom is inside `out`).
 *
 * One call does a bounded amount of work: at most min(buffer_size, 64 KiB)
 * bytes read or decoded; relay_up_pending() says when input waits for
 * another turn. */
#ifndef WSGATE_RELAY_H
#define WSGATE_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "io.h"
#include "metrics.h"
#include "outcome.h"
#include "pmd.h"
#include "record.h"
#include "ws.h"

#define RELAY_SPANS 32     /* payload ranges written to the backend in one writev */
#define RELAY_BUDGET 65536 /* bytes one call reads or decodes at most */
#define RELAY_PONG_SLOT (WS_MAX_SERVER_HEADER + WS_MAX_CONTROL + 2)

/* Where our close frame stands. */
enum relay_close {
    RC_OPEN,    /* no close frame queued */
    RC_QUEUED,  /* queued: written once the data frame in flight is out */
    RC_WRITING, /* partly written */
    RC_SENT,    /* written; nothing may follow it */
};

struct relay_span {    /* buffers are at most 16 MiB */
    uint32_t off, len; /* off | RELAY_ZOUT: a range of the inflate buffer, else of in */
};
#define RELAY_ZOUT 0x80000000u

struct relay {
    /* set by relay_init */
    struct io *cl, *be; /* the transports (owned by the session) */
    struct ev_loop *loop;
    struct buf_pool *pool;
    size_t bufsize;
    size_t budget; /* min(bufsize, RELAY_BUDGET) */
    struct route_counters *ctr;
    struct outcome *end;

    /* client -> backend */
    struct buf *in;
    struct relay_span spans[RELAY_SPANS];
    int nspans, span0; /* pending spans are spans[span0..nspans) */
    struct ws_decoder dec;
    struct ws_b64dec b64;
    bool base64;
    bool up_done; /* no more client payload goes to the backend */
    bool be_gone; /* the backend failed or was closed: payload is discarded */

    /* backend -> client */
    struct buf *out;
    bool down_done; /* the backend is read no more */
    enum { W_NONE, W_OUT, W_CTL } writing;
    uint8_t ctl[RELAY_PONG_SLOT]; /* the control frame being written */
    size_t ctl_len, ctl_off;
    uint8_t pong[WS_MAX_CONTROL]; /* payload of the latest unanswered ping */
    uint8_t pong_len;
    bool pong_due, ping_due;

    /* the close handshake */
    enum relay_close close;
    bool close_rcvd; /* the client's close frame arrived */
    bool no_reply;   /* failing the connection: its close frame is not awaited */
    uint16_t close_code;
    const char *close_reason;

    /* permessage-deflate (relay_compress): client messages with RSV1 are
     * inflated into zout (a pool buffer held while its bytes wait for the
     * backend); spans with RELAY_ZOUT point there, in order with the others */
    bool pmd_on;
    struct pmd pmd;
    struct buf *zout;
    struct {
        uint32_t off, len; /* compressed payload in `in` not inflated yet */
        bool fin, text, active;
    } zin;
    size_t zwork; /* bytes inflated in this turn (count against the budget) */

    /* recording (relay_record): payload as the backend took it, as read from it */
    struct recording *rec;
    size_t head_left; /* bytes of the 101 head still in out: not frame bytes */

    /* accounting */
    uint64_t bytes_up;         /* payload written to the backend */
    uint64_t bytes_down;       /* payload read from the backend and framed */
    size_t held_up, held_down; /* this session's share of the buffered-bytes gauges */
    ev_tstamp last_rx, last_payload, closing_since;
};

/* Start the relay of an upgraded session. base64: the "base64" subprotocol
 * was chosen; max_message: the route's max_message_size. */
void relay_init(struct relay *r, struct io *cl, struct io *be, struct ev_loop *loop,
                struct buf_pool *pool, size_t bufsize, struct route_counters *ctr,
                struct outcome *end, bool base64, uint64_t max_message);
/* Give back the buffers and the compression streams (not the recording). */
void relay_free(struct relay *r);
/* permessage-deflate was agreed (params): RSV1 messages from the client are
 * inflated (decompressed size against max_message: 1009; bad data: 1007),
 * backend chunks of PMD_MIN_COMPRESS bytes or more go out compressed with
 * level. Call after relay_init, before any data. Allocates nothing. */
void relay_compress(struct relay *r, const struct pmd_params *params, int level);
/* Record the session into h (record.h; NULL = none): bytes the backend took
 * as "i" (after inflate and base64), bytes read from the backend as "o"
 * (before base64 and deflate). The caller closes h. */
void relay_record(struct relay *r, struct recording *h);
/* Write the 101 response head to the client; what the socket does not take
 * at once is sent before anything else. -1 when the client failed. */
int relay_start(struct relay *r, const char *head, size_t len);
/* Hand the relay bytes the client sent before the 101 (they start in.data
 * [in->start]); the relay owns the buffer. */
void relay_take_input(struct relay *r, struct buf *in);

/* Read the client once and relay what can be. -1: the client connection is
 * finished (EOF or error, noted in end); 0 otherwise. */
int relay_client_read(struct relay *r);
/* Decode buffered client input and write its payload to the backend, within
 * one budget. Call again while relay_up_pending(). */
void relay_pump_up(struct relay *r);
/* Write pending payload to the backend; then go on decoding. */
void relay_backend_write(struct relay *r);
/* Read the backend once and send what it gave as a frame. */
void relay_backend_read(struct relay *r);
/* Write to the client until done or the socket is full. -1: the client
 * connection failed (noted in end). */
int relay_client_write(struct relay *r);

/* Queue a close frame (once); the backend is read no more. */
void relay_close(struct relay *r, uint16_t code, const char *reason);
/* Queue a ping. */
void relay_ping(struct relay *r);
/* The backend is gone (a failure the relay saw sets this too; the session
 * then closes its half): pending payload is dropped, client payload from
 * now on is discarded, the client's frames are still decoded. */
void relay_backend_gone(struct relay *r);

/* The session records and the recording queue is congested: neither side is
 * read until it drains (record.h), or the wait is given up (the caller stops
 * the recording with record_abandon()). */
bool relay_record_waits(const struct relay *r);
/* What each side should be watched for now (backpressure, derived). */
bool relay_wants_client_read(const struct relay *r);
bool relay_wants_client_write(const struct relay *r);
bool relay_wants_backend_read(const struct relay *r);
bool relay_wants_backend_write(const struct relay *r);
/* Decodable client input waits for another turn (not blocked on a socket). */
bool relay_up_pending(const struct relay *r);
/* Reading the client is paused because the backend has not taken its bytes. */
bool relay_client_paused(const struct relay *r);
/* Our last byte to the client is out: the close handshake is complete, or
 * our close frame went out on a failing connection. */
bool relay_client_done(const struct relay *r);
/* The backend has every byte it is owed and will get no more. */
bool relay_backend_done(const struct relay *r);
/* Client payload decoded but not yet written to the backend. */
uint64_t relay_undelivered(const struct relay *r);

#endif
