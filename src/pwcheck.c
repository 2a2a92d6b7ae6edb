/* pwcheck.c - Basic-auth password checks off the worker loops. Contracts in
 * pwcheck.h.
 *
 * One lock guards the queue, each port's list of answers and every job's
 * state: a job is QUEUED (in the queue), RUNNING (the thread hashes with
 * the lock released), or DONE (in its port's list until the loop takes
 * it). A cancelled QUEUED or DONE job is freed by the canceller; a
 * cancelled RUNNING one by the thread when it finishes. The thread signals
 * a port only under the lock and only for a job not cancelled, and a port
 * is freed only when no job of it is left, so the signal never reaches a
 * freed port. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "pwcheck.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PWCHECK_NICE 10

enum job_state { QUEUED, RUNNING, DONE };

struct pwcheck_job {
    struct pwcheck_job *next;
    struct pwcheck_port *port;
    enum job_state state;
    bool cancelled;
    int good;
    pwcheck_fn *fn;
    void *arg;
    struct auth_crypt c;
};

struct pwcheck_port {
    ev_async async;
    struct ev_loop *loop;
    struct pwcheck_job *done; /* answers for the loop, under the lock */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_once_t once;
    pthread_t thread;
    bool running, stopping;
    struct pwcheck_job *head, *tail; /* QUEUED jobs, oldest first */
    unsigned queued;
} q = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static void job_free(struct pwcheck_job *j)
{
    free(j->c.hash);
    OPENSSL_cleanse(j->c.password, sizeof j->c.password);
    free(j);
}

/* Under the lock: unlink j from list *l. */
static void unlink_job(struct pwcheck_job **l, struct pwcheck_job *j)
{
    for (; *l; l = &(*l)->next)
        if (*l == j) {
            *l = j->next;
            return;
        }
}

static void *run(void *arg)
{
    (void)arg;
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), PWCHECK_NICE);
    pthread_mutex_lock(&q.lock);
    for (;;) {
        while (!q.head && !q.stopping)
            pthread_cond_wait(&q.wake, &q.lock);
        if (q.stopping)
            break;
        struct pwcheck_job *j = q.head;
        q.head = j->next;
        if (!q.head)
            q.tail = NULL;
        q.queued--;
        j->state = RUNNING;
        pthread_mutex_unlock(&q.lock);
        /* hashed for an unknown user too: timing does not tell users apart */
        int good = basic_auth_crypt_matches(j->c.hash, j->c.password) && j->c.known;
        OPENSSL_cleanse(j->c.password, sizeof j->c.password);
        pthread_mutex_lock(&q.lock);
        if (j->cancelled) {
            job_free(j);
            continue;
        }
        j->good = good;
        j->state = DONE;
        j->next = j->port->done;
        j->port->done = j;
        ev_async_send(j->port->loop, &j->port->async);
    }
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void start_thread(void)
{
    q.running = pthread_create(&q.thread, NULL, run, NULL) == 0;
}

/* The loop side: run the callbacks of the answers, oldest first, each
 * taken out of the list just before its callback runs (a callback may
 * cancel another answer still in the list: that one is freed then). */
static void answers_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct pwcheck_port *p = a->data;
    for (;;) {
        pthread_mutex_lock(&q.lock);
        struct pwcheck_job **l = &p->done, *j;
        while (*l && (*l)->next) /* the list is newest first */
            l = &(*l)->next;
        if ((j = *l))
            *l = NULL;
        pthread_mutex_unlock(&q.lock);
        if (!j)
            return;
        j->fn(j->arg, j->good);
        job_free(j);
    }
}

struct pwcheck_port *pwcheck_port_new(struct ev_loop *loop)
{
    struct pwcheck_port *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    ev_async_init(&p->async, answers_cb);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    return p;
}

void pwcheck_port_free(struct pwcheck_port *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&q.lock);
    struct pwcheck_job *l = p->done;
    p->done = NULL;
    pthread_mutex_unlock(&q.lock);
    while (l) { /* answered, never taken: their sessions are gone */
        struct pwcheck_job *n = l->next;
        job_free(l);
        l = n;
    }
    ev_async_stop(p->loop, &p->async);
    free(p);
}

struct pwcheck_job *pwcheck_submit(struct pwcheck_port *p, struct auth_crypt *need, pwcheck_fn *fn,
                                   void *arg)
{
    pthread_once(&q.once, start_thread);
    struct pwcheck_job *j = calloc(1, sizeof *j);
    pthread_mutex_lock(&q.lock);
    bool room = j && p && q.running && !q.stopping && q.queued < PWCHECK_QUEUE;
    if (room) {
        j->port = p;
        j->fn = fn;
        j->arg = arg;
        j->c.hash = need->hash;
        j->c.known = need->known;
        memcpy(j->c.password, need->password, sizeof j->c.password);
        j->state = QUEUED;
        if (q.tail)
            q.tail->next = j;
        else
            q.head = j;
        q.tail = j;
        q.queued++;
        pthread_cond_signal(&q.wake);
    }
    pthread_mutex_unlock(&q.lock);
    if (!room) {
        free(j);
        free(need->hash);
    }
    need->hash = NULL;
    return room ? j : NULL;
}

void pwcheck_cancel(struct pwcheck_job *j)
{
    pthread_mutex_lock(&q.lock);
    bool free_now = true;
    if (j->state == QUEUED) {
        unlink_job(&q.head, j);
        q.tail = NULL;
        for (struct pwcheck_job *t = q.head; t; t = t->next)
            q.tail = t;
        q.queued--;
    } else if (j->state == DONE) {
        unlink_job(&j->port->done, j);
    } else {
        j->cancelled = true; /* RUNNING: the thread frees it */
        free_now = false;
    }
    pthread_mutex_unlock(&q.lock);
    if (free_now)
        job_free(j);
}

void pwcheck_stop(void)
{
    pthread_mutex_lock(&q.lock);
    q.stopping = true;
    pthread_cond_signal(&q.wake);
    bool running = q.running;
    pthread_mutex_unlock(&q.lock);
    if (running)
        pthread_join(q.thread, NULL);
    q.running = false;
    while (q.head) { /* the workers are gone: nobody waits for these */
        struct pwcheck_job *n = q.head->next;
        job_free(q.head);
        q.head = n;
    }
    q.tail = NULL;
    q.queued = 0;
}
