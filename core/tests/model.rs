//! Property test: random operation sequences (with flushes, compactions,
//! snapshots, reopens, crashes and clock jumps) against an in-memory model.

mod common;

use std::collections::BTreeMap;

use common::*;
use edgestore::{Engine, ManualClock, SyncMode, WriteBatch};
use proptest::prelude::*;

/// (namespace, key, Some((value, ttl)) for a put or None for a delete)
type BatchItem = (u8, u8, Option<(u8, u32)>);

#[derive(Debug, Clone)]
enum Op {
    Put {
        ns: u8,
        key: u8,
        value: u8,
        ttl: u32,
    },
    Delete {
        ns: u8,
        key: u8,
    },
    Batch(Vec<BatchItem>),
    Get {
        ns: u8,
        key: u8,
    },
    Range {
        ns: u8,
        a: u8,
        b: u8,
    },
    Prefix {
        ns: u8,
        p: u8,
    },
    TakeSnapshot,
    CheckSnapshots,
    DropSnapshot,
    Flush,
    FlushToSegments,
    Compact,
    Reopen,
    Crash,
    Advance(u32),
}

fn ttl() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 1u32..50, 500u32..5000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..2, 0u8..24, any::<u8>(), ttl()).prop_map(|(ns, key, value, ttl)| Op::Put { ns, key, value, ttl }),
        3 => (0u8..2, 0u8..24).prop_map(|(ns, key)| Op::Delete { ns, key }),
        2 => prop::collection::vec((0u8..2, 0u8..24, prop::option::of((any::<u8>(), ttl()))), 1..6).prop_map(Op::Batch),
        4 => (0u8..2, 0u8..24).prop_map(|(ns, key)| Op::Get { ns, key }),
        2 => (0u8..2, 0u8..24, 0u8..24).prop_map(|(ns, a, b)| Op::Range { ns, a, b }),
        1 => (0u8..2, 0u8..3).prop_map(|(ns, p)| Op::Prefix { ns, p }),
        1 => Just(Op::TakeSnapshot),
        2 => Just(Op::CheckSnapshots),
        1 => Just(Op::DropSnapshot),
        1 => Just(Op::Flush),
        2 => Just(Op::FlushToSegments),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        3 => (1u32..120).prop_map(Op::Advance),
    ]
}

fn ns_name(ns: u8) -> Vec<u8> {
    vec![b'n', ns]
}

/// Keys "k00".."k23": prefix ops use the first digit.
fn key_name(k: u8) -> Vec<u8> {
    format!("k{k:02}").into_bytes()
}

type Model = BTreeMap<(u8, u8), (Vec<u8>, i64)>;

fn visible(m: &Model, ns: u8, now: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .filter(|((n, _), (_, death))| *n == ns && now < *death)
        .map(|((_, k), (v, _))| (key_name(*k), v.clone()))
        .collect()
}

fn death(now: i64, ttl: u32) -> i64 {
    if ttl == 0 {
        i64::MAX
    } else {
        now + ttl as i64 * 1_000_000_000
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mk = |dir: &std::path::Path| -> Engine {
        let mut c = config(dir, &clock);
        c.memtable_size_bytes = 2048;
        c.segment_size_bytes = 1024;
        c.block_size_bytes = 128;
        // A cache smaller than the data: blocks are evicted and re-read.
        c.block_cache_bytes = 2048;
        c.cohort_window_secs = 60;
        c.max_permanent_runs = 2;
        c.max_permanent_space_amp = 3.0;
        c.sync_mode = SyncMode::Buffered;
        Engine::open(c).unwrap()
    };
    let mut db = mk(dir.path());
    let mut model: Model = BTreeMap::new();
    let mut snaps: Vec<(edgestore::Snapshot, Model, i64)> = Vec::new();
    for op in ops {
        let now = clock.now();
        match op {
            Op::Put {
                ns,
                key,
                value,
                ttl,
            } => {
                db.put_with_ttl(&ns_name(ns), &key_name(key), &[value; 3], ttl)
                    .unwrap();
                model.insert((ns, key), (vec![value; 3], death(now, ttl)));
            }
            Op::Delete { ns, key } => {
                db.delete(&ns_name(ns), &key_name(key)).unwrap();
                model.remove(&(ns, key));
            }
            Op::Batch(items) => {
                let mut b = WriteBatch::new();
                for (ns, key, put) in &items {
                    match put {
                        Some((v, ttl)) => b
                            .put_with_ttl(&ns_name(*ns), &key_name(*key), &[*v; 2], *ttl)
                            .unwrap(),
                        None => b.delete(&ns_name(*ns), &key_name(*key)).unwrap(),
                    }
                }
                db.write(b).unwrap();
                for (ns, key, put) in items {
                    match put {
                        Some((v, ttl)) => model.insert((ns, key), (vec![v; 2], death(now, ttl))),
                        None => model.remove(&(ns, key)),
                    };
                }
            }
            Op::Get { ns, key } => {
                let want = model
                    .get(&(ns, key))
                    .filter(|(_, d)| now < *d)
                    .map(|(v, _)| v.clone());
                assert_eq!(
                    db.get(&ns_name(ns), &key_name(key)).unwrap(),
                    want,
                    "get {ns}/{key}"
                );
            }
            Op::Range { ns, a, b } => {
                let (lo, hi) = (key_name(a), key_name(b));
                let want: Vec<_> = visible(&model, ns, now)
                    .into_iter()
                    .filter(|(k, _)| *k >= lo && *k < hi)
                    .collect();
                assert_eq!(db.range(&ns_name(ns), &lo, &hi).unwrap(), want);
            }
            Op::Prefix { ns, p } => {
                let pre = format!("k{p}").into_bytes();
                let want: Vec<_> = visible(&model, ns, now)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(&pre))
                    .collect();
                assert_eq!(db.prefix(&ns_name(ns), &pre).unwrap(), want);
                let streamed: Vec<_> = db
                    .scan_prefix(&ns_name(ns), &pre)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(streamed, want);
            }
            Op::TakeSnapshot => snaps.push((db.snapshot().unwrap(), model.clone(), now)),
            Op::CheckSnapshots => {
                for (s, m, t) in &snaps {
                    for ns in 0..2 {
                        assert_eq!(
                            s.prefix(&ns_name(ns), b"").unwrap(),
                            visible(m, ns, *t),
                            "snapshot view"
                        );
                    }
                }
            }
            Op::DropSnapshot => {
                if !snaps.is_empty() {
                    snaps.remove(0);
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::FlushToSegments => db.flush_to_segments().unwrap(),
            Op::Compact => {
                db.compact_once().unwrap();
            }
            Op::Reopen => {
                drop(db);
                db = mk(dir.path());
            }
            Op::Crash => {
                // A process crash: the files as the OS has them, nothing flushed on the way out.
                let img = tempfile::tempdir().unwrap();
                crash_image(dir.path(), img.path());
                drop(db);
                for e in std::fs::read_dir(dir.path()).unwrap() {
                    let p = e.unwrap().path();
                    if p.file_name().unwrap() != "LOCK" {
                        std::fs::remove_file(p).unwrap();
                    }
                }
                crash_image(img.path(), dir.path());
                db = mk(dir.path());
            }
            Op::Advance(secs) => clock.advance_secs(secs as u64),
        }
    }
    let now = clock.now();
    for ns in 0..2 {
        assert_eq!(
            db.prefix(&ns_name(ns), b"").unwrap(),
            visible(&model, ns, now)
        );
    }
    db.verify().unwrap();
}

trait Now {
    fn now(&self) -> i64;
}
impl Now for ManualClock {
    fn now(&self) -> i64 {
        edgestore::Clock::now_nanos(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
