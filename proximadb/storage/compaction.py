"""Compaction: merge segments into one, dropping deleted and superseded rows.

Correctness rests on one rule: what the manifest names must be the state *at
the WAL checkpoint*, because recovery replays the log from there. So the
merged segment is built from the rows that were live in the inputs'
*persisted* deletion bitmaps (the checkpoint state), never from the newer
in-memory deletions. At the swap, under the collection lock:

* rows deleted in an input's persisted bitmap *now* (a flush may have moved
  the checkpoint on during the merge) become generation 1 of the new
  segment's bitmap, written before the manifest;
* rows deleted only in memory since (deletes, upserts, metadata updates after
  the checkpoint) are marked in the new segment's in-memory bitmap, to be
  persisted by the next flush, exactly as for any other segment.

The manifest swap (write, fsync, rename, fsync dir) is the commit point: a
kill -9 before it leaves the old segments (the new directory, a ``.tmp`` or
still carrying its PENDING marker, is removed on open: integrity.py), after
it the new one; the input directories are deleted only after the swap, and
the new manifest lists them as ``retired`` so that an open finishes their
removal. The merge itself runs without the lock, so reads and writes go on;
only the swap holds it, briefly. A flush that is writing its segment outside
the lock (flush.py) commits first: the swap waits for it, so the deletions a
flush persists as of its seal are always in the inputs' persisted bitmaps that
the merged segment's generation 1 is made from.

A failure before the swap (ENOSPC while writing the merged segment, its
bitmap or the manifest) leaves the inputs untouched and removes the partial
output at once, not only on the next open; ``Collection.compact`` raises
DiskFullError for ENOSPC. The background compaction after a flush is skipped
while the free space could not even hold the merged vectors, logs a failure
and is tried again after a later flush.

Rows expired at the planning time are dropped like deleted ones (merge.py's ``merge_rows``;
expiry.py), and the background policy counts them as dead.

The merge streams (merge.py, segment_writer.py): the inputs are read in place and the new
segment is written a chunk of ``StorageOptions.rewrite_chunk_rows`` rows at a time, so a
compaction's memory is bounded by that setting (plus 12 bytes a row of row mapping and the
payload index being built), not by the size of the segments merged.

The build, carry, commit, swap and rollback are the shared segment rewrite
(segment_rewrite.py) that flush and migration use too; this module plans the
merge (merge.py: ``MergePlan``, ``merge_rows``; :func:`carry_deletions` here), holds
the background policy and, in :class:`CompactionPath`, Collection's compaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proximadb import progress
from proximadb.errors import DiskFullError, EngineClosedError
from proximadb.index._hnsw_grow import GrowthCancelled
from proximadb.storage import expiry, segment_index
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.disk_usage import directory_bytes
from proximadb.storage.merge import MergedRows, MergePlan, kept_rows, merge_rows

__all__ = ["MergePlan", "MergedRows", "carry_deletions", "kept_rows", "merge_rows", "needs_compaction"]
from proximadb.storage.segment import Segment
from proximadb.storage.segment_rewrite import SegmentRewrite

log = logging.getLogger("proximadb.collection")  # compaction runs are logged as the collection's own steps

# Background policy: compact when a segment has this share of dead rows, or
# when this many segments are each smaller than a quarter of the flush size, or
# when GROW_SEGMENTS segments besides the largest are below GROW_MAX_BYTES of vectors
# and hold together at least GROW_SHARE of the largest's rows, and the largest's graph
# can grow (segment_index.can_grow): they are merged into it, its graph growing by their
# rows (segment_index.grow), so a large collection is searched through a few large
# graphs, not dozens of flush-sized ones (issue #11); each row is inserted into a graph
# about twice in all, and the largest's files are rewritten at most once per GROW_SHARE
# of its size added. Where no graph can grow (IVF, quantized HNSW, a largest segment
# with deleted rows), segments are not merged by size.
DEAD_ROW_SHARE = 0.2
SMALL_SEGMENTS = 4
GROW_SEGMENTS = 4
GROW_MAX_BYTES = 8 << 30  # a segment with more vector bytes is not merged by size any more
GROW_SHARE = 0.25
GROW_SEED_SHARE = 0.5  # the graph grown: of a segment at least this share of the largest's rows


@dataclass(slots=True)
class CompactionReport:
    collection: str
    segments_before: int = 0
    segments_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    merged: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def needs_compaction(segments: list[Segment], flush_bytes: int,
                     can_grow: Callable[[Segment], bool] | None = None) -> list[Segment]:
    """The segments the background policy would merge now (empty: nothing to do). Expired rows count as dead.
    ``can_grow(segment)``: whether a merge could grow that segment's graph (None: merge none by size)."""
    now = expiry.now_us()
    dead = [s for s in segments
            if s.rows and 1 - int(np.count_nonzero(kept_rows(s, s.deleted, now))) / s.rows >= DEAD_ROW_SHARE]
    small = [s for s in segments if s.rows * s.dim * 4 < flush_bytes // 4]
    if len(small) >= SMALL_SEGMENTS:
        return sorted({*dead, *small}, key=lambda s: s.id)
    if dead:
        return sorted({*dead, *small}, key=lambda s: s.id) if len(dead) + len(small) > 1 else dead
    growable = [s for s in segments if s.rows * s.dim * 4 < GROW_MAX_BYTES]
    if can_grow is None or len(growable) <= GROW_SEGMENTS:
        return []
    # The seed: the largest segment whose graph can grow, if it is not much smaller than the largest
    # (segments of about one flush each differ by a few rows, and the largest may be the newest, its graph
    # not built yet; a big segment that lost a row is not re-inserted into a small one's graph).
    largest = max(s.rows for s in growable)
    seed = next((s for s in sorted(growable, key=lambda s: -s.rows)
                 if s.rows >= GROW_SEED_SHARE * largest and can_grow(s)), None)
    if seed is None or sum(s.rows for s in growable) - seed.rows < GROW_SHARE * seed.rows:
        return []
    return sorted(growable, key=lambda s: s.id)


def carry_deletions(plan: MergePlan, merged: MergedRows, new: Segment, dropped: list[int]) -> np.ndarray:
    """Mark on ``new`` what was deleted in the inputs since planning; return the persisted part (for gen 1).

    ``dropped``: inputs a flush removed meanwhile because no row was live; the
    manifest of that flush no longer names them, so all their rows count as
    persisted deletions.
    """
    persisted_now = np.zeros(new.rows, dtype=np.uint8)
    for i, seg in enumerate(plan.inputs):
        pick = merged.source_segment == i
        rows_new = np.flatnonzero(pick)
        rows_old = merged.source_row[pick]
        persisted_now[rows_new] = 1 if i in dropped else seg.persisted_deleted[rows_old]
        for r_new in rows_new[seg.deleted[rows_old] != 0]:
            new.delete_row(int(r_new))
    return persisted_now


class CompactionPath(CollectionState):
    """Compaction of a Collection's segments (public entry: Collection.compact) and the background policy."""

    def _compact(self, segment_ids: Sequence[int] | None) -> CompactionReport:
        started = time.monotonic()
        report = CompactionReport(self.config.name)
        with self._lock:
            self._require_open()
            inputs = [s for s in self.segments if segment_ids is None or s.id in segment_ids]
            report.segments_before = len(self.segments)
            now = expiry.now_us()
            if not inputs or (len(inputs) == 1 and not inputs[0].dirty
                              and bool(kept_rows(inputs[0], inputs[0].persisted_deleted, now).all())):
                report.segments_after = len(self.segments)  # nothing to merge: the input is left as it is
                report.rows_before = report.rows_after = sum(s.rows for s in inputs)
                report.bytes_before = report.bytes_after = sum(directory_bytes(s.path) for s in inputs)
                return report
            rewrite = SegmentRewrite(self, "compaction")
            plan = MergePlan(inputs, [s.persisted_deleted.copy() for s in inputs], rewrite.reserve_id(), now)
        report.merged = [s.id for s in inputs]
        report.rows_before = sum(s.rows for s in inputs)
        report.bytes_before = sum(directory_bytes(s.path) for s in inputs)
        log.info("collection %s: compacting segments %s (%d rows)", self.config.name, report.merged,
                 report.rows_before)
        with progress.track("compaction", self.config.name, total=report.rows_before) as task:
            merged = merge_rows(plan, task.update, self.options.rewrite_chunk_rows)
            with rewrite:
                new = None
                if merged.rows:
                    new = rewrite.build(plan.segment_id, merged.stream(),
                                        {"created_at": time.time(), "compacted_from": report.merged,
                                         "metric": self.config.distance_metric})
                    self._grow_index(new, inputs, merged)
                with self._lock:
                    while self._flushing:  # a flush between its seal and its install: let it commit first
                        self._flush_done.wait()
                    if self.wal is None:
                        raise EngineClosedError(f"collection {self.config.name} closed during compaction")
                    if new is not None:
                        dropped = [i for i, seg in enumerate(inputs) if seg not in self.segments]
                        persisted_now = carry_deletions(plan, merged, new, dropped)
                        if persisted_now.any():
                            rewrite.write_deletions(new, persisted_now)
                    remaining = [s for s in self.segments if s not in inputs]
                    rewrite.commit(remaining + ([new] if new is not None else []), inputs,
                                   not_durable="the compacted segments' files stay until the next open")
        rewrite.finish()
        report.segments_after = len(self.segments)
        report.rows_after = new.rows if new is not None else 0
        report.bytes_after = directory_bytes(new.path) if new is not None else 0
        report.seconds = round(time.monotonic() - started, 3)
        log.info("collection %s: compaction done in %.1fs: %d segment(s) -> %d, %d rows -> %d, %d bytes -> %d",
                 self.config.name, report.seconds, report.segments_before, report.segments_after,
                 report.rows_before, report.rows_after, report.bytes_before, report.bytes_after)
        return report

    def _grow_index(self, new: Segment, inputs: list[Segment], merged: MergedRows) -> None:
        """Before the commit: the merged segment's graph grown from its largest input's, saved and
        attached (segment_index.growth_seed); when none can grow, or growing fails, the segment is
        indexed after the commit as a flush's is."""
        algorithm = self.config.indexing_algorithm
        if algorithm == "flat" or self._closing:
            return
        try:
            params = segment_index.effective_params(algorithm, self.config.index_params, new.rows)
            seed = segment_index.growth_seed(inputs, merged.source_segment, merged.source_row, algorithm, params)
            if seed is None:
                return
            index = segment_index.grow(new, seed, params, cancelled=lambda: self._closing)
            segment_index.save(index, new, algorithm)
        except GrowthCancelled:
            log.info("collection %s: growing the merged segment %s's graph stopped: the collection is closing; "
                     "the segment is indexed on the next open", self.config.name, new.path.name)
            return
        except Exception:  # growing is an optimisation: never the reason a compaction fails
            log.exception("collection %s: the merged segment %s's graph could not be grown and saved; it is "
                          "built after the compaction instead", self.config.name, new.path.name)
            return
        new.attach_index(index, algorithm)

    def _ask_compaction_policy(self) -> None:
        """(Index builder thread, after a build; background compaction thread, after a merge.) Ask the
        policy again: a merge by size waits for a graph that can grow, and for the compaction before it
        to end, while every flush of an ingest faster than the builds may have come before both (the 10M
        benchmark ended with 13 segments of one flush each beside a grown one that no flush looked at)."""
        if not self._lock.acquire(timeout=1.0):
            return  # busy: the next flush, build or merge asks again
        try:
            self._maybe_compact_in_background()
        finally:
            self._lock.release()

    def _maybe_compact_in_background(self) -> None:
        """After a flush (and _ask_compaction_policy): start a background compaction when the policy asks
        for one. (Collection lock held.)"""
        if self._closing or not self.options.auto_compact:
            return
        running = self._background
        if running is not None and running.is_alive() and running is not threading.current_thread():
            return
        algorithm = self.config.indexing_algorithm
        params = segment_index.effective_params(algorithm, self.config.index_params, 0) if algorithm != "flat" else {}

        def can_grow(seg: Segment) -> bool:
            return algorithm != "flat" and segment_index.can_grow(seg, algorithm, params)

        picked = needs_compaction(self.segments, self.options.flush_bytes, can_grow)
        if not picked:
            return
        need = sum(s.live_count for s in picked) * self.dim * 4
        free = self._free_bytes()
        if free is not None and free < need:  # cannot fit: do not fill the disk only to fail
            log.warning("collection %s: background compaction of segments %s skipped: %d bytes free, it needs "
                        "more than %d; it is tried again after a later flush", self.config.name,
                        [s.id for s in picked], free, need)
            return
        ids = [s.id for s in picked]

        def run() -> None:
            try:
                if self.compact(ids)["merged"]:
                    self._ask_compaction_policy()  # what waited for this merge (the segments flushed meanwhile)
            except EngineClosedError:
                pass
            except DiskFullError as exc:
                log.error("collection %s: background compaction failed: %s; it is tried again after a later flush",
                          self.config.name, exc)
            except Exception:
                log.exception("collection %s: background compaction failed", self.config.name)

        self._background = threading.Thread(target=run, name=f"compact-{self.config.name}", daemon=True)
        self._background.start()
