//! Segments: immutable sorted files of records, one death-time cohort each.
//!
//! Layout of `NNNNNNNNNNNNNNNNNNNN.seg` (all integers little-endian):
//!
//! ```text
//! header  "EDGSEG\0\x01" | version u32 | reserved u32          (16 bytes)
//! blocks  entries... | [index] | entry_count u32 | crc32 u32    (~block_size each)
//!         entry = key_len u32 | value_len u32 | op u8 | ttl u32 | lsn u64
//!                 | timestamp i64 | retain_until i64 | key | value
//!         index (version 3; bit 31 of entry_count set, bit 30 for u32
//!         offsets) = key_prefix u16 x n | entry_offset (u16 or u32) x n
//!                 | common_prefix_len u32
//! index   per block: last_key (u32 len + bytes) | offset u64 | len u32  | crc32 u32
//! bloom   k u32 | bits                                          | crc32 u32
//! meta    SegmentMeta (see `SegmentMeta::encode`)               | crc32 u32
//! footer  index off/len, bloom off/len, meta off/len (u64 each) | version u32
//!         | crc32 of the preceding 52 bytes u32 | "EDGSEGFT"     (64 bytes)
//! ```
//!
//! `retain_until` is how long the record must stay on disk: its own death time,
//! or later when it shadows an older version that lives longer (so dropping this
//! record's file can never resurrect that older version).

mod bloom;
mod reader;
mod writer;

pub(crate) use bloom::key_hash;
pub use reader::{Found, SegmentIter, SegmentReader};
pub use writer::SegmentWriter;
pub(crate) use writer::{write_split, SplitWriter, WriterOptions};

use crate::codec::{put_bytes, put_i64, put_u64, Decoder};
use crate::types::MemEntry;

pub(crate) const MAGIC: &[u8; 8] = b"EDGSEG\0\x01";
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"EDGSEGFT";
/// Format version written: 3 (blocks carry their entry index, so a mapped
/// block is searched in place). Versions 2 (no block index) and 1 (no block
/// index, classic Bloom filter) are still read.
pub(crate) const VERSION: u32 = 3;
/// Oldest format version read.
pub(crate) const MIN_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 16;
pub(crate) const FOOTER_LEN: u64 = 64;
pub(crate) const ENTRY_HEADER_LEN: usize = 37;
/// Entry-count flag: the block stores its entry index (version 3).
pub(crate) const INDEXED: u32 = 1 << 31;
/// Entry-count flag: the stored entry offsets are u32 (a block over 64 KiB).
pub(crate) const WIDE_OFFSETS: u32 = 1 << 30;

/// Asks the CPU to start loading the cache lines `v` occupies (a hint with
/// no effect on results; a no-op on CPUs without a stable prefetch
/// intrinsic). Reads that must touch several independent places (the
/// filters and first blocks of many sorted runs) request them all first, so
/// their cache misses overlap instead of queueing one after another.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = (v as *const T).cast::<i8>();
        for off in (0..std::mem::size_of_val(v)).step_by(64) {
            // SAFETY: a prefetch is a hint: it never faults, reads nothing
            // into the program and writes nothing; the address is inside `v`.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Two bytes of `key` from `at`, big-endian and zero-padded: ordered as the
/// keys are, among keys that share their first `at` bytes.
#[inline]
pub(crate) fn key_prefix(key: &[u8], at: usize) -> u16 {
    let byte = |i: usize| key.get(i).copied().unwrap_or(0);
    u16::from_be_bytes([byte(at), byte(at.saturating_add(1))])
}

/// Length of the prefix `a` and `b` share, compared eight bytes at a time
/// (a scan's setup asks it once per run, a new version once per segment).
#[inline]
pub(crate) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(x), Some(y)) = (
        a.get(i..n).and_then(<[u8]>::first_chunk::<8>),
        b.get(i..n).and_then(<[u8]>::first_chunk::<8>),
    ) {
        let diff = u64::from_be_bytes(*x) ^ u64::from_be_bytes(*y);
        if diff != 0 {
            return i + (diff.leading_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// File name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Parses a segment file name back into its id.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// A record as stored in a segment: the entry and how long it must be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The version itself.
    pub entry: MemEntry,
    /// Nanosecond time until which the record must stay on disk (>= its death time).
    pub retain_until: i64,
}

impl Record {
    /// A record kept exactly as long as it lives.
    pub fn new(entry: MemEntry) -> Self {
        let retain_until = entry.death_time();
        Record {
            entry,
            retain_until,
        }
    }
}

/// Everything the manifest knows about a segment; also stored in the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Unique id; the file is `file_name(segment_id)`.
    pub segment_id: u64,
    /// Segments written by one flush or merge share a run id and have disjoint key ranges.
    pub run_id: u64,
    /// Death-time cohort ([`crate::types::PERMANENT_COHORT`] for records that never die).
    pub cohort_bucket: u64,
    /// Latest `retain_until` of any record: the whole file may be deleted after it.
    pub death_time: i64,
    /// Earliest death time of any record (for estimating the dead fraction).
    pub min_death_time: i64,
    /// Smallest internal key.
    pub min_key: Vec<u8>,
    /// Largest internal key.
    pub max_key: Vec<u8>,
    /// Smallest LSN.
    pub min_lsn: u64,
    /// Largest LSN.
    pub max_lsn: u64,
    /// Number of records (one per key).
    pub record_count: u64,
    /// Number of tombstones among them.
    pub tombstone_count: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// blake3 over the sorted blake3 hashes of the segment's internal keys.
    pub merkle_root: Vec<u8>,
}

impl SegmentMeta {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.segment_id);
        put_u64(out, self.run_id);
        put_u64(out, self.cohort_bucket);
        put_i64(out, self.death_time);
        put_i64(out, self.min_death_time);
        put_bytes(out, &self.min_key);
        put_bytes(out, &self.max_key);
        put_u64(out, self.min_lsn);
        put_u64(out, self.max_lsn);
        put_u64(out, self.record_count);
        put_u64(out, self.tombstone_count);
        put_u64(out, self.file_size);
        put_bytes(out, &self.merkle_root);
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, String> {
        Ok(SegmentMeta {
            segment_id: d.u64()?,
            run_id: d.u64()?,
            cohort_bucket: d.u64()?,
            death_time: d.i64()?,
            min_death_time: d.i64()?,
            min_key: d.bytes()?.to_vec(),
            max_key: d.bytes()?.to_vec(),
            min_lsn: d.u64()?,
            max_lsn: d.u64()?,
            record_count: d.u64()?,
            tombstone_count: d.u64()?,
            file_size: d.u64()?,
            merkle_root: d.bytes()?.to_vec(),
        })
    }

    /// Whether `key` lies within this segment's key range.
    pub fn covers(&self, key: &[u8]) -> bool {
        !crate::types::key_lt(key, &self.min_key) && !crate::types::key_lt(&self.max_key, key)
    }

    /// Whether the segment's key range meets `[start, end)` (`end = None`: unbounded).
    pub fn overlaps(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        self.max_key.as_slice() >= start && end.is_none_or(|e| self.min_key.as_slice() < e)
    }
}

/// Merkle root of a set of internal keys, as the segment meta stores it.
pub fn merkle_root<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    merkle_root_of_hashes(
        keys.into_iter()
            .map(|k| *blake3::hash(k).as_bytes())
            .collect(),
    )
}

/// [`merkle_root`] from the keys' blake3 hashes, in any order.
pub(crate) fn merkle_root_of_hashes(mut hashes: Vec<[u8; 32]>) -> Vec<u8> {
    hashes.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    for h in &hashes {
        hasher.update(h);
    }
    hasher.finalize().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::common_prefix_len;

    proptest::proptest! {
        /// Word-at-a-time agrees with byte-at-a-time on keys that share
        /// prefixes of every length, differ in any byte or are prefixes of
        /// each other.
        #[test]
        fn common_prefix_len_counts_the_shared_bytes(
            shared in proptest::collection::vec(0u8..3, 0..40),
            a in proptest::collection::vec(0u8..3, 0..20),
            b in proptest::collection::vec(0u8..3, 0..20),
        ) {
            let (a, b) = ([&shared[..], &a].concat(), [&shared[..], &b].concat());
            let naive = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            proptest::prop_assert_eq!(common_prefix_len(&a, &b), naive);
            proptest::prop_assert_eq!(common_prefix_len(&b, &a), naive);
        }
    }
}
