"""The write operations the engine logs and applies.

Both WAL strategies decode to these objects on replay, and the engine applies
them the same way whether they come from a client or from the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from proximadb.storage.sparse_column import SparseColumn

MetadataValue = Union[None, bool, int, float, str, list[str]]  # noqa: UP007
Metadata = dict[str, MetadataValue]

# WAL op codes (one byte in every WAL frame header).
OP_INSERT = 1
OP_DELETE = 2
OP_UPDATE = 3

# expires_at of a record that never expires, in int64 arrays (the Avro null).
NO_EXPIRY = -(2**63)


def expiry_or_none(value: int) -> int | None:
    """A stored expires_at as the API shows it: None for NO_EXPIRY."""
    return None if value == NO_EXPIRY else int(value)


@dataclass(slots=True)
class InsertOp:
    """A batch of records; ``upsert`` replaces existing ids, otherwise they are an error."""

    upsert: bool
    ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, C-contiguous
    # A list of dicts, or the batch's maps still encoded (storage.metadata_store.MetadataColumn, from
    # decode_vector_batch(metadata_maps=True)): then ``scanned`` holds what the insert's check read from
    # them (storage/metadata_scan.pyx: sizes, fields, strings, entries), for the payload index.
    metadata: Sequence[Metadata]
    timestamps: np.ndarray  # (n,) int64, microseconds since the epoch
    # Schema v2: (n,) int64 expiry times (µs since the epoch), NO_EXPIRY where a record never
    # expires; None when no record of the batch has one (v1 payloads, most batches).
    expires_at: np.ndarray | None = None
    # Schema v3: per declared name, a CSR column over the batch's rows (sparse_column.py); None when no
    # record of the batch has a sparse vector.
    sparse_vectors: dict[str, SparseColumn] | None = None
    # Schema v4: per declared name, a C-contiguous float32 (n, dim) column over the batch's rows
    # (named_columns.py); None when the collection declares no named vectors.
    named_vectors: dict[str, np.ndarray] | None = None
    scanned: tuple[Any, ...] | None = None

    op_code = OP_INSERT


@dataclass(slots=True)
class DeleteOp:
    """Deletion of ids (a filter is resolved to ids before it is logged)."""

    ids: list[str]

    op_code = OP_DELETE


@dataclass(slots=True)
class MetadataPatch:
    id: str
    metadata: Metadata
    replace: bool = False  # True: swap the whole map; False: merge (None removes a key)


@dataclass(slots=True)
class UpdateOp:
    updates: list[MetadataPatch]
    timestamp: int = 0

    op_code = OP_UPDATE


Operation = Union[InsertOp, DeleteOp, UpdateOp]  # noqa: UP007
