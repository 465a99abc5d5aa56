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

Every method that touches the engine releases the GIL, and one
:class:`Database` may be shared by many threads.

Errors are subclasses of :class:`Error`: :class:`InvalidArgumentError` (also a
``ValueError``), :class:`EdgestoreIOError` (also an ``OSError``),
:class:`CorruptionError`, :class:`LockedError`, :class:`ClosedError` and
:class:`PoisonedError`.

Vector search
-------------
The vector API (``Database.vectors(...)``) is not part of this release. It
will be added by the vector-index issue as a method on :class:`Database`
returning a collection object, next to the key-value methods, with its types
in ``_native.pyi``; nothing in the key-value API will change for it.
"""

from __future__ import annotations

import os
from typing import Literal

from . import _native
from ._native import (
    MAX_KEY_LEN,
    MAX_NAMESPACE_LEN,
    MAX_VALUE_LEN,
    Batch,
    ClosedError,
    CompactionStats,
    CorruptionError,
    Database,
    EdgestoreIOError,
    Error,
    InvalidArgumentError,
    LockedError,
    Metrics,
    PoisonedError,
    RangeIterator,
    Snapshot,
    VerifyReport,
)

__all__ = [
    "MAX_KEY_LEN",
    "MAX_NAMESPACE_LEN",
    "MAX_VALUE_LEN",
    "Batch",
    "ClosedError",
    "CompactionStats",
    "CorruptionError",
    "Database",
    "EdgestoreIOError",
    "Error",
    "InvalidArgumentError",
    "LockedError",
    "Metrics",
    "PoisonedError",
    "RangeIterator",
    "Snapshot",
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
    bloom_bits_per_key: int | None = None,
    cohort_window_secs: int | None = None,
    compaction_write_budget_bytes: int | None = None,
    partial_rewrite_dead_fraction: float | None = None,
    max_permanent_runs: int | None = None,
    max_permanent_space_amp: float | None = None,
    background_compaction_secs: float | None = None,
) -> Database:
    """Open (creating if needed) the database in directory ``path``.

    Options (``None`` keeps the engine default):

    * ``sync``: ``"durable"`` (default) returns from a write once it is
      fsynced; ``"buffered"`` once the OS has it (survives a process crash;
      :meth:`Database.flush` is the barrier against power loss).
    * ``memtable_size_bytes`` (4 MiB): memtable size that triggers a flush.
    * ``segment_size_bytes`` (4 MiB): size cap of one segment file.
    * ``block_size_bytes`` (4 KiB), ``bloom_bits_per_key`` (10).
    * ``cohort_window_secs`` (3600): width of a death-time cohort.
    * ``compaction_write_budget_bytes`` (64 MiB): most bytes one compaction
      cycle may write.
    * ``partial_rewrite_dead_fraction`` (0.5), ``max_permanent_runs`` (4),
      ``max_permanent_space_amp`` (1.0): merge policy.
    * ``background_compaction_secs`` (off): run compaction on a background
      thread at this interval.

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
        bloom_bits_per_key=bloom_bits_per_key,
        cohort_window_secs=cohort_window_secs,
        compaction_write_budget_bytes=compaction_write_budget_bytes,
        partial_rewrite_dead_fraction=partial_rewrite_dead_fraction,
        max_permanent_runs=max_permanent_runs,
        max_permanent_space_amp=max_permanent_space_amp,
        background_compaction_secs=background_compaction_secs,
    )
