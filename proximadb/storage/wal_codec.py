"""How an operation becomes the body of a WAL frame, per strategy, and back.

The frame around the body (length, CRC, seq, op code, flags, schema version,
raw length) is described in ``wal_io.pyx``. The strategy is recorded in each
segment file's header, so a WAL written with one strategy replays after a
restart configured with the other; new files use the configured one.

``avro`` strategy (0) — the body is the versioned Avro payload frame of
``codec/framing.pyx``, all integers little-endian::

    u32 schema_version | u32 op_type_len | op_type (UTF-8) | Avro datum

with op type ``vector_insert`` (VectorBatch), ``vector_delete`` (VectorDelete,
ids only) or ``vector_update`` (VectorUpdate), encoded and decoded by
``proximadb.codec`` (Cython batch codec; a fastavro fallback is used when the
extensions are not built). When the client's payload is given it is stored
byte for byte. An insert logged from a client payload also
sets frame flag bit 1 (FLAG_TIMESTAMPS) and puts the authoritative write times
in front of the payload, because the server stamps records the client sent
with timestamp 0 and those stamps must replay identically::

    u32 n | n x i64 timestamps (µs since the epoch) | payload frame as above

``binary`` strategy (1) — packed for speed, schema_version is still recorded::

    InsertOp:  u8 upsert | u32 n | u32 dim
               | n x (u32 byte_len | UTF-8 id)
               | n*dim float32 (row-major; read back with one np.frombuffer)
               | n x i64 timestamps
               | [schema version >= 2: u8 has_expiry | has_expiry ? n x i64 expires_at
                  (µs since the epoch, INT64_MIN = never) : nothing]
               | [schema version >= 3: u32 names, then per name (sparse vectors, one CSR column):
                  u32 byte_len | UTF-8 name | (n+1) x i64 row_start | nnz x i32 indices
                  | nnz x f32 values, nnz = row_start[n]]
               | [schema version >= 4: u32 names (0 when the batch has none), then per name
                  (named dense vectors): u32 byte_len | UTF-8 name | u32 dim; then per name, in
                  that order, n*dim little-endian float32 (row-major, one row per record).
                  Names are unique and each dim is at least 1: the decoder refuses a frame
                  that breaks either (MalformedPayloadError)]
               | n x metadata map, each Avro-encoded as VectorRecord.metadata
                 (map<union{null, boolean, long, double, string, array<string>}>),
                 back to back to the end of the body (written and read by
                 wal_io.encode_metadata_maps / decode_metadata_maps in Cython)
    DeleteOp:  u32 n | n x (u32 byte_len | UTF-8 id)
    UpdateOp:  Avro VectorUpdate datum (schemaless, the frame's schema version)

The binary insert body is versioned by the frame's schema version: frames of
schema version 1 (written before v2 existed) have no expiry byte and replay as
they always did (frames before v3: no sparse section; before v4: no named vector section); new frames are
written at CURRENT_SCHEMA_VERSION.

No pickle. Compression (frame flag bit 0) is applied by wal.py to the whole body.
"""

from __future__ import annotations

import io
import struct
from typing import Any, NamedTuple

import lz4.block
import numpy as np
from fastavro import schemaless_writer

from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.framing import encode_frame
from proximadb.codec.payload import decode_datum, decode_payload, encode_payload
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, op_schema
from proximadb.errors import MalformedPayloadError
from proximadb.storage import insert_metadata, named_columns, wal_io
from proximadb.storage.metadata_store import MetadataColumn
from proximadb.storage.operations import (
    NO_EXPIRY,
    OP_DELETE,
    OP_INSERT,
    OP_UPDATE,
    DeleteOp,
    InsertOp,
    MetadataPatch,
    Operation,
    UpdateOp,
    expiry_or_none,
)
from proximadb.storage.sparse_column import SparseColumn, as_columns, row_dict

STRATEGY_AVRO = wal_io.STRATEGY_AVRO
STRATEGY_BINARY = wal_io.STRATEGY_BINARY
STRATEGIES: dict[str, int] = {"avro": STRATEGY_AVRO, "binary": STRATEGY_BINARY}
STRATEGY_NAMES: dict[int, str] = {v: k for k, v in STRATEGIES.items()}

OP_TYPES: dict[int, str] = {OP_INSERT: "vector_insert", OP_DELETE: "vector_delete", OP_UPDATE: "vector_update"}
_OP_CODES: dict[str, int] = {v: k for k, v in OP_TYPES.items()}

_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")
_INSERT_HEAD = struct.Struct("<BII")

Buffer = bytes | bytearray | memoryview


class EncodedOp(NamedTuple):
    """What wal.py writes: op code, schema version, frame flags, body parts (written back to back)."""

    op_code: int
    schema_version: int
    flags: int
    parts: list[Any]


def strategy_code(strategy: str | int) -> int:
    if isinstance(strategy, int) and strategy in STRATEGY_NAMES:
        return strategy
    try:
        return STRATEGIES[strategy]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown WAL strategy {strategy!r} (known: avro, binary)") from None


# ------------------------------------------------------------------ payload frames (the codec module)


def encode_op_payload(op: Operation, schema_version: int = CURRENT_SCHEMA_VERSION) -> bytes:
    """The versioned payload frame describing ``op`` (what a client would have sent)."""
    if isinstance(op, InsertOp):
        _check_insert(op)
        datum = encode_vector_batch(op.ids, op.vectors, op.metadata, op.timestamps, bool(op.upsert),
                                    op.expires_at, schema_version, op.sparse_vectors, op.named_vectors)
        return encode_frame("vector_insert", datum, schema_version)
    op_type, fields = op_to_datum(op)
    return encode_payload(op_type, fields, schema_version)


def decode_op_payload(body: Buffer) -> Operation:
    """The operation a versioned payload frame describes."""
    _version, op_type, value = decode_payload(body, metadata_maps=True)  # replay stores the maps as they are
    if op_type == "vector_insert":
        op = value.to_insert_op()  # type: ignore[union-attr]
        insert_metadata.settle(op)  # a bad map raises here, where the reader can say which frame
        return op
    return datum_to_op(op_type, value)  # type: ignore[arg-type]


# ------------------------------------------------------------------ op <-> Avro datum


def _check_insert(op: InsertOp) -> tuple[np.ndarray, np.ndarray, int, int]:
    n = len(op.ids)
    vectors = np.ascontiguousarray(op.vectors, dtype="<f4")
    if vectors.ndim != 2:
        if vectors.size == 0 and n == 0:
            vectors = vectors.reshape(0, 0)
        else:
            raise ValueError(f"InsertOp.vectors must be 2-D, got shape {vectors.shape}")
    timestamps = np.ascontiguousarray(op.timestamps, dtype="<i8")
    if vectors.shape[0] != n or len(op.metadata) != n or timestamps.shape != (n,):
        raise ValueError(
            f"InsertOp parts disagree: {n} ids, {vectors.shape[0]} vectors, "
            f"{len(op.metadata)} metadata, {timestamps.shape} timestamps"
        )
    return vectors, timestamps, n, int(vectors.shape[1])


def op_to_datum(op: Operation) -> tuple[str, dict[str, Any]]:
    """(op type, Avro datum) of an operation, for the avro strategy and the payload frame."""
    if isinstance(op, InsertOp):
        vectors, timestamps, n, _ = _check_insert(op)
        records = [
            {"id": op.ids[i], "vector": vectors[i].tolist(), "metadata": op.metadata[i],
             "timestamp": int(timestamps[i])}
            for i in range(n)
        ]
        if op.expires_at is not None:
            for rec, x in zip(records, op.expires_at.tolist(), strict=True):
                rec["expires_at"] = expiry_or_none(x)
        if op.sparse_vectors:
            for i, rec in enumerate(records):
                rec["sparse_vectors"] = row_dict(op.sparse_vectors, i)
        if op.named_vectors:
            for i, rec in enumerate(records):
                rec["named_vectors"] = named_columns.row_dict(op.named_vectors, i)
        return "vector_insert", {"upsert": bool(op.upsert), "records": records}
    if isinstance(op, DeleteOp):
        return "vector_delete", {"ids": list(op.ids), "filter": None}
    if isinstance(op, UpdateOp):
        return "vector_update", _update_datum(op)
    raise TypeError(f"not a WAL operation: {type(op).__name__}")


def _update_datum(op: UpdateOp) -> dict[str, Any]:
    return {
        "updates": [{"id": p.id, "metadata": p.metadata, "replace": bool(p.replace)} for p in op.updates],
        "timestamp": int(op.timestamp),
    }


def datum_to_op(op_type: str, datum: dict[str, Any]) -> Operation:
    """The operation an Avro datum of ``op_type`` describes."""
    if op_type == "vector_insert":
        records = datum["records"]
        n = len(records)
        if n:
            try:
                vectors = np.array([r["vector"] for r in records], dtype=np.float32)
            except ValueError:
                raise MalformedPayloadError("vectors of one batch differ in length") from None
            if vectors.ndim != 2:
                raise MalformedPayloadError("vectors of one batch differ in length")
        else:
            vectors = np.empty((0, 0), dtype=np.float32)
        expires = [r.get("expires_at") for r in records]
        sparse = as_columns([r.get("sparse_vectors") or None for r in records], n)
        return InsertOp(
            upsert=bool(datum["upsert"]),
            ids=[r["id"] for r in records],
            vectors=vectors,
            metadata=[r["metadata"] for r in records],
            timestamps=np.array([r["timestamp"] for r in records], dtype=np.int64),
            expires_at=(np.array([NO_EXPIRY if x is None else x for x in expires], dtype=np.int64)
                        if any(x is not None for x in expires) else None),
            sparse_vectors=sparse,
            named_vectors=named_columns.as_columns([r.get("named_vectors") or None for r in records], n),
        )
    if op_type == "vector_delete":
        if datum.get("filter") is not None:
            raise MalformedPayloadError("a logged delete must carry ids, not a filter")
        return DeleteOp(ids=list(datum["ids"]))
    if op_type == "vector_update":
        return UpdateOp(
            updates=[MetadataPatch(id=u["id"], metadata=u["metadata"], replace=u["replace"])
                     for u in datum["updates"]],
            timestamp=datum["timestamp"],
        )
    raise MalformedPayloadError(f"op type {op_type!r} is not a logged write")


# ------------------------------------------------------------------ encode


def encode(strategy: str | int, op: Operation, payload: Buffer | None = None,
           schema_version: int = CURRENT_SCHEMA_VERSION) -> EncodedOp:
    """Frame body of ``op``. With the avro strategy a client ``payload`` (which must
    describe ``op``) is stored as-is; the binary strategy ignores it."""
    code = strategy_code(strategy)
    op_code = op.op_code
    if code == STRATEGY_AVRO:
        if payload is None:
            return EncodedOp(op_code, schema_version, 0, [encode_op_payload(op, schema_version)])
        view = memoryview(payload)
        version, op_type = _payload_header(view)
        if _OP_CODES.get(op_type) != op_code:
            raise ValueError(f"payload op type {op_type!r} does not match {type(op).__name__}")
        if isinstance(op, InsertOp):
            timestamps = np.ascontiguousarray(op.timestamps, dtype="<i8")
            return EncodedOp(op_code, version, wal_io.FLAG_TIMESTAMPS,
                             [_U32.pack(timestamps.shape[0]), timestamps, view])
        return EncodedOp(op_code, version, 0, [view])
    if isinstance(op, InsertOp):
        vectors, timestamps, n, dim = _check_insert(op)
        metadata = op.metadata.blob if isinstance(op.metadata, MetadataColumn) else \
            wal_io.encode_metadata_maps(list(op.metadata))
        parts: list[Any] = [
            _INSERT_HEAD.pack(1 if op.upsert else 0, n, dim),
            wal_io.pack_str_list(list(op.ids)),
            vectors,
            timestamps,
        ]
        if schema_version >= 2:
            if op.expires_at is None:
                parts.append(b"\x00")
            else:
                expires = np.ascontiguousarray(op.expires_at, dtype="<i8")
                if expires.shape != (n,):
                    raise ValueError(f"InsertOp.expires_at has shape {expires.shape}, expected ({n},)")
                parts += [b"\x01", expires]
        elif op.expires_at is not None and bool((op.expires_at != NO_EXPIRY).any()):
            raise ValueError("expires_at needs schema version 2 or later")
        if schema_version >= 3:
            parts += _sparse_parts(op.sparse_vectors, n)
        elif op.sparse_vectors:
            raise ValueError("sparse_vectors need schema version 3 or later")
        if schema_version >= 4:
            parts += _named_parts(op.named_vectors, n)
        elif op.named_vectors:
            raise ValueError("named_vectors need schema version 4 or later")
        parts.append(metadata)
        return EncodedOp(op_code, schema_version, 0, parts)
    if isinstance(op, DeleteOp):
        return EncodedOp(op_code, schema_version, 0,
                         [_U32.pack(len(op.ids)), wal_io.pack_str_list(list(op.ids))])
    if isinstance(op, UpdateOp):
        out = io.BytesIO()
        schemaless_writer(out, op_schema("vector_update", schema_version), _update_datum(op))
        return EncodedOp(op_code, schema_version, 0, [out.getvalue()])
    raise TypeError(f"not a WAL operation: {type(op).__name__}")


def _sparse_parts(columns: dict[str, SparseColumn] | None, n: int) -> list[Any]:
    parts: list[Any] = [_U32.pack(len(columns or {}))]
    for name, col in (columns or {}).items():
        if col.row_start.shape != (n + 1,):
            raise ValueError(f"InsertOp.sparse_vectors[{name!r}] has {col.row_start.shape[0] - 1} rows, expected {n}")
        encoded = name.encode()
        parts += [_U32.pack(len(encoded)), encoded, np.ascontiguousarray(col.row_start, dtype="<i8"),
                  np.ascontiguousarray(col.indices, dtype="<i4"), np.ascontiguousarray(col.values, dtype="<f4")]
    # one body part, whatever the number of names (the WAL's gathered write takes at most 16 parts)
    return [b"".join(parts)] if len(parts) > 1 else parts


_NAMED_ARRAY_PARTS = 6  # up to this many names, each column is its own body part (at most 16 parts in all)


def _named_parts(columns: dict[str, np.ndarray] | None, n: int) -> list[Any]:
    """The named vector section: its header, then each name's (n, dim) float32 rows."""
    head: list[bytes] = [_U32.pack(len(columns or {}))]
    arrays: list[np.ndarray] = []
    for name, col in (columns or {}).items():
        mat = np.ascontiguousarray(col, dtype="<f4")
        if mat.ndim != 2 or mat.shape[0] != n or mat.shape[1] < 1:
            raise ValueError(f"InsertOp.named_vectors[{name!r}] has shape {mat.shape}, expected ({n}, dim >= 1)")
        encoded = name.encode()
        head += [_U32.pack(len(encoded)), encoded, _U32.pack(mat.shape[1])]
        arrays.append(mat)
    if len(arrays) > _NAMED_ARRAY_PARTS:
        return [b"".join(head), b"".join(a.tobytes() for a in arrays)]
    return [b"".join(head), *arrays]


def _decode_named(view: memoryview, pos: int, n: int) -> tuple[dict[str, np.ndarray] | None, int]:
    if pos + 4 > len(view):
        raise MalformedPayloadError("insert body too short for its named vector count")
    (count,) = _U32.unpack_from(view, pos)
    pos += 4
    dims: dict[str, int] = {}
    for _ in range(count):
        if pos + 4 > len(view):
            raise MalformedPayloadError("insert body too short for its named vectors")
        (name_len,) = _U32.unpack_from(view, pos)
        pos += 4
        if pos + name_len + 4 > len(view):
            raise MalformedPayloadError("insert body too short for its named vectors")
        name = _utf8_name(view, pos, name_len, "named vector")
        (dims[name],) = _U32.unpack_from(view, pos + name_len)
        if dims[name] < 1:
            raise MalformedPayloadError(f"insert body: named vector {name!r} has dimension 0")
        pos += name_len + 4
    if len(dims) != count:
        raise MalformedPayloadError("insert body: a named vector is given twice")
    out: dict[str, np.ndarray] = {}
    for name, dim in dims.items():
        if pos + 4 * n * dim > len(view):
            raise MalformedPayloadError(f"insert body too short for named vector {name!r} ({n} x {dim})")
        out[name] = np.frombuffer(view, dtype="<f4", count=n * dim, offset=pos).reshape(n, dim).astype(np.float32)
        pos += 4 * n * dim
    return out or None, pos


def _decode_sparse(view: memoryview, pos: int, n: int) -> tuple[dict[str, SparseColumn] | None, int]:
    (count,) = _U32.unpack_from(view, pos)
    pos += 4
    out: dict[str, SparseColumn] = {}
    for _ in range(count):
        (name_len,) = _U32.unpack_from(view, pos)
        pos += 4
        if pos + name_len + 8 * (n + 1) > len(view):
            raise MalformedPayloadError("insert body too short for its sparse vectors")
        name = _utf8_name(view, pos, name_len, "sparse vector")
        pos += name_len
        row_start = np.frombuffer(view, dtype="<i8", count=n + 1, offset=pos).astype(np.int64)
        pos += 8 * (n + 1)
        nnz = int(row_start[-1])
        if row_start[0] != 0 or bool((np.diff(row_start) < 0).any()) or pos + 8 * nnz > len(view):
            raise MalformedPayloadError(f"insert body: sparse vector {name!r} has a bad row_start")
        indices = np.frombuffer(view, dtype="<i4", count=nnz, offset=pos).astype(np.int32)
        pos += 4 * nnz
        values = np.frombuffer(view, dtype="<f4", count=nnz, offset=pos).astype(np.float32)
        pos += 4 * nnz
        out[name] = SparseColumn(row_start, indices, values)
    return out or None, pos


def _utf8_name(view: memoryview, pos: int, name_len: int, what: str) -> str:
    try:
        return bytes(view[pos : pos + name_len]).decode()
    except UnicodeDecodeError:
        raise MalformedPayloadError(f"insert body: a {what}'s name is not UTF-8") from None


def _payload_header(view: memoryview) -> tuple[int, str]:
    if len(view) < 8:
        raise MalformedPayloadError(f"payload frame of {len(view)} bytes is shorter than its 8-byte header")
    version, name_len = _U32X2.unpack_from(view)
    if name_len > len(view) - 8:
        raise MalformedPayloadError(f"op type length {name_len} runs past the end of the payload")
    try:
        return version, bytes(view[8 : 8 + name_len]).decode()
    except UnicodeDecodeError:
        raise MalformedPayloadError("op type is not UTF-8") from None


# ------------------------------------------------------------------ decode


def decode(strategy: int, op_code: int, schema_version: int, flags: int, body: Buffer) -> Operation:
    """Operation from an (uncompressed) frame body. Raises MalformedPayloadError,
    ValueError or UnicodeDecodeError on a body that does not decode."""
    try:
        return _decode(strategy, op_code, schema_version, flags, memoryview(body))
    except struct.error as exc:  # a fixed-size header cut short
        raise MalformedPayloadError(f"frame body too short for its header: {exc}") from None


def _decode(strategy: int, op_code: int, schema_version: int, flags: int, view: memoryview) -> Operation:
    if strategy == STRATEGY_AVRO:
        stamps = None
        if flags & wal_io.FLAG_TIMESTAMPS:
            (n,) = _U32.unpack_from(view)
            end = 4 + 8 * n
            if end > len(view):
                raise MalformedPayloadError(f"timestamp prefix of {n} entries runs past the body")
            stamps = np.frombuffer(view, dtype="<i8", count=n, offset=4).astype(np.int64)
            view = view[end:]
        op = decode_op_payload(view)
        if op.op_code != op_code:
            raise MalformedPayloadError(f"frame op code {op_code} but payload is a {type(op).__name__}")
        if stamps is not None:
            if not isinstance(op, InsertOp) or stamps.shape[0] != len(op.ids):
                raise MalformedPayloadError("timestamp prefix does not match the payload's records")
            op.timestamps = stamps
        return op
    if strategy != STRATEGY_BINARY:
        raise MalformedPayloadError(f"unknown WAL strategy code {strategy}")
    if op_code == OP_INSERT:
        return _decode_binary_insert(view, schema_version)
    if op_code == OP_DELETE:
        (n,) = _U32.unpack_from(view)
        ids, end = wal_io.unpack_str_list(view, 4, n)
        if end != len(view):
            raise MalformedPayloadError("delete body has trailing bytes")
        return DeleteOp(ids=ids)
    if op_code == OP_UPDATE:
        return datum_to_op("vector_update", decode_datum("vector_update", schema_version, view))
    raise MalformedPayloadError(f"unknown op code {op_code}")


def _decode_binary_insert(view: memoryview, schema_version: int = 1) -> InsertOp:
    upsert, n, dim = _INSERT_HEAD.unpack_from(view)
    ids, pos = wal_io.unpack_str_list(view, _INSERT_HEAD.size, n)
    vec_bytes = 4 * n * dim
    if pos + vec_bytes + 8 * n > len(view):
        raise MalformedPayloadError(f"insert body too short for {n} x {dim} vectors")
    vectors = np.frombuffer(view, dtype="<f4", count=n * dim, offset=pos).reshape(n, dim)
    pos += vec_bytes
    timestamps = np.frombuffer(view, dtype="<i8", count=n, offset=pos)
    pos += 8 * n
    expires = None
    if schema_version >= 2:
        if pos >= len(view):
            raise MalformedPayloadError("insert body too short for its expiry flag")
        has_expiry = view[pos]
        pos += 1
        if has_expiry > 1:
            raise MalformedPayloadError(f"insert body expiry flag is {has_expiry}, not 0 or 1")
        if has_expiry:
            if pos + 8 * n > len(view):
                raise MalformedPayloadError(f"insert body too short for {n} expiry times")
            expires = np.frombuffer(view, dtype="<i8", count=n, offset=pos).astype(np.int64, copy=True)
            pos += 8 * n
    sparse = None
    if schema_version >= 3:
        if pos + 4 > len(view):
            raise MalformedPayloadError("insert body too short for its sparse vector count")
        sparse, pos = _decode_sparse(view, pos, n)
    named = None
    if schema_version >= 4:
        named, pos = _decode_named(view, pos, n)
    metadata, pos = wal_io.decode_metadata_maps(view, pos, n)
    if pos != len(view):
        raise MalformedPayloadError(f"insert body has {len(view) - pos} trailing bytes")
    return InsertOp(
        upsert=bool(upsert),
        ids=ids,
        vectors=vectors.astype(np.float32, copy=True),
        metadata=metadata,
        timestamps=timestamps.astype(np.int64, copy=True),
        expires_at=expires,
        sparse_vectors=sparse,
        named_vectors=named,
    )


LZ4_MAX_RATIO = 255  # an LZ4 block inflates to at most ~255 x its size


def decode_frame_body(strategy: int, op_code: int, flags: int, schema_version: int, raw_len: int,
                      body: bytes | memoryview) -> Operation:
    """The operation in a frame body (decompressed first when the flags say LZ4): replay and ``wal dump``.

    Raises ValueError, MalformedPayloadError, LZ4BlockError, ... when it does not decode.
    """
    if flags & ~wal_io.KNOWN_FLAGS:
        raise ValueError(f"unknown frame flags 0x{flags:02x}")
    if flags & wal_io.FLAG_LZ4:
        # LZ4 cannot inflate more than 255x: a larger raw_len is damage, and must not
        # become a multi-GiB allocation (or an OverflowError past 2 GiB) in lz4.
        if raw_len > LZ4_MAX_RATIO * len(body):
            raise ValueError(f"LZ4 raw length {raw_len} is impossible for a {len(body)}-byte body")
        raw: Any = lz4.block.decompress(body, uncompressed_size=raw_len)
        if len(raw) != raw_len:
            raise ValueError(f"LZ4 body inflates to {len(raw)} bytes, header says {raw_len}")
    else:
        if raw_len != len(body):
            raise ValueError(f"raw length {raw_len} != body length {len(body)} for an uncompressed frame")
        raw = body
    return decode(strategy, op_code, schema_version, flags, raw)
