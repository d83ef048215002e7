"""Small checksummed JSON documents, replaced atomically.

Used for the catalog (``catalog.pxdb``), each collection's manifest
(``MANIFEST``) and each segment's descriptor (``segment.pxdb``).

Byte layout::

    PXDB1 <kind> <crc32c as 8 lowercase hex digits> <length>\\n
    <length bytes of UTF-8 JSON>

* ``kind`` names the document (``catalog``, ``manifest``, ``segment``), so a
  file put in the wrong place is refused rather than misread.
* the CRC32C covers the JSON bytes exactly; the length must match too.

A document is never edited in place: :func:`write_doc` writes a temporary
file, fsyncs it, renames it over the old one and fsyncs the directory, so a
crash leaves either the old or the new document, never a mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from proximadb.errors import CorruptionError
from proximadb.storage.wal_io import crc32c

_MAGIC = b"PXDB1"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def encode_doc(kind: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return b"%s %s %08x %d\n" % (_MAGIC, kind.encode("ascii"), crc32c(payload), len(payload)) + payload


def decode_doc(kind: str, data: bytes, source: str) -> dict[str, Any]:
    newline = data.find(b"\n", 0, 128)
    if newline < 0:
        raise CorruptionError(f"{source}: no header line; not a ProximaDB {kind} document")
    parts = data[:newline].split(b" ")
    if len(parts) != 4 or parts[0] != _MAGIC:
        raise CorruptionError(f"{source}: bad header {data[:newline][:60]!r}; expected '{_MAGIC.decode()} {kind} ...'")
    if parts[1].decode("ascii", "replace") != kind:
        raise CorruptionError(f"{source}: holds a {parts[1].decode('ascii', 'replace')!r} document, not {kind!r}")
    try:
        want_crc = int(parts[2], 16)
        length = int(parts[3])
    except ValueError:
        raise CorruptionError(f"{source}: unreadable checksum or length in header") from None
    payload = data[newline + 1 :]
    if len(payload) != length:
        raise CorruptionError(f"{source}: {len(payload)} bytes of body, header says {length} (truncated?)")
    if crc32c(payload) != want_crc:
        raise CorruptionError(f"{source}: checksum mismatch (stored {want_crc:08x}, computed {crc32c(payload):08x})")
    return json.loads(payload)


def write_doc(path: Path, kind: str, body: dict[str, Any]) -> None:
    write_durable(path, encode_doc(kind, body))


def read_doc(path: Path, kind: str) -> dict[str, Any]:
    return decode_doc(kind, path.read_bytes(), str(path))
