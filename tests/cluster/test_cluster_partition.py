"""Cluster partition test (issue #14): one daemon of a dev-cluster (3 NATS servers, 3 daemons) cut off from
the NATS servers under concurrent writes, then let back in; every replica is checked afterwards.

Node n1 is SIGKILLed and started again with its ``--cluster`` pointing at TCP relays on 127.0.0.1, one per
NATS server (tests/cluster/_relay.py); everything else is ``dev-cluster`` as a user runs it. The chaos tests'
writers and checker (tests/cluster/_workload.py) record and judge the writes: two writers with
failover SDK clients over n2 and n3 insert, upsert and delete; a third writes only to n1 (one address, so
it cannot move on) and only inserts fresh ids.

A cut (``NatsRelay.cut``: every relayed connection closed, new ones refused) must leave the cluster like
this: n1's heartbeat stops and, after ``--cluster-ttl``, the placement moves off it; writes through n2 and
n3 keep being acknowledged; writes sent to n1 fail with UnavailableError (503: n1 refuses calls once it has
had no NATS connection for 5 s, proximadb/cluster/nats_session.py), recorded as uncertain, and none that
started during the cut is acknowledged before the heal. After the heal n1 reconnects through the relays,
holds its replicas again and acknowledges writes. Finally every node's replica of every shard holds every
acknowledged write with its latest value, no acknowledged delete came back, and the replicas are identical.

Default: one cut and heal. ``PROXIMADB_SLOW=1`` (``slow`` marker): 4; ``PROXIMADB_PARTITION_CUTS`` overrides.

Why the n1 writer only inserts fresh ids: a write whose client gave up during the cut may still be applied
after the heal (the daemon's NATS client sends what it had pending once it reconnects). A later write to the
same id through the same node could be acknowledged first, and the stale one land after it; fresh ids keep
that case out of what this test judges.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _devcluster import DevCluster
from _relay import NatsRelay
from _support import wait_until
from _workload import (
    DIM,
    NAME,
    SHARDS,
    WAIT,
    FreshInserter,
    Recording,
    StrongReader,
    Writer,
    check_every_replica,
    stale_strong_reads,
)

from proximadb.errors import UnavailableError
from proximadb.sdk import connect_grpc, connect_rest

CUT = 0  # the index of the node that gets cut off: n1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[DevCluster, list[NatsRelay]]]:
    """The dev-cluster and a relay to each of its NATS servers (closed once the daemons stopped: a daemon
    cut off while stopping would wait out its NATS deadline)."""
    running = DevCluster(tmp_path / "dc")
    relays = [NatsRelay(int(url.rsplit(":", 1)[1])) for url in running.doc["nats"]]
    try:
        yield running, relays
    finally:
        for relay in relays:
            relay.heal()
        running.stop()
        for relay in relays:
            relay.close()
        running.kill_leftovers()


def test_a_daemon_cut_off_from_nats_under_writes_loses_nothing(
        cluster: tuple[DevCluster, list[NatsRelay]]) -> None:
    run_partition(*cluster, cuts=int(os.environ.get("PROXIMADB_PARTITION_CUTS", "1")))


@pytest.mark.slow
def test_repeated_partitions_under_writes_lose_nothing(cluster: tuple[DevCluster, list[NatsRelay]]) -> None:
    run_partition(*cluster, cuts=int(os.environ.get("PROXIMADB_PARTITION_CUTS", "4")))


def run_partition(cluster: DevCluster, relays: list[NatsRelay], *, cuts: int) -> None:
    nodes = cluster.doc["nodes"]
    victim = nodes[CUT]["id"]
    stop = threading.Event()
    writers: list[Writer] = []
    strong: StrongReader | None = None
    try:
        argv, env, cwd = cluster.kill(CUT)
        argv[argv.index("--cluster") + 1] = ",".join(r.url for r in relays)
        cluster.restart(CUT, (argv, env, cwd))
        assert sum(r.relayed for r in relays) > 0, "the restarted daemon does not talk through the relays"
        # A cut-off daemon answers 503 (LogUnavailableError) once it has had no connection to any NATS server for
        # nats_session.CUT_OFF_SECONDS (5 s), not after its calls' 30 s deadline: far inside this client's 30 s.
        to_victim = Recording(connect_rest(nodes[CUT]["rest"], timeout=30))
        cluster.clients.append(to_victim.client)

        others = [i for i in range(len(nodes)) if i != CUT]
        admin = cluster.rest(others[0])
        admin.create_collection(NAME, DIM, distance_metric="euclidean", shards=SHARDS, replication_factor=3)
        wait_until(f"{victim} holds its replicas",
                   lambda: all(len(set(h)) == 3 for h in admin.get_collection(NAME)["placement"]), WAIT)
        failover = [connect_grpc([nodes[i]["grpc"] for i in others]),
                    connect_rest([nodes[i]["rest"] for i in reversed(others)])]
        cluster.clients.extend(failover)
        writers = [Writer(0, failover[0], stop), Writer(1, failover[1], stop), FreshInserter(2, to_victim, stop)]
        strong = StrongReader(connect_grpc([n["grpc"] for n in nodes]), writers, stop)  # n1 first: 503s move it on
        cluster.clients.append(strong.client)
        for writer in writers:
            writer.start()
        strong.start()
        wait_until("the writers were acknowledged", lambda: all(len(w.history.acked_at) >= 5 for w in writers), WAIT)

        for cycle in range(cuts):
            cut_at = time.monotonic()
            for relay in relays:
                relay.cut()
            wait_until(f"the placement moved off {victim} (cut {cycle + 1})",
                       lambda: all(victim not in h for h in admin.get_collection(NAME)["placement"]), WAIT)
            moved_at = time.monotonic()
            wait_until(f"writes through the other nodes acknowledged while {victim} is cut off",
                       lambda t=moved_at: all(w.history.acked_since(t) for w in writers[:2]), WAIT)
            wait_until(f"a write sent to {victim} failed while it is cut off",
                       lambda t=cut_at: bool(to_victim.failed_since(t)), WAIT)
            for error in to_victim.failed_since(cut_at):
                assert isinstance(error, UnavailableError), repr(error)  # 503 at once, not a client timeout
            healed_at = time.monotonic()
            acked_during_cut = [c for c in list(to_victim.calls)
                                if c.error is None and cut_at <= c.started and c.finished < healed_at]
            assert not acked_during_cut, f"{victim} acknowledged writes while cut off from the log: {acked_during_cut}"
            assert sum(r.refused for r in relays) > 0, f"{victim} did not try to reconnect"
            relayed_before = sum(r.relayed for r in relays)
            for relay in relays:
                relay.heal()
            wait_until(f"{victim} reconnected through the relays",
                       lambda n=relayed_before: sum(r.relayed for r in relays) > n, WAIT)
            wait_until(f"{victim} holds its replicas again after the heal",
                       lambda: all(len(set(h)) == 3 for h in admin.get_collection(NAME)["placement"]), WAIT)
            wait_until(f"writes sent to {victim} acknowledged again after the heal",
                       lambda t=healed_at: to_victim.acked_since(t) > 0, WAIT)
            wait_until("writes through the other nodes acknowledged after the heal",
                       lambda t=healed_at: all(w.history.acked_since(t) for w in writers[:2]), WAIT)
    finally:
        stop.set()
        for thread in (*writers, *([strong] if strong is not None else [])):
            thread.join(timeout=WAIT)
    for writer in writers:
        assert writer.error is None, repr(writer.error)
    assert strong is not None and not any(t.is_alive() for t in (*writers, strong))
    assert strong.reads and not stale_strong_reads(strong, writers), stale_strong_reads(strong, writers)[:10]

    history = check_every_replica(cluster, writers)
    acked = [len(w.history.acked_at) for w in writers]
    uncertain = [w.history.uncertain for w in writers]
    errors = sorted({f"{type(c.error).__name__}: {c.error}"[:100] for c in to_victim.calls if c.error is not None})
    print(f"\n{cuts} cuts of {victim}: acknowledged writes per writer {acked}, uncertain {uncertain} "
          f"(writes to {victim} failed with {errors}), ids {len(history.writes)}; {len(strong.reads)} strong reads, "
          f"none stale ({strong.failed} failed); relayed connections "
          f"{sum(r.relayed for r in relays)}, refused while cut {sum(r.refused for r in relays)}")


def test_the_relay_drops_advertised_server_addresses_and_passes_everything_else() -> None:
    """The relay's filter on the NATS protocol, fed in pieces (no servers)."""
    from _relay import InfoFilter

    info = b'INFO {"server_id":"x","connect_urls":["127.0.0.1:4222"],"max_payload":1048576}\r\n'
    msg = b'MSG a.b 1 5\r\nINFO \r\n'  # a payload that looks like a line
    hmsg = b'HMSG a.b 2 _INBOX.1 12 17\r\nNATS/1.0\r\n\r\nhello\r\n'
    stream = info + msg + b"PING\r\n" + hmsg + b"+OK\r\n"
    out = b""
    relay = InfoFilter()
    for i in range(0, len(stream), 7):
        out += relay.feed(stream[i:i + 7])
    assert out == b'INFO {"server_id": "x", "max_payload": 1048576}\r\n' + msg + b"PING\r\n" + hmsg + b"+OK\r\n"
    assert relay.buffer == b""
