//! Scan cost over a fixed shape of data, for comparing builds: `n` random
//! keys (16 bytes, db_bench's zero-padded even numbers) with 100-byte values
//! written into `runs` sorted runs (a flush after each part, no compaction),
//! then `mem` more overwrites of random keys left in the memtable; then
//! scans of 10 and of 1000 pairs from random existing keys, in rounds.
//!
//! `cargo run --release -p edgestore --example scan_runs -- [n] [runs] [mem] [rounds]`
//!
//! Prints ns per scan (wall clock, best and median round; the calling
//! thread's CPU time, median round). `CACHE_MB` sets the block cache
//! (default 8 MiB, the engine's default).

use std::time::Instant;

use edgestore::{EdgestoreConfig, Engine, SyncMode};

#[path = "common/mod.rs"]
mod common;

use common::{block_cache_from_env, db_bench_key as key, next, thread_cpu_ns};

fn arg(args: &mut impl Iterator<Item = String>, default: u64) -> u64 {
    args.next().and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n = arg(&mut args, 1_000_000);
    let runs = arg(&mut args, 4).max(1);
    let mem = arg(&mut args, 20_000);
    let rounds = arg(&mut args, 5).max(1);
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Buffered;
    // Large enough that only the explicit flushes below make runs.
    c.memtable_size_bytes = 1 << 30;
    block_cache_from_env(&mut c);
    let db = Engine::open(c).expect("open");
    let value = [0x5au8; 100];
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    // Every key once, in a random order (a permutation), split into runs.
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (next(&mut s) % (i as u64 + 1)) as usize);
    }
    let part = n.div_ceil(runs) as usize;
    for chunk in order.chunks(part) {
        for &k in chunk {
            db.put(b"", &key(k), &value).expect("put");
        }
        db.flush_to_segments().expect("flush");
    }
    for _ in 0..mem {
        db.put(b"", &key(next(&mut s) % n), &value).expect("put");
    }
    let m = db.metrics();
    println!(
        "n={n} runs={} segments={} memtable={} KiB",
        m.sorted_runs,
        m.segments,
        m.memtable_bytes >> 10
    );
    for len in [10usize, 1000] {
        let scans = if len == 10 { 20_000 } else { 400 };
        let mut per = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let c0 = thread_cpu_ns();
            let mut sum = 0usize;
            for _ in 0..scans {
                let mut it = db.scan(b"", &key(next(&mut s) % n), None).expect("scan");
                let mut got = 0;
                while got < len {
                    match it.next_entry().expect("step") {
                        Some((k, v)) => sum += k.len() + v.len(),
                        None => break,
                    }
                    got += 1;
                }
            }
            assert!(sum > 0);
            per.push(t.elapsed().as_nanos() as f64 / scans as f64);
            cpu.push((thread_cpu_ns() - c0) as f64 / scans as f64);
        }
        per.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "scan {len}: wall best {:.0} median {:.0} ns a scan ({:.1} ns a pair), thread cpu median {:.0} ns",
            per[0],
            per[per.len() / 2],
            per[per.len() / 2] / len as f64,
            cpu[cpu.len() / 2]
        );
    }
}
