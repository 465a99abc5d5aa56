//! The read path's fast parts against what they must never change: block
//! cache (sizes, sharing, damaged blocks), in-place reads (`get_with`), the
//! lazy segment iterator and in-block binary search, the streaming
//! compaction merge, and the memtable key filter. Written by a review of
//! those changes; the two bugs it found (orphan outputs of a failed merge, a
//! shared cache serving another file's block) are fixed and tested here.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::T0;
use edgestore::cache::BlockCache;
use edgestore::segment::{SegmentReader, SegmentWriter};
use edgestore::types::{MemEntry, Operation};
use edgestore::{EdgestoreConfig, Engine, Error, ManualClock, SyncMode};

const NS: &[u8] = b"ns";
const KEYS: u64 = 120;

fn key(i: u64) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

/// key -> (value, death time)
type Model = BTreeMap<Vec<u8>, (Vec<u8>, i64)>;

fn live(m: &Model, now: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .filter(|(_, (_, d))| now < *d)
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

fn small_config(dir: &Path, clock: &ManualClock, cache: u64) -> EdgestoreConfig {
    let mut c = common::config(dir, clock);
    // Small caches read blocks with pread, the others through a memory map,
    // so both ways of reading a block meet the model.
    c.mmap_reads = cache >= 1 << 20;
    c.memtable_size_bytes = 2048;
    c.segment_size_bytes = 700;
    c.block_size_bytes = 128;
    c.block_cache_bytes = cache;
    c.cohort_window_secs = 5;
    c.max_permanent_runs = 2;
    c.max_permanent_space_amp = 0.5;
    c.sync_mode = SyncMode::Buffered;
    c
}

/// get, get_with, snapshot get/get_with and scans from arbitrary start keys
/// (owned and lent pairs) agree with a model through flushes, compactions,
/// TTL expiry and reopen, with blocks read by pread and through a map.
#[test]
fn reads_match_a_model_through_flush_compaction_and_ttl() {
    for cache in [0u64, 1024, 1 << 20, 4 << 20] {
        for seed in 1..=4u64 {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(T0);
            let mut db = Engine::open(small_config(dir.path(), &clock, cache)).unwrap();
            let mut below = common::faults::rng(
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(cache) | 1,
            );
            let mut model = Model::new();
            let mut snaps: Vec<(edgestore::Snapshot, Model, i64)> = Vec::new();
            let now = |c: &ManualClock| c.clone();
            let _ = now;
            let mut t = T0;
            for step in 0..1500u32 {
                let k = key(below(KEYS));
                match below(100) {
                    0..=44 => {
                        let v = format!("v{step}-{}", "x".repeat(below(40) as usize)).into_bytes();
                        db.put(NS, &k, &v).unwrap();
                        model.insert(k, (v, i64::MAX));
                    }
                    45..=64 => {
                        let ttl = 1 + below(20) as u32;
                        let v = format!("t{step}").into_bytes();
                        db.put_with_ttl(NS, &k, &v, ttl).unwrap();
                        model.insert(k, (v, t + ttl as i64 * 1_000_000_000));
                    }
                    65..=79 => {
                        db.delete(NS, &k).unwrap();
                        model.remove(&k);
                    }
                    80..=84 => db.flush_to_segments().unwrap(),
                    85..=89 => {
                        db.compact_once().unwrap();
                    }
                    90..=94 => {
                        let s = below(4);
                        clock.advance_secs(s);
                        t += s as i64 * 1_000_000_000;
                    }
                    95..=96 => {
                        if snaps.len() < 3 {
                            snaps.push((db.snapshot().unwrap(), model.clone(), t));
                        } else {
                            snaps.remove(0);
                        }
                    }
                    97 => {
                        drop(snaps.drain(..));
                        drop(db);
                        db = Engine::open(small_config(dir.path(), &clock, cache)).unwrap();
                    }
                    _ => {}
                }
                if step % 25 != 0 {
                    continue;
                }
                let ctx = format!("cache {cache} seed {seed} step {step}");
                for i in 0..KEYS {
                    let k = key(i);
                    let want = model
                        .get(&k)
                        .filter(|(_, d)| t < *d)
                        .map(|(v, _)| v.clone());
                    assert_eq!(db.get(NS, &k).unwrap(), want, "get {i} {ctx}");
                    assert_eq!(
                        db.get_with(NS, &k, |v| v.to_vec()).unwrap(),
                        want,
                        "get_with {i} {ctx}"
                    );
                }
                let all = live(&model, t);
                let a = key(below(KEYS + 2));
                let b = key(below(KEYS + 2));
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                let want: Vec<_> = all
                    .iter()
                    .filter(|(k, _)| *k >= a && *k < b)
                    .cloned()
                    .collect();
                assert_eq!(db.range(NS, &a, &b).unwrap(), want, "range {ctx}");
                let mut lent = Vec::new();
                let mut it = db.scan(NS, &a, Some(&b)).unwrap();
                while let Some((k, v)) = it.next_entry().unwrap() {
                    lent.push((k.to_vec(), v.to_vec()));
                }
                assert!(it.next_entry().unwrap().is_none(), "lent scan ended {ctx}");
                assert_eq!(lent, want, "lent range {ctx}");
                let want_from: Vec<_> = all.iter().filter(|(k, _)| *k >= a).cloned().collect();
                let got: Vec<_> = db
                    .scan(NS, &a, None)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(got, want_from, "scan {ctx}");
                for (s, m, st) in &snaps {
                    for i in 0..KEYS {
                        let k = key(i);
                        let want = m.get(&k).filter(|(_, d)| *st < *d).map(|(v, _)| v.clone());
                        assert_eq!(s.get(NS, &k).unwrap(), want, "snap get {i} {ctx}");
                        assert_eq!(
                            s.get_with(NS, &k, |v| v.to_vec()).unwrap(),
                            want,
                            "snap get_with {i} {ctx}"
                        );
                    }
                    assert_eq!(s.prefix(NS, b"").unwrap(), live(m, *st), "snap scan {ctx}");
                }
            }
            db.verify().unwrap();
        }
    }
}

// ---------------------------------------------------------------- corruption

/// (offset, len) of every data block of a segment file, from its footer/index.
fn blocks_of(file: &[u8]) -> Vec<(usize, usize)> {
    let n = file.len();
    let footer = &file[n - 64..];
    let u64at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let index_off = u64at(footer, 0) as usize;
    let index_len = u64at(footer, 8) as usize;
    let index = &file[index_off..index_off + index_len - 4];
    let mut out = Vec::new();
    let mut p = 0;
    while p < index.len() {
        let kl = u32::from_le_bytes(index[p..p + 4].try_into().unwrap()) as usize;
        p += 4 + kl;
        let off = u64at(index, p) as usize;
        p += 8;
        let len = u32::from_le_bytes(index[p..p + 4].try_into().unwrap()) as usize;
        p += 4;
        out.push((off, len));
    }
    out
}

fn fix_crc(file: &mut [u8], off: usize, len: usize) {
    let body = &file[off..off + len - 4];
    let crc = crc32fast_hash(body);
    file[off + len - 4..off + len].copy_from_slice(&crc.to_le_bytes());
}

// crc32 (IEEE), bitwise: the test crate has no crc32fast dependency.
fn crc32fast_hash(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn seg_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn corruption_names(e: &Error, path: &Path) {
    match e {
        Error::Corruption { file, .. } => assert_eq!(file, path, "{e}"),
        other => panic!("expected Corruption naming {}, got {other}", path.display()),
    }
}

fn big_segments(dir: &Path, clock: &ManualClock, cache: u64) -> EdgestoreConfig {
    let mut c = small_config(dir, clock, cache);
    c.segment_size_bytes = 1 << 20;
    c.memtable_size_bytes = 1 << 20;
    c
}

/// Builds one segment of 60 keys (block size 128: many blocks), closes.
fn one_segment_db(dir: &Path, clock: &ManualClock) -> PathBuf {
    let db = Engine::open(big_segments(dir, clock, 1 << 20)).unwrap();
    let mut b = edgestore::WriteBatch::new();
    for i in 0..60 {
        b.put(NS, &key(i), format!("value-{i}").as_bytes()).unwrap();
    }
    db.write(b).unwrap();
    db.flush_to_segments().unwrap();
    db.close().unwrap();
    let segs = seg_paths(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

/// Every kind of damaged block gives Error::Corruption naming the file from
/// every read path (point read with and without cache, get_with, scans
/// starting inside the block, compaction, verify); never a panic.
#[test]
fn damaged_blocks_are_corruption_naming_the_file_on_every_path() {
    type Damage = fn(&mut Vec<u8>, usize, usize);
    let damages: [(&str, Damage); 5] = [
        ("flipped byte, crc stale", |f, off, _| f[off + 5] ^= 0x40),
        ("huge key_len, crc fixed", |f, off, len| {
            f[off..off + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            fix_crc(f, off, len);
        }),
        ("huge value_len, crc fixed", |f, off, len| {
            f[off + 4..off + 8].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            fix_crc(f, off, len);
        }),
        ("count trailer wrong, crc fixed", |f, off, len| {
            let at = off + len - 8;
            let c = u32::from_le_bytes(f[at..at + 4].try_into().unwrap());
            f[at..at + 4].copy_from_slice(&(c + 1).to_le_bytes());
            fix_crc(f, off, len);
        }),
        ("bad op byte, crc fixed", |f, off, len| {
            f[off + 8] = 0xEE;
            fix_crc(f, off, len);
        }),
    ];
    for (what, damage) in damages {
        for cache in [0u64, 1 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(T0);
            let path = one_segment_db(dir.path(), &clock);
            let mut file = std::fs::read(&path).unwrap();
            let blocks = blocks_of(&file);
            assert!(blocks.len() >= 4, "{}", blocks.len());
            let (off, len) = blocks[2];
            damage(&mut file, off, len);
            std::fs::write(&path, &file).unwrap();

            let db = Engine::open(big_segments(dir.path(), &clock, cache)).unwrap();
            let ctx = format!("{what}, cache {cache}");
            // Some key of block 2 (block 2 of 60 sorted keys).
            let mut saw = 0;
            for i in 0..60 {
                match db.get(NS, &key(i)) {
                    Ok(v) => assert_eq!(v, Some(format!("value-{i}").into_bytes()), "{ctx}"),
                    Err(e) => {
                        corruption_names(&e, &path);
                        saw += 1;
                        let e2 = db.get_with(NS, &key(i), |v| v.len()).unwrap_err();
                        corruption_names(&e2, &path);
                    }
                }
            }
            assert!(saw > 0, "no point read noticed: {ctx}");
            for start in 0..60 {
                let r: Result<Vec<_>, _> = db
                    .scan(NS, &key(start), None)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>());
                if let Err(e) = r {
                    corruption_names(&e, &path);
                }
            }
            let e = db.prefix(NS, b"").unwrap_err();
            corruption_names(&e, &path);
            let e = db.verify().unwrap_err();
            corruption_names(&e, &path);
        }
    }
}

/// A compaction that meets a damaged block fails with Corruption; with the
/// streaming merge, outputs cut before the damaged block are already on disk
/// (orphans until the next open). The old merge read every input first.
#[test]
fn compaction_hitting_a_damaged_block_reports_corruption_and_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = big_segments(dir.path(), &clock, 1 << 20);
    c.max_permanent_runs = 1;
    c.max_permanent_space_amp = 0.01;
    let db = Engine::open(c.clone()).unwrap();
    for round in 0..2 {
        let mut b = edgestore::WriteBatch::new();
        for i in 0..60 {
            b.put(NS, &key(i), format!("value-{round}-{i}").as_bytes())
                .unwrap();
        }
        db.write(b).unwrap();
        db.flush_to_segments().unwrap();
    }
    db.close().unwrap();
    drop(db);
    // Damage the last block of the last segment (by name order).
    let segs = seg_paths(dir.path());
    let victim = segs.last().unwrap().clone();
    let mut file = std::fs::read(&victim).unwrap();
    let (off, _) = *blocks_of(&file).last().unwrap();
    file[off + 5] ^= 0x40;
    std::fs::write(&victim, &file).unwrap();

    let before: Vec<_> = seg_paths(dir.path());
    assert_eq!(before.len(), 2);
    c.segment_size_bytes = 200; // the merge cuts outputs often
    let db = Engine::open(c).unwrap();
    let e = db.compact_once().unwrap_err();
    corruption_names(&e, &victim);
    let after = seg_paths(dir.path());
    let extra: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        extra.is_empty(),
        "failed compaction left {} output segment(s) not in the manifest: {extra:?}",
        extra.len()
    );
}

// ---------------------------------------------------------------- block cache

fn put_entry(k: &[u8], v: &[u8], lsn: u64) -> (Vec<u8>, MemEntry) {
    (
        k.to_vec(),
        MemEntry {
            key: k.to_vec(),
            value: Some(v.to_vec()),
            op: Operation::Put,
            lsn,
            timestamp: T0,
            ttl: 0,
        },
    )
}

/// The block cache is keyed by segment id only. Ids are per database (every
/// database starts at 1), so one cache shared by readers of two databases
/// (the public API allows it: `SegmentReader::with_cache`,
/// `Compactor::with_block_cache`) serves one database's block for the other.
#[test]
fn a_block_cache_shared_by_two_databases_never_serves_the_other_segment() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    SegmentWriter::new(a.path().to_path_buf(), 1, 3600)
        .flush(&[put_entry(b"k", b"from-a", 1)])
        .unwrap();
    SegmentWriter::new(b.path().to_path_buf(), 1, 3600)
        .flush(&[put_entry(b"k", b"from-b", 1)])
        .unwrap();
    let cache = Arc::new(BlockCache::new(1 << 20, 4096, false));
    let ra = SegmentReader::open(a.path().to_path_buf(), 1)
        .unwrap()
        .with_cache(Some(Arc::clone(&cache)));
    let rb = SegmentReader::open(b.path().to_path_buf(), 1)
        .unwrap()
        .with_cache(Some(Arc::clone(&cache)));
    assert_eq!(ra.get(b"k").unwrap().unwrap().value.unwrap(), b"from-a");
    assert_eq!(
        rb.get(b"k").unwrap().unwrap().value.unwrap(),
        b"from-b",
        "segment 1 of database B read through a cache that holds segment 1 of database A"
    );
}

/// Two engines in one process, each with its own cache, over databases whose
/// segment ids coincide; and a database reopened after its segments were
/// compacted away and new ones written: every read sees its own data.
#[test]
fn engines_in_one_process_do_not_share_cached_blocks() {
    let clock = ManualClock::new(T0);
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let e1 = Engine::open(small_config(d1.path(), &clock, 1 << 20)).unwrap();
    let e2 = Engine::open(small_config(d2.path(), &clock, 1 << 20)).unwrap();
    for i in 0..50 {
        e1.put(NS, &key(i), b"one").unwrap();
        e2.put(NS, &key(i), b"two").unwrap();
    }
    e1.flush_to_segments().unwrap();
    e2.flush_to_segments().unwrap();
    for i in 0..50 {
        assert_eq!(e1.get(NS, &key(i)).unwrap().unwrap(), b"one");
        assert_eq!(e2.get(NS, &key(i)).unwrap().unwrap(), b"two");
    }
    drop(e1);
    let e1 = Engine::open(small_config(d1.path(), &clock, 1 << 20)).unwrap();
    for round in 0..4 {
        for i in 0..50 {
            e1.put(NS, &key(i), format!("r{round}").as_bytes()).unwrap();
        }
        e1.flush_to_segments().unwrap();
        e1.compact_once().unwrap();
        for i in 0..50 {
            assert_eq!(
                e1.get(NS, &key(i)).unwrap().unwrap(),
                format!("r{round}").into_bytes()
            );
        }
    }
}

// ---------------------------------------------------------------- compaction

/// The streaming merge keeps the newest version per key across inputs,
/// counts shadowed records as dropped, and an all-dropped merge removes the
/// inputs with no output.
#[test]
fn streaming_merge_keeps_newest_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = small_config(dir.path(), &clock, 1 << 20);
    c.max_permanent_runs = 1;
    c.max_permanent_space_amp = 0.01;
    c.memtable_size_bytes = 1 << 20;
    let db = Engine::open(c).unwrap();
    for i in 0..40 {
        db.put(NS, &key(i), b"old").unwrap();
    }
    db.flush_to_segments().unwrap();
    for i in 0..40 {
        if i % 2 == 0 {
            db.put(NS, &key(i), b"new").unwrap();
        }
    }
    db.flush_to_segments().unwrap();
    let s = db.compact_once().unwrap();
    assert_eq!(s.live_records_relocated, 40, "{s:?}");
    assert_eq!(s.records_dropped, 20, "{s:?}");
    for i in 0..40 {
        let want: &[u8] = if i % 2 == 0 { b"new" } else { b"old" };
        assert_eq!(db.get(NS, &key(i)).unwrap().unwrap(), want);
    }
    // Delete everything: a merge whose output is empty.
    for i in 0..40 {
        db.delete(NS, &key(i)).unwrap();
    }
    db.flush_to_segments().unwrap();
    let s = db.compact_once().unwrap();
    assert_eq!(s.segments_written, 0, "{s:?}");
    assert_eq!(db.metrics().segments, 0);
    assert_eq!(db.prefix(NS, b"").unwrap(), vec![]);
    db.verify().unwrap();
    drop(db);
    let db = common::open(dir.path(), &clock);
    assert_eq!(db.prefix(NS, b"").unwrap(), vec![]);
}

// ---------------------------------------------------------------- memtable filter

/// A reader that learns (through an acquire) that a write was acknowledged
/// must find it with get/get_with, in both sync modes.
#[test]
fn acknowledged_writes_are_visible_to_other_threads_in_both_sync_modes() {
    for mode in [SyncMode::Buffered, SyncMode::Durable] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut c = common::config(dir.path(), &clock);
        c.sync_mode = mode;
        c.memtable_size_bytes = 64 << 10;
        let db = Arc::new(Engine::open(c).unwrap());
        let done = Arc::new(AtomicU64::new(0));
        let n: u64 = if mode == SyncMode::Durable { 300 } else { 3000 };
        std::thread::scope(|s| {
            let (db2, done2) = (Arc::clone(&db), Arc::clone(&done));
            s.spawn(move || {
                for i in 1..=n {
                    db2.put(NS, &i.to_be_bytes(), &i.to_le_bytes()).unwrap();
                    done2.store(i, Ordering::Release);
                }
            });
            for _ in 0..2 {
                let (db3, done3) = (Arc::clone(&db), Arc::clone(&done));
                s.spawn(move || loop {
                    let i = done3.load(Ordering::Acquire);
                    if i > 0 {
                        let got = db3.get_with(NS, &i.to_be_bytes(), |v| v.to_vec()).unwrap();
                        assert_eq!(got, Some(i.to_le_bytes().to_vec()), "{mode:?} {i}");
                    }
                    if i == n {
                        break;
                    }
                });
            }
        });
    }
}

// ---------------------------------------------------------------- flush shortcut

/// Shadowing across cohorts with the flush shortcut for permanent puts: no
/// older version comes back when a newer record's file (or the older one's)
/// is dropped whole.
#[test]
fn dropping_expired_files_never_resurrects_older_versions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = common::config(dir.path(), &clock);
    c.cohort_window_secs = 10;
    c.memtable_size_bytes = 1 << 20;
    let db = Engine::open(c).unwrap();
    // a: long TTL, then permanent (shortcut).  b: permanent, then short TTL.
    // c: long TTL, then short TTL.  d: permanent, then delete.
    // e: long TTL, then delete, then permanent (shortcut).
    db.put_with_ttl(NS, b"a", b"a-ttl", 1000).unwrap();
    db.put(NS, b"b", b"b-perm").unwrap();
    db.put_with_ttl(NS, b"c", b"c-long", 1000).unwrap();
    db.put(NS, b"d", b"d-perm").unwrap();
    db.put_with_ttl(NS, b"e", b"e-long", 1000).unwrap();
    db.flush_to_segments().unwrap();
    db.put(NS, b"a", b"a-perm").unwrap();
    db.put_with_ttl(NS, b"b", b"b-short", 20).unwrap();
    db.put_with_ttl(NS, b"c", b"c-short", 20).unwrap();
    db.delete(NS, b"d").unwrap();
    db.delete(NS, b"e").unwrap();
    db.flush_to_segments().unwrap();
    db.put(NS, b"e", b"e-perm").unwrap();
    db.flush_to_segments().unwrap();
    let check = |when: &str| {
        let g = |k: &[u8]| db.get(NS, k).unwrap();
        let gw = |k: &[u8]| db.get_with(NS, k, |v| v.to_vec()).unwrap();
        for k in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            assert_eq!(g(k), gw(k), "{when}");
        }
        assert_eq!(g(b"a").as_deref(), Some(&b"a-perm"[..]), "{when}");
        assert_eq!(g(b"d"), None, "{when}");
        assert_eq!(g(b"e").as_deref(), Some(&b"e-perm"[..]), "{when}");
    };
    check("start");
    for secs in [30u64, 100, 1000, 2000] {
        clock.advance_secs(secs);
        db.compact_once().unwrap();
        check(&format!("+{secs}s"));
        assert_eq!(
            db.get(NS, b"b").unwrap(),
            None,
            "b resurrected after +{secs}s"
        );
        assert_eq!(
            db.get(NS, b"c").unwrap(),
            None,
            "c resurrected after +{secs}s"
        );
    }
    db.verify().unwrap();
}

/// Tiny caches (smaller than one block) work: nothing is cached.
#[test]
fn a_cache_smaller_than_a_block_is_harmless() {
    for cache in [1u64, 64, 4095] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let db = Engine::open(big_segments(dir.path(), &clock, cache)).unwrap();
        for i in 0..100 {
            db.put(NS, &key(i), &[i as u8; 100]).unwrap();
        }
        db.flush_to_segments().unwrap();
        for i in 0..100 {
            assert_eq!(db.get(NS, &key(i)).unwrap().unwrap(), vec![i as u8; 100]);
        }
        assert_eq!(db.prefix(NS, b"").unwrap().len(), 100);
    }
}
