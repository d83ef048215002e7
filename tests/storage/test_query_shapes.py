"""score_threshold, per-request oversampling, search_groups and recommend (storage/query_shapes.py)
against brute force over the live rows, across memtable + segments, with filters and after deletes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proximadb.errors import ValidationError, VectorNotFoundError
from proximadb.storage.engine import Engine

DIM = 6
METRICS = ["euclidean", "cosine", "dot_product"]
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def build(engine: Engine, metric: str, seed: int, algorithm: str = "flat") -> tuple[Any, dict[str, np.ndarray],
                                                                                   dict[str, dict[str, Any]]]:
    """Three parts (two segments, a memtable), some rows deleted; the live vectors and metadata."""
    rng = np.random.default_rng(seed)
    engine.create_collection("c", DIM, distance_metric=metric, indexing_algorithm=algorithm)
    col = engine.collection("c")
    vectors: dict[str, np.ndarray] = {}
    meta: dict[str, dict[str, Any]] = {}
    for part in range(3):
        ids = [f"p{part}-{i}" for i in range(40)]
        vs = rng.standard_normal((40, DIM)).astype(np.float32)
        ms: list[dict[str, Any]] = []
        for _i in range(40):
            m: dict[str, Any] = {"n": int(rng.integers(0, 4))}
            kind = int(rng.integers(0, 5))
            if kind == 1:
                m["g"] = f"s{int(rng.integers(0, 6))}"
            elif kind == 2:
                m["g"] = int(rng.integers(0, 6))
            elif kind == 3:
                m["g"] = [f"s{int(x)}" for x in rng.integers(0, 6, size=2)]
            elif kind == 4:
                m["g"] = 1.5  # a float: in no group
            ms.append(m)
        col.insert(ids=ids, vectors=vs, metadatas=ms)
        vectors.update(zip(ids, vs, strict=True))
        meta.update(zip(ids, ms, strict=True))
        if part < 2:
            col.flush()
    gone = sorted(rng.choice(sorted(vectors), size=15, replace=False).tolist())
    col.delete(gone)
    for g in gone:
        del vectors[g], meta[g]
    return col, vectors, meta


def brute(metric: str, vectors: dict[str, np.ndarray], q: np.ndarray) -> list[tuple[str, float, float]]:
    """(id, score, distance) of every row, best first, as the engine scores a hit."""
    out = []
    for i, v in vectors.items():
        v64, q64 = v.astype(np.float64), q.astype(np.float64)
        if metric == "euclidean":
            d = float(np.linalg.norm(v64 - q64))
            out.append((i, 1 / (1 + d), d))
        elif metric == "cosine":
            s = float(v64 @ q64 / np.linalg.norm(v64) / np.linalg.norm(q64))
            out.append((i, s, 1 - s))
        else:
            s = float(v64 @ q64)
            out.append((i, s, -s))
    return sorted(out, key=lambda t: t[2])


def similarity(metric: str, a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "euclidean":
        return 1 / (1 + float(np.linalg.norm(a64 - b64)))
    if metric == "cosine":
        return float(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64))
    return float(a64 @ b64)


@SETTINGS
@given(seed=st.integers(0, 10_000), metric=st.sampled_from(METRICS), k=st.integers(1, 30),
       quantile=st.floats(0.0, 1.0), filtered=st.booleans())
def test_score_threshold_keeps_exactly_the_good_enough_hits(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                           metric: str, k: int, quantile: float,
                                                           filtered: bool) -> None:
    with Engine.open(tmp_path_factory.mktemp("t"), fsync="never") as engine:
        col, vectors, meta = build(engine, metric, seed)
        q = np.random.default_rng(seed + 1).standard_normal(DIM).astype(np.float32)
        allowed = {i: v for i, v in vectors.items() if not filtered or meta[i]["n"] == 1}
        ref = brute(metric, allowed, q)
        values = [t[2] if metric == "euclidean" else t[1] for t in ref]
        threshold = float(np.quantile(values, quantile))
        got = col.search(q, k, filter={"n": 1} if filtered else None, score_threshold=threshold)
        if metric == "euclidean":
            want = [t for t in ref if t[2] <= threshold + 1e-5][:k]
            assert all(h["distance"] <= threshold for h in got)
        else:
            want = [t for t in ref if t[1] >= threshold - 1e-5][:k]
            assert all(h["score"] >= threshold for h in got)
        assert abs(len(got) - len(want)) <= 1  # a row within float32 rounding of the threshold
        assert np.allclose([h["score"] for h in got], [t[1] for t in want][: len(got)], atol=1e-4)


def test_score_threshold_on_text_and_hybrid_and_bad_thresholds(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        docs = ["vector search", "vector graph search", "python", "graph database", "vector"]
        col.insert(ids=[str(i) for i in range(5)], vectors=np.eye(DIM)[:5],
                   metadatas=[{"document": d} for d in docs])
        every = col.search_text("vector search", 10)
        cut = every[1]["score"]
        assert col.search_text("vector search", 10, score_threshold=cut) == every[:2]
        fused = col.hybrid_search(np.eye(DIM)[0], "vector search", 10)
        assert col.hybrid_search(np.eye(DIM)[0], "vector search", 10, score_threshold=fused[2]["score"]) == fused[:3]
        for bad, call in [(-0.5, lambda t: col.search(np.ones(DIM), 3, score_threshold=t)),
                          (-1.0, lambda t: col.search_text("vector", 3, score_threshold=t)),
                          (float("nan"), lambda t: col.search(np.ones(DIM), 3, score_threshold=t)),
                          ("x", lambda t: col.hybrid_search(np.ones(DIM), "v", 3, score_threshold=t))]:
            with pytest.raises(ValidationError, match="score_threshold"):
                call(bad)
        with pytest.raises(ValidationError, match="oversampling"):
            col.search(np.ones(DIM), 3, oversampling=0.5)
        # unquantized: oversampling is accepted and changes nothing
        assert col.search(np.ones(DIM), 3, oversampling=8.0) == col.search(np.ones(DIM), 3)


def test_cosine_threshold_may_be_negative(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2, distance_metric="cosine")
        col = engine.collection("c")
        col.insert(ids=["a", "b", "c"], vectors=[[1, 0], [0, 1], [-1, 0.1]])
        assert [h["id"] for h in col.search([1, 0], 3, score_threshold=-0.5)] == ["a", "b"]


@pytest.mark.parametrize("qtype", ["binary", "pq"])
def test_per_request_oversampling_on_a_quantized_collection(tmp_path: Path, qtype: str) -> None:
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((30, 32)).astype(np.float32)
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 32, indexing_algorithm="hnsw", index_params={
            "M": 8, "ef_construction": 64, "quantization": {"type": qtype, "oversampling": 1.0}})
        col = engine.collection("c")
        col.insert(ids=[str(i) for i in range(len(rows))], vectors=rows)
        col.flush()
        assert col.wait_for_indexes(timeout=120)
        assert col.segments[0].index is not None

        def recall(**kw: Any) -> float:
            found = 0
            for q in queries:
                truth = {h["id"] for h in col.search(q, 10, exact=True)}
                found += len(truth & {h["id"] for h in col.search(q, 10, ef=10, **kw)})
            return found / (10 * len(queries))

        base, wide = recall(), recall(oversampling=20.0)
        assert wide > base and wide >= 0.9, (base, wide)
        hits = col.search(queries[0], 10, ef=10, oversampling=20.0)
        assert len(hits) == 10 and [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)


@SETTINGS
@given(seed=st.integers(0, 10_000), metric=st.sampled_from(METRICS), limit=st.integers(1, 8),
       size=st.integers(1, 4), filtered=st.booleans())
def test_search_groups_equals_grouping_the_brute_force_ranking(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                               metric: str, limit: int, size: int,
                                                               filtered: bool) -> None:
    with Engine.open(tmp_path_factory.mktemp("g"), fsync="never") as engine:
        col, vectors, meta = build(engine, metric, seed)
        q = np.random.default_rng(seed + 2).standard_normal(DIM).astype(np.float32)
        allowed = {i: v for i, v in vectors.items() if not filtered or meta[i]["n"] != 0}
        want: dict[tuple[str, Any], list[str]] = {}
        for i, _, _ in brute(metric, allowed, q):
            value = meta[i].get("g")
            keys = ([(type(value).__name__, value)] if isinstance(value, str | int) else
                    [("str", v) for v in dict.fromkeys(value)] if isinstance(value, list) else [])
            for key in keys:
                if key not in want and len(want) == limit:
                    continue
                members = want.setdefault(key, [])
                if len(members) < size:
                    members.append(i)
        got = col.search_groups(q, "g", limit=limit, group_size=size,
                                filter={"n": {"$ne": 0}} if filtered else None)
        assert [(type(g["value"]).__name__, g["value"]) for g in got] == list(want)
        assert [[h["id"] for h in g["hits"]] for g in got] == list(want.values())


def test_search_groups_leaves_out_rows_without_the_field_and_checks_its_input(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=["a", "b", "c", "d"], vectors=[[0, 0], [0.1, 0], [0.2, 0], [5, 5]],
                   metadatas=[{}, {"g": "x"}, {"g": "x"}, {"g": "y"}])
        got = col.search_groups([0, 0], "g", limit=5, group_size=1, include_metadata=False)
        assert got == [{"value": "x", "hits": [{"id": "b", "score": got[0]["hits"][0]["score"],
                                                "distance": got[0]["hits"][0]["distance"]}]},
                       {"value": "y", "hits": [got[1]["hits"][0]]}]
        assert "metadata" not in got[1]["hits"][0]
        assert col.search_groups([0, 0], "g", limit=5, score_threshold=1.0) == [
            {"value": "x", "hits": [col.search([0, 0], 2)[1]]}]
        for kwargs, field in [({"group_size": 0}, "group_size"), ({"limit": 0}, "limit"),
                              ({"limit": 1000, "group_size": 50}, "max_k"), ({"group_by": ""}, "group_by")]:
            args = {"group_by": "g", **kwargs}
            with pytest.raises(ValidationError, match=field):
                col.search_groups([0, 0], **args)


@SETTINGS
@given(seed=st.integers(0, 10_000), metric=st.sampled_from(METRICS), k=st.integers(1, 15),
       n_pos=st.integers(1, 3), n_neg=st.integers(0, 2), filtered=st.booleans())
def test_recommend_both_strategies_equal_brute_force(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                     metric: str, k: int, n_pos: int, n_neg: int,
                                                     filtered: bool) -> None:
    with Engine.open(tmp_path_factory.mktemp("r"), fsync="never") as engine:
        col, vectors, meta = build(engine, metric, seed)
        rng = np.random.default_rng(seed + 3)
        ids = sorted(vectors)
        picked = rng.choice(ids, size=n_pos + n_neg, replace=False).tolist()
        pos: list[Any] = picked[:n_pos]
        neg: list[Any] = picked[n_pos:]
        if n_pos > 1:  # a raw vector among the examples too
            pos[-1] = rng.standard_normal(DIM).astype(np.float32)
        examples = {e for e in pos + neg if isinstance(e, str)}
        flt = {"n": {"$in": [1, 2]}} if filtered else None
        allowed = {i: v for i, v in vectors.items()
                   if i not in examples and (not filtered or meta[i]["n"] in (1, 2))}

        def vec(e: Any) -> np.ndarray:
            v = vectors[e] if isinstance(e, str) else e
            return v / np.linalg.norm(v) if metric == "cosine" else v

        # average_vector: a search with 2 avg(pos) - avg(neg)
        avg = np.mean([vec(e) for e in pos], axis=0)
        query = avg if not neg else 2 * avg - np.mean([vec(e) for e in neg], axis=0)
        want = brute(metric, allowed, query.astype(np.float32))[:k]
        got = col.recommend(pos, neg, k=k, filter=flt)
        assert not examples & {h["id"] for h in got}
        assert np.allclose([h["score"] for h in got], [t[1] for t in want], atol=1e-4)

        # best_score: max similarity to a positive, -(max to a negative)^2 when closer to a negative
        scores = {}
        for i, v in allowed.items():
            sp = max(similarity(metric, v, vec(e)) for e in pos)
            sn = max((similarity(metric, v, vec(e)) for e in neg), default=-np.inf)
            scores[i] = sp if sp > sn else -(sn ** 2)
        want_scores = sorted(scores.values(), reverse=True)[:k]
        got = col.recommend(pos, neg, k=k, filter=flt, strategy="best_score")
        assert np.allclose([h["score"] for h in got], want_scores, atol=1e-4)
        assert all(np.isclose(h["score"], scores[h["id"]], atol=1e-4) for h in got)


def test_recommend_refuses_bad_input_naming_the_field(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=["a", "b"], vectors=[[0, 0], [1, 0]])
        with pytest.raises(VectorNotFoundError, match="'zz'"):
            col.recommend(["a", "zz"])
        with pytest.raises(VectorNotFoundError, match="negative example id 'nope'"):
            col.recommend(["a"], ["nope"])
        with pytest.raises(ValidationError, match="positive"):
            col.recommend([])
        with pytest.raises(ValidationError, match="strategy"):
            col.recommend(["a"], strategy="centroid")
        with pytest.raises(ValidationError, match="dimension"):
            col.recommend([[1, 2, 3]])
        assert [h["id"] for h in col.recommend(["a"], k=5)] == ["b"]
