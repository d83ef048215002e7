"""A replica applies its shard's log into its local collection: :class:`ShardApplier`.

One thread per (shard log, collection). It reads the log from the collection's applied
sequence + 1 in batches (``batch`` entries), applies each entry in order with
``Collection.apply_log_entry`` (proximadb/storage/collection_apply.py: the same operation-apply
step WAL replay uses; entries at or below the applied sequence are skipped), and checkpoints:
every ``checkpoint_entries`` applied entries or ``checkpoint_seconds`` with unflushed entries it
flushes the collection, which records the applied sequence in the manifest (``checkpoint_seq``
with ``"log": "external"``, manifest.py). A restarted replica (or one killed with SIGKILL)
opens the collection at that checkpoint and this thread re-applies everything after it.

``applied_seq`` is how far the collection has got; ``wait_for(seq, timeout)`` blocks until
entry ``seq`` is applied (strong and session reads wait on it), and wakes a caught-up applier so it
reads the log at once instead of after its idle poll (a strong read waits for the barrier it just
appended, :mod:`proximadb.cluster.log_positions`). ``stop()`` finishes the
entry being applied, checkpoints (unless told not to) and joins the thread.

Failures: a log that does not answer (:class:`~proximadb.errors.LogUnavailableError`, after
the log's own retries) is retried after a pause, indefinitely: a replica waits out an outage.
Entries the replica no longer finds because the log was purged below its position stop the
applier with :class:`~proximadb.errors.SnapshotRequiredError`: the node then installs a peer's
snapshot (proximadb/cluster/snapshot.py) and starts a new applier from it. A log that was deleted
(its collection dropped) stops it quietly. A checkpoint that fails (disk full) is logged and tried again at the
next one; a collection closed under it stops it quietly. Any other failure stops it; ``error``
holds it, and ``wait_for`` raises it rather than wait for entries that will not come.
"""

from __future__ import annotations

import logging
import threading
import time

from proximadb.cluster.shard_log import LogDeletedError, LogPurgedError, ShardLog
from proximadb.errors import (
    CollectionNotFoundError,
    EngineClosedError,
    LogUnavailableError,
    SnapshotRequiredError,
    StorageError,
)
from proximadb.storage.collection import Collection

log = logging.getLogger("proximadb.cluster")

IDLE_POLL_SECONDS = 0.05  # a replica that has caught up asks the log again this often
UNAVAILABLE_PAUSE_SECONDS = 1.0


class ShardApplier:
    """Applies ``shard_log`` into ``collection`` (opened with log_of_record="external") in a thread."""

    def __init__(self, shard_log: ShardLog, collection: Collection, batch: int = 1000, *,
                 checkpoint_entries: int = 10_000, checkpoint_seconds: float = 5.0,
                 idle_poll: float = IDLE_POLL_SECONDS) -> None:
        if batch < 1 or checkpoint_entries < 1 or checkpoint_seconds <= 0:
            raise ValueError("batch and checkpoint_entries must be at least 1, checkpoint_seconds above 0")
        self.log = shard_log
        self.collection = collection
        self.batch = batch
        self.checkpoint_entries = checkpoint_entries
        self.checkpoint_seconds = checkpoint_seconds
        self.idle_poll = idle_poll
        self.position = collection.external_position()  # ExternalLogError unless the collection applies a log
        self.error: BaseException | None = None
        self.applied_entries = 0  # applied (or refused) by this applier, skipped ones not counted
        self.log_unavailable = 0  # reads the log did not answer (each after the log's own retries)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by a reader waiting for an entry not applied yet: read the log now
        self._thread = threading.Thread(target=self._run, name=f"applier-{collection.config.name}", daemon=True)

    def start(self) -> ShardApplier:
        self._thread.start()
        return self

    @property
    def applied_seq(self) -> int:
        return self.position.last_seq

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, seq: int, timeout: float | None = None) -> bool:
        """True once entry ``seq`` is applied; False after ``timeout`` seconds. Raises the applier's error
        when it has stopped on one (it would never get there)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.position.last_seq >= seq:
                return True
            self._wake.set()  # a caught-up applier reads the log again at once, not after its idle poll
            if self.error is not None:
                raise self.error
            if not self._thread.is_alive() and self._stop.is_set():
                return False
            left = 0.2 if end is None else min(0.2, end - time.monotonic())
            if left <= 0:
                return False
            self.position.wait_for(seq, left)

    def stop(self, *, checkpoint: bool = True, timeout: float = 60.0) -> None:
        """Stop after the entry being applied; then flush the collection (``checkpoint``) so a restart resumes here."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if checkpoint and self.error is None:
            self._checkpoint()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        last_checkpoint = time.monotonic()
        since_checkpoint = 0
        try:
            while not self._stop.is_set():
                try:
                    entries = self.log.read(self.position.last_seq + 1, self.batch)
                except LogUnavailableError as exc:
                    self.log_unavailable += 1
                    log.warning("applier %s: the shard log did not answer (%s); retrying",
                                self.collection.config.name, exc)
                    self._stop.wait(UNAVAILABLE_PAUSE_SECONDS)
                    continue
                for entry in entries:
                    if self._stop.is_set():
                        break
                    outcome = self.collection.apply_log_entry(entry.seq, entry.payload, entry.time_us)
                    if outcome.outcome != "skipped":
                        self.applied_entries += 1
                        since_checkpoint += 1
                due = time.monotonic() - last_checkpoint >= self.checkpoint_seconds
                if since_checkpoint >= self.checkpoint_entries or (since_checkpoint and due):
                    self._checkpoint()
                    since_checkpoint, last_checkpoint = 0, time.monotonic()
                if not entries:
                    self._wake.wait(self.idle_poll)
                self._wake.clear()
        except EngineClosedError:
            log.info("applier %s: the collection was closed; stopped at applied sequence %d",
                     self.collection.config.name, self.position.last_seq)
        except LogPurgedError as exc:
            self.error = SnapshotRequiredError(
                f"collection {self.collection.config.name}: this replica has applied the shard log up to "
                f"{self.position.last_seq}, but the log no longer holds the entries after it ({exc}): the replica "
                f"must be bootstrapped from a peer's snapshot; the applier stopped"
            )
            log.info("%s", self.error)
        except LogDeletedError as exc:
            self.error = CollectionNotFoundError(f"collection {self.collection.config.name}: {exc}")
            log.info("applier %s stopped: %s", self.collection.config.name, exc)
        except BaseException as exc:
            self.error = exc
            log.exception("applier %s stopped at applied sequence %d", self.collection.config.name,
                          self.position.last_seq)

    def _checkpoint(self) -> None:
        """Flush, when entries were applied since the manifest's checkpoint: the manifest records the position.

        A flush that fails (disk full) loses nothing: the entries stay in the memtable and in the log, a
        restart applies them again; it is logged by the collection and tried at the next checkpoint."""
        if self.position.last_seq <= self.position.checkpointed_seq:
            return
        try:
            self.collection.flush()
        except EngineClosedError:
            return  # closed under us: its close flushed (or the entries are applied again at the next open)
        except StorageError as exc:
            log.warning("applier %s: checkpoint at %d failed (%s); the entries after %d stay in the memtable and "
                        "the log, the next checkpoint tries again", self.collection.config.name,
                        self.position.last_seq, exc, self.position.checkpointed_seq)
