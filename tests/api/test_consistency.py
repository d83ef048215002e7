"""Read consistency on one daemon (and embedded): every level is accepted and trivially met; a bad level or a
malformed session token is a clear typed error over REST (400), gRPC (INVALID_ARGUMENT) and the SDK, and
changes nothing. The levels' cluster behaviour is tested in tests/cluster/test_serve_cluster.py."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb import consistency
from proximadb.api.grpc import ERROR_CODE_METADATA
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.codec.payload import encode_payload
from proximadb.errors import ValidationError
from proximadb.sdk import connect_async_grpc, connect_async_rest
from proximadb.server.config import load_config

DIM = 4
ROWS = 12
GOOD = "v1:c0123456789abcdef-s0=5,c0123456789abcdef-s1=7"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("consistency") / "data", "--bounded-staleness-ms", "250") as d:
        with proximadb.connect_rest(d.rest_url) as admin:
            admin.create_collection("c", DIM, distance_metric="euclidean")
            admin.insert_vectors("c", ids=[f"v{i:02d}" for i in range(ROWS)], vectors=_vectors())
            assert admin.session_token() == "v1:"  # one node acknowledges no log sequences
        yield d


def _vectors() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((ROWS, DIM)).astype(np.float32)


def _rest(d: Daemon, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), resp.getheader(consistency.SESSION_HEADER)
    finally:
        conn.close()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_every_level_is_served_on_one_node(daemon: Daemon, protocol: str) -> None:
    vectors = _vectors()
    connect = proximadb.connect_rest if protocol == "rest" else proximadb.connect_grpc
    with connect(daemon.rest_url if protocol == "rest" else daemon.grpc_target) as client:
        for level in (*consistency.LEVELS, None):
            assert client.count("c", consistency=level) == ROWS
            assert client.search("c", vectors[3], k=1, consistency=level)[0]["id"] == "v03"
            assert [[h["id"] for h in hits] for hits in client.search_batch("c", vectors[:2], k=1,
                                                                            consistency=level)] == [["v00"], ["v01"]]
            assert [r["id"] for r in client.get_vectors("c", ["v05", "nope"], consistency=level)] == ["v05"]
            assert client.get_vector("c", "v06", consistency=level)["id"] == "v06"  # type: ignore[index]
            assert [r["id"] for r in client.scroll("c", limit=2, consistency=level)[0]] == ["v00", "v01"]
        client.add_session_token(GOOD)  # a token from elsewhere: merged, sent with session reads
        assert client.session_token() == GOOD
        assert client.count("c", consistency="session") == ROWS


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_asyncio_client_and_collection_handles_take_the_level(daemon: Daemon, protocol: str) -> None:
    vectors = _vectors()

    async def scenario() -> None:
        connecting = connect_async_grpc(daemon.grpc_target) if protocol == "grpc" else \
            connect_async_rest(daemon.rest_url)
        async with connecting as client:
            for level in consistency.LEVELS:
                assert await client.count("c", consistency=level) == ROWS
                assert (await client.search("c", vectors[2], k=1, consistency=level))[0]["id"] == "v02"
                assert [r["id"] for r in await client.get_vectors("c", ["v04"], consistency=level)] == ["v04"]
                assert [r["id"] for r in (await client.scroll("c", limit=1, consistency=level))[0]] == ["v00"]
                handle = client.collection("c")
                assert await handle.count(consistency=level) == ROWS
                assert [r["id"] for r in await handle.get("v08", consistency=level)] == ["v08"]
                assert [r["id"] for r in (await handle.scroll(limit=1, consistency=level))[0]] == ["v00"]
            with pytest.raises(ValidationError, match="consistency must be one of"):
                await client.count("c", consistency="now")
            client.add_session_token(GOOD)
            assert client.session_token() == GOOD
            assert await client.count("c", consistency="session") == ROWS

    asyncio.run(scenario())
    connect = proximadb.connect_rest if protocol == "rest" else proximadb.connect_grpc
    with connect(daemon.rest_url if protocol == "rest" else daemon.grpc_target) as client:
        handle = client.collection("c")
        assert handle.count(consistency="strong") == ROWS
        assert handle.query(vectors[1], k=1, consistency="eventual")[0]["id"] == "v01"
        assert [r["id"] for r in handle.get(["v01"], consistency="session")] == ["v01"]
        assert len(handle.scroll(limit=5, consistency="bounded")[0]) == 5
        with pytest.raises(ValidationError):
            handle.query(vectors[1], k=1, consistency="later")


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_sdk_refuses_bad_levels_and_tokens_with_validation_errors(daemon: Daemon, protocol: str) -> None:
    connect = proximadb.connect_rest if protocol == "rest" else proximadb.connect_grpc
    with connect(daemon.rest_url if protocol == "rest" else daemon.grpc_target) as client:
        for bad in ("STRONG", "linearizable", 3, ""):
            with pytest.raises(ValidationError, match="strong, bounded, session, eventual"):
                client.count("c", consistency=bad)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="consistency must be one of"):
                client.search("c", [0.0] * DIM, k=1, consistency=bad)
            with pytest.raises(ValidationError):
                client.get_vectors("c", ["v01"], consistency=bad)  # type: ignore[arg-type]
            with pytest.raises(ValidationError):
                client.scroll("c", consistency=bad)  # type: ignore[arg-type]
        for token in ("", "v2:", "v1:x=1", "v1:c0123456789abcdef-s0=-1", "v1:c0123456789abcdef-s0=1,", None):
            with pytest.raises(ValidationError, match="session token"):
                client.add_session_token(token)  # type: ignore[arg-type]
        assert client.session_token() == "v1:"


def test_rest_refuses_a_bad_level_or_token_with_400_and_changes_nothing(daemon: Daemon) -> None:
    bad = {"consistency": "sometimes"}
    for method, path, body in (
        ("POST", "/collections/c/search", {"vector": [0.0] * DIM, "k": 1, **bad}),
        ("POST", "/collections/c/search/batch", {"queries": [[0.0] * DIM], "k": 1, **bad}),
        ("POST", "/collections/c/vectors/get", {"ids": ["v01"], **bad}),
        ("POST", "/collections/c/vectors/scroll", bad),
        ("POST", "/collections/c/vectors/count", bad),
        ("GET", "/collections/c/vectors/count?consistency=sometimes", None),
        ("GET", "/collections/c/vectors/v01?consistency=sometimes", None),
    ):
        status, answer, _ = _rest(daemon, method, path, body)
        assert status == 400, (path, answer)
        assert answer["error"]["code"] == "validation_error"
        assert "consistency must be one of strong, bounded, session, eventual" in answer["error"]["message"]
    for token in ("garbage", "v1:c0123456789abcdef-s0", "v1:" + ",".join(f"c{i:016x}-s0=1" for i in range(300))):
        status, answer, _ = _rest(daemon, "GET", "/collections/c/vectors/count?consistency=session",
                                  headers={consistency.SESSION_HEADER: token})
        assert status == 400 and "session token" in answer["error"]["message"], answer
        # a write with a malformed token is refused before it runs
        status, answer, _ = _rest(daemon, "POST", "/collections/c/vectors", {"id": "new", "vector": [1.0] * DIM},
                                  headers={consistency.SESSION_HEADER: token})
        assert status == 400, answer
    status, answer, token = _rest(daemon, "GET", "/collections/c/vectors/count?consistency=session",
                                  headers={consistency.SESSION_HEADER: GOOD})
    assert (status, answer["data"]["count"], token) == (200, ROWS, None)  # a read returns no token
    with proximadb.connect_rest(daemon.rest_url) as client:
        assert client.count("c") == ROWS and client.get_vectors("c", ["new"]) == []


def test_grpc_refuses_a_bad_level_or_token_with_invalid_argument(daemon: Daemon) -> None:
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        search = encode_payload("vector_search", {"queries": [[0.0] * DIM], "k": 1, "include_vectors": False,
                                                  "include_metadata": True, "exact": True})
        calls = (
            (stub.Count, pb.CountRequest(collection="c", consistency="nope")),
            (stub.Get, pb.GetRequest(collection="c", ids=["v01"], consistency="nope")),
            (stub.Scroll, pb.ScrollRequest(collection="c", consistency="nope")),
            (stub.Search, pb.PayloadRequest(collection="c", payload=search, consistency="nope")),
            (stub.SearchBatch, pb.PayloadRequest(collection="c", payload=search, consistency="nope")),
        )
        for call, request in calls:
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert "strong, bounded, session, eventual" in info.value.details()  # type: ignore[attr-defined]
            assert dict(info.value.trailing_metadata())[ERROR_CODE_METADATA] == "validation_error"  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as info:
            stub.Count(pb.CountRequest(collection="c", consistency="session"), timeout=30,
                       metadata=((consistency.SESSION_METADATA, "v1:nope"),))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "session token" in info.value.details()  # type: ignore[attr-defined]
        answer = stub.Count(pb.CountRequest(collection="c", consistency="session"), timeout=30,
                            metadata=((consistency.SESSION_METADATA, GOOD),))
        assert answer.count == ROWS


def test_embedded_accepts_and_validates_levels(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "data") as client:
        client.create_collection("e", DIM)
        client.insert_vectors("e", ids=["a", "b"], vectors=np.eye(2, DIM, dtype=np.float32))
        for level in consistency.LEVELS:
            assert client.count("e", consistency=level) == 2
            assert client.search("e", [1.0, 0.0, 0.0, 0.0], k=1, consistency=level)[0]["id"] == "a"
        with pytest.raises(ValidationError, match="consistency must be one of"):
            client.get_vectors("e", ["a"], consistency="soon")
        assert client.session_token() == "v1:"


def test_tokens_parse_merge_and_format() -> None:
    sessions = consistency.SessionTokens()
    sessions.add("v1:c0123456789abcdef-s1=7,c0123456789abcdef-s0=5")
    sessions.add("v1:c0123456789abcdef-s0=3,cfedcba9876543210-s2=9")  # merged: the highest per log
    assert sessions.token() == "v1:c0123456789abcdef-s0=5,c0123456789abcdef-s1=7,cfedcba9876543210-s2=9"
    assert consistency.parse_token(sessions.token()) == {"c0123456789abcdef-s0": 5, "c0123456789abcdef-s1": 7,
                                                        "cfedcba9876543210-s2": 9}
    assert consistency.parse_token("v1:") == {}
    with consistency.request(GOOD) as state:
        consistency.acknowledged("c0123456789abcdef-s1", 4)  # below the client's: the client's stays
        consistency.acknowledged("c0123456789abcdef-s2", 1)
        with consistency.reading("strong") as read:
            assert read.effective is consistency.Consistency.STRONG and read.session == state.session
        assert consistency.current().effective is consistency.Consistency.BOUNDED
        assert consistency.response_token(state) == GOOD + ",c0123456789abcdef-s2=1"
    assert consistency.current().session == {}


def test_bounded_staleness_setting_is_checked(tmp_path: Path) -> None:
    assert load_config({}, {}).bounded_staleness_ms == consistency.DEFAULT_BOUNDED_STALENESS_MS
    assert load_config({}, {"PROXIMADB_BOUNDED_STALENESS_MS": "100"}).bounded_staleness_ms == 100
    config = tmp_path / "p.toml"
    config.write_text("bounded_staleness_ms = 0\n")
    assert load_config({"config": str(config)}, {}).bounded_staleness_ms == 0
    for bad in (-1, 3_600_001):
        with pytest.raises(ValidationError, match="bounded_staleness_ms"):
            load_config({"bounded_staleness_ms": bad}, {})
    with pytest.raises(ValidationError, match="bounded_staleness_ms"):
        load_config({}, {"PROXIMADB_BOUNDED_STALENESS_MS": "soon"})


# ---------------------------------------------------------------- search_text, hybrid_search, search_groups, recommend
SHAPES_DOCS = ["apple pie", "banana bread", "apple banana", "cherry tart"]


def _shapes_collection(client: Any) -> None:
    """Collection "t": documents and a group field, for the four query shapes beyond plain search."""
    if any(c["name"] == "t" for c in client.list_collections()):
        return
    client.create_collection("t", DIM, distance_metric="euclidean")
    client.insert_vectors("t", ids=[f"t{i}" for i in range(4)], vectors=np.eye(4, DIM, dtype=np.float32),
                          metadatas=[{"document": doc, "g": i % 2} for i, doc in enumerate(SHAPES_DOCS)])


def _shapes(client: Any, level: Any) -> list[Any]:
    """The four shapes' answers at ``level`` (ids only)."""
    vector = [1.0, 0.0, 0.0, 0.0]
    return [
        [h["id"] for h in client.search_text("t", "apple", k=2, consistency=level)],
        [h["id"] for h in client.hybrid_search("t", vector, "apple", k=1, consistency=level)],
        [g["value"] for g in client.search_groups("t", vector, "g", limit=2, consistency=level)],
        [h["id"] for h in client.recommend("t", ["t0"], k=1, consistency=level)],
    ]


@pytest.mark.parametrize("protocol", ["rest", "grpc", "embedded"])
def test_text_hybrid_groups_and_recommend_take_the_level(daemon: Daemon, protocol: str, tmp_path: Path) -> None:
    """Every level is served; a bad one is a ValidationError naming the levels, on every shape and client."""
    if protocol == "embedded":
        client = proximadb.connect_embedded(tmp_path / "data")
    else:
        client = (proximadb.connect_rest(daemon.rest_url) if protocol == "rest"
                  else proximadb.connect_grpc(daemon.grpc_target))
    with client:
        _shapes_collection(client)
        want = [["t0", "t2"], ["t0"], [0, 1], ["t1"]]  # recommend by t0 (left out): t1 is as near as t2, t1 < t2
        for level in (*consistency.LEVELS, None):
            assert _shapes(client, level) == want, level
        handle = client.collection("t")
        assert [h["id"] for h in handle.search_text("apple", k=1, consistency="strong")] == ["t0"]
        assert [h["id"] for h in handle.hybrid_search("apple", [1.0, 0.0, 0.0, 0.0], k=1, consistency="session")] \
            == ["t0"]
        assert len(handle.search_groups([1.0, 0.0, 0.0, 0.0], "g", limit=2, consistency="eventual")) == 2
        assert [h["id"] for h in handle.recommend(["t0"], k=1, consistency="bounded")] == ["t1"]
        vector = [1.0, 0.0, 0.0, 0.0]
        for bad in ("STRONG", "linearizable", 3):
            for call in (lambda b=bad: client.search_text("t", "apple", consistency=b),
                         lambda b=bad: client.hybrid_search("t", vector, "apple", consistency=b),
                         lambda b=bad: client.search_groups("t", vector, "g", consistency=b),
                         lambda b=bad: client.recommend("t", ["t0"], consistency=b),
                         lambda b=bad: handle.search_text("apple", consistency=b)):
                with pytest.raises(ValidationError, match="consistency must be one of strong, bounded, session, "
                                                          "eventual"):
                    call()

    async def asyncio_too() -> None:
        connecting = connect_async_grpc(daemon.grpc_target) if protocol == "grpc" else \
            connect_async_rest(daemon.rest_url)
        async with connecting as aclient:
            assert [h["id"] for h in await aclient.search_text("t", "apple", k=2, consistency="strong")] \
                == ["t0", "t2"]
            assert len(await aclient.hybrid_search("t", vector, "apple", k=1, consistency="session")) == 1
            assert len(await aclient.search_groups("t", vector, "g", limit=2, consistency="eventual")) == 2
            assert [h["id"] for h in await aclient.recommend("t", ["t0"], k=1, consistency="bounded")] == ["t1"]
            handle = aclient.collection("t")
            assert len(await handle.search_text("apple", k=2, consistency="strong")) == 2
            assert len(await handle.recommend(["t0"], k=1, consistency="strong")) == 1
            with pytest.raises(ValidationError, match="consistency must be one of"):
                await aclient.recommend("t", ["t0"], consistency="now")

    if protocol != "embedded":
        asyncio.run(asyncio_too())


def test_the_four_shapes_refuse_a_bad_level_over_rest_and_grpc(daemon: Daemon) -> None:
    with proximadb.connect_rest(daemon.rest_url) as client:
        _shapes_collection(client)
    vector = [1.0, 0.0, 0.0, 0.0]
    bodies = {"search_text": {"text": "apple"}, "hybrid_search": {"text": "apple", "vector": vector},
              "search_groups": {"vector": vector, "group_by": "g"}, "recommend": {"positive": ["t0"]}}
    for route, body in bodies.items():
        status, answer, _ = _rest(daemon, "POST", f"/collections/t/{route}", {**body, "consistency": "sometimes"})
        assert status == 400, (route, answer)
        assert answer["error"]["code"] == "validation_error"
        assert "consistency must be one of strong, bounded, session, eventual, not 'sometimes'" \
            in answer["error"]["message"]
        status, answer, _ = _rest(daemon, "POST", f"/collections/t/{route}", {**body, "consistency": "session"},
                                  headers={consistency.SESSION_HEADER: GOOD})
        assert status == 200 and answer["data"], (route, answer)
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        rpcs = {"search_text": stub.SearchText, "hybrid_search": stub.HybridSearch,
                "search_groups": stub.SearchGroups, "recommend": stub.Recommend}
        for route, body in bodies.items():
            request = pb.JsonSearchRequest(collection="t", request_json=json.dumps({**body, "consistency": "nope"}))
            with pytest.raises(grpc.RpcError) as info:
                rpcs[route](request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert "strong, bounded, session, eventual, not 'nope'" in info.value.details()  # type: ignore[attr-defined]
            assert dict(info.value.trailing_metadata())[ERROR_CODE_METADATA] == "validation_error"  # type: ignore[attr-defined]
            good = pb.JsonSearchRequest(collection="t", request_json=json.dumps({**body, "consistency": "strong"}))
            assert rpcs[route](good, timeout=30) is not None
