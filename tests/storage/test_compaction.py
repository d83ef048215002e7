"""Compaction: same logical content, fewer bytes, safe against concurrent writes and crashes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import dump_in_fresh_process

from proximadb.storage.engine import Engine

DIM = 16


def _vecs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _content(col: Any) -> dict[str, tuple[list[float], dict]]:
    out, cursor = {}, None
    while True:
        page, cursor = col.scroll(limit=1000, cursor=cursor, include_vectors=True)
        out.update({r["id"]: (r["vector"].tolist(), r["metadata"]) for r in page})
        if cursor is None:
            return out


def _fresh(state: dict) -> dict[str, tuple[list[float], dict]]:
    return {k: (v["vector"], v["metadata"]) for k, v in state.items()}


@pytest.mark.parametrize("chunk_rows", [8192, 1, 7])  # rewrite_chunk_rows: the merge streams in chunks this size
def test_compaction_keeps_content_and_drops_dead_rows(tmp_path: Path, chunk_rows: int) -> None:
    opts = {"fsync": "never", "auto_compact": False, "rewrite_chunk_rows": chunk_rows}
    with Engine.open(tmp_path / "d", **opts) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 8, "ef_construction": 32})
        col = engine.collection("c")
        for b in range(3):
            col.insert(ids=[f"b{b}-{i:04d}" for i in range(400)], vectors=_vecs(400, b),
                       metadatas=[{"b": b, "i": i} for i in range(400)])
            col.flush()
        col.delete([f"b0-{i:04d}" for i in range(300)])
        col.upsert(ids=["b1-0001", "new"], vectors=_vecs(2, 9), metadatas=[{"up": 1}, {"up": 2}])
        col.update_metadata("b2-0002", {"touched": True})
        col.flush()
        col.delete(["b1-0003"])  # only in memory: after the last checkpoint
        before = _content(col)
        report = col.compact()
        assert report["segments_before"] == 4 and report["segments_after"] == 1
        assert report["bytes_after"] < report["bytes_before"]
        assert _content(col) == before
        assert col.wait_for_indexes(timeout=60) and col.stats()["indexed_segments"] == 1
        q = _vecs(1, 77)[0]
        assert [h["id"] for h in col.search(q, k=5, exact=True)] == [h["id"] for h in col.search(q, k=5, ef=200)]
        assert len(list((col.directory / "segments").iterdir())) == 1
    assert _fresh(dump_in_fresh_process(tmp_path / "d", **opts)["c"]) == before


def test_a_compaction_with_nothing_to_merge_reports_the_rows_it_left(tmp_path: Path) -> None:
    """No merge (no segment, or one with no dead row): the report counts the input's rows and bytes before and
    after, as a merge does, not 0 rows beside a segment."""
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM, indexing_algorithm="flat")  # flat: no index file written meanwhile
        col = engine.collection("c")
        report = col.compact()
        assert report["merged"] == [] and all(report[key] == 0 for key in (
            "segments_before", "segments_after", "rows_before", "rows_after", "bytes_before", "bytes_after"))
        col.insert(ids=[f"a{i}" for i in range(50)], vectors=_vecs(50, 1))
        col.flush()
        seg = col.segments[0]
        size = sum(p.stat().st_size for p in seg.path.iterdir() if p.is_file())
        report = col.compact()
        assert report["merged"] == [] and (report["segments_before"], report["segments_after"]) == (1, 1)
        assert (report["rows_before"], report["rows_after"]) == (50, 50)
        assert report["bytes_before"] == report["bytes_after"] == size > 0
        col.insert(ids=[f"b{i}" for i in range(30)], vectors=_vecs(30, 2))
        col.flush()
        report = col.compact([seg.id])  # one of two segments, nothing to drop in it
        assert report["merged"] == [] and (report["segments_before"], report["segments_after"]) == (2, 2)
        assert (report["rows_before"], report["rows_after"], report["bytes_before"]) == (50, 50, size)


def test_row_moved_by_an_update_after_the_checkpoint_survives_compaction_and_restart(tmp_path: Path) -> None:
    # The merged segment must be the checkpoint state: replay re-applies the update, which
    # needs the row where the checkpoint had it. Merging the in-memory state would lose "a".
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(ids=["a", "b"], vectors=_vecs(2, 1), metadatas=[{"v": 1}, {"v": 1}])
        col.flush()
        col.insert(ids=["c"], vectors=_vecs(1, 2))
        col.flush()
        col.update_metadata("a", {"v": 2})  # moves "a" into the memtable; WAL only
        col.delete(["b"])  # WAL only
        col.compact()
        expected = _content(col)
        assert expected["a"][1] == {"v": 2} and "b" not in expected
    state = _fresh(dump_in_fresh_process(tmp_path / "d")["c"])
    assert state.keys() == expected.keys()
    for key, (vec, meta) in expected.items():
        np.testing.assert_allclose(state[key][0], vec, rtol=1e-6)
        assert state[key][1] == meta


def test_writes_during_compaction_are_kept(tmp_path: Path) -> None:
    opts = {"fsync": "never", "auto_compact": False}
    with Engine.open(tmp_path / "d", **opts) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        model: dict[str, tuple[list[float], dict]] = {}
        for b in range(4):
            ids = [f"s{b}-{i}" for i in range(3000)]
            vecs = _vecs(3000, 10 + b)
            col.insert(ids=ids, vectors=vecs, metadatas=[{"b": b}] * 3000)
            model.update({i: (v.tolist(), {"b": b}) for i, v in zip(ids, vecs, strict=True)})
            col.flush()
        done = threading.Event()
        result: list[dict] = []
        worker = threading.Thread(target=lambda: (result.append(col.compact()), done.set()))
        worker.start()
        rng = np.random.default_rng(3)
        step = 0
        while not done.is_set() or step < 30:
            victim = f"s{rng.integers(4)}-{rng.integers(3000)}"
            if step % 3 == 0:
                col.delete([victim])
                model.pop(victim, None)
            elif step % 3 == 1:
                v = _vecs(1, 1000 + step)
                col.upsert(ids=[victim], vectors=v, metadatas=[{"u": step}])
                model[victim] = (v[0].tolist(), {"u": step})
            elif victim in model:
                col.update_metadata(victim, {"m": step})
                model[victim] = (model[victim][0], {**model[victim][1], "m": step})
            step += 1
        worker.join()
        assert result and result[0]["segments_after"] == 1
        assert _content(col) == model
    assert _fresh(dump_in_fresh_process(tmp_path / "d", **opts)["c"]) == model


def test_background_compaction_after_many_small_flushes(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never", flush_bytes=40_000) as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        for b in range(12):
            col.insert(ids=[f"x{b}-{i}" for i in range(200)], vectors=_vecs(200, b))
        col.flush()
        if col._background is not None:
            col._background.join(timeout=60)
        assert col.stats()["segments"] < 12 and col.count() == 2400
