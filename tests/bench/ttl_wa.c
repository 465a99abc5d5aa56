/*
 * TTL write-amplification benchmark: edgestore (deathtime-cohort compaction)
 * and RocksDB (leveled compaction, TTL enforced by a compaction filter reading
 * the same simulated clock) run the same 7-day workload, side by side.
 *
 * Workload, per simulated minute: 30 telemetry writes with unique keys
 * (TTL 1 h for 70%, 24 h for 20%, 7 d for 10%), 3 overwrites of a permanent
 * keyspace of 5,000 settings, and every 10th minute one delete of a setting.
 * Keys 24 B, values 100 B. edgestore compacts once per simulated hour; RocksDB
 * compacts on its own schedule. After 7 days the clock moves 8 more days so
 * every TTL has run out, and each store reclaims what it can.
 *
 * Usage: ttl_wa [days] [workdir]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "edgestore.h"

#define NS_PER_SEC 1000000000LL
#define T0 (1767225600LL * NS_PER_SEC)
#define VALUE_LEN 100
#define SETTINGS 5000

static int64_t sim_now; /* the simulated clock both stores read */

static void die(const char *what, const char *detail) {
    fprintf(stderr, "ttl_wa: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

static void es_check(edgestore_status st, const char *what) {
    if (st != EDGESTORE_OK) die(what, edgestore_last_error());
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Bytes in files of `dir` whose name ends with `suffix` ("" = all files). */
static uint64_t dir_bytes(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), s = strlen(suffix);
        if (n < s || strcmp(e->d_name + n - s, suffix) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* ---- RocksDB side ---------------------------------------------------- */

static unsigned char ttl_filter(void *state, int level, const char *key, size_t key_len,
                                const char *value, size_t value_len, char **new_value,
                                size_t *new_value_len, unsigned char *changed) {
    (void)state; (void)level; (void)key; (void)key_len; (void)new_value; (void)new_value_len;
    *changed = 0;
    if (value_len < 8) return 0;
    int64_t expiry;
    memcpy(&expiry, value, 8);
    return expiry != 0 && expiry <= sim_now; /* 1 = remove */
}
static const char *ttl_filter_name(void *state) { (void)state; return "edgestore-bench-ttl"; }
static void ttl_filter_destroy(void *state) { (void)state; }

static uint64_t ticker(rocksdb_options_t *o, const char *name) {
    char *s = rocksdb_options_statistics_get_string(o);
    uint64_t v = 0;
    char *p = s ? strstr(s, name) : NULL;
    if (p) {
        p = strstr(p, "COUNT : ");
        if (p) v = strtoull(p + 8, NULL, 10);
    }
    free(s);
    return v;
}

typedef struct {
    const char *name;
    uint64_t user_bytes, wal, flush, compaction;
    uint64_t data_bytes_7d, data_bytes_end, data_bytes_end_full;
    double seconds;
} result;

static void workload(void (*put)(void *, const char *, size_t, const char *, size_t, uint32_t),
                     void (*del)(void *, const char *, size_t), void (*hourly)(void *), void *ctx,
                     int days, uint64_t *user_bytes) {
    char key[32], value[VALUE_LEN];
    uint64_t seq = 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int minute = 0; minute < days * 24 * 60; minute++) {
        for (int i = 0; i < 30; i++, seq++) {
            uint32_t ttl = (seq % 10 < 7) ? 3600 : (seq % 10 < 9) ? 86400 : 7 * 86400;
            snprintf(key, sizeof key, "telemetry/%013" PRIu64, seq);
            memset(value, 'a' + (int)(seq % 26), sizeof value);
            put(ctx, key, 24, value, VALUE_LEN, ttl);
            *user_bytes += 24 + VALUE_LEN;
        }
        for (int i = 0; i < 3; i++) {
            snprintf(key, sizeof key, "settings/%014" PRIu64, rng() % SETTINGS);
            memset(value, 'A' + (int)(rng() % 26), sizeof value);
            put(ctx, key, 24, value, VALUE_LEN, 0);
            *user_bytes += 24 + VALUE_LEN;
        }
        if (minute % 10 == 0) {
            snprintf(key, sizeof key, "settings/%014" PRIu64, rng() % SETTINGS);
            del(ctx, key, 24);
            *user_bytes += 24;
        }
        sim_now += 60 * NS_PER_SEC;
        if (minute % 60 == 59 && hourly) hourly(ctx);
    }
}

/* edgestore adapters */
static const uint8_t NS[] = "b";
static void es_put(void *db, const char *k, size_t kl, const char *v, size_t vl, uint32_t ttl) {
    es_check(edgestore_put_with_ttl(db, NS, 1, (const uint8_t *)k, kl, (const uint8_t *)v, vl, ttl), "put");
}
static void es_del(void *db, const char *k, size_t kl) {
    es_check(edgestore_delete(db, NS, 1, (const uint8_t *)k, kl), "delete");
}
static void es_hourly(void *db) {
    edgestore_compaction_stats st;
    es_check(edgestore_compact(db, &st), "compact");
}

/* The edgestore clock is its own manual clock: keep it in step with sim_now. */
static int64_t es_clock_at;
static edgestore_db *es_db;
static void es_sync_clock(void) {
    if (sim_now > es_clock_at) {
        es_check(edgestore_advance_clock(es_db, (uint64_t)((sim_now - es_clock_at) / NS_PER_SEC)), "clock");
        es_clock_at = sim_now;
    }
}
static void es_put_synced(void *db, const char *k, size_t kl, const char *v, size_t vl, uint32_t ttl) {
    es_sync_clock();
    es_put(db, k, kl, v, vl, ttl);
}
static void es_del_synced(void *db, const char *k, size_t kl) { es_sync_clock(); es_del(db, k, kl); }
static void es_hourly_synced(void *db) { es_sync_clock(); es_hourly(db); }

static result run_edgestore(int days, const char *dir) {
    result r = {.name = "edgestore"};
    edgestore_options *o;
    es_check(edgestore_options_new(&o), "options");
    es_check(edgestore_options_set_sync_mode(o, EDGESTORE_SYNC_BUFFERED), "sync");
    es_check(edgestore_options_set_memtable_size(o, 1 << 20), "memtable");
    es_check(edgestore_options_set_segment_size(o, 1 << 20), "segment");
    es_check(edgestore_options_set_compaction_budget(o, UINT64_MAX), "budget");
    es_check(edgestore_options_set_manual_clock(o, T0), "clock");
    /* Compaction once per simulated hour only (the C default would also run
     * a cycle every real second). */
    es_check(edgestore_options_set_background_compaction(o, 0), "background compaction");
    sim_now = T0;
    es_clock_at = T0;
    es_check(edgestore_open(dir, o, &es_db), "open");
    edgestore_options_free(o);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    workload(es_put_synced, es_del_synced, es_hourly_synced, es_db, days, &r.user_bytes);
    es_check(edgestore_flush(es_db), "flush");
    clock_gettime(CLOCK_MONOTONIC, &b);
    r.seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    r.data_bytes_7d = dir_bytes(dir, ".seg");
    sim_now += 8LL * 86400 * NS_PER_SEC;
    es_sync_clock();
    es_check(edgestore_flush_to_segments(es_db), "flush_to_segments");
    es_hourly(es_db);
    r.data_bytes_end = dir_bytes(dir, ".seg");
    r.data_bytes_end_full = r.data_bytes_end; /* nothing more to do */
    edgestore_metrics m;
    es_check(edgestore_get_metrics(es_db, &m), "metrics");
    r.wal = m.wal_bytes_written;
    r.flush = m.flush_bytes_written;
    r.compaction = m.compaction_bytes_written;
    es_check(edgestore_close(es_db), "close");
    return r;
}

/* RocksDB adapters */
typedef struct {
    rocksdb_t *db;
    rocksdb_writeoptions_t *wo;
} rdb;
static void r_put(void *c, const char *k, size_t kl, const char *v, size_t vl, uint32_t ttl) {
    rdb *r = c;
    char buf[8 + VALUE_LEN];
    int64_t expiry = ttl ? sim_now + (int64_t)ttl * NS_PER_SEC : 0;
    memcpy(buf, &expiry, 8);
    memcpy(buf + 8, v, vl);
    char *err = NULL;
    rocksdb_put(r->db, r->wo, k, kl, buf, 8 + vl, &err);
    if (err) die("rocksdb put", err);
}
static void r_del(void *c, const char *k, size_t kl) {
    rdb *r = c;
    char *err = NULL;
    rocksdb_delete(r->db, r->wo, k, kl, &err);
    if (err) die("rocksdb delete", err);
}

static result run_rocksdb(int days, const char *dir) {
    result r = {.name = "RocksDB (leveled + TTL filter)"};
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_enable_statistics(o);
    rocksdb_options_set_write_buffer_size(o, 1 << 20);
    rocksdb_options_set_target_file_size_base(o, 1 << 20);
    rocksdb_options_set_max_bytes_for_level_base(o, 4 << 20);
    rocksdb_options_set_compression(o, rocksdb_no_compression);
    rocksdb_compactionfilter_t *f = rocksdb_compactionfilter_create(NULL, ttl_filter_destroy, ttl_filter, ttl_filter_name);
    rocksdb_options_set_compaction_filter(o, f);
    char *err = NULL;
    rdb c = {.db = rocksdb_open(o, dir, &err), .wo = rocksdb_writeoptions_create()};
    if (err) die("rocksdb open", err);
    sim_now = T0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    workload(r_put, r_del, NULL, &c, days, &r.user_bytes);
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(c.db, fo, &err);
    if (err) die("rocksdb flush", err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    r.seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    sleep(1); /* let background compactions settle */
    r.data_bytes_7d = dir_bytes(dir, ".sst");
    sim_now += 8LL * 86400 * NS_PER_SEC;
    r.data_bytes_end = dir_bytes(dir, ".sst");
    /* Without a manual compaction, expired data stays on disk; a full
     * CompactRange is what reclaims it, at the cost of rewriting everything. */
    uint64_t before_full = ticker(o, "rocksdb.compact.write.bytes");
    rocksdb_compact_range(c.db, NULL, 0, NULL, 0);
    r.data_bytes_end_full = dir_bytes(dir, ".sst");
    r.wal = ticker(o, "rocksdb.wal.bytes");
    r.flush = ticker(o, "rocksdb.flush.write.bytes");
    r.compaction = ticker(o, "rocksdb.compact.write.bytes");
    printf("  (RocksDB compaction bytes before the final full CompactRange: %" PRIu64 ")\n", before_full);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_writeoptions_destroy(c.wo);
    rocksdb_close(c.db);
    rocksdb_options_destroy(o);
    rocksdb_compactionfilter_destroy(f);
    return r;
}

static void row(const result *r) {
    double u = (double)r->user_bytes;
    printf("| %-30s | %8.1f | %7.3f | %7.3f | %7.3f | %9.3f | %10.1f | %10.1f | %10.1f | %6.2f |\n", r->name,
           u / 1048576.0, (double)r->wal / u, (double)r->flush / u, (double)r->compaction / u,
           (double)(r->wal + r->flush + r->compaction) / u, (double)r->data_bytes_7d / 1048576.0,
           (double)r->data_bytes_end / 1048576.0, (double)r->data_bytes_end_full / 1048576.0, r->seconds);
}

int main(int argc, char **argv) {
    int days = argc > 1 ? atoi(argv[1]) : 7;
    const char *work = argc > 2 ? argv[2] : NULL;
    char base[4096];
    if (work) {
        snprintf(base, sizeof base, "%s", work);
        mkdir(base, 0755);
    } else {
        snprintf(base, sizeof base, "/tmp/edgestore-ttl-wa-XXXXXX");
        if (!mkdtemp(base)) die("mkdtemp", NULL);
    }
    char es_dir[4200], r_dir[4200];
    snprintf(es_dir, sizeof es_dir, "%s/edgestore", base);
    snprintf(r_dir, sizeof r_dir, "%s/rocksdb", base);
    printf("TTL workload: %d simulated days, 30 telemetry writes/min (70%% 1 h, 20%% 24 h, 10%% 7 d TTL),\n"
           "3 overwrites/min of %d permanent settings, 1 delete/10 min; keys 24 B, values 100 B; no fsync.\n",
           days, SETTINGS);
    result e = run_edgestore(days, es_dir);
    result r = run_rocksdb(days, r_dir);
    printf("\n| store | user MiB | WAL WA | flush WA | compaction WA | total WA | data MiB at day %d | data MiB after expiry | after full compaction | load s |\n", days);
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    row(&e);
    row(&r);
    printf("\nlive data at the end: about %.2f MiB of permanent settings (%d keys x 124 B, minus deletes)\n",
           SETTINGS * 124.0 / 1048576.0, SETTINGS);
    printf("work directory: %s\n", base);
    return 0;
}
