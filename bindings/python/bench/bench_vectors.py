"""Vector search benchmark: edgestore vs hnswlib, faiss and usearch, side by side.

    pip install numpy scikit-learn hnswlib faiss-cpu usearch
    python bench/bench_vectors.py                 # full run: 100k x 128
    python bench/bench_vectors.py --n 5000 --queries 200   # CI size

Datasets: clustered Gaussian synthetic vectors (``--n`` x ``--dim``, 100
clusters, queries drawn from the same distribution) and scikit-learn's digits
(1797 x 64; the last 200 rows are the queries, the rest is indexed). Every
library runs single-threaded at the same HNSW parameters (M, ef_construction)
and is measured in its own forked process (so memory figures are per library:
resident-set growth across the build); the processes take turns, one timed
section at a time round robin, so a busy phase of a shared machine does not
fall on one library only. Ground truth is an exact numpy
computation. Times are CPU time (builds: the process's, ``time.process_time``;
searches: the calling thread's, ``time.thread_time``; see ``clock`` below). QPS is the best of ``--reps`` batch calls per ef (edgestore: ``search_batch``;
hnswlib/faiss/usearch: their batch ``search``), one thread; hnswlib's
filtered search calls a Python predicate per visited node (its API) and is
timed once.

Prints Markdown tables to stdout (and to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Result = dict[str, Any]

# CPU time instead of wall-clock: on a machine shared with other jobs
# wall-clock figures swing with their load; CPU time does not count the time
# other processes hold the cores (it still includes their effect on shared
# caches). Builds: CPU time of the whole process (any helper threads count).
# Searches: CPU time of the calling thread, where every library searches here
# (hnswlib num_threads=1, faiss omp 1 thread, usearch threads=1, edgestore in
# the caller with the GIL released), so a background thread of one library
# (edgestore's engine, OpenMP's idle spinning) is not charged to the queries.
clock = time.process_time
qclock = time.thread_time


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def synthetic(n: int, nq: int, dim: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clusters = 100
    centers = rng.standard_normal((clusters, dim)).astype(np.float32) * 3.0
    x = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    q = centers[rng.integers(0, clusters, nq)] + rng.standard_normal((nq, dim)).astype(np.float32)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(q, np.float32)


def digits(nq: int = 200) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = np.ascontiguousarray(load_digits().data, dtype=np.float32)
    return np.ascontiguousarray(d[:-nq]), np.ascontiguousarray(d[-nq:])


def ground_truth(x: np.ndarray, q: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    """Exact k nearest (squared L2) row indices of x (restricted to ids)."""
    sub = x if ids is None else x[ids]
    xn = (sub.astype(np.float64) ** 2).sum(1)
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), 64):
        qq = q[s : s + 64].astype(np.float64)
        d = xn[None, :] - 2 * qq @ sub.T.astype(np.float64) + (qq**2).sum(1)[:, None]
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1)
        out[s : s + 64] = np.take_along_axis(part, order, 1)
    return out if ids is None else ids[out]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hit = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hit / truth.size


def _no_gate() -> None:
    pass


# Called before every timed section. In a library's child process it waits for
# the parent's turn signal, so that only one library runs at a time and the
# libraries' timed sections interleave (see run_all).
gate: Callable[[], None] = _no_gate


def best_of(reps: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of `reps` timed calls (the machine may be shared) and the last result."""
    best, out = float("inf"), None
    for _ in range(reps):
        gate()
        t = qclock()
        out = fn()
        best = min(best, qclock() - t)
    return best, out


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_bandwidth() -> dict[str, float]:
    """Single-thread numpy copy and sum over 512 MiB arrays (GB/s, best of 5)."""
    n = 128 * 1024 * 1024  # float32 elements = 512 MiB
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    best_copy = best_read = float("inf")
    for _ in range(5):
        t = clock()
        np.copyto(dst, src)
        best_copy = min(best_copy, clock() - t)
        t = clock()
        src.sum(dtype=np.float32)
        best_read = min(best_read, clock() - t)
    del src, dst
    gc.collect()
    return {
        "copy_gbs": 2 * n * 4 / best_copy / 1e9,  # bytes read + written
        "read_gbs": n * 4 / best_read / 1e9,
    }


# ---------------------------------------------------------------------------
# Libraries (each function runs in a forked child)
# ---------------------------------------------------------------------------


def run_edgestore(x: np.ndarray, q: np.ndarray, a: argparse.Namespace, efs: list[int],
                  filters: list[tuple[str, np.ndarray]]) -> Result:
    import edgestore

    d = tempfile.mkdtemp(prefix="vbench-")
    try:
        db = edgestore.open(d, sync="buffered", memtable_size_bytes=64 << 20)
        coll = db.vectors("bench", "v", dim=x.shape[1], metric="l2", m=a.m,
                          ef_construction=a.ef_construction)
        keys = [b"%d" % i for i in range(len(x))]
        meta = [{"tag": int(t)} for t in a.tags[: len(x)]] if filters else None
        gate()
        base = rss()
        t = clock()
        step = 10000
        for s in range(0, len(x), step):
            coll.put_batch(keys[s : s + step], x[s : s + step],
                           meta[s : s + step] if meta else None)
        build = clock() - t
        mem = rss() - base
        st = coll.stats()
        out: Result = {"build_s": build, "mem_bytes": mem, "index_bytes": st.memory_bytes,
                       "curve": []}

        def ids(rows: list[list[bytes]]) -> np.ndarray:
            o = np.full((len(rows), a.k), -1, dtype=np.int64)
            for i, r in enumerate(rows):
                o[i, : len(r)] = [int(kk) for kk in r]
            return o

        for ef in efs:
            coll.search_batch(q[: min(20, len(q))], a.k, ef=ef)  # warm up
            el, (rows, _) = best_of(a.reps, lambda: coll.search_batch(q, a.k, ef=ef))
            out["curve"].append((ef, ids(rows), len(q) / el))
        # One call per query (Python call overhead included), default ef=64.
        el, single = best_of(a.reps, lambda: [coll.search(qq, a.k, ef=64)[0] for qq in q])
        out["single_qps"] = len(q) / el
        out["single_ids"] = ids(single)
        # Exact scan.
        nq = min(len(q), a.exact_queries)
        coll.search_batch(q[:2], a.k, exact=True)
        el, (rows, _) = best_of(a.reps, lambda: coll.search_batch(q[:nq], a.k, exact=True))
        out["exact"] = (ids(rows), nq / el, nq * x.nbytes / el / 1e9)
        # Filtered search (planner picks exact or HNSW), default ef.
        out["filtered"] = []
        for name, _ids in filters:
            f = (edgestore.Filter.eq("tag", 0) if name == "1%" else
                 edgestore.Filter.range("tag", max=int(name[:-1]) - 1))
            coll.search_batch(q[:5], a.k, filter=f)
            before = coll.stats()
            el, (rows, _) = best_of(a.reps, lambda: coll.search_batch(q, a.k, filter=f))
            after = coll.stats()
            plan = "hnsw" if after.hnsw_searches > before.hnsw_searches else "exact"
            out["filtered"].append((name, ids(rows), len(q) / el, plan))
        # Reopen: the index file is loaded, not rebuilt.
        db.close()
        gate()
        t = time.perf_counter()  # wall clock: this one includes reading files
        db = edgestore.open(d, sync="buffered")
        coll = db.vectors("bench", "v")
        st = coll.stats()
        out["reopen_s"] = time.perf_counter() - t
        out["reopen_loaded"] = st.loaded_from_file and st.graph_inserts == 0
        db.close()
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_hnswlib(x: np.ndarray, q: np.ndarray, a: argparse.Namespace, efs: list[int],
                filters: list[tuple[str, np.ndarray]]) -> Result:
    import hnswlib

    gate()
    base = rss()
    t = clock()
    idx = hnswlib.Index(space="l2", dim=x.shape[1])
    idx.init_index(max_elements=len(x), M=a.m, ef_construction=a.ef_construction, random_seed=1)
    idx.set_num_threads(1)
    idx.add_items(x, np.arange(len(x)), num_threads=1)
    build = clock() - t
    out: Result = {"build_s": build, "mem_bytes": rss() - base, "curve": []}
    for ef in efs:
        idx.set_ef(ef)
        idx.knn_query(q[:20], k=a.k, num_threads=1)
        el, (labels, _) = best_of(a.reps, lambda: idx.knn_query(q, k=a.k, num_threads=1))
        out["curve"].append((ef, labels.astype(np.int64), len(q) / el))
    idx.set_ef(64)
    out["filtered"] = []
    for name, ids in filters:
        allowed = np.zeros(len(x), dtype=bool)
        allowed[ids] = True
        gate()
        t = clock()
        try:
            labels, _ = idx.knn_query(q, k=a.k, num_threads=1, filter=lambda i: bool(allowed[i]))
            res = labels.astype(np.int64)
        except RuntimeError:  # fewer than k found: hnswlib refuses the batch
            res = np.full((len(q), a.k), -1, dtype=np.int64)
            for i, qq in enumerate(q):
                try:
                    lab, _ = idx.knn_query(qq, k=a.k, num_threads=1,
                                           filter=lambda j: bool(allowed[j]))
                    res[i] = lab[0]
                except RuntimeError:
                    pass
        out["filtered"].append((name, res, len(q) / (clock() - t), "hnsw+callback"))
    return out


def run_faiss_hnsw(x: np.ndarray, q: np.ndarray, a: argparse.Namespace, efs: list[int],
                   filters: list[tuple[str, np.ndarray]]) -> Result:
    import faiss

    faiss.omp_set_num_threads(1)
    gate()
    base = rss()
    t = clock()
    idx = faiss.IndexHNSWFlat(x.shape[1], a.m)
    idx.hnsw.efConstruction = a.ef_construction
    idx.add(x)
    build = clock() - t
    out: Result = {"build_s": build, "mem_bytes": rss() - base, "curve": []}
    for ef in efs:
        idx.hnsw.efSearch = ef
        idx.search(q[:20], a.k)
        el, (_, labels) = best_of(a.reps, lambda: idx.search(q, a.k))
        out["curve"].append((ef, labels.astype(np.int64), len(q) / el))
    out["filtered"] = []
    for name, ids in filters:
        sel = faiss.IDSelectorBatch(ids.astype(np.int64))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=64)
        el, (_, labels) = best_of(a.reps, lambda: idx.search(q, a.k, params=params))
        out["filtered"].append((name, labels.astype(np.int64), len(q) / el,
                                "hnsw+IDSelector"))
    return out


def run_faiss_flat(x: np.ndarray, q: np.ndarray, a: argparse.Namespace, efs: list[int],
                   filters: list[tuple[str, np.ndarray]]) -> Result:
    import faiss

    faiss.omp_set_num_threads(1)
    gate()
    base = rss()
    t = clock()
    idx = faiss.IndexFlatL2(x.shape[1])
    idx.add(x)
    build = clock() - t
    out: Result = {"build_s": build, "mem_bytes": rss() - base, "curve": []}
    idx.search(q[:5], a.k)
    el, (_, labels) = best_of(a.reps, lambda: idx.search(q, a.k))
    out["curve"].append(("exact", labels.astype(np.int64), len(q) / el))
    # One query per call: a scan per query (faiss uses BLAS for batches of >= 20).
    nq = min(len(q), a.exact_queries)
    el, _ = best_of(a.reps, lambda: [idx.search(qq[None, :], a.k) for qq in q[:nq]])
    out["exact_single"] = (nq / el, nq * x.nbytes / el / 1e9)
    out["filtered"] = []
    return out


def run_usearch(x: np.ndarray, q: np.ndarray, a: argparse.Namespace, efs: list[int],
                filters: list[tuple[str, np.ndarray]]) -> Result:
    from usearch.index import Index

    gate()
    base = rss()
    t = clock()
    idx = Index(ndim=x.shape[1], metric="l2sq", dtype="f32", connectivity=a.m,
                expansion_add=a.ef_construction)
    idx.add(np.arange(len(x)), x, threads=1)
    build = clock() - t
    out: Result = {"build_s": build, "mem_bytes": rss() - base, "curve": []}
    for ef in efs:
        idx.expansion_search = ef
        idx.search(q[:20], a.k, threads=1)
        el, m = best_of(a.reps, lambda: idx.search(q, a.k, threads=1))
        out["curve"].append((ef, np.asarray(m.keys).astype(np.int64), len(q) / el))
    out["filtered"] = []
    return out


LIBS: dict[str, Callable[..., Result]] = {
    "edgestore": run_edgestore,
    "hnswlib": run_hnswlib,
    "faiss-hnsw": run_faiss_hnsw,
    "faiss-flat": run_faiss_flat,
    "usearch": run_usearch,
}


def run_all(jobs: list[tuple[str, Callable[..., Result], tuple[Any, ...]]]) -> dict[str, Result]:
    """Runs every library in its own forked process, one timed section at a
    time, round robin: each child stops at every `gate()` until the parent
    lets it go, so slow phases of a shared machine hit every library alike."""
    ctx = mp.get_context("fork")
    conns: dict[str, Any] = {}
    procs = []
    for name, fn, args in jobs:
        parent, child = ctx.Pipe()

        def target(fn: Callable[..., Result] = fn, args: tuple[Any, ...] = args,
                   child: Any = child) -> None:
            global gate

            def wait_turn() -> None:
                child.send(("ready", None))
                child.recv()

            gate = wait_turn
            try:
                res: tuple[str, Any] = ("ok", fn(*args))
            except Exception as e:  # report, do not hang the parent
                res = ("err", f"{type(e).__name__}: {e}")
            child.send(("done", res))

        p = ctx.Process(target=target)
        p.start()
        procs.append(p)
        conns[name] = parent
    state = {name: conn.recv() for name, conn in conns.items()}
    results: dict[str, Result] = {}
    while state:
        for name in list(state):
            kind, val = state[name]
            if kind == "done":
                status, res = val
                results[name] = res if status == "ok" else {"error": res}
                del state[name]
                continue
            conns[name].send("go")
            state[name] = conns[name].recv()
    for p in procs:
        p.join()
    return results


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def bench_dataset(title: str, x: np.ndarray, q: np.ndarray, a: argparse.Namespace,
                  libs: list[str], with_filters: bool) -> list[str]:
    efs = [int(e) for e in a.ef.split(",")]
    lines = [f"### {title}: {len(x)} x {x.shape[1]} float32, {len(q)} queries, k={a.k}, "
             f"M={a.m}, ef_construction={a.ef_construction}", ""]
    truth = ground_truth(x, q, a.k)
    filters: list[tuple[str, np.ndarray]] = []
    ftruth: dict[str, np.ndarray] = {}
    if with_filters:
        rng = np.random.default_rng(7)
        a.tags = rng.integers(0, 100, len(x))
        for name, pred in [("50%", a.tags < 50), ("10%", a.tags < 10), ("1%", a.tags == 0)]:
            ids = np.flatnonzero(pred)
            filters.append((name, ids))
            ftruth[name] = ground_truth(x, q, a.k, ids)
    print(f"  {title}: {', '.join(libs)} ...", file=sys.stderr, flush=True)
    res = run_all([(lib, LIBS[lib], (x, q, a, efs, filters)) for lib in libs])
    for lib in libs:
        if "error" in res[lib]:
            print(f"  {lib} failed: {res[lib]['error']}", file=sys.stderr)

    lines += ["| library | build s | memory MiB (RSS growth) | ef | recall@10 | QPS |",
              "|---|---:|---:|---:|---:|---:|"]
    for lib in libs:
        r = res[lib]
        if "error" in r:
            lines.append(f"| {lib} | failed: {r['error']} | | | | |")
            continue
        mem = f"{r['mem_bytes'] / 2**20:.1f}"
        if "index_bytes" in r:
            mem += f" (index {r['index_bytes'] / 2**20:.1f})"
        for i, (ef, found, qps) in enumerate(r["curve"]):
            head = f"| {lib} | {r['build_s']:.2f} | {mem} |" if i == 0 else "| | | |"
            lines.append(f"{head} {ef} | {recall(found, truth):.4f} | {qps:,.0f} |")
    lines.append("")
    e = res.get("edgestore", {})
    if "curve" in e:
        lines.append(f"edgestore one `search()` call per query (ef=64): "
                     f"{e['single_qps']:,.0f} QPS, recall@10 {recall(e['single_ids'], truth):.4f}; "
                     f"reopen + load index {e['reopen_s']:.3f} s wall (loaded without rebuild: "
                     f"{e['reopen_loaded']})")
        lines.append("")
    # Who reaches recall >= 0.95, and at what QPS.
    lines += ["Best QPS at recall@10 >= 0.95:", ""]
    for lib in libs:
        r = res[lib]
        if "curve" not in r:
            continue
        ok = [(qps, ef) for ef, found, qps in r["curve"] if recall(found, truth) >= 0.95]
        lines.append(f"* {lib}: " + (f"{max(ok)[0]:,.0f} QPS (ef={max(ok)[1]})" if ok
                                     else "never reaches 0.95 on this curve"))
    lines.append("")
    if "exact" in e:
        found, qps, gbs = e["exact"]
        line = (f"Exact scan, edgestore (`exact=True`, one thread): {qps:,.1f} QPS, "
                f"{gbs:.2f} GB/s of f32 vectors, recall@10 {recall(found, truth[: len(found)]):.4f}")
        ff = res.get("faiss-flat", {})
        if "exact_single" in ff:
            line += (f"; faiss IndexFlatL2 one query per call: {ff['exact_single'][0]:,.1f} QPS, "
                     f"{ff['exact_single'][1]:.2f} GB/s")
        lines.append(line)
        lines.append("")
    if filters:
        lines += ["Filtered search (metadata tag; default ef=64 where applicable):", "",
                  "| library | selectivity | recall@10 | QPS | plan |", "|---|---:|---:|---:|---|"]
        for lib in libs:
            for name, found, qps, plan in res[lib].get("filtered", []):
                lines.append(f"| {lib} | {name} | {recall(found, ftruth[name]):.4f} | "
                             f"{qps:,.0f} | {plan} |")
        lines.append("")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="synthetic vectors (default 100000)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--exact-queries", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default="16,32,64,128,256", help="search ef values")
    p.add_argument("--libs", default=",".join(LIBS), help="comma-separated subset")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (best is kept)")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--out", help="also write the Markdown here")
    a = p.parse_args()
    libs = [x for x in a.libs.split(",") if x]
    for lib in libs:
        if lib not in LIBS:
            p.error(f"unknown library {lib}")

    lines = ["## Vector search", "",
             f"Command: `python bench/bench_vectors.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
             f"{platform.processor() or platform.platform()}; Python {platform.python_version()}, "
             f"numpy {np.__version__}. Every library single-threaded; times are CPU time "
             f"(builds: process, searches: calling thread), best of {a.reps} runs.", ""]
    bw = memory_bandwidth()
    lines += [f"Memory bandwidth, one core (numpy, 512 MiB arrays, best of 5): copy "
              f"{bw['copy_gbs']:.1f} GB/s (read + write), sum {bw['read_gbs']:.1f} GB/s (read).", ""]
    x, q = synthetic(a.n, a.queries, a.dim)
    lines += bench_dataset("Synthetic clustered", x, q, a, libs, with_filters=True)
    if not a.skip_digits:
        dx, dq = digits()
        lines += bench_dataset("scikit-learn digits", dx, dq, a, libs, with_filters=False)
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
