"""A merged segment's HNSW graph grown from its largest input's (index/_hnsw_grow.pyx,
storage/segment_index.py growth_seed/grow), and the background policy that merges segments into
the largest (compaction.needs_compaction)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import dump_in_fresh_process, wait_until

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


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_grown_without_new_rows_is_the_base_graph_and_saves_and_loads(tmp_path: Path, metric: str) -> None:
    data = _clustered(3000, 2)
    if metric == "cosine":
        data *= np.random.default_rng(5).uniform(0.5, 3.0, (len(data), 1)).astype(np.float32)
    placement = np.random.default_rng(4).permutation(len(data))  # base row r is row placement[r]
    base = HNSWIndex(DIM, metric, M=8, ef_construction=64, seed=3)
    base.add(np.arange(len(data)), data, repair=True)
    moved = np.empty_like(data)
    moved[placement] = data  # row placement[r] holds base row r's vector
    index = grown(base, placement, moved, threads=2)
    assert index.seed == 3 and index.max_level == base.max_level
    b0, _, blev, bentry, _ = base.graph_arrays()
    g0, _, glev, gentry, _ = index.graph_arrays()
    assert gentry == placement[bentry] and np.array_equal(glev[placement], blev)
    for r in range(len(data)):  # every level-0 list is the base's, renumbered
        assert g0[placement[r], 0] == b0[r, 0]
        assert np.array_equal(g0[placement[r], 1 : 1 + b0[r, 0]], placement[b0[r, 1 : 1 + b0[r, 0]]])
    queries = _clustered(30, 9)
    want = index.search_batch(queries, k=10, ef=64)
    index.save(tmp_path / "g.hnsw")
    loaded = HNSWIndex.load(tmp_path / "g.hnsw")
    loaded.attach_vectors(moved)
    got = loaded.search_batch(queries, k=10, ef=64)
    assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1])
    assert _recall(loaded, moved, queries, metric) >= 0.9


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


def _collection(engine: Engine, name: str = "c", **params: int) -> Any:
    engine.create_collection(name, DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                             index_params={"M": 8, "ef_construction": 64, **params})
    return engine.collection(name)


@pytest.mark.parametrize("seed", [0, 7])  # the index's seed is one of its build parameters: the grown one keeps it
def test_compaction_grows_the_largest_inputs_graph(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   seed: int) -> None:
    opts = {"fsync": "never", "auto_compact": False}
    data = _clustered(5000, 0)
    # ids interleave across the segments, so the merged rows of the largest input are not contiguous
    ids = [f"{(i * 7919) % 5000:05d}" for i in range(5000)]
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine, seed=seed)
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
        hits = 0
        for q in queries:
            want = {h["id"] for h in col.search(q, k=10, exact=True)}
            hits += len(want & {h["id"] for h in col.search(q, k=10, ef=64)})
        assert hits / 500 >= 0.9
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


def test_policy_merges_into_the_largest_only_when_its_graph_can_grow(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    opts = {"fsync": "never", "auto_compact": False, "flush_bytes": 1 << 20}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        col.insert(ids=[f"big-{i:05d}" for i in range(12000)], vectors=_clustered(12000, 99))
        col.flush()
        for s in range(compaction.GROW_SEGMENTS):  # 4,096 rows: not small (a quarter of the flush size)
            assert compaction.needs_compaction(col.segments, opts["flush_bytes"], lambda seg: True) == []
            col.insert(ids=[f"{s}-{i:05d}" for i in range(4096)], vectors=_clustered(4096, s))
            col.flush()
        assert col.wait_for_indexes(timeout=120)
        segments = list(col.segments)
        assert compaction.needs_compaction(segments, opts["flush_bytes"]) == []  # no can_grow: none by size
        assert compaction.needs_compaction(segments, opts["flush_bytes"], lambda seg: False) == []
        assert compaction.needs_compaction(segments, opts["flush_bytes"], lambda seg: True) == segments
        assert compaction.needs_compaction(segments, opts["flush_bytes"], col_can_grow(col)) == segments
        with monkeypatch.context() as m:  # the others must add GROW_SHARE of the largest's rows (16,384 of 12,000)
            m.setattr(compaction, "GROW_SHARE", 16384 / 12000 + 0.01)
            assert compaction.needs_compaction(segments, opts["flush_bytes"], lambda seg: True) == []
        col.delete(["big-00001"])  # the largest lost a row: its graph cannot grow, so no merge by size
        assert compaction.needs_compaction(col.segments, opts["flush_bytes"], col_can_grow(col)) == []


def test_policy_grows_a_graph_of_about_the_largest_size_when_the_largest_has_none(tmp_path: Path) -> None:
    """Segments of one flush each differ by a few rows, and the largest may be the newest, its graph not
    built yet: the seed is the largest segment whose graph can grow among those of at least half the
    largest's rows (compaction.GROW_SEED_SHARE)."""
    opts = {"fsync": "never", "auto_compact": False, "flush_bytes": 1 << 20}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        for s, n in enumerate([4096, 4100, 4096, 4096, 4200]):
            col.insert(ids=[f"{s}-{i:05d}" for i in range(n)], vectors=_clustered(n, s))
            col.flush()
        assert col.wait_for_indexes(timeout=120)
        segments = list(col.segments)
        newest = max(segments, key=lambda seg: seg.rows)
        assert newest.rows == 4200
        assert compaction.needs_compaction(segments, opts["flush_bytes"], lambda seg: seg is not newest) == segments
        assert compaction.needs_compaction(segments, opts["flush_bytes"], col_can_grow(col)) == segments
        # (a seed under half the largest's rows is not one: the end of the test above)


def test_a_graph_built_after_the_last_flush_lets_the_policy_grow_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """When every flush came before the graphs (an ingest faster than the builds), the builds themselves
    ask the policy again (IndexBuilder.on_built): the segments end merged with no further write."""
    _, release = _hold(monkeypatch, "build")  # no graph exists until every flush is done
    opts = {"fsync": "never", "auto_compact": True, "flush_bytes": 1 << 20}
    with caplog.at_level(logging.INFO, logger="proximadb"), Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        _flush_segments(col, compaction.GROW_SEGMENTS + 2)
        assert len(col.segments) == compaction.GROW_SEGMENTS + 2  # no graph could grow at any flush
        release.set()
        assert col.wait_for_indexes(timeout=120)
        wait_until("the background compaction", lambda: len(col.segments) <= compaction.GROW_SEGMENTS, deadline=120)
        assert col.count() == (compaction.GROW_SEGMENTS + 2) * 4096
        assert "growing its hnsw graph" in caplog.text


def _hold(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``segment_index.<name>`` (build, grow) wait for the returned ``release``; ``entered`` is set
    when a call arrives."""
    from proximadb.storage import segment_index

    entered, release = threading.Event(), threading.Event()
    real = getattr(segment_index, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_index, name, held)
    return entered, release


def _flush_segments(col: Any, count: int, tag: str = "", seed: int = 0, *, wait: bool = False) -> None:
    """``count`` segments of 4,096 rows, one flush each (``wait``: for the index builds before each)."""
    for s in range(count):
        if wait:
            assert col.wait_for_indexes(timeout=120)
        col.insert(ids=[f"{tag}{s}-{i:05d}" for i in range(4096)], vectors=_clustered(4096, seed + s))
        col.flush()


def col_can_grow(col: Any) -> Any:
    from proximadb.storage import segment_index

    params = segment_index.effective_params("hnsw", col.config.index_params, 0)
    return lambda seg: segment_index.can_grow(seg, "hnsw", params)


def test_background_policy_grows_the_largest_segment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = {"fsync": "never", "auto_compact": True, "flush_bytes": 1 << 20}
    with caplog.at_level(logging.INFO, logger="proximadb"), Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        _flush_segments(col, compaction.GROW_SEGMENTS + 1, wait=True)
        assert col.wait_for_indexes(timeout=120)
        wait_until("the background compaction", lambda: len(col.segments) == 1, deadline=120)
        assert "(4096 rows kept, 16384 inserted)" in caplog.text
        assert col.segments[0].index is not None and col.count() == 5 * 4096


def test_a_grown_graph_with_settings_changed_meanwhile_is_rebuilt(tmp_path: Path) -> None:
    """A compaction reads the settings before it grows; a change that lands before its commit must not
    leave the merged segment on the old graph (Collection._index_segment checks the kind and parameters)."""
    import dataclasses

    opts = {"fsync": "never", "auto_compact": False}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        for s in range(2):
            col.insert(ids=[f"{s}-{i:04d}" for i in range(1000)], vectors=_clustered(1000, s))
            col.flush()
        assert col.wait_for_indexes(timeout=120)
        col.compact()
        (seg,) = col.segments
        assert seg.index.M == 8
        col._index_segment(seg, load_existing=False)  # the same settings: kept as it is
        assert col.stats()["index_builds_pending"] == 0 and seg.index.M == 8
        col.config = dataclasses.replace(col.config, index_params={**col.config.index_params, "M": 12})
        col._index_segment(seg, load_existing=False)  # what finish() does after such a change
        assert col.wait_for_indexes(timeout=120) and seg.index.M == 12


def test_ef_construction_below_m_is_not_rebuilt_at_every_open(tmp_path: Path) -> None:
    """The graph builds with max(ef_construction, M) and reports that; the settings are completed the
    same way (registry._hnsw_size_defaults), so such a graph loads and can grow."""
    opts = {"fsync": "never", "auto_compact": False}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine, M=16, ef_construction=8)
        col.insert(ids=[f"{i:04d}" for i in range(500)], vectors=_clustered(500, 0))
        col.flush()
        assert col.wait_for_indexes(timeout=120)
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = engine.collection("c")
        assert col.segments[0].index is not None and col.stats()["index_builds_pending"] == 0
        assert col_can_grow(col)(col.segments[0])


def test_growth_asks_to_be_cancelled_between_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from proximadb.index import _hnsw_grow

    data = _clustered(2000, 0)
    base = HNSWIndex(DIM, "l2", M=8, ef_construction=32)
    base.add(np.arange(1000), data[:1000], repair=True)
    monkeypatch.setattr(_hnsw_grow, "GROW_CHUNK", 300)  # 1,000 rows to insert: four chunks
    asked = 0

    def cancel_at(n: int | None) -> Any:
        def cancelled() -> bool:
            nonlocal asked
            asked += 1
            return asked == n
        return cancelled

    index = grown(base, np.arange(1000), data, cancelled=cancel_at(None))
    assert asked == 4 and index.reachable_count() == 2000  # asked before each chunk
    asked = 0
    with pytest.raises(_hnsw_grow.GrowthCancelled, match="after 600 of 1000 rows"):
        grown(base, np.arange(1000), data, cancelled=cancel_at(3))


def test_a_closing_collection_stops_growing_and_indexes_on_the_next_open(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    from proximadb.storage import segment_index

    opts = {"fsync": "never", "auto_compact": False}
    real_grow = segment_index.grow
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        for s in range(2):
            col.insert(ids=[f"{s}-{i:04d}" for i in range(1000)], vectors=_clustered(1000, s))
            col.flush()
        assert col.wait_for_indexes(timeout=120)

        def grow_while_closing(*args: Any, **kwargs: Any) -> Any:
            col._closing = True  # close() began while the compaction was merging
            return real_grow(*args, **kwargs)

        monkeypatch.setattr(segment_index, "grow", grow_while_closing)
        with caplog.at_level(logging.INFO, logger="proximadb"):
            report = col.compact()
        assert report["segments_after"] == 1 and col.segments[0].index is None
        assert "graph stopped: the collection is closing" in caplog.text
    monkeypatch.setattr(segment_index, "grow", real_grow)
    with Engine.open(tmp_path / "d", **opts) as engine:  # committed, unindexed: built on this open
        col = engine.collection("c")
        assert col.count() == 2000 and col.wait_for_indexes(timeout=120)
        assert col.segments[0].index is not None
        assert col.search(_clustered(1000, 1)[5], k=1, ef=64)[0]["id"] == "1-0005"


def test_segments_flushed_during_a_merge_are_merged_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments flushed and indexed while a background merge runs find the policy busy at every flush and
    build; the merge asks it again when it ends (compaction._ask_compaction_policy), so they are merged
    too, with no further write."""
    growing, release = _hold(monkeypatch, "grow")
    opts = {"fsync": "never", "auto_compact": True, "flush_bytes": 1 << 20}
    n = compaction.GROW_SEGMENTS + 1
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = _collection(engine)
        _flush_segments(col, n, "a", wait=True)  # every graph there before the next flush asks the policy
        assert growing.wait(120)  # the first merge holds in its growth
        _flush_segments(col, n, "b", seed=50)
        assert col.wait_for_indexes(timeout=120)  # the new graphs are built while the merge still runs
        assert len(col.segments) == 2 * n
        release.set()
        wait_until("the second merge", lambda: len(col.segments) == 1, deadline=120)
        assert col.count() == 2 * n * 4096
