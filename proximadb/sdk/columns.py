"""Columnar inputs: a ``pyarrow.Table`` / ``RecordBatch`` (or a pandas ``DataFrame``) of records, and
pyarrow columns where the SDK takes ids or vectors.

A table given to ``insert_vectors(collection, table)`` / ``upsert_vectors``, or to a collection handle's
``add(table)`` / ``upsert(table)``, has these columns and no others:

* ``vector`` (required unless the handle embeds ``document``): a list or fixed-size list of numbers per
  row, all of one length;
* ``id`` (optional, strings; generated when absent);
* ``metadata`` (optional): a struct or map column (or, in a DataFrame, dicts); a null is no metadata,
  and a struct's null fields are left out (a struct column has every field in every row);
* ``document`` (optional, strings): stored under the metadata key ``"document"`` (and, on a handle with
  an embedding function and no ``vector`` column, embedded).

Every other column, a null id, vector or document, rows of different lengths or values of the wrong
type are a :class:`~proximadb.errors.ValidationError` before anything is sent. pyarrow is never
imported here: objects are recognised by their type's module, so the SDK does not depend on it.
The columns become what the rest of the SDK takes (a list of str ids, a float32 matrix, a list of
metadata dicts), so a table goes through the same checks and payloads as numpy input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from proximadb.errors import ValidationError

COLUMNS = ("id", "vector", "metadata", "document")


@dataclass(frozen=True)
class TableColumns:
    ids: list[str] | None
    vectors: np.ndarray | None
    metadatas: list[dict[str, Any] | None] | None
    documents: list[str] | None


def _module(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


def is_arrow(value: Any) -> bool:
    """A pyarrow Array or ChunkedArray (a column)."""
    return _module(value) == "pyarrow" and hasattr(value, "to_pylist") and hasattr(value, "type")


def is_table(value: Any) -> bool:
    """A pyarrow Table / RecordBatch, or a pandas DataFrame."""
    name = type(value).__name__
    return (_module(value) == "pyarrow" and name in ("Table", "RecordBatch")) or (
        _module(value) == "pandas" and name == "DataFrame"
    )


def arrow_strings(column: Any, what: str) -> list[str]:
    """A pyarrow string column as a list of str (no nulls)."""
    values = column.to_pylist()
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValidationError(f"{what}[{i}] must be a str, got {'null' if value is None else type(value).__name__}")
    return values


def arrow_matrix(column: Any, what: str) -> np.ndarray:
    """A pyarrow list / fixed-size list column of numbers as a float32 (n, dim) matrix."""
    if column.null_count:
        raise ValidationError(f"{what} has {column.null_count} null row(s)")
    type_name = str(column.type)
    value_type = str(getattr(column.type, "value_type", ""))
    if not type_name.startswith(("list<", "large_list<", "fixed_size_list<")) or not value_type.startswith(
        ("float", "double", "halffloat", "int", "uint")
    ):
        raise ValidationError(f"{what} must be a list column of numbers, got {type_name}")
    rows = column.to_numpy(zero_copy_only=False)  # an object array of one numpy array per row
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise ValidationError(f"{what} rows must all have one length, got lengths {sorted(lengths)[:5]}")
    try:
        return np.ascontiguousarray(np.stack(list(rows)) if len(rows) else np.zeros((0, 0)), dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must hold numbers (and no nulls inside a row): {exc}") from None


def _metadata_rows(values: list[Any], struct: bool = False) -> list[dict[str, Any] | None]:
    """Metadata dicts; a struct column's null fields are left out (a struct has every field in every row)."""
    out: list[dict[str, Any] | None] = []
    for i, value in enumerate(values):
        if isinstance(value, dict) and struct:
            out.append({k: v for k, v in value.items() if v is not None})
        elif value is None or isinstance(value, dict):
            out.append(value)
        elif isinstance(value, list) and all(isinstance(kv, tuple) and len(kv) == 2 for kv in value):
            out.append(dict(value))  # a map column reads as (key, value) pairs
        else:
            raise ValidationError(f"metadata[{i}] must be a struct or map (a dict), got {type(value).__name__}")
    return out


def table_columns(table: Any) -> TableColumns:
    """The records of a pyarrow Table / RecordBatch or pandas DataFrame (see the module docstring)."""
    names = [str(name) for name in (table.column_names if _module(table) == "pyarrow" else table.columns)]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise ValidationError(
            f"unknown column(s) {', '.join(map(repr, unknown))}: a table of records has the columns "
            f"{', '.join(COLUMNS)} (put other fields into the metadata column)"
        )
    if "vector" not in names and "document" not in names:
        raise ValidationError("a table of records needs a vector column (or a document column to embed)")
    if _module(table) == "pyarrow":
        col = table.column
        ids = arrow_strings(col("id"), "id") if "id" in names else None
        vectors = arrow_matrix(col("vector"), "vector") if "vector" in names else None
        metadatas = None
        if "metadata" in names:
            metadata = col("metadata")
            metadatas = _metadata_rows(metadata.to_pylist(), struct=str(metadata.type).startswith("struct<"))
        documents = arrow_strings(col("document"), "document") if "document" in names else None
        return TableColumns(ids, vectors, metadatas, documents)
    from proximadb.embeddings import texts  # pandas: the columns numpy input takes
    from proximadb.sdk.calls import id_list, vector_matrix

    vectors = None
    if "vector" in names:
        rows = table["vector"].tolist()
        if any(row is None for row in rows):
            raise ValidationError("vector has null row(s)")
        vectors = vector_matrix(rows, "vector") if rows else np.zeros((0, 0), dtype=np.float32)
    return TableColumns(
        id_list(table["id"]) if "id" in names else None,
        vectors,
        _metadata_rows([None if _missing(v) else v for v in table["metadata"].tolist()]) if "metadata" in names
        else None,
        texts(table["document"].tolist(), "document") if "document" in names else None,
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


__all__ = ["COLUMNS", "TableColumns", "arrow_matrix", "arrow_strings", "is_arrow", "is_table", "table_columns"]
