//! Point-read cost on the Python benchmark's workload (bench_kv.py): 50,000
//! keys of 16 bytes with 100-byte values written in random order with the
//! default options (4 MiB memtable, so about half the data ends up in a
//! segment), then read in another random order with `get_with`, as the
//! Python binding does.
//!
//! `cargo run --release -p edgestore --example point_get -- [n] [rounds] [flush|two|mem]`
//! (`flush`: write the memtable out first, so every read goes to segments;
//! `two`: each half of the puts flushed as its own run, so reads meet two
//! overlapping runs, as right after bench_kv.py's puts;
//! `mem`: a memtable large enough for everything, so none go there).
//! Prints ns per read of each round (the first reads cold blocks); run under `perf stat` for counts.

use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

use common::thread_cpu_ns;
use edgestore::{EdgestoreConfig, Engine, SyncMode};

/// A small xorshift generator: the same order on every run.
fn shuffle(v: &mut [u32], seed: u64) {
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

/// The Python benchmark's keys: `b"key-%011d" % i`.
fn key(i: u32) -> Vec<u8> {
    format!("key-{i:011}").into_bytes()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mode = args.next().unwrap_or_default();
    let flush = mode == "flush" || mode == "two";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Buffered;
    if mode == "mem" {
        c.memtable_size_bytes = 1 << 30;
    }
    let db = Engine::open(c).expect("open");
    let mut order: Vec<u32> = (0..n).collect();
    shuffle(&mut order, 0x2545_F491_4F6C_DD1D);
    let value = [7u8; 100];
    for (j, &i) in order.iter().enumerate() {
        db.put(b"b", &key(i), &value).expect("put");
        if mode == "two" && j + 1 == order.len() / 2 {
            db.flush_to_segments().expect("flush");
        }
    }
    if flush {
        db.flush_to_segments().expect("flush");
    }
    shuffle(&mut order, 0x9E37_79B9_7F4A_7C15);
    if let Some(ms) = std::env::var("SLEEP_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let keys: Vec<Vec<u8>> = order.iter().map(|&i| key(i)).collect();
    if std::env::var_os("CHUNKS").is_some() {
        // The first round in tenths, with the flush count and memtable bytes
        // after each: where a round's time goes while a flush runs.
        let mut line = Vec::new();
        for part in keys.chunks(keys.len().div_ceil(10)) {
            let t = Instant::now();
            for k in part {
                db.get_with(b"b", k, |v| v.len())
                    .expect("get")
                    .expect("present");
            }
            let m = db.metrics();
            line.push(format!(
                "{:.0}ns[f{} {}K]",
                t.elapsed().as_nanos() as f64 / part.len() as f64,
                m.flushes,
                m.memtable_bytes >> 10
            ));
        }
        println!("first round by tenths: {}", line.join(" "));
    }
    let mut all = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let c0 = thread_cpu_ns();
        let mut total = 0usize;
        for k in &keys {
            total += db
                .get_with(b"b", k, |v| v.len())
                .expect("get")
                .expect("present");
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        cpu.push((thread_cpu_ns() - c0) as f64 / n as f64);
        assert_eq!(total, 100 * n as usize);
        all.push(ns);
    }
    let best = all.iter().copied().fold(f64::MAX, f64::min);
    let m = db.metrics();
    let cpu_best = cpu.iter().copied().fold(f64::MAX, f64::min);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "n={n} {mode}: wall first {:.0} best {best:.1}, thread cpu first {:.0} best {cpu_best:.1} ns/get (wall: {}; cpu: {}); segments {}, memtable bytes {}",
        all[0],
        cpu[0],
        fmt(&all),
        fmt(&cpu),
        m.segments,
        m.memtable_bytes
    );
}
