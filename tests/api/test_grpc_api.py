"""The gRPC API over a real Engine: a real grpc server on 127.0.0.1 (port 0), in-process.

Every RPC, the standard health service, and bad input over the wire: each bad call must give
the right status, error code (trailing metadata) and message, and leave everything as it was.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proximadb.api.grpc import ENVELOPE_BYTES, ERROR_CODE_METADATA, SERVICE_NAME, convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.grpc.server import build_server, stop_serving
from proximadb.codec.avro_batch import decode_vector_batch
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.service.requests import Count, GetVectors, Scroll
from proximadb.service.unified import Limits, UnifiedAvroService
from proximadb.storage.engine import Engine

LIMIT = 256 << 10  # payload limit of the service under test
DIM = 4
TIMEOUT = 10.0


@dataclass
class Served:
    root: Path
    engine: Engine
    service: UnifiedAvroService
    stub: pb_grpc.ProximaDBStub
    channel: grpc.Channel
    port: int


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    engine = Engine.open(tmp_path / "data")
    service = UnifiedAvroService(engine, limits=Limits(max_request_bytes=LIMIT))
    server, port = build_server(service, "127.0.0.1", 0, max_message_bytes=LIMIT, max_workers=4)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 16 << 20)])
    try:
        yield Served(tmp_path, engine, service, pb_grpc.ProximaDBStub(channel), channel, port)
    finally:
        channel.close()
        server.stop(None).wait()
        engine.close()


def fail(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


def error_code(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(ERROR_CODE_METADATA)  # type: ignore[attr-defined]


def create(s: Served, name: str = "docs", **fields: Any) -> pb.CollectionInfo:
    return s.stub.CreateCollection(pb.CreateCollectionRequest(name=name, dimension=DIM, **fields), timeout=TIMEOUT)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def insert(s: Served, ids: list[str], matrix: np.ndarray, metadata: list[Any] | None = None) -> pb.InsertResponse:
    payload = encode_insert(ids=ids, vectors=matrix, metadata=metadata)
    return s.stub.Insert(pb.PayloadRequest(collection="docs", payload=payload), timeout=TIMEOUT)


def search_payload(queries: list[list[float]], k: int = 3, **extra: Any) -> bytes:
    datum = {"queries": queries, "k": k, "include_vectors": False, "include_metadata": True, "exact": True, **extra}
    return encode_payload("vector_search", datum)


def snapshot(s: Served) -> dict[str, Any]:
    """Everything a bad call must leave alone: the collections, their records and every file's size."""
    state: dict[str, Any] = {"files": {}, "collections": {}}
    for path in sorted(s.root.rglob("*")):
        if path.is_file() and path.name != "LOCK":
            state["files"][str(path.relative_to(s.root))] = path.stat().st_size
    for info in s.service.list_collections():
        page = s.service.scroll(info["uuid"], Scroll(limit=10_000, include_vectors=True))
        records = [(r["id"], r["vector"].tobytes(), r["metadata"], r["timestamp"]) for r in page["records"]]
        state["collections"][info["name"]] = (info, records)
    return state


@pytest.fixture
def loaded(served: Served) -> Served:
    create(served, filterable_metadata_fields=["genre"])
    insert(served, ["a", "b", "c"], vectors(3), [{"genre": "jazz", "year": 1990}, {"genre": "rock"}, None])
    return served


# ---------------------------------------------------------------- health


def test_health_rpc(served: Served) -> None:
    answer = served.stub.Health(pb.HealthRequest(), timeout=TIMEOUT)
    assert answer.status == "ok"
    assert answer.current_schema_version in answer.schema_versions
    assert answer.version
    assert not answer.HasField("grpc_port")  # nothing advertised in-process


def test_health_watchers_see_not_serving_when_the_server_stops(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", fsync="never") as engine:
        server, port = build_server(UnifiedAvroService(engine), "127.0.0.1", 0, max_message_bytes=LIMIT)
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                               timeout=TIMEOUT)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopper = threading.Thread(target=stop_serving, args=(server, 2.0))
            stopper.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            stopper.join()


def test_standard_health_service_answers_serving(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for name in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    err = fail(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- collections


def test_collection_lifecycle(served: Served) -> None:
    info = create(served, indexing_algorithm="hnsw", index_params_json='{"M": 8}', description="d")
    assert (info.name, info.dimension, info.distance_metric, info.indexing_algorithm) == ("docs", DIM, "cosine", "hnsw")
    assert json.loads(info.index_params_json) == {"M": 8}
    assert info.description == "d" and info.uuid and info.schema_version == 4

    by_name = served.stub.GetCollection(pb.CollectionRef(collection="docs"), timeout=TIMEOUT)
    by_uuid = served.stub.GetCollection(pb.CollectionRef(collection=info.uuid), timeout=TIMEOUT)
    assert by_name == by_uuid and by_name.vector_count == 0 and by_name.HasField("vector_count")

    create(served, "other", distance_metric="euclidean")
    listed = served.stub.ListCollections(pb.ListCollectionsRequest(), timeout=TIMEOUT)
    assert sorted(c.name for c in listed.collections) == ["docs", "other"]

    changes = json.dumps({"description": "new", "filterable_metadata_fields": ["genre"]})
    updated = served.stub.UpdateCollection(
        pb.UpdateCollectionRequest(collection="docs", changes_json=changes), timeout=TIMEOUT
    )
    assert updated.description == "new" and list(updated.filterable_metadata_fields) == ["genre"]
    assert updated.updated_at >= info.updated_at

    served.stub.DeleteCollection(pb.CollectionRef(collection="docs"), timeout=TIMEOUT)
    err = fail(served.stub.GetCollection, pb.CollectionRef(collection="docs"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and error_code(err) == "collection_not_found"
    assert [c.name for c in served.stub.ListCollections(pb.ListCollectionsRequest(), timeout=TIMEOUT).collections] == [
        "other"
    ]


def test_create_defaults_from_empty_fields(served: Served) -> None:
    info = create(served)
    assert (info.distance_metric, info.indexing_algorithm, json.loads(info.index_params_json)) == (
        "cosine", "flat", {}
    )
    assert not info.HasField("description")


@pytest.mark.parametrize(
    ("fields", "code", "fragment"),
    [
        ({"index_params_json": "{not json"}, "validation_error", "index_params_json is not valid JSON"),
        ({"index_params_json": "[1]"}, "validation_error", "index_params must be an object"),
        ({"index_params_json": '{"M": 8}'}, "validation_error", "not a parameter of flat"),
        ({"distance_metric": "manhattan"}, "validation_error", "distance_metric must be one of"),
        ({"indexing_algorithm": "lsh"}, "validation_error", "indexing_algorithm must be one of"),
        ({"dimension": 0}, "validation_error", "dimension must be between"),
    ],
)
def test_create_collection_bad_fields(served: Served, fields: dict[str, Any], code: str, fragment: str) -> None:
    before = snapshot(served)
    request = pb.CreateCollectionRequest(name="docs", dimension=DIM)
    for key, value in fields.items():
        setattr(request, key, value)
    err = fail(served.stub.CreateCollection, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(err) == code and fragment in err.details()
    assert snapshot(served) == before


def test_create_existing_collection(served: Served) -> None:
    create(served)
    before = snapshot(served)
    err = fail(served.stub.CreateCollection, pb.CreateCollectionRequest(name="docs", dimension=DIM))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and error_code(err) == "collection_exists"
    assert "docs" in err.details()
    assert snapshot(served) == before


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/etc/passwd", "", "x\x00y", "\u00e9t\u00e9", "a" * 256])
def test_hostile_collection_names(loaded: Served, name: str) -> None:
    before = snapshot(loaded)
    outside = sorted(p.name for p in loaded.root.iterdir())

    err = fail(loaded.stub.CreateCollection, pb.CreateCollectionRequest(name=name, dimension=DIM))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_code(err) == "validation_error"
    assert "invalid collection name" in err.details()

    payload = encode_insert(ids=["z"], vectors=vectors(1))
    for call, request in [
        (loaded.stub.GetCollection, pb.CollectionRef(collection=name)),
        (loaded.stub.DeleteCollection, pb.CollectionRef(collection=name)),
        (loaded.stub.Insert, pb.PayloadRequest(collection=name, payload=payload)),
        (loaded.stub.Count, pb.CountRequest(collection=name)),
        (loaded.stub.Get, pb.GetRequest(collection=name, ids=["a"])),
        (loaded.stub.Search, pb.PayloadRequest(collection=name, payload=search_payload([[1, 0, 0, 0]]))),
    ]:
        err = fail(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND, call
        assert error_code(err) == "collection_not_found"
    assert snapshot(loaded) == before
    assert sorted(p.name for p in loaded.root.iterdir()) == outside


def test_update_collection_errors(loaded: Served) -> None:
    before = snapshot(loaded)
    for changes, fragment in [
        ("{bad", "changes_json is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"dimension": 9}', "cannot be changed"),
        ('{"colour": "red"}', "unknown collection field"),
    ]:
        err = fail(loaded.stub.UpdateCollection, pb.UpdateCollectionRequest(collection="docs", changes_json=changes))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in err.details()
    err = fail(loaded.stub.UpdateCollection, pb.UpdateCollectionRequest(collection="nope", changes_json="{}"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert snapshot(loaded) == before


def test_stats_and_compact_answer_typed_messages(loaded: Served) -> None:
    """Typed fields that give the service's dict, plus field 1 for clients that read JsonResponse."""
    ref = pb.CollectionRef(collection="docs")
    stats = loaded.stub.Stats(ref, timeout=TIMEOUT)
    assert isinstance(stats, pb.CollectionStats)
    assert (stats.name, stats.vectors, stats.memtable_rows, stats.segments) == ("docs", 3, 3, 0)
    assert stats.HasField("wal_last_seq") and not stats.HasField("last_flush_error")
    expected = loaded.service.collection_stats("docs")
    assert convert.stats_from_proto(stats) == expected
    assert json.loads(pb.JsonResponse.FromString(stats.SerializeToString()).json) == expected  # an older client
    with pytest.raises(ValueError, match="'new_key'"):  # a key the .proto lacks: an error, not a silently missing field
        convert.stats_to_proto({**expected, "new_key": 1})

    loaded.engine.collection("docs").flush()
    insert(loaded, ["d"], vectors(1, seed=1))
    loaded.engine.collection("docs").flush()
    report = loaded.stub.Compact(ref, timeout=TIMEOUT)
    assert isinstance(report, pb.CompactionReport)
    assert (report.collection, report.segments_before, report.segments_after) == ("docs", 2, 1)
    assert (report.rows_before, report.rows_after, len(report.merged)) == (4, 4, 2) and report.bytes_after > 0
    as_dict = convert.compaction_from_proto(report)
    assert as_dict == json.loads(pb.JsonResponse.FromString(report.SerializeToString()).json)
    assert list(as_dict) == ["collection", "segments_before", "segments_after", "rows_before", "rows_after",
                             "bytes_before", "bytes_after", "seconds", "merged", "replicas"]
    assert as_dict["replicas"] == []  # one node; cluster mode lists every replica's report (tests/cluster)
    assert convert.stats_from_proto(loaded.stub.Stats(ref, timeout=TIMEOUT))["segments"] == 1
    for rpc in (loaded.stub.Stats, loaded.stub.Compact):
        assert fail(rpc, pb.CollectionRef(collection="nope")).code() == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- vectors


def test_insert_get_scroll_count(served: Served) -> None:
    create(served)
    matrix = vectors(5)
    ids = [f"id{i}" for i in range(5)]
    answer = insert(served, ids, matrix, [{"n": i, "even": i % 2 == 0} for i in range(5)])
    assert answer.count == 5 and list(answer.ids) == ids

    got = served.stub.Get(pb.GetRequest(collection="docs", ids=["id3", "missing", "id1"], include_vectors=True),
                          timeout=TIMEOUT)
    batch = decode_vector_batch(got.records)
    assert batch.ids == ["id3", "id1"]
    expected = served.service.get_vectors("docs", GetVectors(["id3", "id1"]))
    np.testing.assert_array_equal(batch.vectors, np.stack([r["vector"] for r in expected]))
    assert batch.metadata == [{"n": 3, "even": False}, {"n": 1, "even": False}]
    assert not got.HasField("next_cursor")

    no_vectors = served.stub.Get(pb.GetRequest(collection="docs", ids=["id0"]), timeout=TIMEOUT)
    assert decode_vector_batch(no_vectors.records).dim == 0

    seen: list[str] = []
    cursor: str | None = None
    while True:
        request = pb.ScrollRequest(collection="docs", limit=2, include_vectors=True)
        if cursor is not None:
            request.cursor = cursor
        page = served.stub.Scroll(request, timeout=TIMEOUT)
        batch = decode_vector_batch(page.records)
        assert batch.dim == DIM or len(batch) == 0
        seen += batch.ids
        if not page.HasField("next_cursor"):
            break
        cursor = page.next_cursor
    assert seen == sorted(ids)

    filtered = served.stub.Scroll(pb.ScrollRequest(collection="docs", filter_json='{"even": true}'), timeout=TIMEOUT)
    assert decode_vector_batch(filtered.records).ids == ["id0", "id2", "id4"]

    assert served.stub.Count(pb.CountRequest(collection="docs"), timeout=TIMEOUT).count == 5
    count = served.stub.Count(pb.CountRequest(collection="docs", filter_json='{"n": {"$gte": 3}}'), timeout=TIMEOUT)
    assert count.count == 2


def test_search_and_search_batch(loaded: Served) -> None:
    queries = loaded.service.get_vectors("docs", GetVectors(["a", "b"]))
    one = loaded.stub.Search(
        pb.PayloadRequest(collection="docs", payload=search_payload([queries[0]["vector"].tolist()])), timeout=TIMEOUT
    )
    version, op, result = decode_payload(one.payload)
    assert op == "search_result" and version == 4  # CURRENT_SCHEMA_VERSION
    assert isinstance(result, dict) and len(result["results"]) == 1
    assert result["results"][0][0]["id"] == "a"
    assert result["results"][0][0]["metadata"] == {"genre": "jazz", "year": 1990}

    payload = search_payload([q["vector"].tolist() for q in queries], k=2, filter='{"genre": "rock"}')
    many = loaded.stub.SearchBatch(pb.PayloadRequest(collection="docs", payload=payload), timeout=TIMEOUT)
    _, _, result = decode_payload(many.payload)
    assert isinstance(result, dict)
    assert [[h["id"] for h in hits] for hits in result["results"]] == [["b"], ["b"]]


def test_mutate_update_and_delete(loaded: Served) -> None:
    update = encode_payload(
        "vector_update", {"updates": [{"id": "a", "metadata": {"genre": "blues"}, "replace": False}], "timestamp": 0}
    )
    answer = loaded.stub.Mutate(pb.PayloadRequest(collection="docs", payload=update), timeout=TIMEOUT)
    assert (answer.deleted, answer.updated) == (0, 1)
    assert loaded.service.get_vector("docs", "a")["metadata"] == {"genre": "blues", "year": 1990}

    by_ids = encode_payload("vector_delete", {"ids": ["a", "nope"], "filter": None})
    answer = loaded.stub.Mutate(pb.PayloadRequest(collection="docs", payload=by_ids), timeout=TIMEOUT)
    assert (answer.deleted, answer.updated) == (1, 0)

    by_filter = encode_payload("vector_delete", {"ids": [], "filter": '{"genre": "rock"}'})
    answer = loaded.stub.Mutate(pb.PayloadRequest(collection="docs", payload=by_filter), timeout=TIMEOUT)
    assert answer.deleted == 1
    assert loaded.service.count("docs", Count()) == 1


# ---------------------------------------------------------------- bad payloads


def _frame(version: int, op: str, datum: bytes) -> bytes:
    raw = op.encode()
    return struct.pack("<II", version, len(raw)) + raw + datum


GOOD_INSERT = encode_insert(ids=["new"], vectors=np.ones((1, DIM), np.float32))
INSERT_DATUM = GOOD_INSERT[8 + len("vector_insert"):]

BAD_PAYLOADS: list[tuple[str, str, Callable[[], bytes], grpc.StatusCode, str, str]] = [
    ("wrong dimension", "Insert", lambda: encode_insert(ids=["x"], vectors=np.ones((1, DIM + 1), np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, "dimension_mismatch", "has dimension 5, expected 4"),
    ("NaN", "Insert", lambda: encode_insert(ids=["x"], vectors=np.array([[1, np.nan, 0, 0]], np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_vector", "nan"),
    ("NaN query", "Search", lambda: search_payload([[1.0, float("nan"), 0.0, 0.0]]),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_vector", "NaN"),
    ("truncated", "Insert", lambda: GOOD_INSERT[:-3],
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", "malformed VectorBatch datum"),
    ("truncated header", "Insert", lambda: GOOD_INSERT[:6],
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", "shorter than its 8-byte header"),
    ("op length past the end", "Mutate", lambda: struct.pack("<II", 1, 1000) + b"vector_delete",
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", ""),
    ("garbage", "Insert", lambda: _frame(1, "vector_insert", b"\xff" * 32),
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", "invalid boolean byte"),
    ("garbage search", "Search", lambda: _frame(1, "vector_search", b"\x87\x01garbage"),
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", "malformed"),
    ("garbage mutate", "Mutate", lambda: _frame(1, "vector_delete", b"\xff\xff\xff"),
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", "malformed"),
    ("empty", "Insert", lambda: b"",
     grpc.StatusCode.INVALID_ARGUMENT, "malformed_payload", ""),
    ("unknown schema version", "Insert", lambda: _frame(99, "vector_insert", INSERT_DATUM),
     grpc.StatusCode.INVALID_ARGUMENT, "unsupported_schema_version", "schema version 99 is not supported"),
    ("unknown op", "Insert", lambda: _frame(1, "vector_explode", INSERT_DATUM),
     grpc.StatusCode.INVALID_ARGUMENT, "unknown_operation", "unknown op type 'vector_explode'"),
    ("insert sent to Mutate", "Mutate", lambda: GOOD_INSERT,
     grpc.StatusCode.INVALID_ARGUMENT, "unknown_operation", "expected vector_delete or vector_update"),
    ("search sent to Insert", "Insert", lambda: search_payload([[1, 0, 0, 0]]),
     grpc.StatusCode.INVALID_ARGUMENT, "unknown_operation", "expected a vector_insert payload"),
    ("insert sent to Search", "Search", lambda: GOOD_INSERT,
     grpc.StatusCode.INVALID_ARGUMENT, "unknown_operation", "expected a vector_search payload"),
    ("bad filter", "Search", lambda: search_payload([[1, 0, 0, 0]], filter='{"year": {"$near": 1}}'),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_filter", "$near"),
    ("k too large", "SearchBatch", lambda: search_payload([[1, 0, 0, 0]], k=1_000_000),
     grpc.StatusCode.INVALID_ARGUMENT, "validation_error", "max_k limit"),
    ("over the service limit", "Insert", lambda: _frame(1, "vector_insert", b"\0" * LIMIT),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "payload_too_large", f"max_request_bytes limit of {LIMIT}"),
]


@pytest.mark.parametrize(
    ("rpc", "make", "status", "code", "fragment"),
    [case[1:] for case in BAD_PAYLOADS],
    ids=[case[0] for case in BAD_PAYLOADS],
)
def test_bad_payload_is_refused_and_changes_nothing(
    loaded: Served, rpc: str, make: Callable[[], bytes], status: grpc.StatusCode, code: str, fragment: str
) -> None:
    before = snapshot(loaded)
    err = fail(getattr(loaded.stub, rpc), pb.PayloadRequest(collection="docs", payload=make()))
    assert err.code() == status
    assert error_code(err) == code, err.details()
    assert fragment in err.details()
    assert snapshot(loaded) == before
    assert loaded.stub.Health(pb.HealthRequest(), timeout=TIMEOUT).status == "ok"


def test_oversized_message_is_refused_by_grpc(loaded: Served) -> None:
    before = snapshot(loaded)
    payload = _frame(1, "vector_insert", b"\0" * (LIMIT + ENVELOPE_BYTES + 1))
    err = fail(loaded.stub.Insert, pb.PayloadRequest(collection="docs", payload=payload))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_code(err) is None  # refused by gRPC before the servicer
    assert snapshot(loaded) == before
    assert loaded.stub.Count(pb.CountRequest(collection="docs"), timeout=TIMEOUT).count == 3


def test_bad_read_arguments(loaded: Served) -> None:
    before = snapshot(loaded)
    for call, request, code in [
        (loaded.stub.Scroll, pb.ScrollRequest(collection="docs", limit=10_001), "validation_error"),
        (loaded.stub.Scroll, pb.ScrollRequest(collection="docs", filter_json="{oops"), "invalid_filter"),
        (loaded.stub.Count, pb.CountRequest(collection="docs", filter_json='{"$or": []}'), "invalid_filter"),
        (loaded.stub.Get, pb.GetRequest(collection="docs", ids=[""]), "validation_error"),
    ]:
        err = fail(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert error_code(err) == code, err.details()
    assert snapshot(loaded) == before


def test_unknown_collection_for_every_vector_rpc(served: Served) -> None:
    for call, request in [
        (served.stub.Insert, pb.PayloadRequest(collection="ghost", payload=GOOD_INSERT)),
        (served.stub.Mutate, pb.PayloadRequest(collection="ghost", payload=encode_payload(
            "vector_delete", {"ids": ["a"], "filter": None}))),
        (served.stub.Get, pb.GetRequest(collection="ghost", ids=["a"])),
        (served.stub.Scroll, pb.ScrollRequest(collection="ghost")),
        (served.stub.Count, pb.CountRequest(collection="ghost")),
        (served.stub.Search, pb.PayloadRequest(collection="ghost", payload=search_payload([[1, 0, 0, 0]]))),
        (served.stub.UpdateCollection, pb.UpdateCollectionRequest(collection="ghost", changes_json="{}")),
        (served.stub.DeleteCollection, pb.CollectionRef(collection="ghost")),
    ]:
        err = fail(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert error_code(err) == "collection_not_found" and "'ghost'" in err.details()
    assert served.service.list_collections() == []


# ---------------------------------------------------------------- internal errors and metrics


def test_unexpected_exception_is_internal_and_logged(
    loaded: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("secret detail /var/lib/x")

    monkeypatch.setattr(loaded.service, "count", boom)
    with caplog.at_level(logging.ERROR, logger="proximadb.api.grpc"):
        err = fail(loaded.stub.Count, pb.CountRequest(collection="docs"))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and "internal error" in err.details()
    assert error_code(err) == "internal"
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)


def test_request_metrics(loaded: Served) -> None:
    fail(loaded.stub.Insert, pb.PayloadRequest(collection="docs", payload=b"junk"))
    loaded.stub.Count(pb.CountRequest(collection="docs"), timeout=TIMEOUT)
    text = loaded.service.metrics.render()
    assert 'proximadb_requests_total{protocol="grpc",route="Insert",code="OK"} 1' in text
    assert 'proximadb_requests_total{protocol="grpc",route="Insert",code="INVALID_ARGUMENT"} 1' in text
    assert 'proximadb_requests_total{protocol="grpc",route="Count",code="OK"} 1' in text
    assert 'proximadb_request_seconds_count{protocol="grpc",route="Insert"} 2' in text


def test_port_in_use_is_a_clear_error(served: Served) -> None:
    with pytest.raises(OSError, match=f"127.0.0.1:{served.port}"):
        build_server(served.service, "127.0.0.1", served.port, max_message_bytes=LIMIT)
