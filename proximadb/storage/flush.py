"""Flush: seal a Collection's memtable into a segment and move the WAL checkpoint.

Write the memtable as a new segment, the changed deletion bitmaps, then
the manifest (the commit point), then checkpoint the WAL. A failure before the
commit point (ENOSPC above all) changes nothing: what was written is removed at
once, the memtable keeps its rows and the WAL keeps its frames, and an error
is logged ("disk full while flushing collection X: N records stay in the
WAL/memtable ..."). A flush triggered by a write never fails that write (it is
logged and applied already); it is retried by a later write, at most every
``FLUSH_RETRY_SECONDS`` and only once the free space could hold the segment's
vector block, or at once by :meth:`Collection.flush`, which raises
DiskFullError. Failures after the commit point (WAL checkpoint, removing old
files) are logged, not raised: the flush happened.

The segment replacement itself is the shared transaction of segment_rewrite.py.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass

from proximadb.errors import (
    DiskFullError,
    StorageError,
)
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.log_of_record import LogOfRecord
from proximadb.storage.segment import Segment, SegmentData
from proximadb.storage.segment_rewrite import SegmentRewrite

log = logging.getLogger("proximadb.collection")


FLUSH_RETRY_SECONDS = 1.0  # a write retries a failed flush no sooner than this
FLUSH_LOG_SECONDS = 30.0  # while flushes keep failing, the error is logged at most this often


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
        """Flush when the memtable is full. Never raises: the write that called it is logged and applied."""
        if self.memtable.approx_bytes < self.options.flush_bytes:
            return
        if time.monotonic() < self._flush_retry.retry_at:
            return  # a flush failed a moment ago; a later write tries again
        try:
            self._check_flush_space()
            self._flush_locked()
        except Exception as exc:
            self._flush_failed(exc, explicit=False)


    def _free_bytes(self) -> int | None:
        """Free space for new segments (None: unknown)."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize

    def _check_flush_space(self) -> None:
        """Refuse a flush that cannot fit: less free space than the segment's vector block alone."""
        need = self.memtable.live_count * self.dim * 4
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
                      self.memtable.live_count, retry.failures, how, exc)
        else:
            log.error("flush of collection %s failed: %d records stay in the WAL/memtable (nothing is lost; %d "
                      "failed attempt(s)); %s: %s", self.config.name, self.memtable.live_count, retry.failures,
                      how, exc, exc_info=exc)

    def _flush_locked(self) -> None:
        """Write the memtable as a segment and swap the manifest (see the module docstring on failures)."""
        started = time.monotonic()
        wal = self._require_open()
        seq = wal.last_seq
        rows = self.memtable.live_rows()
        keep = [s for s in self.segments if s.live_count > 0]
        dropped = [s for s in self.segments if s.live_count == 0]
        # A failure before the commit point leaves the manifest on disk naming the old state: the rewrite
        # removes what it wrote (its space is needed); memtable and WAL stay as they are.
        with SegmentRewrite(self, "flush") as rewrite:
            if len(rows):
                ids, vectors, metadata, timestamps = self.memtable.columns(rows)
                rewrite.build(
                    rewrite.reserve_id(),  # never reused, even when this flush fails
                    SegmentData(ids, vectors, metadata, timestamps, self.memtable.expires_columns(rows)),
                    {"created_at": time.time(), "max_seq": seq, "metric": self.config.distance_metric},
                )
            for seg in keep:
                rewrite.write_deletions(seg)
            rewrite.commit(keep + rewrite.built, dropped, checkpoint_seq=seq,
                           not_durable="the WAL and the old files are kept until a later flush succeeds")
        new_segments = rewrite.built
        self.memtable = self._new_memtable()
        if rewrite.durable:
            self._after_flush_cleanup(wal, seq, keep)
        rewrite.finish()
        self._maybe_compact_in_background()
        self.last_flush_error = None
        if self._flush_retry.failures:
            log.info("collection %s: flush succeeded after %d failed attempt(s)", self.config.name,
                     self._flush_retry.failures)
            self._flush_retry = FlushRetry()
        log.info(
            "collection %s: flushed %d rows into segment(s) %s at seq %d in %.2fs; %d live segment(s)",
            self.config.name, len(rows), [s.id for s in new_segments] or "none", seq,
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
