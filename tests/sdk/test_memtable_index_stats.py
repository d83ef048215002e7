"""The memtable's HNSW graph seen from clients: a real daemon started with ``--memtable-index-rows``
(gRPC and REST) and an embedded engine report ``memtable_indexed_rows`` in ``stats``, count those rows
in ``indexed_rows`` (green without a flush), and find fresh rows through the graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI

DIM = 8
N = 300
THRESHOLD = 50
WAIT = 120.0  # seconds: a bound on waiting for the background graph, not a timing assertion


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("memidx") / "data", "--fsync", "never",
                "--memtable-index-rows", str(THRESHOLD)) as d:
        yield d


@pytest.fixture(params=["grpc", "rest", "embedded"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProximaDBAPI]:
    if request.param == "embedded":
        client: ProximaDBAPI = proximadb.connect_embedded(tmp_path / "data", fsync="never",
                                                          memtable_index_rows=THRESHOLD)
    else:
        d: Daemon = request.getfixturevalue("daemon")
        grpc = request.param == "grpc"
        client = proximadb.connect_grpc(d.grpc_target) if grpc else proximadb.connect_rest(d.rest_url)
    with client:
        yield client


def _until_indexed(db: ProximaDBAPI, name: str, rows: int) -> dict[str, Any]:
    """The stats once the memtable's graph covers ``rows`` live rows (polled until a deadline)."""
    end = time.monotonic() + WAIT
    pause = 0.01
    while True:
        stats = db.stats(name)
        if stats["memtable_indexed_rows"] == rows or time.monotonic() > end:
            return stats
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def test_stats_report_the_memtable_graph(db: ProximaDBAPI) -> None:
    name = f"memidx-{db.protocol}"
    if name in [c["name"] for c in db.list_collections()]:
        db.delete_collection(name)
    db.create_collection(name, DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                         index_params={"M": 8, "ef_construction": 32})
    vectors = np.random.default_rng(1).standard_normal((N, DIM)).astype(np.float32)
    ids = [f"r{i:03d}" for i in range(N)]
    db.insert_vectors(name, ids=ids[:THRESHOLD], vectors=vectors[:THRESHOLD])
    below = db.stats(name)  # not more than the threshold: no graph
    assert (below["memtable_indexed_rows"], below["unindexed_rows"], below["status"]) == (0, THRESHOLD, "yellow")
    db.insert_vectors(name, ids=ids[THRESHOLD:], vectors=vectors[THRESHOLD:])
    stats = _until_indexed(db, name, N)
    assert stats["memtable_indexed_rows"] == N, stats
    assert (stats["memtable_rows"], stats["segments"], stats["indexed_rows"], stats["unindexed_rows"]) == (N, 0, N, 0)
    assert stats["status"] == "green"
    for i in (0, 77, N - 1):
        hits = db.search(name, vectors[i], k=3)
        assert hits[0]["id"] == ids[i]
    db.delete_vectors(name, ids[:10])
    after = db.stats(name)
    assert (after["memtable_indexed_rows"], after["indexed_rows"], after["unindexed_rows"]) == (N - 10, N - 10, 0)
    assert all(h["id"] not in ids[:10] for h in db.search(name, vectors[0], k=10))
