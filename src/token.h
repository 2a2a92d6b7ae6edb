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

/* A thread-safe holder of the current table of one source, shared by the
 * workers. The source is read and its targets resolved when the cache is
 * opened (configuration load, main thread); afterwards one watcher thread
 * (token_watch_start) checks every open cache at most once per
 * TOKEN_WATCH_INTERVAL_MS and re-reads a changed source off the worker
 * loops, publishing the new table atomically. Lookups only take a reference
 * on the published table under the cache's own mutex: no file I/O, no stat,
 * no DNS, no lock shared by all caches. */
struct token_cache;

struct backend_spec; /* config.h */

#define TOKEN_WATCH_INTERVAL_MS 1000

/* Open a cache for path: read it and resolve its targets now (host names
 * with getaddrinfo). Returns -1 when the source cannot be read (err says
 * why, *out untouched), else the number of lines skipped, with warnings (bad
 * lines, targets that do not resolve) in err, and the cache in *out; the
 * watcher sees it from now on. */
int token_cache_open(const char *path, struct token_cache **out, char *err, size_t errlen);

/* As token_cache_open, ignoring warnings; a source that cannot be read
 * starts empty. NULL on ENOMEM. */
struct token_cache *token_cache_new(const char *path);

/* Stop watching c and drop it (the watcher may finish a pass with it first;
 * the last holder frees it). Safe from any thread; never waits for a read. */
void token_cache_free(struct token_cache *c);

/* Look token[0..len) up in the published table. Returns 1 with a deep copy
 * of its resolved target in *out (free with config_free_backend), 0 for an
 * unknown token, -1 when the target did not resolve when the table was
 * loaded, or on ENOMEM (err says why; answer 502). Never blocks on I/O. */
int token_cache_resolve(struct token_cache *c, const char *token, size_t len,
                        struct backend_spec *out, char *err, size_t errlen);

/* Look token[0..len) up in the published table. Returns 1 with the target
 * text copied to target (cap bytes, NUL-terminated), 0 for an unknown token
 * or a target that does not fit. err is always empty: reloads report
 * through the watcher (kept for older callers; prefer token_cache_resolve,
 * which needs no getaddrinfo). */
int token_cache_lookup(struct token_cache *c, const char *token, size_t len, char *target,
                       size_t cap, char *err, size_t errlen);

/* Re-read c now if its source changed (what the watcher does each pass).
 * Returns 1 when a new table was published (err holds its warnings), 0 when
 * unchanged, -1 when out of memory (the old table stays). A source that
 * cannot be read publishes an empty table until it changes again. */
int token_cache_refresh(struct token_cache *c, char *err, size_t errlen);

/* Called by the watcher with a cache's path and the warnings of a re-read
 * (one or more lines). */
typedef void (*token_report_fn)(const char *path, const char *msg);

/* Start the watcher thread (main thread, after the configuration is loaded).
 * Returns 0, or -1 with errno set. */
int token_watch_start(token_report_fn report);

/* Also run fn on the watcher thread at every pass (another source that is
 * re-read off the loops, e.g. basic_auth_watch_pass); NULL removes it. */
void token_watch_hook(void (*fn)(void));

/* Stop it at exit: waits up to 1 s for the current pass, then leaves a
 * thread stuck in a read or a lookup alone. */
void token_watch_stop(void);

#endif
