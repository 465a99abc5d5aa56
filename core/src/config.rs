//! Engine configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::storage::{FsStorage, Storage};

/// When a write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// A write returns after its WAL record is on stable storage (`fdatasync`).
    /// Concurrent writers share one fsync (group commit). Survives process
    /// crashes and power loss: every acknowledged write is recovered.
    #[default]
    Durable,
    /// A write returns once its WAL record is handed to the OS (`write(2)`), not
    /// synced. Survives a process crash (the OS still has the data); a power
    /// loss or kernel crash may lose writes made since the last
    /// [`crate::Engine::flush`], which is the durability barrier. What is
    /// recovered is always a prefix of the write history: never a hole, never
    /// part of a batch.
    Buffered,
}

/// Configuration for [`crate::Engine::open`]. Build with [`EdgestoreConfig::new`]
/// and adjust the public fields.
#[derive(Debug, Clone)]
pub struct EdgestoreConfig {
    /// Database directory (created if missing).
    pub path: PathBuf,
    /// Durability of each write.
    pub sync_mode: SyncMode,
    /// Memtable size that triggers a flush to segments, in bytes (default 4 MiB).
    /// Each memtable also keeps a point-read hash index of an eighth of this
    /// size (512 KiB at the default), and up to two memtables exist at once
    /// (one being flushed).
    pub memtable_size_bytes: usize,
    /// Size cap of one segment file, in bytes (default 4 MiB). Flushes and
    /// compactions split their output at this size.
    pub segment_size_bytes: u64,
    /// Target size of a data block inside a segment (default 4 KiB).
    pub block_size_bytes: usize,
    /// Bytes of decoded data blocks kept in memory for reads (default 8 MiB;
    /// 0 disables the cache and every segment read goes to the file).
    pub block_cache_bytes: u64,
    /// Read segments through a read-only memory map instead of `pread`
    /// (default on for 64-bit targets): a read costs no system call or copy,
    /// and the block cache then holds only each block's entry offsets and key
    /// prefixes, so its budget covers about twenty times more data (the bytes
    /// stay in the OS page cache, counted there, as with LMDB), and point
    /// reads search a block's stored index in the map without a cache
    /// lookup at all. Checksums are still verified: when a block enters the
    /// cache (scans), and on a block's first point read after its segment
    /// is opened (with its index checked against its entries); after that
    /// the block is read from the map, so bytes changed in place by another
    /// program, or damaged on disk after the check and read back once the
    /// OS dropped them from its page cache, go unnoticed until the segment
    /// is reopened (the engine itself never modifies a segment). Two costs: an I/O error while
    /// reading a mapped page raises SIGBUS instead of returning
    /// `Error::Io`, and so would a segment file truncated by another
    /// program (the engine never modifies a segment once written). Turn it
    /// off where the storage is expected to fail reads.
    pub mmap_reads: bool,
    /// Bloom filter bits per key (default 10, about 1% false positives).
    pub bloom_bits_per_key: u32,
    /// Width of a death-time cohort in seconds (default 3600): records whose
    /// death times fall in the same window share segment files.
    pub cohort_window_secs: u64,
    /// Bytes compaction may write per cycle on average (default 64 MiB), a
    /// token bucket: each cycle adds the budget (the bucket holds at most
    /// one budget; unused budget does not accumulate), a rewrite starts
    /// only while the balance is positive and is charged what it wrote,
    /// which may overdraw it; later cycles repay before the next rewrite, so
    /// a merge larger than the budget runs when due rather than after
    /// cycles of saving up. While repaying, a cycle may still fold small
    /// runs adjacent in age into one (at most half a budget, charged too)
    /// when the permanent cohort holds more than `max_permanent_runs` runs.
    /// Dropping expired files writes nothing and is never limited; 0 turns
    /// rewrites off.
    pub compaction_write_budget_bytes: u64,
    /// A cohort that has not fully expired is rewritten only when at least this
    /// fraction of its records is dead (default 0.5): then each rewritten byte
    /// reclaims at least `f/(1-f)` bytes.
    pub partial_rewrite_dead_fraction: f64,
    /// Most sorted runs the permanent cohort may hold before runs are merged
    /// (default 4). A point read consults at most one segment per run, so
    /// at most this many permanent segments once merges have caught up; a
    /// write burst faster than `compaction_write_budget_bytes` leaves more
    /// runs until they do (`Metrics::sorted_runs` counts them).
    pub max_permanent_runs: usize,
    /// Space amplification allowed in the permanent cohort before a full merge,
    /// as (bytes in newer runs) / (bytes in the oldest run) (default 1.0).
    pub max_permanent_space_amp: f64,
    /// Run compaction on a background thread at this interval (default off
    /// here, `None`: callers of the Rust API schedule `compact_once`
    /// themselves or set this). The C (`edgestore_options_new`) and Python
    /// (`edgestore.open`) front ends default to every 1 s.
    pub background_compaction: Option<Duration>,
    /// Write full memtables to segments on a background thread (default on),
    /// so a write does not wait for a flush; a writer flushes itself only
    /// when a second memtable's worth is waiting. Off: the write that fills
    /// the memtable flushes it (deterministic, for tests that count I/O).
    pub background_flush: bool,
    /// Obsolete WAL files kept for reuse as later WALs (default 1; 0 deletes
    /// them, as before). A reused WAL is written over its old contents, so a
    /// durable write `fdatasync`s blocks that are already allocated instead
    /// of growing the file (on ext4 that skips a journal commit per write and
    /// brings a durable write close to an in-place overwrite's cost). One is
    /// enough in steady state (each flush retires one WAL, the next rotation
    /// reuses it); each kept file costs its size on disk, and a file larger
    /// than four memtables is deleted rather than kept.
    pub wal_recycle_files: usize,
    /// Time source for TTLs (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// File-system access (default: the real file system).
    pub storage: Arc<dyn Storage>,
}

impl EdgestoreConfig {
    /// Default configuration for a database at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        EdgestoreConfig {
            path: path.as_ref().to_path_buf(),
            sync_mode: SyncMode::Durable,
            memtable_size_bytes: 4 << 20,
            segment_size_bytes: 4 << 20,
            block_size_bytes: 4096,
            block_cache_bytes: 8 << 20,
            mmap_reads: cfg!(target_pointer_width = "64"),
            bloom_bits_per_key: 10,
            cohort_window_secs: 3600,
            compaction_write_budget_bytes: 64 << 20,
            partial_rewrite_dead_fraction: 0.5,
            max_permanent_runs: 4,
            max_permanent_space_amp: 1.0,
            background_compaction: None,
            background_flush: true,
            wal_recycle_files: 1,
            clock: Arc::new(SystemClock),
            storage: Arc::new(FsStorage),
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::invalid(m.to_string()));
        if self.memtable_size_bytes == 0 {
            return bad("memtable_size_bytes must be > 0");
        }
        if self.segment_size_bytes == 0 {
            return bad("segment_size_bytes must be > 0");
        }
        if self.block_size_bytes < 64 || self.block_size_bytes > (1 << 24) {
            return bad("block_size_bytes must be between 64 and 16 MiB");
        }
        if self.cohort_window_secs == 0 {
            return bad("cohort_window_secs must be > 0");
        }
        if !(self.partial_rewrite_dead_fraction > 0.0 && self.partial_rewrite_dead_fraction <= 1.0)
        {
            return bad("partial_rewrite_dead_fraction must be in (0, 1]");
        }
        if self.max_permanent_runs < 1 {
            return bad("max_permanent_runs must be >= 1");
        }
        if self.max_permanent_space_amp.is_nan() || self.max_permanent_space_amp <= 0.0 {
            return bad("max_permanent_space_amp must be > 0");
        }
        if self.bloom_bits_per_key > 64 {
            return bad("bloom_bits_per_key must be <= 64");
        }
        Ok(())
    }
}
