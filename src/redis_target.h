/* redis_target.h - where a Redis token store is, and what its values mean
 * (pure: no sockets, no event loop; unit tested and fuzzed).
 *
 * A source is written either as a URL
 *     redis://[[user]:password@]host[:port][/db]
 * or in websockify 0.13's TokenRedis form
 *     host[:port[:db[:password[:namespace]]]]
 * (empty port or db fields take 6379 and 0; the namespace may itself hold
 * colons and makes the key prefix "namespace:"). Hosts may be [v6] literals.
 *
 * A value stored under PREFIX+token is websockify's: "host:port", the JSON
 * {"host": "host:port"} or {"host": "h", "port": p} with p a number or a
 * string; surrounding white space is ignored. */
#ifndef WSGATE_REDIS_TARGET_H
#define WSGATE_REDIS_TARGET_H

#include <stddef.h>

/* A parsed source. Strings are owned (NULL when absent). */
struct redis_target {
    char *host;     /* name or address, without brackets */
    unsigned port;  /* 1..65535 */
    unsigned db;    /* SELECT db (0 = none sent) */
    char *user;     /* AUTH user (ACL), or NULL */
    char *password; /* AUTH password, or NULL */
    char *prefix;   /* key prefix: websockify's "namespace:", or set by the caller */
    char *name;     /* "host:port/db" for log lines (never the password) */
};

/* Parse source s into *t (zeroed first). Returns 0, or -1 with a message in
 * err (which never repeats a password) and nothing held in *t. */
int redis_target_parse(const char *s, struct redis_target *t, char *err, size_t errlen);

/* Free what redis_target_parse() put in t (not t itself). */
void redis_target_free(struct redis_target *t);

/* Parse a value val[0..len) (not NUL-terminated, may hold any bytes) into a
 * target "host:port" or "[v6]:port" in target[cap] (NUL-terminated). Returns
 * 0, or -1 when it is not one of the accepted forms, the host is empty or
 * holds characters no host name or address has, the port is not 1..65535,
 * or the result does not fit. */
int redis_value_parse(const char *val, size_t len, char *target, size_t cap);

#endif
