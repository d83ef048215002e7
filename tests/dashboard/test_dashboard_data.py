"""What the dashboard reads, without a browser, against a real daemon: the stats fields it added
(``wal_bytes``, ``last_compaction_at``) over REST and gRPC, and the two counters its rate chart draws
(``proximadb_records_written_total``, ``proximadb_search_queries_total``)."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.errors import ProximaDBError

DIM = 4


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("dashdata") / "data") as d:
        yield d


def scrape(d: Daemon) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def sample(text: str, name: str, collection: str) -> float:
    found = re.search(rf'^{name}{{collection="{collection}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def wal_dir_bytes(d: Daemon, uuid: str) -> int:
    return sum(p.stat().st_size for p in (d.data_dir / "collections" / uuid / "wal").iterdir() if p.is_file())


def test_stats_report_wal_bytes_and_last_compaction_over_both_protocols(daemon: Daemon) -> None:
    rng = np.random.default_rng(1)
    with proximadb.connect_rest(daemon.rest_url) as rest, proximadb.connect_grpc(daemon.grpc_target) as grpc_client:
        info = rest.create_collection("walsize", DIM)
        for client in (rest, grpc_client):
            stats = client.stats("walsize")
            assert stats["last_compaction_at"] is None  # an unset optional over gRPC, null over REST
            assert stats["wal_bytes"] == wal_dir_bytes(daemon, info["uuid"])
        before = rest.stats("walsize")["wal_bytes"]
        rest.insert_vectors("walsize", ids=[f"a{i}" for i in range(50)], vectors=rng.standard_normal((50, DIM)))
        grown = grpc_client.stats("walsize")
        assert grown["wal_bytes"] > before and grown["wal_bytes"] == wal_dir_bytes(daemon, info["uuid"])
        rest.flush("walsize")
        assert rest.compact("walsize")["merged"] == []  # one clean segment: nothing to do, not a compaction
        assert grpc_client.stats("walsize")["last_compaction_at"] is None
        rest.insert_vectors("walsize", ids=[f"b{i}" for i in range(5)], vectors=rng.standard_normal((5, DIM)))
        rest.flush("walsize")
        started = time.time()
        report = grpc_client.compact("walsize")
        finished = time.time()
        assert report["segments_before"] == 2
        for client in (rest, grpc_client):
            stats = client.stats("walsize")
            assert started <= stats["last_compaction_at"] <= finished
            assert stats["wal_bytes"] == wal_dir_bytes(daemon, info["uuid"])


def test_counters_of_records_written_and_queries_answered(daemon: Daemon) -> None:
    rng = np.random.default_rng(2)
    with proximadb.connect_rest(daemon.rest_url) as rest, proximadb.connect_grpc(daemon.grpc_target) as grpc_client:
        rest.create_collection("counted", DIM)
        before = scrape(daemon)
        rest.insert_vectors("counted", ids=[f"r{i}" for i in range(30)], vectors=rng.standard_normal((30, DIM)))
        uuid = rest.get_collection("counted")["uuid"]  # counted under the collection's name either way
        grpc_client.insert_vectors(uuid, ids=[f"g{i}" for i in range(12)], vectors=rng.standard_normal((12, DIM)))
        rest.upsert_vectors("counted", ids=["r0"], vectors=rng.standard_normal((1, DIM)))
        with pytest.raises(ProximaDBError):  # refused whole: nothing counted
            rest.insert_vectors("counted", ids=["bad"], vectors=rng.standard_normal((1, DIM + 1)))
        for client in (rest, grpc_client):
            client.search("counted", rng.standard_normal(DIM), k=3)
            client.search_batch(uuid, rng.standard_normal((4, DIM)), k=3)  # a batch counts each query
        with pytest.raises(ProximaDBError):
            rest.search("counted", rng.standard_normal(DIM + 1), k=3)
        after = scrape(daemon)
    assert f'collection="{uuid}"' not in after
    assert "# TYPE proximadb_records_written_total counter" in after
    assert "# TYPE proximadb_search_queries_total counter" in after
    assert sample(after, "proximadb_records_written_total", "counted") - \
        sample(before, "proximadb_records_written_total", "counted") == 43
    assert sample(after, "proximadb_search_queries_total", "counted") - \
        sample(before, "proximadb_search_queries_total", "counted") == 10
