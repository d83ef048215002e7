"""A LangChain ``VectorStore`` on ProximaDB (``pip install 'proximadb[langchain]'``)::

    import proximadb
    from proximadb.integrations.langchain import ProximaDBVectorStore

    store = ProximaDBVectorStore(embeddings, collection_name="docs", client=proximadb.connect(url))
    store.add_texts(["jazz in paris", "rock in rome"], metadatas=[{"genre": "jazz"}, {"genre": "rock"}], ids=["a", "b"])
    store.similarity_search("paris", k=1, filter={"genre": "jazz"})

The client is any sync ProximaDB client: a daemon's (:func:`proximadb.connect`) or this process's
(:func:`proximadb.connect_embedded`). The collection is created on the first write, with the
embedding's dimension and ``distance_metric`` (and ``collection_options``, passed to
``create_collection``); an existing one is used as it is.

Records: the document's id is the record id (a uuid4 hex when the document has none); adding an id
again replaces the record (upsert), so adding is idempotent. ``page_content`` is stored in the
metadata key ``_lc_text``; each metadata value ProximaDB can store (null, bool, int, float, str,
list of str) under its own key, where ``filter=`` reaches it; any other value (nested objects, lists
of numbers...) in ``_lc_json``, one JSON text, and is given back but cannot be filtered on. Both keys
are reserved. The text and metadata together must fit the server's ``max_metadata_bytes`` (64 KiB
by default).

``filter=`` takes ProximaDB's filter language (:mod:`proximadb.filters`: ``{"genre": "jazz"}``,
``{"year": {"$gte": 1990}}``, ``$and``/``$or``/``$not``, ``$in``, ``$exists`` ...), the same
MongoDB-style dialect as LangChain's Chroma and PGVector stores. ``similarity_search_with_score``
gives the distance (smaller is closer); ``similarity_search_with_relevance_scores`` maps it to [0, 1]
by the collection's metric. Search options ``ef``, ``nprobe`` and ``exact`` pass through.

Async methods are LangChain's: the sync calls run in an executor.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ValidationError
from proximadb.integrations._store import LazyCollection, check_client, check_reserved, split_metadata

TEXT_KEY = "_lc_text"
JSON_KEY = "_lc_json"
RESERVED = (TEXT_KEY, JSON_KEY)
SEARCH_OPTIONS = frozenset({"ef", "nprobe", "exact"})


class ProximaDBVectorStore(VectorStore):
    """LangChain ``VectorStore`` over one ProximaDB collection (see the module docstring)."""

    def __init__(
        self,
        embedding: Embeddings,
        *,
        collection_name: str = "langchain",
        client: ProximaDBAPI,
        distance_metric: str = "cosine",
        collection_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._embedding = embedding
        self.collection_name = collection_name
        self.client = check_client(client)
        self._collection = LazyCollection(
            self.client, collection_name, {"distance_metric": distance_metric, **(collection_options or {})}
        )

    # ------------------------------------------------------------------ collection
    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def delete_collection(self) -> None:
        """Drop the collection (a later write creates it again)."""
        self._collection.drop()

    # ------------------------------------------------------------------ writes
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert ``texts``; returns their ids (given ones kept, missing ones generated)."""
        if kwargs:
            raise TypeError(f"add_texts: unexpected argument(s) {', '.join(sorted(kwargs))}")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValidationError(f"add_texts: {len(texts)} texts but {len(metadatas)} metadatas")
        if ids is not None and len(ids) != len(texts):
            raise ValidationError(f"add_texts: {len(texts)} texts but {len(ids)} ids")
        if not texts:
            return []
        given: Sequence[str | None] = ids or [None] * len(texts)
        record_ids = [i if i else uuid.uuid4().hex for i in given]
        stored = [self._record_metadata(text, (metadatas or [{}] * len(texts))[n]) for n, text in enumerate(texts)]
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        self._collection.write(int(vectors.shape[1]), lambda: self.client.insert_vectors(
            self.collection_name, ids=record_ids, vectors=vectors, metadatas=stored, upsert=True
        ))
        return record_ids

    @staticmethod
    def _record_metadata(text: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        check_reserved(metadata, RESERVED)
        stored, rest = split_metadata(metadata)
        stored[TEXT_KEY] = text
        if rest:
            try:
                stored[JSON_KEY] = json.dumps(rest, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"metadata keys {sorted(rest)}: values must be JSON, {exc}") from None
        return stored

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the records with ``ids`` (ids that do not exist are ignored); ``None`` deletes the collection."""
        if kwargs:
            raise TypeError(f"delete: unexpected argument(s) {', '.join(sorted(kwargs))}")
        if ids is None:
            self.delete_collection()
            return True
        if ids:
            self._collection.read(lambda: self.client.delete_vectors(self.collection_name, ids=list(ids)), 0)
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents that exist, in the order asked."""
        if not ids:
            return []
        records: list[dict[str, Any]] = self._collection.read(
            lambda: self.client.get_vectors(self.collection_name, list(ids), include_vectors=False), []
        )
        return [_document(r["id"], r.get("metadata")) for r in records]

    def _search(
        self, vector: Sequence[float], k: int, filter: Mapping[str, Any] | None, options: dict[str, Any],
        include_vectors: bool = False,
    ) -> list[dict[str, Any]]:
        unknown = set(options) - SEARCH_OPTIONS
        if unknown:
            raise TypeError(f"search: unexpected argument(s) {', '.join(sorted(unknown))}")
        return self._collection.read(lambda: self.client.search(
            self.collection_name, list(vector), k=k, filter=dict(filter) if filter else None,
            include_vectors=include_vectors, **options,
        ), [])

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        hits = self._search(embedding, k, filter, kwargs)
        return [(_document(h["id"], h.get("metadata")), float(h["distance"])) for h in hits]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest ``query`` with their distance (smaller is closer)."""
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, filter, **kwargs)

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        metric = self._collection.metric
        if metric == "cosine":
            return self._cosine_relevance_score_fn
        if metric == "euclidean":
            return self._euclidean_relevance_score_fn
        return self._max_inner_product_relevance_score_fn

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        hits = self._search(embedding, max(fetch_k, k), filter, kwargs, include_vectors=True)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), [h["vector"] for h in hits], k=k, lambda_mult=lambda_mult
        )
        return [_document(hits[i]["id"], hits[i].get("metadata")) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> ProximaDBVectorStore:
        """A store (``kwargs``: ``client``, ``collection_name`` ... as for the constructor) holding ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _document(record_id: str, metadata: Mapping[str, Any] | None) -> Document:
    """The LangChain document a record holds (see the module docstring for the layout)."""
    stored = dict(metadata or {})
    text = stored.pop(TEXT_KEY, "")
    extra = stored.pop(JSON_KEY, None)
    if extra is not None:
        stored.update(json.loads(extra))
    return Document(page_content=str(text), metadata=stored, id=record_id)


__all__ = ["JSON_KEY", "TEXT_KEY", "ProximaDBVectorStore"]
