"""Equal scores come by id in every part (issue #12): ``search_sparse`` and ``search_text`` answer the
reference's top k sorted by (score descending, id ascending), whatever the order of the memtable's rows
(insertion order, shuffled here) and whatever the split into segments and memtable: before a flush,
after it, after a reopen (the memtable replayed from the WAL), after a compaction.

Many rows share a score: their sparse vectors (small integer values, so every sum is exact) and their
documents are drawn from a few each. Ids are decimal strings without padding, so id order ("10" < "9")
is neither insertion nor numeric order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proximadb.storage.engine import Engine
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index

# a few sparse vectors and documents, picked with these weights: most rows tie with several others
VECTORS = [([1], [1.0]), ([1, 2], [1.0, 1.0]), ([2], [2.0]), ([1, 3], [1.0, 5.0]), ([3], [1.0]), ([2, 4], [1.0, 2.0])]
TEXTS = ["apple", "apple banana", "banana", "apple apple cherry", "cherry", "banana apple"]
WEIGHTS = [0.3, 0.3, 0.15, 0.1, 0.1, 0.05]
QUERY = ([1, 2, 4], [1.0, 1.0, 0.5])
TEXT_QUERY = "apple banana"


def _sparse_want(rows: dict[str, int], k: int, allowed: set[str] | None) -> list[tuple[str, float]]:
    q = dict(zip(*QUERY, strict=True))
    scores = {}
    for id_, v in rows.items():
        idx, val = VECTORS[v]
        if (allowed is None or id_ in allowed) and set(idx) & set(q):
            scores[id_] = sum(x * q.get(i, 0.0) for i, x in zip(idx, val, strict=True))
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def _text_want(rows: dict[str, int], k: int, allowed: set[str] | None) -> list[tuple[str, float]]:
    """Every live row's score by one BM25 index over the live documents (its own cut is not used)."""
    ids = sorted(rows)
    index = Bm25Index.build([TEXTS[rows[i]] for i in ids], Analyzer(stopwords="english"))
    found, scores = index.search(TEXT_QUERY, len(ids))
    every = {ids[r]: float(s) for r, s in zip(found.tolist(), scores.tolist(), strict=True)}
    hits = [(i, s) for i, s in every.items() if allowed is None or i in allowed]
    return sorted(hits, key=lambda item: (-item[1], item[0]))[:k]


def _check(col: Any, rows: dict[str, int], k: int) -> list[Any]:
    """search_sparse and search_text are the references' top k, ids in order; returns what hybrid_search
    answers (its lists are those two: it must not change either)."""
    for flt, allowed in ((None, None), ({"g": 1}, {i for i in rows if int(i) % 3 == 1})):
        got = [(h["id"], h["score"]) for h in col.search_sparse("t", *QUERY, k=k, filter=flt)]
        assert got == _sparse_want(rows, k, allowed)
        got = [(h["id"], h["score"]) for h in col.search_text(TEXT_QUERY, k, filter=flt)]
        want = _text_want(rows, k, allowed)
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5)
    hybrid = col.hybrid_search(text=TEXT_QUERY, sparse={"name": "t", "indices": QUERY[0], "values": QUERY[1]}, k=k,
                               depth=k)
    return [(h["id"], round(h["score"], 9)) for h in hybrid]


def _records(ids: list[str], rows: dict[str, int]) -> list[dict[str, Any]]:
    return [{"id": i, "vector": [1.0, 0.0], "metadata": {"document": TEXTS[rows[i]], "g": int(i) % 3},
             "sparse_vectors": {"t": {"indices": VECTORS[rows[i]][0], "values": VECTORS[rows[i]][1]}}} for i in ids]


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 120), k=st.integers(1, 12), flushed=st.floats(0, 1))
def test_ties_come_by_id_before_and_after_a_flush_and_a_reopen(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                               n: int, k: int, flushed: float) -> None:
    rng = np.random.default_rng(seed)
    order = [str(i) for i in rng.permutation(n).tolist()]  # insertion order
    rows = {i: int(rng.choice(len(VECTORS), p=WEIGHTS)) for i in order}
    first = int(flushed * n)  # rows flushed into a segment before the rest arrive in the memtable
    path = tmp_path_factory.mktemp("ties")
    with Engine.open(path, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", dimension=2, sparse_vectors={"t": {}})
        col = engine.collection("c")
        if first:
            col.upsert(_records(order[:first], rows))
            col.flush()
        for start in range(first, n, 17):  # a few batches
            col.upsert(_records(order[start:start + 17], rows))
        hybrid = _check(col, rows, k)
    with Engine.open(path, fsync="never", auto_compact=False) as engine:  # a fresh Collection: the WAL replayed
        col = engine.collection("c")
        assert _check(col, rows, k) == hybrid
        col.flush()
        assert _check(col, rows, k) == hybrid
        col.compact()
        assert _check(col, rows, k) == hybrid


def test_many_ties_in_the_memtable_widen_the_cut(tmp_path: Path) -> None:
    """400 identical rows in the memtable, inserted in descending id order: the cut asks the kernel for
    more rows until every tie is in (k + 1, then 4x as many), and the answer is the smallest ids."""
    rows = {str(i): 1 for i in range(400)}
    with Engine.open(tmp_path, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", dimension=2, sparse_vectors={"t": {}})
        col = engine.collection("c")
        col.upsert(_records(sorted(rows, reverse=True), rows))
        for k in (1, 5, 64, 399, 400):
            _check(col, rows, k)
            assert [h["id"] for h in col.search_sparse("t", [1], [1.0], k=k)] == sorted(rows)[:k]


# Dense vectors: a few small-integer vectors, so every squared distance and inner product is exact in float32
DENSE = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [2, 0, 0, 1], [0, 0, 0, 1]]
DENSE_QUERY = [1.0, 1.0, 0.0, 0.0]


def _dense_want(rows: dict[str, int], k: int, allowed: set[str] | None, metric: str) -> list[str]:
    q = np.asarray(DENSE_QUERY)
    def dist(v: int) -> float:
        x = np.asarray(DENSE[v], dtype=np.float64)
        return float(((x - q) ** 2).sum()) if metric == "euclidean" else -float(x @ q)
    keep = [i for i in rows if allowed is None or i in allowed]
    return sorted(keep, key=lambda i: (dist(rows[i]), i))[:k]


def _check_dense(col: Any, rows: dict[str, int], k: int, metric: str) -> None:
    """The exact dense search (a flat collection, or exact=True) cuts and orders equal distances by id,
    alone and in a batch (m >= 4 takes the batch kernels), with a filter (the planner's rows) and without."""
    for flt, allowed in ((None, None), ({"g": 1}, {i for i in rows if int(i) % 3 == 1})):
        want = _dense_want(rows, k, allowed, metric)
        assert [h["id"] for h in col.search(DENSE_QUERY, k, filter=flt, exact=True)] == want
        batch = col.search_batch([DENSE_QUERY] * 4, k, filter=flt, exact=True)
        assert all([h["id"] for h in hits] == want for hits in batch)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 120), k=st.integers(1, 12), flushed=st.floats(0, 1),
       metric=st.sampled_from(["euclidean", "dot_product"]), deleted=st.floats(0, 0.3))
def test_dense_exact_ties_come_by_id(tmp_path_factory: pytest.TempPathFactory, seed: int, n: int, k: int,
                                     flushed: float, metric: str, deleted: float) -> None:
    """Exact dense search (memtable scan, segment scan, the planner's rows, deleted rows masked) gives the
    reference's top k by (distance, id) before a flush, after it, after a reopen and after a compaction."""
    rng = np.random.default_rng(seed)
    order = [str(i) for i in rng.permutation(n).tolist()]
    rows = {i: int(rng.choice(len(DENSE), p=WEIGHTS)) for i in order}
    first = int(flushed * n)
    path = tmp_path_factory.mktemp("dense-ties")

    def records(ids: list[str]) -> list[dict[str, Any]]:
        return [{"id": i, "vector": DENSE[rows[i]], "metadata": {"g": int(i) % 3}} for i in ids]

    with Engine.open(path, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", dimension=4, distance_metric=metric)
        col = engine.collection("c")
        if first:
            col.upsert(records(order[:first]))
            col.flush()
        for start in range(first, n, 17):
            col.upsert(records(order[start:start + 17]))
        gone = [i for i in order if rng.random() < deleted]
        col.delete(gone)
        for i in gone:
            del rows[i]
        _check_dense(col, rows, k, metric)
    with Engine.open(path, fsync="never", auto_compact=False) as engine:
        col = engine.collection("c")
        _check_dense(col, rows, k, metric)
        col.flush()
        _check_dense(col, rows, k, metric)
        col.compact()
        _check_dense(col, rows, k, metric)


def test_many_equal_vectors_in_the_memtable_widen_the_cut(tmp_path: Path) -> None:
    """300 equal vectors in the memtable and 100 in a segment, ids interleaved: every k gives the smallest ids."""
    ids = [str(i) for i in range(400)]
    with Engine.open(tmp_path, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", dimension=4, distance_metric="euclidean")
        col = engine.collection("c")
        col.upsert([{"id": i, "vector": DENSE[1]} for i in ids[::4]])
        col.flush()
        col.upsert([{"id": i, "vector": DENSE[1]} for i in reversed(ids) if int(i) % 4])
        for k in (1, 5, 64, 399, 400):
            assert [h["id"] for h in col.search(DENSE_QUERY, k)] == sorted(ids)[:k]


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 30),
       metric=st.sampled_from(["euclidean", "cosine", "dot_product"]), dups=st.booleans())
def test_one_query_merges_parts_as_a_batch_does(tmp_path_factory: pytest.TempPathFactory, seed: int, k: int,
                                                metric: str, dups: bool) -> None:
    """A single query's hits over two segments and the memtable (merged in lists, search.py's _merge_one) are
    a batch's (merged in numpy): same ids, same order, same scores; with repeated vectors, ties too."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((90, 6)).astype(np.float32)
    if dups:
        vectors[rng.integers(0, 90, 40)] = vectors[0]
    ids = [str(i) for i in rng.permutation(90).tolist()]
    with Engine.open(tmp_path_factory.mktemp("merge-one"), fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", dimension=6, distance_metric=metric)
        col = engine.collection("c")
        for start, stop in ((0, 30), (30, 60), (60, 90)):
            col.upsert([{"id": i, "vector": v} for i, v in zip(ids[start:stop], vectors[start:stop].tolist(),
                                                                strict=True)])
            if stop < 90:
                col.flush()
        queries = np.concatenate([vectors[:2], rng.standard_normal((3, 6)).astype(np.float32)])
        batch = col.search_batch(queries, k)
        for q, hits in zip(queries, batch, strict=True):
            alone = col.search(q, k)
            assert [(h["id"], h["score"]) for h in alone] == [(h["id"], h["score"]) for h in hits]


class _Owner:
    """What a hit reads of its part when neither vectors nor metadata are asked for."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.expires_at = None


def _padded(q: np.ndarray, base: np.ndarray, width: int, metric: str,
            mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    from proximadb.index import distance

    rows, d = distance.topk(q, base, width, metric, mask=mask)
    idx = np.full((1, width), -1, np.int64)
    dist = np.full((1, width), np.inf, np.float32)
    idx[0, : len(rows)] = rows
    dist[0, : len(rows)] = d
    return idx, dist


@pytest.mark.parametrize("seed", range(4))
def test_the_list_merge_is_the_numpy_merge(seed: int) -> None:
    """search.py's two merges of one query's candidates (_merge_one: lists, _merge_many: numpy) on candidate
    lists shaped as _search_raw makes them: segment parts (width k, ids in row order), memtable exact parts
    (width k + 1, with an Again), approximate parts (width k), fewer allowed rows than the width (-1 / +inf
    padding) and many exact ties (small integer vectors)."""
    from proximadb.index import distance
    from proximadb.storage.search import Again, SearchPath

    rng = np.random.default_rng(seed)
    merger = object.__new__(SearchPath)
    compared = 0
    for _ in range(400):
        dim, k = int(rng.integers(1, 4)), int(rng.integers(1, 12))
        metric = str(rng.choice(["l2", "dot", "cosine"]))
        merger._metric = metric  # type: ignore[assignment]
        q = rng.integers(-2, 3, (1, dim)).astype(np.float32)
        q[0, 0] = q[0, 0] or 1.0
        if metric == "cosine":
            q = distance.normalize_rows(q)
        cand: list[Any] = []
        first = 0
        for _part in range(int(rng.integers(2, 5))):
            n = int(rng.integers(1, 15))
            base = rng.integers(-2, 3, (n, dim)).astype(np.float32)
            if metric == "cosine":
                base[~base.any(axis=1), 0] = 1.0
                base = distance.normalize_rows(base)
            ids = [f"{i:05d}" for i in rng.permutation(np.arange(first, first + n))]
            first += n
            mask = (rng.random(n) < 0.7).astype(np.uint8) if rng.random() < 0.5 else None
            kind = int(rng.integers(0, 3))
            if kind == 0:  # a segment: rows in id order
                cand.append((*_padded(q[0], base, k, metric, mask), _Owner(sorted(ids)), None))
            elif kind == 1:  # a memtable's exact scan: one more, and its pass up to a distance
                cand.append((*_padded(q[0], base, k + 1, metric, mask), _Owner(ids),
                             Again(metric, q, base, None, mask)))  # type: ignore[arg-type]
            else:  # an approximate part
                cand.append((*_padded(q[0], base, k, metric, mask), _Owner(ids), None))
        one = merger._merge_one(cand, k, False, False)
        many = merger._merge_many(cand, k, 1, False, False)[0]
        assert one == many, (metric, k)
        compared += 1
    assert compared == 400


@pytest.mark.parametrize("filtered", [False, True])
def test_ties_in_the_rows_a_memtable_graph_lacks_come_by_id(tmp_path: Path, filtered: bool) -> None:
    """Rows past the memtable graph are scanned exactly: equal distances there come by id too, not by
    insertion order (20 equal vectors inserted in descending id order, the graph stopped before them)."""
    rng = np.random.default_rng(0)
    with Engine.open(tmp_path, fsync="never", memtable_index_rows=50, auto_compact=False) as engine:
        engine.create_collection("c", dimension=4, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        col.upsert([{"id": f"a{i:02d}", "vector": v, "metadata": {"g": 0}}
                    for i, v in enumerate(rng.standard_normal((60, 4)).tolist())])
        assert col.memtable_indexer.wait_idle(120)
        col.memtable_indexer.stop()
        q = [5.0, 5.0, 5.0, 5.0]
        col.upsert([{"id": f"z{i:02d}", "vector": q, "metadata": {"g": i % 2}} for i in reversed(range(20))])
        assert col.memtable.graph is not None and col.memtable.graph.indexed == 60
        flt = {"g": 1} if filtered else None
        want = [f"z{i:02d}" for i in range(20) if not filtered or i % 2][:3]
        assert [h["id"] for h in col.search(np.array(q, np.float32), 3, filter=flt)] == want
        batch = col.search_batch(np.array([q] * 4, np.float32), 3, filter=flt)
        assert all([h["id"] for h in hits] == want for hits in batch)
