"""Users can see and wait for indexing, and flush: stats status green/yellow, flush, wait_for_indexing;
and stats report the segments' filter plan caches (storage/filter_cache.py).

Against a real daemon over both protocols and in-process (connect_embedded); a graceful stop flushes
the memtable (nothing to replay on the next start), a kill -9 still recovers every row from the WAL.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import CollectionNotFoundError, IndexingTimeoutError, RequestTimeoutError

DIM = 8
N = 60


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("indexing") / "data", "--fsync", "never") as d:
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


def _fresh(db: ProximaDBAPI, name: str, algorithm: str) -> str:
    name = f"{name}-{db.protocol}"
    if name in [c["name"] for c in db.list_collections()]:
        db.delete_collection(name)
    params = {"M": 8, "ef_construction": 32} if algorithm == "hnsw" else {}
    db.create_collection(name, DIM, indexing_algorithm=algorithm, index_params=params)
    return name


def test_stats_say_yellow_until_flushed_and_indexed_then_green(db: ProximaDBAPI) -> None:
    name = _fresh(db, "status", "hnsw")
    empty = db.stats(name)
    assert (empty["status"], empty["indexed_rows"], empty["unindexed_rows"]) == ("green", 0, 0)
    db.insert_vectors(name, ids=[f"r{i:03d}" for i in range(N)], vectors=_vectors(N))
    before = db.stats(name)
    assert (before["status"], before["indexed_rows"], before["unindexed_rows"]) == ("yellow", 0, N)

    flushed = db.flush(name)
    assert flushed["name"] == name and flushed["memtable_rows"] == 0 and flushed["segments"] == 1
    assert flushed["indexed_rows"] + flushed["unindexed_rows"] == N

    done = db.wait_for_indexing(name, timeout=120)
    assert (done["status"], done["indexed_rows"], done["unindexed_rows"]) == ("green", N, 0)
    assert done["index_builds_pending"] == 0 and done["indexed_segments"] == 1
    assert db.stats(name)["status"] == "green"
    assert db.count(name) == N


def test_wait_for_indexing_flushes_first_and_a_flat_collection_is_green_once_flushed(db: ProximaDBAPI) -> None:
    name = _fresh(db, "flat", "flat")
    db.insert_vectors(name, ids=["a", "b"], vectors=_vectors(2))
    assert db.stats(name)["status"] == "yellow"  # memtable rows are scanned, not indexed
    done = db.wait_for_indexing(name, timeout=60)  # flush=True by default
    assert (done["status"], done["indexed_rows"], done["unindexed_rows"], done["segments"]) == ("green", 2, 0, 1)


def test_wait_for_indexing_times_out_with_a_typed_error(db: ProximaDBAPI) -> None:
    name = _fresh(db, "timeout", "hnsw")
    db.insert_vectors(name, ids=["a"], vectors=_vectors(1))
    with pytest.raises(IndexingTimeoutError) as caught:  # never flushed: stays yellow
        db.wait_for_indexing(name, timeout=0.3, flush=False)
    assert isinstance(caught.value, RequestTimeoutError)
    assert name in str(caught.value) and "1 row" in str(caught.value)
    assert db.stats(name)["memtable_rows"] == 1  # waiting changed nothing


def test_flush_and_wait_of_an_unknown_collection_are_not_found(db: ProximaDBAPI) -> None:
    with pytest.raises(CollectionNotFoundError):
        db.flush("no-such-collection")
    with pytest.raises(CollectionNotFoundError):
        db.wait_for_indexing("no-such-collection", timeout=5)


def test_wait_for_indexing_refuses_a_bad_timeout(db: ProximaDBAPI) -> None:
    name = _fresh(db, "badtimeout", "flat")
    for bad in (-1, float("nan"), "5"):
        with pytest.raises(ValueError, match="timeout"):
            db.wait_for_indexing(name, timeout=bad)  # type: ignore[arg-type]


def test_rest_flush_route_and_openapi(daemon: Daemon) -> None:
    with proximadb.connect_rest(daemon.rest_url) as db:
        name = _fresh(db, "route", "flat")
        db.insert_vectors(name, ids=["a"], vectors=_vectors(1))
    req = urllib.request.Request(f"{daemon.rest_url}/collections/{name}/flush", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["data"]["memtable_rows"] == 0 and body["data"]["status"] == "green"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{daemon.rest_url}/collections/nope/flush", method="POST",
                                                      data=b""), timeout=30)
    assert caught.value.code == 404
    with urllib.request.urlopen(f"{daemon.rest_url}/openapi.json", timeout=30) as resp:
        doc = json.loads(resp.read())
    assert "post" in doc["paths"]["/collections/{collection}/flush"]
    stats_schema = doc["components"]["schemas"]["CollectionStats"]
    assert {"status", "indexed_rows", "unindexed_rows"} <= set(stats_schema["properties"])


def _insert(daemon: Daemon, name: str, n: int) -> None:
    with proximadb.connect_grpc(daemon.grpc_target) as db:
        db.create_collection(name, DIM)
        db.insert_vectors(name, ids=[f"r{i:03d}" for i in range(n)], vectors=_vectors(n))
        assert db.stats(name)["memtable_rows"] == n


def _stats_after_restart(daemon: Daemon, name: str) -> dict[str, Any]:
    daemon.start()
    with proximadb.connect_grpc(daemon.grpc_target) as db:
        return db.stats(name)


def test_a_graceful_stop_flushes_the_memtable(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", "--fsync", "never").start()
    try:
        _insert(daemon, "c", N)
        assert daemon.stop(signal.SIGTERM) == 0
        stats = _stats_after_restart(daemon, "c")
        assert stats["vectors"] == N and stats["memtable_rows"] == 0 and stats["segments"] == 1
        assert stats["checkpoint_seq"] == stats["wal_last_seq"]  # nothing was left to replay
    finally:
        daemon.stop()


def test_a_kill_9_still_recovers_every_row_from_the_wal(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", "--fsync", "always").start()
    try:
        _insert(daemon, "c", N)
        daemon.kill9()
        stats = _stats_after_restart(daemon, "c")
        assert stats["vectors"] == N and stats["memtable_rows"] == N and stats["segments"] == 0
    finally:
        daemon.stop()


def test_embedded_close_flushes_and_can_be_told_not_to(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "a", fsync="never") as db:
        db.create_collection("c", DIM)
        db.insert_vectors("c", ids=["a", "b"], vectors=_vectors(2))
    with proximadb.connect_embedded(tmp_path / "a", fsync="never") as db:
        assert (db.stats("c")["memtable_rows"], db.stats("c")["segments"], db.count("c")) == (0, 1, 2)
    with proximadb.connect_embedded(tmp_path / "b", fsync="never", flush_on_close=False) as db:
        db.create_collection("c", DIM)
        db.insert_vectors("c", ids=["a", "b"], vectors=_vectors(2))
    with proximadb.connect_embedded(tmp_path / "b", fsync="never") as db:
        assert (db.stats("c")["memtable_rows"], db.stats("c")["segments"], db.count("c")) == (2, 0, 2)


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
