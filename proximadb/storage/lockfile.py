"""One process owns a data directory: an exclusive flock on ``<data dir>/LOCK``.

The lock file holds the owner's pid as text, for the error message of the
process that is refused. flock locks die with their process, so a kill -9
never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from proximadb.errors import DataDirLockedError, storage_error_from_os

LOCK_NAME = "LOCK"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the data directory if needed and lock it; any failure is one line naming the file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error_from_os(exc, f"cannot create data directory {self.path.parent}",
                                        None if exc.errno in (errno.EROFS, errno.ENOSPC) else
                                        "create it by hand or choose another data directory") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error_from_os(exc, f"cannot lock data directory {self.path.parent}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise DataDirLockedError(
                f"data directory {self.path.parent} is in use by process {owner} (lock {self.path}); "
                "stop that process or choose another data directory"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise storage_error_from_os(exc, f"cannot lock data directory {self.path.parent}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
