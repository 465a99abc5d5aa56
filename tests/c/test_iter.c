/* Iterators: range bounds, unbounded end, prefix, namespace isolation, order
 * across memtable and segment files, consistent view, outliving the db. */
#include "test_util.h"

int main(void) {
    char *dir = make_tempdir("iter");
    char *path = path_join(dir, "db");
    edgestore_options *opts = test_options(1);
    edgestore_db *db = open_db(path, opts);
    edgestore_iter *it = NULL;
    const uint8_t *k = NULL, *v = NULL;
    size_t kl = 0, vl = 0;
    char text[4096];
    int i;

    CHECK_OK(edgestore_options_free(opts));

    /* Empty database: DONE at once. */
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "");

    CHECK_OK(edgestore_put(db, B("ns"), B("b"), B("2")));
    CHECK_OK(edgestore_put(db, B("ns"), B("a"), B("1")));
    CHECK_OK(edgestore_put(db, B("ns"), B("ab"), B("12")));
    CHECK_OK(edgestore_put(db, B("ns"), B("c"), B("3")));
    CHECK_OK(edgestore_put(db, B("ns"), B("d"), B("4")));
    CHECK_OK(edgestore_put(db, B("nt"), B("a"), B("other-ns")));
    CHECK_OK(edgestore_put(db, B("n"), B("sa"), B("prefix-ns")));
    CHECK_OK(edgestore_put(db, B("ns"), NULL, 0, B("empty-key")));

    /* Range [b, d). */
    CHECK_OK(edgestore_iter_range(db, B("ns"), B("b"), B("d"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "b=2;c=3;");
    /* Start at the beginning, no upper bound (end_len == 0). */
    CHECK_OK(edgestore_iter_range(db, B("ns"), NULL, 0, NULL, 0, &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "=empty-key;a=1;ab=12;b=2;c=3;d=4;");
    CHECK_OK(edgestore_iter_range(db, B("ns"), B("c"), (const uint8_t *)"", 0, &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "c=3;d=4;");
    /* Empty and inverted ranges. */
    CHECK_OK(edgestore_iter_range(db, B("ns"), B("b"), B("b"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "");
    CHECK_OK(edgestore_iter_range(db, B("ns"), B("d"), B("a"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "");
    /* Prefix. */
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), B("a"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "a=1;ab=12;");
    CHECK_OK(edgestore_iter_prefix(db, B("nt"), NULL, 0, &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "a=other-ns;");
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), B("zzz"), &it));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "");

    /* Prefix with 0xFF bytes (no successor key exists). */
    {
        const uint8_t k1[2] = {0xff, 0xff}, k2[3] = {0xff, 0xff, 0x01}, p[2] = {0xff, 0xff};
        size_t count = 0;
        CHECK_OK(edgestore_put(db, B("bin"), k1, 2, B("x")));
        CHECK_OK(edgestore_put(db, B("bin"), k2, 3, B("y")));
        CHECK_OK(edgestore_iter_prefix(db, B("bin"), p, 2, &it));
        while (edgestore_iter_next(it, &k, &kl, &v, &vl) == EDGESTORE_OK) count++;
        CHECK(count == 2);
        CHECK_OK(edgestore_iter_free(it));
    }

    /* The iterator reads the view taken when it was created. */
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it));
    CHECK_OK(edgestore_put(db, B("ns"), B("e"), B("5")));
    CHECK_OK(edgestore_delete(db, B("ns"), B("a")));
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "=empty-key;a=1;ab=12;b=2;c=3;d=4;");

    /* Deleted and expired keys are skipped; order holds across memtable and
     * several segment files, with newer versions shadowing older ones. */
    for (i = 0; i < 300; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "v%d", i);
        CHECK_OK(edgestore_put(db, B("many"), B(key), B(val)));
        if (i == 99 || i == 199) CHECK_OK(edgestore_flush_to_segments(db));
    }
    for (i = 0; i < 300; i += 3) {
        char key[16];
        snprintf(key, sizeof key, "k%04d", i);
        if (i % 2) CHECK_OK(edgestore_delete(db, B("many"), B(key)));
        else CHECK_OK(edgestore_put_with_ttl(db, B("many"), B(key), B("short"), 1));
    }
    CHECK_OK(edgestore_advance_clock(db, 2));
    CHECK_OK(edgestore_iter_prefix(db, B("many"), NULL, 0, &it));
    {
        char prev[32] = "";
        int count = 0;
        edgestore_status st;
        while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {
            char key[32];
            int n;
            CHECK(kl == 5);
            memcpy(key, k, kl);
            key[kl] = '\0';
            CHECK(strcmp(prev, key) < 0);
            n = atoi(key + 1);
            CHECK(n % 3 != 0);
            {
                char val[32];
                CHECK(vl >= 2 && vl < sizeof val && v[0] == 'v');
                memcpy(val, v, vl);
                val[vl] = '\0';
                CHECK(atoi(val + 1) == n);
            }
            strcpy(prev, key);
            count++;
        }
        CHECK_STATUS(st, EDGESTORE_DONE);
        CHECK(count == 200);
        CHECK_OK(edgestore_iter_free(it));
    }

    /* Two iterators stepped in turn on one thread (each call finds the other
     * in the thread's iterator cache), then one freed while the other goes on. */
    {
        edgestore_iter *a = NULL, *b = NULL;
        const uint8_t *k2, *v2;
        size_t kl2, vl2;
        CHECK_OK(edgestore_iter_prefix(db, B("ns"), NULL, 0, &a));
        CHECK_OK(edgestore_iter_range(db, B("ns"), B("b"), NULL, 0, &b));
        CHECK_OK(edgestore_iter_next(a, &k, &kl, &v, &vl));
        CHECK_OK(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2));
        CHECK_BYTES(k, kl, "");
        CHECK_BYTES(k2, kl2, "b");
        CHECK_OK(edgestore_iter_next(a, &k, &kl, &v, &vl));
        CHECK_BYTES(k, kl, "ab");
        CHECK_OK(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2));
        CHECK_BYTES(k2, kl2, "c");
        CHECK_OK(edgestore_iter_free(a));
        CHECK_STATUS(edgestore_iter_next(a, &k, &kl, &v, &vl), EDGESTORE_CLOSED);
        CHECK_OK(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2));
        CHECK_BYTES(k2, kl2, "d");
        CHECK_OK(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2));
        CHECK_BYTES(k2, kl2, "e");
        CHECK_STATUS(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2), EDGESTORE_DONE);
        CHECK_STATUS(edgestore_iter_next(a, &k, &kl, &v, &vl), EDGESTORE_CLOSED);
        CHECK_OK(edgestore_iter_free(b));
        CHECK_STATUS(edgestore_iter_next(b, &k2, &kl2, &v2, &vl2), EDGESTORE_CLOSED);
    }

    /* An iterator outlives its database handle. */
    CHECK_OK(edgestore_iter_range(db, B("ns"), B("b"), NULL, 0, &it));
    CHECK_OK(edgestore_iter_next(it, &k, &kl, &v, &vl));
    CHECK_BYTES(k, kl, "b");
    CHECK_OK(edgestore_close(db));
    CHECK_OK(edgestore_iter_next(it, &k, &kl, &v, &vl));
    CHECK_BYTES(k, kl, "c");
    CHECK_BYTES(v, vl, "3");
    collect_and_free(it, text, sizeof text);
    CHECK_STR(text, "d=4;e=5;");
    CHECK_STATUS(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_iter_next(it, &k, &kl, &v, &vl), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_iter_free(it), EDGESTORE_CLOSED);
    CHECK_OK(edgestore_iter_free(NULL));

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_iter: ok\n");
    return 0;
}
