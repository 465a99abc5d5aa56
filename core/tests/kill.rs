//! Real `kill -9`: a child process writes in durable mode and acknowledges each
//! write on a pipe after it returns; the parent kills it at random moments
//! (some long enough to hit flushes and compactions), reopens, and checks that
//! the state is exactly the history up to the last acknowledged write, or one
//! write further (the one in flight), never less and never with holes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgestore::{EdgestoreConfig, Engine, WriteBatch};

const KEYS: u64 = 64;

fn config(dir: &std::path::Path) -> EdgestoreConfig {
    let mut c = EdgestoreConfig::new(dir);
    c.memtable_size_bytes = 16 << 10;
    c.segment_size_bytes = 8 << 10;
    c.max_permanent_runs = 2;
    c
}

/// Write number `i` of the history: every 7th is a two-key batch with a delete.
fn apply(db: &Engine, i: u64) {
    let k = format!("k{:02}", i % KEYS);
    if i % 7 == 3 {
        let mut b = WriteBatch::new();
        b.delete(b"ns", k.as_bytes()).unwrap();
        b.put(
            b"ns",
            format!("k{:02}", (i + 1) % KEYS).as_bytes(),
            format!("b{i}").as_bytes(),
        )
        .unwrap();
        db.write(b).unwrap();
    } else {
        db.put(
            b"ns",
            k.as_bytes(),
            format!("v{i}-{}", "x".repeat((i % 200) as usize)).as_bytes(),
        )
        .unwrap();
    }
}

fn model_apply(m: &mut BTreeMap<String, String>, i: u64) {
    let k = format!("k{:02}", i % KEYS);
    if i % 7 == 3 {
        m.remove(&k);
        m.insert(format!("k{:02}", (i + 1) % KEYS), format!("b{i}"));
    } else {
        m.insert(k, format!("v{i}-{}", "x".repeat((i % 200) as usize)));
    }
}

#[test]
fn kill_child_entry() {
    let Ok(dir) = std::env::var("EDGESTORE_KILL_CHILD_DIR") else {
        return;
    };
    let start: u64 = std::env::var("EDGESTORE_KILL_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let db = Engine::open(config(std::path::Path::new(&dir))).unwrap();
    let out = std::io::stdout();
    for i in start.. {
        apply(&db, i);
        let mut o = out.lock();
        writeln!(o, "ack {i}").unwrap();
        o.flush().unwrap();
        if i % 97 == 0 {
            db.compact_once().unwrap();
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let cycles: u64 = std::env::var("EDGESTORE_KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut model = BTreeMap::new();
    let mut next = 0u64;
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut total_acked = 0u64;
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Mostly short lives, sometimes long enough for several flushes.
        let ms = if cycle % 10 == 0 {
            150 + seed % 250
        } else {
            2 + seed % 40
        };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("EDGESTORE_KILL_CHILD_DIR", dir.path())
            .env("EDGESTORE_KILL_CHILD_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap(); // SIGKILL
        let stdout = child.stdout.take().unwrap();
        child.wait().unwrap();
        let mut last_ack: Option<u64> = None;
        for line in BufReader::new(stdout).lines() {
            // libtest prints "test kill_child_entry ... " before the first ack.
            let line = line.unwrap();
            if let Some(pos) = line.find("ack ") {
                last_ack = Some(line[pos + 4..].parse().unwrap());
            }
        }
        let start = next;
        let acked_end = last_ack.map_or(next, |a| a + 1);
        total_acked += acked_end - next;
        let db = Engine::open(config(dir.path())).unwrap();
        let got: BTreeMap<String, String> = db
            .prefix(b"ns", b"")
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        for i in next..acked_end {
            model_apply(&mut model, i);
        }
        let mut with_inflight = model.clone();
        model_apply(&mut with_inflight, acked_end);
        if got == model {
            next = acked_end;
        } else if got == with_inflight {
            model = with_inflight;
            next = acked_end + 1;
        } else {
            let diff: Vec<_> = model
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k}: want {:.12} got {:?}",
                        v,
                        got.get(k).map(|g| &g[..g.len().min(12)])
                    )
                })
                .chain(
                    got.keys()
                        .filter(|k| !model.contains_key(*k))
                        .map(|k| format!("{k}: unexpected")),
                )
                .collect();
            let mut probe = model.clone();
            let mut matches_at = None;
            for extra in 0..50 {
                if probe == got {
                    matches_at = Some(acked_end + extra);
                    break;
                }
                model_apply(&mut probe, acked_end + extra);
            }
            panic!(
                "cycle {cycle} ({ms} ms, started at {start}): state is not the acknowledged history \
                 (acked up to {acked_end}, state matches history up to {matches_at:?}): {diff:?}"
            );
        }
        if let Err(e) = db.verify() {
            panic!("cycle {cycle}: verify failed: {e}");
        }
    }
    eprintln!("kill -9 cycles: {cycles}, acknowledged writes checked: {total_acked}");
    assert!(total_acked > cycles, "children barely wrote anything");
}
