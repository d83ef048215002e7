"""The conveniences (issue 13): get-or-create, collection handles, numpy in and out, readable reprs.

One scenario, written once with ``await _v(...)`` around each call, runs on the embedded engine, on a
real daemon over gRPC and REST with the blocking client, and over both with the asyncio client; every
run must give the embedded engine's answers. Bad input raises a typed error and changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _any_client import REMOTE_KINDS, daemons_per_remote_kind, opened
from _any_client import maybe as _v
from _any_client import raises as _raises
from _daemon import Daemon

import proximadb
from proximadb import errors
from proximadb.sdk.arrays import hits_to_numpy


async def scenario(client: Any, name: str) -> list[Any]:
    """Every convenience, with assertions; the answers, for comparing clients with each other."""
    answers: list[Any] = []
    handle_kind = "AsyncCollection" if name.startswith("async") else "Collection"
    docs = await _v(client.get_or_create_collection("docs", 4, distance_metric="euclidean"))
    assert repr(docs) == f"<{handle_kind} 'docs' dim=4 euclidean>"
    first_uuid = (await _v(docs.info()))["uuid"]
    again = await _v(client.get_or_create_collection("docs", 4, distance_metric="euclidean"))  # a second run
    assert (await _v(again.info()))["uuid"] == first_uuid
    assert (await _v(client.create_collection("docs", 4, distance_metric="euclidean", exist_ok=True)))["uuid"] \
        == first_uuid
    message = await _raises(errors.CollectionExistsError, lambda: client.create_collection("docs", 4))
    assert message == "collection 'docs' already exists"
    message = await _raises(errors.CollectionConfigMismatchError,
                            lambda: client.get_or_create_collection("docs", 5, distance_metric="euclidean"))
    assert "dimension 4 (asked for 5)" in message and "metric" not in message
    message = await _raises(errors.CollectionConfigMismatchError,
                            lambda: client.create_collection("docs", 4, exist_ok=True))
    assert "distance metric 'euclidean' (asked for 'cosine')" in message and "dimension" not in message
    assert [c["name"] for c in await _v(client.list_collections())] == ["docs"]

    # numpy in: a float64 matrix, ids as a numpy column, one 1-D vector
    matrix = np.arange(24, dtype=np.float64).reshape(6, 4) / 10.0
    ids = np.array([f"v{i}" for i in range(6)])
    added = await _v(docs.add(ids=ids, vectors=matrix, metadatas=[{"even": i % 2 == 0} for i in range(6)]))
    assert added == {"count": 6, "ids": [f"v{i}" for i in range(6)]}
    assert (await _v(docs.add(ids=["one"], vectors=np.array([9.0, 9.0, 9.0, 9.0]))))["ids"] == ["one"]
    assert (await _v(docs.upsert(ids=["one"], vectors=np.array([[8.0, 8.0, 8.0, 8.0]]))))["count"] == 1
    assert await _v(docs.count()) == 7 and await _v(docs.count({"even": True})) == 3

    # bad input: typed errors, nothing written
    await _raises(errors.ValidationError, lambda: docs.add(ids=["r1", "r2"], vectors=[[1, 2, 3, 4], [1, 2]]))
    await _raises(errors.ValidationError, lambda: docs.add(ids=["x"], vectors=np.zeros((1, 2, 4))))
    await _raises(errors.DimensionMismatchError, lambda: docs.add(ids=["x"], vectors=np.ones(3)))
    await _raises(errors.ValidationError, lambda: docs.add(ids="x", vectors=np.ones(4)))
    await _raises(errors.VectorExistsError, lambda: docs.add(ids=["v0"], vectors=np.ones(4)))
    await _raises(errors.ValidationError, lambda: docs.query())
    await _raises(errors.ValidationError, lambda: docs.query(np.ones(4), vectors=np.ones((1, 4))))
    await _raises(errors.ValidationError, lambda: docs.query(np.ones(4), k=2, bogus=1))
    assert await _v(docs.count()) == 7

    # one query (1-D) gives hits; a matrix gives a list of hit lists
    hits = await _v(docs.query(matrix[0], k=2))
    assert [h["id"] for h in hits] == ["v0", "v1"] and hits[1]["metadata"] == {"even": False}
    batch = await _v(docs.search(matrix[[0, 5]], k=1, filter={"even": True}))
    assert [[h["id"] for h in hs] for hs in batch] == [["v0"], ["v4"]]
    assert await _v(docs.query(vectors=np.ones((0, 4)), k=1)) == []
    answers += [hits, batch]

    # numpy out
    columns = await _v(docs.query(matrix[2], k=3, include_vectors=True, as_numpy=True))
    assert columns["ids"].tolist() == ["v2", "v1", "v3"] or columns["ids"].tolist() == ["v2", "v3", "v1"]
    assert columns["scores"].dtype == np.float32 and columns["scores"].shape == (3,)
    assert columns["distances"][0] == pytest.approx(0.0, abs=1e-6)
    assert columns["vectors"].shape == (3, 4) and np.allclose(columns["vectors"][0], matrix[2])
    record_columns = await _v(docs.get(["v3", "missing", "v1"], as_numpy=True))
    assert record_columns["ids"].tolist() == ["v3", "v1"]
    assert record_columns["vectors"].dtype == np.float32 and np.allclose(record_columns["vectors"], matrix[[3, 1]])
    assert record_columns["timestamps"].dtype == np.int64 and (record_columns["timestamps"] > 0).all()
    answers.append({k: v.tolist() for k, v in record_columns.items() if k not in ("timestamps",)
                    and hasattr(v, "tolist")})
    one = await _v(docs.get("v2", include_vectors=False))
    assert [r["id"] for r in one] == ["v2"] and "vector" not in one[0]

    # delete, scroll, count, stats through the handle
    assert await _v(docs.delete("v5")) == 1
    assert await _v(docs.delete(filter={"even": True})) == 3
    page, cursor = await _v(docs.scroll(limit=2))
    assert [r["id"] for r in page] == ["one", "v1"] and cursor is not None
    rest, end = await _v(docs.scroll(limit=10, cursor=cursor))
    assert [r["id"] for r in rest] == ["v3"] and end is None
    assert (await _v(docs.stats()))["vectors"] == 3
    answers.append((await _v(docs.info()))["vector_count"])

    # a handle on an existing collection; a missing one is a typed error
    handle = await _v(client.collection("docs"))
    assert repr(handle) == f"<{handle_kind} 'docs' dim=4 euclidean>" and await _v(handle.count()) == 3
    await _raises(errors.CollectionNotFoundError, lambda: client.collection("nope"))
    return answers


def _check_client_repr(client: Any, kind: str, daemon: Daemon | None) -> None:
    text = repr(client)
    if kind == "embedded":
        assert re.fullmatch(r"<EmbeddedClient embedded /.+>", text), text
    elif kind.endswith("grpc"):
        assert daemon is not None
        cls = "AsyncClient" if kind.startswith("async") else "ProximaDBClient"
        assert text == f"<{cls} grpc {daemon.grpc_target}>"
    else:
        assert daemon is not None
        cls = "AsyncClient" if kind.startswith("async") else "ProximaDBClient"
        assert text == f"<{cls} rest {daemon.rest_url}>"


async def _run_kind(kind: str, daemon: Daemon | None, data_dir: Path) -> list[Any]:
    async with opened(kind, daemon, data_dir) as client:
        _check_client_repr(client, kind, daemon)
        return await scenario(client, kind)


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    yield from daemons_per_remote_kind(tmp_path_factory)


@pytest.fixture(scope="module")
def embedded_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return asyncio.run(_run_kind("embedded", None, tmp_path_factory.mktemp("embedded") / "data"))


@pytest.mark.parametrize("kind", REMOTE_KINDS)
def test_the_conveniences_answer_the_same_everywhere(
    kind: str, daemons: dict[str, Daemon], embedded_answers: list[Any], tmp_path: Path
) -> None:
    answers = asyncio.run(_run_kind(kind, daemons[kind], tmp_path))
    assert answers == embedded_answers
    assert embedded_answers[-1] == 3


def test_an_async_handle_made_without_await_reads_the_collection_on_first_use(tmp_path: Path) -> None:
    async def go(daemon: Daemon) -> None:
        async with proximadb.connect_async(daemon.rest_url) as aclient:
            await aclient.create_collection("lazy", 2)
            lazy = aclient.collection("lazy")
            assert repr(lazy) == "<AsyncCollection 'lazy'>" and lazy.dimension is None
            await lazy.add(ids=["a"], vectors=[1.0, 0.0])
            assert await lazy.count() == 1
            await lazy.info()
            assert repr(lazy) == "<AsyncCollection 'lazy' dim=2 cosine>" and lazy.distance_metric == "cosine"
            missing = aclient.collection("missing")  # nothing asked yet
            with pytest.raises(errors.CollectionNotFoundError):
                await missing.count()
            with pytest.raises(errors.CollectionNotFoundError):
                await aclient.collection("missing")

    with Daemon(tmp_path / "data") as daemon:
        asyncio.run(go(daemon))


def test_numpy_columns_helper_works_on_plain_client_results(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:
        db.create_collection("c", 3, distance_metric="dot_product")
        db.insert_vectors("c", ids=np.array(["a", "b"]), vectors=np.eye(2, 3))
        db.insert_vectors("c", ids=["z"], vectors=np.array([0.0, 0.0, 1.0]))  # one 1-D vector
        out = hits_to_numpy(db.search("c", np.array([0.0, 1.0, 0.5], dtype=np.float64), k=3))
        assert out["ids"].tolist() == ["b", "z", "a"]
        assert out["scores"].tolist() == pytest.approx([1.0, 0.5, 0.0])
        assert db.search_batch("c", np.array([1, 0, 0]), k=1)[0][0]["id"] == "a"  # 1-D: one query
        assert [r["id"] for r in db.get_vectors("c", np.array(["z", "a"]))] == ["z", "a"]


def test_pandas_columns_go_in_and_hits_come_out_as_a_frame(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is optional: numpy's asarray is all the SDK uses")
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, 0.0, 0.5], "y": [0.0, 1.0, 0.5],
                          "lang": ["en", "de", "en"]})
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:
        docs = db.get_or_create_collection("docs", 2)
        docs.add(ids=frame["id"], vectors=frame[["x", "y"]], metadatas=frame[["lang"]].to_dict("records"))
        hits = pd.DataFrame(docs.query(frame[["x", "y"]].iloc[0], k=3, filter={"lang": "en"}))
        assert hits["id"].tolist() == ["a", "c"] and hits["score"].is_monotonic_decreasing
        columns = docs.get(frame["id"].iloc[::-1], as_numpy=True)
        assert columns["ids"].tolist() == ["c", "b", "a"]
        with pytest.raises(errors.ValidationError):  # strings where numbers belong: typed, nothing written
            docs.add(ids=["z"], vectors=frame[["lang", "x"]].iloc[:1])
        assert docs.count() == 3


def test_a_create_with_exist_ok_may_be_retried_and_a_plain_one_may_not() -> None:
    from proximadb.sdk import create_calls

    # an unreachable server may have created the collection already: with exist_ok the retry finds it
    assert next(create_calls.create_collection("c", 2, exist_ok=True, schema_version=4)).safe is True
    assert next(create_calls.create_collection("c", 2, schema_version=4)).safe is False
