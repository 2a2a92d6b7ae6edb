/* main.c - command line, configuration, rlimits, workers and signals. */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <crypt.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "jwt.h"
#include "listener.h"
#include "log.h"
#include "record.h"
#include "sock.h"
#include "tls.h"
#include "token.h"
#include "worker.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/wsgate/wsgate.ini"
#define ERRLEN 8192

static void usage(FILE *out)
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
            DEFAULT_CONFIG);
}

/* Options of the websockify-style form, turned into an INI text. */
struct cli {
    const char *config;
    int test, verbose;
    const char *web, *cert, *key, *heartbeat, *idle, *token_plugin, *token_source, *unix_target;
    const char *unix_listen, *unix_listen_mode;
    int ssl_only;
    const char *record; /* --record FILE: its directory becomes `record` */
    const char *cafile, *ssl_version, *ssl_ciphers, *log_file, *timeout;
    int ssl_target, verify_client, run_once, file_only, host_token, prefer_ipv6;
    const char *min_version; /* from ssl_version */
    const char *jwt_alg;     /* --token-plugin JWTTokenApi: inferred from the key */
    const char *auth_plugin, *auth_source;
    int web_auth;
};

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
 * BasicHTTPAuth --auth-source user:pass. 0, or 2 (usage) after a message. */
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
        return 0;
    if (!o->auth_plugin || !strstr(o->auth_plugin, "BasicHTTPAuth") || !o->auth_source) {
        fprintf(stderr, "wsgate: --auth-plugin: only BasicHTTPAuth with --auth-source "
                        "user:password (or basic_auth_file in a configuration file)\n");
        return 2;
    }
    return cli_auth_file(o->auth_source) < 0 ? 2 : 0;
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
                      o->unix_listen_mode ? o->unix_listen_mode : "0660",
                      o->ssl_only || o->cert ? " tls" : "");
    } else {
        const char *colon = strrchr(listen, ':');
        const char *port = colon ? colon + 1 : listen;
        size_t hlen = colon ? (size_t)(colon - listen) : 0;
        const char *host = listen_host(o, listen, hlen);
        bad |= append(ini, cap, &n, "[gateway]\nlisten = %.*s:%s%s\n",
                      host ? (int)strlen(host) : (int)hlen, host ? host : listen, port,
                      o->ssl_only || o->cert ? " tls" : "");
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

static struct gateway gw;
static ev_signal sig_int, sig_term, sig_hup;
static ev_async workers_done;
static unsigned nfinished;      /* atomic: workers whose loop ended */
static const char *config_file; /* NULL for the command-line form */
static int stop_signals;
static int verbose; /* -v: debug level whatever the file says */

/* cfg's log level and format; -v keeps the debug level across reloads. */
static void apply_log_settings(const struct config *cfg)
{
    log_setup(verbose ? WLOG_DEBUG : cfg->log_level, cfg->log_format);
}

/* SIGINT/SIGTERM: the first drains, a second closes everything at once. */
static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    const char *name = w->signum == SIGINT ? "SIGINT" : "SIGTERM";
    unsigned cmd = stop_signals++ == 0 ? WCMD_DRAIN : WCMD_STOP;
    if (cmd == WCMD_DRAIN)
        log_msg(WLOG_INFO,
                "received %s: draining (new upgrades get 503, sessions may finish "
                "for %.0f s, then close 1001)",
                name, gw.cfg->drain_timeout_ms / 1000.0);
    else
        log_msg(WLOG_INFO, "received %s again: closing every session now", name);
    __atomic_store_n(&gw.draining, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < gw.nworkers; i++)
        worker_post(&gw.workers[i], cmd);
}

/* --run-once and --timeout: drain as SIGTERM does, and so exit. */
static int run_once;
static double exit_after; /* seconds; 0 = never */
static ev_timer exit_watch;

/* WebSocket sessions that ended, all routes and workers. */
static uint64_t sessions_ended(const struct metrics *m)
{
    uint64_t sum = 0;
    for (const struct route_stats *rs = __atomic_load_n(&m->routes, __ATOMIC_ACQUIRE); rs;
         rs = rs->next)
        for (unsigned w = 0; w < m->nslots; w++)
            for (int r = 0; r < RESULT_COUNT; r++)
                sum += __atomic_load_n(&rs->slot[w].results[r], __ATOMIC_RELAXED);
    return sum;
}

static void exit_watch_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    const char *why = NULL;
    if (stop_signals)
        return;
    if (run_once && sessions_ended(&gw.metrics) > 0)
        why = "--run-once: the WebSocket session ended";
    else if (exit_after > 0 && ev_now(loop) >= *(const double *)w->data &&
             __atomic_load_n(&gw.active, __ATOMIC_RELAXED) == 0)
        why = "--timeout: no session open";
    if (!why)
        return;
    log_msg(WLOG_INFO, "%s: exiting", why);
    stop_signals++;
    __atomic_store_n(&gw.draining, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < gw.nworkers; i++)
        worker_post(&gw.workers[i], WCMD_DRAIN);
    ev_timer_stop(loop, w);
}

/* Every listen address of cfg that old (may be NULL) does not have must be
 * free: no other process may listen there. Returns 0, or -1 after logging. */
static int probe_listeners(const struct config *cfg, const struct config *old)
{
    for (size_t i = 0; i < cfg->nlistens; i++) {
        const struct listen_spec *l = &cfg->listens[i];
        int known = 0;
        if (l->kind != LISTEN_INET)
            continue; /* unix and systemd: listeners_prepare() */
        for (size_t j = 0; old && j < old->nlistens; j++)
            known |= old->listens[j].addr.len == l->addr.len &&
                     memcmp(&old->listens[j].addr.ss, &l->addr.ss, l->addr.len) == 0;
        if (!known && sock_probe_bind(&l->addr) < 0) {
            log_msg(WLOG_ERROR, "%s:%d: listen: cannot listen on %s: %s", cfg->file, l->line,
                    l->text, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Log each line of a multi-line error text. */
static void log_lines(enum log_level level, const char *prefix, const char *text)
{
    while (*text) {
        size_t n = strcspn(text, "\n");
        log_msg(level, "%s%.*s", prefix, (int)n, text);
        text += n;
        if (*text == '\n')
            text++;
    }
}

/* The token watcher re-read a source and had warnings (token.h). */
static void token_report(const char *path, const char *msg)
{
    log_msg(WLOG_WARN, "token_file %s re-read:", path);
    log_lines(WLOG_WARN, "  ", msg);
}

/* The watcher re-read a basic_auth_file (auth.h). */
static void basic_auth_report(const char *path, const char *msg)
{
    log_msg(WLOG_INFO, "basic_auth_file %s re-read:", path);
    log_lines(WLOG_INFO, "  ", msg);
}

/* SIGHUP: parse the file into a new configuration; on success new sessions
 * and listeners use it, live sessions keep theirs; on failure nothing
 * changes. */
static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (!config_file) {
        log_msg(WLOG_WARN, "SIGHUP: no configuration file to reload (command-line form)");
        return;
    }
    if (stop_signals) {
        log_msg(WLOG_WARN, "SIGHUP: ignored while draining");
        return;
    }
    char err[ERRLEN];
    struct config *cfg;
    if (config_load(config_file, &cfg, err, sizeof(err)) < 0) {
        log_msg(WLOG_ERROR, "SIGHUP: %s is invalid; keeping the running configuration",
                config_file);
        log_lines(WLOG_ERROR, "SIGHUP: ", err);
        return;
    }
    if (probe_listeners(cfg, gw.cfg) < 0) {
        log_msg(WLOG_ERROR, "SIGHUP: keeping the running configuration");
        config_unref(cfg);
        return;
    }
    if (listeners_prepare(cfg, err, sizeof(err)) < 0) {
        log_msg(WLOG_ERROR, "SIGHUP: %s; keeping the running configuration", err);
        listeners_retain(gw.cfg);
        config_unref(cfg);
        return;
    }
    int kept_old;
    if (tls_attach(cfg, gw.cfg, &kept_old, err, sizeof(err)) < 0) {
        log_msg(WLOG_ERROR, "SIGHUP: %s; keeping the running configuration", err);
        config_unref(cfg);
        return;
    }
    if (kept_old)
        log_msg(WLOG_ERROR, "SIGHUP: %s; new connections keep the old certificate", err);
    if (gateway_attach_stats(&gw, cfg) < 0) {
        log_msg(WLOG_ERROR, "SIGHUP: out of memory; keeping the running configuration");
        config_unref(cfg);
        return;
    }
    if (cfg->workers != gw.cfg->workers)
        log_msg(WLOG_WARN, "SIGHUP: a new 'workers' value takes effect at the next start");
    pthread_mutex_lock(&gw.lock);
    struct config *old = gw.cfg;
    gw.cfg = cfg;
    pthread_mutex_unlock(&gw.lock);
    config_unref(old);
    apply_log_settings(cfg);
    for (unsigned i = 0; i < gw.nworkers; i++)
        worker_post(&gw.workers[i], WCMD_RELOAD);
    listeners_retain(cfg); /* unix sockets cfg dropped go once the workers let go */
    log_msg(WLOG_INFO, "SIGHUP: reloaded %s: %zu listener(s), %zu route(s)", config_file,
            cfg->nlistens, cfg->nroutes);
}

/* A worker ended; when all have, the process exits. */
static void done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    if (__atomic_load_n(&nfinished, __ATOMIC_ACQUIRE) >= gw.nworkers)
        ev_break(loop, EVBREAK_ALL);
}

static void worker_finished(void)
{
    __atomic_add_fetch(&nfinished, 1, __ATOMIC_ACQ_REL);
    ev_async_send(EV_DEFAULT, &workers_done);
}

/* Raise the soft open-files limit to the hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static unsigned worker_count(const struct config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* Run the gateway on cfg (whose reference it takes) until stopped. */
static int run(struct config *cfg)
{
    char err[512];
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&gw.lock, NULL);
    gw.cfg = cfg;
    struct ev_loop *loop = EV_DEFAULT;
    ev_async_init(&workers_done, done_cb);
    ev_async_start(loop, &workers_done);
    /* Catch signals before any listener opens: one arriving early waits for
     * ev_run() instead of killing a gateway that already accepts. */
    ev_signal_init(&sig_int, stop_cb, SIGINT);
    ev_signal_init(&sig_term, stop_cb, SIGTERM);
    ev_signal_init(&sig_hup, hup_cb, SIGHUP);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_hup);
    int rc = 0;
    /* From here on no thread, main included, blocks on stderr (log.h). */
    if (log_start() < 0)
        log_msg(WLOG_WARN, "cannot start the log thread: %s; logging directly", strerror(errno));
    basic_auth_watch_report(basic_auth_report);
    token_watch_hook(basic_auth_watch_pass);
    if (token_watch_start(token_report) < 0)
        log_msg(WLOG_WARN, "cannot start the token watcher: %s; token files are not re-read",
                strerror(errno));
    gw.nworkers = worker_count(cfg);
    if (metrics_init(&gw.metrics, gw.nworkers) < 0 || gateway_attach_stats(&gw, cfg) < 0) {
        log_msg(WLOG_ERROR, "out of memory");
        rc = 1;
    }
    if (rc == 0 && probe_listeners(cfg, NULL) < 0)
        rc = 1;
    listeners_systemd_init();
    if (rc == 0 && listeners_prepare(cfg, err, sizeof(err)) < 0) {
        log_msg(WLOG_ERROR, "%s", err);
        rc = 1;
    }
    gw.workers = calloc(gw.nworkers, sizeof(*gw.workers));
    if (!gw.workers) {
        log_msg(WLOG_ERROR, "out of memory");
        rc = 1;
        gw.nworkers = 0;
    }
    unsigned i;
    for (i = 0; rc == 0 && i < gw.nworkers; i++) {
        if (worker_init(&gw.workers[i], &gw, i, cfg, err, sizeof(err)) < 0) {
            log_msg(WLOG_ERROR, "%s", err);
            rc = 1;
        }
        gw.workers[i].on_exit = worker_finished;
    }
    for (i = 0; rc == 0 && i < gw.nworkers; i++) {
        if (worker_start(&gw.workers[i]) < 0) {
            log_msg(WLOG_ERROR, "cannot start worker thread: %s", strerror(errno));
            rc = 1;
        }
    }
    static double deadline;
    if (rc == 0 && (run_once || exit_after > 0)) {
        deadline = ev_now(loop) + exit_after;
        ev_timer_init(&exit_watch, exit_watch_cb, 0.05, 0.05);
        exit_watch.data = &deadline;
        ev_timer_start(loop, &exit_watch);
    }
    if (rc == 0) {
        log_msg(WLOG_INFO, "wsgate %s started: %zu listener(s), %zu route(s), %u worker(s)",
                PACKAGE_VERSION, cfg->nlistens, cfg->nroutes, gw.nworkers);
        ev_run(loop, 0);
    } else {
        for (i = 0; i < gw.nworkers; i++)
            if (gw.workers[i].started)
                worker_post(&gw.workers[i], WCMD_STOP);
    }
    for (i = 0; i < gw.nworkers; i++)
        worker_join(&gw.workers[i]);
    for (i = 0; i < gw.nworkers; i++)
        worker_destroy(&gw.workers[i]);
    free(gw.workers);
    token_watch_stop();
    listeners_retain(NULL); /* unix socket files are removed */
    metrics_free(&gw.metrics);
    config_unref(gw.cfg);
    ev_loop_destroy(loop);
    pthread_mutex_destroy(&gw.lock);
    if (rc == 0)
        log_msg(WLOG_INFO, "stopped");
    log_shutdown(); /* at most LOG_SHUTDOWN_WAIT_MS, whatever stderr does */
    return rc;
}

int main(int argc, char **argv)
{
    enum {
        OPT_WEB = 256,
        OPT_CERT,
        OPT_KEY,
        OPT_SSL_ONLY,
        OPT_HEARTBEAT,
        OPT_IDLE,
        OPT_TOKEN_PLUGIN,
        OPT_TOKEN_SOURCE,
        OPT_UNIX_TARGET,
        OPT_REPLAY,
        OPT_RECORD,
        OPT_UNIX_LISTEN,
        OPT_UNIX_LISTEN_MODE,
        OPT_SSL_TARGET,
        OPT_VERIFY_CLIENT,
        OPT_CAFILE,
        OPT_SSL_VERSION,
        OPT_SSL_CIPHERS,
        OPT_LOG_FILE,
        OPT_RUN_ONCE,
        OPT_TIMEOUT,
        OPT_FILE_ONLY,
        OPT_HOST_TOKEN,
        OPT_TARGET_CONFIG,
        OPT_WEB_AUTH,
        OPT_AUTH_PLUGIN,
        OPT_AUTH_SOURCE,
        OPT_REFUSED, /* + index in refusals[] */
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"web", required_argument, NULL, OPT_WEB},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ssl-only", no_argument, NULL, OPT_SSL_ONLY},
        {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"token-plugin", required_argument, NULL, OPT_TOKEN_PLUGIN},
        {"web-auth", no_argument, NULL, OPT_WEB_AUTH},
        {"auth-plugin", required_argument, NULL, OPT_AUTH_PLUGIN},
        {"auth-source", required_argument, NULL, OPT_AUTH_SOURCE},
        {"token-source", required_argument, NULL, OPT_TOKEN_SOURCE},
        {"unix-target", required_argument, NULL, OPT_UNIX_TARGET},
        {"replay", required_argument, NULL, OPT_REPLAY},
        {"record", required_argument, NULL, OPT_RECORD},
        {"unix-listen", required_argument, NULL, OPT_UNIX_LISTEN},
        {"unix-listen-mode", required_argument, NULL, OPT_UNIX_LISTEN_MODE},
        {"ssl-target", no_argument, NULL, OPT_SSL_TARGET},
        {"verify-client", no_argument, NULL, OPT_VERIFY_CLIENT},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"ssl-version", required_argument, NULL, OPT_SSL_VERSION},
        {"ssl-ciphers", required_argument, NULL, OPT_SSL_CIPHERS},
        {"log-file", required_argument, NULL, OPT_LOG_FILE},
        {"run-once", no_argument, NULL, OPT_RUN_ONCE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"file-only", no_argument, NULL, OPT_FILE_ONLY},
        {"host-token", no_argument, NULL, OPT_HOST_TOKEN},
        {"prefer-ipv6", no_argument, NULL, '6'},
        {"target-config", required_argument, NULL, OPT_TARGET_CONFIG},
        {"daemon", no_argument, NULL, OPT_REFUSED + 0},
        {"inetd", no_argument, NULL, OPT_REFUSED + 1},
        {"libserver", no_argument, NULL, OPT_REFUSED + 2},
        {"syslog", required_argument, NULL, OPT_REFUSED + 3},
        {"legacy-syslog", no_argument, NULL, OPT_REFUSED + 4},
        {"wrap-mode", required_argument, NULL, OPT_REFUSED + 5},
        {"traffic", no_argument, NULL, OPT_REFUSED + 6},
        {"key-password", required_argument, NULL, OPT_REFUSED + 7},
        {NULL, 0, NULL, 0},
    };
    /* websockify's wrap mode: "PORT -- COMMAND ARGS". */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0)
            return refuse("wrap mode (-- COMMAND)", refusals[5].way);
    struct cli o = {0};
    const char *replay = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:tvVhD6", longopts, NULL)) != -1) {
        if (c == 'D')
            c = OPT_REFUSED + 0;
        if (c >= OPT_REFUSED && c < OPT_REFUSED + (int)NREFUSALS) {
            char opt[64];
            snprintf(opt, sizeof(opt), "--%s", refusals[c - OPT_REFUSED].opt);
            return refuse(opt, refusals[c - OPT_REFUSED].way);
        }
        switch (c) {
        case 'c':
            o.config = optarg;
            break;
        case 't':
            o.test = 1;
            break;
        case 'v':
            o.verbose = 1;
            break;
        case 'V':
            printf("wsgate %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_WEB:
            o.web = optarg;
            break;
        case OPT_CERT:
            o.cert = optarg;
            break;
        case OPT_KEY:
            o.key = optarg;
            break;
        case OPT_SSL_ONLY:
            o.ssl_only = 1;
            break;
        case OPT_HEARTBEAT:
            o.heartbeat = optarg;
            break;
        case OPT_IDLE:
            o.idle = optarg;
            break;
        case OPT_TOKEN_PLUGIN:
            o.token_plugin = optarg;
            break;
        case OPT_TOKEN_SOURCE:
            o.token_source = optarg;
            break;
        case OPT_WEB_AUTH:
            o.web_auth = 1;
            break;
        case OPT_AUTH_PLUGIN:
            o.auth_plugin = optarg;
            break;
        case OPT_AUTH_SOURCE:
            o.auth_source = optarg;
            break;
        case OPT_UNIX_TARGET:
            o.unix_target = optarg;
            break;
        case OPT_REPLAY:
            replay = optarg;
            break;
        case OPT_RECORD:
            o.record = optarg;
            break;
        case OPT_UNIX_LISTEN:
            o.unix_listen = optarg;
            break;
        case OPT_UNIX_LISTEN_MODE:
            o.unix_listen_mode = optarg;
            break;
        case OPT_SSL_TARGET:
            o.ssl_target = 1;
            break;
        case OPT_VERIFY_CLIENT:
            o.verify_client = 1;
            break;
        case OPT_CAFILE:
            o.cafile = optarg;
            break;
        case OPT_SSL_VERSION:
            o.ssl_version = optarg;
            break;
        case OPT_SSL_CIPHERS:
            o.ssl_ciphers = optarg;
            break;
        case OPT_LOG_FILE:
            o.log_file = optarg;
            break;
        case OPT_RUN_ONCE:
            o.run_once = 1;
            break;
        case OPT_TIMEOUT:
            o.timeout = optarg;
            break;
        case OPT_FILE_ONLY:
            o.file_only = 1;
            break;
        case OPT_HOST_TOKEN:
            o.host_token = 1;
            break;
        case '6':
            o.prefer_ipv6 = 1;
            break;
        case OPT_TARGET_CONFIG:
            o.token_plugin = "TokenFile";
            o.token_source = optarg;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    int npos = argc - optind;
    if (replay) {
        if (npos > 0 || o.config || o.test) {
            fprintf(stderr, "wsgate: --replay FILE takes no other arguments\n");
            return 2;
        }
        return record_replay(replay, stdout, stderr);
    }
    if (o.token_plugin && strcmp(o.token_plugin, "TokenFile") != 0 &&
        strcmp(o.token_plugin, "websockify.token_plugins.TokenFile") != 0 &&
        strcmp(o.token_plugin, "TokenRedis") != 0 &&
        strcmp(o.token_plugin, "websockify.token_plugins.TokenRedis") != 0 &&
        strcmp(o.token_plugin, "JWTTokenApi") != 0 &&
        strcmp(o.token_plugin, "websockify.token_plugins.JWTTokenApi") != 0) {
        fprintf(stderr, "wsgate: --token-plugin: only TokenFile, TokenRedis and JWTTokenApi are "
                        "supported\n");
        return 2;
    }
    int acc = npos > 0 ? cli_access(&o) : 0;
    if (acc)
        return acc;
    int websockify_flags = o.web || o.cert || o.key || o.ssl_only || o.heartbeat || o.idle ||
                           o.token_plugin || o.token_source || o.unix_target || o.record ||
                           o.unix_listen || o.unix_listen_mode || o.ssl_target ||
                           o.verify_client || o.cafile || o.ssl_version || o.ssl_ciphers ||
                           o.log_file || o.run_once || o.timeout || o.file_only || o.host_token ||
                           o.prefer_ipv6 || o.web_auth || o.auth_plugin || o.auth_source;
    if (o.verify_client && !o.cafile) {
        fprintf(stderr, "wsgate: --verify-client needs --cafile FILE (the CAs that sign "
                        "client certificates)\n");
        return 2;
    }
    if (o.host_token && !o.token_source) {
        fprintf(stderr, "wsgate: --host-token needs --token-plugin TokenFile --token-source "
                        "PATH\n");
        return 2;
    }
    if (o.ssl_version) {
        if (strcmp(o.ssl_version, "tlsv1_3") == 0)
            o.min_version = "1.3";
        else if (strcmp(o.ssl_version, "default") == 0 || strcmp(o.ssl_version, "tlsv1_1") == 0 ||
                 strcmp(o.ssl_version, "tlsv1_2") == 0)
            o.min_version = "1.2"; /* wsgate's floor is TLS 1.2 */
        else {
            fprintf(stderr,
                    "wsgate: --ssl-version: '%s' is not one of default, tlsv1_1, tlsv1_2, "
                    "tlsv1_3\n",
                    o.ssl_version);
            return 2;
        }
    }
    if (o.timeout) {
        char *end;
        long v = strtol(o.timeout, &end, 10);
        if (*o.timeout == '\0' || *end != '\0' || v < 0 || v > 86400 * 365) {
            fprintf(stderr, "wsgate: --timeout: '%s' is not a number of seconds\n", o.timeout);
            return 2;
        }
        exit_after = (double)v;
    }
    run_once = o.run_once;
    if (npos == 0 && websockify_flags) {
        fprintf(stderr, "wsgate: websockify options need the positional form "
                        "[LISTEN_HOST:]PORT TARGET (with -c, set them in the file)\n");
        return 2;
    }
    if (o.config && npos > 0) {
        fprintf(stderr, "wsgate: -c and a positional LISTEN TARGET cannot be combined\n");
        usage(stderr);
        return 2;
    }
    if (o.unix_listen_mode && !o.unix_listen) {
        fprintf(stderr, "wsgate: --unix-listen-mode needs --unix-listen\n");
        return 2;
    }
    if (o.log_file && !freopen(o.log_file, "a", stderr)) {
        fprintf(stdout, "wsgate: --log-file: cannot open %s: %s\n", o.log_file, strerror(errno));
        return 1;
    }
    int need_target = !o.unix_target && !o.token_source;
    /* with --unix-listen the listen port may be left out: "--unix-listen P TARGET" */
    int unix_one = o.unix_listen && npos == 1 && need_target;
    if (npos > 0 && !unix_one && (npos > 2 || (need_target && npos != 2))) {
        usage(stderr);
        return 2;
    }

    char err[ERRLEN];
    struct config *cfg = NULL;
    const char *name;
    int rc;
    if (npos > 0) {
        size_t cap = 4u << 20; /* --host-token: a route per token */
        char *ini = malloc(cap);
        name = "<command line>";
        const char *target = unix_one ? argv[optind] : npos == 2 ? argv[optind + 1] : NULL;
        if (!ini || positional_ini(&o, argv[optind], target, ini, cap) < 0) {
            fprintf(stderr, "wsgate: command line too long\n");
            free(ini);
            return 2;
        }
        rc = config_load_string(name, ini, &cfg, err, sizeof(err));
        free(ini);
    } else {
        name = o.config ? o.config : DEFAULT_CONFIG;
        config_file = name;
        rc = config_load(name, &cfg, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        if (o.test)
            fprintf(stderr, "%s: configuration is invalid\n", name);
        return 1;
    }
    int kept_old;
    if (tls_attach(cfg, NULL, &kept_old, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        config_unref(cfg);
        return 1;
    }
    if (o.test) {
        printf("%s: configuration OK\n", name);
        if (o.verbose)
            config_dump(cfg, stdout);
        config_unref(cfg);
        return 0;
    }
    verbose = o.verbose;
    apply_log_settings(cfg);
    return run(cfg);
}
