"""Columnar data in and out (proximadb/sdk/columns.py, arrays.py) on every client, against a real daemon.

A pyarrow Table / RecordBatch (or a pandas DataFrame) of records goes into ``insert_vectors`` /
``upsert_vectors`` and a handle's ``add`` / ``upsert``; pyarrow columns stand for ids and vectors;
``scroll(as_numpy=True)`` gives columns back. Bad columns are typed errors and write nothing.
Also: a search with vectors, metadata and expiry round-trips through the search codec the same
on every client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _any_client import KINDS, opened
from _any_client import maybe as _v
from _any_client import raises as _raises
from _daemon import Daemon

from proximadb import errors

pa = pytest.importorskip("pyarrow")


def _table(ids: list[str], start: float) -> Any:
    vectors = [[start + i, 1.0, 0.0] for i in range(len(ids))]
    return pa.table({
        "id": ids,
        "vector": pa.array(vectors, type=pa.list_(pa.float32(), 3)),
        "metadata": [{"lang": "en", "n": i} if i % 2 == 0 else {"lang": "de"} for i in range(len(ids))],
    })


async def scenario(client: Any) -> list[Any]:
    answers: list[Any] = []
    await _v(client.create_collection("cols", 3, distance_metric="euclidean"))
    assert (await _v(client.insert_vectors("cols", _table(["a", "b"], 0.0)))) == {"count": 2, "ids": ["a", "b"]}
    upserted = await _v(client.upsert_vectors("cols", _table(["b", "c"], 5.0).to_batches()[0]))
    assert upserted["ids"] == ["b", "c"]
    docs = await _v(client.collection("cols"))
    # a handle takes a table too (a document column is stored beside the vector), and pyarrow columns
    assert (await _v(docs.add(pa.table({"id": ["d"], "vector": [[9.0, 9.0, 9.0]], "document": ["hi"]}))))["ids"] \
        == ["d"]
    await _v(docs.upsert(ids=pa.array(["e"]), vectors=pa.array([[7.0, 0.0, 0.0]])))
    assert await _v(docs.count()) == 5 and await _v(docs.count({"lang": "de"})) == 1

    # bad columns: typed errors, nothing written
    for bad in (
        pa.table({"id": ["x"], "vector": [[1.0, 2.0, 3.0]], "colour": ["red"]}),  # a column not understood
        pa.table({"id": ["x"]}),  # no vector
        pa.table({"id": [None], "vector": [[1.0, 2.0, 3.0]]}),  # a null id
        pa.table({"id": ["x", "y"], "vector": [[1.0, 2.0, 3.0], None]}),  # a null vector
        pa.table({"id": ["x", "y"], "vector": [[1.0, 2.0, 3.0], [1.0]]}),  # ragged rows
        pa.table({"id": ["x"], "vector": [["1", "2", "3"]]}),  # strings
        pa.table({"id": ["x"], "vector": pa.array([1.0])}),  # not a list column
        pa.table({"id": ["x"], "vector": [[1.0, 2.0, 3.0]], "metadata": [3]}),  # metadata not a dict
    ):
        await _raises(errors.ValidationError, lambda bad=bad: docs.add(bad))
        await _raises(errors.ValidationError, lambda bad=bad: client.insert_vectors("cols", bad))
    await _raises(errors.DimensionMismatchError, lambda: docs.add(pa.table({"id": ["x"], "vector": [[1.0, 2.0]]})))
    await _raises(errors.ValidationError, lambda: docs.add(_table(["x"], 0.0), vectors=np.ones((1, 3))))
    await _raises(errors.VectorExistsError, lambda: client.insert_vectors("cols", _table(["a"], 0.0)))
    assert await _v(docs.count()) == 5

    # a page as columns
    page, cursor = await _v(docs.scroll(limit=3, include_vectors=True, as_numpy=True))
    assert page["ids"].tolist() == ["a", "b", "c"] and cursor is not None
    assert page["vectors"].dtype == np.float32 and page["vectors"].shape == (3, 3)
    assert page["vectors"][1].tolist() == [5.0, 1.0, 0.0]  # b was upserted
    assert page["metadatas"] == [{"lang": "en", "n": 0}, {"lang": "en", "n": 0}, {"lang": "de"}]
    assert page["timestamps"].dtype == np.int64 and (page["timestamps"] > 0).all()
    rest, end = await _v(docs.scroll(limit=10, cursor=cursor, as_numpy=True))
    assert rest["ids"].tolist() == ["d", "e"] and rest["documents"] == ["hi", None] and end is None
    assert "vectors" not in rest
    answers.append({k: v.tolist() if hasattr(v, "tolist") else v for k, v in page.items() if k != "timestamps"})

    # the search codec: vectors, metadata and expiry come back the same on every client
    expires = 4_102_444_800_000_000  # 2100-01-01, in microseconds
    await _v(client.insert_vectors("cols", [{"id": "t", "vector": [0.5, 0.5, 0.5], "metadata": {"tags": ["p", "q"]},
                                             "expires_at": expires}]))
    hits = await _v(client.search_batch("cols", np.array([[0.5, 0.5, 0.5], [7.0, 0.0, 0.0]]), k=2,
                                        include_vectors=True))
    assert [[h["id"] for h in q] for q in hits] == [["t", "a"], ["e", "c"]]
    assert hits[0][0]["expires_at"] == expires and hits[0][0]["metadata"] == {"tags": ["p", "q"]}
    assert hits[0][0]["vector"].dtype == np.float32 and hits[0][0]["vector"].tolist() == [0.5, 0.5, 0.5]
    assert "expires_at" not in hits[0][1] and hits[0][0]["distance"] == 0.0
    answers.append([[{k: v.tolist() if hasattr(v, "tolist") else v for k, v in h.items()} for h in q] for q in hits])
    return answers


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("columns") / "data") as d:
        yield d


@pytest.fixture(scope="module")
def embedded_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return asyncio.run(_answers("embedded", None, tmp_path_factory.mktemp("embedded") / "data"))


async def _answers(kind: str, daemon: Daemon | None, data_dir: Path) -> list[Any]:
    async with opened(kind, daemon, data_dir) as client:
        if daemon is not None:
            for c in await _v(client.list_collections()):
                await _v(client.delete_collection(c["name"]))
        return await scenario(client)


@pytest.mark.parametrize("kind", KINDS[1:])
def test_tables_in_and_columns_out_answer_the_same_on_every_client(
    kind: str, daemon: Daemon, embedded_answers: list[Any], tmp_path: Path
) -> None:
    assert asyncio.run(_answers(kind, daemon, tmp_path)) == embedded_answers


def test_a_pandas_frame_of_records_goes_through_the_same_converter(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from proximadb import connect_embedded

    with connect_embedded(tmp_path / "d", fsync="never") as db:
        docs = db.get_or_create_collection("docs", 2)
        frame = pd.DataFrame({"id": ["a", "b"], "vector": [[1.0, 0.0], [0.0, 1.0]],
                              "metadata": [{"lang": "en"}, None]})
        assert docs.add(frame)["ids"] == ["a", "b"]
        with pytest.raises(errors.ValidationError, match="unknown column"):
            docs.add(frame.assign(extra=1))
        records = docs.get(["a", "b"], include_vectors=False)
        assert [r["metadata"] for r in records] == [{"lang": "en"}, {}]
