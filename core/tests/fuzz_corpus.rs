//! Replays the fuzz corpus (`core/fuzz/corpus/<target>/`) and every crasher
//! kept as a regression (`core/fuzz/regressions/<target>/`) through the same
//! functions the cargo-fuzz targets call, so `cargo test` re-checks them
//! without cargo-fuzz. Also checks that files the engine writes are accepted
//! by the targets (the seeds of the corpus come from there: set
//! `EDGESTORE_FUZZ_WRITE_SEEDS=1` to rewrite them).

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgestore::storage::Storage;
use edgestore::{EdgestoreConfig, Engine, ManualClock, WriteBatch};

/// A fuzz target: its name and entry function.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 4] = [
    ("wal", targets::wal),
    ("segment", targets::segment),
    ("manifest", targets::manifest),
    ("ops", targets::ops),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(kind: &str, min_files: usize) {
    for (name, f) in TARGETS {
        let files = files_in(&fuzz_dir().join(kind).join(name));
        assert!(
            files.len() >= min_files,
            "{kind}/{name}: expected at least {min_files} files, found {}",
            files.len()
        );
        for p in files {
            let data = std::fs::read(&p).expect("read corpus file");
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{name} failed on {}", p.display());
        }
    }
}

#[test]
fn corpus_replays_cleanly() {
    replay("corpus", 2);
}

#[test]
fn regressions_replay_cleanly() {
    replay("regressions", 0);
}

/// Files written by real engine sessions on in-memory storage: the WAL, a
/// segment and the manifest. The WAL comes from a second database that never
/// flushed, so it is WAL number 1, the file the `wal` target replays (a
/// version 2 WAL's checksums cover its number).
fn engine_files() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let storage = targets::MemStorage::default();
    let clock = ManualClock::new(1_000_000_000_000);
    let config = |dir: &str| {
        let mut c = EdgestoreConfig::new(dir);
        c.storage = Arc::new(storage.clone());
        c.clock = Arc::new(clock.clone());
        c.block_size_bytes = 64;
        c
    };
    let db = Engine::open(config("/db")).unwrap();
    for i in 0..6u32 {
        db.put_with_ttl(b"a", format!("k{i}").as_bytes(), b"value", i % 2)
            .unwrap();
    }
    db.flush_to_segments().unwrap();
    let mut b = WriteBatch::new();
    b.put(b"a", b"k1", b"new").unwrap();
    b.delete(b"bb", b"x").unwrap();
    b.put_with_ttl(b"bb", b"", b"ttl", 10).unwrap();
    db.write(b.clone()).unwrap();
    db.delete(b"a", b"k2").unwrap();
    let fresh = Engine::open(config("/wal")).unwrap();
    fresh.write(b).unwrap();
    fresh.delete(b"a", b"k2").unwrap();
    let get = |dir: &str, suffix: &str| {
        let names = storage.list_dir(Path::new(dir)).unwrap();
        let name = names.iter().filter(|n| n.ends_with(suffix)).max().unwrap();
        storage.file(&Path::new(dir).join(name)).unwrap()
    };
    let files = (
        get("/wal", ".wal"),
        get("/db", ".seg"),
        get("/db", "manifest.mf"),
    );
    db.close().unwrap();
    fresh.close().unwrap();
    files
}

fn with_flag(flag: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(data);
    v
}

#[test]
fn engine_files_pass_the_targets() {
    let (wal, seg, man) = engine_files();
    assert!(wal.len() > 16 && seg.len() > 80 && man.len() > 20);
    assert_eq!(targets::wal_reference(&wal, true), Some(2));
    assert_eq!(targets::wal_reference(&wal[..wal.len() - 1], true), Some(1));
    assert_eq!(targets::wal_reference(&wal[..wal.len() - 1], false), None);
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for flag in [0u8, 1, 2] {
        seeds.push(("wal", format!("engine-{flag}"), with_flag(flag, &wal)));
    }
    // A torn tail and a damaged middle record.
    seeds.push(("wal", "torn".into(), with_flag(0, &wal[..wal.len() - 5])));
    let mut mid = wal.clone();
    mid[30] ^= 0x10;
    seeds.push(("wal", "bitflip".into(), with_flag(0, &mid)));
    for flag in [0u8, 1] {
        seeds.push(("segment", format!("engine-{flag}"), with_flag(flag, &seg)));
        seeds.push(("manifest", format!("engine-{flag}"), with_flag(flag, &man)));
    }
    // Op sequences: flags, storage seed, then op bytes each followed by
    // their arguments (see `ops` in core/fuzz/src/lib.rs).
    let ops: [(&str, &[u8]); 7] = [
        (
            "puts-flush",
            &[0, 7, 0, 0, 0, 1, 3, 0, 1, 2, 5, 1, 1, 1, 4, 10, 7, 4, 0, 1],
        ),
        (
            "ttl-compact",
            &[0, 2, 0, 0, 1, 3, 2, 8, 12, 2, 9, 11, 9, 7, 13, 0, 7],
        ),
        (
            "batch-scan",
            &[1, 4, 3, 3, 1, 0, 5, 2, 1, 9, 4, 0, 2, 6, 0, 0, 19, 11, 7],
        ),
        (
            "eio-once",
            &[0, 3, 14, 4, 0, 0, 1, 2, 0, 0, 1, 1, 3, 0, 0, 0, 2, 4, 0, 7],
        ),
        (
            "enospc-persistent",
            &[0, 1, 14, 7, 0, 0, 1, 3, 0, 10, 11, 7],
        ),
        (
            "power-loss",
            &[
                0, 5, 0, 0, 1, 3, 0, 15, 2, 9, 7, 0, 1, 2, 1, 0, 10, 15, 4, 1, 7,
            ],
        ),
        (
            "buffered-power-loss",
            &[
                2, 9, 0, 0, 1, 3, 0, 0, 1, 2, 4, 1, 15, 3, 3, 7, 13, 1, 0, 0, 5, 2, 0, 15, 5, 7, 7,
            ],
        ),
    ];
    for (name, bytes) in ops {
        seeds.push(("ops", name.into(), bytes.to_vec()));
    }
    for (target, _, data) in &seeds {
        let f = TARGETS.iter().find(|t| t.0 == *target).unwrap().1;
        f(data);
    }
    if std::env::var_os("EDGESTORE_FUZZ_WRITE_SEEDS").is_some() {
        for (target, name, data) in &seeds {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}
