"""Every public method of the package, on the happy path."""

from __future__ import annotations

import array
import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest

import edgestore


def test_put_get_delete(db: edgestore.Database) -> None:
    db.put("ns", b"k", b"v")
    assert db.get("ns", b"k") == b"v"
    db.put("ns", b"k", b"v2")
    assert db.get("ns", b"k") == b"v2"
    db.delete("ns", b"k")
    assert db.get("ns", b"k") is None
    db.delete("ns", b"never-existed")  # not an error
    assert db.get("ns", b"k", b"fallback") == b"fallback"
    sentinel = object()
    assert db.get("ns", b"k", sentinel) is sentinel
    assert db.get("ns", b"k", default=None) is None


def test_namespace_handle(db: edgestore.Database) -> None:
    users = db.namespace("users")
    assert users.name == b"users"
    assert users.database is db
    assert "users" in repr(users)
    users.put(b"a", b"1")
    users[b"b"] = bytearray(b"2")
    db.put("users", b"c", b"3")
    db.put("other", b"a", b"elsewhere")
    # The handle and the database's own methods see the same data.
    assert db.get("users", b"a") == b"1"
    assert users.get(b"c") == b"3"
    assert users[b"b"] == b"2"
    assert b"a" in users and memoryview(b"c") in users
    assert b"zz" not in users
    with pytest.raises(TypeError, match="not iterable"):
        iter(users)  # type: ignore[call-overload]
    assert users.get(b"zz") is None
    assert users.get(b"zz", b"fallback") == b"fallback"
    with pytest.raises(KeyError) as err:
        users[b"zz"]
    assert err.value.args == (b"zz",)
    assert list(users.range()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert list(users.range(b"b")) == [(b"b", b"2"), (b"c", b"3")]
    assert list(users.range(end=b"b")) == [(b"a", b"1")]
    assert list(users.prefix(b"c")) == [(b"c", b"3")]
    del users[b"a"]
    del users[b"never-existed"]  # a blind delete, like Database.delete
    users.delete(b"b")
    assert list(db.range("users")) == [(b"c", b"3")]
    assert db.get("other", b"a") == b"elsewhere"
    # str and bytes names are the same namespace; bytes names need not be UTF-8.
    assert db.namespace(b"users")[b"c"] == b"3"
    raw = db.namespace(b"\xff\x00")
    raw[b"k"] = b"v"
    assert db.get(b"\xff\x00", b"k") == b"v"
    assert "\\xff" in repr(raw)


def test_namespace_name_is_checked_once(db: edgestore.Database) -> None:
    with pytest.raises(edgestore.InvalidArgumentError, match="namespace"):
        db.namespace("n" * (edgestore.MAX_NAMESPACE_LEN + 1))
    longest = db.namespace("n" * edgestore.MAX_NAMESPACE_LEN)
    longest[b"k"] = b"v"
    assert db.get("n" * edgestore.MAX_NAMESPACE_LEN, b"k") == b"v"


def test_empty_key_and_value(db: edgestore.Database) -> None:
    db.put("ns", b"", b"")
    assert db.get("ns", b"") == b""
    assert list(db.range("ns")) == [(b"", b"")]


def test_str_and_bytes_namespaces_are_the_same(db: edgestore.Database) -> None:
    db.put("ns", b"a", b"1")
    assert db.get(b"ns", b"a") == b"1"
    db.put("caf\u00e9", b"k", b"x")
    assert db.get("caf\u00e9".encode(), b"k") == b"x"
    assert db.get("other", b"a") is None


def test_namespaces_are_isolated(db: edgestore.Database) -> None:
    db.put("a", b"k", b"1")
    db.put("ab", b"k", b"2")
    db.put("b", b"k", b"3")
    assert list(db.range("a")) == [(b"k", b"1")]
    assert list(db.prefix("a", b"")) == [(b"k", b"1")]
    assert db.get("ab", b"k") == b"2"


def test_bytes_like_keys_and_values(db: edgestore.Database) -> None:
    db.put("ns", bytearray(b"ba"), bytearray(b"bytearray"))
    db.put("ns", memoryview(b"mv"), memoryview(b"memoryview"))
    db.put("ns", b"strided", memoryview(b"abcdef")[::2])
    db.put("ns", b"arr", array.array("B", [1, 2, 3]))
    vec = np.arange(4, dtype=np.float32)
    db.put("ns", b"np", vec)  # type: ignore[arg-type]  # numpy stubs lack __buffer__
    assert db.get("ns", b"ba") == b"bytearray"
    assert db.get("ns", bytearray(b"mv")) == b"memoryview"
    assert db.get("ns", memoryview(b"strided")) == b"ace"
    assert db.get("ns", b"arr") == b"\x01\x02\x03"
    raw = db.get("ns", b"np")
    assert raw is not None
    assert np.array_equal(np.frombuffer(raw, dtype=np.float32), vec)
    for _, value in db.range("ns"):
        assert type(value) is bytes


def test_range_bounds_and_order(db: edgestore.Database) -> None:
    keys = [b"a", b"b", b"ba", b"c", b"d\xff", b"e"]
    for k in reversed(keys):
        db.put("ns", k, k.upper())
    assert [k for k, _ in db.range("ns")] == keys
    assert list(db.range("ns", b"b", b"c")) == [(b"b", b"B"), (b"ba", b"BA")]
    assert [k for k, _ in db.range("ns", start=b"c")] == [b"c", b"d\xff", b"e"]
    assert [k for k, _ in db.range("ns", end=b"b")] == [b"a"]
    assert list(db.range("ns", b"c", b"c")) == []
    assert list(db.range("ns", b"z", b"a")) == []
    assert [k for k, _ in db.prefix("ns", b"b")] == [b"b", b"ba"]
    assert list(db.prefix("ns", b"zz")) == []


def test_range_is_lazy_and_consistent(db: edgestore.Database) -> None:
    n = 5000  # more than the iterator's largest chunk
    for i in range(n):
        db.put("ns", b"%06d" % i, b"v%d" % i)
    it = db.range("ns")
    first = next(it)
    assert first == (b"000000", b"v0")
    db.put("ns", b"999999", b"late")  # after the iterator was created
    db.delete("ns", b"000001")
    rest = list(it)
    assert len(rest) == n - 1
    assert rest[0] == (b"000001", b"v1")
    assert all(k != b"999999" for k, _ in rest)
    assert iter(it) is it
    with pytest.raises(StopIteration):
        next(it)


def test_iterator_survives_close(db_path: Path) -> None:
    db = edgestore.open(db_path)
    for i in range(100):
        db.put("ns", b"%03d" % i, b"x")
    it = db.prefix("ns", b"0")
    db.close()
    assert len(list(it)) == 100


def test_ttl_expires(db: edgestore.Database) -> None:
    db.put("ns", b"short", b"1", ttl=1)
    db.put("ns", b"long", b"2", ttl=3600)
    db.put("ns", b"forever", b"3", ttl=None)
    cache = db.namespace("cache")
    cache.put(b"short", b"x", ttl=1)
    assert db.get("ns", b"short") == b"1"
    assert cache[b"short"] == b"x"
    time.sleep(2.1)
    assert db.get("ns", b"short") is None
    assert db.get("ns", b"long") == b"2"
    assert [k for k, _ in db.range("ns")] == [b"forever", b"long"]
    # Through a namespace handle an expired key is missing everywhere.
    assert b"short" not in cache
    assert cache.get(b"short") is None
    with pytest.raises(KeyError):
        cache[b"short"]


def test_batch_commits_on_success(db: edgestore.Database) -> None:
    db.put("ns", b"old", b"x")
    with db.batch() as batch:
        batch.put("ns", b"a", b"1")
        batch.put(b"ns", bytearray(b"b"), memoryview(b"2"), ttl=3600)
        batch.delete("ns", b"old")
        assert len(batch) == 3
        assert db.get("ns", b"a") is None  # nothing visible before commit
    assert list(db.range("ns")) == [(b"a", b"1"), (b"b", b"2")]
    with pytest.raises(edgestore.ClosedError):
        batch.put("ns", b"c", b"3")


def test_batch_discards_on_exception(db: edgestore.Database) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with db.batch() as batch:
            batch.put("ns", b"a", b"1")
            raise RuntimeError("boom")
    assert db.get("ns", b"a") is None


def test_a_failed_commit_leaves_the_batch_as_it_was(db_path: Path) -> None:
    db = edgestore.open(db_path)
    batch = db.batch()
    batch.put("ns", b"a", b"1")
    batch.delete("ns", b"gone")
    db.close()
    with pytest.raises(edgestore.ClosedError):
        batch.commit()
    # Nothing was dropped: the same operations commit elsewhere.
    assert len(batch) == 2
    with edgestore.open(db_path) as again:
        again.write(batch)
        assert len(batch) == 0
        assert again.get("ns", b"a") == b"1"


def test_a_snapshot_does_not_keep_its_database_open(db_path: Path) -> None:
    db = edgestore.open(db_path)
    db.put("ns", b"a", b"1")
    snap = db.snapshot()
    del db
    gc.collect()
    # The database was dropped (its directory lock released); the snapshot
    # still reads what it saw.
    with edgestore.open(db_path) as again:
        again.put("ns", b"a", b"2")
        assert snap.get("ns", b"a") == b"1"
    snap.close()


def test_batch_explicit_commit_and_discard(db: edgestore.Database) -> None:
    batch = db.batch()
    batch.put("ns", b"a", b"1")
    batch.commit()
    assert len(batch) == 0
    assert db.get("ns", b"a") == b"1"
    batch.put("ns", b"b", b"2")  # reusable after commit
    db.write(batch)
    assert db.get("ns", b"b") == b"2"
    batch.put("ns", b"c", b"3")
    batch.discard()
    assert len(batch) == 0
    with pytest.raises(edgestore.ClosedError):
        batch.commit()
    assert db.get("ns", b"c") is None
    empty = db.batch()
    empty.commit()  # an empty batch is fine


def test_snapshot_reads(db: edgestore.Database) -> None:
    db.put("ns", b"a", b"1")
    db.put("ns", b"b", b"2")
    with db.snapshot() as snap:
        db.put("ns", b"a", b"changed")
        db.delete("ns", b"b")
        db.put("ns", b"c", b"new")
        assert snap.get("ns", b"a") == b"1"
        assert snap.get("ns", b"c") is None
        assert snap.get("ns", b"c", b"d") == b"d"
        assert list(snap.range("ns")) == [(b"a", b"1"), (b"b", b"2")]
        assert list(snap.range("ns", b"b", None)) == [(b"b", b"2")]
        assert list(snap.prefix("ns", b"a")) == [(b"a", b"1")]
        assert isinstance(snap.sequence, int)
        assert not snap.closed
    assert snap.closed
    with pytest.raises(edgestore.ClosedError):
        snap.get("ns", b"a")
    with pytest.raises(edgestore.ClosedError):
        snap.range("ns")
    assert db.get("ns", b"a") == b"changed"


def test_snapshot_outlives_database_close(db_path: Path) -> None:
    db = edgestore.open(db_path)
    db.put("ns", b"a", b"1")
    snap = db.snapshot()
    db.close()
    assert snap.get("ns", b"a") == b"1"
    snap.close()
    snap.close()  # twice is fine


def test_flush_compact_metrics_verify(db_path: Path) -> None:
    # Checks what the explicit compact() did: no background cycle first.
    with edgestore.open(
        db_path, sync="buffered", cohort_window_secs=1, background_compaction_secs=None
    ) as db:
        for i in range(200):
            db.put("ns", b"k%03d" % i, b"v" * 100, ttl=1)
        db.put("ns", b"keep", b"forever")
        db.flush()
        db.flush_to_segments()
        m = db.metrics()
        assert m.user_writes == 201
        assert m.user_bytes_written > 200 * 100
        assert m.flushes >= 1
        assert m.segments >= 1
        assert m.write_amplification > 1.0
        assert isinstance(m.compaction_write_amplification, float)
        report = db.verify()
        assert report.segments == m.segments
        assert report.segment_records >= 201
        snap = db.snapshot()
        assert m.snapshot_held_bytes == 0 and db.metrics().pinned_segments == m.segments
        time.sleep(2.1)
        stats = db.compact()
        assert isinstance(stats, edgestore.CompactionStats)
        assert stats.segments_removed >= 1
        assert stats.bytes_reclaimed > 0
        assert stats.jobs_deferred == 0
        assert "CompactionStats(" in repr(stats)
        # The removed files' space stays taken while the snapshot holds them.
        held = db.metrics().snapshot_held_bytes
        assert 0 < held <= stats.bytes_reclaimed
        assert "snapshot_held_bytes=" in repr(db.metrics())
        snap.close()
        assert db.metrics().snapshot_held_bytes == 0
        assert db.metrics().compactions == 1
        assert list(db.range("ns")) == [(b"keep", b"forever")]
        db.verify()


def test_default_options_compact_in_background(db_path: Path) -> None:
    # No compact() call anywhere: by default a background cycle every second
    # drops the expired cohort's files and merges the permanent cohort's
    # runs down to max_permanent_runs (4).
    with edgestore.open(db_path, sync="buffered", cohort_window_secs=1) as db:
        for i in range(50):
            db.put("ttl", b"k%03d" % i, b"v" * 100, ttl=1)
        db.flush_to_segments()
        for run in range(6):
            for i in range(20):
                db.put("perm", b"p%03d" % i, b"run%d" % run)
            db.flush_to_segments()
        deadline = time.monotonic() + 15
        m = db.metrics()
        while time.monotonic() < deadline:
            m = db.metrics()
            dropped, merged = m.compaction_bytes_reclaimed > 0, m.compaction_bytes_written > 0
            if dropped and merged and m.segments <= 4:
                break
            time.sleep(0.05)
        assert m.compactions >= 1, m
        assert m.compaction_bytes_reclaimed > 0, m  # the expired files were dropped
        assert m.compaction_bytes_written > 0, m  # the permanent runs were merged
        assert m.segments <= 4, m
        assert 1 <= m.sorted_runs <= 4, m
        assert list(db.range("ttl")) == []
        assert list(db.range("perm")) == [(b"p%03d" % i, b"run5") for i in range(20)]
        db.verify()


def test_background_compaction_none_turns_it_off(db_path: Path) -> None:
    with edgestore.open(db_path, sync="buffered", background_compaction_secs=None) as db:
        for run in range(6):
            db.put("perm", b"k", b"run%d" % run)
            db.flush_to_segments()
        time.sleep(1.5)  # past the default 1 s interval
        m = db.metrics()
        assert m.compactions == 0, m
        assert m.segments == 6, m
        assert db.compact().segments_removed >= 2
        assert db.metrics().segments <= 4


def test_reopen_keeps_data(db_path: Path) -> None:
    with edgestore.open(db_path) as db:
        db.put("ns", b"wal", b"1")
        db.put("ns", b"seg", b"2")
        db.flush_to_segments()
        db.put("ns", b"wal2", b"3")
        db.delete("ns", b"seg")
    assert db.closed
    with edgestore.open(str(db_path), sync="buffered") as db:
        assert list(db.range("ns")) == [(b"wal", b"1"), (b"wal2", b"3")]
        db.put("ns", b"buffered", b"4")
    with edgestore.open(db_path) as db:
        assert db.get("ns", b"buffered") == b"4"


def test_open_options(db_path: Path) -> None:
    with edgestore.open(
        db_path,
        sync="buffered",
        memtable_size_bytes=16 * 1024,
        segment_size_bytes=64 * 1024,
        block_size_bytes=1024,
        bloom_bits_per_key=8,
        cohort_window_secs=60,
        compaction_write_budget_bytes=1 << 20,
        partial_rewrite_dead_fraction=0.25,
        max_permanent_runs=2,
        max_permanent_space_amp=2.0,
        background_compaction_secs=0.05,
        block_cache_bytes=256 * 1024,
        mmap_reads=False,
    ) as db:
        for i in range(2000):
            db.put("ns", b"%05d" % i, b"x" * 64)
        assert db.metrics().flushes >= 1  # the small memtable flushed by itself
        assert db.path == db_path
        assert "Database" in repr(db)
    assert "closed" in repr(db)


def _mapped_segment_files(db_path: Path) -> int:
    """Lines of /proc/self/maps naming a segment file of the database."""
    prefix = os.path.realpath(db_path) + "/"
    maps = Path("/proc/self/maps").read_text().splitlines()
    return sum(1 for line in maps if prefix in line and ".seg" in line)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
@pytest.mark.parametrize("mmap_reads", [False, True])
def test_mmap_reads(db_path: Path, mmap_reads: bool) -> None:
    rows = [(b"%05d" % i, b"v" * 100) for i in range(300)]
    with edgestore.open(db_path, block_cache_bytes=0, mmap_reads=mmap_reads) as db:
        for key, value in rows:
            db.put("ns", key, value)
        db.flush_to_segments()
        assert db.metrics().segments >= 1
        assert db.get("ns", b"00007") == b"v" * 100
        assert list(db.prefix("ns", b"")) == rows
        assert (_mapped_segment_files(db_path) > 0) == mmap_reads
    assert _mapped_segment_files(db_path) == 0
    # Reopened the other way, the same files read the same.
    with edgestore.open(db_path, block_cache_bytes=0, mmap_reads=not mmap_reads) as db:
        assert list(db.prefix("ns", b"")) == rows
        assert (_mapped_segment_files(db_path) > 0) == (not mmap_reads)


@pytest.mark.parametrize("block_cache_bytes", [0, 1 << 20])
def test_block_cache_bytes(db_path: Path, block_cache_bytes: int) -> None:
    # A block read once is then served from the cache: damaging it on disk
    # goes unnoticed with a cache and is a CorruptionError without one.
    # (Plain reads, so the file rewritten in place is never mapped.)
    value = b"cache-probe-value"
    with edgestore.open(db_path, block_cache_bytes=block_cache_bytes, mmap_reads=False) as db:
        db.put("c", b"k", value)
        db.flush_to_segments()
        assert db.get("c", b"k") == value
        damaged = 0
        for seg in db_path.glob("*.seg"):
            at = seg.read_bytes().find(value)
            if at >= 0:
                with seg.open("r+b") as f:
                    f.seek(at)
                    f.write(b"C")
                damaged += 1
        assert damaged == 1
        if block_cache_bytes:
            assert db.get("c", b"k") == value
        else:
            with pytest.raises(edgestore.CorruptionError):
                db.get("c", b"k")


def test_context_manager_closes_on_exception(db_path: Path) -> None:
    with pytest.raises(KeyError):
        with edgestore.open(db_path) as db:
            raise KeyError("x")
    assert db.closed
    with edgestore.open(db_path) as db2:  # the lock was released
        assert not db2.closed


def test_package_exports() -> None:
    for name in edgestore.__all__:
        assert hasattr(edgestore, name), name
    assert edgestore.MAX_KEY_LEN == 16 * 1024
    assert edgestore.MAX_NAMESPACE_LEN == 255
    assert edgestore.MAX_VALUE_LEN == 64 * 1024 * 1024
    assert callable(edgestore.Database.vectors)  # the vector API (tests/test_vectors.py)


@pytest.mark.parametrize("wal_recycle_files", [None, 0])
def test_wal_recycle_files(db_path: Path, wal_recycle_files: int | None) -> None:
    # By default a flush keeps the log it made obsolete, to write over it as
    # the next one (two .wal files); with 0 it is deleted (one).
    want = 1 if wal_recycle_files == 0 else 2
    with edgestore.open(
        db_path, wal_recycle_files=wal_recycle_files, background_compaction_secs=None
    ) as db:
        for round in range(3):
            db.put("ns", b"k%d" % round, b"v")
            db.flush_to_segments()
            assert len(list(db_path.glob("*.wal"))) == want
        db.put("ns", b"tail", b"t")
    with edgestore.open(db_path, wal_recycle_files=wal_recycle_files) as db:
        assert [k for k, _ in db.prefix("ns", b"")] == [b"k0", b"k1", b"k2", b"tail"]


def test_wal_recycle_files_rejects_negative(db_path: Path) -> None:
    with pytest.raises(edgestore.InvalidArgumentError, match="wal_recycle_files"):
        edgestore.open(db_path, wal_recycle_files=-1)
