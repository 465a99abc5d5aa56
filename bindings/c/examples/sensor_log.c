/* sensor_log: a TTL'd time series. Readings expire after a retention period;
 * deathtime-cohort compaction drops whole expired files instead of rewriting.
 *
 * To simulate days in a second it uses the testing-only manual clock
 * (edgestore_options_set_manual_clock + edgestore_advance_clock) and runs
 * compaction itself every simulated hour, with background compaction turned
 * off so the statistics it prints are those of its own edgestore_compact()
 * calls. A real device would use the system clock and keep the default:
 * background compaction every second, no edgestore_compact() calls needed.
 *
 * Build: cc -std=c99 sensor_log.c $(pkg-config --cflags --libs edgestore) -o sensor_log
 * Run:   ./sensor_log [database-directory]
 */
#define _XOPEN_SOURCE 700
#include <inttypes.h>
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

#define NS (const uint8_t *)"readings", 8
#define RETENTION_SECS (6 * 3600)  /* keep readings for six hours */
#define INTERVAL_SECS 60           /* one reading a minute */
#define HOURS 24

int main(int argc, char **argv) {
    char tmp[] = "/tmp/edgestore-sensor-log-XXXXXX";
    const char *path = argc > 1 ? argv[1] : mkdtemp(tmp);
    edgestore_options *opts = NULL;
    edgestore_db *db = NULL;
    edgestore_batch *batch = NULL;
    edgestore_compaction_stats st, total;
    edgestore_metrics m;
    edgestore_iter *it = NULL;
    int minute;
    uint64_t t0 = UINT64_C(1700000000);
    size_t live = 0;
    const uint8_t *k, *v;
    size_t kl, vl;

    if (!path) {
        perror("mkdtemp");
        return 1;
    }
    memset(&total, 0, sizeof total);
    check(edgestore_options_new(&opts), "options_new");
    check(edgestore_options_set_sync_mode(opts, EDGESTORE_SYNC_BUFFERED), "sync_mode");
    check(edgestore_options_set_cohort_window(opts, 3600), "cohort_window");
    check(edgestore_options_set_memtable_size(opts, 64 * 1024), "memtable_size");
    check(edgestore_options_set_manual_clock(opts, (int64_t)t0 * 1000000000), "manual_clock");
    check(edgestore_options_set_background_compaction(opts, 0), "background_compaction");
    check(edgestore_open(path, opts, &db), "open");
    check(edgestore_options_free(opts), "options_free");
    check(edgestore_batch_new(&batch), "batch_new");

    for (minute = 0; minute < HOURS * 60; minute++) {
        /* Keys are big-endian timestamps, so they iterate in time order. */
        uint64_t ts = t0 + (uint64_t)minute * INTERVAL_SECS;
        uint8_t key[8];
        char value[48];
        int i, n;
        for (i = 0; i < 8; i++) key[i] = (uint8_t)(ts >> (56 - 8 * i));
        n = snprintf(value, sizeof value, "{\"temp\":%.1f,\"hum\":%d}", 20.0 + (minute % 50) / 10.0,
                     40 + minute % 20);
        check(edgestore_batch_put_with_ttl(batch, NS, key, sizeof key, (const uint8_t *)value,
                                           (size_t)n, RETENTION_SECS),
              "batch_put_with_ttl");
        if (minute % 10 == 9) check(edgestore_batch_commit(db, batch), "batch_commit");
        check(edgestore_advance_clock(db, INTERVAL_SECS), "advance_clock");
        if (minute % 60 == 59) { /* hourly maintenance */
            check(edgestore_flush(db), "flush");
            check(edgestore_compact(db, &st), "compact");
            total.cohorts_collected += st.cohorts_collected;
            total.segments_removed += st.segments_removed;
            total.segments_written += st.segments_written;
            total.bytes_written += st.bytes_written;
            total.bytes_reclaimed += st.bytes_reclaimed;
            total.live_records_relocated += st.live_records_relocated;
        }
    }
    check(edgestore_batch_commit(db, batch), "batch_commit");
    check(edgestore_batch_free(batch), "batch_free");

    /* Only the last six hours are still readable. */
    check(edgestore_iter_prefix(db, NS, NULL, 0, &it), "iter_prefix");
    while (edgestore_iter_next(it, &k, &kl, &v, &vl) == EDGESTORE_OK) live++;
    check(edgestore_iter_free(it), "iter_free");
    check(edgestore_get_metrics(db, &m), "metrics");

    printf("wrote %d readings over %d simulated hours, %zu still live (retention %d h)\n",
           HOURS * 60, HOURS, live, RETENTION_SECS / 3600);
    printf("compaction: %" PRIu64 " cohorts collected, %" PRIu64 " segments removed, %" PRIu64
           " segments written, %" PRIu64 " bytes written, %" PRIu64 " bytes reclaimed, %" PRIu64
           " records relocated\n",
           total.cohorts_collected, total.segments_removed, total.segments_written,
           total.bytes_written, total.bytes_reclaimed, total.live_records_relocated);
    printf("write amplification %.2f (compaction part %.3f), %" PRIu64 " live segments\n",
           m.write_amplification, m.compaction_write_amplification, m.segments);

    if (live == 0 || live > (size_t)(RETENTION_SECS / INTERVAL_SECS) || total.segments_removed == 0) {
        fprintf(stderr, "unexpected: live=%zu segments_removed=%" PRIu64 "\n", live, total.segments_removed);
        return 1;
    }
    check(edgestore_close(db), "close");
    if (argc <= 1) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
        if (system(cmd) != 0) return 1;
    }
    printf("sensor_log: ok\n");
    return 0;
}
