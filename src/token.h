/* token.h - websockify's TokenFile targets: ?token=X picks the backend.
 *
 * A token source is a file, or a directory whose regular files (names not
 * starting with '.', read in name order) are such files. Lines:
 *
 *     # comment
 *     token: host:port
 *     token2 : [2001:db8::1]:5900
 *     token3: unix_socket:/run/vnc.sock     (stored as "unix:/run/vnc.sock")
 *
 * The separator is the first ':' followed by a space or tab (as websockify
 * splits on ":\s"); surrounding whitespace is trimmed. A later line for the
 * same token wins. Malformed lines are skipped with a warning that names the
 * file and line number, never the token or the line's text. */
#ifndef WSGATE_TOKEN_H
#define WSGATE_TOKEN_H

#include <stddef.h>

struct token_table; /* immutable once loaded */

/* Read the token source at path. Returns -1 when it cannot be read (err
 * says why; *out untouched), else the number of lines skipped as malformed
 * or duplicate, with one "PATH: line N: why" line per warning in err (empty
 * when none; truncated to errlen) and the table in *out. An empty source is
 * a valid, empty table. */
int token_load(const char *path, struct token_table **out, char *err, size_t errlen);

/* The target for token[0..len) ("host:port", "[v6]:port" or "unix:/path",
 * for config_parse_backend), or NULL when unknown. */
const char *token_lookup(const struct token_table *t, const char *token, size_t len);

/* Number of tokens in the table. */
size_t token_count(const struct token_table *t);

/* The i-th token (in token order) with its target in *target; NULL when i
 * is past the end. */
const char *token_at(const struct token_table *t, size_t i, const char **target);

/* True (1) when the source at path may differ from what t was read from:
 * the file, or the directory and any of its files, has another inode, size,
 * mtime or ctime, or a file was added or removed. A few stat() calls. */
int token_source_changed(const char *path, const struct token_table *t);

void token_free(struct token_table *t);

/* Extract the first non-empty "token" parameter of a query string (the part
 * after '?', not included), percent-decoded ('+' is a space, as websockify
 * reads it). Returns its length with a NUL-terminated copy in out, -1 when
 * there is no token, -2 when it is malformed (bad escape, NUL) or does not
 * fit in cap. */
int token_from_query(const char *query, size_t len, char *out, size_t cap);

/* A thread-safe holder of the current table of one source, re-read when it
 * changes; one per route, shared by the workers. */
struct token_cache;

/* A cache for path; nothing is read until the first lookup. NULL on ENOMEM. */
struct token_cache *token_cache_new(const char *path);
void token_cache_free(struct token_cache *c);

/* Look token[0..len) up, first re-reading the source when it changed (or on
 * the first call). Returns 1 with the target copied to target (cap bytes,
 * NUL-terminated), 0 for an unknown token or a target that does not fit.
 * When a re-read happened and had something to report, err holds it (else
 * err[0] == '\0'): the caller logs it. A source that cannot be read counts
 * as empty until it changes again. */
int token_cache_lookup(struct token_cache *c, const char *token, size_t len, char *target,
                       size_t cap, char *err, size_t errlen);

#endif
