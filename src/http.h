/* http.h - incremental, bounded HTTP/1.x request-head parser.
 * Pure: works over the caller's buffer, stores pointers into it. */
#ifndef WSGATE_HTTP_H
#define WSGATE_HTTP_H

#include <stddef.h>

#define HTTP_MAX_HEAD 16384 /* request line + headers + blank line */
#define HTTP_MAX_HEADERS 100

enum {
    HTTP_PARTIAL = -2,   /* head not complete yet: read more */
    HTTP_BAD = -1,       /* malformed request line or header -> 400 */
    HTTP_TOO_LARGE = -3, /* head over HTTP_MAX_HEAD bytes or too many headers -> 431 */
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing spaces/tabs removed */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent, e.g. "/vnc?token=x" */
    size_t target_len;
    const char *path; /* target without the query string */
    size_t path_len;
    const char *query; /* after '?', NULL if none */
    size_t query_len;
    int version_major, version_minor; /* "HTTP/1.1" -> 1, 1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
};

/* Parse the request head in buf[0..len). prev_len is how many of these bytes
 * an earlier call already saw (0 the first time), so the search for the end
 * of the head resumes where it stopped. Returns the head length (bytes up to
 * and including the blank line; what follows belongs to the WebSocket stream),
 * or HTTP_PARTIAL, HTTP_BAD or HTTP_TOO_LARGE. Lines end in CRLF (a bare LF
 * is accepted). Obsolete line folding is malformed. */
int http_parse_request(const char *buf, size_t len, size_t prev_len, struct http_request *req);

/* First header named name (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_request *req, const char *name);
/* Number of headers named name. */
size_t http_count_headers(const struct http_request *req, const char *name);

/* True when the comma-separated header value list contains token
 * (case-insensitive, surrounding whitespace ignored). */
int http_list_has_token(const char *value, size_t len, const char *token);

/* The value of a hexadecimal digit (for percent-decoding), or -1. */
int http_hexval(int c);

/* The reason phrase for an HTTP status code ("Bad Request"...). */
const char *http_reason(int status);

#endif
