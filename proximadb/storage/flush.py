"""Flush: seal a Collection's memtable into a segment and move the WAL checkpoint, without making
writes wait (but in a write stall, below).

Three steps; only the first and the last hold the collection lock, briefly:

1. **seal** (lock held): the memtable joins ``Collection.sealed``, a new empty
   memtable takes the writes, and the job is fixed at the WAL position of that
   moment (sealed.py: the rows to write, the deletion masks to persist, a new
   segment id);
2. **write** (no lock): the sealed rows are sorted by id and written as a new
   segment (PENDING until the manifest naming it is durable), and the changed
   deletion bitmaps as of the seal; reads see the sealed rows meanwhile, and
   writes (deletes and upserts of sealed rows too) go on;
3. **install** (lock held): deletions of sealed rows since the seal are carried
   to the new segment, the manifest naming it with the seal's checkpoint is
   saved (the commit point) and the sealed memtables leave the read path in the
   same step. Then, without the lock, the WAL below the checkpoint is dropped,
   PENDING is settled and the segment's index build is scheduled.

One flush at a time per collection (``_flush_mutex``). A write that fills the
memtable starts the flush in a background thread and returns; an explicit
:meth:`Collection.flush` runs it in the caller's thread (after a background
flush in progress) and returns once it is installed. A compaction waits for a
flush in progress before its own commit (compaction.py).

A failure before the commit point (ENOSPC above all) changes nothing: what was
written is removed at once, the sealed memtables keep their rows (still read,
still in the WAL), and an error is logged ("disk full while flushing collection
X: N records stay in the WAL/memtable ..."). A flush triggered by a write never
fails that write (it is logged and applied already); it is retried by a later
write, at most every ``FLUSH_RETRY_SECONDS`` and only once the free space could
hold the segment's vector block, or at once by :meth:`Collection.flush`, which
raises DiskFullError. Failures after the commit point (WAL checkpoint, removing
old files) are logged, not raised: the flush happened. A kill -9 at any moment
loses nothing acknowledged: until the commit point the checkpoint has not moved
and WAL replay restores the sealed rows.

**Write stalls.** One flush runs at a time, and the memtable that takes the writes meanwhile can fill
faster than the flush writes its segment. When it holds ``WRITE_STALL_FACTOR`` (4) times ``flush_bytes``
while a flush is in progress, an insert waits for that flush to install (under its request's deadline:
RequestTimeoutError, nothing changed, when it passes) and then starts the next flush itself; the stall
is logged once however many inserts wait in it (``writes to collection X wait for a flush``), and each
waiting insert is counted (``Collection.write_stalls``). So memory stays bounded (the memtable and the
one being flushed) however fast the writes come. Deletes, metadata updates and a cluster replica's log
entries never wait. A waiting insert holds its request's slot (``max_concurrent_requests``) meanwhile.

``flush_hook`` (a Collection attribute, for tests) is called with ``"written"``
once the segment and bitmaps are on disk and before the install, without the
lock, so a test can hold a flush there deterministically.

The segment replacement itself is the shared transaction of segment_rewrite.py.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass

from proximadb import deadline
from proximadb.errors import (
    DiskFullError,
    EngineClosedError,
    StorageError,
)
from proximadb.storage import sealed as sealed_mod
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.log_of_record import LogOfRecord
from proximadb.storage.sealed import FlushJob
from proximadb.storage.segment import Segment
from proximadb.storage.segment_rewrite import SegmentRewrite

log = logging.getLogger("proximadb.collection")


FLUSH_RETRY_SECONDS = 1.0  # a write retries a failed flush no sooner than this
FLUSH_LOG_SECONDS = 30.0  # while flushes keep failing, the error is logged at most this often
# A write waits (a write stall) while the memtable holds this many times flush_bytes and a flush is in
# progress: writes that outrun flushes cannot grow the memtable without bound. 4 is the memtable's reserve
# (collection.py's MEMTABLE_RESERVE_FACTOR): up to it, writes during a flush never copy the memtable.
WRITE_STALL_FACTOR = 4


@dataclass(slots=True)
class FlushRetry:
    """Automatic flushes that keep failing (disk full): when a write may try again, what was logged."""

    failures: int = 0  # consecutive failed attempts
    retry_at: float = 0.0  # time.monotonic() before which a write does not try again
    logged_at: float = float("-inf")


def is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError) or (isinstance(seen, OSError) and seen.errno == errno.ENOSPC):
            return True
        seen = seen.__cause__ or seen.__context__
    return False



class FlushPath(CollectionState):
    """Automatic and explicit flushes of a Collection and their retry / logging policy."""

    def _maybe_flush(self) -> None:
        """(Collection lock held.) Start a background flush when the memtable is full, or when sealed rows
        wait for a failed flush's retry. Never raises and never waits: the write that called it goes on."""
        if self._closing or self._flushing or (self._flush_thread is not None and self._flush_thread.is_alive()):
            return
        if not self._flush_due():
            return
        if time.monotonic() < self._flush_retry.retry_at:
            return  # a flush failed a moment ago; a later write tries again
        thread = threading.Thread(target=self._background_flush, name=f"flush-{self.config.name}", daemon=True)
        self._flush_thread = thread
        thread.start()

    def _stall_for_flush(self) -> None:
        """(Collection lock held, by a request.) Wait while the memtable holds WRITE_STALL_FACTOR x flush_bytes
        and a flush is in progress (the module's documentation); the request's deadline bounds the wait."""
        limit = WRITE_STALL_FACTOR * self.options.flush_bytes
        if not self._flushing or self.memtable.approx_bytes < limit:
            return
        self.write_stalls += 1
        first = self._stalled_writers == 0  # one warning per stall, however many writers wait in it
        self._stalled_writers += 1
        started = time.monotonic()
        if first:
            log.warning("writes to collection %s wait for a flush: the memtable holds %d MiB (%d x flush_bytes) "
                        "while the previous flush is still writing its segment (the disk is slower than the writes)",
                        self.config.name, self.memtable.approx_bytes >> 20, WRITE_STALL_FACTOR)
        try:
            while self._flushing and self.memtable.approx_bytes >= limit:
                deadline.check(f"waiting for a flush of collection {self.config.name!r} (a write stall)")
                self._flush_done.wait(deadline.wait_seconds(1.0))
        finally:
            self._stalled_writers -= 1
            if self._stalled_writers == 0:
                log.info("collection %s: the write stall ended after %.2fs (%d insert(s) waited so far)",
                         self.config.name, time.monotonic() - started, self.write_stalls)

    def _flush_due(self) -> bool:
        """The memtable is full, or sealed rows wait for a failed flush's retry."""
        return self.memtable.approx_bytes >= self.options.flush_bytes or bool(self.sealed)

    def _background_flush(self) -> None:
        try:
            self._flush_now(only_if_due=True)
        except EngineClosedError:
            pass
        except Exception as exc:
            with self._lock:
                self._flush_failed(exc, explicit=False)

    def wait_for_flush(self, timeout: float | None = None) -> bool:
        """Block until a background flush in progress has finished; False on timeout."""
        thread = self._flush_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _unflushed_rows(self) -> int:
        """Live rows not in a segment yet: the memtable's and the sealed memtables'."""
        return self.memtable.live_count + sum(m.live_count for m in self.sealed)

    def _free_bytes(self) -> int | None:
        """Free space for new segments (None: unknown)."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize

    def _check_flush_space(self) -> None:
        """Refuse a flush that cannot fit: less free space than the segment's vector block alone."""
        need = self._unflushed_rows() * self.dim * 4
        free = self._free_bytes()
        if free is not None and free < need:
            raise OSError(errno.ENOSPC, f"No space left on device: {free} bytes free, the segment needs more "
                                        f"than {need}; nothing was written")

    def _flush_failed(self, exc: BaseException, *, explicit: bool) -> None:
        """Note and log a failed flush (repeats of automatic ones at most every FLUSH_LOG_SECONDS)."""
        retry = self._flush_retry
        now = time.monotonic()
        retry.failures += 1
        retry.retry_at = now + FLUSH_RETRY_SECONDS
        self.last_flush_error = str(exc)
        if not explicit and now - retry.logged_at < FLUSH_LOG_SECONDS:
            return
        retry.logged_at = now
        how = f"the flush is retried by a later write (at most every {FLUSH_RETRY_SECONDS:g}s) or by an explicit flush"
        if is_disk_full(exc):
            log.error("disk full while flushing collection %s: %d records stay in the WAL/memtable (nothing is "
                      "lost; %d failed attempt(s)); free space, %s: %s", self.config.name,
                      self._unflushed_rows(), retry.failures, how, exc)
        else:
            log.error("flush of collection %s failed: %d records stay in the WAL/memtable (nothing is lost; %d "
                      "failed attempt(s)); %s: %s", self.config.name, self._unflushed_rows(), retry.failures,
                      how, exc, exc_info=exc)

    def _seal(self) -> FlushJob:
        """(Collection lock held.) Seal the memtable: a new one takes the writes; the job is fixed here."""
        wal = self._require_open()
        self._check_flush_space()
        if self.memtable.rows:
            fresh = self._new_memtable()  # first: if it cannot be made, nothing has changed
            self.sealed.append(self.memtable)
            self.memtable = fresh
        job = sealed_mod.seal(self.sealed, self.segments, wal.last_seq)
        if job.row_count:
            job.segment_id = self.manifest.next_segment_id  # never reused, even when this flush fails
            self.manifest.next_segment_id += 1
        return job

    def _flush_now(self, *, only_if_due: bool = False) -> None:
        """Seal under the lock, write the segment and bitmaps without it, install under it. One flush at a
        time per collection; raises on failure (nothing is lost: the sealed rows stay readable and in the WAL).
        ``only_if_due``: nothing when an explicit flush did the work meanwhile (a background flush)."""
        with self._flush_mutex:
            with self._lock:
                if only_if_due and not self._flush_due():
                    return
                job = self._seal()
                self._flushing = True
            try:
                self._write_and_install(job)
            finally:
                with self._lock:
                    self._flushing = False
                    self._flush_done.notify_all()

    def _write_and_install(self, job: FlushJob) -> None:
        """Write ``job`` (without the collection lock), then commit and swap it in (see the module docstring)."""
        started = time.monotonic()
        wal = self._require_open()
        # A failure before the commit point leaves the manifest on disk naming the old state: the rewrite
        # removes what it wrote (its space is needed); sealed memtables and WAL stay as they are.
        with SegmentRewrite(self, "flush") as rewrite:
            gathered = None
            if job.segment_id is not None:
                gathered = sealed_mod.gather(job, self.dim)
                rewrite.build(job.segment_id, gathered.data,
                              {"created_at": time.time(), "max_seq": job.seq, "metric": self.config.distance_metric})
            for seg, mask in job.bitmaps:
                if seg in job.keep:
                    rewrite.write_deletions(seg, mask)
            if self.flush_hook is not None:
                self.flush_hook("written")
            with self._lock:
                if gathered is not None:
                    sealed_mod.carry_deletions(job, gathered, rewrite.built[0])
                current = [s for s in self.segments if s not in job.dropped]
                rewrite.commit(current + rewrite.built, job.dropped, checkpoint_seq=job.seq,
                               not_durable="the WAL and the old files are kept until a later flush succeeds")
                self.sealed = [m for m in self.sealed if all(m is not s for s in job.sealed)]
                self.last_flush_error = None
                if self._flush_retry.failures:
                    log.info("collection %s: flush succeeded after %d failed attempt(s)", self.config.name,
                             self._flush_retry.failures)
                    self._flush_retry = FlushRetry()
        if rewrite.durable:
            self._after_flush_cleanup(wal, job.seq, job.keep)
        rewrite.finish()
        with self._lock:
            self._maybe_compact_in_background()
        log.info(
            "collection %s: flushed %d rows into segment(s) %s at seq %d in %.2fs; %d live segment(s)",
            self.config.name, job.row_count, [s.id for s in rewrite.built] or "none", job.seq,
            time.monotonic() - started, len(self.segments),
        )

    def _after_flush_cleanup(self, wal: LogOfRecord, seq: int, keep: list[Segment]) -> None:
        """After a durable manifest swap: drop covered WAL files and old bitmaps. Failures are logged, not raised."""
        try:
            wal.checkpoint(seq)
        except (OSError, StorageError) as exc:
            log.warning("collection %s: flushed, but the WAL checkpoint at seq %d failed (%s); the WAL keeps "
                        "frames that are in segments already until a later flush checkpoints it",
                        self.config.name, seq, exc)
        for seg in keep:
            try:
                seg.remove_stale_bitmaps()
            except OSError as exc:
                log.warning("collection %s: cannot remove old deletion bitmaps of %s: %s", self.config.name,
                            seg.path, exc)
