/* Options take effect: memtable size (automatic flushes), segment size (more
 * files), compaction budget (rewrites deferred), background compaction (expired
 * files dropped without calling edgestore_compact, also with the default
 * options and with NULL options, which compact every second), sync modes,
 * block cache size and memory-mapped reads (on Linux, whether segment files
 * appear in /proc/self/maps). */
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
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

/* Number of lines of /proc/self/maps naming a segment file (*.seg) under a
 * directory whose path contains `dir_part`; -1 where that file does not exist. */
static int mapped_segments(const char *dir_part) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int n = 0;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, dir_part);
        if (at != NULL && strstr(at, ".seg") != NULL) n++;
    }
    fclose(f);
    return n;
}

static int has_suffix(const char *name, const char *suffix) {
    size_t nl = strlen(name), sl = strlen(suffix);
    return nl >= sl && strcmp(name + nl - sl, suffix) == 0;
}

/* Flips one byte of `marker` inside every segment file of `db_dir` that
 * holds it (the files are rewritten in place, not replaced); returns how many
 * files were changed. */
static int damage_segments(const char *db_dir, const char *marker) {
    DIR *d = opendir(db_dir);
    struct dirent *e;
    int changed = 0;
    size_t ml = strlen(marker);
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        size_t len, i;
        char *path, *data;
        FILE *f;
        if (!has_suffix(e->d_name, ".seg")) continue;
        path = path_join(db_dir, e->d_name);
        f = fopen(path, "r+b");
        CHECK(f != NULL);
        CHECK(fseek(f, 0, SEEK_END) == 0);
        len = (size_t)ftell(f);
        CHECK(fseek(f, 0, SEEK_SET) == 0);
        data = (char *)malloc(len + 1);
        CHECK(data != NULL);
        CHECK(fread(data, 1, len, f) == len);
        for (i = 0; i + ml <= len; i++) {
            if (memcmp(data + i, marker, ml) == 0) {
                CHECK(fseek(f, (long)i, SEEK_SET) == 0);
                CHECK(fputc(marker[0] ^ 0x20, f) != EOF);
                changed++;
                break;
            }
        }
        CHECK(fclose(f) == 0);
        free(data);
        free(path);
    }
    closedir(d);
    return changed;
}

/* Number of files in `dir` whose name ends with `suffix`. */
static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) n += has_suffix(e->d_name, suffix);
    CHECK(closedir(d) == 0);
    return n;
}

/* Checks that every key put_many(db, ns, count, 0) wrote reads back, by point
 * reads and by one prefix scan. */
static void check_many(edgestore_db *db, const char *ns, int count) {
    static char text[64 * 1024];
    char value[100], key[32], pair[160];
    edgestore_iter *it = NULL;
    size_t used = 0;
    int i;
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (i = 0; i < count; i++) {
        snprintf(key, sizeof key, "%s-%05d", ns, i);
        expect_value(db, ns, key, value);
    }
    CHECK_OK(edgestore_iter_prefix(db, B(ns), B(ns), &it));
    collect_and_free(it, text, sizeof text);
    for (i = 0; i < count; i++) {
        size_t len;
        snprintf(pair, sizeof pair, "%s-%05d=%s;", ns, i, value);
        len = strlen(pair);
        CHECK(memcmp(text + used, pair, len) == 0);
        used += len;
    }
    CHECK(text[used] == '\0');
}

int main(void) {
    char *dir = make_tempdir("options");
    char *p1 = path_join(dir, "small-memtable");
    char *p2 = path_join(dir, "budget");
    char *p3 = path_join(dir, "background");
    char *p4 = path_join(dir, "durable");
    char *p5 = path_join(dir, "no-cache-no-mmap");
    char *p6 = path_join(dir, "default-options");
    char *p7 = path_join(dir, "null-options");
    /* The end of p5 as it appears in /proc/self/maps (the temporary
     * directory's own name, then the database's). */
    char *p5_tail = path_join(strrchr(dir, '/') + 1, "no-cache-no-mmap/");
    edgestore_options *o = NULL;
    edgestore_db *db;
    edgestore_metrics m, m0;
    edgestore_compaction_stats st;
    int i;

    /* Small memtable and segments: writes flush on their own, into several files. */
    o = test_options(0);
    CHECK_OK(edgestore_options_set_memtable_size(o, 8 * 1024));
    CHECK_OK(edgestore_options_set_segment_size(o, 4 * 1024));
    CHECK_OK(edgestore_options_set_background_compaction(o, 0)); /* counts the flushes' files */
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
    /* Checks what each explicit compact did: no background cycle first. */
    CHECK_OK(edgestore_options_set_background_compaction(o, 0));
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

    /* The default options compact in the background (every 1000 ms) without
     * being asked: the expired cohort's files are dropped and the permanent
     * cohort's runs (more than max_permanent_runs, 4) are merged. Only the
     * manual clock and buffered sync differ from edgestore_options_new(). */
    o = test_options(1);
    CHECK_OK(edgestore_options_set_cohort_window(o, 60));
    db = open_db(p6, o);
    CHECK_OK(edgestore_options_free(o));
    put_many(db, "gone", 50, 30);
    CHECK_OK(edgestore_flush_to_segments(db));
    for (i = 0; i < 6; i++) {
        put_many(db, "perm", 20, 0);
        CHECK_OK(edgestore_flush_to_segments(db));
    }
    CHECK_OK(edgestore_get_metrics(db, &m0)); /* 7 runs, unless a cycle already ran */
    CHECK_OK(edgestore_advance_clock(db, 600));
    for (i = 0; i < 1000; i++) { /* up to 10 s, also under valgrind */
        CHECK_OK(edgestore_get_metrics(db, &m));
        if (m.compaction_bytes_reclaimed > 0 && m.compaction_bytes_written > 0 && m.segments <= 4)
            break;
        sleep_ms(10);
    }
    printf("default options: segments %llu -> %llu after %d ms, %llu compactions, "
           "%llu bytes reclaimed, %llu bytes written\n",
           (unsigned long long)m0.segments, (unsigned long long)m.segments, i * 10,
           (unsigned long long)m.compactions, (unsigned long long)m.compaction_bytes_reclaimed,
           (unsigned long long)m.compaction_bytes_written);
    CHECK(m.compactions >= 1);
    CHECK(m.compaction_bytes_reclaimed > 0); /* the expired files were dropped */
    CHECK(m.compaction_bytes_written > 0);   /* the permanent runs were merged */
    CHECK(m.segments <= 4);
    expect_value(db, "gone", "gone-00000", NULL);
    check_many(db, "perm", 20);
    CHECK_OK(edgestore_close(db));

    /* NULL options are the same defaults: runs are merged without a compact call. */
    db = open_db(p7, NULL);
    for (i = 0; i < 6; i++) {
        put_many(db, "perm", 20, 0);
        CHECK_OK(edgestore_flush_to_segments(db));
    }
    for (i = 0; i < 1000; i++) {
        CHECK_OK(edgestore_get_metrics(db, &m));
        if (m.compaction_bytes_written > 0 && m.segments <= 4) break;
        sleep_ms(10);
    }
    CHECK(m.compactions >= 1);
    CHECK(m.compaction_bytes_written > 0);
    CHECK(m.segments <= 4);
    check_many(db, "perm", 20);
    CHECK_OK(edgestore_close(db));

    /* WAL recycling: by default a flush keeps the WAL it made obsolete for
     * reuse (two WAL files: the live one and the kept one, renamed into the
     * next WAL at the next flush); with 0 it is deleted. The data survives
     * reopening either way. */
    for (i = 0; i < 2; i++) {
        char *p = path_join(dir, i ? "recycle-default" : "recycle-off");
        int round;
        o = test_options(1);
        CHECK_OK(edgestore_options_set_background_compaction(o, 0));
        if (i == 0) CHECK_OK(edgestore_options_set_wal_recycle_files(o, 0));
        db = open_db(p, o);
        for (round = 0; round < 3; round++) {
            put_many(db, round == 0 ? "w0" : round == 1 ? "w1" : "w2", 20, 0);
            CHECK_OK(edgestore_flush_to_segments(db));
            CHECK(count_files(p, ".wal") == (i ? 2 : 1));
        }
        put_many(db, "tail", 20, 0);
        CHECK_OK(edgestore_close(db));
        db = open_db(p, o);
        CHECK_OK(edgestore_options_free(o));
        check_many(db, "w2", 20);
        check_many(db, "tail", 20);
        CHECK_OK(edgestore_close(db));
        free(p);
    }

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

    /* Block cache off and plain reads: every read goes to the file, and no
     * segment is mapped; the data reads back, also after reopening. */
    o = test_options(0);
    CHECK_OK(edgestore_options_set_block_cache(o, 0));
    CHECK_OK(edgestore_options_set_mmap_reads(o, 0));
    db = open_db(p5, o);
    put_many(db, "plain", 300, 0);
    CHECK_OK(edgestore_flush_to_segments(db));
    CHECK_OK(edgestore_get_metrics(db, &m));
    CHECK(m.segments >= 1);
    check_many(db, "plain", 300);
    CHECK(mapped_segments(p5_tail) <= 0);
    CHECK_OK(edgestore_close(db));
    db = open_db(p5, o);
    CHECK_OK(edgestore_options_free(o));
    check_many(db, "plain", 300);
    CHECK(mapped_segments(p5_tail) <= 0);
    CHECK_OK(edgestore_close(db));

    /* The same files read through a map (the default on 64-bit targets, set
     * explicitly here), still without a cache, then with a cache of every
     * size up to UINT64_MAX. */
    o = test_options(0);
    CHECK_OK(edgestore_options_set_block_cache(o, 0));
    CHECK_OK(edgestore_options_set_mmap_reads(o, 1));
    db = open_db(p5, o);
    check_many(db, "plain", 300);
#if defined(__linux__)
    CHECK(mapped_segments(p5_tail) >= 1);
#endif
    CHECK_OK(edgestore_close(db));
    CHECK(mapped_segments(p5_tail) <= 0); /* closing unmapped them */
    CHECK_OK(edgestore_options_set_block_cache(o, 64 * 1024));
    db = open_db(p5, o);
    check_many(db, "plain", 300);
    check_many(db, "plain", 300); /* now partly from the cache */
    CHECK_OK(edgestore_close(db));
    CHECK_OK(edgestore_options_set_block_cache(o, UINT64_MAX));
    CHECK_OK(edgestore_options_set_mmap_reads(o, 0));
    db = open_db(p5, o);
    check_many(db, "plain", 300);
    CHECK(mapped_segments(p5_tail) <= 0);
    CHECK_OK(edgestore_close(db));
    /* Only 0 and 1 are accepted, and a refused value changes nothing. */
    CHECK_STATUS(edgestore_options_set_mmap_reads(o, 2), EDGESTORE_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected 0 or 1");
    CHECK_STATUS(edgestore_options_set_mmap_reads(o, 0xffffffffu), EDGESTORE_INVALID_ARGUMENT);
    db = open_db(p5, o);
    CHECK(mapped_segments(p5_tail) <= 0);
    CHECK_OK(edgestore_close(db));
    CHECK_OK(edgestore_options_free(o));
    /* What the block cache holds is served from memory: after a segment is
     * damaged on disk, a key read before still reads back with a cache and is
     * reported as corrupt without one (plain reads, so the damaged file is
     * never mapped). */
    for (i = 0; i < 2; i++) {
        char *p = path_join(dir, i ? "cached" : "uncached");
        uint8_t *v = NULL;
        size_t vl = 0;
        o = test_options(0);
        CHECK_OK(edgestore_options_set_mmap_reads(o, 0));
        CHECK_OK(edgestore_options_set_block_cache(o, i ? 1 << 20 : 0));
        db = open_db(p, o);
        CHECK_OK(edgestore_options_free(o));
        CHECK_OK(edgestore_put(db, B("c"), B("k"), B("cache-probe-value")));
        CHECK_OK(edgestore_flush_to_segments(db));
        expect_value(db, "c", "k", "cache-probe-value");
        CHECK(damage_segments(p, "cache-probe-value") == 1);
        if (i) {
            expect_value(db, "c", "k", "cache-probe-value");
        } else {
            CHECK_STATUS(edgestore_get(db, B("c"), B("k"), &v, &vl), EDGESTORE_CORRUPTION);
            CHECK(v == NULL);
        }
        CHECK_OK(edgestore_close(db));
        free(p);
    }

    /* A bad handle: NULL, a database, freed options. */
    CHECK_STATUS(edgestore_options_set_block_cache(NULL, 0), EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_options_set_mmap_reads(NULL, 0), EDGESTORE_INVALID_ARGUMENT);
    db = open_db(p5, NULL);
    CHECK_STATUS(edgestore_options_set_block_cache((edgestore_options *)db, 0),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_options_set_mmap_reads((edgestore_options *)db, 0),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_OK(edgestore_close(db));
    CHECK_STATUS(edgestore_options_set_block_cache(o, 0), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_options_set_mmap_reads(o, 0), EDGESTORE_CLOSED);

    remove_tree(dir);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    free(p5);
    free(p6);
    free(p7);
    free(p5_tail);
    free(dir);
    printf("test_options: ok\n");
    return 0;
}
