//! A version: the memtables and segments a read sees. Versions are immutable
//! and shared (`Arc`); a snapshot keeps its version alive.

use std::sync::Arc;

use crate::error::Result;
use crate::memtable::Memtable;
use crate::segment::{key_hash, Found, Record, SegmentReader};
use crate::types::{EntryRef, MemEntry};

/// What one read sees.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    /// Memtables, newest first: the active one, then any being flushed.
    pub mems: Vec<Arc<Memtable>>,
    /// Segments, by `max_lsn` descending.
    pub segments: Vec<Arc<SegmentReader>>,
}

impl Version {
    pub(crate) fn new(mems: Vec<Arc<Memtable>>, mut segments: Vec<Arc<SegmentReader>>) -> Self {
        segments.sort_by(|a, b| {
            b.meta
                .max_lsn
                .cmp(&a.meta.max_lsn)
                .then(b.meta.segment_id.cmp(&a.meta.segment_id))
        });
        Version { mems, segments }
    }

    /// The newest version of `key` with LSN <= `read_lsn`, tombstones and
    /// expired records included (the caller judges visibility).
    pub(crate) fn get(&self, key: &[u8], read_lsn: u64) -> Result<Option<MemEntry>> {
        self.get_with(key, read_lsn, |e| e.to_owned_entry(key))
    }

    /// Calls `f` on the newest version of `key` with LSN <= `read_lsn`, read
    /// in place: the point-read path, which copies a value at most once.
    pub(crate) fn get_with<R>(
        &self,
        key: &[u8],
        read_lsn: u64,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Result<Option<R>> {
        let mut f = Some(f);
        for m in &self.mems {
            if let Some(r) = m.get_with(key, read_lsn, |e| (f.take().expect("called once"))(e)) {
                return Ok(Some(r));
            }
        }
        let Some(found) = self.newest_found(key)? else {
            return Ok(None);
        };
        Ok(f.take().map(|f| f(found.as_entry())))
    }

    /// The newest record of `key` in the segments.
    pub(crate) fn newest_in_segments(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.newest_found(key)?.map(|f| f.to_record(key)))
    }

    /// The newest entry of `key` in the segments, read in place.
    fn newest_found(&self, key: &[u8]) -> Result<Option<Found>> {
        let mut best: Option<Found> = None;
        let hash = key_hash(key);
        for s in &self.segments {
            // Sorted by max_lsn: no later segment can beat what we have.
            if best.as_ref().is_some_and(|b| b.lsn >= s.meta.max_lsn) {
                break;
            }
            if let Some(r) = s.lookup_hashed(key, hash)? {
                if best.as_ref().is_none_or(|b| r.lsn > b.lsn) {
                    best = Some(r);
                }
            }
        }
        Ok(best)
    }

    pub(crate) fn segment_ids(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.meta.segment_id).collect()
    }
}
