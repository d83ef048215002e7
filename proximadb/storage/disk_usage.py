"""How many bytes a directory's files hold: the one measure of a segment's, a WAL's or a collection's
size in reports (stats' ``wal_bytes``, compaction's and migration's ``bytes_before``/``bytes_after``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def directory_bytes(directory: Path) -> int:
    """The bytes of the regular files directly in ``directory`` now: 0 for a directory that is not there, and
    a file removed while it is read (a background index build's temporary file, renamed or removed) counts
    as nothing instead of failing the report."""
    total = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
