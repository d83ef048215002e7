"""Payload indexes (proximadb/storage/payload_index.py) and Filter.index_mask against the per-row
reference, Filter.mask: on random metadata straight into an index (built whole, incrementally,
with rows replaced in place), and through a collection under random inserts, upserts, deletes,
metadata updates, flushes, compactions and reopens (count, scroll, search, delete by filter).
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from proximadb.filters import Filter, compile_filter
from proximadb.storage import filter_plan, payload_index
from proximadb.storage.engine import Engine
from proximadb.storage.payload_index import PayloadIndex

FIELDS = ["a", "b", "tags"]
STRINGS = ["", "x", "y", "1", "é", "\U0001f600"]
# Numbers around the edges of float64 exactness (2**53) and of int64, and the usual small ones.
EDGE_INTS = [2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63)]
EDGE_FLOATS = [9007199254740992.0, 9007199254740994.0, 1e300, -0.0, 0.5]
numbers = st.one_of(
    st.integers(-2, 2), st.sampled_from(EDGE_INTS), st.sampled_from([0.0, 1.0, 1.5, -0.5, *EDGE_FLOATS])
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.sampled_from(STRINGS))
ordered_operands = st.one_of(numbers, st.sampled_from(["", "x", "y", "\U0001f600"]), st.integers(-(10**30), 10**30))
filters = strategies.filter_trees(strategies.field_conditions(FIELDS, scalars, ordered_operands))

# In-process metadata may hold what the wire never carries: NaN, infinities, ints beyond int64,
# numpy scalars, tuples, nested containers. The index must agree with the reference on those too.
odd_values = st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), 10**30, np.int64(1), np.float32(1.5), np.bool_(True),
     np.str_("x"), ("x", 1), [["x"]], {"x": 1}, [None, True, 1, "x"]]
)
any_values = st.sampled_from(["scalar", "list", "odd"]).flatmap(
    lambda kind: scalars if kind == "scalar" else st.lists(scalars, max_size=3) if kind == "list" else odd_values
)
raw_metadata = st.one_of(st.none(), st.dictionaries(st.sampled_from(FIELDS), any_values, max_size=3))


def _check(flt: Filter | None, index: PayloadIndex, records: list[Any]) -> None:
    if flt is None:
        return
    expected = flt.mask(records)
    got = flt.index_mask(index, len(records))
    assert got.dtype == bool and got.tolist() == expected.tolist(), (flt, records)
    # The planner (filter_plan.py): every leaf a bitmap, or every large one a mask; then the plan at
    # both sides of its threshold (a row array for the exact scan, or the mask for the graph walk).
    n = len(records)
    for eval_rows in (0, 2, 1 << 30):
        planned = filter_plan.matching(flt, index, n, eval_rows=eval_rows)
        assert planned.dtype == bool and planned.tolist() == expected.tolist(), (flt, records, eval_rows)
    for exact_rows in (-1, int(expected.sum()) - 1, int(expected.sum()), 1 << 30):
        plan = filter_plan.plan(flt, index, n, exact_rows=exact_rows, eval_rows=2)
        if exact_rows >= expected.sum():
            assert plan.mask is None and plan.rows is not None and plan.rows.dtype == np.int64
            assert plan.rows.tolist() == np.flatnonzero(expected).tolist()
        else:
            assert plan.rows is None and plan.mask is not None and plan.mask.tolist() == expected.tolist()


@settings(max_examples=500, deadline=None)
@given(spec=filters, records=st.lists(raw_metadata, min_size=1, max_size=14))
def test_built_index_matches_the_reference(spec: dict[str, Any], records: list[Any]) -> None:
    _check(compile_filter(json.dumps(spec)), PayloadIndex.build(records), records)


@settings(max_examples=300, deadline=None)
@given(
    spec=filters,
    batches=st.lists(st.tuples(st.lists(raw_metadata, min_size=1, max_size=6), st.booleans()), min_size=1, max_size=4),
    replacements=st.lists(st.tuples(st.integers(0, 100), raw_metadata), max_size=5),
    prefix=st.integers(0, 100),
)
def test_incremental_index_with_replaced_rows_matches_the_reference(
    spec: dict[str, Any], batches: list[tuple[list[Any], bool]], replacements: list[tuple[int, Any]], prefix: int
) -> None:
    """The memtable's way: batches appended (the number tail sealed or not), rows replaced in place,
    and a search's snapshot that sees fewer rows than the index holds."""
    flt = compile_filter(json.dumps(spec))
    index = PayloadIndex()
    records: list[Any] = []
    for batch, seal in batches:
        index.add_rows(len(records), batch)
        records.extend(batch)
        if seal:
            index.seal()
        _check(flt, index, records)
    for row, new in replacements:
        row %= len(records)
        index.replace_row(row, records[row], new)
        records[row] = new
        _check(flt, index, records)
    _check(flt, index, records[: prefix % (len(records) + 1)])


def test_numbers_compare_exactly_across_int_and_float() -> None:
    records = [{"n": 2**53}, {"n": 2**53 + 1}, {"n": 9007199254740992.0}, {"n": 1}, {"n": 1.0}, {"n": True},
               {"n": [1, "1"]}, {"n": 10**30}, {"n": float("nan")}]
    index = PayloadIndex.build(records)

    def rows(spec: dict[str, Any]) -> list[int]:
        flt = compile_filter(spec)
        assert flt is not None
        got = np.flatnonzero(flt.index_mask(index, len(records))).tolist()
        assert got == np.flatnonzero(flt.mask(records)).tolist()
        return got

    assert rows({"n": 1}) == [3, 4, 6]
    assert rows({"n": 2**53 + 1}) == [1]
    assert rows({"n": {"$gt": 2**53}}) == [1, 7]
    assert rows({"n": {"$gte": 9007199254740992.0}}) == [0, 1, 2, 7]
    assert rows({"n": {"$lt": 2**53 + 1}}) == [0, 2, 3, 4, 6]
    assert rows({"n": {"$ne": 1}}) == [0, 1, 2, 5, 7, 8]
    assert rows({"n": {"$gt": 0, "$lt": 2**53 + 1}}) == [0, 2, 3, 4, 6]  # one pass over sorted numbers


def test_a_range_on_a_list_of_numbers_needs_each_bound_met_by_some_element() -> None:
    """In-process metadata may hold a list of numbers: {"$gt": 1, "$lt": 3} then means "an element
    above 1 and an element below 3", not "an element between" (the reference's element-wise rule)."""
    records = [{"m": [0, 5]}, {"m": 2}, {"m": [4]}, {"m": 0.5}]
    flt = compile_filter({"m": {"$gt": 1, "$lt": 3}})
    assert flt is not None
    index = PayloadIndex.build(records)
    assert flt.index_mask(index, 4).tolist() == flt.mask(records).tolist() == [True, True, False, False]


# -- through a collection ------------------------------------------------------------

DIM = 4
ID = st.sampled_from([f"k{i:02d}" for i in range(10)])
VEC = st.lists(st.integers(-8, 8), min_size=DIM, max_size=DIM).map(lambda v: np.array(v, np.float32))
# What a record can carry (schemas/v<N>/vector_record.avsc): no NaN, int64, lists of strings.
stored_numbers = st.one_of(
    st.integers(-2, 2), st.sampled_from([2**53 + 1, -(2**63), 2**63 - 1]), st.sampled_from([0.0, 1.5, -0.5, 1e300])
)
stored_values = st.sampled_from(["scalar", "list"]).flatmap(
    lambda kind: st.one_of(st.none(), st.booleans(), stored_numbers, st.sampled_from(STRINGS))
    if kind == "scalar"
    else st.lists(st.sampled_from(STRINGS), max_size=3)
)
META = strategies.metadata_maps(stored_values, keys=FIELDS, max_size=3)


class CollectionFiltersVsReference(RuleBasedStateMachine):
    """Every filtered read of the collection equals the per-row reference over a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="pxdb-payload-"))
        self.opts: dict[str, Any] = {"fsync": "never", "flush_bytes": 1 << 30, "auto_compact": False}
        self.engine = Engine.open(self.root / "d", **self.opts)
        self.engine.create_collection("m", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        self.model: dict[str, dict[str, Any]] = {}

    @property
    def col(self):  # type: ignore[no-untyped-def]
        return self.engine.collection("m")

    @rule(items=st.lists(st.tuples(ID, VEC, META), min_size=1, max_size=6, unique_by=lambda t: t[0]))
    def upsert(self, items: list[tuple[str, np.ndarray, dict[str, Any]]]) -> None:
        self.col.upsert(ids=[i for i, _, _ in items], vectors=np.stack([v for _, v, _ in items]),
                        metadatas=[m for _, _, m in items])
        for i, _, m in items:
            self.model[i] = m

    @rule(ids=st.lists(ID, max_size=4))
    def delete(self, ids: list[str]) -> None:
        self.col.delete(ids)
        for i in ids:
            self.model.pop(i, None)

    @rule(id_=ID, patch=META, replace=st.booleans())
    def update_metadata(self, id_: str, patch: dict[str, Any], replace: bool) -> None:
        if id_ not in self.model:
            return
        self.col.update_metadata(id_, patch, replace=replace)
        if replace:
            self.model[id_] = dict(patch)
        else:
            merged = dict(self.model[id_])
            for key, value in patch.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            self.model[id_] = merged

    @rule(spec=filters)
    def delete_where(self, spec: dict[str, Any]) -> None:
        flt = compile_filter(spec)
        if flt is None:
            return
        doomed = [i for i, m in self.model.items() if flt.matches(m)]
        assert self.col.delete_where(spec) == len(doomed)
        for i in doomed:
            del self.model[i]

    @rule()
    def flush(self) -> None:
        self.col.flush()

    @rule()
    def compact(self) -> None:
        self.col.flush()
        self.col.compact()

    @rule()
    def reopen(self) -> None:
        self.engine.close()
        self.engine = Engine.open(self.root / "d", **self.opts)

    @rule(spec=filters)
    def filtered_reads(self, spec: dict[str, Any]) -> None:
        flt = compile_filter(spec)
        expected = sorted(i for i, m in self.model.items() if flt is None or flt.matches(m))
        assert self.col.count(spec) == len(expected)
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = self.col.scroll(limit=3, cursor=cursor, filter=spec)
            seen += [r["id"] for r in page]
            assert all(r["metadata"] == self.model[r["id"]] for r in page)
            if cursor is None:
                break
        assert seen == expected
        k = max(1, len(self.model))
        col = self.col
        # The planner's exact path over the matching rows (threshold above any part) and the mask path
        # (threshold -1: the segments' HNSW with the mask inside, the dense scan of memtables).
        for exact_rows, eval_rows in ((1 << 30, 1 << 30), (1 << 30, 0), (-1, 2)):
            col.planner_exact_rows, col.planner_eval_rows = exact_rows, eval_rows
            for exact in (True, None):  # exact scan, and the segments' HNSW with the mask inside
                hits = col.search(np.zeros(DIM, np.float32), k=k, filter=spec, exact=exact)
                assert sorted(h["id"] for h in hits) == expected, (exact_rows, eval_rows, exact)
            many = col.search_batch(np.zeros((5, DIM), np.float32), k=k, filter=spec)  # the threaded drivers
            assert all(sorted(h["id"] for h in hits) == expected for hits in many)
        del col.planner_exact_rows, col.planner_eval_rows

    @invariant()
    def unfiltered_count(self) -> None:
        assert self.col.count() == len(self.model)

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.root, ignore_errors=True)


CollectionFiltersVsReference.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_collection_filters_match_the_reference = CollectionFiltersVsReference.TestCase


def test_metadata_updated_in_the_memtable_is_reindexed(tmp_path: Path) -> None:
    """An update of a memtable row replaces its metadata in place: the old values must stop matching."""
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("m", DIM, distance_metric="euclidean")
        col = engine.collection("m")
        col.upsert(ids=["a", "b"], vectors=np.zeros((2, DIM), np.float32),
                   metadatas=[{"x": 1, "t": ["p"], "s": "u"}, {"x": 5}])
        col.update_metadata("a", {"x": 2, "t": ["q"]})
        assert col.count({"x": 1}) == 0 and col.count({"t": "p"}) == 0
        assert col.count({"x": 2}) == 1 and col.count({"t": "q"}) == 1 and col.count({"s": "u"}) == 1
        col.update_metadata("a", {"y": True}, replace=True)
        assert col.count({"x": {"$exists": True}}) == 1 and col.count({"s": "u"}) == 0
        assert [h["id"] for h in col.search(np.zeros(DIM, np.float32), k=2, filter={"x": {"$gt": 1}})] == ["b"]


@pytest.mark.parametrize("block", [1, 3, 64, payload_index.RANGE_BLOCK])
def test_a_range_as_a_bitmap_of_sorted_blocks_is_the_range(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """NumberColumn.range_bitmap (the planner's $and of a large set and a range): the whole blocks
    united and the cut ones sorted give exactly the rows in range, at every block size; and a
    planned $and that takes it matches the filter row by row. Only a whole part's column has one."""
    monkeypatch.setattr(payload_index, "RANGE_BLOCK", block)
    rng = np.random.default_rng(block)
    records: list[Any] = [{"n": int(rng.integers(0, 50)) if rng.random() < 0.5 else float(rng.integers(0, 500)) / 10,
                           "k": f"k{rng.integers(0, 3)}"} if rng.random() < 0.9 else None for _ in range(3000)]
    index = PayloadIndex.build(records)
    column = index.fields["n"].numbers
    values = np.array([r["n"] if r else np.nan for r in records], dtype=np.float64)
    for lo, hi in ((-1, 100), (3, 4), (10, 10), (12.5, 30), (49, 60), (0, 0.05)):
        for bounds in ((("$gte", lo), ("$lt", hi)), (("$gt", lo), ("$lte", hi)), (("$gte", lo),), (("$lt", hi),)):
            got = column.range_bitmap(bounds)
            assert got is not None
            want = np.flatnonzero(payload_index.rows_satisfying_mask(values, bounds))
            assert list(got) == want.tolist(), bounds
    for spec in ({"k": "k1", "n": {"$gte": 5, "$lt": 40}}, {"k": {"$in": ["k0", "k2"]}, "n": {"$gt": 1.5, "$lte": 49}},
                 {"$and": [{"k": {"$ne": "k1"}}, {"n": {"$gte": 0, "$lt": 25}}, {"n": {"$gt": 3.5, "$lt": 45}}]}):
        flt = compile_filter(spec)
        assert flt is not None
        for eval_rows in (0, 2):
            planned = filter_plan.matching(flt, index, len(records), eval_rows=eval_rows)
            assert planned.tolist() == flt.mask(records).tolist(), spec
    growing = PayloadIndex()
    growing.add_rows(0, records)
    assert growing.fields["n"].numbers.range_bitmap((("$gte", 0),)) is None  # a memtable's: no blocks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), strategies.metadata_maps()), min_size=1, max_size=12),
       st.integers(min_value=1, max_value=5))
def test_an_index_of_the_encoded_maps_is_the_index_of_the_dicts(tmp_path_factory: pytest.TempPathFactory,
                                                                 rows: list[Any], steps: int) -> None:
    """The segment writer indexes the maps meta.rows got, scanned in compiled code, a few at a time
    (PayloadIndex.add_encoded): sealed, its payload.idx is the bytes of a build from the dicts at once
    (postings in the sealed, canonical order), whatever the first appearance of each value."""
    from proximadb.storage import payload_index_file
    from proximadb.storage.segment_writer import whole_build_order
    from proximadb.storage.wal_io import encode_metadata_maps

    built = PayloadIndex.build(rows)
    scanned = PayloadIndex()
    cuts = sorted({0, len(rows), *(len(rows) * k // steps for k in range(steps))})
    for a, b in itertools.pairwise(cuts):
        offsets = np.empty(b - a + 1, dtype=np.uint64)
        blob = encode_metadata_maps([m or {} for m in rows[a:b]], offsets)
        scanned.add_encoded(a, blob, offsets, lambda a=a, b=b: rows[a:b])
    scanned.seal()
    whole_build_order(scanned)
    out = tmp_path_factory.mktemp("pix")
    payload_index_file.write_index(out / "built", 0, built)
    payload_index_file.write_index(out / "scanned", 0, scanned)
    assert (out / "scanned").read_bytes() == (out / "built").read_bytes()
    for field in built.fields.values():
        assert list(field.postings) == sorted(field.postings, key=lambda k: (k[0] != "s", k[0], k[1]))
