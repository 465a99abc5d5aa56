//! What a write burst leaves for the reads after it: db_bench's
//! `fillrandom` and `overwrite` (N random puts of 16-byte keys and 100-byte
//! values, twice, buffered, background compaction every second as in C and
//! Python), then point reads of random keys in windows of 20,000, printing
//! per window the sorted runs, segments, compaction bytes so far and ns per
//! read (or per scan of `pairs` pairs, in windows of 200,000 pairs).
//!
//! `cargo run --release -p edgestore --example debt_timeline -- [n] [windows] [pairs]`
//! (`CACHE_MB=512`: a larger block cache than the default 8 MiB).

use std::time::{Duration, Instant};

use edgestore::{EdgestoreConfig, Engine, SyncMode};

#[path = "common/mod.rs"]
mod common;

use common::{block_cache_from_env, db_bench_key as key, next};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let windows: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    // Pairs per scan; 0: point reads.
    let scan: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Buffered;
    c.background_compaction = Some(Duration::from_secs(1));
    block_cache_from_env(&mut c);
    let db = Engine::open(c).expect("open");
    let value = [0x5au8; 100];
    let start = Instant::now();
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for phase in ["fillrandom", "overwrite"] {
        let t = Instant::now();
        // A permutation: i -> (i * odd + c) mod 2^k restricted to < n.
        let mut bits = 1;
        while (1u64 << bits) < n {
            bits += 1;
        }
        let mask = (1u64 << bits) - 1;
        let mul = next(&mut s) | 1;
        let add = next(&mut s);
        let mut i = 0u64;
        let mut done = 0;
        while done < n {
            let k = (i.wrapping_mul(mul).wrapping_add(add)) & mask;
            i += 1;
            if k < n {
                db.put(b"", &key(k), &value).expect("put");
                done += 1;
            }
        }
        let m = db.metrics();
        println!(
            "{phase}: {:.2} s, runs {}, segments {}",
            t.elapsed().as_secs_f64(),
            m.sorted_runs,
            m.segments
        );
    }
    for _ in 0..windows {
        let t = Instant::now();
        let reads = if scan == 0 {
            20_000
        } else {
            200_000 / scan.max(10)
        };
        for _ in 0..reads {
            let k = next(&mut s) % n;
            if scan == 0 {
                db.get_with(b"", &key(k), |v| v.len())
                    .expect("get")
                    .expect("present");
            } else {
                let mut it = db.scan(b"", &key(k), None).expect("scan");
                let mut got = 0;
                while got < scan && it.next_entry().expect("step").is_some() {
                    got += 1;
                }
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / reads as f64;
        let m = db.metrics();
        println!(
            "t={:6.2}s runs {:3} segments {:3} compaction MB {:7.1} op {:6.0} ns",
            start.elapsed().as_secs_f64(),
            m.sorted_runs,
            m.segments,
            m.compaction_bytes_written as f64 / 1e6,
            ns
        );
    }
}
