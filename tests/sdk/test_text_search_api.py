"""Text and hybrid search through every client (embedded, gRPC, REST, async gRPC, async REST) against a real
daemon: the same hits as the engine gives in-process, bad input refused with ValidationError and nothing
changed, raw REST / gRPC refusals (400 / INVALID_ARGUMENT) naming the field, and answers kept over a restart.
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
import pytest
from _any_client import KINDS, maybe, opened, raises
from _daemon import Daemon

import proximadb
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.errors import AuthenticationError, ValidationError

DIM = 4
DOCS = {
    "a": "the quick brown fox jumps over the lazy dog",
    "b": "a fast brown fox",
    "c": "lazy dogs sleep all day",
    "d": "vector databases store embeddings",
    "e": "full text search with bm25 ranks documents",
    "f": "hybrid search fuses vector and text rankings",
}
RECORDS = [
    {"id": i, "vector": [float(n + 1), float(n % 3), 1.0, float(-n)],
     "metadata": {"document": text, "group": "even" if n % 2 == 0 else "odd"}}
    for n, (i, text) in enumerate(DOCS.items())
]
RECORDS[-1]["expires_at"] = 4_000_000_000_000_000  # 2096: the hit carries it
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("search_text", {"text": "brown fox", "k": 3}),
    ("search_text", {"text": "lazy dog", "k": 5, "filter": {"group": "even"}}),
    ("search_text", {"text": "search", "k": 10, "include_metadata": False}),
    ("search_text", {"text": "nothing matches this", "k": 3}),
    ("hybrid_search", {"vector": [2.0, 1.0, 1.0, -1.0], "text": "brown fox", "k": 4}),
    ("hybrid_search", {"vector": [5.0, 1.0, 1.0, -4.0], "text": "search", "k": 3, "fusion": "dbsf",
                       "weights": [0.3, 0.7]}),
    ("hybrid_search", {"vector": [1.0, 0.0, 1.0, 0.0], "text": "lazy", "k": 2, "fusion": "relative_score",
                       "filter": {"group": "odd"}, "depth": 5}),
    ("hybrid_search", {"vector": [1.0, 0.0, 1.0, 0.0], "text": "fox", "k": 3, "rrf_k": 10.0,
                       "include_metadata": False}),
]


def _engine_answers(data_dir: Path) -> list[list[dict[str, Any]]]:
    """What the engine itself answers for QUERIES, metadata through JSON as every client gets it."""
    engine = proximadb.open_engine(data_dir, fsync="never")
    try:
        engine.create_collection("docs", DIM, distance_metric="euclidean")
        col = engine.collection("docs")
        col.insert(RECORDS)
        out = []
        for op, body in QUERIES:
            args = dict(body)
            if op == "search_text":
                hits = col.search_text(args.pop("text"), args.pop("k"), **args)
            else:
                hits = col.hybrid_search(args.pop("vector"), args.pop("text"), args.pop("k"), **args)
            out.append(json.loads(json.dumps(hits)))
        return out
    finally:
        engine.close()


def _ask(client: Any, name: str, op: str, body: dict[str, Any]) -> Any:
    args = dict(body)
    if op == "search_text":
        return client.search_text(name, args.pop("text"), args.pop("k"), **args)
    return client.hybrid_search(name, args.pop("vector"), args.pop("text"), args.pop("k"), **args)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("textapi") / "data", "--fsync", "never") as d:
        yield d


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    return _engine_answers(tmp_path_factory.mktemp("engine") / "data")


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("search_text", {"text": 5, "k": 3}, "text"),
    ("search_text", {"text": "fox", "k": 0}, "k"),
    ("search_text", {"text": "fox", "k": 3, "filter": {"group": {"$bogus": 1}}}, "$bogus"),
    ("hybrid_search", {"vector": [1.0] * DIM, "text": "fox", "k": 3, "fusion": "max"}, "fusion"),
    ("hybrid_search", {"vector": [1.0] * DIM, "text": "fox", "k": 3, "weights": [1.0]}, "weights"),
    ("hybrid_search", {"vector": [1.0] * DIM, "text": "fox", "k": 3, "rrf_k": -1.0}, "rrf_k"),
    ("hybrid_search", {"vector": [1.0] * DIM, "text": "fox", "k": 3, "depth": 0}, "depth"),
    ("hybrid_search", {"vector": [1.0] * (DIM + 1), "text": "fox", "k": 3}, "dimension"),
    ("hybrid_search", {"vector": None, "text": None, "k": 3}, "at least one part"),
    ("hybrid_search", {"vector": [1.0] * DIM, "text": 7, "k": 3}, "text"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_same_answers_and_refusals_on_every_client(
    kind: str, daemon: Daemon, expected: list[list[dict[str, Any]]], tmp_path: Path
) -> None:
    asyncio.run(_scenario(kind, daemon, expected, tmp_path))


async def _scenario(kind: str, daemon: Daemon, expected: list[list[dict[str, Any]]], tmp_path: Path) -> None:
    name = f"docs-{kind}"
    async with opened(kind, daemon, tmp_path / "data") as db:
        await maybe(db.create_collection(name, DIM, distance_metric="euclidean"))
        await maybe(db.insert_vectors(name, RECORDS))
        for (op, body), want in zip(QUERIES, expected, strict=True):
            assert await maybe(_ask(db, name, op, body)) == want, (op, body)
        assert expected[0] and expected[0][0]["id"] in ("a", "b")  # the queries find something
        assert all("metadata" not in h for h in expected[2]) and expected[2]
        assert expected[3] == []
        assert any(h.get("expires_at") == RECORDS[-1]["expires_at"] for h in expected[4] + expected[5])
        for op, body, word in BAD:
            message = await raises(ValidationError, lambda op=op, body=body: _ask(db, name, op, body))
            assert word in message, (op, body, message)
        assert await maybe(db.count(name)) == len(RECORDS)  # nothing changed
        handle = db.collection(name)
        if kind.startswith("async"):
            handle = await handle
        hits = await maybe(handle.search_text("brown fox", k=3))
        assert [h["id"] for h in hits] == [h["id"] for h in expected[0]]
        assert hits[0]["document"] == DOCS[hits[0]["id"]]  # the handle lifts the text out of the metadata
        hybrid = await maybe(handle.hybrid_search("brown fox", [2.0, 1.0, 1.0, -1.0], k=4))
        assert [h["id"] for h in hybrid] == [h["id"] for h in expected[4]]


def _post(daemon: Daemon, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(daemon.rest_url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_raw_rest_and_grpc_refusals(daemon: Daemon) -> None:
    with proximadb.connect_rest(daemon.rest_url) as db:
        db.create_collection("raw", DIM)
        db.insert_vectors("raw", RECORDS)
    status, answer = _post(daemon, "/collections/raw/search_text", {"text": "fox", "k": 2})
    assert status == 200 and len(answer["data"]) == 2
    for path, body, word in [
        ("search_text", {"text": ["fox"]}, "text"),
        ("search_text", {"k": 3}, "text"),
        ("search_text", {"text": "fox", "bogus": 1}, "bogus"),
        ("search_text", {"text": "fox", "include_metadata": "yes"}, "include_metadata"),
        ("hybrid_search", {"k": 3}, "at least one part"),
        ("hybrid_search", {"text": "fox", "vector": "x"}, "vector"),
        ("hybrid_search", {"vector": [1, 2, 3, 4], "text": "fox", "fusion": "sum"}, "fusion"),
        ("hybrid_search", {"vector": [1, 2, 3, 4], "text": "fox", "weights": [1, 2, 3]}, "weights"),
        ("hybrid_search", {"vector": [1, 2, 3, 4], "text": "fox", "ef": True}, "ef"),
    ]:
        status, answer = _post(daemon, f"/collections/raw/{path}", body)
        assert status == 400 and answer["error"]["code"] == "validation_error", (body, answer)
        assert word in answer["error"]["message"], (body, answer)
    status, answer = _post(daemon, "/collections/missing/search_text", {"text": "fox"})
    assert status == 404
    # cluster mode's fan-out field (proximadb/cluster/queries.py): one node has no shard addresses, so 400
    # on any name, and the allowed-fields message of a bad request does not list it
    for stats in (True, {"rows": 3, "total_terms": 9.0, "df": {"fox": 1}}):
        for name in ("raw", "raw.s0@0"):
            status, answer = _post(daemon, f"/collections/{name}/search_text", {"text": "fox", "corpus_stats": stats})
            assert status == 400 and "shard addresses" in answer["error"]["message"], answer
    status, answer = _post(daemon, "/collections/raw/search_text", {"text": "fox", "bogus": 1})
    assert "corpus_stats" not in answer["error"]["message"]
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        ok = stub.SearchText(pb.JsonSearchRequest(collection="raw", request_json='{"text": "fox", "k": 2}'))
        assert len(ok.hits) == 2 and ok.hits[0].score > 0
        for rpc, text in [(stub.SearchText, '{"text": 1}'), (stub.SearchText, "not json"),
                          (stub.HybridSearch, '{"vector": [1, 2, 3, 4], "text": "x", "fusion": "nope"}')]:
            with pytest.raises(grpc.RpcError) as caught:
                rpc(pb.JsonSearchRequest(collection="raw", request_json=text))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_answers_kept_over_a_restart(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "data", "--fsync", "never").start()
    try:
        with proximadb.connect_grpc(d.grpc_target) as db:
            db.create_collection("docs", DIM, distance_metric="euclidean")
            db.insert_vectors("docs", RECORDS)
            before = [_ask(db, "docs", op, body) for op, body in QUERIES]
        assert before[0]
        d.stop()
        d.start()
        with proximadb.connect_rest(d.rest_url) as db:
            assert [_ask(db, "docs", op, body) for op, body in QUERIES] == before
    finally:
        d.stop()


def test_a_read_only_key_may_search_text(tmp_path: Path) -> None:
    rw, ro = "rw-key-text-0123456789", "ro-key-text-9876543210"
    with Daemon(tmp_path / "data", "--fsync", "never", "--api-key", rw, "--read-only-api-key", ro) as d:
        with proximadb.connect_rest(d.rest_url, api_key=rw) as admin:
            admin.create_collection("docs", DIM)
            admin.insert_vectors("docs", RECORDS)
        for connect, target in ((proximadb.connect_rest, d.rest_url), (proximadb.connect_grpc, d.grpc_target)):
            with connect(target, api_key=ro) as reader:
                assert reader.search_text("docs", "fox", 2)
                assert reader.hybrid_search("docs", [1.0] * DIM, "fox", 2)
            with connect(target, api_key="wrong-key-000000000000") as stranger:
                with pytest.raises(AuthenticationError):
                    stranger.search_text("docs", "fox", 2)
