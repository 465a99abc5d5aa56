//! Streaming range iteration: a k-way merge over memtables and sorted runs
//! that yields, per key, the newest version a reader may see, skipping
//! tombstones and expired records. Nothing is materialised beyond one block
//! per run, and no entry is copied: [`RangeIter::next_entry`] lends key and
//! value straight out of the block or the memtable's node (the owned
//! `Iterator` form copies them once).
//!
//! Each source is a cursor standing on its current entry; the merge keeps
//! the sources in a min-heap of their indices, except the one whose entry
//! was lent out last, which stays outside until the next call moves it on.
//! If it is still the smallest then (always, when it is the only source
//! left), the heap is not touched: a scan of one sorted run costs one entry
//! decode and one liveness check per pair, no key comparison.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::Result;
use crate::memtable::MemCursor;
use crate::segment::{SegmentIter, SegmentReader};
use crate::types::{key_cmp, word_at};
use crate::version::Version;

enum Source {
    /// A memtable, read in place.
    Mem(MemCursor),
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
        /// Whether keys of the current segment must be checked against the
        /// range's end: not when its largest key is before the end.
        bounded: bool,
    },
}

/// Whether a segment may hold keys at or past `end`.
#[inline]
fn reaches(seg: &SegmentReader, end: Option<&[u8]>) -> bool {
    end.is_some_and(|e| seg.meta.max_key.as_slice() >= e)
}

impl Source {
    /// Moves to the next entry: `false` when there is none (then the source
    /// is never moved again). Every source yields strictly increasing keys: a
    /// memtable cursor stands on one version per key, and a run's segments hold
    /// sorted unique keys (the writer refuses anything else) in disjoint
    /// ranges.
    #[inline]
    fn advance(&mut self, start: &Arc<[u8]>, end: Option<&[u8]>, read_lsn: u64) -> Result<bool> {
        match self {
            Source::Mem(cur) => Ok(cur.advance(start, end, read_lsn)),
            Source::Run {
                cur,
                segments,
                next,
                bounded,
            } => loop {
                let Some(it) = cur else {
                    // Sought on first use: every key of the run's first
                    // overlapping segment is after `start`.
                    let seg = &segments[*next];
                    *bounded = reaches(seg, end);
                    *cur = Some(seg.iter_from_shared(start));
                    *next += 1;
                    continue;
                };
                if it.advance()? {
                    return Ok(!*bounded || end.is_none_or(|e| key_cmp(it.key(), e).is_lt()));
                }
                match segments.get(*next) {
                    // Every key of a later segment is after `start`,
                    // and one starting at or past `end` yields nothing.
                    Some(seg) if end.is_none_or(|e| seg.meta.min_key.as_slice() < e) => {
                        *bounded = reaches(seg, end);
                        *it = seg.iter_from(&[]);
                        *next += 1;
                    }
                    _ => return Ok(false),
                }
            },
        }
    }

    /// The current entry's (internal) key.
    #[inline]
    fn key(&self) -> &[u8] {
        match self {
            Source::Mem(cur) => cur.key(),
            Source::Run { cur, .. } => cur.as_ref().map_or(&[], |it| it.key()),
        }
    }

    #[inline]
    fn lsn(&self) -> u64 {
        match self {
            Source::Mem(cur) => cur.record().map_or(0, |r| r.lsn),
            Source::Run { cur, .. } => cur.as_ref().map_or(0, |it| it.lsn()),
        }
    }

    #[inline]
    fn is_live_at(&self, now_nanos: i64) -> bool {
        match self {
            Source::Mem(cur) => cur.record().is_some_and(|r| r.is_live_at(now_nanos)),
            Source::Run { cur, .. } => cur.as_ref().is_some_and(|it| it.is_live_at(now_nanos)),
        }
    }

    /// The current entry's value (empty for a tombstone).
    #[inline]
    fn value(&self) -> &[u8] {
        match self {
            Source::Mem(cur) => cur.record().and_then(|r| r.value).unwrap_or_default(),
            Source::Run { cur, .. } => cur.as_ref().map_or(&[], |it| it.value()),
        }
    }
}

/// Whether source `a`'s entry comes before source `b`'s: key ascending, then
/// LSN descending (the first of a key is its newest).
#[inline]
fn before(sources: &[Source], a: usize, b: usize) -> bool {
    let (x, y) = (&sources[a], &sources[b]);
    match key_cmp(x.key(), y.key()) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => x.lsn() > y.lsn(),
    }
}

/// A source in the merge heap, with the word of its current key past the
/// bytes all keys of the scan share ([`word_at`], `RangeIter::word_from`), so
/// the heap compares words first and reads whole keys only on a tie.
#[derive(Clone, Copy)]
struct Slot {
    word: u64,
    src: usize,
}

/// Whether `a`'s entry comes before `b`'s (see [`before`]), by their words
/// when they differ.
#[inline]
fn slot_before(sources: &[Source], a: Slot, b: Slot) -> bool {
    if a.word != b.word {
        return a.word < b.word;
    }
    before(sources, a.src, b.src)
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
        key_cmp(&self.first.meta.min_key, &other.first.meta.min_key)
    }
}

/// Iterator over `(user_key, value)` pairs of one namespace, in key order.
/// Items are `Result`s: a read error ends the iteration after it is yielded.
pub struct RangeIter {
    sources: Vec<Source>,
    /// Min-heap (by [`slot_before`]) of the sources standing on an entry,
    /// except `lent`.
    heap: Vec<Slot>,
    start: Arc<[u8]>,
    end: Option<Vec<u8>>,
    read_lsn: u64,
    read_time: i64,
    prefix_len: usize,
    /// Where heap words are taken: past the bytes every key this scan can
    /// meet shares (at least the namespace).
    word_from: usize,
    failed: bool,
    /// Runs not sought yet, by the first key of their first overlapping
    /// segment (no key of the run sorts before it). A run is sought, and its
    /// first entry joins the merge, before any entry with a key at or past
    /// that one is taken, so a version it holds of that key is never missed.
    pending: BinaryHeap<Reverse<PendingRun>>,
    /// The source whose entry `next_entry` last lent out: out of the heap
    /// until the next call moves it on.
    lent: Option<usize>,
    /// Skips the pairs whose user key it rejects (a sync's leaf set).
    key_filter: Option<KeyFilter>,
    _version: Arc<Version>,
}

/// A test of user keys: [`RangeIter`] yields only the keys it accepts.
pub(crate) type KeyFilter = Box<dyn FnMut(&[u8]) -> bool + Send + Sync>;

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
        let start: Arc<[u8]> = start.into();
        let mut sources = Vec::with_capacity(version.mems.len() + version.runs.len());
        for m in &version.mems {
            sources.push(Source::Mem(MemCursor::new(Arc::clone(m))));
        }
        // Every key the scan meets lies between `start` and the greatest key
        // of some source, so it shares with `start` at least the bytes that
        // greatest key does: heap words start past those (for zero-padded
        // numbers, past the leading zeros), so they rarely tie.
        let shared = |k: &[u8]| crate::segment::common_prefix_len(&start, k);
        let mut word_from = start.len();
        for m in &version.mems {
            if let Some(n) = m.with_last_key(shared) {
                word_from = word_from.min(n);
            }
        }
        let mut pending = BinaryHeap::new();
        for run in &version.runs {
            if let Some(first) = run.first_overlapping(&start, end.as_deref()) {
                if let Some(last) = run.segments.last() {
                    word_from = word_from.min(shared(&last.meta.max_key));
                }
                let seg = &run.segments[first];
                let lazy = seg.meta.min_key.as_slice() > &start[..];
                if lazy {
                    pending.push(Reverse(PendingRun {
                        first: Arc::clone(seg),
                        src: sources.len(),
                    }));
                }
                sources.push(Source::Run {
                    cur: (!lazy).then(|| seg.iter_from_shared(&start)),
                    segments: Arc::clone(&run.segments),
                    next: first + usize::from(!lazy),
                    bounded: reaches(seg, end.as_deref()),
                });
            }
        }
        let mut it = RangeIter {
            heap: Vec::with_capacity(sources.len()),
            sources,
            start,
            end,
            read_lsn,
            read_time,
            prefix_len,
            word_from: word_from.max(prefix_len),
            failed: false,
            pending,
            lent: None,
            key_filter: None,
            _version: version,
        };
        for i in 0..it.sources.len() {
            if !matches!(it.sources[i], Source::Run { cur: None, .. }) {
                it.advance_into_heap(i)?;
            }
        }
        Ok(it)
    }

    /// This iterator yielding only the pairs whose user key `filter` accepts.
    pub(crate) fn with_key_filter(mut self, filter: KeyFilter) -> Self {
        self.key_filter = Some(filter);
        self
    }

    /// Moves source `src` (not in the heap) on and puts it in the heap if it
    /// has another entry.
    fn advance_into_heap(&mut self, src: usize) -> Result<()> {
        if self.advance(src)? {
            let slot = self.slot(src);
            self.heap.push(slot);
            self.sift_up(self.heap.len() - 1);
        }
        Ok(())
    }

    #[inline]
    fn advance(&mut self, src: usize) -> Result<bool> {
        self.sources[src].advance(&self.start, self.end.as_deref(), self.read_lsn)
    }

    /// `src` as a heap entry, at its current key.
    #[inline]
    fn slot(&self, src: usize) -> Slot {
        Slot {
            word: word_at(self.sources[src].key(), self.word_from),
            src,
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        let (sources, heap) = (&self.sources, &mut self.heap);
        let elem = heap[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            if !slot_before(sources, elem, heap[parent]) {
                break;
            }
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = elem;
    }

    /// Moves entry `i` down to its place: children move up into the hole,
    /// the entry is written once.
    fn sift_down(&mut self, mut i: usize) {
        let (sources, heap) = (&self.sources, &mut self.heap);
        let n = heap.len();
        let Some(&elem) = heap.get(i) else {
            return;
        };
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && slot_before(sources, heap[r], heap[l]) {
                r
            } else {
                l
            };
            if !slot_before(sources, heap[c], elem) {
                break;
            }
            heap[i] = heap[c];
            i = c;
        }
        heap[i] = elem;
    }

    /// Removes and returns the heap's smallest entry.
    fn pop(&mut self) -> Option<Slot> {
        let last = self.heap.pop()?;
        match self.heap.first_mut() {
            Some(top) => {
                let min = std::mem::replace(top, last);
                self.sift_down(0);
                Some(min)
            }
            None => Some(last),
        }
    }

    /// Seeks the pending runs whose first key is at or before the smallest
    /// entry of the merge (`cand`'s or the heap's), so that none is missed.
    fn seek_due(&mut self, cand: Option<usize>) -> Result<()> {
        while let Some(Reverse(p)) = self.pending.peek() {
            let first = p.first.meta.min_key.as_slice();
            let not_after = |s: usize| key_cmp(first, self.sources[s].key()).is_le();
            let due =
                cand.is_none_or(not_after) && self.heap.first().is_none_or(|t| not_after(t.src));
            if !due {
                break;
            }
            let src = p.src;
            self.pending.pop();
            self.advance_into_heap(src)?;
        }
        Ok(())
    }

    /// Finds the next live entry and leaves its source in `self.lent`.
    fn step(&mut self) -> Result<bool> {
        // The source lent out last moves on; while it stays the smallest,
        // the heap is not touched (and with no other source, not even
        // compared with).
        let mut cand = match self.lent.take() {
            Some(s) if self.advance(s)? => Some(s),
            _ => None,
        };
        loop {
            if !self.pending.is_empty() {
                self.seek_due(cand)?;
            }
            let min = match (cand, self.heap.first().copied()) {
                (Some(c), Some(top)) => {
                    let c = self.slot(c);
                    if slot_before(&self.sources, top, c) {
                        self.heap[0] = c;
                        self.sift_down(0);
                        top
                    } else {
                        c
                    }
                }
                (Some(c), None) => {
                    // Alone: no older version to drop, nothing to compare.
                    if self.sources[c].is_live_at(self.read_time) {
                        self.lent = Some(c);
                        return Ok(true);
                    }
                    cand = if self.advance(c)? { Some(c) } else { None };
                    continue;
                }
                (None, _) => match self.pop() {
                    Some(top) => top,
                    None => return Ok(false),
                },
            };
            // Older versions of the same key in other sources lose.
            while let Some(&t) = self.heap.first() {
                if t.word != min.word || self.sources[t.src].key() != self.sources[min.src].key() {
                    break;
                }
                if self.advance(t.src)? {
                    self.heap[0] = self.slot(t.src);
                    self.sift_down(0);
                } else {
                    self.pop();
                }
            }
            if self.sources[min.src].is_live_at(self.read_time) {
                self.lent = Some(min.src);
                return Ok(true);
            }
            cand = if self.advance(min.src)? {
                Some(min.src)
            } else {
                None
            };
        }
    }

    /// The next `(user_key, value)` pair, lent out of the iterator until the
    /// next call: no copy of either. `Ok(None)` at the end; after an error
    /// the iteration is over.
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.failed {
            return Ok(None);
        }
        loop {
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.failed = true;
                    self.lent = None;
                    return Err(e);
                }
            }
            let (Some(filter), Some(s)) = (self.key_filter.as_mut(), self.lent) else {
                break;
            };
            let key = self.sources[s].key();
            if filter(&key[self.prefix_len.min(key.len())..]) {
                break;
            }
        }
        Ok(self.lent.map(|s| {
            let src = &self.sources[s];
            let key = src.key();
            (&key[self.prefix_len.min(key.len())..], src.value())
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
