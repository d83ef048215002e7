"""The LangChain store beyond the standard suite: filters, MMR, scores, metadata round trips, lazy
collections and the errors for bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _frameworks import DIM, fresh_name, hash_embed
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from proximadb.client_api import ProximaDBAPI
from proximadb.errors import DimensionMismatchError, InvalidFilterError, ValidationError
from proximadb.integrations.langchain import TEXT_KEY, ProximaDBVectorStore


class HashingEmbeddings(Embeddings):
    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [hash_embed(t, self.dim) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return hash_embed(text, self.dim)


TEXTS = ["jazz in paris", "rock in rome", "jazz in rome", "opera in milan"]
METAS: list[dict[str, Any]] = [
    {"genre": "jazz", "year": 1959, "tags": ["live"]},
    {"genre": "rock", "year": 1971, "tags": []},
    {"genre": "jazz", "year": 1990, "tags": ["studio", "live"]},
    {"genre": "opera", "year": 1853, "tags": ["live"]},
]


@pytest.fixture
def store(any_client: ProximaDBAPI) -> Any:
    s = ProximaDBVectorStore.from_texts(
        TEXTS, HashingEmbeddings(), METAS, ids=["a", "b", "c", "d"], client=any_client,
        collection_name=fresh_name("lcs"),
    )
    yield s
    s.delete_collection()


def test_from_texts_creates_the_collection_with_the_embedding_dimension(store: ProximaDBVectorStore) -> None:
    info = store.client.get_collection(store.collection_name)
    assert info["dimension"] == DIM and info["distance_metric"] == "cosine"
    assert store.client.count(store.collection_name) == 4


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"genre": "jazz"}, {"a", "c"}),
        ({"year": {"$gte": 1960}}, {"b", "c"}),
        ({"$or": [{"genre": "opera"}, {"year": {"$lt": 1960}}]}, {"a", "d"}),
        ({"tags": "live", "genre": {"$ne": "jazz"}}, {"d"}),
        ({"genre": {"$in": ["rock", "opera"]}}, {"b", "d"}),
        ({"$not": {"genre": "jazz"}}, {"b", "d"}),
    ],
)
def test_filters_are_proximadb_filters_on_the_documents_metadata(
    store: ProximaDBVectorStore, flt: dict[str, Any], expected: set[str]
) -> None:
    docs = store.similarity_search("jazz", k=10, filter=flt)
    assert {d.id for d in docs} == expected
    assert {d.id for d in asyncio.run(store.asimilarity_search("jazz", k=10, filter=flt))} == expected


def test_a_bad_filter_is_a_typed_error(store: ProximaDBVectorStore) -> None:
    with pytest.raises(InvalidFilterError, match=r"\$regex"):
        store.similarity_search("jazz", k=2, filter={"genre": {"$regex": "j.*"}})


def test_scores_are_distances_and_relevance_is_in_0_1(store: ProximaDBVectorStore) -> None:
    (best, distance), *_ = store.similarity_search_with_score("jazz in paris", k=4)
    assert best.id == "a" and distance == pytest.approx(0.0, abs=1e-5)
    scored = store.similarity_search_with_relevance_scores("jazz in paris", k=4)
    assert scored[0][0].id == "a" and scored[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)


def test_max_marginal_relevance_prefers_diverse_documents(any_client: ProximaDBAPI) -> None:
    store = ProximaDBVectorStore(HashingEmbeddings(), collection_name=fresh_name("mmr"), client=any_client)
    store.add_texts(["jazz paris", "jazz paris", "jazz paris club", "jazz rome"], ids=["p1", "p2", "p3", "r"])
    plain = [d.id for d in store.similarity_search("jazz paris", k=2)]
    assert set(plain) == {"p1", "p2"}  # the two copies are nearest
    diverse = store.max_marginal_relevance_search("jazz paris", k=2, fetch_k=4, lambda_mult=0.1)
    assert diverse[0].id in {"p1", "p2"} and diverse[1].id not in {"p1", "p2"}
    again = asyncio.run(store.amax_marginal_relevance_search("jazz paris", k=2, fetch_k=4, lambda_mult=0.1))
    assert [d.id for d in again] == [d.id for d in diverse]
    assert store.max_marginal_relevance_search("jazz", k=2, filter={"nope": 1}) == []
    store.delete_collection()


def test_metadata_proximadb_cannot_store_comes_back_as_given(any_client: ProximaDBAPI) -> None:
    store = ProximaDBVectorStore(HashingEmbeddings(), collection_name=fresh_name("meta"), client=any_client)
    meta = {"source": {"file": "a.txt", "page": 3}, "scores": [1, 2.5], "n": 2**70, "s": "x", "none": None}
    store.add_documents([Document(page_content="nested metadata", metadata=meta, id="m")])
    (doc,) = store.get_by_ids(["m"])
    assert doc == Document(page_content="nested metadata", metadata=meta, id="m")
    stored = any_client.get_vector(store.collection_name, "m", include_vector=False)
    assert stored is not None and stored["metadata"]["s"] == "x" and stored["metadata"][TEXT_KEY] == "nested metadata"
    assert [d.id for d in store.similarity_search("nested", k=1, filter={"s": "x"})] == ["m"]
    store.delete_collection()


def test_bad_input_is_refused_and_changes_nothing(store: ProximaDBVectorStore) -> None:
    with pytest.raises(ValidationError, match=r"_lc_text.*reserved"):
        store.add_texts(["x"], metadatas=[{"_lc_text": "y"}], ids=["z"])
    with pytest.raises(ValidationError, match="2 texts but 1 ids"):
        store.add_texts(["x", "y"], ids=["z"])
    with pytest.raises(TypeError, match=r"unexpected argument.*bogus"):
        store.similarity_search("jazz", k=1, bogus=True)
    other = ProximaDBVectorStore(HashingEmbeddings(8), collection_name=store.collection_name, client=store.client)
    with pytest.raises(DimensionMismatchError, match="dimension 32, the embedding gives 8"):
        other.add_texts(["x"], ids=["z"])
    with pytest.raises(ValidationError, match="over the server's max_metadata_bytes limit"):
        store.add_texts(["x" * 70_000], ids=["z"])
    assert store.client.count(store.collection_name) == 4
    assert store.get_by_ids(["z"]) == []


def test_the_client_must_be_a_sync_proximadb_client() -> None:
    class AsyncLike:
        async def search_batch(self) -> None: ...

    with pytest.raises(TypeError, match="async ProximaDB client is not supported"):
        ProximaDBVectorStore(HashingEmbeddings(), client=AsyncLike())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a ProximaDB client.*got str"):
        ProximaDBVectorStore(HashingEmbeddings(), client="http://127.0.0.1:5678")  # type: ignore[arg-type]


def test_nothing_is_created_until_the_first_write(any_client: ProximaDBAPI) -> None:
    name = fresh_name("lazy")
    store = ProximaDBVectorStore(HashingEmbeddings(), collection_name=name, client=any_client)
    assert store.similarity_search("x", k=3) == [] and store.get_by_ids(["a"]) == []
    store.delete(["a"])
    assert name not in {c["name"] for c in any_client.list_collections()}
    store.add_texts(["x"])
    assert any_client.get_collection(name)["dimension"] == DIM
    store.delete()  # None: everything
    assert name not in {c["name"] for c in any_client.list_collections()}


def test_a_collection_dropped_by_someone_else_is_empty_then_created_again(store: ProximaDBVectorStore) -> None:
    assert len(store.similarity_search("jazz", k=4)) == 4
    ProximaDBVectorStore(HashingEmbeddings(), collection_name=store.collection_name, client=store.client).delete()
    assert store.similarity_search("jazz", k=4) == [] and store.get_by_ids(["a"]) == []
    store.delete(["a"])
    assert store.add_texts(["back again"], ids=["n"]) == ["n"]
    assert [d.id for d in store.similarity_search("back again", k=4)] == ["n"]
