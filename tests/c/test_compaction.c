/* Compaction: expired cohorts are dropped without rewriting, even while a
 * snapshot reads them, partly dead cohorts are rewritten, stats and metrics
 * add up. */
#include "test_util.h"

static void put_many(edgestore_db *db, const char *ns, int count, uint32_t ttl) {
    int i;
    char value[64];
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (i = 0; i < count; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s-%05d", ns, i);
        CHECK_OK(edgestore_put_with_ttl(db, B(ns), B(key), B(value), ttl));
    }
}

static void print_stats(const char *what, const edgestore_compaction_stats *s) {
    printf("%s: cohorts_collected=%llu segments_removed=%llu segments_written=%llu "
           "bytes_written=%llu bytes_reclaimed=%llu relocated=%llu dropped=%llu deferred=%llu\n",
           what, (unsigned long long)s->cohorts_collected, (unsigned long long)s->segments_removed,
           (unsigned long long)s->segments_written, (unsigned long long)s->bytes_written,
           (unsigned long long)s->bytes_reclaimed, (unsigned long long)s->live_records_relocated,
           (unsigned long long)s->records_dropped, (unsigned long long)s->jobs_deferred);
}

int main(void) {
    char *dir = make_tempdir("compaction");
    char *path = path_join(dir, "db");
    char *path2 = path_join(dir, "db2");
    edgestore_options *opts = test_options(1);
    edgestore_db *db;
    edgestore_compaction_stats st;
    edgestore_metrics m, m0;
    edgestore_verify_report r;
    edgestore_snapshot *snap = NULL;
    int i;

    CHECK_OK(edgestore_options_set_cohort_window(opts, 60));
    CHECK_OK(edgestore_options_set_segment_size(opts, 64 * 1024));
    /* These checks are on what each explicit edgestore_compact() did: no
     * background cycle (on by default) may get there first. */
    CHECK_OK(edgestore_options_set_background_compaction(opts, 0));
    db = open_db(path, opts);

    /* Nothing to do on an empty database. */
    CHECK_OK(edgestore_compact(db, &st));
    CHECK(st.segments_removed == 0 && st.bytes_written == 0);

    put_many(db, "short", 200, 30);    /* dies within a minute */
    put_many(db, "long", 100, 86400);  /* dies tomorrow */
    put_many(db, "perm", 50, 0);       /* never dies */
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_get_metrics(db, &m0));
    CHECK(m0.segments >= 3); /* one run per cohort */

    /* Before expiry: nothing reclaimable. */
    CHECK_OK(edgestore_compact(db, &st));
    print_stats("before expiry", &st);
    CHECK(st.segments_removed == 0);

    /* After expiry the short cohort's files are dropped whole: no rewrite. */
    CHECK_OK(edgestore_advance_clock(db, 120));
    CHECK_OK(edgestore_compact(db, &st));
    print_stats("after expiry", &st);
    CHECK(st.cohorts_collected >= 1);
    CHECK(st.segments_removed >= 1);
    CHECK(st.bytes_reclaimed > 0);
    CHECK(st.bytes_written == 0);
    CHECK(st.live_records_relocated == 0);
    expect_value(db, "short", "short-00000", NULL);
    expect_value(db, "long", "long-00099", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    expect_value(db, "perm", "perm-00049", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.segments < m0.segments);
    CHECK(m.compactions >= 2);
    CHECK(m.compaction_bytes_reclaimed >= st.bytes_reclaimed);
    CHECK(m.compaction_write_amplification == 0.0);

    /* A snapshot holds the files it reads open; compaction does not wait
     * for it: the expired file is dropped at once (nothing written) and the
     * snapshot, which judges TTLs as of when it was taken, reads on. */
    put_many(db, "pinned", 100, 30);
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_snapshot_new(db, &snap));
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.pinned_segments >= 1);
    CHECK(m.snapshot_held_bytes == 0);
    CHECK_OK(edgestore_advance_clock(db, 120));
    CHECK_OK(edgestore_compact(db, &st));
    print_stats("held by a snapshot", &st);
    CHECK(st.segments_removed >= 1);
    CHECK(st.bytes_written == 0);
    /* Gone from the database, still on disk: the snapshot holds it. */
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.snapshot_held_bytes > 0 && m.snapshot_held_bytes <= st.bytes_reclaimed);
    {
        uint8_t *v = NULL;
        size_t len = 0;
        CHECK_OK(edgestore_snapshot_get(snap, B("pinned"), B("pinned-00042"), &v, &len));
        CHECK(len == 63);
        CHECK_OK(edgestore_value_free(v));
        CHECK_STATUS(edgestore_get(db, B("pinned"), B("pinned-00042"), &v, &len),
                     EDGESTORE_NOT_FOUND);
    }
    CHECK_OK(edgestore_snapshot_free(snap));
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.pinned_segments == 0);
    CHECK(m.snapshot_held_bytes == 0);

    CHECK_OK(edgestore_verify(db, &r));
    CHECK(r.segments >= 2);
    CHECK_OK(edgestore_close(db));

    /* The permanent cohort (TTL 0) is merged once it holds too many runs:
     * overwritten versions are dropped and the newest ones relocated. */
    db = open_db(path2, opts);
    CHECK_OK(edgestore_options_free(opts));
    for (i = 0; i < 6; i++) {
        put_many(db, "perm", 50, 0);
        CHECK_OK(edgestore_flush_to_segments(db));
    }
    CHECK_OK(edgestore_get_metrics(db, &m0));
    CHECK(m0.sorted_runs == 6); /* one per flush: reads consult them all */
    CHECK_OK(edgestore_compact(db, &st));
    print_stats("permanent merge", &st);
    CHECK(st.segments_written >= 1);
    CHECK(st.segments_removed >= 2);
    CHECK(st.bytes_written > 0);
    CHECK(st.live_records_relocated >= 50);
    CHECK(st.records_dropped >= 50);
    expect_value(db, "perm", "perm-00007", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.sorted_runs >= 1 && m.sorted_runs <= 4); /* max_permanent_runs */
    CHECK(m.compaction_bytes_written == st.bytes_written);
    CHECK(m.compaction_write_amplification > 0.0);
    CHECK(m.write_amplification > m.compaction_write_amplification);
    CHECK_OK(edgestore_verify(db, &r));
    CHECK_OK(edgestore_close(db));

    remove_tree(dir);
    free(path);
    free(path2);
    free(dir);
    printf("test_compaction: ok\n");
    return 0;
}
