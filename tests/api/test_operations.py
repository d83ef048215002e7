"""The operation table (proximadb/api/operations.py) covers exactly what both adapters serve.

* every responder mounted in the REST router and every RPC of the generated service has exactly one
  entry, and every entry is served (so a new route or RPC cannot go unclassified, nor a stale one stay);
* what is not in the table is a write; the kinds are the ones the README promises;
* the status -> error tables of proximadb/errors.py that both SDK transports and the REST error
  serializer use instead of hand copies.

That read-only keys are refused exactly on the writes, over both protocols of a real daemon, is in
tests/api/test_auth.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import pytest

from proximadb import errors
from proximadb.api import operations as ops
from proximadb.api.grpc import SERVICE_NAME
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.rest import create_app
from proximadb.api.rest.errors import code_for_status
from proximadb.service.unified import UnifiedAvroService
from proximadb.storage.engine import Engine


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[UnifiedAvroService]:
    engine = Engine.open(tmp_path / "data", fsync="never")
    yield UnifiedAvroService(engine)
    engine.close()


def mounted_responders(app: falcon.App) -> set[tuple[str, str]]:
    """(method, route template as requests see it) for every responder of every mounted resource."""
    found: set[tuple[str, str]] = set()

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None:
                found.update((m, node.uri_template) for m in falcon.COMBINED_METHODS
                             if callable(getattr(node.resource, f"on_{m.lower()}", None)))
            walk(node.children)

    walk(app._router._roots)
    return found


def test_every_mounted_rest_route_has_exactly_one_operation(service: UnifiedAvroService) -> None:
    mounted = mounted_responders(create_app(service))
    listed = [binding for op in ops.OPERATIONS for binding in op.rest]
    assert len(listed) == len(set(listed)), "a (method, route) is listed twice"
    assert set(listed) == mounted, (
        f"not in the table: {sorted(mounted - set(listed))}; listed but not served: {sorted(set(listed) - mounted)}"
    )
    for method, template in mounted:
        assert ops.for_route(method, template) in ops.OPERATIONS


def test_every_rpc_has_exactly_one_operation() -> None:
    service = pb.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
    rpcs = {method.name for method in service.methods}
    listed = [op.rpc for op in ops.OPERATIONS if op.rpc is not None]
    assert len(listed) == len(set(listed)), "an RPC is listed twice"
    assert set(listed) == rpcs, f"not in the table: {sorted(rpcs - set(listed))}; stale: {sorted(set(listed) - rpcs)}"


def test_names_are_unique_and_each_operation_is_served_somewhere() -> None:
    names = [op.name for op in ops.OPERATIONS]
    assert len(names) == len(set(names))
    assert all(op.rest or op.rpc for op in ops.OPERATIONS)


def test_kinds_are_the_documented_ones() -> None:
    # README, "API keys": writes are creating, changing, deleting, compacting and flushing collections, and
    # inserting, upserting, updating and deleting vectors; search, get, scroll and count are reads.
    writes = {op.name for op in ops.OPERATIONS if op.write}
    assert writes == {"create_collection", "update_collection", "delete_collection", "compact", "flush", "insert",
                      "mutate"}
    probes = {op.name for op in ops.OPERATIONS if op.kind is ops.Kind.PROBE}
    assert probes == {"health", "ready", "metrics", "openapi", "dashboard"}
    assert all(not op.admitted for op in ops.OPERATIONS if op.kind is ops.Kind.PROBE)
    assert all(op.admitted for op in ops.OPERATIONS if op.kind is not ops.Kind.PROBE)
    # The dashboard's static files hold no data; every call the page makes sends the key (test_dashboard_browser).
    assert [op.name for op in ops.OPERATIONS if op.open] == ["health", "dashboard"]
    assert all(op.idempotent for op in ops.OPERATIONS if not op.write)


def test_what_is_not_in_the_table_is_a_write() -> None:
    for op in (ops.for_route("POST", "/collections/{collection}/new"), ops.for_rpc("Explode"),
               ops.for_route("DELETE", "/health"), ops.for_route("POST", "/collections/{collection}/stats")):
        assert op.write and op.admitted and not op.open
    # A safe method without a responder runs nothing (Falcon answers 405 or OPTIONS): a probe of its route.
    head = ops.for_route("HEAD", "/health")
    assert head.open and not head.write and not head.admitted
    options = ops.for_route("OPTIONS", "/collections")
    assert not options.open and not options.write
    assert not ops.for_route("GET", "/collections/{collection}/compact").write


def test_sdk_paths_come_from_the_table() -> None:
    assert ops.COUNT.path("POST", collection="a/b c") == "/collections/a%2Fb%20c/vectors/count"
    assert ops.INSERT.path("POST", collection="x") == "/collections/x/vectors/batch"  # the first POST listed
    assert ops.GET.route("GET") == "/collections/{collection}/vectors/{id:path}"
    with pytest.raises(KeyError, match="compact has no GET route"):
        ops.COMPACT.route("GET")


# ---------------------------------------------------------------- status -> error, from proximadb/errors.py
def test_status_tables_give_the_common_base_of_every_error_with_that_status() -> None:
    for cls in errors.ERRORS_BY_CODE.values():
        assert issubclass(cls, errors.BY_HTTP_STATUS[cls.http_status]), cls
        assert issubclass(cls, errors.BY_GRPC_STATUS[cls.grpc_status]), cls
    assert errors.BY_HTTP_STATUS[400] is errors.ValidationError
    assert errors.BY_HTTP_STATUS[409] is errors.AlreadyExistsError
    assert errors.BY_HTTP_STATUS[503] is errors.UnavailableError
    assert errors.BY_HTTP_STATUS[500] is errors.ProximaDBError
    assert errors.BY_GRPC_STATUS["INVALID_ARGUMENT"] is errors.ValidationError
    assert errors.BY_GRPC_STATUS["DEADLINE_EXCEEDED"] is errors.RequestTimeoutError
    # Too payload, too busy, disk full: a bare RESOURCE_EXHAUSTED is none of them for sure.
    assert errors.BY_GRPC_STATUS["RESOURCE_EXHAUSTED"] is errors.ProximaDBError


def test_rest_codes_for_falcons_own_errors() -> None:
    assert code_for_status(400) == "validation_error"
    assert code_for_status(404) == "not_found"
    assert code_for_status(413) == "payload_too_large"
    assert code_for_status(405) == "method_not_allowed"
    assert code_for_status(415) == "unsupported_media_type"
    assert code_for_status(418) == "http_418"
    assert re.fullmatch(r"[a-z_0-9]+", code_for_status(411))
