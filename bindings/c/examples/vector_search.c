/* vector_search: embeddings next to key-value data. A device keeps one
 * embedding per log line (here: 8-dimensional toy embeddings), with metadata
 * and a retention TTL, and searches them by similarity with filters.
 *
 * Shows: creating a cosine collection, batch put with metadata and TTL,
 * k-nearest search into caller arrays, a metadata filter and a key-prefix
 * filter, batch search, a search through a snapshot, reading a vector and a
 * metadata field back, and the index counters.
 *
 * Build: cc -std=c99 vector_search.c $(pkg-config --cflags --libs edgestore) -o vector_search
 * Run:   ./vector_search [database-directory]
 */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgestore.h"

static void check(edgestore_status st, const char *what) {
    if (st != EDGESTORE_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, edgestore_status_name(st), edgestore_last_error());
        exit(1);
    }
}

#define DIM 8
#define K 3
#define S(s) (const uint8_t *)(s), strlen(s)

/* Toy embeddings of log lines: each dimension is a topic
 * (disk, network, auth, power, thermal, app, boot, user). */
static const struct {
    const char *key;
    const char *severity;
    float v[DIM];
} logs[] = {
    {"log/0001", "error", {0.9f, 0.1f, 0, 0, 0.2f, 0, 0, 0}},   /* disk full */
    {"log/0002", "warn", {0.7f, 0, 0, 0, 0.6f, 0, 0, 0}},       /* disk hot */
    {"log/0003", "info", {0, 0.9f, 0, 0, 0, 0.1f, 0, 0}},       /* link up */
    {"log/0004", "error", {0, 0.8f, 0.4f, 0, 0, 0, 0, 0}},      /* VPN auth failed */
    {"log/0005", "info", {0, 0, 0.9f, 0, 0, 0, 0, 0.3f}},       /* user login */
    {"log/0006", "error", {0, 0, 0, 0.9f, 0.3f, 0, 0.1f, 0}},   /* brown-out */
    {"log/0007", "warn", {0.1f, 0, 0, 0, 0.9f, 0, 0, 0}},       /* CPU hot */
    {"log/0008", "info", {0, 0, 0, 0.2f, 0, 0, 0.9f, 0}},       /* booted */
    {"cfg/0001", "info", {0.5f, 0.5f, 0, 0, 0, 0.5f, 0, 0}},    /* config note, no TTL */
};
#define NLOGS (sizeof logs / sizeof logs[0])

/* Exits unless result 0 has key `want` (the example doubles as a test). */
static void expect_first(const uint8_t *key, size_t len, size_t count, const char *want) {
    if (count == 0 || len != strlen(want) || memcmp(key, want, len) != 0) {
        fprintf(stderr, "unexpected first result %.*s (expected %s)\n", count ? (int)len : 0,
                (const char *)key, want);
        exit(1);
    }
}

static void print_hits(const char *title, const uint8_t *keys, size_t stride, const size_t *lens,
                       const float *dists, size_t count) {
    size_t i;
    printf("%s\n", title);
    for (i = 0; i < count; i++)
        printf("  %.*s  distance %.4f\n", (int)lens[i], (const char *)(keys + i * stride), dists[i]);
}

int main(int argc, char **argv) {
    char tmp[] = "/tmp/edgestore-vector-search-XXXXXX";
    const char *path = argc > 1 ? argv[1] : mkdtemp(tmp);
    edgestore_db *db = NULL;
    edgestore_vector_collection *logs_coll = NULL;
    edgestore_vector_item items[NLOGS];
    edgestore_vector_meta meta[NLOGS];
    edgestore_vector_search_options opts;
    edgestore_vector_condition only_errors;
    edgestore_vector_stats stats;
    edgestore_snapshot *snap = NULL;
    edgestore_meta_value sev;
    uint8_t keys[2 * K][EDGESTORE_VECTOR_MAX_KEY_LEN];
    size_t lens[2 * K], counts[2], count = 0, dim = 0, i;
    float dists[2 * K], back[DIM], two_queries[2][DIM];
    char sev_buf[16];
    /* "the disk is overheating" */
    const float query[DIM] = {0.6f, 0, 0, 0, 0.7f, 0, 0, 0};

    if (!path) {
        perror("mkdtemp");
        return 1;
    }
    check(edgestore_open(path, NULL, &db), "edgestore_open");
    /* Cosine distance over float32 embeddings; created once, opened afterwards. */
    check(edgestore_vector_create(db, S("device"), S("log-embeddings"), DIM, EDGESTORE_VECTOR_COSINE,
                                  EDGESTORE_VECTOR_F32, NULL, &logs_coll),
          "edgestore_vector_create");

    /* One atomic batch: log lines expire after 7 days, the config note never. */
    memset(items, 0, sizeof items);
    memset(meta, 0, sizeof meta);
    for (i = 0; i < NLOGS; i++) {
        meta[i].name = (const uint8_t *)"severity";
        meta[i].name_len = 8;
        meta[i].value.kind = EDGESTORE_META_STR;
        meta[i].value.str = (const uint8_t *)logs[i].severity;
        meta[i].value.str_len = strlen(logs[i].severity);
        items[i].key = (const uint8_t *)logs[i].key;
        items[i].key_len = strlen(logs[i].key);
        items[i].data = logs[i].v;
        items[i].metadata = &meta[i];
        items[i].metadata_count = 1;
        items[i].ttl_seconds = logs[i].key[0] == 'l' ? 7 * 24 * 3600 : 0;
    }
    check(edgestore_vector_put_batch(logs_coll, items, NLOGS, EDGESTORE_VECTOR_F32, DIM),
          "edgestore_vector_put_batch");

    /* k nearest: results go to caller arrays; k is their capacity. */
    check(edgestore_vector_search(logs_coll, query, EDGESTORE_VECTOR_F32, DIM, 1.0f, K, NULL, &keys[0][0],
                                  EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, &count),
          "edgestore_vector_search");
    print_hits("nearest to \"the disk is overheating\":", &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens,
               dists, count);
    expect_first(keys[0], lens[0], count, "log/0002");

    /* Only errors, only log lines (key prefix "log/"). */
    memset(&opts, 0, sizeof opts);
    memset(&only_errors, 0, sizeof only_errors);
    only_errors.field = (const uint8_t *)"severity";
    only_errors.field_len = 8;
    only_errors.op = EDGESTORE_VECTOR_OP_EQ;
    only_errors.value.kind = EDGESTORE_META_STR;
    only_errors.value.str = (const uint8_t *)"error";
    only_errors.value.str_len = 5;
    opts.conditions = &only_errors;
    opts.condition_count = 1;
    opts.key_prefix = (const uint8_t *)"log/";
    opts.key_prefix_len = 4;
    check(edgestore_vector_search(logs_coll, query, EDGESTORE_VECTOR_F32, DIM, 1.0f, K, &opts, &keys[0][0],
                                  EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, &count),
          "edgestore_vector_search (filtered)");
    print_hits("nearest errors:", &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, count);
    expect_first(keys[0], lens[0], count, "log/0001");

    /* A snapshot, then the nearest log line is deleted: the snapshot still sees it. */
    check(edgestore_snapshot_new(db, &snap), "edgestore_snapshot_new");
    check(edgestore_vector_delete(logs_coll, S("log/0002")), "edgestore_vector_delete");
    check(edgestore_vector_snapshot_search(logs_coll, snap, query, EDGESTORE_VECTOR_F32, DIM, 1.0f, 1, NULL,
                                           &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, &count),
          "edgestore_vector_snapshot_search");
    print_hits("nearest, as of the snapshot:", &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, count);
    expect_first(keys[0], lens[0], count, "log/0002");
    check(edgestore_snapshot_free(snap), "edgestore_snapshot_free");

    /* Two queries in one call, at one read point: results of query q in slots q*K.. */
    memcpy(two_queries[0], query, sizeof query);
    memcpy(two_queries[1], logs[4].v, sizeof logs[4].v);
    check(edgestore_vector_search_batch(logs_coll, two_queries, 2, EDGESTORE_VECTOR_F32, DIM, NULL, K, NULL,
                                        &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists, counts),
          "edgestore_vector_search_batch");
    print_hits("batch, query 0 (after the delete):", &keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens, dists,
               counts[0]);
    print_hits("batch, query 1 (a login):", &keys[K][0], EDGESTORE_VECTOR_MAX_KEY_LEN, lens + K, dists + K,
               counts[1]);
    expect_first(keys[0], lens[0], counts[0], "log/0007"); /* log/0002 is gone */
    expect_first(keys[K], lens[K], counts[1], "log/0005");

    /* Read one vector and one metadata field back. */
    check(edgestore_vector_get(logs_coll, S("log/0006"), EDGESTORE_VECTOR_F32, back, DIM, &dim, NULL),
          "edgestore_vector_get");
    check(edgestore_vector_get_meta(logs_coll, S("log/0006"), S("severity"), (uint8_t *)sev_buf,
                                    sizeof sev_buf, &sev),
          "edgestore_vector_get_meta");
    printf("log/0006: %zu elements, power %.1f, severity %.*s\n", dim, back[3], (int)sev.str_len, sev_buf);

    check(edgestore_vector_get_stats(logs_coll, &stats), "edgestore_vector_get_stats");
    printf("collection: %llu live, %llu exact searches, %llu HNSW searches\n",
           (unsigned long long)stats.live, (unsigned long long)stats.exact_searches,
           (unsigned long long)stats.hnsw_searches);

    check(edgestore_vector_free(logs_coll), "edgestore_vector_free");
    check(edgestore_close(db), "edgestore_close");
    if (argc <= 1) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
        if (system(cmd) != 0) return 1;
    }
    printf("vector_search: ok\n");
    return 0;
}
