/* upgrade.h - RFC 6455 section 4.2 server handshake: validation of a parsed
 * request against the configuration, and the response bytes. Pure. */
#ifndef WSGATE_UPGRADE_H
#define WSGATE_UPGRADE_H

#include <stddef.h>

#include "config.h"
#include "http.h"

struct upgrade_result {
    int status;      /* 101 when the upgrade may proceed, else the HTTP status */
    const char *why; /* short text for the body and the log ("no route for path") */
    const struct route *route;
    const char *subprotocol; /* chosen (points into the route config) or NULL */
    char accept[32];         /* Sec-WebSocket-Accept value, NUL-terminated */
    const char *extensions;  /* Sec-WebSocket-Extensions value of the 101, or NULL */
};

/* Validate req against cfg. Order: method (405), version (505), Host (400),
 * Upgrade/Connection tokens (400), Sec-WebSocket-Version (426),
 * Sec-WebSocket-Key (400), route by Host and path (404, config_match_route),
 * Origin (403), subprotocol (400).
 * Connection limits (503) and the backend (502/504) are decided by the caller. */
void upgrade_validate(const struct config *cfg, const struct http_request *req,
                      struct upgrade_result *res);

/* Compute Sec-WebSocket-Accept for a key: base64(SHA1(key + GUID)). out must
 * hold 29 bytes. */
void upgrade_accept_key(const char *key, size_t key_len, char *out);

/* Write the "101 Switching Protocols" response into out (with
 * Sec-WebSocket-Protocol and Sec-WebSocket-Extensions when res names them).
 * Returns its length, or 0 if cap is too small. */
size_t upgrade_response_101(const struct upgrade_result *res, char *out, size_t cap);

/* Write an error response: status line, Content-Type: text/plain,
 * Content-Length, Connection: close, "Sec-WebSocket-Version: 13" for 426,
 * "Allow: GET" for 405, "WWW-Authenticate: Basic realm=\"wsgate\"" for 401, and
 * a short body "STATUS REASON: why\n". Returns its length (0 if cap too small). */
size_t upgrade_response_error(int status, const char *why, char *out, size_t cap);

#endif
