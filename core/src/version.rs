//! A version: the memtables and segments a read sees. Versions are immutable
//! and shared (`Arc`); a snapshot keeps its version alive.

use std::sync::Arc;

use crate::error::Result;
use crate::memtable::Memtable;
use crate::segment::{common_prefix_len, key_hash, Found, Record, SegmentReader};
use crate::types::{key_cmp, key_lt, word_at, EntryRef, MemEntry};

/// Runs whose filters a point read requests at once (see
/// [`Version::newest_found_hashed`]): enough misses in flight to hide most
/// of their latency, few enough that a read found in the newest run wastes
/// little on the others.
const PROBE_GROUP: usize = 8;

/// What one read sees.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    /// Memtables, newest first: the active one, then any being flushed.
    pub mems: Vec<Arc<Memtable>>,
    /// Segments, by `max_lsn` descending.
    pub segments: Vec<Arc<SegmentReader>>,
    /// The same segments grouped into sorted runs, by `max_lsn` descending:
    /// a point read looks at one segment per run, found by binary search,
    /// and a scan reads each run as one sorted source.
    pub runs: Vec<Run>,
    /// The prefix every segment's keys share (of the least min key and the
    /// greatest max key), so the bytes past it that decide a point read's
    /// segment in each run ([`Run::bounds`]) are read from the key once.
    shared: Vec<u8>,
}

/// Segments with pairwise disjoint key ranges, in key order (the output of
/// one flush cohort or one merge, which share a `run_id`).
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Highest LSN in any of its segments.
    pub max_lsn: u64,
    /// By `min_key` ascending; no two key ranges overlap.
    pub segments: Arc<[Arc<SegmentReader>]>,
    /// Per segment, the eight bytes of its min and max keys past the
    /// version's shared prefix, as big-endian words (zero-padded): they
    /// order a key against the segment's range without reaching the
    /// segment's keys, unless the key's word equals one of them.
    bounds: Box<[(u64, u64)]>,
}

impl Run {
    fn new(max_lsn: u64, segments: Arc<[Arc<SegmentReader>]>) -> Self {
        Run {
            max_lsn,
            segments,
            bounds: Box::default(),
        }
    }

    /// The one segment whose key range may hold `key`, given the key's
    /// word `w` past the version's shared prefix (which `key` has).
    #[inline(always)]
    fn segment_for(&self, key: &[u8], w: u64) -> Option<&Arc<SegmentReader>> {
        if let ([s], &[(lo, hi)]) = (&self.segments[..], &self.bounds[..]) {
            // One segment (a flush's run, or a merge's under 4 MiB): words
            // decide unless the key's equals one of its bounds'.
            let inside = (w > lo || (w == lo && !key_lt(key, &s.meta.min_key)))
                && (w < hi || (w == hi && !key_lt(&s.meta.max_key, key)));
            return inside.then_some(s);
        }
        // The first segment whose max key is >= `key`: by words, then by
        // whole keys among segments whose max word equals the key's.
        let mut i = self.bounds.partition_point(|&(_, hi)| hi < w);
        while self.bounds.get(i).is_some_and(|&(_, hi)| hi == w)
            && key_lt(&self.segments[i].meta.max_key, key)
        {
            i += 1;
        }
        let (s, &(lo, _)) = self.segments.get(i).zip(self.bounds.get(i))?;
        // It holds `key` unless it starts after it.
        (w > lo || (w == lo && !key_lt(key, &s.meta.min_key))).then_some(s)
    }

    /// Index of the first segment that may hold keys in `[start, end)`, if
    /// any does (the later ones follow in key order).
    pub(crate) fn first_overlapping(&self, start: &[u8], end: Option<&[u8]>) -> Option<usize> {
        let first = self
            .segments
            .partition_point(|s| s.meta.max_key.as_slice() < start);
        let s = self.segments.get(first)?;
        end.is_none_or(|e| s.meta.min_key.as_slice() < e)
            .then_some(first)
    }
}

/// Groups segments by `run_id` into runs. The grouping is checked, not
/// trusted: a group whose key ranges overlap becomes one run per segment.
fn group_runs(segments: &[Arc<SegmentReader>]) -> Vec<Run> {
    let mut by_run: std::collections::HashMap<u64, Vec<Arc<SegmentReader>>> =
        std::collections::HashMap::new();
    for s in segments {
        by_run.entry(s.meta.run_id).or_default().push(Arc::clone(s));
    }
    let mut runs = Vec::with_capacity(by_run.len());
    for (_, mut segs) in by_run {
        segs.sort_by(|a, b| a.meta.min_key.cmp(&b.meta.min_key));
        let disjoint = segs
            .windows(2)
            .all(|w| w[0].meta.max_key < w[1].meta.min_key);
        if disjoint {
            let max_lsn = segs.iter().map(|s| s.meta.max_lsn).max().unwrap_or(0);
            runs.push(Run::new(max_lsn, segs.into()));
        } else {
            runs.extend(
                segs.into_iter()
                    .map(|s| Run::new(s.meta.max_lsn, Arc::new([s]))),
            );
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.max_lsn));
    runs
}

impl Version {
    pub(crate) fn new(mems: Vec<Arc<Memtable>>, mut segments: Vec<Arc<SegmentReader>>) -> Self {
        segments.sort_by(|a, b| {
            b.meta
                .max_lsn
                .cmp(&a.meta.max_lsn)
                .then(b.meta.segment_id.cmp(&a.meta.segment_id))
        });
        let mut runs = group_runs(&segments);
        let least = segments.iter().map(|s| &s.meta.min_key).min();
        let greatest = segments.iter().map(|s| &s.meta.max_key).max();
        let shared = match (least, greatest) {
            (Some(a), Some(b)) => a[..common_prefix_len(a, b)].to_vec(),
            _ => Vec::new(),
        };
        for run in &mut runs {
            run.bounds = run
                .segments
                .iter()
                .map(|s| {
                    (
                        word_at(&s.meta.min_key, shared.len()),
                        word_at(&s.meta.max_key, shared.len()),
                    )
                })
                .collect();
        }
        Version {
            mems,
            segments,
            runs,
            shared,
        }
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
        // One hash for the memtables' indexes and the segments' filters.
        let hash = key_hash(key);
        for m in &self.mems {
            let got = m.get_hashed(key, hash, read_lsn, |e| (f.take().expect("called once"))(e));
            if let Some(r) = got {
                return Ok(Some(r));
            }
        }
        let Some(found) = self.newest_found_hashed(key, hash)? else {
            return Ok(None);
        };
        Ok(f.take().map(|f| f(found.as_entry())))
    }

    /// The newest record of `key` in the segments.
    pub(crate) fn newest_in_segments(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.newest_found(key)?.map(|f| f.to_record()))
    }

    /// The newest entry of `key` in the segments, read in place.
    fn newest_found(&self, key: &[u8]) -> Result<Option<Found<'_>>> {
        self.newest_found_hashed(key, key_hash(key))
    }

    /// [`Version::newest_found`] for a key whose [`key_hash`] is `hash`.
    ///
    /// Runs are visited newest first in groups of [`PROBE_GROUP`]: the
    /// group's segments are found and their filter lines requested before
    /// any filter is read, so a read that probes many runs (a write burst's,
    /// before compaction folds them) waits for their cache misses together
    /// rather than one after another. A single run (a compacted database)
    /// skips all that: its one segment for the key decides. Each run's
    /// segment is chosen by the key's word past the version's shared
    /// prefix (read once), not by comparing whole keys per run.
    fn newest_found_hashed(&self, key: &[u8], hash: u64) -> Result<Option<Found<'_>>> {
        // Every segment's keys start with `shared`: a key that does not
        // is in none of them.
        let c = self.shared.len();
        if key.len() < c || key_cmp(&key[..c], &self.shared).is_ne() {
            return Ok(None);
        }
        let w = word_at(key, c);
        if let [run] = &self.runs[..] {
            // One run (a compacted database): its one segment for the key
            // decides, with nothing to request ahead or to compare.
            return match run.segment_for(key, w) {
                Some(s) if s.may_contain_hash(hash) => s.lookup_admitted(key),
                _ => Ok(None),
            };
        }
        let mut best: Option<Found> = None;
        for group in self.runs.chunks(PROBE_GROUP) {
            let mut segs: [Option<&SegmentReader>; PROBE_GROUP] = [None; PROBE_GROUP];
            for (slot, run) in segs.iter_mut().zip(group) {
                *slot = run.segment_for(key, w).map(|s| &**s);
                if let Some(s) = slot {
                    s.prefetch_filter(hash);
                }
            }
            for (run, s) in group.iter().zip(segs) {
                // Sorted by max_lsn: no later run can beat what we have.
                if best.as_ref().is_some_and(|b| b.lsn >= run.max_lsn) {
                    return Ok(best);
                }
                let Some(s) = s.filter(|s| s.may_contain_hash(hash)) else {
                    continue;
                };
                if let Some(r) = s.lookup_admitted(key)? {
                    if best.as_ref().is_none_or(|b| r.lsn > b.lsn) {
                        best = Some(r);
                    }
                }
            }
        }
        Ok(best)
    }

    /// Each segment's id and file size.
    pub(crate) fn segment_sizes(&self) -> Vec<(u64, u64)> {
        self.segments
            .iter()
            .map(|s| (s.meta.segment_id, s.meta.file_size))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{SegmentWriter, WriterOptions};
    use crate::types::Operation;

    /// [`segment_of`] for string keys.
    fn segment(
        dir: &std::path::Path,
        id: u64,
        run: u64,
        keys: &[(&str, u64)],
    ) -> Arc<SegmentReader> {
        let keys: Vec<(Vec<u8>, u64)> = keys.iter().map(|&(k, lsn)| (k.into(), lsn)).collect();
        segment_of(dir, id, run, &keys)
    }

    /// Writes segment `id` of run `run` holding `keys` (sorted, unique),
    /// each with value `[lsn as u8]`.
    fn segment_of(
        dir: &std::path::Path,
        id: u64,
        run: u64,
        keys: &[(Vec<u8>, u64)],
    ) -> Arc<SegmentReader> {
        let records: Vec<Record> = keys
            .iter()
            .map(|(k, lsn)| {
                Record::new(MemEntry {
                    key: k.clone(),
                    value: Some(vec![*lsn as u8]),
                    op: Operation::Put,
                    lsn: *lsn,
                    timestamp: 0,
                    ttl: 0,
                })
            })
            .collect();
        let opts = WriterOptions::defaults(dir.to_path_buf(), 3600);
        SegmentWriter::with_options(opts, id)
            .write_records(&records, run)
            .unwrap();
        Arc::new(SegmentReader::open(dir.to_path_buf(), id).unwrap())
    }

    /// Bytes that make keys share long prefixes, hold zeros (so a key's
    /// eight-byte word often equals a segment bound's) and sort at the ends.
    fn key_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'a'), Just(255u8), 0u8..3],
            0..11,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A point read picks each run's segment by the words past the
        /// version's shared prefix, falling back to whole keys on equal
        /// words: it finds the newest version of every stored key and
        /// nothing for other keys (outside the prefix, shorter than it,
        /// between segments), with runs of one or several segments.
        #[test]
        fn point_reads_pick_segments_by_words_and_whole_keys(
            runs in proptest::collection::vec(proptest::collection::btree_set(key_bytes(), 1..24), 1..5),
            probes in proptest::collection::vec(key_bytes(), 0..40),
            per_segment in 1usize..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let full = |k: &[u8]| [b"shared/".as_slice(), k].concat();
            let mut segs = Vec::new();
            let mut newest: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
            let mut id = 0;
            for (r, keys) in runs.iter().enumerate() {
                let keyed: Vec<(Vec<u8>, u64)> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (full(k), 1000 * (r as u64 + 1) + i as u64))
                    .collect();
                for (k, lsn) in &keyed {
                    newest.insert(k.clone(), *lsn);
                }
                for chunk in keyed.chunks(per_segment) {
                    id += 1;
                    segs.push(segment_of(dir.path(), id, r as u64 + 1, chunk));
                }
            }
            let v = Version::new(Vec::new(), segs);
            let lsn = |k: &[u8]| v.get(k, u64::MAX).unwrap().map(|e| e.lsn);
            for (k, want) in &newest {
                proptest::prop_assert_eq!(lsn(k), Some(*want), "{:?}", k);
            }
            let mut others: Vec<Vec<u8>> = probes.iter().map(|p| full(p)).collect();
            others.extend([b"".to_vec(), b"shared".to_vec(), b"shared/".to_vec(), b"shared.".to_vec(), b"sharee".to_vec(), b"\xff".to_vec(), probes.first().cloned().unwrap_or_default()]);
            for k in others {
                proptest::prop_assert_eq!(lsn(&k), newest.get(&k).copied(), "{:?}", k);
            }
        }
    }

    #[test]
    fn runs_are_checked_and_point_reads_find_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Run 1: disjoint segments (one run). Run 2 claims one run id but its
        // segments overlap: they must become separate runs, or a read would
        // look in only one of them.
        let segs = vec![
            segment(d, 1, 1, &[("a", 1), ("c", 2)]),
            segment(d, 2, 1, &[("e", 3), ("g", 4)]),
            segment(d, 3, 2, &[("a", 10), ("f", 11)]),
            segment(d, 4, 2, &[("c", 12), ("e", 13)]),
        ];
        let v = Version::new(Vec::new(), segs);
        let mut shapes: Vec<usize> = v.runs.iter().map(|r| r.segments.len()).collect();
        shapes.sort_unstable();
        assert_eq!(shapes, [1, 1, 2]);
        assert!(v.runs.windows(2).all(|w| w[0].max_lsn >= w[1].max_lsn));
        let lsn = |k: &str| v.get(k.as_bytes(), u64::MAX).unwrap().map(|e| e.lsn);
        assert_eq!(lsn("a"), Some(10));
        assert_eq!(lsn("c"), Some(12));
        assert_eq!(lsn("e"), Some(13));
        assert_eq!(lsn("f"), Some(11));
        assert_eq!(lsn("g"), Some(4));
        assert_eq!(lsn("b"), None);
        assert_eq!(lsn("z"), None);
        // A scan's start finds the first overlapping segment of a run.
        let run1 = v.runs.iter().find(|r| r.segments.len() == 2).unwrap();
        assert_eq!(run1.first_overlapping(b"d", None), Some(1));
        assert_eq!(run1.first_overlapping(b"", Some(b"a")), None);
        assert_eq!(run1.first_overlapping(b"h", None), None);
    }

    #[test]
    fn point_reads_probing_runs_in_groups_find_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        // 20 runs (more than two probe groups), run r written at LSN 100 + r:
        // "own-r" in run r alone, "s" in every seventh run, "t" in runs 2
        // and 5 (the second and third groups, newest first), "u" in runs 18
        // and 13 (near the two ends of the first group: a read that probed
        // one run's segment for another would return run 13's).
        let runs = 20u64;
        let owns: Vec<String> = (0..runs).map(|r| format!("own-{r:02}")).collect();
        let segs = (0..runs)
            .map(|r| {
                let lsn = 100 + r;
                let mut keys = vec![(owns[r as usize].as_str(), lsn)];
                if r % 7 == 0 {
                    keys.push(("s", lsn));
                }
                if r == 2 || r == 5 {
                    keys.push(("t", lsn));
                }
                if r == 13 || r == 18 {
                    keys.push(("u", lsn));
                }
                keys.sort();
                segment(dir.path(), r + 1, r + 1, &keys)
            })
            .collect();
        let v = Version::new(Vec::new(), segs);
        assert_eq!(v.runs.len() as u64, runs);
        assert!(runs as usize > 2 * PROBE_GROUP);
        let lsn = |k: &str| v.get(k.as_bytes(), u64::MAX).unwrap().map(|e| e.lsn);
        for (r, own) in owns.iter().enumerate() {
            assert_eq!(lsn(own), Some(100 + r as u64), "{own}");
        }
        assert_eq!(lsn("s"), Some(114));
        assert_eq!(lsn("t"), Some(105));
        assert_eq!(lsn("u"), Some(118));
        assert_eq!(lsn("own-99"), None);
        assert_eq!(lsn("a"), None);
    }
}
