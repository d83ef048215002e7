"""A segment's filter-plan cache (proximadb/storage/filter_cache.py): its admission and bounds, and,
through a collection, that a kept plan never brings back a row deleted or expired after it was kept,
nor outlives its segment (compaction makes a new one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.filters import compile_filter
from proximadb.storage import expiry, filter_cache
from proximadb.storage.engine import Engine
from proximadb.storage.filter_cache import PlanCache
from proximadb.storage.filter_plan import PartPlan

DIM = 8
T0 = 1_900_000_000_000_000
SECOND = 1_000_000


class Maker:
    """A plan maker that counts its calls."""

    def __init__(self, rows: int = 4) -> None:
        self.calls = 0
        self.rows = rows

    def __call__(self) -> PartPlan:
        self.calls += 1
        return PartPlan(np.arange(self.rows, dtype=np.int64), None)


def test_a_plan_is_kept_on_second_sight_and_then_reused() -> None:
    cache = PlanCache()
    make = Maker()
    first = cache.plan("a", make)
    assert make.calls == 1 and len(cache) == 0 and first.rows is not None and first.rows.flags.writeable
    second = cache.plan("a", make)
    assert make.calls == 2 and len(cache) == 1
    assert second.rows is not None and not second.rows.flags.writeable  # nobody may change what is kept
    third = cache.plan("a", make)
    assert make.calls == 2 and third is second and (cache.hits, cache.misses) == (1, 2)


def test_a_key_seen_too_long_ago_is_not_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filter_cache, "SEEN", 3)
    cache = PlanCache()
    make = Maker()
    for key in ("a", "b", "c", "d"):  # "a" falls out of the last three keys seen
        cache.plan(key, make)
    cache.plan("a", make)
    assert len(cache) == 0
    cache.plan("d", make)
    assert len(cache) == 1


def test_the_least_recently_used_go_first_within_the_entries_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filter_cache, "ENTRIES", 2)
    monkeypatch.setattr(filter_cache, "BYTES", 10 * 8)  # ten row numbers
    cache = PlanCache()
    for key in ("a", "b", "c"):
        cache.plan(key, Maker(4))
        cache.plan(key, Maker(4))
    assert len(cache) == 2 and cache.nbytes == 64  # "a" went (entries)
    cache.plan("b", Maker(4))  # a hit: "b" is now the most recent
    cache.plan("d", Maker(4))
    cache.plan("d", Maker(4))
    assert len(cache) == 2  # "c" went, not "b"
    make = Maker(4)
    cache.plan("b", make)
    assert make.calls == 0
    big = Maker(11)  # larger than the whole budget: never kept
    cache.plan("e", big)
    cache.plan("e", big)
    cache.plan("e", big)
    assert big.calls == 3 and cache.nbytes <= 80
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def _nearest(model: dict[str, dict[str, Any]], spec: dict[str, Any], q: np.ndarray, k: int) -> list[str]:
    flt = compile_filter(spec)
    assert flt is not None
    ids = sorted(i for i, r in model.items() if flt.matches(r["metadata"]))
    base = np.stack([model[i]["vector"] for i in ids])
    return [ids[j] for j in np.argsort(((base - q) ** 2).sum(1), kind="stable")[:k]]


@pytest.mark.parametrize("exact_rows", [None, 0])  # the planner's choice (exact rows here), and masks forced
def test_rows_deleted_or_expired_after_a_plan_was_kept_stay_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                exact_rows: int | None) -> None:
    now = [T0]
    monkeypatch.setattr(expiry, "now_us", lambda: now[0])
    rng = np.random.default_rng(3)
    records = [{"id": f"r{i:04d}", "vector": rng.standard_normal(DIM).astype(np.float32),
                "metadata": {"g": i % 4, "price": float(i % 40)},
                "expires_at": T0 + 10 * SECOND if i % 9 == 0 else None} for i in range(800)]
    model = {r["id"]: r for r in records}
    spec = {"g": 1, "price": {"$lt": 30.0}}
    queries = rng.standard_normal((6, DIM)).astype(np.float32)
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        col.insert(records[:400])
        col.flush()
        col.insert(records[400:])
        col.flush()
        assert col.wait_for_indexes(timeout=120)
        col.planner_exact_rows = exact_rows

        def check() -> None:
            for q in queries:
                assert [h["id"] for h in col.search(q, k=10, filter=spec, ef=1000)] == _nearest(model, spec, q, 10)

        check()
        check()  # the second sight: every segment keeps its plan
        assert all(len(seg.plan_cache) == 1 for seg in col.segments)
        kept = sum(seg.plan_cache.hits for seg in col.segments)
        check()
        assert sum(seg.plan_cache.hits for seg in col.segments) == kept + len(queries) * len(col.segments)

        nearest = {i for q in queries for i in _nearest(model, spec, q, 10)}
        doomed = sorted(nearest)[::2]
        col.delete(doomed)  # rows the kept plans let through
        for i in doomed:
            del model[i]
        check()
        now[0] = T0 + 10 * SECOND  # every ninth row expires
        model = {i: r for i, r in model.items() if r["expires_at"] is None}
        check()

        col.compact()
        assert len(col.segments) == 1 and len(col.segments[0].plan_cache) == 0  # a new segment, a new cache
        assert col.wait_for_indexes(timeout=120)
        check()
        check()
        assert len(col.segments[0].plan_cache) == 1


def test_filters_that_select_different_rows_never_share_a_key(tmp_path: Path) -> None:
    """The key is made of the typed keys the filter compares by: a str subclass is its ``str()``
    (an Enum member is not its JSON text), 1 and True differ; key order does not matter."""
    import enum
    from types import MappingProxyType

    class Colour(str, enum.Enum):
        RED = "red"

    def key(spec: Any) -> Any:
        flt = compile_filter(spec)
        assert flt is not None
        return flt.key

    assert key({"f": Colour.RED}) != key({"f": "red"})
    assert key({"f": {"$gt": Colour.RED}}) != key({"f": {"$gt": str(Colour.RED)}})  # a range compares "red"
    assert key({"f": {"$gt": Colour.RED}}) != key({"f": {"$gt": "red"}})  # $eq would compare str()
    assert key({Colour.RED: 1}) == key({"red": 1}) != key({str(Colour.RED): 1})  # records are read by "red"
    assert key({"f": 1}) != key({"f": True})
    assert key({"a": 1, "b": {"$gt": 2}}) == key({"b": {"$gt": 2}, "a": 1})
    assert key({"a": MappingProxyType({"$gt": 1})}) == key({"a": {"$gt": 1}})
    rng = np.random.default_rng(9)
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert([{"id": f"r{i}", "vector": rng.standard_normal(DIM).astype(np.float32),
                     "metadata": {"f": "red" if i % 2 else str(Colour.RED), "g": "D" if i % 2 else "z"}}
                    for i in range(200)])
        col.flush()
        q = rng.standard_normal(DIM).astype(np.float32)
        for spec, parity in (({"f": Colour.RED}, 0), ({"f": Colour.RED}, 0), ({"f": "red"}, 1), ({"f": "red"}, 1),
                             ({"f": Colour.RED}, 0),
                             # "Colour.RED" < "D" < "red" < "z": the range by str() holds every row, by "red" the "z"s
                             ({"g": {"$gt": str(Colour.RED)}}, None), ({"g": {"$gt": str(Colour.RED)}}, None),
                             ({"g": {"$gt": Colour.RED}}, 0), ({"g": {"$gt": Colour.RED}}, 0)):
            hits = col.search(q, k=200, filter=spec)
            if parity is None:
                assert len(hits) == 200
            else:
                assert len(hits) == 100 and {int(h["id"][1:]) % 2 for h in hits} == {parity}
