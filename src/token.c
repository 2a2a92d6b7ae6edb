/* token.c - websockify TokenFile sources (contract in token.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "token.h"
#include "errbuf.h"

#include "config.h"
#include "http.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TARGET_MAX 1024 /* longest target accepted */

struct token_entry {
    char *token;
    size_t len;
    char *target;
    size_t seq; /* load order: the last line for a token wins */
    int line;
    int file;  /* index into the load's file list, for warnings */
    size_t tg; /* index into the table's resolved targets (after resolve_table) */
};

/* One distinct target, resolved when the table was loaded. */
struct token_target {
    struct backend_spec b; /* naddrs == 0 when it could not be resolved */
    char *why;             /* why not, or NULL */
};

struct token_table {
    struct token_entry *e; /* sorted by token, unique */
    size_t n;
    uint64_t sig;            /* source_signature() when the source was read */
    struct token_target *tg; /* NULL until resolve_table() */
    size_t ntg;
    int refs; /* holders of a published table (atomic) */
};

/* ---- change detection --------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fnv_stat(uint64_t h, const struct stat *st)
{
    int64_t v[8] = {(int64_t)st->st_dev,         (int64_t)st->st_ino,
                    (int64_t)st->st_mode,        (int64_t)st->st_size,
                    (int64_t)st->st_mtim.tv_sec, (int64_t)st->st_mtim.tv_nsec,
                    (int64_t)st->st_ctim.tv_sec, (int64_t)st->st_ctim.tv_nsec};
    return fnv(h, v, sizeof(v));
}

/* Directory entries that are read: not hidden (editor and lock files). */
static int visible(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* A hash of the stat data of path and, for a directory, of each visible
 * entry (name and stat, combined in any order, so no sorting); a stat error
 * is hashed as its errno. */
static uint64_t source_signature(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return fnv(h, &e, sizeof(e)) ^ 1; /* never equal to a successful stat's hash */
    }
    h = fnv_stat(h, &st);
    if (!S_ISDIR(st.st_mode))
        return h;
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        return fnv(h, &e, sizeof(e));
    }
    uint64_t sum = 0, count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!visible(de))
            continue;
        uint64_t x = fnv(0xcbf29ce484222325ULL, de->d_name, strlen(de->d_name) + 1);
        if (fstatat(dirfd(d), de->d_name, &st, 0) == 0) {
            x = fnv_stat(x, &st);
        } else {
            int e = errno;
            x = fnv(x, &e, sizeof(e));
        }
        sum += x * 0x9e3779b97f4a7c15ULL + (x >> 29);
        count++;
    }
    closedir(d);
    h = fnv(h, &sum, sizeof(sum));
    return fnv(h, &count, sizeof(count));
}

int token_source_changed(const char *path, const struct token_table *t)
{
    return !t || source_signature(path) != t->sig;
}

/* ---- parsing ------------------------------------------------------------ */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int has_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_space(s[i]))
            return 1;
    return 0;
}

/* Trim whitespace around s[0..*n); returns the new start. */
static const char *trim(const char *s, size_t *n)
{
    while (*n > 0 && is_space(s[0])) {
        s++;
        (*n)--;
    }
    while (*n > 0 && is_space(s[*n - 1]))
        (*n)--;
    return s;
}

/* A decimal port 1..65535 in p[0..n). */
static int valid_port(const char *p, size_t n)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* Check a target t[0..n) and write its canonical form to out (TARGET_MAX
 * bytes). Returns NULL when valid, else why it is not. */
static const char *parse_target(const char *t, size_t n, char *out)
{
    static const char unix_sock[] = "unix_socket:", unix_[] = "unix:";
    const char *path = NULL;
    size_t plen = 0;
    if (n == 0)
        return "no target";
    if (n >= TARGET_MAX - 8)
        return "target too long";
    if (has_space(t, n))
        return "whitespace in the target";
    if (n > sizeof(unix_sock) - 1 && memcmp(t, unix_sock, sizeof(unix_sock) - 1) == 0) {
        path = t + sizeof(unix_sock) - 1;
        plen = n - (sizeof(unix_sock) - 1);
    } else if (n > sizeof(unix_) - 1 && memcmp(t, unix_, sizeof(unix_) - 1) == 0) {
        path = t + sizeof(unix_) - 1;
        plen = n - (sizeof(unix_) - 1);
    }
    if (path) {
        if (path[0] != '/')
            return "unix socket path is not absolute";
        snprintf(out, TARGET_MAX, "unix:%.*s", (int)plen, path);
        return NULL;
    }
    const char *colon = NULL;
    if (t[0] == '[') {
        const char *close = memchr(t, ']', n);
        if (!close || close == t + 1)
            return "bad [IPv6] address";
        if (close + 1 >= t + n || close[1] != ':')
            return "expected [IPv6]:port";
        if (!memchr(t, ':', (size_t)(close - t)) || memchr(t + 1, '[', (size_t)(close - t - 1)) ||
            memchr(t + 1, '/', (size_t)(close - t - 1)))
            return "bad [IPv6] address";
        colon = close + 1;
    } else {
        colon = memrchr(t, ':', n);
        if (!colon)
            return "expected host:port";
        if (colon == t)
            return "no host";
        if (memchr(t, ':', (size_t)(colon - t)))
            return "IPv6 address without brackets";
        for (const char *c = t; c < colon; c++)
            if (*c == '/' || *c == '[' || *c == ']' || *c == '@')
                return "bad host name";
    }
    if (!valid_port(colon + 1, (size_t)(t + n - colon - 1)))
        return "bad port";
    memcpy(out, t, n);
    out[n] = '\0';
    return NULL;
}

struct loader {
    struct token_entry *e;
    size_t n, cap;
    int skipped;
    char *err;
    size_t errlen;
};

static int add_entry(struct loader *l, const char *tok, size_t tlen, const char *target, int line,
                     int file)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct token_entry *e = realloc(l->e, cap * sizeof(*e));
        if (!e)
            return -1;
        l->e = e;
        l->cap = cap;
    }
    struct token_entry *x = &l->e[l->n];
    x->token = malloc(tlen + 1);
    x->target = strdup(target);
    if (!x->token || !x->target) {
        free(x->token);
        free(x->target);
        return -1;
    }
    memcpy(x->token, tok, tlen);
    x->token[tlen] = '\0';
    x->len = tlen;
    x->seq = l->n;
    x->line = line;
    x->file = file;
    l->n++;
    return 0;
}

/* Parse one line (no newline); malformed lines are counted and reported. */
static int parse_line(struct loader *l, const char *fname, int file, int lineno, const char *s,
                      size_t n)
{
    s = trim(s, &n);
    if (n == 0 || s[0] == '#')
        return 0;
    const char *sep = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == ':' && (s[i + 1] == ' ' || s[i + 1] == '\t')) {
            sep = s + i;
            break;
        }
    }
    const char *why = NULL;
    char target[TARGET_MAX];
    size_t tlen = sep ? (size_t)(sep - s) : 0, rlen = sep ? n - tlen - 1 : 0;
    const char *tok = sep ? trim(s, &tlen) : NULL;
    const char *rest = sep ? trim(sep + 1, &rlen) : NULL;
    if (memchr(s, '\0', n))
        why = "NUL byte in line";
    else if (!sep)
        why = "expected 'token: host:port'";
    else if (tlen == 0)
        why = "empty token";
    else
        why = parse_target(rest, rlen, target);
    if (why) {
        l->skipped++;
        err_add_line(l->err, l->errlen, "%s: line %d: %s, skipped", fname, lineno, why);
        return 0;
    }
    return add_entry(l, tok, tlen, target, lineno, file);
}

/* Read one token file. Returns 0, or -1 with errno set. */
static int load_file(struct loader *l, const char *fname, int file)
{
    FILE *f = fopen(fname, "re");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (parse_line(l, fname, file, lineno, line, (size_t)len) != 0) {
            rc = -1;
            errno = ENOMEM;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = -1;
        errno = EIO;
    }
    free(line);
    fclose(f);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct token_entry *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->token, y->token, m);
    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void free_entries(struct token_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].token);
        free(e[i].target);
    }
    free(e);
}

void token_free(struct token_table *t)
{
    if (!t)
        return;
    free_entries(t->e, t->n);
    for (size_t i = 0; i < t->ntg; i++) {
        config_free_backend(&t->tg[i].b);
        free(t->tg[i].why);
    }
    free(t->tg);
    free(t);
}

/* Load path into a new table; on a read error the table is empty and the
 * return value -1 (err says why). Returns -2 only when out of memory. */
static int load_table(const char *path, struct token_table **out, char *err, size_t errlen)
{
    struct loader l = {.err = err, .errlen = errlen};
    struct token_table *t = calloc(1, sizeof(*t));
    char **files = NULL;
    int nfiles = 0, rc = 0;
    if (err && errlen)
        err[0] = '\0';
    if (!t)
        return -2;
    t->sig = source_signature(path); /* before reading: a change while reading is seen later */

    struct stat st;
    if (stat(path, &st) != 0) {
        err_add_line(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    } else if (S_ISDIR(st.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, visible, alphasort);
        if (n < 0) {
            err_add_line(err, errlen, "%s: %s", path, strerror(errno));
            rc = -1;
        } else {
            files = calloc((size_t)n + 1, sizeof(*files));
            for (int i = 0; i < n; i++) {
                char *p = NULL;
                struct stat fst;
                if (files && asprintf(&p, "%s/%s", path, names[i]->d_name) >= 0 &&
                    stat(p, &fst) == 0 && S_ISREG(fst.st_mode))
                    files[nfiles++] = p;
                else
                    free(p);
                free(names[i]);
            }
            free(names);
            if (!files)
                rc = -2;
        }
    } else {
        files = calloc(1, sizeof(*files));
        if (files && (files[0] = strdup(path)) != NULL)
            nfiles = 1;
        else
            rc = -2;
    }
    for (int i = 0; i < nfiles && rc == 0; i++) {
        if (load_file(&l, files[i], i) != 0) {
            int e = errno;
            err_add_line(err, errlen, "%s: %s%s", files[i], strerror(e),
                         S_ISDIR(st.st_mode) ? ", skipped" : "");
            if (e == ENOMEM)
                rc = -2;
            else if (S_ISDIR(st.st_mode))
                l.skipped++; /* one unreadable file does not empty a directory source */
            else
                rc = -1;
        }
    }

    if (rc == 0 && l.n > 0) {
        /* Sort by token, then load order; keep the last line of each run. */
        qsort(l.e, l.n, sizeof(*l.e), cmp_entry);
        size_t k = 0;
        for (size_t i = 0; i < l.n; i++) {
            int dup = i + 1 < l.n && l.e[i].len == l.e[i + 1].len &&
                      memcmp(l.e[i].token, l.e[i + 1].token, l.e[i].len) == 0;
            if (dup) {
                l.skipped++;
                err_add_line(err, errlen, "%s: line %d: duplicate token, %s:%d wins",
                             files[l.e[i].file], l.e[i].line, files[l.e[i + 1].file],
                             l.e[i + 1].line);
                free(l.e[i].token);
                free(l.e[i].target);
            } else {
                l.e[k++] = l.e[i];
            }
        }
        l.n = k;
    }
    for (int i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    if (rc != 0) {
        free_entries(l.e, l.n);
        if (rc == -2) {
            free(t);
            return -2;
        }
    } else {
        t->e = l.e;
        t->n = l.n;
    }
    *out = t;
    return rc == 0 ? l.skipped : -1;
}

int token_load(const char *path, struct token_table **out, char *err, size_t errlen)
{
    struct token_table *t = NULL;
    int rc = load_table(path, &t, err, errlen);
    if (rc == -2) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory\n", path);
        return -1;
    }
    if (rc < 0) {
        token_free(t);
        return -1;
    }
    *out = t;
    return rc;
}

/* The entry for token[0..len), or NULL. */
static const struct token_entry *find_entry(const struct token_table *t, const char *token,
                                            size_t len)
{
    if (!t || !token)
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct token_entry *x = &t->e[mid];
        size_t m = x->len < len ? x->len : len;
        int c = memcmp(x->token, token, m);
        if (c == 0 && x->len != len)
            c = x->len < len ? -1 : 1;
        if (c == 0)
            return x;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *token_lookup(const struct token_table *t, const char *token, size_t len)
{
    const struct token_entry *x = find_entry(t, token, len);
    return x ? x->target : NULL;
}

size_t token_count(const struct token_table *t)
{
    return t ? t->n : 0;
}

/* Contract in token.h. */
const char *token_at(const struct token_table *t, size_t i, const char **target)
{
    if (!t || i >= t->n)
        return NULL;
    *target = t->e[i].target;
    return t->e[i].token;
}

/* ---- query strings ------------------------------------------------------ */

int token_from_query(const char *query, size_t len, char *out, size_t cap)
{
    static const char key[] = "token=";
    size_t i = 0;
    if (!query)
        return -1;
    while (i < len) {
        const char *amp = memchr(query + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - query) : len;
        size_t plen = end - i;
        if (plen > sizeof(key) - 1 && memcmp(query + i, key, sizeof(key) - 1) == 0) {
            size_t j = 0;
            for (size_t k = i + sizeof(key) - 1; k < end; k++) {
                char c = query[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    int hi = k + 2 < end ? http_hexval(query[k + 1]) : -1;
                    int lo = k + 2 < end ? http_hexval(query[k + 2]) : -1;
                    if (hi < 0 || lo < 0)
                        return -2;
                    c = (char)(hi * 16 + lo);
                    k += 2;
                }
                if (c == '\0' || j + 1 >= cap)
                    return -2;
                out[j++] = c;
            }
            while (j > 0 && out[j - 1] == '\n') /* websockify strips a trailing newline */
                j--;
            if (j > 0) {
                out[j] = '\0';
                return (int)j;
            }
        }
        i = end + 1;
    }
    return -1;
}

/* ---- resolving targets --------------------------------------------------- */

static const struct token_table *sort_table; /* qsort has no context argument */

static int cmp_by_target(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    return strcmp(sort_table->e[i].target, sort_table->e[j].target);
}

static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

/* Resolve every distinct target of t once (config_parse_backend: host names
 * through getaddrinfo, so only ever off the worker loops). A target that does
 * not resolve keeps its reason and a warning goes to err. Returns 0, or -1
 * when out of memory. */
static int resolve_table(struct token_table *t, char *err, size_t errlen)
{
    size_t *idx = malloc((t->n ? t->n : 1) * sizeof(*idx));
    if (!idx)
        return -1;
    for (size_t i = 0; i < t->n; i++)
        idx[i] = i;
    pthread_mutex_lock(&sort_lock);
    sort_table = t;
    qsort(idx, t->n, sizeof(*idx), cmp_by_target);
    pthread_mutex_unlock(&sort_lock);
    size_t ntg = 0;
    for (size_t i = 0; i < t->n; i++)
        if (i == 0 || strcmp(t->e[idx[i]].target, t->e[idx[i - 1]].target) != 0)
            ntg++;
    t->tg = calloc(ntg ? ntg : 1, sizeof(*t->tg));
    if (!t->tg) {
        free(idx);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct token_entry *x = &t->e[idx[i]];
        if (i == 0 || strcmp(x->target, t->e[idx[i - 1]].target) != 0) {
            struct token_target *g = &t->tg[t->ntg++];
            char why[256];
            if (config_parse_backend(x->target, &g->b, why, sizeof(why)) < 0) {
                g->why = strdup(why);
                err_add_line(err, errlen, "token target %s: %s", x->target, why);
                if (!g->why) {
                    free(idx);
                    return -1;
                }
            }
        }
        x->tg = t->ntg - 1;
    }
    free(idx);
    return 0;
}

/* ---- the shared cache and its watcher -------------------------------------- */

struct token_cache {
    pthread_mutex_t lock;    /* guards cur: held only to take a reference */
    struct token_table *cur; /* published table, refcounted */
    char *path;
    int refs;                 /* owner + a watcher pass holding it (atomic) */
    int dead;                 /* token_cache_free was called (atomic) */
    struct token_cache *next; /* the watcher's list */
};

static struct {
    pthread_mutex_t lock; /* the list, stop, running */
    pthread_cond_t cond;
    struct token_cache *head;
    token_report_fn report;
    void (*hook)(void); /* token_watch_hook */
    int running, stop, stopped;
    pthread_t thread;
} watch = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void table_unref(struct token_table *t)
{
    if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
        token_free(t);
}

/* The published table with a reference taken (NULL when none). */
static struct token_table *table_get(struct token_cache *c)
{
    pthread_mutex_lock(&c->lock);
    struct token_table *t = c->cur;
    if (t)
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&c->lock);
    return t;
}

static void publish(struct token_cache *c, struct token_table *t)
{
    t->refs = 1;
    pthread_mutex_lock(&c->lock);
    struct token_table *old = c->cur;
    c->cur = t;
    pthread_mutex_unlock(&c->lock);
    table_unref(old);
}

/* Read and resolve the source; an unreadable source is an empty table (with
 * err saying why). Returns the table, or NULL when out of memory. */
static struct token_table *read_source(const char *path, int *rc, char *err, size_t errlen)
{
    struct token_table *t = NULL;
    *rc = load_table(path, &t, err, errlen);
    if (*rc == -2)
        return NULL;
    if (resolve_table(t, err, errlen) < 0) {
        token_free(t);
        *rc = -2;
        return NULL;
    }
    return t;
}

static void cache_unref(struct token_cache *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    table_unref(c->cur);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

int token_cache_open(const char *path, struct token_cache **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct token_cache *c = calloc(1, sizeof(*c));
    if (!c || !(c->path = strdup(path)) || pthread_mutex_init(&c->lock, NULL) != 0) {
        if (c)
            free(c->path);
        free(c);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory\n", path);
        return -1;
    }
    int rc;
    struct token_table *t = read_source(path, &rc, err, errlen);
    if (!t) {
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory\n", path);
        return -1;
    }
    if (rc < 0) {
        token_free(t);
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return -1;
    }
    publish(c, t);
    c->refs = 1;
    pthread_mutex_lock(&watch.lock);
    c->next = watch.head;
    watch.head = c;
    pthread_mutex_unlock(&watch.lock);
    *out = c;
    return rc;
}

struct token_cache *token_cache_new(const char *path)
{
    struct token_cache *c = NULL;
    char err[512];
    if (token_cache_open(path, &c, err, sizeof(err)) >= 0)
        return c;
    /* Unreadable now: start empty; the watcher reads it once it changes. */
    c = calloc(1, sizeof(*c));
    struct token_table *t = calloc(1, sizeof(*t));
    if (!c || !t || !(c->path = strdup(path)) || pthread_mutex_init(&c->lock, NULL) != 0) {
        if (c)
            free(c->path);
        free(c);
        free(t);
        return NULL;
    }
    t->sig = source_signature(path);
    publish(c, t);
    c->refs = 1;
    pthread_mutex_lock(&watch.lock);
    c->next = watch.head;
    watch.head = c;
    pthread_mutex_unlock(&watch.lock);
    return c;
}

void token_cache_free(struct token_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&watch.lock);
    for (struct token_cache **p = &watch.head; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&watch.lock);
    __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
    cache_unref(c); /* a watcher pass still holding it frees it after */
}

int token_cache_refresh(struct token_cache *c, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct token_table *cur = table_get(c);
    int changed = token_source_changed(c->path, cur);
    table_unref(cur);
    if (!changed)
        return 0;
    int rc;
    struct token_table *t = read_source(c->path, &rc, err, errlen);
    if (!t) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory reading the token source\n", c->path);
        return -1; /* keep the old table; retried next time */
    }
    publish(c, t); /* empty after a read error, until the source changes */
    return 1;
}

int token_cache_resolve(struct token_cache *c, const char *token, size_t len,
                        struct backend_spec *out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct token_table *t = table_get(c);
    const struct token_entry *x = find_entry(t, token, len);
    int rc = 0;
    if (x && t->tg) {
        const struct token_target *g = &t->tg[x->tg];
        memset(out, 0, sizeof(*out));
        if (g->why) {
            if (err && errlen)
                snprintf(err, errlen, "%s", g->why);
            rc = -1;
        } else {
            out->text = strdup(g->b.text);
            out->host = g->b.host ? strdup(g->b.host) : NULL;
            out->addrs = malloc((g->b.naddrs ? g->b.naddrs : 1) * sizeof(*out->addrs));
            if (!out->text || (g->b.host && !out->host) || !out->addrs) {
                config_free_backend(out);
                if (err && errlen)
                    snprintf(err, errlen, "out of memory");
                rc = -1;
            } else {
                memcpy(out->addrs, g->b.addrs, g->b.naddrs * sizeof(*out->addrs));
                out->naddrs = g->b.naddrs;
                rc = 1;
            }
        }
    }
    table_unref(t);
    return rc;
}

int token_cache_lookup(struct token_cache *c, const char *token, size_t len, char *target,
                       size_t cap, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct token_table *t = table_get(c);
    const char *v = token_lookup(t, token, len);
    int found = 0;
    if (v && strlen(v) < cap) {
        memcpy(target, v, strlen(v) + 1);
        found = 1;
    }
    table_unref(t);
    return found;
}

/* One pass: refresh every live cache, outside the list lock. */
static void watch_pass(void)
{
    struct token_cache **v = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&watch.lock);
    for (struct token_cache *c = watch.head; c; c = c->next) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct token_cache **nv = realloc(v, ncap * sizeof(*nv));
            if (!nv)
                break;
            v = nv;
            cap = ncap;
        }
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
        v[n++] = c;
    }
    pthread_mutex_unlock(&watch.lock);
    for (size_t i = 0; i < n; i++) {
        char err[1024];
        if (!__atomic_load_n(&v[i]->dead, __ATOMIC_ACQUIRE) &&
            token_cache_refresh(v[i], err, sizeof(err)) != 0 && err[0] && watch.report)
            watch.report(v[i]->path, err);
        cache_unref(v[i]);
    }
    free(v);
}

static void *watch_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&watch.lock);
    while (!watch.stop) {
        void (*hook)(void) = watch.hook;
        pthread_mutex_unlock(&watch.lock);
        watch_pass();
        if (hook)
            hook();
        pthread_mutex_lock(&watch.lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += TOKEN_WATCH_INTERVAL_MS / 1000;
        ts.tv_nsec += (long)(TOKEN_WATCH_INTERVAL_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!watch.stop && pthread_cond_timedwait(&watch.cond, &watch.lock, &ts) == 0)
            ;
    }
    watch.stopped = 1;
    pthread_cond_broadcast(&watch.cond);
    pthread_mutex_unlock(&watch.lock);
    return NULL;
}

int token_watch_start(token_report_fn report)
{
    pthread_mutex_lock(&watch.lock);
    if (watch.running) {
        pthread_mutex_unlock(&watch.lock);
        return 0;
    }
    watch.report = report;
    watch.stop = watch.stopped = 0;
    int rc = pthread_create(&watch.thread, NULL, watch_main, NULL);
    watch.running = rc == 0;
    pthread_mutex_unlock(&watch.lock);
    if (rc != 0)
        errno = rc;
    return rc == 0 ? 0 : -1;
}

void token_watch_hook(void (*fn)(void))
{
    pthread_mutex_lock(&watch.lock);
    watch.hook = fn;
    pthread_mutex_unlock(&watch.lock);
}

void token_watch_stop(void)
{
    pthread_mutex_lock(&watch.lock);
    if (!watch.running) {
        pthread_mutex_unlock(&watch.lock);
        return;
    }
    watch.stop = 1;
    pthread_cond_broadcast(&watch.cond);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    while (!watch.stopped && pthread_cond_timedwait(&watch.cond, &watch.lock, &ts) == 0)
        ;
    int stopped = watch.stopped;
    watch.running = 0;
    pthread_mutex_unlock(&watch.lock);
    if (stopped)
        pthread_join(watch.thread, NULL);
    else
        pthread_detach(watch.thread); /* stuck reading or resolving: leave it */
}
