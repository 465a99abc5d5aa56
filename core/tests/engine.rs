//! Engine integration tests: reopen, WAL recovery, batches, LWW, tombstones,
//! TTL with a simulated clock, snapshots, limits, locking, threads.

mod common;

use std::sync::Arc;

use common::*;
use edgestore::types::{MAX_KEY_LEN, MAX_NAMESPACE_LEN, MAX_VALUE_LEN};
use edgestore::{EdgestoreConfig, Engine, Error, ManualClock, SyncMode, WriteBatch};

#[test]
fn put_get_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let db = open(dir.path(), &clock);
        db.put(b"ns", b"a", b"1").unwrap();
        db.put(b"ns", b"b", b"2").unwrap();
        db.put(b"other", b"a", b"x").unwrap();
        db.delete(b"ns", b"b").unwrap();
        assert_eq!(db.get(b"ns", b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(db.get(b"ns", b"b").unwrap(), None);
        assert_eq!(db.get(b"other", b"a").unwrap(), Some(b"x".to_vec()));
    }
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"ns", b"b").unwrap(), None);
    db.flush_to_segments().unwrap();
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"other", b"a").unwrap(), Some(b"x".to_vec()));
    assert_eq!(
        db.range(b"ns", b"", b"\xff").unwrap(),
        vec![(b"a".to_vec(), b"1".to_vec())]
    );
}

#[test]
fn empty_keys_and_values_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put(b"", b"", b"").unwrap();
    db.put(b"ns", b"", b"empty-key").unwrap();
    assert_eq!(db.get(b"", b"").unwrap(), Some(vec![]));
    assert_eq!(db.get(b"ns", b"").unwrap(), Some(b"empty-key".to_vec()));
    db.flush_to_segments().unwrap();
    assert_eq!(
        db.prefix(b"ns", b"").unwrap(),
        vec![(vec![], b"empty-key".to_vec())]
    );
    assert_eq!(db.get(b"", b"").unwrap(), Some(vec![]));
}

#[test]
fn limits_give_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let big_ns = vec![b'n'; MAX_NAMESPACE_LEN + 1];
    let big_key = vec![b'k'; MAX_KEY_LEN + 1];
    assert!(matches!(
        db.put(&big_ns, b"k", b"v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.put(b"ns", &big_key, b"v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.get(b"ns", &big_key),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.range(&big_ns, b"", b"z"),
        Err(Error::InvalidArgument(_))
    ));
    let big_value = vec![0u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        db.put(b"ns", b"k", &big_value),
        Err(Error::InvalidArgument(_))
    ));
    // At the limits everything works, and values of several MiB round-trip.
    let ns = vec![b'n'; MAX_NAMESPACE_LEN];
    let key = vec![b'k'; MAX_KEY_LEN];
    let value: Vec<u8> = (0..5 << 20).map(|i| (i % 251) as u8).collect();
    db.put(&ns, &key, &value).unwrap();
    db.flush_to_segments().unwrap();
    assert_eq!(db.get(&ns, &key).unwrap().as_deref(), Some(&value[..]));
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(&ns, &key).unwrap().as_deref(), Some(&value[..]));
}

#[test]
fn range_and_prefix_are_ordered_and_namespaced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open_small(dir.path(), &clock);
    for i in 0..300u32 {
        db.put(b"a", format!("k{i:04}").as_bytes(), &i.to_le_bytes())
            .unwrap();
        db.put(b"ab", format!("k{i:04}").as_bytes(), b"other-ns")
            .unwrap();
    }
    let r = db.range(b"a", b"k0100", b"k0200").unwrap();
    assert_eq!(r.len(), 100);
    assert_eq!(r[0].0, b"k0100");
    assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(db.prefix(b"a", b"k02").unwrap().len(), 100);
    assert_eq!(db.prefix(b"a", b"").unwrap().len(), 300);
    assert!(db.range(b"a", b"k0200", b"k0100").unwrap().is_empty());
    // Streaming, with an open end.
    let mut it = db.scan(b"a", b"k0290", None).unwrap();
    assert_eq!(it.next().unwrap().unwrap().0, b"k0290");
    assert_eq!(it.count(), 9);
    assert!(
        db.metrics().segments > 3,
        "small memtable should have flushed several times"
    );
}

#[test]
fn last_writer_wins_across_segments_and_tombstones_hide_everything_older() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put(b"ns", b"k", b"v1").unwrap();
    db.flush_to_segments().unwrap();
    db.put(b"ns", b"k", b"v2").unwrap();
    db.put(b"ns", b"gone", b"x").unwrap();
    db.flush_to_segments().unwrap();
    db.delete(b"ns", b"gone").unwrap();
    db.flush_to_segments().unwrap();
    db.put(b"ns", b"k", b"v3").unwrap();
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v3".to_vec()));
    db.flush_to_segments().unwrap();
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v3".to_vec()));
    assert_eq!(db.get(b"ns", b"gone").unwrap(), None);
    assert_eq!(
        db.range(b"ns", b"", b"\xff").unwrap(),
        vec![(b"k".to_vec(), b"v3".to_vec())]
    );
    // Compaction merges the permanent runs and never resurrects anything.
    for _ in 0..3 {
        db.compact_once().unwrap();
    }
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v3".to_vec()));
    assert_eq!(db.get(b"ns", b"gone").unwrap(), None);
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"gone").unwrap(), None);
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v3".to_vec()));
}

/// Runs of disjoint key ranges (time-ordered keys flushed one after the
/// other) are sought only when a scan reaches them; the newest version of a
/// run's first key must still win, whichever run holds it, and a tombstone
/// at a run's first key must still hide the older value.
#[test]
fn scans_over_runs_that_start_after_the_scan_start_see_the_newest_versions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let key = |i: u32| format!("t{i:04}").into_bytes();
    // Four runs: t0000-t0009, t0010-t0019, ...; each of them its own run.
    for run in 0..4u32 {
        for i in run * 10..run * 10 + 10 {
            db.put(b"ns", &key(i), b"old").unwrap();
        }
        db.flush_to_segments().unwrap();
    }
    // Newer versions of the first keys of runs 2 and 3 in a newer run, and
    // a tombstone over the first key of run 1 (t0010) in a newer run still.
    db.put(b"ns", &key(20), b"new20").unwrap();
    db.put(b"ns", &key(30), b"new30").unwrap();
    db.flush_to_segments().unwrap();
    db.delete(b"ns", &key(10)).unwrap();
    db.flush_to_segments().unwrap();
    db.put(b"ns", &key(31), b"mem31").unwrap(); // and one in the memtable
    let want = |from: u32| -> Vec<(Vec<u8>, Vec<u8>)> {
        (from..40)
            .filter(|&i| i != 10)
            .map(|i| {
                let v: &[u8] = match i {
                    20 => b"new20",
                    30 => b"new30",
                    31 => b"mem31",
                    _ => b"old",
                };
                (key(i), v.to_vec())
            })
            .collect()
    };
    for from in [0, 5, 9, 10, 11, 19, 20, 25, 30, 31, 39] {
        let got: Vec<_> = db
            .scan(b"ns", &key(from), None)
            .unwrap()
            .collect::<edgestore::Result<_>>()
            .unwrap();
        assert_eq!(got, want(from), "scan from {from}");
        let mut lent = db.scan(b"ns", &key(from), Some(&key(32))).unwrap();
        let mut n = 0;
        while let Some((k, v)) = lent.next_entry().unwrap() {
            let w = &want(from)[n];
            assert_eq!((k, v), (w.0.as_slice(), w.1.as_slice()), "from {from}");
            n += 1;
        }
        assert_eq!(n, want(from).iter().filter(|(k, _)| *k < key(32)).count());
    }
}

#[test]
fn ttl_expiry_is_immediate_and_ttl_zero_is_forever() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put_with_ttl(b"ns", b"short", b"s", 10).unwrap();
    db.put_with_ttl(b"ns", b"forever", b"f", 0).unwrap();
    clock.advance_secs(9);
    assert_eq!(db.get(b"ns", b"short").unwrap(), Some(b"s".to_vec()));
    clock.advance_secs(1);
    assert_eq!(
        db.get(b"ns", b"short").unwrap(),
        None,
        "expired at exactly its TTL"
    );
    assert_eq!(
        db.prefix(b"ns", b"").unwrap(),
        vec![(b"forever".to_vec(), b"f".to_vec())]
    );
    db.flush_to_segments().unwrap();
    // Ten simulated years of compaction cycles never drop permanent data.
    for _ in 0..40 {
        clock.advance_secs(90 * 24 * 3600);
        db.compact_once().unwrap();
    }
    assert_eq!(db.get(b"ns", b"forever").unwrap(), Some(b"f".to_vec()));
    assert_eq!(db.get(b"ns", b"short").unwrap(), None);
}

#[test]
fn overwriting_with_a_shorter_ttl_never_resurrects_the_older_value() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put_with_ttl(b"ns", b"k", b"long", 7 * 24 * 3600)
        .unwrap();
    db.put(b"ns", b"p", b"permanent").unwrap();
    db.flush_to_segments().unwrap();
    db.put_with_ttl(b"ns", b"k", b"short", 60).unwrap();
    db.put_with_ttl(b"ns", b"p", b"short-override", 60).unwrap();
    db.flush_to_segments().unwrap();
    clock.advance_secs(3 * 3600);
    // The short versions are dead; the older versions must stay hidden, even
    // after compaction has dropped every expired file.
    for _ in 0..3 {
        db.compact_once().unwrap();
        assert_eq!(db.get(b"ns", b"k").unwrap(), None);
        assert_eq!(db.get(b"ns", b"p").unwrap(), None);
    }
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"k").unwrap(), None);
    assert_eq!(db.get(b"ns", b"p").unwrap(), None);
    clock.advance_secs(8 * 24 * 3600);
    db.compact_once().unwrap();
    assert_eq!(db.get(b"ns", b"k").unwrap(), None);
}

#[test]
fn expired_cohorts_are_dropped_whole_without_rewriting() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for hour in 0..6u32 {
        for i in 0..200u32 {
            db.put_with_ttl(b"t", format!("{hour}-{i}").as_bytes(), &[7u8; 100], 3600)
                .unwrap();
        }
        db.put(b"cfg", format!("h{hour}").as_bytes(), b"keep")
            .unwrap();
        db.flush_to_segments().unwrap();
        clock.advance_secs(3600);
    }
    clock.advance_secs(2 * 3600);
    let before = db.metrics();
    let s = db.compact_once().unwrap();
    assert!(s.segments_removed >= 6, "{s:?}");
    assert_eq!(db.prefix(b"t", b"").unwrap().len(), 0);
    let after = db.metrics();
    assert!(after.segment_bytes < before.segment_bytes / 10);
    // Only the permanent cohort may have been rewritten, never the TTL'd data.
    assert!(
        s.bytes_written < 4096,
        "expired data must not be rewritten: {s:?}"
    );
    assert_eq!(db.prefix(b"cfg", b"").unwrap().len(), 6);
}

#[test]
fn snapshots_see_the_past_including_the_memtable_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put(b"ns", b"a", b"old").unwrap();
    db.flush_to_segments().unwrap();
    db.put(b"ns", b"b", b"mem").unwrap();
    db.put_with_ttl(b"ns", b"c", b"ttl", 5).unwrap();
    let snap = db.snapshot().unwrap();
    db.put(b"ns", b"a", b"new").unwrap();
    db.delete(b"ns", b"b").unwrap();
    db.put(b"ns", b"d", b"later").unwrap();
    db.flush_to_segments().unwrap();
    clock.advance_secs(10);
    db.compact_once().unwrap();
    assert_eq!(snap.get(b"ns", b"a").unwrap(), Some(b"old".to_vec()));
    assert_eq!(snap.get(b"ns", b"b").unwrap(), Some(b"mem".to_vec()));
    assert_eq!(
        snap.get(b"ns", b"c").unwrap(),
        Some(b"ttl".to_vec()),
        "alive when taken"
    );
    assert_eq!(snap.get(b"ns", b"d").unwrap(), None);
    assert_eq!(snap.prefix(b"ns", b"").unwrap().len(), 3);
    assert_eq!(db.get(b"ns", b"c").unwrap(), None);
    assert_eq!(db.get(b"ns", b"a").unwrap(), Some(b"new".to_vec()));
    // Snapshots are owned: they outlive the engine and move across threads.
    drop(db);
    let h = std::thread::spawn(move || snap.get(b"ns", b"a").unwrap());
    assert_eq!(h.join().unwrap(), Some(b"old".to_vec()));
}

#[test]
fn expired_files_are_dropped_while_a_snapshot_still_reads_them() {
    // A snapshot does not hold compaction back: the expired file leaves the
    // database (and the directory) at once, and the snapshot, which judges
    // TTLs at the instant it was taken, reads on through the file it holds
    // open. Both read paths: mapped and plain reads.
    for mmap_reads in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut c = config(dir.path(), &clock);
        c.mmap_reads = mmap_reads;
        let db = Engine::open(c).unwrap();
        db.put_with_ttl(b"ns", b"k", b"v", 60).unwrap();
        db.flush_to_segments().unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(db.metrics().pinned_segments, 1);
        // Held, but still in the database: no space is held by the snapshot alone.
        assert_eq!(db.metrics().snapshot_held_bytes, 0);
        clock.advance_secs(7200);
        let s1 = db.compact_once().unwrap();
        assert_eq!(s1.segments_removed, 1, "{s1:?}");
        assert_eq!(s1.bytes_written, 0, "{s1:?}");
        assert_eq!(seg_files(dir.path()), 0);
        assert_eq!(db.get(b"ns", b"k").unwrap(), None);
        assert_eq!(snap.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(snap.prefix(b"ns", b"").unwrap().len(), 1);
        let m = db.metrics();
        assert_eq!(m.pinned_segments, 1);
        assert_eq!(m.segment_bytes, 0);
        assert_eq!(m.snapshot_held_bytes, s1.bytes_reclaimed, "{m:?} {s1:?}");
        assert!(s1.bytes_reclaimed > 0);
        drop(snap);
        assert_eq!(db.metrics().pinned_segments, 0);
        assert_eq!(db.metrics().snapshot_held_bytes, 0);
        let s2 = db.compact_once().unwrap();
        assert_eq!(s2.segments_removed, 0, "{s2:?}");
    }
}

#[test]
fn overlapping_snapshots_do_not_stop_compaction() {
    // A sync client keeps a snapshot open at all times: it takes the next
    // one before it drops the last. Runs must still be merged and expired
    // files dropped, and every snapshot must keep reading what it saw.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(dir.path(), &clock);
    c.sync_mode = SyncMode::Buffered;
    c.background_flush = false;
    c.max_permanent_runs = 2;
    let db = Engine::open(c).unwrap();
    let mut held: Option<(u32, edgestore::Snapshot)> = None;
    for round in 0..12u32 {
        for i in 0..100u32 {
            db.put(b"ns", &i.to_be_bytes(), &round.to_le_bytes())
                .unwrap();
        }
        db.put_with_ttl(b"ttl", &round.to_be_bytes(), b"short", 60)
            .unwrap();
        db.flush_to_segments().unwrap();
        let next = db.snapshot().unwrap();
        if let Some((seen, snap)) = held.take() {
            // The older snapshot reads what it saw, after the merges and
            // drops its segments went through.
            for i in (0..100u32).step_by(7) {
                assert_eq!(
                    snap.get(b"ns", &i.to_be_bytes()).unwrap(),
                    Some(seen.to_le_bytes().to_vec())
                );
            }
            assert_eq!(snap.prefix(b"ns", b"").unwrap().len(), 100);
        }
        held = Some((round, next));
        clock.advance_secs(3600);
        db.compact_once().unwrap();
        let m = db.metrics();
        assert!(m.sorted_runs <= 2, "round {round}: {m:?}");
    }
    // Every TTL record has died: no file holding one is left.
    assert!(db.prefix(b"ttl", b"").unwrap().is_empty());
    let m = db.metrics();
    assert!(m.segments <= 2, "{m:?}");
    assert_eq!(seg_files(dir.path()) as u64, m.segments);
    let (seen, snap) = held.unwrap();
    assert_eq!(
        snap.get(b"ns", &5u32.to_be_bytes()).unwrap(),
        Some(seen.to_le_bytes().to_vec())
    );
    assert_eq!(snap.prefix(b"ttl", b"").unwrap().len(), 1);
}

#[test]
fn batches_are_atomic_and_later_ops_win() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let mut b = WriteBatch::new();
    b.put(b"ns", b"a", b"1").unwrap();
    b.put_with_ttl(b"ns", b"b", b"2", 100).unwrap();
    b.delete(b"ns", b"a").unwrap();
    b.put(b"ns", b"c", b"3").unwrap();
    assert!(b.put(b"ns", &vec![0; MAX_KEY_LEN + 1], b"x").is_err());
    assert_eq!(b.len(), 4);
    db.write(b).unwrap();
    assert_eq!(db.get(b"ns", b"a").unwrap(), None);
    assert_eq!(db.prefix(b"ns", b"").unwrap().len(), 2);
    clock.advance_secs(100);
    assert_eq!(db.get(b"ns", b"b").unwrap(), None);
}

#[test]
fn torn_wal_tail_recovers_whole_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..20u32 {
        let mut b = WriteBatch::new();
        for j in 0..5u32 {
            b.put(b"ns", format!("b{i:02}-{j}").as_bytes(), &[i as u8; 40])
                .unwrap();
        }
        db.write(b).unwrap();
    }
    let img = tempfile::tempdir().unwrap();
    crash_image(dir.path(), img.path());
    drop(db);
    let wal = wal_files(img.path()).pop().unwrap();
    let full = std::fs::read(&wal).unwrap();
    let mut last_count = 0;
    // Every 23rd cut: each falls at a different offset inside some batch, and
    // each case opens twice (each open now flushes what it replayed).
    for cut in (16..=full.len()).rev().step_by(23) {
        let case = tempfile::tempdir().unwrap();
        crash_image(img.path(), case.path());
        std::fs::write(case.path().join(wal.file_name().unwrap()), &full[..cut]).unwrap();
        let db = open(case.path(), &clock);
        let rows = db.prefix(b"ns", b"").unwrap();
        assert_eq!(rows.len() % 5, 0, "a batch was split at cut {cut}");
        // What survives is a prefix of the history.
        for i in 0..rows.len() / 5 {
            assert!(rows
                .iter()
                .any(|(k, _)| k == format!("b{i:02}-4").as_bytes()));
        }
        if cut == full.len() {
            assert_eq!(rows.len(), 100);
        }
        last_count = rows.len();
        // The cut tail is gone for good: writing and reopening works cleanly.
        db.put(b"ns", b"after", b"x").unwrap();
        drop(db);
        let db = open(case.path(), &clock);
        assert_eq!(db.get(b"ns", b"after").unwrap(), Some(b"x".to_vec()));
        db.verify().unwrap();
    }
    assert!(last_count < 100);
}

#[test]
fn corruption_inside_the_wal_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..10u32 {
        db.put(b"ns", &i.to_be_bytes(), b"value").unwrap();
    }
    let img = tempfile::tempdir().unwrap();
    crash_image(dir.path(), img.path());
    drop(db);
    let wal = wal_files(img.path()).pop().unwrap();
    let mut data = std::fs::read(&wal).unwrap();
    data[40] ^= 0x10; // inside the first record
    std::fs::write(&wal, &data).unwrap();
    match Engine::open(config(img.path(), &clock)) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, wal),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_second_open_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    assert!(matches!(
        Engine::open(config(dir.path(), &clock)),
        Err(Error::Locked(_))
    ));
    db.close().unwrap();
    assert!(matches!(db.get(b"ns", b"k"), Err(Error::Closed)));
    assert!(matches!(db.put(b"ns", b"k", b"v"), Err(Error::Closed)));
    db.close().unwrap();
    let again = open(dir.path(), &clock);
    again.put(b"ns", b"k", b"v").unwrap();
}

#[test]
fn the_manifest_is_readable_while_the_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..5u32 {
        db.put(b"ns", &i.to_be_bytes(), b"v").unwrap();
        db.flush_to_segments().unwrap();
        let m = edgestore::Manifest::open(&dir.path().join("manifest.mf")).unwrap();
        assert_eq!(m.list_segments().len() as u64, db.metrics().segments);
    }
}

#[test]
fn without_recycling_obsolete_wal_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(dir.path(), &clock);
    c.wal_recycle_files = 0;
    let db = Engine::open(c.clone()).unwrap();
    for i in 0..5u32 {
        db.put(b"ns", &i.to_be_bytes(), b"v").unwrap();
        db.flush_to_segments().unwrap();
    }
    assert_eq!(wal_files(dir.path()).len(), 1);
    drop(db);
    let db = Engine::open(c).unwrap();
    assert_eq!(
        db.get(b"ns", &4u32.to_be_bytes()).unwrap(),
        Some(b"v".to_vec())
    );
}

/// A reused WAL is written over a longer old life: after reopening without a
/// flush (the WAL replayed), the data is exactly
/// what was written, never a stale record, and the reused file did not grow.
#[test]
fn a_recycled_wal_replays_exactly_and_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    // A long first life: 200 records with large values in WAL 1.
    for i in 0..200u32 {
        db.put(b"ns", format!("old{i}").as_bytes(), &[b'o'; 300])
            .unwrap();
    }
    db.flush_to_segments().unwrap(); // WAL 1 obsolete, kept
    let first = dir.path().join("00000000000000000001.wal");
    let first_len = std::fs::metadata(&first).unwrap().len();
    db.put(b"ns", b"mid", b"m").unwrap();
    db.flush_to_segments().unwrap(); // WAL 1 reused as WAL 3
    let files = wal_files(dir.path());
    assert_eq!(files.len(), 2);
    let live = files.last().unwrap().clone();
    assert!(live.ends_with("00000000000000000003.wal"), "{live:?}");
    assert_eq!(std::fs::metadata(&live).unwrap().len(), first_len);
    // Overwrite some old keys and delete one in the short new life.
    db.put(b"ns", b"old1", b"new").unwrap();
    db.delete(b"ns", b"old2").unwrap();
    drop(db); // no close, no flush: the WAL is replayed
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"old1").unwrap(), Some(b"new".to_vec()));
    assert_eq!(db.get(b"ns", b"old2").unwrap(), None);
    assert_eq!(db.get(b"ns", b"old3").unwrap(), Some(vec![b'o'; 300]));
    assert_eq!(db.get(b"ns", b"mid").unwrap(), Some(b"m".to_vec()));
    assert_eq!(db.prefix(b"ns", b"").unwrap().len(), 200);
    db.verify().unwrap();
}

/// Reopening a database that has a WAL to replay keeps writing into a
/// reused WAL file (its blocks already written, so a durable write's fdatasync
/// commits no size change): the replayed data goes to segments without
/// rotating to a new file.
#[test]
fn after_a_replay_new_writes_go_to_a_reused_wal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..200u32 {
        db.put(b"ns", format!("k{i}").as_bytes(), &[b'v'; 300])
            .unwrap();
    }
    db.flush_to_segments().unwrap(); // WAL 1 obsolete, kept for reuse
    let first_len = std::fs::metadata(dir.path().join("00000000000000000001.wal"))
        .unwrap()
        .len();
    db.put(b"ns", b"in-wal-2", b"x").unwrap();
    drop(db); // WAL 2 is replayed at open
    let db = open(dir.path(), &clock);
    let files = wal_files(dir.path());
    let live = files.last().unwrap().clone();
    assert!(live.ends_with("00000000000000000003.wal"), "{files:?}");
    assert_eq!(std::fs::metadata(&live).unwrap().len(), first_len);
    db.put(b"ns", b"after", b"y").unwrap();
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"in-wal-2").unwrap(), Some(b"x".to_vec()));
    assert_eq!(db.get(b"ns", b"after").unwrap(), Some(b"y".to_vec()));
    assert_eq!(db.prefix(b"ns", b"").unwrap().len(), 202);
    db.verify().unwrap();
}

#[test]
fn wal_files_are_retired_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..5u32 {
        db.put(b"ns", &i.to_be_bytes(), b"v").unwrap();
        db.flush_to_segments().unwrap();
    }
    // The live WAL and one obsolete file kept for reuse (the default).
    assert_eq!(db.config().wal_recycle_files, 1);
    assert_eq!(wal_files(dir.path()).len(), 2);
    // Compaction-removed data never comes back from an old WAL.
    db.put_with_ttl(b"ns", b"ttl", b"v", 1).unwrap();
    db.flush_to_segments().unwrap();
    clock.advance_secs(10);
    db.compact_once().unwrap();
    drop(db);
    let db = open(dir.path(), &clock);
    clock.set_nanos(T0); // even if the clock went back, the record is gone from disk
    assert_eq!(db.get(b"ns", b"ttl").unwrap(), None);
}

#[test]
fn many_readers_and_writers_share_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EdgestoreConfig::new(dir.path());
    cfg.memtable_size_bytes = 64 << 10;
    let db = Arc::new(Engine::open(cfg).unwrap());
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    db.put(b"ns", format!("w{t}-{i:04}").as_bytes(), &i.to_le_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let snap = db.snapshot().unwrap();
                    let rows = snap.prefix(b"ns", b"w0-").unwrap();
                    // Writer 0 writes in key order: a snapshot sees a prefix of its keys.
                    for (i, (k, v)) in rows.iter().enumerate() {
                        assert_eq!(k, format!("w0-{i:04}").as_bytes());
                        assert_eq!(v, &(i as u32).to_le_bytes());
                    }
                }
            })
        })
        .collect();
    for h in writers.into_iter().chain(readers) {
        h.join().unwrap();
    }
    assert_eq!(db.prefix(b"ns", b"").unwrap().len(), 1200);
    let m = db.metrics();
    assert_eq!(m.user_writes, 1200);
    assert!(m.wal_syncs <= 1200 + m.flushes * 2);
}

#[test]
fn buffered_mode_flush_is_the_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path(), &clock);
    cfg.sync_mode = SyncMode::Buffered;
    let db = Engine::open(cfg).unwrap();
    for i in 0..100u32 {
        db.put(b"ns", &i.to_be_bytes(), b"v").unwrap();
    }
    let syncs_before = db.metrics().wal_syncs;
    assert_eq!(syncs_before, 0, "buffered writes do not fsync");
    db.flush().unwrap();
    assert_eq!(db.metrics().wal_syncs, 1);
    // A process crash keeps everything written to the OS.
    let img = tempfile::tempdir().unwrap();
    crash_image(dir.path(), img.path());
    let db2 = Engine::open(config(img.path(), &clock)).unwrap();
    assert_eq!(db2.prefix(b"ns", b"").unwrap().len(), 100);
}

#[test]
fn background_compaction_reclaims_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path(), &clock);
    cfg.background_compaction = Some(std::time::Duration::from_millis(20));
    let db = Engine::open(cfg).unwrap();
    db.put_with_ttl(b"ns", b"k", b"v", 1).unwrap();
    db.flush_to_segments().unwrap();
    assert_eq!(seg_files(dir.path()), 1);
    clock.advance_secs(5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The cycle deletes the file, then counts itself when it ends.
    while (seg_files(dir.path()) > 0 || db.metrics().compactions == 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(seg_files(dir.path()), 0);
    assert!(db.metrics().compactions > 0);
}

#[test]
fn verify_detects_a_damaged_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for i in 0..100u32 {
        db.put(b"ns", &i.to_be_bytes(), &[1u8; 64]).unwrap();
    }
    db.flush_to_segments().unwrap();
    // Every block is now in the block cache; verify must still read the file.
    for i in 0..100u32 {
        assert!(db.get(b"ns", &i.to_be_bytes()).unwrap().is_some());
    }
    let report = db.verify().unwrap();
    assert_eq!(report.segments, 1);
    assert_eq!(report.segment_records, 100);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    data[100] ^= 1;
    std::fs::write(&seg, &data).unwrap();
    match db.verify() {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, seg),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn orphan_segments_from_a_crashed_flush_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put(b"ns", b"k", b"v").unwrap();
    db.flush_to_segments().unwrap();
    drop(db);
    // A segment written but never published, and a half-written manifest.
    std::fs::write(dir.path().join(format!("{:020}.seg", 999)), b"partial").unwrap();
    std::fs::write(dir.path().join("manifest.mf.tmp"), b"partial").unwrap();
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(seg_files(dir.path()), 1);
    assert!(!dir.path().join("manifest.mf.tmp").exists());
}

#[test]
fn tombstones_survive_merges_that_leave_an_older_version_outside() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path(), &clock);
    cfg.max_permanent_runs = 2;
    cfg.max_permanent_space_amp = 1000.0; // only the run-count rule merges
    let db = Engine::open(cfg).unwrap();
    for i in 0..200u32 {
        db.put(b"ns", format!("k{i:03}").as_bytes(), &[1u8; 200])
            .unwrap();
    }
    db.flush_to_segments().unwrap(); // big, old run
    db.delete(b"ns", b"k007").unwrap();
    db.put_with_ttl(b"ns", b"k008", b"short", 10).unwrap(); // shadows a permanent value
    db.flush_to_segments().unwrap();
    db.put(b"ns", b"x", b"y").unwrap();
    db.flush_to_segments().unwrap();
    clock.advance_secs(60);
    let s = db.compact_once().unwrap();
    assert!(
        s.segments_written >= 1,
        "the two newest runs should have merged: {s:?}"
    );
    assert!(s.tombstones_kept >= 2, "{s:?}");
    assert_eq!(db.get(b"ns", b"k007").unwrap(), None);
    assert_eq!(db.get(b"ns", b"k008").unwrap(), None);
    assert_eq!(db.prefix(b"ns", b"k").unwrap().len(), 198);
}

#[test]
fn a_wal_file_left_empty_by_a_crash_during_creation_is_removed() {
    // Found by the kill -9 test: a crash between creating a WAL file and
    // writing its header left an empty file that later opens called corrupt.
    // Recycling is off: the test puts the new file next to the WAL the
    // closed process was writing, which a reused file would leave with stale
    // bytes after its records. The engine itself never does that: a rotation
    // ends the old WAL with its end marker, and an open cuts the stale rest of
    // the newest WAL, before creating the next one.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = || {
        let mut c = config(dir.path(), &clock);
        c.wal_recycle_files = 0;
        c
    };
    let db = Engine::open(cfg()).unwrap();
    db.put(b"ns", b"k", b"v").unwrap();
    drop(db);
    for len in [0usize, 7] {
        let last = wal_files(dir.path()).pop().unwrap();
        let name = last.file_name().unwrap().to_string_lossy().to_string();
        let next: u64 = name.trim_end_matches(".wal").parse::<u64>().unwrap() + 1;
        std::fs::write(dir.path().join(format!("{next:020}.wal")), vec![0u8; len]).unwrap();
        let db = Engine::open(cfg()).unwrap();
        assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
        db.verify().unwrap();
        drop(db);
        let db = Engine::open(cfg()).unwrap();
        db.verify().unwrap();
        drop(db);
    }
}

#[test]
fn close_syncs_pending_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path(), &clock);
    cfg.sync_mode = SyncMode::Buffered;
    let db = Engine::open(cfg).unwrap();
    db.put(b"ns", b"k", b"v").unwrap();
    db.close().unwrap();
    assert_eq!(db.metrics().wal_syncs, 1, "close must fsync the WAL");
    let db = open(dir.path(), &clock);
    assert_eq!(db.get(b"ns", b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn get_with_borrows_the_same_value_get_returns_with_and_without_block_cache() {
    for cache in [0, 8 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut c = common::config(dir.path(), &clock);
        c.block_cache_bytes = cache;
        c.block_size_bytes = 256;
        let db = Engine::open(c).unwrap();
        for i in 0..300u32 {
            db.put_with_ttl(
                b"ns",
                &i.to_be_bytes(),
                &i.to_le_bytes().repeat(5),
                i % 3 * 10,
            )
            .unwrap();
        }
        db.delete(b"ns", &7u32.to_be_bytes()).unwrap();
        for flushed in [false, true] {
            if flushed {
                db.flush_to_segments().unwrap();
            }
            clock.advance_secs(if flushed { 15 } else { 0 });
            for i in 0..300u32 {
                let k = i.to_be_bytes();
                let owned = db.get(b"ns", &k).unwrap();
                let borrowed = db.get_with(b"ns", &k, |v| v.to_vec()).unwrap();
                assert_eq!(owned, borrowed, "key {i} cache {cache} flushed {flushed}");
                let alive = i != 7 && (i % 3 == 0 || !flushed || i % 3 == 2);
                assert_eq!(
                    owned.is_some(),
                    alive,
                    "key {i} cache {cache} flushed {flushed}"
                );
            }
        }
    }
}

#[test]
fn a_permanent_keyspace_larger_than_the_write_budget_still_gets_merged() {
    // Found by db_bench at 1M keys: the merge the permanent runs needed was
    // larger than one cycle's budget, so it was deferred every cycle and runs
    // piled up without bound. A job now starts while the budget's token
    // bucket is positive and may overdraw it; later cycles repay.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(dir.path(), &clock);
    c.memtable_size_bytes = 8 << 10;
    c.segment_size_bytes = 4 << 10;
    c.block_size_bytes = 512;
    c.compaction_write_budget_bytes = 16 << 10;
    c.max_permanent_runs = 2;
    c.sync_mode = SyncMode::Buffered;
    let budget = c.compaction_write_budget_bytes;
    let db = Engine::open(c).unwrap();
    let runs = || {
        let m = edgestore::Manifest::open(&dir.path().join("manifest.mf")).unwrap();
        let ids: std::collections::HashSet<u64> =
            m.list_segments().iter().map(|s| s.run_id).collect();
        (
            ids.len(),
            m.list_segments().iter().map(|s| s.file_size).sum::<u64>(),
        )
    };
    let (mut cycles, mut written, mut over_budget) = (0u64, 0u64, false);
    // The token bucket as documented: +budget a cycle, capped at one budget.
    let (mut balance, mut largest) = (0i64, 0u64);
    let mut cycle = || {
        let s = db.compact_once().unwrap();
        cycles += 1;
        written += s.bytes_written;
        over_budget |= s.bytes_written > budget;
        balance = (balance + budget as i64).min(budget as i64);
        if s.bytes_written > 0 && balance <= 0 {
            // Overdrawn: only a catch-up merge of at most half a budget runs.
            assert!(
                s.bytes_written <= budget / 2,
                "{s:?} with the budget overdrawn"
            );
        }
        balance -= s.bytes_written as i64;
        largest = largest.max(s.bytes_written);
    };
    for round in 0..6u32 {
        for i in 0..600u32 {
            db.put(b"ns", &i.to_be_bytes(), &[round as u8; 100])
                .unwrap();
        }
        db.flush_to_segments().unwrap();
        cycle();
    }
    // Writes outpaced the budget (a rate): the backlog clears in later cycles.
    for _ in 0..200 {
        if runs().0 <= 2 {
            break;
        }
        cycle();
    }
    let (n_runs, bytes) = runs();
    // 600 live keys of ~140 bytes on disk: about 84 KiB, five times the budget.
    assert!(n_runs <= 2, "{n_runs} permanent runs left");
    assert!(
        bytes < 2 * 600 * 160,
        "{bytes} bytes on disk for ~84 KiB live"
    );
    assert!(over_budget, "no merge ever exceeded one cycle's budget");
    // The average rate stays within the budget, give or take one job.
    assert!(
        written <= cycles * budget + largest,
        "{written} written in {cycles} cycles"
    );
    for i in 0..600u32 {
        assert_eq!(
            db.get(b"ns", &i.to_be_bytes()).unwrap(),
            Some(vec![5u8; 100])
        );
    }
}

#[test]
fn background_flush_writes_full_memtables_and_close_waits_for_it() {
    for background in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut c = config(dir.path(), &clock);
        c.memtable_size_bytes = 16 << 10;
        c.sync_mode = SyncMode::Buffered;
        c.background_flush = background;
        let db = Engine::open(c.clone()).unwrap();
        for i in 0..3000u32 {
            db.put(b"ns", &i.to_be_bytes(), &[i as u8; 64]).unwrap();
        }
        // Memtables of 16 KiB filled many times over: flushed without a
        // flush call (by the thread, or by the writers when it is off).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while db.metrics().flushes < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(db.metrics().flushes >= 5, "background {background}");
        db.close().unwrap();
        // Nothing runs after close: the files stay as they are, and the next
        // open (the lock is free) sees every write.
        let names = |d: &std::path::Path| {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let before = names(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(names(dir.path()), before);
        drop(db);
        let db = Engine::open(c).unwrap();
        for i in 0..3000u32 {
            assert_eq!(
                db.get(b"ns", &i.to_be_bytes()).unwrap(),
                Some(vec![i as u8; 64])
            );
        }
        db.verify().unwrap();
    }
}

#[test]
fn two_durable_writers_share_fsyncs() {
    // Group commit: while one writer's fsync runs the other appends, and the
    // next fsync covers both. Before the leader released the lock during its
    // fsync (and waited a moment for the other writer), two writers took one
    // fsync per write (3,985 for 4,000).
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = Arc::new(open(dir.path(), &clock));
    let before = db.metrics().wal_syncs;
    let writers: Vec<_> = (0..2u8)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    db.put(&[t], &i.to_be_bytes(), b"v").unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let syncs = db.metrics().wal_syncs - before;
    assert!(syncs <= 900, "{syncs} fsyncs for 1000 durable writes");
    for t in 0..2u8 {
        assert_eq!(db.prefix(&[t], b"").unwrap().len(), 500);
    }
}

/// The real file system, except that once armed, the next segment file
/// created blocks its creator until released: a merge held mid-write.
#[derive(Debug, Default)]
struct GateStorage {
    /// (armed, creator blocked, released)
    state: std::sync::Mutex<(bool, bool, bool)>,
    cv: std::sync::Condvar,
}

impl GateStorage {
    fn arm(&self) {
        self.state.lock().unwrap().0 = true;
    }
    /// Waits until a creator is held at the gate.
    fn wait_blocked(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn release(&self) {
        self.state.lock().unwrap().2 = true;
        self.cv.notify_all();
    }
}

impl edgestore::storage::Storage for GateStorage {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.create_dir_all(dir)
    }
    fn create(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Arc<dyn edgestore::storage::WritableFile>> {
        let is_segment = path.to_string_lossy().contains(".seg");
        let mut s = self.state.lock().unwrap();
        if is_segment && s.0 {
            s.0 = false;
            s.1 = true;
            self.cv.notify_all();
            while !s.2 {
                s = self.cv.wait(s).unwrap();
            }
        }
        drop(s);
        edgestore::storage::FsStorage.create(path)
    }
    fn open_read(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Arc<dyn edgestore::storage::ReadableFile>> {
        edgestore::storage::FsStorage.open_read(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.sync_dir(dir)
    }
    fn list_dir(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        edgestore::storage::FsStorage.list_dir(dir)
    }
    fn exists(&self, path: &std::path::Path) -> std::io::Result<bool> {
        edgestore::storage::FsStorage.exists(path)
    }
    fn truncate(&self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
        edgestore::storage::FsStorage.truncate(path, len)
    }
    fn lock(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn edgestore::storage::DirLock>> {
        edgestore::storage::FsStorage.lock(path)
    }
}

/// A database on a [`GateStorage`] holding four permanent runs of the same
/// 200 keys (the last with value 3), so a cycle wants to merge them.
fn gated_db(dir: &std::path::Path, clock: &ManualClock) -> (Engine, Arc<GateStorage>) {
    let gate = Arc::new(GateStorage::default());
    let mut c = config(dir, clock);
    c.storage = gate.clone();
    c.sync_mode = SyncMode::Buffered;
    c.background_flush = false;
    c.max_permanent_runs = 2;
    let db = Engine::open(c).unwrap();
    for round in 0..4u32 {
        for i in 0..200u32 {
            db.put(b"ns", &i.to_be_bytes(), &round.to_le_bytes())
                .unwrap();
        }
        db.flush_to_segments().unwrap();
    }
    (db, gate)
}

#[test]
fn a_flush_does_not_wait_for_a_merge() {
    // A merge of a large keyspace takes seconds; a flush waiting for it
    // stalls every writer once the memtables are full. Hold a merge at its
    // first output file and flush meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (db, gate) = gated_db(dir.path(), &clock);
    assert_eq!(db.metrics().sorted_runs, 4);
    std::thread::scope(|s| {
        gate.arm();
        let merge = s.spawn(|| db.compact_once().unwrap());
        gate.wait_blocked();
        let (tx, rx) = std::sync::mpsc::channel();
        let db = &db;
        let flusher = s.spawn(move || {
            db.put(b"ns", b"new", b"v").unwrap();
            db.flush_to_segments().unwrap();
            tx.send(()).unwrap();
        });
        let flushed = rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok();
        gate.release();
        flusher.join().unwrap();
        let stats = merge.join().unwrap();
        assert!(flushed, "the flush waited for the merge");
        assert!(stats.segments_written > 0, "{stats:?}");
    });
    // The merge published alongside the flush's run: nothing lost.
    assert!(db.metrics().sorted_runs < 5, "{:?}", db.metrics());
    for i in 0..200u32 {
        assert_eq!(
            db.get(b"ns", &i.to_be_bytes()).unwrap(),
            Some(3u32.to_le_bytes().to_vec())
        );
    }
    assert_eq!(db.get(b"ns", b"new").unwrap(), Some(b"v".to_vec()));
    drop(db);
    let db = Engine::open(config(dir.path(), &clock)).unwrap();
    assert_eq!(db.get(b"ns", b"new").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        db.get(b"ns", &7u32.to_be_bytes()).unwrap(),
        Some(3u32.to_le_bytes().to_vec())
    );
}

#[test]
fn a_snapshot_taken_during_a_merge_reads_on_after_it_publishes() {
    // A snapshot taken while a merge runs holds the merge's inputs; the
    // merge publishes all the same (its writes are not wasted), the inputs
    // leave the directory, and the snapshot reads on through them.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (db, gate) = gated_db(dir.path(), &clock);
    let (stats, snap) = std::thread::scope(|s| {
        gate.arm();
        let merge = s.spawn(|| db.compact_once().unwrap());
        gate.wait_blocked();
        let snap = db.snapshot().unwrap();
        db.put(b"ns", &9u32.to_be_bytes(), b"after").unwrap();
        gate.release();
        (merge.join().unwrap(), snap)
    });
    assert!(stats.segments_written > 0, "{stats:?}");
    assert_eq!(stats.segments_removed, 4, "{stats:?}");
    assert!(db.metrics().sorted_runs <= 2, "{:?}", db.metrics());
    assert_eq!(seg_files(dir.path()) as u64, db.metrics().segments);
    let m = db.metrics();
    assert_eq!(m.pinned_segments, 4);
    // The four merged files are gone from the database but not from the
    // disk: the snapshot holds them, and the metric says how much.
    assert!(m.snapshot_held_bytes > 0, "{m:?}");
    assert!(m.segment_bytes > 0, "{m:?}");
    for i in 0..200u32 {
        assert_eq!(
            snap.get(b"ns", &i.to_be_bytes()).unwrap(),
            Some(3u32.to_le_bytes().to_vec())
        );
    }
    assert_eq!(snap.prefix(b"ns", b"").unwrap().len(), 200);
    assert_eq!(
        db.get(b"ns", &9u32.to_be_bytes()).unwrap(),
        Some(b"after".to_vec())
    );
    drop(snap);
    assert_eq!(db.metrics().pinned_segments, 0);
    assert_eq!(db.metrics().snapshot_held_bytes, 0);
}

/// The engine of the two tests below: explicit flushes and cycles, a
/// 32 KiB compaction budget, at most two permanent runs.
fn repay_db(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    let mut c = config(dir, clock);
    c.memtable_size_bytes = 256 << 10;
    c.segment_size_bytes = 16 << 10;
    c.block_size_bytes = 512;
    c.compaction_write_budget_bytes = 32 << 10;
    c.max_permanent_runs = 2;
    c.sync_mode = SyncMode::Buffered;
    c.background_flush = false;
    Engine::open(c).unwrap()
}

/// One flushed run: keys `keys`, values `[round; 100]`.
fn flush_run(db: &Engine, round: u32, keys: std::ops::Range<u32>) {
    for i in keys {
        db.put(b"ns", &i.to_be_bytes(), &[round as u8; 100])
            .unwrap();
    }
    db.flush_to_segments().unwrap();
}

#[test]
fn runs_left_while_the_budget_is_repaid_are_folded_within_half_a_budget() {
    // A merge larger than the budget overdraws it; repaying takes cycles.
    // Runs flushed meanwhile must not pile up: a cycle in debt folds the
    // most adjacent runs that fit in half a budget, and only that.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = repay_db(dir.path(), &clock);
    let budget = 32u64 << 10;
    for round in 0..3 {
        flush_run(&db, round, 0..600);
    }
    // The full merge (about 84 KiB of live data) overdraws the budget.
    let s = db.compact_once().unwrap();
    assert!(s.bytes_written > 2 * budget, "{s:?}");
    assert_eq!(db.metrics().sorted_runs, 1);
    // Six small runs arrive while the overdraft is repaid.
    for round in 3..9 {
        flush_run(&db, round, 0..10);
    }
    assert_eq!(db.metrics().sorted_runs, 7);
    let s = db.compact_once().unwrap();
    assert!(s.jobs_deferred >= 1, "the planned merge waits: {s:?}");
    assert!(
        s.bytes_written > 0 && s.bytes_written <= budget / 2,
        "{s:?}"
    );
    let runs = db.metrics().sorted_runs;
    assert!(runs <= 2, "{runs} runs left");
    for i in 0..600u32 {
        let want = if i < 10 { 8u8 } else { 2 };
        assert_eq!(
            db.get(b"ns", &i.to_be_bytes()).unwrap(),
            Some(vec![want; 100])
        );
    }
}

#[test]
fn catch_up_merges_never_starve_the_planned_merges() {
    // Flushes of about one budget a cycle, in runs of a quarter budget: had
    // catch-up merges taken a whole budget a cycle, nothing would ever be
    // repaid, the space-amplification merge would never run, and the
    // catch-up outputs (too big to fold again) would pile up.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = repay_db(dir.path(), &clock);
    for round in 0..3 {
        flush_run(&db, round, 0..600);
    }
    db.compact_once().unwrap();
    let budget = 32u64 << 10;
    let (mut planned, mut most_runs, mut most_bytes) = (0, 0u64, 0u64);
    for cycle in 0..40u32 {
        for part in 0..4u32 {
            let from = (cycle * 4 + part) * 50 % 600;
            flush_run(&db, 10 + cycle, from..from + 50);
        }
        let s = db.compact_once().unwrap();
        let m = db.metrics();
        if cycle >= 20 {
            // A catch-up merge writes at most half a budget.
            planned += usize::from(s.bytes_written > budget / 2);
            most_runs = most_runs.max(m.sorted_runs);
            most_bytes = most_bytes.max(m.segment_bytes);
        }
    }
    // The full merge comes round every few cycles, so runs and space stay
    // bounded (600 live keys of ~140 bytes: about 84 KiB).
    assert!(planned >= 3, "{planned} planned merges in 20 cycles");
    assert!(most_runs <= 16, "{most_runs} runs");
    assert!(most_bytes < 3 * 600 * 160, "{most_bytes} bytes on disk");
}

#[test]
fn merkle_trees_agree_across_layouts_and_drive_a_sync() {
    // Two replicas with the same live contents, written in other orders,
    // with other flushes, compactions, TTLs and dead history, agree on
    // every node; after changes on one, the differing leaves name exactly
    // the keys to send, and sending them makes the roots equal again.
    let clock = ManualClock::new(T0);
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), &clock);
    let b = open_small(db_dir.path(), &clock);
    let key = |i: u32| format!("key-{i:05}").into_bytes();
    for i in 0..3000u32 {
        a.put(b"ns", &key(i), &i.to_le_bytes()).unwrap();
    }
    for i in (0..3000u32).rev() {
        b.put(b"ns", &key(i), b"stale").unwrap();
        b.put_with_ttl(b"ns", &key(i), &i.to_le_bytes(), 86_400)
            .unwrap();
        b.put(b"other", &key(i), b"another namespace").unwrap();
    }
    b.put_with_ttl(b"ns", b"expires", b"soon", 10).unwrap();
    b.put(b"ns", b"deleted", b"x").unwrap();
    b.delete(b"ns", b"deleted").unwrap();
    a.flush_to_segments().unwrap();
    b.compact_once().unwrap();
    clock.advance_secs(20);
    let (ta, tb) = (
        a.merkle_tree(b"ns", 3).unwrap(),
        b.merkle_tree(b"ns", 3).unwrap(),
    );
    assert_eq!(ta.entries(), 3000);
    assert_eq!(ta, tb);
    assert_ne!(ta.root(), b.merkle_tree(b"other", 3).unwrap().root());
    assert!(a.merkle_tree(b"ns", 0).is_err());
    assert!(a
        .merkle_tree(b"ns", edgestore::MERKLE_MAX_DEPTH + 1)
        .is_err());

    // A snapshot's tree is the data it reads, whatever happens after.
    let snap = a.snapshot().unwrap();
    a.put(b"ns", &key(7), b"changed").unwrap();
    a.delete(b"ns", &key(1234)).unwrap();
    a.put(b"ns", b"new-key", b"added").unwrap();
    a.compact_once().unwrap();
    assert_eq!(snap.merkle_tree(b"ns", 3).unwrap(), ta);

    // Sync b from a: only the keys of differing leaves travel.
    let ta = a.merkle_tree(b"ns", 3).unwrap();
    let tb = b.merkle_tree(b"ns", 3).unwrap();
    let leaves = ta.differing_leaves(&tb).unwrap();
    let changed = [key(7), key(1234), b"new-key".to_vec()];
    let mut want: Vec<u32> = changed
        .iter()
        .map(|k| edgestore::MerkleTree::leaf_of(k, 3).unwrap())
        .collect();
    want.sort_unstable();
    want.dedup();
    assert_eq!(leaves, want);
    let in_leaves = |db: &Engine| -> Vec<(Vec<u8>, Vec<u8>)> {
        let sent: Vec<_> = db
            .scan_merkle_leaves(b"ns", 3, &leaves)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The engine's leaf test agrees with leaf_of on every key.
        let reference: Vec<_> = db
            .prefix(b"ns", b"")
            .unwrap()
            .into_iter()
            .filter(|(k, _)| leaves.contains(&edgestore::MerkleTree::leaf_of(k, 3).unwrap()))
            .collect();
        assert_eq!(sent, reference);
        sent
    };
    let (from_a, from_b) = (in_leaves(&a), in_leaves(&b));
    assert!(from_a.len() < 30, "{} keys sent", from_a.len());
    for (k, _) in &from_b {
        if !from_a.iter().any(|(ka, _)| ka == k) {
            b.delete(b"ns", k).unwrap();
        }
    }
    for (k, v) in &from_a {
        b.put(b"ns", k, v).unwrap();
    }
    assert_eq!(b.merkle_tree(b"ns", 3).unwrap(), ta);
}

#[test]
fn scan_merkle_leaves_yields_exactly_the_live_pairs_of_the_leaves() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), &clock);
    let key = |i: u32| format!("k{i:04}").into_bytes();
    for i in 0..2000u32 {
        db.put(b"ns", &key(i), &i.to_le_bytes()).unwrap();
        db.put(b"ns2", &key(i), b"other namespace").unwrap();
    }
    db.compact_once().unwrap();
    db.put_with_ttl(b"ns", &key(5), b"expires", 10).unwrap();
    db.delete(b"ns", &key(6)).unwrap();
    clock.advance_secs(20);
    let all: Vec<(Vec<u8>, Vec<u8>)> = db.prefix(b"ns", b"").unwrap();
    assert_eq!(all.len(), 1998);
    let collect = |it: edgestore::RangeIter| -> Vec<(Vec<u8>, Vec<u8>)> {
        it.collect::<Result<_, _>>().unwrap()
    };
    // Leaf sets of every depth, in any order and with repeats, against the
    // pairs leaf_of puts in them.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for depth in 1..=edgestore::MERKLE_MAX_DEPTH {
        let n = 16u32.pow(depth);
        for picks in [1usize, 3, 40] {
            let leaves: Vec<u32> = (0..picks)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % u64::from(n)) as u32
                })
                .chain(std::iter::once(n - 1))
                .collect();
            let want: Vec<_> = all
                .iter()
                .filter(|(k, _)| {
                    leaves.contains(&edgestore::MerkleTree::leaf_of(k, depth).unwrap())
                })
                .cloned()
                .collect();
            let got = collect(db.scan_merkle_leaves(b"ns", depth, &leaves).unwrap());
            assert_eq!(got, want, "depth {depth}, {picks} leaves");
        }
    }
    let every: Vec<u32> = (0..16).rev().collect();
    assert_eq!(
        collect(db.scan_merkle_leaves(b"ns", 1, &every).unwrap()),
        all
    );
    assert!(collect(db.scan_merkle_leaves(b"ns", 3, &[]).unwrap()).is_empty());
    assert!(collect(db.scan_merkle_leaves(b"none", 3, &every).unwrap()).is_empty());
    // Bad arguments are errors, an empty leaf list included.
    for (depth, leaves) in [
        (0, &[0u32][..]),
        (5, &[0]),
        (0, &[]),
        (2, &[256]),
        (1, &[3, 16]),
    ] {
        match db.scan_merkle_leaves(b"ns", depth, leaves) {
            Err(edgestore::Error::InvalidArgument(_)) => {}
            other => panic!("depth {depth}, leaves {leaves:?}: {other:?}"),
        }
    }
    // A snapshot's pairs are the data it reads, whatever happens after.
    let snap = db.snapshot().unwrap();
    let leaf = edgestore::MerkleTree::leaf_of(&key(7), 2).unwrap();
    let before = collect(snap.scan_merkle_leaves(b"ns", 2, &[leaf]).unwrap());
    assert!(before.iter().any(|(k, _)| *k == key(7)));
    db.delete(b"ns", &key(7)).unwrap();
    db.compact_once().unwrap();
    assert_eq!(
        collect(snap.scan_merkle_leaves(b"ns", 2, &[leaf]).unwrap()),
        before
    );
    let after = collect(db.scan_merkle_leaves(b"ns", 2, &[leaf]).unwrap());
    assert_eq!(after.len() + 1, before.len());
    assert!(!after.iter().any(|(k, _)| *k == key(7)));
}

/// Without its manifest, a directory of segments and WAL files is damaged,
/// not new: open refuses it (before, it deleted the segments as orphans and
/// replayed retired WAL files), and the files stay as they were.
#[test]
fn a_database_without_its_manifest_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Engine::open(EdgestoreConfig::new(&path)).unwrap();
        db.put(b"ns", b"a", b"1").unwrap();
        db.flush_to_segments().unwrap();
        db.put(b"ns", b"b", b"2").unwrap();
        db.close().unwrap();
    }
    let files = |p: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let manifest = path.join("manifest.mf");
    let saved = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let before = files(&path);
    assert!(before.iter().any(|n| n.ends_with(".seg")), "{before:?}");
    match Engine::open(EdgestoreConfig::new(&path)) {
        Err(Error::Corruption { file, detail, .. }) => {
            assert_eq!(file, manifest);
            assert!(detail.contains("manifest is missing"), "{detail}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert_eq!(files(&path), before, "open changed the files");
    // With the manifest back, everything is there.
    std::fs::write(&manifest, saved).unwrap();
    let db = Engine::open(EdgestoreConfig::new(&path)).unwrap();
    assert_eq!(db.get(b"ns", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"ns", b"b").unwrap(), Some(b"2".to_vec()));
}

/// The real file system, recording the directories it syncs.
#[derive(Debug, Default)]
struct DirSyncs(std::sync::Mutex<Vec<std::path::PathBuf>>);

impl edgestore::storage::Storage for DirSyncs {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.create_dir_all(dir)
    }
    fn create(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Arc<dyn edgestore::storage::WritableFile>> {
        edgestore::storage::FsStorage.create(path)
    }
    fn open_read(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Arc<dyn edgestore::storage::ReadableFile>> {
        edgestore::storage::FsStorage.open_read(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        edgestore::storage::FsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.0.lock().unwrap().push(dir.to_path_buf());
        edgestore::storage::FsStorage.sync_dir(dir)
    }
    fn list_dir(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        edgestore::storage::FsStorage.list_dir(dir)
    }
    fn exists(&self, path: &std::path::Path) -> std::io::Result<bool> {
        edgestore::storage::FsStorage.exists(path)
    }
    fn truncate(&self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
        edgestore::storage::FsStorage.truncate(path, len)
    }
    fn lock(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn edgestore::storage::DirLock>> {
        edgestore::storage::FsStorage.lock(path)
    }
}

/// Opening creates the database directory and missing parents, and syncs
/// each one's parent, so a power loss cannot forget the directory whose
/// files were synced into it.
#[test]
fn directories_open_creates_are_synced_into_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let path = root.join("a").join("b").join("db");
    let storage = Arc::new(DirSyncs::default());
    let mut c = EdgestoreConfig::new(&path);
    c.storage = Arc::clone(&storage) as Arc<dyn edgestore::storage::Storage>;
    Engine::open(c.clone()).unwrap().close().unwrap();
    let synced = storage.0.lock().unwrap().clone();
    for parent in [root.clone(), root.join("a"), root.join("a").join("b")] {
        assert!(
            synced.contains(&parent),
            "{parent:?} not synced: {synced:?}"
        );
    }
    // Reopening creates nothing: only the database directory's own entry
    // is synced again (a process that made it may have died before doing
    // so), no ancestor above it.
    storage.0.lock().unwrap().clear();
    Engine::open(c).unwrap().close().unwrap();
    let synced = storage.0.lock().unwrap().clone();
    let parents: Vec<_> = synced.iter().filter(|d| !d.starts_with(&path)).collect();
    assert_eq!(parents, [&root.join("a").join("b")], "{synced:?}");
}

/// A forged manifest (checksum valid) claiming the last sequence number is
/// corruption at open, not an overflow of the next one.
#[test]
fn a_manifest_claiming_the_last_lsn_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    Engine::open(EdgestoreConfig::new(&path))
        .unwrap()
        .close()
        .unwrap();
    let manifest = path.join("manifest.mf");
    let mut data = std::fs::read(&manifest).unwrap();
    // Header: magic, version, length, CRC (20 bytes); then next segment id,
    // log number, last LSN.
    data[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&data[20..]);
    data[16..20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&manifest, &data).unwrap();
    match Engine::open(EdgestoreConfig::new(&path)) {
        Err(Error::Corruption { detail, .. }) => {
            assert!(detail.contains("last sequence number"), "{detail}")
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}
