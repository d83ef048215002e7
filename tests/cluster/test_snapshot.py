"""Log retention and snapshot bootstrap (proximadb/cluster/retention.py, snapshot.py, node.py).

The format tests need no servers: a collection's snapshot is streamed, received, checked and installed
into another engine. The end-to-end test runs a dev-cluster whose logs keep nothing below what every
replica has checkpointed (PROXIMADB_CLUSTER_LOG_RETAIN=0), waits until the log no longer holds its first
entries, wipes one node's disk and restarts it: the rows it could not read from the log any more must
come from a peer's snapshot.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _devcluster import DevCluster
from _support import wait_until

from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.retention import purge_floor
from proximadb.cluster.shard_map import ShardMap
from proximadb.cluster.snapshot import receive_snapshot, snapshot_stream
from proximadb.errors import CorruptionError
from proximadb.storage.engine import Engine

DIM = 8
WAIT = 90.0


def _snapshot_bytes(tmp_path: Path, rows: int = 200) -> tuple[bytes, np.ndarray]:
    vectors = np.random.default_rng(3).normal(size=(rows, DIM)).astype(np.float32)
    with Engine.open(tmp_path / "source") as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=[f"r{i}" for i in range(rows // 2)], vectors=vectors[: rows // 2],
                   metadatas=[{"i": i} for i in range(rows // 2)])
        col.flush()
        col.insert(ids=[f"r{i}" for i in range(rows // 2, rows)], vectors=vectors[rows // 2:])
        col.flush()
        doc, chunks = snapshot_stream(col.directory, tmp_path / "source" / ".snapshot-out-t", "c", "a description")
        raw = b"".join(chunks)
    assert not (tmp_path / "source" / ".snapshot-out-t").exists()  # the stage goes once the stream was read
    assert doc["checkpoint_seq"] >= 2 and "MANIFEST" in doc["files"]
    return raw, vectors


def test_a_snapshot_received_and_installed_holds_the_same_rows(tmp_path: Path) -> None:
    raw, vectors = _snapshot_bytes(tmp_path)
    doc = receive_snapshot(io.BytesIO(raw), tmp_path / "target" / ".snapshot-in")
    assert doc["description"] == "a description"
    with Engine.open(tmp_path / "target") as engine:
        engine.create_collection("copy", DIM, from_files=tmp_path / "target" / ".snapshot-in",
                                 distance_metric="euclidean")
        col = engine.collection("copy")
        assert col.count() == len(vectors)
        got = col.get("r7", include_vector=True)
        assert got is not None and got["metadata"] == {"i": 7}
        np.testing.assert_array_equal(got["vector"], vectors[7])
        hits = col.search(vectors[150], 1)
        assert hits[0]["id"] == "r150"
    with Engine.open(tmp_path / "target") as engine:  # and it stays after a reopen
        assert engine.collection("copy").count() == len(vectors)


def _members(raw: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        return [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]


def _rebuild(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "unlisted file", "escaping path", "no document",
                                    "missing file", "not a tar"])
def test_a_damaged_snapshot_is_refused_and_leaves_nothing(tmp_path: Path, damage: str) -> None:
    raw, _ = _snapshot_bytes(tmp_path)
    members = _members(raw)
    if damage == "flipped byte":
        info, data = members[-1]
        members[-1] = (info, data[:-1] + bytes([data[-1] ^ 1]))
        raw = _rebuild(members)
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "unlisted file":
        raw = _rebuild([*members, (tarfile.TarInfo("segments/extra"), b"x")])
    elif damage == "escaping path":
        doc = json.loads(members[0][1])
        doc["files"]["../outside"] = {"bytes": 1, "crc32c": 0}
        raw = _rebuild([(members[0][0], json.dumps(doc).encode()), *members[1:]])
    elif damage == "no document":
        raw = _rebuild(members[1:])
    elif damage == "missing file":
        raw = _rebuild(members[:-1])
    else:
        raw = b"this is not a tar stream at all" * 40
    target = tmp_path / "in"
    with pytest.raises(CorruptionError):
        receive_snapshot(io.BytesIO(raw), target)
    assert not target.exists() and not (tmp_path / "outside").exists()


def test_the_purge_floor_is_the_lowest_holder_checkpoint_and_waits_for_every_holder() -> None:
    shard_map = ShardMap("docs", 2, 2, 1, (("n1", "n2"), ("n2", "n3")))

    def info(node: str, **checkpointed: int) -> NodeInfo:
        return NodeInfo(node, "", "", 0.0, {}, {f"docs/{k[1:]}": v for k, v in checkpointed.items()})

    nodes = {"n1": info("n1", s0=40), "n2": info("n2", s0=25, s1=7), "n3": info("n3")}
    assert purge_floor(shard_map, 0, nodes) == 25
    assert purge_floor(shard_map, 1, nodes) is None  # n3 has not reported its replica of shard 1
    assert purge_floor(shard_map, 1, {"n2": nodes["n2"]}) is None  # n3 is not live
    assert NodeInfo.decode(nodes["n2"].encode()) == nodes["n2"]


def _log_first_seq(cluster: DevCluster, name: str) -> int:
    run = subprocess.run([sys.executable, "-m", "proximadb", "cluster", "status", "--nats",
                          ",".join(cluster.doc["nats"]), "--json"], capture_output=True, text=True, timeout=120,
                         cwd=str(cluster.directory))
    assert run.returncode == 0, run.stderr
    doc: dict[str, Any] = json.loads(run.stdout)
    (col,) = [c for c in doc["collections"] if c["name"] == name]
    return int(col["placement"][0]["log_first_seq"])


@pytest.fixture
def purging_cluster(tmp_path: Path) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path / "dc", PROXIMADB_CLUSTER_LOG_RETAIN="0")
    try:
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


def test_a_wiped_replica_behind_the_purged_log_rebuilds_from_a_snapshot(purging_cluster: DevCluster) -> None:
    cluster = purging_cluster
    n1 = cluster.rest(0)
    n1.create_collection("snap", DIM, shards=1, replication_factor=3)
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(400, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(400)]
    for start in range(0, 300, 20):  # 15 log entries
        n1.insert_vectors("snap", ids=ids[start:start + 20], vectors=vectors[start:start + 20],
                          metadatas=[{"i": i} for i in range(start, start + 20)])
    n1.delete_vectors("snap", ids=["v0", "v1"])
    # Every replica checkpoints (every 5 s), reports it in its next beat, and the first holder purges.
    wait_until("the log is purged below its first entries", lambda: _log_first_seq(cluster, "snap") > 10, WAIT)
    first = _log_first_seq(cluster, "snap")

    cluster.kill_and_restart(2, wipe=True)
    n3 = cluster.rest(2)
    local = "snap.s0@0"  # n3's own replica (the address peers use between nodes)
    wait_until("n3's replica is rebuilt", lambda: _count(n3, local) == 298, WAIT)
    # Entries below `first` are gone from the log: these rows can only have come from the snapshot.
    assert _log_first_seq(cluster, "snap") >= first > 10
    got = n3.get_vectors(local, ["v2", "v150", "v299", "v0"])
    assert [r["id"] for r in got] == ["v2", "v150", "v299"]
    stored = vectors[150] / np.linalg.norm(vectors[150])  # cosine collections keep vectors normalised
    np.testing.assert_allclose(np.asarray(got[1]["vector"], np.float32), stored, rtol=1e-6, atol=1e-6)
    assert got[1]["metadata"] == {"i": 150}
    # ... and the log goes on from there.
    n1.insert_vectors("snap", ids=ids[300:], vectors=vectors[300:])
    wait_until("n3 applies what came after", lambda: _count(n3, local) == 398, WAIT)
    hits = n3.search("snap", vectors[350], k=1)
    assert hits[0]["id"] == "v350"
    # The same in n3's /metrics: one snapshot installed, its replica's position and lag; a purge somewhere.
    wait_until("n3's metrics show the replica caught up", lambda: _metric(cluster, 2, LAG) == 0.0, WAIT)
    assert _metric(cluster, 2, "proximadb_cluster_snapshots_installed_total") == 1.0
    assert _metric(cluster, 2, "proximadb_cluster_nodes_live") == 3.0
    assert (_metric(cluster, 2, APPLIED) or 0) >= first  # at least the entry written after the purge
    assert sum(_metric(cluster, i, "proximadb_cluster_log_purged_entries_total") or 0 for i in range(3)) > 0

    # Dropping the collection deletes its logs.
    assert cluster.log_streams() != []
    n1.delete_collection("snap")
    assert cluster.log_streams() == []


LAG = 'proximadb_cluster_replica_lag{collection="snap",shard="0"}'
APPLIED = 'proximadb_cluster_replica_applied_seq{collection="snap",shard="0"}'


def _metric(cluster: DevCluster, i: int, sample: str) -> float | None:
    """One sample of node ``i``'s /metrics (the line ``<name>{labels} <value>``), None when absent."""
    with urllib.request.urlopen(cluster.doc["nodes"][i]["rest"] + "/metrics", timeout=60) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return None



def _count(client: Any, name: str) -> int:
    try:
        return int(client.count(name))
    except Exception:
        return -1
