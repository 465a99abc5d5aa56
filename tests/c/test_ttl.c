/* TTL expiry: with the testing-only manual clock (no sleeping), and once with
 * the real clock (TTL 1 s, one 2 s sleep). */
#include "test_util.h"

int main(void) {
    char *dir = make_tempdir("ttl");
    char *path = path_join(dir, "db");
    char *path2 = path_join(dir, "db-real-clock");
    edgestore_options *opts = test_options(1);
    edgestore_db *db = open_db(path, opts);
    edgestore_batch *b = NULL;
    uint8_t buf[8];
    size_t len = 0;

    CHECK_OK(edgestore_options_free(opts));

    CHECK_OK(edgestore_put_with_ttl(db, B("cache"), B("short"), B("s"), 10));
    CHECK_OK(edgestore_put_with_ttl(db, B("cache"), B("long"), B("l"), 3600));
    CHECK_OK(edgestore_put(db, B("cache"), B("forever"), B("f")));
    CHECK_OK(edgestore_batch_new(&b));
    CHECK_OK(edgestore_batch_put_with_ttl(b, B("cache"), B("batched"), B("b"), 20));
    CHECK_OK(edgestore_batch_commit(db, b));
    CHECK_OK(edgestore_batch_free(b));

    CHECK_OK(edgestore_advance_clock(db, 9));
    expect_value(db, "cache", "short", "s");
    CHECK_OK(edgestore_advance_clock(db, 1)); /* exactly 10 s: dead */
    expect_value(db, "cache", "short", NULL);
    CHECK_STATUS(edgestore_get_into(db, B("cache"), B("short"), buf, sizeof buf, &len),
                 EDGESTORE_NOT_FOUND);
    expect_value(db, "cache", "batched", "b");
    CHECK_OK(edgestore_advance_clock(db, 10));
    expect_value(db, "cache", "batched", NULL);
    expect_value(db, "cache", "long", "l");

    /* Expired records stay invisible after they reach segment files. */
    CHECK_OK(edgestore_flush_to_segments(db));
    expect_value(db, "cache", "short", NULL);
    expect_value(db, "cache", "long", "l");
    CHECK_OK(edgestore_advance_clock(db, 3600));
    expect_value(db, "cache", "long", NULL);
    expect_value(db, "cache", "forever", "f");

    /* Re-putting an expired key revives it with a fresh TTL. */
    CHECK_OK(edgestore_put_with_ttl(db, B("cache"), B("short"), B("again"), 5));
    expect_value(db, "cache", "short", "again");
    CHECK_OK(edgestore_advance_clock(db, 5));
    expect_value(db, "cache", "short", NULL);
    CHECK_OK(edgestore_close(db));

    /* Real clock: a 1 s TTL is gone after 2 s. The clock API is refused. */
    db = open_db(path2, NULL);
    CHECK_STATUS(edgestore_advance_clock(db, 1), EDGESTORE_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("manual_clock");
    CHECK_OK(edgestore_put_with_ttl(db, B("rt"), B("k"), B("v"), 1));
    CHECK_OK(edgestore_put_with_ttl(db, B("rt"), B("k2"), B("v2"), 600));
    expect_value(db, "rt", "k", "v");
    sleep(2);
    expect_value(db, "rt", "k", NULL);
    expect_value(db, "rt", "k2", "v2");
    CHECK_OK(edgestore_close(db));

    remove_tree(dir);
    free(path);
    free(path2);
    free(dir);
    printf("test_ttl: ok\n");
    return 0;
}
