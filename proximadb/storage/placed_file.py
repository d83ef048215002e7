"""A new file written piece by piece at known offsets, for files whose head is known only at the end.

A segment's ``ids.bin`` and ``meta.rows`` start with a header and an offset column that depend
on every row, followed by a blob written a chunk at a time (segment_writer.py). The blob's
start is fixed by the row count, so each chunk is written at its place (``pwrite``) as it
comes, and the head last; the file's CRC32C is then computed by reading it back (its pages are
in the page cache: cheap), since a running CRC would need the head first. This module owns no
byte format: each user documents its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from proximadb.storage.wal_io import crc32c

_CHUNK = 8 << 20
# Bytes written between two fdatasyncs. A segment's files are hundreds of MiB; left to the kernel, their
# dirty pages pile up and the final fsync writes them in one burst, which the WAL's fdatasync then waits
# behind (ext4 orders data before the journal commit both need): insert batches stalled for a second.
_WRITEBACK = 32 << 20


class PlacedFile:
    """A new file (``O_EXCL``: never an existing one) written with :meth:`write_at`; removed by
    :meth:`abort` (a partial file only holds space)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._unsynced = 0

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(self._fd, view[:_CHUNK], offset)
            view = view[n:]
            offset += n
            self._unsynced += n
            if self._unsynced >= _WRITEBACK:
                os.fdatasync(self._fd)
                self._unsynced = 0

    def close(self, *, fsync: bool = True) -> None:
        """fsync (when asked) and close; the file stays."""
        if self._fd < 0:
            return
        try:
            if fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def abort(self) -> None:
        """Close without fsync and remove the file. Never raises."""
        try:
            self.close(fsync=False)
        except OSError:
            pass
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def crc_of(path: Path, start: int = 0) -> tuple[int, int]:
    """(size, CRC32C) of ``path``'s bytes from ``start`` to its end."""
    crc = 0
    size = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            crc = crc32c(view[:n], crc)
            size += n
    return size, crc
