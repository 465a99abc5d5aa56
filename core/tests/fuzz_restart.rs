//! Replays the `ops` fuzz corpus and regressions with the harness reopening
//! on the same storage after an injected failure (a process restart that
//! keeps the page cache), the mode `EDGESTORE_FUZZ_RESTART_AFTER_FAILURE`
//! selects. `fuzz_corpus.rs` replays them in the default mode (a power loss
//! after the failure); this binary is separate because the harness reads the
//! variable once per process.

// Only the `ops` target is used here.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

#[test]
fn ops_inputs_replay_cleanly_when_the_process_restarts_after_a_failure() {
    // Before any target runs: the harness caches the variable on first use.
    std::env::set_var("EDGESTORE_FUZZ_RESTART_AFTER_FAILURE", "1");
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(kind).join("ops")) else {
            continue;
        };
        let mut files: Vec<_> = rd.map(|e| e.expect("read_dir entry").path()).collect();
        files.sort();
        for p in files.iter().filter(|p| p.is_file()) {
            let data = std::fs::read(p).expect("read corpus file");
            let r = std::panic::catch_unwind(|| targets::ops(&data));
            assert!(r.is_ok(), "ops failed on {} after a restart", p.display());
            replayed += 1;
        }
    }
    // The regression for a write whose WAL sync failed, replayed from the
    // page cache at the restart and later lost (fixed: open flushes what it
    // replayed), must be among them.
    assert!(
        fuzz.join("regressions/ops/failed-sync-write-resurrected")
            .is_file(),
        "regression input missing"
    );
    assert!(replayed >= 3, "only {replayed} ops inputs found");
}
