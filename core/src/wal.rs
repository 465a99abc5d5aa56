//! Write-ahead log.
//!
//! File `NNNNNNNNNNNNNNNNNNNN.wal` (the WAL's number in 20 decimal digits).
//! Version 3, written now, starts with a 24-byte header (`EDGWAL\0\x01`,
//! format version u32 LE = 3, reserved u32 = 0, the WAL's number u64 LE)
//! followed by records. Each record holds one whole write batch, so a batch is
//! recovered entirely or not at all:
//!
//! ```text
//! [len u32][!len u32][crc32 of (wal number u64 ‖ payload) u32][payload: len bytes]
//! payload = [first_lsn u64][timestamp i64][count u32][synced_to u64, if count bit 31] count × op
//! op      = [kind u8][ttl u32][key_len u32][key][value_len u32][value]
//! ```
//!
//! `synced_to` is an offset in this WAL up to which the file was known to be
//! on stable storage (an `fdatasync` covering it had returned) when the record
//! was appended; never more than the record's own offset. Only the first
//! record appended after a sync carries it (bit 31 of `count` set), so
//! buffered writes, many records per sync, do not pay its 8 bytes each. A
//! record with
//! `len = 0` is the end-of-log marker, appended (and synced) when the WAL is
//! rotated. Version 2 files (records without `synced_to`) and version 1 files
//! (16-byte header without the number, checksums over the payload alone, no
//! end marker) are still read.
//!
//! # Recycling
//!
//! A WAL made obsolete by a flush may be kept (up to
//! `EdgestoreConfig::wal_recycle_files`) and reused as a later WAL: its
//! header is overwritten in place with the new number and synced while the
//! file still has its old, obsolete name, then the file is renamed to the new
//! number and the directory is synced, and only then is anything written to
//! it acknowledged. Records are written from the end of the header over the
//! old contents, so a durable write costs an `fdatasync` of blocks that are
//! already allocated and written (no file size or extent change to journal)
//! until the new log outgrows the old file. Because every checksum covers
//! the WAL's number, a record left from the file's previous life never
//! validates as a record of this one.
//!
//! # What is durable when
//!
//! * A WAL's header and its directory entry are durable before the first
//!   record is appended (created files: header `fdatasync`, then directory
//!   fsync; recycled files: header `fdatasync`, rename, directory fsync).
//! * In durable sync mode a write is acknowledged after an `fdatasync` that
//!   covers its record; in buffered mode after `write(2)`, and the engine's
//!   `flush` is the barrier.
//! * A rotated WAL ends with the end-of-log marker and is fully synced before
//!   the next WAL takes writes.
//!
//! # Replay
//!
//! The log ends at the first record that does not validate (or at the end
//! marker). In an older (rotated, fully synced) file a bad record before the
//! end marker is corruption. In the last WAL file the bad record at offset
//! `j` is where an unsynced tail begins, and the rest of the file is cut off
//! (a torn write, stale space from a previous life, or a hole), unless a
//! later record of the file's own number proves `j` was synced: one whose
//! `synced_to` is past `j` (in version 1 and 2 files, which do not record it,
//! any later valid record). Then the bad record is corruption in the middle
//! and is reported. (The first record appended after the sync that covered
//! `j` carries such a `synced_to`.)
//!
//! Why later records may validate after a bad one in a crash: the kernel
//! writes dirty pages back in any order, and a disk may reorder writes in its
//! volatile cache, so a power loss can keep a later unsynced page of the log
//! and lose an earlier one. Nothing after the hole was acknowledged as
//! durable (its `fdatasync` would have covered the hole too), so cutting
//! there loses no durable write. The price: damage to the last records
//! synced before the crash, with no later record to vouch for them, is
//! indistinguishable from a hole and is cut rather than reported. Scanning
//! ahead bounds every length by the bytes present and allocates nothing
//! before a checksum matches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{put_bytes, put_i64, put_u32, put_u64, put_u8, Decoder};
use crate::error::{Error, Result};
use crate::storage::{Storage, WritableFile};
use crate::types::{EntryRef, Operation};

const MAGIC: &[u8; 8] = b"EDGWAL\0\x01";
/// The format version written.
const VERSION: u32 = 3;
/// Records without `synced_to` (read, no longer written).
const VERSION_2: u32 = 2;
/// The first format version: no number in the header or checksums.
const VERSION_1: u32 = 1;
/// Header length of version 2 and 3 files (what the writer writes).
pub(crate) const HEADER_LEN: u64 = 24;
/// Header length of version 1 files.
const HEADER_LEN_V1: usize = 16;
const RECORD_HEADER_LEN: usize = 12;
/// Bit of a version 3 payload's `count`: `synced_to` follows. (A batch of
/// at most `MAX_BATCH_BYTES` has far fewer than 2^31 ops.)
const HAS_SYNCED_TO: u32 = 1 << 31;
/// Bigger than the largest legal batch plus its framing.
const MAX_RECORD_LEN: usize = crate::types::MAX_BATCH_BYTES + (64 << 20);

/// File name of WAL number `no`.
pub(crate) fn file_name(no: u64) -> String {
    format!("{no:020}.wal")
}

/// Parses a WAL file name back into its number.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// One operation of a batch, with its internal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalOp {
    pub op: Operation,
    pub ttl: u32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl WalOp {
    /// The op as the record a memtable holds, at `lsn`, written at `timestamp`.
    pub(crate) fn record(&self, lsn: u64, timestamp: i64) -> EntryRef<'_> {
        EntryRef {
            value: (self.op == Operation::Put).then_some(&self.value[..]),
            op: self.op,
            lsn,
            timestamp,
            ttl: self.ttl,
        }
    }
}

/// One write batch as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalBatch {
    pub first_lsn: u64,
    pub timestamp: i64,
    pub ops: Vec<WalOp>,
}

impl WalBatch {
    pub(crate) fn last_lsn(&self) -> u64 {
        self.first_lsn + self.ops.len().saturating_sub(1) as u64
    }
}

/// Which format a file's records follow: version 1 (checksum over the
/// payload), version 2 (checksum over the WAL's number and the payload) or
/// version 3 (as 2, and each payload says how far the WAL was synced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    V1,
    V2(u64),
    V3(u64),
}

impl Generation {
    fn crc(self, payload: &[u8]) -> u32 {
        match self {
            Generation::V1 => crc32fast::hash(payload),
            Generation::V2(no) | Generation::V3(no) => {
                let mut h = crc32fast::Hasher::new();
                h.update(&no.to_le_bytes());
                h.update(payload);
                h.finalize()
            }
        }
    }
}

fn frame(gen: Generation, mut out: Vec<u8>) -> Vec<u8> {
    let len = (out.len() - RECORD_HEADER_LEN) as u32;
    let crc = gen.crc(&out[RECORD_HEADER_LEN..]);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&(!len).to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Frames a batch as one record of WAL number `wal_no`, saying (if
/// `synced_to` is given) that the WAL was durable up to that offset.
pub(crate) fn encode_record(
    wal_no: u64,
    synced_to: Option<u64>,
    first_lsn: u64,
    timestamp: i64,
    ops: &[WalOp],
) -> Vec<u8> {
    frame(
        Generation::V3(wal_no),
        encode_payload(first_lsn, timestamp, synced_to, ops),
    )
}

/// The end-of-log marker of WAL number `wal_no` (an empty record).
pub(crate) fn end_marker(wal_no: u64) -> Vec<u8> {
    frame(Generation::V3(wal_no), vec![0; RECORD_HEADER_LEN])
}

/// The record header space followed by the payload of a batch (with
/// `synced_to`, and its flag in `count`, if given: version 3 only).
fn encode_payload(
    first_lsn: u64,
    timestamp: i64,
    synced_to: Option<u64>,
    ops: &[WalOp],
) -> Vec<u8> {
    let payload_len: usize = 20
        + synced_to.map_or(0, |_| 8)
        + ops
            .iter()
            .map(|o| 13 + o.key.len() + o.value.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload_len);
    out.resize(RECORD_HEADER_LEN, 0);
    put_u64(&mut out, first_lsn);
    put_i64(&mut out, timestamp);
    match synced_to {
        Some(s) => {
            put_u32(&mut out, ops.len() as u32 | HAS_SYNCED_TO);
            put_u64(&mut out, s);
        }
        None => put_u32(&mut out, ops.len() as u32),
    }
    for o in ops {
        put_u8(&mut out, o.op.to_byte());
        put_u32(&mut out, o.ttl);
        put_bytes(&mut out, &o.key);
        put_bytes(&mut out, &o.value);
    }
    out
}

/// Decodes a payload; `v3` for version 3 (which may have `synced_to`,
/// returned beside the batch).
fn decode_payload(
    payload: &[u8],
    v3: bool,
) -> std::result::Result<(WalBatch, Option<u64>), String> {
    let mut d = Decoder::new(payload);
    let first_lsn = d.u64()?;
    let timestamp = d.i64()?;
    let mut count = d.u32()?;
    let mut synced_to = None;
    if v3 && count & HAS_SYNCED_TO != 0 {
        count &= !HAS_SYNCED_TO;
        synced_to = Some(d.u64()?);
    }
    let count = count as usize;
    // The batch's last LSN must leave room for the next one (the engine
    // continues at last + 1): a larger one can only come from a damaged file.
    if first_lsn.checked_add(count.max(1) as u64).is_none() {
        return Err(format!(
            "sequence numbers of {count} ops from {first_lsn} overflow"
        ));
    }
    // Each op takes at least 13 bytes: bound the allocation by the input.
    if count > d.remaining() / 13 {
        return Err(format!("op count {count} exceeds record size"));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = Operation::from_byte(d.u8()?).ok_or("unknown op kind")?;
        let ttl = d.u32()?;
        let key = d.bytes()?.to_vec();
        let value = d.bytes()?.to_vec();
        ops.push(WalOp {
            op,
            ttl,
            key,
            value,
        });
    }
    if !d.is_empty() {
        return Err("trailing bytes in record".into());
    }
    Ok((
        WalBatch {
            first_lsn,
            timestamp,
            ops,
        },
        synced_to,
    ))
}

/// A record that validated.
enum Rec {
    /// A batch, and how far the WAL was synced when it was appended as far as
    /// the record tells: `u64::MAX` in versions 1 and 2, which do not record
    /// it (so every later record counts as proof), 0 for a version 3 record
    /// without `synced_to` (it proves nothing).
    Batch(WalBatch, u64),
    /// The end-of-log marker (versions 2 and 3).
    End,
}

impl Rec {
    /// Whether this record, found after a bad one at `bad`, proves the bad
    /// one's offset was synced (so a crash cannot explain it). An end marker
    /// never does (it is appended at rotation, before the sync that
    /// completes it).
    fn vouches_for(&self, bad: usize) -> bool {
        match self {
            Rec::Batch(_, synced_to) => *synced_to > bad as u64,
            Rec::End => false,
        }
    }
}

/// Tries to read one valid record of generation `gen` at `pos`; returns it and
/// its framed length. Lengths are bounded by the bytes present: a garbage
/// length field costs a failed slice, never an allocation.
fn record_at(data: &[u8], pos: usize, gen: Generation) -> Option<(Rec, usize)> {
    let hdr = data.get(pos..pos.checked_add(RECORD_HEADER_LEN)?)?;
    let len = u32::from_le_bytes(hdr[0..4].try_into().ok()?);
    let inv = u32::from_le_bytes(hdr[4..8].try_into().ok()?);
    if len != !inv || len as usize > MAX_RECORD_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(hdr[8..12].try_into().ok()?);
    let start = pos + RECORD_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len as usize)?)?;
    if gen.crc(payload) != crc {
        return None;
    }
    let rec = if len == 0 {
        match gen {
            Generation::V1 => return None,
            Generation::V2(_) | Generation::V3(_) => Rec::End,
        }
    } else {
        let v3 = matches!(gen, Generation::V3(_));
        let (batch, synced_to) = decode_payload(payload, v3).ok()?;
        // An extent past the record's own start was never written by a
        // writer: only damage makes one.
        if synced_to.is_some_and(|s| s > pos as u64) {
            return None;
        }
        let told = if v3 { synced_to.unwrap_or(0) } else { u64::MAX };
        Rec::Batch(batch, told)
    };
    Some((rec, RECORD_HEADER_LEN + len as usize))
}

/// What replaying one WAL file found.
#[derive(Debug)]
pub(crate) struct Replay {
    pub batches: Vec<WalBatch>,
    /// Length of the valid prefix of the file (through the end marker, if any).
    pub valid_len: u64,
    /// Whether bytes after `valid_len` are to be cut off (a torn tail, or
    /// stale space of a recycled file).
    pub torn: bool,
}

/// Reads every record of a WAL file. `is_last` says whether this is the newest
/// WAL, the only one that may have a torn tail.
pub(crate) fn replay(storage: &dyn Storage, path: &Path, is_last: bool) -> Result<Replay> {
    let data = storage
        .read_all(path)
        .map_err(|e| Error::io(format!("reading WAL {}", path.display()), e))?;
    replay_bytes(&data, path, is_last)
}

fn word(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The header's generation and length, or why it is not a header.
fn parse_header(
    data: &[u8],
    name_no: Option<u64>,
) -> std::result::Result<(Generation, usize), &'static str> {
    if data.len() < HEADER_LEN_V1 || &data[0..8] != MAGIC {
        return Err("bad WAL header");
    }
    match word(data, 8) {
        Some(VERSION_1) => Ok((Generation::V1, HEADER_LEN_V1)),
        Some(version @ (VERSION_2 | VERSION)) => {
            let no = data
                .get(16..24)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            match no {
                Some(no) if word(data, 12) == Some(0) && name_no.is_none_or(|n| n == no) => {
                    let gen = if version == VERSION_2 {
                        Generation::V2(no)
                    } else {
                        Generation::V3(no)
                    };
                    Ok((gen, HEADER_LEN as usize))
                }
                Some(_) if word(data, 12) == Some(0) => {
                    Err("WAL header names another WAL number than the file name")
                }
                _ => Err("bad WAL header"),
            }
        }
        _ => Err("bad WAL header"),
    }
}

pub(crate) fn replay_bytes(data: &[u8], path: &Path, is_last: bool) -> Result<Replay> {
    let name_no = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_file_name);
    let (gen, header_len) = match parse_header(data, name_no) {
        Ok(h) => h,
        Err(why) => {
            // A crash between creating the file and syncing its header leaves a
            // short, zeroed, partly written or garbage header in the newest
            // WAL. Nothing in it was acknowledged: the header is synced before
            // the first record is appended, so no valid record (of either
            // version; version 2 with the number of the file's name) can
            // follow it. A whole header of a newer format version is refused
            // instead.
            let newer_format = data.len() >= HEADER_LEN_V1
                && &data[0..8] == MAGIC
                && word(data, 8).is_some_and(|v| v > VERSION)
                && word(data, 12) == Some(0);
            // The number a version 2 or 3 header names, if it is whole
            // (records under it with a file name saying otherwise are
            // corruption).
            let header_no = matches!(word(data, 8), Some(VERSION_2 | VERSION))
                .then(|| data.get(16..24)?.try_into().ok().map(u64::from_le_bytes))
                .flatten();
            let any_record = record_after(data, 0, Generation::V1).is_some()
                || [name_no, header_no]
                    .into_iter()
                    .flatten()
                    .flat_map(|no| [Generation::V2(no), Generation::V3(no)])
                    .any(|gen| record_after(data, 0, gen).is_some());
            if is_last && !newer_format && !any_record {
                return Ok(Replay {
                    batches: Vec::new(),
                    valid_len: 0,
                    torn: !data.is_empty(),
                });
            }
            if newer_format {
                return Err(Error::corruption(path, 8, "unsupported WAL format version"));
            }
            return Err(Error::corruption(path, 0, why));
        }
    };
    let mut pos = header_len;
    let mut batches = Vec::new();
    let mut last_lsn: Option<u64> = None;
    while pos < data.len() {
        match record_at(data, pos, gen) {
            Some((Rec::Batch(batch, _), n)) => {
                if let Some(prev) = last_lsn {
                    if batch.first_lsn <= prev {
                        return Err(Error::corruption(
                            path,
                            pos as u64,
                            "WAL sequence numbers go backwards",
                        ));
                    }
                }
                last_lsn = Some(batch.last_lsn());
                batches.push(batch);
                pos += n;
            }
            Some((Rec::End, n)) => {
                // Past the marker lies only stale space of a previous life.
                let end = pos + n;
                if let Some((at, _, _)) = record_after(data, end, gen) {
                    return Err(Error::corruption(
                        path,
                        at as u64,
                        "valid WAL record after the end-of-log marker",
                    ));
                }
                return Ok(Replay {
                    batches,
                    valid_len: end as u64,
                    torn: end < data.len(),
                });
            }
            None => {
                if !is_last {
                    return Err(Error::corruption(
                        path,
                        pos as u64,
                        "bad WAL record in a rotated WAL file",
                    ));
                }
                if synced_past(data, pos, gen) {
                    return Err(Error::corruption(
                        path,
                        pos as u64,
                        "bad WAL record followed by a record appended after it was synced",
                    ));
                }
                return Ok(Replay {
                    batches,
                    valid_len: pos as u64,
                    torn: true,
                });
            }
        }
    }
    Ok(Replay {
        batches,
        valid_len: pos as u64,
        torn: false,
    })
}

/// Finds a valid record of generation `gen` starting at or after `from`:
/// its offset, the record and its framed length.
fn record_after(data: &[u8], from: usize, gen: Generation) -> Option<(usize, Rec, usize)> {
    (from..data.len().saturating_sub(RECORD_HEADER_LEN - 1))
        .find_map(|p| record_at(data, p, gen).map(|(rec, n)| (p, rec, n)))
}

/// Whether a valid record after the bad one at `bad` proves that `bad` was
/// synced before the crash (see [`Rec::vouches_for`]).
fn synced_past(data: &[u8], bad: usize, gen: Generation) -> bool {
    let mut from = bad + 1;
    while let Some((at, rec, n)) = record_after(data, from, gen) {
        if rec.vouches_for(bad) {
            return true;
        }
        from = at + n;
    }
    false
}

/// The header (of the version written) of WAL number `no`.
fn header(no: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    put_u32(&mut header, VERSION);
    put_u32(&mut header, 0);
    put_u64(&mut header, no);
    header
}

/// The WAL file being appended to.
#[derive(Debug)]
pub(crate) struct WalWriter {
    pub file: Arc<dyn WritableFile>,
    pub no: u64,
    pub path: PathBuf,
    /// Bytes written so far in this WAL's life, header included (the write
    /// position: a recycled file may hold stale bytes after it).
    pub offset: u64,
    /// How far this WAL is known to be on stable storage.
    synced: u64,
    /// The `synced_to` the last record framed carried (the next one carries
    /// `synced` only if it is further).
    told: u64,
}

impl WalWriter {
    /// Creates WAL number `no` in `dir`, writes and syncs its header and syncs
    /// the directory, so the file itself survives a power loss.
    pub(crate) fn create(storage: &dyn Storage, dir: &Path, no: u64) -> Result<Self> {
        let path = dir.join(file_name(no));
        let ctx = |what: &str| format!("{what} WAL {}", path.display());
        let file = storage
            .create(&path)
            .map_err(|e| Error::io(ctx("creating"), e))?;
        file.append(&header(no))
            .map_err(|e| Error::io(ctx("writing header of"), e))?;
        file.sync_data().map_err(|e| Error::io(ctx("syncing"), e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io(ctx("syncing directory for"), e))?;
        Ok(WalWriter {
            file,
            no,
            path,
            offset: HEADER_LEN,
            synced: HEADER_LEN,
            told: 0,
        })
    }

    /// Reuses the obsolete WAL file `old_no` as WAL number `no` (`old_no` must
    /// be below the durable manifest's log number, so nothing reads it any
    /// more): overwrites its header in place and syncs it, renames the file
    /// and syncs the directory. Records then overwrite the old ones from the
    /// end of the header on.
    ///
    /// A crash before the rename is durable leaves the file under its old,
    /// obsolete name (deleted or reused at open); after it, the file has its
    /// new name and a durable header naming `no`, and stale records that fail
    /// their checksums. Returns `None`, having touched nothing, when the
    /// storage cannot overwrite files in place.
    pub(crate) fn recycle(
        storage: &dyn Storage,
        dir: &Path,
        old_no: u64,
        no: u64,
    ) -> Result<Option<Self>> {
        let old = dir.join(file_name(old_no));
        let path = dir.join(file_name(no));
        let ctx = |what: &str| {
            format!(
                "{what} WAL {} (recycled as {})",
                old.display(),
                file_name(no)
            )
        };
        let file = match storage.open_overwrite(&old) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(None),
            Err(e) => return Err(Error::io(ctx("opening"), e)),
        };
        file.append(&header(no))
            .map_err(|e| Error::io(ctx("writing header of"), e))?;
        file.sync_data().map_err(|e| Error::io(ctx("syncing"), e))?;
        storage
            .rename(&old, &path)
            .map_err(|e| Error::io(ctx("renaming"), e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io(ctx("syncing directory for"), e))?;
        Ok(Some(WalWriter {
            file,
            no,
            path,
            offset: HEADER_LEN,
            synced: HEADER_LEN,
            told: 0,
        }))
    }

    /// Frames a batch as this WAL's next record, with `synced_to` if a sync
    /// has returned since the last record was framed.
    pub(crate) fn record(&mut self, first_lsn: u64, timestamp: i64, ops: &[WalOp]) -> Vec<u8> {
        let synced_to = (self.synced > self.told).then_some(self.synced);
        self.told = self.synced;
        encode_record(self.no, synced_to, first_lsn, timestamp, ops)
    }

    /// Notes that an `fdatasync` of this file, issued when `offset` bytes
    /// had been written, has returned. Records appended later carry it.
    pub(crate) fn mark_synced(&mut self, offset: u64) {
        debug_assert!(offset <= self.offset);
        self.synced = self.synced.max(offset);
    }

    /// Appends one framed record (handed to the OS, not synced).
    pub(crate) fn append(&mut self, record: &[u8]) -> Result<u64> {
        self.file
            .append(record)
            .map_err(|e| Error::io(format!("appending to WAL {}", self.path.display()), e))?;
        self.offset += record.len() as u64;
        Ok(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;

    fn op(k: &[u8], v: &[u8]) -> WalOp {
        WalOp {
            op: Operation::Put,
            ttl: 5,
            key: k.to_vec(),
            value: v.to_vec(),
        }
    }

    /// A version 1 record (checksum over the payload alone), as edgestore
    /// wrote before WAL recycling.
    fn encode_record_v1(first_lsn: u64, timestamp: i64, ops: &[WalOp]) -> Vec<u8> {
        frame(
            Generation::V1,
            encode_payload(first_lsn, timestamp, None, ops),
        )
    }

    /// Appends a batch as the writer's next record, as a buffered write
    /// does; returns where the record starts.
    fn append_buffered(w: &mut WalWriter, first_lsn: u64, timestamp: i64, ops: &[WalOp]) -> usize {
        let start = w.offset as usize;
        let rec = w.record(first_lsn, timestamp, ops);
        w.append(&rec).unwrap();
        start
    }

    /// Appends a batch as the writer's next record and syncs it, as a
    /// durable write does; returns where the record starts.
    fn append_synced(w: &mut WalWriter, first_lsn: u64, timestamp: i64, ops: &[WalOp]) -> usize {
        let start = append_buffered(w, first_lsn, timestamp, ops);
        w.file.sync_data().unwrap();
        let end = w.offset;
        w.mark_synced(end);
        start
    }

    fn v1_header() -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        h
    }

    fn write_wal(dir: &Path, batches: &[(u64, Vec<WalOp>)]) -> PathBuf {
        let mut w = WalWriter::create(&FsStorage, dir, 1).unwrap();
        for (lsn, ops) in batches {
            append_synced(&mut w, *lsn, 42, ops);
        }
        w.path.clone()
    }

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_wal(
            dir.path(),
            &[
                (1, vec![op(b"a", b"1"), op(b"b", b"")]),
                (3, vec![op(b"c", b"3")]),
            ],
        );
        let r = replay(&FsStorage, &p, true).unwrap();
        assert!(!r.torn);
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[0].ops[1].key, b"b");
        assert_eq!(r.batches[1].first_lsn, 3);
        assert_eq!(r.batches[0].timestamp, 42);
    }

    #[test]
    fn torn_tail_is_cut_and_prefix_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_wal(
            dir.path(),
            &[(1, vec![op(b"a", b"1")]), (2, vec![op(b"b", b"2")])],
        );
        let full = std::fs::read(&p).unwrap();
        for cut in HEADER_LEN as usize..full.len() {
            let r = replay_bytes(&full[..cut], &p, true).unwrap();
            assert!(r.batches.len() <= 2);
            let expect = if cut == full.len() {
                2
            } else {
                r.batches.len()
            };
            assert_eq!(r.batches.len(), expect);
            assert!(r.valid_len as usize <= cut);
        }
        // Not allowed in an older file.
        let cut = full.len() - 3;
        assert!(matches!(
            replay_bytes(&full[..cut], &p, false),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn torn_header_of_the_newest_wal_is_a_crash_during_creation() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_wal(dir.path(), &[]);
        let header = std::fs::read(&p).unwrap();
        // Every partly written header, the rest zeros or garbage (found by the
        // crash-point enumeration: open failed with "bad WAL header").
        for keep in 0..HEADER_LEN as usize {
            for fill in [0u8, 0xA5] {
                let mut d = header.clone();
                d[keep..].fill(fill);
                if d == header {
                    continue;
                }
                let r = replay_bytes(&d, &p, true).unwrap();
                assert!(r.batches.is_empty() && r.valid_len == 0, "keep {keep}");
                assert!(replay_bytes(&d, &p, false).is_err());
            }
        }
        // A bad header followed by a valid record is corruption, not a torn creation.
        let p = write_wal(dir.path(), &[(1, vec![op(b"a", b"1")])]);
        let mut d = std::fs::read(&p).unwrap();
        d[0] ^= 1;
        assert!(matches!(
            replay_bytes(&d, &p, true),
            Err(Error::Corruption { .. })
        ));
        // A whole header of a newer format is refused.
        let mut d = header.clone();
        d[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert!(matches!(
            replay_bytes(&d, &p, true),
            Err(Error::Corruption { offset: 8, .. })
        ));
    }

    #[test]
    fn corruption_in_the_middle_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_wal(
            dir.path(),
            &[(1, vec![op(b"a", b"1")]), (2, vec![op(b"b", b"2")])],
        );
        let mut data = std::fs::read(&p).unwrap();
        data[HEADER_LEN as usize + RECORD_HEADER_LEN + 2] ^= 0x40;
        match replay_bytes(&data, &p, true) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, HEADER_LEN),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn overflowing_sequence_numbers_are_a_bad_record() {
        // Found by the `wal` fuzz target: first_lsn near u64::MAX made
        // `last_lsn` (and the engine's next LSN) overflow.
        for (first, n) in [(u64::MAX, 1), (u64::MAX - 1, 2), (u64::MAX, 0)] {
            let ops: Vec<WalOp> = (0..n).map(|_| op(b"k", b"v")).collect();
            let mut data = v1_header();
            data.extend_from_slice(&encode_record_v1(first, 1, &ops));
            let p = Path::new("x.wal");
            let r = replay_bytes(&data, p, true).unwrap();
            assert!(r.batches.is_empty() && r.torn);
            assert!(matches!(
                replay_bytes(&data, p, false),
                Err(Error::Corruption { .. })
            ));
        }
        let ok = encode_record_v1(u64::MAX - 2, 1, &[op(b"a", b""), op(b"b", b"")]);
        let mut data = v1_header();
        data.extend_from_slice(&ok);
        let r = replay_bytes(&data, Path::new("x.wal"), false).unwrap();
        assert_eq!(r.batches[0].last_lsn(), u64::MAX - 1);
    }

    #[test]
    fn every_bit_flip_is_detected_or_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_wal(
            dir.path(),
            &[(1, vec![op(b"k1", b"v1")]), (2, vec![op(b"k2", b"v2")])],
        );
        let good = replay_bytes(&std::fs::read(&p).unwrap(), &p, true)
            .unwrap()
            .batches;
        let data = std::fs::read(&p).unwrap();
        for bit in 0..data.len() * 8 {
            let mut d = data.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            match replay_bytes(&d, &p, true) {
                // A flip in the last record looks like a torn tail: a prefix survives.
                Ok(r) => assert_eq!(r.batches[..], good[..r.batches.len()]),
                Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }

    /// WAL 1 with 30 large records and its end marker, recycled as WAL 2
    /// holding `n` small records (synced, no marker). Returns the path of
    /// WAL 2, its bytes, WAL 1's bytes, and where each new record starts.
    fn recycled(dir: &Path, n: u64) -> (PathBuf, Vec<u8>, Vec<u8>, Vec<usize>) {
        let mut w = WalWriter::create(&FsStorage, dir, 1).unwrap();
        for i in 0..30u64 {
            append_buffered(
                &mut w,
                1 + i,
                7,
                &[op(format!("old{i}").as_bytes(), &[b'o'; 200])],
            );
        }
        w.append(&end_marker(1)).unwrap();
        w.file.sync_data().unwrap();
        let old = std::fs::read(&w.path).unwrap();
        drop(w);
        let mut w = WalWriter::recycle(&FsStorage, dir, 1, 2).unwrap().unwrap();
        assert!(!dir.join(file_name(1)).exists(), "renamed, not copied");
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(append_synced(
                &mut w,
                100 + i,
                9,
                &[op(format!("new{i}").as_bytes(), b"v")],
            ));
        }
        let data = std::fs::read(&w.path).unwrap();
        (w.path.clone(), data, old, starts)
    }

    #[test]
    fn recycled_wal_with_longer_stale_content_replays_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (p, data, old, starts) = recycled(dir.path(), 2);
        // Written over the old contents in place: the file did not grow.
        assert_eq!(data.len(), old.len());
        let end = starts[1] + encode_record(2, Some(0), 101, 9, &[op(b"new1", b"v")]).len();
        let r = replay(&FsStorage, &p, true).unwrap();
        let keys: Vec<&[u8]> = r.batches.iter().map(|b| &b.ops[0].key[..]).collect();
        assert_eq!(keys, [&b"new0"[..], b"new1"], "no stale record resurrected");
        assert_eq!(r.valid_len as usize, end);
        assert!(r.torn, "the stale rest is cut");
        // Stale records of the old life fail their checksums under number 2
        // everywhere in the file (they did validate as WAL 1).
        for pos in end..data.len() {
            assert!(
                record_at(&data, pos, Generation::V2(2)).is_none(),
                "at {pos}"
            );
        }
        assert!((0..old.len()).any(|p| record_at(&old, p, Generation::V2(1)).is_some()));
        // A rotated WAL ends with its marker; stale bytes after it are ignored.
        assert!(matches!(
            replay_bytes(&data, &p, false),
            Err(Error::Corruption { .. })
        ));
        let mut with_marker = data[..end].to_vec();
        with_marker.extend_from_slice(&end_marker(2));
        let marker_end = with_marker.len();
        with_marker.extend_from_slice(&data[marker_end..]);
        let r = replay_bytes(&with_marker, &p, false).unwrap();
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.valid_len as usize, marker_end);
        // A valid record of this WAL after its marker is corruption.
        let mut after = with_marker[..marker_end].to_vec();
        after.extend_from_slice(&encode_record(
            2,
            Some(HEADER_LEN),
            200,
            9,
            &[op(b"x", b"y")],
        ));
        assert!(matches!(
            replay_bytes(&after, &p, false),
            Err(Error::Corruption { .. })
        ));
        // The engine's open cuts the stale rest; then the file replays clean.
        FsStorage.truncate(&p, r.valid_len).unwrap();
    }

    #[test]
    fn torn_record_followed_by_stale_records_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (p, data, old, starts) = recycled(dir.path(), 3);
        let third_end = starts[2] + encode_record(2, Some(0), 102, 9, &[op(b"new2", b"v")]).len();
        // Every way the third record's write may have been torn: a prefix
        // reached the disk, the rest still holds the old file's bytes (or zeros).
        for keep in 0..third_end - starts[2] {
            for stale in [true, false] {
                let mut d = data.clone();
                let from = starts[2] + keep;
                if stale {
                    d[from..third_end].copy_from_slice(&old[from..third_end]);
                } else {
                    d[from..third_end].fill(0);
                }
                let r = replay_bytes(&d, &p, true).unwrap();
                assert_eq!(r.batches.len(), 2, "keep {keep} stale {stale}");
                assert_eq!(r.valid_len as usize, starts[2]);
                assert!(r.torn);
            }
        }
    }

    #[test]
    fn bad_record_followed_by_a_current_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (p, data, _, starts) = recycled(dir.path(), 3);
        let mut d = data.clone();
        d[starts[1] + RECORD_HEADER_LEN + 3] ^= 0x08;
        match replay_bytes(&d, &p, true) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset as usize, starts[1]),
            other => panic!("expected corruption, got {other:?}"),
        }
        // The same damage in the last record is a torn tail.
        let mut d = data.clone();
        d[starts[2] + RECORD_HEADER_LEN + 3] ^= 0x08;
        assert_eq!(replay_bytes(&d, &p, true).unwrap().batches.len(), 2);
    }

    #[test]
    fn version_1_files_still_replay() {
        let mut data = v1_header();
        data.extend_from_slice(&encode_record_v1(1, 5, &[op(b"a", b"1")]));
        data.extend_from_slice(&encode_record_v1(2, 5, &[op(b"b", b"2")]));
        let p = Path::new("00000000000000000003.wal");
        let r = replay_bytes(&data, p, false).unwrap();
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[1].ops[0].key, b"b");
        assert!(!r.torn);
        let cut = replay_bytes(&data[..data.len() - 2], p, true).unwrap();
        assert_eq!((cut.batches.len(), cut.torn), (1, true));
        // The versions' records do not validate under each other's rules.
        let mut mixed = v1_header();
        mixed.extend_from_slice(&encode_record(3, Some(HEADER_LEN), 1, 5, &[op(b"a", b"1")]));
        assert!(replay_bytes(&mixed, p, true).unwrap().batches.is_empty());
        let mut mixed = header(3);
        mixed.extend_from_slice(&encode_record_v1(1, 5, &[op(b"a", b"1")]));
        assert!(replay_bytes(&mixed, p, true).unwrap().batches.is_empty());
    }

    #[test]
    fn header_number_must_match_the_file_name() {
        let mut data = header(2);
        data.extend_from_slice(&encode_record(2, Some(HEADER_LEN), 1, 5, &[op(b"a", b"1")]));
        let name = |no: u64| PathBuf::from(file_name(no));
        assert_eq!(
            replay_bytes(&data, &name(2), false).unwrap().batches.len(),
            1
        );
        // Under another name its records are not silently dropped.
        for last in [true, false] {
            assert!(matches!(
                replay_bytes(&data, &name(3), last),
                Err(Error::Corruption { offset: 0, .. })
            ));
        }
    }

    #[test]
    fn garbage_lengths_in_stale_space_are_bounded() {
        let mut data = header(1);
        data.extend_from_slice(&encode_record(1, Some(HEADER_LEN), 1, 5, &[op(b"a", b"1")]));
        let valid = data.len();
        for len in [u32::MAX, MAX_RECORD_LEN as u32, 1 << 30, 64] {
            let mut d = data.clone();
            d.extend_from_slice(&len.to_le_bytes());
            d.extend_from_slice(&(!len).to_le_bytes());
            d.extend_from_slice(&[0xEE; 100]);
            let r = replay_bytes(&d, Path::new(&file_name(1)), true).unwrap();
            assert_eq!((r.batches.len(), r.valid_len as usize), (1, valid));
        }
    }

    /// WAL 1 with `synced` records appended and synced one by one (durable
    /// writes), then `unsynced` more appended without a sync (buffered
    /// writes). Returns its path, bytes and where each record starts.
    fn partly_synced(dir: &Path, synced: u64, unsynced: u64) -> (PathBuf, Vec<u8>, Vec<usize>) {
        let mut w = WalWriter::create(&FsStorage, dir, 1).unwrap();
        let mut starts = Vec::new();
        for i in 0..synced {
            starts.push(append_synced(
                &mut w,
                1 + i,
                3,
                &[op(format!("s{i}").as_bytes(), b"v")],
            ));
        }
        for i in 0..unsynced {
            let ops = [op(format!("u{i}").as_bytes(), b"v")];
            starts.push(append_buffered(&mut w, 1 + synced + i, 3, &ops));
        }
        w.file.sync_data().unwrap();
        (w.path.clone(), std::fs::read(&w.path).unwrap(), starts)
    }

    #[test]
    fn a_crash_that_keeps_a_later_unsynced_write_and_loses_an_earlier_one_is_a_torn_tail() {
        // Writeback in any order: of the unsynced records, any subset may have
        // reached the disk. The rest read as zeros (a new file) or as the
        // stale bytes of a previous life (a recycled one).
        let dir = tempfile::tempdir().unwrap();
        let (p, data, starts) = partly_synced(dir.path(), 2, 4);
        for kept in 0u32..16 {
            for stale in [0u8, 0x5A] {
                let mut d = data.clone();
                for u in 0..4 {
                    if kept & (1 << u) == 0 {
                        let from = starts[2 + u];
                        let to = starts.get(3 + u).copied().unwrap_or(data.len());
                        d[from..to].fill(stale);
                    }
                }
                let r =
                    replay_bytes(&d, &p, true).unwrap_or_else(|e| panic!("kept {kept:#b}: {e}"));
                // The synced records and the unsynced prefix up to the first hole.
                let prefix = (kept.trailing_ones() as usize).min(4);
                assert_eq!(r.batches.len(), 2 + prefix, "kept {kept:#b}");
                if prefix < 4 {
                    assert_eq!(r.valid_len as usize, starts[2 + prefix]);
                    assert!(r.torn);
                }
            }
        }
    }

    #[test]
    fn damage_a_later_record_proves_synced_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        // Three durable records, then one appended after their sync.
        let (p, data, starts) = partly_synced(dir.path(), 3, 1);
        for bad in 0..3 {
            let mut d = data.clone();
            d[starts[bad] + RECORD_HEADER_LEN + 1] ^= 0x10;
            match replay_bytes(&d, &p, true) {
                Err(Error::Corruption { offset, .. }) => assert_eq!(offset as usize, starts[bad]),
                other => panic!("record {bad}: expected corruption, got {other:?}"),
            }
        }
        // Damage to the last record: nothing vouches for it, a torn tail.
        let mut d = data.clone();
        d[starts[3] + RECORD_HEADER_LEN + 1] ^= 0x10;
        assert_eq!(replay_bytes(&d, &p, true).unwrap().batches.len(), 3);
        // An end marker after a hole vouches for nothing: it is appended at a
        // rotation before the sync that completes the WAL.
        let mut d = data[..starts[3]].to_vec();
        d.extend_from_slice(&end_marker(1));
        d[starts[2]..starts[3]].fill(0);
        let r = replay_bytes(&d, &p, true).unwrap();
        assert_eq!((r.batches.len(), r.valid_len as usize), (2, starts[2]));
    }

    #[test]
    fn only_the_first_record_after_a_sync_carries_synced_to() {
        let dir = tempfile::tempdir().unwrap();
        let (_, data, starts) = partly_synced(dir.path(), 2, 3);
        let told: Vec<u64> = starts
            .iter()
            .map(|&at| match record_at(&data, at, Generation::V3(1)) {
                Some((Rec::Batch(_, s), _)) => s,
                _ => panic!("no record at {at}"),
            })
            .collect();
        // Each durable record follows the sync of everything before it; of
        // the buffered ones only the first says how far that sync reached.
        assert_eq!(
            told,
            [starts[0] as u64, starts[1] as u64, starts[2] as u64, 0, 0]
        );
        assert_eq!(starts[4] - starts[3], starts[3] - starts[2] - 8);
    }

    #[test]
    fn a_record_claiming_a_synced_extent_past_itself_is_not_valid() {
        let mut data = header(1);
        let at = data.len() as u64;
        data.extend_from_slice(&encode_record(1, Some(at), 1, 5, &[op(b"a", b"1")]));
        let p = PathBuf::from(file_name(1));
        assert_eq!(replay_bytes(&data, &p, false).unwrap().batches.len(), 1);
        let mut data = header(1);
        data.extend_from_slice(&encode_record(1, Some(at + 1), 1, 5, &[op(b"a", b"1")]));
        assert!(replay_bytes(&data, &p, false).is_err());
    }

    #[test]
    fn version_2_files_still_replay_and_keep_their_stricter_rule() {
        let mut data = header(4);
        data[8..12].copy_from_slice(&VERSION_2.to_le_bytes());
        let record = |lsn: u64, k: &[u8]| {
            frame(
                Generation::V2(4),
                encode_payload(lsn, 5, None, &[op(k, b"v")]),
            )
        };
        let first = data.len();
        data.extend_from_slice(&record(1, b"a"));
        let second = data.len();
        data.extend_from_slice(&record(2, b"b"));
        let p = PathBuf::from(file_name(4));
        let r = replay_bytes(&data, &p, false).unwrap();
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[1].ops[0].key, b"b");
        // Version 2 records carry no synced extent: any valid record after a
        // bad one makes it corruption, as when they were written.
        let mut d = data.clone();
        d[first..second].fill(0);
        assert!(matches!(
            replay_bytes(&d, &p, true),
            Err(Error::Corruption { .. })
        ));
        // Version 3 records do not validate in a version 2 file.
        let mut d = data[..first].to_vec();
        d.extend_from_slice(&encode_record(4, Some(HEADER_LEN), 1, 5, &[op(b"a", b"v")]));
        assert!(replay_bytes(&d, &p, true).unwrap().batches.is_empty());
    }
}
