//! The directory lock across processes: while one process holds a database,
//! a second one gets `Locked` at once (no waiting); after the holder is killed
//! with SIGKILL (idle or in the middle of writing), the next open succeeds,
//! every time. The child processes are this test binary, started with an
//! environment variable naming what to do.
//!
//! `EDGESTORE_LOCK_CYCLES` sets the number of kill cycles (default 50).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use edgestore::{EdgestoreConfig, Engine, Error};

/// Longest a refused open may take: it must fail at once, not wait.
const AT_ONCE: Duration = Duration::from_millis(500);

fn config(dir: &Path) -> EdgestoreConfig {
    let mut c = EdgestoreConfig::new(dir);
    c.memtable_size_bytes = 16 << 10;
    c
}

/// The child's side. Modes: `try` (open, report "opened" or "locked" with
/// the time it took, exit), `hold` (open, write key `i` = `i` forever,
/// reporting "ready" after the first write).
#[test]
fn lock_child_entry() {
    let (Ok(dir), Ok(mode)) = (
        std::env::var("EDGESTORE_LOCK_CHILD_DIR"),
        std::env::var("EDGESTORE_LOCK_CHILD_MODE"),
    ) else {
        return;
    };
    let mut out = std::io::stdout();
    let start = Instant::now();
    let res = Engine::open(config(Path::new(&dir)));
    let ms = start.elapsed().as_millis();
    match (mode.as_str(), res) {
        ("try", Ok(db)) => {
            writeln!(out, "@opened {ms}").unwrap();
            db.close().unwrap();
        }
        ("try", Err(Error::Locked(_))) => writeln!(out, "@locked {ms}").unwrap(),
        ("hold", Ok(db)) => {
            for i in 0u64.. {
                db.put(b"ns", format!("{i:08}").as_bytes(), b"v").unwrap();
                if i == 0 {
                    writeln!(out, "@ready").unwrap();
                    out.flush().unwrap();
                }
            }
        }
        (m, r) => panic!("child mode {m}: unexpected {r:?}"),
    }
    out.flush().unwrap();
}

fn spawn(dir: &Path, mode: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EDGESTORE_LOCK_CHILD_DIR", dir)
        .env("EDGESTORE_LOCK_CHILD_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// The next line the child reports (libtest's own output is skipped).
fn report(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited without reporting"
        );
        if let Some(pos) = line.find('@') {
            return line[pos + 1..].trim().to_string();
        }
    }
}

/// Runs a `try` child and returns ("opened" | "locked", milliseconds).
fn try_in_child(dir: &Path) -> (String, u64) {
    let (mut child, mut out) = spawn(dir, "try");
    let r = report(&mut out);
    assert!(child.wait().unwrap().success());
    let (what, ms) = r.split_once(' ').unwrap();
    (what.to_string(), ms.parse().unwrap())
}

#[test]
fn second_process_is_refused_at_once_and_close_releases() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engine::open(config(dir.path())).unwrap();
    db.put(b"ns", b"k", b"v").unwrap();
    let (what, ms) = try_in_child(dir.path());
    assert_eq!(what, "locked");
    assert!(u128::from(ms) < AT_ONCE.as_millis(), "refusal took {ms} ms");
    // A second handle in this process is refused too.
    assert!(matches!(
        Engine::open(config(dir.path())),
        Err(Error::Locked(_))
    ));
    db.close().unwrap();
    let (what, _) = try_in_child(dir.path());
    assert_eq!(what, "opened");
    drop(db);
    assert_eq!(
        Engine::open(config(dir.path()))
            .unwrap()
            .get(b"ns", b"k")
            .unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn open_succeeds_every_time_after_the_holder_is_killed() {
    let cycles: u64 = std::env::var("EDGESTORE_LOCK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut slowest_refusal = Duration::ZERO;
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (mut child, mut out) = spawn(dir.path(), "hold");
        assert_eq!(report(&mut out), "ready", "cycle {cycle}");
        // While the child holds the lock (and writes), opening is refused at once.
        let t = Instant::now();
        let res = Engine::open(config(dir.path()));
        let took = t.elapsed();
        assert!(
            matches!(res, Err(Error::Locked(_))),
            "cycle {cycle}: open while held gave {res:?}"
        );
        assert!(took < AT_ONCE, "cycle {cycle}: refusal took {took:?}");
        slowest_refusal = slowest_refusal.max(took);
        // Kill at a random moment of its writing (sometimes at once).
        std::thread::sleep(Duration::from_millis(seed % 25));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let db = Engine::open(config(dir.path()))
            .unwrap_or_else(|e| panic!("cycle {cycle}: open after kill -9 failed: {e}"));
        // The child's first write was acknowledged before "ready".
        assert_eq!(db.get(b"ns", b"00000000").unwrap(), Some(b"v".to_vec()));
        db.verify().unwrap();
        db.close().unwrap();
    }
    eprintln!("locking: {cycles} kill -9 cycles, slowest refusal {slowest_refusal:?}");
}
