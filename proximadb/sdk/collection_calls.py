"""What a collection handle does, as plans (:mod:`proximadb.sdk.calls`) both clients run.

:class:`~proximadb.sdk.collection.Collection` (blocking, also over the embedded engine) and
:class:`~proximadb.sdk.collection.AsyncCollection` are thin: each method runs one plan of this module
on its client. So the argument forms (numpy or lists, one vector or a matrix, one text or many),
embedding documents and query texts (:mod:`proximadb.embeddings`: a :class:`~proximadb.sdk.calls.Compute`
step the asyncio client runs off the event loop), the document key and the numpy outputs exist once.

A :class:`Target` is the handle's state: the collection name, its embedding function and the
description last read (dimension and metric), fetched by the first plan that needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proximadb.embeddings import (
    EmbeddingFunction,
    checked_embeddings,
    lift_document,
    texts,
    with_documents,
)
from proximadb.errors import DimensionMismatchError, EmbeddingFunctionRequiredError, ValidationError
from proximadb.sdk import calls, columns, search_calls
from proximadb.sdk.arrays import hits_to_numpy, records_to_numpy
from proximadb.sdk.calls import Call, Compute, Plan


@dataclass
class Target:
    """The collection a handle stands for."""

    name: str
    embedding_function: EmbeddingFunction | None = None
    info: dict[str, Any] | None = None

    def describe(self, kind: str) -> str:
        """``<Collection 'docs' dim=384 cosine>`` (the dimension and metric once known)."""
        parts = [f"<{kind} {self.name!r}"]
        if self.info is not None:
            parts.append(f"dim={self.info['dimension']} {self.info['distance_metric']}")
        if self.embedding_function is not None:
            from proximadb.embeddings import describe

            parts.append(f"embedding={describe(self.embedding_function)}")
        return " ".join(parts) + ">"


def dimension_for(dimension: int | None, embedding_function: EmbeddingFunction | None) -> int:
    """The dimension to create a collection with: the one given, else the embedding function's
    ``dimension`` attribute (as :class:`~proximadb.embeddings.SentenceTransformerEmbedding` has)."""
    says = getattr(embedding_function, "dimension", None)
    if dimension is None:
        if says is None:
            raise ValidationError("give dimension= (the embedding function does not say its dimension)")
        return int(says)
    if says is not None and int(says) != dimension:
        raise DimensionMismatchError(f"the embedding function gives vectors of dimension {says}, not {dimension}")
    return int(dimension)


def info(target: Target) -> Plan[dict[str, Any]]:
    """The collection's description (vector_count included), kept on the target."""
    described: dict[str, Any] = yield Call("get_collection", (target.name,))
    target.info = described
    return described


def open_handle(target: Target) -> Plan[dict[str, Any]]:
    """:func:`info`, checking that an embedding function which says its dimension fits the collection."""
    described = yield from info(target)
    says = getattr(target.embedding_function, "dimension", None)
    if says is not None and int(says) != int(described["dimension"]):
        raise DimensionMismatchError(
            f"the embedding function gives vectors of dimension {says}, the collection {target.name!r} expects "
            f"{described['dimension']}"
        )
    return described


def _dimension(target: Target) -> Plan[int]:
    if target.info is None:
        yield from info(target)
    assert target.info is not None
    return int(target.info["dimension"])


def _function(target: Target, what: str) -> EmbeddingFunction:
    fn = target.embedding_function
    if fn is None:
        raise EmbeddingFunctionRequiredError(
            f"{what} need an embedding function: pass embedding_function= to client.collection({target.name!r}, "
            "...) or get_or_create_collection(...), or give vectors yourself"
        )
    return fn


def _embed(target: Target, batch: list[str], what: str) -> Plan[np.ndarray]:
    fn = _function(target, what)
    dimension = yield from _dimension(target)
    if not batch:
        return np.zeros((0, dimension), dtype=np.float32)
    output = yield Compute(fn, (batch,))
    return checked_embeddings(output, len(batch), dimension)


def write(
    target: Target,
    schema_version: int,
    batch_size: int,
    *,
    ids: Any,
    vectors: Any,
    metadatas: Sequence[dict[str, Any] | None] | None,
    documents: Any,
    upsert: bool,
    sparse_vectors: Sequence[dict[str, Any] | None] | None = None,
    named_vectors: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Plan[dict[str, Any]]:
    """``add`` / ``upsert``: vectors as given, or embedded from ``documents`` (stored beside them); ``ids`` may
    be a table of records instead (pyarrow or pandas, :mod:`proximadb.sdk.columns`); ``sparse_vectors`` one
    ``{name: {"indices", "values"}}`` or None per record; ``named_vectors`` ``{name: (n, dim) matrix}`` or one
    ``{name: vector}`` per record."""
    if columns.is_table(ids):
        if vectors is not None or metadatas is not None or documents is not None:
            raise ValidationError("give either a table of records, or ids / vectors / metadatas / documents")
        table = columns.table_columns(ids)
        ids, vectors, metadatas, documents = table.ids, table.vectors, table.metadatas, table.documents
    if documents is not None:
        docs = texts(documents, "documents")
        metadatas = with_documents(docs, metadatas)
        if vectors is None:
            return (yield from _embed_and_write(target, schema_version, batch_size, ids, docs, metadatas, upsert,
                                                sparse_vectors, named_vectors))
    elif vectors is None:
        raise ValidationError("give vectors=, or documents= with an embedding function")
    if metadatas is not None and not isinstance(metadatas, list):
        metadatas = list(metadatas)
    return (yield from calls.insert_vectors(
        schema_version, batch_size, target.name, ids=ids, vectors=vectors, metadatas=metadatas, upsert=upsert,
        sparse_vectors=sparse_vectors, named_vectors=named_vectors,
    ))


def _embed_and_write(
    target: Target, schema_version: int, batch_size: int, ids: Any, docs: list[str],
    metadatas: list[dict[str, Any]], upsert: bool, sparse_vectors: Sequence[dict[str, Any] | None] | None,
    named_vectors: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Plan[dict[str, Any]]:
    """Documents embedded and written ``batch_size`` at a time: the embedding function sees one batch per
    call and memory stays bounded; each batch is stored all or nothing, as with vectors."""
    _function(target, "documents")
    row_ids = calls.id_list(ids) if ids is not None else [str(uuid.uuid4()) for _ in docs]
    if len(row_ids) != len(docs):
        raise ValidationError(f"{len(docs)} documents need as many ids, got {len(row_ids)}")
    if sparse_vectors is not None and (isinstance(sparse_vectors, dict) or len(sparse_vectors) != len(docs)):
        raise ValidationError(f"{len(docs)} documents need as many sparse_vectors entries (a mapping or None each)")
    if named_vectors is not None:  # refused before any document is embedded
        calls.require_named(schema_version, "add/upsert of documents")
    named = None if named_vectors is None else calls.named_columns(named_vectors, len(docs))
    written: list[str] = []
    for start in range(0, len(docs), max(1, batch_size)):
        end = start + max(1, batch_size)
        vectors = yield from _embed(target, docs[start:end], "documents")
        done = yield from calls.insert_vectors(
            schema_version, batch_size, target.name, ids=row_ids[start:end], vectors=vectors,
            metadatas=metadatas[start:end], upsert=upsert,
            sparse_vectors=None if sparse_vectors is None else list(sparse_vectors[start:end]),
            named_vectors=calls.named_slice(named, start, end))
        written.extend(done["ids"])
    return {"count": len(written), "ids": written}


def query(
    target: Target,
    schema_version: int,
    vector: Any,
    k: int,
    *,
    text: str | None,
    texts_: Any,
    vectors: Any,
    options: dict[str, Any],
    as_numpy: bool,
) -> Plan[Any]:
    """``query`` / ``search``: one query (``vector`` 1-D or ``text``) gives its hits; several (``vectors``,
    a 2-D ``vector``, or ``texts``) give a list of hit lists."""
    given = [name for name, value in (("vector", vector), ("vectors", vectors), ("text", text), ("texts", texts_))
             if value is not None]
    if len(given) != 1:
        raise ValidationError(f"give exactly one of vector, vectors, text or texts (got {', '.join(given) or 'none'})")
    if text is not None:
        if not isinstance(text, str):
            raise ValidationError("text must be a str (use texts= for several)")
        queries, single = (yield from _embed(target, [text], "query texts")), True
    elif texts_ is not None:
        queries, single = (yield from _embed(target, texts(texts_, "texts"), "query texts")), False
    else:
        single = vector is not None and np.ndim(vector) == 1
        queries = calls.vector_matrix(vector if vector is not None else vectors, "queries")
    if queries.shape[0] == 0:
        return []
    results = yield from calls.search_batch(schema_version, target.name, queries, k, options)
    lifted = [[lift_document(hit) for hit in hits] for hits in results]
    out: list[Any] = [hits_to_numpy(hits) for hits in lifted] if as_numpy else lifted
    return out[0] if single else out


def search_text(target: Target, text: str, k: int, options: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
    """BM25 hits over the stored documents (options: filter, include_metadata), ``"document"`` lifted out."""
    hits = yield from search_calls.search_text(target.name, text, k, **options)
    return [lift_document(hit) for hit in hits]


def search_sparse(target: Target, name: str, indices: Any, values: Any, k: int,
                  options: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
    """Dot-product hits over the sparse vectors ``name`` (options: filter, include_metadata, score_threshold,
    consistency), ``"document"`` lifted out."""
    hits = yield from search_calls.search_sparse(target.name, name, indices, values, k, **options)
    return [lift_document(hit) for hit in hits]


def hybrid_search(
    target: Target, schema_version: int, text: str | None, vector: Any, k: int, options: dict[str, Any]
) -> Plan[list[dict[str, Any]]]:
    """Up to three searches fused (a vector, a text, ``options["sparse"]``); without ``vector`` a text is embedded
    with the handle's function (unless the handle has none and a sparse part is given: then no vector part)."""
    if vector is None and text is not None and (target.embedding_function is not None
                                                or options.get("sparse") is None):
        vector = (yield from _embed(target, [text], "query texts"))[0]
    hits = yield from search_calls.hybrid_search(target.name, vector, text, k, schema_version=schema_version,
                                                 **options)
    return [lift_document(hit) for hit in hits]


def search_groups(target: Target, vector: Any, group_by: str, limit: int, group_size: int,
                  options: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
    """Grouped hits; a str ``vector`` is a query text embedded with the handle's function."""
    if isinstance(vector, str):
        vector = (yield from _embed(target, [vector], "query texts"))[0]
    groups = yield from calls.search_groups(target.name, vector, group_by, limit, group_size, **options)
    return [{"value": g["value"], "hits": [lift_document(h) for h in g["hits"]]} for g in groups]


def recommend(target: Target, positive: Any, negative: Any, k: int,
              options: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
    """Hits by examples (ids or vectors), ``"document"`` lifted out."""
    strategy = options.pop("strategy", "average_vector")
    hits = yield from calls.recommend(target.name, positive, negative, k, strategy, **options)
    return [lift_document(h) for h in hits]


def get(target: Target, ids: Any, *, include_vectors: bool, as_numpy: bool,
        consistency: str | None = None) -> Plan[Any]:
    """Records by id (a str is one id), in the order asked; missing ids are left out."""
    records = yield from calls.get_vectors(target.name, [ids] if isinstance(ids, str) else ids,
                                           include_vectors=include_vectors, consistency=consistency)
    lifted = [lift_document(r) for r in records]
    return records_to_numpy(lifted) if as_numpy else lifted


def scroll(
    target: Target, *, limit: int, cursor: str | None, filter: calls.FilterArg, include_vectors: bool,
    as_numpy: bool = False, consistency: str | None = None,
) -> Plan[tuple[Any, str | None]]:
    """One page and the next cursor; with ``as_numpy`` the page as columns (:func:`records_to_numpy`)."""
    records, next_cursor = yield from calls.scroll(target.name, limit=limit, cursor=cursor, filter=filter,
                                                   include_vectors=include_vectors, consistency=consistency)
    lifted = [lift_document(r) for r in records]
    return (records_to_numpy(lifted) if as_numpy else lifted), next_cursor


def delete(target: Target, schema_version: int, ids: Any, filter: calls.FilterArg) -> Plan[int]:
    return (yield from calls.delete_vectors(schema_version, target.name, [ids] if isinstance(ids, str) else ids,
                                            filter=filter))


__all__ = [
    "Target",
    "delete",
    "dimension_for",
    "get",
    "hybrid_search",
    "info",
    "open_handle",
    "query",
    "recommend",
    "scroll",
    "search_groups",
    "search_sparse",
    "search_text",
    "write",
]
