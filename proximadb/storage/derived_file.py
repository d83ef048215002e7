"""Files a segment derives from its canonical ones: checksummed, tied to their source, rebuilt when in doubt.

A segment's canonical record is ``meta.avro`` (segment.py). What a reopen needs fast
(the metadata column ``meta.rows``: metadata_store.py; the payload index ``payload.idx``:
payload_index_file.py; the BM25 text index ``text.idx``, at the first text search:
text_index_file.py; the sparse vectors and their postings ``sparse.idx``: sparse_index_file.py)
is derived from it once, at flush or at the first open that misses
it, and written beside it. A derived file is never trusted blindly: it names the CRC32C of
the source it was made from (``meta.avro``'s, as the segment descriptor records it), so a
file left from another version of the segment is refused, and its body has its own CRC32C.
A refused or missing derived file is rebuilt from the source, never a reason not to open.

Byte layout (little-endian)::

    offset size  field
    0      8     magic, one per kind (b"PXDBMDR\\x01": meta.rows, b"PXDBPIX\\x01": payload.idx,
                 b"PXDBTXI\\x01": text.idx, b"PXDBSPX\\x01": sparse.idx)
    8      2     format version of the kind's body
    10     2     reserved (0)
    12     4     CRC32C of the body
    16     4     CRC32C of the source file this was derived from
    20     4     reserved (0)
    24     8     body length in bytes
    32     body  (documented by the module of the kind)

Written like every replaced file here: ``<name>.tmp``, fsync, rename, fsync of the
directory (docfile.write_durable); a leftover ``.tmp`` is removed at open (integrity.py).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from proximadb.storage.docfile import write_durable
from proximadb.storage.wal_io import crc32c

HEADER = struct.Struct("<8sHHII4xQ")  # 32 bytes
DERIVED_NAMES = ("meta.rows", "payload.idx", "text.idx", "sparse.idx")  # every kind, for the clean-up of leftovers
log = logging.getLogger("proximadb.collection")


class StaleDerivedFile(Exception):
    """The derived file is missing, damaged or made from another source: rebuild it."""


def derived_header(magic: bytes, version: int, body_crc: int, source_crc: int, length: int) -> bytes:
    """The 32-byte header of a derived file whose body has this CRC and length."""
    return HEADER.pack(magic, version, 0, body_crc, source_crc, length)


def save_derived(path: Path, save: Callable[[], None]) -> None:
    """Save a derived file; a segment that cannot take it (read-only, disk full) goes on without it."""
    try:
        save()
    except OSError as exc:
        log.warning("segment %s: could not save a derived file (%s); it is rebuilt when next needed", path, exc)


def write_derived(path: Path, magic: bytes, version: int, source_crc: int, parts: Sequence[bytes | memoryview]) -> None:
    body_crc = 0
    length = 0
    for part in parts:
        view = memoryview(part).cast("B")
        body_crc = crc32c(view, body_crc)
        length += len(view)
    header = derived_header(magic, version, body_crc, source_crc, length)
    write_durable(path, b"".join([header, *(memoryview(p).cast("B") for p in parts)]))


def map_derived(path: Path, magic: bytes, version: int, source_crc: int) -> memoryview:
    """The body of a derived file, memory-mapped read-only; StaleDerivedFile if it cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StaleDerivedFile(f"{path.name} is missing") from None
    except OSError as exc:
        raise StaleDerivedFile(f"{path.name} cannot be opened: {exc}") from None
    try:
        size = os.fstat(fd).st_size
        if size < HEADER.size:
            raise StaleDerivedFile(f"{path.name} is shorter than its header ({size} bytes)")
        mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    except OSError as exc:  # not a regular file, say
        raise StaleDerivedFile(f"{path.name} cannot be mapped: {exc}") from None
    finally:
        os.close(fd)
    view = memoryview(mapped)
    got_magic, got_version, _, body_crc, got_source, length = HEADER.unpack_from(view)
    if got_magic != magic or got_version != version:
        raise StaleDerivedFile(f"{path.name}: magic {bytes(got_magic)!r} v{got_version}, expected {magic!r} v{version}")
    if got_source != source_crc:
        raise StaleDerivedFile(f"{path.name} was derived from another meta.avro (crc {got_source:08x})")
    if length != size - HEADER.size:
        raise StaleDerivedFile(f"{path.name}: body of {size - HEADER.size} bytes, header says {length}")
    body = view[HEADER.size :]
    if crc32c(body) != body_crc:
        raise StaleDerivedFile(f"{path.name}: body checksum mismatch")
    return body
