"""The ``create_collection`` plan (see :mod:`proximadb.sdk.calls` for plans and their conventions): the
request body, the ``exist_ok`` comparison with an existing collection, and the refusal of named vectors
(``vectors``) by a server older than schema version 4, before the request and, should such a server have
ignored the field, after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proximadb.errors import CollectionConfigMismatchError, CollectionExistsError, UnsupportedSchemaVersionError
from proximadb.sdk.calls import Call, Plan, require_named


def create_collection(
    name: str,
    dimension: int,
    *,
    distance_metric: str = "cosine",
    indexing_algorithm: str = "flat",
    index_params: dict[str, Any] | None = None,
    filterable_metadata_fields: Sequence[str] | None = None,
    description: str | None = None,
    default_ttl_seconds: int | None = None,
    quantization: dict[str, Any] | None = None,
    exist_ok: bool = False,
    shards: int | None = None,
    replication_factor: int | None = None,
    text_analyzer: dict[str, Any] | None = None,
    sparse_vectors: dict[str, Any] | None = None,
    vectors: dict[str, Any] | None = None,
    schema_version: int,
) -> Plan[dict[str, Any]]:
    """Create the collection; its description. With ``exist_ok``, a collection of that name with the same
    dimension and distance metric is returned as it is (its other settings are not compared); another
    dimension or metric raises :class:`~proximadb.errors.CollectionConfigMismatchError`. ``vectors`` need a
    server of schema version 4 (``schema_version``: the one agreed), refused before anything is sent, and a
    server that answers without them (one that ignored the field) is an error, not a collection half made."""
    if vectors is not None:
        require_named(schema_version, "create_collection")
    if quantization is not None:  # stored as index_params.quantization (proximadb/index/quantization.py)
        index_params = {**(index_params or {}), "quantization": quantization}
    body: dict[str, Any] = {
        "name": name,
        "dimension": dimension,
        "distance_metric": distance_metric,
        "indexing_algorithm": indexing_algorithm,
        "index_params": index_params or {},
        "filterable_metadata_fields": list(filterable_metadata_fields or []),
    }
    if description is not None:
        body["description"] = description
    if default_ttl_seconds is not None:  # rows written without expires_at expire this long after the write
        body["default_ttl_seconds"] = default_ttl_seconds
    if shards is not None:  # cluster mode (serve --cluster); one node accepts only 1
        body["shards"] = shards
    if replication_factor is not None:
        body["replication_factor"] = replication_factor
    if text_analyzer is not None:  # full-text search's analyzer (storage/catalog.py: validate_text_analyzer)
        body["text_analyzer"] = text_analyzer
    if sparse_vectors is not None:  # the names of the sparse vectors records may carry: {name: {}}
        body["sparse_vectors"] = sparse_vectors
    if vectors is not None:  # named dense vectors: {name: {"dimension", "distance_metric"?, index settings?}} (v4)
        body["vectors"] = vectors
    try:  # with exist_ok, repeating the create is harmless: a second attempt finds the first's collection
        created: dict[str, Any] = yield Call("create_collection", (body,), safe=exist_ok)
    except CollectionExistsError:
        if not exist_ok:
            raise
    else:
        if vectors and not created.get("vectors"):
            raise UnsupportedSchemaVersionError(
                f"create_collection: the server created collection {name!r} without its named vectors (it ignored "
                "the field: a server older than schema version 4); delete it and upgrade the server")
        return created
    existing: dict[str, Any] = yield Call("get_collection", (name,))
    differences = [
        f"{what} {existing[key]!r} (asked for {asked!r})"
        for what, key, asked in (("dimension", "dimension", dimension), ("distance metric", "distance_metric",
                                                                        distance_metric))
        if existing[key] != asked
    ]
    if vectors is not None:  # the named vectors asked for must be the ones declared (names, dimensions, metrics)
        declared = {n: (v.get("dimension"), v.get("distance_metric"))
                    for n, v in (existing.get("vectors") or {}).items()}
        asked_named = {n: (v.get("dimension"), v.get("distance_metric", "cosine")) if isinstance(v, Mapping) else v
                       for n, v in vectors.items()}
        if declared != asked_named:
            differences.append(f"named vectors {existing.get('vectors') or {}!r} (asked for {vectors!r})")
    if differences:
        raise CollectionConfigMismatchError(
            f"collection {name!r} exists with " + " and ".join(differences)
            + "; use another name, or delete the collection first"
        )
    return existing


__all__ = ["create_collection"]
