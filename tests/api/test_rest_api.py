"""The REST API (Falcon) over a real engine: every route, its envelope, status codes and bad input."""

from __future__ import annotations

import io
import json
import logging
import re
import struct
from pathlib import Path
from typing import Any

import falcon
import pytest
from falcon import testing

from proximadb.api.rest import ROUTES, create_app
from proximadb.api.rest.openapi import openapi_document
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.service.unified import Limits, UnifiedAvroService
from proximadb.storage.engine import Engine

AVRO = {"Content-Type": "application/avro"}
AVRO_IO = {"Content-Type": "application/avro", "Accept": "application/avro"}
JSON_CT = {"Content-Type": "application/json"}


@pytest.fixture()
def service(tmp_path: Path):
    engine = Engine.open(tmp_path / "data", fsync="never")
    svc = UnifiedAvroService(engine, limits=Limits(max_request_bytes=64 * 1024),
                             advertised={"rest_port": 5678, "grpc_port": 5679})
    yield svc
    engine.close()


@pytest.fixture()
def client(service: UnifiedAvroService) -> testing.TestClient:
    return testing.TestClient(create_app(service))


@pytest.fixture()
def docs(client: testing.TestClient) -> testing.TestClient:
    """A client with collection 'docs' (dimension 3, euclidean) holding a, b, c."""
    ok(client.simulate_post("/collections", json={"name": "docs", "dimension": 3, "distance_metric": "euclidean"}),
       201)
    records = [
        {"id": "a", "vector": [1.0, 0.0, 0.0], "metadata": {"lang": "en", "year": 2001}},
        {"id": "b", "vector": [0.0, 1.0, 0.0], "metadata": {"lang": "de", "year": 2002}},
        {"id": "c", "vector": [0.0, 0.0, 1.0], "metadata": {"lang": "en", "year": 2003}},
    ]
    ok(client.simulate_post("/collections/docs/vectors/batch", json={"vectors": records}), 201)
    return client


def ok(resp: testing.Result, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    body = resp.json
    assert body["success"] is True and body["error"] is None, body
    assert set(body) == {"success", "data", "error", "message"}
    return body["data"]


def err(resp: testing.Result, status: int, code: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json
    assert set(body) == {"success", "data", "error", "message"}
    assert body["success"] is False and body["data"] is None
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


def state(client: testing.TestClient) -> Any:
    """Everything observable about the stored data, to assert a bad request changed nothing."""
    cols = ok(client.simulate_get("/collections"))
    out = {}
    for col in cols:
        page = ok(client.simulate_post(f"/collections/{col['uuid']}/vectors/scroll",
                                       json={"limit": 10000, "include_vectors": True}))
        out[col["name"]] = (col["dimension"], col.get("description"), page["records"])
    return out


# ---------------------------------------------------------------------------- system routes


def test_health_ready_metrics(client: testing.TestClient) -> None:
    health = ok(client.simulate_get("/health"))
    assert health["status"] == "ok" and health["schema_versions"] == [1, 2, 3, 4]
    assert health["rest_port"] == 5678 and health["grpc_port"] == 5679 and health["version"]
    assert ok(client.simulate_get("/ready")) == {"ready": True}
    client.simulate_get("/collections")
    client.simulate_get("/no/such/route")
    resp = client.simulate_get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    assert "# TYPE proximadb_requests_total counter" in text
    assert 'proximadb_requests_total{protocol="rest",route="/collections",method="GET",code="200"} 1' in text
    assert 'proximadb_requests_total{protocol="rest",route="unmatched",method="GET",code="404"} 1' in text
    assert 'proximadb_request_seconds_count{protocol="rest",route="/health"} 1' in text


def test_ready_is_503_when_the_engine_is_closed(service: UnifiedAvroService, client: testing.TestClient) -> None:
    service.engine.close()
    err(client.simulate_get("/ready"), 503, "unavailable")
    err(client.simulate_get("/collections"), 503, "engine_closed")


def _router_routes(app: falcon.App) -> dict[str, set[str]]:
    """(template -> methods) for every route mounted in the Falcon router, from the resources' responders."""
    found: dict[str, set[str]] = {}

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None:
                template = re.sub(r"\{(\w+):\w+\}", r"{\1}", node.uri_template)
                found[template] = {m.lower() for m in falcon.COMBINED_METHODS
                                   if callable(getattr(node.resource, f"on_{m.lower()}", None))}
            walk(node.children)

    walk(app._router._roots)
    return found


def test_openapi_matches_the_router(client: testing.TestClient, service: UnifiedAvroService) -> None:
    doc = client.simulate_get("/openapi.json").json
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    documented = {path: {m for m in item if m != "parameters"} for path, item in doc["paths"].items()}
    mounted = _router_routes(create_app(service))
    assert documented == mounted
    assert len(mounted) == len(ROUTES)
    # Every $ref resolves and every path parameter is declared.
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', text)):
        assert ref[1] in doc["components"][ref[0]], ref
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), path
    assert openapi_document("x")["paths"] == doc["paths"]


# ---------------------------------------------------------------------------- collections


def test_collection_lifecycle(client: testing.TestClient) -> None:
    resp = client.simulate_post("/collections", json={
        "name": "docs", "dimension": 4, "distance_metric": "cosine", "indexing_algorithm": "flat",
        "index_params": {}, "filterable_metadata_fields": ["lang"], "description": "d"})
    created = ok(resp, 201)
    assert resp.headers["location"] == "/collections/docs"
    assert created["name"] == "docs" and created["dimension"] == 4 and created["filterable_metadata_fields"] == ["lang"]
    assert [c["name"] for c in ok(client.simulate_get("/collections"))] == ["docs"]
    assert ok(client.simulate_get("/collections/docs"))["vector_count"] == 0
    assert ok(client.simulate_get(f"/collections/{created['uuid']}"))["name"] == "docs"
    assert ok(client.simulate_patch("/collections/docs", json={"description": "new"}))["description"] == "new"
    err(client.simulate_post("/collections", json={"name": "docs", "dimension": 4}), 409, "collection_exists")
    err(client.simulate_patch("/collections/docs", json={"dimension": 8}), 400)
    assert ok(client.simulate_delete("/collections/docs")) is None
    err(client.simulate_get("/collections/docs"), 404, "collection_not_found")
    err(client.simulate_delete("/collections/docs"), 404, "collection_not_found")
    assert ok(client.simulate_get("/collections")) == []


@pytest.mark.parametrize("body", [
    {"name": "x"},
    {"name": "x", "dimension": "3"},
    {"name": "x", "dimension": 0},
    {"name": "x", "dimension": 3, "distance_metric": "manhattan"},
    {"name": "x", "dimension": 3, "indexing_algorithm": "lsh"},
    {"name": "x", "dimension": 3, "color": "red"},
    {"name": "../x", "dimension": 3},
    {"name": "%2e%2e", "dimension": 3},
    {"name": "..", "dimension": 3},
    {"name": "a/b", "dimension": 3},
    {"name": "n" * 300, "dimension": 3},
    {"name": "naïve", "dimension": 3},
    {"name": "", "dimension": 3},
    {"name": 7, "dimension": 3},
])
def test_bad_collection_bodies(docs: testing.TestClient, body: dict[str, Any], service: UnifiedAvroService) -> None:
    before = state(docs)
    err(docs.simulate_post("/collections", json=body), 400)
    assert state(docs) == before
    assert sorted(p.name for p in (service.engine.data_dir / "collections").iterdir()) == sorted(
        c["uuid"] for c in ok(docs.simulate_get("/collections")))


@pytest.mark.parametrize("path", ["/collections/%2e%2e", "/collections/..%2Fx", "/collections/" + "n" * 5000,
                                  "/collections/ünï", "/collections/%00", "/collections/docs%2F..%2F..%2Fetc"])
def test_hostile_collection_paths(docs: testing.TestClient, path: str) -> None:
    before = state(docs)
    for method in ("GET", "DELETE", "PATCH"):
        resp = docs.simulate_request(method, path, json={"description": "x"} if method == "PATCH" else None)
        assert resp.status_code in (400, 404), resp.text
        err(resp, resp.status_code)
    err(docs.simulate_post(path + "/vectors", json={"vector": [1, 2, 3]}), 404)
    assert state(docs) == before


def test_dot_dot_segments_do_not_route(docs: testing.TestClient) -> None:
    err(docs.simulate_get("/collections/../x"), 404)
    err(docs.simulate_get("/collections/docs/../docs/vectors/a"), 404)


# ---------------------------------------------------------------------------- vectors


def test_single_insert_get_put_patch_delete(docs: testing.TestClient) -> None:
    data = ok(docs.simulate_post("/collections/docs/vectors", json={"vector": [1, 1, 0], "metadata": {"k": 1}}), 201)
    generated = data["id"]
    assert data["ids"] == [generated] and len(generated) == 36
    ok(docs.simulate_post("/collections/docs/vectors", json={"id": "with/slash", "vector": [1, 2, 3]}), 201)
    err(docs.simulate_post("/collections/docs/vectors", json={"id": "a", "vector": [1, 2, 3]}), 409, "vector_exists")

    rec = ok(docs.simulate_get("/collections/docs/vectors/a"))
    assert rec["id"] == "a" and rec["vector"] == [1.0, 0.0, 0.0] and rec["metadata"] == {"lang": "en", "year": 2001}
    assert isinstance(rec["timestamp"], int)
    assert "vector" not in ok(docs.simulate_get("/collections/docs/vectors/a", params={"include_vector": "false"}))
    assert ok(docs.simulate_get("/collections/docs/vectors/with/slash"))["vector"] == [1.0, 2.0, 3.0]
    err(docs.simulate_get("/collections/docs/vectors/a", params={"include_vector": "maybe"}), 400)
    err(docs.simulate_get("/collections/docs/vectors/nope"), 404, "vector_not_found")

    put = ok(docs.simulate_put("/collections/docs/vectors/a", json={"vector": [2, 0, 0], "metadata": {"v": 2}}))
    assert put["metadata"] == {"v": 2}
    assert ok(docs.simulate_get("/collections/docs/vectors/a"))["vector"] == [2.0, 0.0, 0.0]
    assert ok(docs.simulate_put("/collections/docs/vectors/a", json={"metadata": {"only": True}}))["metadata"] == {
        "only": True}
    assert ok(docs.simulate_put("/collections/docs/vectors/new", json={"vector": [0, 0, 2]}))["id"] == "new"

    merged = ok(docs.simulate_patch("/collections/docs/vectors/b", json={"metadata": {"year": None, "x": "y"}}))
    assert merged["metadata"] == {"lang": "de", "x": "y"}
    replaced = ok(docs.simulate_patch("/collections/docs/vectors/b", json={"metadata": {"z": 1}, "replace": True}))
    assert replaced["metadata"] == {"z": 1}
    err(docs.simulate_patch("/collections/docs/vectors/nope", json={"metadata": {"z": 1}}), 404, "vector_not_found")
    err(docs.simulate_patch("/collections/docs/vectors/b", json={"replace": True}), 400)
    err(docs.simulate_patch("/collections/docs/vectors/b", json={"metadata": {"z": 1}, "replace": "yes"}), 400)

    assert ok(docs.simulate_delete("/collections/docs/vectors/with/slash")) == {"deleted": 1}
    err(docs.simulate_delete("/collections/docs/vectors/with/slash"), 404, "vector_not_found")
    assert ok(docs.simulate_get("/collections/docs/vectors/count")) == {"count": 5}


def test_batch_insert_is_atomic_and_upserts(docs: testing.TestClient) -> None:
    before = state(docs)
    bad = [{"id": "d", "vector": [1, 2, 3]}, {"id": "e", "vector": [1, 2]}]
    err(docs.simulate_post("/collections/docs/vectors/batch", json={"vectors": bad}), 400, "dimension_mismatch")
    dup = [{"id": "d", "vector": [1, 2, 3]}, {"id": "a", "vector": [1, 2, 3]}]
    err(docs.simulate_post("/collections/docs/vectors/batch", json={"vectors": dup}), 409, "vector_exists")
    assert state(docs) == before
    data = ok(docs.simulate_post("/collections/docs/vectors/batch", json={"vectors": dup, "upsert": True}), 201)
    assert data == {"count": 2, "ids": ["d", "a"]}
    assert ok(docs.simulate_get("/collections/docs/vectors/a"))["vector"] == [1.0, 2.0, 3.0]
    err(docs.simulate_post("/collections/docs/vectors/batch", json={"vectors": dup, "upsert": "true"}), 400)
    err(docs.simulate_post("/collections/docs/vectors/batch", json={"records": dup}), 400)


def test_get_delete_scroll_count(docs: testing.TestClient) -> None:
    got = ok(docs.simulate_post("/collections/docs/vectors/get", json={"ids": ["c", "zz", "a"]}))
    assert [r["id"] for r in got] == ["c", "a"] and got[0]["vector"] == [0.0, 0.0, 1.0]
    got = ok(docs.simulate_post("/collections/docs/vectors/get", json={"ids": ["a"], "include_vectors": False}))
    assert "vector" not in got[0]
    err(docs.simulate_post("/collections/docs/vectors/get", json={"ids": "a"}), 400)
    err(docs.simulate_post("/collections/docs/vectors/get", json={}), 400)

    assert ok(docs.simulate_get("/collections/docs/vectors/count")) == {"count": 3}
    assert ok(docs.simulate_post("/collections/docs/vectors/count")) == {"count": 3}
    assert ok(docs.simulate_post("/collections/docs/vectors/count", json={"filter": {"lang": "en"}})) == {"count": 2}
    assert ok(docs.simulate_get("/collections/docs/vectors/count", params={"filter": '{"year": {"$gt": 2001}}'})) == {
        "count": 2}
    err(docs.simulate_get("/collections/docs/vectors/count", params={"filter": "{bad"}), 400, "invalid_filter")

    page = ok(docs.simulate_post("/collections/docs/vectors/scroll", json={"limit": 2}))
    assert [r["id"] for r in page["records"]] == ["a", "b"] and page["next_cursor"] == "b"
    assert "vector" not in page["records"][0]
    page = ok(docs.simulate_post("/collections/docs/vectors/scroll",
                                 json={"limit": 2, "cursor": "b", "include_vectors": True}))
    assert [r["id"] for r in page["records"]] == ["c"] and page["next_cursor"] is None
    assert page["records"][0]["vector"] == [0.0, 0.0, 1.0]
    page = ok(docs.simulate_post("/collections/docs/vectors/scroll", json={"filter": {"lang": "de"}}))
    assert [r["id"] for r in page["records"]] == ["b"]
    err(docs.simulate_post("/collections/docs/vectors/scroll", json={"limit": 0}), 400)
    err(docs.simulate_post("/collections/docs/vectors/scroll", json={"limit": 5, "cursor": 3}), 400)

    assert ok(docs.simulate_post("/collections/docs/vectors/delete", json={"ids": ["a", "zz"]})) == {"deleted": 1}
    assert ok(docs.simulate_post("/collections/docs/vectors/delete", json={"filter": {"lang": "de"}})) == {"deleted": 1}
    err(docs.simulate_post("/collections/docs/vectors/delete", json={}), 400)
    err(docs.simulate_post("/collections/docs/vectors/delete", json={"ids": ["c"], "filter": {"a": 1}}), 400)
    assert ok(docs.simulate_get("/collections/docs/vectors/count")) == {"count": 1}


def test_avro_writes(docs: testing.TestClient) -> None:
    payload = encode_insert([{"id": "p", "vector": [0.5, 0.5, 0.0], "metadata": {"src": "avro"}}])
    assert ok(docs.simulate_post("/collections/docs/vectors/batch", body=payload, headers=AVRO), 201) == {
        "count": 1, "ids": ["p"]}
    payload = encode_insert([{"id": "q", "vector": [0.5, 0.0, 0.5]}])
    assert ok(docs.simulate_post("/collections/docs/vectors", body=payload, headers=AVRO), 201)["id"] == "q"
    update = encode_payload("vector_update", {"updates": [{"id": "p", "metadata": {"n": 1}, "replace": False}],
                                              "timestamp": 0})
    assert ok(docs.simulate_post("/collections/docs/vectors/delete", body=update, headers=AVRO)) == {
        "deleted": 0, "updated": 1}
    assert ok(docs.simulate_get("/collections/docs/vectors/p"))["metadata"] == {"src": "avro", "n": 1}
    delete = encode_payload("vector_delete", {"ids": ["p", "q"], "filter": None})
    assert ok(docs.simulate_post("/collections/docs/vectors/delete", body=delete, headers=AVRO)) == {
        "deleted": 2, "updated": 0}
    delete = encode_payload("vector_delete", {"ids": [], "filter": json.dumps({"lang": "en"})})
    assert ok(docs.simulate_post("/collections/docs/vectors/delete", body=delete, headers=AVRO))["deleted"] == 2
    assert ok(docs.simulate_get("/collections/docs/vectors/count")) == {"count": 1}


# ---------------------------------------------------------------------------- search


def _search_payload(queries: list[list[float]], k: int = 2, **extra: Any) -> bytes:
    return encode_payload("vector_search", {"queries": queries, "k": k, **extra})


def test_search_json(docs: testing.TestClient) -> None:
    hits = ok(docs.simulate_post("/collections/docs/search", json={"vector": [1, 0.1, 0], "k": 2}))
    assert [h["id"] for h in hits] == ["a", "b"]
    assert hits[0]["distance"] <= hits[1]["distance"] and hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["metadata"] == {"lang": "en", "year": 2001} and "vector" not in hits[0]
    hits = ok(docs.simulate_post("/collections/docs/search", json={
        "vector": [1, 0.1, 0], "k": 3, "filter": {"lang": "en"}, "include_vectors": True, "include_metadata": False,
        "exact": True, "ef": 64, "nprobe": 4}))
    assert [h["id"] for h in hits] == ["a", "c"] and hits[0]["vector"] == [1.0, 0.0, 0.0]
    assert "metadata" not in hits[0]
    batch = ok(docs.simulate_post("/collections/docs/search/batch", json={"queries": [[0, 0, 1], [0, 1, 0]], "k": 1}))
    assert [[h["id"] for h in hits] for hits in batch] == [["c"], ["b"]]
    err(docs.simulate_post("/collections/docs/search", json={"vector": [1, 0], "k": 1}), 400, "dimension_mismatch")
    err(docs.simulate_post("/collections/docs/search", json={"vector": [1, 0, 0], "k": 100000}), 400)
    err(docs.simulate_post("/collections/docs/search", json={"vector": [1, 0, 0], "kk": 1}), 400)
    err(docs.simulate_post("/collections/docs/search", json={"vector": ["a", 0, 0]}), 400)
    err(docs.simulate_post("/collections/docs/search", json={"queries": [[1, 0, 0]]}), 400)
    err(docs.simulate_post("/collections/docs/search/batch", json={"queries": []}), 400)
    err(docs.simulate_post("/collections/nope/search", json={"vector": [1, 0, 0]}), 404, "collection_not_found")


def test_search_avro_in_and_out(docs: testing.TestClient) -> None:
    payload = _search_payload([[1, 0.1, 0], [0, 0, 1]], k=1)
    resp = docs.simulate_post("/collections/docs/search/batch", body=payload, headers=AVRO_IO)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/avro"
    _version, op, datum = decode_payload(resp.content)
    assert op == "search_result" and [[h["id"] for h in hits] for hits in datum["results"]] == [["a"], ["c"]]
    # Avro request, JSON answer.
    as_json = ok(docs.simulate_post("/collections/docs/search/batch", body=payload, headers=AVRO))
    assert [[h["id"] for h in hits] for hits in as_json] == [["a"], ["c"]]
    one = ok(docs.simulate_post("/collections/docs/search", body=_search_payload([[0, 1, 0]]), headers=AVRO))
    assert one[0]["id"] == "b" and one[0]["metadata"] == {"lang": "de", "year": 2002} and "vector" not in one[0]
    err(docs.simulate_post("/collections/docs/search", body=payload, headers=AVRO), 400)
    # JSON request, Avro answer.
    resp = docs.simulate_post("/collections/docs/search", json={"vector": [0, 1, 0], "k": 1},
                              headers={"Accept": "application/avro"})
    assert resp.headers["content-type"] == "application/avro"
    assert decode_payload(resp.content)[2]["results"][0][0]["id"] == "b"
    resp = docs.simulate_post("/collections/docs/search", json={"vector": [0, 1, 0], "k": 1},
                              headers={"Accept": "application/json, application/avro;q=0.5"})
    assert ok(resp)[0]["id"] == "b"
    # Errors stay JSON even when Avro was asked for.
    err(docs.simulate_post("/collections/nope/search/batch", body=payload, headers=AVRO_IO), 404)


# ---------------------------------------------------------------------------- bad input


def _frame(version: int, op: str, datum: bytes) -> bytes:
    return struct.pack("<II", version, len(op)) + op.encode() + datum


_INSERT = encode_insert([{"id": "z", "vector": [1.0, 2.0, 3.0]}])
_SEARCH = encode_payload("vector_search", {"queries": [[1.0, 0.0, 0.0]], "k": 1})
_DATUM = _INSERT[8 + len("vector_insert"):]

BAD_REQUESTS = [
    # (name, method, path, body, headers, status, code)
    ("malformed json", "POST", "/collections/docs/vectors", b'{"vector": [1, 2', JSON_CT, 400, "malformed_payload"),
    ("json garbage", "POST", "/collections/docs/vectors/batch", b"\xff\xfe", JSON_CT, 400, "malformed_payload"),
    ("NaN literal", "POST", "/collections/docs/vectors", b'{"vector": [NaN, 1, 2]}', JSON_CT, 400,
     "malformed_payload"),
    ("Infinity literal", "POST", "/collections/docs/vectors/batch",
     b'{"vectors": [{"id": "z", "vector": [Infinity, 1, 2]}]}', JSON_CT, 400, "malformed_payload"),
    ("overflowing number", "POST", "/collections/docs/vectors", b'{"vector": [1e400, 1, 2]}', JSON_CT, 400,
     "malformed_payload"),
    ("NaN in search", "POST", "/collections/docs/search", b'{"vector": [NaN, 1, 2]}', JSON_CT, 400,
     "malformed_payload"),
    ("body is a list", "POST", "/collections/docs/vectors", b"[1, 2, 3]", JSON_CT, 400, "validation_error"),
    ("body is a string", "POST", "/collections", b'"docs"', JSON_CT, 400, "validation_error"),
    ("empty body", "POST", "/collections/docs/vectors", b"", JSON_CT, 400, "validation_error"),
    ("vector is a string", "POST", "/collections/docs/vectors", b'{"vector": "1,2,3"}', JSON_CT, 400, None),
    ("vector of bools", "POST", "/collections/docs/vectors", b'{"vector": [true, false, true]}', JSON_CT, 400, None),
    ("metadata is a list", "POST", "/collections/docs/vectors", b'{"vector": [1, 2, 3], "metadata": [1]}', JSON_CT,
     400, None),
    ("id is a number", "POST", "/collections/docs/vectors", b'{"id": 5, "vector": [1, 2, 3]}', JSON_CT, 400, None),
    ("wrong dimension", "POST", "/collections/docs/vectors", b'{"vector": [1, 2]}', JSON_CT, 400,
     "dimension_mismatch"),
    ("vectors not a list", "POST", "/collections/docs/vectors/batch", b'{"vectors": {"id": "z"}}', JSON_CT, 400, None),
    ("unknown record field", "POST", "/collections/docs/vectors/batch",
     b'{"vectors": [{"id": "z", "vector": [1, 2, 3], "x": 1}]}', JSON_CT, 400, None),
    ("unsupported content type", "POST", "/collections/docs/vectors", b"id=z", {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type"),
    ("form content type", "POST", "/collections", b"name=x&dimension=3",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("avro where only JSON", "POST", "/collections/docs/vectors/get", _INSERT, AVRO, 415, "unsupported_media_type"),
    ("truncated avro", "POST", "/collections/docs/vectors/batch", _INSERT[:-5], AVRO, 400, "malformed_payload"),
    ("truncated header", "POST", "/collections/docs/vectors/batch", _INSERT[:6], AVRO, 400, "malformed_payload"),
    ("garbage avro", "POST", "/collections/docs/vectors/batch", b"\x01\x00\x00\x00garbage-bytes" * 3, AVRO, 400,
     "malformed_payload"),
    ("empty avro", "POST", "/collections/docs/vectors/batch", b"", AVRO, 400, "malformed_payload"),
    ("op length past end", "POST", "/collections/docs/vectors/batch", struct.pack("<II", 1, 1000) + b"x", AVRO, 400,
     "malformed_payload"),
    ("unknown schema version", "POST", "/collections/docs/vectors/batch", _frame(99, "vector_insert", _DATUM), AVRO,
     422, "unsupported_schema_version"),
    ("unknown schema version search", "POST", "/collections/docs/search/batch",
     _frame(7, "vector_search", _SEARCH[8 + len("vector_search"):]), AVRO_IO, 422, "unsupported_schema_version"),
    ("unknown op type", "POST", "/collections/docs/vectors/delete", _frame(1, "vector_teleport", b"\x00"), AVRO, 400,
     "unknown_operation"),
    ("search payload to insert", "POST", "/collections/docs/vectors/batch", _SEARCH, AVRO, 400, "unknown_operation"),
    ("insert payload to search", "POST", "/collections/docs/search", _INSERT, AVRO, 400, "unknown_operation"),
    ("insert payload to delete", "POST", "/collections/docs/vectors/delete", _INSERT, AVRO, 400, "unknown_operation"),
    ("truncated search", "POST", "/collections/docs/search", _SEARCH[:-3], AVRO_IO, 400, "malformed_payload"),
    ("wrong dimension avro", "POST", "/collections/docs/vectors/batch",
     encode_insert([{"id": "z", "vector": [1.0, 2.0]}]), AVRO, 400, "dimension_mismatch"),
    ("NaN in avro", "POST", "/collections/docs/vectors/batch",
     encode_insert([{"id": "z", "vector": [float("nan"), 2.0, 3.0]}]), AVRO, 400, "invalid_vector"),
    ("oversized json", "POST", "/collections/docs/vectors/batch",
     json.dumps({"vectors": [{"vector": [1.0, 2.0, 3.0]}] * 5000}).encode(), JSON_CT, 413, "payload_too_large"),
    ("oversized avro", "POST", "/collections/docs/vectors/batch", b"\x00" * (64 * 1024 + 1), AVRO, 413,
     "payload_too_large"),
    ("unknown collection", "POST", "/collections/nope/vectors", b'{"vector": [1, 2, 3]}', JSON_CT, 404,
     "collection_not_found"),
    ("unknown collection avro", "POST", "/collections/nope/vectors/batch", _INSERT, AVRO, 404,
     "collection_not_found"),
    ("POST to a vector id", "POST", "/collections/docs/vectors/teleport/x/y", b"{}", JSON_CT, 405,
     "method_not_allowed"),
    ("unknown sub-route", "POST", "/collections/docs/teleport", b"{}", JSON_CT, 404, "not_found"),
    ("unknown top route", "GET", "/admin", b"", {}, 404, "not_found"),
    ("wrong method", "DELETE", "/collections", b"", {}, 405, "method_not_allowed"),
    ("wrong method search", "GET", "/collections/docs/search", b"", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_changes_nothing(docs: testing.TestClient, case: tuple[Any, ...]) -> None:
    _name, method, path, body, headers, status, code = case
    before = state(docs)
    message = err(docs.simulate_request(method, path, body=body, headers=headers), status, code)
    assert "Traceback" not in message
    assert state(docs) == before
    assert ok(docs.simulate_get("/health"))["status"] == "ok"


def test_malformed_json_says_where(docs: testing.TestClient) -> None:
    message = err(docs.simulate_post("/collections/docs/search", body='{"vector": [1, 2,, 3]}', headers=JSON_CT),
                  400, "malformed_payload")
    assert "line 1 column 18" in message


def test_method_not_allowed_lists_methods(docs: testing.TestClient) -> None:
    resp = docs.simulate_put("/collections/docs/vectors/batch")
    assert "POST" in err(resp, 405, "method_not_allowed") and "POST" in resp.headers["allow"]


def _raw_call(app: falcon.App, environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    start = testing.StartResponseMock()
    body = b"".join(app(environ, start))
    return start.status, json.loads(body)


class _ExplodingStream(io.RawIOBase):
    def read(self, n: int = -1) -> bytes:
        raise AssertionError("the body must not be read")


def test_oversize_refused_from_content_length_before_reading(service: UnifiedAvroService) -> None:
    app = create_app(service)
    environ = testing.create_environ("/collections/x/vectors/batch", method="POST",
                                     headers={"Content-Type": "application/avro"})
    environ["CONTENT_LENGTH"] = str(10**12)
    environ["wsgi.input"] = _ExplodingStream()
    status, body = _raw_call(app, environ)
    assert status.startswith("413") and body["error"]["code"] == "payload_too_large"
    assert "1000000000000 bytes" in body["error"]["message"]


def test_invalid_content_length_is_400(service: UnifiedAvroService) -> None:
    environ = testing.create_environ("/collections", method="POST", headers={"Content-Type": "application/json"},
                                     body=b'{"name": "x", "dimension": 2}')
    environ["CONTENT_LENGTH"] = "abc"
    status, body = _raw_call(create_app(service), environ)
    assert status.startswith("400") and body["error"]["code"] == "validation_error"
    assert service.list_collections() == []


def test_oversize_chunked_body_reads_at_most_limit_plus_one(service: UnifiedAvroService) -> None:
    app = create_app(service)
    limit = service.limits.max_request_bytes
    stream = io.BytesIO(b"{" + b" " * (limit * 3))
    environ = testing.create_environ("/collections", method="POST", headers={"Content-Type": "application/json"})
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    status, body = _raw_call(app, environ)
    assert status.startswith("413") and body["error"]["code"] == "payload_too_large"
    assert stream.tell() == limit + 1
    # A small chunked body is read to its end and works.
    environ = testing.create_environ("/collections", method="POST", headers={"Content-Type": "application/json"})
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(b'{"name": "chunked", "dimension": 2}')
    environ["wsgi.input_terminated"] = True
    status, body = _raw_call(app, environ)
    assert status.startswith("201") and body["data"]["name"] == "chunked"


def test_unexpected_error_is_500_generic_and_logged(
    docs: testing.TestClient, service: UnifiedAvroService, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("secret internal detail /var/lib/x")

    monkeypatch.setattr(service, "count", broken)
    with caplog.at_level(logging.ERROR, logger="proximadb.rest"):
        message = err(docs.simulate_get("/collections/docs/vectors/count"), 500, "internal")
    assert "secret" not in message
    assert any("secret internal detail" in (r.exc_text or "") and "Traceback" in (r.exc_text or "")
               for r in caplog.records)
    assert 'code="500"' in docs.simulate_get("/metrics").text


def test_nan_never_in_output(docs: testing.TestClient, service: UnifiedAvroService,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "health", lambda: {"value": float("nan")})
    resp = docs.simulate_get("/health")
    assert resp.status_code == 500 and "NaN" not in resp.text
