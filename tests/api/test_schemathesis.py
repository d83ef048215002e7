"""The REST API against its own OpenAPI document (schemathesis), on a real daemon.

Every operation in ``/openapi.json`` gets generated requests (valid and not);
no response may be a 5xx, and every response's status code, content type and
body must match the document. Needs ``pip install schemathesis`` (test extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    data: Path = tmp_path_factory.mktemp("schemathesis") / "data"
    data.mkdir()
    with Daemon(data) as d:
        with proximadb.connect_grpc(d.grpc_target) as client:  # something for path parameters to find
            client.create_collection("c", 4, distance_metric="euclidean")
            client.insert_vectors("c", ids=["a", "b"], vectors=np.eye(2, 4, dtype=np.float32))
        yield d


@pytest.fixture(scope="module")
def api_schema(daemon: Daemon):
    return schemathesis.openapi.from_url(f"{daemon.rest_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_rest_api_matches_its_openapi_document(case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=30)
