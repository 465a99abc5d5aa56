"""edgestore vs hnswlib on scikit-learn's digits in one process, warm caches.

    python bench/digits_inprocess.py [--ef 16] [--iters 500] [--rounds 3]

Builds both indexes on the first 1597 rows (M=16, ef_construction=200, one
thread), then, for each round, times ``search_batch`` (edgestore) and
``knn_query`` (hnswlib) on the last 200 rows ``--iters`` times each and prints
the best batch of each as QPS (thread CPU time) and their ratio. Unlike
bench_vectors.py, the libraries share one process and do not take turns with
other processes, so this measures the search path with warm caches only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def best(fn: Callable[[], Any], n: int) -> float:
    b = float("inf")
    for _ in range(n):
        t = time.thread_time()
        fn()
        b = min(b, time.thread_time() - t)
    return b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ef", type=int, default=16)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()

    import edgestore
    import hnswlib
    from sklearn.datasets import load_digits

    d = np.ascontiguousarray(load_digits().data, dtype=np.float32)
    x, q = d[:-200], d[-200:]
    db = edgestore.open(tempfile.mkdtemp(prefix="digits-"), sync="buffered")
    coll = db.vectors("bench", "v", dim=64, metric="l2", m=16, ef_construction=200)
    coll.put_batch([b"%d" % i for i in range(len(x))], x)
    h = hnswlib.Index(space="l2", dim=64)
    h.init_index(max_elements=len(x), M=16, ef_construction=200, random_seed=1)
    h.set_num_threads(1)
    h.add_items(x, np.arange(len(x)), num_threads=1)
    h.set_ef(a.ef)
    for r in range(a.rounds):
        es = len(q) / best(lambda: coll.search_batch(q, 10, ef=a.ef), a.iters)
        hs = len(q) / best(lambda: h.knn_query(q, k=10, num_threads=1), a.iters)
        print(f"round {r + 1}, ef={a.ef}: edgestore {es:,.0f} QPS, hnswlib {hs:,.0f} QPS, ratio {es / hs:.3f}")


if __name__ == "__main__":
    main()
