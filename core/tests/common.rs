//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use edgestore::{EdgestoreConfig, Engine, ManualClock, SyncMode};

pub const T0: i64 = 1_767_225_600 * 1_000_000_000;

pub fn config(dir: &Path, clock: &ManualClock) -> EdgestoreConfig {
    let mut c = EdgestoreConfig::new(dir);
    c.clock = Arc::new(clock.clone());
    c
}

pub fn open(dir: &Path, clock: &ManualClock) -> Engine {
    Engine::open(config(dir, clock)).unwrap()
}

pub fn open_small(dir: &Path, clock: &ManualClock) -> Engine {
    let mut c = config(dir, clock);
    c.memtable_size_bytes = 4096;
    c.segment_size_bytes = 2048;
    c.block_size_bytes = 256;
    c.sync_mode = SyncMode::Buffered;
    Engine::open(c).unwrap()
}

/// Copies the files of a live database: what a process crash leaves behind
/// (everything handed to the OS, nothing more).
pub fn crash_image(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "LOCK" {
            continue;
        }
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

pub fn seg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

pub fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Shared by the tests over the fault-injecting storage (crash points, I/O
/// errors): a database in memory, a two-namespace model and its contents.
pub mod faults {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use edgestore::fault::FaultStorage;
    use edgestore::{EdgestoreConfig, Engine, ManualClock, SyncMode};

    /// The namespaces the scripts write to.
    pub const NS: [&[u8]; 2] = [b"n0", b"n1"];

    /// (namespace index, key) -> (value, death time in nanoseconds).
    pub type Model = BTreeMap<(usize, u8), (Vec<u8>, i64)>;

    /// Key number `k` as stored.
    pub fn key(k: u8) -> Vec<u8> {
        format!("k{k:02}").into_bytes()
    }

    /// Death time of a write at `now` with `ttl` seconds (0 = never).
    pub fn death(now: i64, ttl: u32) -> i64 {
        if ttl == 0 {
            i64::MAX
        } else {
            now + ttl as i64 * 1_000_000_000
        }
    }

    /// Per namespace, its live (key, value) pairs in key order.
    pub type Contents = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

    /// What a scan of each namespace shows of `m` at `now`.
    pub fn visible(m: &Model, now: i64) -> Contents {
        (0..NS.len())
            .map(|ns| {
                m.iter()
                    .filter(|((n, _), (_, d))| *n == ns && now < *d)
                    .map(|((_, k), (v, _))| (key(*k), v.clone()))
                    .collect()
            })
            .collect()
    }

    /// What a scan of each namespace of `db` shows.
    pub fn contents(db: &Engine) -> Result<Contents, String> {
        NS.iter()
            .map(|ns| db.prefix(ns, b"").map_err(|e| format!("scan: {e}")))
            .collect()
    }

    /// The database directory inside the fault storage.
    pub fn dir() -> PathBuf {
        PathBuf::from("/db")
    }

    /// A small-sized configuration over `fs` (flushes are explicit; segments
    /// split; one permanent run, so every flush is merged by compaction).
    pub fn config(fs: &FaultStorage, clock: &ManualClock, sync: SyncMode) -> EdgestoreConfig {
        let mut c = EdgestoreConfig::new(dir());
        c.storage = Arc::new(fs.clone());
        c.clock = Arc::new(clock.clone());
        c.sync_mode = sync;
        c.memtable_size_bytes = 1 << 20; // flushes are explicit
                                         // The write that fills a memtable flushes it: the n-th storage
                                         // operation is the same in every run.
        c.background_flush = false;
        c.segment_size_bytes = 300; // flushes and merges split their output
        c.block_size_bytes = 96;
        c.cohort_window_secs = 60;
        c.max_permanent_runs = 1;
        c.max_permanent_space_amp = 100.0;
        c
    }

    /// Sync mode and memtable size of a scripted workload.
    #[derive(Debug, Clone, Copy)]
    pub struct Mode {
        pub sync: SyncMode,
        pub memtable: usize,
    }

    impl Mode {
        pub const DURABLE: Mode = Mode {
            sync: SyncMode::Durable,
            memtable: 1 << 20,
        };
        pub const BUFFERED: Mode = Mode {
            sync: SyncMode::Buffered,
            memtable: 1 << 20,
        };
    }

    /// [`config`] with the workload's memtable size.
    pub fn cfg(fs: &FaultStorage, clock: &ManualClock, m: Mode) -> EdgestoreConfig {
        let mut c = config(fs, clock, m.sync);
        c.memtable_size_bytes = m.memtable;
        c
    }

    /// A deterministic xorshift generator of numbers below `n`, for random
    /// workload scripts.
    pub fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    /// TTLs of random workload puts (half never expire), from `rng(6)`.
    pub fn workload_ttl(v: u64) -> u32 {
        [0, 0, 0, 20, 90, 600][v as usize]
    }
}
