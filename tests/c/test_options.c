/* Options take effect: memtable size (automatic flushes), segment size (more
 * files), compaction budget (rewrites deferred), background compaction (expired
 * files dropped without calling edgestore_compact), sync modes. */
#include "test_util.h"

#include <time.h>

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static void put_many(edgestore_db *db, const char *ns, int count, uint32_t ttl) {
    int i;
    char value[100];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (i = 0; i < count; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s-%05d", ns, i);
        CHECK_OK(edgestore_put_with_ttl(db, B(ns), B(key), B(value), ttl));
    }
}

int main(void) {
    char *dir = make_tempdir("options");
    char *p1 = path_join(dir, "small-memtable");
    char *p2 = path_join(dir, "budget");
    char *p3 = path_join(dir, "background");
    char *p4 = path_join(dir, "durable");
    edgestore_options *o = NULL;
    edgestore_db *db;
    edgestore_metrics m;
    edgestore_compaction_stats st;
    int i;

    /* Small memtable and segments: writes flush on their own, into several files. */
    o = test_options(0);
    CHECK_OK(edgestore_options_set_memtable_size(o, 8 * 1024));
    CHECK_OK(edgestore_options_set_segment_size(o, 4 * 1024));
    db = open_db(p1, o);
    CHECK_OK(edgestore_options_free(o));
    put_many(db, "auto", 300, 0);
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.flushes >= 2);
    CHECK(m.segments >= 4);
    expect_value(db, "auto", "auto-00000",
                 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
    CHECK_OK(edgestore_close(db));

    /* A zero compaction budget: a permanent-cohort merge is deferred, nothing written. */
    o = test_options(1);
    CHECK_OK(edgestore_options_set_compaction_budget(o, 0));
    db = open_db(p2, o);
    CHECK_OK(edgestore_options_free(o));
    for (i = 0; i < 6; i++) {
        put_many(db, "perm", 20, 0);
        CHECK_OK(edgestore_flush_to_segments(db));
    }
    CHECK_OK(edgestore_compact(db, &st));
    CHECK(st.jobs_deferred >= 1);
    CHECK(st.bytes_written == 0);
    CHECK(st.segments_written == 0);
    /* Dropping expired files is never limited by the budget. */
    put_many(db, "ttl", 20, 10);
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_advance_clock(db, 7200));
    CHECK_OK(edgestore_compact(db, &st));
    CHECK(st.segments_removed >= 1);
    CHECK(st.bytes_written == 0);
    CHECK_OK(edgestore_close(db));

    /* Background compaction every 10 ms drops the expired cohort by itself. */
    o = test_options(1);
    CHECK_OK(edgestore_options_set_cohort_window(o, 60));
    CHECK_OK(edgestore_options_set_background_compaction(o, 10));
    db = open_db(p3, o);
    CHECK_OK(edgestore_options_free(o));
    put_many(db, "bg", 50, 30);
    put_many(db, "keep", 10, 0);
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_advance_clock(db, 600));
    for (i = 0; i < 1000; i++) { /* up to 10 s, also under valgrind */
        CHECK_OK(edgestore_get_metrics(db, &m));
        if (m.compaction_bytes_reclaimed > 0) break;
        sleep_ms(10);
    }
    CHECK(m.compactions >= 1);
    CHECK(m.compaction_bytes_reclaimed > 0);
    expect_value(db, "bg", "bg-00000", NULL);
    CHECK_OK(edgestore_close(db)); /* stops and joins the background thread */

    /* Durable mode syncs every write; the buffered-mode flush barrier is a no-op here. */
    o = NULL;
    CHECK_OK(edgestore_options_new(&o));
    CHECK_OK(edgestore_options_set_sync_mode(o, EDGESTORE_SYNC_DURABLE));
    db = open_db(p4, o);
    CHECK_OK(edgestore_options_free(o));
    CHECK_OK(edgestore_put(db, B("d"), B("k"), B("v")));
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.wal_syncs >= 1);
    CHECK_OK(edgestore_flush(db));
    CHECK_OK(edgestore_close(db));

    remove_tree(dir);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    free(dir);
    printf("test_options: ok\n");
    return 0;
}
