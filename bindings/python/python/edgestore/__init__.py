"""edgestore: a local-first, embedded key-value database.

Quick start::

    import edgestore

    with edgestore.open("/tmp/demo") as db:
        db.put("sensors", b"t1", b"21.5")
        db.put("cache", b"session", b"abc", ttl=3600)
        assert db.get("sensors", b"t1") == b"21.5"
        for key, value in db.prefix("sensors", b"t"):
            print(key, value)

Namespaces are ``str`` (stored as UTF-8) or ``bytes``; keys and values are any
bytes-like object (``bytes``, ``bytearray``, ``memoryview``, numpy arrays, ...)
and always come back as ``bytes``.

``db.namespace(ns)`` returns a :class:`Namespace`, a handle with the same
keyed methods minus the namespace argument (``put``, ``get``, ``delete``,
``range``, ``prefix``) and a mapping interface; it is also the cheapest way
to call them in a loop (the name is converted to bytes once)::

    sensors = db.namespace("sensors")
    sensors[b"t1"] = b"21.5"           # put without TTL
    assert sensors[b"t1"] == b"21.5"   # KeyError when missing or expired
    assert b"t1" in sensors
    del sensors[b"t1"]                 # no error when missing, like delete()

Every method that touches the engine releases the GIL, and one
:class:`Database` may be shared by many threads.

Errors are subclasses of :class:`Error`: :class:`InvalidArgumentError` (also a
``ValueError``), :class:`EdgestoreIOError` (also an ``OSError``),
:class:`CorruptionError`, :class:`LockedError`, :class:`ClosedError` and
:class:`PoisonedError`.

Sync
----
``db.merkle(ns)`` (or ``snapshot.merkle(ns)``) hashes a namespace's live pairs
into a :class:`MerkleTree` of ``16 ** depth`` leaves (``depth=3`` by
default). Two replicas compare ``root``; where it differs they compare
``level(1)``, then the children of differing nodes, down to the leaves, and
send each other only the pairs whose ``MerkleTree.leaf_of(key)`` is a
differing leaf: ``db.merkle_leaves(ns, leaves)`` iterates exactly those
(one pass over the namespace, the leaf test done in the engine). The
hashes do not depend on write order, TTLs, flushes or compaction (wire
format: ``core/FORMAT.md``)::

    mine = db.merkle("sensors")
    send_to_peer(mine.to_bytes())                      # your transport
    theirs = edgestore.MerkleTree.from_bytes(receive_from_peer())
    leaves = mine.differing_leaves(theirs)
    to_send = list(db.merkle_leaves("sensors", leaves))  # pairs of those leaves

Vector search
-------------
``db.vectors(ns, name, dim=..., metric=..., dtype=...)`` opens (creating when
``dim`` is given) a :class:`VectorCollection` of embeddings stored as records
next to the key-value data (same WAL, TTLs, snapshots)::

    import numpy as np

    coll = db.vectors("docs", "emb", dim=128, metric="cosine", dtype="float32")
    coll.put(b"doc/1", np.random.rand(128).astype(np.float32), {"lang": "en"})
    coll.put_batch([b"doc/2", b"doc/3"], np.random.rand(2, 128).astype(np.float32))
    keys, distances = coll.search(query, k=10, filter=Filter.eq("lang", "en"))
    keys2d, dist2d = coll.search_batch(queries, k=10, ef=128)

Vectors are numpy arrays of float32, float16 or int8, read in place when
C-contiguous; other inputs raise ``TypeError`` (not an array, wrong dtype) or
:class:`InvalidArgumentError` (not C-contiguous, wrong dimension, NaN, bad
``k``). Distances are float32 arrays: squared L2, ``1 - cos`` or ``-dot``.
"""

from __future__ import annotations

import os
from typing import Literal

from . import _native
from ._native import (
    MAX_K,
    MAX_KEY_LEN,
    MAX_NAMESPACE_LEN,
    MAX_VALUE_LEN,
    MAX_VECTOR_DIM,
    MAX_VECTOR_KEY_LEN,
    Batch,
    ClosedError,
    CompactionStats,
    CorruptionError,
    Database,
    EdgestoreIOError,
    Error,
    Filter,
    InvalidArgumentError,
    LockedError,
    MerkleTree,
    Metrics,
    Namespace,
    PoisonedError,
    RangeIterator,
    Snapshot,
    StoredVector,
    VectorCollection,
    VectorStats,
    VerifyReport,
)

__all__ = [
    "MAX_K",
    "MAX_KEY_LEN",
    "MAX_NAMESPACE_LEN",
    "MAX_VALUE_LEN",
    "MAX_VECTOR_DIM",
    "MAX_VECTOR_KEY_LEN",
    "Batch",
    "ClosedError",
    "CompactionStats",
    "CorruptionError",
    "Database",
    "EdgestoreIOError",
    "Error",
    "Filter",
    "InvalidArgumentError",
    "LockedError",
    "MerkleTree",
    "Metrics",
    "Namespace",
    "PoisonedError",
    "RangeIterator",
    "Snapshot",
    "StoredVector",
    "VectorCollection",
    "VectorStats",
    "VerifyReport",
    "open",
]


def open(
    path: str | os.PathLike[str],
    *,
    sync: Literal["durable", "buffered"] = "durable",
    memtable_size_bytes: int | None = None,
    segment_size_bytes: int | None = None,
    block_size_bytes: int | None = None,
    block_cache_bytes: int | None = None,
    mmap_reads: bool | None = None,
    bloom_bits_per_key: int | None = None,
    cohort_window_secs: int | None = None,
    compaction_write_budget_bytes: int | None = None,
    partial_rewrite_dead_fraction: float | None = None,
    max_permanent_runs: int | None = None,
    max_permanent_space_amp: float | None = None,
    background_compaction_secs: float | None = 1.0,
    wal_recycle_files: int | None = None,
) -> Database:
    """Open (creating if needed) the database in directory ``path``.

    Options (``None`` keeps the engine default, except for
    ``background_compaction_secs``, where it turns background compaction off):

    * ``sync``: ``"durable"`` (default) returns from a write once it is
      fsynced; ``"buffered"`` once the OS has it (survives a process crash;
      :meth:`Database.flush` is the barrier against power loss).
    * ``memtable_size_bytes`` (4 MiB): memtable size that triggers a flush.
    * ``segment_size_bytes`` (4 MiB): size cap of one segment file.
    * ``block_size_bytes`` (4 KiB), ``bloom_bits_per_key`` (10).
    * ``block_cache_bytes`` (8 MiB): segment blocks kept in memory for reads;
      0 turns the cache off.
    * ``mmap_reads`` (``True`` on 64-bit platforms): read segment files
      through a read-only memory map (no system call or copy per read)
      instead of ``pread``. The cost: an I/O error while reading a segment,
      or a segment file truncated by another program, raises SIGBUS, which
      kills the process, instead of :class:`EdgestoreIOError`. Pass ``False``
      where the storage is expected to fail reads.
    * ``cohort_window_secs`` (3600): width of a death-time cohort.
    * ``compaction_write_budget_bytes`` (64 MiB): bytes compaction may write
      per cycle on average; a job starts while budget is left and may
      overdraw it, later cycles repay. 0: only drop expired files.
    * ``partial_rewrite_dead_fraction`` (0.5), ``max_permanent_runs`` (4),
      ``max_permanent_space_amp`` (1.0): merge policy.
    * ``background_compaction_secs`` (1.0): run a compaction cycle on a
      background thread at this interval, so expired segment files are
      dropped and sorted runs merged (reads and scans stay fast) without
      calling :meth:`Database.compact`. ``None`` turns it off; then only
      :meth:`Database.compact` reclaims space or merges runs.
    * ``wal_recycle_files`` (1): obsolete write-ahead log files kept and
      written over as later logs, so a durable write syncs blocks already
      allocated instead of growing a file (faster on ext4). 0 deletes them,
      e.g. on copy-on-write file systems (btrfs, ZFS), where it gains nothing.

    An unknown option raises ``TypeError``; a bad value raises
    :class:`InvalidArgumentError`; a database held by another process or
    handle raises :class:`LockedError`.
    """
    return _native.open(
        os.fspath(path),
        sync=sync,
        memtable_size_bytes=memtable_size_bytes,
        segment_size_bytes=segment_size_bytes,
        block_size_bytes=block_size_bytes,
        block_cache_bytes=block_cache_bytes,
        mmap_reads=mmap_reads,
        bloom_bits_per_key=bloom_bits_per_key,
        cohort_window_secs=cohort_window_secs,
        compaction_write_budget_bytes=compaction_write_budget_bytes,
        partial_rewrite_dead_fraction=partial_rewrite_dead_fraction,
        max_permanent_runs=max_permanent_runs,
        max_permanent_space_amp=max_permanent_space_amp,
        background_compaction_secs=background_compaction_secs,
        wal_recycle_files=wal_recycle_files,
    )
