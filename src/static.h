/* static.h - serving files under web_root for plain GET/HEAD requests.
 *
 * No socket I/O here: the session asks static_request() what to answer,
 * writes the bytes of static_response_head() and then, for a 200 to a GET,
 * f.size bytes of f.fd (sendfile on plain sockets), and calls static_close().
 * The gateway answers one request per connection: every response says
 * "Connection: close".
 *
 * Traversal-proof: the request path is percent-decoded once; encoded '/' or
 * '\', NUL and control bytes, backslashes, "." and ".." segments, empty
 * segments ("//") and hidden segments (".git") are refused before the file
 * system is touched, and the file actually opened must resolve (realpath,
 * symlinks followed) to a path under the root: symlinks that leave the root
 * are refused. Only regular files are served; FIFOs and devices are never
 * opened blocking. */
#ifndef WSGATE_STATIC_H
#define WSGATE_STATIC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "http.h"

struct static_file {
    int fd;                   /* open regular file (O_RDONLY), -1 when none */
    uint64_t size;            /* bytes of the body */
    time_t mtime;             /* Last-Modified */
    const char *content_type; /* static string */
    int head_only;            /* HEAD: the response has no body */
    /* For a 301 to "path/": the request path and query (pointers into the
     * request buffer, which must stay alive until static_response_head). */
    const char *path, *query;
    size_t path_len, query_len;
};

/* The result of a whole request: the method (GET/HEAD, else 405), the path
 * (static_open) and If-Modified-Since (static_not_modified, ignored when
 * If-None-Match is present). root is realpath(web_root): absolute and free
 * of symlinks (else nothing is found under it); compute it once when the
 * configuration is loaded. Returns 200 (f->fd open), 304 (f->fd closed) or
 * an error status (301 directory without its slash, 400, 403, 404, 405,
 * 500); f is always initialised, so static_response_head(f, status) and
 * static_close(f) may follow whatever the result. */
int static_request(const char *root, const struct http_request *req, struct static_file *f);

/* Map the percent-encoded request path path[0..path_len) (no query string)
 * to a file under root and open it. "/" and paths ending in '/' map to
 * index.html. Returns 0 with out filled (fd open), or an HTTP status: 400
 * invalid escape or bytes, 403 refused (traversal, hidden, outside the root,
 * unreadable), 404 missing or not a regular file, 301 a directory requested
 * without its trailing slash (out->path set), 500 other errors. */
int static_open(const char *root, const char *path, size_t path_len, struct static_file *out);

/* Content-Type for a file name by its extension (case-insensitive); text
 * types carry "; charset=utf-8". Default application/octet-stream. */
const char *static_content_type(const char *name);

/* True (1) when an If-Modified-Since value (IMF-fixdate, or the obsolete
 * RFC 850 and asctime forms) is a valid date not older than mtime, so the
 * answer is 304. 0 for an invalid date or a newer file. */
int static_not_modified(const char *if_modified_since, size_t len, time_t mtime);

/* Format an HTTP-date (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") into
 * out, which must hold 30 bytes. Returns the length (29). */
size_t static_http_date(time_t t, char *out);

/* Write the response for status into out: for 200 the head only (the body
 * is f->size bytes of f->fd, sent by the caller unless f->head_only); for
 * 304 the head; for 301 a Location to path + "/" (query kept); for errors a
 * short text/plain body (left out for HEAD), with "Allow: GET, HEAD" for
 * 405. Returns the length, 0 if cap is too small. */
size_t static_response_head(const struct static_file *f, int status, char *out, size_t cap);

/* Close the file if open; safe to call twice. */
void static_close(struct static_file *f);

#endif
