/* ticker.h - an ev_timer that records the largest gap between its ticks,
 * for tests that prove a loop is never blocked (test_redis, test_resolver). */
#ifndef WSGATE_TEST_TICKER_H
#define WSGATE_TEST_TICKER_H

#include <ev.h>

struct ticker {
    ev_timer w;
    int ticks;
    ev_tstamp last, max_gap;
};

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ticker *t = (struct ticker *)w;
    ev_tstamp now = ev_time();

    (void)loop;
    (void)revents;
    if (t->ticks > 0 && now - t->last > t->max_gap)
        t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
}

#endif
