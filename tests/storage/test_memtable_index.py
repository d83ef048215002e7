"""The memtable's HNSW graph (storage/memtable_index.py): past ``memtable_index_rows`` rows the memtable
is searched through a graph grown in the background, and the rows it lacks exactly.

Every search is checked against the collection's own exact search (``exact=True``: a scan of every
live row, no graph) or against numpy: recall 1.0 where ef covers every row, top-10 agreement with a
large ef on random data, across inserts, upserts, deletes, filters, the threshold, a flush (held
half-way, so the sealed memtable's graph is searched too), a reopen (WAL replay rebuilds the graph)
and concurrent inserts and searches. Waits are on conditions with deadlines, never on sleeps.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.index import hnsw_shared
from proximadb.server.config import ServerConfig, load_config
from proximadb.storage import memtable_index
from proximadb.storage.engine import Engine

DIM = 16
WAIT = 120.0  # seconds: a bound on waiting for the background graph, not a timing assertion


def _run_together(*targets: Any) -> None:
    """Run each callable on a thread of its own, all at once, and join them (each within WAIT)."""
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)


def _open(path: Path, threshold: int, **extra: Any) -> Engine:
    return Engine.open(path, fsync="never", memtable_index_rows=threshold, auto_compact=False, **extra)


def _rows(n: int, seed: int, start: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    ids = [f"r{i:06d}" for i in range(start, start + n)]
    return ids, rng.standard_normal((n, DIM)).astype(np.float32), [{"g": i % 5} for i in range(start, start + n)]


def _insert(col: Any, n: int, seed: int, start: int = 0, batch: int = 500) -> None:
    ids, vecs, metas = _rows(n, seed, start)
    for i in range(0, n, batch):
        col.insert(ids=ids[i : i + batch], vectors=vecs[i : i + batch], metadatas=metas[i : i + batch])


def _ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["id"] for h in hits]


def _agreement(col: Any, queries: np.ndarray, k: int = 10, **kw: Any) -> float:
    """Mean top-k overlap of the (graph) search with the exact search, and every hit valid."""
    got = col.search_batch(queries, k, ef=400, **kw)
    want = col.search_batch(queries, k, exact=True, **kw)
    overlap = []
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        d = [h["distance"] for h in g]
        assert d == sorted(d)
        overlap.append(len(set(_ids(g)) & set(_ids(w))) / max(len(w), 1))
    return float(np.mean(overlap))


def _graph_rows(col: Any) -> int:
    assert col.wait_for_memtable_index(WAIT)
    return int(col.stats()["memtable_indexed_rows"])


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot_product"])
def test_small_exact_case_matches_brute_force(tmp_path: Path, metric: str) -> None:
    with _open(tmp_path / "d", 50) as eng:
        eng.create_collection("c", DIM, distance_metric=metric, indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 300, seed=1, batch=60)
        assert _graph_rows(col) == 300
        assert col.memtable.graph is not None and col.memtable.graph.indexed == 300
        queries = np.random.default_rng(2).standard_normal((12, DIM)).astype(np.float32)
        for q in queries:  # ef >= n: every row reached, order and distances as the exact scan's
            got, want = col.search(q, 10, ef=400), col.search(q, 10, exact=True)
            assert _ids(got) == _ids(want)
            np.testing.assert_allclose([h["distance"] for h in got], [h["distance"] for h in want], rtol=1e-4,
                                       atol=1e-5)
        stats = col.stats()
        assert stats["indexed_rows"] == 300 and stats["unindexed_rows"] == 0 and stats["status"] == "green"


def test_random_data_top_k_agrees_and_numpy_agrees(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 500) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                              index_params={"M": 8, "ef_construction": 64})
        col = eng.collection("c")
        _insert(col, 4000, seed=3)
        assert _graph_rows(col) == 4000
        queries = np.random.default_rng(4).standard_normal((40, DIM)).astype(np.float32)
        assert _agreement(col, queries) >= 0.97
        assert _agreement(col, queries[:3]) >= 0.9  # fewer than 4 queries: the one-query path
        _, vecs, _ = _rows(4000, seed=3)
        truth = np.argsort(((queries[:, None, :] - vecs[None]) ** 2).sum(-1), axis=1)[:, :10]
        got = col.search_batch(queries, 10, ef=400)
        recall = np.mean([len({int(h["id"][1:]) for h in g} & set(t.tolist())) / 10
                          for g, t in zip(got, truth, strict=True)])
        assert recall >= 0.97


def test_rows_not_in_the_graph_are_scanned_exactly(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 200) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 1000, seed=5)
        assert _graph_rows(col) == 1000
        col.memtable_indexer.stop()  # from now on the graph does not grow: new rows are only in the tail
        _insert(col, 700, seed=6, start=1000, batch=100)
        assert col.memtable.graph is not None and col.memtable.graph.indexed == 1000
        stats = col.stats()
        assert stats["memtable_indexed_rows"] == 1000 and stats["unindexed_rows"] == 700
        ids, vecs, _ = _rows(700, seed=6, start=1000)
        for i in (0, 311, 699):  # each tail row is its own nearest neighbour, even with a tiny ef
            assert col.search(vecs[i], 1, ef=1)[0]["id"] == ids[i]
        hits = col.search_batch(vecs[:8], 1, ef=1)  # the batch path too
        assert [h[0]["id"] for h in hits] == ids[:8]
        queries = np.random.default_rng(7).standard_normal((20, DIM)).astype(np.float32)
        assert _agreement(col, queries) >= 0.97


def test_deletes_and_upserts_respect_liveness(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 300) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 2000, seed=8)
        assert _graph_rows(col) == 2000
        ids, vecs, _ = _rows(2000, seed=8)
        queries = vecs[:50] + 0.01
        gone = [_ids(col.search(q, 1, ef=200))[0] for q in queries[:25]]  # each query's own row
        assert gone == ids[:25]
        assert col.delete(gone) == 25
        moved = np.random.default_rng(9).standard_normal((25, DIM)).astype(np.float32) * 10
        col.upsert(ids=ids[25:50], vectors=moved)  # the old rows die (in the graph), the new ones follow
        for hits in col.search_batch(queries, 10, ef=400):
            assert not set(_ids(hits)) & set(gone)
        for i, q in enumerate(moved):  # an upserted id is found at its new vector, once
            hits = col.search(q, 3, ef=400)
            assert hits[0]["id"] == ids[25 + i] and hits[0]["distance"] == pytest.approx(0.0, abs=1e-3)
            assert _ids(hits).count(ids[25 + i]) == 1
        assert _graph_rows(col) == 2000 - 25  # live rows the graph covers: the upserts' new rows too
        assert _agreement(col, queries) >= 0.97
        assert col.memtable.graph is not None and col.memtable.graph.indexed == 2025  # dead rows stay in it


@pytest.mark.parametrize("exact_rows", [None, 0])  # the planner's exact path, and the graph walk with a mask
def test_filters_go_through_the_allowed_set(tmp_path: Path, exact_rows: int | None) -> None:
    with _open(tmp_path / "d", 300) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        col.planner_exact_rows = exact_rows
        _insert(col, 3000, seed=10)
        assert _graph_rows(col) == 3000
        col.delete([f"r{i:06d}" for i in range(0, 3000, 7)])
        queries = np.random.default_rng(11).standard_normal((16, DIM)).astype(np.float32)
        flt = {"g": {"$in": [1, 3]}}
        for hits in col.search_batch(queries, 10, filter=flt, ef=400):
            assert len(hits) == 10 and all(h["metadata"]["g"] in (1, 3) for h in hits)
        assert _agreement(col, queries, filter=flt) >= 0.97
        assert _agreement(col, queries[:2], filter={"g": 4}) >= 0.9


def test_threshold_crossing_and_off(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 500) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        eng.create_collection("flat", DIM, distance_metric="euclidean")
        col, flat = eng.collection("c"), eng.collection("flat")
        _insert(col, 500, seed=12)
        _insert(flat, 900, seed=12)
        assert col.wait_for_memtable_index(WAIT) and flat.wait_for_memtable_index(WAIT)
        assert col.memtable.graph is None and col.stats()["memtable_indexed_rows"] == 0  # 500: not more than 500
        assert flat.memtable.graph is None  # a flat collection is scanned exactly: no graph
        _insert(col, 1, seed=13, start=500)
        assert _graph_rows(col) == 501
        eng.update_collection("c", indexing_algorithm="flat")  # a flat collection drops its graph
        assert col.memtable.graph is None and col.stats()["memtable_indexed_rows"] == 0
    with _open(tmp_path / "off", 0) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 800, seed=14)
        assert col.wait_for_memtable_index(WAIT) and col.memtable.graph is None


@pytest.mark.parametrize("bad", [-1, True, 1.5, "10"])
def test_bad_setting_is_refused(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValidationError, match="memtable_index_rows"):
        Engine.open(tmp_path / "d", memtable_index_rows=bad)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValidationError, match="memtable_index_rows"):
        ServerConfig(data_dir=tmp_path / "x", memtable_index_rows=-5).validate()


def test_the_daemon_setting_reaches_the_engine(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("memtable_index_rows = 0\n")
    assert load_config({"config": str(toml)}, environ={}).storage_options()["memtable_index_rows"] == 0
    cfg = load_config({"config": str(toml)}, environ={"PROXIMADB_MEMTABLE_INDEX_ROWS": "77"})
    with Engine.open(tmp_path / "d", **cfg.storage_options()) as engine:
        assert engine.options.memtable_index_rows == 77
    assert load_config({"memtable_index_rows": 5}, environ={}).memtable_index_rows == 5
    assert ServerConfig().memtable_index_rows == memtable_index.DEFAULT_INDEX_ROWS == 20_000
    with pytest.raises(ValidationError, match="memtable_index_rows must be 0"):
        load_config({"memtable_index_rows": -1}, environ={})


def test_flush_mid_way_and_after(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 300) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 1500, seed=15)
        assert _graph_rows(col) == 1500
        queries = np.random.default_rng(16).standard_normal((10, DIM)).astype(np.float32)
        reached, release = threading.Event(), threading.Event()
        seen: dict[str, Any] = {}

        def hold(step: str) -> None:
            if step == "written":
                reached.set()
                assert release.wait(WAIT)

        col.flush_hook = hold
        flusher = threading.Thread(target=col.flush)
        flusher.start()
        try:
            assert reached.wait(WAIT)
            assert col.sealed and col.sealed[0].graph is not None and col.memtable.graph is None
            seen["agreement"] = _agreement(col, queries)  # the sealed memtable, searched through its graph
            _insert(col, 400, seed=17, start=1500)  # the new memtable: past 300 rows, a graph of its own
            assert _graph_rows(col) == 1900
        finally:
            release.set()
            flusher.join(WAIT)
        col.flush_hook = None
        assert seen["agreement"] >= 0.97
        assert not col.sealed and col.memtable.graph is not None
        col.flush()
        assert col.memtable.graph is None and col.stats()["memtable_indexed_rows"] == 0
        assert col.wait_for_indexes(WAIT)
        assert col.count() == 1900 and _agreement(col, queries) >= 0.97


def test_reopen_rebuilds_the_graph_from_the_wal(tmp_path: Path) -> None:
    queries = np.random.default_rng(19).standard_normal((10, DIM)).astype(np.float32)
    with _open(tmp_path / "d", 300, flush_on_close=False) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 1200, seed=18)
        col.delete(["r000003", "r000700"])
        before = col.search_batch(queries, 10, exact=True)
    with _open(tmp_path / "d", 300, flush_on_close=False) as eng:
        col = eng.collection("c")
        assert col.stats()["segments"] == 0  # the rows came back from the WAL
        assert _graph_rows(col) == 1198
        assert col.search_batch(queries, 10, exact=True) == before
        assert _agreement(col, queries) >= 0.97


def test_concurrent_inserts_and_searches(tmp_path: Path) -> None:
    with _open(tmp_path / "d", 200) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = eng.collection("c")
        _insert(col, 300, seed=20)
        done = threading.Event()
        errors: list[BaseException] = []
        written: set[str] = set(_rows(300, seed=20)[0])
        searches = [0]

        def writer() -> None:
            try:
                for b in range(30):
                    ids, vecs, metas = _rows(100, seed=100 + b, start=300 + 100 * b)
                    written.update(ids)  # before the insert: its rows are searchable before it returns
                    col.insert(ids=ids, vectors=vecs, metadatas=metas)
                    if b % 10 == 9:
                        col.delete([ids[0]])
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        def searcher(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                while not done.is_set() or searches[0] < 20:
                    m = int(rng.integers(1, 6))
                    for hits in col.search_batch(rng.standard_normal((m, DIM)).astype(np.float32), 10,
                                                 filter={"g": {"$ne": 2}} if m == 2 else None):
                        assert len(hits) == 10
                        assert all(h["id"] in written for h in hits)  # a row written, never a wrong id
                        d = [h["distance"] for h in hits]
                        assert d == sorted(d)
                        assert len(set(_ids(hits))) == 10
                    searches[0] += 1
            except BaseException as exc:
                errors.append(exc)

        _run_together(writer, *(lambda s=s: searcher(s) for s in (1, 2)))
        assert not errors, errors
        assert _graph_rows(col) == 3300 - 3
        queries = np.random.default_rng(21).standard_normal((10, DIM)).astype(np.float32)
        assert _agreement(col, queries) >= 0.97


def test_graph_params_follow_the_collection() -> None:
    assert memtable_index.graph_params("flat", {}) is None
    assert memtable_index.graph_params("hnsw", {"M": 8, "ef": 99})["M"] == 8
    assert memtable_index.graph_params("ivf", {"nlist": 4}) == memtable_index.graph_params("hnsw", {})


def test_a_search_waits_for_at_most_the_growing_chunk() -> None:
    """A search that finds a chunk growing the graph (alone) goes in before the next such chunk: with a
    writer taking the graph alone back to back (until the search is done, or WAIT), the search still gets in."""
    graph = memtable_index.MemtableGraph(DIM, "l2", memtable_index.graph_params("hnsw", {"M": 4,
                                                                                         "ef_construction": 8}))
    graph.extend(np.random.default_rng(22).standard_normal((64, DIM)).astype(np.float32))
    started, searched = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            deadline = threading.Event()
            timer = threading.Timer(WAIT, deadline.set)
            timer.start()
            while not searched.is_set() and not deadline.is_set():
                with graph._alone():
                    started.set()
            timer.cancel()
            if not searched.is_set():
                errors.append(AssertionError(f"the search waited {WAIT}s for a writer that never paused"))
        except BaseException as exc:
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(WAIT)
    with graph.reading() as index:  # waits for at most the chunk in progress
        assert index is not None
        rows, _ = hnsw_shared.search(index, np.zeros((1, DIM), dtype=np.float32), 5, None, graph.published)
    searched.set()
    thread.join(WAIT)
    assert not errors, errors
    assert (rows >= 0).sum() == 5


def test_a_search_of_a_busy_small_graph_scans_every_row() -> None:
    """A chunk being added (the writer's flag, set here by hand) and a graph too small to be worth the wait:
    the search scans every row exactly, graph rows included, and does not wait."""
    from proximadb.index import distance

    rng = np.random.default_rng(23)
    base = rng.standard_normal((300, DIM)).astype(np.float32)
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    graph = memtable_index.MemtableGraph(DIM, "l2", memtable_index.graph_params("hnsw", {}))
    graph.extend(base[:100])

    def topk(q: np.ndarray, b: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return distance.topk_batch(q, b, k, "l2", mask=mask)

    want_idx, want_d = topk(queries, base, 11, None)  # an exact scan gives k + 1 (a tie at its cut shows)
    with graph._cond:
        graph._writer = True
    try:
        (idx, dist, first), = memtable_index.search(graph, base, queries, 10, None, None, topk)
    finally:
        with graph._cond:
            graph._writer = False
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_d)
    assert first == 0
    parts = memtable_index.search(graph, base, queries, 10, None, None, topk)  # idle: the graph, then the tail
    assert len(parts) == 2 and parts[0][0].max() < 100 and parts[1][0].min() >= 100
    assert parts[0][1].shape == (5, 10) and parts[0][2] is None and parts[1][1].shape == (5, 11) and parts[1][2] == 100


def test_a_lagging_graph_inserts_at_the_catch_up_ef_construction_and_still_finds_every_row() -> None:
    """Rows added while the graph lags more than ``lag_rows`` behind the memtable are inserted searching
    CATCH_UP_EF_CONSTRUCTION candidates, the rest at the collection's ef_construction; the graph built
    both ways finds each of its rows as its own nearest neighbour (ef covering the small graph)."""
    rng = np.random.default_rng(24)
    base = rng.standard_normal((600, DIM)).astype(np.float32)
    graph = memtable_index.MemtableGraph(DIM, "l2", memtable_index.graph_params("hnsw", {"ef_construction": 150}))
    assert graph.ef_construction == 150 and graph.lag_rows == memtable_index.LAG_COMPONENTS // DIM
    graph.extend(base[:200], backlog=graph.lag_rows + 1)
    assert graph.index.ef_construction == memtable_index.CATCH_UP_EF_CONSTRUCTION
    graph.extend(base[200:400], backlog=graph.lag_rows)  # not more than lag_rows behind: the collection's
    assert graph.index.ef_construction == 150
    graph.extend(base[400:], backlog=10**9)
    assert graph.index.ef_construction == memtable_index.CATCH_UP_EF_CONSTRUCTION
    with graph.reading() as index:  # a walk (ef well below the rows, so not the index's exact shortcut)
        assert index is not None and index.n_rows == 600 and index.reachable_count() == 600
        for row in (0, 199, 200, 399, 400, 599):
            rows, _ = index.search(base[row], 1, ef=32)
            assert rows.tolist() == [row]
    low = memtable_index.MemtableGraph(DIM, "l2", memtable_index.graph_params("hnsw", {"ef_construction": 20}))
    low.extend(base[:50], backlog=10**9)  # a collection's ef_construction below the catch-up one is kept
    assert low.index.ef_construction == 20


def test_hnsw_ef_construction_can_change_between_adds() -> None:
    from proximadb.index.hnsw import HNSWIndex

    index = HNSWIndex(DIM, "l2", M=8, ef_construction=100)
    index.ef_construction = 40
    assert index.ef_construction == 40
    index.ef_construction = 3  # at least M
    assert index.ef_construction == 8
    with pytest.raises(ValidationError, match="ef_construction must be >= 1"):
        index.ef_construction = 0


def test_the_indexer_catches_up_at_the_lower_ef_construction_then_goes_back(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The background thread gives the graph the memtable rows it lacks: a graph far behind (a whole insert
    of 1,500 rows past a threshold of 200, with a lag of 100 rows) inserts at the catch-up ef_construction,
    rows arriving once it has caught up (fewer than the lag) at the collection's."""
    monkeypatch.setattr(memtable_index, "LAG_COMPONENTS", 100 * DIM)
    with _open(tmp_path / "d", 200) as eng:
        eng.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                              index_params={"ef_construction": 120})
        col = eng.collection("c")
        _insert(col, 1500, seed=25, batch=1500)
        assert _graph_rows(col) == 1500
        graph = col.memtable.graph
        assert graph is not None and graph.lag_rows == 100
        caught_up = graph.catch_up_rows
        assert 0 < caught_up <= 1500  # its first chunk starts 1,500 behind (how many follow: chunk sizes)
        _insert(col, 50, seed=26, start=1500, batch=50)  # 50 behind: not lagging
        assert _graph_rows(col) == 1550
        assert graph.catch_up_rows == caught_up and graph.index.ef_construction == 120
        ids, vecs, _ = _rows(50, seed=26, start=1500)
        assert [h["id"] for h in col.search(vecs[7], 1, ef=32)] == [ids[7]]


def test_a_snapshot_knows_when_every_row_is_alive() -> None:
    """``all_alive`` (searches then pass no liveness mask): as many live ids as rows; a replaced or deleted row
    clears it, and the rows' alive flags agree."""
    from proximadb.storage.memtable import Memtable

    mt = Memtable(DIM)
    vectors = np.random.default_rng(25).standard_normal((4, DIM)).astype(np.float32)
    mt.put_batch(["a", "b"], vectors[:2], [None, None], np.zeros(2, dtype=np.int64))
    snap = mt.snapshot()
    assert snap.all_alive and snap.alive.all()
    mt.put_batch(["b"], vectors[2:3], [None], np.zeros(1, dtype=np.int64))  # replaces b's row
    snap = mt.snapshot()
    assert not snap.all_alive and snap.alive.tolist() == [1, 0, 1]
    mt.put_batch(["c"], vectors[3:], [None], np.zeros(1, dtype=np.int64))
    mt.delete("c")
    assert not mt.snapshot().all_alive


def test_a_graph_grown_chunk_by_chunk_is_searched_meanwhile() -> None:
    """MemtableGraph.extend from empty, chunk by chunk (growing the graph alone several times), while two threads
    search the memtable's rows through memtable_index.search with a filter mask, under cosine: every answer holds
    allowed rows only, at their true distances, best first within each part; the graph grew more than once and
    its final answers agree with numpy's."""
    from proximadb.index import distance

    rng = np.random.default_rng(26)
    n = 30_000
    base = rng.standard_normal((n, DIM)).astype(np.float32)
    queries = rng.standard_normal((6, DIM)).astype(np.float32)
    mask = (rng.random(n) < 0.6).astype(np.uint8)
    unit_base = base / np.linalg.norm(base, axis=1, keepdims=True)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base, queries = unit_base, unit_queries  # as a cosine collection keeps and asks them
    graph = memtable_index.MemtableGraph(DIM, "cosine", memtable_index.graph_params("hnsw", {"M": 8,
                                                                                           "ef_construction": 32}))

    def topk(q: np.ndarray, b: np.ndarray, k: int, m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return distance.topk_batch(q, b, k, "cosine", mask=m)

    def check(parts: list[tuple[np.ndarray, np.ndarray, int | None]]) -> None:
        for idx, dist, _ in parts:
            got = idx >= 0
            assert mask[idx[got]].all()
            true_d = 1.0 - (unit_queries[: len(idx), None, :] * unit_base[np.where(got, idx, 0)]).sum(-1)
            np.testing.assert_allclose(dist[got], true_d[got], atol=1e-4)
            assert (np.diff(np.where(got, dist, np.inf), axis=1) >= -1e-6).all()

    done = threading.Event()
    errors: list[BaseException] = []
    searches = [0, 0]

    def writer() -> None:
        try:
            for a in range(0, n, 500):
                graph.extend(base[a : a + 500])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def searcher(slot: int) -> None:
        try:
            while True:  # at least once
                finished = done.is_set()
                check(memtable_index.search(graph, base, queries[: 1 + searches[slot] % 6], 10, mask, 48, topk))
                searches[slot] += 1
                if finished:
                    return
        except BaseException as exc:
            errors.append(exc)

    _run_together(writer, *(lambda s=s: searcher(s) for s in (0, 1)))
    assert not errors, errors
    assert graph.published == n and graph.exclusive_chunks >= 3 and min(searches) >= 1
    parts = memtable_index.search(graph, base, queries, 10, mask, 64, topk)
    assert len(parts) == 1  # the whole memtable through the graph
    want = np.argsort(np.where(mask.astype(bool), 1.0 - unit_queries @ unit_base.T, np.inf), axis=1)[:, :10]
    got = parts[0][0]
    assert np.mean([len(set(got[i]) & set(want[i])) / 10 for i in range(len(queries))]) >= 0.95


def test_the_graph_reads_the_memtable_array_in_place_and_follows_it_when_it_grows() -> None:
    """Given the memtable's array (``source``), the graph keeps no copy of the vectors; when the memtable moves
    its rows to a larger array, the next chunk points the graph at that one (alone) and goes on."""
    from proximadb.storage.memtable import Memtable

    rng = np.random.default_rng(27)
    rows = rng.standard_normal((3000, DIM)).astype(np.float32)
    mt = Memtable(DIM, initial_rows=1024)
    graph = memtable_index.MemtableGraph(DIM, "l2", memtable_index.graph_params("hnsw", {"M": 8}))
    mt.put_batch([f"{i:05d}" for i in range(1000)], rows[:1000], [None] * 1000, np.zeros(1000, dtype=np.int64))
    first = mt.vector_array
    graph.extend(mt.vectors_of(0, 1000), source=first)
    mt.put_batch([f"{i:05d}" for i in range(1000, 3000)], rows[1000:], [None] * 2000, np.zeros(2000, dtype=np.int64))
    assert mt.vector_array is not first  # grown into a larger array
    before = graph.exclusive_chunks
    graph.extend(mt.vectors_of(1000, 3000), source=mt.vector_array)
    assert graph.exclusive_chunks == before + 1 and graph.indexed == 3000
    assert not graph.index.owns_vectors and graph.index.memory_usage()["vectors"] == 0
    with graph.reading() as index:
        assert index is not None
        for row in (0, 999, 1000, 2999):
            found, _ = hnsw_shared.search(index, rows[row : row + 1], 1, 64, graph.published)
            assert found[0, 0] == row
