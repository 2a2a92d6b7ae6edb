/* iptable.h - the bounded per-address table the workers share: connection
 * counts (max_connections_per_ip) and token buckets (handshake_rate_per_ip)
 * per client-address key.
 *
 * Concurrency: IPTABLE_SHARDS shards, each with its own mutex and its own
 * fixed slice of the entries; a call locks one shard for a few dozen
 * instructions, so workers contend only when two addresses hash to the same
 * shard at the same moment. There is no global lock.
 *
 * Memory: every entry is allocated by iptable_new() (cap entries of
 * IPTABLE_ENTRY_SIZE bytes plus the hash heads); nothing is allocated later,
 * so memory never grows with the number of distinct addresses. Entries with
 * no connection are kept in least-recently-used order and reused when a
 * shard is full: an entry unused for 1 s or more carries no state (a bucket
 * with burst = rate is full again after 1 s), so forgetting it changes
 * nothing. Only when more distinct addresses than a shard holds arrive
 * within one second does an idle entry's bucket get forgotten early (its
 * address starts again with a full burst). Entries that hold connections are
 * never reused; when a whole shard is held by connections, acquire and take
 * fail (the caller refuses the connection). */
#ifndef WSGATE_IPTABLE_H
#define WSGATE_IPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define IPTABLE_DEFAULT_CAP 100000
#define IPTABLE_SHARDS 128

/* What is counted: addr = netaddr_key() of the client address (port 0, IPv6
 * cut to ipv6_prefix); scope = what the count is of: IPTABLE_GATEWAY for the
 * gateway-wide connection count, or a route's stable id (>= 1) for its
 * sessions and its handshake rate. */
struct iptable_key {
    struct netaddr addr;
    uint32_t scope;
};

#define IPTABLE_GATEWAY 0u

struct iptable;

/* A table of at most cap entries (rounded up to a multiple of
 * IPTABLE_SHARDS; 0 = IPTABLE_DEFAULT_CAP). NULL when out of memory. */
struct iptable *iptable_new(size_t cap);
void iptable_free(struct iptable *t);

/* One more connection for key when it has fewer than max (max 0 = no limit,
 * counted all the same). now: seconds (ev_now). Returns 0 (counted: call
 * iptable_conn_release() once when it ends), or -1 (over max, or the shard is
 * full of held entries; nothing counted). */
int iptable_conn_acquire(struct iptable *t, const struct iptable_key *key, uint32_t max,
                         double now);
/* The end of a connection counted by iptable_conn_acquire(). */
void iptable_conn_release(struct iptable *t, const struct iptable_key *key, double now);

/* Take one token from key's bucket (rate per second, burst = rate; rate 0 =
 * no limit: always 0). Returns 0, or -1 when the bucket is empty (answer 429
 * with Retry-After: 1) or the shard is full of held entries. */
int iptable_rate_take(struct iptable *t, const struct iptable_key *key, uint32_t rate, double now);

/* Connections key holds now (for tests and metrics). */
uint32_t iptable_conns(struct iptable *t, const struct iptable_key *key);
/* Entries in use, and the entry capacity. */
size_t iptable_used(struct iptable *t);
size_t iptable_capacity(const struct iptable *t);
/* Bytes allocated by the table (constant after iptable_new()). */
size_t iptable_bytes(const struct iptable *t);

#endif
