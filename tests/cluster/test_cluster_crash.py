"""Cluster crash test: SIGKILL daemons of a dev-cluster (3 NATS servers, 3 daemons) under concurrent writes
and reads, restart them, and check every replica afterwards.

Two writer threads (one over gRPC, one over REST), a reader and a strong reader (tests/cluster/_workload.py)
run throughout. Meanwhile one daemon after another is SIGKILLed (its process group: master and worker) and,
once reads and writes were served without it, started again with the same command line
(DevCluster.kill/restart). Afterwards every replica on every node is checked (_workload.check_every_replica).

Default: 2 kills on different nodes. ``PROXIMADB_SLOW=1`` (``slow`` marker): 8 kills, every third one
wiping the node's data directory (it rebuilds from a peer's snapshot and the log);
``PROXIMADB_CLUSTER_KILLS`` overrides the number.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _devcluster import DevCluster
from _support import wait_until
from _workload import (
    DIM,
    NAME,
    SHARDS,
    WAIT,
    History,
    Reader,
    StrongReader,
    Writer,
    check_every_replica,
    stale_strong_reads,
    state_of,
    vector_of,
)

from proximadb.cluster.nats_servers import stream_leader
from proximadb.sdk import connect_grpc, connect_rest


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path / "dc")
    try:
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


def test_sigkill_daemons_under_writes_and_reads_loses_nothing(cluster: DevCluster) -> None:
    run_chaos(cluster, kills=int(os.environ.get("PROXIMADB_CLUSTER_KILLS", "2")), wipe_every=0)


def test_sigkill_the_nats_stream_leader_under_writes_and_reads_loses_nothing(cluster: DevCluster) -> None:
    run_chaos(cluster, kills=0, wipe_every=0, nats_kills=1)


@pytest.mark.slow
def test_many_sigkills_and_wiped_nodes_under_writes_and_reads_lose_nothing(cluster: DevCluster) -> None:
    run_chaos(cluster, kills=int(os.environ.get("PROXIMADB_CLUSTER_KILLS", "8")), wipe_every=3, nats_kills=4)


def run_chaos(cluster: DevCluster, *, kills: int, wipe_every: int, nats_kills: int = 0) -> None:
    """``kills`` daemon SIGKILLs (every ``wipe_every``-th wiping the node's data), then ``nats_kills`` SIGKILLs
    of the NATS server leading a shard's stream, under load; then every replica is checked."""
    nodes = cluster.doc["nodes"]
    stop = threading.Event()
    grpc_targets = [n["grpc"] for n in nodes]
    rest_urls = [n["rest"] for n in nodes]
    admin = connect_rest(rest_urls)
    cluster.clients.append(admin)
    admin.create_collection(NAME, DIM, distance_metric="euclidean", shards=SHARDS, replication_factor=3)
    clients = [connect_grpc(grpc_targets[1:] + grpc_targets[:1]), connect_rest(rest_urls[2:] + rest_urls[:2]),
               connect_rest(rest_urls)]
    cluster.clients.extend(clients)
    writers = [Writer(n, client, stop) for n, client in enumerate(clients[:2])]
    reader = Reader(clients[2], stop)
    strong = StrongReader(connect_grpc(grpc_targets[2:] + grpc_targets[:2]), writers, stop)
    cluster.clients.append(strong.client)
    for thread in (*writers, reader, strong):
        thread.start()
    stalls: list[float] = []
    try:
        wait_until("the writers were acknowledged", lambda: all(len(w.history.acked_at) >= 10 for w in writers),
                   WAIT)
        for k in range(kills):
            victim = (k + 1) % len(nodes)  # n2, n3, n1, ...: never the same node twice in a row
            killed_at = time.monotonic()
            how = cluster.kill(victim)
            # While it is down: reads are served from the other replicas, and writes are acknowledged.
            wait_until(f"reads served while {nodes[victim]['id']} is down",
                       lambda t=killed_at: reader.successes_since(t) >= 3, WAIT)
            wait_until(f"writes acknowledged while {nodes[victim]['id']} is down",
                       lambda t=killed_at: all(w.history.acked_since(t) for w in writers), WAIT)
            # ... also once its heartbeat expired and the placement moved off it (the shards have 2 holders).
            wait_until(f"the placement moved off {nodes[victim]['id']}",
                       lambda v=nodes[victim]["id"]: all(v not in h for h in admin.get_collection(NAME)["placement"]),
                       WAIT)
            served_at = time.monotonic()
            wait_until(f"reads and writes served after the placement moved off {nodes[victim]['id']}",
                       lambda t=served_at: reader.successes_since(t) >= 3 and all(
                           w.history.acked_since(t) for w in writers), WAIT)
            cluster.restart(victim, how, wipe=bool(wipe_every) and (k + 1) % wipe_every == 0)
            wait_until(f"{nodes[victim]['id']} holds its replicas again",
                       lambda: all(len(set(h)) == 3 for h in admin.get_collection(NAME)["placement"]), WAIT)
        for k in range(nats_kills):
            stalls.append(kill_stream_leader(cluster, reader, writers, shard=k % SHARDS))
    finally:
        stop.set()
        for thread in (*writers, reader, strong):
            thread.join(timeout=WAIT)
    for writer in writers:
        assert writer.error is None, repr(writer.error)
    assert not any(t.is_alive() for t in (*writers, reader, strong))
    assert strong.reads and not stale_strong_reads(strong, writers), stale_strong_reads(strong, writers)[:10]

    history = check_every_replica(cluster, writers)
    acked = sum(len(w.history.acked_at) for w in writers)
    uncertain = sum(w.history.uncertain for w in writers)
    print(f"\n{kills} daemon kills, {nats_kills} stream leader kills: {acked} acknowledged writes, "
          f"{uncertain} uncertain, ids {len(history.writes)}; reader {len(reader.calls)} calls, "
          f"failures per second {reader.failures_per_second()}; {len(strong.reads)} strong reads, none stale "
          f"({strong.failed} failed); writes to the shard resumed "
          f"{[round(s, 1) for s in stalls]} s after its stream leader was killed")
    assert acked > 0


def kill_stream_leader(cluster: DevCluster, reader: Reader, writers: list[Writer], shard: int) -> float:
    """SIGKILL the NATS server that leads ``shard``'s stream; writes to that shard must be acknowledged again
    once another server leads it, reads go on; then start it again with the same command line. Returns the
    seconds until every writer was acknowledged a write to the shard again (reported, not asserted)."""
    servers = cluster.nats_servers()
    (stream,) = [s for s in cluster.log_streams() if s.endswith(f"-s{shard}")]
    wait_until(f"{stream} has a leader", lambda: stream_leader(servers, stream) is not None, WAIT)
    (victim,) = [s for s in servers if s.name == stream_leader(servers, stream)]
    others = [s for s in servers if s is not victim]
    killed_at = time.monotonic()
    argv = cluster.kill_nats(victim)
    wait_until(f"another server leads {stream}", lambda: stream_leader(others, stream) not in (None, victim.name),
               WAIT)
    wait_until(f"writes to shard {shard} acknowledged after its stream leader {victim.name} died",
               lambda: all(w.history.acked_since(killed_at, shard) for w in writers), WAIT)
    resumed = time.monotonic() - killed_at
    wait_until("reads served after the stream leader died", lambda: reader.successes_since(killed_at) >= 3, WAIT)
    cluster.restart_nats(victim, argv)
    return resumed



def test_the_history_allows_the_last_acknowledged_state_or_a_later_uncertain_one() -> None:
    """The checker's rule, on a history written out by hand (no servers)."""
    history = History()
    history.record(["a", "b", "c"], [(0, 0, 1), (0, 1, 2), (0, 2, 3)], acked=True)
    history.record(["a"], [(0, 0, 4)], acked=False)  # may have landed
    history.record(["a"], [(0, 0, 5)], acked=True)  # settles it
    history.record(["b"], [None], acked=True)
    history.record(["b"], [(0, 1, 6)], acked=False)
    history.record(["c"], [None], acked=False)
    history.record(["d"], [(0, 3, 7)], acked=False)
    assert history.allowed("a") == [(0, 0, 5)]
    assert history.allowed("b") == [None, (0, 1, 6)]
    assert history.allowed("c") == [(0, 2, 3), None]
    assert history.allowed("d") == [None, (0, 3, 7)]
    assert state_of({"id": "w0-2", "metadata": {"w": 0, "v": 3}, "vector": vector_of((0, 2, 3))}) == (0, 2, 3)
    assert state_of({"id": "w0-2", "metadata": {"w": 0, "v": 3}, "vector": vector_of((0, 2, 4))}) not in \
        history.allowed("c")  # an older or foreign vector under the right metadata is caught
