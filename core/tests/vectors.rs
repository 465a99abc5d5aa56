//! Vector collections: recall, liveness (deletes, overwrites, TTL,
//! snapshots), persistence of the index, bad input.

mod common;

use std::collections::HashSet;

use common::{crash_image, open, T0};
use edgestore::vector::{distance::f32_to_f16, quantize_i8, OwnedVector};
use edgestore::{
    DType, Engine, Error, Filter, ManualClock, MetaValue, Metadata, Metric, SearchParams,
    VectorConfig, VectorInput, VectorPut, WriteBatch,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        // Sum of uniforms: close enough to normal for test data.
        (0..4).map(|_| self.unit()).sum::<f32>() - 2.0
    }
}

/// `q` query vectors from the same distribution as `dataset(_, dim, seed)`.
fn queries(q: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    points(q, dim, 40, seed, seed ^ 0x5151_7777)
}

/// `n` vectors around `clusters` random centres.
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    points(n, dim, clusters, seed, seed.wrapping_mul(31) ^ 0xfeed)
}

fn points(n: usize, dim: usize, clusters: usize, seed: u64, noise: u64) -> Vec<Vec<f32>> {
    let mut r = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| r.gauss() * 2.0).collect())
        .collect();
    let mut r = Rng(noise);
    (0..n)
        .map(|i| {
            let c = &centres[(i * 7 + (r.next() % 3) as usize) % clusters];
            c.iter().map(|x| x + r.gauss() * 1.0).collect()
        })
        .collect()
}

fn dist(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Metric::InnerProduct => -dot,
        Metric::Cosine => {
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

fn brute(metric: Metric, data: &[(Vec<u8>, Vec<f32>)], q: &[f32], k: usize) -> Vec<Vec<u8>> {
    let mut d: Vec<(f32, &Vec<u8>)> = data
        .iter()
        .map(|(key, v)| (dist(metric, q, v), key))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.into_iter().take(k).map(|(_, k)| k.clone()).collect()
}

fn key(i: usize) -> Vec<u8> {
    format!("doc/{i:06}").into_bytes()
}

fn small_config(dim: usize, metric: Metric, dtype: DType) -> VectorConfig {
    let mut c = VectorConfig::new(dim, metric, dtype);
    c.ef_construction = 64;
    c.exact_threshold = 64;
    c
}

fn fill(db: &Engine, name: &str, data: &[(Vec<u8>, Vec<f32>)], cfg: VectorConfig) {
    let coll = db.create_collection(b"ns", name, cfg).unwrap();
    for chunk in data.chunks(256) {
        let puts: Vec<VectorPut<'_>> = chunk
            .iter()
            .map(|(k, v)| VectorPut {
                key: k,
                vector: VectorInput::F32(v),
                metadata: None,
                ttl_secs: 0,
            })
            .collect();
        coll.put_batch(&puts).unwrap();
    }
}

fn recall(
    db: &Engine,
    name: &str,
    metric: Metric,
    data: &[(Vec<u8>, Vec<f32>)],
    queries: &[Vec<f32>],
) -> f64 {
    let coll = db.vectors(b"ns", name).unwrap();
    let mut hit = 0usize;
    for q in queries {
        let want: HashSet<Vec<u8>> = brute(metric, data, q, 10).into_iter().collect();
        let got = coll.search(VectorInput::F32(q), 10, None).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
        hit += got.iter().filter(|h| want.contains(&h.key)).count();
    }
    hit as f64 / (10 * queries.len()) as f64
}

fn dataset(n: usize, dim: usize, seed: u64) -> Vec<(Vec<u8>, Vec<f32>)> {
    clustered(n, dim, 40, seed)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (key(i), v))
        .collect()
}

#[test]
fn hnsw_recall_at_10_against_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let data = dataset(3000, 24, 1);
    let queries: Vec<Vec<f32>> = queries(60, 24, 1);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let name = format!("{metric:?}");
        fill(&db, &name, &data, small_config(24, metric, DType::F32));
        let r = recall(&db, &name, metric, &data, &queries);
        let stats = db.vectors(b"ns", &name).unwrap().stats();
        assert!(stats.hnsw_searches >= 60, "{stats:?}");
        assert_eq!(stats.graph_inserts, 3000);
        eprintln!("{metric:?}: recall@10 = {r:.4}");
        assert!(r >= 0.95, "{metric:?} recall@10 = {r}");
    }
}

#[test]
fn flat_batch_results_match_the_nested_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let data = dataset(1500, 16, 3);
    fill(&db, "flat", &data, small_config(16, Metric::L2, DType::F32));
    let coll = db.vectors(b"ns", "flat").unwrap();
    coll.delete(&key(150)).unwrap();
    let qs = queries(20, 16, 3);
    let inputs: Vec<VectorInput<'_>> = qs.iter().map(|q| VectorInput::F32(q)).collect();
    let filter = Filter::key_prefix(b"doc/0001".to_vec()); // 100 keys, one deleted
    for (f, k) in [(None, 10), (Some(&filter), 200)] {
        let params = SearchParams::default();
        let nested = coll.search_batch_with(&inputs, k, f, &params).unwrap();
        let flat = coll.search_batch_flat(&inputs, k, f, &params).unwrap();
        assert_eq!(flat.counts.len(), inputs.len());
        for (i, hits) in nested.iter().enumerate() {
            let got: Vec<(Vec<u8>, f32)> = flat.query(i).map(|(k, d)| (k.to_vec(), d)).collect();
            let want: Vec<(Vec<u8>, f32)> =
                hits.iter().map(|h| (h.key.clone(), h.distance)).collect();
            assert_eq!(got, want);
        }
        if f.is_some() {
            assert!(flat.counts.iter().all(|&c| c == 99), "{:?}", flat.counts);
        }
    }
    // Through a snapshot: a key deleted after it is still seen.
    let snap = db.snapshot().unwrap();
    coll.delete(&key(8)).unwrap();
    let at = coll.at(&snap);
    let flat = at
        .search_batch_flat(&inputs, 10, None, &SearchParams::default())
        .unwrap();
    for (i, q) in inputs.iter().enumerate() {
        let want = at.search(*q, 10, None).unwrap();
        let got: Vec<Vec<u8>> = flat.query(i).map(|(k, _)| k.to_vec()).collect();
        assert_eq!(got, want.into_iter().map(|h| h.key).collect::<Vec<_>>());
    }
}

#[test]
fn exact_distances_follow_the_requested_metric() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let a = [1.0f32, 0.0];
    let b = [3.0f32, 4.0];
    let q = [2.0f32, 0.0];
    for (metric, want_a, want_b) in [
        (Metric::L2, 1.0, 17.0),
        (Metric::InnerProduct, -2.0, -6.0),
        (Metric::Cosine, 0.0, 0.4),
    ] {
        let name = format!("m{metric:?}");
        let c = db
            .create_collection(b"", &name, VectorConfig::new(2, metric, DType::F32))
            .unwrap();
        c.put(b"a", VectorInput::F32(&a), None, 0).unwrap();
        c.put(b"b", VectorInput::F32(&b), None, 0).unwrap();
        let hits = c.search(VectorInput::F32(&q), 2, None).unwrap();
        let get = |k: &[u8]| hits.iter().find(|h| h.key == k).unwrap().distance;
        assert!((get(b"a") - want_a).abs() < 1e-5, "{metric:?}");
        assert!((get(b"b") - want_b).abs() < 1e-5, "{metric:?}");
        // Inner product prefers b (larger dot) although a is nearer in L2.
        if metric == Metric::InnerProduct {
            assert_eq!(hits[0].key, b"b");
        }
    }
}

#[test]
fn f16_and_i8_collections_store_and_search_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let data = dataset(1500, 16, 7);
    let queries = queries(20, 16, 7);
    let h = db
        .create_collection(b"ns", "half", small_config(16, Metric::L2, DType::F16))
        .unwrap();
    let q8 = db
        .create_collection(b"ns", "int8", small_config(16, Metric::Cosine, DType::I8))
        .unwrap();
    for (k, v) in &data {
        let bits: Vec<u16> = v.iter().map(|&x| f32_to_f16(x)).collect();
        h.put(k, VectorInput::F16(&bits), None, 0).unwrap();
        let (d, s) = quantize_i8(v);
        q8.put(k, VectorInput::I8 { data: &d, scale: s }, None, 0)
            .unwrap();
    }
    // Stored exactly as given, scale kept.
    let (d0, s0) = quantize_i8(&data[0].1);
    assert_eq!(
        q8.get(&data[0].0).unwrap().unwrap().vector,
        OwnedVector::I8 {
            data: d0,
            scale: s0
        }
    );
    for (coll, metric) in [(&h, Metric::L2), (&q8, Metric::Cosine)] {
        let mut hit = 0;
        for q in &queries {
            let want: HashSet<Vec<u8>> = brute(metric, &data, q, 10).into_iter().collect();
            let got = coll.search(VectorInput::F32(q), 10, None).unwrap();
            hit += got.iter().filter(|x| want.contains(&x.key)).count();
            // Reported distances are the metric on the stored values.
            let stored = coll.get(&got[0].key).unwrap().unwrap().vector.to_f32();
            assert!(
                (dist(metric, q, &stored) - got[0].distance).abs()
                    < 1e-3 * (1.0 + got[0].distance.abs())
            );
        }
        let r = hit as f64 / (10 * queries.len()) as f64;
        assert!(r >= 0.9, "{metric:?}: {r}");
    }
}

fn tagged(i: usize) -> Metadata {
    let mut m = Metadata::new();
    m.insert("tag".into(), MetaValue::I64((i % 100) as i64));
    m.insert("even".into(), MetaValue::Bool(i.is_multiple_of(2)));
    m.insert(
        "lang".into(),
        MetaValue::Str(if i.is_multiple_of(3) { "en" } else { "de" }.into()),
    );
    m
}

#[test]
fn selective_filters_keep_recall() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let data = dataset(3000, 16, 3);
    let c = db
        .create_collection(b"ns", "f", small_config(16, Metric::L2, DType::F32))
        .unwrap();
    for (i, (k, v)) in data.iter().enumerate() {
        c.put(k, VectorInput::F32(v), Some(&tagged(i)), 0).unwrap();
    }
    let queries = queries(30, 16, 3);
    type Case = (Filter, Box<dyn Fn(usize) -> bool>);
    let cases: Vec<Case> = vec![
        (Filter::eq("tag", 7i64), Box::new(|i| i % 100 == 7)), // 1%
        (
            Filter::range("tag", Some(10i64.into()), Some(19i64.into())),
            Box::new(|i| (10..20).contains(&(i % 100))),
        ), // 10%
        (Filter::eq("even", true), Box::new(|i| i % 2 == 0)),  // 50%
        (
            Filter::range("tag", None, Some(89i64.into())),
            Box::new(|i| i % 100 < 90),
        ), // 90%: HNSW
        (
            Filter::key_prefix("doc/001"),
            Box::new(|i| (1000..2000).contains(&i)),
        ),
        (
            Filter::And(vec![
                Filter::eq("lang", "en"),
                Filter::Not(Box::new(Filter::eq("even", true))),
            ]),
            Box::new(|i| i % 3 == 0 && i % 2 == 1),
        ),
    ];
    for (f, pred) in &cases {
        let subset: Vec<(Vec<u8>, Vec<f32>)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| pred(*i))
            .map(|(_, x)| x.clone())
            .collect();
        let mut hit = 0;
        for q in &queries {
            let want: HashSet<Vec<u8>> = brute(Metric::L2, &subset, q, 10).into_iter().collect();
            let got = c.search(VectorInput::F32(q), 10, Some(f)).unwrap();
            assert_eq!(got.len(), 10.min(subset.len()));
            assert!(
                got.iter().all(|h| subset.iter().any(|(k, _)| *k == h.key)),
                "{f:?} leaked"
            );
            hit += got.iter().filter(|x| want.contains(&x.key)).count();
        }
        let r = hit as f64 / (10 * queries.len()) as f64;
        eprintln!("{f:?}: recall@10 = {r:.4}");
        assert!(r >= 0.95, "{f:?}: recall {r}");
    }
    let s = c.stats();
    assert!(s.exact_searches > 0 && s.hnsw_searches > 0, "{s:?}");
}

/// Every key any search returns must be alive, and every live key reachable.
fn assert_only_live(coll: &edgestore::Collection<'_>, live: &[(Vec<u8>, Vec<f32>)], dim: usize) {
    let q = vec![0.0f32; dim];
    for exact in [true, false] {
        let params = SearchParams {
            ef: Some(2000),
            exact,
        };
        let hits = coll
            .search_with(VectorInput::F32(&q), 2000, None, &params)
            .unwrap();
        let got: HashSet<Vec<u8>> = hits.iter().map(|h| h.key.clone()).collect();
        let want: HashSet<Vec<u8>> = live.iter().map(|(k, _)| k.clone()).collect();
        assert!(got.is_subset(&want), "dead vector returned (exact={exact})");
        if exact {
            assert_eq!(got, want);
        }
        for h in &hits {
            let v = &live.iter().find(|(k, _)| *k == h.key).unwrap().1;
            assert!((dist(Metric::L2, &q, v) - h.distance).abs() < 1e-3 * (1.0 + h.distance));
        }
    }
}

#[test]
fn deletes_overwrites_ttl_and_snapshots_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let dim = 8;
    let mut data = dataset(600, dim, 5);
    let mut cfg = small_config(dim, Metric::L2, DType::F32);
    cfg.exact_threshold = 0; // HNSW for every unfiltered search
    fill(&db, "live", &data, cfg);
    let c = db.vectors(b"ns", "live").unwrap();
    let snap = db.snapshot().unwrap();
    let before = data.clone();

    // Delete every 5th, overwrite every 7th far away, give every 11th a TTL.
    let mut ttl_keys = Vec::new();
    for (i, (k, v)) in data.iter_mut().enumerate() {
        if i % 5 == 0 {
            c.delete(k).unwrap();
        } else if i % 7 == 0 {
            *v = vec![100.0 + i as f32; dim];
            c.put(k, VectorInput::F32(v), None, 0).unwrap();
        } else if i % 11 == 0 {
            c.put(k, VectorInput::F32(v), None, 60).unwrap();
            ttl_keys.push(k.clone());
        }
    }
    let mut live: Vec<_> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, x)| x.clone())
        .collect();
    assert_only_live(&c, &live, dim);
    assert!(c.get(&key(5)).unwrap().is_none());

    // The snapshot still sees the collection as it was.
    let at = c.at(&snap);
    let q = vec![0.0f32; dim];
    let old = at
        .search_with(
            VectorInput::F32(&q),
            600,
            None,
            &SearchParams {
                ef: Some(2000),
                exact: true,
            },
        )
        .unwrap();
    assert_eq!(old.len(), 600);
    for h in &old {
        let v = &before.iter().find(|(k, _)| *k == h.key).unwrap().1;
        assert!((dist(Metric::L2, &q, v) - h.distance).abs() < 1e-3 * (1.0 + h.distance));
    }
    assert!(at.get(&key(5)).unwrap().is_some());

    // TTL: gone from the moment they die, also before any compaction.
    clock.advance_secs(61);
    live.retain(|(k, _)| !ttl_keys.contains(k));
    assert_only_live(&c, &live, dim);
    assert!(c.get(&ttl_keys[0]).unwrap().is_none());

    // Through flushes, compaction and a reopen.
    db.flush_to_segments().unwrap();
    db.compact_once().unwrap();
    assert_only_live(&c, &live, dim);
    drop(snap);
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &clock);
    let c = db.vectors(b"ns", "live").unwrap();
    assert!(c.stats().loaded_from_file);
    assert_only_live(&c, &live, dim);
}

#[test]
fn vectors_in_a_write_batch_are_atomic_with_key_values() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let c = db
        .create_collection(b"ns", "b", VectorConfig::new(2, Metric::L2, DType::F32))
        .unwrap();
    let mut b = WriteBatch::new();
    b.put(b"ns", b"doc", b"hello").unwrap();
    c.stage_put(&mut b, b"doc", VectorInput::F32(&[1.0, 2.0]), None, 0)
        .unwrap();
    assert!(c
        .search(VectorInput::F32(&[1.0, 2.0]), 1, None)
        .unwrap()
        .is_empty());
    db.write(b).unwrap();
    let hits = c.search(VectorInput::F32(&[1.0, 2.0]), 1, None).unwrap();
    assert_eq!(hits[0].key, b"doc");
    assert_eq!(db.get(b"ns", b"doc").unwrap(), Some(b"hello".to_vec()));
    // Vector records are invisible to the key-value API, also in a 255-byte namespace.
    assert_eq!(db.prefix(b"ns", b"").unwrap().len(), 1);
    let ns255 = vec![0x01u8; 255];
    db.put(&ns255, b"x", b"y").unwrap();
    assert_eq!(
        db.prefix(&ns255, b"").unwrap(),
        vec![(b"x".to_vec(), b"y".to_vec())]
    );
    assert_eq!(c.len(), 1);
    let mut b = WriteBatch::new();
    c.stage_delete(&mut b, b"doc").unwrap();
    b.delete(b"ns", b"doc").unwrap();
    db.write(b).unwrap();
    assert!(c
        .search(VectorInput::F32(&[1.0, 2.0]), 1, None)
        .unwrap()
        .is_empty());
}

#[test]
fn reopen_loads_the_index_without_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let data = dataset(1500, 16, 21);
    let queries = queries(20, 16, 21);
    let results = {
        let db = open(dir.path(), &clock);
        fill(&db, "p", &data, small_config(16, Metric::L2, DType::F32));
        let c = db.vectors(b"ns", "p").unwrap();
        assert!(c.stats().rebuilt_from_records);
        let r: Vec<_> = queries
            .iter()
            .map(|q| c.search(VectorInput::F32(q), 10, None).unwrap())
            .collect();
        db.close().unwrap();
        r
    };
    let db = open(dir.path(), &clock);
    let c = db.vectors(b"ns", "p").unwrap();
    let s = c.stats();
    assert!(s.loaded_from_file && !s.rebuilt_from_records, "{s:?}");
    assert_eq!(s.graph_inserts, 0);
    assert_eq!(s.replayed_records, 0);
    assert_eq!(s.live, 1500);
    for (q, want) in queries.iter().zip(&results) {
        assert_eq!(&c.search(VectorInput::F32(q), 10, None).unwrap(), want);
    }
}

#[test]
fn reopen_after_a_crash_replays_only_newer_records() {
    let dir = tempfile::tempdir().unwrap();
    let img = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut data = dataset(800, 8, 2);
    {
        let db = open(dir.path(), &clock);
        fill(
            &db,
            "c",
            &data[..700],
            small_config(8, Metric::L2, DType::F32),
        );
        db.flush_to_segments().unwrap(); // writes the index file
        let c = db.vectors(b"ns", "c").unwrap();
        assert_eq!(c.stats().persists, 1);
        for (k, v) in &data[700..] {
            c.put(k, VectorInput::F32(v), None, 0).unwrap();
        }
        for i in 0..10 {
            c.delete(&key(i)).unwrap();
        }
        crash_image(dir.path(), img.path());
    }
    data.drain(..10);
    let db = open(img.path(), &clock);
    let c = db.vectors(b"ns", "c").unwrap();
    let s = c.stats();
    assert!(s.loaded_from_file, "{s:?}");
    assert_eq!(s.graph_inserts, 100);
    assert_eq!(s.replayed_records, 110);
    assert_only_live(&c, &data, 8);
}

#[test]
fn missing_or_corrupt_index_files_are_rebuilt_from_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let data = dataset(300, 8, 9);
    {
        let db = open(dir.path(), &clock);
        fill(&db, "x", &data, small_config(8, Metric::L2, DType::F32));
        db.close().unwrap();
    }
    let idx_file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("index file written at close");
    // Corrupt one byte in the middle.
    let mut bytes = std::fs::read(&idx_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&idx_file, &bytes).unwrap();
    {
        let db = open(dir.path(), &clock);
        let c = db.vectors(b"ns", "x").unwrap();
        let s = c.stats();
        assert!(s.rebuilt_from_records && !s.loaded_from_file, "{s:?}");
        assert_eq!(s.graph_inserts, 300);
        assert_only_live(&c, &data, 8);
        db.close().unwrap();
    }
    // Truncated, then missing.
    let len = std::fs::metadata(&idx_file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx_file)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    {
        let db = open(dir.path(), &clock);
        assert!(db.vectors(b"ns", "x").unwrap().stats().rebuilt_from_records);
        db.close().unwrap();
    }
    std::fs::remove_file(&idx_file).unwrap();
    let db = open(dir.path(), &clock);
    let c = db.vectors(b"ns", "x").unwrap();
    assert!(c.stats().rebuilt_from_records);
    assert_only_live(&c, &data, 8);
}

#[test]
fn snapshot_older_than_the_loaded_index_reads_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let db = open(dir.path(), &clock);
        let c = db
            .create_collection(b"ns", "s", VectorConfig::new(2, Metric::L2, DType::F32))
            .unwrap();
        c.put(b"a", VectorInput::F32(&[0.0, 0.0]), None, 0).unwrap();
        db.close().unwrap();
    }
    let db = open(dir.path(), &clock);
    let snap = db.snapshot().unwrap();
    db.put(b"kv", b"k", b"v").unwrap(); // moves the LSN past the snapshot
    let c = db.vectors(b"ns", "s").unwrap();
    c.put(b"a", VectorInput::F32(&[5.0, 5.0]), None, 0).unwrap();
    c.put(b"b", VectorInput::F32(&[1.0, 1.0]), None, 0).unwrap();
    let old = c
        .at(&snap)
        .search(VectorInput::F32(&[0.0, 0.0]), 5, None)
        .unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!((old[0].key.as_slice(), old[0].distance), (&b"a"[..], 0.0));
    let now = c.search(VectorInput::F32(&[0.0, 0.0]), 5, None).unwrap();
    assert_eq!(
        now.iter().map(|h| h.key.as_slice()).collect::<Vec<_>>(),
        vec![&b"b"[..], b"a"]
    );
}

fn invalid<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    match r {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected InvalidArgument({needle}), got {other:?}"),
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    invalid(db.vectors(b"ns", "nope"), "no vector collection");
    invalid(
        db.create_collection(b"ns", "z", VectorConfig::new(0, Metric::L2, DType::F32)),
        "dimension",
    );
    invalid(
        db.create_collection(b"ns", "", VectorConfig::new(4, Metric::L2, DType::F32)),
        "name",
    );
    let c = db
        .create_collection(b"ns", "v", VectorConfig::new(4, Metric::Cosine, DType::F32))
        .unwrap();
    invalid(
        db.create_collection(b"ns", "v", VectorConfig::new(5, Metric::Cosine, DType::F32)),
        "different configuration",
    );
    let ok = [1.0f32, 0.0, 0.0, 0.0];
    invalid(
        c.put(b"k", VectorInput::F32(&[1.0, 2.0]), None, 0),
        "dimension 2",
    );
    invalid(
        c.put(b"k", VectorInput::F16(&[0x3c00; 4]), None, 0),
        "element type f16",
    );
    invalid(
        c.put(b"k", VectorInput::F32(&[1.0, f32::NAN, 0.0, 0.0]), None, 0),
        "NaN",
    );
    invalid(
        c.put(
            b"k",
            VectorInput::F32(&[1.0, f32::INFINITY, 0.0, 0.0]),
            None,
            0,
        ),
        "infinite",
    );
    invalid(
        c.put(b"k", VectorInput::F32(&[0.0; 4]), None, 0),
        "zero vector",
    );
    invalid(
        c.put(&[b'k'; 300], VectorInput::F32(&ok), None, 0),
        "vector key",
    );
    let mut m = Metadata::new();
    m.insert("x".into(), MetaValue::F64(f64::NAN));
    invalid(c.put(b"k", VectorInput::F32(&ok), Some(&m), 0), "NaN");
    c.put(b"k", VectorInput::F32(&ok), None, 0).unwrap();
    invalid(c.search(VectorInput::F32(&ok), 0, None), "k must be");
    invalid(c.search(VectorInput::F32(&ok), 1 << 40, None), "k must be");
    invalid(
        c.search(VectorInput::F32(&[1.0; 3]), 1, None),
        "dimension 3",
    );
    invalid(c.search(VectorInput::F32(&[f32::NAN; 4]), 1, None), "NaN");
    invalid(
        c.search(VectorInput::F16(&[0x7c00; 4]), 1, None),
        "infinite",
    );
    invalid(
        c.search(
            VectorInput::I8 {
                data: &[1; 4],
                scale: 0.0,
            },
            1,
            None,
        ),
        "scale",
    );
    invalid(
        c.search(VectorInput::F32(&ok), 1, Some(&Filter::eq("x", f64::NAN))),
        "NaN",
    );
    invalid(
        c.search_with(
            VectorInput::F32(&ok),
            1,
            None,
            &SearchParams {
                ef: Some(0),
                exact: false,
            },
        ),
        "ef",
    );
    // Queries in another element type are fine.
    let hits = c
        .search(
            VectorInput::I8 {
                data: &[127, 0, 0, 0],
                scale: 0.01,
            },
            1,
            None,
        )
        .unwrap();
    assert_eq!(hits[0].key, b"k");
    assert_eq!(db.list_collections(b"ns").unwrap().len(), 1);
    db.close().unwrap();
    assert!(matches!(
        c.search(VectorInput::F32(&ok), 1, None),
        Err(Error::Closed)
    ));
}

#[test]
fn vacuum_drops_dead_versions_and_snapshots_still_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let dim = 4;
    let data = dataset(1200, dim, 13);
    fill(&db, "vac", &data, small_config(dim, Metric::L2, DType::F32));
    let c = db.vectors(b"ns", "vac").unwrap();
    let snap = db.snapshot().unwrap();
    // Overwrite everything twice: 2400 dead versions against 1200 live ones.
    let mut now = data.clone();
    for round in 1..=2 {
        let moved: Vec<(Vec<u8>, Vec<f32>)> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter().map(|x| x + 50.0 * round as f32).collect(),
                )
            })
            .collect();
        for chunk in moved.chunks(300) {
            let puts: Vec<VectorPut<'_>> = chunk
                .iter()
                .map(|(k, v)| VectorPut {
                    key: k,
                    vector: VectorInput::F32(v),
                    metadata: None,
                    ttl_secs: 0,
                })
                .collect();
            c.put_batch(&puts).unwrap();
        }
        now = moved;
    }
    let s = c.stats();
    assert!(s.vacuums >= 1, "{s:?}");
    assert!(s.nodes < 2 * 1200, "{s:?}");
    assert_eq!(s.live, 1200);
    assert_only_live(&c, &now, dim);
    // The snapshot predates the vacuum: answered from the records it sees.
    let at = c.at(&snap);
    let q = vec![0.0f32; dim];
    let old = at
        .search_with(
            VectorInput::F32(&q),
            1200,
            None,
            &SearchParams {
                ef: None,
                exact: true,
            },
        )
        .unwrap();
    assert_eq!(old.len(), 1200);
    for h in &old {
        let v = &data.iter().find(|(k, _)| *k == h.key).unwrap().1;
        assert!((dist(Metric::L2, &q, v) - h.distance).abs() < 1e-3 * (1.0 + h.distance));
    }
}

#[test]
fn concurrent_writers_and_searchers_agree_with_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let dim = 8;
    let data = dataset(800, dim, 17);
    let mut cfg = small_config(dim, Metric::L2, DType::F32);
    cfg.exact_threshold = 0;
    db.create_collection(b"ns", "cc", cfg).unwrap();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (db, data) = (&db, &data);
            s.spawn(move || {
                let c = db.vectors(b"ns", "cc").unwrap();
                for (i, (k, v)) in data.iter().enumerate().filter(|(i, _)| i % 2 == t) {
                    c.put(k, VectorInput::F32(v), None, 0).unwrap();
                    if i % 10 == 3 {
                        c.delete(k).unwrap();
                    }
                }
            });
        }
        let db = &db;
        s.spawn(move || {
            let c = db.vectors(b"ns", "cc").unwrap();
            for _ in 0..200 {
                let snap = db.snapshot().unwrap();
                let hits = c
                    .at(&snap)
                    .search(VectorInput::F32(&[0.0; 8]), 50, None)
                    .unwrap();
                // Every hit is alive in the snapshot it was searched at.
                for h in hits {
                    assert!(c.at(&snap).get(&h.key).unwrap().is_some());
                }
            }
        });
        s.spawn(move || {
            for _ in 0..20 {
                db.flush_to_segments().unwrap();
            }
        });
    });
    let c = db.vectors(b"ns", "cc").unwrap();
    let live: Vec<_> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .map(|(_, x)| x.clone())
        .collect();
    assert_only_live(&c, &live, dim);
}

#[test]
fn close_in_buffered_mode_with_a_collection_reports_ok_and_keeps_everything() {
    // An earlier note said close returned `Closed` here; it returns Ok.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = common::config(dir.path(), &clock);
    cfg.sync_mode = edgestore::SyncMode::Buffered;
    let db = edgestore::Engine::open(cfg.clone()).unwrap();
    let c = db
        .create_collection(b"ns", "v", VectorConfig::new(2, Metric::L2, DType::F32))
        .unwrap();
    c.put(b"a", VectorInput::F32(&[1.0, 2.0]), None, 0).unwrap();
    db.put(b"ns", b"k", b"v").unwrap();
    db.close().unwrap();
    // A copy of the files opens with both the record and the vector.
    let img = tempfile::tempdir().unwrap();
    crash_image(dir.path(), img.path());
    drop(db);
    let db = edgestore::Engine::open(common::config(img.path(), &clock)).unwrap();
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
    let c = db.vectors(b"ns", "v").unwrap();
    assert_eq!(
        c.search(VectorInput::F32(&[1.0, 2.0]), 1, None).unwrap()[0].key,
        b"a"
    );
}
