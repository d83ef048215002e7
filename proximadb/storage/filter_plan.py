"""The query planner of a filtered search, per part (a segment, a sealed memtable, the memtable).

A filter's cost in a part depends on how many rows it lets through. The planner evaluates the
filter on the part's payload index (payload_index.py) choosing, per leaf, the cheaper of two
representations by the leaf's **estimated cardinality**, read from the index without touching any
per-row array: a posting's roaring cardinality, the number of sorted numbers inside a range (two
binary searches, :meth:`NumberColumn.count_upper`):

* a **roaring bitmap** (postings as they are; numbers in a range up to ``eval_rows`` entries,
  sorted and packed) -- set operations in CRoaring, cost proportional to the sets;
* a **bool mask** over the part's rows (a large numeric range, a negation of a large set):
  the O(rows) masks of :meth:`proximadb.filters.Filter.index_mask`, numpy-fast.

A large range of a sealed column with one number per row is kept unevaluated: an ``$and`` with a
smaller set tests just that set's rows against the column's per-row values
(:meth:`NumberColumn.by_row`, 8 bytes a row, built on first use), or, when the set has more than
half the range's rows, intersects the range as a bitmap (:meth:`NumberColumn.range_bitmap`, from
bitmaps of sorted blocks, 2 bytes a row, built on first use); otherwise it becomes its mask
(one vectorised comparison of those values when it holds a quarter of the rows or more, else the
rows in range scattered from the sorted column).

``$and`` intersects the bitmaps first (C), then keeps the bitmap's rows that the masks allow (a
gather over those rows only); ``$or`` of bitmaps is their union, with a mask it becomes a mask;
``$not`` of a bitmap stays a bitmap when the complement is small. The result is exactly the rows
``Filter.index_mask`` gives (the same semantics, tested against it and a brute-force reference).

Then the **plan**: at most ``exact_rows`` matching rows are answered by an exact scan of just those
rows (a sorted int64 row array: gather plus the SIMD kernel, GIL released,
:func:`proximadb.index.distance.topk_rows_batch`); more become the bool mask that the graph walk
(HNSW/IVF, the filter inside the traversal) or the dense scan takes. The search path (search.py)
drops deleted and expired rows from a row array by looking up just those rows. The thresholds only
choose the cheaper route, never the answer (tests set them to force each side).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
from pyroaring import BitMap

from proximadb.filters import Filter, typed_key
from proximadb.index._hnsw_graph import exact_scan_limit
from proximadb.storage.payload_index import (
    FieldIndex,
    PayloadIndex,
    bitmap_of,
    bitmap_to_mask,
    rows_satisfying,
    rows_satisfying_mask,
)

EXACT_ROWS = 4096  # the least exact_limit: this many matching rows are always scanned exactly
EVAL_ROWS = 8192  # a numeric leaf (or a complement) estimated at most this large becomes a bitmap
BITMAP_RANGE_SHARE = 0.5  # an $and's set of more rows than this share of a range's meets it as a bitmap
_ORDERINGS = ("$gt", "$gte", "$lt", "$lte")

# Rows as a roaring bitmap, a bool mask over the part's rows, or (what an $and of a bitmap and a mask
# gives) a sorted intp array of row numbers, made a bitmap only if a further operation needs one.
Matched = BitMap | np.ndarray


class PartPlan:
    """How one part answers a filter: ``rows`` (sorted int64 row numbers, the exact path) or
    ``mask`` (bool over the part's rows, the graph / dense path); exactly one is set. ``count``:
    the rows the mask allows when the planner counted them (an index then need not count again)."""

    __slots__ = ("count", "mask", "rows")

    def __init__(self, rows: np.ndarray | None, mask: np.ndarray | None, count: int | None = None) -> None:
        self.rows = rows
        self.mask = mask
        self.count = count


def exact_limit(rows: int) -> int:
    """The default threshold of a part searched through a graph index: the most matching rows that
    an exact scan answers faster than a filtered walk at the default ef and M (the rule of
    index/_hnsw_graph.pyx's ``use_exact``, asked through ``exact_scan_limit``): about 10,000 rows
    of 200,000, 22,600 of 1,000,000, and never fewer than EXACT_ROWS. A part without an index scans
    its matching rows whatever their number (the alternative, a masked scan of every row, is never
    cheaper)."""
    return max(EXACT_ROWS, exact_scan_limit(rows))


def plan(flt: Filter, index: PayloadIndex, rows: int, *, exact_rows: int = EXACT_ROWS,
         eval_rows: int = EVAL_ROWS) -> PartPlan:
    """The plan of ``flt`` over rows ``[0, rows)`` of a part whose payload index is ``index``."""
    found = _settle(_Evaluator(index, rows, eval_rows).node(flt.spec))
    if _is_rows(found):  # distinct rows below ``rows``
        if found.shape[0] <= exact_rows:
            return PartPlan(found.astype(np.int64, copy=False), None)
        return PartPlan(None, to_mask(found, rows), found.shape[0])
    if isinstance(found, BitMap):
        if len(found) <= exact_rows:
            return PartPlan(np.frombuffer(found.to_array(), dtype=np.uint32).astype(np.int64), None)
        return PartPlan(None, bitmap_to_mask(found, rows), len(found) if not found or found.max() < rows else None)
    count = int(np.count_nonzero(found))
    if count <= exact_rows:
        return PartPlan(np.flatnonzero(found), None)
    return PartPlan(None, found, count)


def matching(flt: Filter, index: PayloadIndex, rows: int, eval_rows: int = EVAL_ROWS) -> np.ndarray:
    """The bool mask of the rows matching ``flt`` as the planner evaluates it (for tests)."""
    return to_mask(_settle(_Evaluator(index, rows, eval_rows).node(flt.spec)), rows)


def to_mask(found: Matched, rows: int) -> np.ndarray:
    if isinstance(found, BitMap):
        return bitmap_to_mask(found, rows)
    if _is_rows(found):
        mask = np.zeros(rows, dtype=bool)
        mask[found] = True
        return mask
    return found


def _is_rows(found: Matched) -> TypeGuard[np.ndarray]:
    return isinstance(found, np.ndarray) and found.dtype != np.bool_


def _bitmap(found: Matched) -> Matched:
    """A row array as a bitmap (for a further set operation); a bitmap or a mask as it is."""
    return bitmap_of(found) if _is_rows(found) else found


class _Range:
    """A large range of a sealed single-valued number column, not materialised: an ``$and`` with a
    smaller set tests just that set's rows against the column's per-row values, or, when that set
    has more than ``BITMAP_RANGE_SHARE`` times the range's ``count`` rows, intersects it with
    the range as a bitmap (``bitmap``: :meth:`NumberColumn.range_bitmap`, None for a column that
    is not a whole part's); anything else makes it the mask."""

    __slots__ = ("bitmap", "bounds", "count", "mask", "values")

    def __init__(self, values: np.ndarray, bounds: Sequence[tuple[str, Any]], mask: Callable[[], np.ndarray],
                 count: int, bitmap: Callable[[], BitMap | None]) -> None:
        self.values = values
        self.bounds = bounds
        self.mask = mask
        self.count = count
        self.bitmap = bitmap


def _settle(found: Matched | _Range) -> Matched:
    return found.mask() if isinstance(found, _Range) else found


def _and(parts: list[Matched | _Range]) -> Matched | _Range:
    if len(parts) == 1:
        return parts[0]
    ranges = [p for p in parts if isinstance(p, _Range)]
    sets = [_bitmap(p) for p in parts if not isinstance(p, _Range)]
    bitmaps = [p for p in sets if isinstance(p, BitMap)]
    masks = [p for p in sets if not isinstance(p, BitMap)]
    if not bitmaps:
        masks += [r.mask() for r in ranges]
        mask = masks[0]
        for m in masks[1:]:
            mask = mask & m
        return mask
    found = bitmaps[0] if len(bitmaps) == 1 else BitMap.intersection(*bitmaps)
    gathered = []
    for r in sorted(ranges, key=lambda r: r.count):
        # testing a row against the per-row values costs about twice what a range row costs as a
        # bitmap (one cache miss each, against a sorted block united in C): 1M rows, a 10% posting
        # AND a 14% range, 0.94 ms against 0.35 ms
        whole = r.bitmap() if found and len(found) > BITMAP_RANGE_SHARE * r.count else None
        if whole is None:
            gathered.append(r)
        else:
            found = found & whole
    ranges = gathered
    if not (masks or ranges) or not found:
        return found
    members = np.frombuffer(found.to_array(), dtype=np.uint32).astype(np.intp)  # numpy gathers fast by intp only
    for m in masks:
        members = members[m[members]]
    for r in ranges:
        members = rows_satisfying(r.values, members, r.bounds)
    return members


def _or(found: list[Matched | _Range], rows: int) -> Matched:
    parts = [_bitmap(_settle(p)) for p in found]
    bitmaps = [p for p in parts if isinstance(p, BitMap)]
    if len(bitmaps) == len(parts):
        return bitmaps[0] if len(bitmaps) == 1 else BitMap.union(*bitmaps)
    mask = np.zeros(rows, dtype=bool)
    for p in parts:
        if isinstance(p, BitMap):
            bitmap_to_mask(p, rows, mask)
        else:
            mask |= p
    return mask


class _Evaluator:
    """One evaluation of a (compiled) filter object on one part's index, rows below ``rows``."""

    def __init__(self, index: PayloadIndex, rows: int, eval_rows: int) -> None:
        self.index = index
        self.rows = rows
        self.eval_rows = eval_rows

    def node(self, node: Mapping[str, Any]) -> Matched | _Range:
        parts: list[Matched | _Range] = []
        for key, value in node.items():
            if key == "$and":
                parts.append(_and([self.node(child) for child in value]))
            elif key == "$or":
                parts.append(_or([self.node(child) for child in value], self.rows))
            elif key == "$not":
                parts.append(self.negate(self.node(value)))
            else:
                parts.append(self.field(key, value))
        if not parts:
            return np.ones(self.rows, dtype=bool)
        return _and(parts)

    def negate(self, part: Matched | _Range) -> Matched:
        found = _bitmap(_settle(part))
        if not isinstance(found, BitMap):
            return ~found
        if self.rows - len(found) <= self.eval_rows:
            return found.flip(0, self.rows)
        return ~bitmap_to_mask(found, self.rows)

    def clip(self, bitmap: BitMap) -> BitMap:
        """The bitmap's rows below ``rows`` (a memtable's index may hold rows past its snapshot)."""
        if bitmap and bitmap.max() >= self.rows:
            bitmap = bitmap.copy()
            bitmap.remove_range(self.rows, bitmap.max() + 1)
        return bitmap

    def field(self, name: str, value: Any) -> Matched | _Range:
        field = self.index.fields.get(name)
        if not isinstance(value, Mapping):
            return self.members(name, field, [value])
        parts: list[Matched | _Range] = []
        bounds = [(op, arg) for op, arg in value.items() if op in _ORDERINGS and not isinstance(arg, str)]
        if len(bounds) > 1:  # a numeric range: one pass over the sorted numbers when no row has two
            if field is None or not field.numbers.single_valued:
                parts.extend(self.ordered(name, field, op, arg) for op, arg in bounds)
            else:
                parts.append(self.numbers(name, field, bounds))
        for op, arg in value.items():
            if len(bounds) > 1 and (op, arg) in bounds:
                continue
            part: Matched | _Range
            if op in ("$eq", "$ne"):
                part = self.members(name, field, [arg])
            elif op in ("$in", "$nin"):
                part = self.members(name, field, arg)
            elif op == "$exists":
                part = BitMap() if field is None else self.clip(field.exists)
            else:
                part = self.ordered(name, field, op, arg)
            if op in ("$ne", "$nin") or (op == "$exists" and not arg):
                part = self.negate(part)
            parts.append(part)
        return _and(parts)

    def members(self, name: str, field: FieldIndex | None, values: Sequence[Any]) -> Matched:
        keys = {typed_key(v) for v in values}
        if field is None:
            return np.ones(self.rows, dtype=bool) if ("z", None) in keys else BitMap()
        numbers = [k[1] for k in keys if k is not None and k[0] == "n"]
        if ("z", None) in keys or sum(field.numbers.count_upper((("$eq", v),)) for v in numbers) > self.eval_rows:
            return self.index.members(name, values, self.rows)  # rare: the mask, as Filter.index_mask
        found = [self.clip(field.postings[k]) for k in keys if k is not None and k[0] != "n" and k in field.postings]
        found += [field.numbers.select_rows((("$eq", v),), self.rows) for v in numbers]
        if not found:
            return BitMap()
        return found[0] if len(found) == 1 else BitMap.union(*found)

    def ordered(self, name: str, field: FieldIndex | None, op: str, operand: Any) -> Matched | _Range:
        if field is None:
            return BitMap()
        if isinstance(operand, str):
            return self.index.ordered(name, op, operand, self.rows)
        return self.numbers(name, field, ((op, operand),))

    def numbers(self, name: str, field: FieldIndex, bounds: Sequence[tuple[str, Any]]) -> Matched | _Range:
        """Rows with a number entry satisfying every bound (one bound, or a single-valued range)."""
        count = field.numbers.count_upper(bounds)
        if count <= self.eval_rows:
            return field.numbers.select_rows(bounds, self.rows)
        values = field.numbers.by_row()

        def mask() -> np.ndarray:
            if values is not None and 4 * count > self.rows:  # a quarter of the rows or more: compare them all
                found = np.zeros(self.rows, dtype=bool)
                within = values[: self.rows]
                found[: within.shape[0]] = rows_satisfying_mask(within, bounds)
                return found
            if len(bounds) == 1:  # scatter the rows in range from the sorted column
                return self.index.ordered(name, *bounds[0], self.rows)
            return self.index.between(name, bounds, self.rows)

        return mask() if values is None else _Range(values, bounds, mask, count,
                                                     lambda: field.numbers.range_bitmap(bounds))
