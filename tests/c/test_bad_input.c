/* Bad input, systematically: every public function (the edgestore_vector_*
 * family has its own tests) is called with NULL for each pointer parameter,
 * SIZE_MAX for each length, a handle used after it was closed or freed, and
 * closed/freed twice. Each call must return the documented status, set a
 * non-empty last error, and leave its out-parameters untouched. Also:
 * (NULL, 0) is the empty byte string, non-UTF-8 paths and bytes, iterators
 * and snapshots outliving their database (and iterators their snapshot).
 * Runs clean under ASan/UBSan and valgrind like every test of the harness. */
#include "test_util.h"

#include <limits.h>

#define INV EDGESTORE_INVALID_ARGUMENT
#define CLOSED EDGESTORE_CLOSED

/* Expects `expr` to fail with `want` and leave a non-empty last error. */
#define EXPECT_FAIL(expr, want)                                            \
    do {                                                                   \
        const char *le_;                                                   \
        CHECK_STATUS(expr, want);                                          \
        le_ = edgestore_last_error();                                      \
        if (le_ == NULL || le_[0] == '\0')                                 \
            FAIL_NOW("%s: no last error", #expr);                          \
    } while (0)

static const uint8_t K[] = "key";
static const uint8_t V[] = "value";
static const uint8_t NS[] = "ns";

/* Out-parameter sentinels: a failing call must not touch them. */
static uint8_t sentinel_byte;
#define SENT_PTR (&sentinel_byte)
#define SENT_LEN ((size_t)4242)

static uint8_t *val;
static size_t len;
static edgestore_iter *it;
static edgestore_snapshot *snap_out;
static edgestore_batch *batch_out;
static edgestore_options *opts_out;
static edgestore_db *db_out;
static const uint8_t *kp, *vp;
static size_t kl, vl;
static uint64_t seq;

static void reset_outs(void) {
    val = SENT_PTR;
    len = SENT_LEN;
    it = (edgestore_iter *)SENT_PTR;
    snap_out = (edgestore_snapshot *)SENT_PTR;
    batch_out = (edgestore_batch *)SENT_PTR;
    opts_out = (edgestore_options *)SENT_PTR;
    db_out = (edgestore_db *)SENT_PTR;
    kp = vp = SENT_PTR;
    kl = vl = SENT_LEN;
    seq = 4242;
}

static void outs_untouched(int line) {
    if (val != SENT_PTR || len != SENT_LEN || it != (edgestore_iter *)SENT_PTR ||
        snap_out != (edgestore_snapshot *)SENT_PTR || batch_out != (edgestore_batch *)SENT_PTR ||
        opts_out != (edgestore_options *)SENT_PTR || db_out != (edgestore_db *)SENT_PTR ||
        kp != SENT_PTR || vp != SENT_PTR || kl != SENT_LEN || vl != SENT_LEN || seq != 4242) {
        fprintf(stderr, "%s:%d: a failing call wrote an out-parameter\n", __FILE__, line);
        exit(1);
    }
}

/* A failing call: status `want`, a last error, out-parameters untouched. */
#define BAD(expr, want)                                                    \
    do {                                                                   \
        reset_outs();                                                      \
        EXPECT_FAIL(expr, want);                                           \
        outs_untouched(__LINE__);                                          \
    } while (0)

/* Every (ptr, len) byte-string parameter of the key-value calls on `db`:
 * NULL with a non-zero length and SIZE_MAX lengths. */
static void byte_strings_db(edgestore_db *db) {
    uint8_t buf[16];
    /* put: ns, key, value */
    BAD(edgestore_put(db, NULL, 2, K, 3, V, 5), INV);
    BAD(edgestore_put(db, NS, 2, NULL, 3, V, 5), INV);
    BAD(edgestore_put(db, NS, 2, K, 3, NULL, 5), INV);
    BAD(edgestore_put(db, NS, SIZE_MAX, K, 3, V, 5), INV);
    BAD(edgestore_put(db, NS, 2, K, SIZE_MAX, V, 5), INV);
    BAD(edgestore_put(db, NS, 2, K, 3, V, SIZE_MAX), INV);
    /* put_with_ttl */
    BAD(edgestore_put_with_ttl(db, NULL, 2, K, 3, V, 5, 1), INV);
    BAD(edgestore_put_with_ttl(db, NS, 2, NULL, 3, V, 5, 1), INV);
    BAD(edgestore_put_with_ttl(db, NS, 2, K, 3, NULL, 5, 1), INV);
    BAD(edgestore_put_with_ttl(db, NS, SIZE_MAX, K, 3, V, 5, 1), INV);
    BAD(edgestore_put_with_ttl(db, NS, 2, K, SIZE_MAX, V, 5, 1), INV);
    BAD(edgestore_put_with_ttl(db, NS, 2, K, 3, V, SIZE_MAX, 1), INV);
    /* delete */
    BAD(edgestore_delete(db, NULL, 2, K, 3), INV);
    BAD(edgestore_delete(db, NS, 2, NULL, 3), INV);
    BAD(edgestore_delete(db, NS, SIZE_MAX, K, 3), INV);
    BAD(edgestore_delete(db, NS, 2, K, SIZE_MAX), INV);
    /* get: ns, key, and both out-parameters */
    BAD(edgestore_get(db, NULL, 2, K, 3, &val, &len), INV);
    BAD(edgestore_get(db, NS, 2, NULL, 3, &val, &len), INV);
    BAD(edgestore_get(db, NS, SIZE_MAX, K, 3, &val, &len), INV);
    BAD(edgestore_get(db, NS, 2, K, SIZE_MAX, &val, &len), INV);
    BAD(edgestore_get(db, NS, 2, K, 3, NULL, &len), INV);
    BAD(edgestore_get(db, NS, 2, K, 3, &val, NULL), INV);
    /* get_into: ns, key, buf (cap > 0), out length */
    BAD(edgestore_get_into(db, NULL, 2, K, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_get_into(db, NS, 2, NULL, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_get_into(db, NS, SIZE_MAX, K, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_get_into(db, NS, 2, K, SIZE_MAX, buf, sizeof buf, &len), INV);
    BAD(edgestore_get_into(db, NS, 2, K, 3, NULL, 1, &len), INV);
    BAD(edgestore_get_into(db, NS, 2, K, 3, NULL, SIZE_MAX, &len), INV);
    BAD(edgestore_get_into(db, NS, 2, K, 3, buf, sizeof buf, NULL), INV);
    /* iter_range: ns, start, end, out */
    BAD(edgestore_iter_range(db, NULL, 2, NULL, 0, NULL, 0, &it), INV);
    BAD(edgestore_iter_range(db, NS, 2, NULL, 1, NULL, 0, &it), INV);
    BAD(edgestore_iter_range(db, NS, 2, NULL, 0, NULL, 1, &it), INV);
    BAD(edgestore_iter_range(db, NS, SIZE_MAX, NULL, 0, NULL, 0, &it), INV);
    BAD(edgestore_iter_range(db, NS, 2, K, SIZE_MAX, NULL, 0, &it), INV);
    BAD(edgestore_iter_range(db, NS, 2, NULL, 0, K, SIZE_MAX, &it), INV);
    BAD(edgestore_iter_range(db, NS, 2, NULL, 0, NULL, 0, NULL), INV);
    /* iter_prefix: ns, prefix, out */
    BAD(edgestore_iter_prefix(db, NULL, 2, NULL, 0, &it), INV);
    BAD(edgestore_iter_prefix(db, NS, 2, NULL, 1, &it), INV);
    BAD(edgestore_iter_prefix(db, NS, SIZE_MAX, NULL, 0, &it), INV);
    BAD(edgestore_iter_prefix(db, NS, 2, K, SIZE_MAX, &it), INV);
    BAD(edgestore_iter_prefix(db, NS, 2, NULL, 0, NULL), INV);
    /* the remaining out-parameters */
    BAD(edgestore_compact(db, NULL), INV);
    BAD(edgestore_get_metrics(db, NULL), INV);
    BAD(edgestore_verify(db, NULL), INV);
    BAD(edgestore_snapshot_new(db, NULL), INV);
}

static void byte_strings_snapshot(edgestore_snapshot *s) {
    uint8_t buf[16];
    BAD(edgestore_snapshot_get(s, NULL, 2, K, 3, &val, &len), INV);
    BAD(edgestore_snapshot_get(s, NS, 2, NULL, 3, &val, &len), INV);
    BAD(edgestore_snapshot_get(s, NS, SIZE_MAX, K, 3, &val, &len), INV);
    BAD(edgestore_snapshot_get(s, NS, 2, K, SIZE_MAX, &val, &len), INV);
    BAD(edgestore_snapshot_get(s, NS, 2, K, 3, NULL, &len), INV);
    BAD(edgestore_snapshot_get(s, NS, 2, K, 3, &val, NULL), INV);
    BAD(edgestore_snapshot_get_into(s, NULL, 2, K, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_snapshot_get_into(s, NS, 2, NULL, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_snapshot_get_into(s, NS, SIZE_MAX, K, 3, buf, sizeof buf, &len), INV);
    BAD(edgestore_snapshot_get_into(s, NS, 2, K, SIZE_MAX, buf, sizeof buf, &len), INV);
    BAD(edgestore_snapshot_get_into(s, NS, 2, K, 3, NULL, 1, &len), INV);
    BAD(edgestore_snapshot_get_into(s, NS, 2, K, 3, buf, sizeof buf, NULL), INV);
    BAD(edgestore_snapshot_iter_range(s, NULL, 2, NULL, 0, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, NULL, 1, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, NULL, 0, NULL, 1, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, SIZE_MAX, NULL, 0, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, K, SIZE_MAX, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, NULL, 0, K, SIZE_MAX, &it), INV);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, NULL, 0, NULL, 0, NULL), INV);
    BAD(edgestore_snapshot_iter_prefix(s, NULL, 2, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_prefix(s, NS, 2, NULL, 1, &it), INV);
    BAD(edgestore_snapshot_iter_prefix(s, NS, SIZE_MAX, NULL, 0, &it), INV);
    BAD(edgestore_snapshot_iter_prefix(s, NS, 2, K, SIZE_MAX, &it), INV);
    BAD(edgestore_snapshot_iter_prefix(s, NS, 2, NULL, 0, NULL), INV);
    BAD(edgestore_snapshot_sequence(s, NULL), INV);
}

static void byte_strings_batch(edgestore_batch *b) {
    BAD(edgestore_batch_put(b, NULL, 2, K, 3, V, 5), INV);
    BAD(edgestore_batch_put(b, NS, 2, NULL, 3, V, 5), INV);
    BAD(edgestore_batch_put(b, NS, 2, K, 3, NULL, 5), INV);
    BAD(edgestore_batch_put(b, NS, SIZE_MAX, K, 3, V, 5), INV);
    BAD(edgestore_batch_put(b, NS, 2, K, SIZE_MAX, V, 5), INV);
    BAD(edgestore_batch_put(b, NS, 2, K, 3, V, SIZE_MAX), INV);
    BAD(edgestore_batch_put_with_ttl(b, NULL, 2, K, 3, V, 5, 1), INV);
    BAD(edgestore_batch_put_with_ttl(b, NS, 2, NULL, 3, V, 5, 1), INV);
    BAD(edgestore_batch_put_with_ttl(b, NS, 2, K, 3, NULL, 5, 1), INV);
    BAD(edgestore_batch_put_with_ttl(b, NS, SIZE_MAX, K, 3, V, 5, 1), INV);
    BAD(edgestore_batch_put_with_ttl(b, NS, 2, K, SIZE_MAX, V, 5, 1), INV);
    BAD(edgestore_batch_put_with_ttl(b, NS, 2, K, 3, V, SIZE_MAX, 1), INV);
    BAD(edgestore_batch_delete(b, NULL, 2, K, 3), INV);
    BAD(edgestore_batch_delete(b, NS, 2, NULL, 3), INV);
    BAD(edgestore_batch_delete(b, NS, SIZE_MAX, K, 3), INV);
    BAD(edgestore_batch_delete(b, NS, 2, K, SIZE_MAX), INV);
    BAD(edgestore_batch_len(b, NULL), INV);
}

/* Every function taking a database handle, given `db` (NULL or closed). */
static void every_db_call(edgestore_db *db, edgestore_status want) {
    uint8_t buf[16];
    edgestore_metrics m;
    edgestore_compaction_stats cs;
    edgestore_verify_report vr;
    edgestore_batch *b = NULL;
    CHECK_OK(edgestore_batch_new(&b));
    CHECK_OK(edgestore_batch_put(b, NS, 2, K, 3, V, 5));
    BAD(edgestore_put(db, NS, 2, K, 3, V, 5), want);
    BAD(edgestore_put_with_ttl(db, NS, 2, K, 3, V, 5, 1), want);
    BAD(edgestore_delete(db, NS, 2, K, 3), want);
    BAD(edgestore_get(db, NS, 2, K, 3, &val, &len), want);
    BAD(edgestore_get_into(db, NS, 2, K, 3, buf, sizeof buf, &len), want);
    BAD(edgestore_flush(db), want);
    BAD(edgestore_flush_to_segments(db), want);
    BAD(edgestore_compact(db, &cs), want);
    BAD(edgestore_get_metrics(db, &m), want);
    BAD(edgestore_verify(db, &vr), want);
    BAD(edgestore_advance_clock(db, 1), want);
    BAD(edgestore_iter_range(db, NS, 2, NULL, 0, NULL, 0, &it), want);
    BAD(edgestore_iter_prefix(db, NS, 2, NULL, 0, &it), want);
    BAD(edgestore_snapshot_new(db, &snap_out), want);
    BAD(edgestore_batch_commit(db, b), want);
    /* The batch was not consumed by the failed commits. */
    reset_outs();
    CHECK_OK(edgestore_batch_len(b, &len));
    CHECK(len == 1);
    CHECK_OK(edgestore_batch_free(b));
}

static void every_snapshot_call(edgestore_snapshot *s, edgestore_status want) {
    uint8_t buf[16];
    BAD(edgestore_snapshot_get(s, NS, 2, K, 3, &val, &len), want);
    BAD(edgestore_snapshot_get_into(s, NS, 2, K, 3, buf, sizeof buf, &len), want);
    BAD(edgestore_snapshot_iter_range(s, NS, 2, NULL, 0, NULL, 0, &it), want);
    BAD(edgestore_snapshot_iter_prefix(s, NS, 2, NULL, 0, &it), want);
    BAD(edgestore_snapshot_sequence(s, &seq), want);
}

static void every_batch_call(edgestore_batch *b, edgestore_db *live_db, edgestore_status want) {
    BAD(edgestore_batch_put(b, NS, 2, K, 3, V, 5), want);
    BAD(edgestore_batch_put_with_ttl(b, NS, 2, K, 3, V, 5, 1), want);
    BAD(edgestore_batch_delete(b, NS, 2, K, 3), want);
    BAD(edgestore_batch_len(b, &len), want);
    BAD(edgestore_batch_clear(b), want);
    BAD(edgestore_batch_commit(live_db, b), want);
}

static void every_options_call(edgestore_options *o, edgestore_status want) {
    BAD(edgestore_options_set_sync_mode(o, EDGESTORE_SYNC_DURABLE), want);
    BAD(edgestore_options_set_memtable_size(o, 1 << 20), want);
    BAD(edgestore_options_set_segment_size(o, 1 << 20), want);
    BAD(edgestore_options_set_cohort_window(o, 60), want);
    BAD(edgestore_options_set_compaction_budget(o, 1 << 20), want);
    BAD(edgestore_options_set_background_compaction(o, 10), want);
    BAD(edgestore_options_set_block_cache(o, 1 << 20), want);
    BAD(edgestore_options_set_mmap_reads(o, 0), want);
    BAD(edgestore_options_set_wal_recycle_files(o, 1), want);
    BAD(edgestore_options_set_manual_clock(o, 0), want);
}

static void every_iter_call(edgestore_iter *i, edgestore_status want) {
    BAD(edgestore_iter_next(i, &kp, &kl, &vp, &vl), want);
}

static char text[4096];

int main(void) {
    char *dir = make_tempdir("bad-input");
    char *path = path_join(dir, "db");
    edgestore_db *db = open_db(path, NULL);
    edgestore_snapshot *snap = NULL;
    edgestore_batch *batch = NULL;
    edgestore_options *opts = NULL;
    edgestore_iter *live_it = NULL, *snap_it = NULL, *orphan_it = NULL;

    CHECK(edgestore_version() != NULL && edgestore_version()[0] != '\0');
    CHECK(strcmp(edgestore_status_name(INT_MIN), "EDGESTORE_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(edgestore_status_name(INT_MAX), "EDGESTORE_UNKNOWN_STATUS") == 0);

    CHECK_OK(edgestore_put(db, NS, 2, K, 3, V, 5));
    CHECK_OK(edgestore_put(db, NS, 2, (const uint8_t *)"k2", 2, (const uint8_t *)"v2", 2));

    /* ---- NULL for every pointer, SIZE_MAX for every length ---- */
    byte_strings_db(db);
    every_db_call(NULL, INV);
    BAD(edgestore_open(NULL, NULL, &db_out), INV);
    BAD(edgestore_open(path, NULL, NULL), INV);
    BAD(edgestore_batch_new(NULL), INV);
    BAD(edgestore_options_new(NULL), INV);
    every_options_call(NULL, INV);
    every_iter_call(NULL, INV);
    every_snapshot_call(NULL, INV);
    CHECK_OK(edgestore_batch_new(&batch));
    byte_strings_batch(batch);
    every_batch_call(NULL, db, INV);
    BAD(edgestore_batch_commit(db, NULL), INV);
    BAD(edgestore_batch_commit(NULL, batch), INV);
    CHECK_OK(edgestore_snapshot_new(db, &snap));
    byte_strings_snapshot(snap);
    CHECK_OK(edgestore_iter_prefix(db, NS, 2, NULL, 0, &live_it));
    BAD(edgestore_iter_next(live_it, NULL, &kl, &vp, &vl), INV);
    BAD(edgestore_iter_next(live_it, &kp, NULL, &vp, &vl), INV);
    BAD(edgestore_iter_next(live_it, &kp, &kl, NULL, &vl), INV);
    BAD(edgestore_iter_next(live_it, &kp, &kl, &vp, NULL), INV);
    /* Releasing NULL is a no-op. */
    CHECK_OK(edgestore_close(NULL));
    CHECK_OK(edgestore_batch_free(NULL));
    CHECK_OK(edgestore_options_free(NULL));
    CHECK_OK(edgestore_snapshot_free(NULL));
    CHECK_OK(edgestore_iter_free(NULL));
    CHECK_OK(edgestore_value_free(NULL));
    /* Nothing above changed the data. */
    expect_value(db, "ns", "key", "value");
    expect_value(db, "ns", "k2", "v2");

    /* ---- (NULL, 0) is the empty byte string everywhere ---- */
    CHECK_OK(edgestore_put(db, NULL, 0, NULL, 0, NULL, 0));
    CHECK_OK(edgestore_get(db, NULL, 0, NULL, 0, &val, &len));
    CHECK(val != NULL && len == 0); /* never NULL, also for an empty value */
    CHECK_OK(edgestore_value_free(val));
    CHECK_OK(edgestore_get_into(db, NULL, 0, NULL, 0, NULL, 0, &len));
    CHECK(len == 0);
    CHECK_OK(edgestore_batch_put_with_ttl(batch, NULL, 0, NULL, 0, NULL, 0, 0));
    CHECK_OK(edgestore_batch_delete(batch, NULL, 0, NULL, 0));
    CHECK_OK(edgestore_batch_commit(db, batch));
    CHECK_STATUS(edgestore_get(db, NULL, 0, NULL, 0, &val, &len), EDGESTORE_NOT_FOUND);
    CHECK_OK(edgestore_delete(db, NULL, 0, NULL, 0));

    /* ---- any bytes in namespaces, keys, values; non-UTF-8 paths ---- */
    {
        const uint8_t odd_ns[] = {0xff, 0x00, 0xfe};
        const uint8_t odd_key[] = {0x00, 0xc3, 0x28, 0xff};
        const uint8_t odd_val[] = {0xed, 0xa0, 0x80, 0x00};
        uint8_t buf[8];
        CHECK_OK(edgestore_put(db, odd_ns, 3, odd_key, 4, odd_val, 4));
        CHECK_OK(edgestore_get_into(db, odd_ns, 3, odd_key, 4, buf, sizeof buf, &len));
        CHECK(len == 4 && memcmp(buf, odd_val, 4) == 0);
    }
    {
        /* A path of invalid UTF-8 only, and one whose parent does not exist:
         * the first works, the second is an I/O error naming the path. */
        char *odd = path_join(dir, "\xff\xfe\xfd");
        char *parent = path_join(dir, "\xc3\x28-missing");
        char *under = path_join(parent, "\xff");
        edgestore_db *odd_db = NULL;
        FILE *f;
        CHECK_OK(edgestore_open(odd, NULL, &odd_db));
        BAD(edgestore_open(odd, NULL, &db_out), EDGESTORE_LOCKED);
        CHECK_OK(edgestore_put(odd_db, NS, 2, K, 3, V, 5));
        CHECK_OK(edgestore_close(odd_db));
        /* A file where a directory must be. */
        f = fopen(parent, "w");
        CHECK(f != NULL);
        fclose(f);
        BAD(edgestore_open(under, NULL, &db_out), EDGESTORE_IO);
        free(odd);
        free(parent);
        free(under);
    }

    /* ---- iterators and snapshots outlive their database ---- */
    CHECK_OK(edgestore_snapshot_iter_prefix(snap, NS, 2, NULL, 0, &snap_it));
    CHECK_OK(edgestore_iter_range(db, NS, 2, NULL, 0, NULL, 0, &orphan_it));
    CHECK_OK(edgestore_snapshot_free(snap));
    /* The iterator outlives its snapshot. */
    collect_and_free(snap_it, text, sizeof text);
    CHECK_STR(text, "k2=v2;key=value;");
    CHECK_OK(edgestore_snapshot_new(db, &snap));
    CHECK_OK(edgestore_close(db));
    /* After the close, writes by a new handle are invisible to old views. */
    {
        edgestore_db *db2 = open_db(path, NULL);
        CHECK_OK(edgestore_put(db2, NS, 2, (const uint8_t *)"k3", 2, (const uint8_t *)"v3", 2));
        CHECK_OK(edgestore_delete(db2, NS, 2, K, 3));
        collect_and_free(orphan_it, text, sizeof text);
        CHECK_STR(text, "k2=v2;key=value;");
        CHECK_OK(edgestore_snapshot_get(snap, NS, 2, K, 3, &val, &len));
        CHECK_BYTES(val, len, "value");
        CHECK_OK(edgestore_value_free(val));
        CHECK_OK(edgestore_close(db2));
    }
    /* The live iterator taken before the close still finishes. */
    collect_and_free(live_it, text, sizeof text);
    CHECK_STR(text, "k2=v2;key=value;");

    /* ---- use after close / free, double close / free: every function ---- */
    every_db_call(db, CLOSED);
    BAD(edgestore_close(db), CLOSED);
    {
        edgestore_db *db3 = open_db(path, NULL);
        CHECK_OK(edgestore_snapshot_free(snap));
        every_snapshot_call(snap, CLOSED);
        BAD(edgestore_snapshot_free(snap), CLOSED);

        CHECK_OK(edgestore_batch_free(batch));
        every_batch_call(batch, db3, CLOSED);
        BAD(edgestore_batch_free(batch), CLOSED);

        CHECK_OK(edgestore_options_new(&opts));
        CHECK_OK(edgestore_options_free(opts));
        every_options_call(opts, CLOSED);
        BAD(edgestore_options_free(opts), CLOSED);
        {
            char *other = path_join(dir, "with-freed-options");
            struct stat sb;
            BAD(edgestore_open(other, opts, &db_out), CLOSED);
            CHECK(stat(other, &sb) != 0); /* no side effect */
            free(other);
        }

        /* Iterators freed (live_it was freed by collect_and_free). */
        every_iter_call(live_it, CLOSED);
        BAD(edgestore_iter_free(live_it), CLOSED);
        every_iter_call(orphan_it, CLOSED);
        BAD(edgestore_iter_free(snap_it), CLOSED);

        /* Values: double free and foreign pointers. */
        CHECK_OK(edgestore_get(db3, NS, 2, (const uint8_t *)"k3", 2, &val, &len));
        CHECK_OK(edgestore_value_free(val));
        BAD(edgestore_value_free(val), INV);
        BAD(edgestore_value_free((uint8_t *)K), INV);

        /* The data written through all of this is intact. */
        expect_value(db3, "ns", "k3", "v3");
        expect_value(db3, "ns", "key", NULL);
        {
            edgestore_verify_report vr;
            CHECK_OK(edgestore_verify(db3, &vr));
        }
        CHECK_OK(edgestore_close(db3));
    }

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_bad_input: ok\n");
    return 0;
}
