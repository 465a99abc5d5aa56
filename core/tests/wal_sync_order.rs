//! WAL fsyncs from durable writers (group commit) and from flushes (the sync
//! before a rotation, and the rotation's own) are one protocol: never two at
//! once, and none after one failed.
//!
//! Why: Linux reports a write-back error to one fsync of a file only. Two
//! fsyncs in flight at once, or one after a failure, can each return success
//! for pages the failure dropped, and a write would be acknowledged as
//! durable without being so.
//!
//! The storage here wraps the fault-injecting one and watches every fsync of
//! a WAL file, while durable writers and a thread forcing flushes race.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgestore::fault::{CrashMode, FaultKind, FaultStorage};
use edgestore::storage::{DirLock, ReadableFile, Storage, WritableFile};
use edgestore::{EdgestoreConfig, Engine, SyncMode};

/// What the watcher saw of WAL fsyncs.
#[derive(Debug, Default)]
struct Watch {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    calls: AtomicU64,
    /// Fail the WAL fsync with this call number (0: none).
    fail_at: AtomicU64,
    failed: AtomicBool,
    calls_after_failure: AtomicU64,
    /// Storage operations one at a time, so that an injected fault hits the
    /// fsync it is meant for (the engine's own concurrency is unchanged).
    serial: Mutex<()>,
}

#[derive(Debug)]
struct Watched {
    inner: FaultStorage,
    watch: Arc<Watch>,
}

#[derive(Debug)]
struct WatchedFile {
    inner: Arc<dyn WritableFile>,
    wal: bool,
    fs: FaultStorage,
    watch: Arc<Watch>,
}

impl WritableFile for WatchedFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.append(buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        if !self.wal {
            let _g = self.watch.serial.lock().unwrap();
            return self.inner.sync_data();
        }
        let w = &self.watch;
        let n = w.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if w.failed.load(Ordering::SeqCst) {
            w.calls_after_failure.fetch_add(1, Ordering::SeqCst);
        }
        let now = w.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        w.most_in_flight.fetch_max(now, Ordering::SeqCst);
        // Widen the window in which another fsync could start.
        std::thread::sleep(Duration::from_millis(1));
        let res = {
            let _g = w.serial.lock().unwrap();
            if n == w.fail_at.load(Ordering::SeqCst) {
                self.fs.fail_op(1, FaultKind::Eio, false);
            }
            self.inner.sync_data()
        };
        if res.is_err() {
            w.failed.store(true, Ordering::SeqCst);
        }
        w.in_flight.fetch_sub(1, Ordering::SeqCst);
        res
    }
}

impl Watched {
    fn wrap(&self, path: &Path, f: Arc<dyn WritableFile>) -> Arc<dyn WritableFile> {
        Arc::new(WatchedFile {
            inner: f,
            wal: path.extension().is_some_and(|e| e == "wal"),
            fs: self.inner.clone(),
            watch: Arc::clone(&self.watch),
        })
    }
}

impl Storage for Watched {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = {
            let _g = self.watch.serial.lock().unwrap();
            self.inner.create(path)?
        };
        Ok(self.wrap(path, f))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.open_read(path)
    }
    fn open_overwrite(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = {
            let _g = self.watch.serial.lock().unwrap();
            self.inner.open_overwrite(path)?
        };
        Ok(self.wrap(path, f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.sync_dir(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.exists(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let _g = self.watch.serial.lock().unwrap();
        self.inner.truncate(path, len)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.inner.lock(path)
    }
}

/// Three durable writers and a thread forcing flushes, until the writers
/// have made `per_writer` puts each or the database refuses them. Returns
/// the values whose puts were acknowledged.
fn race(db: &Arc<Engine>, per_writer: usize) -> Vec<Vec<u8>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (db, stop) = (Arc::clone(db), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = db.flush_to_segments();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let db = Arc::clone(db);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..per_writer {
                    let value = format!("value-{t}-{i:05}-durable").into_bytes();
                    match db.put(b"ns", format!("k{t}-{i}").as_bytes(), &value) {
                        Ok(()) => acked.push(value),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    let acked = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::SeqCst);
    flusher.join().unwrap();
    acked
}

fn open(fail_at: u64) -> (FaultStorage, Arc<Watch>, EdgestoreConfig, Arc<Engine>) {
    let fs = FaultStorage::new(7);
    let watch = Arc::new(Watch::default());
    watch.fail_at.store(fail_at, Ordering::SeqCst);
    let mut config = EdgestoreConfig::new("/db");
    config.sync_mode = SyncMode::Durable;
    config.storage = Arc::new(Watched {
        inner: fs.clone(),
        watch: Arc::clone(&watch),
    });
    config.background_compaction = None;
    let db = Arc::new(Engine::open(config.clone()).unwrap());
    (fs, watch, config, db)
}

#[test]
fn wal_fsyncs_never_overlap() {
    let (_fs, watch, _config, db) = open(0);
    let acked = race(&db, 150);
    assert_eq!(acked.len(), 450);
    assert!(watch.calls.load(Ordering::SeqCst) > 50);
    assert_eq!(
        watch.most_in_flight.load(Ordering::SeqCst),
        1,
        "two fsyncs of the WAL were in flight at once"
    );
}

#[test]
fn no_wal_fsync_after_a_failed_one_and_acknowledged_writes_survive() {
    for fail_at in [5, 20, 40, 77] {
        let (fs, watch, mut config, db) = open(fail_at);
        let acked = race(&db, 150);
        assert!(
            watch.failed.load(Ordering::SeqCst),
            "fsync {fail_at} was not reached"
        );
        assert_eq!(
            watch.calls_after_failure.load(Ordering::SeqCst),
            0,
            "the WAL was fsynced again after fsync {fail_at} failed"
        );
        for v in &acked {
            assert!(
                fs.check_acknowledged("an acknowledged put", v),
                "fail at {fail_at}: {} acknowledged, not durable",
                String::from_utf8_lossy(v)
            );
        }
        // Power loss, then reopen: every acknowledged put is there.
        let state = fs.crash_now();
        drop(db);
        config.storage = Arc::new(state.image(CrashMode::DropUnsynced, fail_at));
        let db = Engine::open(config).unwrap();
        let mut found = 0;
        for t in 0..3 {
            for i in 0..150 {
                let value = format!("value-{t}-{i:05}-durable").into_bytes();
                if acked.contains(&value) {
                    let got = db.get(b"ns", format!("k{t}-{i}").as_bytes()).unwrap();
                    assert_eq!(got.as_ref(), Some(&value), "fail at {fail_at}");
                    found += 1;
                }
            }
        }
        assert_eq!(found, acked.len());
    }
}
