"""Cluster mode: a Collection whose log of record is a shard log applies that log's entries in order.

Opened with ``StorageOptions.log_of_record = "external"``, a collection keeps no WAL; its
``wal`` attribute is an :class:`~proximadb.storage.log_of_record.ExternalLogPosition` (the last
applied log sequence), and :meth:`LogApplyPath.apply_log_entry` is its only write path. An
entry's payload is the versioned Avro frame a single-node client sends (codec/framing.pyx):

* ``vector_insert``: checked as a live insert is (``WritePath._check_insert``); timestamps of 0 and
  the collection's default TTL are stamped with the entry's *log time*, not the clock; an insert
  (not an upsert) of an id live at the log time is refused;
* ``vector_delete`` by ids, or by filter: the filter is resolved to ids here, against the state at
  this log position, so every replica deletes the same rows;
* ``vector_update``: metadata patches (a missing id is skipped, as WAL replay does).

The operation is then applied by ``WritePath._apply``, the one apply step live writes and WAL
replay use, and the position advances. Everything an entry's effect depends on is the state
at its position and the entry itself (its bytes and its log time, both the same on every
replica), never the replica's clock, so replicas that apply the same log end in the same state.
An entry that a live write would refuse (a bad batch, an existing id) is refused the same way on
every replica: it changes nothing, is logged, counted (``refused_entries``) and passed over.
That holds as long as the replicas share the collection's settings (catalog) and the request limits
(``StorageOptions.limits``: batch size, id and metadata bytes): cluster mode must give every node the
same ones (not enforced yet; the writer will check a batch against them before appending it).

Restart: the manifest's ``checkpoint_seq`` is the last applied sequence the segments hold
(manifest.py, ``"log": "external"``); entries applied after it lived in the memtable only and
are applied again from ``checkpoint_seq + 1``. Re-applying reproduces the same state because the
segments are exactly the checkpoint's state (as for WAL replay) and application is deterministic;
an entry whose sequence is not above the applied one is skipped (a log read twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from proximadb.codec.avro_batch import DecodedBatch
from proximadb.codec.payload import decode_payload
from proximadb.errors import (
    AlreadyExistsError,
    EngineClosedError,
    ExternalLogError,
    PayloadTooLargeError,
    UnknownOperationError,
    ValidationError,
)
from proximadb.filters import compile_filter
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.log_of_record import ExternalLogPosition
from proximadb.storage.operations import DeleteOp, MetadataPatch, Operation, UpdateOp
from proximadb.storage.validation import check_ids, check_metadata, check_timestamp

log = logging.getLogger("proximadb.collection")

REFUSED = (ValidationError, AlreadyExistsError, PayloadTooLargeError)  # what a live write would answer 4xx


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    seq: int
    outcome: str  # "applied", "skipped" (at or below the applied sequence) or "refused" (changed nothing)
    detail: str | None = None  # why it was refused


class LogApplyPath(CollectionState):
    """Opening in external-log mode, and applying a shard log's entries (see the module docstring)."""

    refused_entries: int = 0

    # ------------------------------------------------------------------ open
    def _open_external_log(self) -> ExternalLogPosition:
        """The position to resume from; a directory written with its own WAL is refused, a new one is marked."""
        manifest = self.manifest
        if manifest.log_of_record != "external":
            wal_dir = self.directory / "wal"
            if manifest.segments or manifest.checkpoint_seq or (wal_dir.exists() and any(wal_dir.iterdir())):
                raise ExternalLogError(
                    f"collection {self.config.name!r} ({self.directory}) was written with its own WAL; cluster "
                    f"mode applies a shard log and cannot take it over: nothing was changed"
                )
            manifest.log_of_record = "external"
            manifest.save(self.directory)  # from now on the directory opens in this mode only
        return ExternalLogPosition(self.config.name, manifest.checkpoint_seq)

    def _refuse_external_manifest(self) -> None:
        if self.manifest.log_of_record != "wal":
            raise ExternalLogError(
                f"collection {self.config.name!r} ({self.directory}) applies a shard log (cluster mode, manifest "
                f"log {self.manifest.log_of_record!r}) and has no WAL of its own: open it in cluster mode"
            )

    def external_position(self) -> ExternalLogPosition:
        """The applied position of an open external-log collection."""
        position = self.wal
        if position is None:
            raise EngineClosedError(f"collection {self.config.name} is closed")
        if not isinstance(position, ExternalLogPosition):
            raise ExternalLogError(f"collection {self.config.name!r} has its own WAL: it applies no shard log")
        return position

    @property
    def applied_seq(self) -> int:
        return self.external_position().last_seq

    # ------------------------------------------------------------------ apply
    def apply_log_entry(self, seq: int, payload: bytes | bytearray | memoryview, time_us: int) -> EntryOutcome:
        """Apply shard log entry ``seq`` (its payload frame, its log time in µs since the epoch)."""
        if time_us <= 0:
            raise ValueError(f"log entry {seq} has no log time; stamping needs one that every replica shares")
        with self._lock:
            position = self.external_position()
            if seq <= position.last_seq:
                return EntryOutcome(seq, "skipped")
            try:
                op = self._entry_operation(payload, time_us)
            except REFUSED as exc:
                position.advance(seq)
                self.refused_entries += 1
                log.warning("collection %s: log entry %d refused on every replica, nothing changed: %s",
                            self.config.name, seq, exc)
                return EntryOutcome(seq, "refused", str(exc))
            if op is not None:
                self._apply(op)
            position.advance(seq)
            self._maybe_flush()
        return EntryOutcome(seq, "applied")

    def _entry_operation(self, payload: bytes | bytearray | memoryview, now: int) -> Operation | None:
        """The operation an entry means at this position (None: nothing to do). Raises what a live write would."""
        limits = self.options.limits
        # named vectors checked against the declared ones, as Collection.insert_payload
        _version, op_type, value = decode_payload(payload, expected_dim=self.dim, metadata_maps=True,
                                                  named_dims=self.config.named_dims)
        if isinstance(value, DecodedBatch):
            op = value.to_insert_op()
            self._check_insert(op, now, applying=True)
            if not op.ids:
                return None
            if not op.upsert:
                self._refuse_existing(op.ids, now)
            return op
        if op_type == "vector_delete":
            return self._resolve_delete(value, now)
        if op_type == "vector_update":
            check_timestamp(value["timestamp"], "vector_update", "timestamp")
            patches = []
            for patch in value["updates"]:
                check_ids([patch["id"]], max_bytes=limits.max_id_bytes)
                plain = check_metadata(patch["metadata"], f"id {patch['id']!r}", limits.max_metadata_bytes)
                patches.append(MetadataPatch(patch["id"], dict(plain), bool(patch["replace"])))
            return UpdateOp(patches, int(value["timestamp"])) if patches else None
        raise UnknownOperationError(f"a shard log entry must be a write, not {op_type!r}")

    def _resolve_delete(self, datum: dict[str, Any], now: int) -> DeleteOp | None:
        """Ids, or the ids a filter matches at this position (rows alive at the entry's log time)."""
        if datum.get("filter"):
            flt = compile_filter(datum["filter"])
            if flt is None:
                raise ValidationError("delete by filter needs a non-empty filter")
            ids = [part_ids[row] for _, part_ids, hits in self._live_matches(flt, now)
                   for row in np.flatnonzero(hits).tolist()]
        else:
            ids = check_ids(datum["ids"], allow_duplicates=True, max_bytes=self.options.limits.max_id_bytes)
            ids = list(dict.fromkeys(ids))
        return DeleteOp(ids) if ids else None
