//! `edgestore_db`: open/close, point reads and writes, flush, compaction,
//! metrics and verification.

use std::ffi::c_char;
use std::sync::Arc;

use edgestore_core::{Engine, ManualClock};

use crate::args;
use crate::edgestore_db;
use crate::edgestore_options;
use crate::handles::{Kind, Registry};
use crate::options::OPTIONS;
use crate::status::{boundary, edgestore_status, Fail};
use crate::value;

/// What a database handle holds.
#[derive(Debug)]
pub(crate) struct Db {
    pub engine: Engine,
    /// Set when opened with `edgestore_options_set_manual_clock`.
    pub clock: Option<ManualClock>,
}

pub(crate) static DBS: Registry<Db> = Registry::new(Kind::Db);

pub(crate) fn lookup_db(handle: *const edgestore_db) -> Result<Arc<Db>, Fail> {
    DBS.get(handle, "db")
}

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// What one compaction cycle did (`edgestore_compact()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_compaction_stats {
    /// Cohorts that had segment files dropped or rewritten.
    pub cohorts_collected: u64,
    /// Segment files removed.
    pub segments_removed: u64,
    /// Segment files written.
    pub segments_written: u64,
    /// Bytes written (the compaction part of write amplification).
    pub bytes_written: u64,
    /// Bytes of segment files removed.
    pub bytes_reclaimed: u64,
    /// Live records copied into new segment files.
    pub live_records_relocated: u64,
    /// Dead or shadowed records discarded by rewrites.
    pub records_dropped: u64,
    /// Dead records kept as tombstones because an older version remains elsewhere.
    pub tombstones_kept: u64,
    /// Rewrites deferred because they did not fit the compaction budget.
    pub jobs_deferred: u64,
}

/// Counters and sizes of an open database (`edgestore_get_metrics()`). Byte
/// counters count since this process opened the database.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_metrics {
    /// Puts and deletes accepted (batch operations counted one by one).
    pub user_writes: u64,
    /// Bytes of user keys and values written.
    pub user_bytes_written: u64,
    /// Bytes appended to the write-ahead log.
    pub wal_bytes_written: u64,
    /// WAL fsyncs (fewer than writes when concurrent writers share them).
    pub wal_syncs: u64,
    /// Memtable flushes.
    pub flushes: u64,
    /// Bytes of segment files written by flushes.
    pub flush_bytes_written: u64,
    /// Compaction cycles run.
    pub compactions: u64,
    /// Bytes of segment files written by compaction.
    pub compaction_bytes_written: u64,
    /// Bytes of segment files removed by compaction.
    pub compaction_bytes_reclaimed: u64,
    /// Live segment files.
    pub segments: u64,
    /// Bytes in live segment files.
    pub segment_bytes: u64,
    /// Approximate bytes held in memtables.
    pub memtable_bytes: u64,
    /// Segment files live snapshots hold open. Compaction does not wait for
    /// them: the space of those it already removed returns when the
    /// snapshots are freed.
    pub pinned_segments: u64,
    /// (WAL + flush + compaction bytes) / user bytes; 0 before any write.
    pub write_amplification: f64,
    /// Compaction bytes / user bytes.
    pub compaction_write_amplification: f64,
    /// Sorted runs the segment files form: a point read consults at most one
    /// file per run and a scan seeks every run (the read amplification).
    /// Compaction keeps the permanent data at `max_permanent_runs` runs; a
    /// write burst faster than its budget leaves more until merges catch up.
    pub sorted_runs: u64,
    /// Bytes of segment files compaction removed from the database that
    /// live snapshots still hold open: disk space that returns when those
    /// snapshots are freed (not counted in `segment_bytes`). Iterators hold
    /// the files they read the same way; they are not counted here.
    pub snapshot_held_bytes: u64,
}

/// What `edgestore_verify()` checked.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_verify_report {
    /// Segment files checked (every block checksum, key order, metadata, merkle root).
    pub segments: u64,
    /// Records in them.
    pub segment_records: u64,
    /// WAL files checked.
    pub wal_files: u64,
    /// Batches in them.
    pub wal_batches: u64,
}

/// Opens (creating if needed) the database directory `path`.
///
/// `path` is a NUL-terminated file-system path; on POSIX any bytes are
/// accepted (not only UTF-8). `options` may be NULL for the defaults (those of
/// `edgestore_options_new()`, background compaction included); it is
/// copied, so it may be freed right after. On success `*db_out` is a new handle
/// the caller must release with `edgestore_close()`.
///
/// Errors: `EDGESTORE_INVALID_ARGUMENT` (NULL/empty path, NULL `db_out`, bad
/// options handle), `EDGESTORE_LOCKED` (the directory is open elsewhere, also in
/// this process), `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`.
/// Thread safety: any thread.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `db_out` NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn edgestore_open(
    path: *const c_char,
    options: *const edgestore_options,
    db_out: *mut *mut edgestore_db,
) -> edgestore_status {
    boundary("edgestore_open", || {
        args::out(db_out, "db_out")?;
        // SAFETY: path is NULL (rejected) or NUL-terminated per the contract.
        let path = unsafe { args::path(path) }?;
        let (mut config, clock_start) = if options.is_null() {
            (crate::options::default_config(), None)
        } else {
            let o = OPTIONS.get(options, "options")?;
            let o = o.lock().unwrap_or_else(|p| p.into_inner());
            (o.config.clone(), o.manual_clock_start)
        };
        config.path = path;
        let clock = clock_start.map(ManualClock::new);
        if let Some(c) = &clock {
            config.clock = Arc::new(c.clone());
        }
        let engine = Engine::open(config)?;
        let handle = DBS.insert(Db { engine, clock })?;
        // SAFETY: db_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(db_out, handle) };
        OK
    })
}

/// Closes a database: syncs the WAL, releases the directory lock and frees the
/// handle. NULL is accepted (`EDGESTORE_OK`).
///
/// Guarantees: afterwards every call with this handle (including a second
/// close) returns `EDGESTORE_CLOSED` and touches no freed memory, because
/// handles are never reused. Snapshots and iterators taken from it stay valid
/// until freed. Calls already running on other threads finish normally or with
/// `EDGESTORE_CLOSED`; the engine's memory and background thread are released
/// when the last of them returns. Even when the final sync fails (its error,
/// e.g. `EDGESTORE_IO` or `EDGESTORE_POISONED`, is returned), the handle is
/// closed and the lock released.
#[no_mangle]
pub extern "C" fn edgestore_close(db: *mut edgestore_db) -> edgestore_status {
    boundary("edgestore_close", || {
        if let Some(d) = DBS.remove(db, "db")? {
            // Sync first: the core's close() marks the engine closed before its
            // own final sync, which then refuses to run (so in buffered mode
            // unsynced writes would not be fsynced, and close would report
            // "closed"). flush() is the documented durability barrier.
            let synced = d.engine.flush();
            let closed = d.engine.close();
            synced?;
            closed?;
        }
        OK
    })
}

/// Stores `value` under `key` in namespace `ns`; it never expires.
///
/// Namespaces are independent key spaces of up to 255 bytes (NULL/0 is the
/// empty namespace); keys are up to 16 KiB, values up to 64 MiB. A pointer may
/// be NULL when its length is 0. Returns once the write is durable per the sync
/// mode. Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`,
/// `EDGESTORE_IO`, `EDGESTORE_POISONED`. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL pointer must point to at least its length in readable bytes.
#[no_mangle]
pub unsafe extern "C" fn edgestore_put(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> edgestore_status {
    // SAFETY: same contract as this function.
    unsafe {
        put(
            db,
            ns,
            ns_len,
            key,
            key_len,
            value,
            value_len,
            0,
            "edgestore_put",
        )
    }
}

/// Like `edgestore_put()`, but the record expires `ttl_seconds` seconds from
/// now (0 = never). Expired records are invisible to every read at once and
/// their space is reclaimed by compaction.
///
/// # Safety
/// As for `edgestore_put()`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_put_with_ttl(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_seconds: u32,
) -> edgestore_status {
    // SAFETY: same contract as this function.
    unsafe {
        put(
            db,
            ns,
            ns_len,
            key,
            key_len,
            value,
            value_len,
            ttl_seconds,
            "edgestore_put_with_ttl",
        )
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn put(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl: u32,
    function: &'static str,
) -> edgestore_status {
    boundary(function, || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key, value) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
                args::value(value, value_len)?,
            )
        };
        let d = lookup_db(db)?;
        d.engine.put_with_ttl(ns, key, value, ttl)?;
        OK
    })
}

/// Deletes `key` in `ns`. Deleting a missing key is not an error.
/// Errors and thread safety as for `edgestore_put()`.
///
/// # Safety
/// Each non-NULL pointer must point to at least its length in readable bytes.
#[no_mangle]
pub unsafe extern "C" fn edgestore_delete(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
) -> edgestore_status {
    boundary("edgestore_delete", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        lookup_db(db)?.engine.delete(ns, key)?;
        OK
    })
}

/// Reads the value of `key` in `ns` into a buffer allocated by the library.
///
/// On `EDGESTORE_OK`, `*value_out` points to `*value_len_out` bytes (never NULL,
/// also for an empty value) that the caller owns and must release with
/// `edgestore_value_free()`. Errors: `EDGESTORE_NOT_FOUND` (missing, deleted or
/// expired), `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_CORRUPTION`. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `value_out` and `value_len_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_get(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value_out: *mut *mut u8,
    value_len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_get", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        args::out(value_out, "value_out")?;
        args::out(value_len_out, "value_len_out")?;
        let found = lookup_db(db)?.engine.get(ns, key)?;
        // SAFETY: both out-parameters were checked non-NULL above.
        unsafe { value::emit_owned(found, value_out, value_len_out) }
    })
}

/// Reads the value of `key` in `ns` into the caller's buffer `buf` of `cap`
/// bytes, without handing any allocation to the caller.
///
/// On `EDGESTORE_OK` the value was copied and `*value_len_out` is its length.
/// If `cap` is too small, returns `EDGESTORE_BUFFER_TOO_SMALL`, writes the
/// needed length to `*value_len_out` and leaves `buf` untouched. `buf` may be
/// NULL when `cap` is 0 (a size query). Other errors as for `edgestore_get()`.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `buf` must have `cap` writable bytes; `value_len_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_get_into(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    cap: usize,
    value_len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_get_into", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        value::check_buf(buf, cap)?;
        args::out(value_len_out, "value_len_out")?;
        let found = lookup_db(db)?.engine.get_with(ns, key, |v| {
            // SAFETY: buf/cap checked above and covered by the contract; value_len_out non-NULL.
            unsafe { value::copy_into(v, buf, cap, value_len_out) }
        })?;
        value::emit_into(found)
    })
}

/// Durability barrier: makes every write acknowledged so far durable (fsyncs
/// the WAL). Needed in `EDGESTORE_SYNC_BUFFERED` mode; a cheap no-op in durable
/// mode. Errors: `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_POISONED`.
#[no_mangle]
pub extern "C" fn edgestore_flush(db: *mut edgestore_db) -> edgestore_status {
    boundary("edgestore_flush", || {
        lookup_db(db)?.engine.flush()?;
        OK
    })
}

/// Writes the memtable out as segment files (one run per death-time cohort)
/// and retires the WAL files it came from. An empty memtable is not an error.
#[no_mangle]
pub extern "C" fn edgestore_flush_to_segments(db: *mut edgestore_db) -> edgestore_status {
    boundary("edgestore_flush_to_segments", || {
        lookup_db(db)?.engine.flush_to_segments()?;
        OK
    })
}

/// Runs one compaction cycle now and reports what it did in `*stats_out`.
///
/// Fully expired cohorts are dropped without writing; partly dead cohorts are
/// rewritten within the compaction budget. Live snapshots do not hold it
/// back: they keep reading the files it removes, whose space returns when
/// they are freed. Errors: `EDGESTORE_INVALID_ARGUMENT`,
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`.
///
/// # Safety
/// `stats_out` must be NULL or valid for writing an `edgestore_compaction_stats`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_compact(
    db: *mut edgestore_db,
    stats_out: *mut edgestore_compaction_stats,
) -> edgestore_status {
    boundary("edgestore_compact", || {
        args::out(stats_out, "stats_out")?;
        let s = lookup_db(db)?.engine.compact_once()?;
        let out = edgestore_compaction_stats {
            cohorts_collected: s.cohorts_collected,
            segments_removed: s.segments_removed,
            segments_written: s.segments_written,
            bytes_written: s.bytes_written,
            bytes_reclaimed: s.bytes_reclaimed,
            live_records_relocated: s.live_records_relocated,
            records_dropped: s.records_dropped,
            tombstones_kept: s.tombstones_kept,
            jobs_deferred: s.jobs_deferred,
        };
        // SAFETY: stats_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(stats_out, out) };
        OK
    })
}

/// Copies the database's counters into `*metrics_out`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`.
///
/// # Safety
/// `metrics_out` must be NULL or valid for writing an `edgestore_metrics`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_get_metrics(
    db: *mut edgestore_db,
    metrics_out: *mut edgestore_metrics,
) -> edgestore_status {
    boundary("edgestore_get_metrics", || {
        args::out(metrics_out, "metrics_out")?;
        let m = lookup_db(db)?.engine.metrics();
        let out = edgestore_metrics {
            user_writes: m.user_writes,
            user_bytes_written: m.user_bytes_written,
            wal_bytes_written: m.wal_bytes_written,
            wal_syncs: m.wal_syncs,
            flushes: m.flushes,
            flush_bytes_written: m.flush_bytes_written,
            compactions: m.compactions,
            compaction_bytes_written: m.compaction_bytes_written,
            compaction_bytes_reclaimed: m.compaction_bytes_reclaimed,
            segments: m.segments,
            segment_bytes: m.segment_bytes,
            memtable_bytes: m.memtable_bytes,
            pinned_segments: m.pinned_segments,
            write_amplification: m.write_amplification(),
            compaction_write_amplification: m.compaction_write_amplification(),
            sorted_runs: m.sorted_runs,
            snapshot_held_bytes: m.snapshot_held_bytes,
        };
        // SAFETY: metrics_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(metrics_out, out) };
        OK
    })
}

/// Reads every segment and WAL file and checks every checksum; `*report_out`
/// says what was checked. Errors: `EDGESTORE_CORRUPTION` (message names the
/// file and offset), `EDGESTORE_IO`, `EDGESTORE_CLOSED`,
/// `EDGESTORE_INVALID_ARGUMENT`.
///
/// # Safety
/// `report_out` must be NULL or valid for writing an `edgestore_verify_report`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_verify(
    db: *mut edgestore_db,
    report_out: *mut edgestore_verify_report,
) -> edgestore_status {
    boundary("edgestore_verify", || {
        args::out(report_out, "report_out")?;
        let r = lookup_db(db)?.engine.verify()?;
        let out = edgestore_verify_report {
            segments: r.segments,
            segment_records: r.segment_records,
            wal_files: r.wal_files,
            wal_batches: r.wal_batches,
        };
        // SAFETY: report_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(report_out, out) };
        OK
    })
}

/// TESTING ONLY: moves the manual clock of a database opened with
/// `edgestore_options_set_manual_clock()` forward by `seconds`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT` if the database uses the system clock;
/// `EDGESTORE_CLOSED`.
#[no_mangle]
pub extern "C" fn edgestore_advance_clock(db: *mut edgestore_db, seconds: u64) -> edgestore_status {
    boundary("edgestore_advance_clock", || {
        let d = lookup_db(db)?;
        match &d.clock {
            Some(c) => c.advance_secs(seconds),
            None => {
                return Err(Fail::invalid(
                    "the database was not opened with edgestore_options_set_manual_clock",
                ))
            }
        }
        OK
    })
}
