"""Per-operation cost of edgestore against other embedded key-value stores.

    python bindings/python/bench/bench_kv.py --n 50000

The same workload on each store that is installed (edgestore, rocksdict,
lmdb, plyvel, sqlite3), printed as a markdown table of nanoseconds per
operation. With `--rounds R` every store runs the workload R times, in a
fresh directory each time, the stores taking turns (in a rotated order each
round) so that a drift in the machine's speed falls on all of them alike;
the table shows each store's median round and the range over the rounds:

* put:   N single-key writes in random key order, each its own commit, with
         the store's no-fsync-per-write setting (edgestore sync="buffered",
         RocksDB/LevelDB default WAL without sync, LMDB sync=False,
         SQLite WAL + synchronous=OFF, autocommit).
* get:   N point reads of existing keys in another random order (LMDB reads
         inside one read transaction, its fastest way).
* range: one full ordered scan, cost per (key, value) pair yielded.

Keys are 16 bytes, values --value-size bytes (default 100). Install the peers
with `pip install rocksdict lmdb plyvel`; missing ones are skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Store:
    name: str
    put: Callable[[bytes, bytes], Any]
    # Returns the point-read function (LMDB opens its read transaction here).
    begin_reads: Callable[[], Callable[[bytes], bytes | None]]
    scan: Callable[[], Iterable[Any]]
    close: Callable[[], None]


def open_edgestore(path: Path) -> Store:
    import edgestore

    db = edgestore.open(path, sync="buffered")
    # A namespace handle: its methods take no namespace argument (the
    # name is converted to bytes once), like LMDB's methods of one
    # transaction and plyvel's of one database.
    ns = db.namespace("b")
    return Store(
        "edgestore",
        put=ns.put,
        begin_reads=lambda: ns.get,
        scan=ns.range,
        close=db.close,
    )


def open_rocksdict(path: Path) -> Store:
    from rocksdict import Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True))
    return Store(
        "rocksdict",
        put=db.__setitem__,
        begin_reads=lambda: db.get,
        scan=lambda: db.items(),
        close=db.close,
    )


def open_lmdb(path: Path) -> Store:
    import lmdb

    env = lmdb.open(str(path), map_size=4 << 30, sync=False, metasync=False)
    txns: list[Any] = []

    def put(k: bytes, v: bytes) -> None:
        with env.begin(write=True) as t:
            t.put(k, v)

    def begin_reads() -> Callable[[bytes], bytes | None]:
        txns.append(env.begin())
        get: Callable[[bytes], bytes | None] = txns[-1].get
        return get

    def scan() -> Iterable[tuple[bytes, bytes]]:
        with env.begin() as t:
            yield from t.cursor()

    def close() -> None:
        for t in txns:
            t.abort()
        env.close()

    return Store("lmdb", put=put, begin_reads=begin_reads, scan=scan, close=close)


def open_plyvel(path: Path) -> Store:
    import plyvel

    db = plyvel.DB(str(path), create_if_missing=True)
    return Store(
        "plyvel", put=db.put, begin_reads=lambda: db.get, scan=db.iterator, close=db.close
    )


def open_sqlite(path: Path) -> Store:
    path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path / "kv.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    ins = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
    sel = "SELECT v FROM kv WHERE k = ?"
    execute = conn.execute

    def put(k: bytes, v: bytes) -> None:
        execute(ins, (k, v))

    def get(k: bytes) -> bytes | None:
        row = execute(sel, (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan() -> Iterable[tuple[bytes, bytes]]:
        return execute("SELECT k, v FROM kv ORDER BY k")

    return Store("sqlite3", put=put, begin_reads=lambda: get, scan=scan, close=conn.close)


OPENERS: dict[str, Callable[[Path], Store]] = {
    "edgestore": open_edgestore,
    "rocksdict": open_rocksdict,
    "lmdb": open_lmdb,
    "plyvel": open_plyvel,
    "sqlite3": open_sqlite,
}


def bench(store: Store, keys: list[bytes], value: bytes, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    order = keys[:]
    rng.shuffle(order)
    put = store.put
    t0 = time.perf_counter_ns()
    for k in order:
        put(k, value)
    t1 = time.perf_counter_ns()

    rng.shuffle(order)
    get = store.begin_reads()
    t2 = time.perf_counter_ns()
    for k in order:
        if get(k) is None:
            raise AssertionError(f"{store.name}: missing key {k!r}")
    t3 = time.perf_counter_ns()

    t4 = time.perf_counter_ns()
    count = 0
    for _ in store.scan():
        count += 1
    t5 = time.perf_counter_ns()
    if count != len(keys):
        raise AssertionError(f"{store.name}: scanned {count} of {len(keys)}")
    n = len(keys)
    return {"put": (t1 - t0) / n, "get": (t3 - t2) / n, "range": (t5 - t4) / n}


OPS = ["put", "get", "range"]


def fastest(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The lowest ns per operation among the stores."""
    return {op: min(r[op] for r in results.values()) for op in OPS}


def worst_ratio(results: dict[str, dict[str, float]]) -> float:
    """edgestore's worst ratio to the fastest store over the operations."""
    best = fastest(results)
    return max(results["edgestore"][op] / best[op] for op in OPS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="number of keys")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory")
    ap.add_argument("--only", nargs="*", choices=sorted(OPENERS), default=None)
    ap.add_argument("--rounds", type=int, default=1, help="runs of each store, taking turns")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    keys = [b"key-%011d" % i for i in range(args.n)]
    value = os.urandom(args.value_size)
    scratch = Path(tempfile.mkdtemp(prefix="edgestore-bench-", dir=args.dir))
    rounds: dict[str, list[dict[str, float]]] = {}
    skipped: list[str] = []
    names = list(args.only or OPENERS)
    try:
        for r in range(args.rounds):
            turn = names[r % len(names) :] + names[: r % len(names)]
            for name in turn:
                if name in skipped:
                    continue
                try:
                    store = OPENERS[name](scratch / f"{name}-{r}")
                except ImportError:
                    skipped.append(name)
                    continue
                try:
                    rounds.setdefault(name, []).append(bench(store, keys, value, args.seed + r))
                finally:
                    store.close()
                    shutil.rmtree(scratch / f"{name}-{r}", ignore_errors=True)
                print(f"# {name} round {r + 1} done", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    order = [n for n in names if n in rounds]
    results = {n: {op: statistics.median(x[op] for x in rounds[n]) for op in OPS} for n in order}
    best = fastest(results)
    what = "the median of %d rounds" % args.rounds if args.rounds > 1 else "one round"
    print(
        f"n={args.n} keys of 16 bytes, values of {args.value_size} bytes, "
        f"Python {sys.version.split()[0]}; ns per operation, {what} (x fastest)\n"
    )
    print("| store | " + " | ".join(OPS) + " |")
    print("|---|" + "---:|" * len(OPS))
    for name, res in results.items():
        cells = [f"{res[op]:,.0f} ({res[op] / best[op]:.2f}x)" for op in OPS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.rounds > 1:
        print("\nrange over the rounds (ns):\n")
        print("| store | " + " | ".join(OPS) + " |")
        print("|---|" + "---:|" * len(OPS))
        for name in order:
            cells = [
                f"{min(x[op] for x in rounds[name]):,.0f}-{max(x[op] for x in rounds[name]):,.0f}"
                for op in OPS
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")
    if skipped:
        print(f"\nnot installed, skipped: {', '.join(skipped)}")
    if "edgestore" in results:
        worst = worst_ratio(results)
        verdict = "met" if worst <= 1.2 else "NOT met"
        print(f"\nedgestore worst ratio to the fastest binding: {worst:.2f}x "
              f"(target <= 1.2x: {verdict})")
        if args.rounds > 1:
            # The same verdict per round: how often a single run would meet it.
            met = sum(
                worst_ratio({n: rounds[n][r] for n in order if len(rounds[n]) > r}) <= 1.2
                for r in range(args.rounds)
            )
            print(f"rounds in which it was met: {met} of {args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
