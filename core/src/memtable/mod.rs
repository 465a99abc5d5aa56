//! The memtable: a concurrent skip list of versions, ordered by internal key
//! ascending and then by LSN descending, so the newest version of a key that a
//! reader may see is the first entry at or after `(key, read_lsn)`.
//!
//! It keeps every version written to it, which is what lets a snapshot read
//! the memtable as it was: readers filter by LSN.

mod skiplist;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use std::sync::Arc;

use crate::types::{key_hash, EntryRef, MemEntry};
use skiplist::{Entry, Position, SkipList};

/// A multi-version, concurrently readable memtable.
pub struct Memtable {
    list: SkipList,
    approx_bytes: AtomicUsize,
    max_lsn: AtomicU64,
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("len", &self.len())
            .field("approx_bytes", &self.approx_bytes())
            .finish_non_exhaustive()
    }
}

impl Default for Memtable {
    fn default() -> Self {
        Self::for_size(4 << 20)
    }
}

/// Per-entry overhead counted towards the memtable size: the node header and
/// an average tower (the arena's slot is about this much larger than key and
/// value).
const ENTRY_OVERHEAD: usize = 64;

impl Memtable {
    /// An empty memtable sized for the default 4 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty memtable sized for `bytes` of entries: arena chunks of an
    /// eighth of it (4 KiB to 1 MiB), and a point index of one 8-byte slot
    /// per 64 bytes (an eighth of it in memory). Every entry counts 64 bytes
    /// besides its key and value and the index takes keys up to three
    /// quarters full, so records of 22 bytes of key and value or more stay
    /// indexed up to `bytes`; keys past that (smaller records, or a memtable
    /// grown past its size while a flush runs) are found by the list search.
    pub fn for_size(bytes: usize) -> Self {
        Memtable {
            list: SkipList::new(bytes / 8, bytes / 64),
            approx_bytes: AtomicUsize::new(0),
            max_lsn: AtomicU64::new(0),
        }
    }

    /// Inserts one version of internal key `key` (copied in). LSNs must be
    /// unique; keys and values within the engine's limits.
    pub fn insert(&self, key: &[u8], record: EntryRef<'_>) {
        let size = ENTRY_OVERHEAD + key.len() + record.value.map_or(0, <[u8]>::len);
        self.list.insert(key, record);
        self.max_lsn.fetch_max(record.lsn, AtomicOrdering::Relaxed);
        self.approx_bytes.fetch_add(size, AtomicOrdering::Relaxed);
    }

    /// Approximate memory held, in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Number of versions held.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the memtable holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest version of `key` with LSN <= `read_lsn`.
    pub fn get(&self, key: &[u8], read_lsn: u64) -> Option<MemEntry> {
        self.get_with(key, read_lsn, |e| e.to_owned_entry(key))
    }

    /// Calls `f` on the newest version of `key` with LSN <= `read_lsn`, read
    /// in place (no copy of the value).
    #[inline]
    pub fn get_with<R>(
        &self,
        key: &[u8],
        read_lsn: u64,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        self.get_hashed(key, key_hash(key), read_lsn, f)
    }

    /// [`Memtable::get_with`] for a key whose [`key_hash`] the caller has
    /// (a point read hashes its key once for every memtable and segment).
    #[inline]
    pub(crate) fn get_hashed<R>(
        &self,
        key: &[u8],
        hash: u64,
        read_lsn: u64,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        if self.is_empty() {
            return None;
        }
        self.list.get(key, hash, read_lsn).map(|e| f(e.record()))
    }

    /// Every version with LSN <= `read_lsn` of keys in `[start, end)`, in
    /// key order, newest first per key.
    pub fn versions<'a>(
        &'a self,
        start: &[u8],
        end: Option<&'a [u8]>,
        read_lsn: u64,
    ) -> impl Iterator<Item = MemEntry> + 'a {
        self.list
            .iter_from(self.list.seek(start, u64::MAX))
            .take_while(move |e| end.is_none_or(|end| e.key() < end))
            .filter(move |e| e.lsn() <= read_lsn)
            .map(to_entry)
    }

    /// The newest version of every key, in key order (what a flush writes).
    pub fn newest_versions(&self) -> Vec<MemEntry> {
        let mut out: Vec<MemEntry> = Vec::with_capacity(self.len());
        for e in self.list.iter_from(self.list.first()) {
            if out.last().is_some_and(|last| last.key == e.key()) {
                continue;
            }
            out.push(to_entry(e));
        }
        out
    }

    /// `f` of the greatest key held, if any.
    pub(crate) fn with_last_key<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.list.last().map(|e| f(e.key()))
    }

    /// Highest LSN held, if any.
    pub fn max_lsn(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.max_lsn.load(AtomicOrdering::Relaxed))
    }
}

/// A scan's place in a memtable it keeps alive: it stands on one version a
/// key, the newest the scan's LSN may see, and lends it out in place.
pub(crate) struct MemCursor {
    mem: Arc<Memtable>,
    at: Option<Position>,
    started: bool,
}

impl MemCursor {
    /// A cursor before the first entry of `mem`.
    pub(crate) fn new(mem: Arc<Memtable>) -> Self {
        MemCursor {
            mem,
            at: None,
            started: false,
        }
    }

    #[inline]
    fn entry(&self) -> Option<Entry<'_>> {
        // SAFETY: every position held was taken from an entry of this
        // cursor's memtable, which the cursor keeps alive.
        self.at.map(|p| unsafe { self.mem.list.at(p) })
    }

    /// Moves to the next key in `[start, end)` with a version of LSN at most
    /// `read_lsn` (the first such key on the first call), standing on that
    /// version: `false` when there is none, and from then on.
    #[inline]
    pub(crate) fn advance(&mut self, start: &[u8], end: Option<&[u8]>, read_lsn: u64) -> bool {
        let list = &self.mem.list;
        // SAFETY: as in `entry` (a disjoint borrow of the same fields).
        let mut next = match self.at.map(|p| unsafe { list.at(p) }) {
            // Past the older versions of the key stood on.
            Some(e) => {
                let key = e.key();
                let mut n = e.next();
                while let Some(x) = n.filter(|x| x.key() == key) {
                    n = x.next();
                }
                n
            }
            None if self.started => return false,
            None => list.seek(start, read_lsn),
        };
        // Versions written after the scan's view are not in it.
        while let Some(x) = next.filter(|x| x.lsn() > read_lsn) {
            next = x.next();
        }
        let next = next.filter(|x| end.is_none_or(|end| x.key() < end));
        self.started = true;
        self.at = next.map(|e| e.position());
        self.at.is_some()
    }

    /// The current entry's internal key (empty when not on one).
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        self.entry().map_or(&[], |e| e.key())
    }

    /// The current version, read in place.
    #[inline]
    pub(crate) fn record(&self) -> Option<EntryRef<'_>> {
        self.entry().map(|e| e.record())
    }
}

fn to_entry(e: Entry<'_>) -> MemEntry {
    e.record().to_owned_entry(e.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Operation;

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

    fn insert(m: &Memtable, e: MemEntry) {
        m.insert(&e.key, e.record());
    }

    #[test]
    fn versions_are_read_by_lsn() {
        let m = Memtable::new();
        insert(&m, put(b"a", b"1", 1));
        insert(&m, put(b"a", b"2", 5));
        insert(&m, put(b"b", b"3", 3));
        assert_eq!(m.get(b"a", 10).unwrap().value.unwrap(), b"2");
        assert_eq!(m.get(b"a", 4).unwrap().value.unwrap(), b"1");
        assert!(m.get(b"a", 0).is_none());
        assert!(m.get(b"c", 10).is_none());
        let newest = m.newest_versions();
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].lsn, 5);
    }

    #[test]
    fn short_and_long_keys_sort_and_read_alike() {
        // Around the 38 bytes the previous skip list kept inside its nodes.
        const INLINE_KEY: usize = 38;
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
            insert(&m, put(k, &[i as u8], i as u64 + 1));
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
        let m = Arc::new(m);
        assert_eq!(
            scan(&m, &keys[1], None, u64::MAX).len(),
            sorted.iter().filter(|k| **k >= keys[1]).count()
        );
    }

    /// `(key, lsn, value)` of what a cursor visits from `start`.
    fn scan(
        m: &Arc<Memtable>,
        start: &[u8],
        end: Option<&[u8]>,
        lsn: u64,
    ) -> Vec<(Vec<u8>, u64, Option<Vec<u8>>)> {
        let mut c = MemCursor::new(Arc::clone(m));
        let mut out = Vec::new();
        while c.advance(start, end, lsn) {
            let r = c.record().unwrap();
            out.push((c.key().to_vec(), r.lsn, r.value.map(<[u8]>::to_vec)));
        }
        assert!(!c.advance(start, end, lsn), "a cursor stays at its end");
        out
    }

    #[test]
    fn cursors_see_one_version_a_key_as_of_their_lsn() {
        let m = Memtable::new();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            insert(&m, put(*k, b"x", i as u64 + 1));
            insert(&m, put(*k, b"y", i as u64 + 100));
        }
        insert(&m, put(b"bb", b"z", 200)); // only newer than the scans below
        let m = Arc::new(m);
        let v = |k: &[u8], lsn, val: &[u8]| (k.to_vec(), lsn, Some(val.to_vec()));
        assert_eq!(
            scan(&m, b"a", Some(b"d"), 50),
            vec![v(b"a", 1, b"x"), v(b"b", 2, b"x"), v(b"c", 3, b"x")]
        );
        assert_eq!(
            scan(&m, b"b", None, 101),
            vec![v(b"b", 101, b"y"), v(b"c", 3, b"x"), v(b"d", 4, b"x")]
        );
        assert_eq!(scan(&m, b"bb", None, 0), vec![]);
        assert_eq!(scan(&m, b"ba", Some(b"c"), 500), vec![v(b"bb", 200, b"z")]);
        assert_eq!(scan(&m, b"e", None, 500), vec![]);
    }
}
