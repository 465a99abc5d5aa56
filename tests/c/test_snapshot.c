/* Snapshots: isolation from later writes, deletes and TTL expiry, both
 * value-out forms, sequence numbers, and outliving the database handle. */
#include "test_util.h"

static void snap_expect(edgestore_snapshot *s, const char *ns, const char *key, const char *want) {
    uint8_t *v = NULL;
    size_t len = 0;
    if (!want) {
        CHECK_STATUS(edgestore_snapshot_get(s, B(ns), B(key), &v, &len), EDGESTORE_NOT_FOUND);
        return;
    }
    CHECK_OK(edgestore_snapshot_get(s, B(ns), B(key), &v, &len));
    CHECK_BYTES(v, len, want);
    CHECK_OK(edgestore_value_free(v));
}

int main(void) {
    char *dir = make_tempdir("snapshot");
    char *path = path_join(dir, "db");
    edgestore_options *opts = test_options(1);
    edgestore_db *db = open_db(path, opts);
    edgestore_snapshot *s1 = NULL, *s2 = NULL;
    uint64_t seq1 = 0, seq2 = 0;
    uint8_t buf[4];
    size_t len = 0;
    char text[256];
    uint8_t *dangling = NULL;
    edgestore_iter *it = NULL;

    CHECK_OK(edgestore_options_free(opts));
    CHECK_OK(edgestore_put(db, B("ns"), B("a"), B("1")));
    CHECK_OK(edgestore_put(db, B("ns"), B("b"), B("2")));
    CHECK_OK(edgestore_put_with_ttl(db, B("ns"), B("ttl"), B("t"), 5));

    CHECK_OK(edgestore_snapshot_new(db, &s1));
    CHECK(s1 != NULL);
    CHECK_OK(edgestore_snapshot_sequence(s1, &seq1));

    /* Later writes, deletes and expiry are invisible through the snapshot. */
    CHECK_OK(edgestore_put(db, B("ns"), B("a"), B("1-new")));
    CHECK_OK(edgestore_delete(db, B("ns"), B("b")));
    CHECK_OK(edgestore_put(db, B("ns"), B("c"), B("3")));
    CHECK_OK(edgestore_advance_clock(db, 10));
    expect_value(db, "ns", "ttl", NULL);
    expect_value(db, "ns", "b", NULL);
    snap_expect(s1, "ns", "a", "1");
    snap_expect(s1, "ns", "b", "2");
    snap_expect(s1, "ns", "c", NULL);
    snap_expect(s1, "ns", "ttl", "t");

    /* Caller-buffer form through a snapshot. */
    CHECK_OK(edgestore_snapshot_get_into(s1, B("ns"), B("a"), buf, sizeof buf, &len));
    CHECK_BYTES(buf, len, "1");
    CHECK_STATUS(edgestore_snapshot_get_into(s1, B("ns"), B("ttl"), NULL, 0, &len),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 1);

    /* A second snapshot sees the newer state and a later sequence. */
    CHECK_OK(edgestore_snapshot_new(db, &s2));
    CHECK_OK(edgestore_snapshot_sequence(s2, &seq2));
    CHECK(seq2 > seq1);
    snap_expect(s2, "ns", "a", "1-new");
    snap_expect(s2, "ns", "b", NULL);

    /* Snapshot iterators read the snapshot's view. */
    CHECK_OK(edgestore_snapshot_iter_prefix(s1, B("ns"), NULL, 0, &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "a=1;b=2;ttl=t;");
    CHECK_OK(edgestore_snapshot_iter_range(s2, B("ns"), B("a"), B("c"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "a=1-new;");

    /* The snapshot survives flushes, compaction and closing the database. */
    CHECK_OK(edgestore_flush_to_segments(db));
    {
        edgestore_compaction_stats st;
        CHECK_OK(edgestore_compact(db, &st));
    }
    snap_expect(s1, "ns", "a", "1");
    CHECK_OK(edgestore_close(db));
    snap_expect(s1, "ns", "a", "1");
    snap_expect(s1, "ns", "b", "2");
    snap_expect(s2, "ns", "c", "3");
    CHECK_STATUS(edgestore_snapshot_new(db, &s1), EDGESTORE_CLOSED);

    /* An iterator from a snapshot outlives the snapshot. */
    CHECK_OK(edgestore_snapshot_iter_prefix(s1, B("ns"), B("a"), &it));
    CHECK_OK(edgestore_snapshot_free(s1));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "a=1;");

    CHECK_STATUS(edgestore_snapshot_get(s1, B("ns"), B("a"), &dangling, &len),
                 EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_snapshot_free(s1), EDGESTORE_CLOSED);
    CHECK_OK(edgestore_snapshot_free(s2));
    CHECK_OK(edgestore_snapshot_free(NULL));

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_snapshot: ok\n");
    return 0;
}
