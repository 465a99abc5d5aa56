/* edgestore quickstart: key-value, TTL, snapshot, iteration, compaction.
 *
 * Build (after installing, see ffi/README-C.md):
 *   cc -std=c99 quickstart.c $(pkg-config --cflags --libs edgestore) -o quickstart
 * Run:
 *   ./quickstart [database-directory]    (default: a fresh temporary directory)
 */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgestore.h"

/* Prints the failure and exits: the pattern for every edgestore call. */
static void check(edgestore_status st, const char *what) {
    if (st != EDGESTORE_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, edgestore_status_name(st), edgestore_last_error());
        exit(1);
    }
}

#define S(str) (const uint8_t *)(str), strlen(str)

int main(int argc, char **argv) {
    char tmp[] = "/tmp/edgestore-quickstart-XXXXXX";
    const char *path = argc > 1 ? argv[1] : mkdtemp(tmp);
    edgestore_db *db = NULL;
    edgestore_snapshot *snap = NULL;
    edgestore_iter *it = NULL;
    edgestore_compaction_stats stats;
    uint8_t *value = NULL;
    size_t len = 0;
    uint8_t buf[32];
    const uint8_t *k, *v;
    size_t kl, vl;
    edgestore_status st;

    if (!path) {
        perror("mkdtemp");
        return 1;
    }
    printf("edgestore %s, database in %s\n", edgestore_version(), path);
    check(edgestore_open(path, NULL, &db), "open");

    /* Put and get: the library allocates the value, you free it. */
    check(edgestore_put(db, S("sensors"), S("temp/kitchen"), S("21.5")), "put");
    check(edgestore_get(db, S("sensors"), S("temp/kitchen"), &value, &len), "get");
    printf("temp/kitchen = %.*s\n", (int)len, (const char *)value);
    check(edgestore_value_free(value), "value_free");

    /* Or copy into your own buffer: no allocation handed to you. */
    check(edgestore_get_into(db, S("sensors"), S("temp/kitchen"), buf, sizeof buf, &len), "get_into");
    printf("temp/kitchen (own buffer) = %.*s\n", (int)len, (const char *)buf);

    /* A value that expires after an hour, and a missing key. */
    check(edgestore_put_with_ttl(db, S("cache"), S("session"), S("abc123"), 3600), "put_with_ttl");
    st = edgestore_get(db, S("cache"), S("nope"), &value, &len);
    printf("cache/nope -> %s\n", edgestore_status_name(st));

    /* A snapshot keeps seeing the old value after an update. */
    check(edgestore_snapshot_new(db, &snap), "snapshot_new");
    check(edgestore_put(db, S("sensors"), S("temp/kitchen"), S("22.0")), "put");
    check(edgestore_snapshot_get_into(snap, S("sensors"), S("temp/kitchen"), buf, sizeof buf, &len),
          "snapshot_get_into");
    printf("snapshot sees %.*s, ", (int)len, (const char *)buf);
    check(edgestore_get_into(db, S("sensors"), S("temp/kitchen"), buf, sizeof buf, &len), "get_into");
    printf("database sees %.*s\n", (int)len, (const char *)buf);
    check(edgestore_snapshot_free(snap), "snapshot_free");

    /* Iterate over a prefix. */
    check(edgestore_put(db, S("sensors"), S("temp/garage"), S("8.5")), "put");
    check(edgestore_iter_prefix(db, S("sensors"), S("temp/"), &it), "iter_prefix");
    while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK)
        printf("  %.*s = %.*s\n", (int)kl, (const char *)k, (int)vl, (const char *)v);
    if (st != EDGESTORE_DONE) check(st, "iter_next");
    check(edgestore_iter_free(it), "iter_free");

    /* Write the memtable out and run a compaction cycle now. (Not needed for
     * upkeep: by default a background thread runs one every second.) */
    check(edgestore_flush_to_segments(db), "flush_to_segments");
    check(edgestore_compact(db, &stats), "compact");
    printf("compaction: %llu cohorts collected, %llu segments removed, %llu bytes written\n",
           (unsigned long long)stats.cohorts_collected, (unsigned long long)stats.segments_removed,
           (unsigned long long)stats.bytes_written);

    check(edgestore_close(db), "close");
    if (argc <= 1) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
        if (system(cmd) != 0) return 1;
    }
    printf("quickstart: ok\n");
    return 0;
}
