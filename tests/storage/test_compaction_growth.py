"""A merged segment's HNSW graph grown from its largest input's (index/_hnsw_grow.pyx,
storage/segment_index.py growth_seed/grow), and the background policy that merges segments into
the largest (compaction.needs_compaction)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from _support import dump_in_fresh_process

from proximadb.errors import DimensionMismatchError, ValidationError
from proximadb.index._hnsw_grow import grown, growth_order
from proximadb.index.hnsw import HNSWIndex
from proximadb.storage import compaction
from proximadb.storage.engine import Engine

DIM = 16


def _clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).standard_normal((50, dim)).astype(np.float32)
    return (centres[rng.integers(0, 50, n)] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def _recall(index: HNSWIndex, data: np.ndarray, queries: np.ndarray, metric: str) -> float:
    found, _ = index.search_batch(queries, k=10, ef=64)
    if metric == "cosine":
        unit = data / np.linalg.norm(data, axis=1, keepdims=True)
        d = -(queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    else:
        d = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(-1)
    truth = np.argsort(d, axis=1)[:, :10]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_grown_graph_searches_like_a_built_one(metric: str) -> None:
    data = _clustered(6000, 0)
    if metric == "cosine":
        data *= np.random.default_rng(5).uniform(0.5, 3.0, (len(data), 1)).astype(np.float32)  # not unit length
    queries = _clustered(100, 9)
    rng = np.random.default_rng(3)
    placement = np.sort(rng.choice(len(data), 4000, replace=False))  # the base's rows, interleaved with the rest
    base = HNSWIndex(DIM, metric, M=8, ef_construction=64)
    base.add(np.arange(4000), data[placement], threads=1, repair=True)
    index = grown(base, placement, data, threads=2)
    assert len(index) == len(data) and index.reachable_count() == len(data)
    assert index.vectors_attached and not index.owns_vectors  # the rows given are kept, not copied
    built = HNSWIndex(DIM, metric, M=8, ef_construction=64)
    built.add(np.arange(len(data)), data, threads=2, repair=True)
    assert _recall(index, data, queries, metric) >= _recall(built, data, queries, metric) - 0.03
    assert _recall(index, data, queries, metric) >= 0.9
    # the base's links survive, renumbered: a base row's level-0 neighbours are still its neighbours
    base_links, _, _, _, _ = base.graph_arrays()
    links, _, _, _, _ = index.graph_arrays()
    for r in (0, 17, 3999):
        old = {int(placement[j]) for j in base_links[r, 1 : 1 + base_links[r, 0]]}
        assert old <= {int(j) for j in links[placement[r], 1 : 1 + links[placement[r], 0]]}


def test_grown_refuses_what_it_cannot_grow() -> None:
    data = _clustered(300, 0)
    base = HNSWIndex(DIM, "l2", M=8, ef_construction=32)
    base.add(np.arange(200), data[:200], repair=True)
    with pytest.raises(ValidationError, match="same row"):
        growth_order(np.r_[np.arange(199), 5], 200, 300)
    with pytest.raises(ValidationError, match="below 300"):
        grown(base, np.arange(100, 300) + 1, data)
    with pytest.raises(ValidationError, match="each of the base's 200 rows"):
        grown(base, np.arange(150), data)
    with pytest.raises(DimensionMismatchError):
        grown(base, np.arange(200), _clustered(300, 0, dim=DIM + 1))
    renumbered = HNSWIndex(DIM, "l2", M=8, ef_construction=32)
    renumbered.add(np.arange(200) + 1000, data[:200])
    with pytest.raises(ValidationError, match="ids are not its row numbers"):
        grown(renumbered, np.arange(200), data)
    deleted = HNSWIndex(DIM, "l2", M=8, ef_construction=32)
    deleted.add(np.arange(200), data[:200])
    deleted.mark_deleted(3)
    with pytest.raises(ValidationError, match="no deleted row"):
        grown(deleted, np.arange(200), data)


def _collection(engine: Engine, name: str = "c") -> object:
    engine.create_collection(name, DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                             index_params={"M": 8, "ef_construction": 64})
    return engine.collection(name)


def test_compaction_grows_the_largest_inputs_graph(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = {"fsync": "never", "auto_compact": False}
    data = _clustered(5000, 0)
    # ids interleave across the segments, so the merged rows of the largest input are not contiguous
    ids = [f"{(i * 7919) % 5000:05d}" for i in range(5000)]
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        for a, b in ((0, 3000), (3000, 4000), (4000, 5000)):
            col.insert(ids=ids[a:b], vectors=data[a:b], metadatas=[{"i": i} for i in range(a, b)])
            col.flush()
        assert col.wait_for_indexes(timeout=120)
        with caplog.at_level(logging.INFO, logger="proximadb"):
            report = col.compact()
        assert report["segments_after"] == 1
        assert "3000 rows kept, 2000 inserted" in caplog.text
        (seg,) = col.segments
        assert seg.index is not None and len(seg.index) == 5000  # attached at the commit: never searched exactly
        assert col.stats()["index_builds_pending"] == 0
        index_file = seg.path / "index.hnsw"
        assert index_file.exists()
        stamp = index_file.stat().st_mtime_ns
        queries = _clustered(50, 9)
        hits = 0
        for q in queries:
            want = {h["id"] for h in col.search(q, k=10, exact=True)}
            hits += len(want & {h["id"] for h in col.search(q, k=10, ef=64)})
        assert hits / 500 >= 0.9
    with Engine.open(tmp_path / "d", **opts) as engine:  # the grown graph was saved: loaded, not rebuilt
        col = engine.collection("c")
        assert col.segments[0].index is not None and col.stats()["index_builds_pending"] == 0
        assert (col.segments[0].path / "index.hnsw").stat().st_mtime_ns == stamp
    state = dump_in_fresh_process(tmp_path / "d", **opts)["c"]
    assert sorted(state) == sorted(ids)


def test_compaction_grows_only_a_graph_whose_rows_are_all_kept(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    opts = {"fsync": "never", "auto_compact": False}
    data = _clustered(3000, 0)
    ids = [f"{i:05d}" for i in range(3000)]
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        col.insert(ids=ids[:2000], vectors=data[:2000])
        col.flush()
        col.insert(ids=ids[2000:], vectors=data[2000:])
        col.flush()
        assert col.wait_for_indexes(timeout=120)
        col.delete(ids[:10])  # the 2000-row segment loses rows: its graph cannot be placed whole...
        col.flush()
        with caplog.at_level(logging.INFO, logger="proximadb"):
            col.compact()
        assert "(1000 rows kept, 1990 inserted)" in caplog.text  # ...so the 1000-row one grows
        col.delete(ids[10:12])  # the one input lost rows: its graph is built anew
        col.flush()
        caplog.clear()
        builds = col.index_builder.builds
        with caplog.at_level(logging.INFO, logger="proximadb"):
            col.compact()
        assert "growing its hnsw graph" not in caplog.text
        assert col.wait_for_indexes(timeout=120) and col.index_builder.builds == builds + 1
        (seg,) = col.segments
        assert seg.index is not None and len(seg.index) == 2988
        for i in (12, 1500, 2999):
            assert col.search(data[i], k=1, ef=64)[0]["id"] == ids[i]


def test_policy_merges_segments_into_the_largest_past_grow_segments(tmp_path: Path) -> None:
    opts = {"fsync": "never", "auto_compact": False, "flush_bytes": 1 << 20}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        for s in range(compaction.GROW_SEGMENTS + 1):  # segments of 4,096 rows: a quarter of the flush size or more
            col.insert(ids=[f"{s}-{i:05d}" for i in range(4096)], vectors=_clustered(4096, s))
            col.flush()
            picked = compaction.needs_compaction(col.segments, opts["flush_bytes"])
            assert picked == (col.segments if s == compaction.GROW_SEGMENTS else [])
