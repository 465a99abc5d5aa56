//! Writing segment files.

use std::path::PathBuf;
use std::sync::Arc;

use super::bloom::{key_hash, Bloom};
use super::{
    file_name, merkle_root_of_hashes, Record, SegmentMeta, FOOTER_MAGIC, HEADER_LEN, MAGIC, VERSION,
};
use crate::codec::{put_bytes, put_i64, put_u32, put_u64, put_u8};
use crate::error::{Error, Result};
use crate::storage::{FsStorage, Storage, WritableFile};
use crate::types::{cohort_bucket, MemEntry, Operation, NEVER};

/// How segments are written.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub cohort_window_secs: u64,
    pub block_size: usize,
    pub bloom_bits_per_key: u32,
    pub segment_size_bytes: u64,
    /// Open segments memory-mapped (see `EdgestoreConfig::mmap_reads`).
    pub mmap_reads: bool,
    /// Segment format version to write (the current one; tests write
    /// version 1 to check that older files stay readable).
    pub format_version: u32,
}

impl WriterOptions {
    pub(crate) fn defaults(dir: PathBuf, cohort_window_secs: u64) -> Self {
        WriterOptions {
            storage: Arc::new(FsStorage),
            dir,
            cohort_window_secs,
            block_size: 4096,
            bloom_bits_per_key: 10,
            segment_size_bytes: 4 << 20,
            mmap_reads: false,
            format_version: VERSION,
        }
    }
}

/// Writes one segment file from sorted entries.
#[derive(Debug)]
pub struct SegmentWriter {
    opts: WriterOptions,
    segment_id: u64,
}

impl SegmentWriter {
    /// A writer for segment `segment_id` in `dir`, on the real file system.
    pub fn new(dir: PathBuf, segment_id: u64, cohort_window_secs: u64) -> Self {
        SegmentWriter {
            opts: WriterOptions::defaults(dir, cohort_window_secs),
            segment_id,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_options(opts: WriterOptions, segment_id: u64) -> Self {
        SegmentWriter { opts, segment_id }
    }

    /// Writes `entries` (sorted by key, one per key) as a segment, fsyncs the
    /// file and its directory, and returns its meta. Each record is retained
    /// until its own death time; the segment's cohort is that of the latest.
    pub fn flush(&mut self, entries: &[(Vec<u8>, MemEntry)]) -> Result<SegmentMeta> {
        let records: Vec<Record> = entries
            .iter()
            .map(|(_, e)| Record::new(e.clone()))
            .collect();
        if entries.iter().any(|(k, e)| *k != e.key) {
            return Err(Error::invalid("entry key differs from its sort key"));
        }
        let meta = self.write_records(&records, self.segment_id)?;
        sync_dir(&self.opts)?;
        Ok(meta)
    }

    /// Writes records (sorted, unique keys, non-empty) and fsyncs the file. The
    /// caller syncs the directory before publishing the segment.
    pub(crate) fn write_records(&mut self, records: &[Record], run_id: u64) -> Result<SegmentMeta> {
        if records.is_empty() {
            return Err(Error::invalid("a segment needs at least one record"));
        }
        if records.windows(2).any(|w| w[0].entry.key >= w[1].entry.key) {
            return Err(Error::invalid(
                "segment records must be sorted by key with no duplicates",
            ));
        }
        let mut b = SegmentBuilder::create(&self.opts, self.segment_id, run_id)?;
        records.iter().try_for_each(|r| b.push(r))?;
        b.finish()
    }
}

pub(crate) fn sync_dir(opts: &WriterOptions) -> Result<()> {
    opts.storage
        .sync_dir(&opts.dir)
        .map_err(|e| Error::io(format!("syncing directory {}", opts.dir.display()), e))
}

/// Writes a sorted stream of records as segments of at most
/// `segment_size_bytes` each (a single larger record gets a segment of its
/// own), streaming: each record goes into the current segment's block as it
/// comes, so memory holds one block, not one segment. The first segment
/// takes the run's id; later ones take ids from the caller. Files are
/// fsynced as they are cut; [`SplitWriter::finish`] syncs the directory once.
pub(crate) struct SplitWriter<'o> {
    opts: &'o WriterOptions,
    run_id: u64,
    cur: Option<SegmentBuilder>,
    /// Entry bytes in the current segment.
    bytes: u64,
    metas: Vec<SegmentMeta>,
    /// Every segment id a file was created for, the one being written included.
    ids: Vec<u64>,
}

impl<'o> SplitWriter<'o> {
    pub(crate) fn new(opts: &'o WriterOptions, run_id: u64) -> Self {
        SplitWriter {
            opts,
            run_id,
            cur: None,
            bytes: 0,
            metas: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Adds the next record (keys strictly increasing); `next_id` names
    /// each segment after the first when it is started.
    pub(crate) fn push(&mut self, rec: &Record, next_id: &mut impl FnMut() -> u64) -> Result<()> {
        let n = super::ENTRY_HEADER_LEN as u64
            + rec.entry.key.len() as u64
            + rec.entry.value.as_ref().map_or(0, |v| v.len() as u64);
        if self.cur.is_some() && self.bytes + n > self.opts.segment_size_bytes {
            self.cut()?;
        }
        let cur = match &mut self.cur {
            Some(cur) => cur,
            None => {
                let id = if self.ids.is_empty() {
                    self.run_id
                } else {
                    next_id()
                };
                self.ids.push(id);
                self.cur
                    .insert(SegmentBuilder::create(self.opts, id, self.run_id)?)
            }
        };
        cur.push(rec)?;
        self.bytes += n;
        Ok(())
    }

    /// Finishes the current segment.
    fn cut(&mut self) -> Result<()> {
        if let Some(cur) = self.cur.take() {
            self.metas.push(cur.finish()?);
        }
        self.bytes = 0;
        Ok(())
    }

    /// Finishes the last segment, syncs the directory if anything was
    /// written, and returns the metas of the segments written.
    pub(crate) fn finish(&mut self) -> Result<Vec<SegmentMeta>> {
        self.cut()?;
        if !self.metas.is_empty() {
            sync_dir(self.opts)?;
        }
        Ok(std::mem::take(&mut self.metas))
    }

    /// After a failure: removes every file this writer created (best effort;
    /// the next open removes what is left, since no manifest names them).
    pub(crate) fn abandon(mut self) {
        // Close the file being written before removing it.
        self.cur = None;
        for id in self.ids {
            let _ = self
                .opts
                .storage
                .remove_file(&self.opts.dir.join(file_name(id)));
        }
    }
}

/// Writes `records` (sorted, unique keys) as one or more segments through a
/// [`SplitWriter`]: the first takes `run_id`, later ones ids from `next_id`.
pub(crate) fn write_split(
    opts: &WriterOptions,
    records: impl IntoIterator<Item = Record>,
    run_id: u64,
    mut next_id: impl FnMut() -> u64,
) -> Result<Vec<SegmentMeta>> {
    let mut w = SplitWriter::new(opts, run_id);
    let res = records
        .into_iter()
        .try_for_each(|r| w.push(&r, &mut next_id))
        .and_then(|()| w.finish());
    if res.is_err() {
        w.abandon();
    }
    res
}

fn encode_entry(out: &mut Vec<u8>, r: &Record) {
    let e = &r.entry;
    let value: &[u8] = match e.op {
        Operation::Put => e.value.as_deref().unwrap_or(&[]),
        Operation::Delete => &[],
    };
    put_u32(out, e.key.len() as u32);
    put_u32(out, value.len() as u32);
    put_u8(out, e.op.to_byte());
    put_u32(out, e.ttl);
    put_u64(out, e.lsn);
    put_i64(out, e.timestamp);
    put_i64(out, r.retain_until);
    out.extend_from_slice(&e.key);
    out.extend_from_slice(value);
}

/// Appends a block's entry index (version 3; see the module docs of
/// `segment`) after its entries, which start at `starts`; returns the flag
/// bits for the entry count.
fn put_block_index(block: &mut Vec<u8>, starts: &[u32]) -> u32 {
    let key = |start: u32| {
        let at = start as usize;
        let len = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
        let from = at + super::ENTRY_HEADER_LEN;
        &block[from..from + len as usize]
    };
    let common = match (starts.first(), starts.last()) {
        // Sorted keys: what the first and last share, all share.
        (Some(&a), Some(&b)) => super::common_prefix_len(key(a), key(b)),
        _ => 0,
    };
    let mut idx = Vec::with_capacity(starts.len() * 6 + 4);
    for &s in starts {
        idx.extend_from_slice(&super::key_prefix(key(s), common).to_le_bytes());
    }
    let wide = block.len() > u16::MAX as usize;
    for &s in starts {
        if wide {
            put_u32(&mut idx, s);
        } else {
            idx.extend_from_slice(&(s as u16).to_le_bytes());
        }
    }
    put_u32(&mut idx, common as u32);
    block.extend_from_slice(&idx);
    super::INDEXED | if wide { super::WIDE_OFFSETS } else { 0 }
}

/// One segment file written record by record: entries reach the file a
/// block at a time, so memory holds the block being built and each key's
/// two hashes (Bloom and Merkle), never the records themselves.
struct SegmentBuilder {
    file: Arc<dyn WritableFile>,
    path: PathBuf,
    format_version: u32,
    block_size: usize,
    bloom_bits_per_key: u32,
    cohort_window_secs: u64,
    offset: u64,
    block: Vec<u8>,
    /// Where each entry of the block being built starts.
    starts: Vec<u32>,
    index: Vec<u8>,
    bloom_hashes: Vec<u64>,
    merkle_hashes: Vec<[u8; 32]>,
    /// The last key pushed: the order check, and the block index's entry.
    last_key: Vec<u8>,
    meta: SegmentMeta,
}

impl SegmentBuilder {
    /// Creates the file of segment `id` and writes its header.
    fn create(opts: &WriterOptions, id: u64, run_id: u64) -> Result<Self> {
        let path = opts.dir.join(file_name(id));
        let file = opts
            .storage
            .create(&path)
            .map_err(|e| Error::io(format!("creating segment {}", path.display()), e))?;
        let mut b = SegmentBuilder {
            file,
            path,
            format_version: opts.format_version,
            block_size: opts.block_size,
            bloom_bits_per_key: opts.bloom_bits_per_key,
            cohort_window_secs: opts.cohort_window_secs,
            offset: 0,
            block: Vec::with_capacity(opts.block_size + 256),
            starts: Vec::new(),
            index: Vec::new(),
            bloom_hashes: Vec::new(),
            merkle_hashes: Vec::new(),
            last_key: Vec::new(),
            meta: SegmentMeta {
                segment_id: id,
                run_id,
                cohort_bucket: 0,
                death_time: i64::MIN,
                min_death_time: NEVER,
                min_key: Vec::new(),
                max_key: Vec::new(),
                min_lsn: u64::MAX,
                max_lsn: 0,
                record_count: 0,
                tombstone_count: 0,
                file_size: 0,
                merkle_root: Vec::new(),
            },
        };
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        put_u32(&mut header, opts.format_version);
        put_u32(&mut header, 0);
        b.append(&header)?;
        Ok(b)
    }

    fn append(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .append(buf)
            .map_err(|e| Error::io(format!("writing segment {}", self.path.display()), e))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Adds the next record; its key must sort after the previous one's.
    fn push(&mut self, r: &Record) -> Result<()> {
        let e = &r.entry;
        if self.meta.record_count > 0 && e.key <= self.last_key {
            return Err(Error::invalid(
                "segment records must be sorted by key with no duplicates",
            ));
        }
        if self.meta.record_count == 0 {
            self.meta.min_key = e.key.clone();
        }
        self.meta.record_count += 1;
        self.last_key.clear();
        self.last_key.extend_from_slice(&e.key);
        self.bloom_hashes.push(key_hash(&e.key));
        self.merkle_hashes.push(*blake3::hash(&e.key).as_bytes());
        let m = &mut self.meta;
        m.death_time = m.death_time.max(r.retain_until.max(e.death_time()));
        m.min_death_time = m.min_death_time.min(e.death_time());
        m.min_lsn = m.min_lsn.min(e.lsn);
        m.max_lsn = m.max_lsn.max(e.lsn);
        if e.op == Operation::Delete {
            m.tombstone_count += 1;
        }
        self.starts.push(self.block.len() as u32);
        encode_entry(&mut self.block, r);
        if self.block.len() >= self.block_size {
            self.finish_block()?;
        }
        Ok(())
    }

    /// Writes the block being built (its index, count and CRC appended) and
    /// records it in the segment's index under the last key pushed.
    fn finish_block(&mut self) -> Result<()> {
        let count = self.starts.len() as u32;
        if self.format_version >= 3 {
            let flags = put_block_index(&mut self.block, &self.starts);
            put_u32(&mut self.block, count | flags);
        } else {
            put_u32(&mut self.block, count);
        }
        self.starts.clear();
        let crc = crc32fast::hash(&self.block);
        put_u32(&mut self.block, crc);
        put_bytes(&mut self.index, &self.last_key);
        put_u64(&mut self.index, self.offset);
        put_u32(&mut self.index, self.block.len() as u32);
        let block = std::mem::take(&mut self.block);
        let res = self.append(&block);
        self.block = block;
        self.block.clear();
        res
    }

    /// Writes a section (body and CRC); returns its offset and length.
    fn put_section(&mut self, mut body: Vec<u8>) -> Result<(u64, u64)> {
        let crc = crc32fast::hash(&body);
        put_u32(&mut body, crc);
        let at = self.offset;
        self.append(&body)?;
        Ok((at, body.len() as u64))
    }

    /// Writes the last block, the index, Bloom filter, meta and footer, and
    /// fsyncs the file. At least one record must have been pushed.
    fn finish(mut self) -> Result<SegmentMeta> {
        if self.meta.record_count == 0 {
            return Err(Error::invalid("a segment needs at least one record"));
        }
        if !self.starts.is_empty() {
            self.finish_block()?;
        }
        self.meta.max_key = std::mem::take(&mut self.last_key);
        self.meta.cohort_bucket = cohort_bucket(self.meta.death_time, self.cohort_window_secs);
        self.meta.merkle_root = merkle_root_of_hashes(std::mem::take(&mut self.merkle_hashes));
        let index = std::mem::take(&mut self.index);
        let (index_off, index_len) = self.put_section(index)?;
        let mut bloom = Vec::new();
        match self.format_version {
            1 => Bloom::build_classic(&self.bloom_hashes, self.bloom_bits_per_key),
            _ => Bloom::build(&self.bloom_hashes, self.bloom_bits_per_key),
        }
        .encode(&mut bloom);
        let (bloom_off, bloom_len) = self.put_section(bloom)?;
        // The stored meta's file_size is the final size: meta and footer
        // lengths are known once the meta is encoded (its own length does
        // not change).
        let mut probe = Vec::new();
        self.meta.encode(&mut probe);
        self.meta.file_size = self.offset + probe.len() as u64 + 4 + super::FOOTER_LEN;
        let mut meta_bytes = Vec::new();
        self.meta.encode(&mut meta_bytes);
        let (meta_off, meta_len) = self.put_section(meta_bytes)?;

        let mut footer = Vec::with_capacity(super::FOOTER_LEN as usize);
        for v in [
            index_off, index_len, bloom_off, bloom_len, meta_off, meta_len,
        ] {
            put_u64(&mut footer, v);
        }
        put_u32(&mut footer, self.format_version);
        let crc = crc32fast::hash(&footer);
        put_u32(&mut footer, crc);
        footer.extend_from_slice(FOOTER_MAGIC);
        self.append(&footer)?;
        debug_assert_eq!(self.offset, self.meta.file_size);
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing segment {}", self.path.display()), e))?;
        Ok(self.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{merkle_root, SegmentReader};
    use crate::types::encode_key;

    fn record(i: u32, value_len: usize) -> Record {
        Record::new(MemEntry {
            key: encode_key(b"ns", format!("k{i:06}").as_bytes()),
            value: Some(vec![i as u8; value_len]),
            op: Operation::Put,
            lsn: u64::from(i) + 1,
            timestamp: 1_000,
            ttl: 0,
        })
    }

    fn segment_files(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    }

    /// A stream is cut into segments near the size bound; the first takes
    /// the run's id and the rest the caller's; each reads back its share,
    /// in order, with the meta (keys, count, Merkle root) it would have had
    /// written whole.
    #[test]
    fn a_split_writer_streams_bounded_segments_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            segment_size_bytes: 64 << 10,
            ..WriterOptions::defaults(dir.path().to_path_buf(), 3600)
        };
        let records: Vec<Record> = (0..3000).map(|i| record(i, 60)).collect();
        let mut next = 100u64;
        let metas = write_split(&opts, records.iter().cloned(), 7, || {
            next += 1;
            next
        })
        .unwrap();
        assert!(metas.len() > 3, "{} segments", metas.len());
        let ids: Vec<u64> = metas.iter().map(|m| m.segment_id).collect();
        assert_eq!(ids[0], 7);
        assert_eq!(
            ids[1..],
            (101..100 + metas.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(segment_files(dir.path()).len(), metas.len());
        let mut at = 0usize;
        for m in &metas {
            assert_eq!(m.run_id, 7);
            // A record never crosses the bound, so a segment's entries stay
            // within it; the file adds the index, filter and meta.
            assert!(m.file_size < (64 << 10) + (16 << 10), "{}", m.file_size);
            let r = SegmentReader::open(dir.path().to_path_buf(), m.segment_id).unwrap();
            let n = m.record_count as usize;
            let mine = &records[at..at + n];
            assert_eq!(r.all_records().unwrap(), mine);
            assert_eq!(m.min_key, mine[0].entry.key);
            assert_eq!(m.max_key, mine[n - 1].entry.key);
            let keys = mine.iter().map(|r| r.entry.key.as_slice());
            assert_eq!(m.merkle_root, merkle_root(keys));
            assert_eq!(r.verify().unwrap(), m.record_count);
            at += n;
        }
        assert_eq!(at, records.len());
    }

    /// A key out of order fails the push, and abandoning removes every file
    /// the writer made, the one it was writing included.
    #[test]
    fn a_failed_stream_leaves_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            segment_size_bytes: 16 << 10,
            ..WriterOptions::defaults(dir.path().to_path_buf(), 3600)
        };
        let mut next = 10u64;
        let mut next_id = || {
            next += 1;
            next
        };
        let mut w = SplitWriter::new(&opts, 1);
        for i in 0..1000 {
            w.push(&record(i, 40), &mut next_id).unwrap();
        }
        assert!(segment_files(dir.path()).len() > 1);
        match w.push(&record(5, 40), &mut next_id) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("sorted"), "{m}"),
            other => panic!("expected an order error, got {other:?}"),
        }
        w.abandon();
        assert_eq!(segment_files(dir.path()), Vec::<String>::new());
        // Nothing pushed: nothing written, no error.
        let mut empty = SplitWriter::new(&opts, 2);
        assert_eq!(empty.finish().unwrap(), Vec::new());
        assert_eq!(segment_files(dir.path()), Vec::<String>::new());
    }
}
