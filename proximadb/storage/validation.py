"""Input rules every write passes before anything is logged.

A rejected write raises a typed error whose message names the record (by
index and id) and the rule it broke; nothing is written. The same vector rule
(:func:`check_vectors`) applies to queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from proximadb.codec.metadata import plain_metadata_value
from proximadb.errors import DimensionMismatchError, InvalidVectorError, ValidationError
from proximadb.limits import Limits
from proximadb.storage import vector_check
from proximadb.storage.operations import NO_EXPIRY, Metadata

DEFAULT_LIMITS = Limits()
MAX_ID_BYTES = DEFAULT_LIMITS.max_id_bytes
MAX_METADATA_KEY_BYTES = 256
_PLAIN_VALUE_TYPES = frozenset({type(None), bool, int, float, str, list})
MAX_K = DEFAULT_LIMITS.max_k
# Under euclidean and dot_product a vector (stored or query) may have a squared L2 norm of at most
# float32's maximum / 8 (a norm of about 6.5e18). A distance between two such vectors is at most
# (|a| + |b|)^2 <= float32 max / 2: finite in float32, with a factor of 2 to spare for the rounding
# of float32 accumulation in the kernels. Cosine vectors are normalised, so their scale is free.
MAX_SQUARED_NORM = float(np.finfo(np.float32).max) / 8
# The latest client-supplied time (timestamp, expires_at): 9999-12-31T23:59:59.999999Z in
# microseconds since the epoch. The earliest is 0; negative times are refused.
MAX_TIMESTAMP_US = 253_402_300_799_999_999


def check_ids(ids: Sequence[object], *, allow_duplicates: bool = False, max_bytes: int = MAX_ID_BYTES) -> list[str]:
    ids = list(ids)
    # Fast path for the common case: all strings of 1..max_bytes/4 characters (<= max_bytes in UTF-8).
    if ids and set(map(type, ids)) == {str}:  # C-level check; a generator of isinstance costs 0.25 ms/1,000
        lengths = [len(i) for i in ids]  # type: ignore[arg-type]  # all str, checked above
        if min(lengths) > 0 and max(lengths) <= max_bytes // 4 and (allow_duplicates or len(set(ids)) == len(ids)):
            return ids  # type: ignore[return-value]
    seen: set[str] = set()
    out: list[str] = []
    for i, id_ in enumerate(ids):
        if not isinstance(id_, str):
            raise ValidationError(f"record {i}: id must be a string, not {type(id_).__name__}")
        if type(id_) is not str:  # numpy.str_ and other subclasses: the compiled id lookups take exact str
            id_ = str(id_)
        size = len(id_.encode("utf-8", "surrogatepass"))
        if size == 0 or size > max_bytes:
            limit = " (the server's max_id_bytes limit)" if size else ""
            raise ValidationError(f"record {i}: id must be 1 to {max_bytes} bytes of UTF-8{limit}, got {size}")
        if not allow_duplicates:
            if id_ in seen:
                raise ValidationError(f"record {i}: id {id_!r} appears more than once in this batch")
            seen.add(id_)
        out.append(id_)
    return out


def record_label(ids: Sequence[str]) -> Callable[[int], str]:
    """How errors name row ``i`` of a write batch: ``record 3 (id 'x')``."""
    return lambda i: f"record {i} (id {ids[i]!r})"


def query_label(i: int) -> str:
    return f"query {i}"


def check_vectors(vectors: np.ndarray, label: Callable[[int], str], *, cosine: bool) -> None:
    """The one rule for vector values, for every vector stored and every query (all APIs and the
    embedded engine), raising InvalidVectorError naming the first bad row:

    * every component finite (no NaN or infinity);
    * cosine: not all zero. Such a vector is then always normalised exactly, however huge or
      subnormal its components (``distance.normalize_rows`` works in float64);
    * euclidean / dot_product: a squared L2 norm of at most :data:`MAX_SQUARED_NORM`, so that the
      distance between any two vectors (and a query) is finite in float32.
    """
    if vectors.size == 0:
        return
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    row, col, kind = vector_check.first_bad_row(matrix, cosine, MAX_SQUARED_NORM)
    if kind == vector_check.NOT_FINITE:
        raise InvalidVectorError(
            f"{label(row)}: component {col} is {matrix[row, col]}; vectors must be finite (no NaN or infinity)"
        )
    if kind == vector_check.ALL_ZERO:
        raise InvalidVectorError(f"{label(row)}: an all-zero vector has no direction under the cosine metric")
    if kind == vector_check.NORM_OVER:
        wide = matrix[row].astype(np.float64)
        norm = float(np.dot(wide, wide))
        raise InvalidVectorError(
            f"{label(row)}: its squared norm {norm:.4g} is over {MAX_SQUARED_NORM:.4g} (a norm of about "
            f"{math.sqrt(MAX_SQUARED_NORM):.2g}), so distances to it would overflow float32; scale the vectors down"
        )


def check_timestamp(value: int, where: str, field: str, *, nullable: bool = False) -> None:
    """One client-supplied time (``timestamp``, ``expires_at``): microseconds since 1970-01-01 UTC
    from 0 to :data:`MAX_TIMESTAMP_US` (0 as a record timestamp: the server stamps the time)."""
    if nullable and value == NO_EXPIRY:
        return
    if not 0 <= value <= MAX_TIMESTAMP_US:
        raise ValidationError(
            f"{where}: {field} {value} is out of range; it must be microseconds since 1970-01-01 UTC "
            f"from 0 to {MAX_TIMESTAMP_US} (the end of the year 9999)"
        )


def check_timestamps(timestamps: np.ndarray, expires_at: np.ndarray | None, ids: Sequence[str]) -> None:
    """:func:`check_timestamp` for a batch: its timestamps and (schema v2) its expiry times."""
    for field, values, nullable in (("timestamp", timestamps, False), ("expires_at", expires_at, True)):
        if values is None or values.size == 0:
            continue
        bad = (values < 0) | (values > MAX_TIMESTAMP_US)
        if nullable:
            bad &= values != NO_EXPIRY
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            check_timestamp(int(values[row]), record_label(ids)(row), field, nullable=nullable)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def metadata_bytes(metadata: object, where: str = "metadata") -> int:
    """Check one record's metadata and return its size as ``max_metadata_bytes`` counts it, in one pass.

    The value union: null, boolean, long, double, string, array<string>. Values are flat by
    construction (no nested objects), so there is no depth to limit. The size is the UTF-8 bytes of
    keys and strings (+1 per list item), and 8 per number or boolean.
    """
    if metadata is None:
        return 0
    if not isinstance(metadata, dict):
        raise ValidationError(f"{where}: metadata must be an object, not {type(metadata).__name__}")
    size = 0
    for key, value in metadata.items():
        key_bytes = _utf8_len(key) if isinstance(key, str) else 0
        if not key_bytes or key_bytes > MAX_METADATA_KEY_BYTES:
            raise ValidationError(f"{where}: metadata keys must be strings of 1 to {MAX_METADATA_KEY_BYTES} bytes")
        size += key_bytes
        if value is None:
            continue
        if type(value) is str:
            size += _utf8_len(value)
            continue
        value = plain_metadata_value(value, key, where)  # the one rule (proximadb.codec.metadata)
        if isinstance(value, str):
            size += _utf8_len(value)
        elif isinstance(value, list):
            size += sum(map(_utf8_len, value)) + len(value)
        else:  # bool, int, float
            if isinstance(value, float) and not math.isfinite(value):
                raise ValidationError(f"metadata value of key {key!r} of {where} must be finite, not {value}")
            size += 8
    return size


def check_metadata(metadata: object, where: str, max_bytes: int = DEFAULT_LIMITS.max_metadata_bytes) -> Metadata:
    """:func:`metadata_bytes`, refusing more than ``max_bytes``; returns the metadata as the plain values
    it is logged, stored and read back as ({} for None; numpy scalars and tuples made plain)."""
    size = metadata_bytes(metadata, where)
    if size > max_bytes:
        raise ValidationError(
            f"{where}: metadata is {size} bytes, over the server's max_metadata_bytes limit of {max_bytes}"
        )
    if not metadata:
        return {}
    assert isinstance(metadata, dict)  # metadata_bytes refused anything else
    if any(type(v) not in _PLAIN_VALUE_TYPES for v in metadata.values()):  # numpy scalars, tuples...
        return {k: plain_metadata_value(v, k, where) for k, v in metadata.items()}
    return metadata


def check_k(k: object, max_k: int = MAX_K) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        over = " (the server's max_k limit)" if isinstance(k, int) and not isinstance(k, bool) and k > max_k else ""
        raise ValidationError(f"k must be an integer from 1 to {max_k}{over}, not {k!r}")
    return k


def check_search_knob(name: str, value: object, hi: int = 65536) -> int | None:
    """``ef`` / ``nprobe``: None (the collection's default) or an integer from 1 to ``hi``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise ValidationError(f"{name} must be an integer from 1 to {hi}, not {value!r}")
    return value


def query_matrix(vectors: object, dim: int, *, cosine: bool) -> np.ndarray:
    """Queries as a (m, dim) float32 C-contiguous matrix, checked by :func:`check_vectors`."""
    try:
        q = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValidationError("query vector must be a list of numbers") from None
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValidationError("query must be a vector or a non-empty list of vectors")
    if q.shape[1] != dim:
        raise DimensionMismatchError(f"query has dimension {q.shape[1]}, the collection has {dim}")
    check_vectors(q, query_label, cosine=cosine)
    return np.ascontiguousarray(q)


def check_sparse_names(columns: dict[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """An insert's sparse vectors name only sparse vectors the collection declares (``sparse_vectors`` setting)."""
    undeclared = sorted(set(columns) - set(declared))
    if undeclared:
        known = ", ".join(repr(n) for n in declared) or "none"
        raise ValidationError(
            f"sparse vector(s) {', '.join(repr(n) for n in undeclared)} not declared by the collection "
            f"(declared: {known}; add a name with update_collection(sparse_vectors=...))"
        )
    return columns

