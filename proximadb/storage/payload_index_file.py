"""A segment's payload index saved beside it (``payload.idx``), so a reopen maps it instead of rebuilding.

The index (payload_index.py) is derived from the segment's metadata; the file is a derived
file (derived_file.py: header, body CRC, the CRC of the ``meta.avro`` it was made from) and
is rebuilt from the metadata when missing or refused.

Body (format 1, little-endian; offsets are from the start of the blob area)::

    offset   size  field
    0        4     D: length of the directory (u32)
    4        4     reserved (0)
    8        D     the directory: UTF-8 JSON, below
    8+D      pad   zeros to an 8-byte boundary; the blob area starts here

    directory = {"fields": [{"name": <field>,
                             "exists": [offset, length],          a serialized roaring bitmap
                             "postings": [[kind, key, offset, length], ...],
                             "values": [offset, count],           float64, ascending
                             "rows": [offset, count],             int64, the row of each value
                             "exact": [[row, [int, ...]], ...],   ints beyond 2**53, kept exactly
                             "multi": bool}, ...]}

A posting's ``[kind, key]`` is the typed key of payload_index.py (``"s"`` string, ``"b"``
boolean, ``"z"`` null with key null). Bitmaps are pyroaring's portable serialization
(the Roaring format spec, shared by CRoaring and the Java library).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from pyroaring import BitMap

from proximadb.storage.derived_file import StaleDerivedFile, map_derived, write_derived
from proximadb.storage.payload_index import FieldIndex, NumberColumn, PayloadIndex

MAGIC = b"PXDBPIX\x01"
VERSION = 1
FILE_NAME = "payload.idx"
_HEAD = struct.Struct("<I4x")


class _Blobs:
    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.size = 0

    def add(self, data: bytes | memoryview) -> list[int]:
        at = self.size
        n = len(memoryview(data).cast("B"))
        self.parts.append(data)
        self.size += n
        pad = -self.size % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        return [at, n]


def encode_index(index: PayloadIndex) -> list[bytes | memoryview]:
    blobs = _Blobs()
    fields = []
    for name, field in index.fields.items():
        values, rows, exact, multi = field.numbers.sealed_state()
        fields.append({
            "name": name,
            "exists": blobs.add(field.exists.serialize()),
            "postings": [[kind, key, *blobs.add(bitmap.serialize())] for (kind, key), bitmap in field.postings.items()],
            "values": [blobs.add(np.ascontiguousarray(values, dtype="<f8").data)[0], int(values.shape[0])],
            "rows": [blobs.add(np.ascontiguousarray(rows, dtype="<i8").data)[0], int(rows.shape[0])],
            "exact": [[row, list(vals)] for row, vals in exact.items()],
            "multi": multi,
        })
    directory = json.dumps({"fields": fields}, separators=(",", ":")).encode("utf-8")
    pad = b"\0" * (-(_HEAD.size + len(directory)) % 8)
    return [_HEAD.pack(len(directory)), directory, pad, *blobs.parts]


def write_index(path: Path, source_crc: int, index: PayloadIndex) -> None:
    write_derived(path, MAGIC, VERSION, source_crc, encode_index(index))


def load_index(path: Path, source_crc: int) -> PayloadIndex:
    """The saved index of a segment made from this source; StaleDerivedFile when it cannot be used."""
    body = map_derived(path, MAGIC, VERSION, source_crc)
    try:
        return _decode(body)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # a body that passed its CRC but not its shape
        raise StaleDerivedFile(f"{FILE_NAME}: {exc}") from None


def _decode(body: memoryview) -> PayloadIndex:
    (length,) = _HEAD.unpack_from(body)
    start = _HEAD.size + length
    directory = json.loads(bytes(body[_HEAD.size : start]).decode("utf-8"))
    blob = body[start + (-start % 8) :]

    def bitmap(at: int, n: int) -> BitMap:
        if at < 0 or at + n > len(blob):
            raise ValueError(f"a bitmap at {at}+{n} is outside the {len(blob)}-byte blob area")
        return BitMap.deserialize(bytes(blob[at : at + n]))

    def array(spec: list[int], dtype: str) -> np.ndarray:
        at, count = spec
        if at < 0 or at + 8 * count > len(blob):
            raise ValueError(f"an array at {at} of {count} is outside the blob area")
        return np.frombuffer(blob, dtype=dtype, count=count, offset=at)

    index = PayloadIndex()
    for spec in directory["fields"]:
        field = FieldIndex()
        field.exists = bitmap(*spec["exists"])
        for kind, key, at, n in spec["postings"]:
            field.postings[(kind, key)] = bitmap(at, n)
        exact: dict[int, list[Any]] = {int(row): list(vals) for row, vals in spec["exact"]}
        field.numbers = NumberColumn.from_sealed(array(spec["values"], "<f8"), array(spec["rows"], "<i8"),
                                                 exact, bool(spec["multi"]))
        index.fields[str(spec["name"])] = field
    return index
