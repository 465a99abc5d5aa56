//! Durable single-writer put latency across WAL generations, with WAL
//! recycling on and off (issue 8): the first two WALs of a new database are
//! new files (appends grow them); from the third on, with recycling, a WAL
//! reuses an obsolete file and its records overwrite allocated blocks.
//!
//! ```text
//! cargo run --release -p edgestore --example wal_latency -- [DIR] [PUTS] [ROUNDS]
//! ```
//!
//! DIR (default: a temporary directory) should be on the disk to measure.
//! Each round runs PUTS (default 150000) 16-byte-key / 100-byte-value durable
//! puts into a fresh database once with `wal_recycle_files = 0` and once with
//! 1, and prints, per database, latency percentiles of the puts made while
//! the first two WALs were live and of those made after.

use std::time::Instant;

use edgestore::{EdgestoreConfig, Engine, SyncMode};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wal_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .count()
        })
        .unwrap_or(0)
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

fn run(parent: &std::path::Path, recycle: usize, puts: u64) -> Result<()> {
    let dir = tempfile::tempdir_in(parent)?;
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Durable;
    c.wal_recycle_files = recycle;
    let db = Engine::open(c)?;
    let value = [0x5au8; 100];
    // WAL numbers: 1 and 2 are new files; with recycling, 3 on reuse 1, 2, ...
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let mut flushes_seen = 0u64;
    for i in 0..puts {
        let key = format!("{:016}", (i * 7919) % puts);
        let t = Instant::now();
        db.put(b"", key.as_bytes(), &value)?;
        let ns = t.elapsed().as_nanos() as u64;
        if flushes_seen < 2 {
            flushes_seen = db.metrics().flushes;
            early.push(ns);
        } else {
            late.push(ns);
        }
    }
    let wals = wal_count(dir.path());
    db.close()?;
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1000.0;
    let (n_e, n_l) = (early.len(), late.len());
    let (m_e, m_l) = (mean(&early), mean(&late));
    println!(
        "recycle={recycle}  first two WALs: n={n_e:>6} p50={:>6.1} p90={:>6.1} p99={:>7.1} mean={m_e:>6.1} us | later WALs: n={n_l:>6} p50={:>6.1} p90={:>6.1} p99={:>7.1} mean={m_l:>6.1} us | WAL files at end {wals}",
        pct(&mut early, 0.5),
        pct(&mut early, 0.9),
        pct(&mut early, 0.99),
        pct(&mut late, 0.5),
        pct(&mut late, 0.9),
        pct(&mut late, 0.99),
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tmp;
    let parent = match args.get(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let puts: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(150_000);
    let rounds: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    for _ in 0..rounds {
        for recycle in [0, 1] {
            run(&parent, recycle, puts)?;
        }
    }
    Ok(())
}
