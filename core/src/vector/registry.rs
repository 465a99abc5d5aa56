//! The engine's table of opened collections, the write-path hook that feeds
//! their indexes, loading (file + reconciliation with the records) and saving.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use xxhash_rust::xxh3::xxh3_64;

use super::index::CollIndex;
use super::persist;
use super::record::{self, CatalogEntry};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::snapshot::ReadView;
use crate::storage::Storage;
use crate::types::{MemEntry, Operation};
use crate::wal::WalOp;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A write to a collection that its index has not applied yet.
#[derive(Debug)]
pub(crate) struct PendingOp {
    pub lsn: u64,
    pub death: i64,
    pub op: Operation,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One opened collection.
#[derive(Debug)]
pub(crate) struct CollState {
    pub id: u64,
    pub entry: CatalogEntry,
    pub catalog_hash: u64,
    /// Serialises writers of the index file (they share its temp file name).
    persist_lock: Mutex<()>,
    index: RwLock<CollIndex>,
    pending: Mutex<Vec<PendingOp>>,
    /// Snapshot reads below this LSN or before this time may need versions
    /// the index never had (it was loaded later) or dropped (vacuum); they
    /// are answered from the records.
    pub snap_floor: Mutex<(u64, i64)>,
    clock: Arc<dyn Clock>,
    pub loaded_from_file: AtomicBool,
    pub rebuilt: AtomicBool,
    pub replayed: AtomicU64,
    pub exact_searches: AtomicU64,
    pub hnsw_searches: AtomicU64,
    pub persists: AtomicU64,
}

impl CollState {
    /// The index with every logged write applied (read-your-writes).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, CollIndex> {
        if !lock(&self.pending).is_empty() {
            drop(self.write());
        }
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The index for writing, after applying every pending write. The pending
    /// list is taken under the index lock, so once any caller returns from
    /// here every write logged before it started is applied.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, CollIndex> {
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        let ops = std::mem::take(&mut *lock(&self.pending));
        for p in ops {
            match p.op {
                Operation::Put => idx.apply_put(&p.key, p.lsn, p.death, &p.value, false),
                Operation::Delete => idx.apply_delete(&p.key, p.lsn, false),
            }
        }
        if idx.should_vacuum() {
            let now = self.clock.now_nanos();
            *idx = idx.vacuum(now);
            // Set under the index lock: snapshot readers check it after
            // taking the read lock.
            *lock(&self.snap_floor) = (idx.max_lsn, now);
        }
        idx
    }

    fn persist(&self, storage: &dyn Storage, dir: &std::path::Path, force: bool) -> Result<()> {
        let _one_writer = lock(&self.persist_lock);
        let bytes = {
            let mut idx = self.write();
            if idx.changes_since_persist == 0 && !force {
                return Ok(());
            }
            idx.changes_since_persist = 0;
            persist::encode(&idx, self.id, self.catalog_hash)
        };
        persist::write_file(storage, dir, self.id, &bytes)?;
        self.persists.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Opened collections of one engine.
#[derive(Debug)]
pub(crate) struct Registry {
    clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    colls: RwLock<HashMap<u64, Arc<CollState>>>,
    any: AtomicBool,
    closed: AtomicBool,
    /// Serialises creating and loading collections.
    load_lock: Mutex<()>,
}

impl Registry {
    pub(crate) fn new(storage: Arc<dyn Storage>, dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Registry {
            clock,
            storage,
            dir,
            colls: RwLock::new(HashMap::new()),
            any: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            load_lock: Mutex::new(()),
        }
    }

    /// The write-path hook: called by the engine, under its WAL lock, for
    /// every batch it has logged, before the batch reaches the memtable.
    /// Cheap for batches without vectors of opened collections.
    pub(crate) fn observe(&self, first_lsn: u64, ts: i64, ops: &[WalOp]) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut colls: Option<RwLockReadGuard<'_, HashMap<u64, Arc<CollState>>>> = None;
        for (i, op) in ops.iter().enumerate() {
            let Some((id, key)) = record::parse_vector_key(&op.key) else {
                continue;
            };
            let colls =
                colls.get_or_insert_with(|| self.colls.read().unwrap_or_else(|p| p.into_inner()));
            if let Some(c) = colls.get(&id) {
                lock(&c.pending).push(PendingOp {
                    lsn: first_lsn + i as u64,
                    death: crate::types::death_time(ts, op.ttl),
                    op: op.op,
                    key: key.to_vec(),
                    value: op.value.clone(),
                });
            }
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<CollState>> {
        self.colls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// The opened collection `id`, loading it if needed. `view` reads the
    /// catalog; `fresh_view` is called after registration (and a WAL barrier)
    /// to take the view the records are scanned from; `now` is the clock.
    pub(crate) fn open(
        &self,
        id: u64,
        entry: CatalogEntry,
        catalog_value: &[u8],
        fresh_view: &dyn Fn() -> Result<ReadView>,
        barrier: &dyn Fn(),
        now: i64,
    ) -> Result<Arc<CollState>> {
        if let Some(c) = self.get(id) {
            return Ok(c);
        }
        let _g = lock(&self.load_lock);
        if let Some(c) = self.get(id) {
            return Ok(c);
        }
        let config = entry.config;
        let state = Arc::new(CollState {
            id,
            entry,
            catalog_hash: xxh3_64(catalog_value),
            index: RwLock::new(CollIndex::new(config)),
            pending: Mutex::new(Vec::new()),
            snap_floor: Mutex::new((u64::MAX, i64::MAX)),
            clock: Arc::clone(&self.clock),
            persist_lock: Mutex::new(()),
            loaded_from_file: AtomicBool::new(false),
            rebuilt: AtomicBool::new(false),
            replayed: AtomicU64::new(0),
            exact_searches: AtomicU64::new(0),
            hnsw_searches: AtomicU64::new(0),
            persists: AtomicU64::new(0),
        });
        // Hold the index while loading; writes from now on queue as pending.
        let mut idx = state.index.write().unwrap_or_else(|p| p.into_inner());
        self.colls
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::clone(&state));
        self.any.store(true, Ordering::Release);
        // A writer that passed the hook before registration has its batch in
        // the memtable once the WAL lock is free again.
        barrier();
        let res = self.load(&state, &mut idx, fresh_view, now);
        if let Err(e) = res {
            drop(idx);
            self.colls
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(e);
        }
        drop(idx);
        Ok(state)
    }

    fn load(
        &self,
        state: &CollState,
        idx: &mut CollIndex,
        fresh_view: &dyn Fn() -> Result<ReadView>,
        now: i64,
    ) -> Result<()> {
        let view = fresh_view()?;
        let base = view.read_lsn;
        let path = self.dir.join(persist::file_name(state.id));
        let fresh = CollIndex::new(state.entry.config);
        let loaded = match self.storage.exists(&path) {
            Ok(true) => match self.storage.read_all(&path) {
                Ok(buf) => persist::decode(&buf, state.id, state.catalog_hash, fresh.clone()).ok(),
                Err(_) => None,
            },
            _ => None,
        };
        let from_file = loaded.is_some();
        *idx = loaded.unwrap_or(fresh);
        // Every version newer than `base` plus the newest at or below it: what
        // any read at LSN >= base can see.
        let prefix = record::vector_prefix(state.id);
        let versions = persist::scan_versions(&view.version, &prefix, u64::MAX)?;
        let before = idx.nodes.len();
        let mut seen = vec![false; before];
        let mut replayed = 0u64;
        let mut i = 0;
        while i < versions.len() {
            let mut j = i;
            while j < versions.len() && versions[j].key == versions[i].key {
                j += 1;
            }
            // versions[i..j]: one key, newest first. Keep those > base and the
            // first <= base.
            let mut chain: Vec<&MemEntry> = Vec::new();
            for e in &versions[i..j] {
                chain.push(e);
                if e.lsn <= base {
                    break;
                }
            }
            chain.reverse();
            let key = &versions[i].key[record::PREFIX_LEN..];
            replayed += reconcile_key(idx, key, &chain, &mut seen, now);
            i = j;
        }
        // Nodes the records no longer back (lost in a crash, or their
        // deletes were compacted away before the file was written).
        for (id, s) in seen.iter().enumerate() {
            let n = &idx.nodes[id];
            if !s && n.dead_lsn == super::index::ALIVE {
                let key = n.key.clone();
                idx.nodes[id].dead_lsn = 0;
                idx.live -= 1;
                if idx
                    .keys
                    .get(&key)
                    .is_some_and(|k| k.node == Some(id as u32))
                {
                    idx.keys.remove(&key);
                }
                replayed += 1;
            }
        }
        if !from_file {
            idx.changes_since_persist = idx.changes_since_persist.max(1);
        }
        let mut floor = (base, now);
        if idx.should_vacuum() {
            *idx = idx.vacuum(now);
            floor = (idx.max_lsn.max(base), now);
        }
        *lock(&state.snap_floor) = floor;
        state.loaded_from_file.store(from_file, Ordering::Relaxed);
        state.rebuilt.store(!from_file, Ordering::Relaxed);
        state
            .replayed
            .store(if from_file { replayed } else { 0 }, Ordering::Relaxed);
        Ok(())
    }

    /// Saves every opened collection's index that changed since it was saved.
    pub(crate) fn persist_all(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let colls: Vec<Arc<CollState>> = self
            .colls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut first_err = None;
        for c in colls {
            if let Err(e) = c.persist(self.storage.as_ref(), &self.dir, false) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Saves one collection's index now.
    pub(crate) fn persist_one(&self, c: &CollState) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        c.persist(self.storage.as_ref(), &self.dir, true)
    }

    /// Saves the indexes and stops writing files (the directory lock is about
    /// to be released). Closing twice is a no-op.
    pub(crate) fn close(&self) -> Result<()> {
        let res = self.persist_all();
        self.closed.store(true, Ordering::SeqCst);
        res
    }
}

/// Brings one key of a loaded index in line with its record versions
/// (`chain`, oldest first). Returns how many versions had to be applied.
fn reconcile_key(
    idx: &mut CollIndex,
    key: &[u8],
    chain: &[&MemEntry],
    seen: &mut [bool],
    now: i64,
) -> u64 {
    // Nodes of this key the file already has, matched by LSN and value hash.
    let matches = |idx: &CollIndex, e: &MemEntry| -> Option<u32> {
        let ks = idx.keys.get(key)?;
        let id = ks.node?;
        let n = &idx.nodes[id as usize];
        (e.op == Operation::Put
            && n.lsn == e.lsn
            && e.value.as_deref().map(xxh3_64) == Some(n.vhash))
        .then_some(id)
    };
    let mut applied = 0;
    let mut start = 0;
    // The newest version the file has as current lets us skip everything up to it.
    for (p, e) in chain.iter().enumerate().rev() {
        if let Some(id) = matches(idx, e) {
            if (id as usize) < seen.len() {
                seen[id as usize] = true;
            }
            start = p + 1;
            break;
        }
    }
    let mut force = start == 0;
    for e in &chain[start..] {
        match (e.op, &e.value) {
            (Operation::Put, Some(v)) => {
                let death = e.death_time();
                if start == 0
                    && e.lsn <= chain.last().map_or(0, |l| l.lsn)
                    && death <= now
                    && chain.len() == 1
                {
                    // Expired before the load and nothing newer: invisible to
                    // every read from now on.
                    if force {
                        idx.apply_delete(key, e.lsn, true);
                        force = false;
                    }
                    continue;
                }
                idx.apply_put(key, e.lsn, death, v, force);
            }
            _ => idx.apply_delete(key, e.lsn, force),
        }
        force = false;
        applied += 1;
    }
    applied
}
