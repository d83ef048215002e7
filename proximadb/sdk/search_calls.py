"""The plans of the searches whose requests are JSON bodies on both protocols: ``search_text`` (BM25),
``search_sparse`` (dot product over a named sparse vector) and ``hybrid_search`` (up to three of a vector, a
text and a sparse search fused), shared by the blocking, asyncio and embedded clients and the collection
handles (:mod:`proximadb.sdk.calls` has the rest of the plans and their conventions).

A sparse query is ``indices`` (integers) and ``values`` (numbers) of the same length, lists or numpy
arrays: sent as JSON lists. Values that JSON cannot carry (NaN, infinities) are refused here with the
ValidationError the server gives for them; every other rule (the name is one of the collection's, indices
strictly increasing and >= 0, the lengths match) is the server's, so the answer is the same on every client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proximadb.errors import ValidationError
from proximadb.sdk.calls import Call, FilterArg, Plan, _level_field, filter_json, require_named, vector_matrix


def sparse_query(name: Any, indices: Any, values: Any, what: str) -> dict[str, Any]:
    """``{"name", "indices", "values"}`` as JSON can carry it (numpy arrays become lists)."""
    def plain(column: Any, kind: str) -> Any:
        if isinstance(column, np.ndarray):
            return column.tolist()
        if isinstance(column, Sequence) and not isinstance(column, str | bytes):
            return [x.item() if isinstance(x, np.generic) else x for x in column]
        raise ValidationError(f"{what}: {kind} must be a list of numbers, not {type(column).__name__}")

    vals = plain(values, "values")
    for position, value in enumerate(vals):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{what}: value {value} at position {position} is not finite")
    return {"name": name, "indices": plain(indices, "indices"), "values": vals}


def search_text(
    collection: str, text: str, k: int = 10, *, filter: FilterArg = None, include_metadata: bool = True,
    score_threshold: float | None = None, consistency: str | None = None,
) -> Plan[list[dict[str, Any]]]:
    """BM25 top-k over the records' ``document`` text: hits ``{id, score, metadata?, expires_at?}``."""
    body = {"text": text, "k": k, "filter": filter_json(filter), "include_metadata": include_metadata,
            "score_threshold": score_threshold, **_level_field(consistency)}
    return (yield Call("search_text", (collection, body)))


def search_sparse(
    collection: str, name: str, indices: Any, values: Any, k: int = 10, *, filter: FilterArg = None,
    include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
) -> Plan[list[dict[str, Any]]]:
    """Exact top-k by dot product over the sparse vectors ``name``: hits ``{id, score, metadata?, expires_at?}``."""
    body = {**sparse_query(name, indices, values, "search_sparse"), "k": k, "filter": filter_json(filter),
            "include_metadata": include_metadata, "score_threshold": score_threshold, **_level_field(consistency)}
    return (yield Call("search_sparse", (collection, body)))


def hybrid_search(
    collection: str, vector: Any = None, text: str | None = None, k: int = 10, *,
    sparse: Mapping[str, Any] | None = None, filter: FilterArg = None, fusion: str = "rrf",
    weights: Sequence[float] | None = None, rrf_k: float = 60.0, depth: int | Mapping[str, int] | None = None,
    ef: int | None = None, include_metadata: bool = True, score_threshold: float | None = None,
    consistency: str | None = None, using: str | None = None, schema_version: int,
) -> Plan[list[dict[str, Any]]]:
    """Up to three searches fused (``fusion``: rrf, dbsf, relative_score): a vector search, a text search and a
    sparse search (``sparse``: ``{"name", "indices", "values"}``), at least one; ``weights`` one per part given in
    the order [vector, text, sparse]; ``depth`` an integer for each part or ``{part: n}``; ``using`` the named
    vector the vector part searches (None: the default one)."""
    body: dict[str, Any] = {
        "k": k, "filter": filter_json(filter), "fusion": fusion,
        "weights": None if weights is None else [float(w) for w in weights], "rrf_k": rrf_k,
        "depth": dict(depth) if isinstance(depth, Mapping) else depth, "ef": ef,
        "include_metadata": include_metadata, "score_threshold": score_threshold, **_level_field(consistency),
    }
    if vector is not None:
        matrix = vector_matrix(vector, "vector")
        if matrix.shape[0] != 1:
            raise ValidationError(f"hybrid_search takes one query vector, got {matrix.shape[0]}")
        body["vector"] = matrix[0].tolist()
    if using is not None:
        require_named(schema_version, "hybrid_search")
        body["using"] = using
    if text is not None:
        body["text"] = text
    if sparse is not None:
        if not isinstance(sparse, Mapping) or set(sparse) != {"name", "indices", "values"}:
            raise ValidationError("hybrid_search: sparse must be a mapping {\"name\", \"indices\", \"values\"}")
        body["sparse"] = sparse_query(sparse["name"], sparse["indices"], sparse["values"],
                                      "hybrid_search's sparse part")
    return (yield Call("hybrid_search", (collection, body)))


__all__ = ["hybrid_search", "search_sparse", "search_text", "sparse_query"]
