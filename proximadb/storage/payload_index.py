"""Payload indexes: every metadata field of one part (the memtable or one segment), indexed.

A filter is evaluated on them by set operations (:meth:`proximadb.filters.Filter.index_mask`)
instead of one Python call per row. Per field name seen in the part:

* ``exists``: a roaring bitmap (pyroaring ``BitMap``) of the rows whose metadata has the key,
  whatever the value (null included);
* ``postings``: typed key -> ``BitMap`` for strings ``("s", str)``, booleans ``("b", bool)``
  and null ``("z", None)`` (the keys of :func:`proximadb.filters.typed_key`, so a boolean
  never meets a number); each element of a list value posts its row;
* ``numbers``: a :class:`NumberColumn` of (value, row) entries for int/float values and list
  elements, for ``$eq`` and ranges (``1 == 1.0``; bool is not a number).

Values no filter can match (nested lists, objects) only count for ``exists``. Rows are never
removed for a delete or an upsert: the part's alive mask removes them. A memtable row whose
metadata is replaced in place (:meth:`PayloadIndex.replace_row`) loses its old postings.

The memtable indexes rows as they arrive (``Memtable.put_batch``); a segment's index is built
when the segment is written and saved beside it as ``payload.idx`` (payload_index_file.py),
which a reopen maps instead of rebuilding.
"""

from __future__ import annotations

import array
import bisect
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from pyroaring import BitMap

from proximadb.filters import typed_key
from proximadb.storage import metadata_scan as scan
from proximadb.storage.operations import Metadata

_EXACT = 2**53  # ints beyond this are not exact in float64: the column keeps them aside
_TAIL_MIN = 4096  # the unsorted tail of a NumberColumn is merged when it outgrows this and base/4
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": operator.eq,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_EMPTY_ROWS = np.empty(0, dtype=np.int64)
RANGE_BLOCK = 4096  # sorted entries per block of NumberColumn.range_bitmap
_KINDS = 7  # metadata_scan's KIND_* are 0 .. _KINDS - 1
_SCANNED_KEYS = ((scan.KIND_TRUE, ("b", True)), (scan.KIND_FALSE, ("b", False)), (scan.KIND_NULL, ("z", None)))


def bitmap_to_mask(bitmap: BitMap, rows: int, out: np.ndarray | None = None) -> np.ndarray:
    """The bool mask of length ``rows`` with the bitmap's rows below ``rows`` set (ORed into ``out``)."""
    mask = np.zeros(rows, dtype=bool) if out is None else out
    if bitmap:
        members = np.frombuffer(bitmap.to_array(), dtype=np.uint32).astype(np.intp)  # intp: numpy's fast scatter
        if bitmap.max() >= rows:
            members = members[members < rows]
        mask[members] = True
    return mask


def bitmap_of(rows: np.ndarray) -> BitMap:
    """A new bitmap of the given row numbers (any order; an int array of rows below 2**32)."""
    if not rows.shape[0]:
        return BitMap()
    return BitMap(array.array("I", rows.astype(np.uint32, copy=False).tobytes()))


def _satisfy(values: np.ndarray, op: str, operand: Any) -> np.ndarray:
    """Which float64 entries satisfy ``v <op> operand``, exactly (as NumberColumn's class docstring says)."""
    fa = _as_float(operand)
    tie = _COMPARE[op](fa, operand)  # do entries equal to fa satisfy the comparison?
    if op == "$eq":
        return values == fa if tie else np.zeros(values.shape[0], dtype=bool)
    if op in ("$gt", "$gte"):
        return values >= fa if tie else values > fa
    return values <= fa if tie else values < fa


def rows_satisfying_mask(values: np.ndarray, conditions: Sequence[tuple[str, Any]]) -> np.ndarray:
    """Which entries of ``values`` (NumberColumn.by_row) meet every condition."""
    keep = _satisfy(values, *conditions[0])
    for op, operand in conditions[1:]:
        keep &= _satisfy(values, op, operand)
    return keep


def rows_satisfying(values: np.ndarray, rows: np.ndarray, conditions: Sequence[tuple[str, Any]]) -> np.ndarray:
    """The entries of ``rows`` whose number in ``values`` (NumberColumn.by_row) meets every condition."""
    inside = rows < values.shape[0]
    picked = values[np.where(inside, rows, 0)]
    keep = inside
    for op, operand in conditions:
        keep &= _satisfy(picked, op, operand)
    return rows[keep]


def _as_float(number: Any) -> float:
    try:
        return float(number)
    except OverflowError:  # an int beyond float64: every finite float is on one side of it
        return float("inf") if number > 0 else float("-inf")


class NumberColumn:
    """(value, row) entries of one field's numbers.

    Values exact in float64 (every float, ints up to 2**53 in magnitude; NaN never matches and
    is dropped) live in a ``base`` sorted by value plus an unsorted ``tail`` that rows are
    appended to and that is merged into the base when it grows past a quarter of it. The rest
    (huge ints, and the numbers of rows replaced in place, whose array entries are then
    ``shadowed``) is kept per row and compared exactly in Python: rare by construction.

    An operand ``a`` is compared through ``fa = float(a)``: a stored float ``v != fa`` is on the
    same side of ``a`` as of ``fa`` (floats are discrete and ``a`` rounds to ``fa``), and the
    entries ``v == fa`` are decided by one exact Python comparison of ``fa`` with ``a``.
    """

    __slots__ = ("_base_r", "_base_v", "_blocks", "_by_row", "_exact", "_multi", "_shadowed", "_tail_n", "_tail_r",
                 "_tail_v", "final")

    def __init__(self) -> None:
        self._base_v = np.empty(0, dtype=np.float64)
        self._base_r = _EMPTY_ROWS
        self._tail_v = np.empty(64, dtype=np.float64)
        self._tail_r = np.empty(64, dtype=np.int64)
        self._tail_n = 0
        self._exact: dict[int, list[Any]] = {}
        self._shadowed: set[int] = set()
        self._multi = False  # some row has two or more entries (a list of numbers)
        self._by_row: np.ndarray | None = None  # by_row(), once built
        self._blocks: list[BitMap] | None = None  # range_bitmap()'s, once built
        self.final = False  # a whole part's column, never appended to again (PayloadIndex.seal)

    def add(self, values: list[Any], rows: list[int]) -> None:
        """Append entries (numbers as :func:`typed_key` gives them: int or float)."""
        self._by_row = self._blocks = None
        if len(rows) > 1 and not self._multi:
            self._multi = bool((np.diff(np.asarray(rows)) == 0).any())  # a batch's rows come in order
        keep_v: list[float] = []
        keep_r: list[int] = []
        for value, row in zip(values, rows, strict=True):
            if type(value) is int and not -_EXACT <= value <= _EXACT:
                self._exact.setdefault(row, []).append(value)
            elif value == value:  # NaN matches nothing
                keep_v.append(value)
                keep_r.append(row)
        if keep_v:
            self._append(np.asarray(keep_v, dtype=np.float64), np.asarray(keep_r, dtype=np.int64))

    def add_arrays(self, values: np.ndarray, rows: np.ndarray, exact: Sequence[tuple[int, int]] = ()) -> None:
        """Append entries from arrays: float64 ``values`` of int64 ``rows`` (in row order), and ``exact``
        (row, int) pairs of ints beyond 2**53 in magnitude (PayloadIndex.add_scanned)."""
        self._by_row = self._blocks = None
        if not self._multi:  # some row with two numbers: rows ascend, so a repeat is next to its twin
            if exact:
                both = np.concatenate([rows, np.asarray([r for r, _ in exact], dtype=np.int64)])
                self._multi = bool(np.unique(both).shape[0] != both.shape[0])
            elif rows.shape[0] > 1:
                self._multi = bool((rows[1:] == rows[:-1]).any())
        for row, value in exact:
            self._exact.setdefault(row, []).append(value)
        keep = values == values  # NaN matches nothing
        if not keep.all():
            values, rows = values[keep], rows[keep]
        if values.shape[0]:
            self._append(values, rows)

    def _append(self, values: np.ndarray, rows: np.ndarray) -> None:
        n = values.shape[0]
        need = self._tail_n + n
        if need > self._tail_v.shape[0]:
            cap = max(need, 2 * self._tail_v.shape[0])
            self._tail_v = np.resize(self._tail_v, cap)
            self._tail_r = np.resize(self._tail_r, cap)
        self._tail_v[self._tail_n : need] = values
        self._tail_r[self._tail_n : need] = rows
        self._tail_n = need
        if need > max(_TAIL_MIN, self._base_v.shape[0] // 4):
            self.seal()

    def seal(self) -> None:
        """Merge the tail into the sorted base."""
        self._by_row = self._blocks = None
        if not self._tail_n:
            return
        values = np.concatenate([self._base_v, self._tail_v[: self._tail_n]])
        rows = np.concatenate([self._base_r, self._tail_r[: self._tail_n]])
        order = np.argsort(values, kind="stable")
        self._base_v, self._base_r = values[order], rows[order]
        self._tail_n = 0

    def sealed_state(self) -> tuple[np.ndarray, np.ndarray, dict[int, list[Any]], bool]:
        """(values, rows, exact, multi) of a sealed column with no row replaced in place (payload_index_file.py)."""
        if self._tail_n or self._shadowed:
            raise ValueError("only a sealed segment's column is saved")
        return self._base_v, self._base_r, self._exact, self._multi

    @classmethod
    def from_sealed(cls, values: np.ndarray, rows: np.ndarray, exact: dict[int, list[Any]],
                    multi: bool) -> NumberColumn:
        column = cls()
        column._base_v, column._base_r, column._exact, column._multi = values, rows, exact, multi
        column.final = True
        return column

    def replace(self, row: int, values: list[Any]) -> None:
        """Row ``row`` now has these numbers (its array entries are ignored from now on)."""
        self._by_row = self._blocks = None
        self._shadowed.add(row)
        self._multi = self._multi or len(values) > 1
        if values:
            self._exact[row] = list(values)
        else:
            self._exact.pop(row, None)

    @property
    def single_valued(self) -> bool:
        """No row has two number entries (then two bounds can be applied to one entry at a time)."""
        return not self._multi

    def _span(self, conditions: Sequence[tuple[str, Any]]) -> tuple[int, int, np.ndarray | None]:
        """(start, stop, tail hits): the base entries ``[start, stop)`` and the tail entries (a bool
        mask of the tail) that satisfy every condition."""
        start, stop = 0, self._base_v.shape[0]
        hit: np.ndarray | None = None
        tail_v = self._tail_v[: self._tail_n]
        for op, operand in conditions:
            start, stop = self._narrow(start, stop, op, operand)
            part = _satisfy(tail_v, op, operand)
            hit = part if hit is None else hit & part
        return start, stop, hit

    def by_row(self) -> np.ndarray | None:
        """float64 per row, the row's number (NaN: none), for a column that can give it: sealed, no row
        with two numbers, none replaced in place or kept exactly. Built on first use (8 bytes a row,
        a segment's column only), for the planner to test a few rows against a large range."""
        if self._by_row is None:
            if self._multi or self._shadowed or self._tail_n or self._exact:
                return None
            size = int(self._base_r.max()) + 1 if self._base_r.shape[0] else 0
            values = np.full(size, np.nan)
            values[self._base_r] = self._base_v
            self._by_row = values
        return self._by_row

    def range_bitmap(self, conditions: Sequence[tuple[str, Any]]) -> BitMap | None:
        """The rows of a range of a ``final`` column that :meth:`by_row` can give (one number per row,
        nothing kept per row), as a new bitmap; None for any other column. Made from bitmaps of
        ``RANGE_BLOCK`` sorted entries each, built on first use (about 2 bytes a row): the blocks
        inside the range united in CRoaring, the entries of the two blocks it cuts sorted and added.
        Cheaper than testing more than about twice as many rows against :meth:`by_row` (the planner's
        ``$and`` of a large set and a range)."""
        if not self.final or self.by_row() is None:
            return None
        start, stop, _ = self._span(conditions)
        base = self._base_r
        blocks = self._blocks
        if blocks is None:
            blocks = [bitmap_of(np.sort(base[i : i + RANGE_BLOCK])) for i in range(0, base.shape[0], RANGE_BLOCK)]
            self._blocks = blocks
        if start >= stop:
            return BitMap()
        first, last = -(-start // RANGE_BLOCK), stop // RANGE_BLOCK  # the whole blocks: [first, last)
        if first >= last:
            return bitmap_of(np.sort(base[start:stop]))
        cut = np.concatenate([base[start : first * RANGE_BLOCK], base[last * RANGE_BLOCK : stop]])
        return BitMap.union(*blocks[first:last], bitmap_of(np.sort(cut)))

    def count_upper(self, conditions: Sequence[tuple[str, Any]]) -> int:
        """An upper bound of the rows :meth:`select` would pick, without picking them (the planner's
        estimate: the base entries in range exactly, every tail and per-row entry counted)."""
        start, stop = 0, self._base_v.shape[0]
        for op, operand in conditions:
            start, stop = self._narrow(start, stop, op, operand)
        return max(0, stop - start) + self._tail_n + len(self._exact)

    def _narrow(self, start: int, stop: int, op: str, operand: Any) -> tuple[int, int]:
        """The base entries ``[start, stop)`` narrowed to those ``<op> operand``."""
        fa = _as_float(operand)
        tie = _COMPARE[op](fa, operand)  # do entries equal to fa satisfy the comparison?
        values = self._base_v
        if op == "$eq":
            lo = int(values.searchsorted(fa, "left"))
            return max(start, lo), min(stop, int(values.searchsorted(fa, "right")) if tie else lo)
        if op in ("$gt", "$gte"):
            return max(start, int(values.searchsorted(fa, "left" if tie else "right"))), stop
        return start, min(stop, int(values.searchsorted(fa, "right" if tie else "left")))

    def select_rows(self, conditions: Sequence[tuple[str, Any]], rows: int) -> BitMap:
        """The rows :meth:`select` would OR into a mask of ``rows`` rows, as a new bitmap."""
        start, stop, hit = self._span(conditions)
        picked = self._base_r[start:stop] if start < stop else _EMPTY_ROWS
        if self._tail_n and hit is not None and hit.any():
            picked = np.concatenate([picked, self._tail_r[: self._tail_n][hit]])
        if picked.shape[0] and picked.max() >= rows:
            picked = picked[picked < rows]
        found = bitmap_of(np.sort(picked.astype(np.uint32)))  # packed sorted: far cheaper than unsorted
        if self._shadowed:
            found.difference_update(BitMap(self._shadowed))
        tests = [(_COMPARE[op], operand) for op, operand in conditions]
        for row, values in self._exact.items():
            if row < rows and all(any(test(v, operand) for v in values) for test, operand in tests):
                found.add(row)
        return found

    def select(self, conditions: Sequence[tuple[str, Any]], mask: np.ndarray) -> None:
        """OR into ``mask`` the rows with an entry ``v`` such that ``v <op> operand`` for every
        (op, operand) of ``conditions``: one condition, or (when :attr:`single_valued`, the
        caller's business) several on the same entry, such as the two ends of a range."""
        rows = mask.shape[0]
        start, stop, hit = self._span(conditions)
        picked = [self._base_r[start:stop] if start < stop else _EMPTY_ROWS]
        if self._tail_n and hit is not None:
            picked.append(self._tail_r[: self._tail_n][hit])
        shadowed = [r for r in self._shadowed if r < rows]
        before = mask[shadowed]  # the array entries of these rows are stale: keep what the mask had
        for found in picked:
            if found.shape[0]:
                mask[found[found < rows] if found.max() >= rows else found] = True
        mask[shadowed] = before
        tests = [(_COMPARE[op], operand) for op, operand in conditions]
        for row, values in self._exact.items():  # exact, per row: several bounds may meet different entries
            if row < rows and all(any(test(v, operand) for v in values) for test, operand in tests):
                mask[row] = True


class FieldIndex:
    """One field's index in one part."""

    __slots__ = ("_strings", "exists", "numbers", "postings")

    def __init__(self) -> None:
        self.exists = BitMap()
        self.postings: dict[tuple[str, Any], BitMap] = {}
        self.numbers = NumberColumn()
        self._strings: list[str] | None = None  # the string keys, sorted (built when a range needs it)

    def post_rows(self, key: tuple[str, Any], rows: np.ndarray) -> None:
        """:meth:`post` for an int array of rows."""
        self._merge(key, bitmap_of(rows))

    def post(self, key: tuple[str, Any], rows: Iterable[int]) -> None:
        self._merge(key, BitMap(rows))

    def _merge(self, key: tuple[str, Any], rows: BitMap) -> None:
        bitmap = self.postings.get(key)
        if bitmap is None:
            self.postings[key] = rows
            if key[0] == "s":
                self._strings = None
        else:
            bitmap |= rows

    def sorted_strings(self) -> list[str]:
        if self._strings is None:
            self._strings = sorted(k[1] for k in self.postings if k[0] == "s")
        return self._strings


class _Batch:
    """One field's entries from one add_rows call, before they go into the bitmaps and columns."""

    __slots__ = ("exists", "other", "rows", "strings", "values")

    def __init__(self) -> None:
        self.exists: list[int] = []
        self.strings: dict[str, list[int]] = {}
        self.other: dict[tuple[str, Any], list[int]] = {}  # booleans, null
        self.values: list[Any] = []  # numbers, with their rows
        self.rows: list[int] = []

    def add(self, key: tuple[str, Any], row: int) -> None:
        if key[0] == "n":
            self.values.append(key[1])
            self.rows.append(row)
        elif key[0] == "s":
            self.strings.setdefault(key[1], []).append(row)
        else:
            self.other.setdefault(key, []).append(row)


def _canonical(item: tuple[tuple[str, Any], BitMap]) -> tuple[bool, str, Any]:
    kind, value = item[0]  # a field has one posting of each key: values are compared within a kind only
    return kind != "s", kind, value


def _keys_of(value: Any) -> Iterable[tuple[str, Any]]:
    """The typed keys a value posts: its own, or each element's for a list (as filters.py matches)."""
    if type(value) is list or type(value) is tuple:
        keys = (typed_key(e) for e in value)
        return [k for k in keys if k is not None]
    key = typed_key(value)
    return () if key is None else (key,)


class PayloadIndex:
    """The payload index of one part. Rows are numbered as in the part."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, FieldIndex] = {}

    @classmethod
    def build(cls, metadata: Sequence[Metadata | None]) -> PayloadIndex:
        """The index of a whole (immutable) part, e.g. a segment's rows."""
        index = cls()
        index.add_rows(0, metadata)
        index.seal()
        return index

    def seal(self) -> None:
        """Sort every number column completely (a built index is never appended to again), and put each
        field's postings in their canonical order: string keys first, sorted, then the others (false,
        true, null), whatever order the rows came in (payload.idx is then the same bytes however the
        index was built: at once, in steps, or from a compiled scan)."""
        for field in self.fields.values():
            field.numbers.seal()
            field.numbers.final = True
            field.postings = dict(sorted(field.postings.items(), key=_canonical))

    def add_rows(self, start: int, metadata: Sequence[Metadata | None]) -> None:
        """Index rows ``start, start + 1, ...`` (a batch at a time: one bitmap update per key).

        The loop is the cost of indexing (one pass over every value in Python): strings, ints
        and floats, the common values, take the inline paths; the rest goes by typed_key."""
        batch: dict[str, _Batch] = {}
        for row, md in enumerate(metadata, start):
            if not md:
                continue
            for name, value in md.items():
                acc = batch.get(name)
                if acc is None:
                    acc = batch[name] = _Batch()
                acc.exists.append(row)
                kind = type(value)
                if type(value) is str:
                    posted = acc.strings.get(value)
                    if posted is None:
                        acc.strings[value] = [row]
                    else:
                        posted.append(row)
                elif kind is int or kind is float:
                    acc.values.append(value)
                    acc.rows.append(row)
                else:
                    for key in _keys_of(value):
                        acc.add(key, row)
        for name, acc in batch.items():
            field = self._field(name)
            field.exists.update(acc.exists)
            for text, rows in acc.strings.items():
                field.post(("s", text), rows)
            for key, rows in acc.other.items():
                field.post(key, rows)
            if acc.values:
                field.numbers.add(acc.values, acc.rows)

    def add_encoded(self, start: int, blob: bytes, offsets: np.ndarray,
                    decoded: Callable[[], Sequence[Metadata | None]]) -> None:
        """Index rows ``start, ...`` from their maps encoded (wal_io.encode_metadata_maps: ``blob``,
        ``offsets``), scanned in compiled code; where the scan leaves a row to the Python rule, the rows
        ``decoded()`` returns are indexed by :meth:`add_rows` instead (key sizes are not checked here:
        they were at the insert)."""
        sizes, fields, strings, entries = scan.scan_maps(blob, offsets, 1 << 62)
        if bool((sizes < 0).any()):
            self.add_rows(start, decoded())
        else:
            self.add_scanned(start, fields, strings, entries)

    def add_scanned(self, start: int, fields: Sequence[str], strings: Sequence[str], entries: tuple[Any, ...]) -> None:
        """Index rows ``start, start + 1, ...`` from a compiled scan of their encoded maps
        (storage/metadata_scan.pyx, ``scan_maps``: its ``fields``, ``strings`` and grouped ``entries``), with
        the typed keys :meth:`add_rows` would post for the same maps decoded: slices of arrays per field, a
        bitmap update per distinct value, no Python call per row."""
        bounds, kind, code, batch_rows, number, big = entries
        if batch_rows.shape[0] and start + int(batch_rows.max()) >= 2**32:
            raise ValueError(f"rows from {start} on are past a bitmap's 32-bit row numbers")
        rows = batch_rows + np.uint32(start)  # uint32: what a bitmap takes
        kinds = np.arange(_KINDS + 1)
        for f, name in enumerate(fields):
            a, b = int(bounds[f]), int(bounds[f + 1])
            if a == b:
                continue
            field = self._field(name)
            at = (a + np.searchsorted(kind[a:b], kinds)).tolist()  # kind k: at[k]:at[k + 1]
            field.exists |= bitmap_of(rows[at[scan.KIND_KEY] : at[scan.KIND_KEY + 1]])
            s0, s1 = at[scan.KIND_STRING], at[scan.KIND_STRING + 1]
            if s1 > s0:
                codes = code[s0:s1]
                cuts = (s0 + np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()
                for lo, hi in zip([s0, *cuts], [*cuts, s1], strict=True):
                    field.post_rows(("s", strings[int(code[lo])]), rows[lo:hi])
            for k, key in _SCANNED_KEYS:
                if at[k + 1] > at[k]:
                    field.post_rows(key, rows[at[k] : at[k + 1]])
            n0, n1 = at[scan.KIND_NUMBER], at[scan.KIND_NUMBER + 1]
            b0, b1 = at[scan.KIND_BIG_INT], at[scan.KIND_BIG_INT + 1]
            if n1 > n0 or b1 > b0:
                exact = list(zip(rows[b0:b1].tolist(), big[b0:b1].tolist(), strict=True))
                field.numbers.add_arrays(number[n0:n1], rows[n0:n1].astype(np.int64), exact)

    def replace_row(self, row: int, old: Metadata | None, new: Metadata | None) -> None:
        """Row ``row``'s metadata changed in place from ``old`` to ``new`` (memtable set_metadata)."""
        old = old or {}
        new = new or {}
        for name, value in old.items():
            field = self.fields[name]
            field.exists.discard(row)
            field.numbers.replace(row, [])
            for key in _keys_of(value):
                if key[0] != "n":
                    field.postings[key].discard(row)
        for name, value in new.items():
            field = self._field(name)
            field.exists.add(row)
            keys = list(_keys_of(value))
            field.numbers.replace(row, [k[1] for k in keys if k[0] == "n"])
            for key in keys:
                if key[0] != "n":
                    field.post(key, (row,))

    def _field(self, name: str) -> FieldIndex:
        field = self.fields.get(name)
        if field is None:
            field = self.fields[name] = FieldIndex()
        return field

    # -- the primitives Filter.index_mask combines (bool masks of ``rows`` rows) --------
    def exists(self, name: str, rows: int) -> np.ndarray:
        field = self.fields.get(name)
        return np.zeros(rows, dtype=bool) if field is None else bitmap_to_mask(field.exists, rows)

    def members(self, name: str, values: Sequence[Any], rows: int) -> np.ndarray:
        """Rows whose value (or an element of its list) is one of ``values``; a null among them
        also matches rows without the field."""
        keys = {typed_key(v) for v in values}
        field = self.fields.get(name)
        if field is None:
            return np.full(rows, ("z", None) in keys, dtype=bool)
        mask = np.zeros(rows, dtype=bool)
        found = [field.postings[k] for k in keys if k is not None and k[0] != "n" and k in field.postings]
        if found:
            bitmap_to_mask(found[0] if len(found) == 1 else BitMap.union(*found), rows, mask)
        for key in keys:
            if key is not None and key[0] == "n":
                field.numbers.select((("$eq", key[1]),), mask)
        if ("z", None) in keys:
            mask |= ~bitmap_to_mask(field.exists, rows)
        return mask

    def ordered(self, name: str, op: str, operand: Any, rows: int) -> np.ndarray:
        """Rows with a value (or list element) of the operand's kind (number or string) ``<op> operand``."""
        mask = np.zeros(rows, dtype=bool)
        field = self.fields.get(name)
        if field is None:
            return mask
        if isinstance(operand, str):
            strings = field.sorted_strings()
            if op in ("$gt", "$gte"):
                start = (bisect.bisect_right if op == "$gt" else bisect.bisect_left)(strings, operand)
                chosen = strings[start:]
            else:
                stop = (bisect.bisect_left if op == "$lt" else bisect.bisect_right)(strings, operand)
                chosen = strings[:stop]
            if chosen:
                bitmap_to_mask(BitMap.union(*(field.postings[("s", s)] for s in chosen)), rows, mask)
        else:
            field.numbers.select(((op, operand),), mask)
        return mask

    def between(self, name: str, bounds: Sequence[tuple[str, Any]], rows: int) -> np.ndarray:
        """Rows matching every ``(op, number)`` of ``bounds`` ($gt & co.): as the AND of
        :meth:`ordered` of each, but one pass over the sorted numbers when no row has two."""
        field = self.fields.get(name)
        if field is None or not field.numbers.single_valued:
            mask = self.ordered(name, *bounds[0], rows)
            for op, operand in bounds[1:]:
                mask &= self.ordered(name, op, operand, rows)
            return mask
        mask = np.zeros(rows, dtype=bool)
        field.numbers.select(bounds, mask)
        return mask
