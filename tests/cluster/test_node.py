"""Cluster nodes (proximadb/cluster/node.py) on three real NATS servers: collections created on one node
are placed on the live nodes and replicated through the shard logs; writes on any node are read on
every node holding the shards; a node that leaves has its shards placed on the others, which
replay the logs. Nodes run in this process, each with its own data directory and engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import wait_until

from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.names import local_name, shard_log_name
from proximadb.cluster.nats_servers import NatsCluster
from proximadb.cluster.node import ClusterNode
from proximadb.cluster.retention import LogRetention
from proximadb.cluster.shard_log import JetStreamLog, LogDeletedError, stream_name
from proximadb.cluster.shard_map import ShardMap
from proximadb.codec.payload import encode_insert
from proximadb.errors import CollectionExistsError, CollectionNotFoundError, UnavailableError
from proximadb.storage.engine import Engine

WAIT = 60.0
DIM = 8


class Nodes:
    def __init__(self, base: Path, urls: list[str]) -> None:
        self.base = base
        self.urls = urls
        self.running: dict[str, tuple[ClusterNode, Engine]] = {}

    def start(self, node_id: str) -> ClusterNode:
        engine = Engine.open(self.base / node_id, log_of_record="external")
        info = NodeInfo(node_id, f"http://127.0.0.1:0/{node_id}", f"127.0.0.1:0/{node_id}", time.time())
        node = ClusterNode(engine, self.urls, info, ttl=6.0, sync_interval=0.2, deadline=WAIT).start()
        self.running[node_id] = (node, engine)
        return node

    def stop(self, node_id: str) -> None:
        node, engine = self.running.pop(node_id)
        node.stop()
        engine.close()

    def stop_all(self) -> None:
        for node_id in list(self.running):
            self.stop(node_id)


@pytest.fixture
def nodes(nats3: NatsCluster, tmp_path: Path) -> Iterator[Nodes]:
    group = Nodes(tmp_path, nats3.urls)
    try:
        yield group
    finally:
        group.stop_all()


def rows(first: int, count: int, seed: int) -> tuple[list[str], np.ndarray, list[dict[str, object]]]:
    rng = np.random.default_rng(seed)
    ids = [f"r{i}" for i in range(first, first + count)]
    return ids, rng.standard_normal((count, DIM)).astype(np.float32), [{"n": i} for i in range(first, first + count)]


def exact_top(ids: list[str], vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    d = ((vectors - query) ** 2).sum(axis=1)
    order = sorted(range(len(ids)), key=lambda i: (d[i], ids[i]))
    return [ids[i] for i in order[:k]]


def test_a_collection_created_on_one_node_is_replicated_to_every_node(nodes: Nodes) -> None:
    n1, n2, n3 = (nodes.start(n) for n in ("n1", "n2", "n3"))
    created = n1.create_collection("docs", DIM, shards=3, replication_factor=3, distance_metric="euclidean")
    assert created.epoch == 1 and all(sorted(owners) == ["n1", "n2", "n3"] for owners in created.replicas)
    with pytest.raises(CollectionExistsError):
        n2.create_collection("docs", DIM, shards=1)
    wait_until("every node holds the three shards", lambda: all(n.held() == {"docs": [0, 1, 2]} for n in (n1, n2, n3)))

    ids, vectors, metadata = rows(0, 300, seed=1)
    acked = n2.insert("docs", ids, vectors, metadata)
    assert sorted(acked) == [0, 1, 2]  # 300 ids reach every shard
    query = vectors[7] + 0.01
    for node in (n1, n2, n3):  # read-your-writes on every node, through the positions the insert returned
        hits = node.search("docs", query, 10, wait_for=acked)
        assert [h["id"] for h in hits] == exact_top(ids, vectors, query, 10)
        assert node.count("docs", wait_for=acked) == 300
    gone = n3.delete("docs", ids[:50])
    for node in (n1, n2, n3):
        assert node.count("docs", wait_for=gone) == 250
        hits = node.search("docs", vectors[3], 5, wait_for=gone)
        assert "r3" not in {h["id"] for h in hits}
    # each shard lives in a local collection of its own, on every node
    engine = nodes.running["n1"][1]
    assert sum(engine.collection(local_name("docs", s)).count() for s in range(3)) == 250
    with pytest.raises(CollectionNotFoundError, match="'nope'"):
        n1.insert("nope", ["a"], np.zeros((1, DIM)))


def test_with_one_replica_per_shard_each_node_holds_its_own(nodes: Nodes) -> None:
    started = [nodes.start(n) for n in ("n1", "n2", "n3")]
    started[0].create_collection("logs", DIM, shards=3, replication_factor=1)
    wait_until("each node holds one shard", lambda: sorted(len(n.held().get("logs", [])) for n in started) == [1, 1, 1])
    ids, vectors, _ = rows(0, 240, seed=2)
    acked = started[1].insert("logs", ids, vectors)
    total = 0
    for node in started:
        (shard,) = node.held()["logs"]
        applier = node._applier("logs", shard)
        assert applier is not None and applier.wait_for(acked[shard], WAIT)
        total += applier.collection.count()
        with pytest.raises(UnavailableError, match="is held by n"):
            node.search("logs", vectors[0], 5)
    assert total == 240


def test_a_read_on_a_node_a_shard_was_just_placed_on_starts_its_replica_rather_than_refuse(nodes: Nodes) -> None:
    """The holder's sync thread has not run since the create on another node (it is stopped here; the node
    stays a member): a read that asks the holder for its replica (with the map it read) has the node sync
    then and gets it, so a strong read right after a create is never refused with "no replica answered
    (tried none)"."""
    n1 = nodes.start("n1")
    n2 = nodes.start("n2")
    n2._stop.set()  # the sync thread ends (stop() later joins it, stops the appliers and leaves)
    n2._wake.set()
    assert n2._thread is not None
    n2._thread.join(WAIT)
    assert not n2._thread.is_alive()
    shard_map = n1.create_collection("fresh", DIM, shards=2, replication_factor=2)
    assert n2._applier("fresh", 0) is None, "the test needs a node that has not synced since the create"
    acked = n1.insert("fresh", ["a", "b", "c"], np.ones((3, DIM), np.float32))
    for shard in (0, 1):
        applier = n2.replica_applier("fresh", shard, shard_map)
        assert applier is not None and applier.running
        assert applier.wait_for(acked.get(shard, 0), WAIT)
    assert sum(a.collection.count() for a in (n2._applier("fresh", 0), n2._applier("fresh", 1)) if a) == 3


def test_when_a_node_leaves_its_shards_move_to_the_others_which_replay_the_logs(nodes: Nodes) -> None:
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    n3 = nodes.start("n3")
    n1.create_collection("docs", DIM, shards=2, replication_factor=2, distance_metric="euclidean")
    wait_until("four replicas placed", lambda: sum(len(n.held().get("docs", [])) for n in (n1, n2, n3)) == 4)
    ids, vectors, metadata = rows(0, 200, seed=3)
    acked = n3.insert("docs", ids, vectors, metadata)
    nodes.stop("n3")  # a clean stop: it leaves the membership at once
    wait_until("n1 and n2 hold both shards", lambda: n1.held() == {"docs": [0, 1]} and n2.held() == {"docs": [0, 1]})
    shard_map = n1.shard_map("docs")
    assert shard_map.epoch >= 2 and all(sorted(owners) == ["n1", "n2"] for owners in shard_map.replicas)
    for node in (n1, n2):  # a replica that is new here replayed the log from its first entry
        assert node.count("docs", wait_for=acked) == 200
        hits = node.search("docs", vectors[11], 10, wait_for=acked)
        assert [h["id"] for h in hits] == exact_top(ids, vectors, vectors[11], 10)
    more_ids, more_vectors, _ = rows(200, 20, seed=4)
    again = n1.insert("docs", more_ids, more_vectors)
    assert n2.count("docs", wait_for=again) == 220


class WatchedLock:
    """A node's sync lock that tells when the thread named ``watched`` has to wait for it."""

    def __init__(self, lock: Any, watched: str) -> None:
        self.lock, self.watched, self.waits = lock, watched, threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.lock.acquire(blocking=False):
            return True
        if threading.current_thread().name == self.watched:
            self.waits.set()
        return bool(self.lock.acquire(blocking, timeout))

    def release(self) -> None:
        self.lock.release()


def test_a_sync_that_read_the_maps_before_a_drop_and_re_create_does_not_bring_the_old_collection_back(
        nodes: Nodes) -> None:
    """A pass that read the maps before a drop and re-create of the name, still acting on them: the drop's own
    pass waits for it (passes run one at a time), so it never stops the new collection's replica nor re-creates
    the dropped one's deleted log."""
    n1 = nodes.start("n1")
    old = n1.create_collection("del", DIM, shards=1, replication_factor=1)
    n1.insert("del", ["a"], np.ones((1, DIM), np.float32))
    assert n1.maps is not None
    read_all, paused, go = n1.maps.all, threading.Event(), threading.Event()

    def all_then_pause() -> list[ShardMap]:
        found = read_all()
        if threading.current_thread().name == "stale":
            paused.set()
            go.wait(WAIT)
        return found

    n1.maps.all = all_then_pause  # type: ignore[method-assign]
    n1._sync_lock = WatchedLock(n1._sync_lock, "drop")  # type: ignore[assignment]
    stale = threading.Thread(target=n1.sync, name="stale")
    stale.start()
    assert paused.wait(WAIT)
    made: list[ShardMap] = []
    drop = threading.Thread(target=lambda: (n1.drop_collection("del"),
                                            made.append(n1.create_collection("del", DIM, shards=1))), name="drop")
    drop.start()
    wait_until("the drop waits for the pass in progress, or is done",
               lambda: n1._sync_lock.waits.is_set() or not drop.is_alive())  # type: ignore[attr-defined]
    go.set()
    stale.join(WAIT)
    drop.join(WAIT)
    assert not stale.is_alive() and not drop.is_alive() and made
    acked = n1.insert("del", ["b", "c"], np.ones((2, DIM), np.float32))
    assert n1.count("del", wait_for=acked) == 2  # the new collection's rows only
    applier = n1._applier("del", 0)
    assert applier is not None and applier.log.name == shard_log_name(made[0], 0)
    session = n1.session
    assert session is not None

    async def streams() -> list[str]:
        return [info.config.name for info in await session.js.streams_info()]

    assert stream_name(shard_log_name(old, 0)) not in session.call(streams, "listing streams")


def test_a_sync_that_read_the_members_before_a_node_joined_does_not_place_it_away(nodes: Nodes) -> None:
    """n3 joins and places itself while a pass of n1 that read the live nodes before (n1, n2) is under way: that
    pass must not take n3 out of the map again (it reads the live nodes again before it changes a map)."""
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    n1.create_collection("docs", DIM, shards=2, replication_factor=3)
    assert n1.membership is not None
    read_nodes, paused, go = n1.membership.nodes, threading.Event(), threading.Event()

    def nodes_then_pause() -> list[NodeInfo]:
        found = read_nodes()
        if threading.current_thread().name == "stale" and not paused.is_set():
            paused.set()
            go.wait(WAIT)
        return found

    n1.membership.nodes = nodes_then_pause  # type: ignore[method-assign]
    stale = threading.Thread(target=n1.sync, name="stale")
    stale.start()
    assert paused.wait(WAIT)
    n3 = nodes.start("n3")  # joins, and its first pass places it: every shard on n1, n2, n3
    assert all(sorted(owners) == ["n1", "n2", "n3"] for owners in n3.shard_map("docs").replicas)
    go.set()
    stale.join(WAIT)
    assert not stale.is_alive()
    assert all(sorted(owners) == ["n1", "n2", "n3"] for owners in n1.shard_map("docs").replicas)
    assert n2.shard_map("docs").epoch == 2  # placed once, never taken back


CHILD = Path(__file__).parent / "_node_child.py"


def child_node(data_dir: Path, urls: list[str], node_id: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), str(data_dir), ",".join(urls), node_id, "docs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(cwd))


def reports_wait_until(child: subprocess.Popen[str], what: str, check) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Read the child's JSON lines until one satisfies ``check``."""
    end = time.monotonic() + WAIT
    assert child.stdout is not None
    while time.monotonic() < end:
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"{what}: the node process ended: {child.stderr.read() if child.stderr else ''}")
        report = json.loads(line)
        if check(report):
            return report  # type: ignore[no-any-return]
    raise AssertionError(f"{what}: not within {WAIT:g}s")


def test_a_node_killed_with_sigkill_is_replaced_and_catches_up_when_it_returns(
        nodes: Nodes, nats3: NatsCluster, tmp_path: Path) -> None:
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    child = child_node(tmp_path / "n3", nats3.urls, "n3", tmp_path)
    try:
        wait_until("n3 is a member", lambda: "n3" in [m.id for m in n1.membership.nodes()])  # type: ignore[union-attr]
        n1.create_collection("docs", DIM, shards=2, replication_factor=3, distance_metric="euclidean")
        ids, vectors, _ = rows(0, 150, seed=5)
        n1.insert("docs", ids, vectors)
        reports_wait_until(child, "n3 applied the first rows", lambda r: r["held"] == [0, 1] and r["count"] == 150)
        child.kill()  # SIGKILL: no leave, no checkpoint; its membership key expires
        child.wait(timeout=30)
        wait_until("the map drops n3", lambda: all("n3" not in o for o in n1.shard_map("docs").replicas))
        more_ids, more_vectors, _ = rows(150, 100, seed=6)
        second = n2.insert("docs", more_ids, more_vectors)  # written while n3 is down
        assert n1.count("docs", wait_for=second) == 250 and n2.count("docs", wait_for=second) == 250
        child = child_node(tmp_path / "n3", nats3.urls, "n3", tmp_path)  # the same directory, back
        reports_wait_until(child, "n3 back with every row", lambda r: r["held"] == [0, 1] and r["count"] == 250)
        assert all(sorted(o) == ["n1", "n2", "n3"] for o in n1.shard_map("docs").replicas)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def log_exists(node: ClusterNode, shard_map: ShardMap, shard: int) -> bool:
    """Whether the stream of ``shard``'s log is on the servers (asked directly, never made)."""
    from nats.js.errors import NotFoundError

    session = node.session
    assert session is not None

    async def info() -> bool:
        try:
            await session.js.stream_info(stream_name(shard_log_name(shard_map, shard)))
            return True
        except NotFoundError:
            return False

    return session.call(info, "stream info")


def test_an_append_racing_a_drop_fails_at_once_and_never_makes_the_log_again(nodes: Nodes) -> None:
    """A write that read the collection's map just before another node dropped it appends after the drop:
    the log is gone, so the append fails with CollectionNotFoundError at once (not an outage's retries for
    the whole deadline), on a node that still holds the log open and on one that closed it, and the log
    is not made again (only a create makes one)."""
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    ids, vectors, metadata = rows(0, 20, seed=8)
    n1.create_collection("race", DIM, shards=2, replication_factor=2, distance_metric="euclidean")
    n2.insert("race", ids, vectors, metadata)  # n2 has both logs open now
    stale = n2.shard_map("race")  # what the racing write read
    assert all(log_exists(n1, stale, shard) for shard in (0, 1))
    n1.drop_collection("race")  # n1 deleted the logs and closed its handles
    payload = encode_insert(ids=["late"], vectors=vectors[:1], metadata=None, upsert=False)
    for node in (n2, n1):
        for shard in (0, 1):
            started = time.monotonic()
            with pytest.raises(CollectionNotFoundError, match="dropped"):
                node.append(stale, shard, payload)
            assert time.monotonic() - started < 10, "answered as a missing log, not retried as an outage"
    with pytest.raises(CollectionNotFoundError):
        n2.insert("race", ["later"], vectors[:1])  # the ordinary path reads the map first
    assert not any(log_exists(n1, stale, shard) for shard in (0, 1)), "an append made a dropped log again"
    # a create of the name afterwards gets new logs, which work
    again = n2.create_collection("race", DIM, shards=2, replication_factor=2, distance_metric="euclidean")
    assert all(log_exists(n1, again, shard) and not log_exists(n1, stale, shard) for shard in (0, 1))
    assert n2.count("race", wait_for=n1.insert("race", ids, vectors, metadata)) == 20


def test_retention_of_a_dropped_log_is_done_at_once(nodes: Nodes, nats3: NatsCluster) -> None:
    """Purging a log whose collection was dropped (a sync pass that read the map before the drop) finds
    nothing to purge and returns at once: not a retry of "not found" as an outage for the node's deadline."""
    n1 = nodes.start("n1")
    created = n1.create_collection("gone", DIM, shards=1, replication_factor=1, distance_metric="euclidean")
    ids, vectors, _ = rows(0, 10, seed=9)
    n1.insert("gone", ids, vectors)
    held = JetStreamLog(nats3.urls, shard_log_name(created, 0), deadline=20.0)  # opened before the drop
    try:
        n1.drop_collection("gone")
        retention = LogRetention("n1", retain=0)
        report = {"n1": NodeInfo("n1", "", "", 0.0, {}, {"gone/0": 8})}  # every holder checkpointed entry 8
        started = time.monotonic()
        assert retention.run(created, 0, report, held, held.name) is None
        held.purge_below(5)  # nothing left to purge: done
        with pytest.raises(LogDeletedError):
            held.first_seq()
        assert time.monotonic() - started < 10, "answered as a missing log, not retried as an outage"
        assert retention.purged_entries == 0 and not log_exists(n1, created, 0)
    finally:
        held.close()


def test_a_create_that_loses_the_race_for_its_name_leaves_no_logs(nodes: Nodes,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two creates of one name: the loser made its logs before it found the winner's map, and deletes them.
    (n2's look for an existing map is made to miss once: the winner wrote its map just after that look.)"""
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    first = n1.create_collection("twice", DIM, shards=2, replication_factor=2, distance_metric="euclidean")
    looked: list[str] = []
    real_get = n2.maps.get  # type: ignore[union-attr]

    def get_after_the_race(name: str) -> Any:
        looked.append(name)
        return None if len(looked) == 1 else real_get(name)

    monkeypatch.setattr(n2.maps, "get", get_after_the_race)
    with pytest.raises(CollectionExistsError):
        n2.create_collection("twice", DIM, shards=2, replication_factor=2, distance_metric="cosine")
    assert len(looked) == 2, "the loser read the map again after its create failed"
    session = n1.session
    assert session is not None

    async def names() -> set[str]:
        return {info.config.name for info in await session.js.streams_info() if info.config.name.startswith("PXDB_")}

    assert session.call(names, "listing streams") == {stream_name(shard_log_name(first, s)) for s in (0, 1)}


def test_only_a_stream_leaders_answer_counts() -> None:
    """While a replicated stream has no leader (an election), NATS lets each member answer a stream info request
    with its own state, maybe behind what was acknowledged (cluster.leader empty): last_seqs, which bounded reads
    wait for, takes a leader's answer only; a stream of one unclustered server has no cluster info at all."""
    from nats.js.api import ClusterInfo, StreamConfig, StreamInfo, StreamState

    from proximadb.cluster.nats_session import leader_answered

    def info(cluster: ClusterInfo | None) -> StreamInfo:
        state = StreamState(messages=3, bytes=30, first_seq=1, last_seq=3, consumer_count=0)
        return StreamInfo(config=StreamConfig(name="S"), state=state, cluster=cluster)

    assert leader_answered(info(ClusterInfo(leader="n1", name="c")))
    assert not leader_answered(info(ClusterInfo(leader=None, name="c")))
    assert not leader_answered(info(ClusterInfo(leader="", name="c")))
    assert leader_answered(info(None))


def test_a_read_barrier_comes_after_every_acknowledged_write_and_changes_nothing(nodes: Nodes) -> None:
    """What strong reads wait for (log_positions.barrier_seqs): an entry appended to each shard log, after
    every write acknowledged before it, which every replica applies as a change of nothing; a dropped
    collection's logs answer LogDeletedError at once, never an outage's retries (and are not made again)."""
    from proximadb.cluster.log_positions import BARRIER

    n1, n2 = nodes.start("n1"), nodes.start("n2")
    ids, vectors, metadata = rows(0, 30, seed=11)
    n1.create_collection("fence", DIM, shards=2, replication_factor=2, distance_metric="euclidean")
    wait_until("both nodes hold both shards", lambda: all(n.held() == {"fence": [0, 1]} for n in (n1, n2)), WAIT)
    acked = n1.insert("fence", ids, vectors, metadata)
    shard_map = n2.shard_map("fence")
    barrier = n2.barrier_seqs(shard_map, [0, 1])
    assert barrier == [acked[0] + 1, acked[1] + 1], (barrier, acked)  # nothing else was written in between
    assert n1.last_seqs(shard_map, [0, 1]) == barrier  # the barriers, last in each log
    again = n1.barrier_seqs(shard_map, [1])
    assert again == [barrier[1] + 1]  # the first barrier is below the second
    for node in (n1, n2):  # applied on every replica, nothing changed
        assert node.count("fence", wait_for={0: barrier[0], 1: again[0]}) == 30
        hits = node.search("fence", vectors[0], k=30, include_metadata=True)
        assert sorted((h["id"], h["metadata"]["n"]) for h in hits) == sorted(zip(ids, range(30), strict=True))
    entries = JetStreamLog(nodes.urls, shard_log_name(shard_map, 0)).read(barrier[0], 1)
    assert [bytes(e.payload) for e in entries] == [BARRIER]
    n1.drop_collection("fence")
    started = time.monotonic()
    with pytest.raises(LogDeletedError, match="dropped"):
        n2.barrier_seqs(shard_map, [0, 1])
    assert time.monotonic() - started < 10, "answered as a missing log, not retried as an outage"
    assert not any(log_exists(n1, shard_map, shard) for shard in (0, 1)), "a barrier made a dropped log again"


def test_strong_reads_one_after_another_wait_for_no_barrier_only_for_writes(nodes: Nodes) -> None:
    """A strong read's target is below its barrier; when only this node's earlier barriers lie between, below
    those too (read_target.ReadTargets._below), so back-to-back strong reads on a node never wait for their
    own barriers to be applied. Another node's barrier or a write in between breaks the chain: the target is
    then just below the new barrier, above that write."""
    from proximadb import consistency
    from proximadb.cluster.read_target import ReadTargets

    n1, n2 = nodes.start("n1"), nodes.start("n2")
    ids, vectors, metadata = rows(0, 10, seed=12)
    n1.create_collection("chain", DIM, shards=1, replication_factor=2, distance_metric="euclidean")
    shard_map = n2.shard_map("chain")
    acked = n1.insert("chain", ids, vectors, metadata)
    reads = ReadTargets(n2)
    with consistency.reading("strong"):
        assert [reads.targets(shard_map, [0]) for _ in range(3)] == [[acked[0]]] * 3
    written = n1.insert("chain", ["late"], vectors[:1])
    n1.barrier_seqs(shard_map, [0])  # n1's barrier, above the write
    with consistency.reading("strong"):
        (target,) = reads.targets(shard_map, [0])
    assert target == n1.last_seqs(shard_map, [0])[0] - 1 and target > written[0]
    with consistency.reading("bounded"):  # the strong read's target, cached; no barrier appended
        assert reads.targets(shard_map, [0]) == [target]
    assert n1.last_seqs(shard_map, [0]) == [target + 1]
