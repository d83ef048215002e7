"""score_threshold, oversampling, search_groups and recommend through every client (embedded, gRPC, REST,
async gRPC, async REST) against a real daemon: the engine's answers in-process, bad input refused with a typed
error naming the field and nothing changed, an unknown example id a VectorNotFoundError naming it; raw REST
(400 / 404, the Avro search's query parameters) and raw gRPC (INVALID_ARGUMENT / NOT_FOUND) refusals.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _any_client import KINDS, maybe, opened, raises
from _daemon import Daemon

import proximadb
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.codec.avro_search import encode_search_request
from proximadb.codec.framing import encode_frame
from proximadb.errors import ValidationError, VectorNotFoundError

DIM = 4
RNG = np.random.default_rng(11)
VECTORS = RNG.standard_normal((40, DIM)).astype(np.float32)
RECORDS = [
    {"id": f"r{i}", "vector": VECTORS[i].tolist(),
     "metadata": {"shop": f"s{i % 5}", "n": i % 3, **({"tags": ["x", "y"]} if i % 7 == 0 else {})}}
    for i in range(40)
]
for r in RECORDS[::9]:
    del r["metadata"]["shop"]  # rows without the field: in no group
Q = [0.5, -0.2, 0.1, 0.9]
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("search", {"vector": Q, "k": 10, "score_threshold": 1.2}),
    ("search", {"vector": Q, "k": 5, "score_threshold": 0.9, "filter": {"n": 1}, "oversampling": 3.0}),
    ("search_text", {"text": "nothing", "k": 3, "score_threshold": 0.5}),
    ("search_groups", {"vector": Q, "group_by": "shop", "limit": 3, "group_size": 2}),
    ("search_groups", {"vector": Q, "group_by": "tags", "limit": 5, "group_size": 3, "filter": {"n": {"$ne": 2}},
                       "include_metadata": False}),
    ("recommend", {"positive": ["r1", "r2"], "negative": ["r3"], "k": 4}),
    ("recommend", {"positive": ["r1", Q], "k": 5, "strategy": "best_score", "filter": {"n": 0}}),
    ("recommend", {"positive": ["r4"], "negative": [[0.0, 1.0, 0.0, 0.0]], "k": 3, "strategy": "best_score",
                   "include_vectors": True}),
]


def _norm(answer: Any) -> Any:
    """Hits and groups compared by id, score to 5 places, metadata, vector (Avro scores are float32)."""
    if isinstance(answer, list) and answer and "hits" in answer[0]:
        return [(g["value"], _norm(g["hits"])) for g in answer]
    out = []
    for h in answer:
        vector = h.get("vector")
        out.append((h["id"], round(float(h["score"]), 5), json.dumps(h.get("metadata"), sort_keys=True),
                    None if vector is None else np.asarray(vector, dtype=np.float32).tolist()))
    return out


def _ask(client: Any, name: str, op: str, body: dict[str, Any]) -> Any:
    args = dict(body)
    if op == "search":
        return client.search(name, args.pop("vector"), args.pop("k"), **args)
    if op == "search_text":
        return client.search_text(name, args.pop("text"), args.pop("k"), **args)
    if op == "search_groups":
        return client.search_groups(name, args.pop("vector"), args.pop("group_by"), **args)
    return client.recommend(name, args.pop("positive"), args.pop("negative", None), **args)


async def _answer(client: Any, name: str, op: str, body: dict[str, Any]) -> Any:
    return _norm(await maybe(_ask(client, name, op, body)))


def _engine_answers(data_dir: Path) -> list[Any]:
    with proximadb.connect_embedded(data_dir, fsync="never") as db:
        db.create_collection("c", DIM, distance_metric="euclidean")
        db.insert_vectors("c", RECORDS)
        col = db.engine.collection("c")
        out = []
        for op, body in CALLS:
            args = dict(body)
            if op == "search":
                got = col.search(args.pop("vector"), args.pop("k"), **args)
            elif op == "search_text":
                got = col.search_text(args.pop("text"), args.pop("k"), **args)
            elif op == "search_groups":
                got = col.search_groups(args.pop("vector"), args.pop("group_by"), **args)
            else:
                got = col.recommend(args.pop("positive"), args.pop("negative", ()), **args)
            out.append(_norm(got))
        return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("shapes") / "data", "--fsync", "never") as d:
        yield d


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return _engine_answers(tmp_path_factory.mktemp("engine") / "data")


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("search", {"vector": Q, "k": 3, "score_threshold": -1.0}, "score_threshold"),
    ("search", {"vector": Q, "k": 3, "oversampling": 0.5}, "oversampling"),
    ("search_text", {"text": "x", "k": 3, "score_threshold": -0.1}, "score_threshold"),
    ("search_groups", {"vector": Q, "group_by": "shop", "group_size": 0}, "group_size"),
    ("search_groups", {"vector": Q, "group_by": ""}, "group_by"),
    ("search_groups", {"vector": Q, "group_by": "shop", "oversampling": 500.0}, "oversampling"),
    ("recommend", {"positive": [], "k": 3}, "positive"),
    ("recommend", {"positive": ["r1"], "k": 3, "strategy": "centroid"}, "strategy"),
    ("recommend", {"positive": [[1.0, 2.0]], "k": 3}, "dimension"),
    ("recommend", {"positive": ["r1"], "k": 0}, "k"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_same_answers_and_refusals_on_every_client(kind: str, daemon: Daemon, expected: list[Any],
                                                   tmp_path: Path) -> None:
    asyncio.run(_scenario(kind, daemon, expected, tmp_path))


async def _scenario(kind: str, daemon: Daemon, expected: list[Any], tmp_path: Path) -> None:
    name = f"c-{kind}"
    async with opened(kind, daemon, tmp_path / "data") as db:
        await maybe(db.create_collection(name, DIM, distance_metric="euclidean"))
        await maybe(db.insert_vectors(name, RECORDS))
        for (op, body), want in zip(CALLS, expected, strict=True):
            assert await _answer(db, name, op, body) == want, (op, body)
        assert 0 < len(expected[0]) < 10 and all(h[0] != "r1" for h in expected[5])
        assert [len(g[1]) for g in expected[3]] == [2, 2, 2] and {g[0] for g in expected[4]} == {"x", "y"}
        assert expected[7] and expected[7][0][3] is not None  # include_vectors
        for op, body, word in BAD:
            message = await raises(ValidationError, lambda op=op, body=body: _ask(db, name, op, body))
            assert word in message, (op, body, message)
        message = await raises(VectorNotFoundError,
                               lambda: db.recommend(name, ["r1", "nope"], ["r2"], k=3))
        assert "'nope'" in message
        assert await maybe(db.count(name)) == len(RECORDS)  # nothing changed
        handle = db.collection(name)
        if kind.startswith("async"):
            handle = await handle
        groups = await maybe(handle.search_groups(Q, "shop", limit=3, group_size=2))
        assert _norm(groups) == expected[3]
        hits = await maybe(handle.recommend(["r1", "r2"], ["r3"], k=4))
        assert _norm(hits) == expected[5]


def _post(daemon: Daemon, path: str, body: Any, *, data: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(daemon.rest_url + path, data=data if data is not None else json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_raw_rest_and_grpc(daemon: Daemon) -> None:
    with proximadb.connect_rest(daemon.rest_url) as db:
        db.create_collection("raw", DIM, distance_metric="euclidean")
        db.insert_vectors("raw", RECORDS)
        want = db.search("raw", Q, 10, score_threshold=1.2)
    status, answer = _post(daemon, "/collections/raw/search", {"vector": Q, "k": 10, "score_threshold": 1.2})
    assert status == 200 and [h["id"] for h in answer["data"]] == [h["id"] for h in want]
    payload = encode_frame("vector_search", encode_search_request(np.asarray([Q], np.float32), 10, None, False,
                                                                  True, None, None, False), 2)
    status, answer = _post(daemon, "/collections/raw/search?score_threshold=1.2", None, data=payload,
                           content_type="application/avro")
    assert status == 200 and [h["id"] for h in answer["data"]] == [h["id"] for h in want]
    status, answer = _post(daemon, "/collections/raw/search?score_threshold=abc", None, data=payload,
                           content_type="application/avro")
    assert status == 400 and "score_threshold" in answer["error"]["message"]
    status, answer = _post(daemon, "/collections/raw/search_groups", {"vector": Q, "group_by": "shop", "limit": 2})
    assert status == 200 and [len(g["hits"]) for g in answer["data"]] == [1, 1]
    for path, body, word, code in [
        ("search", {"vector": Q, "score_threshold": "high"}, "score_threshold", 400),
        ("search_groups", {"vector": Q}, "group_by", 400),
        ("search_groups", {"vector": Q, "group_by": "shop", "group_size": 0}, "group_size", 400),
        ("search_groups", {"vector": Q, "group_by": "shop", "bogus": 1}, "bogus", 400),
        ("recommend", {"positive": []}, "positive", 400),
        ("recommend", {"positive": ["r1"], "strategy": "x"}, "strategy", 400),
        ("recommend", {"positive": [{"id": "r1"}]}, "positive", 400),
        ("recommend", {"positive": ["r1"], "negative": ["ghost"]}, "'ghost'", 404),
    ]:
        status, answer = _post(daemon, f"/collections/raw/{path}", body)
        assert status == code and word in answer["error"]["message"], (body, answer)
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        ok = stub.Search(pb.PayloadRequest(collection="raw", payload=payload, score_threshold=1.2))
        assert ok.payload
        groups = stub.SearchGroups(pb.JsonSearchRequest(collection="raw", request_json=json.dumps(
            {"vector": Q, "group_by": "shop", "limit": 2, "group_size": 2})))
        assert len(groups.groups) == 2 and all(len(g.hits) == 2 and g.hits[0].HasField("distance")
                                               for g in groups.groups)
        for rpc, text, code in [
            (stub.SearchGroups, '{"vector": [1, 2, 3, 4], "group_by": "shop", "group_size": -1}',
             grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Recommend, '{"positive": ["r1"], "strategy": "nope"}', grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Recommend, '{"positive": ["ghost"]}', grpc.StatusCode.NOT_FOUND),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                rpc(pb.JsonSearchRequest(collection="raw", request_json=text))
            assert caught.value.code() == code
        with pytest.raises(grpc.RpcError) as caught:
            stub.Search(pb.PayloadRequest(collection="raw", payload=payload, oversampling=0.1))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversampling_reaches_a_quantized_index_over_both_protocols(daemon: Daemon) -> None:
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((2000, 32)).astype(np.float32)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    with proximadb.connect_grpc(daemon.grpc_target) as db:
        db.create_collection("quant", 32, distance_metric="euclidean", indexing_algorithm="hnsw", index_params={
            "M": 8, "ef_construction": 64, "quantization": {"type": "binary", "oversampling": 1.0}})
        db.insert_vectors("quant", ids=[str(i) for i in range(len(rows))], vectors=rows)
        db.flush("quant")
        db.wait_for_indexing("quant", timeout=120)
    for connect, target in ((proximadb.connect_grpc, daemon.grpc_target), (proximadb.connect_rest, daemon.rest_url)):
        with connect(target) as db:
            found = {None: 0, 20.0: 0}
            for q in queries:
                truth = {h["id"] for h in db.search("quant", q, 10, exact=True)}
                for factor in found:
                    hits = db.search("quant", q, 10, ef=10, oversampling=factor)
                    found[factor] += len(truth & {h["id"] for h in hits})
            assert found[20.0] > 2 * found[None] and found[20.0] >= 0.75 * 10 * len(queries), found
