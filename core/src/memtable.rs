//! The memtable: a concurrent skip list of versions, ordered by internal key
//! ascending and then by LSN descending, so the newest version of a key that a
//! reader may see is the first entry at or after `(key, read_lsn)`.
//!
//! It keeps every version written to it, which is what lets a snapshot read
//! the memtable as it was: readers filter by LSN.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

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

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        let h = xxh3_64(key);
        let (h1, h2) = (h, (h >> 32) | 1);
        (0..FILTER_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    fn insert(&self, key: &[u8]) {
        for bit in self.probes(key) {
            self.words[(bit >> 6) as usize].fetch_or(1 << (bit & 63), AtomicOrdering::Relaxed);
        }
    }

    /// False when `key` was certainly never inserted. A reader that may see
    /// an entry has loaded the engine's visible LSN (acquire) after the
    /// writer set these bits, so it sees them too.
    fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key).all(|bit| {
            self.words[(bit >> 6) as usize].load(AtomicOrdering::Relaxed) & (1 << (bit & 63)) != 0
        })
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
        }
    }

    /// Inserts one version. LSNs must be unique.
    pub fn insert(&self, entry: MemEntry) {
        let size = ENTRY_OVERHEAD + entry.key.len() + entry.value.as_ref().map_or(0, Vec::len);
        self.filter.insert(&entry.key);
        self.map.insert(
            VersionKey {
                key: NodeKey::from_vec(entry.key),
                lsn: entry.lsn,
            },
            VersionValue {
                op: entry.op,
                value: entry.value,
                timestamp: entry.timestamp,
                ttl: entry.ttl,
            },
        );
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
        if !self.filter.may_contain(key) {
            return None;
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

    /// `f` of the greatest key held, if any.
    pub(crate) fn with_last_key<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.map.back().map(|e| f(e.key().key.as_slice()))
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

    #[test]
    fn key_filter_has_no_false_negatives_and_few_false_positives() {
        let m = Memtable::for_size(1 << 20);
        for i in 0..20_000u32 {
            m.insert(put(&i.to_be_bytes(), b"v", u64::from(i) + 1));
        }
        for i in 0..20_000u32 {
            assert!(m.filter.may_contain(&i.to_be_bytes()), "false negative {i}");
            assert!(m.get(&i.to_be_bytes(), u64::MAX).is_some());
        }
        let fp = (20_000..120_000u32)
            .filter(|i| m.filter.may_contain(&i.to_be_bytes()))
            .count();
        // 2^20 / 8 bits for 20k keys: ~6.5 bits per key, 4 probes: ~6%.
        assert!(fp < 10_000, "{fp} false positives in 100k");
        assert!(m.get(&200_000u32.to_be_bytes(), u64::MAX).is_none());
    }
}
