"""Build and read versioned payloads (frame + Avro datum), for the engine, SDK and servers.

``vector_insert`` goes through the Cython batch codec (numpy in, numpy out);
every other op is small and goes through fastavro with the schema from
:mod:`proximadb.codec.schemas`.

Garbage never reaches fastavro: :func:`decode_payload` first walks the datum
against its schema (compiled here into a program for the compiled checker
:mod:`proximadb.codec.avro_check`, which uses the Avro primitives the insert
codec uses), refusing any length, count, boolean or union index that is wrong,
a declared string/array length larger than the bytes left, and trailing bytes.
fastavro then only decodes well-formed bytes (its remaining failure, invalid
UTF-8, is mapped to MalformedPayloadError too).
Memory is therefore bounded by the input: every item of every v1 schema takes
at least one byte, so no count can make fastavro build more than one Python
object per input byte. Callers still cap the payload size itself
(PayloadTooLargeError) before decoding.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from proximadb.codec.avro_batch import DecodedBatch, decode_vector_batch, encode_vector_batch
from proximadb.codec.avro_check import OPCODES, check_datum
from proximadb.codec.framing import decode_frame, encode_frame
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, OP_RECORDS, op_schema
from proximadb.errors import DimensionMismatchError, MalformedPayloadError, ValidationError

__all__ = ["decode_payload", "encode_insert", "encode_payload"]

INSERT_OP = "vector_insert"

# Everything fastavro is known to raise on bytes that are not a valid datum.
_FASTAVRO_DECODE_ERRORS = (
    EOFError,
    StopIteration,
    ValueError,  # includes UnicodeDecodeError
    IndexError,
    KeyError,
    TypeError,
    MemoryError,
    OverflowError,
    RecursionError,
    struct.error,
)


def encode_payload(
    op_type: str, datum: Mapping[str, Any], schema_version: int = CURRENT_SCHEMA_VERSION, *, trusted: bool = False
) -> bytes:
    """Frame ``datum`` (a dict shaped like the op's Avro record) as ``op_type``.

    ``vector_insert`` datums are accepted too (``{"upsert", "records"}``), but
    :func:`encode_insert` is the fast way to build them. ``trusted=True`` skips
    fastavro's validate() (costly on unions: it builds an exception per branch
    tried) for datums the server built itself from checked data.
    """
    schema = op_schema(op_type, schema_version)
    record = OP_RECORDS[op_type]
    if not isinstance(datum, Mapping):
        raise ValidationError(f"{op_type} datum must be a dict, got {type(datum).__name__}")
    missing = [f["name"] for f in schema["fields"] if f["name"] not in datum and "default" not in f]
    if missing:
        raise ValidationError(f"{op_type} datum is missing required field(s) of {record}: {', '.join(missing)}")
    try:
        # validate() first: the writer alone coerces silently (e.g. "no" to True for a boolean).
        if not trusted:
            validate(datum, schema, raise_errors=True, strict=True)
        out = io.BytesIO()
        schemaless_writer(out, schema, datum, strict_allow_default=True)
    except AvroValidationError as exc:
        raise ValidationError(f"{op_type} datum does not match the {record} schema: {_avro_errors(exc)}") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
        raise ValidationError(f"{op_type} datum does not match the {record} schema: {exc}") from None
    return encode_frame(op_type, out.getbuffer(), schema_version)


_SCHEMA_NAME = re.compile(r"'name': '([^']+)'")


def _avro_errors(exc: AvroValidationError) -> str:
    """fastavro's errors, "path is <value> of type <type> expected <schema>", without whole schemas."""
    out = []
    for error in getattr(exc, "errors", None) or [str(exc)]:
        head, sep, expected = str(error).partition(" expected ")
        if expected.startswith("{"):
            name = _SCHEMA_NAME.search(expected)
            expected = f"record {name.group(1)}" if name else "a record"
        if len(head) > 200:
            head = head[:200] + "..."
        out.append(head + sep + expected)
    return "; ".join(out)


def decode_payload(buf: Any, *, expected_dim: int = -1, metadata_maps: bool = False,
                   named_dims: Mapping[str, int] | None = None) -> tuple[int, str, DecodedBatch | dict[str, Any]]:
    """Decode a frame: ``(schema_version, op_type, value)``.

    ``value`` is a :class:`DecodedBatch` for ``vector_insert`` (``expected_dim``, ``metadata_maps``
    and ``named_dims``, see decode_vector_batch, apply to it) and a dict for every
    other op. Bytes that do not decode raise MalformedPayloadError; see also :func:`decode_frame`.
    """
    version, op_type, datum = decode_frame(buf)
    datum_start = len(memoryview(buf).cast("B")) - len(datum)
    if op_type == INSERT_OP:
        try:
            return version, op_type, decode_vector_batch(datum, expected_dim, version, metadata_maps, named_dims)
        except MalformedPayloadError as exc:
            raise MalformedPayloadError(f"{exc.message} (the datum starts at frame offset {datum_start})") from None
    try:
        return version, op_type, decode_datum(op_type, version, datum)
    except MalformedPayloadError as exc:
        raise MalformedPayloadError(f"{exc.message} (the datum starts at frame offset {datum_start})") from None


def decode_datum(op_type: str, version: int, datum: Any) -> dict[str, Any]:
    """A bare Avro datum of ``op_type`` (not vector_insert) as a dict: bounds-checked first, so a
    declared length can never make fastavro allocate more than the input could hold."""
    schema = op_schema(op_type, version)
    data = bytes(datum)
    check_datum(data, _program(op_type, version), OP_RECORDS[op_type])
    stream = io.BytesIO(data)
    try:
        value = schemaless_reader(stream, schema, None)
    except _FASTAVRO_DECODE_ERRORS as exc:
        raise MalformedPayloadError(f"malformed {OP_RECORDS[op_type]} datum: {type(exc).__name__}: {exc}") from None
    if stream.tell() != len(data):  # the checker already refuses this; kept as the contract
        raise MalformedPayloadError(
            f"malformed {OP_RECORDS[op_type]} datum: {len(data) - stream.tell()} trailing bytes "
            f"at offset {stream.tell()}"
        )
    return value  # type: ignore[return-value]


_RECORD_KEYS = frozenset({"id", "vector", "metadata", "timestamp", "expires_at", "sparse_vectors", "named_vectors"})


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
    named_vectors: Any = None,
) -> bytes:
    """A full ``vector_insert`` frame from record dicts or from ids + an (n, dim) matrix.

    ``records``: ``[{"id": str, "vector": [floats], "metadata"?: dict, "timestamp"?: int}]``.
    Every record needs an id here; a timestamp of 0 (the default) lets the server stamp it.
    ``expires_at`` (a record key, or a column of int | None) needs ``schema_version`` 2 or later;
    ``sparse_vectors`` (a record key ``{name: {"indices", "values"}}``, or per record such a mapping or
    None, or ``dict[str, SparseColumn]``) version 3 or later; ``named_vectors`` (a record key ``{name:
    vector}``, or ``{name: (n, dim) array-like}``, or per record such a mapping) version 4 or later.
    """
    if records is not None:
        if ids is not None or vectors is not None or metadata is not None or timestamps is not None \
                or expires_at is not None or sparse_vectors is not None or named_vectors is not None:
            raise ValidationError("give either records or ids/vectors/metadata/timestamps/expires_at/sparse_vectors/"
                                  "named_vectors, not both")
        ids, vectors, metadata, timestamps, expires_at, sparse_vectors, named_vectors = _columns(records)
    else:
        if ids is None:
            raise ValidationError("ids are required to encode an insert")
        if vectors is None:
            raise ValidationError("vectors are required to encode an insert")
        if isinstance(ids, str):
            raise ValidationError("ids must be a sequence of str, not a single string")
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)  # numpy strings -> str
        for i, record_id in enumerate(ids):
            _check_id(record_id, i)
            if type(record_id) is not str:  # a str subclass (numpy.str_): the encoder takes exact str
                ids[i] = str(record_id)
    datum = encode_vector_batch(ids, vectors, metadata, timestamps, upsert, expires_at, schema_version,
                                sparse_vectors, named_vectors)
    return encode_frame(INSERT_OP, datum, schema_version)


def _check_id(record_id: object, index: int) -> None:
    if record_id is None:
        raise ValidationError(f"record {index} has no id")
    if not isinstance(record_id, str):
        raise ValidationError(f"record {index}: id must be a str, got {type(record_id).__name__}")
    if not record_id:
        raise ValidationError(f"record {index}: id must not be empty")


def _columns(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[str], np.ndarray, list[Any], list[int], list[int | None] | None, list[Any] | None,
           list[Any] | None]:
    if isinstance(records, Mapping):
        raise ValidationError("records must be a list of dicts, not a single dict")
    ids: list[str] = []
    rows: list[Any] = []
    metadata: list[Any] = []
    timestamps: list[int] = []
    expires: list[int | None] = []
    sparse: list[Any] = []
    named: list[Any] = []
    any_expiry = False
    dim = -1
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValidationError(f"record {i} must be a dict, got {type(record).__name__}")
        unknown = set(record) - _RECORD_KEYS
        if unknown:
            raise ValidationError(
                f"record {i} has unknown keys {sorted(map(str, unknown))} (allowed: {sorted(_RECORD_KEYS)})"
            )
        record_id = record.get("id")
        _check_id(record_id, i)
        vector = record.get("vector")
        if vector is None:
            raise ValidationError(f"record {i} (id {record_id!r}) has no vector")
        try:
            row = np.asarray(vector, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"record {i} (id {record_id!r}): vector must be a list of numbers: {exc}") from None
        if row.ndim != 1:
            raise ValidationError(f"record {i} (id {record_id!r}): vector must be 1-D, got shape {row.shape}")
        if dim < 0:
            dim = row.shape[0]
        elif row.shape[0] != dim:
            raise DimensionMismatchError(
                f"record {i} (id {record_id!r}) has dimension {row.shape[0]}, expected {dim} "
                "(the dimension of record 0; all records of a batch must have the same dimension)"
            )
        timestamp = record.get("timestamp", 0)
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, np.integer)):
            raise ValidationError(
                f"record {i} (id {record_id!r}): timestamp must be an int, got {type(timestamp).__name__}"
            )
        ids.append(record_id)  # type: ignore[arg-type]  # checked by _check_id
        rows.append(row)
        metadata.append(record.get("metadata"))
        timestamps.append(int(timestamp))
        expiry = record.get("expires_at")
        if expiry is not None:
            if isinstance(expiry, bool) or not isinstance(expiry, (int, np.integer)):
                raise ValidationError(
                    f"record {i} (id {record_id!r}): expires_at must be an int or None, got {type(expiry).__name__}"
                )
            any_expiry = True
            expiry = int(expiry)
        expires.append(expiry)
        sparse.append(record.get("sparse_vectors"))
        named.append(record.get("named_vectors"))
    matrix = np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32)
    any_sparse = any(s is not None for s in sparse)
    any_named = any(v for v in named)
    return (ids, matrix, metadata, timestamps, (expires if any_expiry else None), (sparse if any_sparse else None),
            (named if any_named else None))


# ------------------------------------------------------------------ datum pre-check


def _compile(schema: Any, named: dict[str, Any], prog: list[int], done: dict[str, int]) -> int:
    """Append the nodes of a parsed fastavro schema to ``prog``; return the root node's index.

    The node layout is documented in :mod:`proximadb.codec.avro_check`, which walks it."""
    if isinstance(schema, list):
        return _node(prog, "union", [_compile(b, named, prog, done) for b in schema])
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _node(prog, schema, [])
        if schema not in done:
            return _compile(named[schema], named, prog, done)
        return done[schema]
    kind = schema["type"]
    if kind in ("record", "error"):
        at = len(prog)
        count = len(schema["fields"])
        prog.extend([OPCODES["record"], count] + [0] * count)  # children filled in below
        if schema.get("name"):
            done.setdefault(schema["name"], at)  # a recursive reference lands here
        for i, f in enumerate(schema["fields"]):
            prog[at + 2 + i] = _compile(f["type"], named, prog, done)
        return at
    if kind == "array":
        if schema["items"] == "float":
            return _node(prog, "float_array", [])
        item = _compile(schema["items"], named, prog, done)
        return _node(prog, "array", [item])
    if kind == "map":
        return _node(prog, "map", [_compile(schema["values"], named, prog, done)])
    if kind == "enum":
        null = _node(prog, "null", [])
        return _node(prog, "union", [null] * len(schema["symbols"]))
    if kind == "fixed":
        return _node(prog, "fixed", [int(schema["size"])], children=False)
    if kind in _PRIMITIVES:  # {"type": "long", "logicalType": ...}
        return _node(prog, kind, [])
    raise TypeError(f"unsupported Avro type in schema: {kind!r}")


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _node(prog: list[int], kind: str, operands: list[int], *, children: bool = True) -> int:
    at = len(prog)
    opcode = OPCODES["string" if kind == "bytes" else kind]
    if kind in ("union", "record") and children:
        prog.extend([opcode, len(operands), *operands])
    else:
        prog.extend([opcode, *operands])
    return at


@cache
def _program(op_type: str, version: int) -> np.ndarray:
    """The checker program of an op's schema: node 0 is ``RECORD 1 <the op's record>``."""
    schema = op_schema(op_type, version)
    prog: list[int] = [OPCODES["record"], 1, 0]
    prog[2] = _compile(schema, schema.get("__named_schemas", {}), prog, {})
    return np.array(prog, dtype=np.int64)
