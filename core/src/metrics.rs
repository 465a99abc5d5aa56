//! Counters for write amplification and sizes.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub user_writes: AtomicU64,
    pub user_bytes: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes: AtomicU64,
    pub compaction_reclaimed_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A point-in-time copy of the engine's counters. Byte counters count since
/// this process opened the database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Puts and deletes accepted (batch operations counted one by one).
    pub user_writes: u64,
    /// Bytes of user keys and values written.
    pub user_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// WAL fsyncs (fewer than writes when group commit shares them).
    pub wal_syncs: u64,
    /// Memtable flushes.
    pub flushes: u64,
    /// Bytes of segments written by flushes.
    pub flush_bytes_written: u64,
    /// Compaction cycles run.
    pub compactions: u64,
    /// Bytes of segments written by compaction.
    pub compaction_bytes_written: u64,
    /// Bytes of segment files removed by compaction.
    pub compaction_bytes_reclaimed: u64,
    /// Live segments.
    pub segments: u64,
    /// Bytes in live segments.
    pub segment_bytes: u64,
    /// Sorted runs the segments form (a flush's or a merge's output is one
    /// run): a point read consults at most one segment per run and a scan
    /// seeks every run, so this is the read amplification. Compaction keeps
    /// the permanent cohort at `max_permanent_runs` or fewer; a write burst
    /// faster than its budget leaves more until merges catch up.
    pub sorted_runs: u64,
    /// Approximate bytes held by memtables.
    pub memtable_bytes: u64,
    /// Segment files live snapshots hold open. Compaction does not wait for
    /// them: the space of those it already removed returns when the
    /// snapshots are dropped.
    pub pinned_segments: u64,
    /// Bytes of segment files compaction removed from the database that
    /// live snapshots still hold open: disk space that returns when those
    /// snapshots are dropped (not counted in `segment_bytes`). Iterators
    /// hold the files they read the same way; they are not counted here.
    pub snapshot_held_bytes: u64,
}

impl Metrics {
    /// (WAL + flush + compaction bytes) / user bytes; 0 before any write.
    pub fn write_amplification(&self) -> f64 {
        ratio(
            self.wal_bytes_written + self.flush_bytes_written + self.compaction_bytes_written,
            self.user_bytes_written,
        )
    }

    /// Compaction bytes / user bytes: what deathtime cohorts keep near zero.
    pub fn compaction_write_amplification(&self) -> f64 {
        ratio(self.compaction_bytes_written, self.user_bytes_written)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
