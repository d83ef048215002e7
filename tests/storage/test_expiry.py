"""expires_at is enforced: an expired row is never returned by search, get, get_many, scroll or count,
compaction drops it, and a collection default TTL stamps rows written without one.

The engine reads the time through ``proximadb.storage.expiry.now_us``; these tests replace it with a
controllable clock, so expiry is checked at exact moments, never by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.errors import ValidationError, VectorNotFoundError
from proximadb.storage import expiry
from proximadb.storage.collection import Collection
from proximadb.storage.engine import Engine

DIM = 4
T0 = 1_900_000_000_000_000  # µs since the epoch: the controlled "now" (2030)
SECOND = 1_000_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(expiry, "now_us", c)
    return c


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "data", fsync="never", auto_compact=False) as e:
        yield e


def _records(expires: dict[str, int | None]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(len(expires))
    return [{"id": i, "vector": rng.standard_normal(DIM).astype(np.float32), "metadata": {"g": 1},
             "timestamp": T0 - SECOND, "expires_at": x} for i, x in expires.items()]


def _visible(col: Collection) -> dict[str, Any]:
    """What every read path shows."""
    page, _ = col.scroll(limit=100)
    hits = col.search(np.ones(DIM, np.float32), k=10)
    exact = col.search(np.ones(DIM, np.float32), k=10, exact=True, filter={"g": 1})
    return {
        "get": sorted(i for i in "abcd" if col.get(i) is not None),
        "get_many": sorted(r["id"] for r in col.get_many(list("abcd"))),
        "scroll": [r["id"] for r in page],
        "scroll_filtered": [r["id"] for r in col.scroll(limit=100, filter={"g": 1})[0]],
        "count": col.count(),
        "count_filtered": col.count({"g": 1}),
        "search": sorted(h["id"] for h in hits),
        "search_filtered": sorted(h["id"] for h in exact),
        "stats_vectors": col.stats()["vectors"],
    }


def _all_show(ids: list[str]) -> dict[str, Any]:
    return {"get": ids, "get_many": ids, "scroll": ids, "scroll_filtered": ids, "count": len(ids),
            "count_filtered": len(ids), "search": ids, "search_filtered": ids, "stats_vectors": len(ids)}


@pytest.mark.parametrize("where", ["memtable", "segment", "hnsw segment"])
def test_expired_rows_are_never_returned(engine: Engine, clock: Clock, where: str) -> None:
    algorithm = "hnsw" if where == "hnsw segment" else "flat"
    engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm=algorithm)
    col = engine.collection("c")
    col.insert(_records({"a": T0 - 1, "b": T0 + 10 * SECOND, "c": None, "d": 1}))
    if where != "memtable":
        col.flush()
        assert col.wait_for_indexes(60)
    assert _visible(col) == _all_show(["b", "c"])  # a expired a moment ago, d in 1970
    clock.now = T0 + 10 * SECOND - 1
    assert _visible(col) == _all_show(["b", "c"])
    clock.now = T0 + 10 * SECOND  # expires_at is the first moment a row is gone
    assert _visible(col) == _all_show(["c"])


def test_an_expired_row_is_absent_for_writes_too(engine: Engine, clock: Clock) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    col.insert(_records({"a": T0 - 1, "b": None}))
    col.flush()
    assert col.delete(["a"]) == 0
    with pytest.raises(VectorNotFoundError):
        col.update_metadata("a", {"g": 2})
    col.insert(_records({"a": None}))  # not an upsert: the expired row does not count as existing
    assert col.get("a") is not None and col.count() == 2


def test_compaction_drops_expired_rows_and_reopen_keeps_them_gone(tmp_path: Path, clock: Clock) -> None:
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(_records({"a": T0 + SECOND, "b": None, "c": T0 + 100 * SECOND}))
        col.flush()
        clock.now = T0 + 2 * SECOND
        report = col.compact()  # one segment, nothing deleted: the expired row is reason enough
        assert (report["rows_before"], report["rows_after"]) == (3, 2)
        assert col.stats()["segment_rows"] == 2 and col.count() == 2
        col.insert(_records({"a": None}))  # the id is free again
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        col = engine.collection("c")
        assert sorted(r["id"] for r in col.scroll(limit=10)[0]) == ["a", "b", "c"]
        assert col.get("a") is not None and "expires_at" not in col.get("a")  # type: ignore[operator]
        clock.now = T0 + 100 * SECOND
        assert col.count() == 2


def test_the_background_policy_counts_expired_rows_as_dead(engine: Engine, clock: Clock) -> None:
    from proximadb.storage.compaction import needs_compaction

    engine.create_collection("c", DIM)
    col = engine.collection("c")
    col.insert(_records({"a": T0 + SECOND, "b": None, "c": None}))
    col.flush()
    assert needs_compaction(col.segments, 1 << 30) == []
    clock.now = T0 + SECOND
    assert needs_compaction(col.segments, 1 << 30) == col.segments


def test_default_ttl_stamps_rows_written_without_expiry_and_survives_replay(tmp_path: Path, clock: Clock) -> None:
    with Engine.open(tmp_path / "d", fsync="never", flush_on_close=False) as engine:
        info = engine.create_collection("c", DIM, default_ttl_seconds=60)
        assert info["default_ttl_seconds"] == 60
        col = engine.collection("c")
        col.insert(_records({"a": None, "b": T0 + 3600 * SECOND}))
        assert col.get("a")["expires_at"] == T0 + 60 * SECOND  # type: ignore[index]
        assert col.get("b")["expires_at"] == T0 + 3600 * SECOND  # type: ignore[index]  # its own wins
    with Engine.open(tmp_path / "d", fsync="never") as engine:  # replayed from the WAL
        col = engine.collection("c")
        assert col.stats()["memtable_rows"] == 2
        assert col.get("a")["expires_at"] == T0 + 60 * SECOND  # type: ignore[index]
        clock.now = T0 + 60 * SECOND
        assert col.get("a") is None and col.count() == 1
        engine.update_collection("c", default_ttl_seconds=None)
        col.insert(_records({"n": None}))
        assert "expires_at" not in col.get("n")  # type: ignore[operator]
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        assert engine.get_collection("c")["default_ttl_seconds"] is None  # the catalog kept the change


@pytest.mark.parametrize("bad", [0, -5, 1.5, "60", True, 10**12])
def test_a_bad_default_ttl_is_refused_and_changes_nothing(engine: Engine, bad: Any) -> None:
    with pytest.raises(ValidationError, match="default_ttl_seconds"):
        engine.create_collection("c", DIM, default_ttl_seconds=bad)
    assert engine.list_collections() == []
    engine.create_collection("c", DIM, default_ttl_seconds=5)
    with pytest.raises(ValidationError, match="default_ttl_seconds"):
        engine.update_collection("c", default_ttl_seconds=bad)
    assert engine.get_collection("c")["default_ttl_seconds"] == 5


def test_a_catalog_written_before_default_ttl_opens(tmp_path: Path) -> None:
    import shutil

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "v1_datadir"
    shutil.copytree(fixture / "data", tmp_path / "v1")
    with Engine.open(tmp_path / "v1", fsync="never") as engine:
        infos = engine.list_collections()
        assert infos and all(i["default_ttl_seconds"] is None for i in infos)
