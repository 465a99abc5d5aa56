//! Bodies of the cargo-fuzz targets of edgestore, shared by the fuzz binaries
//! (`core/fuzz/fuzz_targets/*.rs`) and by `core/tests/fuzz_corpus.rs`, which
//! includes this file with `#[path]` and replays the checked-in corpus and
//! every crasher through the same functions under `cargo test`.
//!
//! Each target panics when it finds a bug and returns normally otherwise:
//!
//! * [`wal`]: one WAL file, replayed by `Engine::open`, compared with an
//!   independent decoder of the format in FORMAT.md (torn-tail and corruption
//!   rules included); a successful open must survive a reopen unchanged.
//! * [`segment`]: one segment file opened with `SegmentReader`; whatever opens
//!   and verifies must read back consistently (scan, point lookups, iterator).
//! * [`manifest`]: one manifest file; whatever decodes must re-encode and
//!   decode to the same state.
//! * [`ops`]: an operation sequence (put, delete, batch, get, scan, snapshot,
//!   flush, compaction, clock advance, reopen, crash) against the engine and
//!   a `BTreeMap` model.
//!
//! Checksums stop a fuzzer at the first CRC, so the file targets read a flag
//! byte first: with bit 0 set, the input's checksums (and length fields the
//! format duplicates) are recomputed before it is parsed, which lets the
//! fuzzer reach the decoders behind them, as a forged or unlucky file would.
//! Every file lives in [`MemStorage`], an in-memory `Storage`, so a run
//! touches no disk.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use edgestore::error::Error;
use edgestore::fault::{CrashMode, FaultKind, FaultStorage};
use edgestore::manifest::{Manifest, ManifestEdit};
use edgestore::segment::SegmentReader;
use edgestore::storage::{DirLock, ReadableFile, Storage, WritableFile};
use edgestore::types::{death_time, decode_key};
use edgestore::{EdgestoreConfig, Engine, ManualClock, SyncMode, WriteBatch};

// ---------------------------------------------------------------------------
// In-memory storage.

#[derive(Debug, Default)]
struct MemFile {
    data: RwLock<Vec<u8>>,
}

/// A file being written from `pos` on (0 when reopened to be overwritten).
#[derive(Debug)]
struct MemWritable {
    file: Arc<MemFile>,
    pos: Mutex<usize>,
}

impl WritableFile for MemWritable {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut pos = self.pos.lock().unwrap_or_else(|p| p.into_inner());
        let mut data = self.file.data.write().unwrap_or_else(|p| p.into_inner());
        let end = *pos + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[*pos..end].copy_from_slice(buf);
        *pos = end;
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemReadable(Arc<MemFile>);

impl ReadableFile for MemReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.0.data.read().unwrap_or_else(|p| p.into_inner());
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            )),
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.data.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
}

#[derive(Debug, Default)]
struct MemState {
    files: BTreeMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
}

/// A `Storage` that keeps every file in memory. Everything written is
/// "durable" (a crash here is a process crash: the data stays).
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
    locks: Arc<Mutex<HashSet<PathBuf>>>,
}

#[derive(Debug)]
struct MemLock {
    locks: Arc<Mutex<HashSet<PathBuf>>>,
    path: PathBuf,
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemStorage {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates (or replaces) a file with `data`, and its directory.
    pub fn put_file(&self, path: &Path, data: &[u8]) {
        let mut st = self.state();
        if let Some(dir) = path.parent() {
            st.dirs.insert(dir.to_path_buf());
        }
        st.files.insert(
            path.to_path_buf(),
            Arc::new(MemFile {
                data: RwLock::new(data.to_vec()),
            }),
        );
    }

    /// The contents of a file, if it exists.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        st.files
            .get(path)
            .map(|f| f.data.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        for a in dir.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn open_overwrite(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let st = self.state();
        let f = st.files.get(path).cloned().ok_or_else(|| not_found(path))?;
        Ok(Arc::new(MemWritable {
            file: f,
            pos: Mutex::new(0),
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let mut st = self.state();
        let dir = path.parent().unwrap_or(Path::new(""));
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let f = Arc::new(MemFile::default());
        st.files.insert(path.to_path_buf(), Arc::clone(&f));
        Ok(Arc::new(MemWritable {
            file: f,
            pos: Mutex::new(0),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let st = self.state();
        let f = st.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(Arc::new(MemReadable(Arc::clone(f))))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        let f = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.state().dirs.contains(dir) {
            Ok(())
        } else {
            Err(not_found(dir))
        }
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = st.files.keys();
        let dirs = st.dirs.iter();
        Ok(files
            .chain(dirs)
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.state();
        Ok(st.files.contains_key(path) || st.dirs.contains(path))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let st = self.state();
        let f = st.files.get(path).ok_or_else(|| not_found(path))?;
        let mut data = f.data.write().unwrap_or_else(|p| p.into_inner());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        data.resize(len, 0);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut held = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if !held.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "lock held"));
        }
        if let Some(dir) = path.parent() {
            self.create_dir_all(dir)?;
        }
        let _ = self.state().files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(MemLock {
            locks: Arc::clone(&self.locks),
            path: path.to_path_buf(),
        }))
    }
}

// ---------------------------------------------------------------------------
// Little helpers.

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = at.checked_add(4).and_then(|end| b.get_mut(at..end)) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// A byte cursor over fuzz input that yields zeros once exhausted.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// A `(namespace, user key)` pair.
type NsKey = (Vec<u8>, Vec<u8>);

/// Every live `(namespace, key) -> value` of the namespaces in `nss`.
fn dump(db: &Engine, nss: &BTreeSet<Vec<u8>>) -> BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>> {
    let mut out = BTreeMap::new();
    for ns in nss {
        for (k, v) in db.prefix(ns, b"").expect("scan of an opened database") {
            out.insert((ns.clone(), k), v);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// WAL.

const WAL_MAGIC: &[u8; 8] = b"EDGWAL\0\x01";
/// Header length of version 1 files; versions 2 and 3 add the WAL number (u64).
const WAL_HEADER_LEN: usize = 16;
const WAL_HEADER_LEN_V2: usize = 24;
/// The newest WAL format version (records carry `synced_to`).
const WAL_VERSION: u32 = 3;
const WAL_RECORD_HEADER_LEN: usize = 12;
/// The fixed clock of the WAL target, in nanoseconds.
const WAL_NOW: i64 = 1_000_000_000_000;

/// One decoded WAL op: (op byte, ttl, internal key, value).
type RefOp = (u8, u32, Vec<u8>, Vec<u8>);
/// One decoded WAL batch: (first LSN, timestamp, ops).
type RefBatch = (u64, i64, Vec<RefOp>);
/// A WAL's record rules: the number its checksums cover (`None`: version 1)
/// and whether payloads may carry `synced_to` (version 3).
type RefGen = (Option<u64>, bool);

/// The record checksum: version 1 covers the payload, version 2 (`Some(no)`)
/// the WAL's number (u64 LE) and then the payload.
fn wal_crc(gen: Option<u64>, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if let Some(no) = gen {
        h.update(&no.to_le_bytes());
    }
    h.update(payload);
    h.finalize()
}

/// The record rules and header length a WAL header declares (versions 2
/// and 3 with the number they name), if it is a whole header of a known
/// version.
fn wal_header(data: &[u8]) -> Option<(RefGen, usize)> {
    if data.len() < WAL_HEADER_LEN || &data[..8] != WAL_MAGIC {
        return None;
    }
    match u32_at(data, 8)? {
        1 => Some(((None, false), WAL_HEADER_LEN)),
        v @ (2 | 3) if u32_at(data, 12) == Some(0) => {
            Some(((Some(u64_at(data, 16)?), v == 3), WAL_HEADER_LEN_V2))
        }
        _ => None,
    }
}

/// Recomputes `!len` and the CRC of every record whose payload fits.
fn fix_wal(data: &mut [u8]) {
    let ((gen, _), mut pos) = wal_header(data).unwrap_or(((None, false), WAL_HEADER_LEN));
    while let Some(len) = u32_at(data, pos) {
        let start = pos + WAL_RECORD_HEADER_LEN;
        let Some(end) = start.checked_add(len as usize).filter(|&e| e <= data.len()) else {
            return;
        };
        set_u32(data, pos + 4, !len);
        let crc = wal_crc(gen, &data[start..end]);
        set_u32(data, pos + 8, crc);
        pos = end;
    }
}

/// The reference decoder's view of one record payload: in version 3
/// (`v3`), bit 31 of the op count says a `synced_to` u64 follows it
/// (returned beside the batch).
fn ref_payload(p: &[u8], v3: bool) -> Option<(RefBatch, Option<u64>)> {
    let first_lsn = u64_at(p, 0)?;
    let ts = i64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    let mut count = u32_at(p, 16)?;
    let mut pos = 20usize;
    let mut synced_to = None;
    if v3 && count >> 31 == 1 {
        count &= 0x7fff_ffff;
        synced_to = Some(u64_at(p, 20)?);
        pos = 28;
    }
    let mut ops = Vec::new();
    for _ in 0..count {
        let kind = *p.get(pos)?;
        if kind != 1 && kind != 2 {
            return None;
        }
        let ttl = u32_at(p, pos + 1)?;
        let klen = u32_at(p, pos + 5)? as usize;
        let key = p.get(pos + 9..(pos + 9).checked_add(klen)?)?.to_vec();
        pos += 9 + klen;
        let vlen = u32_at(p, pos)? as usize;
        let value = p.get(pos + 4..(pos + 4).checked_add(vlen)?)?.to_vec();
        pos += 4 + vlen;
        ops.push((kind, ttl, key, value));
    }
    if pos != p.len() {
        return None;
    }
    // A batch's last sequence number must leave room for the next one.
    first_lsn.checked_add(u64::from(count.max(1)))?;
    Some(((first_lsn, ts, ops), synced_to))
}

/// A valid record under the rules of its WAL: a batch and its `synced_to`,
/// or an end-of-log marker (versions 2 and 3, an empty record).
enum RefRec {
    Batch(RefBatch, Option<u64>),
    End,
}

/// A valid record at `pos` under the rules of `gen`, and its framed length.
/// A version 3 record claiming a synced extent past its own start is not
/// valid (no writer makes one).
fn ref_record(data: &[u8], pos: usize, (gen, with_synced): RefGen) -> Option<(RefRec, usize)> {
    let len = u32_at(data, pos)?;
    let inv = u32_at(data, pos + 4)?;
    let crc = u32_at(data, pos + 8)?;
    if len != !inv {
        return None;
    }
    let start = pos + WAL_RECORD_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len as usize)?)?;
    if wal_crc(gen, payload) != crc {
        return None;
    }
    let n = WAL_RECORD_HEADER_LEN + len as usize;
    if len == 0 {
        return gen.map(|_| (RefRec::End, n));
    }
    let (batch, synced_to) = ref_payload(payload, with_synced)?;
    if synced_to.is_some_and(|s| s > pos as u64) {
        return None;
    }
    Some((RefRec::Batch(batch, synced_to), n))
}

/// What FORMAT.md says replaying `data` as the newest (`is_last`) or a
/// rotated WAL must give: `None` for corruption, else the batches kept.
fn ref_replay(data: &[u8], is_last: bool) -> Option<Vec<RefBatch>> {
    // The file is WAL number 1: a version 2 header must name 1.
    let header = wal_header(data).filter(|h| h.0 .0.is_none_or(|no| no == 1));
    let Some((gen, header_len)) = header else {
        // The newest WAL with a bad header and no valid record anywhere was
        // being created at a crash (nothing in it was acknowledged), unless
        // its header is a whole one of a newer format.
        let newer_format = data.len() >= WAL_HEADER_LEN
            && &data[..8] == WAL_MAGIC
            && u32_at(data, 8).is_some_and(|v| v > WAL_VERSION)
            && u32_at(data, 12) == Some(0);
        // Records of version 1, of WAL 1, or of the number a version 2 or 3
        // header names, even one whose reserved word is not 0 (under either
        // version's payload layout): records that validate under it are not
        // a crash's leftovers.
        let mut nos = vec![Some(1)];
        nos.push(
            matches!(u32_at(data, 8), Some(2 | 3))
                .then(|| u64_at(data, 16))
                .flatten(),
        );
        let mut gens = vec![(None, false)];
        for no in nos.into_iter().flatten() {
            gens.extend([(Some(no), false), (Some(no), true)]);
        }
        let any_record =
            (0..data.len()).any(|p| gens.iter().any(|&g| ref_record(data, p, g).is_some()));
        return (is_last && !newer_format && !any_record).then(Vec::new);
    };
    let mut pos = header_len;
    let mut out: Vec<RefBatch> = Vec::new();
    while pos < data.len() {
        match ref_record(data, pos, gen) {
            Some((RefRec::End, n)) => {
                // End-of-log marker: no valid record of this WAL may follow.
                let later = (pos + n..data.len()).any(|p| ref_record(data, p, gen).is_some());
                return (!later).then_some(out);
            }
            Some((RefRec::Batch(b, _), n)) => {
                if let Some(prev) = out.last() {
                    let prev_last = prev.0 + (prev.2.len() as u64).saturating_sub(1);
                    if b.0 <= prev_last {
                        return None;
                    }
                }
                out.push(b);
                pos += n;
            }
            None => {
                // Cut as an unsynced tail unless a later batch proves `pos`
                // was synced: one that says it was appended when the WAL was
                // synced past `pos` (in versions 1 and 2, which do not say,
                // any batch).
                let vouched = (pos + 1..data.len()).any(|p| match ref_record(data, p, gen) {
                    Some((RefRec::Batch(_, synced_to), _)) => {
                        !gen.1 || synced_to.is_some_and(|s| s > pos as u64)
                    }
                    _ => false,
                });
                return (is_last && !vouched).then_some(out);
            }
        }
    }
    Some(out)
}

/// How many batches the reference decoder keeps from `data` (`None`:
/// corruption).
pub fn wal_reference(data: &[u8], is_last: bool) -> Option<usize> {
    ref_replay(data, is_last).map(|b| b.len())
}

/// WAL target. Input: flag byte (bit 0: fix checksums; bit 1: the file is a
/// rotated WAL, followed by a newer empty one), then the bytes of WAL file 1.
pub fn wal(input: &[u8]) {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let mut data = body.to_vec();
    if flags & 1 != 0 {
        fix_wal(&mut data);
    }
    let rotated = flags & 2 != 0;
    let expect = ref_replay(&data, !rotated);

    let storage = MemStorage::default();
    let dir = Path::new("/db");
    // A database starts with its (empty) manifest: open refuses WAL files
    // without one as a damaged database.
    storage.create_dir_all(dir).expect("create /db");
    Manifest::open_with(
        Arc::new(storage.clone()),
        &dir.join(edgestore::manifest::FILE_NAME),
    )
    .expect("an empty manifest");
    let wal1 = dir.join(format!("{:020}.wal", 1));
    storage.put_file(&wal1, &data);
    if rotated {
        let mut empty = WAL_MAGIC.to_vec();
        empty.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        storage.put_file(&dir.join(format!("{:020}.wal", 2)), &empty);
    }
    let clock = ManualClock::new(WAL_NOW);
    let config = || {
        let mut c = EdgestoreConfig::new(dir);
        c.storage = Arc::new(storage.clone());
        c.clock = Arc::new(clock.clone());
        c
    };
    let opened = Engine::open(config());
    let Some(batches) = expect else {
        match opened {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, wal1),
            Err(e) => panic!("corrupt WAL gave a non-corruption error: {e}"),
            Ok(_) => panic!("corrupt WAL opened"),
        }
        return;
    };
    let db = opened.unwrap_or_else(|e| panic!("valid WAL failed to open: {e}"));
    // The model: later sequence numbers win; batches at LSN 0 predate the
    // (empty) manifest's last_lsn and are skipped.
    let mut model: BTreeMap<NsKey, Option<Vec<u8>>> = BTreeMap::new();
    let mut nss = BTreeSet::new();
    for (first_lsn, ts, ops) in &batches {
        let last = first_lsn + (ops.len() as u64).saturating_sub(1);
        if last == 0 {
            continue;
        }
        for (kind, ttl, key, value) in ops {
            let Some((ns, k)) = decode_key(key) else {
                continue;
            };
            nss.insert(ns.to_vec());
            let live = *kind == 1 && WAL_NOW < death_time(*ts, *ttl);
            model.insert((ns.to_vec(), k.to_vec()), live.then(|| value.clone()));
        }
    }
    let model: BTreeMap<_, _> = model
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let got = dump(&db, &nss);
    assert_eq!(
        got, model,
        "replayed WAL differs from the reference decoder"
    );
    for ((ns, k), v) in &model {
        assert_eq!(db.get(ns, k).expect("get").as_ref(), Some(v));
    }
    db.verify().expect("verify after replay");
    db.close().expect("close");
    drop(db);
    let db = Engine::open(config()).unwrap_or_else(|e| panic!("reopen failed: {e}"));
    assert_eq!(dump(&db, &nss), model, "reopen changed the data");
}

// ---------------------------------------------------------------------------
// Segment.

const SEG_FOOTER_LEN: usize = 64;

/// Recomputes the checksums of the blocks, sections and footer.
fn fix_segment(data: &mut [u8]) {
    let len = data.len();
    if len < 16 + SEG_FOOTER_LEN {
        return;
    }
    let f = len - SEG_FOOTER_LEN;
    let field = |d: &[u8], i: usize| u64_at(d, f + 8 * i).and_then(|v| usize::try_from(v).ok());
    let section = |d: &[u8], i: usize| -> Option<(usize, usize)> {
        let (off, n) = (field(d, 2 * i)?, field(d, 2 * i + 1)?);
        (n >= 4 && off >= 16 && off.checked_add(n)? <= f).then_some((off, n))
    };
    // Blocks first: the index (section 0) says where they are.
    if let Some((off, n)) = section(data, 0) {
        let idx = data[off..off + n - 4].to_vec();
        let mut p = 0usize;
        while let Some(klen) = u32_at(&idx, p) {
            let q = p + 4 + klen as usize;
            let (Some(boff), Some(blen)) = (u64_at(&idx, q), u32_at(&idx, q + 8)) else {
                break;
            };
            p = q + 12;
            let Ok(boff) = usize::try_from(boff) else {
                continue;
            };
            let blen = blen as usize;
            if blen >= 8 && boff.checked_add(blen).is_some_and(|e| e <= off) {
                let crc = crc32fast::hash(&data[boff..boff + blen - 4]);
                set_u32(data, boff + blen - 4, crc);
            }
        }
    }
    for i in 0..3 {
        if let Some((off, n)) = section(data, i) {
            let crc = crc32fast::hash(&data[off..off + n - 4]);
            set_u32(data, off + n - 4, crc);
        }
    }
    let crc = crc32fast::hash(&data[f..f + 52]);
    set_u32(data, f + 52, crc);
}

/// Segment target. Input: flag byte (bit 0: fix checksums), then the bytes
/// of segment file 1.
pub fn segment(input: &[u8]) {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let mut data = body.to_vec();
    if flags & 1 != 0 {
        fix_segment(&mut data);
    }
    let storage = MemStorage::default();
    let dir = Path::new("/db");
    let path = dir.join(edgestore::segment::file_name(1));
    storage.put_file(&path, &data);
    let r = match SegmentReader::open_with(&storage, dir, 1, false) {
        Ok(r) => r,
        Err(Error::Corruption { file, .. }) => {
            assert_eq!(file, path);
            return;
        }
        Err(e) => panic!("segment open: unexpected error {e}"),
    };
    let all = match r.all_records() {
        Ok(all) => all,
        Err(Error::Corruption { file, .. }) => {
            assert_eq!(file, path);
            return;
        }
        Err(e) => panic!("segment read: unexpected error {e}"),
    };
    match r.verify() {
        Ok(n) => assert_eq!(n as usize, all.len()),
        Err(Error::Corruption { file, .. }) => {
            assert_eq!(file, path);
            return;
        }
        Err(e) => panic!("segment verify: unexpected error {e}"),
    }
    // A segment that verifies must read back consistently.
    let scanned = r
        .range_scan(&[], &[0xff; 300])
        .expect("scan of a verified segment");
    let keys: Vec<&[u8]> = all.iter().map(|x| x.entry.key.as_slice()).collect();
    let from_scan: Vec<&[u8]> = scanned.iter().map(|x| x.0.as_slice()).collect();
    if keys.iter().all(|k| *k < &[0xffu8; 300][..]) {
        assert_eq!(keys, from_scan);
    }
    for rec in &all {
        // The Bloom filter may have been forged to say "absent", so None is
        // allowed; a different record is not.
        if let Some(got) = r
            .get_record(&rec.entry.key)
            .expect("lookup in a verified segment")
        {
            assert_eq!(&got, rec);
        }
    }
    let r = Arc::new(r);
    let mut it = r.iter_from(&[]);
    let mut n = 0;
    while let Some(rec) = it.next_record().expect("iterate a verified segment") {
        assert_eq!(Some(&rec), all.get(n));
        n += 1;
    }
    assert_eq!(n, all.len());
    // Point reads of a memory-mapped file search each block's stored index
    // in place (format 3), a path the in-memory storage cannot map.
    let dir = mapped_dir();
    std::fs::write(dir.join(edgestore::segment::file_name(1)), &data).expect("write segment");
    let m = SegmentReader::open_with(&edgestore::storage::FsStorage, dir, 1, true)
        .expect("open of a verified segment, mapped");
    for rec in &all {
        if let Some(got) = m
            .get_record(&rec.entry.key)
            .expect("mapped lookup in a verified segment")
        {
            assert_eq!(&got, rec);
        }
    }
}

/// A directory of this process for the mapped segment file.
fn mapped_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("edgestore-fuzz-seg-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create the mapped segment directory");
        d
    })
}

// ---------------------------------------------------------------------------
// Manifest.

/// Recomputes the payload length and checksum of a manifest.
fn fix_manifest(data: &mut [u8]) {
    if data.len() >= 20 {
        let n = (data.len() - 20) as u32;
        set_u32(data, 12, n);
        let crc = crc32fast::hash(&data[20..]);
        set_u32(data, 16, crc);
    }
}

/// Manifest target. Input: flag byte (bit 0: fix checksum), then the bytes
/// of `manifest.mf`.
pub fn manifest(input: &[u8]) {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let mut data = body.to_vec();
    if flags & 1 != 0 {
        fix_manifest(&mut data);
    }
    let storage = MemStorage::default();
    let path = Path::new("/db").join(edgestore::manifest::FILE_NAME);
    storage.put_file(&path, &data);
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let mut m = match Manifest::open_with(Arc::clone(&shared), &path) {
        Ok(m) => m,
        Err(Error::Corruption { file, .. }) => {
            assert_eq!(file, path);
            return;
        }
        Err(e) => panic!("manifest open: unexpected error {e}"),
    };
    // Opening never modifies the file.
    assert_eq!(storage.file(&path).as_deref(), Some(&data[..]));
    let state = |m: &Manifest| {
        (
            m.list_segments().to_vec(),
            m.next_segment_id(),
            m.log_number(),
            m.last_lsn(),
        )
    };
    let before = state(&m);
    // Rewriting with an empty edit must give back the same state.
    m.apply(ManifestEdit::default())
        .expect("rewrite of a valid manifest");
    assert_eq!(state(&m), before);
    let again = Manifest::open_with(shared, &path).expect("re-reading a rewritten manifest");
    assert_eq!(state(&again), before);
}

// ---------------------------------------------------------------------------
// Operation sequences against a model.
//
// The engine runs on `edgestore::fault::FaultStorage`. Besides the engine
// operations, the sequence can arm an I/O error (EIO or ENOSPC, once or
// persistent) on the n-th storage operation from now, and simulate a power
// loss in any `CrashMode`. Checks:
// * every failure is an error (`Io` or `Poisoned`), never a panic;
// * after a failed WAL sync the engine refuses writes until reopened;
// * after healing and reopening, the state is the model with or without the
//   failed write (nothing else);
// * after a power loss the state is the model (durable mode) or the model at
//   some point since the last `flush()` (buffered mode): no acknowledged
//   durable write lost, no holes;
// * the storage's durability lint finds nothing, and in durable mode every
//   acknowledged value is in a durable file as soon as the write returns.

/// A value in the model: bytes and death time.
type ModelMap = BTreeMap<(Vec<u8>, Vec<u8>), (Vec<u8>, i64)>;

const NSS: [&[u8]; 2] = [b"a", b"bb"];
const TTLS: [u32; 5] = [0, 0, 5, 60, 3600];
const ADVANCE: [u64; 4] = [1, 30, 61, 3600];

fn key_of(b: u8) -> Vec<u8> {
    // A few short keys share prefixes; 0 is the empty key.
    match b % 20 {
        0 => Vec::new(),
        n => format!("k{}", n % 10)
            .repeat(1 + (n as usize / 10))
            .into_bytes(),
    }
}

fn value_of(b: u8, n: u32) -> Vec<u8> {
    let len = (b as usize % 8) * 37;
    let mut v = format!("v{n}-").into_bytes();
    v.resize(len.max(v.len()), b);
    v
}

fn live(m: &ModelMap, now: i64) -> BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>> {
    m.iter()
        .filter(|(_, (_, d))| now < *d)
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

type Contents = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

fn contents(
    read: impl Fn(&[u8]) -> edgestore::Result<Vec<(Vec<u8>, Vec<u8>)>>,
) -> edgestore::Result<Contents> {
    let mut got = BTreeMap::new();
    for ns in NSS {
        for (k, v) in read(ns)? {
            got.insert((ns.to_vec(), k), v);
        }
    }
    Ok(got)
}

/// `EDGESTORE_FUZZ_RESTART_AFTER_FAILURE=1`: after an injected failure the
/// `ops` target reopens on the same storage (a process restart keeping the
/// page cache) instead of after a power loss. This mode found a write whose
/// WAL sync failed being replayed from the page cache at the reopen, shown,
/// and lost by a later power loss (fixed: open flushes what it replayed;
/// regressions/ops/failed-sync-write-resurrected). `cargo test` replays the
/// ops inputs in both modes (tests/fuzz_corpus.rs, tests/fuzz_restart.rs).
fn restart_after_failure() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EDGESTORE_FUZZ_RESTART_AFTER_FAILURE").is_some())
}

/// `EDGESTORE_FUZZ_TRACE=1` prints each operation (for reading a crasher).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EDGESTORE_FUZZ_TRACE").is_some())
}

fn clock_now(c: &ManualClock) -> i64 {
    edgestore::Clock::now_nanos(c)
}

struct Harness {
    fs: FaultStorage,
    clock: ManualClock,
    flags: u8,
    db: Option<Engine>,
    /// Every acknowledged write applied.
    model: ModelMap,
    /// Buffered mode: the model at the last durability barrier and after each
    /// write since (a power loss may leave any of them). Durable mode: `[model]`.
    history: Vec<ModelMap>,
    snaps: Vec<(edgestore::Snapshot, ModelMap)>,
}

impl Harness {
    fn buffered(&self) -> bool {
        self.flags & 2 != 0
    }

    fn config(&self) -> EdgestoreConfig {
        let mut c = EdgestoreConfig::new("/db");
        c.storage = Arc::new(self.fs.clone());
        c.clock = Arc::new(self.clock.clone());
        c.memtable_size_bytes = 2048;
        // Deterministic I/O order: an input always fails the same operation.
        c.background_flush = false;
        c.segment_size_bytes = 1024;
        c.block_size_bytes = 64;
        c.cohort_window_secs = 60;
        c.max_permanent_runs = 2;
        c.block_cache_bytes = if self.flags & 1 != 0 { 0 } else { 64 << 10 };
        c.sync_mode = if self.buffered() {
            SyncMode::Buffered
        } else {
            SyncMode::Durable
        };
        c
    }

    fn db(&self) -> &Engine {
        self.db.as_ref().expect("engine open")
    }

    fn now(&self) -> i64 {
        clock_now(&self.clock)
    }

    fn check_lint(&self) {
        let v = self.fs.violations();
        assert!(v.is_empty(), "durability lint: {v:?}");
    }

    /// Opens the database on the (healed) storage; it must succeed and hold
    /// one of `candidates`, which becomes the model.
    fn reopen_expecting(&mut self, candidates: Vec<ModelMap>) {
        self.fs.heal();
        self.snaps.clear();
        self.db = None;
        let db = Engine::open(self.config()).unwrap_or_else(|e| panic!("reopen failed: {e}"));
        let got = contents(|ns| db.prefix(ns, b"")).expect("read after reopen");
        let now = self.now();
        let Some(m) = candidates.into_iter().rev().find(|m| live(m, now) == got) else {
            panic!(
                "state after reopen is not an allowed one: {got:?}\nmodel {:?}",
                live(&self.model, now)
            );
        };
        db.verify().expect("verify after reopen");
        self.check_lint();
        self.model = m;
        self.history = vec![self.model.clone()];
        self.db = Some(db);
    }

    /// An engine call failed: it must be an error of the documented kinds;
    /// after a failed WAL sync, writes are refused until reopened. Then heal,
    /// reopen and accept `candidates`.
    fn failed(&mut self, what: &str, e: Error, failed_write: Option<ModelMap>) {
        assert!(
            matches!(e.kind_name(), "io" | "poisoned"),
            "{what}: injected fault gave {e}"
        );
        let last = self.fs.injected_log().last().cloned().unwrap_or_default();
        if last.starts_with("sync_data wal") {
            self.fs.heal();
            match self.db().put(b"a", b"after-failed-sync", b"x") {
                Err(Error::Poisoned(_)) => {}
                // A failed close still closes the handle.
                Err(Error::Closed) if what == "close" => {}
                other => panic!("write after a failed WAL sync: {other:?}"),
            }
        }
        // What may be recovered: any state since the last durability barrier,
        // or the failed write on top of everything acknowledged.
        let mut candidates = self.history.clone();
        candidates.extend(failed_write);
        if restart_after_failure() {
            // The process restarts on the same page cache.
            self.reopen_expecting(candidates);
        } else {
            // The machine loses power after the failure (the common case for
            // an EIO on a device going bad, and what the model can state
            // exactly: see `restart_after_failure`).
            let state = self.fs.crash_now();
            self.snaps.clear();
            self.db = None;
            let image = state.image(CrashMode::DropUnsynced, 0);
            self.fs.restore(&image);
            self.reopen_expecting(candidates);
        }
    }

    /// A write whose model effect is `next`.
    fn write(
        &mut self,
        what: &str,
        next: ModelMap,
        ack: Option<Vec<u8>>,
        f: impl FnOnce(&Engine) -> edgestore::Result<()>,
    ) {
        match f(self.db()) {
            Ok(()) => {
                if let (Some(v), false) = (ack, self.buffered()) {
                    assert!(
                        self.fs.check_acknowledged(what, &v),
                        "{what} acknowledged before durable"
                    );
                }
                self.model = next;
                if self.buffered() {
                    self.history.push(self.model.clone());
                } else {
                    self.history = vec![self.model.clone()];
                }
            }
            Err(e) => {
                self.failed(what, e, Some(next));
            }
        }
    }

    /// A call that changes no data.
    fn call<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Engine) -> edgestore::Result<T>,
    ) -> Option<T> {
        match f(self.db()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.failed(what, e, None);
                None
            }
        }
    }

    fn barrier(&mut self) {
        self.history = vec![self.model.clone()];
    }
}

/// Op-sequence target: each input byte (plus the next ones as arguments) is
/// one operation against both the engine and a `BTreeMap` model.
pub fn ops(input: &[u8]) {
    let mut b = Bytes {
        data: input,
        pos: 0,
    };
    let flags = b.u8();
    let fs = FaultStorage::new(u64::from(b.u8()));
    let mut h = Harness {
        fs,
        clock: ManualClock::new(1_700_000_000_000_000_000),
        flags,
        db: None,
        model: ModelMap::new(),
        history: vec![ModelMap::new()],
        snaps: Vec::new(),
    };
    h.db = Some(Engine::open(h.config()).expect("open a new database"));
    let mut n = 0u32;
    let mut steps = 0;
    while !b.done() && steps < 400 {
        steps += 1;
        n += 1;
        let now = h.now();
        let op = b.u8() % 16;
        if tracing() {
            let args = &input[b.pos.min(input.len())..(b.pos + 5).min(input.len())];
            eprintln!(
                "op {op} args {args:?} faults so far {:?}",
                h.fs.injected_log()
            );
        }
        match op {
            0 | 1 => {
                let (ns, k, v, ttl) = (
                    NSS[b.u8() as usize % 2],
                    key_of(b.u8()),
                    value_of(b.u8(), n),
                    TTLS[b.u8() as usize % 5],
                );
                let mut next = h.model.clone();
                next.insert((ns.to_vec(), k.clone()), (v.clone(), death_time(now, ttl)));
                h.write("put", next, Some(v.clone()), |db| {
                    db.put_with_ttl(ns, &k, &v, ttl)
                });
            }
            2 => {
                let (ns, k) = (NSS[b.u8() as usize % 2], key_of(b.u8()));
                let mut next = h.model.clone();
                next.remove(&(ns.to_vec(), k.clone()));
                h.write("delete", next, None, |db| db.delete(ns, &k));
            }
            3 => {
                let mut batch = WriteBatch::new();
                let mut next = h.model.clone();
                for _ in 0..1 + b.u8() % 4 {
                    let (op, ns, k) = (b.u8(), NSS[b.u8() as usize % 2], key_of(b.u8()));
                    if op % 3 == 0 {
                        batch.delete(ns, &k).expect("batch delete");
                        next.remove(&(ns.to_vec(), k));
                    } else {
                        let v = value_of(op, n);
                        let ttl = TTLS[op as usize % 5];
                        batch.put_with_ttl(ns, &k, &v, ttl).expect("batch put");
                        next.insert((ns.to_vec(), k), (v, death_time(now, ttl)));
                    }
                }
                h.write("batch", next, None, |db| db.write(batch));
            }
            4 | 5 => {
                let (ns, k) = (NSS[b.u8() as usize % 2], key_of(b.u8()));
                let want = h
                    .model
                    .get(&(ns.to_vec(), k.clone()))
                    .filter(|(_, d)| now < *d)
                    .map(|(v, _)| v.clone());
                if let Some(got) = h.call("get", |db| db.get(ns, &k)) {
                    assert_eq!(got, want, "get {k:?}");
                }
            }
            6 => {
                let (ns, lo, hi) = (NSS[b.u8() as usize % 2], key_of(b.u8()), key_of(b.u8()));
                // Recomputed per call: a failed call reopens and may move the model.
                let want = |m: &ModelMap| -> Vec<(Vec<u8>, Vec<u8>)> {
                    live(m, now)
                        .into_iter()
                        .filter(|((mns, k), _)| mns == ns && *k >= lo && *k < hi)
                        .map(|((_, k), v)| (k, v))
                        .collect()
                };
                if let Some(got) = h.call("range", |db| db.range(ns, &lo, &hi)) {
                    assert_eq!(got, want(&h.model), "range");
                }
                let scanned = h.call("scan", |db| {
                    db.scan(ns, &lo, Some(&hi))?
                        .collect::<edgestore::Result<Vec<_>>>()
                });
                if let Some(got) = scanned {
                    assert_eq!(got, want(&h.model), "scan");
                }
            }
            7 => {
                if let Some(got) = h.call("full scan", |db| contents(|ns| db.prefix(ns, b""))) {
                    assert_eq!(got, live(&h.model, now), "contents differ from the model");
                }
            }
            8 => {
                if h.snaps.len() >= 3 {
                    h.snaps.remove(0);
                }
                if let Some(s) = h.call("snapshot", |db| db.snapshot()) {
                    let m = h.model.clone();
                    h.snaps.push((s, m));
                }
            }
            9 => {
                let mut err = None;
                for (s, m) in &h.snaps {
                    match contents(|ns| s.prefix(ns, b"")) {
                        Ok(got) => {
                            assert_eq!(got, live(m, s.read_time_nanos()), "snapshot changed")
                        }
                        Err(e) => err = Some(e),
                    }
                }
                if let Some(e) = err {
                    h.failed("snapshot read", e, None);
                }
            }
            10 => {
                h.call("flush_to_segments", |db| db.flush_to_segments());
            }
            11 => {
                h.call("compaction", |db| db.compact_once());
            }
            12 => h.clock.advance_secs(ADVANCE[b.u8() as usize % 4]),
            13 => {
                // Reopen cleanly (close) or after a process crash (drop only).
                let clean = b.u8().is_multiple_of(2);
                let res = if clean {
                    h.db().close()
                } else {
                    h.db().flush()
                };
                match res {
                    Ok(()) => {
                        h.barrier();
                        let m = h.model.clone();
                        h.reopen_expecting(vec![m]);
                    }
                    Err(e) => {
                        h.failed(if clean { "close" } else { "flush" }, e, None);
                    }
                }
            }
            14 => {
                // Arm an I/O error on the n-th storage operation from now.
                let a = b.u8();
                let kind = if a & 1 == 0 {
                    FaultKind::Eio
                } else {
                    FaultKind::Enospc
                };
                h.fs.fail_op(1 + u64::from(a >> 2) % 24, kind, a & 2 != 0);
            }
            _ => {
                // Power loss now, in one of the crash modes.
                let (mode, seed) = (
                    CrashMode::ALL[b.u8() as usize % CrashMode::ALL.len()],
                    b.u8(),
                );
                let state = h.fs.crash_now();
                h.snaps.clear();
                h.db = None;
                let image = state.image(mode, u64::from(seed));
                h.fs.restore(&image);
                let candidates = h.history.clone();
                h.reopen_expecting(candidates);
            }
        }
    }
    h.fs.heal();
    let now = h.now();
    let got = contents(|ns| h.db().prefix(ns, b"")).expect("final scan");
    assert_eq!(
        got,
        live(&h.model, now),
        "contents at the end differ from the model"
    );
    for (s, m) in &h.snaps {
        let got = contents(|ns| s.prefix(ns, b"")).expect("final snapshot scan");
        assert_eq!(got, live(m, s.read_time_nanos()), "snapshot at the end");
    }
    h.db().verify().expect("verify at end");
    h.check_lint();
}
