/* cli.h - the command line: -c/-t/-v/-V/-h, --replay, and the
 * websockify-style form "wsgate [options] [LISTEN_HOST:]PORT TARGET" with
 * every websockify option answered (accepted with its meaning, or refused
 * with exit 2 and the wsgate way). */
#ifndef WSGATE_CLI_H
#define WSGATE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#define CLI_DEFAULT_CONFIG SYSCONFDIR "/wsgate/wsgate.ini"

struct cli {
    const char *config, *replay;
    int test, verbose, health_url;
    /* the websockify-style form */
    const char *web, *cert, *key, *heartbeat, *idle, *token_plugin, *token_source, *unix_target;
    const char *target_config, *unix_listen, *unix_listen_mode, *record;
    const char *cafile, *ssl_version, *ssl_ciphers, *log_file, *timeout;
    const char *auth_plugin, *auth_source;
    int ssl_only, ssl_target, verify_client, run_once, file_only, host_token, prefer_ipv6;
    int web_auth;
    /* derived */
    const char *min_version; /* from ssl_version */
    const char *jwt_alg;     /* --token-plugin JWTTokenApi: inferred from the key */
    double exit_after;       /* --timeout, seconds; 0 = never */
    char **pos;              /* positional arguments */
    int npos;
    bool unix_one; /* --unix-listen PATH TARGET: the one positional is the target */
};

/* Read and check the command line into o. Returns -1 when wsgate goes on,
 * else the exit code (0 after -h or -V, 2 for a usage error, with the
 * message printed). */
int cli_parse(int argc, char **argv, struct cli *o);

/* The configuration of the positional form as INI text (malloc'd), or NULL
 * with a message printed. */
char *cli_positional_ini(const struct cli *o);

void cli_usage(FILE *out);

#endif
