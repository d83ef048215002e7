"""Per-name segment indexes of named dense vectors: built with the collection's algorithm and parameters over
the name's rows with the name's metric, saved as ``named/<name>.<ext>``, loaded at reopen, rebuilt when
damaged or when the settings change; approximate searches compared with a numpy brute force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.storage import named_search
from proximadb.storage.engine import Engine

DIM = 8
VECTORS = {"title": {"dimension": 16, "distance_metric": "cosine"},
           "body": {"dimension": 12, "distance_metric": "euclidean"}}
N = 600


def _data(seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = [f"r{i:05d}" for i in range(N)]
    named = {n: rng.standard_normal((N, v["dimension"])).astype(np.float32) for n, v in VECTORS.items()}
    return ids, rng.standard_normal((N, DIM)).astype(np.float32), named


def _truth(mat: np.ndarray, q: np.ndarray, metric: str, k: int, alive: np.ndarray) -> list[int]:
    m = mat.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "cosine":
        d = -(m / np.linalg.norm(m, axis=1, keepdims=True)) @ (qq / np.linalg.norm(qq))
    else:
        d = np.linalg.norm(m - qq, axis=1)
    d[~alive] = np.inf
    return np.argsort(d, kind="stable")[:k].tolist()  # type: ignore[no-any-return]


def _recall(col: Any, named: dict[str, np.ndarray], ids: list[str], alive: np.ndarray, **kw: Any) -> float:
    rng = np.random.default_rng(11)
    found = total = 0
    for name, v in VECTORS.items():
        for _ in range(10):
            q = rng.standard_normal(v["dimension"]).astype(np.float32)
            want = {ids[i] for i in _truth(named[name], q, v["distance_metric"], 10, alive)}
            got = {h["id"] for h in col.search(q, k=10, using=name, **kw)}
            found += len(want & got)
            total += len(want)
    return found / total


@pytest.mark.parametrize(("algorithm", "params", "ext"), [
    ("hnsw", {"M": 8, "ef_construction": 64}, "hnsw"),
    ("hnsw", {"M": 8, "ef_construction": 64, "quantization": {"type": "int8"}}, "hnsw8"),
    ("ivf", {"nlist": 8, "nprobe": 8}, "ivf"),
])
def test_each_named_vector_gets_its_own_segment_index(tmp_path: Path, algorithm: str, params: dict[str, Any],
                                                      ext: str) -> None:
    ids, vecs, named = _data()
    alive = np.ones(N, bool)
    alive[::17] = False
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm=algorithm, index_params=params, vectors=VECTORS)
        col = engine.collection("c")
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        col.flush()
        assert col.wait_for_indexes(120)
        seg = col.segments[0]
        assert set(seg.named_index) == set(VECTORS) and seg.index is not None
        for name, v in VECTORS.items():
            index = seg.named_index[name]
            assert index.dim == v["dimension"] and len(index) == N
            assert index.metric == {"cosine": "cosine", "euclidean": "l2"}[v["distance_metric"]]
            assert (seg.path / "named" / f"{name}.{ext}").is_file()
        col.delete([ids[i] for i in np.flatnonzero(~alive)])
        assert _recall(col, named, ids, alive, ef=200, nprobe=8) >= 0.9
        assert _recall(col, named, ids, alive, exact=True) == 1.0
        built = col.index_builder.builds
        assert built == 3
    with Engine.open(tmp_path, auto_compact=False) as engine:  # loaded, not rebuilt
        col = engine.collection("c")
        assert col.wait_for_indexes(120) and col.index_builder.builds == 0
        assert set(col.segments[0].named_index) == set(VECTORS)
        assert _recall(col, named, ids, alive, ef=200, nprobe=8) >= 0.9


def test_a_damaged_named_index_is_rebuilt_and_compaction_and_settings_changes_reindex(tmp_path: Path) -> None:
    ids, vecs, named = _data(1)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="hnsw", index_params={"M": 8}, vectors=VECTORS)
        col = engine.collection("c")
        col.insert(ids=ids[:300], vectors=vecs[:300], named_vectors={k: v[:300] for k, v in named.items()})
        col.flush()
        col.insert(ids=ids[300:], vectors=vecs[300:], named_vectors={k: v[300:] for k, v in named.items()})
        col.flush()
        assert col.wait_for_indexes(120)
        col.compact()
        assert col.wait_for_indexes(120) and len(col.segments) == 1
        seg = col.segments[0]
        assert set(seg.named_index) == set(VECTORS) and len(seg.named_index["body"]) == N
        alive = np.ones(N, bool)
        assert _recall(col, named, ids, alive, ef=200) >= 0.9
        path = seg.path / "named" / "body.hnsw"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with Engine.open(tmp_path, auto_compact=False) as engine:
        col = engine.collection("c")
        assert col.wait_for_indexes(120) and col.index_builder.builds == 1  # the damaged one only
        assert _recall(col, named, ids, alive, ef=200) >= 0.9
        engine.update_collection("c", indexing_algorithm="ivf", index_params={"nlist": 4, "nprobe": 4})
        assert col.wait_for_indexes(120)
        seg = col.segments[0]
        assert (seg.path / "named" / "title.ivf").is_file() and not (seg.path / "named" / "title.hnsw").exists()
        assert _recall(col, named, ids, alive) >= 0.9
        engine.update_collection("c", indexing_algorithm="flat", index_params={})
        assert col.segments[0].named_index == {}
        assert _recall(col, named, ids, alive) == 1.0


def test_index_settings_must_suit_every_named_dimension(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        with pytest.raises(ValidationError, match=r"named vector 'odd' \(dimension 7\) is indexed with"):
            engine.create_collection("c", DIM, indexing_algorithm="hnsw",
                                     index_params={"quantization": {"type": "pq", "m": 4}},
                                     vectors={"odd": {"dimension": 7}})


def test_filtered_searches_through_a_named_index(tmp_path: Path) -> None:
    """The planner's paths (a small filter: exact rows; a large one: the index walk with a mask) on a named
    vector's index: every hit matches, the answer is near the brute force over the matching rows."""
    ids, vecs, named = _data(2)
    groups = np.arange(N) % 10
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="hnsw", index_params={"M": 8}, vectors=VECTORS)
        col = engine.collection("c")
        col.insert(ids=ids, vectors=vecs, named_vectors=named, metadatas=[{"g": int(g)} for g in groups])
        col.flush()
        assert col.wait_for_indexes(120)
        rng = np.random.default_rng(3)
        for flt, allowed in (({"g": 4}, groups == 4), ({"g": {"$ne": 4}}, groups != 4)):
            for name, v in VECTORS.items():
                q = rng.standard_normal(v["dimension"]).astype(np.float32)
                want = [ids[i] for i in _truth(named[name], q, v["distance_metric"], 10, allowed)]
                exact = col.search(q, k=10, using=name, filter=flt, exact=True)
                assert [h["id"] for h in exact] == want
                approx = col.search(q, k=10, using=name, filter=flt, ef=200)
                assert all(allowed[ids.index(h["id"])] for h in approx)
                assert len({h["id"] for h in approx} & set(want)) >= 8


def test_the_memtable_grows_a_graph_per_named_vector(tmp_path: Path) -> None:
    """Past memtable_index_rows rows the memtable has a graph of each named vector too (its dimension and
    metric), searched with using= (rows it lacks exactly); deleted rows are left out inside the walk."""
    ids, vecs, named = _data(4)
    alive = np.ones(N, bool)
    alive[::13] = False
    with Engine.open(tmp_path, fsync="never", memtable_index_rows=100, auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="hnsw", index_params={"M": 8}, vectors=VECTORS)
        col = engine.collection("c")
        for a in range(0, N, 100):
            col.insert(ids=ids[a:a + 100], vectors=vecs[a:a + 100],
                       named_vectors={k: v[a:a + 100] for k, v in named.items()})
        assert col.wait_for_memtable_index(120)
        mt = col.memtable
        assert mt.graph is not None and set(mt.named_graph) == set(VECTORS)
        for name, v in VECTORS.items():
            graph = mt.named_graph[name]
            assert graph.indexed == N and graph.index.dim == v["dimension"]
            assert graph.index.metric == {"cosine": "cosine", "euclidean": "l2"}[v["distance_metric"]]
        assert named_search.memtable_part(mt.snapshot(), "body", "l2").graph is mt.named_graph["body"]
        col.delete([ids[i] for i in np.flatnonzero(~alive)])
        assert _recall(col, named, ids, alive, ef=200) >= 0.9
        assert _recall(col, named, ids, alive, exact=True) == 1.0
        rng = np.random.default_rng(8)
        q = rng.standard_normal(12).astype(np.float32)
        hits = col.search(q, k=10, using="body", ef=200)
        assert len(hits) == 10 and all(alive[ids.index(h["id"])] for h in hits)
        col.flush()  # the graphs go with the sealed memtable; the segment builds its own indexes
        assert col.memtable.named_graph == {} and col.wait_for_indexes(120)
        assert _recall(col, named, ids, alive, ef=200) >= 0.9
