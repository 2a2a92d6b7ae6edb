/* addr.h - socket addresses as written in configurations and token targets.
 * The parsers of whole values are declared in config.h (config_parse_listen,
 * config_parse_backend, config_free_backend); these are their parts. */
#ifndef WSGATE_ADDR_H
#define WSGATE_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Split "host:port" or "[v6]:port": the host (without brackets) is copied
 * into host[hostsz], the port checked (1-65535). *bracketed tells which form
 * was used. 0, or -1 with a message in err. */
int addr_split_hostport(const char *s, char *host, size_t hostsz, unsigned *port, bool *bracketed,
                        char *err, size_t errlen);
/* True for a dotted quad only (not "127.1" or "0x7f.1"). */
bool addr_strict_ipv4(const char *host);
/* True when host looks like an IPv4 literal (digits and dots only). */
bool addr_looks_ipv4(const char *host);
/* A DNS name or IPv4 literal: letters, digits, '.', '-', '_'. */
bool addr_valid_host_name(const char *h);
/* "unix:/absolute/path" -> b with one AF_UNIX address. 0 or -1 with err. */
int addr_parse_unix(const char *s, struct backend_spec *b, char *err, size_t errlen);

#endif
