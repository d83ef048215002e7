"""The LlamaIndex store: used by a VectorStoreIndex end to end (insert documents, query, delete a
document, reopen), and each of its methods, against a real daemon and the embedded engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _daemon import Daemon
from _frameworks import DIM, fresh_name, hash_embed
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

import proximadb
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import DimensionMismatchError, InvalidFilterError, ValidationError
from proximadb.integrations.llama_index import ProximaDBVectorStore, to_proximadb_filter


class HashingEmbedding(BaseEmbedding):
    """Deterministic, local: the tests download no model."""

    def _get_text_embedding(self, text: str) -> list[float]:
        return hash_embed(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return hash_embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return hash_embed(query)


DOCS = [
    Document(text="jazz clubs of paris at night", doc_id="paris", metadata={"genre": "jazz", "year": 1959}),
    Document(text="rock concerts in rome", doc_id="rome", metadata={"genre": "rock", "year": 1971}),
    Document(text="opera houses of milan", doc_id="milan", metadata={"genre": "opera", "year": 1853}),
]


def _retrieve(index: VectorStoreIndex, text: str, **kw: Any) -> list[str]:
    return [n.node.ref_doc_id or "" for n in index.as_retriever(similarity_top_k=3, **kw).retrieve(text)]


def _index_round_trip(open_client: Callable[[], ProximaDBAPI], reopen: Callable[[], None]) -> None:
    embed = HashingEmbedding()
    client = open_client()
    store = ProximaDBVectorStore(client=client, collection_name="library")
    index = VectorStoreIndex.from_documents(
        DOCS, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )
    assert _retrieve(index, "jazz in paris")[0] == "paris"
    after_1900 = MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GT)])
    assert sorted(_retrieve(index, "opera in milan", filters=after_1900)) == ["paris", "rome"]
    index.delete_ref_doc("paris")
    assert "paris" not in _retrieve(index, "jazz in paris")
    client.close()
    reopen()
    client = open_client()
    store = ProximaDBVectorStore(client=client, collection_name="library")
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    assert _retrieve(index, "rock in rome")[0] == "rome"
    assert sorted(_retrieve(index, "jazz in paris")) == ["milan", "rome"]
    node = index.as_retriever(similarity_top_k=1).retrieve("opera houses of milan")[0].node
    assert node.get_content() == "opera houses of milan" and node.metadata == {"genre": "opera", "year": 1853}
    client.close()


def test_a_vector_store_index_on_a_daemon_survives_a_restart(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data").start()
    try:
        _index_round_trip(lambda: proximadb.connect(daemon.rest_url), lambda: (daemon.stop(), daemon.start()))
    finally:
        daemon.stop()


def test_a_vector_store_index_on_the_embedded_engine_survives_reopening(tmp_path: Path) -> None:
    _index_round_trip(lambda: proximadb.connect_embedded(tmp_path / "data"), lambda: None)


def _node(node_id: str, text: str, doc: str, **metadata: Any) -> TextNode:
    return TextNode(
        id_=node_id, text=text, metadata=metadata, embedding=hash_embed(text),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
    )


@pytest.fixture
def store(any_client: ProximaDBAPI) -> Iterator[ProximaDBVectorStore]:
    s = ProximaDBVectorStore(client=any_client, collection_name=fresh_name("li"))
    s.add([
        _node("n1", "jazz in paris", "d1", genre="jazz", year=1959, tags=["live"], where={"city": "paris"}),
        _node("n2", "more jazz in paris", "d1", genre="jazz", year=1961, tags=["studio", "live"]),
        _node("n3", "rock in rome", "d2", genre="rock", year=1971, tags=[], note=""),
        _node("n4", "opera in milan", "d3", genre="opera", year=1853, tags=["live"], note="premiere"),
    ])
    yield s
    s.clear()


def _ids(store: ProximaDBVectorStore, filters: MetadataFilters | None = None, k: int = 10) -> set[str]:
    result = store.query(VectorStoreQuery(query_embedding=hash_embed("jazz"), similarity_top_k=k, filters=filters))
    return set(result.ids or [])


def _f(key: str, value: Any, op: str = "==") -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=FilterOperator(op))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (MetadataFilters(filters=[_f("genre", "jazz")]), {"n1", "n2"}),
        (MetadataFilters(filters=[_f("genre", "jazz", "!=")]), {"n3", "n4"}),
        (MetadataFilters(filters=[_f("year", 1960, ">"), _f("year", 1971, "<")]), {"n2"}),
        (MetadataFilters(filters=[_f("year", 1959, ">="), _f("year", 1853, "<=")], condition="or"), {"n1", "n2", "n3",
                                                                                                      "n4"}),
        (MetadataFilters(filters=[_f("genre", ["rock", "opera"], "in")]), {"n3", "n4"}),
        (MetadataFilters(filters=[_f("genre", ["rock", "opera"], "nin")]), {"n1", "n2"}),
        (MetadataFilters(filters=[_f("tags", "studio", "contains")]), {"n2"}),
        (MetadataFilters(filters=[_f("tags", ["studio", "live"], "all")]), {"n2"}),
        (MetadataFilters(filters=[_f("tags", ["studio", "live"], "any")]), {"n1", "n2", "n4"}),
        (MetadataFilters(filters=[_f("note", None, "is_empty")]), {"n1", "n2", "n3"}),
        (MetadataFilters(filters=[_f("genre", "jazz"), _f("genre", "rock")], condition=FilterCondition.NOT),
         {"n4"}),
        (MetadataFilters(filters=[
            _f("genre", "opera"),
            MetadataFilters(filters=[_f("genre", "jazz"), _f("year", 1960, ">")]),
        ], condition="or"), {"n2", "n4"}),
    ],
)
def test_metadata_filters_map_to_proximadb_filters(
    store: ProximaDBVectorStore, filters: MetadataFilters, expected: set[str]
) -> None:
    assert _ids(store, filters) == expected
    assert {n.node_id for n in store.get_nodes(filters=filters)} == expected


def test_the_mapping_is_proximadb_filter_language() -> None:
    flt = MetadataFilters(filters=[_f("a", 1, ">"), _f("b", ["x"], "all")], condition="not")
    assert to_proximadb_filter(flt) == {"$not": {"$or": [{"a": {"$gt": 1}}, {"$and": [{"b": "x"}]}]}}
    assert to_proximadb_filter(MetadataFilters(filters=[])) is None


def test_unsupported_and_bad_filters_are_typed_errors(store: ProximaDBVectorStore) -> None:
    with pytest.raises(ValidationError, match="'text_match' has no counterpart"):
        _ids(store, MetadataFilters(filters=[_f("genre", "ja", "text_match")]))
    with pytest.raises(InvalidFilterError, match=r"\$in"):
        _ids(store, MetadataFilters(filters=[_f("genre", "jazz", "in")]))
    with pytest.raises(ValidationError, match="node_ids or filters"):
        store.delete_nodes()
    assert len(store.get_nodes()) == 4


def test_query_gives_nodes_scores_and_doc_ids(store: ProximaDBVectorStore) -> None:
    result = store.query(VectorStoreQuery(query_embedding=hash_embed("opera in milan"), similarity_top_k=2))
    assert result.ids is not None and result.ids[0] == "n4"
    assert result.similarities is not None and result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert result.nodes is not None and result.nodes[0].get_content() == "opera in milan"
    assert result.nodes[0].metadata == {"genre": "opera", "year": 1853, "tags": ["live"], "note": "premiere"}
    only = store.query(VectorStoreQuery(query_embedding=hash_embed("jazz"), similarity_top_k=5, doc_ids=["d2", "d3"]))
    assert set(only.ids or []) == {"n3", "n4"}


def test_get_nodes_delete_nodes_delete_and_clear(store: ProximaDBVectorStore) -> None:
    (n1,) = store.get_nodes(node_ids=["n1"])
    assert n1.metadata["where"] == {"city": "paris"}  # kept in _node_content though ProximaDB cannot filter it
    assert [n.node_id for n in store.get_nodes(node_ids=["n4", "zz", "n1"])] == ["n4", "n1"]
    assert store.get_nodes(node_ids=["n1", "n3"], filters=MetadataFilters(filters=[_f("genre", "rock")]))[0].node_id \
        == "n3"
    store.delete_nodes(node_ids=["n1", "n3"], filters=MetadataFilters(filters=[_f("genre", "rock")]))
    assert {n.node_id for n in store.get_nodes()} == {"n1", "n2", "n4"}
    store.delete_nodes(filters=MetadataFilters(filters=[_f("year", 1900, "<")]))
    assert {n.node_id for n in store.get_nodes()} == {"n1", "n2"}
    store.delete("d1")
    assert store.get_nodes() == []
    store.add([_node("n5", "blues", "d5")])
    store.clear()
    assert store.get_nodes() == [] and _ids(store) == set()
    assert store.collection_name not in {c["name"] for c in store.client.list_collections()}


def test_async_variants(store: ProximaDBVectorStore) -> None:
    async def run() -> None:
        await store.async_add([_node("n9", "jazz again", "d9", genre="jazz")])
        assert "n9" in {n.node_id for n in await store.aget_nodes(node_ids=["n9"])}
        result = await store.aquery(VectorStoreQuery(query_embedding=hash_embed("jazz again"), similarity_top_k=1))
        assert result.ids == ["n9"]
        await store.adelete("d9")
        await store.adelete_nodes(node_ids=["n1"])
        assert {n.node_id for n in await store.aget_nodes()} == {"n2", "n3", "n4"}
        await store.aclear()
        assert await store.aget_nodes() == []

    asyncio.run(run())


def test_add_refuses_nodes_without_embeddings_or_of_another_dimension(store: ProximaDBVectorStore) -> None:
    with pytest.raises(ValidationError, match="needs an embedding"):
        store.add([TextNode(id_="x", text="no vector")])
    with pytest.raises(DimensionMismatchError, match=f"dimension {DIM}, the embedding gives 3"):
        ProximaDBVectorStore(client=store.client, collection_name=store.collection_name).add(
            [TextNode(id_="x", text="short", embedding=[1.0, 0.0, 0.0])]
        )
    assert len(store.get_nodes()) == 4


def test_a_collection_dropped_by_someone_else_is_empty_then_created_again(store: ProximaDBVectorStore) -> None:
    assert len(store.get_nodes()) == 4
    ProximaDBVectorStore(client=store.client, collection_name=store.collection_name).clear()
    assert store.get_nodes() == [] and _ids(store) == set()
    store.delete("d1")
    store.delete_nodes(node_ids=["n1"])
    assert store.add([_node("n7", "back again", "d7")]) == ["n7"]
    assert _ids(store) == {"n7"}
