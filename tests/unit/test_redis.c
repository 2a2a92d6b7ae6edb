/* test_redis.c - TokenRedis lookups against a real redis-server (started by
 * the test on a free port, no persistence) on a real libev loop: found, not
 * found, a deleted key refused at once, prefix, database, JSON values,
 * password, Redis stopped (UNAVAILABLE within the timeout, logged once) and
 * restarted (reconnect, logged once), a silent server that accepts and never
 * answers (UNAVAILABLE after the timeout while a timer on the same loop keeps
 * its rhythm), and cancellation. Log lines are read from stderr, which the
 * test points at a file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "resolver.h"
#include "dns_fixture.h"
#include "ticker.h"

static char tmpdir[256];
static char logpath[300];

struct server {
    pid_t pid;
    int port;
};

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start redis-server on port (0: a free one), optionally with a password. */
static void server_start(struct server *s, int port, const char *password)
{
    char p[16];

    s->port = port ? port : free_port();
    snprintf(p, sizeof p, "%d", s->port);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        if (password)
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", tmpdir, "--requirepass", password, (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", tmpdir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) { /* up to 3 s */
        redisContext *c = redisConnect("127.0.0.1", s->port);
        bool up = c != NULL && !c->err;
        redisFree(c);
        if (up)
            return;
        usleep(10000);
    }
    fail_msg("redis-server did not start on port %d", s->port);
}

static void server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* Run a command on the server (synchronous hiredis: test set-up only). */
static void cmd(struct server *s, const char *password, const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", s->port);
    va_list ap;

    assert_true(c != NULL && !c->err);
    if (password)
        freeReplyObject(redisCommand(c, "AUTH %s", password));
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* ---- one lookup, run to its answer ------------------------------------ */

struct answer {
    int done;
    enum redis_result res;
    char target[REDIS_TARGET_MAX];
    ev_tstamp at;
    struct ev_loop *loop;
};

static void on_answer(void *arg, enum redis_result res, const char *target)
{
    struct answer *a = arg;

    a->done++;
    a->res = res;
    a->at = ev_time();
    snprintf(a->target, sizeof a->target, "%s", target ? target : "");
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Run the loop until a->done or limit seconds passed. */
static void run_until(struct ev_loop *loop, struct answer *a, double limit)
{
    ev_timer t;
    ev_tstamp end = ev_time() + limit;

    ev_timer_init(&t, on_deadline, 0.005, 0.005);
    ev_timer_start(loop, &t);
    while (!a->done && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

struct env {
    struct ev_loop *loop;
    struct resolver *res;
    struct redis_ctx *ctx;
    struct server srv;
    struct redis_target t;
};

static void target_for(struct env *e, const char *src)
{
    char err[256];

    redis_target_free(&e->t);
    assert_int_equal(redis_target_parse(src, &e->t, err, sizeof err), 0);
}

/* Look token up with timeout_ms and wait (at most 10 s) for the answer. */
static struct answer lookup(struct env *e, const char *token, uint32_t timeout_ms)
{
    struct answer a = {0};

    struct redis_req *q =
        redis_lookup(e->ctx, &e->t, timeout_ms, token, strlen(token), on_answer, &a);
    assert_non_null(q);
    assert_int_equal(a.done, 0); /* never inside redis_lookup() */
    run_until(e->loop, &a, 10);
    assert_int_equal(a.done, 1);
    return a;
}

static int saved_stderr;

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    char err[256];

    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(resolver_new(e->loop, NULL, 1000, &e->res, err, sizeof err), 0);
    e->ctx = redis_ctx_new(e->loop, e->res);
    assert_non_null(e->ctx);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    fflush(stderr);
    dup2(saved_stderr, 2); /* end of log_capture() */
    redis_ctx_free(e->ctx);
    resolver_free(e->res);
    ev_loop_destroy(e->loop);
    server_stop(&e->srv);
    redis_target_free(&e->t);
    free(e);
    return 0;
}

/* ---- log capture ------------------------------------------------------ */

static void log_capture(void)
{
    fflush(stderr);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Occurrences of needle in what was logged since log_capture(). */
static int log_count(const char *needle)
{
    char buf[65536];
    int n = 0, fd = open(logpath, O_RDONLY);
    ssize_t len = read(fd, buf, sizeof buf - 1);

    close(fd);
    buf[len > 0 ? len : 0] = '\0';
    for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool log_has(const char *needle)
{
    return log_count(needle) > 0;
}

/* ---- tests ------------------------------------------------------------ */

static void test_found_missing_deleted(void **state)
{
    struct env *e = *state;
    char src[64];

    server_start(&e->srv, 0, NULL);
    snprintf(src, sizeof src, "redis://127.0.0.1:%d", e->srv.port);
    target_for(e, src);
    cmd(&e->srv, NULL, "SET %s %s", "tok1", "127.0.0.1:5901");
    struct answer a = lookup(e, "tok1", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    assert_string_equal(a.target, "127.0.0.1:5901");
    a = lookup(e, "tok2", 2000);
    assert_int_equal(a.res, REDIS_NOT_FOUND);
    assert_string_equal(a.target, "");
    /* revocation: the next lookup after DEL is refused */
    cmd(&e->srv, NULL, "DEL %s", "tok1");
    a = lookup(e, "tok1", 2000);
    assert_int_equal(a.res, REDIS_NOT_FOUND);
    /* a binary-safe key: no formatting of the token */
    cmd(&e->srv, NULL, "SET %b %s", "a %s\nb", (size_t)6, "h:1");
    a = lookup(e, "a %s\nb", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    assert_string_equal(a.target, "h:1");
    /* a value that is no target: refused as unknown */
    cmd(&e->srv, NULL, "SET %s %s", "junk", "not a target");
    a = lookup(e, "junk", 2000);
    assert_int_equal(a.res, REDIS_NOT_FOUND);
    /* a key of another type: refused as unknown */
    cmd(&e->srv, NULL, "RPUSH %s %s", "list", "x");
    a = lookup(e, "list", 2000);
    assert_int_equal(a.res, REDIS_UNAVAILABLE); /* WRONGTYPE is an error reply */
}

static void test_json_prefix_db(void **state)
{
    struct env *e = *state;
    char src[96];

    server_start(&e->srv, 0, NULL);
    snprintf(src, sizeof src, "127.0.0.1:%d:3::app", e->srv.port); /* websockify form */
    target_for(e, src);
    assert_string_equal(e->t.prefix, "app:");
    cmd(&e->srv, NULL, "SELECT 3");
    redisContext *c = redisConnect("127.0.0.1", e->srv.port);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    freeReplyObject(redisCommand(c, "SET app:j1 %s", "{\"host\": \"10.0.0.7:5907\"}"));
    freeReplyObject(redisCommand(c, "SET app:j2 %s", "{\"host\": \"::1\", \"port\": \"5908\"}"));
    freeReplyObject(redisCommand(c, "SET app:j3 %s", "{\"host\": \"h\", \"port\": 5909}"));
    freeReplyObject(redisCommand(c, "SET j1 %s", "1.1.1.1:1")); /* no prefix: not ours */
    freeReplyObject(redisCommand(c, "SELECT 0"));
    freeReplyObject(redisCommand(c, "SET app:zero %s", "2.2.2.2:2")); /* db 0: not ours */
    redisFree(c);
    struct answer a = lookup(e, "j1", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    assert_string_equal(a.target, "10.0.0.7:5907");
    a = lookup(e, "j2", 2000);
    assert_string_equal(a.target, "[::1]:5908");
    a = lookup(e, "j3", 2000);
    assert_string_equal(a.target, "h:5909");
    a = lookup(e, "zero", 2000);
    assert_int_equal(a.res, REDIS_NOT_FOUND);
    /* without the prefix, on db 3: j1 is the unprefixed key */
    free(e->t.prefix);
    e->t.prefix = NULL;
    a = lookup(e, "j1", 2000);
    assert_string_equal(a.target, "1.1.1.1:1");
}

static void test_password(void **state)
{
    struct env *e = *state;
    char src[96];

    server_start(&e->srv, 0, "s3cret");
    cmd(&e->srv, "s3cret", "SET %s %s", "tok", "127.0.0.1:5900");
    snprintf(src, sizeof src, "redis://:s3cret@127.0.0.1:%d/0", e->srv.port);
    target_for(e, src);
    struct answer a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    /* wrong password: a separate connection, UNAVAILABLE, logged */
    log_capture();
    snprintf(src, sizeof src, "redis://:wrong@127.0.0.1:%d/0", e->srv.port);
    target_for(e, src);
    a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_int_equal(log_count("unavailable: AUTH failed"), 1);
    assert_false(log_has("wrong")); /* the password is never logged */
    /* no password at all: NOAUTH on PING, UNAVAILABLE */
    snprintf(src, sizeof src, "redis://127.0.0.1:%d/0", e->srv.port);
    target_for(e, src);
    a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_int_equal(log_count("unavailable: PING failed"), 1);
    assert_false(log_has("tok\n") || log_has("tok "));
}

static void test_stop_restart(void **state)
{
    struct env *e = *state;
    char src[64];
    const uint32_t timeout_ms = 400;

    server_start(&e->srv, 0, NULL);
    int port = e->srv.port;
    snprintf(src, sizeof src, "redis://127.0.0.1:%d", port);
    target_for(e, src);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5900");
    struct answer a = lookup(e, "tok", timeout_ms);
    assert_int_equal(a.res, REDIS_FOUND);

    log_capture();
    server_stop(&e->srv);
    ev_tstamp t0 = ev_time();
    a = lookup(e, "tok", timeout_ms);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_true(a.at - t0 <= timeout_ms / 1000. + 0.3);
    /* while it is down: more lookups fail at once, the outage logged once */
    for (int i = 0; i < 5; i++) {
        t0 = ev_time();
        a = lookup(e, "tok", timeout_ms);
        assert_int_equal(a.res, REDIS_UNAVAILABLE);
        assert_true(a.at - t0 <= timeout_ms / 1000. + 0.3);
    }
    /* let reconnect attempts fail until the back-off reaches its cap
     * (0.25 + 0.5 + 1 + 2 + 4 s) */
    struct answer never = {0};
    run_until(e->loop, &never, 8.0);
    assert_int_equal(log_count("unavailable:"), 1);
    assert_int_equal(log_count("available again"), 0);

    /* back on the same port, with the key gone (no persistence): the
     * connection comes back within the back-off cap */
    server_start(&e->srv, port, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5999");
    t0 = ev_time();
    for (;;) {
        a = lookup(e, "tok", timeout_ms);
        if (a.res == REDIS_FOUND)
            break;
        assert_true(ev_time() - t0 < REDIS_BACKOFF_MAX + 1.0); /* the cap holds */
        run_until(e->loop, &never, 0.05);
    }
    assert_string_equal(a.target, "127.0.0.1:5999");
    assert_int_equal(log_count("available again"), 1);
    assert_int_equal(log_count("unavailable:"), 1);
}

/* A socket that accepts (the kernel does) and never answers. */
static int silent_listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_silent_server(void **state)
{
    struct env *e = *state;
    char src[64];
    int port, lfd = silent_listener(&port);
    const uint32_t timeout_ms = 500;
    struct ticker tk = {0};

    snprintf(src, sizeof src, "redis://127.0.0.1:%d", port);
    target_for(e, src);
    log_capture();
    ev_timer_init(&tk.w, on_tick, 0.02, 0.02);
    ev_timer_start(e->loop, &tk.w);
    /* the lookup's deadline counts from the loop's clock: bring it to now,
     * or on a loaded machine it lags t0 and the answer seems early */
    ev_now_update(e->loop);
    ev_tstamp t0 = ev_time();
    struct answer a = lookup(e, "tok", timeout_ms);
    double took = a.at - t0;
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_true(took >= timeout_ms / 1000. - 0.01);
    assert_true(took <= timeout_ms / 1000. + 0.3);
    /* the loop went on: a 20 ms timer kept its rhythm during the wait */
    assert_true(tk.ticks >= (int)(took / 0.25) - 1);
    assert_true(tk.max_gap <
                0.25); /* blocking would be >= the whole wait; a loaded machine is not */
    assert_int_equal(log_count("unavailable: no connection within the timeout"), 1);
    ev_timer_stop(e->loop, &tk.w);

    /* the same once connected: a server that answers the handshake and then
     * stops answering (SIGSTOP) times a GET out */
    server_start(&e->srv, 0, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "1.2.3.4:5");
    snprintf(src, sizeof src, "redis://127.0.0.1:%d", e->srv.port);
    target_for(e, src);
    a = lookup(e, "tok", timeout_ms);
    assert_int_equal(a.res, REDIS_FOUND);
    kill(e->srv.pid, SIGSTOP);
    tk.ticks = 0;
    tk.max_gap = 0;
    ev_timer_start(e->loop, &tk.w);
    t0 = ev_time();
    a = lookup(e, "tok", timeout_ms);
    took = a.at - t0;
    ev_timer_stop(e->loop, &tk.w);
    kill(e->srv.pid, SIGCONT);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_true(took >= timeout_ms / 1000. - 0.01 && took <= timeout_ms / 1000. + 0.3);
    assert_true(tk.max_gap <
                0.25); /* blocking would be >= the whole wait; a loaded machine is not */
    assert_int_equal(log_count("unavailable: no answer within the timeout"), 1);
    close(lfd);
}

static void on_answer_freed(void *arg, enum redis_result res, const char *target)
{
    fail_msg("callback of a cancelled lookup ran");
}

static void test_cancel(void **state)
{
    struct env *e = *state;
    char src[64];

    server_start(&e->srv, 0, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5900");
    snprintf(src, sizeof src, "redis://127.0.0.1:%d", e->srv.port);
    target_for(e, src);
    /* cancelled while connecting (queued) */
    char *owner = malloc(16);
    struct redis_req *q = redis_lookup(e->ctx, &e->t, 1000, "tok", 3, on_answer_freed, owner);
    redis_cancel(q);
    free(owner);
    struct answer a = lookup(e, "tok", 1000); /* connected now */
    assert_int_equal(a.res, REDIS_FOUND);
    /* cancelled once sent */
    owner = malloc(16);
    q = redis_lookup(e->ctx, &e->t, 1000, "tok", 3, on_answer_freed, owner);
    redis_cancel(q);
    free(owner);
    a = lookup(e, "tok", 1000);
    assert_int_equal(a.res, REDIS_FOUND);
    /* cancelled with an immediate answer pending (server down) */
    server_stop(&e->srv);
    a = lookup(e, "tok", 300);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    owner = malloc(16);
    q = redis_lookup(e->ctx, &e->t, 300, "tok", 3, on_answer_freed, owner);
    redis_cancel(q);
    free(owner);
    struct answer never = {0};
    run_until(e->loop, &never, 0.3);
    /* many lookups pipelined on one connection, then the context freed with
     * some still pending (no callback, no leak under ASan) */
    server_start(&e->srv, 0, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5900");
    snprintf(src, sizeof src, "redis://127.0.0.1:%d", e->srv.port);
    target_for(e, src);
    struct answer many[50] = {{0}};
    for (int i = 0; i < 50; i++)
        assert_non_null(redis_lookup(e->ctx, &e->t, 2000, "tok", 3, on_answer, &many[i]));
    run_until(e->loop, &many[49], 3);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(many[i].done, 1);
        assert_int_equal(many[i].res, REDIS_FOUND);
    }
    assert_non_null(redis_lookup(e->ctx, &e->t, 2000, "tok", 3, on_answer_freed, NULL));
    redis_ctx_free(e->ctx);
    e->ctx = NULL;
}

/* A server reached by host name, through the resolver. */
static void test_host_name(void **state)
{
    struct env *e = *state;
    char src[64];

    server_start(&e->srv, 0, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5900");
    snprintf(src, sizeof src, "redis://localhost:%d", e->srv.port);
    target_for(e, src);
    struct answer a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    log_capture();
    target_for(e, "redis://no-such-host.invalid:6379");
    a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_UNAVAILABLE);
    assert_int_equal(log_count("unavailable: host name"), 1);
}

/* A host name whose first address refuses (127.0.0.2, where nothing
 * listens) and whose second is the server: the lookup is answered through
 * the second address, no outage logged. (Debian's /etc/hosts makes
 * "localhost" ::1 first, where a server bound to 127.0.0.1 refuses.) */
static void test_name_second_address(void **state)
{
    struct env *e = *state;
    char src[64], err[256];

    redis_ctx_free(e->ctx);
    resolver_free(e->res);
    assert_int_equal(resolver_new(e->loop, dns_addr, 1000, &e->res, err, sizeof err), 0);
    e->ctx = redis_ctx_new(e->loop, e->res);
    assert_non_null(e->ctx);
    write_zone("{\"two.test\": {\"A\": [\"127.0.0.2\", \"127.0.0.1\"], \"ttl\": 60}}");
    server_start(&e->srv, 0, NULL);
    cmd(&e->srv, NULL, "SET %s %s", "tok", "127.0.0.1:5900");
    snprintf(src, sizeof src, "redis://two.test:%d", e->srv.port);
    target_for(e, src);
    log_capture();
    struct answer a = lookup(e, "tok", 2000);
    assert_int_equal(a.res, REDIS_FOUND);
    assert_int_equal(log_count("unavailable"), 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/wsgate-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    snprintf(logpath, sizeof logpath, "%s/log", tmpdir);
    saved_stderr = dup(2);
    signal(SIGPIPE, SIG_IGN);
    log_setup(WLOG_INFO, LOGF_TEXT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_found_missing_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_prefix_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_second_address, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, start_dns, stop_dns);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmpdir);
    if (system(rm) != 0)
        rc = 1;
    return rc;
}
