//! Criterion benchmarks: put in each sync mode, get from the memtable and from
//! segments, range scans, short scans over time-ordered runs, the Merkle
//! tree of a namespace (sync), and the flush of a full memtable. Run with
//! `cargo bench -p edgestore --bench engine`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edgestore::{EdgestoreConfig, Engine, SyncMode};

const N: u32 = 100_000;

fn key(i: u32) -> [u8; 16] {
    // Spread keys like a hash would, fixed width (16 B keys, as in db_bench).
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..12].copy_from_slice(&i.to_be_bytes());
    k
}

fn open(dir: &std::path::Path, mode: SyncMode) -> Engine {
    let mut c = EdgestoreConfig::new(dir);
    c.sync_mode = mode;
    Engine::open(c).unwrap()
}

fn loaded(flush: bool) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), SyncMode::Buffered);
    let value = [7u8; 100];
    for i in 0..N {
        db.put(b"bench", &key(i), &value).unwrap();
    }
    if flush {
        db.flush_to_segments().unwrap();
    }
    (dir, db)
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1));
    let value = [7u8; 100];
    for (name, mode) in [
        ("buffered", SyncMode::Buffered),
        ("durable", SyncMode::Durable),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), mode);
        let mut i = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                db.put(b"bench", &key(i), &value).unwrap();
            })
        });
    }
    g.finish();
}

fn gets(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    for (name, flush) in [("memtable", false), ("segments", true)] {
        let (_dir, db) = loaded(flush);
        let mut i = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 7919) % N;
                black_box(db.get(b"bench", &key(i)).unwrap());
            })
        });
        g.bench_function(format!("{name}-missing"), |b| {
            b.iter(|| {
                i = (i + 7919) % N;
                black_box(db.get(b"bench", &key(i + N)).unwrap());
            })
        });
    }
    g.finish();
}

fn ranges(c: &mut Criterion) {
    let mut g = c.benchmark_group("range");
    let (_dir, db) = loaded(true);
    for len in [10usize, 1000] {
        g.throughput(Throughput::Elements(len as u64));
        let mut i = 0u32;
        g.bench_function(format!("scan-{len}"), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % N;
                    key(i)
                },
                |start| black_box(db.scan(b"bench", &start, None).unwrap().take(len).count()),
                BatchSize::SmallInput,
            )
        });
        // The same scans through the lending `next_entry` (what the C API's
        // `edgestore_iter_next` calls): no copy of keys or values.
        g.bench_function(format!("scan-{len}-lend"), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % N;
                    key(i)
                },
                |start| {
                    let mut it = db.scan(b"bench", &start, None).unwrap();
                    let mut n = 0;
                    while n < len {
                        match it.next_entry().unwrap() {
                            Some(kv) => black_box(kv),
                            None => break,
                        };
                        n += 1;
                    }
                    n
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Short scans over data written in key order (time-stamped readings, the
/// usual shape of device data) and flushed in 32 parts: 32 sorted runs with
/// disjoint key ranges, as the writes left them (no compaction). A scan reads
/// the run holding its start key and, past its end, the next one.
fn time_ordered(c: &mut Criterion) {
    let mut g = c.benchmark_group("time-ordered");
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), SyncMode::Buffered);
    let value = [7u8; 100];
    for i in 0..N {
        db.put(b"bench", &i.to_be_bytes(), &value).unwrap();
        if (i + 1) % (N / 32) == 0 {
            db.flush_to_segments().unwrap();
        }
    }
    let len = 10usize;
    g.throughput(Throughput::Elements(len as u64));
    let mut i = 0u32;
    g.bench_function(format!("scan-{len}"), |b| {
        b.iter(|| {
            i = (i + 7919) % (N - len as u32);
            let mut it = db.scan(b"bench", &i.to_be_bytes(), None).unwrap();
            let mut n = 0;
            while let Some((k, v)) = it.next_entry().unwrap() {
                black_box((k, v));
                n += 1;
                if n == len {
                    break;
                }
            }
            n
        })
    });
    g.finish();
}

/// The Merkle tree of a namespace of N pairs (16-byte keys, 100-byte values,
/// in segments), at the bindings' default depth: the cost of one sync round's
/// first step, a whole-namespace scan plus three BLAKE3 calls a pair.
fn merkle(c: &mut Criterion) {
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(u64::from(N)));
    let (_dir, db) = loaded(true);
    g.bench_function("tree-100k-depth-3", |b| {
        b.iter(|| black_box(db.merkle_tree(b"bench", 3).unwrap().root()))
    });
    g.finish();
}

/// Writing a full default-size memtable (4 MiB: 30,000 pairs of 16-byte keys
/// and 100-byte values put in key-hash order) out as a segment: what the
/// flush thread does while writers fill the next memtable. Setup (opening a
/// fresh engine and filling it) is outside the measurement.
fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    const PAIRS: u32 = 30_000;
    g.throughput(Throughput::Elements(u64::from(PAIRS)));
    let value = [7u8; 100];
    g.bench_function("memtable-4mib", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let mut c = EdgestoreConfig::new(dir.path());
                c.sync_mode = SyncMode::Buffered;
                c.memtable_size_bytes = 64 << 20; // no flush while filling
                let db = Engine::open(c).unwrap();
                for i in 0..PAIRS {
                    db.put(b"bench", &key(i), &value).unwrap();
                }
                (dir, db)
            },
            |(dir, db)| {
                db.flush_to_segments().unwrap();
                (dir, db)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = puts, gets, ranges, time_ordered, merkle, flush
}
criterion_main!(benches);
