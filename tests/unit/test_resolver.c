/* test_resolver.c - c-ares on a libev loop against a DNS server written in
 * the test (tests/unit/dns_server.py, python3-dnslib) whose answers, TTLs and
 * delays the test writes into a zone file: answers and ports, TTL expiry
 * re-resolving to a new address, AAAA-only names, NXDOMAIN and NODATA
 * failing, concurrent lookups sharing a query, a delayed answer that delays
 * neither a timer nor another name on the same loop, cancellation. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "resolver.h"
#include "dns_fixture.h"
#include "ticker.h"

/* Lines of the query log that start with "NAME TYPE". */
static int queries(const char *name_type)
{
    char line[256];
    int n = 0;
    FILE *f = fopen(dns_qlog, "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name_type, strlen(name_type)) == 0 && line[strlen(name_type)] == '\n')
            n++;
    fclose(f);
    return n;
}

struct result {
    int done;
    enum resolver_status st;
    size_t n;
    char addr[4][INET6_ADDRSTRLEN + 16]; /* "ip port" */
    ev_tstamp at;
};

static void on_result(void *arg, enum resolver_status st, const struct sockaddr_any *addrs,
                      size_t n)
{
    struct result *r = arg;

    r->done++;
    r->st = st;
    r->n = n;
    r->at = ev_time();
    for (size_t i = 0; i < n && i < 4; i++) {
        char ip[INET6_ADDRSTRLEN];
        unsigned port;
        if (addrs[i].ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&addrs[i].ss;
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
            port = ntohs(in->sin_port);
            assert_int_equal(addrs[i].len, sizeof *in);
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addrs[i].ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
            port = ntohs(in6->sin6_port);
            assert_int_equal(addrs[i].len, sizeof *in6);
        }
        snprintf(r->addr[i], sizeof r->addr[i], "%s %u", ip, port);
    }
}

static void on_wake(struct ev_loop *loop, ev_timer *w, int revents) {}

/* Run until every r[0..n) is done or limit seconds passed. */
static void run_until(struct ev_loop *loop, struct result *r, int n, double limit)
{
    ev_timer t;
    ev_tstamp end = ev_time() + limit;

    ev_timer_init(&t, on_wake, 0.005, 0.005);
    ev_timer_start(loop, &t);
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= r[i].done > 0;
        if (all || ev_time() >= end)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &t);
}

struct env {
    struct ev_loop *loop;
    struct resolver *r;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    char err[256];

    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(resolver_new(e->loop, dns_addr, 3000, &e->r, err, sizeof err), 0);
    truncate(dns_qlog, 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    resolver_free(e->r);
    ev_loop_destroy(e->loop);
    free(e);
    return 0;
}

static struct result resolve(struct env *e, const char *host, unsigned port)
{
    struct result r = {0};

    assert_non_null(resolver_lookup(e->r, host, port, on_result, &r));
    assert_int_equal(r.done, 0); /* never inside resolver_lookup() */
    run_until(e->loop, &r, 1, 10);
    assert_int_equal(r.done, 1);
    return r;
}

static void test_answers_and_failures(void **state)
{
    struct env *e = *state;

    write_zone("{\"a.test\": {\"A\": [\"10.0.0.1\", \"10.0.0.3\"], \"ttl\": 60},"
               " \"six.test\": {\"AAAA\": [\"2001:db8::6\"], \"ttl\": 60},"
               " \"empty.test\": {\"ttl\": 60}}");
    struct result r = resolve(e, "a.test", 5900);
    assert_int_equal(r.st, RESOLVER_OK);
    assert_int_equal(r.n, 2);
    assert_true(
        (strcmp(r.addr[0], "10.0.0.1 5900") == 0 && strcmp(r.addr[1], "10.0.0.3 5900") == 0) ||
        (strcmp(r.addr[0], "10.0.0.3 5900") == 0 && strcmp(r.addr[1], "10.0.0.1 5900") == 0));
    r = resolve(e, "six.test", 22);
    assert_int_equal(r.st, RESOLVER_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.addr[0], "2001:db8::6 22");
    r = resolve(e, "nx.test", 1);
    assert_int_equal(r.st, RESOLVER_NOT_FOUND);
    assert_int_equal(r.n, 0);
    r = resolve(e, "empty.test", 1);
    assert_int_equal(r.st, RESOLVER_NOT_FOUND);
    /* numeric: no DNS */
    r = resolve(e, "192.0.2.9", 7);
    assert_int_equal(r.st, RESOLVER_OK);
    assert_string_equal(r.addr[0], "192.0.2.9 7");
    r = resolve(e, "::1", 8);
    assert_string_equal(r.addr[0], "::1 8");
    assert_int_equal(queries("192.0.2.9 A"), 0);
    /* the same name again: from the cache, another port */
    int before = queries("a.test A");
    r = resolve(e, "a.test", 443);
    assert_int_equal(r.n, 2);
    assert_non_null(strstr(r.addr[0], " 443"));
    assert_int_equal(queries("a.test A"), before);
}

static void test_ttl_expiry(void **state)
{
    struct env *e = *state;

    write_zone("{\"move.test\": {\"A\": [\"10.0.0.1\"], \"ttl\": 1}}");
    struct result r = resolve(e, "move.test", 80);
    assert_string_equal(r.addr[0], "10.0.0.1 80");
    assert_int_equal(queries("move.test A"), 1);
    write_zone("{\"move.test\": {\"A\": [\"10.0.0.2\"], \"ttl\": 1}}");
    r = resolve(e, "move.test", 80); /* within the TTL: cached */
    assert_string_equal(r.addr[0], "10.0.0.1 80");
    assert_int_equal(queries("move.test A"), 1);
    struct result never = {0};
    run_until(e->loop, &never, 1, 1.1);
    r = resolve(e, "move.test", 80); /* expired: asked again, the new address */
    assert_string_equal(r.addr[0], "10.0.0.2 80");
    assert_int_equal(queries("move.test A"), 2);
    /* a name that disappears fails once its TTL ran out */
    write_zone("{}");
    run_until(e->loop, &never, 1, 1.1);
    r = resolve(e, "move.test", 80);
    assert_int_equal(r.st, RESOLVER_NOT_FOUND);
}

static void test_delay_blocks_nothing(void **state)
{
    struct env *e = *state;
    struct ticker tk = {0};
    struct result r[4] = {{0}};

    write_zone("{\"slow.test\": {\"A\": [\"10.0.0.9\"], \"ttl\": 60, \"delay\": 1.0},"
               " \"fast.test\": {\"A\": [\"10.0.0.8\"], \"ttl\": 60}}");
    ev_timer_init(&tk.w, on_tick, 0.02, 0.02);
    ev_timer_start(e->loop, &tk.w);
    ev_tstamp t0 = ev_time();
    /* two lookups of the slow name share one query; a fast one overtakes */
    assert_non_null(resolver_lookup(e->r, "slow.test", 1, on_result, &r[0]));
    assert_non_null(resolver_lookup(e->r, "slow.test", 2, on_result, &r[1]));
    assert_non_null(resolver_lookup(e->r, "fast.test", 3, on_result, &r[2]));
    run_until(e->loop, r, 3, 5);
    ev_timer_stop(e->loop, &tk.w);
    assert_int_equal(r[2].st, RESOLVER_OK);
    assert_true(r[2].at - t0 < 0.3);
    assert_int_equal(r[0].st, RESOLVER_OK);
    assert_string_equal(r[0].addr[0], "10.0.0.9 1");
    assert_string_equal(r[1].addr[0], "10.0.0.9 2");
    assert_true(r[0].at - t0 >= 0.95);
    assert_true(tk.max_gap <
                0.25); /* blocking would be >= the whole wait; a loaded machine is not */
    assert_true(tk.ticks >= (int)((r[0].at - t0) / 0.25) - 1);
    assert_int_equal(queries("slow.test A"), 1);
}

static void on_result_cancelled(void *arg, enum resolver_status st,
                                const struct sockaddr_any *addrs, size_t n)
{
    fail_msg("callback of a cancelled lookup ran");
}

static void test_cancel(void **state)
{
    struct env *e = *state;

    write_zone("{\"slow.test\": {\"A\": [\"10.0.0.9\"], \"ttl\": 60, \"delay\": 0.3}}");
    char *owner = malloc(8);
    struct resolver_req *q = resolver_lookup(e->r, "slow.test", 1, on_result_cancelled, owner);
    struct result r = {0};
    assert_non_null(resolver_lookup(e->r, "slow.test", 2, on_result, &r));
    resolver_cancel(q);
    free(owner);
    run_until(e->loop, &r, 1, 3);
    assert_int_equal(r.st, RESOLVER_OK); /* the other waiter still gets it */
    /* cancelled with a result already on its way (cache hit, numeric) */
    resolver_cancel(resolver_lookup(e->r, "slow.test", 1, on_result_cancelled, NULL));
    resolver_cancel(resolver_lookup(e->r, "10.1.1.1", 1, on_result_cancelled, NULL));
    struct result never = {0};
    run_until(e->loop, &never, 1, 0.1);
    /* pending at resolver_free(): dropped without callback (teardown) */
    write_zone("{\"slow2.test\": {\"A\": [\"10.0.0.9\"], \"ttl\": 60, \"delay\": 0.3}}");
    assert_non_null(resolver_lookup(e->r, "slow2.test", 1, on_result_cancelled, NULL));
    assert_non_null(resolver_lookup(e->r, "10.1.1.1", 1, on_result_cancelled, NULL));
}

static void test_server_down(void **state)
{
    struct env *e = *state;
    char err[256];
    struct resolver *r2;

    /* nobody on that port: fails within two tries of the timeout */
    assert_int_equal(resolver_new(e->loop, "127.0.0.1:9", 200, &r2, err, sizeof err), 0);
    struct result r = {0};
    ev_tstamp t0 = ev_time();
    assert_non_null(resolver_lookup(r2, "a.test", 1, on_result, &r));
    run_until(e->loop, &r, 1, 5);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.st, RESOLVER_FAILED);
    assert_true(r.at - t0 < 1.0);
    resolver_free(r2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answers_and_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_blocks_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, start_dns, stop_dns);
}
