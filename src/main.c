/* main.c - command line, configuration, rlimits, workers and signals. */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "gate.h"
#include "iptable.h"
#include "listener.h"
#include "log.h"
#include "pwcheck.h"
#include "record.h"
#include "sock.h"
#include "tls.h"
#include "token.h"
#include "worker.h"

#define ERRLEN 8192

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

/* The recording writer's thread: the queue drained (record.h). */
static void record_drained(void)
{
    for (unsigned i = 0; i < gw.nworkers; i++)
        worker_post(&gw.workers[i], WCMD_RECORD);
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
    record_on_drained(record_drained);
    if (record_start(RECORD_QUEUE_DEFAULT) < 0)
        log_msg(WLOG_WARN, "cannot start the recording writer: %s; sessions are not recorded",
                strerror(errno));
    gw.nworkers = worker_count(cfg);
    gw.iptable = iptable_new(0);
    if (!gw.iptable || metrics_init(&gw.metrics, gw.nworkers) < 0 ||
        gateway_attach_stats(&gw, cfg) < 0) {
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
    record_on_drained(NULL);
    record_stop(); /* the workers are gone: close every recording */
    for (i = 0; i < gw.nworkers; i++)
        worker_destroy(&gw.workers[i]);
    pwcheck_stop(); /* the sessions cancelled their checks */
    free(gw.workers);
    token_watch_stop();
    listeners_retain(NULL); /* unix socket files are removed */
    metrics_free(&gw.metrics);
    iptable_free(gw.iptable);
    config_unref(gw.cfg);
    ev_loop_destroy(loop);
    pthread_mutex_destroy(&gw.lock);
    if (rc == 0)
        log_msg(WLOG_INFO, "stopped");
    log_shutdown(); /* at most LOG_SHUTDOWN_WAIT_MS, whatever stderr does */
    return rc;
}

/* Load the configuration the command line names: a file, or the INI text
 * of the positional form. Returns -1 with *cfg set, or an exit code. */
static int load_config(const struct cli *o, struct config **cfg, const char **name)
{
    char err[ERRLEN];
    int rc;
    if (o->npos > 0) {
        char *ini = cli_positional_ini(o);
        if (!ini)
            return 2;
        *name = "<command line>";
        rc = config_load_string(*name, ini, cfg, err, sizeof(err));
        free(ini);
    } else {
        *name = o->config ? o->config : CLI_DEFAULT_CONFIG;
        config_file = *name;
        rc = config_load(*name, cfg, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        if (o->test)
            fprintf(stderr, "%s: configuration is invalid\n", *name);
        return 1;
    }
    if (o->health_url) /* reads no certificate: a probe must not fail on a rotated file */
        return -1;
    int kept_old;
    if (tls_attach(*cfg, NULL, &kept_old, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", *name, err);
        config_unref(*cfg);
        return 1;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct cli o;
    int rc = cli_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.replay)
        return record_replay(o.replay, stdout, stderr);
    if (o.log_file && !freopen(o.log_file, "a", stderr)) {
        fprintf(stdout, "wsgate: --log-file: cannot open %s: %s\n", o.log_file, strerror(errno));
        return 1;
    }
    exit_after = o.exit_after;
    run_once = o.run_once;
    struct config *cfg = NULL;
    const char *name;
    if ((rc = load_config(&o, &cfg, &name)) >= 0)
        return rc;
    if (o.health_url) {
        char url[512];
        rc = gate_health_url(cfg, url, sizeof(url));
        config_unref(cfg);
        if (rc < 0) {
            fprintf(stderr, "wsgate: %s: %s\n", name, url);
            return 1;
        }
        printf("%s\n", url);
        return 0;
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
