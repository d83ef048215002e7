"""The segments' filter plan caches (storage/filter_cache.py) seen from clients: ``stats`` reports their
hits, misses and bytes over gRPC and REST from a real daemon, and from the embedded engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI

DIM = 8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("plancache") / "data", "--fsync", "never") as d:
        yield d


@pytest.fixture(params=["grpc", "rest", "embedded"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProximaDBAPI]:
    if request.param == "embedded":
        client: ProximaDBAPI = proximadb.connect_embedded(tmp_path / "data", fsync="never")
    else:
        d: Daemon = request.getfixturevalue("daemon")
        grpc = request.param == "grpc"
        client = proximadb.connect_grpc(d.grpc_target) if grpc else proximadb.connect_rest(d.rest_url)
    with client:
        yield client


def test_stats_report_the_filter_plan_caches(db: ProximaDBAPI) -> None:
    """One segment: a filter seen once is planned (a miss), seen twice planned and kept (a miss), then
    answered from the cache (a hit); the kept plan's arrays are counted in bytes."""
    name = f"plans-{db.protocol}"
    db.create_collection(name, dimension=DIM, distance_metric="euclidean")
    rng = np.random.default_rng(1)
    db.insert_vectors(name, [{"id": f"r{i:03d}", "vector": rng.standard_normal(DIM).tolist(), "metadata": {"g": i % 4}}
                     for i in range(200)])
    db.flush(name)
    fresh = db.stats(name)
    assert (fresh["segments"], fresh["filter_plan_cache_hits"], fresh["filter_plan_cache_misses"],
            fresh["filter_plan_cache_bytes"]) == (1, 0, 0, 0), fresh
    query = rng.standard_normal(DIM).tolist()
    answers = [db.search(name, query, k=5, filter={"g": 1}) for _ in range(3)]
    assert all(len(hits) == 5 and [h["id"] for h in hits] == [h["id"] for h in answers[0]] for hits in answers)
    stats = db.stats(name)
    assert (stats["filter_plan_cache_hits"], stats["filter_plan_cache_misses"]) == (1, 2), stats
    assert stats["filter_plan_cache_bytes"] > 0, stats
    db.delete_collection(name)
