//! Streaming range iteration: a k-way merge over memtables and sorted runs
//! that yields, per key, the newest version a reader may see, skipping
//! tombstones and expired records. Nothing is materialised beyond one block
//! per run and a small chunk per memtable, and segment entries are never
//! copied: [`RangeIter::next_entry`] lends key and value straight out of the
//! block (the owned `Iterator` form copies them once).

use std::cmp::{Ordering, Reverse};
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use crate::error::Result;
use crate::memtable::Memtable;
use crate::segment::{Found, SegmentIter, SegmentReader};
use crate::types::MemEntry;
use crate::version::Version;

/// Memtable entries copied per refill: small at first, since most scans read
/// a few keys and in a large database few of them come from the memtable,
/// doubling up to the maximum for long scans.
const MEM_CHUNK_FIRST: usize = 2;
const MEM_CHUNK_MAX: usize = 256;

enum Source {
    Mem {
        mem: Arc<Memtable>,
        buf: VecDeque<MemEntry>,
        after: Option<Vec<u8>>,
        chunk: usize,
        exhausted: bool,
    },
    /// A sorted run: its overlapping segments in key order, read one after
    /// the other (disjoint ranges, so no merge is needed inside a run).
    Run {
        /// `None` until the merge reaches the run's first key: a run that
        /// starts after the range's start is not sought until then (see
        /// [`RangeIter::pending`]), so a short scan over runs of disjoint key
        /// ranges (time-ordered keys) seeks only the runs it reads.
        cur: Option<SegmentIter>,
        /// The run's segments; `next` is the one to read after `cur`.
        segments: Arc<[Arc<SegmentReader>]>,
        next: usize,
    },
}

impl Source {
    fn next(&mut self, start: &[u8], end: Option<&[u8]>, read_lsn: u64) -> Result<Option<Item>> {
        match self {
            Source::Mem {
                mem,
                buf,
                after,
                chunk: n,
                exhausted,
            } => {
                if buf.is_empty() && !*exhausted {
                    let chunk = mem.scan_chunk(start, end, after.as_deref(), read_lsn, *n);
                    *exhausted = chunk.len() < *n;
                    *n = (*n * 2).min(MEM_CHUNK_MAX);
                    if let Some(last) = chunk.last() {
                        *after = Some(last.key.clone());
                    }
                    buf.extend(chunk);
                }
                Ok(buf.pop_front().map(Item::Mem))
            }
            Source::Run {
                cur,
                segments,
                next,
            } => loop {
                let Some(it) = cur else {
                    // Sought on first use: every key of the run's first
                    // overlapping segment is after `start`.
                    let seg = &segments[*next];
                    *cur = Some(seg.iter_from(start));
                    *next += 1;
                    continue;
                };
                match it.next_found()? {
                    Some(f) if end.is_none_or(|e| f.key() < e) => return Ok(Some(Item::Seg(f))),
                    Some(_) => return Ok(None),
                    None => match segments.get(*next) {
                        // Every key of a later segment is after `start`,
                        // and one starting at or past `end` yields nothing.
                        Some(seg) if end.is_none_or(|e| seg.meta.min_key.as_slice() < e) => {
                            *it = seg.iter_from(&[]);
                            *next += 1;
                        }
                        _ => return Ok(None),
                    },
                }
            },
        }
    }
}

/// One version of one key: copied out of a memtable, or in place in a block.
enum Item {
    Mem(MemEntry),
    Seg(Found),
}

impl Item {
    #[inline]
    fn key(&self) -> &[u8] {
        match self {
            Item::Mem(e) => &e.key,
            Item::Seg(f) => f.key(),
        }
    }

    #[inline]
    fn lsn(&self) -> u64 {
        match self {
            Item::Mem(e) => e.lsn,
            Item::Seg(f) => f.lsn,
        }
    }

    fn is_live_at(&self, now_nanos: i64) -> bool {
        match self {
            Item::Mem(e) => e.is_live_at(now_nanos),
            Item::Seg(f) => f.is_live_at(now_nanos),
        }
    }

    /// The value of a live item.
    fn value(&self) -> &[u8] {
        match self {
            Item::Mem(e) => e.value.as_deref().unwrap_or_default(),
            Item::Seg(f) => f.value(),
        }
    }
}

struct Head {
    item: Item,
    src: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    // Key ascending, then LSN descending: the first of a key is its newest.
    fn cmp(&self, other: &Self) -> Ordering {
        crate::types::key_cmp(self.item.key(), other.item.key())
            .then_with(|| other.item.lsn().cmp(&self.item.lsn()))
    }
}

/// A run a scan has not sought yet, ordered by its first key.
struct PendingRun {
    first: Arc<SegmentReader>,
    src: usize,
}

impl PartialEq for PendingRun {
    fn eq(&self, other: &Self) -> bool {
        self.first.meta.min_key == other.first.meta.min_key
    }
}
impl Eq for PendingRun {}
impl PartialOrd for PendingRun {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PendingRun {
    fn cmp(&self, other: &Self) -> Ordering {
        crate::types::key_cmp(&self.first.meta.min_key, &other.first.meta.min_key)
    }
}

/// Iterator over `(user_key, value)` pairs of one namespace, in key order.
/// Items are `Result`s: a read error ends the iteration after it is yielded.
pub struct RangeIter {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<Head>>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    read_lsn: u64,
    read_time: i64,
    prefix_len: usize,
    failed: bool,
    /// Runs not sought yet, by the first key of their first overlapping
    /// segment (no key of the run sorts before it). A run is sought, and its
    /// first entry joins the merge, before any head with a key at or past
    /// that one is taken, so a version it holds of that key is never missed.
    pending: BinaryHeap<Reverse<PendingRun>>,
    /// The item `next_entry` last lent out.
    current: Option<Item>,
    _version: Arc<Version>,
}

impl std::fmt::Debug for RangeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeIter")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl RangeIter {
    /// Internal keys in `[start, end)`; user keys are the internal keys past `prefix_len`.
    pub(crate) fn new(
        version: Arc<Version>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        read_lsn: u64,
        read_time: i64,
        prefix_len: usize,
    ) -> Result<Self> {
        let mut sources = Vec::new();
        for m in &version.mems {
            sources.push(Source::Mem {
                mem: Arc::clone(m),
                buf: VecDeque::new(),
                after: None,
                chunk: MEM_CHUNK_FIRST,
                exhausted: false,
            });
        }
        let mut pending = Vec::new();
        for run in &version.runs {
            if let Some(first) = run.first_overlapping(&start, end.as_deref()) {
                let seg = &run.segments[first];
                let lazy = seg.meta.min_key.as_slice() > start.as_slice();
                if lazy {
                    pending.push(Reverse(PendingRun {
                        first: Arc::clone(seg),
                        src: sources.len(),
                    }));
                }
                sources.push(Source::Run {
                    cur: (!lazy).then(|| seg.iter_from(&start)),
                    segments: Arc::clone(&run.segments),
                    next: first + usize::from(!lazy),
                });
            }
        }
        let mut it = RangeIter {
            sources,
            heap: BinaryHeap::new(),
            start,
            end,
            read_lsn,
            read_time,
            prefix_len,
            failed: false,
            pending: pending.into_iter().collect(),
            current: None,
            _version: version,
        };
        for i in 0..it.sources.len() {
            if !matches!(it.sources[i], Source::Run { cur: None, .. }) {
                it.advance(i)?;
            }
        }
        Ok(it)
    }

    fn advance(&mut self, src: usize) -> Result<()> {
        if let Some(item) =
            self.sources[src].next(&self.start, self.end.as_deref(), self.read_lsn)?
        {
            self.heap.push(Reverse(Head { item, src }));
        }
        Ok(())
    }

    /// Takes the smallest head and refills the heap from its source, with one
    /// sift instead of a pop and a push when the source has more.
    fn take_top(&mut self) -> Result<Option<Item>> {
        // Seek the runs whose first key has come up.
        while let Some(Reverse(p)) = self.pending.peek() {
            let due = self.heap.peek().is_none_or(|Reverse(h)| {
                crate::types::key_cmp(&p.first.meta.min_key, h.item.key()).is_le()
            });
            if !due {
                break;
            }
            let src = p.src;
            self.pending.pop();
            self.advance(src)?;
        }
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let src = top.0.src;
        match self.sources[src].next(&self.start, self.end.as_deref(), self.read_lsn)? {
            Some(item) => Ok(Some(std::mem::replace(&mut top.0.item, item))),
            None => Ok(Some(PeekMut::pop(top).0.item)),
        }
    }

    /// Finds the next live item and keeps it in `self.current`.
    fn step(&mut self) -> Result<bool> {
        self.current = None;
        while let Some(top) = self.take_top()? {
            // Older versions of the same key from other sources lose.
            while self
                .heap
                .peek()
                .is_some_and(|Reverse(h)| h.item.key() == top.key())
            {
                self.take_top()?;
            }
            if top.is_live_at(self.read_time) {
                self.current = Some(top);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next `(user_key, value)` pair, lent out of the iterator until the
    /// next call: no copy of either. `Ok(None)` at the end; after an error
    /// the iteration is over.
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.failed {
            return Ok(None);
        }
        match self.step() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(self.current.as_ref().map(|item| {
            let key = item.key();
            (&key[self.prefix_len.min(key.len())..], item.value())
        }))
    }
}

impl Iterator for RangeIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
