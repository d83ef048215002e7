"""Real NATS JetStream clusters on 127.0.0.1 for the cluster tests (proximadb/cluster/nats_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proximadb.cluster.nats_servers import NatsCluster


def _running(base: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(base, 3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats3(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three servers of this test's own (for tests that kill or restart them)."""
    yield from _running(tmp_path / "nats")


@pytest.fixture(scope="module")
def nats3_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three servers shared by a module's tests (none of which stops them)."""
    yield from _running(tmp_path_factory.mktemp("nats"))
