"""The shared segment rewrite (storage/segment_rewrite.py) rolls back on a failure at any step before its commit.

For each user of the step (flush, compaction, migration) a fault is injected at
each step of the rewrite: *build* (the new segment directory was written and
renamed into place, then the step fails), *deletions* (writing a deletion
bitmap fails) and *commit* (saving the manifest fails). The collection must be
exactly as before: the same manifest bytes and files on disk (no leftover
segment directory, no PENDING, no bitmap), the same count, records and search
results in memory, the same records in a fresh process; and the step succeeds
once the fault is gone. The faults wrap the real functions (the real files are
written first where the step writes any); only the failure itself is injected.

Migration has no *deletions* case: it holds the collection lock from its
planning to its commit, so no deletion can happen meanwhile and it never
writes a bitmap (compaction.carry_deletions returns no persisted deletions).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import dump_in_fresh_process

from proximadb.storage import compaction, segment_rewrite
from proximadb.storage import manifest as manifest_mod
from proximadb.storage import segment as segment_mod
from proximadb.storage.engine import Engine
from proximadb.tools import migrate as migrate_tool

DIM = 16
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v1_datadir"


def _injected() -> OSError:
    return OSError(errno.EIO, "injected I/O error")


class Fault:
    """Makes one real storage function fail once armed (build: after doing its work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
        self.armed = False
        self.fired = 0
        if step == "build":
            self._wrap(monkeypatch, segment_rewrite, "write_segment", after=True)
        elif step == "deletions":
            self._wrap(monkeypatch, segment_mod, "write_bitmap", after=False)
        else:
            self._wrap(monkeypatch, manifest_mod.Manifest, "save", after=False)

    def _wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, after: bool) -> None:
        real = getattr(owner, name)

        def faulty(*args: Any, **kwargs: Any) -> Any:
            if not self.armed:
                return real(*args, **kwargs)
            self.fired += 1
            if after:
                real(*args, **kwargs)
            raise _injected()

        monkeypatch.setattr(owner, name, faulty)


def _disk(directory: Path) -> dict[str, Any]:
    """The manifest bytes and every file under the collection directory but the WAL."""
    return {
        "manifest": (directory / "MANIFEST").read_bytes(),
        "files": sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                        if p != directory / "wal" and directory / "wal" not in p.parents),
    }


def _view(col: Any, queries: np.ndarray) -> dict[str, Any]:
    """What a client sees: count, every record, exact and index search results."""
    page, cursor = col.scroll(limit=10_000, include_vectors=True)
    assert cursor is None
    return {
        "count": col.count(),
        "records": {r["id"]: (r["vector"].tolist(), r["metadata"]) for r in page},
        "exact": [[h["id"] for h in hits] for hits in col.search_batch(queries, k=5, exact=True)],
        "search": [[h["id"] for h in hits] for hits in col.search_batch(queries, k=5)],
        "segments": [s.id for s in col.segments],
    }


def _fresh(data: Path) -> dict[str, Any]:
    return {cid: {rid: (rec["vector"], rec["metadata"]) for rid, rec in recs.items()}
            for cid, recs in dump_in_fresh_process(data).items()}


def _insert(col: Any, tag: str, n: int) -> list[str]:
    rng = np.random.default_rng(len(tag) * 1000 + n)
    ids = [f"{tag}-{i:04d}" for i in range(n)]
    col.insert(ids=ids, vectors=rng.standard_normal((n, DIM)).astype(np.float32),
               metadatas=[{"tag": tag, "i": i} for i in range(n)])
    return ids


QUERIES = np.random.default_rng(7).standard_normal((3, DIM)).astype(np.float32)


@pytest.mark.parametrize("step", ["build", "deletions", "commit"])
def test_failed_flush_leaves_the_collection_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      step: str) -> None:
    data = tmp_path / "data"
    fault = Fault(monkeypatch, step)
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        first = _insert(col, "a", 300)
        col.flush()
        col.delete(first[:40])  # a dirty bitmap for the flush to write
        _insert(col, "b", 200)
        col.wait_for_indexes()
        disk, view = _disk(col.directory), _view(col, QUERIES)
        fault.armed = True
        with pytest.raises(OSError, match="injected I/O error"):
            col.flush()
        assert fault.fired == 1
        assert _disk(col.directory) == disk
        assert _view(col, QUERIES) == view
        assert col.stats()["memtable_rows"] == 200  # the rows stay in the memtable (and the WAL)
    assert _fresh(data) == {"c": {rid: tuple(rec) for rid, rec in view["records"].items()}}
    fault.armed = False
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        col = engine.collection("c")
        col.flush()
        assert col.stats()["memtable_rows"] == 0 and len(col.segments) == 2
        assert _view(col, QUERIES)["records"] == view["records"]


@pytest.mark.parametrize("step", ["build", "deletions", "commit"])
def test_failed_compaction_leaves_the_collection_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           step: str) -> None:
    data = tmp_path / "data"
    fault = Fault(monkeypatch, step)
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        for tag in ("a", "b", "c"):
            ids = _insert(col, tag, 150)
            col.flush()
            col.delete(ids[:20])
        col.flush()
        col.wait_for_indexes()
        before: dict[str, Any] = {}
        real_merge = compaction.merge_rows

        def merge_then_flush(plan: Any, *args: Any) -> Any:
            """A delete and a flush while the merge runs: the rewrite must carry that deletion (a bitmap)."""
            merged = real_merge(plan, *args)
            col.delete(["b-0100"])
            col.flush()
            before.update(disk=_disk(col.directory), view=_view(col, QUERIES))
            fault.armed = True
            return merged

        monkeypatch.setattr(compaction, "merge_rows", merge_then_flush)
        with pytest.raises(OSError, match="injected I/O error"):
            col.compact()
        assert fault.fired == 1
        assert _disk(col.directory) == before["disk"]
        assert _view(col, QUERIES) == before["view"]
        assert len(col.segments) == 3
    view = before["view"]
    assert _fresh(data) == {"c": {rid: tuple(rec) for rid, rec in view["records"].items()}}
    fault.armed = False
    monkeypatch.setattr(compaction, "merge_rows", real_merge)
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        col = engine.collection("c")
        assert col.compact()["segments_after"] == 1
        assert _view(col, QUERIES)["records"] == view["records"]


@pytest.mark.parametrize("step", ["build", "commit"])
def test_failed_migration_leaves_the_collection_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          step: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data)
    with Engine.open(data, auto_compact=False) as engine:  # the WAL tail into segments first: migrate's own
        names = [c["name"] for c in engine.list_collections()]  # flush is then a no-op
        for name in names:
            engine.collection(name).flush()
    with Engine.open(data, auto_compact=False) as engine:
        cols = {name: engine.collection(name) for name in names}
        dirs = {name: col.directory for name, col in cols.items()}
        disk = {name: _disk(col.directory) for name, col in cols.items()}
        queries = {name: np.random.default_rng(1).standard_normal((3, col.dim)).astype(np.float32)
                   for name, col in cols.items()}
        view = {name: _view(col, queries[name]) for name, col in cols.items()}
    fault = Fault(monkeypatch, step)
    real_merge = compaction.merge_rows

    def merge_then_arm(plan: Any, *args: Any) -> Any:
        fault.armed = True
        return real_merge(plan, *args)

    monkeypatch.setattr(compaction, "merge_rows", merge_then_arm)
    with pytest.raises(OSError, match="injected I/O error"):
        migrate_tool.migrate(data)
    assert fault.fired == 1
    assert {name: _disk(d) for name, d in dirs.items()} == disk  # rolled back at once, not only by the next open
    assert migrate_tool.plan(data).pending  # still to do
    with Engine.open(data, auto_compact=False) as engine:
        for name in names:
            col = engine.collection(name)
            assert _disk(col.directory) == disk[name]
            assert _view(col, queries[name]) == view[name]
    assert _fresh(data) == {name: {rid: tuple(rec) for rid, rec in view[name]["records"].items()} for name in names}
    fault.armed = False
    monkeypatch.setattr(compaction, "merge_rows", real_merge)
    migrate_tool.migrate(data)
    assert not migrate_tool.plan(data).pending
