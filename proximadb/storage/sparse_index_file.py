"""A segment's sparse vectors and their postings, saved beside it (``sparse.idx``) and mapped at open.

The canonical copy of a row's sparse vectors is its ``meta.avro`` record (SegmentRow v3,
segment.py); this file is derived from it (derived_file.py: header, body CRC, the CRC of the
``meta.avro`` it was made from). It is written with the segment (segment_writer.py, from the
columns the writer already has) and rebuilt from ``meta.avro`` when missing, damaged or made
from another source. Segments of schema v1/v2 have no sparse vectors and no such file.

Per declared-and-used name it holds the rows' CSR (what ``get``/``scroll`` read) and an
inverted index of it (:class:`proximadb.index.inverted.InvertedIndex`, scored "dot"). The
index's term ids are positions in ``dims``, the sorted distinct indices the rows use, so an
index as large as 2**31 - 1 costs nothing: a query's indices are looked up in ``dims``.

Body (format 1, little-endian; every array starts 8-byte aligned)::

    offset  size          field
    0       4             K: names (u32)
    4       4             reserved (0)
    then per name:
            4             L: length of the name's UTF-8 (u32)
            4             reserved (0)
            8             N: rows (u64)
            8             Z: non-zeros (u64), = postings
            8             T: distinct indices (u64)
            L + pad       the name, zeros to an 8-byte boundary
            8 (N + 1)     row_start   i64: row r's components are [row_start[r], row_start[r+1])
            4 Z + pad     indices     i32, strictly increasing within a row
            4 Z + pad     values      f32
            4 T + pad     dims        i32, ascending: term t is index dims[t]
            8 (T + 1)     term_start  i64: term t's postings are [term_start[t], term_start[t+1])
            4 Z + pad     post_row    i32, ascending within a term
            4 Z + pad     post_value  f32: the row's value at that index
            4 N + pad     row_length  f32: non-zeros of the row

The arrays are views of the read-only map (the scorer uses them in place).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index.inverted import InvertedIndex
from proximadb.storage.derived_file import StaleDerivedFile, map_derived, write_derived
from proximadb.storage.sparse_column import SparseColumn

MAGIC = b"PXDBSPX\x01"
VERSION = 1
FILE_NAME = "sparse.idx"
_HEAD = struct.Struct("<I4x")
_NAME_HEAD = struct.Struct("<I4xQQQ")


@dataclass(slots=True)
class SparseIndex:
    """One name's rows (``column``) and their postings (term t = index ``dims[t]``)."""

    column: SparseColumn
    dims: np.ndarray  # int32, ascending
    index: InvertedIndex

    @classmethod
    def build(cls, column: SparseColumn) -> SparseIndex:
        dims = np.unique(column.indices).astype(np.int32)
        terms = np.searchsorted(dims, column.indices).astype(np.int32)
        inverted = InvertedIndex.build_weighted(column.row_start, terms, column.values, int(dims.shape[0]))
        return cls(column, dims, inverted)

    def search(self, indices: np.ndarray, values: np.ndarray, k: int,
               allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` rows by dot product among ``allowed`` (uint8 per row, None: all) that share an
        index with the query: (rows int64, scores float32), best first, ties to the smaller row."""
        if not self.dims.shape[0] or not indices.shape[0]:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        terms = np.searchsorted(self.dims, indices)
        known = terms < self.dims.shape[0]
        known[known] = self.dims[terms[known]] == indices[known]
        if not known.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self.index.search(terms[known].astype(np.int32), values[known], k, scoring="dot", allowed=allowed)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 8)


def _aligned(arr: np.ndarray, dtype: str) -> list[bytes | memoryview]:
    data = np.ascontiguousarray(arr, dtype=dtype)
    return [data.data.cast("B"), _pad(data.nbytes)]


def write_index(path: Path, source_crc: int, indexes: dict[str, SparseIndex]) -> None:
    parts: list[bytes | memoryview] = [_HEAD.pack(len(indexes))]
    for name, sp in indexes.items():
        encoded = name.encode()
        col, inv = sp.column, sp.index
        parts += [_NAME_HEAD.pack(len(encoded), col.rows, col.nnz, sp.dims.shape[0]), encoded, _pad(len(encoded))]
        parts += _aligned(col.row_start, "<i8") + _aligned(col.indices, "<i4") + _aligned(col.values, "<f4")
        parts += _aligned(sp.dims, "<i4") + _aligned(inv.term_start, "<i8") + _aligned(inv.post_row, "<i4")
        parts += _aligned(inv.post_value, "<f4") + _aligned(inv.row_length, "<f4")
    write_derived(path, MAGIC, VERSION, source_crc, parts)


def load_index(path: Path, source_crc: int, rows: int) -> dict[str, SparseIndex]:
    """The saved indexes over ``rows`` rows; StaleDerivedFile when the file cannot be used."""
    body = map_derived(path, MAGIC, VERSION, source_crc)
    out: dict[str, SparseIndex] = {}
    try:
        (count,) = _HEAD.unpack_from(body)
        at = _HEAD.size

        def take(dtype: str, n: int) -> np.ndarray:
            nonlocal at
            arr = np.frombuffer(body, dtype=dtype, count=n, offset=at)
            at += arr.nbytes + (-arr.nbytes % 8)
            return arr

        for _ in range(count):
            name_len, n_rows, nnz, n_terms = _NAME_HEAD.unpack_from(body, at)
            at += _NAME_HEAD.size
            name = bytes(body[at : at + name_len]).decode()
            at += name_len + (-name_len % 8)
            if n_rows != rows:
                raise StaleDerivedFile(f"{path.name}: {n_rows} rows for {name!r}, the segment has {rows}")
            column = SparseColumn(take("<i8", n_rows + 1), take("<i4", nnz), take("<f4", nnz))
            dims = take("<i4", n_terms)
            inverted = InvertedIndex(take("<i8", n_terms + 1), take("<i4", nnz), take("<f4", nnz), take("<f4", n_rows))
            _check(column, dims, inverted)
            out[name] = SparseIndex(column, dims, inverted)
    except (struct.error, ValueError, UnicodeDecodeError, ValidationError) as exc:
        raise StaleDerivedFile(f"{path.name}: unreadable or inconsistent body ({exc})") from None
    if at != len(body):
        raise StaleDerivedFile(f"{path.name}: {len(body) - at} bytes after the last name")
    return out


def _check(column: SparseColumn, dims: np.ndarray, inverted: InvertedIndex) -> None:
    """What the readers trust: row_start ascending from 0 to nnz, postings over the rows (the index's
    constructor checks its own arrays)."""
    rs = column.row_start
    if rs[0] != 0 or int(rs[-1]) != column.indices.shape[0] or bool((np.diff(rs) < 0).any()):
        raise ValueError("row_start is not ascending from 0 to the non-zeros")
    if inverted.post_row.shape[0] != column.indices.shape[0] or inverted.n_terms != dims.shape[0]:
        raise ValueError("postings and rows disagree")
