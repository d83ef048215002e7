"""Cluster mode with API keys, end to end (issue #14): ``proximadb dev-cluster --api-key KEY`` runs real
NATS servers and daemons that all require KEY; reads through a node that holds only some shards fan out
to the others with the nodes' shared PROXIMADB_CLUSTER_KEY. A client without a key is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _devcluster import DevCluster
from _support import wait_until

from proximadb.errors import AuthenticationError, PermissionDeniedError
from proximadb.sdk import connect_async, connect_grpc, connect_rest

DIM = 8
ROWS = 120
KEY = "test-cluster-admin-key-14"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path_factory.mktemp("keyed"), "--nats", "1", "--api-key", KEY)
    try:
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


def test_fan_out_works_with_keys_and_keyless_clients_are_refused(cluster: DevCluster) -> None:
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


def cluster_key_of(node: dict[str, Any]) -> str:
    """The PROXIMADB_CLUSTER_KEY dev-cluster gave the node's daemon (read from its environment)."""
    env = Path(f"/proc/{node['pid']}/environ").read_bytes().split(b"\0")
    return next(line.split(b"=", 1)[1].decode() for line in env if line.startswith(b"PROXIMADB_CLUSTER_KEY="))


def test_compaction_reaches_peers_with_the_cluster_key_which_compacts_shard_addresses_only(
        cluster: DevCluster) -> None:
    """A compaction through one node compacts the replicas its peers hold (they accept the cluster key for
    that); the cluster key itself may compact and flush a shard address, but not a collection, nor write."""
    nodes = cluster.doc["nodes"]
    with connect_rest(nodes[0]["rest"], api_key=KEY) as admin:
        info = admin.create_collection("tidy", DIM, distance_metric="euclidean", shards=3, replication_factor=1)
        rng = np.random.default_rng(3)
        for part in range(2):
            admin.insert_vectors("tidy", ids=[f"t{part}-{i}" for i in range(30)],
                                 vectors=rng.normal(size=(30, DIM)).astype(np.float32))
            admin.flush("tidy")
        report = admin.compact("tidy")
        holders = {shard: h[0] for shard, h in enumerate(info["placement"])}
        assert sorted((r["shard"], r["node"]) for r in report["replicas"]) == sorted(holders.items())
        assert report["segments_after"] == 3 and report["rows_after"] == 60
        assert report["segments_before"] == sum(r["segments_before"] for r in report["replicas"]) >= 6
    key = cluster_key_of(nodes[1])
    assert key != KEY
    shard, holder = 0, next(i for i, n in enumerate(nodes) if n["id"] == holders[0])
    with connect_rest(nodes[holder]["rest"], api_key=key) as peer:
        assert peer.count("tidy") == 60  # a read-only key
        assert peer.compact(f"tidy.s{shard}@0")["collection"] == f"tidy.s{shard}"  # its replica: allowed
        assert peer.flush(f"tidy.s{shard}@0")["segments"] == 1
        for refused in (lambda: peer.compact("tidy"), lambda: peer.flush("tidy"),
                        lambda: peer.insert_vectors("tidy", ids=["x"], vectors=np.zeros((1, DIM), np.float32)),
                        lambda: peer.delete_vectors("tidy", [f"t0-{i}" for i in range(3)])):
            with pytest.raises(PermissionDeniedError, match="read-only"):
                refused()
    with connect_grpc(nodes[holder]["grpc"], api_key=key) as peer_grpc, \
            pytest.raises(PermissionDeniedError):  # peers use REST: over gRPC the key stays read-only
        peer_grpc.compact(f"tidy.s{shard}@0")
    request = urllib.request.Request(f"{nodes[holder]['rest']}/collections/tidy/compact", b"", method="POST",
                                     headers={"Authorization": f"Bearer {key}"})
    with pytest.raises(urllib.error.HTTPError) as refused_plain:
        urllib.request.urlopen(request, timeout=60)
    assert refused_plain.value.code == 403
    with connect_rest(nodes[2]["rest"], api_key=KEY) as admin:
        assert admin.count("tidy") == 60
        admin.delete_collection("tidy")


def test_one_client_over_several_nodes_survives_sigkill_of_its_node(cluster: DevCluster) -> None:
    nodes = cluster.doc["nodes"]
    rng = np.random.default_rng(15)
    ids, vectors = [f"w{i}" for i in range(40)], rng.normal(size=(40, DIM)).astype(np.float32)
    order = [nodes[2], nodes[0], nodes[1]]  # the client starts on n3
    with connect_grpc([n["grpc"] for n in order], api_key=KEY) as client, \
            connect_rest([n["rest"] for n in order], api_key=KEY) as rest:
        client.create_collection("spread", DIM, distance_metric="euclidean", shards=2, replication_factor=3)
        client.insert_vectors("spread", ids=ids, vectors=vectors)
        for c in (client, rest):
            wait_until(f"replicated to {c.url}", lambda c=c: c.count("spread") == 40, 60)
        assert client.url.endswith(nodes[2]["grpc"]) and rest.url == nodes[2]["rest"]

        async def asyncio_clients_too() -> None:  # the asyncio clients take the same lists
            async with connect_async([n["grpc"] for n in order], api_key=KEY) as agrpc, \
                    connect_async([n["rest"] for n in order], api_key=KEY) as arest:
                assert agrpc.protocol == "grpc" and arest.protocol == "rest"
                for a in (agrpc, arest):
                    assert await a.count("spread") == 40 and a.url.endswith(order[0]["grpc"] if a is agrpc
                                                                            else order[0]["rest"])
                os.killpg(nodes[2]["pid"], signal.SIGKILL)
                wait_until("n3 gone", lambda: not Path(f"/proc/{nodes[2]['pid']}/stat").exists()
                           or Path(f"/proc/{nodes[2]['pid']}/stat").read_text().split()[2] == "Z", 30)
                for a in (agrpc, arest):
                    assert [h["id"] for h in await a.search("spread", vectors[7], k=1)] == ["w7"]
                    assert not a.url.endswith(order[0]["grpc"]) and not a.url.endswith(order[0]["rest"])

        asyncio.run(asyncio_clients_too())
        for c in (client, rest):
            assert [h["id"] for h in c.search("spread", vectors[7], k=1)] == ["w7"]
            assert c.url != order[0]["grpc"] and not c.url.endswith(order[0]["grpc"])
            assert not c.url.endswith(order[0]["rest"])


def test_no_node_answering_is_one_typed_error_naming_every_address() -> None:
    from proximadb.errors import UnavailableError
    from proximadb.free_ports import free_port

    addresses = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with pytest.raises(UnavailableError) as caught:
        connect_rest(addresses, retries=0, timeout=2)
    assert all(a in str(caught.value) for a in addresses)
    with pytest.raises(UnavailableError) as caught:
        connect_grpc([a.removeprefix("http://") for a in addresses], retries=0, timeout=2)
    assert all(a.removeprefix("http://") in str(caught.value) for a in addresses)

    async def asyncio_clients() -> None:
        for where in (addresses, [a.removeprefix("http://") for a in addresses]):
            with pytest.raises(UnavailableError) as caught:
                await connect_async(where, retries=0, timeout=2)
            assert all(a in str(caught.value) for a in where)

    asyncio.run(asyncio_clients())
