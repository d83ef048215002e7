"""GrpcTransport (the SDK's gRPC side) against a real in-process server over a real Engine.

Answers must equal what the service returns in-process (what REST serialises), and every
failure must arrive as the typed exception of proximadb.errors.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from proximadb.api.grpc import SERVICE_NAME
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc.server import build_server
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.errors import (
    AlreadyExistsError,
    AuthenticationError,
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptionError,
    DimensionMismatchError,
    InvalidFilterError,
    MalformedPayloadError,
    PayloadTooLargeError,
    ProximaDBError,
    RequestTimeoutError,
    UnavailableError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
    ValidationError,
)
from proximadb.free_ports import free_port
from proximadb.sdk.grpc_transport import GrpcTransport
from proximadb.service.requests import GetVectors, Scroll
from proximadb.service.unified import Limits, UnifiedAvroService
from proximadb.storage.engine import Engine

LIMIT = 256 << 10
DIM = 4


@dataclass
class Setup:
    service: UnifiedAvroService
    transport: GrpcTransport
    port: int


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    engine = Engine.open(tmp_path / "data")
    service = UnifiedAvroService(engine, limits=Limits(max_request_bytes=LIMIT), advertised={"rest_port": 5678})
    server, port = build_server(service, "127.0.0.1", 0, max_message_bytes=LIMIT, max_workers=4)
    server.start()
    transport = GrpcTransport(f"127.0.0.1:{port}", timeout=10.0)
    try:
        yield Setup(service, transport, port)
    finally:
        transport.close()
        server.stop(None).wait()
        engine.close()


@pytest.fixture
def loaded(setup: Setup) -> Setup:
    setup.transport.create_collection({"name": "docs", "dimension": DIM, "filterable_metadata_fields": ["genre"]})
    matrix = np.random.default_rng(1).standard_normal((6, DIM)).astype(np.float32)
    metadata = [{"genre": g, "n": i} for i, g in enumerate(["jazz", "rock", "jazz", "pop", "rock", "jazz"])]
    setup.transport.insert_payload("docs", encode_insert(ids=[f"v{i}" for i in range(6)], vectors=matrix,
                                                         metadata=metadata))
    return setup


def search(queries: list[list[float]], k: int = 3, **extra: Any) -> bytes:
    datum = {"queries": queries, "k": k, "include_vectors": False, "include_metadata": True, "exact": True, **extra}
    return encode_payload("vector_search", datum)


# ---------------------------------------------------------------- every method


def test_protocol_and_url(setup: Setup) -> None:
    assert setup.transport.protocol == "grpc"
    assert setup.transport.url == f"grpc://127.0.0.1:{setup.port}"
    assert GrpcTransport(f"grpc://127.0.0.1:{setup.port}").target == f"127.0.0.1:{setup.port}"


def test_health_matches_service(setup: Setup) -> None:
    health = setup.transport.health()
    expected = setup.service.health()
    assert health.pop("uptime_seconds") >= 0
    expected.pop("uptime_seconds")
    assert health == expected
    assert health["rest_port"] == 5678 and "grpc_port" not in health


def test_collections(setup: Setup) -> None:
    t = setup.transport
    created = t.create_collection(
        {"name": "docs", "dimension": DIM, "distance_metric": "euclidean", "indexing_algorithm": "hnsw",
         "index_params": {"M": 8}, "description": "d"}
    )
    assert created == {k: v for k, v in setup.service.get_collection("docs").items() if k != "vector_count"}
    fetched = t.get_collection("docs")
    assert fetched == setup.service.get_collection("docs")
    assert fetched["index_params"] == {"M": 8} and fetched["vector_count"] == 0
    assert t.get_collection(fetched["uuid"]) == fetched
    assert t.list_collections() == setup.service.list_collections()

    updated = t.update_collection("docs", {"description": None, "filterable_metadata_fields": ["a"]})
    assert updated["description"] is None and updated["filterable_metadata_fields"] == ["a"]
    assert "vector_count" not in updated  # as the service returns it

    t.delete_collection("docs")
    assert t.list_collections() == []


def test_insert_get_scroll_count(loaded: Setup) -> None:
    t = loaded.transport
    got = t.get_vectors("docs", ["v3", "missing", "v0"], True)
    expected = loaded.service.get_vectors("docs", GetVectors(["v3", "missing", "v0"]))
    assert [r["id"] for r in got] == ["v3", "v0"]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["vector"].dtype == np.float32
        np.testing.assert_array_equal(mine["vector"], theirs["vector"])
        assert {k: v for k, v in mine.items() if k != "vector"} == {k: v for k, v in theirs.items() if k != "vector"}

    bare = t.get_vectors("docs", ["v1"], False)
    assert bare == loaded.service.get_vectors("docs", GetVectors(["v1"], include_vectors=False))
    assert "vector" not in bare[0]

    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = t.scroll("docs", 4, cursor, None, True)
        seen += [r["id"] for r in page]
        assert all(r["vector"].shape == (DIM,) for r in page)
        if cursor is None:
            break
    assert seen == [f"v{i}" for i in range(6)]

    page, cursor = t.scroll("docs", 100, None, '{"genre": "jazz"}', False)
    assert [r["id"] for r in page] == ["v0", "v2", "v5"] and cursor is None

    assert t.count("docs", None) == 6
    assert t.count("docs", '{"genre": "rock"}') == 2


def test_search_payload(loaded: Setup) -> None:
    t = loaded.transport
    query = loaded.service.get_vector("docs", "v4")["vector"].tolist()
    _, op, result = decode_payload(t.search_payload("docs", search([query], k=2)))
    assert op == "search_result" and isinstance(result, dict)
    assert result["results"][0][0]["id"] == "v4"
    _, _, batch = decode_payload(t.search_payload("docs", search([query, query], k=1, filter='{"genre": "pop"}')))
    assert isinstance(batch, dict)
    assert [[h["id"] for h in hits] for hits in batch["results"]] == [["v3"], ["v3"]]


def test_mutate_payload(loaded: Setup) -> None:
    t = loaded.transport
    update = encode_payload("vector_update", {"updates": [{"id": "v0", "metadata": {"n": 42}}], "timestamp": 0})
    assert t.mutate_payload("docs", update) == {"deleted": 0, "updated": 1}
    assert t.get_vectors("docs", ["v0"], False)[0]["metadata"] == {"genre": "jazz", "n": 42}
    delete = encode_payload("vector_delete", {"ids": [], "filter": '{"genre": "jazz"}'})
    assert t.mutate_payload("docs", delete) == {"deleted": 3, "updated": 0}
    assert t.count("docs", None) == 3


# ---------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: t.get_collection("nope"), CollectionNotFoundError),
        (lambda t: t.get_collection("../x"), CollectionNotFoundError),
        (lambda t: t.create_collection({"name": "docs", "dimension": DIM}), CollectionExistsError),
        (lambda t: t.create_collection({"name": "../x", "dimension": DIM}), ValidationError),
        (lambda t: t.create_collection({"name": "x", "dimension": DIM, "colour": 1}), ValidationError),
        (lambda t: t.create_collection({"name": "x", "dimension": "4"}), ValidationError),
        (lambda t: t.update_collection("docs", {"dimension": 3}), ValidationError),
        (lambda t: t.insert_payload("docs", encode_insert(ids=["x"], vectors=np.ones((1, 3), np.float32))),
         DimensionMismatchError),
        (lambda t: t.insert_payload("docs", b"\x01\x00\x00\x00\x0d\x00\x00\x00vector_insert\xff"),
         MalformedPayloadError),
        (lambda t: t.insert_payload("docs", b"\x63\x00\x00\x00\x00\x00\x00\x00"), UnsupportedSchemaVersionError),
        (lambda t: t.mutate_payload("docs", encode_insert(ids=["x"], vectors=np.ones((1, DIM), np.float32))),
         UnknownOperationError),
        (lambda t: t.search_payload("docs", search([[1, 0, 0, 0]], filter='{"$bad": 1}')), InvalidFilterError),
        (lambda t: t.insert_payload("docs", b"\0" * (LIMIT + 1)), PayloadTooLargeError),
        (lambda t: t.count("ghost", None), CollectionNotFoundError),
        (lambda t: t.scroll("docs", 0, None, None, False), ValidationError),
        (lambda t: t.scroll("docs", 20_000, None, None, False), ValidationError),
        (lambda t: t.get_vectors("docs", [1], False), ValidationError),  # type: ignore[list-item]
    ],
)
def test_errors_are_typed(loaded: Setup, call: Any, error: type[ProximaDBError]) -> None:
    before = loaded.service.scroll("docs", Scroll(limit=100))
    with pytest.raises(error) as info:
        call(loaded.transport)
    assert type(info.value) is error or error is ValidationError
    assert info.value.message
    assert loaded.service.scroll("docs", Scroll(limit=100)) == before


def test_message_over_the_grpc_limit(loaded: Setup) -> None:
    # Past the server's receive limit: gRPC refuses it before the servicer (no error code) ...
    with pytest.raises(PayloadTooLargeError):
        loaded.transport.insert_payload("docs", b"\0" * (LIMIT * 2))
    # ... and past the client's own send limit it never leaves the process.
    small = GrpcTransport(f"127.0.0.1:{loaded.port}", max_message_bytes=1024)
    try:
        with pytest.raises(PayloadTooLargeError, match="1024"):
            small.insert_payload("docs", b"\0" * (200 << 10))
    finally:
        small.close()
    assert loaded.transport.count("docs", None) == 6


def test_internal_error(loaded: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaded.service, "list_collections", lambda: 1 / 0)
    with pytest.raises(ProximaDBError) as info:
        loaded.transport.list_collections()
    assert type(info.value) is ProximaDBError and "internal error" in info.value.message


def test_closed_port_is_unavailable() -> None:
    port = free_port()
    transport = GrpcTransport(f"127.0.0.1:{port}", timeout=5.0)
    started = time.monotonic()
    try:
        with pytest.raises(UnavailableError, match=f"127.0.0.1:{port}"):
            transport.health()
    finally:
        transport.close()
    assert time.monotonic() - started < 5.0


def test_closed_transport(setup: Setup) -> None:
    setup.transport.close()
    setup.transport.close()  # idempotent
    with pytest.raises(UnavailableError, match="closed"):
        setup.transport.health()


# ---------------------------------------------------------------- deadline and metadata (a stand-in server)


@pytest.fixture
def fake_server() -> Iterator[tuple[int, list[dict[str, str]], threading.Event]]:
    """A ProximaDB.Health that records the call metadata and stalls while ``stall`` is set."""
    seen: list[dict[str, str]] = []
    stall = threading.Event()

    def health(request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        seen.append(dict(context.invocation_metadata()))
        if stall.is_set():
            time.sleep(1.0)
        return pb.HealthResponse(status="ok")

    def unauthenticated(request: pb.ListCollectionsRequest, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad key")

    handler = grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Health": grpc.unary_unary_rpc_method_handler(
            health, request_deserializer=pb.HealthRequest.FromString,
            response_serializer=pb.HealthResponse.SerializeToString,
        ),
        "ListCollections": grpc.unary_unary_rpc_method_handler(
            unauthenticated, request_deserializer=pb.ListCollectionsRequest.FromString,
            response_serializer=pb.ListCollectionsResponse.SerializeToString,
        ),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, seen, stall
    finally:
        server.stop(None).wait()


def test_api_key_is_sent_as_bearer_metadata(fake_server: tuple[int, list[dict[str, str]], threading.Event]) -> None:
    port, seen, _ = fake_server
    with GrpcTransport(f"127.0.0.1:{port}", api_key="s3cret") as keyed:
        keyed.health()
    with GrpcTransport(f"127.0.0.1:{port}") as anonymous:
        anonymous.health()
    assert seen[0]["authorization"] == "Bearer s3cret"
    assert "authorization" not in seen[1]


def test_status_without_error_code(fake_server: tuple[int, list[dict[str, str]], threading.Event]) -> None:
    port, _, stall = fake_server
    with GrpcTransport(f"127.0.0.1:{port}", timeout=0.2) as transport:
        with pytest.raises(AuthenticationError, match="bad key"):
            transport.list_collections()
        stall.set()
        with pytest.raises(RequestTimeoutError, match=f"127.0.0.1:{port}"):
            transport.health()
        with pytest.raises(ProximaDBError, match="UNIMPLEMENTED"):
            transport.count("docs", None)


def test_stats_and_compact_from_a_server_that_answers_json(tmp_path: Path) -> None:
    """A server from before CollectionStats/CompactionReport sent JsonResponse (field 1 only): the SDK reads it."""
    stats = {"name": "docs", "uuid": "u", "vectors": 3, "wal_last_seq": None, "extra": [1, 2]}
    report = {"collection": "docs", "segments_before": 2, "segments_after": 1, "seconds": 0.25, "merged": [1, 2]}

    def answer(value: dict[str, Any]) -> Any:
        return lambda request, context: pb.JsonResponse(json=json.dumps(value))

    handler = grpc.method_handlers_generic_handler(SERVICE_NAME, {
        rpc: grpc.unary_unary_rpc_method_handler(
            answer(value), request_deserializer=pb.CollectionRef.FromString,
            response_serializer=pb.JsonResponse.SerializeToString,
        ) for rpc, value in (("Stats", stats), ("Compact", report))
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GrpcTransport(f"127.0.0.1:{port}") as transport:
            assert transport.stats("docs") == stats
            assert transport.compact("docs") == report
    finally:
        server.stop(None).wait()


def test_status_without_error_code_maps_by_the_error_table() -> None:
    """A failure with no proximadb-error-code (not from ProximaDB's servicer) gets the class errors.py gives its
    status: the most specific one that every error with that status is."""
    statuses = {"GetCollection": grpc.StatusCode.ALREADY_EXISTS, "Stats": grpc.StatusCode.DATA_LOSS,
                "Count": grpc.StatusCode.INVALID_ARGUMENT, "ListCollections": grpc.StatusCode.INTERNAL}

    def refuse(status: grpc.StatusCode) -> Any:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(status, f"stand-in {status.name}")
        return call

    handler = grpc.method_handlers_generic_handler(SERVICE_NAME, {
        rpc: grpc.unary_unary_rpc_method_handler(refuse(status), request_deserializer=lambda b: b,
                                                 response_serializer=lambda b: b)
        for rpc, status in statuses.items()
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GrpcTransport(f"127.0.0.1:{port}") as transport:
            for call, error in ((lambda: transport.get_collection("x"), AlreadyExistsError),
                                (lambda: transport.stats("x"), CorruptionError),
                                (lambda: transport.count("x", None), ValidationError)):
                with pytest.raises(error, match="stand-in"):
                    call()
            with pytest.raises(ProximaDBError, match=f"gRPC INTERNAL from 127.0.0.1:{port}: stand-in") as info:
                transport.list_collections()
            assert type(info.value) is ProximaDBError
    finally:
        server.stop(None).wait()
