/* Errors and bad input: NULL for every pointer, zero and huge lengths, wrong
 * handle kinds, foreign values, use after close/free, double close/free,
 * buffer too small, non-UTF-8 paths, locked directories, status names.
 * Every failing call must leave its out-parameters untouched. */
#include "test_util.h"

#define INV EDGESTORE_INVALID_ARGUMENT
#define CLOSED EDGESTORE_CLOSED

static const uint8_t K[] = "key";
static const uint8_t V[] = "value";

int main(void) {
    char *dir = make_tempdir("errors");
    char *path = path_join(dir, "db");
    edgestore_db *db = open_db(path, NULL);
    edgestore_db *db_out = (edgestore_db *)&db_out; /* sentinel: must stay untouched */
    edgestore_options *opts = NULL;
    edgestore_batch *batch = NULL;
    edgestore_snapshot *snap = NULL;
    edgestore_iter *it = NULL;
    uint8_t *val = NULL;
    size_t len = 12345;
    uint8_t buf[64];
    const uint8_t *kp = NULL, *vp = NULL;
    size_t kl = 0, vl = 0;
    edgestore_metrics m;
    edgestore_compaction_stats cs;
    edgestore_verify_report vr;
    uint64_t seq = 0;
    int stack_var = 0;
    static uint8_t big_key[16 * 1024 + 1];
    /* Values that are not handles of the right kind. */
    edgestore_db *garbage_db = (edgestore_db *)(uintptr_t)0x1234560;
    edgestore_db *stack_db = (edgestore_db *)&stack_var;

    CHECK_OK(edgestore_put(db, B("ns"), K, 3, V, 5));

    /* ---- status names and last error ---- */
    CHECK(strcmp(edgestore_status_name(EDGESTORE_OK), "EDGESTORE_OK") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_NOT_FOUND), "EDGESTORE_NOT_FOUND") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_INVALID_ARGUMENT), "EDGESTORE_INVALID_ARGUMENT") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_IO), "EDGESTORE_IO") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_CORRUPTION), "EDGESTORE_CORRUPTION") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_LOCKED), "EDGESTORE_LOCKED") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_CLOSED), "EDGESTORE_CLOSED") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_POISONED), "EDGESTORE_POISONED") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_BUFFER_TOO_SMALL), "EDGESTORE_BUFFER_TOO_SMALL") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_PANIC), "EDGESTORE_PANIC") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_DONE), "EDGESTORE_DONE") == 0);
    CHECK(strcmp(edgestore_status_name(EDGESTORE_INTERNAL), "EDGESTORE_INTERNAL") == 0);
    CHECK(strcmp(edgestore_status_name(-1), "EDGESTORE_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(edgestore_status_name(1000), "EDGESTORE_UNKNOWN_STATUS") == 0);
    /* Stable numbering. */
    CHECK(EDGESTORE_OK == 0 && EDGESTORE_NOT_FOUND == 1 && EDGESTORE_INVALID_ARGUMENT == 2 &&
          EDGESTORE_IO == 3 && EDGESTORE_CORRUPTION == 4 && EDGESTORE_LOCKED == 5 &&
          EDGESTORE_CLOSED == 6 && EDGESTORE_POISONED == 7 && EDGESTORE_BUFFER_TOO_SMALL == 8 &&
          EDGESTORE_PANIC == 9 && EDGESTORE_DONE == 10 && EDGESTORE_INTERNAL == 11);
    CHECK(edgestore_last_error() != NULL);

    /* ---- open ---- */
    CHECK_STATUS(edgestore_open(NULL, NULL, &db_out), INV);
    CHECK_LAST_ERROR_HAS("edgestore_open: path is NULL");
    CHECK_STATUS(edgestore_open("", NULL, &db_out), INV);
    CHECK_LAST_ERROR_HAS("path is empty");
    {
        char *never = path_join(dir, "never-created");
        struct stat sb;
        CHECK_STATUS(edgestore_open(never, NULL, NULL), INV);
        CHECK_LAST_ERROR_HAS("db_out");
        CHECK(stat(never, &sb) != 0); /* no side effect */
        /* Options that are not an options handle. */
        CHECK_STATUS(edgestore_open(never, (edgestore_options *)db, &db_out), INV);
        CHECK_LAST_ERROR_HAS("edgestore_db handle where an edgestore_options is expected");
        CHECK_STATUS(edgestore_open(never, (edgestore_options *)&stack_var, &db_out), INV);
        CHECK(stat(never, &sb) != 0);
        free(never);
    }
    CHECK(db_out == (edgestore_db *)&db_out);
    /* The same directory twice: locked. */
    CHECK_STATUS(edgestore_open(path, NULL, &db_out), EDGESTORE_LOCKED);
    CHECK_LAST_ERROR_HAS("locked");
    CHECK(db_out == (edgestore_db *)&db_out);
    /* A regular file where the directory should be: I/O error. */
    {
        char *file = path_join(dir, "plain-file");
        FILE *f = fopen(file, "w");
        CHECK(f != NULL);
        fputs("not a database", f);
        fclose(f);
        CHECK_STATUS(edgestore_open(file, NULL, &db_out), EDGESTORE_IO);
        CHECK(db_out == (edgestore_db *)&db_out);
        free(file);
    }
    /* A non-UTF-8 path is a valid POSIX path. */
    {
        char *odd = path_join(dir, "db-\xff\xfe-latin1-\xe9");
        edgestore_db *odd_db = NULL;
        CHECK_OK(edgestore_open(odd, NULL, &odd_db));
        CHECK_OK(edgestore_put(odd_db, B("ns"), K, 3, V, 5));
        CHECK_OK(edgestore_close(odd_db));
        CHECK_OK(edgestore_open(odd, NULL, &odd_db));
        expect_value(odd_db, "ns", "key", "value");
        CHECK_OK(edgestore_close(odd_db));
        free(odd);
    }

    /* ---- options ---- */
    CHECK_STATUS(edgestore_options_new(NULL), INV);
    CHECK_OK(edgestore_options_new(&opts));
    CHECK_STATUS(edgestore_options_set_sync_mode(NULL, EDGESTORE_SYNC_DURABLE), INV);
    CHECK_STATUS(edgestore_options_set_sync_mode(opts, 2), INV);
    CHECK_LAST_ERROR_HAS("unknown sync mode 2");
    CHECK_STATUS(edgestore_options_set_sync_mode(opts, 0xffffffffu), INV);
    CHECK_STATUS(edgestore_options_set_memtable_size(NULL, 1024), INV);
    CHECK_STATUS(edgestore_options_set_memtable_size(opts, 0), INV);
    CHECK_STATUS(edgestore_options_set_segment_size(NULL, 1024), INV);
    CHECK_STATUS(edgestore_options_set_segment_size(opts, 0), INV);
    CHECK_STATUS(edgestore_options_set_cohort_window(NULL, 60), INV);
    CHECK_STATUS(edgestore_options_set_cohort_window(opts, 0), INV);
    CHECK_STATUS(edgestore_options_set_compaction_budget(NULL, 0), INV);
    CHECK_OK(edgestore_options_set_compaction_budget(opts, 0));
    CHECK_STATUS(edgestore_options_set_background_compaction(NULL, 10), INV);
    CHECK_STATUS(edgestore_options_set_block_cache(NULL, 0), INV);
    CHECK_OK(edgestore_options_set_block_cache(opts, 0));
    CHECK_OK(edgestore_options_set_block_cache(opts, UINT64_MAX));
    CHECK_STATUS(edgestore_options_set_mmap_reads(NULL, 1), INV);
    CHECK_STATUS(edgestore_options_set_mmap_reads(opts, 2), INV);
    CHECK_LAST_ERROR_HAS("mmap reads is 2 (expected 0 or 1)");
    CHECK_OK(edgestore_options_set_mmap_reads(opts, 0));
    CHECK_OK(edgestore_options_set_mmap_reads(opts, 1));
    CHECK_STATUS(edgestore_options_set_manual_clock(NULL, 0), INV);
    CHECK_STATUS(edgestore_options_set_manual_clock(opts, -1), INV);
    CHECK_OK(edgestore_options_set_memtable_size(opts, SIZE_MAX));
    CHECK_OK(edgestore_options_set_segment_size(opts, UINT64_MAX));
    CHECK_STATUS(edgestore_options_set_sync_mode((edgestore_options *)db, 0), INV);
    CHECK_OK(edgestore_options_free(opts));
    CHECK_STATUS(edgestore_options_free(opts), CLOSED);
    CHECK_STATUS(edgestore_options_set_cohort_window(opts, 60), CLOSED);
    CHECK_OK(edgestore_options_free(NULL));

    /* ---- put / delete ---- */
    CHECK_STATUS(edgestore_put(NULL, B("ns"), K, 3, V, 5), INV);
    CHECK_LAST_ERROR_HAS("db is NULL");
    CHECK_STATUS(edgestore_put(db, NULL, 2, K, 3, V, 5), INV);
    CHECK_LAST_ERROR_HAS("namespace is NULL but its length is 2");
    CHECK_STATUS(edgestore_put(db, B("ns"), NULL, 3, V, 5), INV);
    CHECK_STATUS(edgestore_put(db, B("ns"), K, 3, NULL, 5), INV);
    CHECK_STATUS(edgestore_put(db, B("ns"), K, SIZE_MAX, V, 5), INV);
    CHECK_LAST_ERROR_HAS("the limit is 16384");
    CHECK_STATUS(edgestore_put(db, B("ns"), K, 3, V, SIZE_MAX), INV);
    CHECK_STATUS(edgestore_put(db, (const uint8_t *)"n", SIZE_MAX, K, 3, V, 5), INV);
    CHECK_STATUS(edgestore_put(db, big_key, 256, K, 3, V, 5), INV);
    CHECK_OK(edgestore_put(db, big_key, 255, K, 3, V, 5));
    CHECK_STATUS(edgestore_put(db, B("ns"), big_key, sizeof big_key, V, 5), INV);
    CHECK_OK(edgestore_put(db, B("big"), big_key, sizeof big_key - 1, V, 5));
    CHECK_STATUS(edgestore_put(db, B("ns"), K, 3, V, (size_t)64 * 1024 * 1024 + 1), INV);
    CHECK_STATUS(edgestore_put_with_ttl(NULL, B("ns"), K, 3, V, 5, 10), INV);
    CHECK_STATUS(edgestore_put_with_ttl(db, B("ns"), NULL, SIZE_MAX, V, 5, 10), INV);
    CHECK_STATUS(edgestore_put(garbage_db, B("ns"), K, 3, V, 5), INV);
    CHECK_LAST_ERROR_HAS("not a handle returned by this library");
    CHECK_STATUS(edgestore_put(stack_db, B("ns"), K, 3, V, 5), INV);
    CHECK_STATUS(edgestore_delete(NULL, B("ns"), K, 3), INV);
    CHECK_STATUS(edgestore_delete(db, NULL, 1, K, 3), INV);
    CHECK_STATUS(edgestore_delete(db, B("ns"), NULL, 3), INV);
    CHECK_STATUS(edgestore_delete(db, B("ns"), K, SIZE_MAX), INV);
    expect_value(db, "ns", "key", "value"); /* none of the above changed anything */

    /* ---- get / get_into / value_free ---- */
    CHECK_STATUS(edgestore_get(NULL, B("ns"), K, 3, &val, &len), INV);
    CHECK_STATUS(edgestore_get(db, NULL, 2, K, 3, &val, &len), INV);
    CHECK_STATUS(edgestore_get(db, B("ns"), NULL, 3, &val, &len), INV);
    CHECK_STATUS(edgestore_get(db, B("ns"), K, SIZE_MAX, &val, &len), INV);
    CHECK_STATUS(edgestore_get(db, B("ns"), K, 3, NULL, &len), INV);
    CHECK_LAST_ERROR_HAS("value_out");
    CHECK_STATUS(edgestore_get(db, B("ns"), K, 3, &val, NULL), INV);
    CHECK_STATUS(edgestore_get(db, B("ns"), (const uint8_t *)"nope", 4, &val, &len),
                 EDGESTORE_NOT_FOUND);
    CHECK(val == NULL && len == 12345);
    CHECK_STATUS(edgestore_get_into(NULL, B("ns"), K, 3, buf, sizeof buf, &len), INV);
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, 3, NULL, 5, &len), INV);
    CHECK_LAST_ERROR_HAS("buf is NULL but cap is 5");
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, 3, buf, sizeof buf, NULL), INV);
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, SIZE_MAX, buf, sizeof buf, &len), INV);
    CHECK(len == 12345);
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, 3, buf, 0, &len), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    len = 0;
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, 3, buf, 4, &len), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    /* A huge cap is fine: only the value's bytes are written. */
    CHECK_OK(edgestore_get_into(db, B("ns"), K, 3, buf, SIZE_MAX, &len));
    CHECK_BYTES(buf, len, "value");
    CHECK_OK(edgestore_value_free(NULL));
    CHECK_STATUS(edgestore_value_free((uint8_t *)&stack_var), INV);
    CHECK_STATUS(edgestore_value_free(buf), INV);
    CHECK_OK(edgestore_get(db, B("ns"), K, 3, &val, &len));
    CHECK_STATUS(edgestore_value_free(val + 1), INV);
    CHECK_OK(edgestore_value_free(val));
    CHECK_STATUS(edgestore_value_free(val), INV); /* double free is caught */
    CHECK_LAST_ERROR_HAS("already freed");

    /* ---- maintenance calls ---- */
    CHECK_STATUS(edgestore_flush(NULL), INV);
    CHECK_STATUS(edgestore_flush_to_segments(NULL), INV);
    CHECK_STATUS(edgestore_compact(NULL, &cs), INV);
    CHECK_STATUS(edgestore_compact(db, NULL), INV);
    CHECK_STATUS(edgestore_get_metrics(NULL, &m), INV);
    CHECK_STATUS(edgestore_get_metrics(db, NULL), INV);
    CHECK_STATUS(edgestore_verify(NULL, &vr), INV);
    CHECK_STATUS(edgestore_verify(db, NULL), INV);
    CHECK_STATUS(edgestore_advance_clock(NULL, 1), INV);
    CHECK_STATUS(edgestore_flush(garbage_db), INV);

    /* ---- batch ---- */
    CHECK_STATUS(edgestore_batch_new(NULL), INV);
    CHECK_OK(edgestore_batch_new(&batch));
    CHECK_STATUS(edgestore_batch_put(NULL, B("ns"), K, 3, V, 5), INV);
    CHECK_STATUS(edgestore_batch_put(batch, NULL, 1, K, 3, V, 5), INV);
    CHECK_STATUS(edgestore_batch_put(batch, B("ns"), NULL, 3, V, 5), INV);
    CHECK_STATUS(edgestore_batch_put(batch, B("ns"), K, 3, NULL, 5), INV);
    CHECK_STATUS(edgestore_batch_put(batch, B("ns"), K, SIZE_MAX, V, 5), INV);
    CHECK_STATUS(edgestore_batch_put(batch, B("ns"), K, 3, V, SIZE_MAX), INV);
    CHECK_STATUS(edgestore_batch_put_with_ttl(NULL, B("ns"), K, 3, V, 5, 1), INV);
    CHECK_STATUS(edgestore_batch_delete(NULL, B("ns"), K, 3), INV);
    CHECK_STATUS(edgestore_batch_delete(batch, B("ns"), NULL, 3), INV);
    CHECK_STATUS(edgestore_batch_len(NULL, &len), INV);
    CHECK_STATUS(edgestore_batch_len(batch, NULL), INV);
    CHECK_STATUS(edgestore_batch_clear(NULL), INV);
    CHECK_STATUS(edgestore_batch_commit(NULL, batch), INV);
    CHECK_STATUS(edgestore_batch_commit(db, NULL), INV);
    /* Wrong handle order / kind: (batch, db) instead of (db, batch). */
    CHECK_STATUS(edgestore_batch_commit((edgestore_db *)batch, (edgestore_batch *)db), INV);
    CHECK_LAST_ERROR_HAS("edgestore_batch handle where an edgestore_db is expected");
    CHECK_OK(edgestore_batch_len(batch, &len));
    CHECK(len == 0);

    /* ---- snapshot ---- */
    CHECK_STATUS(edgestore_snapshot_new(NULL, &snap), INV);
    CHECK_STATUS(edgestore_snapshot_new(db, NULL), INV);
    CHECK(snap == NULL);
    CHECK_OK(edgestore_snapshot_new(db, &snap));
    CHECK_STATUS(edgestore_snapshot_get(NULL, B("ns"), K, 3, &val, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get(snap, B("ns"), K, 3, NULL, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get(snap, B("ns"), K, 3, &val, NULL), INV);
    CHECK_STATUS(edgestore_snapshot_get(snap, B("ns"), NULL, 1, &val, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get(snap, B("ns"), K, SIZE_MAX, &val, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get_into(NULL, B("ns"), K, 3, buf, 64, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get_into(snap, B("ns"), K, 3, NULL, 64, &len), INV);
    CHECK_STATUS(edgestore_snapshot_get_into(snap, B("ns"), K, 3, buf, 64, NULL), INV);
    len = 0;
    CHECK_STATUS(edgestore_snapshot_get_into(snap, B("ns"), K, 3, buf, 2, &len),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    CHECK_STATUS(edgestore_snapshot_sequence(NULL, &seq), INV);
    CHECK_STATUS(edgestore_snapshot_sequence(snap, NULL), INV);
    CHECK_STATUS(edgestore_snapshot_sequence((edgestore_snapshot *)db, &seq), INV);
    CHECK(seq == 0);
    CHECK_STATUS(edgestore_snapshot_new((edgestore_db *)snap, &snap), INV);

    /* ---- iterators ---- */
    CHECK_STATUS(edgestore_iter_range(NULL, B("ns"), NULL, 0, NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, NULL, 1, NULL, 0, NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), NULL, 1, NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), NULL, 0, NULL, 1, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), K, SIZE_MAX, NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), NULL, 0, K, SIZE_MAX, &it), INV);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), NULL, 0, NULL, 0, NULL), INV);
    CHECK_STATUS(edgestore_iter_prefix(NULL, B("ns"), NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_prefix(db, B("ns"), NULL, 4, &it), INV);
    CHECK_STATUS(edgestore_iter_prefix(db, B("ns"), K, SIZE_MAX, &it), INV);
    CHECK_STATUS(edgestore_iter_prefix(db, B("ns"), NULL, 0, NULL), INV);
    CHECK_STATUS(edgestore_snapshot_iter_range(NULL, B("ns"), NULL, 0, NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_snapshot_iter_range(snap, B("ns"), NULL, 0, NULL, 0, NULL), INV);
    CHECK_STATUS(edgestore_snapshot_iter_prefix(NULL, B("ns"), NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_snapshot_iter_prefix(snap, B("ns"), NULL, 0, NULL), INV);
    CHECK_STATUS(edgestore_snapshot_iter_prefix((edgestore_snapshot *)db, B("ns"), NULL, 0, &it), INV);
    CHECK_STATUS(edgestore_iter_prefix((edgestore_db *)snap, B("ns"), NULL, 0, &it), INV);
    CHECK(it == NULL);
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it));
    CHECK_STATUS(edgestore_iter_next(NULL, &kp, &kl, &vp, &vl), INV);
    CHECK_STATUS(edgestore_iter_next(it, NULL, &kl, &vp, &vl), INV);
    CHECK_STATUS(edgestore_iter_next(it, &kp, NULL, &vp, &vl), INV);
    CHECK_STATUS(edgestore_iter_next(it, &kp, &kl, NULL, &vl), INV);
    CHECK_STATUS(edgestore_iter_next(it, &kp, &kl, &vp, NULL), INV);
    CHECK_STATUS(edgestore_iter_next((edgestore_iter *)snap, &kp, &kl, &vp, &vl), INV);
    CHECK(kp == NULL && kl == 0);
    /* The failed calls did not advance it: the first key is still "key". */
    CHECK_OK(edgestore_iter_next(it, &kp, &kl, &vp, &vl));
    CHECK_BYTES(kp, kl, "key");
    CHECK_STATUS(edgestore_iter_free((edgestore_iter *)db), INV);
    CHECK_OK(edgestore_iter_free(it));
    CHECK_STATUS(edgestore_iter_free(it), CLOSED);
    CHECK_STATUS(edgestore_iter_next(it, &kp, &kl, &vp, &vl), CLOSED);
    CHECK_LAST_ERROR_HAS("edgestore_iter was already closed or freed");

    /* ---- closed database: every call says CLOSED, nothing crashes ---- */
    CHECK_STATUS(edgestore_close((edgestore_db *)snap), INV); /* wrong kind: not closed */
    CHECK_OK(edgestore_close(db));
    CHECK_STATUS(edgestore_close(db), CLOSED); /* double close */
    CHECK_LAST_ERROR_HAS("already closed");
    CHECK_OK(edgestore_close(NULL));
    CHECK_STATUS(edgestore_put(db, B("ns"), K, 3, V, 5), CLOSED);
    CHECK_STATUS(edgestore_put_with_ttl(db, B("ns"), K, 3, V, 5, 1), CLOSED);
    CHECK_STATUS(edgestore_delete(db, B("ns"), K, 3), CLOSED);
    val = NULL;
    len = 777;
    CHECK_STATUS(edgestore_get(db, B("ns"), K, 3, &val, &len), CLOSED);
    CHECK_STATUS(edgestore_get_into(db, B("ns"), K, 3, buf, sizeof buf, &len), CLOSED);
    CHECK(val == NULL && len == 777);
    CHECK_STATUS(edgestore_flush(db), CLOSED);
    CHECK_STATUS(edgestore_flush_to_segments(db), CLOSED);
    CHECK_STATUS(edgestore_compact(db, &cs), CLOSED);
    CHECK_STATUS(edgestore_get_metrics(db, &m), CLOSED);
    CHECK_STATUS(edgestore_verify(db, &vr), CLOSED);
    CHECK_STATUS(edgestore_advance_clock(db, 1), CLOSED);
    CHECK_STATUS(edgestore_snapshot_new(db, &snap), CLOSED);
    CHECK_STATUS(edgestore_iter_range(db, B("ns"), NULL, 0, NULL, 0, &it), CLOSED);
    CHECK_STATUS(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it), CLOSED);
    CHECK_STATUS(edgestore_batch_commit(db, batch), CLOSED);
    /* The snapshot taken before the close still reads. */
    CHECK_OK(edgestore_snapshot_get(snap, B("ns"), K, 3, &val, &len));
    CHECK_BYTES(val, len, "value");
    CHECK_OK(edgestore_value_free(val));
    /* After close the directory can be opened again (the lock was released). */
    CHECK_OK(edgestore_open(path, NULL, &db_out));
    CHECK(db_out != db); /* handles are never reused */
    CHECK_STATUS(edgestore_put(db, B("ns"), K, 3, V, 5), CLOSED);
    CHECK_OK(edgestore_close(db_out));

    /* ---- freed batch / snapshot ---- */
    CHECK_OK(edgestore_batch_free(batch));
    CHECK_STATUS(edgestore_batch_free(batch), CLOSED);
    CHECK_STATUS(edgestore_batch_len(batch, &len), CLOSED);
    CHECK_STATUS(edgestore_batch_clear(batch), CLOSED);
    CHECK_OK(edgestore_batch_free(NULL));
    CHECK_OK(edgestore_snapshot_free(snap));
    CHECK_STATUS(edgestore_snapshot_free(snap), CLOSED);
    CHECK_STATUS(edgestore_snapshot_get(snap, B("ns"), K, 3, &val, &len), CLOSED);
    CHECK_STATUS(edgestore_snapshot_iter_prefix(snap, B("ns"), NULL, 0, &it), CLOSED);

    remove_tree(dir);
    free(path);
    free(dir);
    printf("test_errors: ok\n");
    return 0;
}
