"""Values at the edge of their types, over a real daemon (REST and gRPC) and the embedded engine.

* cosine collections normalise huge and subnormal vectors correctly (no zeros, no un-normalised rows);
* euclidean / dot-product collections refuse vectors (and queries) whose distances cannot be finite
  in float32, on every write path, so one record can never break searches for everyone;
* filter text goes through one strict parser: bad JSON, deep nesting, giant integers and duplicate
  keys are a 400 / INVALID_ARGUMENT naming the problem, never a 500 / INTERNAL;
* duplicate keys in any JSON body are refused; record layouts (``schema_version``) must be supported;
  undecodable protobuf bytes are INVALID_ARGUMENT; client timestamps must lie in 0 .. year 9999.

Each test checks that the refused call changed nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _daemon import Daemon

from proximadb import errors
from proximadb.api.grpc import ERROR_CODE_METADATA, SERVICE_NAME
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.codec.avro_batch import decode_vector_batch
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.storage.engine import Engine

TIMEOUT = 30.0
BIG = 3.4e38  # just under float32's maximum
OVERFLOWING = [BIG, BIG, 1.0, 1.0]  # its squared norm overflows float32
SUBNORMAL = [1.4e-45, 0.0, 0.0, 0.0]  # the smallest float32 above zero
HUGE = [BIG] * 4
HALF = math.sqrt(0.5)
YEAR_10000_US = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z in microseconds since the epoch
BAD_FILTERS = {
    "not JSON": "{bad",
    "nested 10^5 deep": '{"$not": ' * 100_000 + "{}" + "}" * 100_000,
    "a 5,000-digit integer": '{"n": ' + "9" * 5000 + "}",
    "a duplicate key": '{"n": 1, "n": 2}',
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("value-guards") / "data", "--fsync", "never") as d:
        yield d


@pytest.fixture(scope="module")
def channel(daemon: Daemon) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(daemon.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.ProximaDBStub:
    return pb_grpc.ProximaDBStub(channel)


# ---------------------------------------------------------------- helpers


def rest(d: Daemon, method: str, path: str, body: Any = None, *, avro: bool = False) -> tuple[int, Any]:
    """(status, parsed JSON envelope). ``body``: bytes/str sent as they are, anything else as JSON."""
    headers = {}
    if body is not None:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        headers["Content-Type"] = "application/avro" if avro else "application/json"
    conn = d.connection(TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data)


def rest_ok(d: Daemon, method: str, path: str, body: Any = None, *, avro: bool = False) -> Any:
    status, doc = rest(d, method, path, body, avro=avro)
    assert status in (200, 201), (method, path, status, doc)
    return doc["data"]


def rest_refused(d: Daemon, method: str, path: str, body: Any = None, *, code: str, words: tuple[str, ...] = (),
                 avro: bool = False) -> str:
    status, doc = rest(d, method, path, body, avro=avro)
    assert (status, doc["error"]["code"]) == (400, code), (method, path, status, doc)
    message: str = doc["error"]["message"]
    for word in words:
        assert word in message, (word, message)
    assert "set_int_max_str_digits" not in message
    return message


def grpc_refused(call: Any, request: Any, *, code: str, words: tuple[str, ...] = ()) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert dict(err.trailing_metadata() or ()).get(ERROR_CODE_METADATA) == code, err.details()
    for word in words:
        assert word in err.details(), (word, err.details())
    assert "set_int_max_str_digits" not in err.details()
    return str(err.details())


def create(d: Daemon, name: str, metric: str, dimension: int = 4) -> str:
    rest_ok(d, "POST", "/collections", {"name": name, "dimension": dimension, "distance_metric": metric})
    return f"/collections/{name}"


def vector_of(d: Daemon, base: str, id_: str) -> np.ndarray:
    return np.array(rest_ok(d, "GET", f"{base}/vectors/{id_}")["vector"], dtype=np.float64)


def count(d: Daemon, base: str) -> int:
    return int(rest_ok(d, "POST", f"{base}/vectors/count", {})["count"])


def search_datum(query: list[float], **extra: Any) -> dict[str, Any]:
    return {"queries": [query], "k": 5, "include_vectors": False, "include_metadata": True, "exact": True, **extra}


def search_payload(query: list[float], **extra: Any) -> bytes:
    return encode_payload("vector_search", search_datum(query, **extra))


# ---------------------------------------------------------------- 3. cosine normalisation


@pytest.mark.parametrize("transport", ["rest-json", "rest-avro", "grpc"])
def test_cosine_stores_huge_and_subnormal_vectors_normalised(
    daemon: Daemon, stub: pb_grpc.ProximaDBStub, transport: str
) -> None:
    name = f"cos-{transport}"
    base = create(daemon, name, "cosine")
    records = [{"id": "big", "vector": OVERFLOWING}, {"id": "tiny", "vector": SUBNORMAL}]
    if transport == "rest-json":
        rest_ok(daemon, "POST", f"{base}/vectors/batch", {"vectors": records})
    elif transport == "rest-avro":
        rest_ok(daemon, "POST", f"{base}/vectors/batch", encode_insert(records), avro=True)
    else:
        stub.Insert(pb.PayloadRequest(collection=name, payload=encode_insert(records)), timeout=TIMEOUT)

    np.testing.assert_allclose(vector_of(daemon, base, "big"), [HALF, HALF, 0, 0], atol=1e-6)
    np.testing.assert_allclose(vector_of(daemon, base, "tiny"), [1, 0, 0, 0], atol=1e-6)
    for query, best in (([1.0, 1.0, 0.0, 0.0], "big"), ([1.0, 0.0, 0.0, 0.0], "tiny"),
                        (OVERFLOWING, "big"), (SUBNORMAL, "tiny")):  # queries are normalised the same way
        hits = rest_ok(daemon, "POST", f"{base}/search", {"vector": query, "k": 2})
        assert hits[0]["id"] == best and hits[0]["score"] == pytest.approx(1.0, abs=1e-5), (query, hits)
        assert all(math.isfinite(h["distance"]) for h in hits)


# ---------------------------------------------------------------- 4. norms that overflow float32


@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_vector_whose_distances_overflow_is_refused_on_every_write_path(
    daemon: Daemon, stub: pb_grpc.ProximaDBStub, metric: str
) -> None:
    name = f"huge-{metric}"
    base = create(daemon, name, metric)
    rest_ok(daemon, "POST", f"{base}/vectors", {"id": "ok", "vector": [1, 2, 3, 4]})
    words = ("record 0", "norm")
    for bad in (HUGE, [2e19, 0, 0, 0], [1e19, 1e19, 1e19, 1e19]):
        rest_refused(daemon, "POST", f"{base}/vectors", {"id": "h", "vector": bad}, code="invalid_vector", words=words)
        rest_refused(daemon, "POST", f"{base}/vectors/batch", {"vectors": [{"id": "h", "vector": bad}]},
                     code="invalid_vector", words=words)
        rest_refused(daemon, "POST", f"{base}/vectors/batch", {"vectors": [{"id": "ok", "vector": bad}],
                                                               "upsert": True}, code="invalid_vector", words=words)
        rest_refused(daemon, "PUT", f"{base}/vectors/ok", {"vector": bad}, code="invalid_vector", words=words)
        for upsert in (False, True):
            payload = encode_insert([{"id": "ok", "vector": bad}], upsert=upsert)
            rest_refused(daemon, "POST", f"{base}/vectors/batch", payload, code="invalid_vector", words=words,
                         avro=True)
            grpc_refused(stub.Insert, pb.PayloadRequest(collection=name, payload=payload), code="invalid_vector",
                         words=words)
    assert count(daemon, base) == 1
    np.testing.assert_array_equal(vector_of(daemon, base, "ok"), [1, 2, 3, 4])

    # The largest vectors allowed still give finite distances between any two of them.
    rest_ok(daemon, "POST", f"{base}/vectors/batch", {"vectors": [{"id": "plus", "vector": [1e18] * 4},
                                                                  {"id": "minus", "vector": [-1e18] * 4}]})
    for query in ([1e18] * 4, [-1e18] * 4, [1, 2, 3, 4]):
        hits = rest_ok(daemon, "POST", f"{base}/search", {"vector": query, "k": 3})
        assert len(hits) == 3 and all(math.isfinite(h["distance"]) and math.isfinite(h["score"]) for h in hits)


@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_query_whose_distances_overflow_is_a_400(daemon: Daemon, stub: pb_grpc.ProximaDBStub, metric: str) -> None:
    name = f"huge-query-{metric}"
    base = create(daemon, name, metric)
    rest_ok(daemon, "POST", f"{base}/vectors", {"id": "ok", "vector": [1, 2, 3, 4]})
    words = ("query", "norm")
    rest_refused(daemon, "POST", f"{base}/search", {"vector": HUGE, "k": 1}, code="invalid_vector", words=words)
    rest_refused(daemon, "POST", f"{base}/search/batch", {"queries": [[1, 2, 3, 4], HUGE], "k": 1},
                 code="invalid_vector", words=("query 1", "norm"))
    rest_refused(daemon, "POST", f"{base}/search", search_payload(HUGE), code="invalid_vector", words=words,
                 avro=True)
    for call in (stub.Search, stub.SearchBatch):
        grpc_refused(call, pb.PayloadRequest(collection=name, payload=search_payload(HUGE)), code="invalid_vector",
                     words=words)
    assert rest_ok(daemon, "POST", f"{base}/search", {"vector": [1, 2, 3, 4], "k": 1})[0]["id"] == "ok"


# ---------------------------------------------------------------- 5. filters given as JSON text


@pytest.fixture(scope="module")
def filtered(daemon: Daemon) -> str:
    """Collection 'flt' (euclidean, dimension 4) holding a (n=1) and b (n=2)."""
    base = create(daemon, "flt", "euclidean")
    rest_ok(daemon, "POST", f"{base}/vectors/batch", {"vectors": [
        {"id": "a", "vector": [1, 0, 0, 0], "metadata": {"n": 1}},
        {"id": "b", "vector": [0, 1, 0, 0], "metadata": {"n": 2}}]})
    return base


def _filter_words(label: str) -> tuple[str, ...]:
    return {"not JSON": ("not valid JSON",), "nested 10^5 deep": ("nested",),
            "a 5,000-digit integer": ("digits",), "a duplicate key": ("duplicate", "'n'")}[label]


def test_filter_text_is_refused_over_rest_json(daemon: Daemon, filtered: str) -> None:
    base = filtered
    for label, text in BAD_FILTERS.items():
        words = _filter_words(label)
        for path, body in ((f"{base}/search", {"vector": [1, 0, 0, 0], "k": 1, "filter": text}),
                           (f"{base}/search/batch", {"queries": [[1, 0, 0, 0]], "k": 1, "filter": text}),
                           (f"{base}/vectors/count", {"filter": text}),
                           (f"{base}/vectors/scroll", {"filter": text}),
                           (f"{base}/vectors/delete", {"filter": text})):
            rest_refused(daemon, "POST", path, body, code="invalid_filter", words=words)
    assert count(daemon, base) == 2
    assert rest_ok(daemon, "POST", f"{base}/vectors/count", {"filter": '{"n": 2}'}) == {"count": 1}


def test_filter_text_is_refused_in_avro_payloads_over_rest(daemon: Daemon, filtered: str) -> None:
    base = filtered
    for label, text in BAD_FILTERS.items():
        words = _filter_words(label)
        rest_refused(daemon, "POST", f"{base}/search", search_payload([1, 0, 0, 0], filter=text),
                     code="invalid_filter", words=words, avro=True)
        delete = encode_payload("vector_delete", {"ids": [], "filter": text})
        rest_refused(daemon, "POST", f"{base}/vectors/delete", delete, code="invalid_filter", words=words, avro=True)
    assert count(daemon, base) == 2


def test_filter_text_is_refused_over_grpc(daemon: Daemon, stub: pb_grpc.ProximaDBStub, filtered: str) -> None:
    for label, text in BAD_FILTERS.items():
        words = _filter_words(label)
        search = pb.PayloadRequest(collection="flt", payload=search_payload([1, 0, 0, 0], filter=text))
        grpc_refused(stub.Search, search, code="invalid_filter", words=words)
        grpc_refused(stub.SearchBatch, search, code="invalid_filter", words=words)
        grpc_refused(stub.Scroll, pb.ScrollRequest(collection="flt", filter_json=text), code="invalid_filter",
                     words=words)
        grpc_refused(stub.Count, pb.CountRequest(collection="flt", filter_json=text), code="invalid_filter",
                     words=words)
        delete = encode_payload("vector_delete", {"ids": [], "filter": text})
        grpc_refused(stub.Mutate, pb.PayloadRequest(collection="flt", payload=delete), code="invalid_filter",
                     words=words)
    assert stub.Count(pb.CountRequest(collection="flt"), timeout=TIMEOUT).count == 2


# ---------------------------------------------------------------- 11. duplicate keys, versions, bytes, timestamps


def test_duplicate_keys_in_json_bodies_are_refused(daemon: Daemon, stub: pb_grpc.ProximaDBStub) -> None:
    words = ("duplicate key",)
    rest_refused(daemon, "POST", "/collections", '{"name": "dup-a", "name": "dup-b", "dimension": 4}',
                 code="malformed_payload", words=(*words, "'name'"))
    assert [c["name"] for c in rest_ok(daemon, "GET", "/collections") if c["name"].startswith("dup")] == []
    base = create(daemon, "dup", "euclidean")
    rest_refused(daemon, "POST", f"{base}/vectors/batch",
                 '{"vectors": [{"id": "a", "vector": [1, 2, 3, 4], "metadata": {"k": 1, "k": 2}}]}',
                 code="malformed_payload", words=(*words, "'k'"))
    rest_refused(daemon, "POST", f"{base}/vectors", '{"id": "a", "id": "b", "vector": [1, 2, 3, 4]}',
                 code="malformed_payload", words=(*words, "'id'"))
    rest_refused(daemon, "POST", f"{base}/search", '{"vector": [1, 0, 0, 0], "k": 1, "k": 2}',
                 code="malformed_payload", words=(*words, "'k'"))
    rest_refused(daemon, "PATCH", base, '{"description": "a", "description": "b"}',
                 code="malformed_payload", words=(*words, "'description'"))
    assert count(daemon, base) == 0 and rest_ok(daemon, "GET", base).get("description") is None

    grpc_refused(stub.CreateCollection, pb.CreateCollectionRequest(
        name="dup-grpc", dimension=4, indexing_algorithm="hnsw", index_params_json='{"M": 16, "M": 8}'),
        code="validation_error", words=(*words, "'M'"))
    grpc_refused(stub.UpdateCollection, pb.UpdateCollectionRequest(
        collection="dup", changes_json='{"description": "a", "description": "b"}'),
        code="validation_error", words=(*words, "'description'"))
    assert rest_ok(daemon, "GET", base).get("description") is None
    assert [c["name"] for c in rest_ok(daemon, "GET", "/collections") if c["name"] == "dup-grpc"] == []


def test_record_layout_version_must_be_supported(daemon: Daemon, stub: pb_grpc.ProximaDBStub) -> None:
    base = create(daemon, "layouts", "euclidean")
    rest_ok(daemon, "POST", f"{base}/vectors", {"id": "a", "vector": [1, 2, 3, 4]})
    for version in (5, 99, 2**32 - 1):
        for call, request in ((stub.Get, pb.GetRequest(collection="layouts", ids=["a"], schema_version=version)),
                              (stub.Scroll, pb.ScrollRequest(collection="layouts", schema_version=version))):
            grpc_refused(call, request, code="unsupported_schema_version", words=(str(version), "1, 2"))
    for version in (0, 1, 2):
        got = stub.Get(pb.GetRequest(collection="layouts", ids=["a"], schema_version=version), timeout=TIMEOUT)
        assert got.schema_version == max(version, 1)
        assert decode_vector_batch(got.records, -1, got.schema_version).ids == ["a"]
        page = stub.Scroll(pb.ScrollRequest(collection="layouts", schema_version=version), timeout=TIMEOUT)
        assert page.schema_version == max(version, 1)


def test_undecodable_request_bytes_are_invalid_argument(channel: grpc.Channel, stub: pb_grpc.ProximaDBStub) -> None:
    methods = pb.DESCRIPTOR.services_by_name["ProximaDB"].methods
    assert len(methods) >= 15
    for method in methods:
        raw = channel.unary_unary(f"/{SERVICE_NAME}/{method.name}", request_serializer=None,
                                  response_deserializer=None)
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab"):  # a cut varint; a string longer than the bytes left
            with pytest.raises(grpc.RpcError) as info:
                raw(garbage, timeout=TIMEOUT)
            err = info.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, err.code(), err.details())
            assert method.input_type.name in err.details() and "protobuf" in err.details(), err.details()
            assert dict(err.trailing_metadata() or ()).get(ERROR_CODE_METADATA) == "malformed_payload"
    assert stub.Health(pb.HealthRequest(), timeout=TIMEOUT).status == "ok"


def test_client_timestamps_must_lie_between_0_and_year_9999(daemon: Daemon, stub: pb_grpc.ProximaDBStub) -> None:
    base = create(daemon, "stamps", "euclidean")
    rest_ok(daemon, "POST", f"{base}/vectors", {"id": "keep", "vector": [1, 2, 3, 4], "metadata": {"v": 1}})
    for field in ("timestamp", "expires_at"):
        for value in (-1, 2**62, YEAR_10000_US, -(2**63) + 1):
            record = {"id": "t", "vector": [1, 2, 3, 4], field: value}
            rest_refused(daemon, "POST", f"{base}/vectors/batch", {"vectors": [record]}, code="validation_error",
                         words=(field, str(value), "9999"))
            payload = encode_insert([record])
            rest_refused(daemon, "POST", f"{base}/vectors/batch", payload, code="validation_error", words=(field,),
                         avro=True)
            grpc_refused(stub.Insert, pb.PayloadRequest(collection="stamps", payload=payload),
                         code="validation_error", words=(field, str(value)))
    for value in (-1, 2**62):
        update = encode_payload("vector_update", {"updates": [{"id": "keep", "metadata": {"v": 2}, "replace": False}],
                                                  "timestamp": value})
        grpc_refused(stub.Mutate, pb.PayloadRequest(collection="stamps", payload=update), code="validation_error",
                     words=("timestamp", str(value)))
        rest_refused(daemon, "POST", f"{base}/vectors/delete", update, code="validation_error", words=("timestamp",),
                     avro=True)
    assert count(daemon, base) == 1 and rest_ok(daemon, "GET", f"{base}/vectors/keep")["metadata"] == {"v": 1}

    last = YEAR_10000_US - 1
    rest_ok(daemon, "POST", f"{base}/vectors/batch", {"vectors": [
        {"id": "early", "vector": [1, 2, 3, 4], "timestamp": 1, "expires_at": 0},
        {"id": "late", "vector": [1, 2, 3, 4], "timestamp": last, "expires_at": last}]})
    late = rest_ok(daemon, "GET", f"{base}/vectors/late")
    assert (late["timestamp"], late["expires_at"]) == (last, last)
    status, doc = rest(daemon, "GET", f"{base}/vectors/early")  # accepted, and expired since 1970: gone at once
    assert (status, doc["error"]["code"]) == (404, "vector_not_found")


# ---------------------------------------------------------------- the embedded engine


def test_embedded_engine_normalises_cosine_and_refuses_overflowing_norms(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", fsync="never") as engine:
        engine.create_collection("cos", 4, distance_metric="cosine")
        cos = engine.collection("cos")
        cos.insert(ids=["big", "tiny"], vectors=np.array([OVERFLOWING, SUBNORMAL], dtype=np.float32))
        np.testing.assert_allclose(cos.get("big")["vector"], [HALF, HALF, 0, 0], atol=1e-6)
        np.testing.assert_allclose(cos.get("tiny")["vector"], [1, 0, 0, 0], atol=1e-6)
        assert cos.search(np.array(SUBNORMAL, dtype=np.float32), k=1)[0]["id"] == "tiny"

        for metric in ("euclidean", "dot_product"):
            engine.create_collection(metric, 4, distance_metric=metric)
            col = engine.collection(metric)
            col.insert(ids=["ok"], vectors=np.array([[1, 2, 3, 4]], dtype=np.float32))
            huge = np.array([HUGE], dtype=np.float32)
            for write, id_ in ((col.insert, "h"), (col.upsert, "ok")):
                with pytest.raises(errors.InvalidVectorError, match=r"record 0 .* norm"):
                    write(ids=[id_], vectors=huge)
            with pytest.raises(errors.InvalidVectorError, match="query 0: its squared norm"):
                col.search(huge[0], k=1)
            assert col.count() == 1 and col.get("ok")["vector"].tolist() == [1, 2, 3, 4]

    with Engine.open(tmp_path / "data", fsync="never") as engine:  # WAL replay normalises the same way
        np.testing.assert_allclose(engine.collection("cos").get("big")["vector"], [HALF, HALF, 0, 0], atol=1e-6)
        np.testing.assert_allclose(engine.collection("cos").get("tiny")["vector"], [1, 0, 0, 0], atol=1e-6)


def test_embedded_engine_refuses_timestamps_out_of_range(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", fsync="never") as engine:
        engine.create_collection("c", 4, distance_metric="euclidean")
        col = engine.collection("c")
        for field in ("timestamp", "expires_at"):
            for value in (-1, 2**62):
                with pytest.raises(errors.ValidationError, match=f"record 0 .*: {field} {value} is out of range"):
                    col.insert([{"id": "t", "vector": [1, 2, 3, 4], field: value}])
        assert col.count() == 0


def test_embedded_engine_refuses_bad_filter_text(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", fsync="never") as engine:
        engine.create_collection("c", 4, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert([{"id": "a", "vector": [1, 2, 3, 4], "metadata": {"n": 1}}])
        for label, text in BAD_FILTERS.items():
            for call in (col.count, col.delete_where, lambda f: col.scroll(filter=f),
                         lambda f: col.search([1, 2, 3, 4], k=1, filter=f)):
                with pytest.raises(errors.InvalidFilterError) as info:
                    call(text)
                assert all(word in info.value.message for word in _filter_words(label)), info.value.message
        assert col.count() == 1 and col.count('{"n": 1}') == 1
