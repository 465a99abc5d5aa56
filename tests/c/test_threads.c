/* Several pthreads on one database handle: concurrent puts, gets, batches,
 * iterators and snapshots; per-thread last error; closing the handle while
 * other threads still use it (they get OK or EDGESTORE_CLOSED, never a crash);
 * an iterator freed by one thread while another thread has just stepped it
 * (and so holds it in its per-thread cache) is EDGESTORE_CLOSED on both. */
#include "test_util.h"

#include <pthread.h>

#define THREADS 4
#define OPS 150

typedef struct {
    edgestore_db *db;
    int id;
} worker_arg;

static void *writer_reader(void *p) {
    worker_arg *a = (worker_arg *)p;
    char ns[16];
    int i;
    edgestore_batch *b = NULL;
    snprintf(ns, sizeof ns, "t%d", a->id);
    CHECK_OK(edgestore_batch_new(&b));
    for (i = 0; i < OPS; i++) {
        char key[32], val[32];
        uint8_t buf[32];
        size_t len = 0;
        snprintf(key, sizeof key, "k%05d", i);
        snprintf(val, sizeof val, "%d:%d", a->id, i);
        if (i % 10 == 0) {
            CHECK_OK(edgestore_batch_put(b, B(ns), B(key), B(val)));
            CHECK_OK(edgestore_batch_put(b, B("shared"), B(key), B(val)));
            CHECK_OK(edgestore_batch_commit(a->db, b));
        } else {
            CHECK_OK(edgestore_put(a->db, B(ns), B(key), B(val)));
        }
        CHECK_OK(edgestore_get_into(a->db, B(ns), B(key), buf, sizeof buf, &len));
        CHECK_BYTES(buf, len, val);
        if (i % 50 == 25) {
            edgestore_iter *it = NULL;
            const uint8_t *k, *v;
            size_t kl, vl;
            int n = 0;
            edgestore_snapshot *s = NULL;
            CHECK_OK(edgestore_iter_prefix(a->db, B(ns), NULL, 0, &it));
            while (edgestore_iter_next(it, &k, &kl, &v, &vl) == EDGESTORE_OK) n++;
            CHECK(n == i + 1);
            CHECK_OK(edgestore_iter_free(it));
            CHECK_OK(edgestore_snapshot_new(a->db, &s));
            CHECK_OK(edgestore_snapshot_get_into(s, B(ns), B(key), buf, sizeof buf, &len));
            CHECK_OK(edgestore_snapshot_free(s));
        }
        if (a->id == 0 && i == OPS / 2) CHECK_OK(edgestore_flush_to_segments(a->db));
    }
    /* Last error is per thread: provoke one here with this thread's id in it. */
    {
        char ns_bad[16];
        snprintf(ns_bad, sizeof ns_bad, "t%d", a->id);
        CHECK_STATUS(edgestore_get(a->db, B(ns_bad), B("missing"), NULL, NULL), EDGESTORE_INVALID_ARGUMENT);
        CHECK_LAST_ERROR_HAS("value_out");
    }
    CHECK_OK(edgestore_batch_free(b));
    return NULL;
}

typedef struct {
    edgestore_db *db;
    int ok;
    int closed;
} racer_arg;

static pthread_mutex_t race_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t race_cv = PTHREAD_COND_INITIALIZER;
static int race_total = 0;

/* Uses the handle until it sees EDGESTORE_CLOSED. */
static void *racer(void *p) {
    racer_arg *a = (racer_arg *)p;
    int i;
    for (i = 0; i < 100000; i++) {
        edgestore_status st = edgestore_put(a->db, B("race"), B("k"), B("v"));
        if (st == EDGESTORE_CLOSED) {
            a->closed = 1;
            return NULL;
        }
        CHECK_OK(st);
        a->ok++;
        CHECK(pthread_mutex_lock(&race_mu) == 0);
        race_total++;
        CHECK(pthread_cond_broadcast(&race_cv) == 0);
        CHECK(pthread_mutex_unlock(&race_mu) == 0);
    }
    return NULL;
}

/* Steps an iterator, waits while the main thread frees it, steps it again. */
typedef struct {
    edgestore_iter *it;
    pthread_barrier_t *bar;
} stepper_arg;

static void *step_free_step(void *p) {
    stepper_arg *a = p;
    const uint8_t *k, *v;
    size_t kl, vl;
    CHECK_OK(edgestore_iter_next(a->it, &k, &kl, &v, &vl));
    CHECK_BYTES(k, kl, "a");
    pthread_barrier_wait(a->bar); /* the main thread frees the iterator */
    pthread_barrier_wait(a->bar);
    CHECK_STATUS(edgestore_iter_next(a->it, &k, &kl, &v, &vl), EDGESTORE_CLOSED);
    CHECK_LAST_ERROR_HAS("already closed or freed");
    return NULL;
}

static void *free_iter(void *p) {
    CHECK_OK(edgestore_iter_free((edgestore_iter *)p));
    return NULL;
}

/* Frees on one thread an iterator another thread stepped last, both ways. */
static void iterator_freed_by_another_thread(edgestore_db *db) {
    edgestore_iter *it = NULL;
    const uint8_t *k, *v;
    size_t kl, vl;
    pthread_t t;
    pthread_barrier_t bar;
    stepper_arg a;

    CHECK_OK(edgestore_put(db, B("cross"), B("a"), B("1")));
    CHECK_OK(edgestore_put(db, B("cross"), B("b"), B("2")));
    CHECK_OK(edgestore_put(db, B("cross"), B("c"), B("3")));

    CHECK(pthread_barrier_init(&bar, NULL, 2) == 0);
    CHECK_OK(edgestore_iter_prefix(db, B("cross"), NULL, 0, &it));
    a.it = it;
    a.bar = &bar;
    CHECK(pthread_create(&t, NULL, step_free_step, &a) == 0);
    pthread_barrier_wait(&bar);
    CHECK_OK(edgestore_iter_free(it));
    pthread_barrier_wait(&bar);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(pthread_barrier_destroy(&bar) == 0);

    /* This thread steps it, another frees it; the last iterator this thread
     * uses, so its cache holds the freed one until exit (no leak report). */
    CHECK_OK(edgestore_iter_prefix(db, B("cross"), NULL, 0, &it));
    CHECK_OK(edgestore_iter_next(it, &k, &kl, &v, &vl));
    CHECK_BYTES(k, kl, "a");
    CHECK(pthread_create(&t, NULL, free_iter, it) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_STATUS(edgestore_iter_next(it, &k, &kl, &v, &vl), EDGESTORE_CLOSED);
    CHECK_LAST_ERROR_HAS("edgestore_iter_next: iter: this edgestore_iter was already closed or freed");
    CHECK_STATUS(edgestore_iter_free(it), EDGESTORE_CLOSED);
}

int main(void) {
    char *dir = make_tempdir("threads");
    char *path = path_join(dir, "db");
    edgestore_db *db = open_db(path, NULL); /* durable: concurrent writers share fsyncs */
    pthread_t th[THREADS];
    worker_arg args[THREADS];
    racer_arg racers[2];
    edgestore_metrics m;
    int i;

    /* This thread's last error must not be touched by the workers' failures. */
    CHECK_STATUS(edgestore_flush(NULL), EDGESTORE_INVALID_ARGUMENT);
    for (i = 0; i < THREADS; i++) {
        args[i].db = db;
        args[i].id = i;
        CHECK(pthread_create(&th[i], NULL, writer_reader, &args[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) CHECK(pthread_join(th[i], NULL) == 0);
    CHECK_LAST_ERROR_HAS("edgestore_flush: db is NULL");

    for (i = 0; i < THREADS; i++) {
        char ns[16], key[32], val[32];
        snprintf(ns, sizeof ns, "t%d", i);
        snprintf(key, sizeof key, "k%05d", OPS - 1);
        snprintf(val, sizeof val, "%d:%d", i, OPS - 1);
        expect_value(db, ns, key, val);
    }
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.user_writes == (uint64_t)THREADS * (OPS + OPS / 10));
    {
        edgestore_verify_report r;
        CHECK_OK(edgestore_verify(db, &r));
    }

    /* Close while two threads are writing through the same handle. */
    for (i = 0; i < 2; i++) {
        racers[i].db = db;
        racers[i].ok = 0;
        racers[i].closed = 0;
        CHECK(pthread_create(&th[i], NULL, racer, &racers[i]) == 0);
    }
    CHECK(pthread_mutex_lock(&race_mu) == 0);
    while (race_total < 20) CHECK(pthread_cond_wait(&race_cv, &race_mu) == 0);
    CHECK(pthread_mutex_unlock(&race_mu) == 0);
    CHECK_OK(edgestore_close(db));
    for (i = 0; i < 2; i++) CHECK(pthread_join(th[i], NULL) == 0);
    CHECK(racers[0].closed && racers[1].closed);

    /* Everything acknowledged before the close is there after reopening. */
    db = open_db(path, NULL);
    expect_value(db, "race", "k", "v");
    iterator_freed_by_another_thread(db);
    {
        uint8_t buf[32];
        size_t len = 0;
        CHECK_OK(edgestore_get_into(db, B("shared"), B("k00000"), buf, sizeof buf, &len));
        CHECK(len == 3 && buf[1] == ':' && buf[2] == '0');
    }
    CHECK_OK(edgestore_close(db));

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_threads: ok\n");
    return 0;
}
