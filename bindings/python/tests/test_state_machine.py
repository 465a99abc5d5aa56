"""A hypothesis state machine checks the database against a dict model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

import edgestore

Model = dict[tuple[bytes, bytes], bytes]

NAMESPACES = st.sampled_from(["a", "b", "ab"])
# A small alphabet so keys collide, share prefixes and hit the 0xff edge.
KEYS = st.binary(max_size=3).map(lambda b: bytes(x % 4 * 85 for x in b))
VALUES = st.binary(max_size=40)
OPS = st.lists(
    st.tuples(st.booleans(), NAMESPACES, KEYS, VALUES), min_size=0, max_size=8
)


def ns_bytes(ns: str) -> bytes:
    return ns.encode()


def model_range(
    model: Model, ns: str, start: bytes | None, end: bytes | None
) -> list[tuple[bytes, bytes]]:
    return sorted(
        (k, v)
        for (n, k), v in model.items()
        if n == ns_bytes(ns)
        and (start is None or k >= start)
        and (end is None or k < end)
    )


def model_prefix(model: Model, ns: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
    return sorted(
        (k, v) for (n, k), v in model.items() if n == ns_bytes(ns) and k.startswith(prefix)
    )


class DatabaseMachine(RuleBasedStateMachine):
    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="edgestore-hyp-"))
        self.db = self._open()
        self.model: Model = {}
        self.live_snapshots: list[edgestore.Snapshot] = []

    def _open(self) -> edgestore.Database:
        # A tiny memtable and segments so flushes and multi-segment reads happen.
        return edgestore.open(
            self.dir / "db",
            sync="buffered",
            memtable_size_bytes=2048,
            segment_size_bytes=4096,
            block_size_bytes=256,
        )

    @rule(ns=NAMESPACES, key=KEYS, value=VALUES, as_bytes=st.booleans())
    def put(self, ns: str, key: bytes, value: bytes, as_bytes: bool) -> None:
        self.db.put(ns_bytes(ns) if as_bytes else ns, key, bytearray(value))
        self.model[(ns_bytes(ns), key)] = value

    @rule(ns=NAMESPACES, key=KEYS)
    def get(self, ns: str, key: bytes) -> None:
        assert self.db.get(ns, key) == self.model.get((ns_bytes(ns), key))

    @rule(ns=NAMESPACES, key=KEYS)
    def delete(self, ns: str, key: bytes) -> None:
        self.db.delete(ns, key)
        self.model.pop((ns_bytes(ns), key), None)

    @rule(ns=NAMESPACES, start=st.none() | KEYS, end=st.none() | KEYS)
    def range(self, ns: str, start: bytes | None, end: bytes | None) -> None:
        assert list(self.db.range(ns, start, end)) == model_range(self.model, ns, start, end)

    @rule(ns=NAMESPACES, prefix=KEYS)
    def prefix(self, ns: str, prefix: bytes) -> None:
        assert list(self.db.prefix(ns, prefix)) == model_prefix(self.model, ns, prefix)

    @rule(ops=OPS, fail=st.booleans())
    def batch(self, ops: list[tuple[bool, str, bytes, bytes]], fail: bool) -> None:
        staged = dict(self.model)
        try:
            with self.db.batch() as b:
                for is_put, ns, key, value in ops:
                    if is_put:
                        b.put(ns, key, value)
                        staged[(ns_bytes(ns), key)] = value
                    else:
                        b.delete(ns, key)
                        staged.pop((ns_bytes(ns), key), None)
                if fail:
                    raise KeyError("abort")
        except KeyError:
            assert fail
            return
        self.model = staged

    @precondition(lambda self: len(self.live_snapshots) < 4)
    @rule(target=snapshots)
    def take_snapshot(self) -> tuple[edgestore.Snapshot, Model]:
        snap = self.db.snapshot()
        self.live_snapshots.append(snap)
        return (snap, dict(self.model))

    @rule(entry=snapshots, ns=NAMESPACES, key=KEYS, start=st.none() | KEYS)
    def read_snapshot(
        self, entry: tuple[edgestore.Snapshot, Model], ns: str, key: bytes, start: bytes | None
    ) -> None:
        snap, frozen = entry
        assert snap.get(ns, key) == frozen.get((ns_bytes(ns), key))
        assert list(snap.range(ns, start)) == model_range(frozen, ns, start, None)
        assert list(snap.prefix(ns, key)) == model_prefix(frozen, ns, key)

    @rule(entry=consumes(snapshots))
    def release_snapshot(self, entry: tuple[edgestore.Snapshot, Model]) -> None:
        snap, _ = entry
        snap.close()
        self.live_snapshots.remove(snap)

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = self._open()

    @rule()
    def flush(self) -> None:
        self.db.flush()

    @rule()
    def flush_to_segments(self) -> None:
        self.db.flush_to_segments()

    @rule()
    def compact(self) -> None:
        stats = self.db.compact()
        assert stats.jobs_deferred >= 0

    @invariant()
    def sizes_agree(self) -> None:
        total = sum(len(list(self.db.range(ns))) for ns in ("a", "b", "ab"))
        assert total == len(self.model)

    def teardown(self) -> None:
        try:
            self.db.verify()
            for snap in self.live_snapshots:
                snap.close()
            self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


DatabaseMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDatabaseMachine = DatabaseMachine.TestCase
