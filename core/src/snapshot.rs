//! Snapshots and the read path shared with the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::iter::RangeIter;
use crate::merkle::{LeafSet, MerkleBuilder, MerkleTree};
use crate::types::{
    check_key, encode_key, is_live, ns_prefix_len, prefix_successor, with_encoded_key,
};
use crate::version::Version;

/// A consistent view: a version, the newest LSN it may see, and the instant
/// against which TTLs are judged.
#[derive(Debug, Clone)]
pub(crate) struct ReadView {
    pub version: Arc<Version>,
    pub read_lsn: u64,
    pub read_time: i64,
}

impl ReadView {
    pub(crate) fn get(&self, ns: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(ns, key, <[u8]>::to_vec)
    }

    /// Calls `f` on the live value of `key` in `ns`, read in place; `None`
    /// when absent, deleted or expired.
    pub(crate) fn get_with<R>(
        &self,
        ns: &[u8],
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        let now = self.read_time;
        point_get(&self.version, self.read_lsn, ns, key, || now, f)
    }

    /// Streaming iterator over user keys in `[start, end)` (`end = None`: to the
    /// end of the namespace).
    pub(crate) fn scan(&self, ns: &[u8], start: &[u8], end: Option<&[u8]>) -> Result<RangeIter> {
        check_key(ns, start)?;
        if let Some(e) = end {
            check_key(ns, e)?;
        }
        let istart = encode_key(ns, start);
        let iend = match end {
            Some(e) => Some(encode_key(ns, e)),
            None => prefix_successor(&encode_key(ns, b"")),
        };
        RangeIter::new(
            Arc::clone(&self.version),
            istart,
            iend,
            self.read_lsn,
            self.read_time,
            ns_prefix_len(ns),
        )
    }

    pub(crate) fn scan_prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<RangeIter> {
        check_key(ns, prefix)?;
        let istart = encode_key(ns, prefix);
        let iend = prefix_successor(&istart);
        RangeIter::new(
            Arc::clone(&self.version),
            istart,
            iend,
            self.read_lsn,
            self.read_time,
            ns_prefix_len(ns),
        )
    }

    pub(crate) fn range(
        &self,
        ns: &[u8],
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if end <= start {
            check_key(ns, start)?;
            check_key(ns, end)?;
            return Ok(Vec::new());
        }
        self.scan(ns, start, Some(end))?.collect()
    }

    pub(crate) fn prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix(ns, prefix)?.collect()
    }

    /// The live pairs of `ns` in this view whose keys fall in `leaves` of
    /// a `depth` tree (one scan, each key's leaf tested in the engine).
    pub(crate) fn scan_merkle_leaves(
        &self,
        ns: &[u8],
        depth: u32,
        leaves: &[u32],
    ) -> Result<RangeIter> {
        let mut set = LeafSet::new(depth, leaves)?;
        if set.is_empty() {
            // No leaf, no pair: an empty range rather than a filtered
            // scan of the whole namespace.
            return self.scan(ns, b"", Some(b""));
        }
        Ok(self
            .scan(ns, b"", None)?
            .with_key_filter(Box::new(move |key| set.contains_key(key))))
    }

    /// The Merkle tree of `ns`'s live entries in this view (one scan).
    pub(crate) fn merkle_tree(&self, ns: &[u8], depth: u32) -> Result<MerkleTree> {
        let mut b = MerkleBuilder::new(depth)?;
        let mut it = self.scan(ns, b"", None)?;
        while let Some((k, v)) = it.next_entry()? {
            b.add(k, v)?;
        }
        Ok(b.finish())
    }
}

/// Calls `f` on the live value of `key` in `ns` in `version` at `read_lsn`,
/// read in place; `None` when absent, deleted or expired. TTLs are judged at
/// `now()`, which is called only when the version found has a TTL: a point
/// read of a record without one (most reads) needs no clock.
pub(crate) fn point_get<R>(
    version: &Version,
    read_lsn: u64,
    ns: &[u8],
    key: &[u8],
    now: impl FnOnce() -> i64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    check_key(ns, key)?;
    Ok(with_encoded_key(ns, key, |ikey| {
        version.get_with(ikey, read_lsn, |e| {
            is_live(e.op, e.timestamp, e.ttl, now)
                .then(|| e.value.map(f))
                .flatten()
        })
    })?
    .flatten())
}

/// Counts of live snapshots per segment id, with each file's size, for
/// [`crate::Metrics::pinned_segments`] and
/// [`crate::Metrics::snapshot_held_bytes`]. Compaction does not consult
/// it: a snapshot reads through its own open files, which outlive their
/// removal from the database.
#[derive(Debug, Default)]
pub(crate) struct PinRegistry {
    /// Segment id -> (snapshots holding it, its file size).
    pins: Mutex<HashMap<u64, (usize, u64)>>,
}

impl PinRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (usize, u64)>> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more snapshot holding each `(segment id, file size)`.
    pub(crate) fn pin(&self, segments: &[(u64, u64)]) {
        let mut p = self.lock();
        for &(id, bytes) in segments {
            p.entry(id).or_insert((0, bytes)).0 += 1;
        }
    }

    pub(crate) fn unpin(&self, segments: &[(u64, u64)]) {
        let mut p = self.lock();
        for (id, _) in segments {
            if let Some((n, _)) = p.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    p.remove(id);
                }
            }
        }
    }

    pub(crate) fn live_pins(&self) -> usize {
        self.lock().len()
    }

    /// Bytes of the held files that are not among the segments `current`
    /// returns: files no longer in the database whose space only snapshots
    /// keep. `current` is read with the registry locked, so every snapshot
    /// counted holds a version no newer than it (whose files are either
    /// still in it or removed), never one of a newer version's files.
    pub(crate) fn held_bytes_outside(&self, current: impl FnOnce() -> Vec<u64>) -> u64 {
        let pins = self.lock();
        let live: std::collections::HashSet<u64> = current().into_iter().collect();
        pins.iter()
            .filter(|(id, _)| !live.contains(id))
            .map(|(_, &(_, bytes))| bytes)
            .sum()
    }
}

/// A read-only view of the database as it was when taken, memtable included.
/// TTLs are judged at the instant it was taken: a record alive then stays
/// readable through the snapshot after it expires.
///
/// Owned, `Send + Sync`, independent of the engine's lifetime. It holds the
/// segment files it reads open: compaction goes on merging and dropping
/// them from the database meanwhile, and the disk space of those it removed
/// returns when the snapshot (and any iterator reading them) is dropped,
/// with the memtables it holds.
#[derive(Debug)]
pub struct Snapshot {
    view: ReadView,
    /// The segments it holds: (id, file size).
    pinned: Vec<(u64, u64)>,
    registry: Arc<PinRegistry>,
}

impl Snapshot {
    pub(crate) fn new(view: ReadView, registry: Arc<PinRegistry>) -> Self {
        let pinned = view.version.segment_sizes();
        registry.pin(&pinned);
        Snapshot {
            view,
            pinned,
            registry,
        }
    }

    /// The value of `key` in `ns` as of the snapshot.
    pub fn get(&self, ns: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view.get(ns, key)
    }

    /// [`Snapshot::get`] without a copy: calls `f` on the borrowed value.
    pub fn get_with<R>(
        &self,
        ns: &[u8],
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        self.view.get_with(ns, key, f)
    }

    /// Keys in `[start, end)` of `ns` with their values, in key order.
    pub fn range(&self, ns: &[u8], start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.view.range(ns, start, end)
    }

    /// Keys of `ns` starting with `prefix`, with their values, in key order.
    pub fn prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.view.prefix(ns, prefix)
    }

    /// Streaming form of [`Snapshot::range`]; `end = None` runs to the end of `ns`.
    pub fn scan(&self, ns: &[u8], start: &[u8], end: Option<&[u8]>) -> Result<RangeIter> {
        self.view.scan(ns, start, end)
    }

    /// Streaming form of [`Snapshot::prefix`].
    pub fn scan_prefix(&self, ns: &[u8], prefix: &[u8]) -> Result<RangeIter> {
        self.view.scan_prefix(ns, prefix)
    }

    /// The Merkle tree of `ns`'s live entries as of the snapshot, with
    /// `16^depth` leaves (`depth` 1 to [`crate::MERKLE_MAX_DEPTH`]; see
    /// [`crate::merkle`] for the sync it serves and its exact hashes).
    /// Reads the whole namespace.
    pub fn merkle_tree(&self, ns: &[u8], depth: u32) -> Result<MerkleTree> {
        self.view.merkle_tree(ns, depth)
    }

    /// The live pairs of `ns` as of the snapshot whose keys fall in
    /// `leaves` of a `depth` tree, in key order: what a replica sends for
    /// the leaves [`MerkleTree::differing_leaves`] found (see
    /// [`crate::Engine::scan_merkle_leaves`]).
    pub fn scan_merkle_leaves(&self, ns: &[u8], depth: u32, leaves: &[u32]) -> Result<RangeIter> {
        self.view.scan_merkle_leaves(ns, depth, leaves)
    }

    /// The sequence number the snapshot reads at.
    pub fn sequence(&self) -> u64 {
        self.view.read_lsn
    }

    /// The instant (nanoseconds) TTLs are judged at.
    pub fn read_time_nanos(&self) -> i64 {
        self.view.read_time
    }
}

impl Snapshot {
    /// The view this snapshot reads (used by crate::vector).
    pub(crate) fn read_view(&self) -> &ReadView {
        &self.view
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.registry.unpin(&self.pinned);
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Snapshot>();
    is::<RangeIter>();
    let _ = Error::Closed;
}
