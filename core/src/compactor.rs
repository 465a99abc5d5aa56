//! Deathtime-cohort compaction.
//!
//! Segments are grouped by cohort (the window their records die in). A cycle:
//!
//! 1. **Drops** every unpinned segment whose `death_time` (the latest
//!    `retain_until` of its records) has passed: one manifest edit, then the
//!    files are deleted. Nothing is written. Dropping is safe per segment
//!    because a record is retained at least as long as any older version it
//!    shadows.
//! 2. **Rewrites** a TTL cohort that is not yet fully expired only when its
//!    estimated dead fraction reaches `partial_rewrite_dead_fraction` (f), so
//!    each byte rewritten reclaims at least f/(1-f) bytes, and only when it
//!    would otherwise live more than one more cohort window (a cohort about to
//!    die whole is cheaper to wait for than to copy).
//! 3. **Merges** runs of the permanent cohort (TTL 0 records, tombstones and
//!    records that shadow permanent ones), universal-style: when it holds more
//!    than `max_permanent_runs` runs, the newest runs of similar size are merged;
//!    when (bytes in newer runs) / (bytes in the oldest run) exceeds
//!    `max_permanent_space_amp`, all runs are merged. So a point read consults at
//!    most `max_permanent_runs` permanent segments (plus one per TTL segment whose
//!    key range and Bloom filter admit the key), and permanent space
//!    amplification stays below `1 + max_permanent_space_amp` after each cycle
//!    the budget lets run.
//!
//! In a rewrite, only the newest version of each key among the inputs is kept.
//! A dead record (tombstone or expired value) is dropped only when its retention
//! has passed or no older version of its key exists in any segment outside the
//! inputs; otherwise it is kept as a tombstone. Segments in the caller's
//! `pinned` set are never touched. The engine pins none: its snapshots and
//! iterators read through the files they opened, which stay readable after
//! compaction removes them (their space returns when the last reader drops),
//! so a stream of overlapping snapshots (a sync client's) cannot keep expired
//! files from being dropped or runs from being merged.
//!
//! Rewrites are paid from a token bucket of `write_budget_bytes` a cycle: a
//! job starts only while the balance is positive and is charged what it
//! wrote, possibly overdrawing the balance, which later cycles repay before
//! the next job starts; an unused balance is capped at one cycle's budget. So
//! a merge larger than one budget (a permanent keyspace bigger than the
//! budget) runs as soon as it is due and is paid for afterwards: deferring
//! it instead, while saving up, left reads to pay for every run a write
//! burst had piled up until the merge finally ran. The bucket holds at most
//! one budget: unused budget does not accumulate. While the balance is
//! repaid, a cycle whose permanent cohort holds more than
//! `max_permanent_runs` runs still folds the most runs adjacent in age that
//! fit in half a budget (charged all the same), so reads do not probe every
//! run flushed meanwhile, and each cycle still repays at least half a
//! budget. Over any run of cycles, compaction writes at most the budget
//! times the cycles plus one job.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestEdit};
use crate::segment::{self, Record, SegmentMeta, SegmentReader, WriterOptions};
use crate::types::{Operation, PERMANENT_COHORT};

/// What the compactor knows about one cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortInfo {
    /// The cohort's bucket ([`PERMANENT_COHORT`] for records that never die).
    pub cohort_bucket: u64,
    /// Its unpinned segments.
    pub segment_ids: Vec<u64>,
    /// Latest death time (retention) of any of its segments.
    pub max_death_time_nanos: i64,
    /// Records in those segments.
    pub total_records: u64,
    /// Estimated dead records (from each segment's death-time range).
    pub dead_record_estimate: u64,
    /// Whether every segment's retention has passed.
    pub is_fully_expired: bool,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Cohorts that had segments dropped or rewritten.
    pub cohorts_collected: u64,
    /// Segment files removed.
    pub segments_removed: u64,
    /// Segment files written.
    pub segments_written: u64,
    /// Bytes written (the compaction part of write amplification).
    pub bytes_written: u64,
    /// Bytes of segment files removed.
    pub bytes_reclaimed: u64,
    /// Live records copied into new segments.
    pub live_records_relocated: u64,
    /// Dead or shadowed records discarded by rewrites.
    pub records_dropped: u64,
    /// Dead records kept as tombstones because an older version remains elsewhere.
    pub tombstones_kept: u64,
    /// Rewrite jobs deferred because the write budget was spent (or overdrawn).
    pub jobs_deferred: u64,
}

impl CompactionStats {
    fn add(&mut self, o: &CompactionStats) {
        self.cohorts_collected += o.cohorts_collected;
        self.segments_removed += o.segments_removed;
        self.segments_written += o.segments_written;
        self.bytes_written += o.bytes_written;
        self.bytes_reclaimed += o.bytes_reclaimed;
        self.live_records_relocated += o.live_records_relocated;
        self.records_dropped += o.records_dropped;
        self.tombstones_kept += o.tombstones_kept;
        self.jobs_deferred += o.jobs_deferred;
    }
}

/// Tuning of the merge policy (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// Dead fraction at which a TTL cohort is rewritten before it fully expires.
    pub partial_rewrite_dead_fraction: f64,
    /// Most runs in the permanent cohort.
    pub max_permanent_runs: usize,
    /// Space amplification that triggers a full permanent merge.
    pub max_permanent_space_amp: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            partial_rewrite_dead_fraction: 0.5,
            max_permanent_runs: 4,
            max_permanent_space_amp: 1.0,
        }
    }
}

/// Runs compaction over a manifest and the segment files of one directory.
#[derive(Debug)]
pub struct Compactor {
    write_budget_bytes: u64,
    policy: CompactionPolicy,
    opts: WriterOptions,
    readers: Mutex<HashMap<u64, Arc<SegmentReader>>>,
    block_cache: Option<Arc<BlockCache>>,
    /// The write budget's token bucket in bytes: what jobs may still write
    /// (see `compact_cycle_with`); negative after a job overdrew it.
    balance: Mutex<i64>,
}

impl Compactor {
    /// A compactor for the segments in `dir` (real file system, default policy).
    pub fn new(dir: PathBuf, write_budget_bytes: u64, cohort_window_secs: u64) -> Self {
        Self::with_options(
            WriterOptions::defaults(dir, cohort_window_secs),
            write_budget_bytes,
            CompactionPolicy::default(),
        )
    }

    pub(crate) fn with_options(
        opts: WriterOptions,
        write_budget_bytes: u64,
        policy: CompactionPolicy,
    ) -> Self {
        Compactor {
            write_budget_bytes,
            policy,
            opts,
            readers: Mutex::new(HashMap::new()),
            block_cache: None,
            balance: Mutex::new(0),
        }
    }

    /// Replaces the merge policy.
    pub fn with_policy(mut self, policy: CompactionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Readers opened from now on read blocks through `cache`.
    pub fn with_block_cache(mut self, cache: Option<Arc<BlockCache>>) -> Self {
        self.block_cache = cache;
        self
    }

    /// The block cache readers use, if any.
    pub(crate) fn block_cache(&self) -> Option<Arc<BlockCache>> {
        self.block_cache.clone()
    }

    pub(crate) fn writer_options(&self) -> &WriterOptions {
        &self.opts
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SegmentReader>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open reader of segment `id`, opening it on first use.
    pub fn reader(&self, id: u64) -> Result<Arc<SegmentReader>> {
        if let Some(r) = self.cache().get(&id) {
            return Ok(Arc::clone(r));
        }
        let r = Arc::new(
            SegmentReader::open_with(
                self.opts.storage.as_ref(),
                &self.opts.dir,
                id,
                self.opts.mmap_reads,
            )?
            .with_cache(self.block_cache.clone()),
        );
        self.cache().insert(id, Arc::clone(&r));
        Ok(r)
    }

    pub(crate) fn adopt(&self, reader: Arc<SegmentReader>) {
        self.cache().insert(reader.meta.segment_id, reader);
    }

    fn forget(&self, ids: &[u64]) {
        let mut c = self.cache();
        for id in ids {
            c.remove(id);
        }
    }

    /// Groups the manifest's unpinned segments into cohorts, as of `now_nanos`.
    pub fn cohorts(
        &self,
        manifest: &Manifest,
        now_nanos: i64,
        pinned: &HashSet<u64>,
    ) -> Vec<CohortInfo> {
        let mut by_bucket: BTreeMap<u64, CohortInfo> = BTreeMap::new();
        for s in manifest
            .list_segments()
            .iter()
            .filter(|s| !pinned.contains(&s.segment_id))
        {
            let c = by_bucket
                .entry(s.cohort_bucket)
                .or_insert_with(|| CohortInfo {
                    cohort_bucket: s.cohort_bucket,
                    segment_ids: Vec::new(),
                    max_death_time_nanos: i64::MIN,
                    total_records: 0,
                    dead_record_estimate: 0,
                    is_fully_expired: true,
                });
            c.segment_ids.push(s.segment_id);
            c.max_death_time_nanos = c.max_death_time_nanos.max(s.death_time);
            c.total_records += s.record_count;
            c.dead_record_estimate += dead_estimate(s, now_nanos);
            c.is_fully_expired &= s.death_time <= now_nanos;
        }
        by_bucket.into_values().collect()
    }

    /// One compaction cycle: drop expired segments, then rewrite what pays,
    /// within the write budget. Pinned segments are left alone.
    pub fn compact_cycle(
        &self,
        manifest: &mut Manifest,
        now_nanos: i64,
        pinned: &HashSet<u64>,
    ) -> Result<CompactionStats> {
        self.compact_cycle_with(manifest, now_nanos, pinned, |_| {})
    }

    /// [`Compactor::compact_cycle`], calling `edited` after each manifest
    /// edit (the drop of expired files, then each rewrite), so the engine
    /// can show readers the smaller set of segments as soon as a job is done
    /// rather than at the end of the cycle.
    pub fn compact_cycle_with(
        &self,
        manifest: &mut Manifest,
        now_nanos: i64,
        pinned: &HashSet<u64>,
        edited: impl FnMut(&Manifest),
    ) -> Result<CompactionStats> {
        self.cycle(manifest, now_nanos, pinned, edited)
    }

    /// A cycle over a manifest others edit too: the lock is held to plan,
    /// to allocate output ids and to publish, never while a merge reads and
    /// writes, so flushes go on publishing meanwhile. Nothing is pinned (see
    /// the module docs). Cycles of one compactor never overlap.
    pub(crate) fn compact_cycle_shared(
        &self,
        manifest: &Mutex<Manifest>,
        now_nanos: i64,
        edited: impl FnMut(&Manifest),
    ) -> Result<CompactionStats> {
        self.cycle(manifest, now_nanos, &HashSet::new(), edited)
    }

    fn cycle(
        &self,
        mut manifest: impl ManifestAccess,
        now_nanos: i64,
        pinned: &HashSet<u64>,
        mut edited: impl FnMut(&Manifest),
    ) -> Result<CompactionStats> {
        // Held for the whole cycle: one cycle at a time, and the token bucket
        // (see the module docs) is read and charged by it alone.
        let mut balance = self.balance.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = CompactionStats::default();

        // 1. Whole segments whose retention has passed: zero bytes written.
        let dropped = manifest.with(|m| -> Result<Option<Vec<u64>>> {
            let expired: Vec<&SegmentMeta> = m
                .list_segments()
                .iter()
                .filter(|s| !pinned.contains(&s.segment_id) && s.death_time <= now_nanos)
                .collect();
            if expired.is_empty() {
                return Ok(None);
            }
            let ids: Vec<u64> = expired.iter().map(|s| s.segment_id).collect();
            let buckets: HashSet<u64> = expired.iter().map(|s| s.cohort_bucket).collect();
            let bytes: u64 = expired.iter().map(|s| s.file_size).sum();
            m.apply(ManifestEdit {
                remove: ids.clone(),
                ..Default::default()
            })?;
            stats.cohorts_collected += buckets.len() as u64;
            stats.segments_removed += ids.len() as u64;
            stats.bytes_reclaimed += bytes;
            edited(m);
            Ok(Some(ids))
        })?;
        if let Some(ids) = dropped {
            self.delete_files(&ids)?;
        }

        // 2 and 3. Rewrite jobs, paid from the token bucket.
        let budget = i64::try_from(self.write_budget_bytes).unwrap_or(i64::MAX);
        *balance = balance.saturating_add(budget).min(budget);
        let jobs = manifest.with(|m| self.plan(m, now_nanos, pinned));
        let mut caught_up = false;
        for planned in jobs {
            let job = if *balance > 0 {
                planned
            } else {
                stats.jobs_deferred += 1;
                // Repaying, but reads would pay for too many runs meanwhile:
                // fold some, once a cycle, planned now (an earlier job of
                // this cycle may have merged runs away).
                let small = (!caught_up)
                    .then(|| manifest.with(|m| self.catch_up_merge(m, now_nanos, pinned)))
                    .flatten();
                caught_up = true;
                match small {
                    Some(small) => small,
                    None => continue,
                }
            };
            let mut s = CompactionStats::default();
            let res = self.merge(&mut manifest, &job, now_nanos, None, &mut s, &mut edited);
            // What a job wrote is charged whether or not it was published.
            let spent = i64::try_from(s.bytes_written).unwrap_or(i64::MAX);
            *balance = balance.saturating_sub(spent);
            res?;
            s.cohorts_collected = 1;
            stats.add(&s);
        }
        Ok(stats)
    }

    /// Rewrites one cohort's segments (`cohort.segment_ids`) into new segments,
    /// the first with id `output_segment_id`, keeping what is alive at `now_nanos`.
    pub fn compact_partial_cohort(
        &self,
        mut manifest: &mut Manifest,
        cohort: &CohortInfo,
        now_nanos: i64,
        output_segment_id: u64,
        stats: &mut CompactionStats,
    ) -> Result<()> {
        let mut s = CompactionStats::default();
        self.merge(
            &mut manifest,
            &cohort.segment_ids,
            now_nanos,
            Some(output_segment_id),
            &mut s,
            &mut |_| {},
        )?;
        s.cohorts_collected = 1;
        stats.add(&s);
        Ok(())
    }

    /// The rewrite jobs due now: each a set of segments to merge.
    fn plan(&self, manifest: &Manifest, now_nanos: i64, pinned: &HashSet<u64>) -> Vec<Vec<u64>> {
        let metas: HashMap<u64, &SegmentMeta> = manifest
            .list_segments()
            .iter()
            .map(|s| (s.segment_id, s))
            .collect();
        let mut jobs = Vec::new();
        for c in self.cohorts(manifest, now_nanos, pinned) {
            if c.is_fully_expired || c.total_records == 0 {
                continue;
            }
            if c.cohort_bucket == PERMANENT_COHORT {
                jobs.extend(self.permanent_merge(&c, &metas));
                continue;
            }
            // A cohort that dies within a window anyway is cheaper to wait for
            // than to rewrite: only long-lived remainders are worth copying.
            let window_nanos = (self.opts.cohort_window_secs as i64).saturating_mul(1_000_000_000);
            let dies_soon = c.max_death_time_nanos.saturating_sub(now_nanos) <= window_nanos;
            let dead = c.dead_record_estimate as f64 / c.total_records as f64;
            if !dies_soon && dead >= self.policy.partial_rewrite_dead_fraction {
                jobs.push(c.segment_ids.clone());
            }
        }
        jobs
    }

    /// While the budget is overdrawn: when the permanent cohort holds more
    /// than `max_permanent_runs` runs, the most runs adjacent in age (at
    /// least two) whose bytes fit in half a cycle's budget. Folding the small
    /// runs a write burst left keeps reads from probing each of them until
    /// the overdraft (a large merge's) is repaid; at half a budget, every
    /// cycle still repays at least the other half, so the planned merges
    /// (the space-amplification merge among them) run within twice the
    /// cycles repaying alone would take.
    fn catch_up_merge(
        &self,
        manifest: &Manifest,
        now_nanos: i64,
        pinned: &HashSet<u64>,
    ) -> Option<Vec<u64>> {
        let metas: HashMap<u64, &SegmentMeta> = manifest
            .list_segments()
            .iter()
            .map(|s| (s.segment_id, s))
            .collect();
        let c = self
            .cohorts(manifest, now_nanos, pinned)
            .into_iter()
            .find(|c| c.cohort_bucket == PERMANENT_COHORT)?;
        let runs = permanent_runs(&c, &metas);
        if runs.len() <= self.policy.max_permanent_runs {
            return None;
        }
        // The window of runs adjacent in age that folds the most runs within
        // the budget (the newest such on a tie): the output takes their
        // place in age order, and reads compare versions by LSN anyway.
        let mut best = (0usize, 0usize); // (runs, first)
        let mut end = 0usize;
        let mut bytes = 0u64;
        for first in 0..runs.len() {
            end = end.max(first);
            while end < runs.len()
                && bytes.saturating_add(runs[end].bytes) <= self.write_budget_bytes / 2
            {
                bytes += runs[end].bytes;
                end += 1;
            }
            if end - first > best.0 {
                best = (end - first, first);
            }
            if end > first {
                bytes -= runs[first].bytes;
            }
        }
        let (n, first) = best;
        (n >= 2).then(|| {
            runs[first..first + n]
                .iter()
                .flat_map(|r| r.ids.iter().copied())
                .collect()
        })
    }

    /// Chooses permanent runs to merge, if the policy asks for a merge.
    fn permanent_merge(
        &self,
        c: &CohortInfo,
        metas: &HashMap<u64, &SegmentMeta>,
    ) -> Option<Vec<u64>> {
        let runs = permanent_runs(c, metas);
        if runs.len() < 2 {
            return None;
        }
        let oldest = runs.last().map_or(0, |r| r.bytes).max(1);
        let newer: u64 = runs[..runs.len() - 1].iter().map(|r| r.bytes).sum();
        let picked: &[Run] = if newer as f64 > self.policy.max_permanent_space_amp * oldest as f64 {
            &runs
        } else if runs.len() > self.policy.max_permanent_runs {
            // Newest runs of similar size; at least enough to get under the bound.
            let mut n = 1;
            let mut sum = runs[0].bytes;
            while n < runs.len() && runs[n].bytes <= sum.saturating_mul(2) {
                sum += runs[n].bytes;
                n += 1;
            }
            n = n.max(runs.len() - self.policy.max_permanent_runs + 1);
            &runs[..n]
        } else {
            return None;
        };
        Some(picked.iter().flat_map(|r| r.ids.iter().copied()).collect())
    }

    fn delete_files(&self, ids: &[u64]) -> Result<()> {
        self.forget(ids);
        for id in ids {
            let path = self.opts.dir.join(segment::file_name(*id));
            match self.opts.storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting segment {}", path.display()), e)),
            }
        }
        // Not strictly needed for safety (the manifest no longer names them and
        // open removes orphans), but it keeps the space reclaimed after a crash.
        self.opts
            .storage
            .sync_dir(&self.opts.dir)
            .map_err(|e| Error::io(format!("syncing directory {}", self.opts.dir.display()), e))
    }

    /// Merges `inputs` into new segments (the first `first_output`, or a
    /// newly allocated id) and swaps them in with one manifest edit. The
    /// manifest is locked only to look, allocate and publish;
    /// `stats.bytes_written` counts the output even when publishing fails.
    fn merge(
        &self,
        manifest: &mut impl ManifestAccess,
        inputs: &[u64],
        now_nanos: i64,
        first_output: Option<u64>,
        stats: &mut CompactionStats,
        edited: &mut dyn FnMut(&Manifest),
    ) -> Result<()> {
        let input_set: HashSet<u64> = inputs.iter().copied().collect();
        let (outside, first) = manifest.with(|m| -> Result<(Vec<u64>, u64)> {
            if let Some(id) = inputs.iter().find(|id| m.segment(**id).is_none()) {
                return Err(Error::invalid(format!(
                    "segment {id} is not in the manifest"
                )));
            }
            let outside = m
                .list_segments()
                .iter()
                .map(|s| s.segment_id)
                .filter(|id| !input_set.contains(id))
                .collect();
            let first = first_output.unwrap_or_else(|| m.allocate_segment_id());
            if first >= u64::MAX - 1 {
                // The manifest would record the last id as the next one,
                // which open refuses as exhausted.
                return Err(Error::invalid(format!(
                    "segment id {first} leaves no id after it"
                )));
            }
            m.reserve_segment_id(first);
            Ok((outside, first))
        })?;
        // Segments a flush publishes during the merge hold only newer
        // versions, so they cannot change which dead records must be kept.
        let readers: Vec<Arc<SegmentReader>> = inputs
            .iter()
            .map(|id| self.reader(*id))
            .collect::<Result<_>>()?;
        let outside: Vec<Arc<SegmentReader>> = outside
            .iter()
            .map(|id| self.reader(*id))
            .collect::<Result<_>>()?;

        // Stream the newest version of each key among the inputs into output
        // segments: memory is one block per input plus the output's block
        // and its keys' hashes.
        let mut merge = NewestFirst::new(&readers)?;
        let mut out = segment::SplitWriter::new(&self.opts, first);
        let mut next_id = || manifest.with(|m| m.allocate_segment_id());
        let mut kept = 0u64;
        let mut stream = || -> Result<Vec<SegmentMeta>> {
            while let Some(mut rec) = merge.next()? {
                if rec.entry.is_live_at(now_nanos) {
                    stats.live_records_relocated += 1;
                } else if rec.retain_until > now_nanos
                    && older_version_exists(&outside, &rec.entry.key, rec.entry.lsn)?
                {
                    rec.entry.op = Operation::Delete;
                    rec.entry.value = None;
                    stats.tombstones_kept += 1;
                } else {
                    continue;
                }
                kept += 1;
                out.push(&rec, &mut next_id)?;
            }
            out.finish()
        };
        let metas = match stream() {
            Ok(m) => m,
            Err(e) => {
                // A damaged input or a failed write: leave no orphan outputs.
                out.abandon();
                return Err(e);
            }
        };
        let written: u64 = metas.iter().map(|m| m.file_size).sum();
        stats.bytes_written += written;
        // After a failed edit the outputs stay: the edit may have reached
        // the disk, and open removes files the manifest does not name.
        manifest.with(|m| -> Result<()> {
            m.apply(ManifestEdit {
                add: metas.clone(),
                remove: inputs.to_vec(),
                ..Default::default()
            })?;
            edited(m);
            Ok(())
        })?;
        stats.records_dropped += merge.read - kept;
        let reclaimed: u64 = readers.iter().map(|r| r.meta.file_size).sum();
        self.delete_files(inputs)?;
        stats.segments_removed += inputs.len() as u64;
        stats.segments_written += metas.len() as u64;
        stats.bytes_reclaimed += reclaimed;
        Ok(())
    }
}

/// How a cycle reaches the manifest: held throughout (`&mut Manifest`, the
/// public API's caller owns it) or locked for each step (`&Mutex<Manifest>`,
/// the engine's, which flushes edit too).
trait ManifestAccess {
    fn with<R>(&mut self, f: impl FnOnce(&mut Manifest) -> R) -> R;
}

impl ManifestAccess for &mut Manifest {
    fn with<R>(&mut self, f: impl FnOnce(&mut Manifest) -> R) -> R {
        f(self)
    }
}

impl ManifestAccess for &Mutex<Manifest> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Manifest) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A k-way merge of segments yielding, per key in key order, the version
/// with the highest LSN.
struct NewestFirst {
    iters: Vec<segment::SegmentIter>,
    heap: BinaryHeap<Reverse<MergeHead>>,
    /// Records read from the inputs so far.
    read: u64,
}

struct MergeHead {
    rec: Record,
    src: usize,
}

impl MergeHead {
    fn order(&self) -> (&[u8], Reverse<u64>) {
        (&self.rec.entry.key, Reverse(self.rec.entry.lsn))
    }
}

impl PartialEq for MergeHead {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for MergeHead {}
impl PartialOrd for MergeHead {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MergeHead {
    // Key ascending, then LSN descending: a key's first head is its newest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

impl NewestFirst {
    fn new(readers: &[Arc<SegmentReader>]) -> Result<Self> {
        let mut m = NewestFirst {
            iters: readers.iter().map(|r| r.iter_uncached()).collect(),
            heap: BinaryHeap::with_capacity(readers.len()),
            read: 0,
        };
        for src in 0..m.iters.len() {
            m.refill(src)?;
        }
        Ok(m)
    }

    fn refill(&mut self, src: usize) -> Result<()> {
        if let Some(rec) = self.iters[src].next_record()? {
            self.read += 1;
            self.heap.push(Reverse(MergeHead { rec, src }));
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Record>> {
        let Some(Reverse(top)) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(top.src)?;
        // Older versions of the same key in other inputs lose.
        while let Some(Reverse(h)) = self
            .heap
            .peek()
            .filter(|Reverse(h)| h.rec.entry.key == top.rec.entry.key)
        {
            let src = h.src;
            self.heap.pop();
            self.refill(src)?;
        }
        Ok(Some(top.rec))
    }
}

/// The cohort's segments grouped by run, newest run first.
fn permanent_runs(c: &CohortInfo, metas: &HashMap<u64, &SegmentMeta>) -> Vec<Run> {
    let mut runs: BTreeMap<u64, Run> = BTreeMap::new();
    for id in &c.segment_ids {
        let m = metas[id];
        let r = runs.entry(m.run_id).or_default();
        r.ids.push(*id);
        r.bytes += m.file_size;
        r.max_lsn = r.max_lsn.max(m.max_lsn);
    }
    let mut runs: Vec<Run> = runs.into_values().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.max_lsn));
    runs
}

#[derive(Debug, Default)]
struct Run {
    ids: Vec<u64>,
    bytes: u64,
    max_lsn: u64,
}

/// Records of `s` dead at `now`, assuming death times spread evenly over the
/// segment's [min_death_time, death_time] range.
fn dead_estimate(s: &SegmentMeta, now: i64) -> u64 {
    if s.death_time <= now {
        return s.record_count;
    }
    let mut dead = s.tombstone_count;
    if s.min_death_time <= now && s.min_death_time < s.death_time {
        let span = (s.death_time as f64) - (s.min_death_time as f64);
        let frac = ((now as f64) - (s.min_death_time as f64)) / span;
        dead = dead.max((frac.clamp(0.0, 1.0) * s.record_count as f64) as u64);
    }
    dead.min(s.record_count)
}

/// Whether any of `segments` holds a version of `key` older than `lsn`.
pub(crate) fn older_version_exists(
    segments: &[Arc<SegmentReader>],
    key: &[u8],
    lsn: u64,
) -> Result<bool> {
    for s in segments {
        if s.meta.min_lsn >= lsn || !s.may_contain(key) {
            continue;
        }
        if s.get_record(key)?.is_some_and(|r| r.entry.lsn < lsn) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentWriter;
    use crate::types::{encode_key, MemEntry};

    /// Writes segment `id` (its own run) with keys `k{id}-{j}`.
    fn segment(dir: &std::path::Path, id: u64, ttl: u32, timestamp: i64) -> SegmentMeta {
        let entries: Vec<(Vec<u8>, MemEntry)> = (0..20u64)
            .map(|j| {
                let key = encode_key(b"ns", format!("k{id:02}-{j:02}").as_bytes());
                let e = MemEntry {
                    key: key.clone(),
                    value: Some(vec![id as u8; 16]),
                    op: Operation::Put,
                    lsn: id * 100 + j + 1,
                    timestamp,
                    ttl,
                };
                (key, e)
            })
            .collect();
        SegmentWriter::new(dir.to_path_buf(), id, 3600)
            .flush(&entries)
            .unwrap()
    }

    /// The cycle reports each manifest edit as it happens: the drop of
    /// expired files first, then each merge, with the manifest as it is
    /// right after that edit.
    #[test]
    fn each_edit_is_reported_when_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open(&dir.path().join("manifest.mf")).unwrap();
        let now = 10_000 * 1_000_000_000i64;
        // One expired TTL segment, then six permanent runs (over the bound of 4).
        manifest.add_segment(segment(dir.path(), 1, 1, 0)).unwrap();
        for id in 2..8 {
            manifest
                .add_segment(segment(dir.path(), id, 0, now))
                .unwrap();
        }
        let compactor = Compactor::new(dir.path().to_path_buf(), u64::MAX, 3600);
        let mut seen: Vec<Vec<u64>> = Vec::new();
        let stats = compactor
            .compact_cycle_with(&mut manifest, now, &HashSet::new(), |m| {
                seen.push(m.list_segments().iter().map(|s| s.segment_id).collect());
            })
            .unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], (2..8).collect::<Vec<u64>>(), "after the drop");
        assert!(
            seen[1].iter().all(|id| *id >= 8),
            "after the merge: {seen:?}"
        );
        assert_eq!(stats.segments_removed, 7);
        let after: Vec<u64> = manifest
            .list_segments()
            .iter()
            .map(|s| s.segment_id)
            .collect();
        assert_eq!(seen[1], after);
    }

    /// A caller's output id that would leave the manifest no id after it
    /// is refused, and nothing changes.
    #[test]
    fn an_output_id_at_the_end_of_the_id_space_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open(&dir.path().join("manifest.mf")).unwrap();
        let now = 10_000 * 1_000_000_000i64;
        for id in 1..3 {
            manifest
                .add_segment(segment(dir.path(), id, 0, now))
                .unwrap();
        }
        let compactor = Compactor::new(dir.path().to_path_buf(), u64::MAX, 3600);
        let cohort = compactor
            .cohorts(&manifest, now, &HashSet::new())
            .into_iter()
            .next()
            .unwrap();
        let next = manifest.next_segment_id();
        for id in [u64::MAX - 1, u64::MAX] {
            let mut stats = CompactionStats::default();
            match compactor.compact_partial_cohort(&mut manifest, &cohort, now, id, &mut stats) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("no id after"), "{m}"),
                other => panic!("expected InvalidArgument, got {other:?}"),
            }
        }
        assert_eq!(manifest.next_segment_id(), next);
        assert_eq!(manifest.list_segments().len(), 2);
        Manifest::open(&dir.path().join("manifest.mf")).unwrap();
    }
}
