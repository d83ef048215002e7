"""The one storage step that replaces segments: flush, compaction and migration all go through it.

A rewrite is a transaction on a collection's segment set::

    plan       the caller picks its inputs and reserves new segment ids
               (:meth:`SegmentRewrite.reserve_id`, under the collection lock;
               an id is never reused, even when the rewrite fails)
    build      :meth:`SegmentRewrite.build` writes a new segment directory; it
               is born with its PENDING marker (intents.new_dir) and keeps it
               until the manifest naming it is durable
    carry      :meth:`SegmentRewrite.write_deletions` writes the next deletion
               bitmap generation of a kept or new segment (the deletions that
               happened meanwhile)
    commit     :meth:`SegmentRewrite.commit` (under the collection lock) saves
               the manifest naming the new segment list: *the commit point*.
               The segments it drops are listed as ``retired`` until their
               directories are gone. A manifest that was renamed into place but
               whose directory fsync failed (ManifestNotDurableError) is in
               force but a crash may bring the old one back: the rewrite counts
               as committed, yet nothing the old manifest needs is removed
    swap       in the same call: the collection's manifest and segment list
               (and the segments' committed bitmap generations) are replaced
    finish     :meth:`SegmentRewrite.finish` (after a durable commit) drops
               the new segments' PENDING markers, removes what was dropped
               (rename to ``.deleting`` first: intents.discard); then
               schedules the new segments' indexes. Old bitmap generations
               are the flush's to remove (it holds the lock; a rewrite that
               finishes outside it could race a flush's uncommitted bitmap)

Any failure before the commit point rolls back (the ``with`` block's exit):
the new directories and bitmap files are removed at once (their space is
needed: ENOSPC is the usual cause) and the collection is exactly as before.
Failures after it are the caller's to log, not to undo.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from proximadb.storage import intents
from proximadb.storage.manifest import Manifest, ManifestNotDurableError, SegmentRef
from proximadb.storage.segment import Segment, SegmentData, segment_dir_name
from proximadb.storage.segment_writer import RowStream, write_segment

log = logging.getLogger("proximadb.collection")


class SegmentRewrite:
    """One segment-replacing transaction on ``col`` (a Collection); use as a context manager."""

    def __init__(self, col: Any, what: str) -> None:
        self.col = col
        self.what = what  # "flush", "compaction", "migration": for log lines
        self.built: list[Segment] = []
        self.retired: list[Segment] = []
        self.committed = False
        self.durable = True
        self._paths: list[Path] = []
        self._written: list[tuple[Segment, tuple[int, np.ndarray]]] = []

    def __enter__(self) -> SegmentRewrite:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.rollback()

    # plan
    def reserve_id(self) -> int:
        """A new segment id (the caller holds the collection lock)."""
        manifest = self.col.manifest
        seg_id: int = manifest.next_segment_id
        manifest.next_segment_id = seg_id + 1
        return seg_id

    # build
    def build(self, segment_id: int, data: SegmentData | RowStream, extra: dict[str, Any], **kwargs: Any) -> Segment:
        """Write segment ``segment_id`` (it carries PENDING until :meth:`finish`) and load it.

        ``data``: rows in memory (a flush's) or a stream of chunks (compaction's, migration's merge:
        segment_writer.py), written a chunk at a time either way."""
        segments_dir = self.col.directory / "segments"
        self._paths.append(segments_dir / segment_dir_name(segment_id))
        path = write_segment(segments_dir, segment_id, data, extra, **kwargs)
        seg = Segment(path, verify=False)
        self.built.append(seg)
        return seg

    # carry deletions
    def write_deletions(self, seg: Segment, mask: np.ndarray | None = None) -> None:
        """Write ``seg``'s next bitmap generation (default: its in-memory deletions, if any changed)."""
        written = seg.write_deletions(mask)
        if written is not None:
            self._written.append((seg, written))

    # commit + swap
    def commit(self, segments: list[Segment], retire: list[Segment], *, checkpoint_seq: int | None = None,
               not_durable: str = "the old files are kept until a later rewrite succeeds") -> None:
        """Save the manifest naming ``segments`` (the commit point), then swap it in (collection lock held)."""
        col = self.col
        generations = {id(seg): written[0] for seg, written in self._written}
        manifest = Manifest(
            checkpoint_seq=col.manifest.checkpoint_seq if checkpoint_seq is None else checkpoint_seq,
            next_segment_id=col.manifest.next_segment_id,
            segments=[SegmentRef(s.id, generations.get(id(s), s.deletes_generation)) for s in segments],
            retired=col.manifest.retiring(col.directory, [s.id for s in retire]),
            log_of_record=col.manifest.log_of_record,
        )
        try:
            manifest.save(col.directory)  # the commit point
        except ManifestNotDurableError as exc:
            self.durable = False  # in force, but a crash may bring the old one back: keep what it needs
            log.error("collection %s: %s during %s; %s", col.config.name, exc, self.what, not_durable)
        self.committed = True
        for seg, written in self._written:
            seg.commit_deletions(written)
        col.manifest = manifest
        col.segments = list(segments)
        self.retired = list(retire)

    def rollback(self) -> None:
        """Before the commit point: remove what this rewrite wrote. After it: nothing to undo."""
        if self.committed:
            return
        for seg in self.built:  # unmap its files before they go, so that their space is free at once
            seg.release()
        self.built.clear()
        for path in self._paths:
            intents.discard(path)
        for seg, _written in self._written:
            with contextlib.suppress(OSError):
                seg.remove_stale_bitmaps()

    # finish
    def finish(self) -> None:
        """After the commit: settle PENDING / retired directories and old bitmaps (durable only), reindex."""
        col = self.col
        if self.durable:
            intents.settle([s.path for s in self.built], [s.path for s in self.retired])
        for seg in self.built:
            col._index_segment(seg, load_existing=False)
