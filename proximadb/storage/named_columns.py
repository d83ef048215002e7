"""Named dense vectors (schema v4) as numpy columns: one float32 ``(n, dim)`` matrix per name over a run of rows.

A collection may declare named vectors besides its default one (``vectors={"title": {"dimension": 384,
"distance_metric": "cosine"}}``; the set is fixed at creation). Every record then carries every declared
name, with that name's dimension and finite floats, and no other name. A batch holds them as
``dict[str, np.ndarray]`` (``DecodedBatch.named_vectors``, ``InsertOp.named_vectors``): C-contiguous
float32, one row per record, in the batch's record order; ``None`` when the batch has none. Nothing
per row lives on the Python heap.

The compiled decoder (codec/avro_batch.pyx with codec/_named.pxd) checks payloads against the declared
names and dimensions; :func:`as_columns` checks what Python code hands the encoder or the WAL (the same
rules, the same messages: each names the vector and the record). Names: ``NAMED_VECTOR_NAME_PATTERN``,
at most ``MAX_NAMED_VECTORS`` per collection (proximadb.limits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from proximadb.errors import (
    CorruptionError,
    DimensionMismatchError,
    InvalidVectorError,
    MalformedPayloadError,
    ValidationError,
)
from proximadb.limits import MAX_NAMED_VECTORS, NAMED_VECTOR_NAME_PATTERN
from proximadb.storage.validation import check_vectors

if TYPE_CHECKING:
    from proximadb.storage.catalog import NamedVectorConfig

_NAME = re.compile(NAMED_VECTOR_NAME_PATTERN)

NamedColumns = dict[str, np.ndarray]

# Problem kinds reported by the compiled walk (codec/_named.pxd, NV_*), turned into messages by problem().
NAME, UNKNOWN, TWICE, MISSING, DIMENSION, NOT_FINITE, TOO_MANY, EMPTY = range(1, 9)


def name_ok(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _bad_name(name: object, where: str) -> InvalidVectorError:
    return InvalidVectorError(f"{where}named vector name {name!r} must be 1 to 64 characters of letters, digits, "
                              "'_' or '-'")


def check_declared(declared: Mapping[str, int]) -> dict[str, int]:
    """The declared names and dimensions (a collection's ``vectors``: name -> dimension), checked."""
    if len(declared) > MAX_NAMED_VECTORS:
        raise ValidationError(f"{len(declared)} named vectors declared; at most {MAX_NAMED_VECTORS} are allowed")
    out: dict[str, int] = {}
    for name, dim in declared.items():
        if not name_ok(name):
            raise _bad_name(name, "")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValidationError(f"named vector {name!r}: dimension must be a positive integer, not {dim!r}")
        out[name] = int(dim)
    return out


def problem(kind: int, name: str, record: int, record_id: str | None, *, declared: bool, position: int = 0,
            got: int = 0, expected: int = 0, value: float = 0.0) -> ValidationError:
    """The error for a rule a record broke (``declared``: the names and dimensions are the collection's,
    else record 0's, which every record of the batch must then match)."""
    where = f"record {record}" + (f" (id {record_id!r})" if record_id is not None else "")
    source = "declared by the collection" if declared else "given by record 0 (every record of a batch carries " \
        "the same named vectors)"
    if kind == NAME:
        return _bad_name(name, f"{where}: ")
    if kind == UNKNOWN:
        return InvalidVectorError(f"{where}: named vector {name!r} is not one of the named vectors {source}")
    if kind == TWICE:
        return InvalidVectorError(f"{where}: named vector {name!r} is given twice")
    if kind == MISSING:
        return InvalidVectorError(f"{where}: named vector {name!r} is missing (every record carries every named "
                                  f"vector {source})")
    if kind == DIMENSION:
        return DimensionMismatchError(f"{where}: named vector {name!r} has dimension {got}, expected {expected} "
                                      f"({source})")
    if kind == NOT_FINITE:
        return InvalidVectorError(f"{where}: named vector {name!r} has a value that is not finite ({value}) at "
                                  f"position {position}")
    if kind == TOO_MANY:
        return InvalidVectorError(f"{where}: more than {MAX_NAMED_VECTORS} named vectors")
    if kind == EMPTY:
        return InvalidVectorError(f"{where}: named vector {name!r} is empty (a named vector has dimension >= 1)")
    return ValidationError(f"{where}: named vector {name!r} is invalid")


def as_columns(value: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None, n: int,
               ids: Sequence[str] | None = None) -> NamedColumns | None:
    """Named vectors as checked columns: ``{name: (n, dim) array-like}`` or, per record, ``{name: vector}``
    (every record the same names; None = no named vector). ``None`` when there are none. The rules of the
    module's documentation (ValidationError naming the vector and the record)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        columns = dict(value)
    else:
        columns = _from_rows(value, n, ids)
    if not columns:
        return None
    check_declared({name: 1 for name in columns})
    out: NamedColumns = {}
    for name, col in columns.items():
        try:
            mat = np.ascontiguousarray(col, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InvalidVectorError(f"named vector {name!r} must be numbers, one vector per record: {exc}") from None
        if mat.ndim != 2 or mat.shape[0] != n:
            raise InvalidVectorError(f"named vector {name!r} must be an ({n}, dim) array, got shape {mat.shape}")
        if mat.shape[1] == 0:
            raise problem(EMPTY, name, 0, ids[0] if ids else None, declared=False)
        finite = np.isfinite(mat)
        if not finite.all():
            r, pos = (int(x) for x in np.argwhere(~finite)[0])
            raise problem(NOT_FINITE, name, r, ids[r] if ids is not None and r < len(ids) else None,
                          declared=False, position=pos, value=float(mat[r, pos]))
        out[name] = mat
    return out


def _from_rows(rows: Sequence[Mapping[str, Any] | None], n: int, ids: Sequence[str] | None) -> NamedColumns:
    rows = list(rows)
    if len(rows) != n:
        raise ValidationError(f"got named vectors for {len(rows)} records, expected {n}")

    def id_of(r: int) -> str | None:
        return ids[r] if ids and r < len(ids) else None

    first = (rows[0] or {}) if rows else {}
    names = list(first)
    for r, row in enumerate(rows):
        given = dict(row or {})
        for name in given:
            if name not in first:
                if not first:  # record 0 is the one missing it: say so, not that record r's name is unknown
                    where = "record 0" + (f" (id {id_of(0)!r})" if id_of(0) is not None else "")
                    raise InvalidVectorError(
                        f"{where} has no named vectors, record {r} has {name!r} (every record of a batch carries "
                        "the same named vectors)")
                raise problem(UNKNOWN, str(name), r, id_of(r), declared=False)
        for name in names:
            if name not in given:
                raise problem(MISSING, name, r, id_of(r), declared=False)
    out: NamedColumns = {}
    for name in names:
        if not name_ok(name):
            raise _bad_name(name, "")
        sizes = [_numbers_length(row[name], name, r, id_of(r)) for r, row in enumerate(rows)]  # type: ignore[index]
        for r, size in enumerate(sizes):
            if size != sizes[0]:
                raise problem(DIMENSION, name, r, id_of(r), declared=False, got=size, expected=sizes[0])
        try:
            out[name] = np.array([row[name] for row in rows], dtype=np.float32)  # type: ignore[index]
        except (ValueError, TypeError, OverflowError) as exc:  # checked above: only exotic number types get here
            raise InvalidVectorError(f"named vector {name!r} must be lists of numbers: {exc}") from None
    return out


def _numbers_length(value: object, name: str, r: int, record_id: str | None) -> int:
    """The length of record r's vector ``name``: a non-string sequence or 1-D array of real numbers, else
    InvalidVectorError naming the record and the vector."""
    where = f"record {r}" + (f" (id {record_id!r})" if record_id is not None else "")
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.dtype.kind in "iuf":
            return int(value.shape[0])
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        if all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in value):
            return len(value)
    raise InvalidVectorError(f"{where}: named vector {name!r} must be a list of numbers, not "
                             f"{_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_named_batch(ids: Sequence[str], named_vectors: Mapping[str, np.ndarray] | None,
                      declared: Mapping[str, NamedVectorConfig]) -> None:
    """An insert batch's named vectors (``InsertOp.ids`` and ``.named_vectors``) against a collection's
    declaration (name -> NamedVectorConfig): exactly the declared names, each ``(n, dim)`` of finite floats, a
    cosine one not all zero (it is normalised like the default vector). The one check for every batch that
    reaches a log or a memtable: a local collection's write path and WAL replay, a cluster coordinator and
    ClusterNode.insert before they log. The decoder checked a client's payload already; this checks what comes
    any other way (a log entry, an InsertOp built in code)."""
    given = named_vectors or {}
    if set(given) != declared.keys():
        raise MalformedPayloadError(
            f"the batch carries named vectors {sorted(given) or 'none'}, the collection declares "
            f"{sorted(declared) or 'none'} (every record carries every declared named vector)")
    n = len(ids)
    for name, cfg in declared.items():
        column = given[name]
        if column.shape != (n, cfg.dimension):
            raise DimensionMismatchError(f"named vector {name!r}: the batch holds {column.shape}, expected "
                                         f"({n}, {cfg.dimension})")
        check_vectors(column, _label(ids, name), cosine=cfg.distance_metric == "cosine")


def check_stored(where: object, named: Mapping[str, np.ndarray], declared: Mapping[str, int],
                 against: str = "the collection declares") -> None:
    """Stored named vectors (a segment's ``named``, a row's columns) have exactly the names and dimensions
    ``declared`` (name -> dimension), else CorruptionError naming ``where`` (a segment's path, a row): a segment
    copied in from another collection or incarnation must not be served, merged or moved."""
    have = {name: int(m.shape[-1]) for name, m in named.items()}
    if have != dict(declared):
        raise CorruptionError(f"{where}: named vectors {have or 'none'}, but {against} {dict(declared) or 'none'}")


def _label(ids: Sequence[str], name: str) -> Callable[[int], str]:
    return lambda i: f"record {i} (id {ids[i]!r}), named vector {name!r}"


def row_vectors(columns: Mapping[str, Any], row: int) -> dict[str, np.ndarray]:
    """Row ``row`` of every named column as a float32 array of its own: a record's or a hit's
    ``named_vectors`` (get, scroll, search with include_vectors), from a memtable's matrices or a segment's
    mapped files."""
    return {name: np.array(m[row], dtype=np.float32) for name, m in columns.items()}


def row_dict(columns: NamedColumns | None, r: int) -> dict[str, list[float]]:
    """Row r's named vectors as ``{name: [floats]}`` (the Avro datum's shape, for tests and fastavro)."""
    return {name: col[r].tolist() for name, col in (columns or {}).items()}
