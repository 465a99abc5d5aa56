//! The engine: composes the WAL, memtables, segments, manifest and compactor.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;

use crate::batch::WriteBatch;
use crate::cache::BlockCache;
use crate::compactor::{CompactionPolicy, CompactionStats, Compactor};
use crate::config::{EdgestoreConfig, SyncMode};
use crate::error::{Error, Result};
use crate::iter::RangeIter;
use crate::manifest::{self, Manifest, ManifestEdit};
use crate::memtable::Memtable;
use crate::metrics::{Counters, Metrics};
use crate::segment::{self, Record, SegmentReader, WriterOptions};
use crate::snapshot::{point_get, PinRegistry, ReadView, Snapshot};
use crate::storage::{DirLock, Storage};
use crate::types::{cohort_bucket, Operation, NEVER, PERMANENT_COHORT};
use crate::version::Version;
use crate::wal::{self, WalWriter};

/// Name of the lock file inside a database directory.
pub const LOCK_FILE: &str = "LOCK";

/// The WAL being appended to and the sequence numbers handed out.
#[derive(Debug)]
struct WalState {
    writer: WalWriter,
    active: Arc<Memtable>,
    next_lsn: u64,
    /// LSN of the last record appended (0 if none).
    last_lsn: u64,
}

/// How far the WAL is known to be on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SyncPoint {
    wal_no: u64,
    offset: u64,
}

#[derive(Debug)]
struct SyncState {
    point: SyncPoint,
    /// A leader is fsyncing (without holding the lock).
    syncing: bool,
}

#[derive(Debug)]
struct Inner {
    config: EdgestoreConfig,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    lock: Mutex<Option<Box<dyn DirLock>>>,
    wal: Mutex<WalState>,
    /// How far the WAL is durable, and whether a writer is fsyncing it now.
    synced: Mutex<SyncState>,
    /// Signalled when an fsync ends: waiting writers check their record.
    synced_cv: Condvar,
    visible_lsn: AtomicU64,
    current: RwLock<Arc<Version>>,
    /// Versions whose last holder was a point read (a flush or compaction
    /// replaced them during the read): freed by the flush thread, so a
    /// reader does not spend milliseconds freeing a whole memtable.
    retired: Mutex<Vec<Version>>,
    /// Serialises flushes and compactions; owns the manifest.
    maintenance: Mutex<Manifest>,
    compactor: Compactor,
    pins: Arc<PinRegistry>,
    counters: Counters,
    closed: AtomicBool,
    poisoned: Mutex<Option<String>>,
    /// Group commit: durable writers inside `write` now, WAL records appended
    /// so far, and how many writers the last fsync overlapped.
    durable_writers: AtomicUsize,
    appends: AtomicU64,
    sync_peers: AtomicUsize,
    /// Opened vector collections (crate::vector); fed by the write path.
    vectors: crate::vector::Registry,
    /// Numbers of obsolete WAL files (below the durable manifest's log
    /// number) kept for reuse as the next WAL. Locked after `wal`.
    wal_pool: Mutex<Vec<u64>>,
}

/// What [`Engine::verify`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked (every block checksum, order, meta, merkle root).
    pub segments: u64,
    /// Records in them.
    pub segment_records: u64,
    /// WAL files checked.
    pub wal_files: u64,
    /// Batches in them.
    pub wal_batches: u64,
}

/// An embedded, durable, namespaced key-value store with TTLs.
///
/// `Send + Sync`; every method takes `&self`. Many threads may read while
/// others write; concurrent durable writers share fsyncs.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    /// Background threads; taken and joined by `close` or drop.
    threads: Mutex<Threads>,
}

#[derive(Debug, Default)]
struct Threads {
    compaction: Option<Background>,
    flusher: Option<Flusher>,
}

impl Threads {
    /// Stops and joins every thread (a flush or compaction in progress ends first).
    fn shutdown(&mut self) {
        if let Some(f) = self.flusher.take() {
            f.shutdown();
        }
        if let Some(bg) = self.compaction.take() {
            bg.shutdown();
        }
    }
}

#[derive(Debug)]
struct Background {
    stop: mpsc::Sender<()>,
    handle: Option<JoinHandle<()>>,
}

/// The thread that writes full memtables to segments, so writers do not wait
/// for a flush (up to a second memtable's worth; then they flush themselves).
#[derive(Debug)]
struct Flusher {
    wake: mpsc::SyncSender<()>,
    handle: JoinHandle<()>,
}

impl Flusher {
    fn start(inner: &Arc<Inner>) -> Result<Flusher> {
        // One pending wake-up is enough: the flush takes whatever is full.
        let (wake, rx) = mpsc::sync_channel::<()>(1);
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let handle = std::thread::Builder::new()
            .name("edgestore-flush".into())
            .spawn(move || {
                // A dropped sender ends the loop.
                while rx.recv().is_ok() {
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.closed.load(Ordering::SeqCst) {
                        break;
                    }
                    drop(std::mem::take(&mut *lock(&inner.retired)));
                    if inner.active_bytes() >= inner.config.memtable_size_bytes {
                        // A failure poisons the engine; writers report it.
                        let _ = inner.flush_to_segments();
                    }
                }
            })
            .map_err(|e| Error::io("starting the background flush thread", e))?;
        Ok(Flusher { wake, handle })
    }

    fn wake(&self) {
        // Full: a wake-up is already pending.
        let _ = self.wake.try_send(());
    }

    fn shutdown(self) {
        drop(self.wake);
        let _ = self.handle.join();
    }
}

/// Longest an fsync leader waits for another durable writer's record (a
/// small fraction of an fsync on flash or disk).
const GROUP_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_micros(30);

/// Counts a durable writer in `Inner::durable_writers` while it lives.
struct WriterCount<'a>(&'a AtomicUsize);

impl<'a> WriterCount<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        WriterCount(count)
    }
}

impl Drop for WriterCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts WAL number `no`: reuses the newest obsolete file in `pool` if there
/// is one (see [`WalWriter::recycle`]), else creates a new file.
fn start_wal(storage: &dyn Storage, dir: &Path, pool: &mut Vec<u64>, no: u64) -> Result<WalWriter> {
    if let Some(old) = pool.pop() {
        if let Some(w) = WalWriter::recycle(storage, dir, old, no)? {
            return Ok(w);
        }
        // The storage cannot overwrite in place: nothing will be reused.
        for n in std::iter::once(old).chain(std::mem::take(pool)) {
            let p = dir.join(wal::file_name(n));
            storage
                .remove_file(&p)
                .map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
    }
    WalWriter::create(storage, dir, no)
}

/// Keeps the obsolete WAL files `nos` in `pool` for reuse while it has room
/// (`config.wal_recycle_files`) and they are no larger than four memtables;
/// removes the others. The manifest that made them obsolete must be durable.
fn retire_wals(
    storage: &dyn Storage,
    dir: &Path,
    config: &EdgestoreConfig,
    pool: &mut Vec<u64>,
    nos: &[u64],
) -> Result<()> {
    let limit = (config.memtable_size_bytes as u64).saturating_mul(4);
    for &no in nos {
        if pool.contains(&no) {
            continue;
        }
        let p = dir.join(wal::file_name(no));
        if pool.len() < config.wal_recycle_files {
            let len = storage
                .open_read(&p)
                .and_then(|f| f.len())
                .map_err(|e| Error::io(format!("reading the size of {}", p.display()), e))?;
            if len <= limit {
                pool.push(no);
                continue;
            }
        }
        storage
            .remove_file(&p)
            .map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent before anything that
    // can panic, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Opens (creating if needed) the database at `config.path`: takes the
    /// directory lock, loads the manifest, removes orphan files, replays the
    /// WAL (cutting a torn tail) and starts a fresh WAL file.
    pub fn open(config: EdgestoreConfig) -> Result<Engine> {
        config.validate()?;
        let storage = Arc::clone(&config.storage);
        let dir = config.path.clone();
        create_dir_durably(storage.as_ref(), &dir)?;
        let dir_lock = match storage.lock(&dir.join(LOCK_FILE)) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Locked(dir)),
            Err(e) => return Err(Error::io(format!("locking {}", dir.display()), e)),
        };
        let manifest_path = dir.join(manifest::FILE_NAME);
        refuse_files_without_manifest(storage.as_ref(), &dir, &manifest_path)?;
        let mut manifest = Manifest::open_with(Arc::clone(&storage), &manifest_path)?;

        let names = storage
            .list_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let live: HashSet<u64> = manifest
            .list_segments()
            .iter()
            .map(|s| s.segment_id)
            .collect();
        let mut wal_nos = Vec::new();
        let mut orphans = Vec::new();
        // WAL files the manifest no longer needs: reused or removed.
        let mut obsolete_wals = Vec::new();
        for name in &names {
            let orphan = match (segment::parse_file_name(name), wal::parse_file_name(name)) {
                (Some(id), _) => !live.contains(&id),
                (_, Some(no)) if no < manifest.log_number() => {
                    obsolete_wals.push(no);
                    false
                }
                (_, Some(no)) => {
                    wal_nos.push(no);
                    false
                }
                _ => name.ends_with(".tmp"),
            };
            if orphan {
                orphans.push(dir.join(name));
            }
        }
        let mut wal_pool = Vec::new();
        if !orphans.is_empty() || !obsolete_wals.is_empty() {
            // The manifest just read may be visible but not yet durable (its
            // rename's directory sync failed or never ran): make it durable
            // before deleting or reusing files on its word, or a power loss
            // could bring back an older manifest that still needs them.
            let sync = || {
                storage
                    .sync_dir(&dir)
                    .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
            };
            sync()?;
            obsolete_wals.sort_unstable();
            retire_wals(
                storage.as_ref(),
                &dir,
                &config,
                &mut wal_pool,
                &obsolete_wals,
            )?;
            for path in &orphans {
                storage
                    .remove_file(path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            }
            sync()?;
        }

        let opts = WriterOptions {
            storage: Arc::clone(&storage),
            dir: dir.clone(),
            cohort_window_secs: config.cohort_window_secs,
            block_size: config.block_size_bytes,
            bloom_bits_per_key: config.bloom_bits_per_key,
            segment_size_bytes: config.segment_size_bytes,
            mmap_reads: config.mmap_reads,
            format_version: segment::VERSION,
        };
        let policy = CompactionPolicy {
            partial_rewrite_dead_fraction: config.partial_rewrite_dead_fraction,
            max_permanent_runs: config.max_permanent_runs,
            max_permanent_space_amp: config.max_permanent_space_amp,
        };
        let cache = (config.block_cache_bytes > 0).then(|| {
            Arc::new(BlockCache::new(
                config.block_cache_bytes,
                config.block_size_bytes,
                config.mmap_reads,
            ))
        });
        let compactor = Compactor::with_options(opts, config.compaction_write_budget_bytes, policy)
            .with_block_cache(cache);
        let mut segments = Vec::new();
        let mut max_lsn = manifest.last_lsn();
        for s in manifest.list_segments() {
            let r = compactor.reader(s.segment_id)?;
            if r.meta != *s {
                return Err(Error::corruption(
                    r.path(),
                    0,
                    "segment meta differs from the manifest",
                ));
            }
            max_lsn = max_lsn.max(s.max_lsn);
            segments.push(r);
        }

        // Replay the WAL files still needed, oldest first.
        wal_nos.sort_unstable();
        let mem = Arc::new(Memtable::for_size(config.memtable_size_bytes));
        for (i, no) in wal_nos.iter().enumerate() {
            let path = dir.join(wal::file_name(*no));
            let is_last = i + 1 == wal_nos.len();
            let replay = wal::replay(storage.as_ref(), &path, is_last)?;
            for b in &replay.batches {
                if b.last_lsn() <= manifest.last_lsn() {
                    continue; // already in segments
                }
                for (j, op) in b.ops.iter().enumerate() {
                    mem.insert(&op.key, op.record(b.first_lsn + j as u64, b.timestamp));
                }
                max_lsn = max_lsn.max(b.last_lsn());
            }
            // A file without a record (a crash while it was being created, or
            // before anything was logged in it) goes away: kept, its header
            // might never have reached the disk, and once it is no longer the
            // newest a bad header is corruption. A torn tail is cut, so the
            // file replays cleanly if the flush below fails. (What is replayed
            // is made durable by that flush, not by syncing these files: after
            // a process crash or a failed fsync their pages may never reach
            // the disk.)
            if replay.batches.is_empty() {
                storage
                    .remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                storage
                    .sync_dir(&dir)
                    .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
            } else if replay.torn {
                storage
                    .truncate(&path, replay.valid_len)
                    .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
            }
        }
        let next_wal = wal_nos
            .last()
            .copied()
            .unwrap_or(0)
            .max(manifest.log_number())
            + 1;
        let writer = start_wal(storage.as_ref(), &dir, &mut wal_pool, next_wal)?;
        if manifest.log_number() == 0 {
            // A new database: every WAL from the first one on is needed.
            manifest.apply(ManifestEdit {
                log_number: Some(1),
                ..Default::default()
            })?;
        }
        let synced = SyncPoint {
            wal_no: writer.no,
            offset: writer.offset,
        };
        let replayed = !mem.is_empty();
        // Only a forged file (its checksum valid) can claim the last LSN.
        let next_lsn = max_lsn.checked_add(1).ok_or_else(|| {
            Error::corruption(
                dir.join(manifest::FILE_NAME),
                0,
                "a record claims the last sequence number there is".to_string(),
            )
        })?;
        let version = Version::new(vec![Arc::clone(&mem)], segments);
        let inner = Arc::new(Inner {
            vectors: crate::vector::Registry::new(
                Arc::clone(&storage),
                dir.clone(),
                Arc::clone(&config.clock),
            ),
            dir,
            storage,
            lock: Mutex::new(Some(dir_lock)),
            wal: Mutex::new(WalState {
                writer,
                active: mem,
                next_lsn,
                last_lsn: max_lsn,
            }),
            synced: Mutex::new(SyncState {
                point: synced,
                syncing: false,
            }),
            synced_cv: Condvar::new(),
            visible_lsn: AtomicU64::new(max_lsn),
            current: RwLock::new(Arc::new(version)),
            retired: Mutex::new(Vec::new()),
            maintenance: Mutex::new(manifest),
            compactor,
            pins: Arc::new(PinRegistry::default()),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            durable_writers: AtomicUsize::new(0),
            appends: AtomicU64::new(0),
            sync_peers: AtomicUsize::new(0),
            poisoned: Mutex::new(None),
            wal_pool: Mutex::new(wal_pool),
            config,
        });
        if replayed {
            // Write what the WAL replayed to new, synced segment files before
            // anything new is acknowledged, and retire the old WAL files: their
            // pages read back here may never reach the disk (an earlier process
            // whose fsync failed: Linux drops the dirty pages and a later fsync
            // succeeds without writing them).
            inner.flush_replayed()?;
        }
        let mut threads = Threads::default();
        if let Some(every) = inner.config.background_compaction {
            threads.compaction = Some(Background::start(&inner, every)?);
        }
        if inner.config.background_flush {
            threads.flusher = Some(Flusher::start(&inner)?);
        }
        Ok(Engine {
            inner,
            threads: Mutex::new(threads),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EdgestoreConfig {
        &self.inner.config
    }

    /// Stores `value` under `key` in `ns`; it never expires.
    pub fn put(&self, ns: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        self.put_with_ttl(ns, key, value, 0)
    }

    /// Stores `value` under `key` in `ns`, expiring `ttl_secs` seconds from now
    /// (0 = never). Expired records are invisible to every read at once.
    pub fn put_with_ttl(&self, ns: &[u8], key: &[u8], value: &[u8], ttl_secs: u32) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put_with_ttl(ns, key, value, ttl_secs)?;
        self.write(b)
    }

    /// Deletes `key` in `ns` (a no-op for a missing key, still logged).
    pub fn delete(&self, ns: &[u8], key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(ns, key)?;
        self.write(b)
    }

    /// Applies a batch atomically. Returns when it is durable per the sync mode.
    ///
    /// When the write fills the memtable and no flusher keeps up (two
    /// memtables' worth waiting, or background flushes off), it then flushes
    /// inline. If that flush fails, this call returns its error although the
    /// batch is applied and readable: its WAL record may not have reached
    /// the disk (a failed fsync can drop written pages), so it is not
    /// reported as durable, and the database is poisoned.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_ref(&batch)
    }

    /// [`Engine::write`] of a borrowed batch, left as it is: a caller that
    /// keeps the batch when the write fails (the C and Python batches)
    /// needs no copy of it.
    pub fn write_ref(&self, batch: &WriteBatch) -> Result<()> {
        let bytes = self.inner.write(batch)?;
        let limit = self.inner.config.memtable_size_bytes;
        if bytes >= limit {
            let threads = lock(&self.threads);
            match &threads.flusher {
                // Past two memtables the flusher is behind: help it.
                Some(f) if bytes < limit.saturating_mul(2) => f.wake(),
                _ => {
                    drop(threads);
                    self.inner.flush_to_segments()?;
                }
            }
        }
        Ok(())
    }

    /// The value of `key` in `ns`, if present and not expired.
    pub fn get(&self, ns: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(ns, key, <[u8]>::to_vec)
    }

    /// Calls `f` on the value of `key` in `ns`, borrowed in place (from the
    /// memtable or the block cache), and returns what it returns: a point read
    /// that copies the value only if `f` does. `None` when absent or expired.
    pub fn get_with<R>(
        &self,
        ns: &[u8],
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        let (version, read_lsn) = self.inner.version_and_lsn()?;
        let clock = &self.inner.config.clock;
        let got = point_get(&version, read_lsn, ns, key, || clock.now_nanos(), f);
        self.release(version);
        got
    }

    /// Drops a point read's view. When a flush or compaction replaced the
    /// version during the read, the read may hold its last reference; the
    /// version (a whole memtable, perhaps) then goes to the flush thread
    /// to be freed rather than costing this caller milliseconds. Returns
    /// whether it did.
    fn release(&self, version: Arc<Version>) -> bool {
        let Some(version) = Arc::into_inner(version) else {
            return false;
        };
        let threads = lock(&self.threads);
        match threads.flusher.as_ref() {
            Some(flusher) => {
                lock(&self.inner.retired).push(version);
                flusher.wake();
                true
            }
            None => {
                drop(threads);
                drop(version);
                false
            }
        }
    }

    /// Live keys in `[start, end)` of `ns` with their values, in key order.
    pub fn range(&self, ns: &[u8], start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.view()?.range(ns, start, end)
    }

    /// Live keys of `ns` starting with `prefix`, with their values, in key order.
    pub fn prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.view()?.prefix(ns, prefix)
    }

    /// Streaming form of [`Engine::range`]; `end = None` runs to the end of `ns`.
    /// The iterator reads a consistent view taken when it was created.
    pub fn scan(&self, ns: &[u8], start: &[u8], end: Option<&[u8]>) -> Result<RangeIter> {
        self.inner.view()?.scan(ns, start, end)
    }

    /// Streaming form of [`Engine::prefix`].
    pub fn scan_prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<RangeIter> {
        self.inner.view()?.scan_prefix(ns, prefix)
    }

    /// The Merkle tree of `ns`'s live entries as they are now, with
    /// `16^depth` leaves (`depth` 1 to [`crate::MERKLE_MAX_DEPTH`]): two
    /// replicas compare roots, then the children of differing nodes, then
    /// exchange the keys of differing leaves (see [`crate::merkle`]). Reads
    /// the whole namespace from a consistent view;
    /// [`Snapshot::merkle_tree`] pairs the tree with the exact data it hashed.
    pub fn merkle_tree(&self, ns: &[u8], depth: u32) -> Result<crate::MerkleTree> {
        self.inner.view()?.merkle_tree(ns, depth)
    }

    /// The live pairs of `ns` whose keys fall in `leaves` (indexes of the
    /// `16^depth` leaves, any order, repeats allowed) of a `depth` tree, in
    /// key order, from a consistent view taken now: what a replica sends
    /// its peer for the leaves [`crate::MerkleTree::differing_leaves`]
    /// found. Reads the whole namespace once (a key's leaf comes from a hash
    /// of the key, so a leaf's keys are spread over the key space), testing
    /// each key's leaf in the engine. No leaves: an empty iterator. A leaf
    /// past `16^depth - 1` or a depth outside 1 to
    /// [`crate::MERKLE_MAX_DEPTH`] is `InvalidArgument`.
    pub fn scan_merkle_leaves(&self, ns: &[u8], depth: u32, leaves: &[u32]) -> Result<RangeIter> {
        self.inner.view()?.scan_merkle_leaves(ns, depth, leaves)
    }

    /// A consistent, owned view of the database as it is now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(
            self.inner.view()?,
            Arc::clone(&self.inner.pins),
        ))
    }

    /// Makes every write acknowledged so far durable (fsyncs the WAL). In
    /// [`SyncMode::Durable`] writes already are; in [`SyncMode::Buffered`] this
    /// is the barrier.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        let target = {
            let w = lock(&self.inner.wal);
            SyncPoint {
                wal_no: w.writer.no,
                offset: w.writer.offset,
            }
        };
        self.inner.sync_to(target)
    }

    /// Writes the memtable out as segments (one run per death-time cohort) and
    /// retires the WAL files it came from. An empty memtable is not an error.
    pub fn flush_to_segments(&self) -> Result<()> {
        self.inner.flush_to_segments()?;
        self.inner.vectors.persist_all()
    }

    /// Runs one compaction cycle at the clock's current time.
    pub fn compact_once(&self) -> Result<CompactionStats> {
        self.inner.compact_once()
    }

    /// Counters and sizes.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }

    /// Reads every segment and WAL file and checks every checksum.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.verify()
    }

    /// Syncs the WAL, releases the directory lock and refuses further calls
    /// with [`Error::Closed`]. Snapshots and iterators already taken stay readable.
    /// Closing twice is a no-op.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // No flush or compaction may still run once the lock is released.
        lock(&self.threads).shutdown();
        let vres = self.inner.vectors.close();
        let res = self.inner.sync_current_wal().and(vres);
        lock(&self.inner.lock).take();
        res
    }
}

/// Creates `dir` and any missing parents, and makes each new directory's
/// entry durable in its parent: the files inside are synced into their
/// directory, but a power loss could otherwise forget the directory itself.
/// The database directory's own entry is synced even when it exists: a
/// process that created it may have died before syncing it.
fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
    let mut missing = Vec::new();
    for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        if storage.exists(d).map_err(|e| io("checking", d, e))? {
            break;
        }
        missing.push(d);
    }
    storage
        .create_dir_all(dir)
        .map_err(|e| io("creating database directory", dir, e))?;
    if missing.first() != Some(&dir) {
        missing.insert(0, dir);
    }
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => continue,
        };
        storage
            .sync_dir(parent)
            .map_err(|e| io("syncing directory", parent, e))?;
    }
    Ok(())
}

/// A directory holding segment or WAL files but no manifest is a damaged
/// database, not a new one: opening it as new would delete its segments as
/// orphans and replay WAL files it had retired. (The manifest is written,
/// and its entry synced, before the first WAL is created.)
fn refuse_files_without_manifest(storage: &dyn Storage, dir: &Path, manifest: &Path) -> Result<()> {
    if storage
        .exists(manifest)
        .map_err(|e| Error::io(format!("checking manifest {}", manifest.display()), e))?
    {
        return Ok(());
    }
    let names = storage
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let data: Vec<&String> = names
        .iter()
        .filter(|n| segment::parse_file_name(n).is_some() || wal::parse_file_name(n).is_some())
        .collect();
    match data.first() {
        None => Ok(()),
        Some(first) => Err(Error::corruption(
            manifest.to_path_buf(),
            0,
            format!(
                "the manifest is missing but {} segment or WAL files remain (such as {first}); \
                 refusing to open this directory as a new database",
                data.len()
            ),
        )),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        lock(&self.threads).shutdown();
        if !self.inner.closed.load(Ordering::SeqCst) {
            // Best effort: in buffered mode this makes a clean shutdown durable.
            let _ = self.inner.vectors.close();
            let _ = self.inner.sync_current_wal();
        }
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(why) = lock(&self.poisoned).as_ref() {
            return Err(Error::Poisoned(why.clone()));
        }
        Ok(())
    }

    /// Records a failure after which the on-disk state is uncertain.
    fn poison<T>(&self, e: Error) -> Result<T> {
        let mut p = lock(&self.poisoned);
        if p.is_none() {
            *p = Some(e.to_string());
        }
        Err(e)
    }

    fn view(&self) -> Result<ReadView> {
        let (version, read_lsn) = self.version_and_lsn()?;
        Ok(ReadView {
            version,
            read_lsn,
            read_time: self.config.clock.now_nanos(),
        })
    }

    /// The current version and the newest LSN a read of it may see.
    fn version_and_lsn(&self) -> Result<(Arc<Version>, u64)> {
        self.check_open()?;
        // Version first, then the LSN: everything in the version's segments is
        // at or below any LSN read afterwards.
        let version = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        Ok((version, self.visible_lsn.load(Ordering::Acquire)))
    }

    /// Bytes in the active memtable.
    fn active_bytes(&self) -> usize {
        lock(&self.wal).active.approx_bytes()
    }

    /// Appends and applies a batch; returns the active memtable's size after it.
    fn write(&self, batch: &WriteBatch) -> Result<usize> {
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(0);
        }
        let _durable = (self.config.sync_mode == SyncMode::Durable)
            .then(|| WriterCount::enter(&self.durable_writers));
        let n = batch.ops.len() as u64;
        let (target, mem_bytes) = {
            let mut w = lock(&self.wal);
            // Re-check under the lock: a failure may have poisoned us meanwhile.
            self.check_writable()?;
            let first = w.next_lsn;
            let ts = self.config.clock.now_nanos();
            let record = w.writer.record(first, ts, &batch.ops);
            if let Err(e) = w.writer.append(&record) {
                // Part of the record may be on disk; appending after it would
                // turn a torn tail into mid-log corruption.
                return self.poison(e);
            }
            self.appends.fetch_add(1, Ordering::Release);
            self.vectors.observe(first, ts, &batch.ops);
            for (i, op) in batch.ops.iter().enumerate() {
                w.active.insert(&op.key, op.record(first + i as u64, ts));
            }
            w.next_lsn = first + n;
            w.last_lsn = first + n - 1;
            Counters::add(&self.counters.user_writes, n);
            Counters::add(&self.counters.user_bytes, batch.user_bytes);
            Counters::add(&self.counters.wal_bytes, record.len() as u64);
            let mem_bytes = w.active.approx_bytes();
            if self.config.sync_mode == SyncMode::Buffered {
                self.visible_lsn.fetch_max(w.last_lsn, Ordering::AcqRel);
                return Ok(mem_bytes);
            }
            let target = SyncPoint {
                wal_no: w.writer.no,
                offset: w.writer.offset,
            };
            (target, mem_bytes)
        };
        self.sync_to(target)?;
        Ok(mem_bytes)
    }

    /// Group commit: returns once the WAL is synced at least to `target`. One
    /// writer at a time (the leader) fsyncs everything appended so far, with
    /// the lock released so others can append meanwhile; the rest wait on a
    /// condition variable and return when an fsync covered their record.
    ///
    /// Every fsync of the WAL goes through here (a flush's too, and a
    /// rotation's waits its turn): one at a time, and none once poisoned.
    /// Linux reports a write-back error to one fsync of a file only, so a
    /// second fsync in flight, or one after a failure, could return success
    /// for pages the failure dropped.
    fn sync_to(&self, target: SyncPoint) -> Result<()> {
        let mut st = lock(&self.synced);
        loop {
            if st.point >= target {
                return Ok(());
            }
            // Not check_writable: close() syncs after marking the engine closed.
            if let Some(why) = lock(&self.poisoned).as_ref() {
                return Err(Error::Poisoned(why.clone()));
            }
            if !st.syncing {
                break;
            }
            st = self.synced_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.syncing = true;
        drop(st);
        let res = self.lead_sync();
        let mut st = lock(&self.synced);
        st.syncing = false;
        if let Ok(point) = res {
            // max: a rotation may have moved the point to a newer WAL meanwhile.
            st.point = st.point.max(point);
        }
        self.synced_cv.notify_all();
        res.map(|_| ())
    }

    /// The leader's part of a group commit: fsync what is appended, return
    /// the point now durable.
    fn lead_sync(&self) -> Result<SyncPoint> {
        if self.sync_peers.load(Ordering::Relaxed) > 1 {
            // Other durable writers overlapped the last fsync: give the next
            // one a moment to append, so this fsync covers its record too
            // (two writers otherwise alternate fsyncs of one record each).
            let seen = self.appends.load(Ordering::Acquire);
            let start = std::time::Instant::now();
            while self.appends.load(Ordering::Acquire) == seen
                && start.elapsed() < GROUP_COMMIT_WAIT
            {
                std::thread::yield_now();
            }
        }
        let (file, point, last_lsn) = {
            let w = lock(&self.wal);
            (
                Arc::clone(&w.writer.file),
                SyncPoint {
                    wal_no: w.writer.no,
                    offset: w.writer.offset,
                },
                w.last_lsn,
            )
        };
        let peers = self.durable_writers.load(Ordering::Relaxed);
        if let Err(e) = file.sync_data() {
            // Never retry a failed fsync: the kernel may have dropped the dirty pages.
            return self.poison(Error::io("syncing the WAL", e));
        }
        self.note_synced(point);
        let peers = peers.max(self.durable_writers.load(Ordering::Relaxed));
        self.sync_peers.store(peers, Ordering::Relaxed);
        Counters::add(&self.counters.wal_syncs, 1);
        self.visible_lsn.fetch_max(last_lsn, Ordering::AcqRel);
        Ok(point)
    }

    /// Tells the WAL writer that `point` is durable, so the records it frames
    /// from now on say so (replay tells a crash's hole in the log from
    /// damage by it). A rotation may have moved on to a newer WAL meanwhile.
    fn note_synced(&self, point: SyncPoint) {
        let mut w = lock(&self.wal);
        if w.writer.no == point.wal_no {
            w.writer.mark_synced(point.offset);
        }
    }

    /// Syncs everything appended so far. Once poisoned nothing can be synced:
    /// this fails with `Poisoned` if anything appended is not yet durable.
    fn sync_current_wal(&self) -> Result<()> {
        let target = {
            let w = lock(&self.wal);
            SyncPoint {
                wal_no: w.writer.no,
                offset: w.writer.offset,
            }
        };
        self.sync_to(target)
    }

    fn install(&self, version: Version) {
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(version),
        );
        // Freed (when this was its last holder) after the lock is released:
        // readers wait for nothing but the swap.
        drop(old);
    }

    fn current(&self) -> Arc<Version> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn flush_to_segments(&self) -> Result<()> {
        self.check_writable()?;
        let mut manifest = lock(&self.maintenance);
        // 0. The slow part of a rotation, done while writers keep appending:
        //    sync what the current WAL holds so far (megabytes in buffered
        //    mode). The sync under the WAL lock below then covers only the
        //    records appended meanwhile, and writers wait for that short one
        //    alone. (The next WAL is still created under the lock, after the
        //    full sync: open takes a WAL followed by a newer one as complete,
        //    so no newer WAL may exist while this one has unsynced records.)
        //    It is a group-commit sync like a durable writer's, never one
        //    beside it: see `sync_to`.
        let point = {
            let w = lock(&self.wal);
            if w.active.is_empty() {
                return Ok(());
            }
            SyncPoint {
                wal_no: w.writer.no,
                offset: w.writer.offset,
            }
        };
        self.sync_to(point)?;
        // 1. Rotate: the memtable becomes immutable, a new WAL takes new writes.
        let (imm, new_wal_no) = {
            let mut synced = lock(&self.synced);
            // The rotation's fsync below is one of the WAL's syncs too: it
            // waits for a leader's to finish (holding `synced` keeps the
            // next one from starting) and is never made once poisoned.
            while synced.syncing {
                synced = self
                    .synced_cv
                    .wait(synced)
                    .unwrap_or_else(|p| p.into_inner());
            }
            let mut w = lock(&self.wal);
            // Checked under the WAL lock: a writer whose append failed
            // poisons with it held, and nothing may follow its partial record.
            if let Some(why) = lock(&self.poisoned).as_ref() {
                return Err(Error::Poisoned(why.clone()));
            }
            // The end-of-log marker: replay of a rotated WAL stops there
            // (what follows in a reused file is stale).
            let marker = wal::end_marker(w.writer.no);
            if let Err(e) = w.writer.append(&marker) {
                return self.poison(e);
            }
            if let Err(e) = w.writer.file.sync_data() {
                return self.poison(Error::io("syncing the WAL before rotation", e));
            }
            let next = {
                let mut pool = lock(&self.wal_pool);
                start_wal(self.storage.as_ref(), &self.dir, &mut pool, w.writer.no + 1)
            };
            let writer = match next {
                Ok(wr) => wr,
                Err(e) => return self.poison(e),
            };
            // Everything in the old WAL is durable now (synced above).
            synced.point = SyncPoint {
                wal_no: writer.no,
                offset: writer.offset,
            };
            self.synced_cv.notify_all();
            self.visible_lsn.fetch_max(w.last_lsn, Ordering::AcqRel);
            w.writer = writer;
            (self.seal_active(&mut w), w.writer.no)
        };
        match self.write_memtable(&mut manifest, &imm, new_wal_no) {
            Ok(()) => Ok(()),
            // The memtable stays readable and in the WAL; the engine stops
            // taking writes until reopened, which replays it.
            Err(e) => self.poison(e),
        }
    }

    /// Replaces the active memtable with an empty one and publishes a
    /// version with the new one in front; returns the old one, now immutable
    /// (readers still see it until its segments are published).
    fn seal_active(&self, w: &mut WalState) -> Arc<Memtable> {
        let imm = std::mem::replace(
            &mut w.active,
            Arc::new(Memtable::for_size(self.config.memtable_size_bytes)),
        );
        let cur = self.current();
        let mut mems = vec![Arc::clone(&w.active)];
        mems.extend(cur.mems.iter().cloned());
        self.install(Version::new(mems, cur.segments.clone()));
        imm
    }

    /// At open, before anything new is written: writes the replayed memtable
    /// to segments and retires the WAL files it came from. The WAL started at
    /// open holds none of it, so unlike [`Inner::flush_to_segments`] this does
    /// not rotate: that WAL (a reused file when one was kept) stays the one
    /// new writes go to, instead of a new file taking its place.
    fn flush_replayed(&self) -> Result<()> {
        let mut manifest = lock(&self.maintenance);
        let (imm, wal_no) = {
            let mut w = lock(&self.wal);
            (self.seal_active(&mut w), w.writer.no)
        };
        match self.write_memtable(&mut manifest, &imm, wal_no) {
            Ok(()) => Ok(()),
            Err(e) => self.poison(e),
        }
    }

    /// Writes an immutable memtable as segments, publishes them and retires its WAL.
    fn write_memtable(
        &self,
        manifest: &mut Manifest,
        imm: &Arc<Memtable>,
        new_wal_no: u64,
    ) -> Result<()> {
        let now = self.config.clock.now_nanos();
        let cur = self.current();
        let window = self.config.cohort_window_secs;
        let opts = self.compactor.writer_options();
        // The permanent cohort, usually most of a memtable, streams into its
        // files as the memtable is read, so a flush holds one block of it,
        // not a copy of every record. TTL cohorts are gathered first and
        // written one after another: a memtable may span many, and each
        // file open at once would cost a descriptor.
        let mut permanent: Option<segment::SplitWriter> = None;
        let mut cohorts: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
        let mut route = |rec: Record, manifest: &mut Manifest| -> Result<()> {
            let bucket = cohort_bucket(rec.retain_until, window);
            if bucket != PERMANENT_COHORT {
                cohorts.entry(bucket).or_default().push(rec);
                return Ok(());
            }
            let w = permanent.get_or_insert_with(|| {
                segment::SplitWriter::new(opts, manifest.allocate_segment_id())
            });
            w.push(&rec, &mut || manifest.allocate_segment_id())
        };
        let mut read = || -> Result<()> {
            for e in imm.newest_versions() {
                let mut rec = Record::new(e);
                if rec.retain_until == NEVER && rec.entry.op == Operation::Put {
                    // Kept forever already: no older version can outlive it, so
                    // skip the lookup (most of a flush's cost for permanent data).
                    route(rec, manifest)?;
                    continue;
                }
                // An older version that outlives this record must not resurface when
                // this record's file is dropped: retain this one as long.
                let older = cur
                    .newest_in_segments(&rec.entry.key)?
                    .map(|r| r.retain_until)
                    .filter(|&t| t > now);
                if !rec.entry.is_live_at(now) {
                    let Some(older) = older else { continue }; // nothing to hide: drop it
                    rec.entry.op = Operation::Delete;
                    rec.entry.value = None;
                    rec.retain_until = older;
                } else if let Some(older) = older {
                    rec.retain_until = rec.retain_until.max(older);
                }
                route(rec, manifest)?;
            }
            Ok(())
        };
        let mut metas = Vec::new();
        let streamed = read().and_then(|()| match permanent.as_mut() {
            Some(w) => w.finish(),
            None => Ok(Vec::new()),
        });
        match streamed {
            Ok(m) => metas.extend(m),
            Err(e) => {
                if let Some(w) = permanent {
                    w.abandon();
                }
                return Err(e);
            }
        }
        for records in cohorts.into_values() {
            let run = manifest.allocate_segment_id();
            metas.extend(segment::write_split(opts, records, run, || {
                manifest.allocate_segment_id()
            })?);
        }
        let bytes: u64 = metas.iter().map(|m| m.file_size).sum();
        let mut readers = Vec::with_capacity(metas.len());
        for m in &metas {
            let r = Arc::new(
                SegmentReader::open_with(
                    self.storage.as_ref(),
                    &self.dir,
                    m.segment_id,
                    self.config.mmap_reads,
                )?
                .with_cache(self.compactor.block_cache()),
            );
            self.compactor.adopt(Arc::clone(&r));
            readers.push(r);
        }
        let last_lsn = imm.max_lsn();
        manifest.apply(ManifestEdit {
            add: metas,
            log_number: Some(new_wal_no),
            last_lsn,
            ..Default::default()
        })?;

        let cur = self.current();
        let mems = cur
            .mems
            .iter()
            .filter(|m| !Arc::ptr_eq(m, imm))
            .cloned()
            .collect();
        let mut segments = cur.segments.clone();
        segments.extend(readers);
        self.install(Version::new(mems, segments));
        Counters::add(&self.counters.flushes, 1);
        Counters::add(&self.counters.flush_bytes, bytes);

        // The (durable) manifest no longer needs older WAL files: keep some
        // for reuse, remove the rest. A crash before they are gone is
        // harmless (open reuses or deletes them).
        let names = self
            .storage
            .list_dir(&self.dir)
            .map_err(|e| Error::io("listing WAL files", e))?;
        let mut old: Vec<u64> = names
            .iter()
            .filter_map(|n| wal::parse_file_name(n))
            .filter(|&no| no < new_wal_no)
            .collect();
        old.sort_unstable();
        let mut pool = lock(&self.wal_pool);
        retire_wals(
            self.storage.as_ref(),
            &self.dir,
            &self.config,
            &mut pool,
            &old,
        )
    }

    fn compact_once(&self) -> Result<CompactionStats> {
        self.check_writable()?;
        let now = self.config.clock.now_nanos();
        let readers = |m: &Manifest| -> Result<Vec<_>> {
            m.list_segments()
                .iter()
                .map(|s| self.compactor.reader(s.segment_id))
                .collect()
        };
        // Readers see each finished job at once (fewer runs to look in). The
        // maintenance lock is taken only around each edit, so flushes (and
        // the writers waiting on them) do not wait for a merge.
        let mut open_failed = None;
        let stats =
            self.compactor
                .compact_cycle_shared(&self.maintenance, now, |m| match readers(m) {
                    Ok(segs) => self.install(Version::new(self.current().mems.clone(), segs)),
                    Err(e) => {
                        open_failed.get_or_insert(e);
                    }
                });
        // A cycle that failed part-way may have edited the manifest after its
        // last report (a merge published, its inputs not yet deleted):
        // install whatever the manifest now says. A cycle that succeeded
        // reported every edit, already installed.
        if stats.is_err() {
            let manifest = lock(&self.maintenance);
            match readers(&manifest) {
                Ok(segs) => self.install(Version::new(self.current().mems.clone(), segs)),
                Err(e) => return self.poison(e),
            }
        }
        if let Some(e) = open_failed {
            // A segment the manifest names failed to open: what an install
            // at the end of the cycle would have reported.
            return self.poison(e);
        }
        let stats = match stats {
            Ok(s) => s,
            Err(e) => return self.poison(e),
        };
        Counters::add(&self.counters.compactions, 1);
        Counters::add(&self.counters.compaction_bytes, stats.bytes_written);
        Counters::add(
            &self.counters.compaction_reclaimed_bytes,
            stats.bytes_reclaimed,
        );
        Ok(stats)
    }

    fn metrics(&self) -> Metrics {
        let cur = self.current();
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            user_writes: ld(&c.user_writes),
            user_bytes_written: ld(&c.user_bytes),
            wal_bytes_written: ld(&c.wal_bytes),
            wal_syncs: ld(&c.wal_syncs),
            flushes: ld(&c.flushes),
            flush_bytes_written: ld(&c.flush_bytes),
            compactions: ld(&c.compactions),
            compaction_bytes_written: ld(&c.compaction_bytes),
            compaction_bytes_reclaimed: ld(&c.compaction_reclaimed_bytes),
            segments: cur.segments.len() as u64,
            segment_bytes: cur.segments.iter().map(|s| s.meta.file_size).sum(),
            sorted_runs: cur.runs.len() as u64,
            memtable_bytes: cur.mems.iter().map(|m| m.approx_bytes() as u64).sum(),
            pinned_segments: self.pins.live_pins() as u64,
            snapshot_held_bytes: self.pins.held_bytes_outside(|| {
                let now = self.current();
                now.segments.iter().map(|s| s.meta.segment_id).collect()
            }),
        }
    }

    fn verify(&self) -> Result<VerifyReport> {
        self.check_open()?;
        // Hold maintenance so no WAL file is retired while we read it.
        let m = lock(&self.maintenance);
        let mut report = VerifyReport::default();
        for s in &self.current().segments {
            report.segment_records += s.verify()?;
            report.segments += 1;
        }
        let names = self
            .storage
            .list_dir(&self.dir)
            .map_err(|e| Error::io("listing WAL files", e))?;
        // Obsolete files kept for reuse are not part of the log.
        let mut nos: Vec<u64> = names
            .iter()
            .filter_map(|n| wal::parse_file_name(n))
            .filter(|&no| no >= m.log_number())
            .collect();
        nos.sort_unstable();
        for (i, no) in nos.iter().enumerate() {
            let r = wal::replay(
                self.storage.as_ref(),
                &self.dir.join(wal::file_name(*no)),
                i + 1 == nos.len(),
            )?;
            report.wal_files += 1;
            report.wal_batches += r.batches.len() as u64;
        }
        Ok(report)
    }
}

impl Background {
    fn start(inner: &Arc<Inner>, every: std::time::Duration) -> Result<Background> {
        let (stop, rx) = mpsc::channel::<()>();
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let handle = std::thread::Builder::new()
            .name("edgestore-compaction".into())
            .spawn(move || {
                // Any message or a dropped sender ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.closed.load(Ordering::SeqCst) {
                        break;
                    }
                    // Errors poison the engine; foreground calls report them.
                    let _ = inner.compact_once();
                }
            })
            // Asked for background compaction and cannot have it: say so
            // rather than silently never compacting.
            .map_err(|e| Error::io("starting the background compaction thread", e))?;
        Ok(Background {
            stop,
            handle: Some(handle),
        })
    }

    fn shutdown(mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Access for the vector module (crate::vector), kept apart from the engine proper.
impl Engine {
    pub(crate) fn vector_registry(&self) -> &crate::vector::Registry {
        &self.inner.vectors
    }

    pub(crate) fn read_view(&self) -> Result<ReadView> {
        self.inner.view()
    }

    /// Returns once no writer is inside the WAL critical section it was in
    /// when this was called.
    pub(crate) fn wal_barrier(&self) {
        drop(lock(&self.inner.wal));
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that counts its readings.
    #[derive(Debug, Default)]
    struct CountingClock(AtomicU64);

    impl crate::clock::Clock for CountingClock {
        fn now_nanos(&self) -> i64 {
            self.0.fetch_add(1, Ordering::SeqCst);
            1_000_000_000
        }
    }

    /// A point read reads the clock only for a record with a TTL.
    #[test]
    fn point_reads_read_the_clock_only_for_records_with_a_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(CountingClock::default());
        let mut c = EdgestoreConfig::new(dir.path());
        c.clock = clock.clone();
        c.background_flush = false;
        c.background_compaction = None;
        let db = Engine::open(c).unwrap();
        db.put(b"ns", b"plain", b"v").unwrap();
        db.put_with_ttl(b"ns", b"ttl", b"w", 60).unwrap();
        db.delete(b"ns", b"gone").unwrap();
        for flushed in [false, true] {
            let before = clock.0.load(Ordering::SeqCst);
            assert_eq!(db.get(b"ns", b"plain").unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(db.get(b"ns", b"gone").unwrap(), None);
            assert_eq!(db.get(b"ns", b"missing").unwrap(), None);
            assert_eq!(clock.0.load(Ordering::SeqCst), before, "flushed: {flushed}");
            assert_eq!(db.get(b"ns", b"ttl").unwrap().as_deref(), Some(&b"w"[..]));
            assert_eq!(clock.0.load(Ordering::SeqCst), before + 1);
            db.flush_to_segments().unwrap();
        }
    }

    /// A point read left holding the last reference to a replaced version
    /// hands it to the flush thread, which frees it; without a flush thread
    /// the reader frees it.
    #[test]
    fn a_replaced_version_is_freed_by_the_flush_thread() {
        for background in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = EdgestoreConfig::new(dir.path());
            c.background_flush = background;
            c.background_compaction = None;
            let db = Engine::open(c).unwrap();
            db.put(b"ns", b"k", b"v").unwrap();
            let view = db.inner.view().unwrap();
            let mem = Arc::downgrade(&view.version.mems[0]);
            db.flush_to_segments().unwrap();
            assert_eq!(view.get(b"ns", b"k").unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(db.release(view.version), background);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while mem.upgrade().is_some() {
                assert!(std::time::Instant::now() < deadline, "never freed");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(lock(&db.inner.retired).is_empty());
            assert_eq!(db.get(b"ns", b"k").unwrap().as_deref(), Some(&b"v"[..]));
        }
    }
}
