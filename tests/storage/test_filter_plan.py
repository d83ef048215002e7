"""The filtered-search planner (proximadb/storage/filter_plan.py) through a collection: at its threshold
and one row below it, a search takes each path (the exact scan of the matching rows, the mask through
the segment's HNSW or the memtable's dense scan), and both give the brute-force answer over the rows
that match and are alive now, with deletes, expiry (a controlled clock) and the memtable mixed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.filters import compile_filter
from proximadb.index import distance
from proximadb.storage import expiry, filter_plan
from proximadb.storage.engine import Engine

DIM = 8
T0 = 1_900_000_000_000_000  # µs since the epoch: the controlled "now"
SECOND = 1_000_000
SEGMENT_ROWS = 600
MEMTABLE_ROWS = 60


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _records(start: int, count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + count):
        out.append({"id": f"r{i:04d}", "vector": rng.standard_normal(DIM).astype(np.float32),
                    "metadata": {"g": i % 6, "tag": f"t{i % 3}", "price": float(i % 50)},
                    "timestamp": T0 - SECOND,
                    "expires_at": T0 + 5 * SECOND if i % 7 == 0 else None})
    return out


def _brute_force(model: dict[str, dict[str, Any]], spec: dict[str, Any], q: np.ndarray, k: int) -> list[str]:
    flt = compile_filter(spec)
    assert flt is not None
    ids = sorted(i for i, r in model.items() if flt.matches(r["metadata"]))
    if not ids:
        return []
    base = np.stack([model[i]["vector"] for i in ids])
    order = np.argsort(((base - q) ** 2).sum(1), kind="stable")[:k]
    return [ids[j] for j in order]


@pytest.mark.parametrize("spec", [{"g": 0}, {"tag": "t1", "price": {"$lt": 20.0}}, {"$or": [{"g": 1}, {"g": 2}]},
                                  {"g": {"$ne": 3}, "price": {"$gte": 45.0}}])
def test_both_sides_of_the_threshold_give_the_brute_force_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  spec: dict[str, Any]) -> None:
    clock = Clock(T0)
    monkeypatch.setattr(expiry, "now_us", clock)
    rng = np.random.default_rng(7)
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        segment_records = _records(0, SEGMENT_ROWS, rng)
        col.insert(segment_records)
        col.flush()
        assert col.wait_for_indexes(timeout=120)
        memtable_records = _records(SEGMENT_ROWS, MEMTABLE_ROWS, rng)
        col.insert(memtable_records)
        seg = col.segments[0]
        assert seg.index is not None and col.memtable.snapshot().rows == MEMTABLE_ROWS
        model = {r["id"]: r for r in segment_records + memtable_records}
        doomed = [f"r{i:04d}" for i in (0, 6, 12, 13, 601, 606)]  # segment and memtable rows
        col.delete(doomed)
        for i in doomed:
            del model[i]
        clock.now = T0 + 5 * SECOND  # every seventh row has expired
        model = {i: r for i, r in model.items() if r["expires_at"] is None}

        flt = compile_filter(spec)
        assert flt is not None
        matching = int(flt.index_mask(seg.payload, seg.rows).sum())  # deleted and expired rows included
        assert 0 < matching < SEGMENT_ROWS
        assert filter_plan.plan(flt, seg.payload, seg.rows, exact_rows=matching).rows is not None
        assert filter_plan.plan(flt, seg.payload, seg.rows, exact_rows=matching - 1).mask is not None
        queries = rng.standard_normal((5, DIM)).astype(np.float32)
        for limit in (matching, matching - 1, None):
            col.planner_exact_rows = limit
            for k in (5, 1000):
                want = [_brute_force(model, spec, q, k) for q in queries]
                got = [[h["id"] for h in col.search(q, k=k, filter=spec, ef=1000)] for q in queries]
                assert got == want, limit
                batch = col.search_batch(queries, k=k, filter=spec, ef=1000)  # the threaded drivers
                assert [[h["id"] for h in hits] for hits in batch] == want, limit


def test_topk_rows_batch_matches_one_query_at_a_time() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, DIM)).astype(np.float32)
    queries = rng.standard_normal((9, DIM)).astype(np.float32)
    rows = np.array([250, 3, 17, 17, 99, 4], dtype=np.int64)  # unsorted, a duplicate: sorted and deduplicated
    for metric in ("l2", "dot", "cosine"):
        idx, dist = distance.topk_rows_batch(queries, base, rows, 8, metric)
        assert idx.shape == (9, 8) and (idx[:, 5:] == -1).all() and np.isinf(dist[:, 5:]).all()
        for qi, q in enumerate(queries):
            one_idx, one_dist = distance.topk_rows(q, base, rows, 8, metric)
            assert idx[qi, :5].tolist() == one_idx.tolist() and np.allclose(dist[qi, :5], one_dist)
    with pytest.raises(Exception, match="outside"):
        distance.topk_rows_batch(queries, base, np.array([300]), 2)
    empty_idx, _ = distance.topk_rows_batch(queries, base, np.empty(0, np.int64), 3)
    assert (empty_idx == -1).all()
