"""Where bench_kv.py's `get` time goes: the same workload for edgestore
alone, the read loop timed in tenths, with the engine's state after each.

    python bindings/python/bench/get_phases.py [--n 50000] [--sleep SECONDS]

Prints, per tenth of the reads, ns per get and `[f<flushes> c<compactions>
r<sorted runs> <memtable KiB>K]`: whether the reads were served by the
memtable or by segments, and whether a flush or merge landed meanwhile.
`--sleep` waits between the writes and the reads (the pending flush and
a compaction cycle then finish first). `--floor` also times a get of one
key on a warm cache (200,000 calls, best of 5), for edgestore (through
`db.get` and through a namespace handle) and, when installed, LMDB: the
cost of the call itself.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import edgestore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--floor", action="store_true")
    args = ap.parse_args()
    keys = [b"key-%011d" % i for i in range(args.n)]
    value = os.urandom(100)
    with tempfile.TemporaryDirectory(prefix="edgestore-get-") as d:
        with edgestore.open(Path(d) / "db", sync="buffered") as db:
            rng = random.Random(args.seed)
            order = keys[:]
            rng.shuffle(order)
            put = db.put
            for k in order:
                put("b", k, value)
            rng.shuffle(order)
            time.sleep(args.sleep)
            get = db.get
            tenth = max(1, args.n // 10)
            out = []
            for part in range(0, args.n, tenth):
                ks = order[part : part + tenth]
                t = time.perf_counter_ns()
                for k in ks:
                    if get("b", k) is None:
                        raise AssertionError(f"missing key {k!r}")
                ns = (time.perf_counter_ns() - t) / len(ks)
                m = db.metrics()
                out.append(
                    f"{ns:.0f}[f{m.flushes} c{m.compactions} r{m.sorted_runs} "
                    f"{m.memtable_bytes >> 10}K]"
                )
            print(" ".join(out))
            if args.floor:
                print(f"edgestore one-key get: {best_ns(lambda: get('b', keys[0])):.0f} ns")
                ns_get = db.namespace("b").get
                handle_ns = best_ns(lambda: ns_get(keys[0]))
                print(f"edgestore one-key get, namespace handle: {handle_ns:.0f} ns")
        if args.floor:
            lmdb_floor(Path(d) / "lmdb", keys[0], value)


def best_ns(call: Callable[[], object], calls: int = 200_000) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter_ns() - t) / calls)
    return best


def lmdb_floor(path: Path, key: bytes, value: bytes) -> None:
    try:
        import lmdb
    except ImportError:
        return
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as t:
        t.put(key, value)
    txn = env.begin()
    get = txn.get
    print(f"lmdb one-key get: {best_ns(lambda: get(key)):.0f} ns")
    txn.abort()
    env.close()


if __name__ == "__main__":
    main()
