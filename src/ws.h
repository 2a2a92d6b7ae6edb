/* ws.h - RFC 6455 frame codec: a streaming decoder for client frames and an
 * encoder for server frames, UTF-8 validation and close-code rules.
 * Pure: no I/O, no allocation. */
#ifndef WSGATE_WS_H
#define WSGATE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes wsgate sends. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_NO_STATUS = 1005, /* never sent: "the close frame had no code" */
    WS_CLOSE_BAD_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

#define WS_MAX_HEADER 14 /* client frame: 2 + 8 length + 4 mask */
#define WS_MAX_SERVER_HEADER 10
#define WS_MAX_CONTROL 125

/* Incremental UTF-8 validator state (0 = at a character boundary). */
typedef uint32_t utf8_state;
#define UTF8_ACCEPT 0u
#define UTF8_REJECT 1u

/* Feed n bytes. Returns the new state: UTF8_REJECT as soon as the bytes can
 * not be the prefix of valid UTF-8 (fail fast, including overlongs,
 * surrogates and code points above U+10FFFF), UTF8_ACCEPT at a character
 * boundary, anything else inside a character. Never leaves UTF8_REJECT. */
utf8_state utf8_feed(utf8_state st, const uint8_t *p, size_t n);

enum ws_event_type {
    WS_EV_NONE = 0, /* every byte given was consumed; feed more */
    WS_EV_DATA,     /* payload of a text/binary message: buf[off..off+len), unmasked in place.
                       len > 0, except for a message whose final frame is empty: then one
                       event with len 0 and fin true marks the end of the message (empty
                       non-final frames give no event) */
    WS_EV_CONTROL,  /* a complete control frame; payload in d->ctl[0..d->ctl_len), valid
                       until the next ws_decode call */
    WS_EV_ERROR,    /* protocol violation: fail the connection with close_code */
};

struct ws_event {
    enum ws_event_type type;
    size_t off, len;       /* WS_EV_DATA (off relative to the buf of this call);
                              WS_EV_CONTROL: off 0, len = d->ctl_len */
    enum ws_opcode opcode; /* WS_EV_CONTROL: PING, PONG or CLOSE; WS_EV_DATA: TEXT or BINARY */
    bool fin;              /* WS_EV_DATA: this range ends the message */
    uint16_t close_code;   /* WS_EV_CONTROL close: code received (1005 if none);
                              WS_EV_ERROR: 1002, 1007 or 1009 to send */
    const char *reason;    /* WS_EV_ERROR: short static text for the close reason and log */
    bool compressed;       /* WS_EV_DATA: the message had RSV1 on its first frame
                              (permessage-deflate): off/len are compressed bytes, not
                              checked against max_message nor as UTF-8 (pmd.h does) */
};

struct ws_decoder {
    /* settings */
    uint64_t max_message; /* 0 = unlimited */
    bool rsv1_ok;         /* permessage-deflate negotiated: RSV1 marks the first frame of a
                             compressed message (set after ws_decoder_init) */
    /* state: private to ws.c */
    int state; /* which part of the frame comes next (ST_* in ws.c) */
    uint8_t hdr[WS_MAX_HEADER];
    size_t hdr_have, hdr_need; /* header bytes gathered / needed for the current part */
    uint8_t op;                /* opcode of the current frame */
    bool fin;
    uint8_t mask[4];
    size_t mask_pos;     /* index of the next mask byte (0..3) */
    uint64_t remaining;  /* payload bytes left in the current frame */
    uint8_t msg_op;      /* opcode of the message in progress (0 = none) */
    bool msg_compressed; /* the message in progress had RSV1 */
    uint64_t msg_len;    /* bytes of the message so far */
    utf8_state utf8;
    bool failed;
    uint16_t err_code; /* repeated by every call after a failure */
    const char *err_reason;
    /* control frame payload, collected across reads */
    uint8_t ctl[WS_MAX_CONTROL];
    size_t ctl_len;
};

/* Start a decoder. max_message 0 = unlimited. */
void ws_decoder_init(struct ws_decoder *d, uint64_t max_message);

/* Decode client frames from buf[0..len). Unmasks payload bytes in place.
 * Returns the number of bytes consumed and stores at most one event in *ev:
 * call again with the rest of the buffer until it returns WS_EV_NONE with
 * every byte consumed. Frames may be split at any byte. After WS_EV_ERROR the
 * decoder stays failed. A close frame's code and reason are validated here
 * (invalid code or 1-byte payload -> WS_EV_ERROR 1002, bad UTF-8 reason ->
 * 1007). The bytes of a frame that fails are not delivered; later calls
 * return the same WS_EV_ERROR and consume nothing. */
size_t ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len, struct ws_event *ev);

/* XOR data with mask, where data[0] lines up with mask[phase & 3]. */
void ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], size_t phase);

/* Write a server frame header (FIN set, unmasked) for opcode and payload
 * length into out (at least WS_MAX_SERVER_HEADER bytes). Returns its length. */
size_t ws_header(uint8_t *out, enum ws_opcode op, uint64_t len);
/* The same with RSV1 set: the frame of a message compressed with
 * permessage-deflate (RFC 7692 6.1). */
size_t ws_header_rsv1(uint8_t *out, enum ws_opcode op, uint64_t len);
/* Header length ws_header would write for len. */
size_t ws_header_len(uint64_t len);

/* Build a complete close frame with code and reason (truncated to fit 125
 * bytes of payload, at a UTF-8 boundary) into out (>= 127 bytes). code 0 means
 * a close frame with no payload. Returns the frame length. */
size_t ws_close_frame(uint8_t *out, uint16_t code, const char *reason);

/* True for a close code a peer may send (RFC 6455 7.4, IANA registry). */
bool ws_close_code_valid(uint16_t code);

/* base64: encode n bytes into out (4*ceil(n/3) bytes); returns length. */
size_t ws_base64_encode(char *out, const uint8_t *in, size_t n);

/* Streaming base64 decoder, for the "base64" subprotocol: decodes in place. */
struct ws_b64dec {
    uint32_t acc; /* bits carried across calls */
    int nacc;     /* sextets of the current quantum (0..3); -1 after an error */
    int pad;      /* '=' seen in the current or last quantum */
};
/* Decode p[0..n) in place (output never overtakes input). Returns the number of
 * decoded bytes written at p, or -1 for a character outside the alphabet or
 * data after padding (the state then stays failed). Whitespace is not
 * accepted. Zero the struct to start (or restart, at a message end). */
long ws_b64_decode(struct ws_b64dec *st, uint8_t *p, size_t n);
/* True when the decoder stopped at a quantum boundary (a message may end). */
bool ws_b64_complete(const struct ws_b64dec *st);

#endif
