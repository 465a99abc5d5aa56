//! The memtable: a concurrent skip list of versions, ordered by internal key
//! ascending and then by LSN descending, so the newest version of a key that a
//! reader may see is the first entry at or after `(key, read_lsn)`.
//!
//! It keeps every version written to it, which is what lets a snapshot read
//! the memtable as it was: readers filter by LSN.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use crossbeam_skiplist::SkipMap;

use crate::types::{EntryRef, MemEntry, Operation};

/// Ordering key of the skip list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionKey {
    key: Vec<u8>,
    lsn: u64,
}

impl Ord for VersionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
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
#[derive(Debug, Default)]
pub struct Memtable {
    map: SkipMap<VersionKey, VersionValue>,
    approx_bytes: AtomicUsize,
}

/// Per-entry overhead counted towards the memtable size (skip-list node, vectors).
const ENTRY_OVERHEAD: usize = 64;

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts one version. LSNs must be unique.
    pub fn insert(&self, entry: MemEntry) {
        let size = ENTRY_OVERHEAD + entry.key.len() + entry.value.as_ref().map_or(0, Vec::len);
        self.map.insert(
            VersionKey {
                key: entry.key,
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
        let probe = VersionKey {
            key: key.to_vec(),
            lsn: read_lsn,
        };
        let e = self.map.lower_bound(Bound::Included(&probe))?;
        if e.key().key != key {
            return None;
        }
        Some(to_entry(e.key(), e.value()))
    }

    /// Calls `f` on the newest version of `key` with LSN <= `read_lsn`, read
    /// in place (no copy of the value).
    pub fn get_with<R>(
        &self,
        key: &[u8],
        read_lsn: u64,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        let probe = VersionKey {
            key: key.to_vec(),
            lsn: read_lsn,
        };
        let e = self.map.lower_bound(Bound::Included(&probe))?;
        if e.key().key != key {
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
                key: a.to_vec(),
                lsn: 0,
            }),
            None => Bound::Included(VersionKey {
                key: start.to_vec(),
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
            if out.last().is_some_and(|last| last.key == k.key) {
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
            if out.last().is_some_and(|last| last.key == e.key().key) {
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
        key: k.key.clone(),
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
}
