/* sock.h - socket helpers. They never log: they return -1 and leave errno
 * (or fill err) so the caller decides what to say. */
#ifndef WSGATE_SOCK_H
#define WSGATE_SOCK_H

#include <stddef.h>

#include "config.h"

/* A non-blocking listening socket bound to addr (SO_REUSEADDR, SO_REUSEPORT
 * when reuseport, IPV6_V6ONLY for IPv6; TCP_NODELAY on TCP, which the
 * sockets accept() returns inherit on Linux). Returns the fd or -1 with errno. */
int sock_listen(const struct sockaddr_any *addr, int reuseport);

/* A non-blocking listening Unix socket at addr (AF_UNIX) whose file gets
 * permissions mode. A socket file nobody listens on (connect refused) is
 * replaced; a live socket fails with EADDRINUSE, any other file with EEXIST.
 * Returns the fd or -1 with errno. */
int sock_listen_unix(const struct sockaddr_any *addr, unsigned mode);

/* Check that addr is free: bind a socket without SO_REUSEPORT and close it.
 * Workers share their listening ports through SO_REUSEPORT, which would also
 * let a second gateway silently share the port with a first one. Returns 0
 * or -1 with errno (EADDRINUSE when another process holds the address). */
int sock_probe_bind(const struct sockaddr_any *addr);

/* Start a non-blocking connect to addr. Returns the fd (connect may still be
 * in progress) or -1 with errno (e.g. ECONNREFUSED for an immediate refusal). */
int sock_connect(const struct sockaddr_any *addr);

/* Where a connect sock_connect() started stands, asked without waiting (on
 * loopback it has usually finished already): 1 connected, 0 in progress, -1
 * failed with errno. */
int sock_connect_check(int fd, const struct sockaddr_any *addr);

/* The pending error of a socket whose connect finished (0 = connected). */
int sock_error(int fd);

/* True when the peer of a TCP socket has closed or reset it, seen without
 * reading (its data may still be queued): state CLOSE_WAIT, LAST_ACK or
 * CLOSE (where a reset or any fatal error leaves it). */
int sock_peer_gone(int fd);
/* Every byte written to fd has reached the peer: acknowledged by its TCP
 * (SIOCOUTQ is 0), or read by it on a unix socket. 0 on error. */
int sock_all_acked(int fd);

/* TCP_NODELAY on TCP sockets; nothing for Unix sockets. */
void sock_tune(int fd, const struct sockaddr_any *addr);
/* TCP keepalive (60 s idle, 10 s interval, 6 probes) on TCP sockets;
 * nothing for Unix sockets. Four setsockopt calls: the session arms it only
 * once it has lived a few seconds (short sessions never need it). */
void sock_keepalive(int fd, const struct sockaddr_any *addr);

/* "1.2.3.4:80", "[::1]:80" or "unix:/path" into out. Returns out. */
char *sock_addr_str(const struct sockaddr_any *addr, char *out, size_t len);

#endif
