"""One real daemon for the framework integration tests, and clients for it and for an embedded engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI


@pytest.fixture(scope="package")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("integrations") / "data") as d:
        yield d


@pytest.fixture(scope="package", params=["grpc", "rest", "embedded"])
def any_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProximaDBAPI]:
    """A client of the daemon over gRPC and over REST, and one of an embedded engine."""
    client: ProximaDBAPI
    if request.param == "embedded":
        client = proximadb.connect_embedded(tmp_path_factory.mktemp("embedded") / "data")
    else:
        daemon = request.getfixturevalue("daemon")
        connect = proximadb.connect if request.param == "grpc" else proximadb.connect_rest
        client = connect(daemon.rest_url)
        assert client.protocol == request.param
    with client:
        yield client
