"""Per-name index and quantization settings of named dense vectors (issue 12: "each with its own dimension,
metric, index and quantization"): a name's own ``indexing_algorithm`` / ``index_params`` / ``quantization``
(CollectionConfig.index_settings) decide its segment index file and its memtable graph; bad settings are
refused naming the vector, and nothing is created; a reopen keeps them; update_collection changes them and
rebuilds that name's indexes only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.index.hnsw_int8 import HNSWInt8Index
from proximadb.index.ivf import IVFIndex
from proximadb.storage import segment_index
from proximadb.storage.engine import Engine

DIM = 8
N = 600
VECTORS: dict[str, dict[str, Any]] = {
    "title": {"dimension": 16, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
              "index_params": {"M": 8, "ef_construction": 64}, "quantization": {"type": "int8"}},
    "body": {"dimension": 12, "distance_metric": "euclidean", "indexing_algorithm": "flat"},
}
METRIC = {"cosine": "cosine", "euclidean": "l2"}


def _data(seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = [f"r{i:05d}" for i in range(N)]
    named = {n: rng.standard_normal((N, v["dimension"])).astype(np.float32) for n, v in VECTORS.items()}
    return ids, rng.standard_normal((N, DIM)).astype(np.float32), named


def _truth(mat: np.ndarray, q: np.ndarray, metric: str, k: int) -> list[int]:
    m = mat.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "cosine":
        d = -(m / np.linalg.norm(m, axis=1, keepdims=True)) @ (qq / np.linalg.norm(qq))
    else:
        d = np.linalg.norm(m - qq, axis=1)
    return np.argsort(d, kind="stable")[:k].tolist()  # type: ignore[no-any-return]


def _recall(col: Any, named: dict[str, np.ndarray], ids: list[str], name: str, **kw: Any) -> float:
    rng = np.random.default_rng(11)
    v = VECTORS[name]
    found = total = 0
    for _ in range(20):
        q = rng.standard_normal(v["dimension"]).astype(np.float32)
        want = {ids[i] for i in _truth(named[name], q, v["distance_metric"], 10)}
        got = {h["id"] for h in col.search(q, k=10, using=name, **kw)}
        found += len(want & got)
        total += len(want)
    return found / total


def _files(seg: Any) -> set[str]:
    return {p.name for p in (seg.path / "named").iterdir()}


def test_each_name_is_indexed_with_its_own_settings_and_a_reopen_keeps_them(tmp_path: Path) -> None:
    ids, vecs, named = _data()
    with Engine.open(tmp_path, auto_compact=False) as engine:
        info = engine.create_collection("c", DIM, indexing_algorithm="ivf", index_params={"nlist": 4},
                                        vectors={**VECTORS, "plain": {"dimension": 4}})
        assert info["vectors"]["title"] == {
            "dimension": 16, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
            "index_params": {"M": 8, "ef_construction": 64,
                             "quantization": {"type": "int8", "rescore": True, "oversampling": 2.0}}}
        assert info["vectors"]["body"] == {"dimension": 12, "distance_metric": "euclidean",
                                           "indexing_algorithm": "flat", "index_params": {}}
        assert info["vectors"]["plain"] == {"dimension": 4, "distance_metric": "cosine"}  # the collection's
        col = engine.collection("c")
        plain = np.random.default_rng(5).standard_normal((N, 4)).astype(np.float32)
        col.insert(ids=ids, vectors=vecs, named_vectors={**named, "plain": plain})
        col.flush()
        assert col.wait_for_indexes(120)
        seg = col.segments[0]
        assert isinstance(seg.named_index["title"], HNSWInt8Index)
        assert seg.named_index["title"].metric == "cosine" and len(seg.named_index["title"]) == N
        assert "body" not in seg.named_index  # flat: scanned exactly
        assert isinstance(seg.named_index["plain"], IVFIndex) and isinstance(seg.index, IVFIndex)
        assert _files(seg) >= {"title.hnsw8", "plain.ivf"}
        assert not any(f.startswith("body.") and not f.endswith(".f32") for f in _files(seg))
        assert _recall(col, named, ids, "title", ef=200) >= 0.9
        assert _recall(col, named, ids, "body") == 1.0
        assert col.index_builder.builds == 3  # default, title, plain
    with Engine.open(tmp_path, auto_compact=False) as engine:  # loaded with the same settings, not rebuilt
        col = engine.collection("c")
        assert col.config.index_settings("title")[0] == "hnsw"
        assert col.config.index_settings("title")[1]["quantization"]["type"] == "int8"
        assert col.config.index_settings("body") == ("flat", {})
        assert col.config.index_settings("plain") == ("ivf", col.config.index_params)
        assert col.wait_for_indexes(120) and col.index_builder.builds == 0
        seg = col.segments[0]
        assert isinstance(seg.named_index["title"], HNSWInt8Index) and "body" not in seg.named_index
        assert _recall(col, named, ids, "title", ef=200) >= 0.9
        assert _recall(col, named, ids, "body") == 1.0
        assert engine.get_collection("c")["vectors"]["body"]["indexing_algorithm"] == "flat"


def test_the_memtable_graphs_follow_each_names_settings(tmp_path: Path) -> None:
    """A flat collection with an HNSW name: the memtable grows that name's graph only."""
    ids, vecs, named = _data(2)
    with Engine.open(tmp_path, fsync="never", memtable_index_rows=100, auto_compact=False) as engine:
        engine.create_collection("c", DIM, vectors=VECTORS)  # the collection: flat
        col = engine.collection("c")
        for a in range(0, N, 100):
            col.insert(ids=ids[a:a + 100], vectors=vecs[a:a + 100],
                       named_vectors={k: v[a:a + 100] for k, v in named.items()})
        assert col.wait_for_memtable_index(120)
        mt = col.memtable
        assert mt.graph is None and set(mt.named_graph) == {"title"}
        assert mt.named_graph["title"].indexed == N and mt.named_graph["title"].index.dim == 16
        assert _recall(col, named, ids, "title", ef=200) >= 0.9
        assert _recall(col, named, ids, "body") == 1.0
        # the other way round: title flat, body on HNSW; the memtable's graphs are made again
        engine.update_collection("c", vectors={"title": {"dimension": 16, "indexing_algorithm": "flat"},
                                               "body": {"dimension": 12, "distance_metric": "euclidean",
                                                        "indexing_algorithm": "hnsw", "index_params": {"M": 8}}})
        assert col.wait_for_memtable_index(120)
        mt = col.memtable
        assert mt.graph is None and set(mt.named_graph) == {"body"} and mt.named_graph["body"].indexed == N
        assert mt.named_graph["body"].index.metric == "l2"
        assert _recall(col, named, ids, "title") == 1.0
        assert _recall(col, named, ids, "body", ef=200) >= 0.9


@pytest.mark.parametrize(("vectors", "message"), [
    ({"t": {"dimension": 3, "indexing_algorithm": "annoy"}}, r"vectors\['t'\]\.indexing_algorithm must be one of"),
    ({"t": {"dimension": 3, "indexing_algorithm": "flat", "quantization": {"type": "int8"}}},
     r"vectors\['t'\] \(dimension 3, indexing_algorithm flat\): int8 quantization is available with"),
    ({"t": {"dimension": 6, "indexing_algorithm": "hnsw", "quantization": {"type": "pq", "m": 4}}},
     r"vectors\['t'\] \(dimension 6, indexing_algorithm hnsw\): .*m"),
    ({"t": {"dimension": 3, "indexing_algorithm": "ivf", "index_params": {"M": 8}}},
     r"vectors\['t'\] .*index_params\.M is not a parameter of ivf"),
    ({"t": {"dimension": 3, "index_params": 5}}, r"vectors\['t'\]\.index_params must be an object"),
    ({"t": {"dimension": 3, "quantization": {"type": "int4"}}}, r"vectors\['t'\] .*quantization\.type must be"),
])
def test_bad_per_name_settings_are_refused_naming_the_vector(tmp_path: Path, vectors: dict[str, Any],
                                                             message: str) -> None:
    with Engine.open(tmp_path) as engine:
        with pytest.raises(ValidationError, match=message):
            engine.create_collection("c", DIM, indexing_algorithm="hnsw", vectors=vectors)
        assert engine.list_collections() == []
    assert not any((tmp_path / "collections").iterdir()) if (tmp_path / "collections").exists() else True


def test_a_name_of_its_own_settings_does_not_have_to_suit_the_collections(tmp_path: Path) -> None:
    """The collection's pq m=4 does not divide 7; a name of dimension 7 with its own settings is fine."""
    with Engine.open(tmp_path) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="hnsw",
                                 index_params={"quantization": {"type": "pq", "m": 4}},
                                 vectors={"odd": {"dimension": 7, "quantization": {"type": "int8"}}})
        assert engine.collection("c").config.index_settings("odd")[1]["quantization"]["type"] == "int8"


def test_update_changes_one_names_settings_and_rebuilds_its_indexes(tmp_path: Path) -> None:
    ids, vecs, named = _data(3)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="hnsw", index_params={"M": 8}, vectors=VECTORS)
        col = engine.collection("c")
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        col.flush()
        assert col.wait_for_indexes(120) and col.index_builder.builds == 2  # default, title
        seg = col.segments[0]
        assert "title.hnsw8" in _files(seg)
        default_index = seg.index
        with pytest.raises(ValidationError, match=r"cannot be changed"):  # dimensions and metrics stay fixed
            engine.update_collection("c", vectors={**VECTORS, "body": {**VECTORS["body"], "dimension": 13}})
        with pytest.raises(ValidationError, match=r"vectors\['body'\]"):
            engine.update_collection("c", vectors={**VECTORS, "body": {**VECTORS["body"],
                                                                       "quantization": {"type": "binary"}}})
        info = engine.update_collection("c", vectors={
            "title": {"dimension": 16, "distance_metric": "cosine", "indexing_algorithm": "flat"},
            "body": {"dimension": 12, "distance_metric": "euclidean", "indexing_algorithm": "ivf",
                     "index_params": {"nlist": 4, "nprobe": 4}}})
        assert info["vectors"]["body"]["indexing_algorithm"] == "ivf"
        assert col.wait_for_indexes(120) and col.index_builder.builds == 3  # body only
        seg = col.segments[0]
        assert seg.index is default_index  # the default vector's untouched
        assert "title" not in seg.named_index and isinstance(seg.named_index["body"], IVFIndex)
        assert "body.ivf" in _files(seg) and "title.hnsw8" not in _files(seg)  # flat now: its index file gone
        assert _recall(col, named, ids, "title") == 1.0
        assert _recall(col, named, ids, "body") >= 0.9
    with Engine.open(tmp_path, auto_compact=False) as engine:
        col = engine.collection("c")
        assert col.wait_for_indexes(120) and col.index_builder.builds == 0
        assert col.config.index_settings("title") == ("flat", {})
        assert isinstance(col.segments[0].named_index["body"], IVFIndex)



def test_a_build_of_settings_changed_since_is_dropped(tmp_path: Path) -> None:
    """A build job of other settings than the name's of now (scheduled before a settings change, which
    scheduled its own) is skipped: a flat name gets no index from it."""
    ids, vecs, named = _data(5)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", DIM, vectors=VECTORS)
        col = engine.collection("c")
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        col.flush()
        assert col.wait_for_indexes(120) and col.index_builder.builds == 1  # title only
        seg = col.segments[0]
        stale = segment_index.effective_params("hnsw", {"M": 8}, seg.rows)
        col.index_builder.schedule(seg, "hnsw", "l2", stale, "body")  # body is flat now
        col.index_builder.schedule(seg, "hnsw", "cosine", stale, "title")  # title is hnsw int8 now
        assert col.wait_for_indexes(120) and col.index_builder.builds == 1
        assert "body" not in seg.named_index and isinstance(seg.named_index["title"], HNSWInt8Index)
        assert not any(f.startswith("body.") and not f.endswith(".f32") for f in _files(seg))
