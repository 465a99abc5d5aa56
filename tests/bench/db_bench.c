/*
 * db_bench: a db_bench-style side-by-side benchmark of edgestore (through its
 * C ABI, edgestore.h) and the embedded stores firmware teams compare it with,
 * each driven through its own C API: RocksDB (rocksdb/c.h), LMDB (lmdb.h),
 * LevelDB (leveldb/c.h) and SQLite (sqlite3.h, WAL mode, a WITHOUT ROWID
 * table with a BLOB primary key). Every engine gets the same keys and values,
 * the same operation order and a fresh directory on the same disk; each
 * engine runs in its own forked process so its memory and I/O counters start
 * clean. Next to them the program measures the disk itself: 4 KiB
 * write+fdatasync latency and sequential write bandwidth.
 *
 * See tests/bench/README.md for the workloads, the columns and the settings.
 * Usage: db_bench --help
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "edgestore.h"

#ifdef HAVE_ROCKSDB
#include <rocksdb/c.h>
#endif
#ifdef HAVE_LMDB
#include <lmdb.h>
#endif
#ifdef HAVE_LEVELDB
#include <leveldb/c.h>
#endif
#ifdef HAVE_SQLITE
#include <sqlite3.h>
#endif

#ifndef BENCH_ROCKSDB_VERSION
#define BENCH_ROCKSDB_VERSION "?"
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static char *g_err_slot;       /* where a child copies its fatal error for the parent */
static size_t g_err_slot_len;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "db_bench: %s\n", msg);
    if (g_err_slot) snprintf(g_err_slot, g_err_slot_len, "%s", msg);
    fflush(NULL);
    _exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) die("out of memory (%zu x %zu bytes)", n, sz);
    return p;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die("clock_gettime: %s", strerror(errno));
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Random numbers (deterministic: every engine sees the same sequence)       */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t mix64(uint64_t x) { return splitmix64(&x); }

/* Uniform in [0, n) (n > 0), Lemire's multiply-shift. */
static uint64_t rand_below(uint64_t *s, uint64_t n) {
    return (uint64_t)(((unsigned __int128)splitmix64(s) * n) >> 64);
}

static uint32_t *make_permutation(uint64_t n, uint64_t seed) {
    uint32_t *p = xmalloc(n * sizeof *p);
    for (uint64_t i = 0; i < n; i++) p[i] = (uint32_t)i;
    uint64_t s = seed;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rand_below(&s, i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Keys and values                                                           */

/* Key i of the data set is the zero-padded decimal number 2*i, klen digits;
 * 2*i+1 is a key that is never written (readmissing), so missing keys fall
 * between present ones and the stores cannot answer from their key range. */
static void make_key(uint8_t *out, size_t klen, uint64_t num) {
    for (size_t i = klen; i > 0; i--) {
        out[i - 1] = (uint8_t)('0' + num % 10);
        num /= 10;
    }
}

#define VALUE_POOL (1u << 20)
static uint8_t *g_value_pool; /* VALUE_POOL + max value length random bytes */

/* The value of key i in generation gen (0 = fill, 1 = overwrite, 2 = mixed). */
static const uint8_t *value_for(uint64_t i, unsigned gen) {
    return g_value_pool + mix64(i * 4 + gen) % VALUE_POOL;
}

/* ------------------------------------------------------------------------ */
/* Latency histogram: exact below 128 ns, then 64 buckets per power of two   */
/* (relative error under 1.6%).                                              */

#define H_BUCKETS (64 * 60)
typedef struct {
    uint64_t c[H_BUCKETS];
    uint64_t n;
} hist;

static unsigned h_index(uint64_t v) {
    if (v < 128) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6;
    unsigned idx = (msb - 6) * 64 + (unsigned)(v >> shift);
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

static uint64_t h_value(unsigned idx) {
    if (idx < 128) return idx;
    unsigned msb = idx / 64 + 5;
    uint64_t mant = idx % 64 + 64;
    unsigned shift = msb - 6;
    return (mant << shift) + ((1ull << shift) >> 1); /* bucket midpoint */
}

static void h_add(hist *h, uint64_t v) {
    h->c[h_index(v)]++;
    h->n++;
}

static void h_merge(hist *into, const hist *from) {
    for (unsigned i = 0; i < H_BUCKETS; i++) into->c[i] += from->c[i];
    into->n += from->n;
}

static uint64_t h_percentile(const hist *h, double p) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->c[i];
        if (seen >= rank) return h_value(i);
    }
    return h_value(H_BUCKETS - 1);
}

/* ------------------------------------------------------------------------ */
/* Process and file-system measurements                                      */

/* Counters of /proc/self/io, summed over all threads of the process (live and
 * exited). write_bytes: bytes this process caused to be sent to the storage
 * layer, counted when a page cache page is dirtied (a page dirtied again before
 * writeback is not counted twice). wchar: bytes passed to write(2)-family
 * calls. 0 if the kernel does not provide them. */
static uint64_t io_counter(const char *name) {
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return 0;
    char line[128];
    size_t n = strlen(name);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            if (sscanf(line + n + 1, "%" SCNu64, &v) != 1) v = 0;
            break;
        }
    }
    fclose(f);
    return v;
}

static uint64_t io_write_bytes(void) { return io_counter("write_bytes"); }

/* A field of /proc/self/status in bytes (VmRSS, VmHWM), 0 if absent. */
static uint64_t status_bytes(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t fl = strlen(field);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            if (sscanf(line + fl + 1, "%" SCNu64, &kb) != 1) kb = 0;
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0). Returns 0 on success. */
static int reset_hwm(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) return -1;
    ssize_t w = write(fd, "5", 1);
    close(fd);
    return w == 1 ? 0 : -1;
}

static uint64_t g_du_total;
static int du_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)path;
    (void)ftw;
    if (type == FTW_F) g_du_total += (uint64_t)st->st_blocks * 512;
    return 0;
}

/* Bytes allocated on disk by the files under dir (st_blocks, like du). */
static uint64_t dir_disk_bytes(const char *dir) {
    g_du_total = 0;
    if (nftw(dir, du_cb, 32, FTW_PHYS) != 0) die("nftw %s: %s", dir, strerror(errno));
    return g_du_total;
}

static int rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    int r = (type == FTW_DP) ? rmdir(path) : unlink(path);
    if (r != 0) die("remove %s: %s", path, strerror(errno));
    return 0;
}

static void rm_rf(const char *dir) {
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT) return;
        die("stat %s: %s", dir, strerror(errno));
    }
    if (nftw(dir, rm_cb, 32, FTW_DEPTH | FTW_PHYS) != 0) die("nftw %s: %s", dir, strerror(errno));
}

static void mkdir_or_die(const char *dir) {
    if (mkdir(dir, 0755) != 0) die("mkdir %s: %s", dir, strerror(errno));
}

/* The 1/5/15-minute load averages, as /proc/loadavg prints them. */
static void load_average(char *out, size_t cap) {
    snprintf(out, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

static const char *fs_type_name(const char *dir) {
    struct statfs sf;
    if (statfs(dir, &sf) != 0) die("statfs %s: %s", dir, strerror(errno));
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0xF2F52010: return "f2fs";
    default: return "other";
    }
}

/* ------------------------------------------------------------------------ */
/* The engine interface                                                      */

/* A store handle (db) and per-thread sessions on it. Every function dies on
 * an unexpected error; get returns 1 if found (value copied into buf), 0 if
 * not found; scan visits up to n pairs from the first key >= start, returns
 * how many it visited and adds their bytes into *sum, and reports the first
 * key it saw in first_key (klen bytes). */
typedef struct engine {
    const char *name;
    void *(*open)(const char *dir, int durable);
    void (*close)(void *db);
    void *(*session)(void *db);
    void (*session_free)(void *s);
    void (*put)(void *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
    int (*get)(void *s, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl);
    void (*del)(void *s, const uint8_t *k, size_t kl);
    size_t (*scan)(void *s, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum);
    /* Sorted runs a read may have to probe in the open database, or -1 (not
     * open, or not an engine that reports it). */
    int (*runs)(void);
} engine;

/* ---- edgestore --------------------------------------------------------- */

static uint64_t g_es_compaction_ms = 1000;

static void es_check(edgestore_status st, const char *what) {
    if (st != EDGESTORE_OK)
        die("edgestore %s: %s: %s", what, edgestore_status_name((int)st), edgestore_last_error());
}

/* The open database, for es_runs (one at a time but for run_two's). */
static edgestore_db *g_es_open_db;

static int es_runs(void) {
    edgestore_metrics m;
    if (!g_es_open_db || edgestore_get_metrics(g_es_open_db, &m) != EDGESTORE_OK) return -1;
    return m.sorted_runs < INT_MAX ? (int)m.sorted_runs : INT_MAX;
}

static void *es_open(const char *dir, int durable) {
    edgestore_options *o = NULL;
    edgestore_db *db = NULL;
    es_check(edgestore_options_new(&o), "options_new");
    es_check(edgestore_options_set_sync_mode(o, durable ? EDGESTORE_SYNC_DURABLE : EDGESTORE_SYNC_BUFFERED),
             "set_sync_mode");
    es_check(edgestore_options_set_background_compaction(o, g_es_compaction_ms), "set_background_compaction");
    es_check(edgestore_open(dir, o, &db), "open");
    es_check(edgestore_options_free(o), "options_free");
    g_es_open_db = db;
    return db;
}

static void es_close(void *db) {
    if (db == g_es_open_db) g_es_open_db = NULL;
    es_check(edgestore_close(db), "close");
}
static void *es_session(void *db) { return db; }
static void es_session_free(void *s) { (void)s; }

static void es_put(void *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    es_check(edgestore_put(s, NULL, 0, k, kl, v, vl), "put");
}

static int es_get(void *s, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl) {
    edgestore_status st = edgestore_get_into(s, NULL, 0, k, kl, buf, cap, vl);
    if (st == EDGESTORE_NOT_FOUND) return 0;
    es_check(st, "get_into");
    return 1;
}

static void es_del(void *s, const uint8_t *k, size_t kl) { es_check(edgestore_delete(s, NULL, 0, k, kl), "delete"); }

static size_t es_scan(void *s, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum) {
    edgestore_iter *it = NULL;
    es_check(edgestore_iter_range(s, NULL, 0, start, kl, NULL, 0, &it), "iter_range");
    size_t got = 0;
    edgestore_status st = EDGESTORE_OK;
    while (got < n) {
        const uint8_t *k, *v;
        size_t klen, vlen;
        st = edgestore_iter_next(it, &k, &klen, &v, &vlen);
        if (st != EDGESTORE_OK) break;
        if (got == 0) memcpy(first_key, k, klen < kl ? klen : kl);
        *sum += klen + vlen + k[0] + v[vlen - 1];
        got++;
    }
    if (st != EDGESTORE_OK && st != EDGESTORE_DONE) es_check(st, "iter_next");
    es_check(edgestore_iter_free(it), "iter_free");
    return got;
}

static const engine ENGINE_EDGESTORE = {"edgestore", es_open, es_close, es_session, es_session_free,
                                        es_put, es_get, es_del, es_scan, es_runs};

/* ---- RocksDB ------------------------------------------------------------ */
#ifdef HAVE_ROCKSDB
typedef struct {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
} rdb;

static void rdb_check(char *err, const char *what) {
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", err);
        rocksdb_free(err);
        die("rocksdb %s: %s", what, msg);
    }
}

static void *rdb_open(const char *dir, int durable) {
    rdb *r = xcalloc(1, sizeof *r);
    char *err = NULL;
    r->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->opts, 1);
    rocksdb_options_set_write_buffer_size(r->opts, 4u << 20);
    rocksdb_options_set_compression(r->opts, rocksdb_no_compression);
    r->table = rocksdb_block_based_options_create();
    r->cache = rocksdb_cache_create_lru(8u << 20);
    rocksdb_block_based_options_set_block_cache(r->table, r->cache);
    /* The table options take ownership of the filter policy. */
    rocksdb_block_based_options_set_filter_policy(r->table, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(r->opts, r->table);
    r->db = rocksdb_open(r->opts, dir, &err);
    rdb_check(err, "open");
    r->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo, durable ? 1 : 0);
    r->ro = rocksdb_readoptions_create();
    return r;
}

static void rdb_close(void *p) {
    rdb *r = p;
    rocksdb_close(r->db);
    rocksdb_writeoptions_destroy(r->wo);
    rocksdb_readoptions_destroy(r->ro);
    rocksdb_options_destroy(r->opts);
    rocksdb_block_based_options_destroy(r->table);
    rocksdb_cache_destroy(r->cache);
    free(r);
}

static void *rdb_session(void *db) { return db; }
static void rdb_session_free(void *s) { (void)s; }

static void rdb_put(void *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    rdb *r = s;
    char *err = NULL;
    rocksdb_put(r->db, r->wo, (const char *)k, kl, (const char *)v, vl, &err);
    rdb_check(err, "put");
}

static int rdb_get(void *s, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl) {
    rdb *r = s;
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned(r->db, r->ro, (const char *)k, kl, &err);
    rdb_check(err, "get_pinned");
    if (!ps) return 0;
    size_t n = 0;
    const char *v = rocksdb_pinnableslice_value(ps, &n);
    if (n > cap) die("rocksdb get: value of %zu bytes exceeds %zu", n, cap);
    memcpy(buf, v, n);
    *vl = n;
    rocksdb_pinnableslice_destroy(ps);
    return 1;
}

static void rdb_del(void *s, const uint8_t *k, size_t kl) {
    rdb *r = s;
    char *err = NULL;
    rocksdb_delete(r->db, r->wo, (const char *)k, kl, &err);
    rdb_check(err, "delete");
}

static size_t rdb_scan(void *s, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum) {
    rdb *r = s;
    rocksdb_iterator_t *it = rocksdb_create_iterator(r->db, r->ro);
    size_t got = 0;
    for (rocksdb_iter_seek(it, (const char *)start, kl); got < n && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (got == 0) memcpy(first_key, k, klen < kl ? klen : kl);
        *sum += klen + vlen + (uint8_t)k[0] + (uint8_t)v[vlen - 1];
        got++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rdb_check(err, "iterator");
    rocksdb_iter_destroy(it);
    return got;
}

static const engine ENGINE_ROCKSDB = {"rocksdb", rdb_open, rdb_close, rdb_session, rdb_session_free,
                                      rdb_put, rdb_get, rdb_del, rdb_scan, NULL};
#endif

/* ---- LMDB --------------------------------------------------------------- */
#ifdef HAVE_LMDB
static size_t g_lmdb_mapsize = (size_t)16 << 30;

typedef struct {
    MDB_env *env;
    MDB_dbi dbi;
} lmdb_db;

typedef struct {
    lmdb_db *d;
    MDB_txn *rtxn;   /* a reset read transaction, renewed per read */
    MDB_cursor *cur; /* a read cursor, renewed per scan */
} lmdb_sess;

static void lm_check(int rc, const char *what) {
    if (rc != MDB_SUCCESS) die("lmdb %s: %s", what, mdb_strerror(rc));
}

static void *lm_open(const char *dir, int durable) {
    lmdb_db *d = xcalloc(1, sizeof *d);
    lm_check(mdb_env_create(&d->env), "env_create");
    lm_check(mdb_env_set_mapsize(d->env, g_lmdb_mapsize), "env_set_mapsize");
    /* MDB_NOTLS: read transactions belong to our session objects, not to
     * threads, so a thread may hold a reset read txn and write. */
    unsigned flags = MDB_NOTLS | (durable ? 0u : MDB_NOSYNC);
    lm_check(mdb_env_open(d->env, dir, flags, 0644), "env_open");
    MDB_txn *txn;
    lm_check(mdb_txn_begin(d->env, NULL, 0, &txn), "txn_begin");
    lm_check(mdb_dbi_open(txn, NULL, 0, &d->dbi), "dbi_open");
    lm_check(mdb_txn_commit(txn), "txn_commit");
    return d;
}

static void lm_close(void *p) {
    lmdb_db *d = p;
    /* No MDB_NOSYNC data may be left unsynced at close: force a sync as a
     * clean shutdown of any store would. */
    lm_check(mdb_env_sync(d->env, 1), "env_sync");
    mdb_env_close(d->env);
    free(d);
}

static void *lm_session(void *db) {
    lmdb_sess *s = xcalloc(1, sizeof *s);
    s->d = db;
    lm_check(mdb_txn_begin(s->d->env, NULL, MDB_RDONLY, &s->rtxn), "txn_begin(rdonly)");
    lm_check(mdb_cursor_open(s->rtxn, s->d->dbi, &s->cur), "cursor_open");
    mdb_txn_reset(s->rtxn);
    return s;
}

static void lm_session_free(void *p) {
    lmdb_sess *s = p;
    mdb_cursor_close(s->cur);
    mdb_txn_abort(s->rtxn);
    free(s);
}

static void lm_put(void *p, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    lmdb_sess *s = p;
    MDB_txn *txn;
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    lm_check(mdb_txn_begin(s->d->env, NULL, 0, &txn), "txn_begin");
    int rc = mdb_put(txn, s->d->dbi, &key, &val, 0);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        lm_check(rc, "put");
    }
    lm_check(mdb_txn_commit(txn), "txn_commit");
}

static int lm_get(void *p, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl) {
    lmdb_sess *s = p;
    MDB_val key = {kl, (void *)k}, val;
    lm_check(mdb_txn_renew(s->rtxn), "txn_renew");
    int rc = mdb_get(s->rtxn, s->d->dbi, &key, &val);
    int found = 0;
    if (rc == MDB_SUCCESS) {
        if (val.mv_size > cap) die("lmdb get: value of %zu bytes exceeds %zu", val.mv_size, cap);
        memcpy(buf, val.mv_data, val.mv_size);
        *vl = val.mv_size;
        found = 1;
    } else if (rc != MDB_NOTFOUND) {
        lm_check(rc, "get");
    }
    mdb_txn_reset(s->rtxn);
    return found;
}

static void lm_del(void *p, const uint8_t *k, size_t kl) {
    lmdb_sess *s = p;
    MDB_txn *txn;
    MDB_val key = {kl, (void *)k};
    lm_check(mdb_txn_begin(s->d->env, NULL, 0, &txn), "txn_begin");
    int rc = mdb_del(txn, s->d->dbi, &key, NULL);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        lm_check(rc, "del");
    }
    lm_check(mdb_txn_commit(txn), "txn_commit");
}

static size_t lm_scan(void *p, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum) {
    lmdb_sess *s = p;
    lm_check(mdb_txn_renew(s->rtxn), "txn_renew");
    lm_check(mdb_cursor_renew(s->rtxn, s->cur), "cursor_renew");
    MDB_val key = {kl, (void *)start}, val;
    size_t got = 0;
    int rc = mdb_cursor_get(s->cur, &key, &val, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && got < n) {
        const uint8_t *kb = key.mv_data, *vb = val.mv_data;
        if (got == 0) memcpy(first_key, kb, key.mv_size < kl ? key.mv_size : kl);
        *sum += key.mv_size + val.mv_size + kb[0] + vb[val.mv_size - 1];
        got++;
        if (got < n) rc = mdb_cursor_get(s->cur, &key, &val, MDB_NEXT);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) lm_check(rc, "cursor_get");
    mdb_txn_reset(s->rtxn);
    return got;
}

static const engine ENGINE_LMDB = {"lmdb", lm_open, lm_close, lm_session, lm_session_free,
                                   lm_put, lm_get, lm_del, lm_scan, NULL};
#endif

/* ---- LevelDB ------------------------------------------------------------ */
#ifdef HAVE_LEVELDB
typedef struct {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_filterpolicy_t *filter;
    leveldb_cache_t *cache;
    leveldb_writeoptions_t *wo;
    leveldb_readoptions_t *ro;
} ldb;

static void ldb_check(char *err, const char *what) {
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", err);
        leveldb_free(err);
        die("leveldb %s: %s", what, msg);
    }
}

static void *ldb_open(const char *dir, int durable) {
    ldb *l = xcalloc(1, sizeof *l);
    char *err = NULL;
    l->opts = leveldb_options_create();
    leveldb_options_set_create_if_missing(l->opts, 1);
    leveldb_options_set_write_buffer_size(l->opts, 4u << 20);
    leveldb_options_set_compression(l->opts, leveldb_no_compression);
    l->filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(l->opts, l->filter);
    l->cache = leveldb_cache_create_lru(8u << 20);
    leveldb_options_set_cache(l->opts, l->cache);
    l->db = leveldb_open(l->opts, dir, &err);
    ldb_check(err, "open");
    l->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->wo, durable ? 1 : 0);
    l->ro = leveldb_readoptions_create();
    return l;
}

static void ldb_close(void *p) {
    ldb *l = p;
    leveldb_close(l->db);
    leveldb_writeoptions_destroy(l->wo);
    leveldb_readoptions_destroy(l->ro);
    leveldb_options_destroy(l->opts);
    leveldb_filterpolicy_destroy(l->filter);
    leveldb_cache_destroy(l->cache);
    free(l);
}

static void *ldb_session(void *db) { return db; }
static void ldb_session_free(void *s) { (void)s; }

static void ldb_put(void *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    ldb *l = s;
    char *err = NULL;
    leveldb_put(l->db, l->wo, (const char *)k, kl, (const char *)v, vl, &err);
    ldb_check(err, "put");
}

static int ldb_get(void *s, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl) {
    ldb *l = s;
    char *err = NULL;
    size_t n = 0;
    char *v = leveldb_get(l->db, l->ro, (const char *)k, kl, &n, &err);
    ldb_check(err, "get");
    if (!v) return 0;
    if (n > cap) die("leveldb get: value of %zu bytes exceeds %zu", n, cap);
    memcpy(buf, v, n);
    *vl = n;
    leveldb_free(v);
    return 1;
}

static void ldb_del(void *s, const uint8_t *k, size_t kl) {
    ldb *l = s;
    char *err = NULL;
    leveldb_delete(l->db, l->wo, (const char *)k, kl, &err);
    ldb_check(err, "delete");
}

static size_t ldb_scan(void *s, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum) {
    ldb *l = s;
    leveldb_iterator_t *it = leveldb_create_iterator(l->db, l->ro);
    size_t got = 0;
    for (leveldb_iter_seek(it, (const char *)start, kl); got < n && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (got == 0) memcpy(first_key, k, klen < kl ? klen : kl);
        *sum += klen + vlen + (uint8_t)k[0] + (uint8_t)v[vlen - 1];
        got++;
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    ldb_check(err, "iterator");
    leveldb_iter_destroy(it);
    return got;
}

static const engine ENGINE_LEVELDB = {"leveldb", ldb_open, ldb_close, ldb_session, ldb_session_free,
                                      ldb_put, ldb_get, ldb_del, ldb_scan, NULL};
#endif

/* ---- SQLite ------------------------------------------------------------- */
#ifdef HAVE_SQLITE
typedef struct {
    char path[4096];
    int durable;
    sqlite3 *keeper; /* holds the database (and its WAL) open between sessions */
} sql_db;

typedef struct {
    sqlite3 *c;
    sqlite3_stmt *put, *get, *del, *scan;
} sql_sess;

static void sq_check(sqlite3 *c, int rc, int want, const char *what) {
    if (rc != want) die("sqlite %s: %s (rc %d)", what, c ? sqlite3_errmsg(c) : sqlite3_errstr(rc), rc);
}

static sqlite3 *sq_connect(sql_db *d) {
    sqlite3 *c = NULL;
    int rc = sqlite3_open_v2(d->path, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    sq_check(c, rc, SQLITE_OK, "open");
    sq_check(c, sqlite3_busy_timeout(c, 60000), SQLITE_OK, "busy_timeout");
    char sql[256];
    /* Buffered: synchronous=NORMAL (in WAL mode: no fsync at commit, only at
     * checkpoints). Durable: synchronous=FULL (fsync of the WAL per commit). */
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA cache_size=-8192;",
             d->durable ? "FULL" : "NORMAL");
    sq_check(c, sqlite3_exec(c, sql, NULL, NULL, NULL), SQLITE_OK, "pragmas");
    return c;
}

static void *sq_open(const char *dir, int durable) {
    sql_db *d = xcalloc(1, sizeof *d);
    if ((size_t)snprintf(d->path, sizeof d->path, "%s/kv.sqlite", dir) >= sizeof d->path) die("path too long");
    d->durable = durable;
    d->keeper = sq_connect(d);
    sq_check(d->keeper,
             sqlite3_exec(d->keeper, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
                          NULL, NULL, NULL),
             SQLITE_OK, "create table");
    return d;
}

static void sq_close(void *p) {
    sql_db *d = p;
    sq_check(d->keeper, sqlite3_close(d->keeper), SQLITE_OK, "close");
    free(d);
}

static void *sq_session(void *db) {
    sql_sess *s = xcalloc(1, sizeof *s);
    s->c = sq_connect(db);
    sq_check(s->c, sqlite3_prepare_v2(s->c, "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)", -1, &s->put, NULL),
             SQLITE_OK, "prepare put");
    sq_check(s->c, sqlite3_prepare_v2(s->c, "SELECT v FROM kv WHERE k = ?1", -1, &s->get, NULL), SQLITE_OK,
             "prepare get");
    sq_check(s->c, sqlite3_prepare_v2(s->c, "DELETE FROM kv WHERE k = ?1", -1, &s->del, NULL), SQLITE_OK,
             "prepare delete");
    sq_check(s->c, sqlite3_prepare_v2(s->c, "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2", -1, &s->scan, NULL),
             SQLITE_OK, "prepare scan");
    return s;
}

static void sq_session_free(void *p) {
    sql_sess *s = p;
    sq_check(s->c, sqlite3_finalize(s->put), SQLITE_OK, "finalize");
    sq_check(s->c, sqlite3_finalize(s->get), SQLITE_OK, "finalize");
    sq_check(s->c, sqlite3_finalize(s->del), SQLITE_OK, "finalize");
    sq_check(s->c, sqlite3_finalize(s->scan), SQLITE_OK, "finalize");
    sq_check(s->c, sqlite3_close(s->c), SQLITE_OK, "close");
    free(s);
}

static void sq_put(void *p, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    sql_sess *s = p;
    sq_check(s->c, sqlite3_bind_blob(s->put, 1, k, (int)kl, SQLITE_STATIC), SQLITE_OK, "bind");
    sq_check(s->c, sqlite3_bind_blob(s->put, 2, v, (int)vl, SQLITE_STATIC), SQLITE_OK, "bind");
    sq_check(s->c, sqlite3_step(s->put), SQLITE_DONE, "put");
    sq_check(s->c, sqlite3_reset(s->put), SQLITE_OK, "reset");
}

static int sq_get(void *p, const uint8_t *k, size_t kl, uint8_t *buf, size_t cap, size_t *vl) {
    sql_sess *s = p;
    sq_check(s->c, sqlite3_bind_blob(s->get, 1, k, (int)kl, SQLITE_STATIC), SQLITE_OK, "bind");
    int rc = sqlite3_step(s->get);
    int found = 0;
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(s->get, 0);
        size_t n = (size_t)sqlite3_column_bytes(s->get, 0);
        if (n > cap) die("sqlite get: value of %zu bytes exceeds %zu", n, cap);
        memcpy(buf, v, n);
        *vl = n;
        found = 1;
    } else {
        sq_check(s->c, rc, SQLITE_DONE, "get");
    }
    sq_check(s->c, sqlite3_reset(s->get), SQLITE_OK, "reset");
    return found;
}

static void sq_del(void *p, const uint8_t *k, size_t kl) {
    sql_sess *s = p;
    sq_check(s->c, sqlite3_bind_blob(s->del, 1, k, (int)kl, SQLITE_STATIC), SQLITE_OK, "bind");
    sq_check(s->c, sqlite3_step(s->del), SQLITE_DONE, "delete");
    sq_check(s->c, sqlite3_reset(s->del), SQLITE_OK, "reset");
}

static size_t sq_scan(void *p, const uint8_t *start, size_t kl, size_t n, uint8_t *first_key, uint64_t *sum) {
    sql_sess *s = p;
    sq_check(s->c, sqlite3_bind_blob(s->scan, 1, start, (int)kl, SQLITE_STATIC), SQLITE_OK, "bind");
    sq_check(s->c, sqlite3_bind_int64(s->scan, 2, (sqlite3_int64)n), SQLITE_OK, "bind");
    size_t got = 0;
    int rc;
    while ((rc = sqlite3_step(s->scan)) == SQLITE_ROW) {
        const uint8_t *k = sqlite3_column_blob(s->scan, 0);
        size_t klen = (size_t)sqlite3_column_bytes(s->scan, 0);
        const uint8_t *v = sqlite3_column_blob(s->scan, 1);
        size_t vlen = (size_t)sqlite3_column_bytes(s->scan, 1);
        if (got == 0) memcpy(first_key, k, klen < kl ? klen : kl);
        *sum += klen + vlen + k[0] + v[vlen - 1];
        got++;
    }
    sq_check(s->c, rc, SQLITE_DONE, "scan");
    sq_check(s->c, sqlite3_reset(s->scan), SQLITE_OK, "reset");
    return got;
}

static const engine ENGINE_SQLITE = {"sqlite", sq_open, sq_close, sq_session, sq_session_free,
                                     sq_put, sq_get, sq_del, sq_scan, NULL};
#endif

static const engine *const ALL_ENGINES[] = {
    &ENGINE_EDGESTORE,
#ifdef HAVE_ROCKSDB
    &ENGINE_ROCKSDB,
#endif
#ifdef HAVE_LMDB
    &ENGINE_LMDB,
#endif
#ifdef HAVE_LEVELDB
    &ENGINE_LEVELDB,
#endif
#ifdef HAVE_SQLITE
    &ENGINE_SQLITE,
#endif
};
#define N_ENGINES (sizeof ALL_ENGINES / sizeof ALL_ENGINES[0])

/* ------------------------------------------------------------------------ */
/* Workloads and results                                                     */

enum {
    W_FILLSEQ,
    W_FILLRANDOM,
    W_OVERWRITE,
    W_FILLSYNC,
    W_FILLSYNC2,
    W_READHOT,
    W_READREOPEN,
    W_READMISSING,
    W_SCAN10,
    W_SCAN1000,
    W_DELETE,
    W_MIXED,
    W_SYNCREOPEN,
    W_COUNT
};

static const char *const W_NAME[W_COUNT] = {
    "fillseq",        "fillrandom",  "overwrite", "fillsync",   "fillsync x2",  "readrandom hot",
    "readrandom reopen", "readmissing", "scan 10", "scan 1000", "deleterandom", "mixed 95/5 x2",
    "fillsync reopen",
};

typedef struct {
    int done;
    uint64_t ops;
    double secs;
    uint64_t p50_ns, p99_ns;
    uint64_t write_bytes; /* /proc/self/io write_bytes during the phase */
    uint64_t syscall_bytes; /* /proc/self/io wchar during the phase (bytes passed to write calls) */
    uint64_t user_bytes;  /* key+value bytes the phase wrote */
    uint64_t disk_bytes;  /* allocated bytes in the engine's directory after the phase */
    uint64_t rss_peak;    /* VmHWM during the phase minus the RSS before the engine opened */
    int runs0, runs1;     /* sorted runs at the phase's start and end (-1: not reported) */
} result;

typedef struct {
    int ran, ok;
    result w[W_COUNT];
    uint64_t final_disk;  /* after the last close (N - deleted keys live) */
    uint64_t total_write; /* write_bytes from the first open to the last close */
    uint64_t rss_max;
    int hwm_reset_ok;
    char err[512];
} engine_result;

typedef struct {
    size_t klen, vlen;
} kv_size;

static const kv_size SIZES[] = {{16, 100}, {24, 150}};
#define N_SIZES (sizeof SIZES / sizeof SIZES[0])

typedef struct {
    uint64_t fill;        /* N: fills, overwrite */
    uint64_t reads;       /* R: reads, readmissing, deletes, mixed ops */
    uint64_t sync_writes; /* S: durable writes */
    uint64_t scan10, scan1000;
    uint64_t raw_syncs;
    uint64_t raw_seq_bytes;
} counts;

static counts g_n;
static uint32_t *g_perm_fill, *g_perm_over, *g_perm_del;

/* The state of one engine run in the child process. */
typedef struct {
    const engine *e;
    size_t klen, vlen;
    uint64_t rss_base;
    engine_result *res;
    result *cur;
    uint64_t phase_wb0, phase_wc0;
    hist h;
} run;

static void phase_begin(run *r, int w) {
    r->cur = &r->res->w[w];
    memset(r->cur, 0, sizeof *r->cur);
    memset(&r->h, 0, sizeof r->h);
    if (reset_hwm() == 0) r->res->hwm_reset_ok = 1;
    r->phase_wb0 = io_write_bytes();
    r->phase_wc0 = io_counter("wchar");
    r->cur->runs0 = r->e->runs ? r->e->runs() : -1;
}

static void phase_end(run *r, uint64_t ops, uint64_t t0, uint64_t t1, const char *dir) {
    result *c = r->cur;
    c->ops = ops;
    c->secs = (double)(t1 - t0) / 1e9;
    c->p50_ns = h_percentile(&r->h, 0.50);
    c->p99_ns = h_percentile(&r->h, 0.99);
    c->write_bytes = io_write_bytes() - r->phase_wb0;
    c->syscall_bytes = io_counter("wchar") - r->phase_wc0;
    c->disk_bytes = dir_disk_bytes(dir);
    uint64_t hwm = status_bytes("VmHWM");
    c->rss_peak = hwm > r->rss_base ? hwm - r->rss_base : 0;
    c->runs1 = r->e->runs ? r->e->runs() : -1;
    if (c->rss_peak > r->res->rss_max) r->res->rss_max = c->rss_peak;
    c->done = 1;
}

/* "start..end" sorted runs of an engine that reports them, else "-"; a
 * phase that opens its database has no start figure. */
static void fmt_runs(char *out, size_t cap, const result *x) {
    if (x->runs1 < 0)
        snprintf(out, cap, "-");
    else if (x->runs0 < 0)
        snprintf(out, cap, "%d", x->runs1);
    else
        snprintf(out, cap, "%d..%d", x->runs0, x->runs1);
}

static void check_value(run *r, uint64_t i, const uint8_t *buf, size_t len, unsigned gen_lo, unsigned gen_hi,
                        const char *what) {
    if (len != r->vlen) die("%s %s: key %" PRIu64 ": value length %zu, expected %zu", r->e->name, what, i, len, r->vlen);
    for (unsigned g = gen_lo; g <= gen_hi; g++)
        if (memcmp(buf, value_for(i, g), len) == 0) return;
    die("%s %s: key %" PRIu64 ": wrong value", r->e->name, what, i);
}

/* Puts keys order[0..n) (or 0..n in order when order is NULL), generation gen. */
static void do_puts(run *r, void *s, const uint32_t *order, uint64_t n, unsigned gen) {
    uint8_t key[64];
    for (uint64_t j = 0; j < n; j++) {
        uint64_t i = order ? order[j] : j;
        make_key(key, r->klen, 2 * i);
        uint64_t a = now_ns();
        r->e->put(s, key, r->klen, value_for(i, gen), r->vlen);
        h_add(&r->h, now_ns() - a);
    }
    r->cur->user_bytes = n * (r->klen + r->vlen);
}

/* Phase w: open the store in `sub` in durable mode, S puts of generation
 * `gen` in random order from one thread, close. */
static void sync_puts_phase(run *r, int w, const char *sub, unsigned gen) {
    phase_begin(r, w);
    void *db = r->e->open(sub, 1);
    void *s = r->e->session(db);
    uint64_t t0 = now_ns();
    do_puts(r, s, g_perm_fill, g_n.sync_writes, gen);
    uint64_t t1 = now_ns();
    r->e->session_free(s);
    r->e->close(db);
    phase_end(r, g_n.sync_writes, t0, t1, sub);
}

static void do_reads(run *r, void *s, uint64_t n, uint64_t seed, unsigned gen_lo, unsigned gen_hi) {
    uint8_t key[64], buf[512];
    uint64_t rs = seed;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t i = rand_below(&rs, g_n.fill);
        make_key(key, r->klen, 2 * i);
        size_t len = 0;
        uint64_t a = now_ns();
        int found = r->e->get(s, key, r->klen, buf, sizeof buf, &len);
        h_add(&r->h, now_ns() - a);
        if (!found) die("%s readrandom: key %" PRIu64 " not found", r->e->name, i);
        check_value(r, i, buf, len, gen_lo, gen_hi, "readrandom");
    }
}

/* ---- threaded phases: fillsync x2 and mixed ------------------------------ */

typedef struct {
    run *r;
    void *db;
    int kind; /* 0 = durable puts of order[from..to), 1 = mixed */
    uint64_t from, to;
    uint64_t seed;
    hist h;
    uint64_t gets, puts;
} worker;

static void *worker_main(void *p) {
    worker *w = p;
    run *r = w->r;
    void *s = r->e->session(w->db);
    uint8_t key[64], buf[512];
    if (w->kind == 0) {
        for (uint64_t j = w->from; j < w->to; j++) {
            uint64_t i = g_perm_fill[j];
            make_key(key, r->klen, 2 * i);
            uint64_t a = now_ns();
            r->e->put(s, key, r->klen, value_for(i, 0), r->vlen);
            h_add(&w->h, now_ns() - a);
            w->puts++;
        }
    } else {
        uint64_t rs = w->seed;
        for (uint64_t j = w->from; j < w->to; j++) {
            uint64_t dice = rand_below(&rs, 100);
            uint64_t i = rand_below(&rs, g_n.fill);
            make_key(key, r->klen, 2 * i);
            if (dice < 5) {
                uint64_t a = now_ns();
                r->e->put(s, key, r->klen, value_for(i, 2), r->vlen);
                h_add(&w->h, now_ns() - a);
                w->puts++;
            } else {
                size_t len = 0;
                uint64_t a = now_ns();
                int found = r->e->get(s, key, r->klen, buf, sizeof buf, &len);
                h_add(&w->h, now_ns() - a);
                if (!found) die("%s mixed: key %" PRIu64 " not found", r->e->name, i);
                check_value(r, i, buf, len, 1, 2, "mixed read");
                w->gets++;
            }
        }
    }
    r->e->session_free(s);
    return NULL;
}

/* Runs two workers over [0, n) split in halves; returns the wall time. */
static void run_two(run *r, void *db, int kind, uint64_t n, uint64_t *t0, uint64_t *t1) {
    worker *ws = xcalloc(2, sizeof *ws);
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        ws[t].r = r;
        ws[t].db = db;
        ws[t].kind = kind;
        ws[t].from = n * (uint64_t)t / 2;
        ws[t].to = n * (uint64_t)(t + 1) / 2;
        ws[t].seed = 0xC0FFEE00ull + (uint64_t)t;
    }
    *t0 = now_ns();
    for (int t = 0; t < 2; t++) {
        int rc = pthread_create(&th[t], NULL, worker_main, &ws[t]);
        if (rc != 0) die("pthread_create: %s", strerror(rc));
    }
    for (int t = 0; t < 2; t++) {
        int rc = pthread_join(th[t], NULL);
        if (rc != 0) die("pthread_join: %s", strerror(rc));
    }
    *t1 = now_ns();
    uint64_t puts = 0;
    for (int t = 0; t < 2; t++) {
        h_merge(&r->h, &ws[t].h);
        puts += ws[t].puts;
    }
    r->cur->user_bytes = puts * (r->klen + r->vlen);
    free(ws);
}

/* ---- one engine, one key/value size (runs in a forked child) ------------- */

static void path_join(char *out, size_t cap, const char *a, const char *b) {
    if ((size_t)snprintf(out, cap, "%s/%s", a, b) >= cap) die("path too long: %s/%s", a, b);
}

static void run_engine(const engine *e, size_t klen, size_t vlen, const char *dir, engine_result *res) {
    run R;
    memset(&R, 0, sizeof R);
    run *r = &R;
    r->e = e;
    r->klen = klen;
    r->vlen = vlen;
    r->res = res;
    r->rss_base = status_bytes("VmRSS");
    uint64_t wb_start = io_write_bytes();
    char sub[4096];
    uint64_t t0, t1;
    void *db, *s;
    uint8_t key[64], first[64];

    /* fillseq: buffered, N puts in key order, in a fresh directory. */
    path_join(sub, sizeof sub, dir, "fillseq");
    mkdir_or_die(sub);
    phase_begin(r, W_FILLSEQ);
    db = e->open(sub, 0);
    s = e->session(db);
    t0 = now_ns();
    do_puts(r, s, NULL, g_n.fill, 0);
    t1 = now_ns();
    e->session_free(s);
    e->close(db);
    phase_end(r, g_n.fill, t0, t1, sub);
    rm_rf(sub);

    /* fillsync: durable, S puts in random order, one thread. */
    path_join(sub, sizeof sub, dir, "fillsync");
    mkdir_or_die(sub);
    sync_puts_phase(r, W_FILLSYNC, sub, 0);
    rm_rf(sub);

    /* fillsync x2: durable, S puts in random order, two threads. */
    path_join(sub, sizeof sub, dir, "fillsync2");
    mkdir_or_die(sub);
    phase_begin(r, W_FILLSYNC2);
    db = e->open(sub, 1);
    run_two(r, db, 0, g_n.sync_writes, &t0, &t1);
    e->close(db);
    phase_end(r, g_n.sync_writes, t0, t1, sub);
    rm_rf(sub);

    /* The main data set: fillrandom, then everything else on it. */
    path_join(sub, sizeof sub, dir, "main");
    mkdir_or_die(sub);
    phase_begin(r, W_FILLRANDOM);
    db = e->open(sub, 0);
    s = e->session(db);
    t0 = now_ns();
    do_puts(r, s, g_perm_fill, g_n.fill, 0);
    t1 = now_ns();
    phase_end(r, g_n.fill, t0, t1, sub);

    phase_begin(r, W_OVERWRITE);
    t0 = now_ns();
    do_puts(r, s, g_perm_over, g_n.fill, 1);
    t1 = now_ns();
    phase_end(r, g_n.fill, t0, t1, sub);

    phase_begin(r, W_READHOT);
    t0 = now_ns();
    do_reads(r, s, g_n.reads, 0xA11CE, 1, 1);
    t1 = now_ns();
    phase_end(r, g_n.reads, t0, t1, sub);

    phase_begin(r, W_READMISSING);
    {
        uint8_t buf[512];
        uint64_t rs = 0xB0B;
        t0 = now_ns();
        for (uint64_t j = 0; j < g_n.reads; j++) {
            uint64_t i = rand_below(&rs, g_n.fill);
            make_key(key, klen, 2 * i + 1);
            size_t len = 0;
            uint64_t a = now_ns();
            int found = e->get(s, key, klen, buf, sizeof buf, &len);
            h_add(&r->h, now_ns() - a);
            if (found) die("%s readmissing: absent key %" PRIu64 " was found", e->name, 2 * i + 1);
        }
        t1 = now_ns();
    }
    phase_end(r, g_n.reads, t0, t1, sub);

    for (int w = W_SCAN10; w <= W_SCAN1000; w++) {
        size_t len = (w == W_SCAN10) ? 10 : 1000;
        uint64_t n = (w == W_SCAN10) ? g_n.scan10 : g_n.scan1000;
        uint64_t rs = 0x5CA9 + (uint64_t)w, sum = 0;
        phase_begin(r, w);
        t0 = now_ns();
        for (uint64_t j = 0; j < n; j++) {
            uint64_t i = rand_below(&rs, g_n.fill - len + 1);
            make_key(key, klen, 2 * i);
            uint64_t a = now_ns();
            size_t got = e->scan(s, key, klen, len, first, &sum);
            h_add(&r->h, now_ns() - a);
            if (got != len) die("%s scan: %zu pairs from key %" PRIu64 ", expected %zu", e->name, got, i, len);
            if (memcmp(first, key, klen) != 0) die("%s scan: first key is not the start key %" PRIu64, e->name, i);
        }
        t1 = now_ns();
        if (sum == 0) die("%s scan: nothing read", e->name);
        phase_end(r, n, t0, t1, sub);
    }

    /* Close, reopen (engine caches cold; the OS page cache is left as is). */
    e->session_free(s);
    e->close(db);
    phase_begin(r, W_READREOPEN);
    db = e->open(sub, 0);
    s = e->session(db);
    t0 = now_ns();
    do_reads(r, s, g_n.reads, 0xD00D, 1, 1);
    t1 = now_ns();
    phase_end(r, g_n.reads, t0, t1, sub);

    /* mixed: two threads, 95% reads / 5% overwrites, R operations in all. */
    phase_begin(r, W_MIXED);
    run_two(r, db, 1, g_n.reads, &t0, &t1);
    phase_end(r, g_n.reads, t0, t1, sub);

    /* deleterandom: R deletes of distinct existing keys. */
    phase_begin(r, W_DELETE);
    t0 = now_ns();
    for (uint64_t j = 0; j < g_n.reads; j++) {
        uint64_t i = g_perm_del[j];
        make_key(key, klen, 2 * i);
        uint64_t a = now_ns();
        e->del(s, key, klen);
        h_add(&r->h, now_ns() - a);
    }
    t1 = now_ns();
    r->cur->user_bytes = g_n.reads * klen;
    phase_end(r, g_n.reads, t0, t1, sub);
    {
        /* The deletes took effect; an untouched key is still there. */
        uint8_t buf[512];
        size_t len = 0;
        make_key(key, klen, 2 * (uint64_t)g_perm_del[0]);
        if (e->get(s, key, klen, buf, sizeof buf, &len)) die("%s: a deleted key is still found", e->name);
        if (g_n.reads < g_n.fill) {
            uint64_t keep = g_perm_del[g_n.fill - 1];
            make_key(key, klen, 2 * keep);
            if (!e->get(s, key, klen, buf, sizeof buf, &len)) die("%s: a live key is missing after deletes", e->name);
        }
    }
    e->session_free(s);
    e->close(db);

    /* fillsync reopen: the data set reopened in durable mode, S overwrites in
     * random order, one thread: durable writes of a store that has been in
     * use (fillsync measures a new store's first writes). */
    sync_puts_phase(r, W_SYNCREOPEN, sub, 2);
    res->final_disk = dir_disk_bytes(sub);
    res->total_write = io_write_bytes() - wb_start;
    res->ok = 1;
}

/* ------------------------------------------------------------------------ */
/* The disk itself                                                           */

typedef struct {
    uint64_t append_p50, append_p99, append_n;
    uint64_t over_p50, over_p99;
    double seq_mb_s;
    uint64_t seq_bytes;
} raw_result;

static void xpwrite(int fd, const void *b, size_t n, off_t off, const char *path) {
    ssize_t w = pwrite(fd, b, n, off);
    if (w < 0 || (size_t)w != n) die("pwrite %s: %s", path, w < 0 ? strerror(errno) : "short write");
}

static void xfdatasync(int fd, const char *path) {
    if (fdatasync(fd) != 0) die("fdatasync %s: %s", path, strerror(errno));
}

static void raw_limits(const char *dir, raw_result *out) {
    char path[4096];
    path_join(path, sizeof path, dir, "raw.dat");
    uint8_t *block = g_value_pool; /* 4 KiB of random bytes */
    uint64_t n = g_n.raw_syncs;
    hist *h = xcalloc(1, sizeof *h);

    /* 1. Append 4 KiB + fdatasync: the file grows each time (what a WAL does). */
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = now_ns();
        xpwrite(fd, block, 4096, (off_t)(i * 4096), path);
        xfdatasync(fd, path);
        h_add(h, now_ns() - a);
    }
    out->append_p50 = h_percentile(h, 0.5);
    out->append_p99 = h_percentile(h, 0.99);
    out->append_n = n;

    /* 2. Overwrite 4 KiB in place + fdatasync (the file is already allocated). */
    memset(h, 0, sizeof *h);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = now_ns();
        xpwrite(fd, block + 64, 4096, (off_t)(i * 4096), path);
        xfdatasync(fd, path);
        h_add(h, now_ns() - a);
    }
    out->over_p50 = h_percentile(h, 0.5);
    out->over_p99 = h_percentile(h, 0.99);
    if (close(fd) != 0) die("close %s: %s", path, strerror(errno));
    if (unlink(path) != 0) die("unlink %s: %s", path, strerror(errno));

    /* 3. Sequential write bandwidth: 1 MiB writes, one fdatasync at the end. */
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    size_t chunk = 1u << 20;
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < g_n.raw_seq_bytes; off += chunk)
        xpwrite(fd, g_value_pool, chunk, (off_t)off, path);
    xfdatasync(fd, path);
    uint64_t t1 = now_ns();
    out->seq_bytes = g_n.raw_seq_bytes;
    out->seq_mb_s = (double)g_n.raw_seq_bytes / 1048576.0 / ((double)(t1 - t0) / 1e9);
    if (close(fd) != 0) die("close %s: %s", path, strerror(errno));
    if (unlink(path) != 0) die("unlink %s: %s", path, strerror(errno));
    free(h);
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */

static int g_markdown;

static void fmt_ops(char *b, size_t n, double v) {
    if (v >= 1e6) snprintf(b, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(b, n, "%.1fk", v / 1e3);
    else snprintf(b, n, "%.0f", v);
}

static void fmt_us(char *b, size_t n, uint64_t ns) {
    double us = (double)ns / 1e3;
    if (us >= 100) snprintf(b, n, "%.0f", us);
    else if (us >= 10) snprintf(b, n, "%.1f", us);
    else snprintf(b, n, "%.2f", us);
}

static double ops_per_s(const result *x) { return x->secs > 0 ? (double)x->ops / x->secs : 0; }

static int rocksdb_index(void) {
    for (size_t e = 0; e < N_ENGINES; e++)
        if (strcmp(ALL_ENGINES[e]->name, "rocksdb") == 0) return (int)e;
    return -1;
}

static int engine_index(const char *name) {
    for (size_t e = 0; e < N_ENGINES; e++)
        if (strcmp(ALL_ENGINES[e]->name, name) == 0) return (int)e;
    return -1;
}

/* Prints one row; cells separated by " | " in markdown, padded otherwise. */
static const char *g_align; /* 'l' or 'r' per column of the table being printed */

static void row(int ncols, const int *widths, const char *const *cells) {
    if (g_markdown) {
        printf("|");
        for (int i = 0; i < ncols; i++) printf(" %s |", cells[i]);
        printf("\n");
    } else {
        for (int i = 0; i < ncols; i++) {
            int left = g_align ? g_align[i] == 'l' : i == 0;
            printf(left ? "%s%-*s" : "%s%*s", i ? "  " : "", widths[i], cells[i]);
        }
        printf("\n");
    }
}

static void header(int ncols, const int *widths, const char *const *cells, const char *align) {
    g_align = align;
    row(ncols, widths, cells);
    if (g_markdown) {
        printf("|");
        for (int i = 0; i < ncols; i++) printf("%s|", align[i] == 'l' ? "---" : "---:");
        printf("\n");
    }
}

static void print_size_tables(size_t si, engine_result (*res)[N_ENGINES], const int *enabled) {
    const kv_size *sz = &SIZES[si];
    int ri = rocksdb_index();
    int have_r = ri >= 0 && enabled[ri] && res[si][ri].ok;
    printf("\n%s%zu B keys, %zu B values: N=%" PRIu64 " fills, R=%" PRIu64 " reads/deletes/mixed ops, S=%" PRIu64
           " durable writes, %" PRIu64 " scans of 10, %" PRIu64 " scans of 1000\n\n",
           g_markdown ? "#### " : "== ", sz->klen, sz->vlen, g_n.fill, g_n.reads, g_n.sync_writes, g_n.scan10,
           g_n.scan1000);

    /* Summary matrix: ops/s and ratio to RocksDB. */
    {
        int ncols = 1 + 0;
        const char *cells[16];
        int widths[16];
        char buf[16][64];
        cells[0] = "ops/s (x RocksDB)";
        widths[0] = 18;
        char align[16];
        align[0] = 'l';
        for (size_t e = 0; e < N_ENGINES; e++) {
            if (!enabled[e]) continue;
            cells[ncols] = ALL_ENGINES[e]->name;
            widths[ncols] = 15;
            align[ncols] = 'r';
            ncols++;
        }
        header(ncols, widths, cells, align);
        for (int w = 0; w < W_COUNT; w++) {
            int c = 1;
            cells[0] = W_NAME[w];
            for (size_t e = 0; e < N_ENGINES; e++) {
                if (!enabled[e]) continue;
                const engine_result *er = &res[si][e];
                if (!er->w[w].done) {
                    snprintf(buf[c], sizeof buf[c], "%s", er->ran ? "FAILED" : "-");
                } else {
                    char o[32];
                    fmt_ops(o, sizeof o, ops_per_s(&er->w[w]));
                    if (have_r && res[si][ri].w[w].done)
                        snprintf(buf[c], sizeof buf[c], "%s (%.2f)", o,
                                 ops_per_s(&er->w[w]) / ops_per_s(&res[si][ri].w[w]));
                    else
                        snprintf(buf[c], sizeof buf[c], "%s", o);
                }
                cells[c] = buf[c];
                c++;
            }
            row(ncols, widths, cells);
        }
    }

    /* Detail: one row per workload and engine. */
    printf("\n");
    {
        enum { NCOL = 12 };
        const char *hdr[] = {"workload", "engine", "ops/s", "x RocksDB", "p50 us", "p99 us",
                             "MB to disk", "WA", "syscall MB", "disk MiB", "peak RSS MiB", "runs"};
        int widths[] = {17, 9, 8, 9, 8, 8, 10, 6, 10, 8, 12, 7};
        header(NCOL, widths, hdr, "llrrrrrrrrrr");
        for (int w = 0; w < W_COUNT; w++) {
            for (size_t e = 0; e < N_ENGINES; e++) {
                if (!enabled[e]) continue;
                const engine_result *er = &res[si][e];
                const result *x = &er->w[w];
                char c[NCOL][32];
                const char *cells[NCOL];
                snprintf(c[0], 32, "%s", W_NAME[w]);
                snprintf(c[1], 32, "%s", ALL_ENGINES[e]->name);
                if (!x->done) {
                    for (int i = 2; i < NCOL; i++) snprintf(c[i], 32, "%s", i == 2 ? (er->ran ? "FAILED" : "-") : "");
                } else {
                    fmt_ops(c[2], 32, ops_per_s(x));
                    if (have_r && res[si][ri].w[w].done)
                        snprintf(c[3], 32, "%.2f", ops_per_s(x) / ops_per_s(&res[si][ri].w[w]));
                    else
                        snprintf(c[3], 32, "-");
                    fmt_us(c[4], 32, x->p50_ns);
                    fmt_us(c[5], 32, x->p99_ns);
                    snprintf(c[6], 32, "%.1f", (double)x->write_bytes / 1e6);
                    if (x->user_bytes)
                        snprintf(c[7], 32, "%.2f", (double)x->write_bytes / (double)x->user_bytes);
                    else
                        snprintf(c[7], 32, "-");
                    snprintf(c[8], 32, "%.1f", (double)x->syscall_bytes / 1e6);
                    snprintf(c[9], 32, "%.1f", (double)x->disk_bytes / 1048576.0);
                    snprintf(c[10], 32, "%.1f", (double)x->rss_peak / 1048576.0);
                    fmt_runs(c[11], 32, x);
                }
                for (int i = 0; i < NCOL; i++) cells[i] = c[i];
                row(NCOL, widths, cells);
            }
        }
    }

    /* Footprint per engine. */
    printf("\n");
    {
        const char *hdr[] = {"engine", "final disk MiB", "MB written in all", "max peak RSS MiB", "error"};
        int widths[] = {9, 14, 17, 16, 5};
        header(5, widths, hdr, "lrrrl");
        for (size_t e = 0; e < N_ENGINES; e++) {
            if (!enabled[e]) continue;
            const engine_result *er = &res[si][e];
            char c[4][32];
            const char *cells[5];
            snprintf(c[0], 32, "%s", ALL_ENGINES[e]->name);
            if (er->ok) {
                snprintf(c[1], 32, "%.1f", (double)er->final_disk / 1048576.0);
                snprintf(c[2], 32, "%.1f", (double)er->total_write / 1e6);
            } else {
                snprintf(c[1], 32, "-");
                snprintf(c[2], 32, "-");
            }
            snprintf(c[3], 32, "%.1f", (double)er->rss_max / 1048576.0);
            for (int i = 0; i < 4; i++) cells[i] = c[i];
            cells[4] = er->ok ? "" : (er->err[0] ? er->err : (er->ran ? "crashed" : "not run"));
            row(5, widths, cells);
        }
    }
}

/* The targets for edgestore, checked against this run. */
static void print_targets(engine_result (*res)[N_ENGINES], const int *enabled, const raw_result *raw) {
    int es = engine_index("edgestore"), rk = engine_index("rocksdb"), lm = engine_index("lmdb");
    printf("\n%sTargets (issue 8), edgestore vs peers in this run\n\n", g_markdown ? "#### " : "== ");
    const char *hdr[] = {"size", "target", "measured", "met"};
    int widths[] = {8, 58, 30, 4};
    header(4, widths, hdr, "llll");
    for (size_t si = 0; si < N_SIZES; si++) {
        if (!res[si][es].ran) continue;
        char sz[16];
        snprintf(sz, sizeof sz, "%zu/%zu", SIZES[si].klen, SIZES[si].vlen);
        const engine_result *E = &res[si][es];
        const engine_result *Rk = (rk >= 0 && enabled[rk] && res[si][rk].ok) ? &res[si][rk] : NULL;
        const engine_result *Lm = (lm >= 0 && enabled[lm] && res[si][lm].ok) ? &res[si][lm] : NULL;
        struct {
            const char *what;
            int w;
            const engine_result *peer;
            double need;
        } ratio_targets[] = {
            {"fillrandom >= 1.0x RocksDB", W_FILLRANDOM, Rk, 1.0},
            {"readrandom hot >= 1.0x RocksDB", W_READHOT, Rk, 1.0},
            {"readrandom reopen >= 1.0x RocksDB", W_READREOPEN, Rk, 1.0},
            {"readrandom hot >= 0.7x LMDB", W_READHOT, Lm, 0.7},
            {"readrandom reopen >= 0.7x LMDB", W_READREOPEN, Lm, 0.7},
            {"scan 10 >= 0.7x LMDB", W_SCAN10, Lm, 0.7},
            {"scan 1000 >= 0.7x LMDB", W_SCAN1000, Lm, 0.7},
        };
        for (size_t t = 0; t < sizeof ratio_targets / sizeof ratio_targets[0]; t++) {
            char m[64];
            const char *met = "-";
            const result *a = &E->w[ratio_targets[t].w];
            if (ratio_targets[t].peer && a->done && ratio_targets[t].peer->w[ratio_targets[t].w].done) {
                double q = ops_per_s(a) / ops_per_s(&ratio_targets[t].peer->w[ratio_targets[t].w]);
                snprintf(m, sizeof m, "%.2fx", q);
                met = q >= ratio_targets[t].need ? "yes" : "no";
            } else {
                snprintf(m, sizeof m, "not measured");
            }
            const char *cells[] = {sz, ratio_targets[t].what, m, met};
            row(4, widths, cells);
        }
        for (int k = 0; k < 4; k++) {
            int w = k < 2 ? W_FILLSYNC : W_SYNCREOPEN, floor = k % 2;
            uint64_t raw_p50 = floor ? raw->over_p50 : raw->append_p50;
            char m[64], what[80];
            const char *met = "-";
            if (E->w[w].done && raw_p50) {
                double q = (double)E->w[w].p50_ns / (double)raw_p50;
                char a[16], b[16];
                fmt_us(a, sizeof a, E->w[w].p50_ns);
                fmt_us(b, sizeof b, raw_p50);
                snprintf(m, sizeof m, "%s us / %s us = %.2fx", a, b, q);
                met = q <= 1.2 ? "yes" : "no";
            } else {
                snprintf(m, sizeof m, "not measured");
            }
            snprintf(what, sizeof what, "%s p50 <= 1.2x raw 4 KiB %s+fdatasync", W_NAME[w],
                     floor ? "overwrite" : "append");
            const char *cells[] = {sz, what, m, met};
            row(4, widths, cells);
        }
        {
            char m[64];
            const char *met = "-";
            if (E->w[W_FILLSYNC].done && E->w[W_FILLSYNC2].done) {
                double q = ops_per_s(&E->w[W_FILLSYNC2]) / ops_per_s(&E->w[W_FILLSYNC]);
                snprintf(m, sizeof m, "%.2fx one writer", q);
                met = q > 1.0 ? "yes" : "no";
            } else {
                snprintf(m, sizeof m, "not measured");
            }
            const char *cells[] = {sz, "fillsync x2 > fillsync (group commit)", m, met};
            row(4, widths, cells);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */

static void usage(FILE *f) {
    fprintf(f,
            "usage: db_bench [--quick] [--dir DIR] [--markdown] [--engines a,b,...] [--sizes 16x100,24x150]\n"
            "                [--fill N] [--reads R] [--sync-writes S] [--no-raw] [--keep]\n"
            "                [--es-compaction-ms MS]\n"
            "  --quick            CI size: N=100000, R=40000, S=1000 (default: N=1000000, R=200000, S=5000)\n"
            "  --dir DIR          parent of the run directory (default $TMPDIR or /var/tmp); one fresh\n"
            "                     subdirectory per key/value size and engine, removed at the end\n"
            "  --markdown         print the tables as markdown\n"
            "  --engines LIST     subset of the engines built in:");
    for (size_t e = 0; e < N_ENGINES; e++) fprintf(f, " %s", ALL_ENGINES[e]->name);
    fprintf(f,
            "\n"
            "  --sizes LIST       subset of 16x100,24x150\n"
            "  --fill N           keys in the data set (fillseq, fillrandom, overwrite)\n"
            "  --reads R          readrandom, readmissing, deleterandom and mixed operations\n"
            "  --sync-writes S    durable writes in fillsync, fillsync x2 and fillsync reopen\n"
            "  --no-raw           skip the raw disk measurements\n"
            "  --keep             keep the database directories\n"
            "  --es-compaction-ms edgestore background compaction interval (default 1000; 0 = off)\n");
}

static int list_has(const char *list, const char *item) {
    if (!list) return 1;
    size_t n = strlen(item);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, item, n) == 0) return 1;
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

static uint64_t parse_u64(const char *s, const char *opt) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) die("%s: not a number: %s", opt, s);
    return v;
}

int main(int argc, char **argv) {
    const char *parent = NULL, *engines = NULL, *sizes = NULL;
    int quick = 0, keep = 0, no_raw = 0;
    uint64_t fill = 0, reads = 0, syncs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEEDV()                                   \
    do {                                          \
        if (!v) die("%s needs a value", a);       \
        i++;                                      \
    } while (0)
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--markdown")) g_markdown = 1;
        else if (!strcmp(a, "--keep")) keep = 1;
        else if (!strcmp(a, "--no-raw")) no_raw = 1;
        else if (!strcmp(a, "--dir")) { NEEDV(); parent = v; }
        else if (!strcmp(a, "--engines")) { NEEDV(); engines = v; }
        else if (!strcmp(a, "--sizes")) { NEEDV(); sizes = v; }
        else if (!strcmp(a, "--fill")) { NEEDV(); fill = parse_u64(v, a); }
        else if (!strcmp(a, "--reads")) { NEEDV(); reads = parse_u64(v, a); }
        else if (!strcmp(a, "--sync-writes")) { NEEDV(); syncs = parse_u64(v, a); }
        else if (!strcmp(a, "--es-compaction-ms")) { NEEDV(); g_es_compaction_ms = parse_u64(v, a); }
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else { usage(stderr); return 2; }
#undef NEEDV
    }
    g_n.fill = fill ? fill : (quick ? 100000 : 1000000);
    g_n.reads = reads ? reads : (quick ? 40000 : 200000);
    g_n.sync_writes = syncs ? syncs : (quick ? 1000 : 5000);
    if (g_n.fill < 1000 || g_n.fill > UINT32_MAX) die("--fill must be in [1000, 2^32)");
    if (g_n.reads > g_n.fill) die("--reads must not exceed --fill (deletes remove distinct keys)");
    if (g_n.sync_writes > g_n.fill) die("--sync-writes must not exceed --fill");
    if (g_n.reads < 100 || g_n.sync_writes < 2) die("--reads >= 100 and --sync-writes >= 2 required");
    g_n.scan10 = g_n.reads / 10;
    g_n.scan1000 = g_n.reads / 100;
    g_n.raw_syncs = quick ? 1000 : 5000;
    g_n.raw_seq_bytes = (uint64_t)(quick ? 64 : 256) << 20;

    int enabled[N_ENGINES];
    for (size_t e = 0; e < N_ENGINES; e++) enabled[e] = list_has(engines, ALL_ENGINES[e]->name);
    if (engines) {
        for (const char *p = engines; *p;) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            int found = 0;
            for (size_t e = 0; e < N_ENGINES; e++)
                if (strlen(ALL_ENGINES[e]->name) == len && !strncmp(p, ALL_ENGINES[e]->name, len)) found = 1;
            if (!found) die("--engines: '%.*s' is not built into this db_bench", (int)len, p);
            if (!c) break;
            p = c + 1;
        }
    }
    int size_on[N_SIZES];
    for (size_t s = 0; s < N_SIZES; s++) {
        char name[32];
        snprintf(name, sizeof name, "%zux%zu", SIZES[s].klen, SIZES[s].vlen);
        size_on[s] = list_has(sizes, name);
    }

    /* Data shared by every engine (inherited by the forked children). */
    g_value_pool = xmalloc(VALUE_POOL + 4096);
    {
        uint64_t s = 0x5EED;
        for (size_t i = 0; i < VALUE_POOL + 4096; i += 8) {
            uint64_t x = splitmix64(&s);
            memcpy(g_value_pool + i, &x, 8);
        }
    }
    g_perm_fill = make_permutation(g_n.fill, 1);
    g_perm_over = make_permutation(g_n.fill, 2);
    g_perm_del = make_permutation(g_n.fill, 3);

    /* Run directory. */
    char base[4096];
    if (!parent) {
        parent = getenv("TMPDIR");
        if (!parent || !*parent) parent = "/var/tmp";
    }
    if ((size_t)snprintf(base, sizeof base, "%s/db_bench.XXXXXX", parent) >= sizeof base) die("--dir too long");
    if (!mkdtemp(base)) die("mkdtemp %s: %s", base, strerror(errno));

    struct utsname un;
    if (uname(&un) != 0) die("uname: %s", strerror(errno));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("%sdb_bench: edgestore %s", g_markdown ? "#### " : "", edgestore_version());
#ifdef HAVE_ROCKSDB
    printf(", RocksDB %s", BENCH_ROCKSDB_VERSION);
#endif
#ifdef HAVE_LMDB
    printf(", LMDB %d.%d.%d", MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH);
#endif
#ifdef HAVE_LEVELDB
    printf(", LevelDB %d.%d", leveldb_major_version(), leveldb_minor_version());
#endif
#ifdef HAVE_SQLITE
    printf(", SQLite %s", sqlite3_libversion());
#endif
    char load[64];
    load_average(load, sizeof load);
    time_t started = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&started));
    printf("\n%s%s %s %s, %ld CPUs online, run directory %s (%s), started %s, load average %s\n",
           g_markdown ? "\n" : "", un.sysname, un.release, un.machine, ncpu, base, fs_type_name(base), when, load);
    if (!strcmp(fs_type_name(base), "tmpfs"))
        printf("WARNING: %s is tmpfs: fdatasync costs nothing there; use --dir on a real disk\n", base);
    fflush(stdout);

    raw_result raw;
    memset(&raw, 0, sizeof raw);
    if (!no_raw) {
        fprintf(stderr, "db_bench: raw disk limits...\n");
        raw_limits(base, &raw);
        printf("\n%sThe disk (same directory): %" PRIu64 " x 4 KiB pwrite+fdatasync, %" PRIu64
               " MiB sequential in 1 MiB writes + one fdatasync\n\n",
               g_markdown ? "#### " : "== ", raw.append_n, raw.seq_bytes >> 20);
        const char *hdr[] = {"raw disk", "p50 us", "p99 us"};
        int widths[] = {36, 8, 8, 14};
        header(3, widths, hdr, "lrr");
        char a[3][32];
        const char *cells[3];
        fmt_us(a[1], 32, raw.append_p50);
        fmt_us(a[2], 32, raw.append_p99);
        cells[0] = "4 KiB append + fdatasync";
        cells[1] = a[1];
        cells[2] = a[2];
        row(3, widths, cells);
        fmt_us(a[1], 32, raw.over_p50);
        fmt_us(a[2], 32, raw.over_p99);
        cells[0] = "4 KiB overwrite in place + fdatasync";
        row(3, widths, cells);
        snprintf(a[0], 32, "%.0f MB/s", raw.seq_mb_s * 1.048576);
        cells[0] = "sequential write bandwidth";
        cells[1] = a[0];
        cells[2] = "";
        row(3, widths, cells);
        fflush(stdout);
    }

    engine_result(*res)[N_ENGINES] =
        mmap(NULL, sizeof(engine_result) * N_SIZES * N_ENGINES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(res, 0, sizeof(engine_result) * N_SIZES * N_ENGINES);

    int failures = 0;
    for (size_t si = 0; si < N_SIZES; si++) {
        if (!size_on[si]) continue;
        char sdir[4096];
        char sname[32];
        snprintf(sname, sizeof sname, "%zux%zu", SIZES[si].klen, SIZES[si].vlen);
        path_join(sdir, sizeof sdir, base, sname);
        mkdir_or_die(sdir);
        for (size_t e = 0; e < N_ENGINES; e++) {
            if (!enabled[e]) continue;
            char edir[4096];
            path_join(edir, sizeof edir, sdir, ALL_ENGINES[e]->name);
            mkdir_or_die(edir);
            fprintf(stderr, "db_bench: %s %s...\n", sname, ALL_ENGINES[e]->name);
            fflush(NULL);
            engine_result *er = &res[si][e];
            er->ran = 1;
            uint64_t t0 = now_ns();
            pid_t pid = fork();
            if (pid < 0) die("fork: %s", strerror(errno));
            if (pid == 0) {
                g_err_slot = er->err;
                g_err_slot_len = sizeof er->err;
                run_engine(ALL_ENGINES[e], SIZES[si].klen, SIZES[si].vlen, edir, er);
                fflush(NULL);
                _exit(0);
            }
            int status = 0;
            if (waitpid(pid, &status, 0) != pid) die("waitpid: %s", strerror(errno));
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !er->ok) {
                er->ok = 0;
                if (!er->err[0] && WIFSIGNALED(status))
                    snprintf(er->err, sizeof er->err, "killed by signal %d", WTERMSIG(status));
                fprintf(stderr, "db_bench: %s %s FAILED: %s\n", sname, ALL_ENGINES[e]->name, er->err);
                failures++;
            }
            fprintf(stderr, "db_bench: %s %s done in %.1f s\n", sname, ALL_ENGINES[e]->name,
                    (double)(now_ns() - t0) / 1e9);
            if (!keep) rm_rf(edir);
        }
        print_size_tables(si, res, enabled);
        fflush(stdout);
    }
    if (enabled[engine_index("edgestore")]) print_targets(res, enabled, &raw);
    int hwm_ok = 0;
    for (size_t si = 0; si < N_SIZES; si++)
        for (size_t e = 0; e < N_ENGINES; e++) hwm_ok |= res[si][e].hwm_reset_ok;
    if (!hwm_ok)
        printf("\nnote: /proc/self/clear_refs was not writable: peak RSS is the process peak so far, not per phase\n");
    load_average(load, sizeof load);
    printf("\nrun took %.0f s; load average at the end %s (other processes on the machine skew the numbers)\n",
           difftime(time(NULL), started), load);
    if (!keep) rm_rf(base);
    else printf("\nkept %s\n", base);
    if (munmap(res, sizeof(engine_result) * N_SIZES * N_ENGINES) != 0) die("munmap: %s", strerror(errno));
    free(g_perm_fill);
    free(g_perm_over);
    free(g_perm_del);
    free(g_value_pool);
    return failures ? 1 : 0;
}
