"""Bad inputs, closed handles and the exception hierarchy."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgestore


def test_hierarchy() -> None:
    for cls in (
        edgestore.CorruptionError,
        edgestore.LockedError,
        edgestore.ClosedError,
        edgestore.PoisonedError,
        edgestore.InvalidArgumentError,
        edgestore.EdgestoreIOError,
    ):
        assert issubclass(cls, edgestore.Error)
        assert cls.__module__ == "edgestore"
    assert issubclass(edgestore.Error, Exception)
    assert issubclass(edgestore.InvalidArgumentError, ValueError)
    assert issubclass(edgestore.EdgestoreIOError, OSError)
    assert not issubclass(edgestore.ClosedError, (ValueError, OSError))


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.put(1, b"k", b"v"),
        lambda db: db.put(None, b"k", b"v"),
        lambda db: db.put(bytearray(b"ns"), b"k", b"v"),
        lambda db: db.put("ns", "str-key", b"v"),
        lambda db: db.put("ns", b"k", "str-value"),
        lambda db: db.put("ns", 5, b"v"),
        lambda db: db.put("ns", b"k", None),
        lambda db: db.put("ns", b"k", [1, 2]),
        lambda db: db.put("ns", b"k", b"v", ttl="10"),
        lambda db: db.put("ns", b"k", b"v", ttl=1.5),
        lambda db: db.put("ns", b"k", b"v", ttl=True),
        lambda db: db.get("ns", "k"),
        lambda db: db.get(3.0, b"k"),
        lambda db: db.delete("ns", 7),
        lambda db: db.range("ns", "a"),
        lambda db: db.range("ns", None, 1),
        lambda db: db.prefix("ns", "p"),
        lambda db: db.prefix(b"ns", None),
        lambda db: db.batch().put("ns", "k", b"v"),
        lambda db: db.batch().delete(object(), b"k"),
        lambda db: db.write("not a batch"),
        lambda db: db.put("ns", b"k"),
        lambda db: db.namespace(1),
        lambda db: db.namespace(bytearray(b"ns")),
        lambda db: db.namespace("ns").put("k", b"v"),
        lambda db: db.namespace("ns").get(5),
        lambda db: db.namespace("ns")["k"],
        lambda db: db.namespace("ns").__setitem__(b"k", "v"),
        lambda db: "k" in db.namespace("ns"),
        lambda db: db.namespace("ns").range("a"),
        lambda db: db.namespace("ns").prefix(None),
        lambda db: db.namespace("ns").put(b"k", b"v", ttl=1.5),
    ],
)
def test_wrong_types_raise_type_error(
    db: edgestore.Database, call: Callable[[Any], object]
) -> None:
    with pytest.raises(TypeError):
        call(db)
    assert list(db.range("ns")) == []


@pytest.mark.parametrize("ttl", [0, -1, 2**32, 10**30])
def test_bad_ttl(db: edgestore.Database, ttl: int) -> None:
    with pytest.raises(edgestore.InvalidArgumentError, match="ttl"):
        db.put("ns", b"k", b"v", ttl=ttl)


def test_oversized_inputs(db: edgestore.Database) -> None:
    too_long_ns = "n" * (edgestore.MAX_NAMESPACE_LEN + 1)
    too_long_key = b"k" * (edgestore.MAX_KEY_LEN + 1)
    with pytest.raises(edgestore.InvalidArgumentError, match="namespace"):
        db.put(too_long_ns, b"k", b"v")
    with pytest.raises(edgestore.InvalidArgumentError, match="key"):
        db.put("ns", too_long_key, b"v")
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        db.get("ns", too_long_key)
    with pytest.raises(edgestore.InvalidArgumentError):
        db.delete("ns", too_long_key)
    batch = db.batch()
    with pytest.raises(edgestore.InvalidArgumentError):
        batch.put("ns", too_long_key, b"v")
    assert len(batch) == 0
    big = bytes(edgestore.MAX_VALUE_LEN + 1)
    with pytest.raises(edgestore.InvalidArgumentError, match="value"):
        db.put("ns", b"k", big)
    del big
    # The limits themselves are fine.
    db.put("n" * edgestore.MAX_NAMESPACE_LEN, b"k" * edgestore.MAX_KEY_LEN, b"v")
    assert db.get("n" * edgestore.MAX_NAMESPACE_LEN, b"k" * edgestore.MAX_KEY_LEN) == b"v"


def test_non_utf8_str_namespace(db: edgestore.Database) -> None:
    with pytest.raises(UnicodeEncodeError):
        db.put("\ud800", b"k", b"v")


def test_closed_database(db_path: Path) -> None:
    db = edgestore.open(db_path)
    db.put("ns", b"k", b"v")
    batch = db.batch()
    batch.put("ns", b"k2", b"v")
    ns = db.namespace("ns")
    db.close()
    db.close()  # twice is a no-op
    assert db.closed
    late = db.namespace("ns")  # a handle is only a name; its calls raise
    calls: list[Callable[[], object]] = [
        lambda: db.put("ns", b"k", b"v"),
        lambda: db.get("ns", b"k"),
        lambda: db.delete("ns", b"k"),
        lambda: db.range("ns"),
        lambda: db.prefix("ns", b""),
        lambda: db.snapshot(),
        lambda: db.flush(),
        lambda: db.flush_to_segments(),
        lambda: db.compact(),
        lambda: db.metrics(),
        lambda: db.verify(),
        lambda: db.write(batch),
        lambda: batch.commit(),
        *(
            call
            for handle in (ns, late)
            for call in (
                lambda h=handle: h.put(b"k", b"v"),
                lambda h=handle: h.get(b"k"),
                lambda h=handle: h[b"k"],
                lambda h=handle: h.__setitem__(b"k", b"v"),
                lambda h=handle: h.__delitem__(b"k"),
                lambda h=handle: b"k" in h,
                lambda h=handle: h.delete(b"k"),
                lambda h=handle: h.range(),
                lambda h=handle: h.prefix(b""),
            )
        ),
    ]
    for call in calls:
        with pytest.raises(edgestore.ClosedError):
            call()


def test_locked(db_path: Path) -> None:
    with edgestore.open(db_path):
        with pytest.raises(edgestore.LockedError):
            edgestore.open(db_path)


def test_bad_options(db_path: Path) -> None:
    with pytest.raises(TypeError):
        edgestore.open(db_path, no_such_option=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        edgestore.open(db_path, memtable_size_bytes="big")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        edgestore.open(db_path, block_cache_bytes=1.5)  # type: ignore[arg-type]
    for not_bool in (1, "yes"):
        with pytest.raises(TypeError):
            edgestore.open(db_path, mmap_reads=not_bool)  # type: ignore[arg-type]
    with pytest.raises(edgestore.InvalidArgumentError, match="block_cache_bytes must be >= 0"):
        edgestore.open(db_path, block_cache_bytes=-1)
    with pytest.raises(edgestore.InvalidArgumentError, match="sync"):
        edgestore.open(db_path, sync="sometimes")  # type: ignore[arg-type]
    for bad in (
        {"memtable_size_bytes": 0},
        {"segment_size_bytes": -1},
        {"block_size_bytes": 8},
        {"cohort_window_secs": 0},
        {"bloom_bits_per_key": 65},
        {"partial_rewrite_dead_fraction": 1.5},
        {"max_permanent_runs": 0},
        {"max_permanent_space_amp": 0.0},
        {"background_compaction_secs": -1.0},
        {"background_compaction_secs": float("nan")},
        {"background_compaction_secs": 1e20},
        # Past 64 bits: still a bad value, not an OverflowError.
        {"memtable_size_bytes": 1 << 70},
        {"block_cache_bytes": -(1 << 64)},
        {"wal_recycle_files": 1 << 63},
    ):
        with pytest.raises(edgestore.InvalidArgumentError):
            edgestore.open(db_path, **bad)
    # A failed open leaves nothing locked.
    with edgestore.open(db_path):
        pass


def test_integers_past_64_bits_are_bad_values(db: edgestore.Database) -> None:
    # InvalidArgumentError (a ValueError) like any out-of-range value, not
    # the OverflowError a plain 64-bit argument would raise.
    huge = 1 << 70
    with pytest.raises(edgestore.InvalidArgumentError, match="out of range"):
        db.merkle("ns", depth=huge)
    with pytest.raises(edgestore.InvalidArgumentError, match="out of range"):
        edgestore.MerkleTree.leaf_of(b"k", depth=-huge)
    with pytest.raises(edgestore.InvalidArgumentError, match="out of range"):
        db.vectors("ns", "v", dim=huge)
    coll = db.vectors("ns", "v", dim=2)
    q = np.zeros(2, dtype=np.float32)
    with pytest.raises(edgestore.InvalidArgumentError, match="out of range"):
        coll.search(q, huge)
    with pytest.raises(edgestore.InvalidArgumentError, match="out of range"):
        coll.search(q, 1, ef=huge)
    with pytest.raises(TypeError):
        coll.search(q, "10")  # type: ignore[arg-type]


def test_io_error_is_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(edgestore.EdgestoreIOError) as info:
        edgestore.open(blocker / "db")
    assert isinstance(info.value, OSError)
    assert info.value.errno in (errno.ENOTDIR, errno.EEXIST)


def test_corruption_is_detected(db_path: Path) -> None:
    with edgestore.open(db_path) as db:
        for i in range(100):
            db.put("ns", b"%03d" % i, b"v" * 50)
        db.flush_to_segments()
    segments = sorted(db_path.glob("*.seg"))
    assert segments, sorted(p.name for p in db_path.iterdir())
    seg = segments[0]
    data = bytearray(seg.read_bytes())
    data[100] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(edgestore.CorruptionError):
        db2 = edgestore.open(db_path)
        try:
            db2.verify()
            list(db2.range("ns"))
        finally:
            db2.close()
