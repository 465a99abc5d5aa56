//! The storage trait: every file the engine touches goes through it, so tests
//! can substitute a fault-injecting implementation and no module opens files
//! behind the engine's back.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A file being written sequentially, from its start ([`Storage::create`])
/// or over its old contents ([`Storage::open_overwrite`]). Methods take
/// `&self` so that one thread can `sync_data` while another appends (group
/// commit).
pub trait WritableFile: Send + Sync + Debug {
    /// Writes `buf` at the write position and advances it (handed to the OS,
    /// not synced). For a created file the position is its end.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// A file read at arbitrary offsets.
pub trait ReadableFile: Send + Sync + Debug {
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The whole file in memory, when it was opened with
    /// [`Storage::open_mapped`] and the storage maps files.
    fn mapping(&self) -> Option<Arc<Mapping>> {
        None
    }
}

/// A read-only memory map of a whole file that nobody modifies while it is
/// mapped (a segment: written once, synced, then only read and deleted).
/// Reading it costs no system call and no copy.
#[derive(Debug)]
pub struct Mapping(memmap2::Mmap);

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A held exclusive lock on a database directory; released on drop.
pub trait DirLock: Send + Sync + Debug {}

/// File-system operations used by the engine.
pub trait Storage: Send + Sync + Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>>;
    /// Opens a file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    /// Opens an immutable file for reading, memory-mapped where the storage
    /// can map files ([`ReadableFile::mapping`]); by default the same as
    /// [`Storage::open_read`].
    fn open_mapped(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        self.open_read(path)
    }
    /// Opens an existing file for writing from offset 0 without truncating it:
    /// [`WritableFile::append`] then overwrites its bytes in order and, past
    /// its old end, extends it (the engine reuses obsolete WAL files this
    /// way). A storage that cannot overwrite in place returns
    /// `ErrorKind::Unsupported`, the default, and the engine creates new
    /// files instead.
    fn open_overwrite(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("overwriting {} in place is not supported", path.display()),
        ))
    }
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Handles opened before (by [`Storage::open_read`] or
    /// [`Storage::open_mapped`]) must stay readable, with the same bytes,
    /// until dropped, as POSIX `unlink` keeps them: compaction removes
    /// segment files that snapshots and iterators are still reading.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes creates, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Cuts a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Takes an exclusive, non-blocking lock on `path` (created if missing).
    /// Fails with `ErrorKind::WouldBlock` when someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open_read(path)?;
        let len = usize::try_from(f.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

#[derive(Debug)]
struct FsWritable(File);

impl WritableFile for FsWritable {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct FsReadable(File);

impl ReadableFile for FsReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// A mapped file. `read_exact_at` still uses `pread` on the descriptor, so
/// a whole-file pass (compaction) does not fault the file into the
/// process's mappings; point reads and scans use the map.
#[derive(Debug)]
struct FsMapped {
    file: FsReadable,
    map: Arc<Mapping>,
}

impl ReadableFile for FsMapped {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.map.len() as u64)
    }
    fn mapping(&self) -> Option<Arc<Mapping>> {
        Some(Arc::clone(&self.map))
    }
}

#[derive(Debug)]
struct FsLock(File);

impl DirLock for FsLock {}

impl Drop for FsLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(FsWritable(f)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(FsReadable(File::open(path)?)))
    }

    fn open_overwrite(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        // No O_APPEND, no truncation: writes start at offset 0 over the old bytes.
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Arc::new(FsWritable(f)))
    }

    fn open_mapped(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            // Nothing to map (mmap of length 0 fails); plain reads report it.
            return Ok(Arc::new(FsReadable(file)));
        }
        // SAFETY: the engine maps only segment files, which are written
        // once and synced before the manifest names them (only then are they
        // opened), and are never written or truncated afterwards (only deleted, which
        // leaves existing maps valid). A process outside the engine that
        // truncated a mapped segment would make reads past the new end fault
        // (SIGBUS); that is documented with `EdgestoreConfig::mmap_reads`.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Arc::new(FsMapped {
            file: FsReadable(file),
            map: Arc::new(Mapping(map)),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(FsLock(f))),
            Err(fs::TryLockError::WouldBlock) => {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "lock held"))
            }
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
