"""Vector collections: recall, liveness (deletes, overwrites, TTL, snapshots),
persistence of the index, element types, filters and bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import edgestore
from edgestore import Filter, InvalidArgumentError

F32 = npt.NDArray[np.float32]


@pytest.fixture
def bdb(db_path: Path) -> Iterator[edgestore.Database]:
    """A database in buffered mode (bulk loads without an fsync per write)."""
    database = edgestore.open(db_path, sync="buffered")
    try:
        yield database
    finally:
        database.close()


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 20) -> F32:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32) * 4
    which = rng.integers(0, clusters, n)
    x = centers[which] + rng.standard_normal((n, dim)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def keys_of(n: int) -> list[bytes]:
    return [b"v%06d" % i for i in range(n)]


def brute(x: F32, q: F32, k: int, metric: str = "l2") -> tuple[npt.NDArray[np.int64], F32]:
    """Exact neighbours and distances by numpy (independent of the engine)."""
    x64 = x.astype(np.float64)
    q64 = q.astype(np.float64)
    if metric == "l2":
        d = ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    elif metric == "cosine":
        xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        qn = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        d = 1.0 - qn @ xn.T
    else:
        d = -(q64 @ x64.T)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1).astype(np.float32)


def recall(found: list[list[bytes]], truth: npt.NDArray[np.int64], keys: list[bytes]) -> float:
    hit = 0
    for row, t in zip(found, truth):
        want = {keys[i] for i in t}
        hit += len(want.intersection(row))
    return hit / truth.size


# ---------------------------------------------------------------------------
# Recall and distances
# ---------------------------------------------------------------------------


def test_hnsw_recall_against_brute_force(bdb: edgestore.Database) -> None:
    n, dim, k = 3000, 32, 10
    x = clustered(n, dim)
    keys = keys_of(n)
    coll = bdb.vectors("ns", "r", dim=dim, metric="l2", exact_threshold=100)
    coll.put_batch(keys, x)
    q = clustered(100, dim, seed=1)
    truth, _ = brute(x, q, k)
    found, dist = coll.search_batch(q, k, ef=64)
    assert dist.shape == (100, k) and dist.dtype == np.float32
    r = recall(found, truth, keys)
    assert r >= 0.95, r
    st = coll.stats()
    assert st.hnsw_searches == 100 and st.exact_searches == 0 and st.live == n
    # Distances are non-decreasing and agree with a recomputation.
    assert np.all(np.diff(dist, axis=1) >= 0)
    idx = [int(kk[1:]) for kk in found[0]]
    want = ((x[idx] - q[0]) ** 2).sum(1)
    np.testing.assert_allclose(dist[0], want, rtol=1e-4, atol=1e-3)
    # One-query form agrees with the batch form.
    keys1, dist1 = coll.search(q[0], k, ef=64)
    assert keys1 == found[0]
    np.testing.assert_allclose(dist1, dist[0])


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_exact_search_matches_numpy_for_every_metric(bdb: edgestore.Database, metric: str) -> None:
    n, dim, k = 500, 16, 7
    x = clustered(n, dim, seed=2)
    keys = keys_of(n)
    coll = bdb.vectors("ns", f"m-{metric}", dim=dim, metric=metric)
    assert coll.metric == metric
    coll.put_batch(keys, x)
    q = clustered(20, dim, seed=3)
    truth, tdist = brute(x, q, k, metric)
    found, dist = coll.search_batch(q, k, exact=True)
    assert recall(found, truth, keys) == 1.0
    np.testing.assert_allclose(dist, tdist, rtol=1e-4, atol=1e-4)


def test_filtered_search_keeps_recall_at_one_percent(bdb: edgestore.Database) -> None:
    n, dim, k = 5000, 24, 10
    x = clustered(n, dim, seed=4)
    keys = keys_of(n)
    tags = [i % 100 for i in range(n)]
    coll = bdb.vectors("ns", "f", dim=dim, exact_threshold=100)
    coll.put_batch(keys, x, [{"tag": t, "even": i % 2 == 0} for i, t in enumerate(tags)])
    q = clustered(50, dim, seed=5)
    cases: list[tuple[Filter, Callable[[int], bool]]] = [
        (Filter.eq("tag", 7), lambda i: tags[i] == 7),  # 1%
        (Filter.range("tag", 0, 9), lambda i: tags[i] <= 9),  # 10%
        (Filter.eq("even", True), lambda i: i % 2 == 0),  # 50%
    ]
    for f, pick in cases:
        sub = np.array([i for i in range(n) if pick(i)])
        truth_sub, _ = brute(x[sub], q, k)
        truth = sub[truth_sub]
        found, _ = coll.search_batch(q, k, filter=f)
        assert all(pick(int(kk[1:])) for row in found for kk in row)
        assert recall(found, truth, keys) >= 0.95, f


def test_filters_combine(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "combo", dim=2)
    pts: dict[bytes, tuple[list[float], dict[str, int | float | str | bool]]] = {
        b"a/1": ([0.0, 0.0], {"lang": "en", "year": 2020}),
        b"a/2": ([0.1, 0.0], {"lang": "fr", "year": 2021}),
        b"b/1": ([0.2, 0.0], {"lang": "en", "year": 2022, "draft": True}),
        b"b/2": ([0.3, 0.0], {"lang": "de", "score": 0.5}),
    }
    for key, (v, meta) in pts.items():
        coll.put(key, np.array(v, dtype=np.float32), meta)
    q = np.zeros(2, dtype=np.float32)

    def keys(f: Filter) -> list[bytes]:
        return coll.search(q, 10, filter=f)[0]

    assert keys(Filter.key_prefix(b"b/")) == [b"b/1", b"b/2"]
    assert keys(Filter.eq("lang", "en")) == [b"a/1", b"b/1"]
    assert keys(Filter.range("year", min=2021)) == [b"a/2", b"b/1"]
    assert keys(Filter.range("year", 2020, 2022, inclusive=False)) == [b"a/2"]
    assert keys(Filter.exists("draft")) == [b"b/1"]
    assert keys(Filter.eq("lang", "en") & Filter.key_prefix(b"a/")) == [b"a/1"]
    assert keys(Filter.eq("lang", "fr") | Filter.eq("lang", "de")) == [b"a/2", b"b/2"]
    assert keys(~Filter.eq("lang", "en")) == [b"a/2", b"b/2"]
    assert keys(Filter.all_of(Filter.exists("year"), ~Filter.exists("draft"))) == [b"a/1", b"a/2"]
    assert keys(Filter.any_of(Filter.eq("score", 0.5), Filter.eq("year", 2020))) == [
        b"a/1",
        b"b/2",
    ]
    assert keys(Filter.eq("lang", "xx")) == []


# ---------------------------------------------------------------------------
# Dead vectors never leak
# ---------------------------------------------------------------------------


def test_deleted_and_overwritten_vectors_never_appear(bdb: edgestore.Database) -> None:
    n, dim = 3000, 16
    x = clustered(n, dim, seed=6)
    keys = keys_of(n)
    coll = bdb.vectors("ns", "d", dim=dim, exact_threshold=100)
    coll.put_batch(keys, x)
    dead = set(keys[::3])
    for kk in dead:
        coll.delete(kk)
    # Overwrite every 3rd+1 key with a vector far away from everything.
    moved = keys[1::3]
    far = np.full((len(moved), dim), 1000.0, dtype=np.float32)
    far += np.arange(len(moved), dtype=np.float32)[:, None]
    coll.put_batch(moved, far)
    assert len(coll) == n - len(dead)
    q = x[:200]
    for exact in (False, True):
        found, dist = coll.search_batch(q, 50, exact=exact)
        for row, drow in zip(found, dist):
            assert not dead.intersection(row)
            # A moved key may appear only at its new, far distance.
            for kk, d in zip(row, drow):
                if kk in moved:
                    assert d > 1e5
    # get() agrees.
    assert coll.get(keys[0]) is None
    got = coll.get(moved[0])
    assert got is not None
    np.testing.assert_array_equal(got.vector, far[0])
    # Deleting again / deleting a missing key is fine.
    coll.delete(keys[0])
    coll.delete(b"never-there")


def test_ttl_expired_vectors_disappear(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "ttl", dim=4)
    v = np.ones(4, dtype=np.float32)
    coll.put(b"short", v, ttl=1)
    coll.put(b"long", v * 2, ttl=3600)
    coll.put(b"forever", v * 3)
    assert coll.search(v, 10)[0] == [b"short", b"long", b"forever"]
    time.sleep(1.3)
    assert coll.search(v, 10)[0] == [b"long", b"forever"]
    assert coll.search(v, 10, exact=True)[0] == [b"long", b"forever"]
    assert coll.get(b"short") is None
    assert coll.get(b"long") is not None


def test_snapshot_search_sees_the_past(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "snap", dim=3)
    a = np.array([1, 0, 0], dtype=np.float32)
    b = np.array([0, 1, 0], dtype=np.float32)
    coll.put(b"a", a)
    coll.put(b"b", b)
    with bdb.snapshot() as snap:
        coll.delete(b"a")
        coll.put(b"b", np.array([0, 0, 50], dtype=np.float32))
        coll.put(b"c", a)
        keys, dist = coll.search(a, 10, snapshot=snap)
        assert keys == [b"a", b"b"]
        np.testing.assert_allclose(dist, [0.0, 2.0])
        keys2, dist2 = coll.search_batch(np.stack([a, b]), 5, snapshot=snap)
        assert keys2 == [[b"a", b"b"], [b"b", b"a"]]
        got = coll.get(b"b", snapshot=snap)
        assert got is not None
        np.testing.assert_array_equal(got.vector, b)
        assert coll.get(b"c", snapshot=snap) is None
        # Now: a deleted, b moved, c new.
        keys_now, _ = coll.search(a, 10)
        assert keys_now == [b"c", b"b"]
    with pytest.raises(edgestore.ClosedError):
        coll.search(a, 1, snapshot=snap)


def test_a_snapshot_of_another_database_is_refused(bdb: edgestore.Database, tmp_path: Path) -> None:
    coll = bdb.vectors("ns", "mine", dim=3)
    a = np.array([1, 0, 0], dtype=np.float32)
    coll.put(b"a", a)
    # Collection ids depend only on namespace and name: the other database
    # has the same one, so only the database check tells them apart.
    with edgestore.open(tmp_path / "other") as other:
        other.vectors("ns", "mine", dim=3).put(b"b", a)
        with other.snapshot() as foreign:
            with pytest.raises(InvalidArgumentError, match="another database"):
                coll.get(b"b", snapshot=foreign)
            with pytest.raises(InvalidArgumentError, match="another database"):
                coll.search(a, 1, snapshot=foreign)
            with pytest.raises(InvalidArgumentError, match="another database"):
                coll.search_batch(np.stack([a]), 1, snapshot=foreign)
    with bdb.snapshot() as own:
        assert coll.search(a, 1, snapshot=own)[0] == [b"a"]


class _LyingArray(np.ndarray):
    """An ndarray subclass whose array interface points at nothing."""

    @property
    def __array_interface__(self) -> dict[str, Any]:
        return {"typestr": "<f4", "shape": (3,), "data": (8, False), "strides": None, "version": 3}


def test_an_ndarray_subclass_is_read_through_its_real_data(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "sub", dim=3)
    v = np.array([1, 2, 3], dtype=np.float32).view(_LyingArray)
    coll.put(b"v", v)
    got = coll.get(b"v")
    assert got is not None
    np.testing.assert_array_equal(got.vector, [1, 2, 3])
    assert coll.search(v, 1)[0] == [b"v"]


def test_search_batch_bounds_the_queries_it_takes(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "many", dim=2)
    coll.put(b"a", np.array([1, 0], dtype=np.float32))
    too_many = np.zeros(((1 << 20) + 1, 2), dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match="at most 1048576 queries"):
        coll.search_batch(too_many, 1)
    keys, dist = coll.search_batch(too_many[:3], 2)
    assert keys == [[b"a"]] * 3
    assert dist.shape == (3, 2) and np.isinf(dist[:, 1]).all()


# ---------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------


def test_reopen_keeps_the_index(db_path: Path) -> None:
    n, dim = 3000, 16
    x = clustered(n, dim, seed=7)
    keys = keys_of(n)
    q = clustered(20, dim, seed=8)
    with edgestore.open(db_path, sync="buffered") as db:
        coll = db.vectors("ns", "p", dim=dim, metric="cosine", m=8, ef_construction=64,
                          exact_threshold=100)
        coll.put_batch(keys, x, [{"i": i} for i in range(n)])
        coll.delete(keys[5])
        before = coll.search_batch(q, 10)
        assert coll.stats().graph_inserts == n
    with edgestore.open(db_path, sync="buffered") as db:
        assert db.vector_collections("ns") == ["p"]
        coll = db.vectors("ns", "p")  # no options: opens as created
        assert (coll.dim, coll.metric, coll.dtype, coll.m, coll.ef_construction) == (
            dim,
            "cosine",
            "float32",
            8,
            64,
        )
        st = coll.stats()
        assert st.loaded_from_file and not st.rebuilt_from_records
        assert st.graph_inserts == 0 and st.live == n - 1
        after = coll.search_batch(q, 10)
        assert after[0] == before[0]
        np.testing.assert_allclose(after[1], before[1])
        got = coll.get(keys[9])
        assert got is not None and got.metadata == {"i": 9}
        assert coll.get(keys[5]) is None


# ---------------------------------------------------------------------------
# Element types
# ---------------------------------------------------------------------------


def test_float16_and_int8_collections(bdb: edgestore.Database) -> None:
    n, dim = 400, 8
    x = clustered(n, dim, seed=9)
    keys = keys_of(n)
    q = x[:10]
    truth, _ = brute(x, q, 5)

    h = bdb.vectors("ns", "h", dim=dim, dtype="float16")
    assert h.dtype == "float16"
    h.put_batch(keys, x.astype(np.float16))
    assert recall(h.search_batch(q, 5, exact=True)[0], truth, keys) >= 0.9
    got = h.get(keys[3])
    assert got is not None and got.vector.dtype == np.float16
    np.testing.assert_array_equal(got.vector, x[3].astype(np.float16))
    # float32 input is converted to the stored type.
    h.put(b"conv", x[0])
    got = h.get(b"conv")
    assert got is not None
    np.testing.assert_array_equal(got.vector, x[0].astype(np.float16))
    # float16 queries work against any collection.
    assert h.search(q[0].astype(np.float16), 1)[0][0] in (keys[0], b"conv")

    i8 = bdb.vectors("ns", "q", dim=dim, dtype=np.int8)
    assert i8.dtype == "int8"
    data = np.arange(dim, dtype=np.int8)
    i8.put(b"raw", data, scale=0.5)
    got = i8.get(b"raw")
    assert got is not None and got.vector.dtype == np.int8 and got.scale == 0.5
    np.testing.assert_array_equal(got.vector, data)
    i8.put_batch(keys, x)  # float32 quantised per vector
    found, _ = i8.search_batch(q, 5, exact=True)
    assert recall(found, truth, keys) >= 0.8
    keys1, dist1 = i8.search(data.astype(np.float32) * 0.5, 1)
    assert keys1 == [b"raw"] and dist1[0] < 1e-6
    with pytest.raises(TypeError, match="float16"):
        i8.put(b"x", x[0].astype(np.float16))
    with pytest.raises(TypeError, match="int8"):
        h.put(b"x", data)


def test_misaligned_array_is_read_correctly(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "al", dim=4)
    raw = bytearray(1 + 16)
    v = np.array([1.5, -2.0, 3.25, 4.0], dtype=np.float32)
    raw[1:] = v.tobytes()
    mis = np.frombuffer(raw, dtype=np.float32, offset=1)
    assert mis.ctypes.data % 4 != 0
    coll.put(b"k", mis)
    got = coll.get(b"k")
    assert got is not None
    np.testing.assert_array_equal(got.vector, v)
    assert coll.search(mis, 1)[1][0] == 0.0


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_input_gets_clear_errors(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "bad", dim=4, metric="cosine")
    good = np.ones(4, dtype=np.float32)
    coll.put(b"k", good)

    with pytest.raises(InvalidArgumentError, match="dimension 5"):
        coll.put(b"k", np.ones(5, dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="dimension 3"):
        coll.search(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        coll.put(b"k", np.ones(4))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int32"):
        coll.search(np.ones(4, dtype=np.int32))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="numpy array"):
        coll.search([1.0, 2.0, 3.0, 4.0])  # type: ignore[arg-type]
    big_endian = np.ones(4, dtype=">f4")
    with pytest.raises(TypeError, match="little-endian"):
        coll.search(big_endian)
    nan = good.copy()
    nan[2] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        coll.put(b"n", nan)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        coll.search(nan)
    inf = good.copy()
    inf[0] = np.inf
    with pytest.raises(InvalidArgumentError, match="infinite"):
        coll.put(b"n", inf)
    with pytest.raises(InvalidArgumentError, match="zero vector"):
        coll.put(b"z", np.zeros(4, dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="k must be"):
        coll.search(good, 0)
    with pytest.raises(InvalidArgumentError, match="k must be"):
        coll.search(good, -1)
    with pytest.raises(InvalidArgumentError, match="k must be"):
        coll.search(good, edgestore.MAX_K + 1)
    # The largest k is fine and returns what there is.
    keys, dist = coll.search(good, edgestore.MAX_K)
    assert keys == [b"k"] and dist.shape == (1,)
    _, d2 = coll.search_batch(np.stack([good, good]), 3)
    assert d2.shape == (2, 3) and np.isinf(d2[:, 1:]).all()
    with pytest.raises(InvalidArgumentError, match="ef"):
        coll.search(good, 1, ef=0)
    wide = np.ones((4, 8), dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        coll.search(wide[:, ::2][0])
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        coll.put_batch([b"a", b"b", b"c", b"d"], np.asfortranarray(np.ones((4, 4), np.float32) + np.eye(4, dtype=np.float32)))
    with pytest.raises(InvalidArgumentError, match="1-D"):
        coll.search(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="2-D"):
        coll.search_batch(good)
    with pytest.raises(InvalidArgumentError, match="3 keys for 2 vectors"):
        coll.put_batch([b"a", b"b", b"c"], np.ones((2, 4), dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="1 metadata entries"):
        coll.put_batch([b"a", b"b"], np.ones((2, 4), dtype=np.float32), [{"x": 1}])
    with pytest.raises(TypeError, match="metadata field"):
        coll.put(b"m", good, {"x": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError):
        coll.put(b"m", good, {"x": 2**70})
    with pytest.raises(InvalidArgumentError, match="ttl"):
        coll.put(b"t", good, ttl=0)
    with pytest.raises(InvalidArgumentError):
        coll.put(b"x" * 300, good)
    # Nothing above was written.
    assert len(coll) == 1


def test_collection_options_are_checked(bdb: edgestore.Database) -> None:
    with pytest.raises(InvalidArgumentError, match="pass dim"):
        bdb.vectors("ns", "missing")
    with pytest.raises(InvalidArgumentError, match="metric"):
        bdb.vectors("ns", "x", dim=4, metric="hamming")
    with pytest.raises(InvalidArgumentError, match="dtype"):
        bdb.vectors("ns", "x", dim=4, dtype="float64")
    with pytest.raises(InvalidArgumentError, match="dim"):
        bdb.vectors("ns", "x", dim=0)
    with pytest.raises(InvalidArgumentError, match="dim"):
        bdb.vectors("ns", "x", dim=edgestore.MAX_VECTOR_DIM + 1)
    bdb.vectors("ns", "x", dim=4, metric="ip", dtype="float16")
    same = bdb.vectors("ns", "x", dim=4)  # only given options are compared
    assert (same.metric, same.dtype) == ("ip", "float16")
    with pytest.raises(InvalidArgumentError, match="different configuration"):
        bdb.vectors("ns", "x", dim=8)
    with pytest.raises(InvalidArgumentError, match="different configuration"):
        bdb.vectors("ns", "x", metric="l2")
    with pytest.raises(TypeError):
        bdb.vectors(5, "x")  # type: ignore[arg-type]
    # The default name and namespaces as bytes.
    d = bdb.vectors(b"other", dim=2)
    assert d.name == "default" and d.namespace == b"other"


def test_closed_database_raises_closed(db_path: Path) -> None:
    db = edgestore.open(db_path)
    coll = db.vectors("ns", dim=2)
    coll.put(b"a", np.ones(2, dtype=np.float32))
    db.close()
    with pytest.raises(edgestore.ClosedError):
        coll.search(np.ones(2, dtype=np.float32), 1)
    with pytest.raises(edgestore.ClosedError):
        coll.put(b"b", np.ones(2, dtype=np.float32))


def test_vectors_and_key_values_share_a_database(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("docs", "emb", dim=2)
    coll.put(b"d1", np.array([1, 2], dtype=np.float32))
    bdb.put("docs", b"d1", b"text of d1")
    # Vector records are invisible to key-value scans of the namespace.
    assert list(bdb.prefix("docs", b"")) == [(b"d1", b"text of d1")]
    assert coll.search(np.array([1, 2], dtype=np.float32), 1)[0] == [b"d1"]


def test_search_releases_the_gil(bdb: edgestore.Database) -> None:
    n, dim = 20000, 64
    coll = bdb.vectors("ns", "gil", dim=dim)
    coll.put_batch(keys_of(n), clustered(n, dim, seed=10))
    q = clustered(3000, dim, seed=11)
    ticks: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.perf_counter()
        coll.search_batch(q, 10, exact=True)  # one long engine call
        took = time.perf_counter() - start
    finally:
        done.set()
        t.join()
    inside = [x for x in ticks if start <= x <= start + took]
    # A held GIL would freeze the ticker for the whole call.
    assert took > 0.05
    assert len(inside) >= 5, (took, len(inside))


def test_repr_and_stats(bdb: edgestore.Database) -> None:
    coll = bdb.vectors("ns", "rep", dim=3)
    coll.put(b"a", np.ones(3, dtype=np.float32), {"k": "v"})
    assert "dim=3" in repr(coll)
    st = coll.stats()
    assert st.live == 1 and st.nodes == 1 and st.memory_bytes > 0
    assert "live=1" in repr(st)
    got: Any = coll.get(b"a")
    assert "metadata={'k': 'v'}" in repr(got)
    assert "lang" in repr(Filter.eq("lang", "en"))
    coll.persist_index()
    assert coll.stats().persists >= 1
