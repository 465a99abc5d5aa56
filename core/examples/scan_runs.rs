//! Scan and point-read cost over a fixed shape of data, for comparing
//! builds: `n` random keys (16 bytes, db_bench's zero-padded even numbers)
//! with 100-byte values written into `runs` sorted runs (a flush after each
//! part, no compaction), then `mem` more overwrites of random keys left in
//! the memtable; then scans of 10 and of 1000 pairs from random existing
//! keys, and point reads of random present and missing keys, in rounds.
//!
//! `cargo run --release -p edgestore --example scan_runs -- [n] [runs] [mem] [rounds]`
//!
//! Prints ns per scan or read (wall clock, best and median round; the
//! calling thread's CPU time, median round). `CACHE_MB` sets the block cache
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
        let per = rounds_of(rounds, scans, || {
            let mut it = db.scan(b"", &key(next(&mut s) % n), None).expect("scan");
            let mut sum = 0usize;
            for _ in 0..len {
                match it.next_entry().expect("step") {
                    Some((k, v)) => sum += k.len() + v.len(),
                    None => break,
                }
            }
            assert!(sum > 0);
        });
        per.print(&format!("scan {len}"), Some(len));
    }
    // Present keys are db_bench's even numbers; 2i+1 (`key(i)` + 1 in its
    // last digit) falls between them.
    for (what, present) in [("get", true), ("get missing", false)] {
        let per = rounds_of(rounds, 200_000, || {
            let mut k = key(next(&mut s) % n);
            if !present {
                k[15] += 1;
            }
            let got = db.get_with(b"", &k, |v| v.len()).expect("get");
            assert_eq!(got.is_some(), present);
        });
        per.print(what, None);
    }
}

/// Wall-clock and thread-CPU ns per call of each round.
struct Rounds {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

fn rounds_of(rounds: u64, calls: u64, mut call: impl FnMut()) -> Rounds {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let c0 = thread_cpu_ns();
        for _ in 0..calls {
            call();
        }
        wall.push(t.elapsed().as_nanos() as f64 / calls as f64);
        cpu.push((thread_cpu_ns() - c0) as f64 / calls as f64);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Rounds { wall, cpu }
}

impl Rounds {
    fn print(&self, what: &str, pairs: Option<usize>) {
        let median = self.wall[self.wall.len() / 2];
        let per_pair = pairs.map_or(String::new(), |p| {
            format!(" ({:.1} ns a pair)", median / p as f64)
        });
        println!(
            "{what}: wall best {:.0} median {median:.0} ns{per_pair}, thread cpu median {:.0} ns",
            self.wall[0],
            self.cpu[self.cpu.len() / 2]
        );
    }
}
