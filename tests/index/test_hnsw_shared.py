"""Searches of an HNSW graph beside an add on another thread (proximadb/index/hnsw_shared.pyx)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.index import hnsw_shared
from proximadb.index._base import NoRoomError
from proximadb.index.hnsw import HNSWIndex

DIM = 8


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _shared(vectors: np.ndarray, room: int, metric: str = "l2", **params: int) -> HNSWIndex:
    index = HNSWIndex(DIM, metric, M=params.get("M", 8), ef_construction=params.get("ef_construction", 64), seed=3)
    hnsw_shared.reserve(index, room, room * 4)
    if len(vectors):
        hnsw_shared.add(index, np.arange(len(vectors)), vectors, index.ef_construction)
    return index


def _exact(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_a_shared_search_of_an_idle_graph_is_the_plain_search(metric: str) -> None:
    base, queries = _rows(2000, 1), _rows(20, 2)
    index = _shared(base, 4000, metric)
    mask = np.random.default_rng(3).random(2000) < 0.5
    for filt in (None, mask):
        got_ids, got_d = hnsw_shared.search(index, queries, 10, 32, 2000, filt)
        want_ids, want_d = index.search_batch(queries, 10, ef=32, filter_ids=None if filt is None else filt)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
    gone = int(want_ids[0, 0])
    index.mark_deleted(gone)
    got_ids, _ = hnsw_shared.search(index, queries, 10, 32, 2000)
    want_ids, _ = index.search_batch(queries, 10, ef=32)
    np.testing.assert_array_equal(got_ids, want_ids)
    assert gone not in got_ids


def test_the_limit_leaves_out_later_rows_but_walks_through_them() -> None:
    """Rows at or past ``limit`` are never returned; the rows below it are found as in a graph of their own:
    the exact path (few allowed) equals numpy's answer, the walk's recall is high, distances are true."""
    base, queries = _rows(3000, 4), _rows(50, 5)
    index = _shared(base, 3000)
    limit = 1200
    ids, dist = hnsw_shared.search(index, queries, 10, 64, limit)
    assert ((ids >= 0) & (ids < limit)).all()
    want = _exact(base[:limit], queries, 10)
    recall = np.mean([len(set(ids[i]) & set(want[i])) / 10 for i in range(len(queries))])
    assert recall >= 0.95
    true_d = ((queries[:, None, :] - base[ids]) ** 2).sum(-1)
    np.testing.assert_allclose(dist, true_d, rtol=1e-4, atol=1e-4)
    few = np.zeros(3000, dtype=bool)
    few[[3, 50, 700, 1199, 1200, 2999]] = True  # two of them past the limit
    ids, _ = hnsw_shared.search(index, queries[:3], 10, 64, limit, few)
    assert sorted(int(i) for i in ids[0] if i >= 0) == [3, 50, 700, 1199]
    ids, _ = hnsw_shared.search(index, queries[:3], 4, 64, 0)
    assert (ids == -1).all()


def test_an_add_that_needs_room_changes_nothing_a_search_sees() -> None:
    base, queries = _rows(3000, 6), _rows(5, 7)
    index = _shared(base[:500], 600)
    room = hnsw_shared.room(index)
    assert room >= 100 and index.n_rows + room < 2000
    before = hnsw_shared.search(index, queries, 10, 64, 500)
    with pytest.raises(NoRoomError):
        hnsw_shared.add(index, np.arange(500, 501 + room), base[500 : 501 + room], 64)
    assert index.n_rows == 500
    after = hnsw_shared.search(index, queries, 10, 64, 500)
    np.testing.assert_array_equal(before[0], after[0])
    hnsw_shared.reserve(index, 3000, 12_000)
    hnsw_shared.add(index, np.arange(500, 3000), base[500:], 64)
    assert index.n_rows == 3000 and index.reachable_count() == 3000
    assert hnsw_shared.room(HNSWIndex(DIM)) == 0  # not shared yet
    with pytest.raises(RuntimeError, match="reserve"):
        hnsw_shared.add(HNSWIndex(DIM), np.arange(1), base[:1], 64)


def test_too_little_upper_room_leaves_the_graph_as_it_was() -> None:
    """The room an add lacks is most often upper link words (their need is drawn row by row): the add leaves
    before it writes anything, with the level generator where it was, so once room is reserved the same add
    builds the graph an add with room from the start builds."""
    base, queries = _rows(6000, 10), _rows(20, 11)
    ample = HNSWIndex(DIM, "l2", M=8, ef_construction=32, seed=5)
    hnsw_shared.reserve(ample, 6000, 40_000)
    hnsw_shared.add(ample, np.arange(6000), base, 32)
    tight = HNSWIndex(DIM, "l2", M=8, ef_construction=32, seed=5)
    hnsw_shared.reserve(tight, 6000, 1)  # rows enough; upper words: the allocator's minimum only
    assert hnsw_shared.room(tight) >= 6000
    with pytest.raises(NoRoomError, match="upper link words"):
        hnsw_shared.add(tight, np.arange(6000), base, 32)
    assert tight.n_rows == 0 and len(tight) == 0
    hnsw_shared.reserve(tight, 6000, 40_000)
    hnsw_shared.add(tight, np.arange(6000), base, 32)
    assert tight.max_level == ample.max_level and tight.reachable_count() == ample.reachable_count() >= 5990
    np.testing.assert_array_equal(tight.unreachable_ids(), ample.unreachable_ids())
    np.testing.assert_array_equal(tight.search_batch(queries, 10, ef=32)[0], ample.search_batch(queries, 10, ef=32)[0])


def test_searches_run_beside_an_add_and_plain_calls_wait_their_turn() -> None:
    """An add of many rows on one thread; meanwhile searches of the rows added before it: each answer is
    rows below the limit, with their true distances, best first. A search bracketed by two readings of the
    row count that both fall inside the add ran beside it (at least one must: the add takes seconds and
    holds no GIL); a plain ``search`` bracketed so is refused. Their recall is a walk's."""
    first, more = 2000, 40_000
    base, queries = _rows(first + more, 8), _rows(16, 9)
    index = _shared(base[:first], first + more, ef_construction=200)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            hnsw_shared.add(index, np.arange(first, first + more), base[first:], 200)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    beside = hits = found = 0
    while thread.is_alive():
        n_before = index.n_rows
        ids, dist = hnsw_shared.search(index, queries[: 1 + beside % 8], 10, 32, first)
        plain = None
        if n_before > first:  # the add is under way or done (a plain search before it would stop it)
            try:
                index.search(queries[0], 5)
                plain = True
            except RuntimeError:
                plain = False
        n_after = index.n_rows
        assert ((ids >= 0) & (ids < first)).all()
        true_d = ((queries[: len(ids), None, :] - base[ids]) ** 2).sum(-1)
        np.testing.assert_allclose(dist, true_d, rtol=1e-4, atol=1e-4)
        assert (np.diff(dist, axis=1) >= 0).all()
        hits += int((ids >= 0).sum())
        want = _exact(base[:first], queries[: len(ids)], 10)
        found += sum(len(set(ids[i].tolist()) & set(want[i].tolist())) for i in range(len(ids)))
        if first < n_before and n_after < first + more:
            beside += 1
            assert plain is False
    thread.join()
    assert not errors, errors
    assert beside >= 1
    assert found / hits >= 0.9  # recall@10 of the searches made during the add
    assert index.n_rows == first + more and index.reachable_count() >= first + more - 5
    ids, _ = index.search_batch(queries, 10, ef=64)  # idle again: plain calls work
    want = _exact(base, queries, 10)
    assert np.mean([len(set(ids[i]) & set(want[i])) / 10 for i in range(len(queries))]) >= 0.9


def test_an_attached_array_is_read_in_place_and_only_its_next_rows_are_added() -> None:
    """``attach``: the index reads the caller's array (a memtable's) without a copy; an add must be that array's
    next rows (else refused, nothing changed); a larger array holding the same rows takes its place."""
    base, queries = _rows(3000, 12), _rows(10, 13)
    source = np.zeros((2000, DIM), dtype=np.float32)
    source[:1500] = base[:1500]
    index = HNSWIndex(DIM, "cosine", M=8, ef_construction=48, seed=6)
    hnsw_shared.attach(index, source)
    hnsw_shared.reserve(index, 3000, 12_000)
    hnsw_shared.add(index, np.arange(1000), source[:1000], 48)
    hnsw_shared.add(index, np.arange(1000, 1500), source[1000:1500], 48)
    assert not index.owns_vectors and index.memory_usage()["vectors"] == 0
    with pytest.raises(ValidationError, match="next rows"):
        hnsw_shared.add(index, np.arange(1500, 1600), base[1500:1600], 48)  # a copy, not the array's rows
    with pytest.raises(ValidationError, match="next rows"):
        hnsw_shared.add(index, np.arange(1500, 1600), source[1400:1500], 48)  # the array's, not the next ones
    assert index.n_rows == 1500
    larger = np.zeros((4000, DIM), dtype=np.float32)
    larger[:3000] = base  # the rows written, and those to come
    hnsw_shared.attach(index, larger)
    hnsw_shared.add(index, np.arange(1500, 3000), larger[1500:3000], 48)
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ids, dist = hnsw_shared.search(index, queries, 10, 64, 3000)
    np.testing.assert_allclose(dist, 1.0 - (q[:, None, :] * unit[ids]).sum(-1), atol=1e-5)
    want = np.argsort(1.0 - q @ unit.T, axis=1)[:, :10]
    assert np.mean([len(set(ids[i]) & set(want[i])) / 10 for i in range(len(q))]) >= 0.9
    with pytest.raises(ValidationError, match="float32"):
        hnsw_shared.attach(index, larger[:100])  # fewer rows than the index holds
