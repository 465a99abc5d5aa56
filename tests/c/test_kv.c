/* Point reads and writes, namespaces, both value-out forms, flush, verify, metrics. */
#include "test_util.h"

int main(void) {
    char *dir = make_tempdir("kv");
    char *path = path_join(dir, "db");
    edgestore_db *db = open_db(path, NULL);
    uint8_t *v = NULL;
    size_t len = 0;
    uint8_t buf[16];
    edgestore_metrics m;
    edgestore_verify_report r;
    char expect[64];
    int i;

    /* Version: macros, string and status names agree. */
    snprintf(expect, sizeof expect, "%d.%d.%d", EDGESTORE_VERSION_MAJOR, EDGESTORE_VERSION_MINOR,
             EDGESTORE_VERSION_PATCH);
    CHECK(strcmp(edgestore_version(), expect) == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_OK), "EDGESTORE_OK") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_BUFFER_TOO_SMALL), "EDGESTORE_BUFFER_TOO_SMALL") == 0);

    /* put / get / overwrite / delete. */
    CHECK_OK(edgestore_put(db, B("sensors"), B("t1"), B("21.5")));
    expect_value(db, "sensors", "t1", "21.5");
    CHECK_OK(edgestore_put(db, B("sensors"), B("t1"), B("22.0")));
    expect_value(db, "sensors", "t1", "22.0");
    expect_value(db, "sensors", "t2", NULL);
    CHECK_LAST_ERROR_HAS("edgestore_get");
    CHECK_LAST_ERROR_HAS("not found");

    /* Namespaces are separate key spaces. */
    CHECK_OK(edgestore_put(db, B("other"), B("t1"), B("x")));
    expect_value(db, "sensors", "t1", "22.0");
    expect_value(db, "other", "t1", "x");
    CHECK_OK(edgestore_delete(db, B("sensors"), B("t1")));
    expect_value(db, "sensors", "t1", NULL);
    expect_value(db, "other", "t1", "x");
    CHECK_OK(edgestore_delete(db, B("sensors"), B("never-existed")));

    /* Empty namespace, key and value (NULL with length 0 is allowed). */
    CHECK_OK(edgestore_put(db, NULL, 0, NULL, 0, NULL, 0));
    CHECK_OK(edgestore_get(db, NULL, 0, NULL, 0, &v, &len));
    CHECK(v != NULL);
    CHECK(len == 0);
    CHECK_OK(edgestore_value_free(v));
    v = NULL;

    /* Binary keys and values with embedded NULs. */
    {
        const uint8_t k[3] = {0x00, 0xff, 0x00};
        const uint8_t val[4] = {1, 0, 2, 0};
        CHECK_OK(edgestore_put(db, B("bin"), k, 3, val, 4));
        CHECK_OK(edgestore_get(db, B("bin"), k, 3, &v, &len));
        CHECK(len == 4 && memcmp(v, val, 4) == 0);
        CHECK_OK(edgestore_value_free(v));
        v = NULL;
    }

    /* Caller-buffer form: exact fit, too small (needed length reported, buffer
     * untouched), size query with NULL/0, not found leaves len alone. */
    CHECK_OK(edgestore_put(db, B("ns"), B("k"), B("hello")));
    len = 0;
    CHECK_OK(edgestore_get_into(db, B("ns"), B("k"), buf, 5, &len));
    CHECK_BYTES(buf, len, "hello");
    memset(buf, 'z', sizeof buf);
    len = 0;
    CHECK_STATUS(edgestore_get_into(db, B("ns"), B("k"), buf, 4, &len), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    CHECK(buf[0] == 'z' && buf[3] == 'z');
    CHECK_LAST_ERROR_HAS("5 bytes");
    len = 0;
    CHECK_STATUS(edgestore_get_into(db, B("ns"), B("k"), NULL, 0, &len), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    len = 77;
    CHECK_STATUS(edgestore_get_into(db, B("ns"), B("missing"), buf, sizeof buf, &len),
                 EDGESTORE_NOT_FOUND);
    CHECK(len == 77);
    CHECK_OK(edgestore_put(db, B("ns"), B("empty"), NULL, 0));
    CHECK_OK(edgestore_get_into(db, B("ns"), B("empty"), NULL, 0, &len));
    CHECK(len == 0);

    /* TTL 0 means never expires. */
    CHECK_OK(edgestore_put_with_ttl(db, B("ns"), B("forever"), B("yes"), 0));
    expect_value(db, "ns", "forever", "yes");

    /* Larger values and many keys, through a flush to segment files. */
    {
        static uint8_t big[100000];
        uint8_t *out = NULL;
        size_t out_len = 0;
        for (i = 0; i < (int)sizeof big; i++) big[i] = (uint8_t)(i * 7);
        CHECK_OK(edgestore_put(db, B("big"), B("blob"), big, sizeof big));
        for (i = 0; i < 200; i++) {
            char key[32], val[32];
            snprintf(key, sizeof key, "key-%04d", i);
            snprintf(val, sizeof val, "value-%d", i);
            CHECK_OK(edgestore_put(db, B("many"), B(key), B(val)));
        }
        CHECK_OK(edgestore_flush(db));
        CHECK_OK(edgestore_flush_to_segments(db));
        CHECK_OK(edgestore_get(db, B("big"), B("blob"), &out, &out_len));
        CHECK(out_len == sizeof big && memcmp(out, big, sizeof big) == 0);
        CHECK_OK(edgestore_value_free(out));
        for (i = 0; i < 200; i += 37) {
            char key[32], val[32];
            snprintf(key, sizeof key, "key-%04d", i);
            snprintf(val, sizeof val, "value-%d", i);
            expect_value(db, "many", key, val);
        }
        expect_value(db, "sensors", "t1", NULL); /* the delete survived the flush */
    }

    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.user_writes >= 200);
    CHECK(m.user_bytes_written > 100000);
    CHECK(m.flushes >= 1);
    CHECK(m.segments >= 1);
    CHECK(m.write_amplification > 0.0);

    CHECK_OK(edgestore_verify(db, &r));
    CHECK(r.segments >= 1);
    CHECK(r.segment_records >= 200);

    CHECK_OK(edgestore_close(db));
    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_kv: ok\n");
    return 0;
}
