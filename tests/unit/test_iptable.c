/* test_iptable.c - the bounded per-address table: limits, token buckets,
 * eviction, memory bound with 100,000 distinct addresses, and threads. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "iptable.h"

/* Key of IPv4 address n (scope s). */
static struct iptable_key K4(uint32_t n, uint32_t s) {
    struct iptable_key k;
    memset(&k, 0, sizeof k);
    k.addr.family = AF_INET;
    k.addr.a[0] = (uint8_t)(n >> 24);
    k.addr.a[1] = (uint8_t)(n >> 16);
    k.addr.a[2] = (uint8_t)(n >> 8);
    k.addr.a[3] = (uint8_t)n;
    k.scope = s;
    return k;
}

static void
test_conn_limit(void **state)
{
    struct iptable *t = iptable_new(1000);
    assert_non_null(t);
    struct iptable_key a = K4(0x01020304, IPTABLE_GATEWAY), b = K4(0x01020305, IPTABLE_GATEWAY);
    struct iptable_key ar = K4(0x01020304, 7);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iptable_conn_acquire(t, &a, 3, 0), 0);
    assert_int_equal(iptable_conn_acquire(t, &a, 3, 0), -1);
    assert_int_equal(iptable_conns(t, &a), 3);
    /* other address, other scope: separate counts */
    assert_int_equal(iptable_conn_acquire(t, &b, 3, 0), 0);
    assert_int_equal(iptable_conn_acquire(t, &ar, 1, 0), 0);
    assert_int_equal(iptable_conn_acquire(t, &ar, 1, 0), -1);
    iptable_conn_release(t, &a, 1);
    assert_int_equal(iptable_conns(t, &a), 2);
    assert_int_equal(iptable_conn_acquire(t, &a, 3, 1), 0);
    assert_int_equal(iptable_conn_acquire(t, &a, 3, 1), -1);
    /* max 0: counted, never refused */
    for (int i = 0; i < 10; i++)
        assert_int_equal(iptable_conn_acquire(t, &b, 0, 1), 0);
    assert_int_equal(iptable_conns(t, &b), 11);
    /* releasing everything frees the entries (no bucket in them) */
    for (int i = 0; i < 3; i++)
        iptable_conn_release(t, &a, 2);
    for (int i = 0; i < 11; i++)
        iptable_conn_release(t, &b, 2);
    iptable_conn_release(t, &ar, 2);
    iptable_conn_release(t, &ar, 2); /* one too many: ignored */
    assert_int_equal(iptable_conns(t, &a), 0);
    assert_int_equal(iptable_used(t), 0);
    iptable_free(t);
}

static void test_rate(void **state)
{
    struct iptable *t = iptable_new(0);
    struct iptable_key a = K4(0x0a000001, 1);
    assert_int_equal(iptable_capacity(t), 100096); /* 100000 rounded up to 128 shards */
    /* burst = rate = 5 */
    for (int i = 0; i < 5; i++)
        assert_int_equal(iptable_rate_take(t, &a, 5, 100.0), 0);
    assert_int_equal(iptable_rate_take(t, &a, 5, 100.0), -1);
    /* 0.2 s at 5/s = one token */
    assert_int_equal(iptable_rate_take(t, &a, 5, 100.19), -1);
    assert_int_equal(iptable_rate_take(t, &a, 5, 100.21), 0);
    assert_int_equal(iptable_rate_take(t, &a, 5, 100.21), -1);
    /* a full second later: a full burst again, never more */
    for (int i = 0; i < 5; i++)
        assert_int_equal(iptable_rate_take(t, &a, 5, 200.0), 0);
    assert_int_equal(iptable_rate_take(t, &a, 5, 200.0), -1);
    /* rate 0 = off */
    for (int i = 0; i < 100; i++)
        assert_int_equal(iptable_rate_take(t, &a, 0, 200.0), 0);
    /* a lower rate after a reload caps the bucket */
    struct iptable_key b = K4(0x0a000002, 1);
    assert_int_equal(iptable_rate_take(t, &b, 100, 300.0), 0);
    assert_int_equal(iptable_rate_take(t, &b, 1, 300.0), 0);
    assert_int_equal(iptable_rate_take(t, &b, 1, 300.0), -1);
    iptable_free(t);
}

/* 100,000 (and 300,000) distinct addresses: never more entries than the cap,
 * the bytes allocated do not change, and live connections are never lost. */
static void test_bounded(void **state)
{
    struct iptable *t = iptable_new(IPTABLE_DEFAULT_CAP);
    size_t bytes = iptable_bytes(t), cap = iptable_capacity(t);
    assert_true(bytes < 64 * cap + 8 * cap + 64 * 1024); /* documented: ~72 B per entry */
    struct iptable_key held = K4(0xc0000201, IPTABLE_GATEWAY);
    assert_int_equal(iptable_conn_acquire(t, &held, 0, 0), 0);
    double now = 1000.0;
    for (uint32_t i = 0; i < 300000; i++) {
        struct iptable_key k = K4(0x20000000 + i, 1);
        assert_int_equal(iptable_rate_take(t, &k, 10, now), 0);
        if (i % 1000 == 0)
            now += 0.01;
        if (i == 99999)
            assert_true(iptable_used(t) <= cap);
    }
    assert_true(iptable_used(t) <= cap);
    assert_true(iptable_used(t) > cap * 9 / 10); /* the table is really used */
    assert_int_equal(iptable_bytes(t), bytes);
    assert_int_equal(iptable_conns(t, &held), 1);
    /* an address rate limited long ago was forgotten; its bucket is full again */
    struct iptable_key first = K4(0x20000000, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(iptable_rate_take(t, &first, 10, now), 0);
    assert_int_equal(iptable_rate_take(t, &first, 10, now), -1);
    iptable_free(t);
}

/* A shard full of held connections refuses new keys instead of growing. */
static void test_full_of_held(void **state)
{
    struct iptable *t = iptable_new(IPTABLE_SHARDS); /* one entry per shard */
    assert_int_equal(iptable_capacity(t), IPTABLE_SHARDS);
    int ok = 0, refused = 0;
    for (uint32_t i = 0; i < 10 * IPTABLE_SHARDS; i++) {
        struct iptable_key k = K4(i, IPTABLE_GATEWAY);
        if (iptable_conn_acquire(t, &k, 0, 0) == 0)
            ok++;
        else
            refused++;
    }
    assert_int_equal(iptable_used(t), (size_t)ok);
    assert_true(ok <= IPTABLE_SHARDS);
    assert_true(refused >= 9 * IPTABLE_SHARDS);
    iptable_free(t);
}

struct thr {
    struct iptable *t;
    int id;
    int refused;
};

static void *hammer(void *arg)
{
    struct thr *a = arg;
    for (int round = 0; round < 20000; round++) {
        struct iptable_key k = K4((uint32_t)(round % 64), IPTABLE_GATEWAY);
        if (iptable_conn_acquire(a->t, &k, 0, round) == 0)
            iptable_conn_release(a->t, &k, round);
        else
            a->refused++;
        k.scope = 1;
        iptable_rate_take(a->t, &k, 1000, round * 0.001);
    }
    return NULL;
}

/* Four threads on the same keys: counts come back to zero exactly. */
static void test_threads(void **state)
{
    struct iptable *t = iptable_new(1024);
    pthread_t th[4];
    struct thr a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr){t, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].refused, 0);
    }
    for (uint32_t i = 0; i < 64; i++) {
        struct iptable_key k = K4(i, IPTABLE_GATEWAY);
        assert_int_equal(iptable_conns(t, &k), 0);
    }
    iptable_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_limit), cmocka_unit_test(test_rate),
        cmocka_unit_test(test_bounded),    cmocka_unit_test(test_full_of_held),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
