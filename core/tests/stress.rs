//! Multi-thread stress: writers (single puts, two-key batches, deletes),
//! point readers, range scanners, snapshot readers and a maintenance thread
//! (memtable flushes and compaction) run at once on one engine.
//!
//! Every value names its writer, key and sequence number and carries a
//! checksum, so a reader can tell a torn or misplaced value at once. Checks:
//! * no torn value: checksum, key and writer always match;
//! * no lost write: a read never returns an older sequence number than the
//!   last write to that key acknowledged before the read started;
//! * batches are atomic: in a snapshot, both keys of a pair have the same
//!   sequence number;
//! * snapshots are stable: reading one twice (with flushes and compactions
//!   in between) gives the same result;
//! * after close and reopen every key holds its last acknowledged value and
//!   `verify` passes.
//!
//! CI size by default; `EDGESTORE_STRESS_SCALE=N` multiplies the writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use edgestore::{EdgestoreConfig, Engine, SyncMode, WriteBatch};

const WRITERS: usize = 3;
const KEYS_PER_WRITER: usize = 48;
const NS: &[u8] = b"stress";

fn scale() -> u64 {
    std::env::var("EDGESTORE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn key(w: usize, k: usize) -> Vec<u8> {
    format!("w{w}/k{k:03}").into_bytes()
}

/// `w{w}/k{k}/s{seq}/` + padding + 8 hex digits of CRC32 of all before it.
fn value(w: usize, k: usize, seq: u64) -> Vec<u8> {
    let mut v = format!("w{w}/k{k:03}/s{seq}/").into_bytes();
    v.resize(
        v.len() + (seq as usize * 31 + k * 7) % 300,
        b'a' + (seq % 26) as u8,
    );
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(format!("{crc:08x}").as_bytes());
    v
}

/// Checks a value read for key `(w, k)` and returns its sequence number.
fn parse(w: usize, k: usize, v: &[u8]) -> u64 {
    assert!(v.len() >= 8, "torn value {v:?}");
    let (body, crc) = v.split_at(v.len() - 8);
    let want = format!("{:08x}", crc32fast::hash(body));
    assert_eq!(crc, want.as_bytes(), "torn value for w{w} k{k}");
    let s = std::str::from_utf8(body).expect("utf-8 value");
    let mut parts = s.splitn(4, '/');
    let (pw, pk, ps) = (parts.next(), parts.next(), parts.next());
    assert_eq!(
        pw,
        Some(format!("w{w}").as_str()),
        "value of another writer"
    );
    assert_eq!(
        pk,
        Some(format!("k{k:03}").as_str()),
        "value of another key"
    );
    ps.and_then(|s| s.strip_prefix('s'))
        .and_then(|s| s.parse().ok())
        .expect("sequence number")
}

/// Writer `w`'s state as readers see it: per key, the last acknowledged
/// sequence number (0 = never written; `u64::MAX` bit 63 marks a delete).
struct Shared {
    acked: Vec<Vec<AtomicU64>>,
    /// Per key, the sequence number of the latest delete *started*: a read
    /// may miss a key only if a delete newer than what it must see started
    /// before the read ended.
    delete_started: Vec<Vec<AtomicU64>>,
    done: AtomicBool,
    ops: AtomicU64,
}

const DELETED: u64 = 1 << 63;

fn acked(sh: &Shared, w: usize, k: usize) -> u64 {
    sh.acked[w][k].load(Ordering::SeqCst)
}

/// Keys `2j` and `2j + 1` of a writer form a pair always written together
/// in one batch (never deleted).
fn is_pair_key(k: usize) -> bool {
    k < 16
}

fn writer(db: &Engine, sh: &Shared, w: usize, n: u64) {
    let mut rng = (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for seq in 1..=n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = (rng % KEYS_PER_WRITER as u64) as usize;
        if is_pair_key(k) {
            let k0 = k & !1;
            let mut b = WriteBatch::new();
            b.put(NS, &key(w, k0), &value(w, k0, seq)).unwrap();
            b.put(NS, &key(w, k0 + 1), &value(w, k0 + 1, seq)).unwrap();
            db.write(b).unwrap();
            sh.acked[w][k0].store(seq, Ordering::SeqCst);
            sh.acked[w][k0 + 1].store(seq, Ordering::SeqCst);
        } else if rng.is_multiple_of(11) {
            sh.delete_started[w][k].store(seq, Ordering::SeqCst);
            db.delete(NS, &key(w, k)).unwrap();
            sh.acked[w][k].store(seq | DELETED, Ordering::SeqCst);
        } else {
            db.put(NS, &key(w, k), &value(w, k, seq)).unwrap();
            sh.acked[w][k].store(seq, Ordering::SeqCst);
        }
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A read that started after `before` was acknowledged (and ended before
/// `delete_started` was loaded) must see it or later.
fn check_fresh(w: usize, k: usize, before: u64, delete_started: u64, got: Option<&[u8]>) {
    let was_delete = before & DELETED != 0;
    let before = before & !DELETED;
    match got {
        Some(v) => {
            let seq = parse(w, k, v);
            assert!(
                seq >= before,
                "lost write: w{w} k{k} read s{seq}, s{before} was acknowledged"
            );
        }
        None => assert!(
            before == 0 || was_delete || delete_started > before,
            "lost write: w{w} k{k} read nothing, s{before} was acknowledged"
        ),
    }
}

fn del(sh: &Shared, w: usize, k: usize) -> u64 {
    sh.delete_started[w][k].load(Ordering::SeqCst)
}

fn point_reader(db: &Engine, sh: &Shared, id: usize) {
    let mut i = id;
    while !sh.done.load(Ordering::SeqCst) {
        let (w, k) = (i % WRITERS, (i / WRITERS) % KEYS_PER_WRITER);
        let before = acked(sh, w, k);
        let got = db.get(NS, &key(w, k)).unwrap();
        check_fresh(w, k, before, del(sh, w, k), got.as_deref());
        i = i.wrapping_mul(31).wrapping_add(7);
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads writer `w`'s keys through `scan` (or a snapshot's), checking order
/// and values; returns `(k, value)` pairs.
fn read_all(
    w: usize,
    items: impl Iterator<Item = edgestore::Result<(Vec<u8>, Vec<u8>)>>,
) -> Vec<(usize, Vec<u8>)> {
    let prefix = format!("w{w}/k");
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    for item in items {
        let (kb, v) = item.unwrap();
        let ks = std::str::from_utf8(&kb).unwrap();
        let k: usize = ks.strip_prefix(&prefix).unwrap().parse().unwrap();
        assert!(out.last().is_none_or(|l| l.0 < k), "scan out of order");
        parse(w, k, &v);
        out.push((k, v));
    }
    out
}

fn scanner(db: &Engine, sh: &Shared, id: usize) {
    let mut i = id;
    while !sh.done.load(Ordering::SeqCst) {
        let w = i % WRITERS;
        let before: Vec<u64> = (0..KEYS_PER_WRITER).map(|k| acked(sh, w, k)).collect();
        let got = read_all(w, db.scan_prefix(NS, format!("w{w}/").as_bytes()).unwrap());
        for (k, &b) in before.iter().enumerate() {
            let v = got.iter().find(|x| x.0 == k).map(|x| x.1.as_slice());
            check_fresh(w, k, b, del(sh, w, k), v);
        }
        i += 1;
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn snapshot_reader(db: &Engine, sh: &Shared, id: usize) {
    let mut i = id;
    while !sh.done.load(Ordering::SeqCst) {
        let w = i % WRITERS;
        let before: Vec<u64> = (0..KEYS_PER_WRITER).map(|k| acked(sh, w, k)).collect();
        let snap = db.snapshot().unwrap();
        let prefix = format!("w{w}/");
        let deletes: Vec<u64> = (0..KEYS_PER_WRITER).map(|k| del(sh, w, k)).collect();
        let first = read_all(w, snap.scan_prefix(NS, prefix.as_bytes()).unwrap());
        for (k, &b) in before.iter().enumerate() {
            let v = first.iter().find(|x| x.0 == k).map(|x| x.1.as_slice());
            check_fresh(w, k, b, deletes[k], v);
        }
        // Batches are atomic: both keys of a pair carry one sequence number.
        for k0 in (0..16).step_by(2) {
            let seq = |k: usize| first.iter().find(|x| x.0 == k).map(|x| parse(w, k, &x.1));
            assert_eq!(seq(k0), seq(k0 + 1), "torn batch w{w} k{k0}");
        }
        // Let writers, flushes and compactions move on, then read again.
        thread::yield_now();
        for (k, v) in &first {
            assert_eq!(
                snap.get(NS, &key(w, *k)).unwrap().as_ref(),
                Some(v),
                "snapshot changed"
            );
        }
        let again = read_all(w, snap.scan_prefix(NS, prefix.as_bytes()).unwrap());
        assert_eq!(first, again, "snapshot scan changed");
        // Overlapping snapshots, as a sync client keeps: the next one is
        // taken before this one is dropped, and compaction must not wait
        // for a moment with none alive.
        drop(snap);
        i += 1;
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn maintenance(db: &Engine, sh: &Shared) -> (u64, u64, u64) {
    let (mut flushes, mut compactions, mut most_runs) = (0, 0, 0);
    // Until the workload ends, and on a loaded machine (where the workload
    // may end before any merge was due) until a merge has rewritten
    // something, for at most ten more seconds.
    let mut ended: Option<std::time::Instant> = None;
    loop {
        if sh.done.load(Ordering::SeqCst) {
            let since = *ended.get_or_insert_with(std::time::Instant::now);
            if db.metrics().compaction_bytes_written > 0
                || since.elapsed() > std::time::Duration::from_secs(10)
            {
                break;
            }
        }
        db.flush_to_segments().unwrap();
        flushes += 1;
        db.compact_once().unwrap();
        compactions += 1;
        let m = db.metrics();
        most_runs = most_runs.max(m.sorted_runs);
        thread::sleep(std::time::Duration::from_millis(5));
    }
    (flushes, compactions, most_runs)
}

#[test]
fn concurrent_readers_writers_snapshots_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Buffered;
    c.memtable_size_bytes = 32 << 10;
    c.segment_size_bytes = 16 << 10;
    c.block_size_bytes = 512;
    c.block_cache_bytes = 256 << 10;
    c.max_permanent_runs = 2;
    let db = Engine::open(c.clone()).unwrap();
    let n = 2500 * scale();
    let sh = Shared {
        acked: (0..WRITERS)
            .map(|_| (0..KEYS_PER_WRITER).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        delete_started: (0..WRITERS)
            .map(|_| (0..KEYS_PER_WRITER).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        done: AtomicBool::new(false),
        ops: AtomicU64::new(0),
    };
    let start = std::time::Instant::now();
    let barrier = Barrier::new(WRITERS + 6);
    let (flushes, compactions, most_runs) = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (db, sh, barrier) = (&db, &sh, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    writer(db, sh, w, n)
                })
            })
            .collect();
        let mut others = Vec::new();
        for id in 0..2 {
            let (db, sh, barrier) = (&db, &sh, &barrier);
            others.push(s.spawn(move || {
                barrier.wait();
                point_reader(db, sh, id)
            }));
        }
        for (id, f) in [
            (0, scanner as fn(&Engine, &Shared, usize)),
            (1, snapshot_reader),
            (2, snapshot_reader),
        ] {
            let (db, sh, barrier) = (&db, &sh, &barrier);
            others.push(s.spawn(move || {
                barrier.wait();
                f(db, sh, id)
            }));
        }
        let m = {
            let (db, sh, barrier) = (&db, &sh, &barrier);
            s.spawn(move || {
                barrier.wait();
                maintenance(db, sh)
            })
        };
        // A panicking writer must still stop the readers.
        let res: Vec<_> = writers.into_iter().map(|h| h.join()).collect();
        sh.done.store(true, Ordering::SeqCst);
        for h in others {
            h.join().unwrap();
        }
        let m = m.join().unwrap();
        for r in res {
            r.unwrap();
        }
        m
    });
    eprintln!(
        "stress: {} ops ({} writes) by {} threads, {flushes} flushes, {compactions} compactions (at most {most_runs} runs after one) in {:.1?}",
        sh.ops.load(Ordering::Relaxed),
        n * WRITERS as u64,
        WRITERS + 6,
        start.elapsed()
    );
    assert!(flushes > 0 && compactions > 0);
    let m = db.metrics();
    eprintln!("stress: {m:?}");
    assert!(
        m.compaction_bytes_written > 0,
        "no compaction rewrote anything: the run did not exercise it"
    );
    db.close().unwrap();
    drop(db);

    let db = Engine::open(c).unwrap();
    db.verify().unwrap();
    for w in 0..WRITERS {
        for k in 0..KEYS_PER_WRITER {
            let last = acked(&sh, w, k);
            let got = db.get(NS, &key(w, k)).unwrap();
            if last == 0 || last & DELETED != 0 {
                assert_eq!(got, None, "w{w} k{k} should be absent");
            } else {
                assert_eq!(got, Some(value(w, k, last)), "w{w} k{k} after reopen");
            }
        }
    }
}
