//! `edgestore_options`: configuration for `edgestore_open()`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use edgestore_core::{EdgestoreConfig, SyncMode};

use crate::args;
use crate::edgestore_options;
use crate::handles::{Kind, Registry};
use crate::status::{boundary, edgestore_status, Fail};

/// What an options handle holds.
#[derive(Debug)]
pub(crate) struct Options {
    /// Every tunable except the path (replaced at open).
    pub config: EdgestoreConfig,
    /// Start time of a manual clock, if one was requested.
    pub manual_clock_start: Option<i64>,
}

pub(crate) static OPTIONS: Registry<Mutex<Options>> = Registry::new(Kind::Options);

/// How often the C front end compacts in the background unless told
/// otherwise: an embedded store should drop expired data and merge sorted
/// runs without the application having to schedule it.
pub(crate) const DEFAULT_BACKGROUND_COMPACTION: Duration = Duration::from_millis(1000);

/// The configuration `edgestore_options_new()` starts from and
/// `edgestore_open()` uses when given NULL options: the core defaults, plus
/// background compaction every second (the core's own default is off).
pub(crate) fn default_config() -> EdgestoreConfig {
    let mut config = EdgestoreConfig::new("");
    config.background_compaction = Some(DEFAULT_BACKGROUND_COMPACTION);
    config
}

fn lock(m: &Mutex<Options>) -> MutexGuard<'_, Options> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn set(
    function: &'static str,
    options: *mut edgestore_options,
    apply: impl FnOnce(&mut Options) -> Result<(), Fail>,
) -> edgestore_status {
    boundary(function, || {
        let o = OPTIONS.get(options, "options")?;
        apply(&mut lock(&o))?;
        Ok(edgestore_status::EDGESTORE_OK)
    })
}

fn positive(v: u64, what: &str) -> Result<u64, Fail> {
    if v == 0 {
        Err(Fail::invalid(format!("{what} must be > 0")))
    } else {
        Ok(v)
    }
}

/// Creates options holding the defaults: durable sync, 4 MiB memtable, 4 MiB
/// segments, 3600 s cohort window, 64 MiB compaction budget, background
/// compaction every 1000 ms (expired files are dropped and sorted runs merged
/// without calling `edgestore_compact()`; turn it off with
/// `edgestore_options_set_background_compaction(options, 0)`), 8 MiB block
/// cache, memory-mapped segment reads on 64-bit targets (plain reads
/// elsewhere), system clock. `edgestore_open()` with NULL options uses the
/// same defaults.
///
/// Ownership: the caller owns `*options_out` and frees it with
/// `edgestore_options_free()`. Errors: `EDGESTORE_INVALID_ARGUMENT` if
/// `options_out` is NULL.
///
/// # Safety
/// `options_out` must be NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn edgestore_options_new(
    options_out: *mut *mut edgestore_options,
) -> edgestore_status {
    boundary("edgestore_options_new", || {
        args::out(options_out, "options_out")?;
        let handle = OPTIONS.insert(Mutex::new(Options {
            config: default_config(),
            manual_clock_start: None,
        }))?;
        // SAFETY: options_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(options_out, handle) };
        Ok(edgestore_status::EDGESTORE_OK)
    })
}

/// Frees options. NULL is accepted (`EDGESTORE_OK`); freeing twice returns
/// `EDGESTORE_CLOSED`. Databases opened with these options are unaffected.
#[no_mangle]
pub extern "C" fn edgestore_options_free(options: *mut edgestore_options) -> edgestore_status {
    boundary("edgestore_options_free", || {
        OPTIONS.remove(options, "options")?;
        Ok(edgestore_status::EDGESTORE_OK)
    })
}

/// Sets the sync mode: `EDGESTORE_SYNC_DURABLE` (default) or
/// `EDGESTORE_SYNC_BUFFERED` (see `edgestore_sync_mode`).
///
/// Errors: `EDGESTORE_INVALID_ARGUMENT` for an unknown mode or a bad handle.
#[no_mangle]
pub extern "C" fn edgestore_options_set_sync_mode(
    options: *mut edgestore_options,
    mode: u32,
) -> edgestore_status {
    set("edgestore_options_set_sync_mode", options, |o| {
        o.config.sync_mode = match mode {
            0 => SyncMode::Durable,
            1 => SyncMode::Buffered,
            _ => return Err(Fail::invalid(format!("unknown sync mode {mode}"))),
        };
        Ok(())
    })
}

/// Sets the memtable size, in bytes, that triggers a flush to segment files
/// (default 4 MiB). Errors: `EDGESTORE_INVALID_ARGUMENT` if 0.
#[no_mangle]
pub extern "C" fn edgestore_options_set_memtable_size(
    options: *mut edgestore_options,
    bytes: usize,
) -> edgestore_status {
    set("edgestore_options_set_memtable_size", options, |o| {
        positive(bytes as u64, "memtable size")?;
        o.config.memtable_size_bytes = bytes;
        Ok(())
    })
}

/// Sets the size cap of one segment file in bytes (default 4 MiB).
/// Errors: `EDGESTORE_INVALID_ARGUMENT` if 0.
#[no_mangle]
pub extern "C" fn edgestore_options_set_segment_size(
    options: *mut edgestore_options,
    bytes: u64,
) -> edgestore_status {
    set("edgestore_options_set_segment_size", options, |o| {
        o.config.segment_size_bytes = positive(bytes, "segment size")?;
        Ok(())
    })
}

/// Sets the width of a death-time cohort in seconds (default 3600): records
/// whose expiry falls in the same window share segment files, so an expired
/// cohort is dropped without rewriting. Errors: `EDGESTORE_INVALID_ARGUMENT` if 0.
#[no_mangle]
pub extern "C" fn edgestore_options_set_cohort_window(
    options: *mut edgestore_options,
    seconds: u64,
) -> edgestore_status {
    set("edgestore_options_set_cohort_window", options, |o| {
        o.config.cohort_window_secs = positive(seconds, "cohort window")?;
        Ok(())
    })
}

/// Sets the compaction write budget: bytes compaction may write per cycle on
/// average (default 64 MiB). A merge or rewrite starts only while the budget
/// has bytes left and may overdraw it; later cycles repay the overdraft
/// before the next job starts (unused budget does not accumulate past one
/// cycle's). Dropping fully expired files writes nothing and is never
/// limited; 0 means compaction only drops expired files and never rewrites.
#[no_mangle]
pub extern "C" fn edgestore_options_set_compaction_budget(
    options: *mut edgestore_options,
    bytes: u64,
) -> edgestore_status {
    set("edgestore_options_set_compaction_budget", options, |o| {
        o.config.compaction_write_budget_bytes = bytes;
        Ok(())
    })
}

/// Sets the bytes of segment blocks kept in memory for reads (default 8 MiB);
/// 0 disables the cache, so every read goes to the segment file (or its
/// memory map). With memory-mapped reads the cache holds only each block's
/// entry offsets and key prefixes (the bytes stay in the OS page cache), so
/// the same budget covers about twenty times more data. Every value is accepted.
#[no_mangle]
pub extern "C" fn edgestore_options_set_block_cache(
    options: *mut edgestore_options,
    bytes: u64,
) -> edgestore_status {
    set("edgestore_options_set_block_cache", options, |o| {
        o.config.block_cache_bytes = bytes;
        Ok(())
    })
}

/// Reads segment files through a read-only memory map (`enabled` 1, the
/// default on 64-bit targets) or with `pread` (0, the default elsewhere). A
/// mapped read costs no system call or copy; checksums are verified either
/// way. The trade-off: with a map, an I/O error while reading a segment
/// (e.g. a failing disk or SD card), or a segment file truncated by another
/// program, raises SIGBUS in the process instead of returning `EDGESTORE_IO`
/// (the engine itself never modifies a segment once written). Turn it off
/// where the storage is expected to fail reads. Errors:
/// `EDGESTORE_INVALID_ARGUMENT` if `enabled` is neither 0 nor 1.
#[no_mangle]
pub extern "C" fn edgestore_options_set_mmap_reads(
    options: *mut edgestore_options,
    enabled: u32,
) -> edgestore_status {
    set("edgestore_options_set_mmap_reads", options, |o| {
        o.config.mmap_reads = match enabled {
            0 => false,
            1 => true,
            other => {
                return Err(Fail::invalid(format!(
                    "mmap reads is {other} (expected 0 or 1)"
                )))
            }
        };
        Ok(())
    })
}

/// Runs compaction on a background thread every `interval_ms` milliseconds
/// (default 1000); 0 turns it off, and then expired files are only dropped and
/// sorted runs only merged when you call `edgestore_compact()` yourself. Each
/// cycle does what one `edgestore_compact()` call does, within the compaction
/// budget; the thread is stopped and joined by `edgestore_close()`.
#[no_mangle]
pub extern "C" fn edgestore_options_set_background_compaction(
    options: *mut edgestore_options,
    interval_ms: u64,
) -> edgestore_status {
    set(
        "edgestore_options_set_background_compaction",
        options,
        |o| {
            o.config.background_compaction =
                (interval_ms > 0).then(|| Duration::from_millis(interval_ms));
            Ok(())
        },
    )
}

/// How many obsolete WAL files to keep for reuse as later WALs (default 1;
/// 0 deletes them). A reused WAL is written over its old contents, so a
/// durable write syncs blocks that are already allocated instead of growing
/// the file (on ext4 this skips a journal commit per write). Each kept file
/// costs its size on disk (at most four memtables; larger ones are deleted).
/// Set 0 where overwriting in place gains nothing, e.g. on copy-on-write
/// file systems (btrfs, ZFS).
#[no_mangle]
pub extern "C" fn edgestore_options_set_wal_recycle_files(
    options: *mut edgestore_options,
    count: u32,
) -> edgestore_status {
    set("edgestore_options_set_wal_recycle_files", options, |o| {
        o.config.wal_recycle_files = count as usize;
        Ok(())
    })
}

/// TESTING ONLY: makes databases opened with these options read time from a
/// manual clock starting at `start_unix_nanos` (nanoseconds since the Unix
/// epoch, >= 0) instead of the system clock. Time then only moves with
/// `edgestore_advance_clock()`, so TTL expiry can be tested without sleeping.
/// Each `edgestore_open()` gets its own clock. Do not use in production: TTLs
/// would never expire on their own. Errors: `EDGESTORE_INVALID_ARGUMENT` for a
/// negative start.
#[no_mangle]
pub extern "C" fn edgestore_options_set_manual_clock(
    options: *mut edgestore_options,
    start_unix_nanos: i64,
) -> edgestore_status {
    set("edgestore_options_set_manual_clock", options, |o| {
        if start_unix_nanos < 0 {
            return Err(Fail::invalid("manual clock start must be >= 0"));
        }
        o.manual_clock_start = Some(start_unix_nanos);
        Ok(())
    })
}
