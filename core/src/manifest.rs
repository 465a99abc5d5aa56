//! The manifest: the durable list of live segments, the oldest WAL still
//! needed, and the highest LSN flushed.
//!
//! `manifest.mf` is replaced as a whole on every change: written to
//! `manifest.mf.tmp`, fsynced, renamed over `manifest.mf`, and the directory
//! fsynced. A reader therefore always sees one complete version, and the file
//! never grows beyond the current segment list.
//!
//! ```text
//! "EDGMAN\0\x01" | version u32 | payload_len u32 | crc32(payload) u32 | payload
//! payload = next_segment_id u64 | log_number u64 | last_lsn u64 | count u32 | count × SegmentMeta
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{put_u32, put_u64, Decoder};
use crate::error::{Error, Result};
use crate::segment::SegmentMeta;
use crate::storage::{FsStorage, Storage};

const MAGIC: &[u8; 8] = b"EDGMAN\0\x01";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;
/// Name of the manifest file inside a database directory.
pub const FILE_NAME: &str = "manifest.mf";
const TMP_SUFFIX: &str = ".tmp";

/// A set of changes applied atomically.
#[derive(Debug, Default, Clone)]
pub struct ManifestEdit {
    /// Segments to publish.
    pub add: Vec<SegmentMeta>,
    /// Segment ids to drop.
    pub remove: Vec<u64>,
    /// New oldest-needed WAL number, if it changes.
    pub log_number: Option<u64>,
    /// New highest flushed LSN, if it changes.
    pub last_lsn: Option<u64>,
}

/// The durable list of live segments.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    storage: Arc<dyn Storage>,
    segments: Vec<SegmentMeta>,
    next_segment_id: u64,
    log_number: u64,
    last_lsn: u64,
    writes: u64,
}

impl Manifest {
    /// Opens the manifest at `path` on the real file system, creating an empty
    /// one (durably) if there is none. Opening never modifies an existing file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(Arc::new(FsStorage), path)
    }

    /// Opens the manifest at `path` through `storage`.
    pub fn open_with(storage: Arc<dyn Storage>, path: &Path) -> Result<Self> {
        let mut m = Manifest {
            path: path.to_path_buf(),
            storage,
            segments: Vec::new(),
            next_segment_id: 1,
            log_number: 0,
            last_lsn: 0,
            writes: 0,
        };
        let exists = m
            .storage
            .exists(path)
            .map_err(|e| Error::io(format!("checking manifest {}", path.display()), e))?;
        if exists {
            m.reload()?;
        } else {
            m.persist()?;
        }
        Ok(m)
    }

    /// Re-reads the file (for a second reader following a running engine).
    pub fn reload(&mut self) -> Result<()> {
        let data = self
            .storage
            .read_all(&self.path)
            .map_err(|e| Error::io(format!("reading manifest {}", self.path.display()), e))?;
        let corrupt = |off: usize, m: String| Error::corruption(self.path.clone(), off as u64, m);
        if data.len() < HEADER_LEN || &data[0..8] != MAGIC {
            return Err(corrupt(0, "bad manifest header".into()));
        }
        let mut d = Decoder::new(&data[8..HEADER_LEN]);
        let version = d.u32().map_err(|m| corrupt(8, m))?;
        let len = d.u32().map_err(|m| corrupt(12, m))? as usize;
        let crc = d.u32().map_err(|m| corrupt(16, m))?;
        if version != VERSION {
            return Err(corrupt(
                8,
                format!("unsupported manifest version {version}"),
            ));
        }
        if data.len() - HEADER_LEN != len {
            return Err(corrupt(
                12,
                format!(
                    "payload is {} bytes, header says {len}",
                    data.len() - HEADER_LEN
                ),
            ));
        }
        let payload = &data[HEADER_LEN..];
        if crc32fast::hash(payload) != crc {
            return Err(corrupt(HEADER_LEN, "manifest checksum mismatch".into()));
        }
        let mut d = Decoder::new(payload);
        let at = |d: &Decoder<'_>| HEADER_LEN + d.position();
        let next_segment_id = d.u64().map_err(|m| corrupt(at(&d), m))?;
        if next_segment_id == u64::MAX {
            // Allocating it would overflow; no real database gets there.
            return Err(corrupt(at(&d) - 8, "segment ids exhausted".into()));
        }
        let log_number = d.u64().map_err(|m| corrupt(at(&d), m))?;
        let last_lsn = d.u64().map_err(|m| corrupt(at(&d), m))?;
        let count = d.u32().map_err(|m| corrupt(at(&d), m))? as usize;
        if count > d.remaining() / 8 {
            return Err(corrupt(
                at(&d),
                format!("segment count {count} exceeds manifest size"),
            ));
        }
        let mut segments = Vec::with_capacity(count);
        let mut ids = HashSet::new();
        for _ in 0..count {
            let pos = at(&d);
            let meta = SegmentMeta::decode(&mut d).map_err(|m| corrupt(pos, m))?;
            if !ids.insert(meta.segment_id) || meta.segment_id >= next_segment_id {
                return Err(corrupt(pos, format!("bad segment id {}", meta.segment_id)));
            }
            segments.push(meta);
        }
        if !d.is_empty() {
            return Err(corrupt(at(&d), "trailing bytes in manifest".into()));
        }
        self.segments = segments;
        self.next_segment_id = next_segment_id;
        self.log_number = log_number;
        self.last_lsn = last_lsn;
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        put_u64(&mut payload, self.next_segment_id);
        put_u64(&mut payload, self.log_number);
        put_u64(&mut payload, self.last_lsn);
        put_u32(&mut payload, self.segments.len() as u32);
        for s in &self.segments {
            s.encode(&mut payload);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, VERSION);
        put_u32(&mut out, payload.len() as u32);
        put_u32(&mut out, crc32fast::hash(&payload));
        out.extend_from_slice(&payload);
        out
    }

    fn persist(&mut self) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let io = |what: &str, e| Error::io(format!("{what} manifest {}", self.path.display()), e);
        let bytes = self.encode();
        let f = self
            .storage
            .create(&tmp)
            .map_err(|e| io("creating temporary", e))?;
        f.append(&bytes).map_err(|e| io("writing", e))?;
        f.sync_data().map_err(|e| io("syncing", e))?;
        drop(f);
        self.storage
            .rename(&tmp, &self.path)
            .map_err(|e| io("renaming", e))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.storage
            .sync_dir(dir)
            .map_err(|e| io("syncing directory of", e))?;
        self.writes += 1;
        Ok(())
    }

    /// Live segments, in the order they were added.
    pub fn list_segments(&self) -> &[SegmentMeta] {
        &self.segments
    }

    /// The meta of segment `id`, if live.
    pub fn segment(&self, id: u64) -> Option<&SegmentMeta> {
        self.segments.iter().find(|s| s.segment_id == id)
    }

    /// The next unused segment id (not persisted until the next change).
    pub fn next_segment_id(&self) -> u64 {
        self.next_segment_id
    }

    /// Takes a fresh segment id. If the process dies before the segment is
    /// published, the id may be reused: its orphan file is deleted at open.
    pub fn allocate_segment_id(&mut self) -> u64 {
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        id
    }

    /// Makes sure ids up to and including `id` are never allocated again.
    pub fn reserve_segment_id(&mut self, id: u64) {
        self.next_segment_id = self.next_segment_id.max(id.saturating_add(1));
    }

    /// The oldest WAL number still needed; older WAL files are obsolete.
    pub fn log_number(&self) -> u64 {
        self.log_number
    }

    /// Highest LSN written to segments.
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// How many times this handle has rewritten the file.
    pub fn write_count(&self) -> u64 {
        self.writes
    }

    /// Publishes one segment durably.
    pub fn add_segment(&mut self, meta: SegmentMeta) -> Result<()> {
        self.apply(ManifestEdit {
            add: vec![meta],
            ..Default::default()
        })
    }

    /// Drops segments durably (their files are the caller's to delete afterwards).
    pub fn remove_segments(&mut self, ids: &[u64]) -> Result<()> {
        self.apply(ManifestEdit {
            remove: ids.to_vec(),
            ..Default::default()
        })
    }

    /// Applies an edit atomically and durably. On error the in-memory state is
    /// unchanged.
    pub fn apply(&mut self, edit: ManifestEdit) -> Result<()> {
        let mut ids: HashSet<u64> = self.segments.iter().map(|s| s.segment_id).collect();
        for id in &edit.remove {
            if !ids.remove(id) {
                return Err(Error::invalid(format!(
                    "segment {id} is not in the manifest"
                )));
            }
        }
        for m in &edit.add {
            if !ids.insert(m.segment_id) {
                return Err(Error::invalid(format!(
                    "segment {} is already in the manifest",
                    m.segment_id
                )));
            }
        }
        let saved = (
            self.segments.clone(),
            self.next_segment_id,
            self.log_number,
            self.last_lsn,
        );
        self.segments
            .retain(|s| !edit.remove.contains(&s.segment_id));
        for m in edit.add {
            self.next_segment_id = self.next_segment_id.max(m.segment_id + 1);
            self.last_lsn = self.last_lsn.max(m.max_lsn);
            self.segments.push(m);
        }
        if let Some(n) = edit.log_number {
            self.log_number = self.log_number.max(n);
        }
        if let Some(l) = edit.last_lsn {
            self.last_lsn = self.last_lsn.max(l);
        }
        if let Err(e) = self.persist() {
            (
                self.segments,
                self.next_segment_id,
                self.log_number,
                self.last_lsn,
            ) = saved;
            return Err(e);
        }
        Ok(())
    }
}

/// Path of the temporary file a manifest rewrite goes through.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64) -> SegmentMeta {
        SegmentMeta {
            segment_id: id,
            run_id: id,
            cohort_bucket: 3,
            death_time: 99,
            min_death_time: 9,
            min_key: b"a".to_vec(),
            max_key: b"z".to_vec(),
            min_lsn: 1,
            max_lsn: id * 10,
            record_count: 5,
            tombstone_count: 1,
            file_size: 1000,
            merkle_root: vec![7; 32],
        }
    }

    #[test]
    fn changes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let mut m = Manifest::open(&p).unwrap();
        m.add_segment(meta(3)).unwrap();
        m.add_segment(meta(5)).unwrap();
        m.apply(ManifestEdit {
            remove: vec![3],
            log_number: Some(4),
            ..Default::default()
        })
        .unwrap();
        let r = Manifest::open(&p).unwrap();
        assert_eq!(r.list_segments(), &[meta(5)]);
        assert_eq!(r.next_segment_id(), 6);
        assert_eq!(r.log_number(), 4);
        assert_eq!(r.last_lsn(), 50);
        assert!(m.remove_segments(&[3]).is_err());
        assert!(m.add_segment(meta(5)).is_err());
    }

    /// A forged manifest (checksum valid) whose next segment id is the
    /// last one is corruption, not an overflow on the next allocation.
    #[test]
    fn exhausted_segment_ids_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        Manifest::open(&p).unwrap();
        let mut data = std::fs::read(&p).unwrap();
        data[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&data[HEADER_LEN..]);
        data[16..20].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &data).unwrap();
        match Manifest::open(&p) {
            Err(Error::Corruption { detail, .. }) => {
                assert!(detail.contains("exhausted"), "{detail}")
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let mut m = Manifest::open(&p).unwrap();
        m.add_segment(meta(1)).unwrap();
        let good = std::fs::read(&p).unwrap();
        for bit in 0..good.len() * 8 {
            let mut d = good.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&p, &d).unwrap();
            match Manifest::open(&p) {
                Err(Error::Corruption { file, .. }) => assert_eq!(file, p),
                other => panic!("bit {bit}: expected corruption, got {other:?}"),
            }
        }
        for len in 0..good.len() {
            std::fs::write(&p, &good[..len]).unwrap();
            assert!(matches!(Manifest::open(&p), Err(Error::Corruption { .. })));
        }
    }
}
