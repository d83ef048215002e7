"""A flush writes its segment without the collection lock (storage/flush.py, storage/sealed.py).

Each test holds a flush between its write and its install with the collection's
``flush_hook`` and two Events (deterministic, no sleeps): while it is held,
writes complete, every read sees the sealed rows, and deletes, upserts and
metadata updates of sealed rows win over what the flush wrote, after the
install and after a reopen in a fresh process (with and without a flush on
close, so that the WAL replays them over the new segment too).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import dump_in_fresh_process

from proximadb import deadline
from proximadb.errors import DiskFullError, RequestTimeoutError
from proximadb.storage.engine import Engine

DIM = 16
WAIT = 120  # seconds: a bound on waiting for a thread that should finish, not a timing assertion


def _batch(tag: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    ids = [f"{tag}-{i:04d}" for i in range(n)]
    return ids, rng.standard_normal((n, DIM)).astype(np.float32), [{"tag": tag, "i": i} for i in range(n)]


class Hold:
    """A flush_hook that stops the flush at "written" until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, step: str) -> None:
        if step == "written":
            self.reached.set()
            assert self.release.wait(WAIT), "the test never released the held flush"


class Model:
    def __init__(self) -> None:
        self.records: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def insert(self, col: Any, tag: str, n: int, seed: int, *, upsert: bool = False) -> list[str]:
        ids, vecs, metas = _batch(tag, n, seed)
        assert col.insert(ids=ids, vectors=vecs, metadatas=metas, upsert=upsert) == ids
        self.records.update(zip(ids, zip(vecs, metas, strict=True), strict=True))
        return ids

    def check(self, col: Any) -> None:
        assert col.count() == len(self.records)
        got = col.get_many(sorted(self.records))
        assert [r["id"] for r in got] == sorted(self.records)
        for rec in got:
            vec, meta = self.records[rec["id"]]
            assert rec["metadata"] == meta and np.array_equal(rec["vector"], vec), rec["id"]

    def check_fresh(self, data: Path, **options: Any) -> None:
        state = dump_in_fresh_process(data, **options)["c"]
        assert sorted(state) == sorted(self.records)
        for id_, rec in state.items():
            vec, meta = self.records[id_]
            assert rec["metadata"] == meta and np.array_equal(np.asarray(rec["vector"], np.float32), vec), id_


@pytest.fixture
def held() -> Iterator[Hold]:
    hold = Hold()
    yield hold
    hold.release.set()  # never leave a flush thread blocked


def _start_flush(col: Any, hold: Hold) -> threading.Thread:
    """An explicit flush in a thread, held at "written"; returns once it is held."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            col.flush()
        except BaseException as exc:  # surfaced by the test through the thread's result
            errors.append(exc)

    col.flush_hook = hold
    thread = threading.Thread(target=run)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    assert hold.reached.wait(WAIT), f"the flush never reached its write step: {errors}"
    return thread


@pytest.mark.parametrize("flush_on_close", [True, False], ids=["flush-on-close", "wal-replay"])
def test_writes_and_reads_go_on_while_a_flush_is_held(tmp_path: Path, held: Hold, flush_on_close: bool) -> None:
    data = tmp_path / "data"
    model = Model()
    opts: dict[str, Any] = {"fsync": "always", "flush_bytes": 64 << 20, "auto_compact": False,
                            "flush_on_close": flush_on_close}
    with Engine.open(data, **opts) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        old = model.insert(col, "old", 200, 1)
        col.flush()
        col.delete(old[:10])  # a dirty bitmap for the held flush to persist
        for id_ in old[:10]:
            del model.records[id_]
        sealed = model.insert(col, "sealed", 300, 2)
        flusher = _start_flush(col, held)
        assert len(col.sealed) == 1 and col.sealed[0].live_count == 300 and len(col.segments) == 1

        # A writer thread completes its batches while the flush is held.
        def write() -> None:
            for b in range(5):
                model.insert(col, f"w{b}", 50, 10 + b)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(WAIT)
        assert not writer.is_alive() and flusher.is_alive() and not held.release.is_set()

        # Reads see the sealed rows: get, count, filtered count, scroll, exact and index search.
        model.check(col)
        assert col.count({"tag": "sealed"}) == 300
        assert col.get(sealed[7])["metadata"] == {"tag": "sealed", "i": 7}
        pages: list[str] = []
        cursor = None
        while True:
            page, cursor = col.scroll(limit=97, cursor=cursor)
            pages += [r["id"] for r in page]
            if cursor is None:
                break
        assert pages == sorted(model.records)
        vec = model.records[sealed[42]][0]
        assert col.search(vec, k=1)[0]["id"] == sealed[42]
        assert col.search(vec, k=3, filter={"tag": "sealed"})[0]["id"] == sealed[42]

        # Deletes, upserts and metadata updates of sealed rows (and of segment rows) win over the flush.
        assert col.delete(sealed[:5] + old[10:12]) == 7
        for id_ in sealed[:5] + old[10:12]:
            del model.records[id_]
        new_vecs = _batch("x", 3, 99)[1]
        col.upsert(ids=sealed[5:8], vectors=new_vecs, metadatas=[{"upserted": True}] * 3)
        model.records.update({i: (v, {"upserted": True}) for i, v in zip(sealed[5:8], new_vecs, strict=True)})
        col.update_metadata(sealed[8], {"note": "updated", "i": None})
        model.records[sealed[8]] = (model.records[sealed[8]][0], {"tag": "sealed", "note": "updated"})
        with pytest.raises(Exception, match="already exist"):
            col.insert(ids=[sealed[9]], vectors=new_vecs[:1])  # a sealed id still exists for the id checks
        model.check(col)

        held.release.set()
        flusher.join(WAIT)
        assert not flusher.is_alive() and flusher.errors == []  # type: ignore[attr-defined]
        assert col.sealed == [] and len(col.segments) == 2
        new = col.segments[1]
        assert new.rows == 300 and new.live_count == 300 - 9  # 5 deleted, 3 upserted, 1 updated since the seal
        model.check(col)
        assert col.search(model.records[sealed[6]][0], k=1)[0]["id"] == sealed[6]
        stats = col.stats()
        assert stats["memtable_rows"] == 250 + 3 + 1 and stats["checkpoint_seq"] < stats["wal_last_seq"]
    model.check_fresh(data, fsync="always")
    with Engine.open(data, **opts) as engine:
        model.check(engine.collection("c"))


@contextmanager
def _background_flush_held(data: Path, model: Model, held: Hold, rows: int) -> Iterator[Any]:
    """A collection (flush_bytes 100,000) whose first insert of ``rows`` rows, past flush_bytes, started a
    background flush that ``held`` holds at "written"; the engine closes after the block."""
    with Engine.open(data, fsync="always", flush_bytes=100_000, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.flush_hook = held
        model.insert(col, "a", rows, 1)  # past flush_bytes: the flush starts in the background and is held
        assert held.reached.wait(WAIT)
        yield col


def test_a_full_memtable_flushes_in_the_background(tmp_path: Path, held: Hold) -> None:
    """The write that fills the memtable starts the flush and returns; later writes complete while it is held."""
    data = tmp_path / "data"
    model = Model()
    with _background_flush_held(data, model, held, 1000) as col:
        assert col._flush_thread is not None and col._flush_thread.is_alive()
        for b in range(3):  # the memtable passes flush_bytes again: no second flush while one runs
            model.insert(col, f"b{b}", 1000, 2 + b)
        assert len(col.sealed) == 1 and col.segments == []
        model.check(col)
        col.delete(["a-0000"])
        del model.records["a-0000"]
        held.release.set()
        assert col.wait_for_flush(WAIT)
        assert len(col.segments) == 1 and col.segments[0].live_count == 999 and col.sealed == []
        col.flush_hook = None
        col.flush()  # the rest, in this thread
        assert len(col.segments) == 2 and col.stats()["memtable_rows"] == 0
        model.check(col)
    model.check_fresh(data)


def test_a_memtable_at_its_bound_makes_inserts_wait_for_the_flush(tmp_path: Path, held: Hold) -> None:
    """A write stall (flush.py): while a flush is held, inserts go on until the memtable holds 4 x flush_bytes;
    the next insert waits, changing nothing, until the flush installs, then completes and starts the next
    flush itself. A delete does not wait. Nothing is lost, after a reopen too."""
    data = tmp_path / "data"
    model = Model()
    with _background_flush_held(data, model, held, 1600) as col:
        b = 0
        while col.memtable.approx_bytes < 4 * 100_000:  # writes go on up to the bound
            model.insert(col, f"b{b}", 500, 10 + b)
            b += 1
        assert col.write_stalls == 0 and len(col.sealed) == 1
        done = threading.Event()
        errors: list[BaseException] = []

        def stalled() -> None:
            try:
                model.insert(col, "late", 100, 99)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            done.set()

        writer = threading.Thread(target=stalled)
        writer.start()
        for _ in range(WAIT * 100):  # until the writer is waiting (it counts the stall before it waits)
            if col.write_stalls or done.is_set():
                break
            threading.Event().wait(0.01)
        assert col.write_stalls == 1 and not done.is_set(), errors
        assert col.get("late-0000") is None  # it waits before it writes: nothing of it is in yet
        with deadline.scope(0.05), pytest.raises(RequestTimeoutError, match="a write stall"):
            col.insert(ids=["t-0"], vectors=np.zeros((1, DIM), np.float32))  # a request's deadline bounds the wait
        assert col.write_stalls == 2 and col.get("t-0") is None
        col.delete(["a-0001"])  # a delete never waits
        del model.records["a-0001"]
        held.release.set()
        writer.join(WAIT)
        assert done.is_set() and not errors, errors
        assert col.get("late-0000") is not None
        assert col.wait_for_flush(WAIT) and col.flush_hook is held
        col.flush_hook = None
        col.flush()
        model.check(col)
        assert col.write_stalls == 2 and col.stats()["memtable_rows"] == 0
    model.check_fresh(data)


def test_a_compaction_commits_after_a_held_flush(tmp_path: Path, held: Hold) -> None:
    """A compaction whose merge ends while a flush is held waits for the flush's commit, so the deletions
    the flush persists end up in the merged segment; the state survives a reopen."""
    data = tmp_path / "data"
    model = Model()
    with Engine.open(data, fsync="always", flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        firsts = []
        for tag in ("s1", "s2"):
            firsts.append(model.insert(col, tag, 200, len(firsts)))
            col.flush()
        col.delete(firsts[0][:20])  # in memory only: the held flush persists them
        for id_ in firsts[0][:20]:
            del model.records[id_]
        model.insert(col, "m", 100, 7)
        flusher = _start_flush(col, held)
        report: dict[str, Any] = {}
        compactor = threading.Thread(target=lambda: report.update(col.compact()))
        compactor.start()
        col.delete(firsts[1][:3])  # during both
        for id_ in firsts[1][:3]:
            del model.records[id_]
        model.check(col)
        held.release.set()
        flusher.join(WAIT)
        compactor.join(WAIT)
        assert not flusher.is_alive() and not compactor.is_alive() and len(report["merged"]) == 2
        model.check(col)
        assert col.stats()["segments"] == 2  # the merged one and the flushed one
    model.check_fresh(data)
    with Engine.open(data, fsync="always", flush_on_close=False) as engine:
        model.check(engine.collection("c"))


def test_a_failed_flush_keeps_its_sealed_rows_for_the_next_one(tmp_path: Path) -> None:
    """A flush that fails after writing its segment (here: the hook raises ENOSPC) removes what it wrote and
    keeps the sealed memtable readable; a delete and an upsert of sealed rows after the failure, then the next
    flush writes the old sealed memtable and the new one together into one segment, in id order."""
    data = tmp_path / "data"
    model = Model()
    with Engine.open(data, fsync="always", flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        first = model.insert(col, "b", 300, 1)

        def no_space(step: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

        col.flush_hook = no_space
        with pytest.raises(DiskFullError):
            col.flush()
        assert len(col.sealed) == 1 and col.segments == []
        assert not any(p.name.startswith("seg-") for p in (col.directory / "segments").iterdir())
        assert col.stats()["memtable_rows"] == 300
        model.check(col)
        col.flush_hook = None
        col.delete(first[:4])
        for id_ in first[:4]:
            del model.records[id_]
        second = model.insert(col, "a", 200, 2)  # ids sort before the sealed ones
        new_vecs = _batch("u", 2, 3)[1]
        col.upsert(ids=first[4:6], vectors=new_vecs, metadatas=[{"u": 1}, {"u": 2}])
        model.records.update({first[4]: (new_vecs[0], {"u": 1}), first[5]: (new_vecs[1], {"u": 2})})
        col.flush()
        assert col.sealed == [] and len(col.segments) == 1 and col.stats()["memtable_rows"] == 0
        seg = col.segments[0]
        assert seg.rows == seg.live_count == 300 - 4 + 200  # dead at the second seal: not written at all
        assert [seg.ids[r] for r in range(3)] == second[:3] and col.stats()["last_flush_error"] is None
        model.check(col)
    model.check_fresh(data)


def test_random_writes_with_background_flushes_and_readers_match_a_model(tmp_path: Path) -> None:
    """Inserts, upserts, deletes and metadata updates of a small id pool with a tiny flush threshold (a
    background flush every few operations, each racing the next writes) while a reader thread searches,
    counts and scrolls: no read fails, and the end state equals the model, live and after a reopen."""
    data = tmp_path / "data"
    rng = np.random.default_rng(5)
    model: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    failures: list[BaseException] = []
    done = threading.Event()
    with Engine.open(data, fsync="never", flush_bytes=4_000, auto_compact=True) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")

        def read() -> None:
            q = np.ones(DIM, dtype=np.float32)
            try:
                while not done.is_set():
                    col.search(q, k=5)
                    col.count({"op": {"$gte": 0}})
                    col.scroll(limit=50)
            except BaseException as exc:  # surfaced below
                failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(1000):
            kind = rng.integers(4)
            ids = sorted({f"p{int(x)}" for x in rng.integers(0, 80, int(rng.integers(1, 15)))})
            if kind <= 1:
                vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
                col.upsert(ids=ids, vectors=vecs, metadatas=[{"op": i}] * len(ids))
                model.update({id_: (v, {"op": i}) for id_, v in zip(ids, vecs, strict=True)})
            elif kind == 2:
                col.delete(ids)
                for id_ in ids:
                    model.pop(id_, None)
            elif ids[0] in model:
                col.update_metadata(ids[0], {"op": i, "u": True})
                model[ids[0]] = (model[ids[0]][0], {"op": i, "u": True})
        done.set()
        reader.join(WAIT)
        assert failures == [] and not reader.is_alive()
        assert col.wait_for_flush(WAIT) and len(col.segments) >= 1
        state = {r["id"]: r for r in col.get_many(sorted(model))}
        assert col.count() == len(model) == len(state)
        for id_, (vec, meta) in model.items():
            assert state[id_]["metadata"] == meta and np.array_equal(state[id_]["vector"], vec), id_
    fresh = dump_in_fresh_process(data)["c"]
    assert sorted(fresh) == sorted(model)
    for id_, (vec, meta) in model.items():
        assert fresh[id_]["metadata"] == meta and np.array_equal(np.asarray(fresh[id_]["vector"], np.float32), vec)
