//! Writing segment files.

use std::path::PathBuf;
use std::sync::Arc;

use super::bloom::{key_hash, Bloom};
use super::{
    file_name, merkle_root, Record, SegmentMeta, FOOTER_MAGIC, HEADER_LEN, MAGIC, VERSION,
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
        write_file(&self.opts, self.segment_id, run_id, records)
    }
}

pub(crate) fn sync_dir(opts: &WriterOptions) -> Result<()> {
    opts.storage
        .sync_dir(&opts.dir)
        .map_err(|e| Error::io(format!("syncing directory {}", opts.dir.display()), e))
}

/// Writes a sorted stream of records as segments of at most
/// `segment_size_bytes` each (a single larger record gets a segment of its
/// own), so a merge holds one output segment in memory, not its whole output.
/// Files are fsynced as they are cut; [`SplitWriter::finish`] syncs the
/// directory once.
pub(crate) struct SplitWriter<'o> {
    opts: &'o WriterOptions,
    run_id: u64,
    buf: Vec<Record>,
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
            buf: Vec::new(),
            bytes: 0,
            metas: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Adds the next record (keys strictly increasing); `next_id` names the
    /// segment when one is cut.
    pub(crate) fn push(&mut self, rec: Record, next_id: &mut impl FnMut() -> u64) -> Result<()> {
        let n = super::ENTRY_HEADER_LEN as u64
            + rec.entry.key.len() as u64
            + rec.entry.value.as_ref().map_or(0, |v| v.len() as u64);
        if !self.buf.is_empty() && self.bytes + n > self.opts.segment_size_bytes {
            self.cut(next_id)?;
        }
        self.buf.push(rec);
        self.bytes += n;
        Ok(())
    }

    fn cut(&mut self, next_id: &mut impl FnMut() -> u64) -> Result<()> {
        let id = next_id();
        self.ids.push(id);
        let mut w = SegmentWriter::with_options(self.opts.clone(), id);
        self.metas.push(w.write_records(&self.buf, self.run_id)?);
        self.buf.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Writes what is buffered, syncs the directory if anything was written,
    /// and returns the metas of the segments written.
    pub(crate) fn finish(&mut self, next_id: &mut impl FnMut() -> u64) -> Result<Vec<SegmentMeta>> {
        if !self.buf.is_empty() {
            self.cut(next_id)?;
        }
        if !self.metas.is_empty() {
            sync_dir(self.opts)?;
        }
        Ok(std::mem::take(&mut self.metas))
    }

    /// After a failure: removes every file this writer created (best effort;
    /// the next open removes what is left, since no manifest names them).
    pub(crate) fn abandon(self) {
        for id in self.ids {
            let _ = self
                .opts
                .storage
                .remove_file(&self.opts.dir.join(file_name(id)));
        }
    }
}

/// Writes `records` (sorted, unique keys) as one or more segments through a
/// [`SplitWriter`], taking ids from `next_id`.
pub(crate) fn write_split(
    opts: &WriterOptions,
    records: Vec<Record>,
    run_id: u64,
    mut next_id: impl FnMut() -> u64,
) -> Result<Vec<SegmentMeta>> {
    let mut w = SplitWriter::new(opts, run_id);
    let res = records
        .into_iter()
        .try_for_each(|r| w.push(r, &mut next_id))
        .and_then(|()| w.finish(&mut next_id));
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

fn write_file(
    opts: &WriterOptions,
    id: u64,
    run_id: u64,
    records: &[Record],
) -> Result<SegmentMeta> {
    let path = opts.dir.join(file_name(id));
    let io_err = |what: &str, e| Error::io(format!("{what} segment {}", path.display()), e);
    let file: Arc<dyn WritableFile> = opts
        .storage
        .create(&path)
        .map_err(|e| io_err("creating", e))?;

    let mut offset = 0u64;
    let append = |buf: &[u8], offset: &mut u64| -> Result<()> {
        file.append(buf).map_err(|e| io_err("writing", e))?;
        *offset += buf.len() as u64;
        Ok(())
    };

    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    put_u32(&mut header, opts.format_version);
    put_u32(&mut header, 0);
    append(&header, &mut offset)?;

    let mut index = Vec::new();
    let mut block = Vec::with_capacity(opts.block_size + 256);
    let mut block_count = 0u32;
    // Where each entry of the block being built starts.
    let mut starts: Vec<u32> = Vec::new();
    let with_index = opts.format_version >= 3;
    let finish_block = |block: &mut Vec<u8>,
                        count: &mut u32,
                        starts: &mut Vec<u32>,
                        last_key: &[u8],
                        offset: &mut u64,
                        index: &mut Vec<u8>|
     -> Result<()> {
        if with_index {
            let flags = put_block_index(block, starts);
            put_u32(block, *count | flags);
        } else {
            put_u32(block, *count);
        }
        starts.clear();
        let crc = crc32fast::hash(block);
        put_u32(block, crc);
        put_bytes(index, last_key);
        put_u64(index, *offset);
        put_u32(index, block.len() as u32);
        append(block, offset)?;
        block.clear();
        *count = 0;
        Ok(())
    };

    let mut hashes = Vec::with_capacity(records.len());
    let mut meta = SegmentMeta {
        segment_id: id,
        run_id,
        cohort_bucket: 0,
        death_time: i64::MIN,
        min_death_time: NEVER,
        min_key: records[0].entry.key.clone(),
        max_key: records[records.len() - 1].entry.key.clone(),
        min_lsn: u64::MAX,
        max_lsn: 0,
        record_count: records.len() as u64,
        tombstone_count: 0,
        file_size: 0,
        merkle_root: merkle_root(records.iter().map(|r| r.entry.key.as_slice())),
    };
    for (i, r) in records.iter().enumerate() {
        let e = &r.entry;
        hashes.push(key_hash(&e.key));
        meta.death_time = meta.death_time.max(r.retain_until.max(e.death_time()));
        meta.min_death_time = meta.min_death_time.min(e.death_time());
        meta.min_lsn = meta.min_lsn.min(e.lsn);
        meta.max_lsn = meta.max_lsn.max(e.lsn);
        if e.op == Operation::Delete {
            meta.tombstone_count += 1;
        }
        starts.push(block.len() as u32);
        encode_entry(&mut block, r);
        block_count += 1;
        let last = i + 1 == records.len();
        if block.len() >= opts.block_size || last {
            finish_block(
                &mut block,
                &mut block_count,
                &mut starts,
                &e.key,
                &mut offset,
                &mut index,
            )?;
        }
    }
    meta.cohort_bucket = cohort_bucket(meta.death_time, opts.cohort_window_secs);

    let put_section = |mut body: Vec<u8>, offset: &mut u64| -> Result<(u64, u64)> {
        let crc = crc32fast::hash(&body);
        put_u32(&mut body, crc);
        let at = *offset;
        append(&body, offset)?;
        Ok((at, body.len() as u64))
    };
    let (index_off, index_len) = put_section(index, &mut offset)?;
    let mut bloom = Vec::new();
    match opts.format_version {
        1 => Bloom::build_classic(&hashes, opts.bloom_bits_per_key),
        _ => Bloom::build(&hashes, opts.bloom_bits_per_key),
    }
    .encode(&mut bloom);
    let (bloom_off, bloom_len) = put_section(bloom, &mut offset)?;
    // The stored meta's file_size is the final size: meta and footer lengths
    // are known once the meta is encoded (its own length does not change).
    let mut probe = Vec::new();
    meta.encode(&mut probe);
    meta.file_size = offset + probe.len() as u64 + 4 + super::FOOTER_LEN;
    let mut meta_bytes = Vec::new();
    meta.encode(&mut meta_bytes);
    let (meta_off, meta_len) = put_section(meta_bytes, &mut offset)?;

    let mut footer = Vec::with_capacity(super::FOOTER_LEN as usize);
    for v in [
        index_off, index_len, bloom_off, bloom_len, meta_off, meta_len,
    ] {
        put_u64(&mut footer, v);
    }
    put_u32(&mut footer, opts.format_version);
    let crc = crc32fast::hash(&footer);
    put_u32(&mut footer, crc);
    footer.extend_from_slice(FOOTER_MAGIC);
    append(&footer, &mut offset)?;
    debug_assert_eq!(offset, meta.file_size);
    file.sync_data().map_err(|e| io_err("syncing", e))?;
    Ok(meta)
}
