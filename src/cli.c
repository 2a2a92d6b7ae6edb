/* cli.c - the command line: options into a struct cli (one table drives
 * getopt, the websockify flags and the refusals), checked; the
 * websockify-style positional form turned into INI text, so it goes through
 * the same validation as a file. */
#include "cli.h"

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <unistd.h>
#include <libgen.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "token.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

void cli_usage(FILE *out)
{
    fprintf(out,
            "Usage: wsgate [-c FILE] [-t] [-v] [-h] [-V]\n"
            "       wsgate [websockify options] [LISTEN_HOST:]PORT TARGET_HOST:PORT\n"
            "\n"
            "  -c, --config FILE   configuration file (default %s)\n"
            "  -t, --test          check the configuration and exit (0 = valid);\n"
            "                      with -v also print the effective configuration\n"
            "  -v, --verbose       log at debug level\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n"
            "      --replay FILE   print a session recording (.wsrec or .cast) and exit\n"
            "      --health-url    print the URL a local health probe fetches (admin\n"
            "                      listener, else the first plain one; health_path) and exit\n"
            "\n"
            "websockify-compatible options (positional form):\n"
            "  --heartbeat N       ping a silent client after N seconds\n"
            "  --idle-timeout N    close a connection after N seconds without payload\n"
            "  --unix-target PATH  connect to a Unix socket instead of TARGET_HOST:PORT\n"
            "  --record FILE       record sessions in FILE's directory (record = DIR)\n"
            "  --unix-listen PATH  listen on a Unix socket instead of [LISTEN_HOST:]PORT\n"
            "  --unix-listen-mode MODE  its permissions, octal (default 0660)\n"
            "  --web DIR, --cert FILE, --key FILE, --ssl-only,\n"
            "  --token-plugin TokenFile --token-source PATH\n"
            "  --ssl-target        TLS to the target (certificate and host name verified)\n"
            "  --verify-client --cafile FILE   require a client certificate from FILE's CAs\n"
            "  --cafile FILE       alone: verify a client certificate when one is sent\n"
            "  --ssl-version V     minimum TLS version: tlsv1_2 (also default, tlsv1_1) or\n"
            "                      tlsv1_3\n"
            "  --ssl-ciphers LIST  OpenSSL cipher list for TLS 1.2\n"
            "  --log-file FILE     append the log to FILE instead of stderr\n"
            "  --run-once          serve one WebSocket session, then exit\n"
            "  --timeout N         after N seconds, exit as soon as no session is open\n"
            "  --file-only         (always so) --web never lists directories\n"
            "  --host-token        the Host header (port stripped) is the token\n"
            "  -6, --prefer-ipv6   a bare PORT or localhost listens on IPv6\n"
            "  --target-config F   = --token-plugin TokenFile --token-source F\n"
            "See wsgate(8) for every websockify option and its answer.\n",
            CLI_DEFAULT_CONFIG);
}

/* websockify options wsgate will not take, with the wsgate way (exit 2). */
static const struct refusal {
    const char *opt;
    int has_arg;
    const char *way;
} refusals[] = {
    {"daemon", 0, "wsgate stays in the foreground: run it under systemd or in a container"},
    {"inetd", 0,
     "wsgate opens its own listeners (listen = ...): let systemd or the container restart it"},
    {"libserver", 0, "wsgate has one engine (event-loop workers): drop the option"},
    {"syslog", 1,
     "wsgate logs to stderr: journald or the container runtime reads it (log_format = json "
     "for structured lines)"},
    {"legacy-syslog", 0, "wsgate logs to stderr: journald or the container runtime reads it"},
    {"wrap-mode", 1,
     "wrap mode is not supported: run the program as its own service and give wsgate its "
     "host:port"},
    {"traffic", 0, "per-frame traces are not printed: use -v (log_level = debug) and /metrics"},
    {"key-password", 1,
     "a password never goes on the command line: use [tls] key_password_file in a "
     "configuration file (-c)"},
};
#define NREFUSALS (sizeof(refusals) / sizeof(refusals[0]))

/* Print the refusal of --opt; returns the usage exit code. */
static int refuse(const char *opt, const char *way)
{
    fprintf(stderr, "wsgate: %s is not supported: %s\n", opt, way);
    return 2;
}

/* "localhost" as websockify resolves it; -6 prefers IPv6. Other hosts are
 * numeric and kept as written. */
static const char *listen_host(const struct cli *o, const char *host, size_t len)
{
    if (len == 0)
        return o->prefer_ipv6 ? "[::]" : "";
    if (len == 9 && memcmp(host, "localhost", 9) == 0)
        return o->prefer_ipv6 ? "[::1]" : "127.0.0.1";
    return NULL;
}

/* --token-plugin JWTTokenApi: the algorithm the key at path is for (RSA ->
 * RS256, P-256 -> ES256, P-384 -> ES384, Ed25519 -> EdDSA, a secret ->
 * HS256): the first whose verifier accepts the key (jwt.c refuses an
 * algorithm that does not fit the key's type). NULL when none does. */
static const char *jwt_alg_for_key(const char *path, char *err, size_t errlen)
{
    static char *const algs[] = {"RS256", "ES256", "ES384", "EdDSA", "HS256"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        struct jwt_settings js = {.algorithms = &algs[i], .nalgorithms = 1};
        struct jwt_verifier *v = NULL;
        if (jwt_verifier_new(path, &js, &v, err, errlen) == 0) {
            jwt_verifier_free(v);
            return algs[i];
        }
    }
    return NULL;
}

static char cli_auth_path[64]; /* --auth-source's hashed copy, removed at exit */

static void cli_auth_cleanup(void)
{
    if (cli_auth_path[0])
        unlink(cli_auth_path);
}

/* --auth-plugin BasicHTTPAuth --auth-source user:pass: a private file
 * holding "user:yescrypt hash" (basic_auth_file takes hashes only), its
 * path in cli_auth_path. 0, or -1 with a message on stderr. */
static int cli_auth_file(const char *source)
{
    const char *colon = strchr(source, ':');
    if (!colon || colon == source) {
        fprintf(stderr, "wsgate: --auth-source: expected user:password\n");
        return -1;
    }
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) ||
        !crypt_rn(colon + 1, salt, &cd, sizeof(cd)) || cd.output[0] == '*') {
        fprintf(stderr, "wsgate: --auth-source: cannot hash the password\n");
        return -1;
    }
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(cli_auth_path, sizeof(cli_auth_path), "%.40s/wsgate-auth-XXXXXX", dir);
    int fd = mkstemp(cli_auth_path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "wsgate: --auth-source: cannot write %s: %s\n", cli_auth_path,
                strerror(errno));
        cli_auth_path[0] = '\0';
        return -1;
    }
    atexit(cli_auth_cleanup);
    fprintf(f, "%.*s:%s\n", (int)(colon - source), source, cd.output);
    OPENSSL_cleanse(&cd, sizeof(cd));
    return fclose(f) == 0 ? 0 : -1;
}

/* The access flags: --token-plugin JWTTokenApi, --web-auth, --auth-plugin
 * BasicHTTPAuth --auth-source user:pass. -1 to go on, or 2 (usage) after a
 * message. */
static int cli_access(struct cli *o)
{
    if (o->token_plugin && strstr(o->token_plugin, "JWTTokenApi")) {
        char err[512];
        if (!o->token_source) {
            fprintf(stderr, "wsgate: --token-plugin JWTTokenApi needs --token-source KEYFILE\n");
            return 2;
        }
        if (!(o->jwt_alg = jwt_alg_for_key(o->token_source, err, sizeof(err)))) {
            fprintf(stderr, "wsgate: --token-source %s: %s\n", o->token_source, err);
            return 2;
        }
    }
    if (!o->auth_plugin && !o->auth_source && !o->web_auth)
        return -1;
    if (!o->auth_plugin || !strstr(o->auth_plugin, "BasicHTTPAuth") || !o->auth_source) {
        fprintf(stderr, "wsgate: --auth-plugin: only BasicHTTPAuth with --auth-source "
                        "user:password (or basic_auth_file in a configuration file)\n");
        return 2;
    }
    return cli_auth_file(o->auth_source) < 0 ? 2 : -1;
}

/* The listen words of the positional form: --ssl-only is TLS only; --cert
 * alone serves TLS and plain WebSocket on the port (first byte 0x16 = TLS),
 * as websockify does. */
static const char *listen_tls(const struct cli *o)
{
    return o->ssl_only ? " tls" : o->cert ? " tls auto" : "";
}

/* Append printf output to a fixed buffer; returns -1 when it does not fit. */
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len)
        return -1;
    *len += (size_t)k;
    return 0;
}

/* --host-token: one route per token of the token source, chosen by the Host
 * header (port stripped) instead of ?token=. The source is read once, at
 * start (the command-line form has no reload). */
static int host_token_routes(const struct cli *o, char *ini, size_t cap, size_t *n)
{
    struct token_table *t = NULL;
    char err[512];
    int bad = 0;
    if (token_load(o->token_source, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsgate: --token-source: %s\n", err);
        return -1;
    }
    const char *token, *target;
    for (size_t i = 0; (token = token_at(t, i, &target)) != NULL; i++) {
        bad |= append(ini, cap, n, "[route:host-token-%zu]\nhost = %s\npath = /\nbackend = %s\n",
                      i + 1, token, target);
        if (o->ssl_target)
            bad |= append(ini, cap, n, "backend_tls = on\n");
    }
    token_free(t);
    return bad;
}

/* Build the configuration of "wsgate [LISTEN_HOST:]PORT TARGET" as INI text,
 * so that it goes through the same validation as a file. */
static int positional_ini(const struct cli *o, const char *listen, const char *target, char *ini,
                          size_t cap)
{
    size_t n = 0;
    int bad = 0;
    /* "6080" alone listens on every IPv4 address, as websockify does (every
     * IPv6 address with -6); --unix-listen replaces the TCP listener, as in
     * websockify. */
    if (o->unix_listen) {
        bad |= append(ini, cap, &n, "[gateway]\nlisten = unix:%s mode=%s%s%s\n", o->unix_listen,
                      o->unix_listen_mode && o->unix_listen_mode[0] != '0' ? "0" : "",
                      o->unix_listen_mode ? o->unix_listen_mode : "0660", listen_tls(o));
    } else {
        const char *colon = strrchr(listen, ':');
        const char *port = colon ? colon + 1 : listen;
        size_t hlen = colon ? (size_t)(colon - listen) : 0;
        const char *host = listen_host(o, listen, hlen);
        bad |=
            append(ini, cap, &n, "[gateway]\nlisten = %.*s:%s%s\n",
                   host ? (int)strlen(host) : (int)hlen, host ? host : listen, port, listen_tls(o));
    }
    if (o->run_once)
        bad |= append(ini, cap, &n, "max_connections = 1\n");
    if (o->verbose)
        bad |= append(ini, cap, &n, "log_level = debug\n");
    if (o->heartbeat)
        bad |= append(ini, cap, &n, "ping_interval = %s\n", o->heartbeat);
    if (o->idle)
        bad |= append(ini, cap, &n, "idle_timeout = %s\n", o->idle);
    if (o->web)
        bad |= append(ini, cap, &n, "web_root = %s\n", o->web);
    if (cli_auth_path[0] && o->web_auth) /* web_root files too, inherited by the route */
        bad |= append(ini, cap, &n, "basic_auth_file = %s\n", cli_auth_path);
    if (o->record) { /* websockify writes FILE.N per session; wsgate one file per session in DIR */
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", o->record);
        bad |= append(ini, cap, &n, "record = %s\n", dirname(copy));
    }
    if (o->cert || o->key)
        bad |= append(ini, cap, &n, "[tls]\ncert = %s\nkey = %s\n", o->cert ? o->cert : "",
                      o->key ? o->key : (o->cert ? o->cert : ""));
    if (o->cafile || o->min_version || o->ssl_ciphers) {
        if (!o->cert && !o->key)
            bad |= append(ini, cap, &n, "[tls]\n");
        if (o->cafile)
            bad |= append(ini, cap, &n, "client_ca = %s\nclient_cert = %s\n", o->cafile,
                          o->verify_client ? "required" : "optional");
        if (o->min_version)
            bad |= append(ini, cap, &n, "min_version = %s\n", o->min_version);
        if (o->ssl_ciphers)
            bad |= append(ini, cap, &n, "ciphers = %s\n", o->ssl_ciphers);
    }
    if (o->host_token)
        return bad | host_token_routes(o, ini, cap, &n);
    bad |= append(ini, cap, &n, "[route:default]\npath = /\n");
    if (o->ssl_target)
        bad |= append(ini, cap, &n, "backend_tls = on\n");
    if (o->unix_target)
        bad |= append(ini, cap, &n, "backend = unix:%s\n", o->unix_target);
    else if (target)
        bad |= append(ini, cap, &n, "backend = %s\n", target);
    if (cli_auth_path[0] && !o->web_auth)
        bad |= append(ini, cap, &n, "basic_auth_file = %s\n", cli_auth_path);
    if (o->jwt_alg)
        bad |= append(ini, cap, &n, "token_jwt_key = %s\ntoken_jwt_algorithms = %s\n",
                      o->token_source, o->jwt_alg);
    else if (o->token_source && o->token_plugin && strstr(o->token_plugin, "TokenRedis") != NULL)
        bad |= append(ini, cap, &n, "token_redis = %s\n", o->token_source);
    else if (o->token_source)
        bad |= append(ini, cap, &n, "token_file = %s\n", o->token_source);
    return bad ? -1 : 0;
}

/* Every option: its long name, short letter, whether it takes a value, and
 * the struct cli field it sets (a string, or a flag set to 1). */
enum opt_kind { O_STR, O_FLAG, O_HELP, O_VERSION };
#define OF(m) offsetof(struct cli, m)
static const struct opt {
    const char *name;
    int shortc;
    enum opt_kind kind;
    size_t off;
    bool websockify; /* an option of the positional form */
} opts[] = {
    {"config", 'c', O_STR, OF(config), false},
    {"test", 't', O_FLAG, OF(test), false},
    {"verbose", 'v', O_FLAG, OF(verbose), false},
    {"version", 'V', O_VERSION, 0, false},
    {"help", 'h', O_HELP, 0, false},
    {"replay", 0, O_STR, OF(replay), false},
    {"health-url", 0, O_FLAG, OF(health_url), false},
    {"web", 0, O_STR, OF(web), true},
    {"cert", 0, O_STR, OF(cert), true},
    {"key", 0, O_STR, OF(key), true},
    {"ssl-only", 0, O_FLAG, OF(ssl_only), true},
    {"heartbeat", 0, O_STR, OF(heartbeat), true},
    {"idle-timeout", 0, O_STR, OF(idle), true},
    {"token-plugin", 0, O_STR, OF(token_plugin), true},
    {"token-source", 0, O_STR, OF(token_source), true},
    {"web-auth", 0, O_FLAG, OF(web_auth), true},
    {"auth-plugin", 0, O_STR, OF(auth_plugin), true},
    {"auth-source", 0, O_STR, OF(auth_source), true},
    {"target-config", 0, O_STR, OF(target_config), true},
    {"unix-target", 0, O_STR, OF(unix_target), true},
    {"record", 0, O_STR, OF(record), true},
    {"unix-listen", 0, O_STR, OF(unix_listen), true},
    {"unix-listen-mode", 0, O_STR, OF(unix_listen_mode), true},
    {"ssl-target", 0, O_FLAG, OF(ssl_target), true},
    {"verify-client", 0, O_FLAG, OF(verify_client), true},
    {"cafile", 0, O_STR, OF(cafile), true},
    {"ssl-version", 0, O_STR, OF(ssl_version), true},
    {"ssl-ciphers", 0, O_STR, OF(ssl_ciphers), true},
    {"log-file", 0, O_STR, OF(log_file), true},
    {"run-once", 0, O_FLAG, OF(run_once), true},
    {"timeout", 0, O_STR, OF(timeout), true},
    {"file-only", 0, O_FLAG, OF(file_only), true},
    {"host-token", 0, O_FLAG, OF(host_token), true},
    {"prefer-ipv6", '6', O_FLAG, OF(prefer_ipv6), true},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))
#define OPT_BASE 256

/* Store the value of option i. Returns -1 to go on, or an exit code. */
static int take(struct cli *o, size_t i)
{
    char *field = (char *)o + opts[i].off;
    switch (opts[i].kind) {
    case O_STR:
        *(const char **)(void *)field = optarg;
        return -1;
    case O_FLAG:
        *(int *)(void *)field = 1;
        return -1;
    case O_HELP:
        cli_usage(stdout);
        return 0;
    case O_VERSION:
        printf("wsgate %s\n", PACKAGE_VERSION);
        return 0;
    }
    return 2;
}

/* getopt's tables built from opts[] and refusals[]. */
static void build_getopt(struct option *lo, char *shorts)
{
    size_t k = 0, s = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        bool arg = opts[i].kind == O_STR;
        lo[k++] = (struct option){opts[i].name, arg ? required_argument : no_argument, NULL,
                                  OPT_BASE + (int)i};
        if (opts[i].shortc) {
            shorts[s++] = (char)opts[i].shortc;
            if (arg)
                shorts[s++] = ':';
        }
    }
    for (size_t i = 0; i < NREFUSALS; i++)
        lo[k++] =
            (struct option){refusals[i].opt, refusals[i].has_arg ? required_argument : no_argument,
                            NULL, OPT_BASE + (int)(NOPTS + i)};
    lo[k] = (struct option){NULL, 0, NULL, 0};
    shorts[s++] = 'D'; /* websockify's -D = --daemon */
    shorts[s] = '\0';
}

/* Read every option into o. Returns -1 to go on, or an exit code. */
static int read_options(int argc, char **argv, struct cli *o)
{
    struct option lo[NOPTS + NREFUSALS + 1];
    char shorts[2 * NOPTS + 2];
    build_getopt(lo, shorts);
    int c;
    while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        size_t i = NOPTS;
        for (size_t j = 0; j < NOPTS && c < OPT_BASE; j++)
            if (opts[j].shortc == c)
                i = j;
        if (c >= OPT_BASE)
            i = (size_t)(c - OPT_BASE);
        if (c == 'D')
            i = NOPTS; /* --daemon */
        if (i >= NOPTS && i < NOPTS + NREFUSALS) {
            char opt[64];
            snprintf(opt, sizeof(opt), "--%s", refusals[i - NOPTS].opt);
            return refuse(opt, refusals[i - NOPTS].way);
        }
        if (i >= NOPTS) {
            cli_usage(stderr);
            return 2;
        }
        int rc = take(o, i);
        if (rc >= 0)
            return rc;
    }
    return -1;
}

/* True when any option of the positional form was given. */
static bool websockify_flags(const struct cli *o)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *field = (const char *)o + opts[i].off;
        if (opts[i].websockify &&
            (opts[i].kind == O_STR ? *(const char *const *)(const void *)field != NULL
                                   : *(const int *)(const void *)field != 0))
            return true;
    }
    return false;
}

/* Options that need others, and values with a fixed form. */
static int check_values(struct cli *o)
{
    if (o->target_config && !o->token_plugin) {
        o->token_plugin = "TokenFile";
        o->token_source = o->target_config;
    }
    if (o->token_plugin && strcmp(o->token_plugin, "TokenFile") != 0 &&
        strcmp(o->token_plugin, "websockify.token_plugins.TokenFile") != 0 &&
        strcmp(o->token_plugin, "TokenRedis") != 0 &&
        strcmp(o->token_plugin, "websockify.token_plugins.TokenRedis") != 0 &&
        strcmp(o->token_plugin, "JWTTokenApi") != 0 &&
        strcmp(o->token_plugin, "websockify.token_plugins.JWTTokenApi") != 0) {
        fprintf(stderr, "wsgate: --token-plugin: only TokenFile, TokenRedis and JWTTokenApi are "
                        "supported\n");
        return 2;
    }
    if (o->verify_client && !o->cafile) {
        fprintf(stderr, "wsgate: --verify-client needs --cafile FILE (the CAs that sign "
                        "client certificates)\n");
        return 2;
    }
    if (o->host_token && !o->token_source) {
        fprintf(stderr, "wsgate: --host-token needs --token-plugin TokenFile --token-source "
                        "PATH\n");
        return 2;
    }
    if (o->unix_listen_mode && !o->unix_listen) {
        fprintf(stderr, "wsgate: --unix-listen-mode needs --unix-listen\n");
        return 2;
    }
    if (o->ssl_version) {
        if (strcmp(o->ssl_version, "tlsv1_3") == 0)
            o->min_version = "1.3";
        else if (strcmp(o->ssl_version, "default") == 0 || strcmp(o->ssl_version, "tlsv1_1") == 0 ||
                 strcmp(o->ssl_version, "tlsv1_2") == 0)
            o->min_version = "1.2"; /* wsgate's floor is TLS 1.2 */
        else {
            fprintf(stderr,
                    "wsgate: --ssl-version: '%s' is not one of default, tlsv1_1, tlsv1_2, "
                    "tlsv1_3\n",
                    o->ssl_version);
            return 2;
        }
    }
    if (o->timeout) {
        char *end;
        long v = strtol(o->timeout, &end, 10);
        if (*o->timeout == '\0' || *end != '\0' || v < 0 || v > 86400 * 365) {
            fprintf(stderr, "wsgate: --timeout: '%s' is not a number of seconds\n", o->timeout);
            return 2;
        }
        o->exit_after = (double)v;
    }
    return -1;
}

/* The positional arguments fit the options. */
static int check_positional(struct cli *o)
{
    if (o->replay) {
        if (o->npos > 0 || o->config || o->test || o->health_url) {
            fprintf(stderr, "wsgate: --replay FILE takes no other arguments\n");
            return 2;
        }
        return -1;
    }
    if (o->npos == 0 && websockify_flags(o)) {
        fprintf(stderr, "wsgate: websockify options need the positional form "
                        "[LISTEN_HOST:]PORT TARGET (with -c, set them in the file)\n");
        return 2;
    }
    if (o->config && o->npos > 0) {
        fprintf(stderr, "wsgate: -c and a positional LISTEN TARGET cannot be combined\n");
        cli_usage(stderr);
        return 2;
    }
    bool need_target = !o->unix_target && !o->token_source;
    /* with --unix-listen the listen port may be left out: "--unix-listen P TARGET" */
    o->unix_one = o->unix_listen && o->npos == 1 && need_target;
    if (o->npos > 0 && !o->unix_one && (o->npos > 2 || (need_target && o->npos != 2))) {
        cli_usage(stderr);
        return 2;
    }
    return -1;
}

int cli_parse(int argc, char **argv, struct cli *o)
{
    memset(o, 0, sizeof(*o));
    /* websockify's wrap mode: "PORT -- COMMAND ARGS". */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0)
            return refuse("wrap mode (-- COMMAND)", refusals[5].way);
    int rc = read_options(argc, argv, o);
    if (rc >= 0)
        return rc;
    o->pos = argv + optind;
    o->npos = argc - optind;
    if ((rc = check_values(o)) >= 0)
        return rc;
    if ((rc = check_positional(o)) >= 0)
        return rc;
    return o->npos > 0 ? cli_access(o) : -1;
}

char *cli_positional_ini(const struct cli *o)
{
    size_t cap = 4u << 20; /* --host-token: a route per token */
    char *ini = malloc(cap);
    const char *target = o->unix_one ? o->pos[0] : o->npos == 2 ? o->pos[1] : NULL;
    if (!ini || positional_ini(o, o->pos[0], target, ini, cap) < 0) {
        fprintf(stderr, "wsgate: command line too long\n");
        free(ini);
        return NULL;
    }
    return ini;
}
