//! A simulated week on an edge gateway: sensors log readings with mixed TTLs,
//! device settings are permanent and sometimes change or go away, and
//! compaction runs every simulated hour.

use std::path::Path;
use std::sync::Arc;

use edgestore::{EdgestoreConfig, Engine, Error, ManualClock, SyncMode};

const START: i64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z
const HOUR: u64 = 3600;

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the demo in `dir` (which must be absent or an edgestore database).
pub fn run(dir: &Path, days: u32, sensors: u32) -> Result<(), Error> {
    if dir.exists() {
        if !dir.join("manifest.mf").exists() {
            return Err(Error::InvalidArgument(format!(
                "{} exists and is not an edgestore database; pass --db with a new directory",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::InvalidArgument(format!("cannot clear {}: {e}", dir.display())))?;
    }
    let clock = ManualClock::new(START);
    let mut cfg = EdgestoreConfig::new(dir);
    cfg.clock = Arc::new(clock.clone());
    cfg.sync_mode = SyncMode::Buffered; // simulated time: flush() is the barrier each hour
    cfg.memtable_size_bytes = 512 << 10;
    let db = Engine::open(cfg)?;

    out!("edgestore demo: {sensors} sensors, one reading a minute each, {days} simulated days");
    out!("TTL mix: raw readings 1 h (70%), minute summaries 24 h (20%), alerts 7 d (10%);");
    out!("device settings are permanent, rewritten daily, one device retired each day.\n");
    out!(
        "{:>4} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12}",
        "day",
        "writes",
        "segments",
        "disk KiB",
        "dropped",
        "compact KiB",
        "WA compact"
    );

    let mut expect_settings = std::collections::BTreeMap::new();
    let mut dropped_total = 0u64;
    let mut n = 0u64;
    for day in 0..days {
        let mut dropped_today = 0u64;
        for _hour in 0..24 {
            for minute in 0..60u64 {
                for s in 0..sensors as u64 {
                    n += 1;
                    let key = format!("s{s:03}/{:012}", n);
                    let value = format!(
                        "{{\"t\":{},\"v\":{:.2}}}",
                        minute,
                        20.0 + (n % 97) as f64 / 10.0
                    );
                    let ttl = match n % 10 {
                        0 => 7 * 24 * HOUR as u32,
                        1 | 2 => 24 * HOUR as u32,
                        _ => HOUR as u32,
                    };
                    db.put_with_ttl(b"telemetry", key.as_bytes(), value.as_bytes(), ttl)?;
                }
                clock.advance_secs(60);
            }
            db.flush()?;
            let st = db.compact_once()?;
            dropped_today += st.segments_removed;
        }
        // Daily settings: rewrite each device's config, retire one device.
        for d in 0..sensors as u64 {
            let key = format!("device/{d:03}/config");
            let value = format!("{{\"rate_hz\":{},\"day\":{day}}}", 1 + (d + day as u64) % 4);
            db.put(b"settings", key.as_bytes(), value.as_bytes())?;
            expect_settings.insert(key, Some(value));
        }
        let retired = format!("device/{:03}/config", day as u64 % sensors.max(1) as u64);
        db.delete(b"settings", retired.as_bytes())?;
        expect_settings.insert(retired, None);
        dropped_total += dropped_today;
        let m = db.metrics();
        out!(
            "{:>4} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12.4}",
            day + 1,
            m.user_writes,
            m.segments,
            dir_size(dir) / 1024,
            dropped_today,
            m.compaction_bytes_written / 1024,
            m.compaction_write_amplification()
        );
    }

    out!("\nAll TTLs run out: advancing the clock 8 days and compacting once more.");
    clock.advance_secs(8 * 24 * HOUR);
    db.flush_to_segments()?;
    let st = db.compact_once()?;
    dropped_total += st.segments_removed;
    let m = db.metrics();
    let live_telemetry = db.scan(b"telemetry", b"", None)?.count();
    let settings = db.prefix(b"settings", b"device/")?;
    for (k, v) in &expect_settings {
        let got = db.get(b"settings", k.as_bytes())?;
        if got.as_deref() != v.as_deref().map(str::as_bytes) {
            return Err(Error::InvalidArgument(format!(
                "demo check failed for {k}: got {got:?}, expected {v:?}"
            )));
        }
    }
    if live_telemetry != 0 {
        return Err(Error::InvalidArgument(format!(
            "{live_telemetry} expired readings still visible"
        )));
    }
    let report = db.verify()?;
    out!("  segments dropped whole over the run: {dropped_total}");
    out!("  telemetry keys still visible:        {live_telemetry}");
    out!(
        "  settings kept (permanent):           {} of {} written keys",
        settings.len(),
        expect_settings.len()
    );
    out!(
        "  segments left: {} ({} KiB on disk)",
        m.segments,
        dir_size(dir) / 1024
    );
    out!(
        "  user bytes {} KiB, WAL {} KiB, flush {} KiB, compaction {} KiB",
        m.user_bytes_written / 1024,
        m.wal_bytes_written / 1024,
        m.flush_bytes_written / 1024,
        m.compaction_bytes_written / 1024
    );
    out!(
        "  write amplification: total {:.3} (WAL + flush + compaction), compaction only {:.4}",
        m.write_amplification(),
        m.compaction_write_amplification()
    );
    out!(
        "  verify: {} segments, {} records, every checksum ok",
        report.segments,
        report.segment_records
    );
    out!("\ndemo database left in {}", dir.display());
    Ok(())
}
