//! Reading segment files: footer, meta, index and Bloom filter are loaded at
//! open; data blocks are read on demand and checked against their CRC.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bloom::{key_hash, Bloom};
use super::{
    common_prefix_len, file_name, key_prefix, Record, SegmentMeta, ENTRY_HEADER_LEN, FOOTER_LEN,
    FOOTER_MAGIC, HEADER_LEN, INDEXED, MAGIC, MIN_VERSION, VERSION, WIDE_OFFSETS,
};
use crate::cache::{Block, BlockCache, BlockData, BlockIndex};
use crate::codec::Decoder;
use crate::error::{Error, Result};
use crate::storage::{FsStorage, Mapping, ReadableFile, Storage};
use crate::types::{key_cmp, key_lt, word_at, EntryRef, MemEntry, Operation};

/// Where a data block is. Its last key is `index_keys[prev.key_end..key_end]`:
/// all index keys sit in one buffer, so a binary search over the index walks
/// two small contiguous arrays rather than one heap allocation per key.
#[derive(Debug)]
struct IndexEntry {
    key_end: u32,
    offset: u64,
    len: u32,
}

/// An open segment.
#[derive(Debug)]
pub struct SegmentReader {
    /// The segment's meta, as stored in the file.
    pub meta: SegmentMeta,
    path: PathBuf,
    file: Arc<dyn ReadableFile>,
    /// The whole file, when it is memory-mapped: blocks are then read in
    /// place instead of copied out with `pread`.
    map: Option<Arc<Mapping>>,
    index: Vec<IndexEntry>,
    index_keys: Vec<u8>,
    /// Length of the prefix all index keys share.
    fence_common: u32,
    /// Per block, the eight bytes of its last key right after that shared
    /// prefix, big-endian (zero-padded): a seek binary-searches this dense
    /// array and compares whole keys only among blocks whose eight bytes
    /// equal the key's.
    fence: Box<[u64]>,
    bloom: Bloom,
    cache: Option<Arc<BlockCache>>,
    /// This open file's key in the block cache: unique in the process, so a
    /// cache shared by several databases (or a reopened segment) never serves
    /// another file's block.
    cache_id: u64,
    /// For a mapped file whose blocks store their entry index (version 3):
    /// one bit per block, set once its checksum has been verified. Point
    /// lookups then search such a block in the map, with no cache lookup.
    /// Empty otherwise.
    verified: Box<[std::sync::atomic::AtomicU64]>,
}

/// Source of [`SegmentReader::cache_id`]s.
static NEXT_CACHE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A stored entry read in place: key and value are slices of the (cached or
/// mapped) block, not copies. A point lookup returns the newest entry of its
/// key; a segment iterator yields one per entry.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    bytes: FoundBytes<'a>,
    key_at: u32,
    key_len: u32,
    value_at: u32,
    value_len: u32,
    /// Put or delete.
    pub op: Operation,
    /// TTL in seconds (0 = never expires).
    pub ttl: u32,
    /// Sequence number.
    pub lsn: u64,
    /// Write time (nanoseconds).
    pub timestamp: i64,
    /// How long the record must stay on disk.
    pub retain_until: i64,
}

/// Where a [`Found`] entry's bytes are: a (cached) block it holds, or a
/// block of the segment's map, borrowed from the reader.
#[derive(Debug, Clone)]
enum FoundBytes<'a> {
    Block(Block),
    Mapped(&'a [u8]),
}

impl FoundBytes<'_> {
    #[inline]
    fn get(&self) -> &[u8] {
        match self {
            FoundBytes::Block(b) => b.bytes(),
            FoundBytes::Mapped(m) => m,
        }
    }
}

impl Found<'static> {
    /// The entry starting at `off` in `block` (an offset from its entry table).
    fn at(block: Block, off: u32) -> Result<Self, String> {
        Found::new(FoundBytes::Block(block), off)
    }
}

impl<'a> Found<'a> {
    /// The entry starting at `off` of a checked block in the map (its bytes
    /// without the CRC trailer) whose entries take its first `entries_len`
    /// bytes (known to the caller, which parsed the block's layout).
    fn in_map(block: &'a [u8], entries_len: usize, off: u32) -> Result<Self, String> {
        Found::with_body(FoundBytes::Mapped(block), entries_len, off)
    }

    fn new(bytes: FoundBytes<'a>, off: u32) -> Result<Self, String> {
        let (body, _) = split_block(bytes.get())?;
        let body_len = body.len();
        Found::with_body(bytes, body_len, off)
    }

    /// The entry at `off` of `bytes`, whose entries are its first `body_len` bytes.
    fn with_body(bytes: FoundBytes<'a>, body_len: usize, off: u32) -> Result<Self, String> {
        let (key, value, op, ttl, lsn, timestamp, retain_until) = {
            let bytes = bytes.get();
            let body = bytes.get(..body_len).ok_or("block body past its end")?;
            let (e, _) = parse_entry(body, off as usize)?;
            // Key and value are sub-slices of the block: their offsets are
            // distances between start addresses (blocks are < 4 GiB).
            let base = bytes.as_ptr() as usize;
            let span = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
            (
                span(e.key),
                span(e.value),
                e.op,
                e.ttl,
                e.lsn,
                e.timestamp,
                e.retain_until,
            )
        };
        Ok(Found {
            bytes,
            key_at: key.0,
            key_len: key.1,
            value_at: value.0,
            value_len: value.1,
            op,
            ttl,
            lsn,
            timestamp,
            retain_until,
        })
    }

    /// The stored (internal) key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.bytes.get()[self.key_at as usize..(self.key_at + self.key_len) as usize]
    }

    /// The stored value (empty for a tombstone).
    #[inline]
    pub fn value(&self) -> &[u8] {
        &self.bytes.get()[self.value_at as usize..(self.value_at + self.value_len) as usize]
    }

    /// Whether the entry is a live value at `now_nanos`.
    pub fn is_live_at(&self, now_nanos: i64) -> bool {
        crate::types::is_live(self.op, self.timestamp, self.ttl, || now_nanos)
    }

    /// The entry, borrowed from the block.
    pub fn as_entry(&self) -> EntryRef<'_> {
        EntryRef {
            value: (self.op == Operation::Put).then(|| self.value()),
            op: self.op,
            lsn: self.lsn,
            timestamp: self.timestamp,
            ttl: self.ttl,
        }
    }

    /// An owned copy of this entry.
    pub fn to_record(&self) -> Record {
        Record {
            entry: self.as_entry().to_owned_entry(self.key()),
            retain_until: self.retain_until,
        }
    }
}

impl Drop for SegmentReader {
    fn drop(&mut self) {
        // The last holder of this reader is gone (compaction may have removed
        // its file long ago): its cached blocks can never be asked for again.
        if let Some(cache) = &self.cache {
            cache.forget_file(
                self.cache_id,
                u32::try_from(self.index.len()).unwrap_or(u32::MAX),
            );
        }
    }
}

impl SegmentReader {
    /// Opens segment `segment_id` in `dir` on the real file system (read
    /// with `pread`, not mapped).
    pub fn open(dir: PathBuf, segment_id: u64) -> Result<Self> {
        Self::open_with(&FsStorage, &dir, segment_id, false)
    }

    /// Opens segment `segment_id` in `dir` through `storage`, memory-mapped
    /// when `mmap` is set and the storage maps files.
    pub fn open_with(
        storage: &dyn Storage,
        dir: &Path,
        segment_id: u64,
        mmap: bool,
    ) -> Result<Self> {
        let path = dir.join(file_name(segment_id));
        let file = if mmap {
            storage.open_mapped(&path)
        } else {
            storage.open_read(&path)
        }
        .map_err(|e| Error::io(format!("opening segment {}", path.display()), e))?;
        let map = file.mapping();
        let len = file
            .len()
            .map_err(|e| Error::io(format!("stat of segment {}", path.display()), e))?;
        let corrupt = |off: u64, what: String| Error::corruption(path.clone(), off, what);
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(0, format!("segment is {len} bytes, too short")));
        }
        let read = |off: u64, n: u64| -> Result<Vec<u8>> {
            if off.checked_add(n).is_none_or(|end| end > len) || n > usize::MAX as u64 {
                return Err(corrupt(
                    off,
                    format!("section of {n} bytes at {off} runs past end of file"),
                ));
            }
            let mut buf = vec![0; n as usize];
            file.read_exact_at(&mut buf, off)
                .map_err(|e| Error::io(format!("reading segment {}", path.display()), e))?;
            Ok(buf)
        };
        let header = read(0, HEADER_LEN)?;
        if &header[0..8] != MAGIC {
            return Err(corrupt(0, "bad segment magic".into()));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(corrupt(
                8,
                format!("unsupported segment format version {version}"),
            ));
        }
        let footer_off = len - FOOTER_LEN;
        let footer = read(footer_off, FOOTER_LEN)?;
        if &footer[56..64] != FOOTER_MAGIC {
            return Err(corrupt(
                footer_off,
                "bad footer magic (truncated segment?)".into(),
            ));
        }
        let stored_crc = u32::from_le_bytes(footer[52..56].try_into().unwrap_or_default());
        if crc32fast::hash(&footer[0..52]) != stored_crc {
            return Err(corrupt(footer_off, "footer checksum mismatch".into()));
        }
        let mut d = Decoder::new(&footer[0..52]);
        let mut fields = [0u64; 6];
        for f in &mut fields {
            *f = d.u64().map_err(|m| corrupt(footer_off, m))?;
        }
        let [index_off, index_len, bloom_off, bloom_len, meta_off, meta_len] = fields;
        let section = |off: u64, n: u64, name: &str| -> Result<Vec<u8>> {
            if n < 4 || off < HEADER_LEN || off.saturating_add(n) > footer_off {
                return Err(corrupt(off, format!("{name} section out of bounds")));
            }
            let mut buf = read(off, n)?;
            let crc = u32::from_le_bytes(buf[buf.len() - 4..].try_into().unwrap_or_default());
            buf.truncate(buf.len() - 4);
            if crc32fast::hash(&buf) != crc {
                return Err(corrupt(off, format!("{name} checksum mismatch")));
            }
            Ok(buf)
        };
        let meta_buf = section(meta_off, meta_len, "meta")?;
        let meta =
            SegmentMeta::decode(&mut Decoder::new(&meta_buf)).map_err(|m| corrupt(meta_off, m))?;
        if meta.segment_id != segment_id {
            return Err(corrupt(
                meta_off,
                format!(
                    "meta names segment {}, file is {segment_id}",
                    meta.segment_id
                ),
            ));
        }
        if meta.file_size != len {
            return Err(corrupt(
                meta_off,
                format!("meta says {} bytes, file has {len}", meta.file_size),
            ));
        }
        let index_buf = section(index_off, index_len, "index")?;
        let mut index = Vec::new();
        let mut index_keys = Vec::new();
        let mut prev_key: &[u8] = &[];
        let mut d = Decoder::new(&index_buf);
        while !d.is_empty() {
            let at = index_off + d.position() as u64;
            let last_key = d.bytes().map_err(|m| corrupt(at, m))?;
            let offset = d.u64().map_err(|m| corrupt(at, m))?;
            let len = d.u32().map_err(|m| corrupt(at, m))?;
            if offset < HEADER_LEN || offset.saturating_add(len as u64) > index_off || len < 8 {
                return Err(corrupt(
                    at,
                    "index entry points outside the data area".into(),
                ));
            }
            if !index.is_empty() && last_key <= prev_key {
                return Err(corrupt(at, "index is out of order".into()));
            }
            prev_key = last_key;
            index_keys.extend_from_slice(last_key);
            index.push(IndexEntry {
                // The index section is smaller than the file, and a file
                // bigger than 4 GiB of index keys is not one we write.
                key_end: u32::try_from(index_keys.len())
                    .map_err(|_| corrupt(at, "index keys exceed 4 GiB".into()))?,
                offset,
                len,
            });
        }
        if index.is_empty() {
            return Err(corrupt(index_off, "index is empty".into()));
        }
        // Sorted keys: what the first and last share, all share.
        let first = &index_keys[..index[0].key_end as usize];
        let last_start = index
            .len()
            .checked_sub(2)
            .map_or(0, |i| index[i].key_end as usize);
        let last = &index_keys[last_start..];
        let common = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let mut fence = Vec::with_capacity(index.len());
        let mut start = 0usize;
        for e in &index {
            fence.push(word_at(&index_keys[start..e.key_end as usize], common));
            start = e.key_end as usize;
        }
        let bloom_buf = section(bloom_off, bloom_len, "bloom")?;
        let bloom = Bloom::decode(&bloom_buf, version)
            .ok_or_else(|| corrupt(bloom_off, "bad bloom filter".into()))?;
        let verified = if map.is_some() && version >= 3 {
            (0..index.len().div_ceil(64))
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect()
        } else {
            Box::default()
        };
        Ok(SegmentReader {
            verified,
            meta,
            path,
            file,
            map,
            index,
            index_keys,
            fence_common: common as u32,
            fence: fence.into(),
            bloom,
            cache: None,
            cache_id: NEXT_CACHE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Reads data blocks through `cache` (shared by the engine's readers).
    pub fn with_cache(mut self, cache: Option<Arc<BlockCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False when the segment certainly does not hold `key` (key range and Bloom filter).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.meta.covers(key) && self.bloom.may_contain(key_hash(key))
    }

    /// Block `i`, from the cache or read and checked (then cached).
    fn block(&self, i: usize) -> Result<Block> {
        let Some(cache) = &self.cache else {
            return self.load_block(i, true);
        };
        let id = self.cache_id;
        if let Some(b) = cache.get(id, i as u32) {
            return Ok(b);
        }
        let b = self.load_block(i, true)?;
        cache.insert(id, i as u32, Arc::clone(&b));
        Ok(b)
    }

    /// Reads and checks block `i` and finds where each of its entries starts
    /// (which checks every length in it against the block). With `in_place`,
    /// a block of a mapped file stays in the map; otherwise it is read into
    /// memory (whole-file passes, which should not fill the process's
    /// mappings with pages nobody reads again).
    fn load_block(&self, i: usize, in_place: bool) -> Result<Block> {
        let ie = &self.index[i];
        let corrupt = |m: String| Error::corruption(self.path.clone(), ie.offset, m);
        let block = match self.map.as_ref().filter(|_| in_place) {
            Some(map) => {
                let start = usize::try_from(ie.offset).unwrap_or(usize::MAX);
                let body_len = ie.len as usize - 4;
                let raw = start
                    .checked_add(ie.len as usize)
                    .and_then(|end| map.get(start..end))
                    .ok_or_else(|| corrupt("block runs past the end of the file".into()))?;
                check_block_crc(raw).map_err(corrupt)?;
                let index = block_index(&raw[..body_len]).map_err(corrupt)?;
                BlockData::mapped(Arc::clone(map), start, body_len, index)
                    .ok_or_else(|| corrupt("block runs past the end of the file".into()))?
            }
            None => {
                let mut buf = vec![0; ie.len as usize];
                self.file.read_exact_at(&mut buf, ie.offset).map_err(|e| {
                    Error::io(format!("reading segment {}", self.path.display()), e)
                })?;
                check_block_crc(&buf).map_err(corrupt)?;
                buf.truncate(buf.len() - 4);
                let index = block_index(&buf).map_err(corrupt)?;
                BlockData::owned(buf.into(), index)
            }
        };
        Ok(Arc::new(block))
    }

    fn block_records(&self, i: usize) -> Result<Vec<Record>> {
        let block = self.block(i)?;
        let offset = self.index[i].offset;
        decode_block(block.bytes()).map_err(|m| Error::corruption(self.path.clone(), offset, m))
    }

    /// Block `i` of a mapped version 3 file, read in place: where it starts
    /// in the map, its bytes without the CRC trailer, and its layout. On
    /// the block's first use through this reader its checksum is verified
    /// and its stored index checked against its entries. `None` when the
    /// file is not mapped or the block has no stored index (the caller reads
    /// it the usual way).
    #[inline]
    fn mapped_block(&self, i: usize) -> Result<Option<(usize, &[u8], BlockLayout<'_>)>> {
        use std::sync::atomic::Ordering::Relaxed;
        let (Some(map), Some(ie), Some(word)) = (
            self.map.as_ref(),
            self.index.get(i),
            self.verified.get(i / 64),
        ) else {
            return Ok(None);
        };
        let corrupt = |m: String| Error::corruption(self.path.clone(), ie.offset, m);
        let start = usize::try_from(ie.offset).unwrap_or(usize::MAX);
        let raw = start
            .checked_add(ie.len as usize)
            .and_then(|end| map.get(start..end))
            .ok_or_else(|| corrupt("block runs past the end of the file".into()))?;
        let block = &raw[..raw.len().saturating_sub(4)];
        let bit = 1u64 << (i % 64);
        let fresh = word.load(Relaxed) & bit == 0;
        if fresh {
            check_block_crc(raw).map_err(corrupt)?;
        }
        let layout = block_layout(block).map_err(corrupt)?;
        let Some(ix) = &layout.index else {
            return Ok(None);
        };
        if fresh {
            // What a cache load finds by walking the entries, checked once:
            // a block whose index disagrees (a damaged count, say) is
            // corruption here as on every other path, never a silent miss.
            ix.check(layout.entries, layout.count).map_err(corrupt)?;
            // Relaxed: the bit only saves re-checking bytes that never change.
            word.fetch_or(bit, Relaxed);
        }
        Ok(Some((start, block, layout)))
    }

    /// Point lookup of `key` in block `i` of a mapped version 3 file, read
    /// in place ([`SegmentReader::mapped_block`]), with no cache lookup.
    fn lookup_in_map(&self, i: usize, key: &[u8]) -> Result<Option<Option<Found<'_>>>> {
        let Some((_, block, layout)) = self.mapped_block(i)? else {
            return Ok(None);
        };
        let corrupt = |m: String| Error::corruption(self.path.clone(), self.index[i].offset, m);
        let Some(ix) = layout.index else {
            return Ok(None);
        };
        Ok(Some(
            match ix.find(layout.entries, key).map_err(corrupt)? {
                Some(off) => {
                    Some(Found::in_map(block, layout.entries.len(), off).map_err(corrupt)?)
                }
                None => None,
            },
        ))
    }

    /// Starts loading the end of mapped block `i`, where its entry count
    /// and stored index lie: the index search then finds its lines in
    /// flight instead of missing on the count, then the prefixes, then the
    /// offsets in turn (see [`super::prefetch`]).
    #[inline]
    fn prefetch_block_tail(&self, i: usize) {
        /// The count, the common-prefix length and the index of a block of
        /// about thirty entries (16-byte keys, 100-byte values, 4 KiB).
        const TAIL: usize = 192;
        let (Some(map), Some(ie)) = (self.map.as_ref(), self.index.get(i)) else {
            return;
        };
        let Ok(end) = usize::try_from(ie.offset.saturating_add(u64::from(ie.len))) else {
            return;
        };
        if let Some(tail) = map.get(end.saturating_sub(TAIL)..end) {
            super::prefetch(tail);
        }
    }

    /// The last key of block `i`.
    #[inline]
    fn last_key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.index[i - 1].key_end as usize
        };
        &self.index_keys[start..self.index[i].key_end as usize]
    }

    /// Index of the first block whose last key is >= `key`.
    fn block_for(&self, key: &[u8]) -> usize {
        let common = self.fence_common as usize;
        let shared = &self.index_keys[..common];
        // A key that differs within the shared prefix is before or after
        // every block (a proper prefix of it sorts before them all).
        match key_cmp(&key[..common.min(key.len())], shared) {
            std::cmp::Ordering::Less => return 0,
            std::cmp::Ordering::Greater => return self.index.len(),
            std::cmp::Ordering::Equal => {}
        }
        // Blocks whose word is below the key's end before it, those whose
        // word is above end after it; only equal words need whole keys.
        let w = word_at(key, common);
        let lo = self.fence.partition_point(|&f| f < w);
        // Usually no block's word equals the key's: block `lo` is then the
        // one, without a second search for the end of the equal words.
        let hi = if self.fence.get(lo) == Some(&w) {
            lo + self.fence[lo..].partition_point(|&f| f == w)
        } else {
            lo
        };
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key_lt(self.last_key(mid), key) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The record stored for `key`, if any (one version per key per segment).
    pub fn get_record(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.lookup(key)?.map(|f| f.to_record()))
    }

    /// The entry stored for `key`, read in place (no copy of key or value).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Found<'_>>> {
        if !self.meta.covers(key) {
            return Ok(None);
        }
        self.lookup_covered(key, key_hash(key))
    }

    /// [`SegmentReader::lookup`] for a key inside the segment's key range
    /// (the caller checked it: a run finds the one segment that covers the
    /// key), with the key's hash computed by the caller.
    pub(crate) fn lookup_covered(&self, key: &[u8], hash: u64) -> Result<Option<Found<'_>>> {
        if !self.may_contain_hash(hash) {
            return Ok(None);
        }
        self.lookup_admitted(key)
    }

    /// Starts loading what [`SegmentReader::may_contain_hash`] reads for
    /// `hash` (a hint: see `Bloom::prefetch`).
    #[inline]
    pub(crate) fn prefetch_filter(&self, hash: u64) {
        self.bloom.prefetch(hash);
    }

    /// Whether the Bloom filter admits a key whose [`key_hash`] is `hash`.
    #[inline]
    pub(crate) fn may_contain_hash(&self, hash: u64) -> bool {
        self.bloom.may_contain(hash)
    }

    /// [`SegmentReader::lookup_covered`] for a key the Bloom filter admitted.
    pub(crate) fn lookup_admitted(&self, key: &[u8]) -> Result<Option<Found<'_>>> {
        let i = self.block_for(key);
        if i >= self.index.len() {
            return Ok(None);
        }
        self.prefetch_block_tail(i);
        if !self.verified.is_empty() {
            if let Some(found) = self.lookup_in_map(i, key)? {
                return Ok(found);
            }
        }
        let block = self.block(i)?;
        let corrupt = |m| Error::corruption(self.path.clone(), self.index[i].offset, m);
        match find_in_block(&block, key).map_err(corrupt)? {
            Some(off) => Ok(Some(Found::at(block, off).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// The entry stored for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<MemEntry>> {
        Ok(self.get_record(key)?.map(|r| r.entry))
    }

    /// All stored entries (tombstones and expired records included) with
    /// internal keys in `[start, end)`, in key order.
    pub fn range_scan(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, MemEntry)>> {
        let mut out = Vec::new();
        for i in self.block_for(start)..self.index.len() {
            for r in self.block_records(i)? {
                if r.entry.key.as_slice() < start {
                    continue;
                }
                if r.entry.key.as_slice() >= end {
                    return Ok(out);
                }
                out.push((r.entry.key.clone(), r.entry));
            }
        }
        Ok(out)
    }

    /// The meta's record count as an allocation hint, bounded by what the
    /// file can hold (the count is read from the file).
    fn record_capacity(&self) -> usize {
        let most = self.meta.file_size / ENTRY_HEADER_LEN as u64;
        usize::try_from(self.meta.record_count.min(most)).unwrap_or(0)
    }

    /// Every record, in key order. Reads the file, not the block cache: a
    /// whole-segment pass (compaction) would only evict what readers use.
    pub fn all_records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(self.record_capacity());
        for i in 0..self.index.len() {
            let block = self.load_block(i, false)?;
            let offset = self.index[i].offset;
            let l = block_layout(block.bytes())
                .map_err(|m| Error::corruption(self.path.clone(), offset, m))?;
            if let Some(ix) = &l.index {
                ix.check(l.entries, l.count)
                    .map_err(|m| Error::corruption(self.path.clone(), offset, m))?;
            }
            out.extend(
                decode_block(block.bytes())
                    .map_err(|m| Error::corruption(self.path.clone(), offset, m))?,
            );
        }
        Ok(out)
    }

    /// Reads every block and checks checksums, order, counts, key range and
    /// merkle root against the meta. Returns the number of records.
    pub fn verify(&self) -> Result<u64> {
        // From the file, never the cache: verify is about what is on disk.
        let records = self.all_records()?;
        let bad = |m: &str| Err(Error::corruption(self.path.clone(), 0, m.to_string()));
        if records.len() as u64 != self.meta.record_count {
            return bad("record count differs from meta");
        }
        if records.windows(2).any(|w| w[0].entry.key >= w[1].entry.key) {
            return bad("records out of order");
        }
        if records.first().map(|r| &r.entry.key) != Some(&self.meta.min_key)
            || records.last().map(|r| &r.entry.key) != Some(&self.meta.max_key)
        {
            return bad("key range differs from meta");
        }
        if super::merkle_root(records.iter().map(|r| r.entry.key.as_slice()))
            != self.meta.merkle_root
        {
            return bad("merkle root differs from meta");
        }
        Ok(records.len() as u64)
    }

    /// A streaming iterator over every record that reads the file and leaves
    /// the block cache alone (for compaction, which would only evict what
    /// readers use).
    pub fn iter_uncached(self: &Arc<Self>) -> SegmentIter {
        let mut it = self.iter_from(&[]);
        it.cached = false;
        it
    }

    /// A streaming iterator over records with keys >= `start`.
    pub fn iter_from(self: &Arc<Self>, start: &[u8]) -> SegmentIter {
        self.iter_from_shared(&Arc::from(start))
    }

    /// [`SegmentReader::iter_from`] with a start key shared with the caller
    /// (a range iterator seeks every run from the same key): no copy of it.
    pub(crate) fn iter_from_shared(self: &Arc<Self>, start: &Arc<[u8]>) -> SegmentIter {
        let first_block = self.block_for(start);
        // A scan makes the iterators of all its runs before it reads any:
        // their first blocks load together.
        self.prefetch_block_tail(first_block);
        SegmentIter {
            seg: Arc::clone(self),
            cached: true,
            first_block,
            next_block: first_block,
            start: Arc::clone(start),
            held: Held::None,
            pos: 0,
            at: Cursor::NONE,
        }
    }
}

/// Streams a segment's records, decoding one entry at a time from the
/// current block: keys before `start` are skipped without a copy.
#[derive(Debug)]
pub struct SegmentIter {
    seg: Arc<SegmentReader>,
    /// Whether blocks go through (and into) the block cache, or are read in
    /// place from the map where the file allows it.
    cached: bool,
    /// The block holding the first key >= `start`.
    first_block: usize,
    next_block: usize,
    start: Arc<[u8]>,
    held: Held,
    /// The next entry: an index into a cached block's entry offsets, or a
    /// byte offset in a mapped block.
    pos: usize,
    /// The entry [`SegmentIter::advance`] last moved to, in the held block.
    at: Cursor,
}

/// The block a [`SegmentIter`] reads.
#[derive(Debug)]
enum Held {
    None,
    /// From the block cache (or read for this iterator alone).
    Cached(Block),
    /// `map[start..start + len]` of a mapped version 3 segment (the block
    /// without its CRC trailer), checked once per reader and read in place
    /// with no cache lookup: its entries end at `end`.
    Mapped {
        start: usize,
        len: usize,
        end: usize,
    },
}

/// Where the entry a [`SegmentIter`] is at lies in its block, and its fields:
/// decoded once per entry, read in place.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    key_at: u32,
    key_len: u32,
    value_at: u32,
    value_len: u32,
    op: Operation,
    ttl: u32,
    lsn: u64,
    timestamp: i64,
    retain_until: i64,
}

impl Cursor {
    const NONE: Cursor = Cursor {
        key_at: 0,
        key_len: 0,
        value_at: 0,
        value_len: 0,
        op: Operation::Delete,
        ttl: 0,
        lsn: 0,
        timestamp: 0,
        retain_until: 0,
    };

    /// Where the entry after this one starts.
    #[inline]
    fn end(&self) -> usize {
        self.value_at as usize + self.value_len as usize
    }

    /// The entry at offset `off` of checksummed block `bytes` (body and
    /// count trailer), checked as [`parse_entry`] checks it. Offsets fit in
    /// u32: a block's length is a u32.
    #[inline]
    fn at(bytes: &[u8], off: u32) -> Result<Cursor, String> {
        let body_len = bytes.len().checked_sub(4).ok_or("block too short")?;
        let h = EntryHeader::read(&bytes[..body_len], off as usize)?;
        let key_at = EntryHeader::key_at(off as usize);
        Ok(Cursor {
            key_at: key_at as u32,
            key_len: h.key_len as u32,
            value_at: (key_at + h.key_len) as u32,
            value_len: h.value_len as u32,
            op: h.op,
            ttl: h.ttl,
            lsn: h.lsn,
            timestamp: h.timestamp,
            retain_until: h.retain_until,
        })
    }
}

impl SegmentIter {
    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if !self.advance()? {
            return Ok(None);
        }
        let a = self.at;
        let entry = MemEntry {
            key: self.key().to_vec(),
            value: (a.op == Operation::Put).then(|| self.value().to_vec()),
            op: a.op,
            lsn: a.lsn,
            timestamp: a.timestamp,
            ttl: a.ttl,
        };
        Ok(Some(Record {
            entry,
            retain_until: a.retain_until,
        }))
    }

    /// Moves to the next entry, which [`SegmentIter::key`] and the other
    /// accessors then read in place (no copy, no count on the block): `false`
    /// at the end. The entry stays readable until the next call.
    #[inline]
    pub(crate) fn advance(&mut self) -> Result<bool> {
        loop {
            let off = match &self.held {
                Held::Cached(block) => block.entry(self.pos),
                Held::Mapped { end, .. } => (self.pos < *end).then_some(self.pos as u32),
                Held::None => None,
            };
            if let Some(off) = off {
                self.at = Cursor::at(self.bytes(), off).map_err(|m| {
                    let at = self.seg.index[self.next_block - 1].offset;
                    Error::corruption(self.seg.path.clone(), at, m)
                })?;
                self.pos = match self.held {
                    Held::Mapped { .. } => self.at.end(),
                    _ => self.pos + 1,
                };
                return Ok(true);
            }
            if !self.load_next_block()? {
                self.at = Cursor::NONE;
                return Ok(false);
            }
        }
    }

    /// The bytes of the current block (empty before the first entry).
    #[inline]
    fn bytes(&self) -> &[u8] {
        match &self.held {
            Held::Cached(b) => b.bytes(),
            Held::Mapped { start, len, .. } => self
                .seg
                .map
                .as_ref()
                .and_then(|m| m.get(*start..*start + *len))
                .unwrap_or_default(),
            Held::None => &[],
        }
    }

    /// The (internal) key of the entry [`SegmentIter::advance`] moved to.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        let a = self.at;
        self.bytes()
            .get(a.key_at as usize..a.key_at as usize + a.key_len as usize)
            .unwrap_or_default()
    }

    /// The current entry's value (empty for a tombstone).
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        let a = self.at;
        self.bytes()
            .get(a.value_at as usize..a.value_at as usize + a.value_len as usize)
            .unwrap_or_default()
    }

    /// The current entry's sequence number.
    #[inline]
    pub(crate) fn lsn(&self) -> u64 {
        self.at.lsn
    }

    /// Whether the current entry is a live value at `now_nanos`.
    #[inline]
    pub(crate) fn is_live_at(&self, now_nanos: i64) -> bool {
        let a = self.at;
        crate::types::is_live(a.op, a.timestamp, a.ttl, || now_nanos)
    }

    /// Drops the current block and loads the next one, positioned at its
    /// first entry (at the first key >= `start` in the first block): `false`
    /// when there is none.
    fn load_next_block(&mut self) -> Result<bool> {
        self.held = Held::None;
        let i = self.next_block;
        if i >= self.seg.index.len() {
            return Ok(false);
        }
        let corrupt = |m| Error::corruption(self.seg.path.clone(), self.seg.index[i].offset, m);
        // Only the first block can hold keys before `start`.
        let first = i == self.first_block;
        if self.cached {
            if let Some((start, bytes, layout)) = self.seg.mapped_block(i)? {
                if let Some(ix) = &layout.index {
                    let entries = layout.entries;
                    self.pos = if first {
                        let n = ix.len();
                        let j = first_at_or_after_in(
                            entries,
                            n,
                            ix.common,
                            |j| ix.prefix(j),
                            |j| ix.offset(j),
                            &self.start,
                        )
                        .map_err(corrupt)?;
                        match ix.offset(j) {
                            Some(off) if j < n => off as usize,
                            _ => entries.len(),
                        }
                    } else {
                        0
                    };
                    self.held = Held::Mapped {
                        start,
                        len: bytes.len(),
                        end: entries.len(),
                    };
                    self.next_block += 1;
                    return Ok(true);
                }
            }
        }
        let block = if self.cached {
            self.seg.block(i)?
        } else {
            self.seg.load_block(i, false)?
        };
        self.pos = if first {
            first_at_or_after(&block, &self.start).map_err(corrupt)?
        } else {
            0
        };
        self.held = Held::Cached(block);
        self.next_block += 1;
        Ok(true)
    }
}

/// A borrowed view of one entry inside a block.
struct RawEntry<'a> {
    key: &'a [u8],
    value: &'a [u8],
    op: Operation,
    ttl: u32,
    lsn: u64,
    timestamp: i64,
    retain_until: i64,
}

impl RawEntry<'_> {
    fn to_record(&self) -> Record {
        Record {
            entry: MemEntry {
                key: self.key.to_vec(),
                value: match self.op {
                    Operation::Put => Some(self.value.to_vec()),
                    Operation::Delete => None,
                },
                op: self.op,
                lsn: self.lsn,
                timestamp: self.timestamp,
                ttl: self.ttl,
            },
            retain_until: self.retain_until,
        }
    }
}

/// Walks the entries of a checksummed block body, calling `f` on each until it
/// returns false.
fn walk_block<'a>(block: &'a [u8], mut f: impl FnMut(RawEntry<'a>) -> bool) -> Result<(), String> {
    let (body, count) = split_block(block)?;
    let mut pos = 0;
    let mut seen = 0u32;
    while pos < body.len() {
        let (e, next) = parse_entry(body, pos)?;
        pos = next;
        seen += 1;
        if !f(e) {
            return Ok(());
        }
    }
    if seen != count {
        return Err(format!("block holds {seen} entries, trailer says {count}"));
    }
    Ok(())
}

/// Where each entry of a block starts; checks every entry's lengths against
/// the block and the count against the trailer.
fn entry_offsets(block: &[u8]) -> Result<Vec<u32>, String> {
    let (body, count) = split_block(block)?;
    entry_offsets_in(body, count)
}

/// [`entry_offsets`] of a block's entries region and count.
fn entry_offsets_in(body: &[u8], count: u32) -> Result<Vec<u32>, String> {
    let mut entries = Vec::with_capacity(count.min(4096) as usize);
    let mut pos = 0;
    while pos < body.len() {
        entries.push(pos as u32);
        pos = EntryHeader::read(body, pos)?.end(pos);
    }
    if entries.len() != count as usize {
        return Err(format!(
            "block holds {} entries, trailer says {count}",
            entries.len()
        ));
    }
    Ok(entries)
}

/// The entry offsets and key prefixes of a checked block (see [`BlockIndex`]).
fn block_index(block: &[u8]) -> Result<BlockIndex, String> {
    let offsets = entry_offsets(block)?;
    let (body, _) = split_block(block)?;
    let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
        return Ok(BlockIndex::default());
    };
    let (a, b) = (
        entry_key(body, first as usize)?,
        entry_key(body, last as usize)?,
    );
    // Sorted keys: what the first and last share, all share.
    let common = common_prefix_len(a, b);
    let mut prefixes = Vec::with_capacity(offsets.len());
    for &off in &offsets {
        prefixes.push(key_prefix(entry_key(body, off as usize)?, common));
    }
    Ok(BlockIndex::new(&offsets, &prefixes, common as u32))
}

/// Checks a raw block (entries, count, CRC) against its CRC trailer.
fn check_block_crc(raw: &[u8]) -> Result<(), String> {
    let Some(body_len) = raw.len().checked_sub(4) else {
        return Err("block too short".into());
    };
    let crc = u32::from_le_bytes(raw[body_len..].try_into().unwrap_or_default());
    if crc32fast::hash(&raw[..body_len]) != crc {
        return Err("block checksum mismatch".into());
    }
    Ok(())
}

/// A checked block's entries and its entry count (a stored index, if any,
/// lies between them).
#[inline]
fn split_block(block: &[u8]) -> Result<(&[u8], u32), String> {
    let l = block_layout(block)?;
    Ok((l.entries, l.count))
}

/// The parts of a checked block (without its CRC trailer).
struct BlockLayout<'a> {
    entries: &'a [u8],
    count: u32,
    index: Option<StoredIndex<'a>>,
}

/// A block's stored entry index (format version 3): per entry, in key
/// order, its key prefix (see [`key_prefix`]) and where it starts.
struct StoredIndex<'a> {
    /// Each entry's key prefix, little-endian.
    prefixes: &'a [[u8; 2]],
    /// Each entry's offset: two bytes, or four in a block too large for two.
    offsets: Offsets<'a>,
    common: usize,
}

/// A stored index's entry offsets, in the width the block uses.
enum Offsets<'a> {
    Narrow(&'a [[u8; 2]]),
    Wide(&'a [[u8; 4]]),
}

#[inline]
fn block_layout(block: &[u8]) -> Result<BlockLayout<'_>, String> {
    let Some((rest, count)) = block.split_last_chunk::<4>() else {
        return Err("block too short".into());
    };
    let raw = u32::from_le_bytes(*count);
    if raw & INDEXED == 0 {
        return Ok(BlockLayout {
            entries: rest,
            count: raw,
            index: None,
        });
    }
    let wide = raw & WIDE_OFFSETS != 0;
    let count = raw & !(INDEXED | WIDE_OFFSETS);
    let n = count as usize;
    let (rest, common) = rest
        .split_last_chunk::<4>()
        .ok_or("block index too short")?;
    let width = if wide { 4 } else { 2 };
    let entries_len = n
        .checked_mul(2 + width)
        .and_then(|l| rest.len().checked_sub(l))
        .ok_or("block index larger than the block")?;
    let (entries, index) = rest.split_at(entries_len);
    let (prefixes, offsets) = index.split_at(2 * n);
    // Whole chunks by construction: `index` is `n * (2 + width)` bytes.
    let prefixes = prefixes.as_chunks::<2>().0;
    let offsets = if wide {
        Offsets::Wide(offsets.as_chunks::<4>().0)
    } else {
        Offsets::Narrow(offsets.as_chunks::<2>().0)
    };
    Ok(BlockLayout {
        entries,
        count,
        index: Some(StoredIndex {
            prefixes,
            offsets,
            common: u32::from_le_bytes(*common) as usize,
        }),
    })
}

impl StoredIndex<'_> {
    #[inline]
    fn prefix(&self, i: usize) -> u16 {
        u16::from_le_bytes(self.prefixes[i])
    }

    #[inline]
    fn offset(&self, i: usize) -> Option<u32> {
        match self.offsets {
            Offsets::Narrow(o) => o.get(i).map(|&b| u32::from(u16::from_le_bytes(b))),
            Offsets::Wide(o) => o.get(i).map(|&b| u32::from_le_bytes(b)),
        }
    }

    fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Where the entry of `key` starts in `entries`, if the block holds it
    /// (as [`find_in_block`] does with a cached block's index).
    fn find(&self, entries: &[u8], key: &[u8]) -> Result<Option<u32>, String> {
        let want = key_prefix(key, self.common);
        let lo = self
            .prefixes
            .partition_point(|&p| u16::from_le_bytes(p) < want);
        match_candidates(
            entries,
            key,
            want,
            lo,
            |i| self.prefixes.get(i).map(|&p| u16::from_le_bytes(p)),
            |i| self.offset(i),
        )
    }

    /// Checks the stored index against the block's entries (what a writer
    /// must have stored): by `verify`, and by a point lookup on a block's
    /// first read from the map.
    fn check(&self, entries: &[u8], count: u32) -> Result<(), String> {
        let offsets = entry_offsets_in(entries, count)?;
        let common = match (offsets.first(), offsets.last()) {
            (Some(&a), Some(&b)) => common_prefix_len(
                entry_key(entries, a as usize)?,
                entry_key(entries, b as usize)?,
            ),
            _ => 0,
        };
        if self.common != common {
            return Err("stored block index: wrong common prefix".into());
        }
        for (i, &off) in offsets.iter().enumerate() {
            let want = key_prefix(entry_key(entries, off as usize)?, common);
            if self.offset(i) != Some(off) || self.prefix(i) != want {
                return Err(format!("stored block index differs at entry {i}"));
            }
        }
        Ok(())
    }
}

/// The fixed header of the entry at `pos` of a block body, read with one
/// bounds check, its lengths checked against the body.
#[derive(Clone, Copy)]
struct EntryHeader {
    key_len: usize,
    value_len: usize,
    op: Operation,
    ttl: u32,
    lsn: u64,
    timestamp: i64,
    retain_until: i64,
}

impl EntryHeader {
    /// Where the entry's key starts, given the entry's own position.
    #[inline]
    fn key_at(pos: usize) -> usize {
        pos + ENTRY_HEADER_LEN
    }

    /// The position after the entry at `pos`.
    #[inline]
    fn end(&self, pos: usize) -> usize {
        Self::key_at(pos) + self.key_len + self.value_len
    }

    #[inline]
    fn read(body: &[u8], pos: usize) -> Result<EntryHeader, String> {
        let rest = body.get(pos..).ok_or("entry offset past block end")?;
        let Some(h) = rest.first_chunk::<ENTRY_HEADER_LEN>() else {
            return Err("truncated entry header".into());
        };
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let dword = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (key_len, value_len) = (word(0) as usize, word(4) as usize);
        let op = Operation::from_byte(h[8]).ok_or("unknown op kind")?;
        let left = rest.len() - ENTRY_HEADER_LEN;
        if key_len > left || value_len > left - key_len {
            return Err(truncated_entry(rest.len(), key_len, value_len));
        }
        Ok(EntryHeader {
            key_len,
            value_len,
            op,
            ttl: word(9),
            lsn: dword(13),
            timestamp: dword(21) as i64,
            retain_until: dword(29) as i64,
        })
    }
}

/// The error for an entry of `key_len` and `value_len` bytes that does not
/// fit in the `remain` bytes from its start (kept out of the hot path).
#[cold]
fn truncated_entry(remain: usize, key_len: usize, value_len: usize) -> String {
    let (need, at) = if key_len > remain - ENTRY_HEADER_LEN {
        (key_len, ENTRY_HEADER_LEN)
    } else {
        (value_len, ENTRY_HEADER_LEN + key_len)
    };
    format!(
        "truncated: need {need} bytes at offset {at}, {} remain",
        remain - at
    )
}

/// The entry at `pos` of a block body and the position after it. Every length
/// is checked against what remains of the body.
fn parse_entry(body: &[u8], pos: usize) -> Result<(RawEntry<'_>, usize), String> {
    let h = EntryHeader::read(body, pos)?;
    let key_at = EntryHeader::key_at(pos);
    let value_at = key_at + h.key_len;
    Ok((
        RawEntry {
            key: &body[key_at..value_at],
            value: &body[value_at..value_at + h.value_len],
            op: h.op,
            ttl: h.ttl,
            lsn: h.lsn,
            timestamp: h.timestamp,
            retain_until: h.retain_until,
        },
        h.end(pos),
    ))
}

fn decode_block(block: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    walk_block(block, |e| {
        out.push(e.to_record());
        true
    })?;
    Ok(out)
}

/// Where the value of `key` starts in `block`, with the entry's fields.
fn find_in_block(block: &BlockData, key: &[u8]) -> Result<Option<u32>, String> {
    // Among keys with the block's common prefix, prefix order is key order
    // (ties aside): the entries whose prefix equals the key's are the only
    // candidates. A key without the common prefix matches none of them
    // fully, so the final comparison rejects it.
    let want = key_prefix(key, block.common_prefix_len());
    let prefixes = block.key_prefixes();
    let (body, _) = split_block(block.bytes())?;
    let first = prefixes.partition_point(|&p| p < want);
    match_candidates(
        body,
        key,
        want,
        first,
        |i| prefixes.get(i).copied(),
        |i| block.entry(i),
    )
}

/// Where the entry of `key` starts in `entries`, searched among the entries
/// from `i` on whose key prefix is `want` (in key order; `prefix(j)` is
/// `None` past the last entry): the candidates a point lookup confirms by
/// comparing whole keys.
#[inline]
fn match_candidates(
    entries: &[u8],
    key: &[u8],
    want: u16,
    mut i: usize,
    prefix: impl Fn(usize) -> Option<u16>,
    offset: impl Fn(usize) -> Option<u32>,
) -> Result<Option<u32>, String> {
    while prefix(i) == Some(want) {
        let off = offset(i).ok_or("entry index past the block")?;
        let k = entry_key(entries, off as usize)?;
        // One comparison decides: found, past it, or on to the next.
        match key_cmp(key, k) {
            std::cmp::Ordering::Equal => return Ok(Some(off)),
            std::cmp::Ordering::Less => break,
            std::cmp::Ordering::Greater => i += 1,
        }
    }
    Ok(None)
}

/// The key of the entry at `pos` (only its length field is read).
#[inline]
fn entry_key(body: &[u8], pos: usize) -> Result<&[u8], String> {
    let len_at = body
        .get(pos..pos + 4)
        .ok_or("entry offset past block end")?;
    let key_len = u32::from_le_bytes(len_at.try_into().map_err(|_| "bad key length")?) as usize;
    let start = pos + ENTRY_HEADER_LEN;
    body.get(start..start.saturating_add(key_len))
        .ok_or_else(|| "entry key runs past block end".to_string())
}

/// Index of the first entry of `block` whose key is >= `key`.
fn first_at_or_after(block: &BlockData, key: &[u8]) -> Result<usize, String> {
    let (body, _) = split_block(block.bytes())?;
    let prefixes = block.key_prefixes();
    first_at_or_after_in(
        body,
        block.entry_count(),
        block.common_prefix_len(),
        |i| prefixes[i],
        |i| block.entry(i),
        key,
    )
}

/// Index of the first of the `n` entries of `body` whose key is >= `key`,
/// given each entry's key prefix (`prefix`, past the `cp` bytes every key
/// shares) and offset (`offset`), in key order: a cached block's index or
/// a stored one.
fn first_at_or_after_in(
    body: &[u8],
    n: usize,
    cp: usize,
    prefix: impl Fn(usize) -> u16,
    offset: impl Fn(usize) -> Option<u32>,
    key: &[u8],
) -> Result<usize, String> {
    let at = |i: usize| offset(i).ok_or("entry index past the block");
    // Fast path: search the key prefixes, then step over equal prefixes
    // with full keys. Valid when `key` starts with the block's common prefix,
    // which the one key read here (the answer's, or the last) tells.
    let want = key_prefix(key, cp);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if prefix(mid) < want {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut i = lo;
    if n > 0 {
        let k = entry_key(body, at(i.min(n - 1))? as usize)?;
        if key.len() >= cp && k.len() >= cp && key[..cp] == k[..cp] {
            while i < n && prefix(i) == want && key_lt(entry_key(body, at(i)? as usize)?, key) {
                i += 1;
            }
            return Ok(i);
        }
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if key_lt(entry_key(body, at(mid)? as usize)?, key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{SegmentWriter, WriterOptions};
    use crate::types::encode_key;

    /// Sorted (internal key, entry) pairs, as `SegmentWriter::flush` takes.
    type Entries = Vec<(Vec<u8>, MemEntry)>;

    fn entries(n: u32) -> Entries {
        (0..n)
            .map(|i| {
                let key = encode_key(b"ns", format!("k{i:05}").as_bytes());
                let e = MemEntry {
                    key: key.clone(),
                    value: if i % 7 == 0 {
                        None
                    } else {
                        Some(vec![i as u8; (i % 50) as usize])
                    },
                    op: if i % 7 == 0 {
                        Operation::Delete
                    } else {
                        Operation::Put
                    },
                    lsn: i as u64 + 1,
                    timestamp: 1_000,
                    ttl: i % 3,
                };
                (key, e)
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Point lookups through the key-prefix search find every stored key
        /// and nothing else, for keys that share long prefixes, are prefixes
        /// of each other, hold zero bytes or differ only past four bytes.
        #[test]
        fn lookups_find_exactly_the_stored_keys(
            raw in proptest::collection::btree_set(
                proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(b'a'), proptest::prelude::Just(255u8), 0u8..4], 0..12),
                1..120),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..12), 0..60),
            block_size in proptest::prop_oneof![proptest::prelude::Just(64usize), proptest::prelude::Just(256), proptest::prelude::Just(4096)],
            mmap: bool,
        ) {
            let dir = tempfile::tempdir().unwrap();
            // A shared leading prefix, so blocks have a long common prefix.
            let keys: Vec<Vec<u8>> = raw.iter().map(|k| [b"prefix-".as_slice(), k].concat()).collect();
            let es: Vec<(Vec<u8>, MemEntry)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let e = MemEntry {
                        key: k.clone(),
                        value: Some(vec![i as u8; i % 5]),
                        op: Operation::Put,
                        lsn: i as u64 + 1,
                        timestamp: 0,
                        ttl: 0,
                    };
                    (k.clone(), e)
                })
                .collect();
            let opts = WriterOptions {
                block_size,
                ..WriterOptions::defaults(dir.path().to_path_buf(), 3600)
            };
            SegmentWriter::with_options(opts, 1).flush(&es).unwrap();
            let r = Arc::new(SegmentReader::open_with(&FsStorage, dir.path(), 1, mmap)
                .unwrap()
                .with_cache(Some(Arc::new(BlockCache::new(1 << 20, block_size, mmap)))));
            for (k, e) in &es {
                proptest::prop_assert_eq!(r.get(k).unwrap(), Some(e.clone()));
            }
            let mut seeks: Vec<Vec<u8>> = probes.iter().map(|p| [b"prefix-".as_slice(), p].concat()).collect();
            // Seeks also from keys outside the shared prefix, before and after it.
            seeks.extend([b"".to_vec(), b"prefix".to_vec(), b"prefix.".to_vec(), b"prefiy".to_vec(), b"\xff".to_vec()]);
            seeks.extend(keys.iter().cloned());
            for k in seeks {
                let want = es.iter().find(|(key, _)| *key == k).map(|(_, e)| e.clone());
                proptest::prop_assert_eq!(r.get(&k).unwrap(), want);
                // A seek lands on the first stored key >= k.
                let first = es.iter().find(|(key, _)| *key >= k).map(|(key, _)| key.clone());
                let got = r.iter_from(&k).next_record().unwrap().map(|rec| rec.entry.key);
                proptest::prop_assert_eq!(got, first, "seek {:?}", k);
            }
        }
    }

    /// Blocks past 64 KiB keep wide entry offsets; lookups and seeks work
    /// the same in them, read both ways.
    #[test]
    fn large_blocks_are_searched_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let es: Vec<(Vec<u8>, MemEntry)> = (0..3000u32)
            .map(|i| {
                let key = encode_key(b"ns", format!("key-{i:06}").as_bytes());
                let e = MemEntry {
                    key: key.clone(),
                    value: Some(vec![i as u8; 60]),
                    op: Operation::Put,
                    lsn: i as u64 + 1,
                    timestamp: 0,
                    ttl: 0,
                };
                (key, e)
            })
            .collect();
        let opts = WriterOptions {
            block_size: 256 << 10,
            ..WriterOptions::defaults(dir.path().to_path_buf(), 3600)
        };
        SegmentWriter::with_options(opts, 1).flush(&es).unwrap();
        for mmap in [false, true] {
            let r = Arc::new(
                SegmentReader::open_with(&FsStorage, dir.path(), 1, mmap)
                    .unwrap()
                    .with_cache(Some(Arc::new(BlockCache::new(4 << 20, 256 << 10, mmap)))),
            );
            assert!(r.index.len() <= 2, "one or two blocks of 256 KiB");
            for (i, (k, e)) in es.iter().enumerate().step_by(7) {
                assert_eq!(r.get(k).unwrap().as_ref(), Some(e));
                let first = r.iter_from(k).next_record().unwrap().unwrap();
                assert_eq!(&first.entry.key, k, "seek {i}");
            }
            let absent = encode_key(b"ns", b"key-001500x");
            assert_eq!(r.get(&absent).unwrap(), None);
        }
    }

    /// Segments written in format versions 1 (the classic Bloom filter) and
    /// 2 (no stored block index) are read as before, mapped or not: every
    /// key found, absent keys not, scans complete, verify passes.
    #[test]
    fn older_segment_versions_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let es = entries(300);
        for version in [1u32, 2] {
            let opts = WriterOptions {
                format_version: version,
                ..WriterOptions::defaults(dir.path().to_path_buf(), 3600)
            };
            let id = version as u64;
            SegmentWriter::with_options(opts, id).flush(&es).unwrap();
            let raw = std::fs::read(dir.path().join(file_name(id))).unwrap();
            assert_eq!(
                &raw[8..12],
                &version.to_le_bytes(),
                "written as version {version}"
            );
            for mmap in [false, true] {
                let r = Arc::new(
                    SegmentReader::open_with(&FsStorage, dir.path(), id, mmap)
                        .unwrap()
                        .with_cache(Some(Arc::new(BlockCache::new(1 << 20, 4096, mmap)))),
                );
                assert_eq!(matches!(r.bloom, Bloom::Classic { .. }), version == 1);
                assert!(r.verified.is_empty(), "v{version} has no stored index");
                for (k, e) in &es {
                    assert_eq!(r.get(k).unwrap().as_ref(), Some(e));
                }
                assert_eq!(r.get(&encode_key(b"ns", b"k99999")).unwrap(), None);
                let mut it = r.iter_from(&[]);
                let mut n = 0;
                while it.next_record().unwrap().is_some() {
                    n += 1;
                }
                assert_eq!(n, 300);
                assert_eq!(r.verify().unwrap(), 300);
            }
        }
        // A current segment is version 3: blocked filter, stored block
        // indexes, searched in the map when mapped.
        SegmentWriter::with_options(WriterOptions::defaults(dir.path().to_path_buf(), 3600), 3)
            .flush(&es)
            .unwrap();
        let r = SegmentReader::open_with(&FsStorage, dir.path(), 3, true).unwrap();
        assert!(matches!(r.bloom, Bloom::Blocked { .. }));
        assert!(!r.verified.is_empty());
        // A version this code does not know is refused by name.
        let mut bad = std::fs::read(dir.path().join(file_name(3))).unwrap();
        bad[8..12].copy_from_slice(&4u32.to_le_bytes());
        std::fs::write(dir.path().join(file_name(3)), &bad).unwrap();
        match SegmentReader::open(dir.path().to_path_buf(), 3) {
            Err(Error::Corruption { detail, .. }) => {
                assert!(detail.contains("version 4"), "{detail}")
            }
            other => panic!("expected a version error, got {other:?}"),
        }
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let es = entries(500);
        let meta = SegmentWriter::new(dir.path().to_path_buf(), 7, 3600)
            .flush(&es)
            .unwrap();
        let r = SegmentReader::open(dir.path().to_path_buf(), 7).unwrap();
        assert_eq!(r.meta, meta);
        assert_eq!(meta.record_count, 500);
        assert_eq!(meta.min_lsn, 1);
        assert_eq!(meta.max_lsn, 500);
        assert_eq!(meta.tombstone_count, 72);
        for (k, e) in &es {
            assert_eq!(r.get(k).unwrap().as_ref(), Some(e));
        }
        assert!(r.get(&encode_key(b"ns", b"nope")).unwrap().is_none());
        let all = r.range_scan(&[], &[0xff; 8]).unwrap();
        assert_eq!(all, es);
        let part = r.range_scan(&es[10].0, &es[20].0).unwrap();
        assert_eq!(part.len(), 10);
        assert_eq!(r.verify().unwrap(), 500);
        let arc = Arc::new(r);
        let mut it = arc.iter_from(&es[250].0);
        let mut n = 0;
        while let Some(rec) = it.next_record().unwrap() {
            assert_eq!(rec.entry, es[250 + n].1);
            n += 1;
        }
        assert_eq!(n, 250);
    }

    #[test]
    fn a_dropped_reader_leaves_nothing_in_the_block_cache() {
        // A cached block of a mapped file holds the whole mapping: left in
        // the cache, it would keep a file compaction removed on the disk.
        for mmap in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let es = entries(500);
            SegmentWriter::new(dir.path().to_path_buf(), 7, 3600)
                .flush(&es)
                .unwrap();
            let cache = Arc::new(BlockCache::new(1 << 20, 4096, mmap));
            let other = SegmentReader::open_with(&FsStorage, dir.path(), 7, mmap)
                .unwrap()
                .with_cache(Some(Arc::clone(&cache)));
            let r = SegmentReader::open_with(&FsStorage, dir.path(), 7, mmap)
                .unwrap()
                .with_cache(Some(Arc::clone(&cache)));
            for (k, _) in &es {
                other.block(other.block_for(k)).unwrap();
            }
            let theirs = cache.used_bytes();
            for (k, _) in &es {
                r.block(r.block_for(k)).unwrap();
            }
            assert!(cache.used_bytes() > theirs && theirs > 0);
            drop(r);
            assert_eq!(cache.used_bytes(), theirs, "mmap {mmap}");
            drop(other);
            assert_eq!(cache.used_bytes(), 0, "mmap {mmap}");
        }
    }

    #[test]
    fn unsorted_input_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut es = entries(3);
        es.swap(0, 1);
        assert!(matches!(
            SegmentWriter::new(dir.path().to_path_buf(), 1, 3600).flush(&es),
            Err(Error::InvalidArgument(_))
        ));
        assert!(SegmentWriter::new(dir.path().to_path_buf(), 1, 3600)
            .flush(&[])
            .is_err());
    }

    /// Rewrites section `field` (0 index, 1 bloom, 2 meta) of a segment with
    /// `f` applied to its body, fixing its checksum and the footer's.
    fn forge_section(data: &mut [u8], field: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let foot = data.len() - FOOTER_LEN as usize;
        let at = |i: usize| {
            let p = foot + 8 * i;
            u64::from_le_bytes(data[p..p + 8].try_into().unwrap()) as usize
        };
        let (off, len) = (at(2 * field), at(2 * field + 1));
        let mut body = data[off..off + len - 4].to_vec();
        f(&mut body);
        assert_eq!(body.len(), len - 4, "forged sections keep their size");
        data[off..off + len - 4].copy_from_slice(&body);
        let crc = crc32fast::hash(&body).to_le_bytes();
        data[off + len - 4..off + len].copy_from_slice(&crc);
        let crc = crc32fast::hash(&data[foot..foot + 52]).to_le_bytes();
        data[foot + 52..foot + 56].copy_from_slice(&crc);
    }

    #[test]
    fn forged_lengths_with_valid_checksums_are_corruption() {
        // Found by the `segment` fuzz target: a block offset near u64::MAX in
        // an index with a valid checksum overflowed `offset + len`.
        let dir = tempfile::tempdir().unwrap();
        let meta = SegmentWriter::new(dir.path().to_path_buf(), 1, 3600)
            .flush(&entries(20))
            .unwrap();
        let path = dir.path().join(file_name(1));
        let good = std::fs::read(&path).unwrap();
        let mut d = good.clone();
        forge_section(&mut d, 0, |idx| {
            let klen = u32::from_le_bytes(idx[0..4].try_into().unwrap()) as usize;
            idx[4 + klen..12 + klen].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
        });
        std::fs::write(&path, &d).unwrap();
        assert!(matches!(
            SegmentReader::open(dir.path().to_path_buf(), 1),
            Err(Error::Corruption { .. })
        ));
        // A record count near u64::MAX in the meta is only a hint: reading
        // fails on the count check, not on a huge allocation.
        let mut d = good.clone();
        forge_section(&mut d, 2, |m| {
            let mut forged = meta.clone();
            forged.record_count = u64::MAX / 2;
            let mut enc = Vec::new();
            forged.encode(&mut enc);
            assert_eq!(enc.len(), m.len());
            *m = enc;
        });
        std::fs::write(&path, &d).unwrap();
        let r = SegmentReader::open(dir.path().to_path_buf(), 1).unwrap();
        assert_eq!(r.all_records().unwrap().len(), 20);
        assert!(matches!(r.verify(), Err(Error::Corruption { .. })));
    }

    /// Segment 1 in `dir` of 12 entries in blocks of `block_size`: the
    /// entries, the file's path and its bytes.
    fn twelve_entry_segment(dir: &Path, block_size: usize) -> (Entries, PathBuf, Vec<u8>) {
        let es = entries(12);
        let opts = WriterOptions {
            block_size,
            ..WriterOptions::defaults(dir.to_path_buf(), 3600)
        };
        SegmentWriter::with_options(opts, 1).flush(&es).unwrap();
        let path = dir.join(file_name(1));
        let good = std::fs::read(&path).unwrap();
        (es, path, good)
    }

    /// A block whose stored index disagrees with its entries (checksum
    /// valid: a writer bug or a forged file) is reported by verify, and reads
    /// through it return errors or correct data, never a panic.
    #[test]
    fn a_forged_block_index_is_caught_by_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (es, path, good) = twelve_entry_segment(dir.path(), 256);
        let r = SegmentReader::open(dir.path().to_path_buf(), 1).unwrap();
        let (off, len) = (r.index[0].offset as usize, r.index[0].len as usize);
        let entries_len = block_layout(&good[off..off + len - 4])
            .unwrap()
            .entries
            .len();
        let n = r.verify().unwrap();
        assert_eq!(n, 12);
        // Each stored byte of the first block's index (prefixes, offsets,
        // common length), changed, with the block's checksum recomputed.
        for at in entries_len..len - 8 {
            let mut bad = good.clone();
            bad[off + at] ^= 0x5a;
            let crc = crc32fast::hash(&bad[off..off + len - 4]);
            bad[off + len - 4..off + len].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &bad).unwrap();
            for mmap in [false, true] {
                let r = SegmentReader::open_with(&FsStorage, dir.path(), 1, mmap).unwrap();
                assert!(
                    matches!(r.verify(), Err(Error::Corruption { .. })),
                    "byte {at} of the block index changed, verify passed (mmap {mmap})"
                );
                for (k, e) in &es {
                    if let Ok(Some(got)) = r.get(k) {
                        assert_eq!(&got, e, "byte {at}: wrong data (mmap {mmap})");
                    }
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (es, path, good) = twelve_entry_segment(dir.path(), 128);
        // Both ways of reading blocks: pread into memory, and in place
        // from a memory map (the engine's default).
        let check = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            for mmap in [false, true] {
                let res = SegmentReader::open_with(&FsStorage, dir.path(), 1, mmap)
                    .map(|r| r.with_cache(Some(Arc::new(BlockCache::new(1 << 20, 128, mmap)))))
                    .and_then(|r| {
                        let all = r.range_scan(&[], &[0xff; 4])?;
                        for (k, e) in &es {
                            if r.get(k)?.as_ref() != Some(e) {
                                return Ok(None);
                            }
                        }
                        r.verify()?;
                        Ok(Some(all))
                    });
                match res {
                    Ok(all) => assert_eq!(
                        all.as_ref(),
                        Some(&es),
                        "a damaged segment returned wrong data (mmap {mmap})"
                    ),
                    Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        };
        for bit in 0..good.len() * 8 {
            let mut d = good.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            check(&d);
        }
        for len in 0..good.len() {
            check(&good[..len]);
        }
    }
}
