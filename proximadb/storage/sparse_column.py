"""Named sparse vectors as numpy columns: one CSR per name over a run of rows (a batch, a memtable, a segment).

A :class:`SparseColumn` holds, for rows ``0..n-1``::

    row_start  int64[n + 1]   row r's components are [row_start[r], row_start[r+1])
    indices    int32[nnz]     per row strictly increasing, >= 0
    values     float32[nnz]   finite

A row without the name is an empty range: an empty sparse vector and no vector are the same thing
(``get`` shows neither). Batches (``DecodedBatch.sparse_vectors``, ``InsertOp.sparse_vectors``),
the memtable and segments hold ``dict[str, SparseColumn]``; nothing per row lives on the Python heap.

The rules a sparse vector obeys (checked by the compiled decoder for payloads, and by :func:`check_vector`
for anything built in Python: queries, encoder input) are those of :mod:`proximadb.limits`
(``MAX_SPARSE_NNZ``, ``SPARSE_NAME_PATTERN``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.limits import MAX_SPARSE_NNZ, SPARSE_NAME_PATTERN

_NAME = re.compile(SPARSE_NAME_PATTERN)


@dataclass(slots=True)
class SparseColumn:
    """One name's sparse vectors over rows 0..rows-1 (CSR; see the module's documentation)."""

    row_start: np.ndarray  # int64[n + 1]
    indices: np.ndarray  # int32[nnz]
    values: np.ndarray  # float32[nnz]

    @property
    def rows(self) -> int:
        return int(self.row_start.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.row_start[-1]) if self.row_start.shape[0] else 0

    @classmethod
    def empty(cls, rows: int) -> SparseColumn:
        return cls(np.zeros(rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Row r's (indices, values): views."""
        a, b = int(self.row_start[r]), int(self.row_start[r + 1])
        return self.indices[a:b], self.values[a:b]

    def lengths(self) -> np.ndarray:
        """int64 non-zeros per row."""
        return np.diff(self.row_start)

    def take(self, rows: np.ndarray) -> SparseColumn:
        """The column of the given rows, in that order (a gather: no Python loop)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.row_start[rows]
        lengths = self.row_start[rows + 1] - starts
        out_start = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_start[1:])
        total = int(out_start[-1])
        if total == 0:
            return SparseColumn(out_start, np.zeros(0, np.int32), np.zeros(0, np.float32))
        pos = np.repeat(starts - out_start[:-1], lengths) + np.arange(total, dtype=np.int64)
        return SparseColumn(out_start, self.indices[pos], self.values[pos])

    def slice(self, a: int, b: int) -> SparseColumn:
        """Rows [a, b): the arrays' views, row_start rebased."""
        lo, hi = int(self.row_start[a]), int(self.row_start[b])
        return SparseColumn(self.row_start[a : b + 1] - lo, self.indices[lo:hi], self.values[lo:hi])

    @staticmethod
    def concat(columns: Sequence[SparseColumn]) -> SparseColumn:
        """Rows of each column one after the other."""
        if not columns:
            return SparseColumn.empty(0)
        starts = [np.zeros(1, dtype=np.int64)]
        base = 0
        for col in columns:
            starts.append(col.row_start[1:] - col.row_start[0] + base)
            base += int(col.row_start[-1] - col.row_start[0])
        return SparseColumn(
            np.concatenate(starts),
            np.concatenate([c.indices[int(c.row_start[0]) : int(c.row_start[-1])] for c in columns]).astype(np.int32),
            np.concatenate([c.values[int(c.row_start[0]) : int(c.row_start[-1])] for c in columns]).astype(np.float32),
        )


SparseColumns = dict[str, SparseColumn]


def scatter(parts: Sequence[tuple[np.ndarray, SparseColumns | None]], n: int) -> SparseColumns | None:
    """Rows gathered from several sources into one run of ``n`` rows: each part is (the output rows its
    rows go to, in order; its columns over those rows). Names a part lacks are empty there; None when
    no row has any sparse vector. (A flush of several sealed memtables, a compaction's chunk.)"""
    names = sorted({name for _, cols in parts for name in (cols or {})})
    out: SparseColumns = {}
    for name in names:
        lengths = np.zeros(n, dtype=np.int64)
        mine = [(pos, cols[name]) for pos, cols in parts if cols and name in cols]
        for pos, col in mine:
            lengths[pos] = col.lengths()
        row_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=row_start[1:])
        total = int(row_start[-1])
        if not total:
            continue
        indices = np.empty(total, dtype=np.int32)
        values = np.empty(total, dtype=np.float32)
        for pos, col in mine:
            if col.nnz:
                dest = np.repeat(row_start[pos] - col.row_start[:-1], col.lengths()) + np.arange(col.nnz)
                indices[dest] = col.indices[: col.nnz]
                values[dest] = col.values[: col.nnz]
        out[name] = SparseColumn(row_start, indices, values)
    return out or None


def check_name(name: object, where: str) -> str:
    """A sparse vector name: 1 to 64 characters of ``[A-Za-z0-9_.-]``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidVectorError(
            f"{where}: sparse vector name {name!r} must be 1 to 64 characters of letters, digits, '_', '.' or '-'"
        )
    return name


def check_vector(indices: Any, values: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(int32 indices, float32 values) of one sparse vector, or ValidationError naming ``where`` and the problem."""
    try:
        idx = np.asarray(indices)
        val = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidVectorError(f"{where}: indices and values must be lists of numbers ({exc})") from None
    if idx.ndim != 1 or val.ndim != 1:
        raise InvalidVectorError(f"{where}: indices and values must be flat lists")
    if idx.size and idx.dtype.kind not in "iu":
        if idx.dtype.kind == "f" and bool(np.all(np.isfinite(idx))) and bool(np.all(idx == np.floor(idx))):
            idx = idx.astype(np.int64)
        else:
            raise InvalidVectorError(f"{where}: indices must be integers, got {idx.dtype}")
    if idx.shape[0] != val.shape[0]:
        raise InvalidVectorError(f"{where}: {idx.shape[0]} indices but {val.shape[0]} values (they must match)")
    if idx.shape[0] > MAX_SPARSE_NNZ:
        raise InvalidVectorError(f"{where}: {idx.shape[0]} non-zeros, more than the limit of {MAX_SPARSE_NNZ}")
    if idx.dtype.kind == "u" and idx.size and int(idx.max()) > 2**31 - 1:  # before int64 could wrap it
        raise InvalidVectorError(f"{where}: indices must be below 2**31")
    idx64 = idx.astype(np.int64)
    if idx64.size:
        val32 = val.astype(np.float32)
        # the usual case in a few calls (strictly increasing: the first is the least, the last the largest)
        if idx64[0] >= 0 and idx64[-1] <= 2**31 - 1 and np.isfinite(val32).all() and (
                idx64.shape[0] == 1 or (idx64[1:] > idx64[:-1]).all()):
            return idx64.astype(np.int32), val32
        bad = np.flatnonzero(idx64 < 0)
        if bad.size:
            p = int(bad[0])
            raise InvalidVectorError(
                f"{where}: index {int(idx64[p])} at position {p} is negative (indices must be >= 0)"
            )
        if int(idx64.max()) > 2**31 - 1:
            raise InvalidVectorError(f"{where}: indices must be below 2**31")
        step = np.diff(idx64)
        bad = np.flatnonzero(step <= 0)
        if bad.size:
            p = int(bad[0]) + 1
            kind = "duplicated" if step[p - 1] == 0 else "unsorted"
            raise InvalidVectorError(
                f"{where}: indices must be strictly increasing; index {int(idx64[p])} at position {p} "
                f"follows {int(idx64[p - 1])} ({kind})"
            )
        bad = np.flatnonzero(~np.isfinite(val))
        if bad.size:
            p = int(bad[0])
            raise InvalidVectorError(f"{where}: value {val[p]} at position {p} is not finite")
        if not bool(np.all(np.isfinite(val32))):
            p = int(np.flatnonzero(~np.isfinite(val32))[0])
            raise InvalidVectorError(f"{where}: value {val[p]} at position {p} does not fit a float32")
        return idx64.astype(np.int32), val32
    return np.zeros(0, np.int32), np.zeros(0, np.float32)


def columns_from_records(records: Sequence[Mapping[str, Any] | None], n: int) -> SparseColumns:
    """Per-record ``{name: {"indices", "values"}}`` (or None) as columns, every vector checked."""
    if isinstance(records, Mapping) or len(records) != n:
        got = "a mapping" if isinstance(records, Mapping) else f"{len(records)} entries"
        raise ValidationError(f"sparse_vectors must have one entry (a mapping or None) per record: {n}, got {got}")
    rows: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for i, rec in enumerate(records):
        if rec is None:
            continue
        if not isinstance(rec, Mapping):
            raise ValidationError(f"sparse_vectors of record {i} must be a mapping of name to vector, "
                                  f"got {type(rec).__name__}")
        for name, vec in rec.items():
            check_name(name, f"record {i}")
            where = f"record {i}, sparse vector {name!r}"
            if not isinstance(vec, Mapping) or set(vec) != {"indices", "values"}:
                raise ValidationError(f"{where}: must be an object with exactly 'indices' and 'values'")
            idx, val = check_vector(vec["indices"], vec["values"], where)
            rows.setdefault(name, []).append((i, idx, val))
    return {name: _column(items, n) for name, items in rows.items()}


def _column(items: Iterable[tuple[int, np.ndarray, np.ndarray]], n: int) -> SparseColumn:
    items = list(items)
    lengths = np.zeros(n, dtype=np.int64)
    for i, idx, _ in items:
        lengths[i] = idx.shape[0]
    row_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_start[1:])
    indices = np.concatenate([idx for _, idx, _ in items]).astype(np.int32) if items else np.zeros(0, np.int32)
    values = np.concatenate([val for _, _, val in items]).astype(np.float32) if items else np.zeros(0, np.float32)
    return SparseColumn(row_start, indices, values)


def columns_from_entries(names: list[str], codes: np.ndarray, records: np.ndarray, nnz: np.ndarray,
                         indices: np.ndarray, values: np.ndarray, n: int) -> SparseColumns:
    """The decoder's flat entries (one per record and name, in record order: its name's code, record and
    non-zero count; their components back to back in ``indices``/``values``) as one column per name."""
    nnz = np.asarray(nnz, dtype=np.int64)
    records = np.asarray(records, dtype=np.int64)
    entry_start = np.zeros(nnz.shape[0] + 1, dtype=np.int64)
    np.cumsum(nnz, out=entry_start[1:])
    flat = SparseColumn(entry_start, indices, values)
    out: SparseColumns = {}
    for code, name in enumerate(names):
        mine = np.flatnonzero(codes == code)
        col = flat.take(mine)
        lengths = np.zeros(n, dtype=np.int64)
        lengths[records[mine]] = nnz[mine]
        row_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=row_start[1:])
        out[name] = SparseColumn(row_start, col.indices, col.values)
    return out


def check_columns(columns: Mapping[str, SparseColumn], n: int) -> SparseColumns:
    """Columns given as such (encoder input): names, shapes and every row's rules (vectorised)."""
    out: SparseColumns = {}
    for name, col in columns.items():
        check_name(name, "sparse_vectors")
        if not isinstance(col, SparseColumn):
            raise ValidationError(f"sparse_vectors[{name!r}] must be a SparseColumn, got {type(col).__name__}")
        raw = np.asarray(col.indices)
        if raw.size and (raw.dtype.kind not in "iu" or int(raw.min()) < -(2**31) or int(raw.max()) > 2**31 - 1):
            # checked before the int32 cast, which would wrap or truncate them silently (negatives: below)
            raise InvalidVectorError(f"sparse_vectors[{name!r}]: indices must be integers from 0 to 2**31 - 1, "
                                     f"got {raw.dtype} from {raw.min()} to {raw.max()}")
        rs = np.ascontiguousarray(col.row_start, dtype=np.int64)
        idx = np.ascontiguousarray(raw, dtype=np.int32)
        val = np.ascontiguousarray(col.values, dtype=np.float32)
        if rs.shape != (n + 1,) or rs[0] != 0 or int(rs[-1]) != idx.shape[0] or idx.shape != val.shape:
            raise ValidationError(f"sparse_vectors[{name!r}]: row_start must have {n + 1} entries from 0 to nnz, "
                                  "and indices and values nnz entries each")
        lengths = np.diff(rs)
        if bool((lengths < 0).any()):
            raise ValidationError(f"sparse_vectors[{name!r}]: row_start is not ascending")
        bad = np.flatnonzero(lengths > MAX_SPARSE_NNZ)
        if bad.size:
            raise ValidationError(f"record {int(bad[0])}, sparse vector {name!r}: {int(lengths[bad[0]])} non-zeros, "
                                  f"more than the limit of {MAX_SPARSE_NNZ}")
        if idx.size:
            first = np.zeros(idx.shape[0], dtype=bool)
            first[rs[:-1][lengths > 0]] = True
            bad_pos = np.flatnonzero(~first[1:] & (np.diff(idx.astype(np.int64)) <= 0)) + 1
            neg = np.flatnonzero(idx < 0)
            inf = np.flatnonzero(~np.isfinite(val))
            for pos in (neg, bad_pos, inf):
                if pos.size:
                    r = int(np.searchsorted(rs, pos[0], side="right")) - 1
                    a, b = int(rs[r]), int(rs[r + 1])
                    check_vector(idx[a:b], val[a:b], f"record {r}, sparse vector {name!r}")
        out[name] = SparseColumn(rs, idx, val)
    return out


def as_columns(sparse_vectors: Any, n: int) -> SparseColumns | None:
    """Encoder input (per-record mappings or ``dict[str, SparseColumn]``) as checked columns; None when empty."""
    if sparse_vectors is None:
        return None
    if isinstance(sparse_vectors, Mapping) and all(isinstance(v, SparseColumn) for v in sparse_vectors.values()):
        cols = check_columns(sparse_vectors, n)
    else:
        cols = columns_from_records(sparse_vectors, n)
    cols = {name: col for name, col in cols.items() if col.nnz}
    return cols or None


def row_dict(columns: Mapping[str, SparseColumn] | None, r: int) -> dict[str, dict[str, list[Any]]]:
    """Row r's sparse vectors as ``{name: {"indices": [...], "values": [...]}}`` (only names it has)."""
    out: dict[str, dict[str, list[Any]]] = {}
    if columns:
        for name, col in columns.items():
            if r < col.rows and col.row_start[r + 1] > col.row_start[r]:
                idx, val = col.row(r)
                out[name] = {"indices": idx.tolist(), "values": val.tolist()}
    return out


class GrowingSparse:
    """Per name, a CSR over rows appended in batches (the memtable's): numpy arrays grown by doubling, so
    a view handed to a reader stays valid (rows are never rewritten; growth copies into new arrays)."""

    def __init__(self) -> None:
        # name -> [row_start (capacity >= rows + 1), indices, values]; row_start[rows] is the non-zeros used
        self._cols: dict[str, list[np.ndarray]] = {}

    @property
    def names(self) -> list[str]:
        return list(self._cols)

    def append(self, start: int, n: int, batch: Mapping[str, SparseColumn] | None) -> int:
        """Rows [start, start + n) get ``batch``'s vectors (every other name: none); returns the bytes added."""
        added = 0
        for name in batch or {}:
            if name not in self._cols:
                self._cols[name] = [np.zeros(max(2 * (start + n) + 1, 1024), dtype=np.int64),
                                    np.empty(1024, dtype=np.int32), np.empty(1024, dtype=np.float32)]
        for name, arrays in self._cols.items():
            row_start, indices, values = arrays
            if row_start.shape[0] < start + n + 1:
                grown = np.zeros(max(start + n + 1, 2 * row_start.shape[0]), dtype=np.int64)
                grown[: start + 1] = row_start[: start + 1]
                arrays[0] = row_start = grown
            base = int(row_start[start])
            col = batch.get(name) if batch else None
            if col is None:
                row_start[start + 1 : start + n + 1] = base
                continue
            nnz = col.nnz
            if base + nnz > indices.shape[0]:
                cap = max(base + nnz, 2 * indices.shape[0])
                grown_i = np.empty(cap, dtype=np.int32)
                grown_i[:base] = indices[:base]
                grown_v = np.empty(cap, dtype=np.float32)
                grown_v[:base] = values[:base]
                arrays[1], arrays[2] = indices, values = grown_i, grown_v
            indices[base : base + nnz] = col.indices
            values[base : base + nnz] = col.values
            row_start[start + 1 : start + n + 1] = base + col.row_start[1:]
            added += nnz * 8
        return added

    def view(self, rows: int) -> SparseColumns:
        """Rows [0, rows) of every name: views."""
        out: SparseColumns = {}
        for name, (row_start, indices, values) in self._cols.items():
            nnz = int(row_start[rows])
            out[name] = SparseColumn(row_start[: rows + 1], indices[:nnz], values[:nnz])
        return out

    def take(self, rows: np.ndarray, total: int) -> SparseColumns | None:
        """The given rows' vectors (a flush's, a moved row's), names without any left out; None when none."""
        out = {name: col.take(rows) for name, col in self.view(total).items()}
        out = {name: col for name, col in out.items() if col.nnz}
        return out or None
