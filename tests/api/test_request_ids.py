"""Write request ids on one daemon (proximadb/idempotency.py), over both protocols and the JSON routes: a write
sent again with its request id is answered as the first time and applied once; the same id with another
request, or a malformed id, is refused (400 / INVALID_ARGUMENT / ValidationError) and changes nothing; the
SDK gives each write an id and so retries writes, here onto the next address of a failover client. The
cluster's shared ledger and log de-duplication are tested in tests/cluster/test_cluster_request_ids.py."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb import idempotency
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.errors import ValidationError

DIM = 4


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("request_ids") / "data") as d:
        yield d


def _client(d: Daemon, protocol: str) -> Any:
    return proximadb.connect_rest(d.rest_url) if protocol == "rest" else proximadb.connect_grpc(d.grpc_target)


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_write_sent_again_with_its_id_is_applied_once(daemon: Daemon, protocol: str) -> None:
    name = f"once_{protocol}"
    with _client(daemon, protocol) as client:
        client.create_collection(name, DIM, distance_metric="euclidean")
        transport = client._transport
        insert = encode_insert(ids=["a", "b", "c"], vectors=_vectors(3, 1), metadata=None,
                               timestamps=np.full(3, 1_700_000_000_000_000, dtype=np.int64), upsert=False)
        with idempotency.sending(f"ins-{protocol}"):
            first = transport.insert_payload(name, insert)
            again = transport.insert_payload(name, insert)  # an insert of existing ids: refused without the id
        assert first["ids"] == again["ids"] == ["a", "b", "c"] and again["count"] == 3
        assert client.count(name) == 3
        delete = encode_payload("vector_delete", {"ids": ["a", "b"], "filter": None})
        with idempotency.sending(f"del-{protocol}"):
            assert transport.mutate_payload(name, delete)["deleted"] == 2
        client.insert_vectors(name, ids=["a"], vectors=_vectors(1, 2))  # back, by another request
        with idempotency.sending(f"del-{protocol}"):
            assert transport.mutate_payload(name, delete)["deleted"] == 2  # the first answer ...
        assert [r["id"] for r in client.get_vectors(name, ["a", "b", "c"])] == ["a", "c"]  # ... and "a" stays

        # the same id for another request: refused, and nothing changes
        other = encode_insert(ids=["z"], vectors=_vectors(1, 3), metadata=None,
                              timestamps=np.full(1, 1_700_000_000_000_000, dtype=np.int64), upsert=False)
        with idempotency.sending(f"ins-{protocol}"), pytest.raises(ValidationError, match="another request"):
            transport.insert_payload(name, other)
        # a malformed id: refused before anything runs
        with idempotency.sending("not an id!"), pytest.raises(ValidationError, match="request id"):
            transport.insert_payload(name, other)
        assert client.count(name) == 2 and client.get_vectors(name, ["z"]) == []


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_read_checks_a_request_id_it_is_sent_too(daemon: Daemon, protocol: str) -> None:
    """A read runs without the write scopes when it brings no session token or request id (gRPC's fast
    path); one that brings a request id still has it checked: malformed is a ValidationError, well formed
    is harmless."""
    name = f"read_id_{protocol}"
    with _client(daemon, protocol) as client:
        client.create_collection(name, DIM, distance_metric="euclidean")
        client.insert_vectors(name, ids=["a", "b"], vectors=_vectors(2, 4))
        query = _vectors(1, 5)[0]
        transport = client._transport
        search = encode_payload("vector_search", {"queries": [query.tolist()], "k": 2, "include_vectors": False,
                                                  "include_metadata": True, "exact": True})
        with idempotency.sending("not an id!"), pytest.raises(ValidationError, match="request id"):
            transport.search_payload(name, search)
        with idempotency.sending(f"read-{protocol}"):
            assert len(transport.search_payload(name, search)) > 0
        assert {h["id"] for h in client.search(name, query, k=2)} == {"a", "b"}


def _post(d: Daemon, path: str, body: Any, request_id: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", idempotency.REQUEST_ID_HEADER: request_id})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        return resp.status, doc["data"] if doc.get("success") else doc["error"]
    finally:
        conn.close()


def test_json_routes_honour_request_ids_and_generate_the_same_ids_again(daemon: Daemon) -> None:
    with proximadb.connect_rest(daemon.rest_url) as client:
        client.create_collection("json", DIM)
    records = [{"vector": v.tolist(), "metadata": {"i": i}} for i, v in enumerate(_vectors(5, 4))]
    status, first = _post(daemon, "/collections/json/vectors/batch", {"vectors": records}, "json-1")
    assert status in (200, 201), first
    status, again = _post(daemon, "/collections/json/vectors/batch", {"vectors": records}, "json-1")
    assert status in (200, 201) and again == first and len(set(first["ids"])) == 5
    status, other = _post(daemon, "/collections/json/vectors/batch", {"vectors": records}, "json-2")
    assert status in (200, 201) and not set(other["ids"]) & set(first["ids"])  # a new request: new ids
    status, refused = _post(daemon, "/collections/json/vectors/batch", {"vectors": records[:1]}, "json-1")
    assert status == 400 and refused["code"] == "validation_error", refused
    status, bad = _post(daemon, "/collections/json/vectors/batch", {"vectors": records}, "x" * 65)
    assert status == 400 and "request id" in bad["message"], bad
    with proximadb.connect_rest(daemon.rest_url) as client:
        assert client.count("json") == 10


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_sdk_retries_a_write_on_the_next_address(daemon: Daemon, protocol: str,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """A failover client over [other, daemon] speaks to ``other`` first; ``other`` is stopped, so the next
    writes fail there with UnavailableError, and the client sends each again, with its request id, to the
    next address (before writes had request ids it raised)."""
    name = f"failover_{protocol}"
    with _client(daemon, protocol) as admin:
        admin.create_collection(name, DIM)
    other = Daemon(tmp_path_factory.mktemp(f"other_{protocol}") / "data").start()
    try:
        if protocol == "rest":
            client = proximadb.connect_rest([other.rest_url, daemon.rest_url])
        else:
            client = proximadb.connect_grpc([other.grpc_target, daemon.grpc_target])
        with client:
            assert client.url.endswith(f":{other.grpc_port if protocol == 'grpc' else other.rest_port}")
            other.stop()
            assert client.insert_vectors(name, ids=["p", "q"], vectors=_vectors(2, 5))["count"] == 2
            assert client.url.endswith(f":{daemon.grpc_port if protocol == 'grpc' else daemon.rest_port}")
            assert client.delete_vectors(name, ["p"]) == 1
    finally:
        other.stop()
    with _client(daemon, protocol) as admin:
        assert [r["id"] for r in admin.get_vectors(name, ["p", "q"])] == ["q"]
