//! A version: the memtables and segments a read sees. Versions are immutable
//! and shared (`Arc`); a snapshot keeps its version alive.

use std::sync::Arc;

use crate::error::Result;
use crate::memtable::Memtable;
use crate::segment::{Record, SegmentReader};
use crate::types::MemEntry;

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
        for m in &self.mems {
            if let Some(e) = m.get(key, read_lsn) {
                return Ok(Some(e));
            }
        }
        Ok(self.newest_in_segments(key)?.map(|r| r.entry))
    }

    /// The newest record of `key` in the segments.
    pub(crate) fn newest_in_segments(&self, key: &[u8]) -> Result<Option<Record>> {
        let mut best: Option<Record> = None;
        for s in &self.segments {
            // Sorted by max_lsn: no later segment can beat what we have.
            if best.as_ref().is_some_and(|b| b.entry.lsn >= s.meta.max_lsn) {
                break;
            }
            if !s.may_contain(key) {
                continue;
            }
            if let Some(r) = s.get_record(key)? {
                if best.as_ref().is_none_or(|b| r.entry.lsn > b.entry.lsn) {
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
