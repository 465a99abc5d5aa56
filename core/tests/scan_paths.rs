//! The range iterator's fast paths against a model: a scan that stays on one
//! source without touching the merge heap, segments whose keys all fall
//! before the range's end (no per-key end check) next to ones that reach it
//! (namespaces share segments, so a namespace's scan must stop at the next
//! namespace's first key, inside a segment), and overlapping runs with a
//! memtable on top, read both as lent and as owned pairs. Keys of namespace
//! "c" share their first 16 bytes, so the merge heap's comparison of the
//! eight bytes past the namespace ties and whole keys decide.

mod common;

use std::collections::BTreeMap;

use common::T0;
use edgestore::{Engine, ManualClock, SyncMode};

const NAMESPACES: [&[u8]; 3] = [b"a", b"b", b"c"];

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// Key `i` as namespace `ns` spells it.
fn ns_key(ns: &[u8], i: u32) -> Vec<u8> {
    if ns == b"c" {
        format!("device-0001/read/{i:05}").into_bytes()
    } else {
        key(i)
    }
}

/// (namespace, key) -> value
type Model = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

fn lent(db: &Engine, ns: &[u8], start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut it = db.scan(ns, start, end).unwrap();
    while let Some((k, v)) = it.next_entry().unwrap() {
        out.push((k.to_vec(), v.to_vec()));
    }
    assert!(it.next_entry().unwrap().is_none());
    out
}

/// Asserts `got == want`, naming the first difference rather than printing
/// both lists.
fn same(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)], ctx: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{ctx}: {} pairs, expected {}; first difference at {i}: {:?} vs {:?}",
            got.len(),
            want.len(),
            got.get(i)
                .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            want.get(i)
                .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
        );
    }
}

fn check(db: &Engine, model: &Model, ctx: &str) {
    for ns in NAMESPACES {
        let all: Vec<(Vec<u8>, Vec<u8>)> = model
            .iter()
            .filter(|((n, _), _)| n.as_slice() == ns)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        for start in [0u32, 1, 77, 150, 299, 400] {
            let s = ns_key(ns, start);
            let from: Vec<_> = all.iter().filter(|(k, _)| *k >= s).cloned().collect();
            let ctx_from = format!("{ctx} ns {ns:?} from {start}");
            same(
                &lent(db, ns, &s, None),
                &from,
                &format!("lent scan {ctx_from}"),
            );
            let owned: Vec<_> = db.scan(ns, &s, None).unwrap().map(|r| r.unwrap()).collect();
            same(&owned, &from, &format!("scan {ctx_from}"));
            for end in [start, start + 1, start + 13, start + 140, 1000] {
                let e = ns_key(ns, end);
                let want: Vec<_> = from.iter().filter(|(k, _)| *k < e).cloned().collect();
                same(
                    &lent(db, ns, &s, Some(&e)),
                    &want,
                    &format!("lent range {ctx_from} to {end}"),
                );
            }
        }
        same(
            &lent(db, ns, b"", None),
            &all,
            &format!("whole namespace {ctx} {ns:?}"),
        );
        let p = b"k001";
        let want: Vec<_> = all
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .cloned()
            .collect();
        same(
            &db.prefix(ns, p).unwrap(),
            &want,
            &format!("prefix {ctx} {ns:?}"),
        );
    }
}

#[test]
fn scans_match_a_model_on_one_run_and_on_overlapping_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = common::config(dir.path(), &clock);
    c.sync_mode = SyncMode::Buffered;
    c.segment_size_bytes = 2000; // several segments per run, namespaces share some
    c.block_size_bytes = 256;
    c.max_permanent_runs = 1;
    let db = Engine::open(c).unwrap();
    let mut model = Model::new();
    for ns in NAMESPACES {
        for i in 0..300 {
            let v = format!("{}-{i}", ns[0] as char).into_bytes();
            db.put(ns, &ns_key(ns, i), &v).unwrap();
            model.insert((ns.to_vec(), ns_key(ns, i)), v);
        }
    }
    db.flush_to_segments().unwrap();
    for _ in 0..4 {
        db.compact_once().unwrap();
    }
    check(&db, &model, "one run");

    // Overwrites and deletes in later runs and in the memtable: the scans
    // now switch between sources.
    for round in 0..3u32 {
        for ns in NAMESPACES {
            for i in (round..300).step_by(7 + round as usize) {
                if i % 3 == 0 {
                    db.delete(ns, &ns_key(ns, i)).unwrap();
                    model.remove(&(ns.to_vec(), ns_key(ns, i)));
                } else {
                    let v = format!("r{round}-{i}").into_bytes();
                    db.put(ns, &ns_key(ns, i), &v).unwrap();
                    model.insert((ns.to_vec(), ns_key(ns, i)), v);
                }
            }
        }
        if round < 2 {
            db.flush_to_segments().unwrap();
        }
    }
    check(&db, &model, "runs and memtable");
    db.verify().unwrap();
}
