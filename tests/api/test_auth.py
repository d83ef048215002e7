"""API keys against a real daemon: no key / wrong key / read-only key / read-write key, over REST and gRPC.

Also: /health open, /metrics closed, the hashed key file and ``proximadb keys hash``, config precedence,
keys never in the log, the loud warning when listening beyond loopback without keys.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _daemon import Daemon
from _support import child_env
from grpc_health.v1 import health_pb2, health_pb2_grpc

import proximadb
from proximadb import errors
from proximadb.api import operations
from proximadb.api.grpc import ERROR_CODE_METADATA, SERVICE_NAME
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.sdk import ProximaDBClient
from proximadb.server.auth import KeyStore, bearer_token, digest, key_file_line, load_key_file
from proximadb.server.config import load_config

RW = "rw-key-4f1c9a7e2b"
RO = "ro-key-8d3e6b0a51"
DIM = 8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("auth") / "data", "--api-key", RW, "--read-only-api-key", RO) as d:
        with proximadb.connect_rest(d.rest_url, api_key=RW) as admin:
            admin.create_collection("c", DIM, distance_metric="euclidean")
            vecs = np.random.default_rng(0).standard_normal((20, DIM)).astype(np.float32)
            admin.insert_vectors("c", ids=[f"v{i}" for i in range(20)], vectors=vecs)
        yield d


def _client(d: Daemon, protocol: str, key: str | None) -> ProximaDBClient:
    if protocol == "grpc":
        return proximadb.connect_grpc(d.grpc_target, api_key=key)
    return proximadb.connect_rest(d.rest_url, api_key=key)


def _http(d: Daemon, method: str, path: str, key: str | None = None, body: Any = None,
          scheme: str = "Bearer") -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"{scheme} {key}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed


# ---------------------------------------------------------------- unit: key store, classification, config
def test_key_store_roles_and_constant_time_check() -> None:
    store = KeyStore([("rw", digest("a")), ("ro", digest("b"))])
    assert store.role_of("a") == "rw" and store.role_of("b") == "ro" and store.role_of("c") is None
    store.check("a", write=True)
    store.check("b", write=False)
    with pytest.raises(errors.PermissionDeniedError):
        store.check("b", write=True)
    with pytest.raises(errors.AuthenticationError):
        store.check(None, write=False)
    with pytest.raises(errors.AuthenticationError):
        store.check("c", write=False)
    KeyStore([]).check(None, write=True)  # no keys configured: open
    assert bearer_token("Bearer xyz") == "xyz" and bearer_token("bearer  xyz ") == "xyz"
    assert bearer_token("Basic xyz") is None and bearer_token("Bearer") is None and bearer_token(None) is None


def is_write(method: str, route: str) -> bool:
    return operations.for_route(method, route).write


READ_POST_ROUTES = (
    "/collections/{collection}/vectors/get",
    "/collections/{collection}/vectors/scroll",
    "/collections/{collection}/vectors/count",
    "/collections/{collection}/search",
    "/collections/{collection}/search/batch",
)


def test_routes_classified_by_route_not_method() -> None:
    for route in READ_POST_ROUTES:
        assert not is_write("POST", route)
    assert is_write("POST", "/collections")
    assert is_write("POST", "/collections/{collection}/vectors/batch")
    assert is_write("POST", "/collections/{collection}/vectors/delete")
    assert is_write("POST", "/collections/{collection}/compact")
    assert is_write("PATCH", "/collections/{collection}")
    assert is_write("DELETE", "/collections/{collection}/vectors/{id:path}")
    assert not is_write("GET", "/collections/{collection}/vectors/{id:path}")


def test_config_precedence_and_sealing(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('api_keys = ["from-toml"]\nread_only_api_keys = ["ro-toml"]\n')
    from_file = load_config({"config": str(toml)}, environ={})
    assert from_file.api_keys == ["sha256:" + digest("from-toml")]  # plaintext does not outlive loading
    assert "from-toml" not in repr(from_file)
    from_env = load_config({"config": str(toml)}, environ={"PROXIMADB_API_KEYS": "e1, e2"})
    assert from_env.api_keys == ["sha256:" + digest("e1"), "sha256:" + digest("e2")]
    assert from_env.read_only_api_keys == ["sha256:" + digest("ro-toml")]
    from_flag = load_config({"config": str(toml), "api_keys": ("f1",)}, environ={"PROXIMADB_API_KEYS": "e1"})
    assert from_flag.api_keys == ["sha256:" + digest("f1")]
    assert KeyStore.from_config(from_flag).role_of("f1") == "rw"
    assert KeyStore.from_config(from_flag).role_of("ro-toml") == "ro"
    bad = tmp_path / "bad.toml"
    bad.write_text('api_keys = "not-a-list-secret"\n')
    with pytest.raises(errors.ValidationError) as info:
        load_config({"config": str(bad)}, environ={})
    assert "not-a-list-secret" not in str(info.value)
    with pytest.raises(errors.ValidationError, match="tls_key_file"):
        load_config({"tls_cert_file": str(toml)}, environ={})


def test_key_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\n{key_file_line('k1')}  # trailing\n{key_file_line('k2', 'ro')}\n")
    assert load_key_file(path) == [("rw", digest("k1")), ("ro", digest("k2"))]
    path.write_text("rw k1\n")
    with pytest.raises(errors.ValidationError, match="line 1"):
        load_key_file(path)


# ---------------------------------------------------------------- SDK over both protocols
@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_sdk_without_or_with_wrong_key_is_unauthenticated(daemon: Daemon, protocol: str) -> None:
    for key in (None, "wrong-key"):
        with _client(daemon, protocol, key) as c:
            assert c.health()["status"] == "ok"  # health is open
            with pytest.raises(errors.AuthenticationError):
                c.list_collections()
            with pytest.raises(errors.AuthenticationError):
                c.search("c", np.zeros(DIM, np.float32), k=3)
            with pytest.raises(errors.AuthenticationError):
                c.insert_vector("c", np.zeros(DIM, np.float32), id="nope")


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_sdk_read_only_key_reads_but_cannot_write(daemon: Daemon, protocol: str) -> None:
    with _client(daemon, protocol, RO) as c:
        assert [col["name"] for col in c.list_collections()] == ["c"]
        assert c.get_collection("c")["dimension"] == DIM
        assert len(c.search("c", np.zeros(DIM, np.float32), k=3)) == 3
        assert len(c.search_batch("c", np.zeros((2, DIM), np.float32), k=2)) == 2
        assert len(c.get_vectors("c", ["v1", "v2"])) == 2
        assert c.count("c") == 20
        assert c.count("c", filter={"missing": 1}) == 0
        assert len(c.scroll("c", limit=5)[0]) == 5
        c.stats("c")
        for write in (
            lambda: c.create_collection("other", DIM),
            lambda: c.insert_vector("c", np.zeros(DIM, np.float32), id="x"),
            lambda: c.upsert_vectors("c", [{"id": "v1", "vector": np.zeros(DIM, np.float32)}]),
            lambda: c.delete_vector("c", "v1"),
            lambda: c.update_collection("c", description="changed"),
            lambda: c.compact("c"),
            lambda: c.delete_collection("c"),
        ):
            with pytest.raises(errors.PermissionDeniedError):
                write()
        assert c.count("c") == 20


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_sdk_read_write_key_does_everything(daemon: Daemon, protocol: str) -> None:
    name = f"rw-{protocol}"
    with _client(daemon, protocol, RW) as c:
        c.create_collection(name, DIM)
        c.insert_vector(name, np.ones(DIM, np.float32), id="a")
        assert c.search(name, np.ones(DIM, np.float32), k=1)[0]["id"] == "a"
        assert c.delete_vector(name, "a")
        c.compact(name)
        c.delete_collection(name)


def test_sdk_takes_key_from_environment(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXIMADB_API_KEY", RO)
    with proximadb.connect(daemon.rest_url) as c:
        assert c.protocol == "grpc"  # connect() still finds gRPC behind a key
        assert c.count("c") == 20


# ---------------------------------------------------------------- raw HTTP
def test_rest_raw_statuses_envelopes_and_headers(daemon: Daemon) -> None:
    status, headers, body = _http(daemon, "GET", "/health")
    assert status == 200 and body["success"]
    status, headers, body = _http(daemon, "GET", "/collections")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert body["success"] is False and body["error"]["code"] == "unauthenticated"
    status, headers, body = _http(daemon, "GET", "/collections", key=RW, scheme="Basic")
    assert status == 401
    status, _, body = _http(daemon, "GET", "/collections", key="wrong")
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    for path in ("/metrics", "/ready", "/openapi.json"):
        assert _http(daemon, "GET", path)[0] == 401, path
        assert _http(daemon, "GET", path, key=RO)[0] == 200, path
    # POST routes that only read are reads ...
    status, _, body = _http(daemon, "POST", "/collections/c/search", key=RO, body={"vector": [0.0] * DIM, "k": 2})
    assert status == 200, body
    status, _, body = _http(daemon, "POST", "/collections/c/vectors/count", key=RO, body={})
    assert status == 200 and body["data"]["count"] == 20
    # ... POST/PATCH/DELETE writes are not
    status, headers, body = _http(daemon, "POST", "/collections", key=RO, body={"name": "z", "dimension": DIM})
    assert status == 403 and body["error"]["code"] == "permission_denied" and "www-authenticate" not in headers
    assert _http(daemon, "DELETE", "/collections/c", key=RO)[0] == 403
    assert _http(daemon, "PATCH", "/collections/c", key=RO, body={"description": "x"})[0] == 403
    assert _http(daemon, "POST", "/collections/c/compact", key=RO)[0] == 403
    # the refusals are counted like any request
    _, _, metrics = _http(daemon, "GET", "/metrics", key=RW)
    assert 'code="401"' in metrics and 'code="403"' in metrics


# ---------------------------------------------------------------- every operation of the table, both protocols
def _fill(template: str) -> str:
    return template.replace("{collection}", "c").replace("{id:path}", "v1")


def test_rest_read_only_key_is_refused_exactly_on_writes(daemon: Daemon) -> None:
    """Every (method, route) of the operation table, as a raw request: no key -> 401 (but health), a read-only
    key -> 403 exactly on writes; the refused writes changed nothing."""
    for op in operations.OPERATIONS:
        for method, template in op.rest:
            path, body = _fill(template), None if method in ("GET", "DELETE") else {}
            anonymous = _http(daemon, method, path, body=body)[0]
            assert (anonymous != 401) if op.open else (anonymous == 401), (op.name, method, template, anonymous)
            status, _, answer = _http(daemon, method, path, key=RO, body=body)
            if op.write:
                assert status == 403 and answer["error"]["code"] == "permission_denied", (op.name, method, template)
            else:
                assert status not in (401, 403), (op.name, method, template, status)
    with proximadb.connect_rest(daemon.rest_url, api_key=RO) as c:
        assert c.count("c") == 20 and c.get_vectors("c", ["v1"])[0]["id"] == "v1"
        assert [col["name"] for col in c.list_collections()] == ["c"]


def test_grpc_read_only_key_is_refused_exactly_on_writes(daemon: Daemon) -> None:
    """Every RPC of the generated service, called raw with a near-empty request, by the same table."""
    service = pb.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
    ro = (("authorization", f"Bearer {RO}"),)
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        for method in service.methods:
            op = operations.for_rpc(method.name)
            request_type = getattr(pb, method.input_type.name)
            fields = {"collection": "c"} if "collection" in request_type.DESCRIPTOR.fields_by_name else {}
            call = channel.unary_unary(f"/{SERVICE_NAME}/{method.name}",
                                       request_serializer=request_type.SerializeToString,
                                       response_deserializer=getattr(pb, method.output_type.name).FromString)

            def status_of(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
                try:
                    call(request_type(**fields), timeout=10, metadata=metadata)  # noqa: B023
                except grpc.RpcError as exc:
                    return exc.code()  # type: ignore[no-any-return]
                return grpc.StatusCode.OK

            anonymous = status_of(())
            assert (anonymous != grpc.StatusCode.UNAUTHENTICATED) if op.open else (
                anonymous == grpc.StatusCode.UNAUTHENTICATED), (method.name, anonymous)
            status = status_of(ro)
            if op.write:
                assert status == grpc.StatusCode.PERMISSION_DENIED, (method.name, status)
            else:
                assert status not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), (
                    method.name, status)
    with proximadb.connect_grpc(daemon.grpc_target, api_key=RO) as c:
        assert c.count("c") == 20 and [col["name"] for col in c.list_collections()] == ["c"]


# ---------------------------------------------------------------- raw gRPC
def test_grpc_raw_status_and_error_code(daemon: Daemon) -> None:
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub.Health(pb.HealthRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListCollections(pb.ListCollectionsRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (ERROR_CODE_METADATA, "unauthenticated") in tuple(info.value.trailing_metadata())
        ro = (("authorization", f"Bearer {RO}"),)
        stub.ListCollections(pb.ListCollectionsRequest(), timeout=5, metadata=ro)
        with pytest.raises(grpc.RpcError) as info:
            stub.DeleteCollection(pb.CollectionRef(collection="c"), timeout=5, metadata=ro)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (ERROR_CODE_METADATA, "permission_denied") in tuple(info.value.trailing_metadata())


def test_keys_never_logged(daemon: Daemon) -> None:
    logs = daemon.logs()
    assert "API keys ON (1 read-write, 1 read-only)" in logs
    assert RW not in logs and RO not in logs


# ---------------------------------------------------------------- key file + config file, on a daemon
def test_hashed_key_file_and_config_file(tmp_path: Path) -> None:
    def hash_line(key: str, *flags: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "proximadb", "keys", "hash", *flags], input=key + "\n",
                              capture_output=True, text=True, env=child_env(), timeout=60, check=True,
                              cwd=str(tmp_path))
        return proc.stdout.strip()

    rw_line, ro_line = hash_line("file-rw-key"), hash_line("file-ro-key", "--read-only")
    assert rw_line == f"rw {digest('file-rw-key')}" and ro_line.startswith("ro ")
    key_file = tmp_path / "keys"
    key_file.write_text(f"# ProximaDB keys\n{rw_line}\n{ro_line}\n")
    assert "file-rw-key" not in key_file.read_text()  # hashed at rest
    config = tmp_path / "proximadb.toml"
    config.write_text(f'read_only_api_keys = ["toml-ro-key"]\napi_key_file = "{key_file}"\n')
    with Daemon(tmp_path / "data", "--config", str(config)) as d:
        with proximadb.connect_grpc(d.grpc_target, api_key="file-rw-key") as c:
            c.create_collection("k", DIM)
        for key in ("file-ro-key", "toml-ro-key"):
            with proximadb.connect_rest(d.rest_url, api_key=key) as c:
                assert c.count("k") == 0
                with pytest.raises(errors.PermissionDeniedError):
                    c.delete_collection("k")
        with proximadb.connect_rest(d.rest_url) as c, pytest.raises(errors.AuthenticationError):
            c.count("k")
        assert "toml-ro-key" not in d.logs()


def test_bad_key_file_stops_the_daemon_with_a_clear_message(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("rw plaintext-key\n")
    d = Daemon(tmp_path / "data", "--api-key-file", str(key_file)).start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=60) != 0
    d._log.close()
    assert "line 1" in d.logs() and "plaintext-key" not in d.logs()


def test_open_bind_without_keys_warns_loudly(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", "--host", "0.0.0.0") as d:
        assert "WITHOUT API KEYS" in d.logs() and "TLS OFF" in d.logs()
