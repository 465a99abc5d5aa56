"""One Database shared by many threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import edgestore

WRITERS = 6
PER_WRITER = 400


def test_many_threads_write_and_read(db_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS + 2)

    with edgestore.open(db_path, memtable_size_bytes=32 * 1024) as db:

        def writer(t: int) -> None:
            try:
                start.wait()
                for i in range(PER_WRITER):
                    key = b"t%02d-%05d" % (t, i)
                    if i % 10 == 0:
                        with db.batch() as batch:
                            batch.put("ns", key, key * 4)
                            batch.put("idx", key, b"%d" % t)
                    else:
                        db.put("ns", key, key * 4)
                    # Read-your-own-write from the same thread.
                    assert db.get("ns", key) == key * 4
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def reader() -> None:
            try:
                start.wait()
                for _ in range(50):
                    seen = list(db.range("ns"))
                    keys = [k for k, _ in seen]
                    assert keys == sorted(keys)
                    for k, v in seen:
                        assert v == k * 4
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def maintenance() -> None:
            try:
                start.wait()
                for _ in range(5):
                    db.flush_to_segments()
                    db.compact()
                    db.metrics()
                    time.sleep(0.01)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(WRITERS)]
        threads.append(threading.Thread(target=reader))
        threads.append(threading.Thread(target=maintenance))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        rows = list(db.range("ns"))
        assert len(rows) == WRITERS * PER_WRITER
        assert len(list(db.range("idx"))) == WRITERS * PER_WRITER // 10
        m = db.metrics()
        assert m.user_writes == WRITERS * PER_WRITER + WRITERS * PER_WRITER // 10
        # Durable writers from several threads share fsyncs (group commit).
        assert m.wal_syncs <= m.user_writes

    with edgestore.open(db_path) as db:
        assert len(list(db.range("ns"))) == WRITERS * PER_WRITER
        db.verify()


def test_gil_is_released_during_engine_work(db_path: Path) -> None:
    """Python threads keep running while one long engine call is in flight.

    A native call that held the GIL would stop every other Python thread for
    its whole duration (the interpreter cannot switch threads inside it), so
    the main loop below would show one gap as long as the call.
    """
    value = bytes(32 << 20)  # copied, logged, fsynced and flushed: tens of ms
    span: list[float] = []
    with edgestore.open(db_path) as db:

        def work() -> None:
            t0 = time.perf_counter()
            db.put("ns", b"big", value)
            span.extend([t0, time.perf_counter()])

        ticks: list[float] = []
        th = threading.Thread(target=work)
        th.start()
        while th.is_alive():
            ticks.append(time.perf_counter())
        th.join()
        assert db.get("ns", b"big") == value
    t0, t1 = span
    inside = [t0] + [t for t in ticks if t0 <= t <= t1] + [t1]
    longest_gap = max(b - a for a, b in zip(inside, inside[1:]))
    assert longest_gap < max((t1 - t0) / 2, 0.001), (longest_gap, t1 - t0)


def test_close_while_other_threads_use_it(db_path: Path) -> None:
    db = edgestore.open(db_path, sync="buffered")
    outcomes: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def worker(t: int) -> None:
        started.wait()
        i = 0
        while True:
            try:
                db.put("ns", b"%d-%d" % (t, i), b"v")
                db.get("ns", b"%d-%d" % (t, i))
                for _ in db.range("ns", b"%d-" % t, b"%d." % t):
                    pass
            except edgestore.ClosedError:
                with lock:
                    outcomes.append("closed")
                return
            except BaseException as e:  # noqa: BLE001
                with lock:
                    outcomes.append(repr(e))
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    started.wait()
    time.sleep(0.2)
    db.close()
    for th in threads:
        th.join(timeout=30)
        assert not th.is_alive()
    assert outcomes == ["closed"] * 4
    # Everything acknowledged before close is there after reopening.
    with edgestore.open(db_path) as db2:
        assert len(list(db2.range("ns"))) > 0
