//! A fault-injecting, in-memory [`Storage`] for tests and fuzzing: simulated
//! power loss, torn and reordered writes, forgotten directory entries, I/O
//! errors, and a durability lint.
//!
//! **This is a testing tool.** Nothing in it touches the real file system; all
//! files live in memory and vanish with the last clone of the storage.
//!
//! # Model
//!
//! [`FaultStorage`] keeps, for every file, the bytes handed to it (what the page
//! cache would hold and what reads return) and how many of them are durable
//! (synced with `sync_data` or `truncate`). For every directory it keeps the
//! live entries and the durable ones; creates, renames and removals become
//! durable only at the next `sync_dir` of that directory. Every unsynced append
//! and directory operation carries a global sequence number.
//!
//! At a simulated crash, a [`CrashState`] (a copy of all of this) can be turned
//! into the image a power loss may leave, for each [`CrashMode`]:
//! unsynced data dropped, a random prefix of it kept, the last kept write torn
//! (its tail zeros or garbage), each file keeping or losing its own unsynced
//! tail independently (writes and directory operations reordered), each
//! unsynced write kept or lost on its own (holes inside a file), or unsynced
//! directory entries forgotten while file data survives. Everything is deterministic from
//! the seeds given.
//!
//! A failed `sync_data` behaves like Linux after an `fsync` error: the unsynced
//! pages are dropped from the write-back queue, so even a later successful sync
//! persists zeros in their place. An engine that retries the sync "as if nothing
//! happened" therefore loses data in the crash images, where tests can see it.
//!
//! Files opened with `open_overwrite` are written in place from offset 0: the
//! model keeps each file's durable bytes apart from the bytes handed over, so
//! a crash image shows the old contents wherever an overwrite did not reach
//! the disk.
//!
//! Simplifications: directories themselves (`create_dir_all`) are durable at
//! once; `create` on an existing name makes a new file that replaces the old
//! entry (like writing a new file and renaming it over the old one, rather than
//! truncating the old file in place); a rename across directories is a removal
//! in one and a creation in the other; lock files are created durable.
//!
//! # Stable API
//!
//! ```
//! use std::sync::Arc;
//! use edgestore::fault::{CrashMode, FaultKind, FaultStorage};
//! use edgestore::{EdgestoreConfig, Engine};
//!
//! let fs = FaultStorage::new(7);
//! let mut config = EdgestoreConfig::new("/db");
//! config.storage = Arc::new(fs.clone());
//! let db = Engine::open(config.clone()).unwrap();
//! db.put(b"ns", b"k", b"v").unwrap();
//! // Durability lint: an acknowledged durable write must be on stable storage.
//! assert!(fs.check_acknowledged("put k", b"v"));
//!
//! // Power loss now: take the state, turn it into a crash image, reopen.
//! let state = fs.crash_now();
//! drop(db);
//! let image = state.image(CrashMode::TornGarbage, 1);
//! config.storage = Arc::new(image.clone());
//! let db = Engine::open(config.clone()).unwrap();
//! assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
//!
//! // I/O errors: the 3rd operation from now fails with ENOSPC, once.
//! image.fail_op(3, FaultKind::Enospc, false);
//! assert!(image.violations().is_empty());
//! ```
//!
//! * Crash points: [`FaultStorage::crash_at_point`] arms a crash at the n-th
//!   *persistence point* (`sync_data`, `sync_dir`, `rename`, `truncate`), counted
//!   from the storage's creation. When it is reached, the state *before* that
//!   operation is captured ([`FaultStorage::take_crash`]) and the storage goes
//!   dead: that and every later operation fails with an I/O error, as if the
//!   machine had lost power. [`FaultStorage::crash_now`] does the same at once.
//!   [`CrashState::image`] builds a fresh storage holding a crash image;
//!   [`FaultStorage::restore`] puts one back into this storage (keeping its
//!   counters, lint and faults) and revives it. [`CrashState::process_crash`]
//!   models a process crash instead: every byte handed over is readable, but
//!   what was not synced is still not durable, so a later
//!   [`FaultStorage::crash_now`] (a power loss) can still drop it.
//! * Persistence points are counted ([`FaultStorage::persistence_points`]) and
//!   labelled by what they make durable ([`FaultStorage::point_labels`], in
//!   order: [`FaultStorage::point_trace`]), e.g. `"sync_data wal"` or
//!   `"sync_dir after rename manifest"`.
//! * I/O errors: [`FaultStorage::fail_op`] fails the n-th eligible operation
//!   from now with [`FaultKind::Eio`] (any operation) or [`FaultKind::Enospc`]
//!   (operations that may allocate space), once or persistently until
//!   [`FaultStorage::heal`]. A failing append writes a random prefix of its
//!   buffer first. [`FaultStorage::faults_injected`] counts the failures and
//!   [`FaultStorage::injected_log`] names each failed operation and file kind.
//! * Durability lint (on by default; [`FaultStorage::set_lint`]): recorded in
//!   [`FaultStorage::violations`]. It flags a manifest (`manifest.mf`, found by
//!   name and parsed) renamed into place while its own data is unsynced or while
//!   a segment it references lacks a durable directory entry or synced data; a
//!   segment file removed while the durable (or live) manifest still references
//!   it; a WAL file holding records removed while the durable manifest still
//!   needs it (its `log_number` is not past it); and, when the test tells it a
//!   write was acknowledged ([`FaultStorage::check_acknowledged`]), that write's
//!   bytes missing from the durable WAL and segment files.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::manifest::{self, Manifest};
use crate::segment;
use crate::storage::{DirLock, ReadableFile, Storage, WritableFile};
use crate::wal;

/// What a simulated power loss leaves of the data not yet made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashMode {
    /// Only synced data and synced directory entries survive.
    DropUnsynced,
    /// Everything handed to the storage survives (what a process crash leaves).
    KeepAll,
    /// A random prefix, in issue order, of the unsynced writes and directory
    /// operations survives.
    Prefix,
    /// As [`CrashMode::Prefix`], and the next write is torn: a random part of it
    /// reaches the disk and the rest of its range reads as zeros.
    TornZeros,
    /// As [`CrashMode::TornZeros`], but the rest of the torn range is garbage.
    TornGarbage,
    /// Each file keeps a random prefix of its own unsynced writes (all of them,
    /// none, or some), independently of the others, so a later write to one file
    /// may survive while an earlier write to another is lost. Each unsynced
    /// directory operation survives or not independently (POSIX orders none of
    /// them), a rename as a whole.
    Reorder,
    /// Each unsynced write survives or not on its own, so a file may keep a
    /// later write and lose an earlier one: the lost range reads as what was
    /// durable there before (zeros past the old end). This is what a power
    /// loss leaves when the kernel writes dirty pages back in any order or a
    /// disk reorders writes in its volatile cache. Directory operations as in
    /// [`CrashMode::Reorder`].
    Holes,
    /// All file data handed over survives, but no unsynced directory operation
    /// (create, rename, remove) does.
    ForgetDirOps,
}

impl CrashMode {
    /// Every mode, in a fixed order.
    pub const ALL: [CrashMode; 8] = [
        CrashMode::DropUnsynced,
        CrashMode::KeepAll,
        CrashMode::Prefix,
        CrashMode::TornZeros,
        CrashMode::TornGarbage,
        CrashMode::Reorder,
        CrashMode::Holes,
        CrashMode::ForgetDirOps,
    ];
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`: may hit any operation.
    Eio,
    /// `ENOSPC`: hits only operations that may allocate space (`create`,
    /// `append`, `sync_data`, `sync_dir`, `rename`, `truncate`, `lock`,
    /// `create_dir_all`).
    Enospc,
}

impl FaultKind {
    fn error(self) -> io::Error {
        match self {
            FaultKind::Eio => io::Error::from_raw_os_error(5),
            FaultKind::Enospc => io::Error::from_raw_os_error(28),
        }
    }
}

/// Storage operations, for fault eligibility and persistence points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateDirAll,
    Create,
    OpenRead,
    OpenOverwrite,
    Rename,
    Remove,
    SyncDir,
    ListDir,
    Exists,
    Truncate,
    Lock,
    Append,
    SyncData,
    Read,
    Len,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::CreateDirAll => "create_dir_all",
            Op::Create => "create",
            Op::OpenRead => "open_read",
            Op::OpenOverwrite => "open_overwrite",
            Op::Rename => "rename",
            Op::Remove => "remove_file",
            Op::SyncDir => "sync_dir",
            Op::ListDir => "list_dir",
            Op::Exists => "exists",
            Op::Truncate => "truncate",
            Op::Lock => "lock",
            Op::Append => "append",
            Op::SyncData => "sync_data",
            Op::Read => "read",
            Op::Len => "len",
        }
    }

    fn may_allocate(self) -> bool {
        matches!(
            self,
            Op::CreateDirAll
                | Op::Create
                | Op::Rename
                | Op::SyncDir
                | Op::Truncate
                | Op::Lock
                | Op::Append
                | Op::SyncData
        )
    }
}

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `0..=n`.
    fn upto(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
}

#[derive(Debug, Clone)]
struct Write {
    seq: u64,
    start: usize,
    /// The bytes written at `start` (a later write may overwrite them in `data`).
    bytes: Vec<u8>,
}

impl Write {
    fn end(&self) -> usize {
        self.start + self.bytes.len()
    }

    /// Puts `bytes` (this write's, or a torn version of them) into `data`.
    fn apply(&self, data: &mut Vec<u8>, bytes: &[u8]) {
        let end = self.start + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[self.start..end].copy_from_slice(bytes);
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// Last name it was created or renamed under (for labels and messages).
    name: String,
    /// Bytes handed over (what reads see).
    data: Vec<u8>,
    /// What is on stable storage. Where a failed sync dropped writes, it keeps
    /// the old bytes (zeros past the old end) even after a later sync.
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Write>,
}

impl Inode {
    fn fully_synced(&self) -> bool {
        self.pending.is_empty() && self.durable == self.data
    }

    /// What is on stable storage.
    fn durable_bytes(&self) -> Vec<u8> {
        self.durable.clone()
    }

    /// A successful sync: the pending writes reach the disk; ranges dropped by
    /// an earlier failed sync stay as they were (zeros past the old end).
    fn sync(&mut self) {
        self.durable.resize(self.data.len(), 0);
        for w in std::mem::take(&mut self.pending) {
            w.apply(&mut self.durable, &w.bytes);
        }
    }
}

/// The inode number a subdirectory's entry in its parent carries: a
/// directory made by `create_dir_all` is durable only once its parent is
/// synced, like a file's entry.
const DIR_INO: u64 = u64::MAX;

#[derive(Debug, Clone)]
enum DirOp {
    Create { name: String, ino: u64 },
    Remove { name: String },
    Rename { from: String, to: String },
}

impl DirOp {
    fn apply(&self, map: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Create { name, ino } => {
                map.insert(name.clone(), *ino);
            }
            DirOp::Remove { name } => {
                map.remove(name);
            }
            DirOp::Rename { from, to } => {
                if let Some(ino) = map.remove(from) {
                    map.insert(to.clone(), ino);
                }
            }
        }
    }

    fn label(&self) -> String {
        match self {
            DirOp::Create { name, .. } => format!("create {}", class(name)),
            DirOp::Remove { name } => format!("remove {}", class(name)),
            DirOp::Rename { to, .. } => format!("rename {}", class(to)),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    pending: Vec<(u64, DirOp)>,
}

/// Whether the pending directory operation (dir, index, seq) survives a crash.
type KeepOp = dyn Fn(&Path, usize, u64) -> bool;

/// The simulated disk: directories and files.
#[derive(Debug, Clone, Default)]
struct Disk {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    seq: u64,
}

/// What kind of file a name is, for labels.
fn class(name: &str) -> &'static str {
    if name.is_empty() {
        "dir"
    } else if wal::parse_file_name(name).is_some() {
        "wal"
    } else if segment::parse_file_name(name).is_some() {
        "seg"
    } else if name == manifest::FILE_NAME {
        "manifest"
    } else if name.ends_with(".tmp") {
        "tmp"
    } else if name == crate::LOCK_FILE {
        "lock"
    } else {
        "other"
    }
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p.to_path_buf(), n.to_string_lossy().into_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a file path: {}", path.display()),
        )),
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no such file: {}", path.display()),
    )
}

impl Disk {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn dir(&self, dir: &Path) -> io::Result<&Dir> {
        self.dirs.get(dir).ok_or_else(|| not_found(dir))
    }

    /// Whether `dir` would survive a power loss: its entry, and each
    /// ancestor's, durable in its parent (a root has no entry to lose).
    fn dir_durable(&self, dir: &Path) -> bool {
        let mut d = dir;
        while let (Some(parent), Some(name)) = (d.parent(), d.file_name()) {
            let entry = self
                .dirs
                .get(parent)
                .and_then(|p| p.durable.get(name.to_string_lossy().as_ref()));
            if entry != Some(&DIR_INO) {
                return false;
            }
            d = parent;
        }
        true
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (d, n) = split(path)?;
        self.dir(&d)?
            .live
            .get(&n)
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn push_dir_op(&mut self, dir: &Path, op: DirOp) -> io::Result<()> {
        let seq = self.next_seq();
        let d = self.dir_mut(dir)?;
        op.apply(&mut d.live);
        d.pending.push((seq, op));
        Ok(())
    }

    fn create_file(&mut self, path: &Path, durable: bool) -> io::Result<u64> {
        let (d, n) = split(path)?;
        self.dir(&d)?;
        self.next_ino += 1;
        let ino = self.next_ino;
        self.inodes.insert(
            ino,
            Inode {
                name: n.clone(),
                ..Default::default()
            },
        );
        let op = DirOp::Create { name: n, ino };
        if durable {
            let dir = self.dir_mut(&d)?;
            op.apply(&mut dir.live);
            op.apply(&mut dir.durable);
        } else {
            self.push_dir_op(&d, op)?;
        }
        Ok(ino)
    }

    /// The bytes of the file `name` in `dir` as stable storage has them, if its
    /// entry is durable.
    fn durable_file(&self, dir: &Path, name: &str) -> Option<Vec<u8>> {
        if !self.dir_durable(dir) {
            return None;
        }
        let ino = self.dirs.get(dir)?.durable.get(name)?;
        Some(self.inodes.get(ino)?.durable_bytes())
    }

    fn live_file(&self, dir: &Path, name: &str) -> Option<&Inode> {
        let ino = self.dirs.get(dir)?.live.get(name)?;
        self.inodes.get(ino)
    }

    /// Every unsynced write as (seq, inode, index in its pending list), in order.
    fn unsynced_writes(&self) -> Vec<(u64, u64, usize)> {
        let mut v: Vec<(u64, u64, usize)> = self
            .inodes
            .iter()
            .flat_map(|(&ino, i)| {
                i.pending
                    .iter()
                    .enumerate()
                    .map(move |(k, w)| (w.seq, ino, k))
            })
            .collect();
        v.sort_unstable();
        v
    }

    fn unsynced_dir_ops(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.pending.iter().map(|(s, _)| *s))
            .collect();
        v.sort_unstable();
        v
    }

    /// Builds a crash image: everything durable, nothing pending.
    fn image(&self, mode: CrashMode, rng: &mut Rng) -> Disk {
        // Which of each inode's pending writes survive (none if absent), the
        // torn write, and which directory operations survive.
        let mut keep_writes: HashMap<u64, Vec<bool>> = HashMap::new();
        let mut torn: Option<(u64, usize, bool)> = None; // (ino, write index, garbage)
        let keep_op: Box<KeepOp>;
        match mode {
            CrashMode::DropUnsynced => keep_op = Box::new(|_, _, _| false),
            CrashMode::KeepAll => {
                for (&ino, i) in &self.inodes {
                    keep_writes.insert(ino, vec![true; i.pending.len()]);
                }
                keep_op = Box::new(|_, _, _| true);
            }
            CrashMode::ForgetDirOps => {
                for (&ino, i) in &self.inodes {
                    keep_writes.insert(ino, vec![true; i.pending.len()]);
                }
                keep_op = Box::new(|_, _, _| false);
            }
            CrashMode::Prefix | CrashMode::TornZeros | CrashMode::TornGarbage => {
                let writes = self.unsynced_writes();
                let threshold = if mode == CrashMode::Prefix || writes.is_empty() {
                    let mut all: Vec<u64> = writes.iter().map(|w| w.0).collect();
                    all.extend(self.unsynced_dir_ops());
                    all.sort_unstable();
                    let k = rng.upto(all.len());
                    all.get(k).copied().unwrap_or(u64::MAX)
                } else {
                    let (seq, ino, k) = writes[rng.below(writes.len() as u64) as usize];
                    torn = Some((ino, k, mode == CrashMode::TornGarbage));
                    seq
                };
                for (&ino, i) in &self.inodes {
                    keep_writes.insert(ino, i.pending.iter().map(|w| w.seq < threshold).collect());
                }
                keep_op = Box::new(move |_, _, seq| seq < threshold);
            }
            CrashMode::Reorder | CrashMode::Holes => {
                let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
                inos.sort_unstable();
                for ino in inos {
                    let n = self.inodes[&ino].pending.len();
                    if mode == CrashMode::Holes {
                        keep_writes.insert(ino, (0..n).map(|_| rng.below(2) == 0).collect());
                        continue;
                    }
                    let k = match rng.below(3) {
                        0 => 0,
                        1 => n,
                        _ => rng.upto(n),
                    };
                    keep_writes.insert(ino, (0..n).map(|i| i < k).collect());
                }
                // POSIX orders no directory operations: any subset survives.
                let kept: std::collections::HashSet<u64> = self
                    .unsynced_dir_ops()
                    .into_iter()
                    .filter(|_| rng.below(2) == 0)
                    .collect();
                keep_op = Box::new(move |_, _, seq| kept.contains(&seq));
            }
        }

        let mut out = Disk {
            next_ino: self.next_ino,
            seq: self.seq,
            ..Default::default()
        };
        for (p, d) in &self.dirs {
            let mut map = d.durable.clone();
            for (idx, (seq, op)) in d.pending.iter().enumerate() {
                if keep_op(p, idx, *seq) {
                    op.apply(&mut map);
                }
            }
            out.dirs.insert(
                p.clone(),
                Dir {
                    live: map.clone(),
                    durable: map,
                    pending: Vec::new(),
                },
            );
        }
        // A directory whose entry did not survive is gone, with everything
        // in it (parents sort before their children).
        let paths: Vec<PathBuf> = out.dirs.keys().cloned().collect();
        for p in paths {
            if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
                let kept = out.dirs.get(parent).is_some_and(|d| {
                    d.durable.get(name.to_string_lossy().as_ref()) == Some(&DIR_INO)
                });
                if !kept {
                    out.dirs.remove(&p);
                }
            }
        }
        let reachable: Vec<u64> = out
            .dirs
            .values()
            .flat_map(|d| d.live.values().copied())
            .collect();
        for ino in reachable {
            if out.inodes.contains_key(&ino) {
                continue;
            }
            let Some(src) = self.inodes.get(&ino) else {
                continue;
            };
            let mut data = src.durable_bytes();
            if let Some(mask) = keep_writes.get(&ino) {
                for (w, _) in src.pending.iter().zip(mask).filter(|(_, &keep)| keep) {
                    w.apply(&mut data, &w.bytes);
                }
            }
            if let Some((t_ino, k, garbage)) = torn {
                if t_ino == ino {
                    let w = &src.pending[k];
                    let whole = rng.upto(w.bytes.len().saturating_sub(1));
                    let mut bytes = w.bytes.clone();
                    for b in &mut bytes[whole..] {
                        *b = if garbage { rng.next() as u8 } else { 0 };
                    }
                    w.apply(&mut data, &bytes);
                }
            }
            out.inodes.insert(
                ino,
                Inode {
                    name: src.name.clone(),
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        out
    }
}

/// A fault that fails operations.
#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    /// Eligible operations left before the one that fails (0 = the next).
    countdown: u64,
    persistent: bool,
    fired: bool,
}

#[derive(Debug)]
struct Shared {
    disk: Disk,
    /// Bumped at every crash or restore: handles from before stop working.
    epoch: u64,
    dead: bool,
    rng: Rng,
    locks: HashMap<PathBuf, u64>,
    next_lock: u64,
    ops: u64,
    faults: Vec<Fault>,
    injected: u64,
    injected_log: Vec<String>,
    points: u64,
    labels: BTreeMap<String, u64>,
    trace: Vec<String>,
    crash_at: Option<u64>,
    capture: Option<CrashState>,
    lint: bool,
    violations: Vec<String>,
}

/// A crash-capable, fault-injecting in-memory file system (see the module
/// docs). Clones share the same state, so a test keeps one clone and gives
/// another to the engine.
#[derive(Clone)]
pub struct FaultStorage {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for FaultStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("FaultStorage")
            .field("files", &s.disk.inodes.len())
            .field("ops", &s.ops)
            .field("persistence_points", &s.points)
            .field("dead", &s.dead)
            .finish()
    }
}

/// The simulated disk at the moment of a crash, from which crash images are
/// built (see [`CrashState::image`]).
#[derive(Debug, Clone)]
pub struct CrashState {
    disk: Disk,
}

impl CrashState {
    /// A fresh storage (new counters, lint on, no faults) holding the image a
    /// crash in `mode` leaves; `seed` decides the random choices of the mode.
    pub fn image(&self, mode: CrashMode, seed: u64) -> FaultStorage {
        let mut rng = Rng::new(seed ^ (mode as u64).wrapping_mul(0x1000_0000_01B3));
        let disk = self.disk.image(mode, &mut rng);
        FaultStorage::from_disk(disk, seed)
    }

    /// A fresh storage holding the files as the operating system has them
    /// after a *process* crash: everything handed over is readable, but what
    /// was not synced is still not durable, so a later power loss
    /// ([`FaultStorage::crash_now`]) can still drop it.
    pub fn process_crash(&self) -> FaultStorage {
        FaultStorage::from_disk(self.disk.clone(), 0)
    }

    /// Unsynced writes and directory operations that a crash may lose.
    pub fn unsynced_events(&self) -> usize {
        self.disk.unsynced_writes().len() + self.disk.unsynced_dir_ops().len()
    }
}

impl Default for FaultStorage {
    fn default() -> Self {
        FaultStorage::new(0)
    }
}

fn dead_error() -> io::Error {
    io::Error::other("simulated power loss: the storage is gone")
}

fn stale_error() -> io::Error {
    io::Error::other("file handle from before a simulated crash")
}

impl FaultStorage {
    /// An empty storage; `seed` drives every random choice it makes.
    pub fn new(seed: u64) -> Self {
        Self::from_disk(Disk::default(), seed)
    }

    fn from_disk(disk: Disk, seed: u64) -> Self {
        FaultStorage {
            shared: Arc::new(Mutex::new(Shared {
                disk,
                epoch: 0,
                dead: false,
                rng: Rng::new(seed),
                locks: HashMap::new(),
                next_lock: 0,
                ops: 0,
                faults: Vec::new(),
                injected: 0,
                injected_log: Vec::new(),
                points: 0,
                labels: BTreeMap::new(),
                trace: Vec::new(),
                crash_at: None,
                capture: None,
                lint: true,
                violations: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- crashes ---------------------------------------------------------

    /// Arms a crash at persistence point number `n` (1-based, counted since the
    /// storage was created; `None` disarms). See the module docs.
    pub fn crash_at_point(&self, n: Option<u64>) {
        self.lock().crash_at = n;
    }

    /// Whether the storage is dead after a simulated crash.
    pub fn is_crashed(&self) -> bool {
        self.lock().dead
    }

    /// The state captured by an armed crash, once it happened.
    pub fn take_crash(&self) -> Option<CrashState> {
        self.lock().capture.take()
    }

    /// Crashes now: returns the current state and makes the storage dead.
    pub fn crash_now(&self) -> CrashState {
        let mut s = self.lock();
        s.dead = true;
        s.epoch += 1;
        s.locks.clear();
        CrashState {
            disk: s.disk.clone(),
        }
    }

    /// Replaces this storage's files with `image`'s and revives it (as after a
    /// reboot): handles from before stop working, locks are released; counters,
    /// faults and the lint's findings are kept.
    pub fn restore(&self, image: &FaultStorage) {
        let disk = image.lock().disk.clone();
        let mut s = self.lock();
        s.disk = disk;
        s.dead = false;
        s.epoch += 1;
        s.locks.clear();
        s.capture = None;
    }

    // ---- faults ----------------------------------------------------------

    /// Fails the `n`-th eligible operation from now (`n >= 1`) with `kind`;
    /// if `persistent`, every eligible operation after it fails too, until
    /// [`FaultStorage::heal`].
    pub fn fail_op(&self, n: u64, kind: FaultKind, persistent: bool) {
        self.lock().faults.push(Fault {
            kind,
            countdown: n.saturating_sub(1),
            persistent,
            fired: false,
        });
    }

    /// Removes every armed fault.
    pub fn heal(&self) {
        self.lock().faults.clear();
    }

    /// Operations performed so far (failed ones included; not those refused
    /// because the storage was dead).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Operations failed by injected faults so far.
    pub fn faults_injected(&self) -> u64 {
        self.lock().injected
    }

    /// The operations failed by injected faults so far, in order, each as
    /// operation and kind of file (e.g. `"sync_data wal"`, `"read seg"`,
    /// `"list_dir other"`).
    pub fn injected_log(&self) -> Vec<String> {
        self.lock().injected_log.clone()
    }

    /// Persistence points reached so far (`sync_data`, `sync_dir`, `rename`,
    /// `truncate`), including the one a crash was armed at.
    pub fn persistence_points(&self) -> u64 {
        self.lock().points
    }

    /// How often each kind of persistence point was reached.
    pub fn point_labels(&self) -> BTreeMap<String, u64> {
        self.lock().labels.clone()
    }

    /// The label of every persistence point reached so far, in order (point
    /// number `n` is at index `n - 1`).
    pub fn point_trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    // ---- lint ------------------------------------------------------------

    /// Turns the durability lint on or off (on by default).
    pub fn set_lint(&self, on: bool) {
        self.lock().lint = on;
    }

    /// What the durability lint found so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Tells the lint that a write carrying `needle` (e.g. a unique value) was
    /// just acknowledged as durable. Records a violation and returns false if
    /// `needle` is not in the durable bytes of any WAL or segment file with a
    /// durable directory entry.
    pub fn check_acknowledged(&self, what: &str, needle: &[u8]) -> bool {
        let mut s = self.lock();
        let found = s.disk.dirs.iter().any(|(p, d)| {
            d.durable.keys().any(|name| {
                matches!(class(name), "wal" | "seg")
                    && s.disk
                        .durable_file(p, name)
                        .is_some_and(|b| contains(&b, needle))
            })
        });
        if !found {
            s.violations.push(format!(
                "acknowledged before durable: {what} is not in any durable WAL or segment"
            ));
        }
        found
    }

    // ---- plumbing ----------------------------------------------------------

    /// Starts an operation: refuses it if dead or the handle is stale, counts
    /// it, and fires a fault if one is due.
    fn begin(&self, s: &mut Shared, op: Op, epoch: Option<u64>, name: &str) -> io::Result<()> {
        if s.dead {
            return Err(dead_error());
        }
        if epoch.is_some_and(|e| e != s.epoch) {
            return Err(stale_error());
        }
        s.ops += 1;
        let mut fail = None;
        for f in &mut s.faults {
            if f.kind == FaultKind::Enospc && !op.may_allocate() {
                continue;
            }
            if f.fired {
                if f.persistent {
                    fail = Some(f.kind);
                }
                continue;
            }
            if f.countdown == 0 {
                f.fired = true;
                fail = Some(f.kind);
            } else {
                f.countdown -= 1;
            }
        }
        match fail {
            Some(kind) => {
                s.injected += 1;
                s.injected_log
                    .push(format!("{} {}", op.name(), class(name)));
                Err(kind.error())
            }
            None => Ok(()),
        }
    }

    /// Counts a persistence point; crashes there if armed.
    fn point(&self, s: &mut Shared, label: String) -> io::Result<()> {
        s.points += 1;
        *s.labels.entry(label.clone()).or_default() += 1;
        s.trace.push(label);
        if s.crash_at == Some(s.points) {
            s.capture = Some(CrashState {
                disk: s.disk.clone(),
            });
            s.dead = true;
            s.epoch += 1;
            s.locks.clear();
            return Err(dead_error());
        }
        Ok(())
    }

    fn violation(s: &mut Shared, msg: String) {
        if s.lint {
            s.violations.push(msg);
        }
    }

    /// Lint: a manifest is about to be renamed into place.
    fn lint_manifest_rename(s: &mut Shared, dir: &Path, ino: u64) {
        let Some(inode) = s.disk.inodes.get(&ino) else {
            return;
        };
        let mut found = Vec::new();
        if !inode.fully_synced() {
            found.push(format!(
                "manifest renamed into place before its data is synced ({} writes pending, {} of {} bytes durable)",
                inode.pending.len(),
                inode.durable.len(),
                inode.data.len()
            ));
        }
        if let Some((segs, _)) = parse_manifest(&inode.data) {
            let d = s.disk.dirs.get(dir);
            for id in segs {
                let name = segment::file_name(id);
                let durable = d.and_then(|d| d.durable.get(&name)).copied();
                let live = d.and_then(|d| d.live.get(&name)).copied();
                match (durable, live) {
                    (Some(a), Some(b)) if a == b => {
                        let i = &s.disk.inodes[&a];
                        if !i.fully_synced() {
                            found.push(format!(
                                "manifest references segment {name} before its data is synced"
                            ));
                        }
                    }
                    (_, None) => found.push(format!(
                        "manifest references segment {name}, which does not exist"
                    )),
                    _ => found.push(format!(
                        "manifest references segment {name} before its directory entry is synced"
                    )),
                }
            }
        }
        for f in found {
            Self::violation(s, f);
        }
    }

    /// Lint: a file is about to be removed, or (`what` = "overwritten") a WAL
    /// reopened to be written over.
    fn lint_remove(s: &mut Shared, dir: &Path, name: &str, what: &str) {
        let durable_manifest = s
            .disk
            .durable_file(dir, manifest::FILE_NAME)
            .and_then(|b| parse_manifest(&b));
        if let Some(id) = segment::parse_file_name(name) {
            let live_manifest = s
                .disk
                .live_file(dir, manifest::FILE_NAME)
                .and_then(|i| parse_manifest(&i.data));
            if durable_manifest.as_ref().is_some_and(|m| m.0.contains(&id)) {
                Self::violation(
                    s,
                    format!("segment {name} {what} while the durable manifest references it"),
                );
            } else if live_manifest.as_ref().is_some_and(|m| m.0.contains(&id)) {
                Self::violation(
                    s,
                    format!("segment {name} {what} while the current manifest references it"),
                );
            }
        } else if let Some(no) = wal::parse_file_name(name) {
            let log_number = durable_manifest.map_or(0, |m| m.1);
            let has_records = s
                .disk
                .durable_file(dir, name)
                .is_some_and(|b| wal_has_records(name, &b));
            if no >= log_number && has_records {
                Self::violation(
                    s,
                    format!(
                        "WAL {name} {what} while the durable manifest still needs it \
                         (log_number {log_number})"
                    ),
                );
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether the WAL file `name` with these bytes holds a record (an unreadable
/// header counts as holding one: the lint errs on the side of a violation).
fn wal_has_records(name: &str, bytes: &[u8]) -> bool {
    match wal::replay_bytes(bytes, Path::new(name), true) {
        Ok(r) => !r.batches.is_empty(),
        Err(_) => true,
    }
}

/// Segment ids and log number of a manifest file's bytes, if they parse.
fn parse_manifest(bytes: &[u8]) -> Option<(Vec<u64>, u64)> {
    let dir = PathBuf::from("/lint");
    let mut disk = Disk::default();
    disk.dirs.insert(dir.clone(), Dir::default());
    let path = dir.join(manifest::FILE_NAME);
    let ino = disk.create_file(&path, true).ok()?;
    let inode = disk.inodes.get_mut(&ino)?;
    inode.data = bytes.to_vec();
    inode.durable = bytes.to_vec();
    let storage = FaultStorage::from_disk(disk, 0);
    let m = Manifest::open_with(Arc::new(storage), &path).ok()?;
    Some((
        m.list_segments().iter().map(|s| s.segment_id).collect(),
        m.log_number(),
    ))
}

#[derive(Debug)]
struct FaultWritable {
    fs: FaultStorage,
    name: String,
    ino: u64,
    epoch: u64,
    /// Where the next write goes (guarded by the storage's lock).
    pos: std::sync::atomic::AtomicUsize,
    /// Opened with `open_overwrite` (for labels).
    overwrite: bool,
    /// Whether a sync through this handle was attempted (for labels).
    synced_once: std::sync::atomic::AtomicBool,
}

impl FaultWritable {
    fn new(fs: &FaultStorage, path: &Path, ino: u64, epoch: u64, overwrite: bool) -> Self {
        FaultWritable {
            fs: fs.clone(),
            name: name_of(path),
            ino,
            epoch,
            pos: std::sync::atomic::AtomicUsize::new(0),
            overwrite,
            synced_once: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl WritableFile for FaultWritable {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let mut s = self.fs.lock();
        let res = self
            .fs
            .begin(&mut s, Op::Append, Some(self.epoch), &self.name);
        let n = match &res {
            Ok(()) => buf.len(),
            Err(_) if s.dead || s.epoch != self.epoch => return res,
            // A failed write may still have written part of the buffer.
            Err(_) => s.rng.upto(buf.len()),
        };
        if n > 0 {
            let seq = s.disk.next_seq();
            let inode = s.disk.inodes.get_mut(&self.ino).ok_or_else(stale_error)?;
            let w = Write {
                seq,
                start: self.pos.load(SeqCst),
                bytes: buf[..n].to_vec(),
            };
            w.apply(&mut inode.data, &w.bytes);
            self.pos.store(w.end(), SeqCst);
            inode.pending.push(w);
        }
        res
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        if s.dead {
            return Err(dead_error());
        }
        if s.epoch != self.epoch {
            return Err(stale_error());
        }
        let label = {
            let i = s.disk.inodes.get(&self.ino).ok_or_else(stale_error)?;
            let c = class(&i.name);
            let first = !self
                .synced_once
                .swap(true, std::sync::atomic::Ordering::SeqCst);
            match (c == "wal" && first, self.overwrite) {
                (true, false) => "sync_data wal header".to_string(),
                (true, true) => "sync_data wal recycled header".to_string(),
                (false, _) => format!("sync_data {c}"),
            }
        };
        self.fs.point(&mut s, label)?;
        let res = self
            .fs
            .begin(&mut s, Op::SyncData, Some(self.epoch), &self.name);
        let inode = s.disk.inodes.get_mut(&self.ino).ok_or_else(stale_error)?;
        match res {
            Ok(()) => {
                inode.sync();
                Ok(())
            }
            Err(e) => {
                // Linux: the dirty pages are marked clean and never written.
                inode.pending.clear();
                Err(e)
            }
        }
    }
}

#[derive(Debug)]
struct FaultReadable {
    fs: FaultStorage,
    name: String,
    ino: u64,
    epoch: u64,
}

impl ReadableFile for FaultReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        self.fs
            .begin(&mut s, Op::Read, Some(self.epoch), &self.name)?;
        let data = &s.disk.inodes.get(&self.ino).ok_or_else(stale_error)?.data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()) {
            Some(end) if end <= data.len() => {
                buf.copy_from_slice(&data[start..end]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            )),
        }
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.fs.lock();
        self.fs
            .begin(&mut s, Op::Len, Some(self.epoch), &self.name)?;
        Ok(s.disk
            .inodes
            .get(&self.ino)
            .ok_or_else(stale_error)?
            .data
            .len() as u64)
    }
}

#[derive(Debug)]
struct FaultLock {
    fs: FaultStorage,
    path: PathBuf,
    token: u64,
}

impl DirLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if s.locks.get(&self.path) == Some(&self.token) {
            s.locks.remove(&self.path);
        }
    }
}

impl Storage for FaultStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, Op::CreateDirAll, None, "")?;
        let mut new: Vec<&Path> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty() && !s.disk.dirs.contains_key(*a))
            .collect();
        new.reverse();
        for a in new {
            s.disk.dirs.insert(a.to_path_buf(), Dir::default());
            if let (Some(parent), Some(name)) = (a.parent(), a.file_name()) {
                if s.disk.dirs.contains_key(parent) {
                    let op = DirOp::Create {
                        name: name.to_string_lossy().into_owned(),
                        ino: DIR_INO,
                    };
                    s.disk.push_dir_op(parent, op)?;
                }
            }
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let mut s = self.lock();
        self.begin(&mut s, Op::Create, None, &name_of(path))?;
        let ino = s.disk.create_file(path, false)?;
        Ok(Arc::new(FaultWritable::new(
            self, path, ino, s.epoch, false,
        )))
    }

    fn open_overwrite(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let mut s = self.lock();
        self.begin(&mut s, Op::OpenOverwrite, None, &name_of(path))?;
        let ino = s.disk.lookup(path)?;
        if s.lint {
            let (d, n) = split(path)?;
            Self::lint_remove(&mut s, &d, &n, "overwritten");
        }
        Ok(Arc::new(FaultWritable::new(self, path, ino, s.epoch, true)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let mut s = self.lock();
        self.begin(&mut s, Op::OpenRead, None, &name_of(path))?;
        let ino = s.disk.lookup(path)?;
        Ok(Arc::new(FaultReadable {
            fs: self.clone(),
            name: name_of(path),
            ino,
            epoch: s.epoch,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(dead_error());
        }
        let (fd, fname) = split(from)?;
        let (td, tname) = split(to)?;
        self.point(
            &mut s,
            format!("rename {} -> {}", class(&fname), class(&tname)),
        )?;
        self.begin(&mut s, Op::Rename, None, &tname)?;
        let ino = s.disk.lookup(from)?;
        s.disk.dir(&td)?;
        if tname == manifest::FILE_NAME && s.lint {
            Self::lint_manifest_rename(&mut s, &td, ino);
        }
        if let Some(i) = s.disk.inodes.get_mut(&ino) {
            i.name = tname.clone();
        }
        if fd == td {
            s.disk.push_dir_op(
                &fd,
                DirOp::Rename {
                    from: fname,
                    to: tname,
                },
            )
        } else {
            s.disk.push_dir_op(&fd, DirOp::Remove { name: fname })?;
            s.disk.push_dir_op(&td, DirOp::Create { name: tname, ino })
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, Op::Remove, None, &name_of(path))?;
        s.disk.lookup(path)?;
        let (d, n) = split(path)?;
        if s.lint {
            Self::lint_remove(&mut s, &d, &n, "removed");
        }
        s.disk.push_dir_op(&d, DirOp::Remove { name: n })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(dead_error());
        }
        let label = match s.disk.dirs.get(dir).and_then(|d| d.pending.last()) {
            Some((_, op)) => format!("sync_dir after {}", op.label()),
            None => "sync_dir with nothing pending".to_string(),
        };
        self.point(&mut s, label)?;
        self.begin(&mut s, Op::SyncDir, None, "")?;
        let d = s.disk.dir_mut(dir)?;
        for (_, op) in std::mem::take(&mut d.pending) {
            op.apply(&mut d.durable);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.lock();
        self.begin(&mut s, Op::ListDir, None, "")?;
        let mut names: Vec<String> = s.disk.dir(dir)?.live.keys().cloned().collect();
        // Subdirectories are entries too.
        for p in s.disk.dirs.keys() {
            if p.parent() == Some(dir) {
                if let Some(n) = p.file_name() {
                    names.push(n.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut s = self.lock();
        self.begin(&mut s, Op::Exists, None, &name_of(path))?;
        Ok(s.disk.dirs.contains_key(path) || s.disk.lookup(path).is_ok())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(dead_error());
        }
        let (_, n) = split(path)?;
        let cuts = s
            .disk
            .lookup(path)
            .ok()
            .and_then(|ino| s.disk.inodes.get(&ino))
            .is_none_or(|i| (i.data.len() as u64) > len);
        let label = if cuts {
            format!("truncate {}", class(&n))
        } else {
            format!("truncate {} without cutting", class(&n))
        };
        self.point(&mut s, label)?;
        self.begin(&mut s, Op::Truncate, None, &name_of(path))?;
        let ino = s.disk.lookup(path)?;
        let inode = s.disk.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        inode.data.resize(len, 0);
        // Cut and synced (sync_all): every pending write below the cut is
        // durable; what a failed sync dropped stays as it was on disk.
        inode.durable.resize(len, 0);
        for w in std::mem::take(&mut inode.pending) {
            if w.start < len {
                let keep = (len - w.start).min(w.bytes.len());
                w.apply(&mut inode.durable, &w.bytes[..keep]);
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut s = self.lock();
        self.begin(&mut s, Op::Lock, None, &name_of(path))?;
        if s.disk.lookup(path).is_err() {
            s.disk.create_file(path, true)?;
        }
        if s.locks.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "lock held"));
        }
        s.next_lock += 1;
        let token = s.next_lock;
        s.locks.insert(path.to_path_buf(), token);
        Ok(Box::new(FaultLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEdit;
    use crate::segment::SegmentMeta;

    fn dir() -> PathBuf {
        PathBuf::from("/db")
    }

    fn storage() -> FaultStorage {
        let fs = FaultStorage::new(1);
        fs.create_dir_all(&dir()).unwrap();
        // The directory's own entry, as the engine's open makes it durable.
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    /// A new directory survives a power loss only once its entry is synced
    /// into its parent; before that, it goes with everything in it (and
    /// nothing in it counts as durable).
    #[test]
    fn a_new_directory_needs_its_parent_synced() {
        let fs = FaultStorage::new(1);
        fs.create_dir_all(Path::new("/a/db")).unwrap();
        let f = fs
            .create(Path::new("/a/db/00000000000000000001.wal"))
            .unwrap();
        f.append(b"record").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/a/db")).unwrap();
        assert!(
            !fs.check_acknowledged("x", b"record"),
            "the directory is not durable yet"
        );
        let img = fs.crash_now().image(CrashMode::DropUnsynced, 0);
        assert!(!img.exists(Path::new("/a")).unwrap());
        assert!(img
            .read_all(Path::new("/a/db/00000000000000000001.wal"))
            .is_err());

        let fs = FaultStorage::new(1);
        fs.create_dir_all(Path::new("/a/db")).unwrap();
        let f = fs
            .create(Path::new("/a/db/00000000000000000001.wal"))
            .unwrap();
        f.append(b"record").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/a/db")).unwrap();
        fs.sync_dir(Path::new("/a")).unwrap();
        // "/a" itself is still unsynced in "/": not yet.
        assert!(!fs.check_acknowledged("x", b"record"));
        fs.sync_dir(Path::new("/")).unwrap();
        assert!(fs.check_acknowledged("x", b"record"));
        let img = fs.crash_now().image(CrashMode::DropUnsynced, 0);
        assert_eq!(
            img.read_all(Path::new("/a/db/00000000000000000001.wal"))
                .unwrap(),
            b"record"
        );
    }

    fn write(fs: &FaultStorage, name: &str, chunks: &[&[u8]], sync: bool) {
        let f = fs.create(&dir().join(name)).unwrap();
        for c in chunks {
            f.append(c).unwrap();
        }
        if sync {
            f.sync_data().unwrap();
        }
    }

    fn read(fs: &FaultStorage, name: &str) -> Option<Vec<u8>> {
        fs.read_all(&dir().join(name)).ok()
    }

    #[test]
    fn unsynced_data_and_entries_are_dropped() {
        let fs = storage();
        write(&fs, "a", &[b"durable"], true);
        fs.sync_dir(&dir()).unwrap();
        let f = fs.create(&dir().join("c")).unwrap();
        f.append(b"x").unwrap();
        fs.sync_dir(&dir()).unwrap();
        f.append(b"yz").unwrap();
        write(&fs, "b", &[b"synced data, entry not"], true);
        let st = fs.crash_now();
        assert!(fs.read_all(&dir().join("a")).is_err(), "dead after a crash");
        assert!(f.append(b"late").is_err());

        let img = st.image(CrashMode::DropUnsynced, 0);
        assert_eq!(read(&img, "a").unwrap(), b"durable");
        assert_eq!(read(&img, "b"), None);
        assert_eq!(read(&img, "c").unwrap(), b"");

        let img = st.image(CrashMode::KeepAll, 0);
        assert_eq!(read(&img, "b").unwrap(), b"synced data, entry not");
        assert_eq!(read(&img, "c").unwrap(), b"xyz");

        let img = st.image(CrashMode::ForgetDirOps, 0);
        assert_eq!(read(&img, "b"), None);
        assert_eq!(read(&img, "c").unwrap(), b"xyz");
    }

    #[test]
    fn prefix_torn_and_reorder_images() {
        let fs = storage();
        write(&fs, "a", &[], true);
        write(&fs, "b", &[], true);
        fs.sync_dir(&dir()).unwrap();
        let a = fs.create(&dir().join("a")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        let b = fs.create(&dir().join("b")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        for i in 0..4u8 {
            a.append(&[b'a' + i; 4]).unwrap();
            b.append(&[b'A' + i; 4]).unwrap();
        }
        let st = fs.crash_now();
        assert_eq!(st.unsynced_events(), 8);
        let full_a = b"aaaabbbbccccdddd".to_vec();
        let full_b = b"AAAABBBBCCCCDDDD".to_vec();
        let mut saw_reorder = false;
        let mut saw_hole = false;
        let mut saw_torn = [false; 2];
        for seed in 0..200 {
            // Prefix: a global prefix, so b never gets ahead of a by more than one write.
            let img = st.image(CrashMode::Prefix, seed);
            let (ra, rb) = (read(&img, "a").unwrap(), read(&img, "b").unwrap());
            assert!(full_a.starts_with(&ra) && full_b.starts_with(&rb));
            assert!(ra.len() == rb.len() || ra.len() == rb.len() + 4);

            let img = st.image(CrashMode::Reorder, seed);
            let (ra, rb) = (read(&img, "a").unwrap(), read(&img, "b").unwrap());
            assert!(full_a.starts_with(&ra) && full_b.starts_with(&rb));
            saw_reorder |= rb.len() > ra.len() + 4;

            // Holes: each 4-byte write is there whole or reads as zeros.
            let img = st.image(CrashMode::Holes, seed);
            for (got, full) in [
                (read(&img, "a").unwrap(), &full_a),
                (read(&img, "b").unwrap(), &full_b),
            ] {
                assert_eq!(got.len() % 4, 0);
                for (g, f) in got.chunks(4).zip(full.chunks(4)) {
                    assert!(g == f || g == [0; 4]);
                }
                saw_hole |= got.chunks(4).any(|c| c == [0; 4]);
            }

            for (t, mode) in [CrashMode::TornZeros, CrashMode::TornGarbage]
                .into_iter()
                .enumerate()
            {
                let img = st.image(mode, seed);
                let (ra, rb) = (read(&img, "a").unwrap(), read(&img, "b").unwrap());
                assert_eq!(ra.len() % 4, 0);
                assert_eq!(rb.len() % 4, 0);
                let bad_a = ra.iter().zip(&full_a).filter(|(x, y)| x != y).count();
                let bad_b = rb.iter().zip(&full_b).filter(|(x, y)| x != y).count();
                assert!(bad_a + bad_b <= 4);
                if bad_a + bad_b > 0 {
                    saw_torn[t] = true;
                    let torn = if bad_a > 0 { &ra } else { &rb };
                    let zeros = torn.ends_with(&[0]);
                    assert!(mode == CrashMode::TornGarbage || zeros);
                }
            }
        }
        assert!(saw_reorder && saw_hole && saw_torn[0] && saw_torn[1]);
    }

    #[test]
    fn failed_fsync_drops_the_pages_for_good() {
        let fs = storage();
        let f = fs.create(&dir().join("w")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        f.append(b"one").unwrap();
        f.sync_data().unwrap();
        f.append(b"two").unwrap();
        fs.fail_op(1, FaultKind::Eio, false);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        assert_eq!(fs.faults_injected(), 1);
        f.append(b"three").unwrap();
        f.sync_data().unwrap(); // "succeeds", but "two" never reaches the disk
        assert_eq!(read(&fs, "w").unwrap(), b"onetwothree");
        let img = fs.crash_now().image(CrashMode::DropUnsynced, 0);
        assert_eq!(read(&img, "w").unwrap(), b"one\0\0\0three");
    }

    #[test]
    fn faults_fire_once_or_persistently_and_enospc_skips_reads() {
        let fs = storage();
        write(&fs, "a", &[b"abc"], true);
        fs.fail_op(2, FaultKind::Enospc, false);
        assert!(fs.exists(&dir().join("a")).unwrap()); // not eligible
        fs.create(&dir().join("b")).unwrap(); // 1st eligible
        let e = fs.create(&dir().join("c")).unwrap_err(); // 2nd
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        fs.create(&dir().join("d")).unwrap();
        fs.fail_op(1, FaultKind::Eio, true);
        assert!(fs.exists(&dir().join("a")).is_err());
        assert!(fs.list_dir(&dir()).is_err());
        fs.heal();
        assert_eq!(fs.list_dir(&dir()).unwrap(), ["a", "b", "d"]);
    }

    #[test]
    fn crash_at_a_point_captures_the_state_before_it() {
        let fs = storage(); // point 1: the directory's entry synced
        fs.crash_at_point(Some(3));
        write(&fs, "a", &[b"abc"], true); // point 2
        assert!(fs.sync_dir(&dir()).is_err()); // point 3: crash
        assert!(fs.is_crashed());
        assert_eq!(fs.persistence_points(), 3);
        let st = fs.take_crash().unwrap();
        assert_eq!(read(&st.image(CrashMode::DropUnsynced, 0), "a"), None);
        assert_eq!(read(&st.image(CrashMode::KeepAll, 0), "a").unwrap(), b"abc");
        fs.restore(&st.image(CrashMode::KeepAll, 0));
        assert_eq!(read(&fs, "a").unwrap(), b"abc");
        let labels = fs.point_labels();
        assert_eq!(labels["sync_data other"], 1);
        // The directory's own entry ("db" in "/"), then the file's.
        assert_eq!(labels["sync_dir after create other"], 2);
    }

    fn meta(id: u64) -> SegmentMeta {
        SegmentMeta {
            segment_id: id,
            run_id: id,
            cohort_bucket: 0,
            death_time: i64::MAX,
            min_death_time: i64::MAX,
            min_key: b"a".to_vec(),
            max_key: b"b".to_vec(),
            min_lsn: 1,
            max_lsn: 1,
            record_count: 1,
            tombstone_count: 0,
            file_size: 3,
            merkle_root: vec![0; 32],
        }
    }

    fn manifest_on(fs: &FaultStorage) -> Manifest {
        Manifest::open_with(Arc::new(fs.clone()), &dir().join(manifest::FILE_NAME)).unwrap()
    }

    #[test]
    fn lint_catches_a_segment_published_before_it_is_durable() {
        // Data synced, directory entry not.
        let fs = storage();
        let mut m = manifest_on(&fs);
        assert!(fs.violations().is_empty());
        write(&fs, &segment::file_name(1), &[b"seg"], true);
        m.add_segment(meta(1)).unwrap();
        let v = fs.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("directory entry"), "{v:?}");
        // Entry synced, data not.
        let fs = storage();
        let mut m = manifest_on(&fs);
        write(&fs, &segment::file_name(2), &[b"seg"], false);
        fs.sync_dir(&dir()).unwrap();
        m.add_segment(meta(2)).unwrap();
        let v = fs.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("data is synced"), "{v:?}");
        // Done right: no finding.
        let fs = storage();
        let mut m = manifest_on(&fs);
        write(&fs, &segment::file_name(3), &[b"seg"], true);
        fs.sync_dir(&dir()).unwrap();
        m.add_segment(meta(3)).unwrap();
        assert!(fs.violations().is_empty());
    }

    #[test]
    fn lint_catches_removal_before_the_manifest_drops_the_file() {
        let fs = storage();
        let mut m = manifest_on(&fs);
        for id in [1, 2] {
            write(&fs, &segment::file_name(id), &[b"seg"], true);
        }
        fs.sync_dir(&dir()).unwrap();
        m.apply(ManifestEdit {
            add: vec![meta(1), meta(2)],
            ..Default::default()
        })
        .unwrap();
        fs.remove_file(&dir().join(segment::file_name(1))).unwrap();
        assert_eq!(fs.violations().len(), 1);
        m.remove_segments(&[1, 2]).unwrap();
        fs.remove_file(&dir().join(segment::file_name(2))).unwrap();
        assert_eq!(fs.violations().len(), 1, "{:?}", fs.violations());
    }

    #[test]
    fn lint_catches_a_wal_removed_before_the_manifest_retires_it() {
        let fs = storage();
        let mut m = manifest_on(&fs);
        m.apply(ManifestEdit {
            log_number: Some(1),
            ..Default::default()
        })
        .unwrap();
        let record = |no: u64| {
            let mut w = wal::WalWriter::create(&fs, &dir(), no).unwrap();
            let op = wal::WalOp {
                op: crate::types::Operation::Put,
                ttl: 0,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            };
            let rec = w.record(no, 0, &[op]);
            w.append(&rec).unwrap();
            w.file.sync_data().unwrap();
        };
        record(1);
        record(2);
        // A WAL with only a header holds nothing: removing it is fine.
        drop(wal::WalWriter::create(&fs, &dir(), 3).unwrap());
        fs.remove_file(&dir().join(wal::file_name(3))).unwrap();
        assert!(fs.violations().is_empty());
        fs.remove_file(&dir().join(wal::file_name(1))).unwrap();
        assert_eq!(fs.violations().len(), 1, "{:?}", fs.violations());
        m.apply(ManifestEdit {
            log_number: Some(3),
            ..Default::default()
        })
        .unwrap();
        fs.remove_file(&dir().join(wal::file_name(2))).unwrap();
        assert_eq!(fs.violations().len(), 1, "{:?}", fs.violations());
    }

    #[test]
    fn lint_catches_an_unsynced_manifest_rename() {
        let fs = storage();
        write(&fs, "manifest.mf.tmp", &[b"whatever"], false);
        fs.rename(
            &dir().join("manifest.mf.tmp"),
            &dir().join(manifest::FILE_NAME),
        )
        .unwrap();
        assert!(fs.violations()[0].contains("before its data is synced"));
    }
}
