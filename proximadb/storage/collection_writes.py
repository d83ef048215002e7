"""The write path of a Collection: batch checks and the apply step that live writes and WAL replay share.

Mixed into :class:`proximadb.storage.collection.Collection` (which holds the
public write methods and the WAL); see that module's docstring for the order
of validate -> WAL -> apply -> wait durable, and the one-place-per-id
invariant that :meth:`WritePath._apply` keeps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from proximadb.errors import (
    MalformedPayloadError,
    PayloadTooLargeError,
    VectorExistsError,
)
from proximadb.index import distance
from proximadb.storage import expiry, insert_metadata
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.memtable import Memtable
from proximadb.storage.metadata_check import metadata_sizes
from proximadb.storage.metadata_store import MetadataColumn
from proximadb.storage.named_columns import check_named_batch
from proximadb.storage.operations import DeleteOp, InsertOp, MetadataPatch, Operation, UpdateOp
from proximadb.storage.segment import Segment
from proximadb.storage.sparse_column import check_columns
from proximadb.storage.validation import (
    MAX_METADATA_KEY_BYTES,
    check_ids,
    check_metadata,
    check_sparse_names,
    check_timestamps,
    check_vectors,
    record_label,
)


def now_us() -> int:
    return time.time_ns() // 1000


class WritePath(CollectionState):
    """Check an insert batch; apply operations to the memtable and segment bitmaps (live and replay)."""

    def _write_insert(self, op: InsertOp, payload: bytes | None) -> list[str]:
        if not self._check_insert(op, None):
            payload = None  # the client's payload lacks the stamped expiry: the WAL logs the batch as stamped
        if not op.ids:
            return []
        with self._request_lock():
            self._stall_for_flush()  # the memtable at its bound while a flush runs: wait for it (flush.py)
            if not op.upsert:
                self._refuse_existing(op.ids, None)
            seq = self._require_open().write(op, payload)
            self._apply(op)
            self._maybe_flush()
        self._require_open().wait_durable(seq)
        return list(op.ids)

    def _check_insert(self, op: InsertOp, now: int | None, *, applying: bool = False) -> bool:
        """Check a batch and stamp it at ``now`` (µs): a timestamp of 0 becomes ``now``, the collection's
        default TTL counts from it. False when the stamping changed what the client's payload says.
        ``applying`` (a cluster log entry): its sparse names are not checked against this replica's settings
        (the node that took the write checked them against the shard map; a name just added there reaches
        this replica's settings at its next sync, and an entry is applied once: refusing it would lose it).

        Live writes pass None, the clock; a log entry applied in cluster mode passes the entry's log time, so
        every replica stamps the same values (collection_apply.py)."""
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
        check_named_batch(op.ids, op.named_vectors, self.config.vectors)
        if op.sparse_vectors:
            op.sparse_vectors = check_columns(op.sparse_vectors, n)
            if not applying:
                check_sparse_names(op.sparse_vectors, self.config.sparse_vectors)
        sizes = insert_metadata.scan(op)  # still encoded: sized and read for the index in one compiled pass
        if sizes is None:
            sizes = metadata_sizes(list(op.metadata), MAX_METADATA_KEY_BYTES)  # compiled; -1: ask the Python rule
        deferred = False
        for i in np.flatnonzero((sizes < 0) | (sizes > limits.max_metadata_bytes)).tolist():
            check_metadata(op.metadata[i], f"record {i} (id {op.ids[i]!r})", limits.max_metadata_bytes)
            deferred = True  # the rule took a row the scan left to it (a key twice in a map)
        if deferred and op.scanned is not None:
            insert_metadata.take_as_dicts(op)
        if n and not op.timestamps.all():
            # Stamp server time where the client sent 0. The client's payload is still
            # logged as sent; the WAL keeps the stamped timestamps beside it for replay.
            op.timestamps = np.where(op.timestamps == 0, now_us() if now is None else now, op.timestamps)
            op.timestamps = op.timestamps.astype(np.int64)
        ttl = self.config.default_ttl_seconds
        return not (ttl and expiry.stamp_default_ttl(op, ttl, expiry.now_us() if now is None else now))

    def _refuse_existing(self, ids: Sequence[str], now: int | None) -> None:
        """VectorExistsError when an id of an insert (not an upsert) is live at ``now`` (None: the clock)."""
        existing = self._existing(ids, now)
        if existing:
            shown = ", ".join(repr(i) for i in existing[:5])
            more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
            raise VectorExistsError(
                f"{len(existing)} id(s) already exist: {shown}{more}; use upsert to replace them"
            )

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
        self.memtable_indexer.kick(self.memtable)  # a memtable past memtable_index_rows: its graph grows

    def _apply_insert(self, op: InsertOp) -> None:
        vectors = op.vectors
        if self._metric == "cosine":  # in float64: huge and subnormal rows normalise exactly too
            vectors = distance.normalize_rows(vectors)
        if self.sealed or self.segments:
            ids = list(op.ids)
            for mt in self.sealed:  # sealed memtables take deletions only (sealed.py)
                for id_ in mt.id_keys() & set(ids):
                    mt.delete(id_)
            for seg in self.segments:  # an id lives in one place at most: memtable or one segment
                rows = seg.live_rows(ids)
                for row in rows[rows >= 0].tolist():
                    seg.delete_row(row)
        insert_metadata.settle(op)  # a replayed batch: scanned here (a live one was at its check)
        metadata = op.metadata if isinstance(op.metadata, MetadataColumn) else list(op.metadata)
        named = None
        if op.named_vectors:  # each name normalised under its own metric, as the default vector
            named = {name: distance.normalize_rows(col) if self.config.vectors[name].distance_metric == "cosine"
                     else col for name, col in op.named_vectors.items()}
        self.memtable.put_batch(list(op.ids), vectors, metadata, op.timestamps, op.expires_at,
                                op.sparse_vectors, op.scanned, named)

    def _apply_patch(self, patch: MetadataPatch, timestamp: int) -> None:
        where = self._locate(patch.id)
        if where is None:
            return  # deleted after the update was logged: nothing to change
        source, row = where
        old = source.metadata[row] if isinstance(source, Segment) else source.metadata_of(row)
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
            sparse = source.sparse_columns(np.array([row], dtype=np.int64))
            named = source.named_columns(np.array([row], dtype=np.int64))
            source.delete_row(row)
            self.memtable.put_batch([patch.id], vector, [new], ts, expires, sparse, named=named)
        elif source is not self.memtable:  # a sealed memtable's row: moved to the memtable, like a segment's
            rec = source.record(row)
            expires_of = source.expires_of(row)
            sparse = source.sparse_columns(np.array([row], dtype=np.int64))
            named = source.named_columns(np.array([row], dtype=np.int64))
            source.delete(patch.id)
            self.memtable.put_batch([patch.id], rec["vector"].reshape(1, -1), [new],
                                    np.array([timestamp or rec["timestamp"]], dtype=np.int64),
                                    None if source.expires_at is None else np.array([expires_of], dtype=np.int64),
                                    sparse, named=named)
        else:
            self.memtable.set_metadata(patch.id, new)

    def _remove(self, id_: str) -> None:
        if self.memtable.delete(id_) or any(mt.delete(id_) for mt in self.sealed):
            return
        self._remove_from_segments(id_)

    def _remove_from_segments(self, id_: str) -> None:
        for seg in self.segments:
            row = seg.row_of(id_)
            if row is not None:
                seg.delete_row(row)
                return

    def _existing(self, ids: Sequence[str], now: int | None = None) -> list[str]:
        """The ids of ``ids`` that are live and not expired at ``now`` (None: the clock), in their order
        (set operations, no per-id Python)."""
        found = self.memtable.id_keys() & ids
        for mt in self.sealed:
            found |= mt.id_keys() & ids
        listed = list(ids)
        for seg in self.segments:
            found.update(listed[i] for i in np.flatnonzero(seg.live_rows(listed) >= 0).tolist())
        if not found:
            return []
        if now is None:
            now = expiry.now_us()
        return [i for i in ids if i in found and self._locate_alive(i, now) is not None]

    def _locate(self, id_: str) -> tuple[Memtable | Segment, int] | None:
        row = self.memtable.row_of(id_)
        if row is not None:
            return self.memtable, row
        for mt in reversed(self.sealed):
            row = mt.row_of(id_)
            if row is not None:
                return mt, row
        for seg in self.segments:
            row = seg.row_of(id_)
            if row is not None:
                return seg, row
        return None
