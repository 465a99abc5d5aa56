/* Write batches: atomic apply, ordering inside a batch, reuse, failure leaves
 * the batch intact, limits. */
#include "test_util.h"

int main(void) {
    char *dir = make_tempdir("batch");
    char *path = path_join(dir, "db");
    edgestore_db *db = open_db(path, NULL);
    edgestore_batch *b = NULL;
    size_t n = 99;
    static uint8_t huge_key[16 * 1024 + 1];

    CHECK_OK(edgestore_put(db, B("ns"), B("gone"), B("old")));

    CHECK_OK(edgestore_batch_new(&b));
    CHECK(b != NULL);
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 0);
    CHECK_OK(edgestore_batch_put(b, B("ns"), B("a"), B("1")));
    CHECK_OK(edgestore_batch_put(b, B("ns"), B("b"), B("2")));
    CHECK_OK(edgestore_batch_put(b, B("ns"), B("a"), B("1-later"))); /* later op wins */
    CHECK_OK(edgestore_batch_delete(b, B("ns"), B("gone")));
    CHECK_OK(edgestore_batch_put(b, B("other"), B("x"), NULL, 0));
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 5);

    /* Nothing is visible before commit. */
    expect_value(db, "ns", "a", NULL);
    expect_value(db, "ns", "gone", "old");

    /* An invalid operation is refused and leaves the batch as it was. */
    CHECK_STATUS(edgestore_batch_put(b, B("ns"), huge_key, sizeof huge_key, B("v")),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 5);

    CHECK_OK(edgestore_batch_commit(db, b));
    expect_value(db, "ns", "a", "1-later");
    expect_value(db, "ns", "b", "2");
    expect_value(db, "ns", "gone", NULL);
    expect_value(db, "other", "x", "");

    /* Commit empties the batch; it can be reused. Committing an empty batch is fine. */
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 0);
    CHECK_OK(edgestore_batch_commit(db, b));
    CHECK_OK(edgestore_batch_put(b, B("ns"), B("c"), B("3")));
    CHECK_OK(edgestore_batch_clear(b));
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 0);
    CHECK_OK(edgestore_batch_commit(db, b));
    expect_value(db, "ns", "c", NULL);

    /* A failed commit (closed database) leaves the batch unchanged. */
    CHECK_OK(edgestore_batch_put(b, B("ns"), B("d"), B("4")));
    CHECK_OK(edgestore_close(db));
    CHECK_STATUS(edgestore_batch_commit(db, b), EDGESTORE_CLOSED);
    CHECK_OK(edgestore_batch_len(b, &n));
    CHECK(n == 1);

    /* ...and can be committed to another handle: batches are not bound to a db. */
    db = open_db(path, NULL);
    CHECK_OK(edgestore_batch_commit(db, b));
    expect_value(db, "ns", "d", "4");
    expect_value(db, "ns", "a", "1-later");

    /* A large batch. */
    {
        int i;
        for (i = 0; i < 1000; i++) {
            char key[32];
            snprintf(key, sizeof key, "bulk-%05d", i);
            CHECK_OK(edgestore_batch_put(b, B("bulk"), B(key), B(key)));
        }
        CHECK_OK(edgestore_batch_len(b, &n));
        CHECK(n == 1000);
        CHECK_OK(edgestore_batch_commit(db, b));
        expect_value(db, "bulk", "bulk-00000", "bulk-00000");
        expect_value(db, "bulk", "bulk-00999", "bulk-00999");
    }

    CHECK_OK(edgestore_batch_free(b));
    CHECK_STATUS(edgestore_batch_free(b), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_batch_put(b, B("ns"), B("k"), B("v")), EDGESTORE_CLOSED);
    CHECK_OK(edgestore_close(db));
    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_batch: ok\n");
    return 0;
}
