"""``vector_insert`` frames of records that carry sparse vectors (schema v3): :func:`encode_insert` is
:func:`proximadb.codec.payload.encode_insert` with a ``sparse_vectors`` argument, for the callers above the
engine that build insert payloads (the SDK's plans, the service's JSON inserts, the cluster's shard split).

Records given as dicts may hold a ``"sparse_vectors"`` key (``{name: {"indices", "values"}}``); columns
take ``sparse_vectors=``: one such mapping (or None) per record, or ``dict[str, SparseColumn]``. Without any
sparse vector the frame is exactly the codec's; with some, the same columns go to
:func:`proximadb.codec.avro_batch.encode_vector_batch` with them (which checks them and refuses a schema
version below 3). The bytes are the codec's, documented in proximadb/codec/avro_batch.pyx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proximadb.codec import payload
from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.framing import encode_frame
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION
from proximadb.errors import ValidationError

SPARSE_KEY = "sparse_vectors"


def encode_insert(
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    ids: Sequence[str] | None = None,
    vectors: Any = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    timestamps: Any = None,
    upsert: bool = False,
    expires_at: Any = None,
    schema_version: int = CURRENT_SCHEMA_VERSION,
    sparse_vectors: Any = None,
) -> bytes:
    """A full ``vector_insert`` frame (see the module's documentation)."""
    if records is not None and not isinstance(records, Mapping) \
            and any(isinstance(r, Mapping) and SPARSE_KEY in r for r in records):
        if sparse_vectors is not None:
            raise ValidationError("give sparse vectors either in the records or as sparse_vectors=, not both")
        sparse_vectors = [r.get(SPARSE_KEY) if isinstance(r, Mapping) else None for r in records]
        records = [{k: v for k, v in r.items() if k != SPARSE_KEY} if isinstance(r, Mapping) else r
                   for r in records]
        if ids is not None or vectors is not None or metadata is not None or timestamps is not None \
                or expires_at is not None:
            raise ValidationError("give either records or ids/vectors/metadata/timestamps/expires_at, not both")
        ids, vectors, metadata, timestamps, expires_at = payload._columns(records)
        records = None
    if sparse_vectors is None:
        return payload.encode_insert(records, ids=ids, vectors=vectors, metadata=metadata, timestamps=timestamps,
                                     upsert=upsert, expires_at=expires_at, schema_version=schema_version)
    if records is not None:
        raise ValidationError("give either records (each with its own sparse_vectors) or columns with "
                              "sparse_vectors=, not both")
    if ids is None or vectors is None:
        raise ValidationError("ids and vectors are required to encode an insert")
    datum = encode_vector_batch(list(ids), vectors, metadata, timestamps, upsert, expires_at, schema_version,
                                sparse_vectors=sparse_vectors)
    return encode_frame(payload.INSERT_OP, datum, schema_version)


__all__ = ["encode_insert"]
