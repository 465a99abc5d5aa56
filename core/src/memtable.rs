//! The memtable: a concurrent skip list of versions, ordered by internal key
//! ascending and then by LSN descending, so the newest version of a key that a
//! reader may see is the first entry at or after `(key, read_lsn)`.
//!
//! It keeps every version written to it, which is what lets a snapshot read
//! the memtable as it was: readers filter by LSN.
//!
//! A point read does not walk the skip list: a hash index beside it (see
//! [`PointIndex`]) finds a key's versions in one or two probes, where a
//! skip-list search of a few megabytes of entries follows a dozen or more
//! pointers, most of them cache misses.

use std::cmp::Ordering;
use std::ops::Bound;
use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering as AtomicOrdering,
};

use crossbeam_skiplist::SkipMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::types::{EntryRef, MemEntry, Operation};

/// Internal keys up to this many bytes are stored inside the skip-list node.
const INLINE_KEY: usize = 38;

/// An internal key as the skip list holds it: short keys (the common case)
/// inside the node, so a comparison during a skip-list walk reads the node's
/// own cache lines instead of following a pointer to a separate allocation
/// (one cache miss fewer per step of an insert or a point read), and a
/// point read builds its probe key without allocating.
#[derive(Clone)]
enum NodeKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl NodeKey {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            NodeKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            NodeKey::Heap(key.into())
        }
    }

    fn from_vec(key: Vec<u8>) -> Self {
        if key.len() <= INLINE_KEY {
            Self::new(&key)
        } else {
            NodeKey::Heap(key.into_boxed_slice())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            NodeKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            NodeKey::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

impl PartialEq for NodeKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for NodeKey {}

/// Ordering key of the skip list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionKey {
    key: NodeKey,
    lsn: u64,
}

impl Ord for VersionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        crate::types::key_cmp(self.key.as_slice(), other.key.as_slice())
            .then_with(|| other.lsn.cmp(&self.lsn))
    }
}

impl PartialOrd for VersionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct VersionValue {
    op: Operation,
    value: Option<Vec<u8>>,
    timestamp: i64,
    ttl: u32,
}

/// A multi-version, concurrently readable memtable.
#[derive(Debug)]
pub struct Memtable {
    map: SkipMap<VersionKey, VersionValue>,
    approx_bytes: AtomicUsize,
    filter: KeyFilter,
    index: PointIndex,
}

impl Default for Memtable {
    fn default() -> Self {
        Self::for_size(4 << 20)
    }
}

/// A Bloom filter over the memtable's keys, set with atomic ORs as keys are
/// inserted, so a point read of a key that is only in segments (most reads
/// of a large database) skips the skip-list walk.
#[derive(Debug)]
struct KeyFilter {
    words: Box<[AtomicU64]>,
    /// Number of bits minus one (a power of two minus one).
    mask: u64,
}

/// Probes per key: with at least 8 bits per key (the sizing below) about 2%
/// false positives, far fewer at typical entry sizes.
const FILTER_PROBES: u64 = 4;

impl KeyFilter {
    fn with_bits(bits: u64) -> Self {
        let bits = bits.clamp(1 << 12, 1 << 27).next_power_of_two();
        KeyFilter {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits - 1,
        }
    }

    /// The filter's bits for a key whose `xxh3_64` is `h`.
    fn probes(&self, h: u64) -> impl Iterator<Item = u64> + '_ {
        let (h1, h2) = (h, (h >> 32) | 1);
        (0..FILTER_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    fn insert(&self, hash: u64) {
        for bit in self.probes(hash) {
            self.words[(bit >> 6) as usize].fetch_or(1 << (bit & 63), AtomicOrdering::Relaxed);
        }
    }

    /// False when no key with this hash was ever inserted. A reader that may
    /// see an entry has loaded the engine's visible LSN (acquire) after the
    /// writer set these bits, so it sees them too.
    fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash).all(|bit| {
            self.words[(bit >> 6) as usize].load(AtomicOrdering::Relaxed) & (1 << (bit & 63)) != 0
        })
    }
}

/// One version as the point index holds it: the fields of its skip-list
/// entry, with the value borrowed from that entry.
struct IndexedVersion {
    lsn: u64,
    timestamp: i64,
    ttl: u32,
    op: Operation,
    /// The value's bytes: the heap buffer of the skip-list entry's `Vec`
    /// (null for a tombstone). Skip-list entries are never removed or
    /// replaced (see [`Memtable::insert`]), so the buffer lives as long as
    /// the memtable.
    value: *const u8,
    value_len: usize,
    /// The next older version of the same key (null: none). Versions of a
    /// key form a list by LSN descending; a version is linked in by one
    /// compare-and-swap on its predecessor's link, never unlinked.
    older: AtomicPtr<IndexedVersion>,
}

/// A key in the point index, with its versions.
struct IndexedKey {
    /// `xxh3_64` of the key.
    hash: u64,
    key: NodeKey,
    /// The newest version (never null once published).
    newest: AtomicPtr<IndexedVersion>,
}

/// Probes before an insert gives up on a key (the index then answers
/// "unknown" for keys it lacks and readers walk the skip list).
const INDEX_PROBES: usize = 32;

/// What the point index knows about a key at some LSN.
enum Probe<'a> {
    /// Its newest version at or below the LSN.
    Hit(&'a IndexedVersion),
    /// No version of it at or below the LSN is in the memtable.
    Miss,
    /// The index cannot tell (it was full): search the skip list.
    Unknown,
}

/// An insert-only, lock-free hash index from key to versions (linear
/// probing over a fixed array of pointers, sized from the memtable's byte
/// budget). Every version of an indexed key is indexed: whether a key finds
/// a slot depends only on the slots its probe sequence passes, which only
/// ever fill up, so a key that got no slot never gets one later. Keys and
/// versions are freed only when the memtable is dropped.
struct PointIndex {
    slots: Box<[AtomicPtr<IndexedKey>]>,
    /// Set (before the entry is in the skip list) once a key found no slot.
    overflow: AtomicBool,
}

impl std::fmt::Debug for PointIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointIndex")
            .field("slots", &self.slots.len())
            .field("overflow", &self.overflow)
            .finish()
    }
}

impl PointIndex {
    /// Room for about `keys` keys at a load factor of one half or less.
    fn with_capacity(keys: usize) -> Self {
        let n = keys.clamp(1 << 9, 1 << 21).next_power_of_two() * 2;
        PointIndex {
            slots: (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            overflow: AtomicBool::new(false),
        }
    }

    /// The probe sequence of `hash`.
    fn probe_seq(&self, hash: u64) -> impl Iterator<Item = &AtomicPtr<IndexedKey>> {
        let mask = self.slots.len() - 1;
        let start = hash as usize & mask;
        (0..INDEX_PROBES).map(move |i| &self.slots[(start + i) & mask])
    }

    /// Adds a version of `key` (hash `hash`).
    fn insert(&self, hash: u64, key: &[u8], version: IndexedVersion) {
        let v = Box::into_raw(Box::new(version));
        let mut fresh: *mut IndexedKey = ptr::null_mut();
        for slot in self.probe_seq(hash) {
            let mut p = slot.load(AtomicOrdering::Acquire);
            if p.is_null() {
                if fresh.is_null() {
                    fresh = Box::into_raw(Box::new(IndexedKey {
                        hash,
                        key: NodeKey::new(key),
                        newest: AtomicPtr::new(v),
                    }));
                }
                match slot.compare_exchange(
                    ptr::null_mut(),
                    fresh,
                    AtomicOrdering::AcqRel,
                    AtomicOrdering::Acquire,
                ) {
                    Ok(_) => return,
                    // Another insert took the slot: look at what it put there.
                    Err(q) => p = q,
                }
            }
            // SAFETY: a published slot points to a live `IndexedKey`: keys
            // are freed only in `drop`, which has `&mut self`.
            let k = unsafe { &*p };
            if k.hash == hash && k.key.as_slice() == key {
                if !fresh.is_null() {
                    // SAFETY: `fresh` came from `Box::into_raw` above and was
                    // never published (its compare-and-swap failed).
                    drop(unsafe { Box::from_raw(fresh) });
                }
                // SAFETY: `v` came from `Box::into_raw` above and is not yet
                // reachable from the index: this thread owns it.
                unsafe { Self::link(k, v) };
                return;
            }
        }
        // No slot: this key stays out of the index, and readers that do not
        // find a key must ask the skip list.
        self.overflow.store(true, AtomicOrdering::Release);
        if !fresh.is_null() {
            // SAFETY: as above, `fresh` was never published.
            drop(unsafe { Box::from_raw(fresh) });
        }
        // SAFETY: `v` was never published.
        drop(unsafe { Box::from_raw(v) });
    }

    /// Links version `v` into `k`'s list, keeping it ordered by LSN descending.
    ///
    /// # Safety
    /// `v` must come from `Box::into_raw` and not be reachable from the index.
    unsafe fn link(k: &IndexedKey, v: *mut IndexedVersion) {
        // SAFETY: the caller owns `v` until the compare-and-swap below
        // publishes it.
        let lsn = unsafe { (*v).lsn };
        let mut link = &k.newest;
        loop {
            let next = link.load(AtomicOrdering::Acquire);
            // SAFETY: published versions live until the index is dropped.
            if let Some(n) = unsafe { next.as_ref() } {
                if n.lsn > lsn {
                    link = &n.older;
                    continue;
                }
            }
            // SAFETY: `v` is still unpublished, so nobody else reads it.
            unsafe { (*v).older.store(next, AtomicOrdering::Relaxed) };
            if link
                .compare_exchange(next, v, AtomicOrdering::AcqRel, AtomicOrdering::Acquire)
                .is_ok()
            {
                return;
            }
            // Another version was linked here meanwhile: look again.
        }
    }

    /// The newest version of `key` at or below `read_lsn`.
    fn get(&self, hash: u64, key: &[u8], read_lsn: u64) -> Probe<'_> {
        for slot in self.probe_seq(hash) {
            // SAFETY: published keys live until the index is dropped.
            let Some(k) = (unsafe { slot.load(AtomicOrdering::Acquire).as_ref() }) else {
                break;
            };
            if k.hash != hash || k.key.as_slice() != key {
                continue;
            }
            let mut v = k.newest.load(AtomicOrdering::Acquire);
            // SAFETY: published versions live until the index is dropped.
            while let Some(ver) = unsafe { v.as_ref() } {
                if ver.lsn <= read_lsn {
                    return Probe::Hit(ver);
                }
                v = ver.older.load(AtomicOrdering::Acquire);
            }
            return Probe::Miss;
        }
        if self.overflow.load(AtomicOrdering::Acquire) {
            Probe::Unknown
        } else {
            Probe::Miss
        }
    }
}

impl Drop for PointIndex {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let k = std::mem::replace(slot.get_mut(), ptr::null_mut());
            if k.is_null() {
                continue;
            }
            // SAFETY: every published pointer came from `Box::into_raw` and
            // appears exactly once (keys in one slot, versions in one list);
            // `&mut self` means no reader is left.
            let mut k = unsafe { Box::from_raw(k) };
            let mut v = std::mem::replace(k.newest.get_mut(), ptr::null_mut());
            while !v.is_null() {
                // SAFETY: as above.
                let mut ver = unsafe { Box::from_raw(v) };
                v = std::mem::replace(ver.older.get_mut(), ptr::null_mut());
            }
        }
    }
}

/// Per-entry overhead counted towards the memtable size (skip-list node, vectors).
const ENTRY_OVERHEAD: usize = 64;

impl Memtable {
    /// An empty memtable sized for the default 4 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty memtable whose key filter is sized for `bytes` of entries
    /// (one filter bit per 8 bytes of budget: 1/64 of it in memory, at most
    /// 16 MiB).
    pub fn for_size(bytes: usize) -> Self {
        Memtable {
            map: SkipMap::new(),
            approx_bytes: AtomicUsize::new(0),
            filter: KeyFilter::with_bits(bytes as u64 / 8),
            // Entries of at least 128 bytes (a key, a value and the
            // per-entry overhead); smaller ones may fill it, after which
            // the keys left out are found by walking the skip list.
            index: PointIndex::with_capacity(bytes / 128),
        }
    }

    /// Inserts one version. LSNs must be unique: a second version with the
    /// same key and LSN is ignored (entries are never replaced, which is
    /// what lets the point index borrow their values).
    pub fn insert(&self, entry: MemEntry) {
        let size = ENTRY_OVERHEAD + entry.key.len() + entry.value.as_ref().map_or(0, Vec::len);
        let hash = xxh3_64(&entry.key);
        self.filter.insert(hash);
        let lsn = entry.lsn;
        let mut inserted = false;
        let e = self.map.get_or_insert_with(
            VersionKey {
                key: NodeKey::from_vec(entry.key),
                lsn,
            },
            || {
                inserted = true;
                VersionValue {
                    op: entry.op,
                    value: entry.value,
                    timestamp: entry.timestamp,
                    ttl: entry.ttl,
                }
            },
        );
        if inserted {
            let v = e.value();
            let (value, value_len) = v
                .value
                .as_deref()
                .map_or((ptr::null(), 0), |b| (b.as_ptr(), b.len()));
            self.index.insert(
                hash,
                e.key().key.as_slice(),
                IndexedVersion {
                    lsn,
                    timestamp: v.timestamp,
                    ttl: v.ttl,
                    op: v.op,
                    value,
                    value_len,
                    older: AtomicPtr::new(ptr::null_mut()),
                },
            );
        }
        self.approx_bytes.fetch_add(size, AtomicOrdering::Relaxed);
    }

    /// Approximate memory held, in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Number of versions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the memtable holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The newest version of `key` with LSN <= `read_lsn`.
    pub fn get(&self, key: &[u8], read_lsn: u64) -> Option<MemEntry> {
        self.get_with(key, read_lsn, |e| e.to_owned_entry(key))
    }

    /// Calls `f` on the newest version of `key` with LSN <= `read_lsn`, read
    /// in place (no copy of the value).
    pub fn get_with<R>(
        &self,
        key: &[u8],
        read_lsn: u64,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        let hash = xxh3_64(key);
        if !self.filter.may_contain(hash) {
            return None;
        }
        match self.index.get(hash, key, read_lsn) {
            Probe::Hit(v) => {
                // SAFETY: `v.value` is the buffer of a skip-list entry's
                // value, which lives (unchanged) as long as `self`.
                let value = (!v.value.is_null())
                    .then(|| unsafe { std::slice::from_raw_parts(v.value, v.value_len) });
                return Some(f(EntryRef {
                    value,
                    op: v.op,
                    lsn: v.lsn,
                    timestamp: v.timestamp,
                    ttl: v.ttl,
                }));
            }
            Probe::Miss => return None,
            Probe::Unknown => {}
        }
        let probe = VersionKey {
            key: NodeKey::new(key),
            lsn: read_lsn,
        };
        let e = self.map.lower_bound(Bound::Included(&probe))?;
        if e.key().key.as_slice() != key {
            return None;
        }
        let v = e.value();
        Some(f(EntryRef {
            value: v.value.as_deref(),
            op: v.op,
            lsn: e.key().lsn,
            timestamp: v.timestamp,
            ttl: v.ttl,
        }))
    }

    /// Up to `limit` newest-visible versions (one per key, LSN <= `read_lsn`) of
    /// keys in `[start, end)`, starting strictly after `after` when given.
    /// Used by iterators, which resume from the last key they returned.
    pub fn scan_chunk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        after: Option<&[u8]>,
        read_lsn: u64,
        limit: usize,
    ) -> Vec<MemEntry> {
        let lower = match after {
            // All versions of `after` sort before (after, 0); start past them.
            Some(a) => Bound::Excluded(VersionKey {
                key: NodeKey::new(a),
                lsn: 0,
            }),
            None => Bound::Included(VersionKey {
                key: NodeKey::new(start),
                lsn: u64::MAX,
            }),
        };
        let mut out: Vec<MemEntry> = Vec::new();
        for e in self.map.range((lower, Bound::Unbounded)) {
            let k = e.key();
            if let Some(end) = end {
                if k.key.as_slice() >= end {
                    break;
                }
            }
            if k.lsn > read_lsn {
                continue;
            }
            if out.last().is_some_and(|last| last.key == k.key.as_slice()) {
                continue; // an older version of a key already taken
            }
            if out.len() == limit {
                break;
            }
            out.push(to_entry(k, e.value()));
        }
        out
    }

    /// The newest version of every key, in key order (what a flush writes).
    pub fn newest_versions(&self) -> Vec<MemEntry> {
        let mut out: Vec<MemEntry> = Vec::with_capacity(self.map.len());
        for e in self.map.iter() {
            if out
                .last()
                .is_some_and(|last| last.key == e.key().key.as_slice())
            {
                continue;
            }
            out.push(to_entry(e.key(), e.value()));
        }
        out
    }

    /// Highest LSN held, if any.
    pub fn max_lsn(&self) -> Option<u64> {
        self.map.iter().map(|e| e.key().lsn).max()
    }
}

fn to_entry(k: &VersionKey, v: &VersionValue) -> MemEntry {
    MemEntry {
        key: k.key.as_slice().to_vec(),
        value: v.value.clone(),
        op: v.op,
        lsn: k.lsn,
        timestamp: v.timestamp,
        ttl: v.ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &[u8], v: &[u8], lsn: u64) -> MemEntry {
        MemEntry {
            key: k.to_vec(),
            value: Some(v.to_vec()),
            op: Operation::Put,
            lsn,
            timestamp: 0,
            ttl: 0,
        }
    }

    #[test]
    fn versions_are_read_by_lsn() {
        let m = Memtable::new();
        m.insert(put(b"a", b"1", 1));
        m.insert(put(b"a", b"2", 5));
        m.insert(put(b"b", b"3", 3));
        assert_eq!(m.get(b"a", 10).unwrap().value.unwrap(), b"2");
        assert_eq!(m.get(b"a", 4).unwrap().value.unwrap(), b"1");
        assert!(m.get(b"a", 0).is_none());
        assert!(m.get(b"c", 10).is_none());
        let newest = m.newest_versions();
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].lsn, 5);
    }

    #[test]
    fn keys_inside_and_outside_the_node_sort_and_read_alike() {
        let m = Memtable::new();
        let keys: Vec<Vec<u8>> = vec![
            b"k".to_vec(),
            vec![b'k'; INLINE_KEY],
            vec![b'k'; INLINE_KEY + 1],
            vec![b'k'; 100],
            [vec![b'k'; INLINE_KEY - 1], vec![b'l']].concat(),
            [vec![b'k'; 100], vec![0]].concat(),
        ];
        for (i, k) in keys.iter().enumerate() {
            m.insert(put(k, &[i as u8], i as u64 + 1));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k, u64::MAX).unwrap().value.unwrap(), [i as u8]);
        }
        assert!(m.get(b"kk", u64::MAX).is_none());
        assert!(m.get(&[b'k'; 99], u64::MAX).is_none());
        let mut sorted = keys.clone();
        sorted.sort();
        let got: Vec<Vec<u8>> = m.newest_versions().into_iter().map(|e| e.key).collect();
        assert_eq!(got, sorted);
        let chunk = m.scan_chunk(&keys[1], None, None, u64::MAX, 10);
        assert_eq!(
            chunk.len(),
            sorted.iter().filter(|k| **k >= keys[1]).count()
        );
    }

    #[test]
    fn scan_chunks_resume() {
        let m = Memtable::new();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            m.insert(put(*k, b"x", i as u64 + 1));
            m.insert(put(*k, b"y", i as u64 + 100));
        }
        let c1 = m.scan_chunk(b"a", Some(b"d"), None, 50, 2);
        assert_eq!(
            c1.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(c1.iter().all(|e| e.value.as_deref() == Some(b"x")));
        let c2 = m.scan_chunk(b"a", Some(b"d"), Some(b"b"), 50, 2);
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].key, b"c");
    }

    /// The newest version of `key` at or below `lsn` in `model`, by brute force.
    fn newest<'a>(
        model: &'a std::collections::HashMap<Vec<u8>, Vec<MemEntry>>,
        key: &[u8],
        lsn: u64,
    ) -> Option<&'a MemEntry> {
        model
            .get(key)?
            .iter()
            .filter(|e| e.lsn <= lsn)
            .max_by_key(|e| e.lsn)
    }

    /// Point reads through the hash index (and, for keys it had no room for,
    /// the skip list) against a brute-force model: versions inserted out of
    /// LSN order, tombstones, empty values, long keys, and an index too small
    /// for every key.
    #[test]
    fn point_index_reads_match_a_model() {
        for (budget, keys) in [(4 << 20, 300u64), (1 << 10, 1500)] {
            let m = Memtable::for_size(budget);
            let mut model = std::collections::HashMap::<Vec<u8>, Vec<MemEntry>>::new();
            // A fixed pseudo-random order of unique LSNs.
            let n = 3 * keys;
            let mut lsns: Vec<u64> = (1..=n).collect();
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for i in (1..lsns.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                lsns.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for (i, &lsn) in lsns.iter().enumerate() {
                let k = i as u64 % keys;
                let key = if k.is_multiple_of(7) {
                    format!("{k:0100}").into_bytes()
                } else {
                    k.to_be_bytes().to_vec()
                };
                let e = match lsn % 5 {
                    0 => MemEntry {
                        key,
                        value: None,
                        op: Operation::Delete,
                        lsn,
                        timestamp: lsn as i64,
                        ttl: 0,
                    },
                    1 => put(&key, b"", lsn),
                    _ => put(&key, &lsn.to_le_bytes(), lsn),
                };
                let mut e = e;
                e.ttl = (lsn % 3) as u32;
                model.entry(e.key.clone()).or_default().push(e.clone());
                m.insert(e);
            }
            assert_eq!(
                m.index.overflow.load(AtomicOrdering::Relaxed),
                keys > 1000,
                "the small index must overflow, the large one not"
            );
            let mut probes = 0;
            for k in 0..keys + 10 {
                let key = if k.is_multiple_of(7) {
                    format!("{k:0100}").into_bytes()
                } else {
                    k.to_be_bytes().to_vec()
                };
                for lsn in (0..=n + 1).step_by(n as usize / 50).chain([u64::MAX]) {
                    let want = newest(&model, &key, lsn);
                    let got = m.get(&key, lsn);
                    assert_eq!(got.as_ref(), want, "key {k} at {lsn}");
                    probes += 1;
                }
            }
            assert!(probes > 0);
        }
    }

    /// A second version with the same key and LSN is ignored, in the skip
    /// list and the index alike (it used to replace the first).
    #[test]
    fn duplicate_versions_keep_the_first() {
        let m = Memtable::new();
        m.insert(put(b"k", b"first", 3));
        m.insert(put(b"k", b"second", 3));
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(b"k", 3).unwrap().value.unwrap(), b"first");
        assert_eq!(m.newest_versions()[0].value.as_deref(), Some(&b"first"[..]));
    }

    /// Writers and readers at once: every reader sees, for each key, a
    /// version at least as new as the newest it was told about.
    #[test]
    fn point_index_under_concurrent_inserts() {
        let m = std::sync::Arc::new(Memtable::for_size(1 << 16));
        let published = std::sync::Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (m, published) = (m.clone(), published.clone());
                std::thread::spawn(move || {
                    for i in 0..4000u64 {
                        let lsn = 2 * i + w + 1;
                        m.insert(put(&(i % 500).to_be_bytes(), &lsn.to_le_bytes(), lsn));
                        published.fetch_max(lsn, AtomicOrdering::AcqRel);
                    }
                })
            })
            .collect();
        let reader = {
            let (m, published) = (m.clone(), published.clone());
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let lsn = published.load(AtomicOrdering::Acquire);
                    if let Some(e) = m.get(&(i % 500).to_be_bytes(), lsn) {
                        assert!(e.lsn <= lsn);
                        assert_eq!(e.value.unwrap(), e.lsn.to_le_bytes());
                    }
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        for k in 0..500u64 {
            let e = m.get(&k.to_be_bytes(), u64::MAX).unwrap();
            // The newest version of key k: the highest LSN either writer gave it.
            let newest = (0..4000u64)
                .filter(|i| i % 500 == k)
                .flat_map(|i| [2 * i + 1, 2 * i + 2])
                .max()
                .unwrap();
            assert_eq!(e.lsn, newest);
        }
    }

    #[test]
    fn key_filter_has_no_false_negatives_and_few_false_positives() {
        let m = Memtable::for_size(1 << 20);
        for i in 0..20_000u32 {
            m.insert(put(&i.to_be_bytes(), b"v", u64::from(i) + 1));
        }
        for i in 0..20_000u32 {
            assert!(
                m.filter.may_contain(xxh3_64(&i.to_be_bytes())),
                "false negative {i}"
            );
            assert!(m.get(&i.to_be_bytes(), u64::MAX).is_some());
        }
        let fp = (20_000..120_000u32)
            .filter(|i| m.filter.may_contain(xxh3_64(&i.to_be_bytes())))
            .count();
        // 2^20 / 8 bits for 20k keys: ~6.5 bits per key, 4 probes: ~6%.
        assert!(fp < 10_000, "{fp} false positives in 100k");
        assert!(m.get(&200_000u32.to_be_bytes(), u64::MAX).is_none());
    }
}
