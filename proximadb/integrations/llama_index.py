"""A LlamaIndex vector store on ProximaDB (``pip install 'proximadb[llama-index]'``)::

    import proximadb
    from llama_index.core import StorageContext, VectorStoreIndex
    from proximadb.integrations.llama_index import ProximaDBVectorStore

    store = ProximaDBVectorStore(client=proximadb.connect(url), collection_name="docs")
    index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store))
    index.as_retriever(similarity_top_k=3, filters=MetadataFilters(filters=[MetadataFilter(key="genre", value="jazz")]))

The client is any sync ProximaDB client: a daemon's (:func:`proximadb.connect`) or this process's
(:func:`proximadb.connect_embedded`). The collection is created on the first ``add``, with the
dimension of the nodes' embeddings and ``distance_metric`` (``collection_options`` go to
``create_collection``); an existing one is used as it is.

Records: the node id is the record id; adding a node again replaces it (upsert). The metadata is
LlamaIndex's own layout (``node_to_metadata_dict``): the whole node as JSON in ``_node_content``
(text included: the store keeps the text, ``stores_text = True``), ``_node_type``, ``ref_doc_id``
(also as ``doc_id`` and ``document_id``), and each of the node's metadata values that ProximaDB can
store (null, bool, int, float, str, list of str) under its own key, where filters reach it; other
values (nested objects...) live only inside ``_node_content``. It must fit the server's
``max_metadata_bytes`` (64 KiB by default).

``MetadataFilters`` become ProximaDB filters (:func:`to_proximadb_filter`): ``==``, ``!=``, ``>``,
``>=``, ``<``, ``<=``, ``in``, ``nin`` map to ``$eq`` ... ``$nin``; ``contains`` (a list holds the
value) to equality, ``any`` to ``$in`` and ``all`` to an ``$and`` of equalities, as ProximaDB matches
list values element-wise; ``is_empty`` to "missing, null or the empty string"; conditions ``and`` /
``or`` / ``not`` (none matches) to ``$and`` / ``$or`` / ``$not`` of ``$or``, nested filters too.
``text_match`` has no ProximaDB counterpart and is refused with a ValidationError.

Query similarities are ProximaDB's scores (cosine: 1 - distance; euclidean: 1 / (1 + distance); dot
product: the inner product). Async variants are LlamaIndex's (they run the sync calls).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ValidationError
from proximadb.filters import compile_filter
from proximadb.integrations._store import LazyCollection, check_client, split_metadata

PAGE = 256  # records per scroll page in get_nodes
_COMPARISONS = {
    FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt", FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte", FilterOperator.IN: "$in", FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$in",
}


def to_proximadb_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a ProximaDB filter (see the module docstring); None for none."""
    if filters is None or not filters.filters:
        return None
    parts = [
        to_proximadb_filter(f) if isinstance(f, MetadataFilters) else _one_filter(f) for f in filters.filters
    ]
    clauses = [p for p in parts if p is not None]
    if not clauses:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}
    if condition == FilterCondition.OR:
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}
    if condition == FilterCondition.NOT:
        return {"$not": {"$or": clauses}}
    raise ValidationError(f"filter condition {condition!r} is not supported")


def _one_filter(f: MetadataFilter) -> dict[str, Any] | None:
    op = FilterOperator(f.operator)
    if op in _COMPARISONS:
        return {f.key: {_COMPARISONS[op]: f.value}}
    if op == FilterOperator.CONTAINS:
        return {f.key: f.value}
    if op == FilterOperator.ALL:
        values = f.value if isinstance(f.value, list) else [f.value]
        return {"$and": [{f.key: v} for v in values]} if values else None
    if op == FilterOperator.IS_EMPTY:
        return {"$or": [{f.key: None}, {f.key: ""}]}
    raise ValidationError(
        f"filter on {f.key!r}: operator {op.value!r} has no counterpart in ProximaDB's filter language"
    )


class ProximaDBVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store over one ProximaDB collection (see the module docstring)."""

    stores_text: bool = True
    flat_metadata: bool = False
    collection_name: str = "llama_index"
    distance_metric: str = "cosine"
    collection_options: dict[str, Any] = {}

    _client: ProximaDBAPI = PrivateAttr()
    _collection: LazyCollection = PrivateAttr()

    def __init__(
        self,
        client: ProximaDBAPI,
        collection_name: str = "llama_index",
        distance_metric: str = "cosine",
        collection_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]  # pydantic fields (mypy runs without the pydantic plugin)
            collection_name=collection_name, distance_metric=distance_metric,
            collection_options=dict(collection_options or {}), **kwargs,
        )
        self._client = check_client(client)
        self._collection = LazyCollection(
            self._client, collection_name, {"distance_metric": distance_metric, **self.collection_options}
        )

    @classmethod
    def class_name(cls) -> str:
        return "ProximaDBVectorStore"

    @property
    def client(self) -> ProximaDBAPI:
        return self._client

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Upsert ``nodes`` (each must carry its embedding); returns their ids."""
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        try:
            vectors = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
        except ValueError as exc:
            raise ValidationError(f"add: every node needs an embedding ({exc})") from None
        metadatas = [
            split_metadata(node_to_metadata_dict(node, remove_text=False, flat_metadata=False))[0] for node in nodes
        ]
        self._collection.write(int(vectors.shape[1]), lambda: self._client.insert_vectors(
            self.collection_name, ids=ids, vectors=vectors, metadatas=metadatas, upsert=True
        ))
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        self._collection.read(
            lambda: self._client.delete_vectors(self.collection_name, filter={"ref_doc_id": ref_doc_id}), 0
        )

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete the nodes with ``node_ids``, those matching ``filters``, or (both) those with the ids that match."""
        flt = to_proximadb_filter(filters)
        if node_ids is None and flt is None:
            raise ValidationError("delete_nodes needs node_ids or filters (clear() deletes every node)")
        if node_ids == []:
            return
        if node_ids is None:
            self._collection.read(lambda: self._client.delete_vectors(self.collection_name, filter=flt), 0)
            return
        ids = node_ids if flt is None else [r["id"] for r in self._records(node_ids, flt)]
        if ids:
            self._collection.read(lambda: self._client.delete_vectors(self.collection_name, ids=ids), 0)

    def clear(self) -> None:
        """Delete every node (the collection itself; the next ``add`` creates it again)."""
        self._collection.drop()

    # ------------------------------------------------------------------ reads
    def _records(self, node_ids: list[str], flt: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The records with ``node_ids`` (in that order) that pass ``flt``, evaluated here by ProximaDB's
        own filter code (a request takes ids or a filter, not both)."""
        records: list[dict[str, Any]] = self._collection.read(
            lambda: self._client.get_vectors(self.collection_name, node_ids, include_vectors=False), []
        )
        compiled = compile_filter(flt)
        return records if compiled is None else [r for r in records if compiled.matches(r.get("metadata"))]

    def _scroll(self, flt: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page, cursor = self._client.scroll(self.collection_name, limit=PAGE, cursor=cursor, filter=flt)
            yield from page
            if cursor is None:
                return

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes with ``node_ids`` and/or matching ``filters`` (every node when neither is given)."""
        flt = to_proximadb_filter(filters)
        if node_ids is not None:
            records = self._records(node_ids, flt)
        else:
            records = self._collection.read(lambda: list(self._scroll(flt)), [])
        return [metadata_dict_to_node(r["metadata"]) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes nearest ``query.query_embedding`` that pass ``query.filters``
        (and belong to ``query.doc_ids`` when given)."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValidationError(f"query mode {query.mode.value!r} is not supported (only 'default')")
        if query.query_embedding is None:
            raise ValidationError("query: query_embedding is required")
        if query.node_ids:
            raise ValidationError("query: node_ids is not supported (filter on metadata or doc_ids instead)")
        clauses = [c for c in (to_proximadb_filter(query.filters),) if c is not None]
        if query.doc_ids:
            clauses.append({"ref_doc_id": {"$in": list(query.doc_ids)}})
        flt = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
        embedding = list(query.query_embedding)
        hits: list[dict[str, Any]] = self._collection.read(
            lambda: self._client.search(self.collection_name, embedding, k=query.similarity_top_k, filter=flt), []
        )
        return VectorStoreQueryResult(
            nodes=[metadata_dict_to_node(h["metadata"]) for h in hits],
            similarities=[float(h["score"]) for h in hits],
            ids=[str(h["id"]) for h in hits],
        )


__all__ = ["ProximaDBVectorStore", "to_proximadb_filter"]
