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
