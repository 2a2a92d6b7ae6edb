/* pwcheck.h - Basic-auth password checks off the worker loops.
 *
 * crypt(3) costs milliseconds per check (yescrypt, wsgate --hash-password's
 * method: ~60 ms here), so a worker that checked passwords itself would be
 * stalled by anyone sending wrong ones. One thread per process runs the
 * checks (at nice 10, so the relays come first), started on first use; at
 * most PWCHECK_QUEUE checks wait for it, beyond that a check is refused at
 * once (the session answers 503). The answer comes back on the worker's
 * loop through its port (an ev_async). */
#ifndef WSGATE_PWCHECK_H
#define WSGATE_PWCHECK_H

#include <ev.h>

#include "auth.h"

#define PWCHECK_QUEUE 64 /* checks waiting (not counting the one running) */

struct pwcheck_port;
struct pwcheck_job;

/* good: 1 the password matches a known user, 0 it does not. */
typedef void pwcheck_fn(void *arg, int good);

/* A worker's port, on its loop; NULL when out of memory. Free it after
 * every job submitted through it was answered or cancelled. */
struct pwcheck_port *pwcheck_port_new(struct ev_loop *loop);
void pwcheck_port_free(struct pwcheck_port *p);

/* Queue the check need describes (its hash is taken over, its password
 * copied: the caller wipes its own); fn(arg, good) runs later on the port's
 * loop. NULL when PWCHECK_QUEUE checks wait already or the thread cannot
 * start (need->hash is freed then too). */
struct pwcheck_job *pwcheck_submit(struct pwcheck_port *p, struct auth_crypt *need, pwcheck_fn *fn,
                                   void *arg);

/* The job's callback will not run (the job is freed, now or by the thread). */
void pwcheck_cancel(struct pwcheck_job *j);

/* Stop the thread (at exit, after the workers). */
void pwcheck_stop(void);

#endif
