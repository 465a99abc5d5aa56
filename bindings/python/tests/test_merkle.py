"""Merkle trees for sync: layout, the wire format against an independent
implementation (the ``blake3`` package), a sync driven by differing leaves,
and bad arguments."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from blake3 import blake3

import edgestore


def derive(context: str, data: bytes) -> bytes:
    return blake3(data, derive_key_context=context).digest()


def reference_tree(pairs: dict[bytes, bytes], depth: int) -> list[list[bytes]]:
    """The tree of core/FORMAT.md ("Merkle trees"), levels from the root."""

    def leaf_of(key: bytes) -> int:
        word: int = struct.unpack("<I", derive("edgestore merkle leaf index v1", key)[:4])[0]
        return word >> (32 - 4 * depth)

    leaves = [bytes(32)] * 16**depth
    for k in sorted(pairs):
        v = pairs[k]
        e = derive(
            "edgestore merkle entry v1",
            struct.pack("<I", len(k)) + k + struct.pack("<Q", len(v)) + v,
        )
        i = leaf_of(k)
        leaves[i] = derive("edgestore merkle leaf v1", leaves[i] + e)
    levels = [leaves]
    while len(levels[0]) > 1:
        below = levels[0]
        levels.insert(
            0,
            [
                derive("edgestore merkle node v1", b"".join(below[i : i + 16]))
                for i in range(0, len(below), 16)
            ],
        )
    return levels


def test_known_answer(tmp_path: Path) -> None:
    with edgestore.open(tmp_path / "db", sync="buffered") as db:
        db.put("ns", b"k1", b"v1")
        db.put("ns", b"k2", b"")
        t = db.merkle("ns", depth=1)
    assert t.root.hex() == "3996ef4e76afe7279a9fb4ba4f626b5759b4845afbd8f29c811192f38e3c0395"
    assert (t.depth, t.entries) == (1, 2)
    assert "3996ef4e" in repr(t)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_every_node_matches_an_independent_implementation(tmp_path: Path, depth: int) -> None:
    rng = random.Random(depth)
    pairs = {rng.randbytes(rng.randint(0, 24)): rng.randbytes(rng.randint(0, 300)) for _ in range(1500)}
    with edgestore.open(tmp_path / "db", sync="buffered", memtable_size_bytes=64 << 10) as db:
        for k, v in pairs.items():
            db.put(b"ns", k, v)
            db.put(b"other", k, b"not hashed")
        db.put("ns", b"deleted", b"x", ttl=None)
        db.delete("ns", b"deleted")
        pairs.pop(b"deleted", None)
        t = db.merkle(b"ns", depth=depth)
    want = reference_tree(pairs, depth)
    assert t.entries == len(pairs)
    assert t.root == want[0][0]
    for level in range(depth + 1):
        assert t.level(level) == want[level]
    assert t.node(depth, 16**depth - 1) == want[depth][-1]
    for k in list(pairs)[:50]:
        d: int = struct.unpack("<I", derive("edgestore merkle leaf index v1", k)[:4])[0]
        assert edgestore.MerkleTree.leaf_of(k, depth) == d >> (32 - 4 * depth)


def test_replicas_sync_through_differing_leaves(tmp_path: Path) -> None:
    keys = [b"key-%05d" % i for i in range(3000)]
    with (
        edgestore.open(tmp_path / "a", sync="buffered") as a,
        edgestore.open(tmp_path / "b", sync="buffered", memtable_size_bytes=32 << 10) as b,
    ):
        for k in keys:
            a.put("ns", k, k[::-1])
        for k in reversed(keys):
            b.put("ns", k, b"stale")
            b.put("ns", k, k[::-1], ttl=86400)
        b.compact()
        assert a.merkle("ns") == b.merkle("ns")

        with a.snapshot() as snap:
            before = snap.merkle("ns")
            a.put("ns", keys[7], b"changed")
            a.delete("ns", keys[1234])
            a.put("ns", b"new-key", b"added")
            assert snap.merkle("ns") == before
        # What b sends a: its nodes as bytes, and its entry count.
        mine, sent_tree = a.merkle("ns"), b.merkle("ns")
        wire = sent_tree.to_bytes()
        assert len(wire) == 32 * (16**4 - 1) // 15 and wire[:32] == sent_tree.root
        theirs = edgestore.MerkleTree.from_bytes(wire, 3, sent_tree.entries)
        assert theirs == sent_tree and theirs.entries == 3000
        assert edgestore.MerkleTree.from_bytes(bytearray(wire)) == sent_tree
        assert mine != theirs and mine.root != theirs.root
        leaves = mine.differing_leaves(theirs)
        assert leaves == sorted({edgestore.MerkleTree.leaf_of(k) for k in (keys[7], keys[1234], b"new-key")})
        want = set(leaves)
        # Each side reads only its pairs of those leaves; the engine's leaf
        # test agrees with leaf_of on every key.
        send = list(a.merkle_leaves("ns", leaves))
        held = [k for k, _ in b.merkle_leaves("ns", iter(leaves))]
        assert send == [(k, v) for k, v in a.range("ns") if edgestore.MerkleTree.leaf_of(k) in want]
        assert held == [k for k, _ in b.range("ns") if edgestore.MerkleTree.leaf_of(k) in want]
        assert 2 <= len(send) < 30
        sent = {k for k, _ in send}
        with b.batch() as batch:
            for k in held:
                if k not in sent:
                    batch.delete("ns", k)
            for k, v in send:
                batch.put("ns", k, v)
        assert b.merkle("ns") == mine


def test_merkle_leaves(tmp_path: Path) -> None:
    rng = random.Random(5)
    with edgestore.open(tmp_path / "db", sync="buffered", memtable_size_bytes=32 << 10) as db:
        pairs = {rng.randbytes(rng.randint(0, 20)): rng.randbytes(10) for _ in range(2000)}
        for k, v in pairs.items():
            db.put("ns", k, v)
            db.put("other", k, b"another namespace")
        db.put("ns", b"gone", b"x")
        db.delete("ns", b"gone")
        pairs.pop(b"gone", None)
        for depth in (1, 2, 3, 4):
            leaves = [rng.randrange(16**depth) for _ in range(7)] + [16**depth - 1]
            want = sorted(
                (k, v) for k, v in pairs.items() if edgestore.MerkleTree.leaf_of(k, depth) in leaves
            )
            assert list(db.merkle_leaves("ns", leaves, depth=depth)) == want
            # Any iterable of ints, repeats allowed.
            assert list(db.merkle_leaves(b"ns", tuple(leaves) * 2, depth)) == want
        assert list(db.merkle_leaves("ns", range(16), depth=1)) == sorted(pairs.items())
        assert list(db.merkle_leaves("ns", [])) == []
        assert list(db.merkle_leaves("none", range(16), depth=1)) == []
        # A snapshot's pairs are the data its tree hashed.
        k0 = min(pairs)
        leaf = edgestore.MerkleTree.leaf_of(k0, 2)
        with db.snapshot() as snap:
            db.delete("ns", k0)
            assert (k0, pairs[k0]) in list(snap.merkle_leaves("ns", [leaf], depth=2))
            assert k0 not in dict(db.merkle_leaves("ns", [leaf], depth=2))
        # Bad leaves and depths: InvalidArgumentError or TypeError, nothing read.
        for bad_leaf, depth in ((16, 1), (4096, 3), (-1, 3), (2**70, 3)):
            with pytest.raises(edgestore.InvalidArgumentError, match="leaf"):
                db.merkle_leaves("ns", [0, bad_leaf], depth=depth)
        for depth in (0, 5, -1):
            with pytest.raises(edgestore.InvalidArgumentError, match="depth"):
                db.merkle_leaves("ns", [0], depth=depth)
        for bad in (5, None, "ab", b"\x01", bytearray(b"\x01"), [1.0], [True], ["1"]):
            with pytest.raises(TypeError):
                db.merkle_leaves("ns", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            db.merkle_leaves(None, [0])  # type: ignore[arg-type]
    with pytest.raises(edgestore.ClosedError):
        db.merkle_leaves("ns", [0])


def test_bad_arguments(tmp_path: Path) -> None:
    db = edgestore.open(tmp_path / "db", sync="buffered")
    t = db.merkle("ns", depth=2)
    assert t.entries == 0 and t.root == t.level(0)[0]
    assert t.level(2) == [bytes(32)] * 256
    for depth in (0, 5, -1, 2**40):
        with pytest.raises(edgestore.InvalidArgumentError, match="depth"):
            db.merkle("ns", depth=depth)
        with pytest.raises(edgestore.InvalidArgumentError, match="depth"):
            edgestore.MerkleTree.leaf_of(b"k", depth)
    with pytest.raises(edgestore.InvalidArgumentError):
        t.node(3, 0)
    with pytest.raises(edgestore.InvalidArgumentError):
        t.node(2, 256)
    with pytest.raises(edgestore.InvalidArgumentError):
        t.level(3)
    for bad in (-1, 2**40):
        with pytest.raises(edgestore.InvalidArgumentError):
            t.level(bad)
        with pytest.raises(edgestore.InvalidArgumentError):
            t.node(bad, 0)
        with pytest.raises(edgestore.InvalidArgumentError):
            t.node(0, bad)
    wire = t.to_bytes()
    assert edgestore.MerkleTree.from_bytes(wire, 2) == t
    with pytest.raises(edgestore.InvalidArgumentError, match="273 nodes"):
        edgestore.MerkleTree.from_bytes(wire[:-32], 2)
    with pytest.raises(edgestore.InvalidArgumentError, match="whole number"):
        edgestore.MerkleTree.from_bytes(wire[:-1], 2)
    with pytest.raises(edgestore.InvalidArgumentError, match="17 nodes, not 273"):
        edgestore.MerkleTree.from_bytes(wire, 1)
    with pytest.raises(edgestore.InvalidArgumentError, match="negative"):
        edgestore.MerkleTree.from_bytes(wire, 2, -1)
    with pytest.raises(TypeError):
        edgestore.MerkleTree.from_bytes("text", 2)  # type: ignore[arg-type]
    with pytest.raises(edgestore.InvalidArgumentError):
        t.differing_leaves(db.merkle("ns", depth=1))
    with pytest.raises(TypeError):
        edgestore.MerkleTree.leaf_of("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.merkle(123)  # type: ignore[arg-type]
    db.close()
    with pytest.raises(edgestore.ClosedError):
        db.merkle("ns")
