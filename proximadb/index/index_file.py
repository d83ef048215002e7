"""Index file framing, shared by every index kind (``VectorIndex.save`` / ``load`` in ``_base.pyx``).

All integers little-endian::

    offset     size  field
    0          8     magic (the kind's, e.g. b"PXHNSW\\x00\\x01")
    8          4     u32 format version
    12         4     u32 header size H
    16         H-24  the kind's header fields (see its module)
    H-8        4     u32 CRC32C of bytes [0, H-8)
    H-4        4     zero
    H                body: the kind's arrays, one after the other, each little-endian
    end-8      4     u32 CRC32C of the body's bytes as stored in the file
    end-4      4     the kind's end magic (e.g. b"PXHE")

:func:`write_index_file` writes to ``path + ".tmp"``, fsyncs and renames it over ``path``.
:class:`IndexFileReader` checks the magic, the version (the kind's, or an older one it still reads:
``IndexFileFormat.older``, e.g. HNSW's version 1), the header CRC, the file size the kind's header
implies, the body CRC and the end magic, and raises CorruptionError naming the file and the check
that failed; the kind checks its header fields and its structure. Body arrays travel a block of
rows at a time (at most 4 MiB a call), the CRC (compiled, GIL released) continued over each block.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import numpy as np

from proximadb.errors import CorruptionError
from proximadb.storage.wal_io import crc32c

_HOST_LE = sys.byteorder == "little"
_CHUNK_BYTES = 1 << 22  # bytes per write/read call of a body array
PREFIX = struct.Struct("<8sII")  # magic, version, header size: the start of every header
_U32 = struct.Struct("<I")


class IndexFileFormat:
    """The identity of one kind's index file: label (for messages), magic, version, header
    fields (a struct.Struct starting with the magic/version/size prefix) and end magic; ``older``:
    earlier versions that ``load`` still reads (same header, the kind's ``_from_old_header``)."""

    def __init__(self, label: str, magic: bytes, version: int, header: struct.Struct, end_magic: bytes,
                 older: tuple[int, ...] = ()) -> None:
        self.label = label
        self.magic = magic
        self.version = version
        self.header = header
        self.header_size = header.size + 8  # + header CRC + zero
        self.end_magic = end_magic
        self.older = older

    def error(self, path: object, what: str) -> CorruptionError:
        return CorruptionError(f"{self.label} index file {os.fspath(path)!r}: {what}")  # type: ignore[call-overload]


def _rows_view(arr: np.ndarray) -> np.ndarray:
    """arr as 2-D (rows, items): body arrays are written and read a block of rows at a time."""
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


def _step(arr: np.ndarray) -> int:
    return max(1, _CHUNK_BYTES // max(1, arr.shape[1] * arr.itemsize))


def write_index_file(path: str | os.PathLike[str], fmt: IndexFileFormat, header_fields: Iterable[Any],
                     arrays: Iterable[np.ndarray]) -> None:
    """The whole file, atomically: header, the (possibly strided) arrays little-endian, CRC, end magic."""
    head = fmt.header.pack(fmt.magic, fmt.version, fmt.header_size, *header_fields)
    head += struct.pack("<II", crc32c(head), 0)
    tmp = os.fspath(path) + ".tmp"
    crc = 0
    with open(tmp, "wb") as f:
        f.write(head)
        for arr in arrays:
            arr = _rows_view(arr)
            step, le = _step(arr), arr.dtype.newbyteorder("<")
            for s in range(0, arr.shape[0], step):
                chunk = np.ascontiguousarray(arr[s:s + step]).astype(le, copy=False)
                crc = crc32c(chunk.data, crc)
                f.write(chunk.data.cast("B"))
        f.write(_U32.pack(crc) + fmt.end_magic)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_array(f: io.BufferedReader, crc: int, arr: np.ndarray, fmt: IndexFileFormat, path: object) -> int:
    """Fill a (possibly strided) array from ``f``, a block of rows at a time; returns the CRC continued over
    the bytes as stored (before any byte swap on a big-endian host)."""
    arr = _rows_view(arr)
    step, direct = _step(arr), arr.flags.c_contiguous
    for s in range(0, arr.shape[0], step):
        chunk = arr[s:s + step] if direct else np.empty_like(arr[s:s + step], order="C")
        if f.readinto(chunk.data.cast("B")) != chunk.nbytes:
            raise fmt.error(path, "truncated body")
        crc = crc32c(chunk.data, crc)
        if chunk.dtype.itemsize > 1 and not _HOST_LE:
            chunk.byteswap(inplace=True)
        if not direct:
            arr[s:s + step] = chunk
    return crc


class IndexFileReader:
    """An index file open for ``load``: the header checked on entry (``version``, ``fields``: the kind's
    header fields); then :meth:`expect_body`, :meth:`read_array` for each body array in file order, and
    :meth:`finish` (the end marker and the body CRC)."""

    def __init__(self, path: str | os.PathLike[str], fmt: IndexFileFormat) -> None:
        self.path, self.fmt, self._crc = path, fmt, 0
        self._file: io.BufferedReader = open(path, "rb")  # closed by __exit__
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.version, self.fields = self._header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> IndexFileReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._file.close()

    def _header(self) -> tuple[int, tuple[Any, ...]]:
        fmt, path, hsize = self.fmt, self.path, self.fmt.header_size
        head = self._file.read(hsize)
        if len(head) < hsize:
            raise fmt.error(path, f"truncated header ({len(head)} of {hsize} bytes)")
        magic, version, stored_hsize = PREFIX.unpack_from(head)
        if magic != fmt.magic:
            raise fmt.error(path, f"bad magic {magic!r} (not an {fmt.label} index file)")
        if version != fmt.version and version not in fmt.older:
            raise fmt.error(path, f"unsupported format version {version}")
        if _U32.unpack_from(head, hsize - 8)[0] != crc32c(head[:hsize - 8]):
            raise fmt.error(path, "header checksum mismatch")
        if stored_hsize != hsize:
            raise fmt.error(path, "header fields out of range")
        return version, fmt.header.unpack_from(head)[3:]

    def expect_body(self, body: int) -> None:
        """The file's size is what the header says: header, ``body`` bytes, CRC and end magic."""
        expected = self.fmt.header_size + body + 8
        if self.size != expected:
            raise self.fmt.error(self.path, f"size {self.size} bytes, header describes {expected} (truncated?)")

    def read_array(self, arr: np.ndarray) -> None:
        """Fill the next body array (:func:`read_array`)."""
        self._crc = read_array(self._file, self._crc, arr, self.fmt, self.path)

    def finish(self) -> None:
        tail = self._file.read(8)
        if len(tail) != 8 or tail[4:] != self.fmt.end_magic:
            raise self.fmt.error(self.path, "missing end marker (truncated?)")
        if _U32.unpack_from(tail)[0] != self._crc:
            raise self.fmt.error(self.path, "body checksum mismatch")
