"""Bad input, systematically (the Python side of tests/c/test_bad_input.c).

Every method of Database, Batch and Snapshot is called with ``None`` in place
of each argument (C: NULL for each pointer), with a byte string one past its
limit (C: ``SIZE_MAX`` lengths), after its handle was closed, and on handles
closed twice; empty byte strings are valid (C: ``(NULL, 0)``); paths of
non-UTF-8 bytes work; snapshots and iterators outlive their database and
iterators their snapshot. A failing call never changes the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import edgestore

NS_MAX = edgestore.MAX_NAMESPACE_LEN
KEY_MAX = edgestore.MAX_KEY_LEN

# Each entry: name, a call taking (db, args) and the valid arguments. Every
# argument is replaced by None in turn.
DbCall = Callable[[edgestore.Database, list[Any]], object]
DB_CALLS: list[tuple[str, DbCall, list[Any]]] = [
    ("put", lambda db, a: db.put(*a), ["ns", b"k", b"v"]),
    ("put ttl", lambda db, a: db.put(a[0], a[1], a[2], ttl=a[3]), ["ns", b"k", b"v", 5]),
    ("get", lambda db, a: db.get(*a), ["ns", b"k"]),
    ("delete", lambda db, a: db.delete(*a), ["ns", b"k"]),
    ("prefix", lambda db, a: db.prefix(*a), ["ns", b"k"]),
    ("range ns", lambda db, a: db.range(*a), ["ns"]),
    ("batch put", lambda db, a: db.batch().put(*a), ["ns", b"k", b"v"]),
    ("batch delete", lambda db, a: db.batch().delete(*a), ["ns", b"k"]),
    ("snapshot get", lambda db, a: db.snapshot().get(*a), ["ns", b"k"]),
    ("snapshot prefix", lambda db, a: db.snapshot().prefix(*a), ["ns", b"k"]),
    ("snapshot range", lambda db, a: db.snapshot().range(*a), ["ns"]),
    ("namespace put", lambda db, a: db.namespace(a[0]).put(*a[1:]), ["ns", b"k", b"v"]),
    ("namespace get", lambda db, a: db.namespace(a[0]).get(*a[1:]), ["ns", b"k"]),
    ("namespace item", lambda db, a: db.namespace(a[0])[a[1]], ["ns", b"k"]),
    ("namespace set item", lambda db, a: db.namespace(a[0]).__setitem__(*a[1:]), ["ns", b"k", b"v"]),
    ("namespace delete", lambda db, a: db.namespace(a[0]).delete(*a[1:]), ["ns", b"k"]),
    ("namespace contains", lambda db, a: a[1] in db.namespace(a[0]), ["ns", b"k"]),
    ("namespace prefix", lambda db, a: db.namespace(a[0]).prefix(*a[1:]), ["ns", b"k"]),
    ("namespace range", lambda db, a: db.namespace(a[0]).range(*a[1:]), ["ns"]),
    ("write", lambda db, a: db.write(*a), [None]),
]


def _none_variants() -> Iterator[Any]:
    for name, call, args in DB_CALLS:
        for i in range(len(args)):
            if name == "put ttl" and i == 3:
                continue  # ttl=None means "no TTL"
            bad = list(args)
            bad[i] = None
            yield pytest.param(call, bad, id=f"{name}-arg{i}")


@pytest.fixture
def filled(db: edgestore.Database) -> edgestore.Database:
    db.put("ns", b"k", b"v")
    db.put("ns", b"k2", b"v2")
    return db


def _contents(db: edgestore.Database) -> list[tuple[bytes, bytes]]:
    return list(db.range("ns"))


@pytest.mark.parametrize(("call", "args"), list(_none_variants()))
def test_none_for_each_argument(
    filled: edgestore.Database, call: DbCall, args: list[Any]
) -> None:
    before = _contents(filled)
    with pytest.raises(TypeError):
        call(filled, args)
    assert _contents(filled) == before


def _over_limit_variants() -> Iterator[Any]:
    long_ns = "n" * (NS_MAX + 1)
    long_ns_bytes = b"n" * (NS_MAX + 1)
    long_key = b"k" * (KEY_MAX + 1)
    calls: list[tuple[str, DbCall, list[Any], list[int]]] = [
        (name, call, args, [i for i, a in enumerate(args) if isinstance(a, (str, bytes))])
        for name, call, args in DB_CALLS
        if name != "write"
    ]
    for name, call, args, positions in calls:
        for i in positions:
            if i == 2:
                continue  # values: one past 64 MiB is tested once below
            for too_long in ([long_ns, long_ns_bytes] if i == 0 else [long_key]):
                bad = list(args)
                bad[i] = too_long
                kind = "ns" if i == 0 and isinstance(too_long, str) else f"arg{i}"
                yield pytest.param(call, bad, id=f"{name}-{kind}")


@pytest.mark.parametrize(("call", "args"), list(_over_limit_variants()))
def test_one_past_each_length_limit(
    filled: edgestore.Database, call: DbCall, args: list[Any]
) -> None:
    before = _contents(filled)
    with pytest.raises(edgestore.InvalidArgumentError):
        result = call(filled, args)
        # Iterators may check lazily; consuming one must raise then.
        if isinstance(result, Iterator):
            list(result)
    assert _contents(filled) == before


def test_value_one_past_limit_everywhere(filled: edgestore.Database) -> None:
    big = memoryview(bytearray(edgestore.MAX_VALUE_LEN + 1))
    with pytest.raises(edgestore.InvalidArgumentError):
        filled.put("ns", b"k", big)
    with pytest.raises(edgestore.InvalidArgumentError):
        filled.put("ns", b"k", big, ttl=3)
    batch = filled.batch()
    with pytest.raises(edgestore.InvalidArgumentError):
        batch.put("ns", b"k", big)
    assert len(batch) == 0
    del big
    assert filled.get("ns", b"k") == b"v"


def test_empty_byte_strings_are_valid(db: edgestore.Database) -> None:
    db.put("", b"", b"")
    assert db.get("", b"") == b""
    assert db.get(b"", bytearray()) == b""
    assert list(db.range("")) == [(b"", b"")]
    assert list(db.prefix("", b"")) == [(b"", b"")]
    with db.snapshot() as snap:
        assert snap.get("", memoryview(b"")) == b""
    with db.batch() as batch:
        batch.delete("", b"")
    assert db.get("", b"") is None


def test_any_bytes_in_namespaces_keys_values(db: edgestore.Database) -> None:
    ns, key, value = b"\xff\x00\xfe", b"\x00\xc3\x28\xff", b"\xed\xa0\x80\x00"
    db.put(ns, key, value)
    assert db.get(ns, key) == value
    assert list(db.prefix(ns, b"\x00")) == [(key, value)]
    # Other buffer types carry the same bytes.
    assert db.get(ns, bytearray(key)) == value
    assert db.get(ns, memoryview(key)) == value


def test_non_contiguous_buffer(db: edgestore.Database) -> None:
    strided = memoryview(b"abcdef")[::2]
    try:
        db.put("ns", strided, b"v")
    except (TypeError, BufferError, ValueError):
        assert list(db.range("ns")) == []
    else:
        assert db.get("ns", b"ace") == b"v"


def test_non_utf8_paths(tmp_path: Path) -> None:
    # A str with surrogate escapes stands for raw, non-UTF-8 bytes.
    raw = os.fsencode(tmp_path) + b"/db-\xff\xfe-\xe9"
    path = os.fsdecode(raw)
    with edgestore.open(path) as db:
        db.put("ns", b"k", b"v")
        with pytest.raises(edgestore.LockedError):
            edgestore.open(path)
    assert os.path.isdir(raw)
    with edgestore.open(Path(path)) as db:
        assert db.get("ns", b"k") == b"v"
    # Under a regular file: an I/O error, not a crash.
    blocker = os.fsencode(tmp_path) + b"/\xc3\x28-file"
    with open(blocker, "wb") as f:
        f.write(b"x")
    with pytest.raises(edgestore.EdgestoreIOError):
        edgestore.open(os.fsdecode(blocker + b"/\xff"))
    # NUL cannot be in a path: an error (InvalidArgumentError or
    # EdgestoreIOError), nothing created.
    with pytest.raises((ValueError, OSError)):
        edgestore.open(str(tmp_path / "a\x00b"))
    assert not [n for n in os.listdir(os.fsencode(tmp_path)) if n.startswith(b"a")]


def test_snapshot_use_after_close_and_double_close(filled: edgestore.Database) -> None:
    snap = filled.snapshot()
    it = snap.range("ns")
    snap.close()
    snap.close()  # twice is a no-op
    assert snap.closed
    calls: list[Callable[[], object]] = [
        lambda: snap.get("ns", b"k"),
        lambda: snap.range("ns"),
        lambda: snap.prefix("ns", b""),
        lambda: snap.sequence,
    ]
    for call in calls:
        with pytest.raises(edgestore.ClosedError):
            call()
    # An iterator outlives its snapshot.
    assert list(it) == [(b"k", b"v"), (b"k2", b"v2")]


def test_batch_after_commit_and_discard(filled: edgestore.Database) -> None:
    batch = filled.batch()
    batch.put("ns", b"k3", b"v3")
    batch.commit()
    batch.discard()
    batch.discard()  # twice is fine
    assert filled.get("ns", b"k3") == b"v3"


def test_views_outlive_their_database(db_path: Path) -> None:
    db = edgestore.open(db_path)
    db.put("ns", b"a", b"1")
    db.put("ns", b"b", b"2")
    it = db.range("ns")
    assert next(it) == (b"a", b"1")
    prefix_it = db.prefix("ns", b"")
    snap = db.snapshot()
    snap_it = snap.range("ns")
    db.close()
    db.close()
    # A new handle changes the data; the old views do not see it.
    with edgestore.open(db_path) as db2:
        db2.delete("ns", b"a")
        db2.put("ns", b"c", b"3")
        assert next(it) == (b"b", b"2")
        with pytest.raises(StopIteration):
            next(it)
        with pytest.raises(StopIteration):
            next(it)  # and stays exhausted
        assert list(prefix_it) == [(b"a", b"1"), (b"b", b"2")]
        assert snap.get("ns", b"a") == b"1"
        assert snap.get("ns", b"c") is None
        snap.close()
        assert list(snap_it) == [(b"a", b"1"), (b"b", b"2")]
        assert list(db2.range("ns")) == [(b"b", b"2"), (b"c", b"3")]
    with pytest.raises(edgestore.ClosedError):
        db.snapshot()


def test_wrong_object_kinds(filled: edgestore.Database) -> None:
    snap = filled.snapshot()
    with pytest.raises(TypeError):
        filled.write(snap)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filled.write(filled)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filled.put("ns", b"k", 12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filled.put(["ns"], b"k", b"v")  # type: ignore[arg-type]
    assert filled.get("ns", b"k") == b"v"
