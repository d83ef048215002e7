"""A collection's log of record: its own WAL (wal.py), or, in cluster mode, its shard's external log.

:class:`LogOfRecord` is what a Collection asks of the log behind it: the last sequence it
holds, writing and waiting for durability (live writes), and checkpointing (flush). A
``WriteAheadLog`` is one. :class:`ExternalLogPosition` is the other: the collection keeps no
WAL (``StorageOptions.log_of_record = "external"``); its writes are the entries of a shard log
(``proximadb/cluster/shard_log.py``) applied in order by ``collection_apply.py``, and this
object only holds how far that application has got:

* ``last_seq``: the last log sequence applied (the memtable and segments reflect every entry
  up to it). The flush transaction checkpoints at it, so the manifest's ``checkpoint_seq``
  (manifest.py, with ``"log": "external"``) is the last applied sequence that is in segments;
  an open resumes from ``checkpoint_seq + 1``.
* ``write``: refused (:class:`~proximadb.errors.ExternalLogError`): a write goes to the shard
  log first and reaches the collection as an entry, never straight.
* ``wait_durable`` and ``checkpoint`` do nothing: the shard log holds every entry durably on a
  quorum before it is applied, and it is the log's owner that purges it.

No bytes of its own: the position lives in memory and in the manifest.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from proximadb.errors import ExternalLogError
from proximadb.storage.operations import Operation
from proximadb.storage.wal import WalStats


class LogOfRecord(Protocol):
    @property
    def last_seq(self) -> int: ...
    def write(self, op: Operation, payload: bytes | memoryview | None = None) -> int: ...
    def wait_durable(self, seq: int) -> None: ...
    def checkpoint(self, seq: int) -> list[Path]: ...
    def stats(self) -> WalStats: ...
    def close(self) -> None: ...


class ExternalLogPosition:
    """How far a collection has applied its external log (see the module docstring)."""

    def __init__(self, collection: str, applied_seq: int) -> None:
        self.collection = collection
        self._applied = applied_seq
        self._checkpointed = applied_seq
        self._changed = threading.Condition()

    @property
    def last_seq(self) -> int:
        """The last log sequence applied."""
        return self._applied

    @property
    def checkpointed_seq(self) -> int:
        """The last log sequence the segments hold (the manifest's checkpoint_seq)."""
        return self._checkpointed

    def advance(self, seq: int) -> None:
        """Entry ``seq`` has been applied (the collection lock is held)."""
        if seq <= self._applied:
            raise ValueError(f"collection {self.collection}: log entry {seq} applied after {self._applied}")
        with self._changed:
            self._applied = seq
            self._changed.notify_all()

    def wait_for(self, seq: int, timeout: float | None) -> bool:
        """Block until entry ``seq`` has been applied; False when ``timeout`` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._applied >= seq, timeout)

    def write(self, op: Operation, payload: bytes | memoryview | None = None) -> int:
        raise ExternalLogError(
            f"collection {self.collection} is written through its shard log (cluster mode): a write is appended "
            f"to the log and applied from it, not written to the collection directly"
        )

    def wait_durable(self, seq: int) -> None:
        return None  # every applied entry is durable in the shard log already

    def checkpoint(self, seq: int) -> list[Path]:
        self._checkpointed = max(self._checkpointed, seq)
        return []

    def stats(self) -> WalStats:
        return WalStats(bytes_written=0, frames_written=0, fsync_count=0, fsync_seconds=0.0, rotations=0,
                        last_seq=self._applied, durable_seq=self._applied)

    def close(self) -> None:
        with self._changed:
            self._changed.notify_all()
