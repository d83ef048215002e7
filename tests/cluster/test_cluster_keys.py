"""Cluster mode with API keys, end to end (issue #14): ``proximadb dev-cluster --api-key KEY`` runs real
NATS servers and daemons that all require KEY; reads through a node that holds only some shards fan out
to the others with the nodes' shared PROXIMADB_CLUSTER_KEY. A client without a key is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import child_env, wait_until

from proximadb.errors import AuthenticationError
from proximadb.sdk import connect_grpc, connect_rest

DIM = 8
ROWS = 120
KEY = "test-cluster-admin-key-14"


class KeyedCluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proximadb", "dev-cluster", "--nodes", "3", "--nats", "1", "--cluster-ttl", "4",
             "--api-key", KEY, str(directory)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), text=True)
        manifest = directory / "cluster.json"
        wait_until("dev-cluster writes cluster.json", lambda: manifest.exists() or self.proc.poll() is not None,
                   deadline=120)
        assert self.proc.poll() is None, self.proc.communicate()[0]
        self.doc: dict[str, Any] = json.loads(manifest.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=120)
        for node in self.doc["nodes"]:  # never leave a daemon behind
            try:
                os.killpg(node["pid"], signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedCluster]:
    running = KeyedCluster(tmp_path_factory.mktemp("keyed"))
    try:
        yield running
    finally:
        running.stop()


def test_fan_out_works_with_keys_and_keyless_clients_are_refused(cluster: KeyedCluster) -> None:
    rng = np.random.default_rng(14)
    ids, vectors = [f"v{i}" for i in range(ROWS)], rng.normal(size=(ROWS, DIM)).astype(np.float32)
    nodes = cluster.doc["nodes"]
    with connect_rest(nodes[0]["rest"], api_key=KEY) as n1:
        info = n1.create_collection("keyed", DIM, distance_metric="euclidean", shards=3, replication_factor=1)
        assert all(len(h) == 1 for h in info["placement"])  # no node holds every shard
        assert n1.insert_vectors("keyed", ids=ids, vectors=vectors)["count"] == ROWS
    query = vectors[:3] + np.float32(0.01)
    d = ((query[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    want = [[ids[i] for i in np.argsort(row, kind="stable")[:5]] for row in d]
    for client in (connect_rest(nodes[1]["rest"], api_key=KEY), connect_grpc(nodes[2]["grpc"], api_key=KEY)):
        with client:
            wait_until(f"every shard answers through {client.url}", lambda c=client: c.count("keyed") == ROWS, 60)
            assert [[h["id"] for h in hits] for hits in client.search_batch("keyed", query, k=5)] == want
    for keyless in (connect_rest(nodes[1]["rest"], api_key=""), connect_grpc(nodes[2]["grpc"], api_key="")):
        with keyless, pytest.raises(AuthenticationError):
            keyless.search("keyed", vectors[0], k=5)
    with connect_rest(nodes[1]["rest"], api_key="wrong-key") as wrong, pytest.raises(AuthenticationError):
        wrong.count("keyed")
