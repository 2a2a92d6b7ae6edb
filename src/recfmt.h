/* recfmt.h - the recording file formats, pure (no I/O): the raw format's
 * header and chunk lines (wsgate.ini(5), RECORDING FORMATS) and the
 * asciicast v2 header and JSON text. record.c writes them, replay.c and the
 * tests read them. */
#ifndef WSGATE_RECFMT_H
#define WSGATE_RECFMT_H

#include <stddef.h>
#include <stdint.h>

enum record_format { RECORD_RAW = 0, RECORD_ASCIICAST = 1 };

enum record_dir {
    RECORD_IN = 0,  /* "i": payload from the client, written to the backend */
    RECORD_OUT = 1, /* "o": payload from the backend, sent to the client */
};

/* UTF-8 decoder state carried across chunks of one direction. */
struct record_utf8 {
    uint32_t cp;
    uint8_t need, seen, lower, upper;
};

/* A decoder at the start of a stream. */
void record_utf8_init(struct record_utf8 *st);

/* Append the JSON string body (without quotes) for the bytes in[0..len) to
 * out[0..cap), decoding UTF-8 with state st (a sequence cut at the end stays
 * in st for the next call); invalid bytes become U+FFFD (WHATWG: one per
 * maximal subpart). out needs room for 6 bytes per input byte plus 6; returns
 * the bytes written. With in == NULL (end of stream) a cut sequence left in
 * st is flushed as U+FFFD. */
size_t record_json_text(struct record_utf8 *st, const unsigned char *in, size_t len, char *out,
                        size_t cap);

/* Parse a raw chunk line "+SECONDS DIR LEN" (without its newline). Returns 0
 * with *t, *dir, *len set, 1 for a "+SECONDS stop REASON" line (*t set,
 * *reason pointing into line), or -1 when malformed. */
int record_parse_chunk_line(const char *line, double *t, enum record_dir *dir, uint64_t *len,
                            const char **reason);

/* The file header of a recording: raw ("WSREC 1", route, client, backend,
 * start, session id lines, then an empty line) or asciicast v2 (the JSON
 * header line with a title naming route, client and backend); control
 * characters in the names become '?'. malloc'd; NULL when out of memory. */
char *record_header(enum record_format format, const char *route, const char *client,
                    const char *backend, double start, const char *id);

#endif
