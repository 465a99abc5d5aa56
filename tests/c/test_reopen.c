/* Reopening: data from the WAL and from segment files survives close/reopen,
 * buffered mode with the flush barrier, the directory lock, batches, TTLs and
 * compaction results, and verify on the reopened database. */
#include "test_util.h"

#include <dirent.h>

/* Flips one byte in the middle of the first *.seg file in `path`. */
static void corrupt_a_segment(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    char *file = NULL;
    FILE *f;
    long size;
    int c;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".seg") == 0) {
            file = path_join(path, e->d_name);
            break;
        }
    }
    closedir(d);
    CHECK(file != NULL);
    f = fopen(file, "r+b");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    size = ftell(f);
    CHECK(size > 64);
    CHECK(fseek(f, size / 4, SEEK_SET) == 0);
    c = fgetc(f);
    CHECK(c != EOF);
    CHECK(fseek(f, size / 4, SEEK_SET) == 0);
    CHECK(fputc(c ^ 0x5a, f) != EOF);
    CHECK(fclose(f) == 0);
    free(file);
}

int main(void) {
    char *dir = make_tempdir("reopen");
    char *path = path_join(dir, "db");
    edgestore_options *opts = NULL;
    edgestore_db *db, *second = NULL;
    edgestore_batch *b = NULL;
    edgestore_verify_report r;
    edgestore_compaction_stats st;
    int i, round;

    /* Durable mode, data only in the WAL. */
    db = open_db(path, NULL);
    CHECK_OK(edgestore_put(db, B("ns"), B("wal"), B("in-wal")));
    CHECK_OK(edgestore_close(db));
    db = open_db(path, NULL);
    expect_value(db, "ns", "wal", "in-wal");

    /* Data in segment files plus newer data in the WAL. */
    for (i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "seg%03d", i);
        CHECK_OK(edgestore_put(db, B("ns"), B(key), B(key)));
    }
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_put(db, B("ns"), B("seg050"), B("overwritten")));
    CHECK_OK(edgestore_delete(db, B("ns"), B("seg051")));
    CHECK_OK(edgestore_batch_new(&b));
    CHECK_OK(edgestore_batch_put(b, B("batch"), B("x"), B("1")));
    CHECK_OK(edgestore_batch_put(b, B("batch"), B("y"), B("2")));
    CHECK_OK(edgestore_batch_commit(db, b));
    CHECK_OK(edgestore_batch_free(b));

    /* While open, a second open of the directory is refused. */
    CHECK_STATUS(edgestore_open(path, NULL, &second), EDGESTORE_LOCKED);
    CHECK(second == NULL);
    CHECK_OK(edgestore_close(db));

    for (round = 0; round < 2; round++) {
        db = open_db(path, NULL);
        expect_value(db, "ns", "seg000", "seg000");
        expect_value(db, "ns", "seg099", "seg099");
        expect_value(db, "ns", "seg050", "overwritten");
        expect_value(db, "ns", "seg051", NULL);
        expect_value(db, "batch", "x", "1");
        expect_value(db, "batch", "y", "2");
        CHECK_OK(edgestore_verify(db, &r));
        CHECK(r.segments >= 1);
        CHECK_OK(edgestore_close(db));
    }

    /* Buffered mode: the flush barrier, then a clean close, then reopen. */
    CHECK_OK(edgestore_options_new(&opts));
    CHECK_OK(edgestore_options_set_sync_mode(opts, EDGESTORE_SYNC_BUFFERED));
    CHECK_OK(edgestore_options_set_manual_clock(opts, INT64_C(1700000000000000000)));
    CHECK_OK(edgestore_options_set_cohort_window(opts, 60));
    /* The explicit compact below must be the one that drops the expired file. */
    CHECK_OK(edgestore_options_set_background_compaction(opts, 0));
    db = open_db(path, opts);
    CHECK_OK(edgestore_put(db, B("buf"), B("a"), B("A")));
    CHECK_OK(edgestore_put_with_ttl(db, B("buf"), B("ttl"), B("T"), 30));
    CHECK_OK(edgestore_flush(db));
    CHECK_OK(edgestore_close(db));

    /* TTLs are judged by the clock after reopening too: reopen at the same
     * manual start time (alive), then advance and compact, then reopen again. */
    db = open_db(path, opts);
    expect_value(db, "buf", "a", "A");
    expect_value(db, "buf", "ttl", "T");
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_advance_clock(db, 600));
    expect_value(db, "buf", "ttl", NULL);
    CHECK_OK(edgestore_compact(db, &st));
    CHECK(st.segments_removed >= 1);
    CHECK_OK(edgestore_close(db));
    CHECK_OK(edgestore_options_free(opts));

    db = open_db(path, NULL); /* system clock: years later, the TTL'd record is long dead */
    expect_value(db, "buf", "a", "A");
    expect_value(db, "buf", "ttl", NULL);
    expect_value(db, "ns", "seg099", "seg099");
    CHECK_OK(edgestore_verify(db, &r));
    CHECK_OK(edgestore_close(db));

    /* A damaged segment file: verify reports EDGESTORE_CORRUPTION naming the file. */
    {
        char *p2 = path_join(dir, "corrupt");
        db = open_db(p2, NULL);
        for (i = 0; i < 200; i++) {
            char key[16];
            snprintf(key, sizeof key, "c%04d", i);
            CHECK_OK(edgestore_put(db, B("ns"), B(key), B("some value bytes")));
        }
        CHECK_OK(edgestore_flush_to_segments(db));
        CHECK_OK(edgestore_close(db));
        corrupt_a_segment(p2);
        /* The flipped byte is inside a data block, which open does not read; verify reads all. */
        db = open_db(p2, NULL);
        CHECK_STATUS(edgestore_verify(db, &r), EDGESTORE_CORRUPTION);
        CHECK_LAST_ERROR_HAS(".seg");
        CHECK_OK(edgestore_close(db));
        free(p2);
    }

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_reopen: ok\n");
    return 0;
}
