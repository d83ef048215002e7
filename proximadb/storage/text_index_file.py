"""A segment's BM25 text index saved beside it (``text.idx``), so a reopen maps it instead of rebuilding.

The index (:class:`proximadb.text.bm25.Bm25Index` over the rows' ``document`` text,
storage/text_search.py) is derived from the segment's metadata: the file is a derived file
(derived_file.py: header, body CRC, the CRC of the ``meta.avro`` it was made from), written at
the first text search that builds the index with the default analyzer, and rebuilt when missing,
refused, or made with other analyzer settings.

Body (format 1, little-endian)::

    offset  size        field
    0       4           A: length of the analyzer settings (u32)
    4       4           reserved (0)
    8       8           T: terms (u64)
    16      8           N: rows (u64)
    24      8           P: postings (u64)
    32      8           B: bytes of the terms' UTF-8 (u64)
    40      A           the analyzer's settings, UTF-8 JSON (Analyzer.settings())
    ...     pad         zeros to an 8-byte boundary
            8 (T + 1)   term_start  i64: the postings of term t are [term_start[t], term_start[t+1])
            8 (T + 1)   term_text   i64: term t's UTF-8 is bytes [term_text[t], term_text[t+1]) of the terms
            4 P         post_row    i32, ascending within a term
            4 P         post_value  f32: the term's count in that row
            4 N         row_length  f32: terms in the row
            B           the terms' UTF-8, concatenated in term-id order
            pad         zeros to an 8-byte boundary

Loading builds the vocabulary (a dict of T terms: one entry per distinct term, not per row); the
arrays are views of the mapped file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index.inverted import InvertedIndex
from proximadb.storage.derived_file import StaleDerivedFile, map_derived, write_derived
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index

MAGIC = b"PXDBTXI\x01"
VERSION = 1
FILE_NAME = "text.idx"
_HEAD = struct.Struct("<I4xQQQQ")  # 40 bytes


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 8)


def write_index(path: Path, source_crc: int, index: Bm25Index) -> None:
    inv = index.index
    settings = json.dumps(index.analyzer.settings(), sort_keys=True).encode()
    terms = list(index.vocabulary)  # insertion order = term id order (Bm25Index.build numbers them so)
    encoded = [t.encode() for t in terms]
    text_offsets = np.zeros(len(terms) + 1, dtype="<i8")
    text_offsets[1:] = np.cumsum([len(e) for e in encoded])
    blob = b"".join(encoded)
    head = _HEAD.pack(len(settings), len(terms), inv.n_rows, inv.post_row.shape[0], len(blob))
    parts: list[bytes | memoryview] = [
        head, settings, _pad(_HEAD.size + len(settings)),
        np.ascontiguousarray(inv.term_start, dtype="<i8").data, text_offsets.data,
        np.ascontiguousarray(inv.post_row, dtype="<i4").data, np.ascontiguousarray(inv.post_value, dtype="<f4").data,
        np.ascontiguousarray(inv.row_length, dtype="<f4").data, blob,
    ]
    parts.append(_pad(sum(len(memoryview(p).cast("B")) for p in parts)))
    write_derived(path, MAGIC, VERSION, source_crc, parts)


def load_index(path: Path, source_crc: int, analyzer: Analyzer, rows: int) -> Bm25Index:
    """The saved index, if it was made by ``analyzer`` over ``rows`` rows; else StaleDerivedFile."""
    body = map_derived(path, MAGIC, VERSION, source_crc)
    try:
        a_len, n_terms, n_rows, n_post, n_bytes = _HEAD.unpack_from(body)
        at = _HEAD.size
        settings = json.loads(bytes(body[at:at + a_len]))
        at += a_len + (-(at + a_len) % 8)

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal at
            arr = np.frombuffer(body, dtype=dtype, count=count, offset=at)
            at += arr.nbytes
            return arr

        term_start = take("<i8", n_terms + 1)
        text_offsets = take("<i8", n_terms + 1)
        post_row = take("<i4", n_post)
        post_value = take("<f4", n_post)
        row_length = take("<f4", n_rows)
        blob = bytes(body[at:at + n_bytes])
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StaleDerivedFile(f"{path.name}: unreadable body ({exc})") from None
    if settings != analyzer.settings():
        raise StaleDerivedFile(f"{path.name} was made with analyzer {settings}, not {analyzer.settings()}")
    if n_rows != rows or len(blob) != n_bytes:
        raise StaleDerivedFile(f"{path.name}: {n_rows} rows, the segment has {rows}")
    if n_terms and bool((np.diff(term_start) < 0).any()):
        raise StaleDerivedFile(f"{path.name}: term_start is not ascending")
    try:
        offsets = text_offsets.tolist()
        vocabulary = {blob[offsets[t]:offsets[t + 1]].decode(): t for t in range(n_terms)}
        inverted = InvertedIndex(term_start, post_row, post_value, row_length)
    except (UnicodeDecodeError, ValueError, ValidationError) as exc:
        raise StaleDerivedFile(f"{path.name}: inconsistent body ({exc})") from None
    return Bm25Index(analyzer, vocabulary, inverted)
