"""One collection: its WAL, memtable and segments, and every read and write on them.

Files under ``collections/<uuid>/``: ``MANIFEST`` (manifest.py), ``wal/``
(wal.py) and ``segments/`` (segment.py).

Write path: validate -> (under the collection lock) check ids, hand the frame
to the WAL, apply to the memtable -> (outside the lock) wait until the frame
is as durable as the fsync policy promises -> acknowledge. Concurrent writers
therefore share fsyncs (group commit). A write is visible to searches as soon
as it is applied; it is acknowledged only once durable.

Invariant: every id is live in at most one place (the memtable or one
segment row). An upsert or metadata update of a segment row marks that row
deleted and puts the new version in the memtable, so segments stay immutable.

Recovery: load the manifest and check ``segments/`` against it (integrity.py:
only proven crash leftovers are removed), load the segments, replay WAL frames
after the checkpoint through the same ``_apply`` the live path uses.

Flush: write the memtable as a new segment, the changed deletion bitmaps, then
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
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proximadb import deadline, progress
from proximadb.codec.avro_batch import decode_vector_batch
from proximadb.codec.framing import decode_frame
from proximadb.codec.payload import encode_insert
from proximadb.errors import (
    DiskFullError,
    EngineClosedError,
    MalformedPayloadError,
    PayloadTooLargeError,
    StorageError,
    UnknownOperationError,
    ValidationError,
    VectorExistsError,
    VectorNotFoundError,
)
from proximadb.filters import Filter, compile_filter
from proximadb.index import distance
from proximadb.limits import Limits
from proximadb.renamed import renamed
from proximadb.storage import compaction, integrity, intents, segment_index
from proximadb.storage.catalog import CollectionConfig
from proximadb.storage.manifest import Manifest, ManifestNotDurableError, SegmentRef
from proximadb.storage.memtable import Memtable
from proximadb.storage.operations import NO_EXPIRY, DeleteOp, InsertOp, Metadata, MetadataPatch, Operation, UpdateOp
from proximadb.storage.segment import Segment, SegmentData, segment_dir_name, write_segment
from proximadb.storage.validation import (
    check_ids,
    check_k,
    check_metadata,
    check_search_knob,
    check_timestamps,
    check_vectors,
    query_matrix,
    record_label,
)
from proximadb.storage.wal import WriteAheadLog

log = logging.getLogger("proximadb.collection")

KERNEL_METRIC = {"euclidean": "l2", "cosine": "cosine", "dot_product": "dot"}


@dataclass(slots=True)
class StorageOptions:
    """Engine-wide storage settings (the daemon fills them from flags, env and config)."""

    wal_strategy: str = "avro"
    wal_compression: str = "none"
    fsync: str = "always"
    memtable_type: str = "hash"
    flush_bytes: int = 256 << 20
    wal_segment_bytes: int = 64 << 20
    verify_segments: bool = True
    limits: Limits = field(default_factory=Limits)  # request limits (proximadb.limits), enforced here
    auto_compact: bool = True  # background compaction after flushes, by compaction.needs_compaction


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.exists() else 0


def now_us() -> int:
    return time.time_ns() // 1000


FLUSH_RETRY_SECONDS = 1.0  # a write retries a failed flush no sooner than this
FLUSH_LOG_SECONDS = 30.0  # while flushes keep failing, the error is logged at most this often


@dataclass(slots=True)
class _FlushRetry:
    """Automatic flushes that keep failing (disk full): when a write may try again, what was logged."""

    failures: int = 0  # consecutive failed attempts
    retry_at: float = 0.0  # time.monotonic() before which a write does not try again
    logged_at: float = float("-inf")


def _is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError) or (isinstance(seen, OSError) and seen.errno == errno.ENOSPC):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Collection:
    def __init__(self, config: CollectionConfig, directory: Path, options: StorageOptions) -> None:
        self.config = config
        self.directory = directory
        self.options = options
        self.dim = config.dimension
        self._metric = KERNEL_METRIC[config.distance_metric]
        self._lock = threading.RLock()
        self.memtable = self._new_memtable()
        self.segments: list[Segment] = []
        self.manifest = Manifest()
        self.wal: WriteAheadLog | None = None
        self.last_flush_error: str | None = None
        self._flush_retry = _FlushRetry()
        self.index_builder = segment_index.IndexBuilder(config.name)
        self._compaction_lock = threading.Lock()  # one compaction at a time per collection
        self._background: threading.Thread | None = None

    def _request_lock(self) -> Any:
        """The collection lock for a client request: gives up at the request's deadline (proximadb.deadline)."""
        doing = f"waiting for collection {self.config.name!r} (busy with a flush or compaction)"
        return deadline.locked(self._lock, doing)

    # ------------------------------------------------------------------ open/close
    def _new_memtable(self) -> Memtable:
        rows = min(self.options.flush_bytes // (4 * self.dim) + 1, 4_000_000)
        return Memtable(self.dim, self.options.memtable_type, initial_rows=max(rows, 16))

    @classmethod
    def open(cls, config: CollectionConfig, directory: Path, options: StorageOptions) -> Collection:
        self = cls(config, directory, options)
        (directory / "segments").mkdir(parents=True, exist_ok=True)
        self.manifest = integrity.open_manifest(directory, config.name)
        for ref in self.manifest.segments:
            seg = Segment(
                directory / "segments" / segment_dir_name(ref.id),
                deletes_generation=ref.deletes_generation,
                verify=options.verify_segments,
            )
            seg.remove_stale_bitmaps()
            self.segments.append(seg)
        for seg in self.segments:
            self._index_segment(seg, load_existing=True)
        self.wal = WriteAheadLog.open(
            directory / "wal",
            strategy=options.wal_strategy,
            compression=options.wal_compression,
            fsync=options.fsync,
            segment_bytes=options.wal_segment_bytes,
        )
        started = time.monotonic()
        replayed = 0
        with progress.track("replay", config.name, unit="operations") as task:
            for _seq, op in self.wal.replay(after_seq=self.manifest.checkpoint_seq):
                self._apply(op)
                replayed += 1
                task.update(replayed)
        if replayed:
            log.info(
                "collection %s: replayed %d WAL operations after checkpoint %d in %.2fs (%d rows in memtable)",
                config.name, replayed, self.manifest.checkpoint_seq, time.monotonic() - started,
                self.memtable.live_count,
            )
        return self

    def close(self) -> None:
        self.index_builder.stop()
        with self._compaction_lock:  # let a running compaction reach its commit point or give up
            pass
        with self._lock:
            if self.wal is not None:
                self.wal.close()
                self.wal = None

    @property
    def _wal(self) -> WriteAheadLog:
        if self.wal is None:
            raise EngineClosedError(f"collection {self.config.name} is closed")
        return self.wal

    # ------------------------------------------------------------------ writes
    @renamed(metadata="metadatas")
    def insert(
        self,
        records: Sequence[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        metadata: Sequence[Metadata | None] | None = None,
        upsert: bool = False,
    ) -> list[str]:
        """Insert a batch (all or nothing); an existing id is an error unless ``upsert``."""
        payload = encode_insert(records, ids=ids, vectors=vectors, metadata=metadata, upsert=upsert)
        return self.insert_payload(payload)

    @renamed(metadata="metadatas")
    def upsert(self, records: Sequence[dict[str, Any]] | None = None, **kwargs: Any) -> list[str]:
        return self.insert(records, upsert=True, **kwargs)

    def insert_payload(self, payload: bytes | bytearray | memoryview) -> list[str]:
        """Apply a versioned ``vector_insert`` payload exactly as a client sent it."""
        version, op_type, datum = decode_frame(payload)
        if op_type != "vector_insert":
            raise UnknownOperationError(f"expected a vector_insert payload, got {op_type!r}")
        batch = decode_vector_batch(datum, expected_dim=self.dim, schema_version=version)
        op = batch.to_insert_op()
        return self._write_insert(op, bytes(payload))

    def _write_insert(self, op: InsertOp, payload: bytes | None) -> list[str]:
        n = len(op.ids)
        limits = self.options.limits
        if n > limits.max_batch:
            raise PayloadTooLargeError(
                f"batch of {n} records exceeds the server's max_batch limit of {limits.max_batch}"
            )
        if op.vectors.shape != (n, self.dim):
            raise MalformedPayloadError(f"batch holds {op.vectors.shape[0]} vectors for {n} ids")
        check_ids(op.ids, max_bytes=limits.max_id_bytes)
        check_vectors(op.vectors, record_label(op.ids), cosine=self._metric == "cosine")
        check_timestamps(op.timestamps, op.expires_at, op.ids)
        for i, md in enumerate(op.metadata):
            if md:
                check_metadata(md, f"record {i} (id {op.ids[i]!r})", limits.max_metadata_bytes)
        if n and not op.timestamps.all():
            # Stamp server time where the client sent 0. The client's payload is still
            # logged as sent; the WAL keeps the stamped timestamps beside it for replay.
            op.timestamps = np.where(op.timestamps == 0, now_us(), op.timestamps).astype(np.int64)
        if n == 0:
            return []
        with self._request_lock():
            if not op.upsert:
                existing = self._existing(op.ids)
                if existing:
                    shown = ", ".join(repr(i) for i in existing[:5])
                    more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
                    raise VectorExistsError(
                        f"{len(existing)} id(s) already exist: {shown}{more}; use upsert to replace them"
                    )
            seq = self._wal.write(op, payload)
            self._apply(op)
            self._maybe_flush()
        self._wal.wait_durable(seq)
        return list(op.ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete the given ids; returns how many existed. Unknown ids are ignored."""
        ids = check_ids(list(ids), allow_duplicates=True, max_bytes=self.options.limits.max_id_bytes)
        with self._request_lock():
            present = list(dict.fromkeys(i for i in ids if self._locate(i) is not None))
            if not present:
                return 0
            seq = self._log_and_apply(DeleteOp(present))
        self._wal.wait_durable(seq)
        return len(present)

    @renamed(filter_spec="filter")
    def delete_where(self, filter_spec: dict[str, Any] | str) -> int:
        """Delete every live row whose metadata matches the filter; returns the count."""
        flt = compile_filter(filter_spec)
        if flt is None:
            raise ValidationError("delete by filter needs a non-empty filter")
        with self._request_lock():
            matched = [rec_id for rec_id, md in self._iter_live_metadata() if flt.matches(md)]
            if not matched:
                return 0
            deadline.check(f"matching the delete filter in collection {self.config.name!r}")
            seq = self._log_and_apply(DeleteOp(matched))
        self._wal.wait_durable(seq)
        return len(matched)

    def update_metadata(self, id_: str, metadata: Metadata, *, replace: bool = False) -> dict[str, Any]:
        """Merge (or with ``replace``, swap) a record's metadata; a None value removes a key on merge."""
        check_ids([id_], max_bytes=self.options.limits.max_id_bytes)
        check_metadata(metadata, f"id {id_!r}", self.options.limits.max_metadata_bytes)
        with self._request_lock():
            if self._locate(id_) is None:
                raise VectorNotFoundError(f"no vector with id {id_!r} in collection {self.config.name}")
            seq = self._log_and_apply(UpdateOp([MetadataPatch(id_, dict(metadata), replace)], now_us()))
            record = self._record(id_, include_vector=False)
        self._wal.wait_durable(seq)
        assert record is not None
        return record

    def _log_and_apply(self, op: Operation) -> int:
        seq = self._wal.write(op, None)
        self._apply(op)
        self._maybe_flush()
        return seq

    # ------------------------------------------------------------------ apply (live and replay)
    def _apply(self, op: Operation) -> None:
        if isinstance(op, InsertOp):
            self._apply_insert(op)
        elif isinstance(op, DeleteOp):
            for id_ in op.ids:
                self._remove(id_)
        elif isinstance(op, UpdateOp):
            for patch in op.updates:
                self._apply_patch(patch, op.timestamp)
        else:  # pragma: no cover - the WAL decodes only the three kinds
            raise TypeError(f"unknown operation {op!r}")

    def _apply_insert(self, op: InsertOp) -> None:
        vectors = op.vectors
        if self._metric == "cosine":  # in float64: huge and subnormal rows normalise exactly too
            vectors = distance.normalize_rows(vectors)
        if self.segments:
            wanted = set(op.ids)
            for seg in self.segments:  # an id lives in one place at most: memtable or one segment
                for id_ in seg.id_to_row.keys() & wanted:
                    seg.delete_row(seg.id_to_row[id_])
        self.memtable.put_batch(list(op.ids), vectors, list(op.metadata), op.timestamps, op.expires_at)

    def _apply_patch(self, patch: MetadataPatch, timestamp: int) -> None:
        where = self._locate(patch.id)
        if where is None:
            return  # deleted after the update was logged: nothing to change
        source, row = where
        old = source.metadata[row] if isinstance(source, Segment) else self.memtable.metadata_of(row)
        if patch.replace:
            new = dict(patch.metadata)
        else:
            new = dict(old)
            for key, value in patch.metadata.items():
                if value is None:
                    new.pop(key, None)
                else:
                    new[key] = value
        if isinstance(source, Segment):
            vector = np.array(source.vectors[row : row + 1], dtype=np.float32)
            ts = np.array([timestamp or source.timestamps[row]], dtype=np.int64)
            expires = None if source.expires_at is None else source.expires_at[row : row + 1].copy()
            source.delete_row(row)
            self.memtable.put_batch([patch.id], vector, [new], ts, expires)
        else:
            self.memtable.set_metadata(patch.id, new)

    def _remove(self, id_: str) -> None:
        if not self.memtable.delete(id_):
            self._remove_from_segments(id_)

    def _remove_from_segments(self, id_: str) -> None:
        for seg in self.segments:
            row = seg.id_to_row.get(id_)
            if row is not None:
                seg.delete_row(row)
                return

    def _existing(self, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` that are live, in their order (set operations, no per-id Python)."""
        found = self.memtable.id_keys() & ids
        for seg in self.segments:
            found |= seg.id_to_row.keys() & ids
        return [i for i in ids if i in found] if found else []

    def _locate(self, id_: str) -> tuple[Memtable | Segment, int] | None:
        row = self.memtable.row_of(id_)
        if row is not None:
            return self.memtable, row
        for seg in self.segments:
            row = seg.id_to_row.get(id_)
            if row is not None:
                return seg, row
        return None

    # ------------------------------------------------------------------ segment indexes
    def _index_segment(self, seg: Segment, *, load_existing: bool) -> None:
        """Attach the segment's HNSW/IVF index (loaded if valid), or schedule a background build."""
        algorithm = self.config.indexing_algorithm
        if algorithm == "flat":
            seg.attach_index(None, "flat")
            return
        params = segment_index.effective_params(algorithm, self.config.index_params, seg.rows)
        if load_existing:
            index = segment_index.load(seg, algorithm, self._metric, params)
            if index is not None:
                seg.attach_index(index, algorithm)
                return
        self.index_builder.schedule(seg, algorithm, self._metric, params)

    def reconfigure(self, config: CollectionConfig) -> None:
        """New settings from the catalog; a changed index algorithm or parameters rebuilds segment indexes."""
        with self._lock:
            old = self.config
            self.config = config
            if (old.indexing_algorithm, old.index_params) != (config.indexing_algorithm, config.index_params):
                for seg in self.segments:
                    seg.attach_index(None, "flat")  # exact until the new index is ready
                    self._index_segment(seg, load_existing=False)

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Block until every scheduled index build has finished; False on timeout."""
        return self.index_builder.wait_idle(timeout)

    # ------------------------------------------------------------------ compaction
    def compact(self, segment_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Merge segments (default: all) into one, dropping deleted and superseded rows.

        Reads and writes go on during the merge; only the manifest swap takes the
        collection lock. See compaction.py for why this is crash-safe.
        """
        with self._compaction_lock:
            try:
                return self._compact(segment_ids).to_dict()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise DiskFullError(
                    f"disk full while compacting collection {self.config.name}: its segments are untouched and "
                    f"the partial output was removed; free space and compact again ({exc})"
                ) from exc

    def _compact(self, segment_ids: Sequence[int] | None) -> compaction.CompactionReport:
        started = time.monotonic()
        report = compaction.CompactionReport(self.config.name)
        with self._lock:
            self._wal  # noqa: B018 - raises when closed
            inputs = [s for s in self.segments if segment_ids is None or s.id in segment_ids]
            report.segments_before = len(self.segments)
            if not inputs or (len(inputs) == 1 and not inputs[0].persisted_deleted.any() and not inputs[0].dirty):
                report.segments_after = len(self.segments)
                return report
            plan = compaction.MergePlan(inputs, [s.persisted_deleted.copy() for s in inputs],
                                        self.manifest.next_segment_id)
            self.manifest.next_segment_id += 1
        report.merged = [s.id for s in inputs]
        report.rows_before = sum(s.rows for s in inputs)
        report.bytes_before = sum(_dir_bytes(s.path) for s in inputs)
        log.info("collection %s: compacting segments %s (%d rows)", self.config.name, report.merged,
                 report.rows_before)
        with progress.track("compaction", self.config.name, total=report.rows_before) as task:
            merged = compaction.merge_rows(plan, task.update)
        new: Segment | None = None
        new_path = self.directory / "segments" / segment_dir_name(plan.segment_id)
        committed = False
        durable = True
        try:
            if merged.data.ids:
                write_segment(self.directory / "segments", plan.segment_id, merged.data,
                              {"created_at": time.time(), "compacted_from": report.merged,
                               "metric": self.config.distance_metric})
                new = Segment(new_path, verify=False)
            with self._lock:
                if self.wal is None:
                    raise EngineClosedError(f"collection {self.config.name} closed during compaction")
                written = None
                if new is not None:
                    dropped = [i for i, seg in enumerate(inputs) if seg not in self.segments]
                    persisted_now = compaction.carry_deletions(plan, merged, new, dropped)
                    if persisted_now.any():
                        written = new.write_deletions(persisted_now)
                remaining = [s for s in self.segments if s not in inputs]
                refs = {ref.id: ref for ref in self.manifest.segments}
                manifest = Manifest(
                    checkpoint_seq=self.manifest.checkpoint_seq,
                    next_segment_id=self.manifest.next_segment_id,
                    segments=[refs[s.id] for s in remaining if s.id in refs]
                    + ([SegmentRef(new.id, written[0] if written else 0)] if new is not None else []),
                    retired=self.manifest.retiring(self.directory, [s.id for s in inputs]),
                )
                try:
                    manifest.save(self.directory)  # the commit point
                except ManifestNotDurableError as exc:
                    durable = False  # in force, but a crash may bring the old one back: keep the inputs
                    log.error("collection %s: %s; the compacted segments' files stay until the next open",
                              self.config.name, exc)
                committed = True
                if new is not None:
                    new.commit_deletions(written)
                self.manifest = manifest
                self.segments = remaining + ([new] if new is not None else [])
        except BaseException:
            if not committed:  # the inputs are untouched; the partial output goes now (its space is needed)
                new = None  # drop the memory map before the files go
                intents.discard(new_path)
            raise
        if durable:
            intents.settle([new.path] if new is not None else [], [seg.path for seg in inputs])
        if new is not None:
            self._index_segment(new, load_existing=False)
        report.segments_after = len(self.segments)
        report.rows_after = new.rows if new is not None else 0
        report.bytes_after = _dir_bytes(new.path) if new is not None else 0
        report.seconds = round(time.monotonic() - started, 3)
        log.info("collection %s: compaction done in %.1fs: %d segment(s) -> %d, %d rows -> %d, %d bytes -> %d",
                 self.config.name, report.seconds, report.segments_before, report.segments_after,
                 report.rows_before, report.rows_after, report.bytes_before, report.bytes_after)
        return report

    def _maybe_compact_in_background(self) -> None:
        """After a flush: start a background compaction when the policy asks for one."""
        if not self.options.auto_compact or (self._background is not None and self._background.is_alive()):
            return
        picked = compaction.needs_compaction(self.segments, self.options.flush_bytes)
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
                self.compact(ids)
            except EngineClosedError:
                pass
            except DiskFullError as exc:
                log.error("collection %s: background compaction failed: %s; it is tried again after a later flush",
                          self.config.name, exc)
            except Exception:
                log.exception("collection %s: background compaction failed", self.config.name)

        self._background = threading.Thread(target=run, name=f"compact-{self.config.name}", daemon=True)
        self._background.start()

    # ------------------------------------------------------------------ flush
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

    def flush(self) -> None:
        """Seal the memtable into a segment and checkpoint the WAL.

        On failure nothing is lost (the rows stay in the memtable and the WAL) and
        the error is raised: DiskFullError when the disk is full.
        """
        with self._lock:
            self._wal  # noqa: B018 - raises EngineClosedError when closed
            try:
                self._flush_locked()
            except Exception as exc:
                self._flush_failed(exc, explicit=True)
                if _is_disk_full(exc) and not isinstance(exc, DiskFullError):
                    raise DiskFullError(
                        f"disk full while flushing collection {self.config.name}: "
                        f"{self.memtable.live_count} records stay in the WAL/memtable (nothing is lost); "
                        f"free space and flush again ({exc})"
                    ) from exc
                raise

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
        if _is_disk_full(exc):
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
        wal = self._wal
        seq = wal.last_seq
        rows = self.memtable.live_rows()
        keep = [s for s in self.segments if s.live_count > 0]
        dropped = [s for s in self.segments if s.live_count == 0]
        new_paths: list[Path] = []
        new_segments: list[Segment] = []
        written: list[tuple[int, np.ndarray] | None] = []
        durable = True
        try:
            if len(rows):
                ids, vectors, metadata, timestamps = self.memtable.columns(rows)
                seg_id = self.manifest.next_segment_id
                self.manifest.next_segment_id = seg_id + 1  # never reused, even when this flush fails
                new_paths.append(self.directory / "segments" / segment_dir_name(seg_id))
                write_segment(
                    self.directory / "segments",
                    seg_id,
                    SegmentData(ids, vectors, metadata, timestamps, self.memtable.expires_columns(rows)),
                    {"created_at": time.time(), "max_seq": seq, "metric": self.config.distance_metric},
                )
                new_segments.append(Segment(new_paths[0], verify=False))
            for seg in keep:
                written.append(seg.write_deletions())
            manifest = Manifest(
                checkpoint_seq=seq,
                next_segment_id=self.manifest.next_segment_id,
                segments=[
                    SegmentRef(s.id, w[0] if w else s.deletes_generation) for s, w in zip(keep, written, strict=True)
                ] + [SegmentRef(s.id, 0) for s in new_segments],
                retired=self.manifest.retiring(self.directory, [s.id for s in dropped]),
            )
            try:
                manifest.save(self.directory)  # the commit point
            except ManifestNotDurableError as exc:
                durable = False  # in force, but a crash may bring the old one back: keep what it needs
                log.error("collection %s: %s; the WAL and the old files are kept until a later flush succeeds",
                          self.config.name, exc)
        except BaseException:
            # Not committed: the manifest on disk still names the old state. Remove what this
            # flush wrote (its space is needed) and leave memtable and WAL as they are.
            new_segments.clear()  # drop the memory map before the files go
            for path in new_paths:
                intents.discard(path)
            for seg, w in zip(keep, written, strict=False):
                if w is not None:
                    with contextlib.suppress(OSError):
                        seg.remove_stale_bitmaps()
            raise
        for seg, w in zip(keep, written, strict=True):
            seg.commit_deletions(w)
        self.manifest = manifest
        self.segments = keep + new_segments
        self.memtable = self._new_memtable()
        if durable:
            self._after_flush_cleanup(wal, seq, keep, new_segments, dropped)
        for seg in new_segments:
            self._index_segment(seg, load_existing=False)
        self._maybe_compact_in_background()
        self.last_flush_error = None
        if self._flush_retry.failures:
            log.info("collection %s: flush succeeded after %d failed attempt(s)", self.config.name,
                     self._flush_retry.failures)
            self._flush_retry = _FlushRetry()
        log.info(
            "collection %s: flushed %d rows into segment(s) %s at seq %d in %.2fs; %d live segment(s)",
            self.config.name, len(rows), [s.id for s in new_segments] or "none", seq,
            time.monotonic() - started, len(self.segments),
        )

    def _after_flush_cleanup(self, wal: WriteAheadLog, seq: int, keep: list[Segment], new: list[Segment],
                             dropped: list[Segment]) -> None:
        """After a durable manifest swap: drop covered WAL files and old files. Failures are logged, not raised."""
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
        intents.settle([s.path for s in new], [s.path for s in dropped])

    # ------------------------------------------------------------------ reads
    def _record(self, id_: str, include_vector: bool = True) -> dict[str, Any] | None:
        where = self._locate(id_)
        if where is None:
            return None
        source, row = where
        rec = source.record(row)
        if not include_vector:
            rec.pop("vector")
        return rec

    def get(self, id_: str, *, include_vector: bool = True) -> dict[str, Any] | None:
        with self._request_lock():
            return self._record(id_, include_vector)

    def get_many(self, ids: Sequence[str], *, include_vectors: bool = True) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out)."""
        with self._request_lock():
            found = (self._record(i, include_vectors) for i in ids)
            return [r for r in found if r is not None]

    @renamed(filter_spec="filter")
    def count(self, filter_spec: dict[str, Any] | str | None = None) -> int:
        flt = compile_filter(filter_spec)
        with self._request_lock():
            if flt is None:
                return self.memtable.live_count + sum(s.live_count for s in self.segments)
            return sum(1 for _, md in self._iter_live_metadata() if flt.matches(md))

    def _iter_live_metadata(self) -> Iterator[tuple[str, Metadata]]:
        for seg in self.segments:
            for row in np.flatnonzero(seg.deleted == 0):
                yield seg.ids[row], seg.metadata[row]
        snap = self.memtable.snapshot()
        for row in np.flatnonzero(snap.alive):
            yield snap.ids[row], snap.metadata[row]

    @renamed(filter_spec="filter")
    def scroll(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter_spec: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Records in ascending id order after ``cursor``; returns (page, next cursor or None)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be an integer from 1 to 10000, not {limit!r}")
        flt = compile_filter(filter_spec)
        page: list[dict[str, Any]] = []
        with self._request_lock():
            streams = [self._segment_ids_after(seg, cursor) for seg in self.segments]
            streams.append(self.memtable.live_ids_sorted(cursor))
            for id_ in heapq.merge(*streams):
                rec = self._record(id_, include_vectors)
                if rec is None or (flt is not None and not flt.matches(rec["metadata"])):
                    continue
                page.append(rec)
                if len(page) == limit:
                    return page, id_
        return page, None

    @staticmethod
    def _segment_ids_after(seg: Segment, cursor: str | None) -> Iterator[str]:
        start = bisect.bisect_right(seg.ids, cursor) if cursor is not None else 0
        deleted = seg.deleted
        for row in range(start, seg.rows):
            if not deleted[row]:
                yield seg.ids[row]

    # ------------------------------------------------------------------ search
    @renamed(filter_spec="filter")
    def search(self, vector: Any, k: int = 10, **kwargs: Any) -> list[dict[str, Any]]:
        return self.search_batch([vector] if np.ndim(vector) == 1 else vector, k, **kwargs)[0]

    @renamed(filter_spec="filter")
    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter_spec: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
        include_metadata: bool = True,
        exact: bool | None = None,
        ef: int | None = None,
        nprobe: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Top-k per query over memtable + segments, best first; filters apply inside the scan."""
        check_k(k, self.options.limits.max_k)
        ef = check_search_knob("ef", ef)
        nprobe = check_search_knob("nprobe", nprobe)
        queries = query_matrix(vectors, self.dim, cosine=self._metric == "cosine")
        if self._metric == "cosine":
            queries = distance.normalize_rows(queries)
        flt = compile_filter(filter_spec)
        with self._request_lock():  # a snapshot; the scan itself runs without the lock, GIL released
            snap = self.memtable.snapshot()
            sources: list[tuple[np.ndarray, np.ndarray, Any]] = [
                (seg.vectors, (seg.deleted == 0).view(np.uint8), seg) for seg in self.segments
            ]
        sources.append((snap.vectors[: snap.rows], snap.alive, snap))
        m = len(queries)
        cand_d = []
        cand_src = []
        cand_row = []
        for s_idx, (base, alive, owner) in enumerate(sources):
            if base.shape[0] == 0:
                continue
            if cand_d:  # between parts, never before the first
                deadline.check(f"searching collection {self.config.name!r} ({s_idx} of {len(sources)} parts done)")
            mask = alive if flt is None else (alive & self._filter_mask(flt, owner.metadata, base.shape[0]))
            index = getattr(owner, "index", None)
            if index is not None and not exact:
                idx, dist = self._index_topk(index, queries, k, mask, ef, nprobe)
            else:
                idx, dist = self._topk(queries, base, k, mask)
            cand_d.append(dist)
            cand_row.append(idx)
            cand_src.append(np.full(idx.shape, s_idx, dtype=np.int32))
        if not cand_d:
            return [[] for _ in range(m)]
        all_d = np.concatenate(cand_d, axis=1)
        all_row = np.concatenate(cand_row, axis=1)
        all_src = np.concatenate(cand_src, axis=1)
        order = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        results = []
        for qi in range(m):
            hits = []
            for j in order[qi]:
                row = int(all_row[qi, j])
                if row < 0:
                    break
                _, _, owner = sources[int(all_src[qi, j])]
                hits.append(self._hit(owner, row, float(all_d[qi, j]), include_vectors, include_metadata))
            results.append(hits)
        return results

    def _topk(self, queries: np.ndarray, base: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) rows and distances, padded with -1 / inf. A thread team costs more than one query."""
        if len(queries) >= 4:
            return distance.topk_batch(queries, base, k, self._metric, mask=mask)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = distance.topk(q, base, k, self._metric, mask=mask)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    @staticmethod
    def _index_topk(
        index: Any, queries: np.ndarray, k: int, mask: np.ndarray, ef: int | None, nprobe: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Graph/IVF search; deleted and filtered-out rows are excluded inside the traversal."""
        allowed = None if mask.all() else mask
        knob = segment_index.search_options(index, ef=ef, nprobe=nprobe)
        if len(queries) >= 4:
            return index.search_batch(queries, k, filter_ids=allowed, **knob)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = index.search(q, k, filter_ids=allowed, **knob)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    @staticmethod
    def _filter_mask(flt: Filter, metadata: list[Metadata], rows: int) -> np.ndarray:
        return flt.mask(metadata[:rows]).view(np.uint8)

    def _hit(self, owner: Any, row: int, raw: float, with_vector: bool, with_metadata: bool) -> dict[str, Any]:
        if self._metric == "l2":
            dist = float(np.sqrt(max(raw, 0.0)))
            score = 1.0 / (1.0 + dist)
        elif self._metric == "cosine":
            dist = raw
            score = 1.0 - raw
        else:  # dot: the kernel returns the negated inner product
            dist = raw
            score = -raw
        hit: dict[str, Any] = {"id": owner.ids[row], "score": score, "distance": dist}
        if with_metadata:
            hit["metadata"] = owner.metadata[row]
        if with_vector:
            hit["vector"] = np.array(owner.vectors[row], dtype=np.float32)
        expires = owner.expires_at
        if expires is not None and expires[row] != NO_EXPIRY:
            hit["expires_at"] = int(expires[row])
        return hit

    # ------------------------------------------------------------------ info
    def wal_stats(self) -> dict[str, Any]:
        wal = self.wal
        return asdict(wal.stats()) if wal is not None else {}

    def stats(self) -> dict[str, Any]:
        with self._request_lock():
            wal = self.wal
            return {
                "name": self.config.name,
                "uuid": self.config.uuid,
                "vectors": self.memtable.live_count + sum(s.live_count for s in self.segments),
                "memtable_rows": self.memtable.live_count,
                "memtable_bytes": self.memtable.approx_bytes,
                "segments": len(self.segments),
                "segment_rows": sum(s.rows for s in self.segments),
                "checkpoint_seq": self.manifest.checkpoint_seq,
                "wal_last_seq": wal.last_seq if wal else None,
                "last_flush_error": self.last_flush_error,
                "indexing_algorithm": self.config.indexing_algorithm,
                "indexed_segments": sum(1 for s in self.segments if s.index is not None),
                "index_builds_pending": self.index_builder.pending,
                "last_index_error": self.index_builder.last_error,
            }
