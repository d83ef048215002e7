"""Build and read versioned payloads (frame + Avro datum), for the engine, SDK and servers.

``vector_insert`` goes through the Cython batch codec (numpy in, numpy out);
every other op is small and goes through fastavro with the schema from
:mod:`proximadb.codec.schemas`.

Garbage never reaches fastavro: :func:`decode_payload` first walks the datum
against its schema (``_check_datum``), refusing any length, count, boolean or
union index that is wrong, a declared string/array length larger than the
bytes left, and trailing bytes. fastavro then only decodes well-formed bytes
(its remaining failure, invalid UTF-8, is mapped to MalformedPayloadError too).
Memory is therefore bounded by the input: every item of every v1 schema takes
at least one byte, so no count can make fastavro build more than one Python
object per input byte. Callers still cap the payload size itself
(PayloadTooLargeError) before decoding.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from proximadb.codec.avro_batch import DecodedBatch, decode_vector_batch, encode_vector_batch
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


def decode_payload(buf: Any, *, expected_dim: int = -1) -> tuple[int, str, DecodedBatch | dict[str, Any]]:
    """Decode a frame: ``(schema_version, op_type, value)``.

    ``value`` is a :class:`DecodedBatch` for ``vector_insert`` (``expected_dim``
    applies to it) and a dict for every other op. Bytes that do not decode raise
    MalformedPayloadError; see also :func:`decode_frame`.
    """
    version, op_type, datum = decode_frame(buf)
    datum_start = len(memoryview(buf).cast("B")) - len(datum)
    if op_type == INSERT_OP:
        try:
            return version, op_type, decode_vector_batch(datum, expected_dim, version)
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
    try:
        _checker(op_type, version)(data, 0)
    except _Malformed as exc:
        raise MalformedPayloadError(
            f"malformed {OP_RECORDS[op_type]} datum at offset {exc.offset}: {exc.problem}"
        ) from None
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


_RECORD_KEYS = frozenset({"id", "vector", "metadata", "timestamp", "expires_at"})


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
) -> bytes:
    """A full ``vector_insert`` frame from record dicts or from ids + an (n, dim) matrix.

    ``records``: ``[{"id": str, "vector": [floats], "metadata"?: dict, "timestamp"?: int}]``.
    Every record needs an id here; a timestamp of 0 (the default) lets the server stamp it.
    ``expires_at`` (a record key, or a column of int | None) needs ``schema_version`` 2 or later.
    """
    if records is not None:
        if ids is not None or vectors is not None or metadata is not None or timestamps is not None \
                or expires_at is not None:
            raise ValidationError("give either records or ids/vectors/metadata/timestamps/expires_at, not both")
        ids, vectors, metadata, timestamps, expires_at = _columns(records)
    else:
        if ids is None:
            raise ValidationError("ids are required to encode an insert")
        if vectors is None:
            raise ValidationError("vectors are required to encode an insert")
        if isinstance(ids, str):
            raise ValidationError("ids must be a sequence of str, not a single string")
        ids = list(ids)
        for i, record_id in enumerate(ids):
            _check_id(record_id, i)
    datum = encode_vector_batch(ids, vectors, metadata, timestamps, upsert, expires_at, schema_version)
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
) -> tuple[list[str], np.ndarray, list[Any], list[int], list[int | None] | None]:
    if isinstance(records, Mapping):
        raise ValidationError("records must be a list of dicts, not a single dict")
    ids: list[str] = []
    rows: list[Any] = []
    metadata: list[Any] = []
    timestamps: list[int] = []
    expires: list[int | None] = []
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
    matrix = np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32)
    return ids, matrix, metadata, timestamps, (expires if any_expiry else None)


# ------------------------------------------------------------------ datum pre-check


class _Malformed(Exception):
    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"{problem} at offset {offset}")
        self.offset = offset
        self.problem = problem


# A checker takes (data, pos) and returns the position after the value it checked.
_Check = Callable[[bytes, int], int]


def _read_long(data: bytes, pos: int, what: str) -> tuple[int, int]:
    start = pos
    acc = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise _Malformed(start, f"truncated varint in {what}")
        if shift > 63:
            raise _Malformed(start, f"overlong varint (more than 10 bytes) in {what}")
        b = data[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    acc &= 0xFFFF_FFFF_FFFF_FFFF
    return (acc >> 1) ^ -(acc & 1), pos


def _check_int(data: bytes, pos: int) -> int:
    start = pos
    value, pos = _read_long(data, pos, "an int")
    if not -(2**31) <= value < 2**31:
        raise _Malformed(start, f"int out of the 32-bit range: {value}")
    return pos


def _check_long(data: bytes, pos: int) -> int:
    return _read_long(data, pos, "a long")[1]


def _check_boolean(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise _Malformed(pos, "truncated boolean")
    if data[pos] > 1:
        raise _Malformed(pos, f"invalid boolean byte {data[pos]} (must be 0 or 1)")
    return pos + 1


def _fixed_size(size: int, what: str) -> _Check:
    def check(data: bytes, pos: int) -> int:
        if len(data) - pos < size:
            raise _Malformed(pos, f"truncated {what}")
        return pos + size

    return check


def _check_bytes(data: bytes, pos: int) -> int:
    start = pos
    n, pos = _read_long(data, pos, "a string length")
    if n < 0:
        raise _Malformed(start, f"negative string length {n}")
    if n > len(data) - pos:
        raise _Malformed(start, f"string length {n} runs past the end of the datum ({len(data) - pos} bytes left)")
    return pos + n


def _blocks(item: _Check, what: str) -> _Check:
    """Array or map (item = key + value) blocks."""

    def check(data: bytes, pos: int) -> int:
        while True:
            start = pos
            count, pos = _read_long(data, pos, f"{what} block count")
            size = -1
            if count == 0:
                return pos
            if count < 0:
                count = -count
                size, pos = _read_long(data, pos, f"{what} block size")
                if size < 0 or size > len(data) - pos:
                    raise _Malformed(start, f"{what} block byte size {size} is negative or runs past the end")
            # Every item of a v1 schema takes at least one byte.
            if count > len(data) - pos:
                raise _Malformed(start, f"{what} block count {count} is larger than the bytes left could hold")
            block_start = pos
            for _ in range(count):
                pos = item(data, pos)
            if size >= 0 and pos - block_start != size:
                raise _Malformed(start, f"{what} block byte size {size} does not match its items ({pos - block_start})")

    return check


def _float_array(data: bytes, pos: int) -> int:
    while True:
        start = pos
        count, pos = _read_long(data, pos, "a float array block count")
        if count == 0:
            return pos
        if count < 0:
            count = -count
            size, pos = _read_long(data, pos, "a float array block size")
            if size != 4 * count:
                raise _Malformed(start, f"float array block byte size {size} is not 4 x {count}")
        if 4 * count > len(data) - pos:
            raise _Malformed(start, f"float array block of {count} floats runs past the end of the datum")
        pos += 4 * count


def _union(branches: list[_Check]) -> _Check:
    def check(data: bytes, pos: int) -> int:
        index, after = _read_long(data, pos, "a union index")
        if not 0 <= index < len(branches):
            raise _Malformed(pos, f"invalid union index {index} (must be 0..{len(branches) - 1})")
        return branches[index](data, after)

    return check


def _record(fields: list[_Check]) -> _Check:
    def check(data: bytes, pos: int) -> int:
        for field in fields:
            pos = field(data, pos)
        return pos

    return check


_PRIMITIVES: dict[str, _Check] = {
    "null": lambda data, pos: pos,
    "boolean": _check_boolean,
    "int": _check_int,
    "long": _check_long,
    "float": _fixed_size(4, "float"),
    "double": _fixed_size(8, "double"),
    "bytes": _check_bytes,
    "string": _check_bytes,
}


def _compile(schema: Any, named: dict[str, Any], done: dict[str, _Check]) -> _Check:
    """A checker for a parsed fastavro schema (named types resolved through ``named``)."""
    if isinstance(schema, list):
        return _union([_compile(branch, named, done) for branch in schema])
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema not in done:
            slot: list[_Check] = []
            done[schema] = lambda data, pos: slot[0](data, pos)  # allows recursive records
            slot.append(_compile(named[schema], named, done))
        return done[schema]
    kind = schema["type"]
    if kind == "record" or kind == "error":
        name = schema.get("name")
        check = _record([_compile(f["type"], named, done) for f in schema["fields"]])
        if name:
            done.setdefault(name, check)
        return check
    if kind == "array":
        if schema["items"] == "float":
            return _float_array
        return _blocks(_compile(schema["items"], named, done), "array")
    if kind == "map":
        value = _compile(schema["values"], named, done)

        def entry(data: bytes, pos: int) -> int:
            return value(data, _check_bytes(data, pos))

        return _blocks(entry, "map")
    if kind == "enum":
        return _union([_PRIMITIVES["null"]] * len(schema["symbols"]))
    if kind == "fixed":
        return _fixed_size(int(schema["size"]), "fixed")
    if kind in _PRIMITIVES:  # {"type": "long", "logicalType": ...}
        return _PRIMITIVES[kind]
    raise TypeError(f"unsupported Avro type in schema: {kind!r}")


@cache
def _checker(op_type: str, version: int) -> _Check:
    schema = op_schema(op_type, version)
    body = _compile(schema, schema.get("__named_schemas", {}), {})
    record = OP_RECORDS[op_type]

    def check(data: bytes, pos: int) -> int:
        end = body(data, pos)
        if end != len(data):
            raise _Malformed(end, f"{len(data) - end} trailing bytes after the {record} datum")
        return end

    return check
