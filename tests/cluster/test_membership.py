"""Membership (heartbeats with a TTL), placement, and revision-checked shard maps, on real NATS servers.

proximadb/cluster/membership.py, placement.py and shard_map.py. Placement is a pure function
and is checked against its rules with hypothesis; membership and the maps run against three
nats-server processes on 127.0.0.1, and a member that dies is a real process killed with
SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.cluster.membership import Membership, NodeInfo
from proximadb.cluster.nats_servers import NatsCluster
from proximadb.cluster.nats_session import NatsSession
from proximadb.cluster.placement import place
from proximadb.cluster.shard_map import ShardMap, ShardMaps
from proximadb.errors import CollectionExistsError, CollectionNotFoundError, ValidationError

WAIT = 60.0  # generous: the servers drop an expired key within a few seconds of its TTL, more when loaded
TTL = 6.0  # a beat every 2 s: a member drops out only after 6 s without one, far beyond a loaded pause

node_names = st.lists(st.sampled_from([f"n{i}" for i in range(1, 9)]), min_size=1, max_size=8, unique=True)


# -- placement: a pure function --

@settings(max_examples=300, deadline=None)
@given(shards=st.integers(1, 12), rf=st.integers(1, 4), nodes=node_names)
def test_a_new_placement_is_complete_distinct_and_balanced(shards: int, rf: int, nodes: list[str]) -> None:
    placed = place("docs", shards, rf, nodes)
    want = min(rf, len(nodes))
    assert len(placed) == shards
    for owners in placed:
        assert len(owners) == want and len(set(owners)) == want and set(owners) <= set(nodes)
    load = [sum(node in owners for owners in placed) for node in nodes]
    assert max(load) - min(load) <= 1
    assert place("docs", shards, rf, list(reversed(nodes))) == placed  # every node computes the same


@settings(max_examples=300, deadline=None)
@given(shards=st.integers(1, 12), rf=st.integers(1, 4), before=node_names, after=node_names)
def test_a_replacement_keeps_every_live_holder_and_moves_only_what_it_must(
        shards: int, rf: int, before: list[str], after: list[str]) -> None:
    previous = place("docs", shards, rf, before)
    placed = place("docs", shards, rf, after, previous)
    want = min(rf, len(after))
    for old, new in zip(previous, placed, strict=True):
        assert len(new) == want and len(set(new)) == want and set(new) <= set(after)
        kept = [node for node in old if node in after]
        assert new[:len(kept)] == kept[:want]  # holders still alive stay, in their order
    assert place("docs", shards, rf, after, placed) == placed  # nothing changed: nothing moves


def test_placement_refuses_impossible_shapes() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        place("docs", 0, 1, ["n1"])
    with pytest.raises(ValidationError, match="2 shards, not 3"):
        place("docs", 3, 1, ["n1"], [["n1"], ["n1"]])


# -- membership on real servers --

@pytest.fixture
def session(nats3_shared: NatsCluster) -> Iterator[NatsSession]:
    s = NatsSession(nats3_shared.urls, "test-session", deadline=WAIT)
    try:
        yield s
    finally:
        s.close()


def info(node_id: str) -> NodeInfo:
    return NodeInfo(node_id, f"http://127.0.0.1:{5000 + int(node_id[1:])}", f"127.0.0.1:{6000 + int(node_id[1:])}",
                    time.time())


def live_ids(members: Membership) -> list[str]:
    return [n.id for n in members.nodes()]


def test_nodes_that_join_are_listed_and_one_that_leaves_is_gone_at_once(session: NatsSession) -> None:
    members = [Membership(session, info(f"n{i}"), ttl=TTL).join() for i in (1, 2, 3)]
    try:
        assert live_ids(members[0]) == ["n1", "n2", "n3"]
        assert members[1].nodes()[0] == members[0].node  # what a node wrote is what the others read
        members[2].leave()
        assert live_ids(members[0]) == ["n1", "n2"]
        # the others keep beating past a whole TTL (a beat every TTL/3): they stay listed
        wait_until("a TTL of beats of n1 and n2", lambda: min(m.beats for m in members[:2]) >= 5)
        assert live_ids(members[1]) == ["n1", "n2"]
    finally:
        for m in members[:2]:
            m.leave()
    assert live_ids(members[0]) == []


def test_a_member_that_stops_beating_drops_out_after_its_ttl_and_returns_with_its_next_beat(
        session: NatsSession) -> None:
    a, b = Membership(session, info("n4"), ttl=TTL).join(), Membership(session, info("n5"), ttl=TTL).join()
    try:
        b.stop_beating()  # a hung node: no delete, the key just ages
        wait_until("n5 expired", lambda: live_ids(a) == ["n4"])
        b.heartbeat()
        assert live_ids(a) == ["n4", "n5"]
    finally:
        a.leave()
        b.leave()


CHILD = """
import sys, time
from proximadb.cluster.membership import Membership, NodeInfo
from proximadb.cluster.nats_session import NatsSession
session = NatsSession(sys.argv[1].split(","), "child", deadline=60.0)
node = NodeInfo("n9", "http://127.0.0.1:5999", "127.0.0.1:6999", time.time())
Membership(session, node, ttl=float(sys.argv[2])).join()
print("joined", flush=True)
time.sleep(3600)
"""


def test_a_member_killed_with_sigkill_drops_out(session: NatsSession, nats3_shared: NatsCluster,
                                                tmp_path: Path) -> None:
    watcher = Membership(session, info("n6"), ttl=TTL).join()
    child = subprocess.Popen([sys.executable, "-c", CHILD, ",".join(nats3_shared.urls), str(TTL)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "joined", child.stderr.read() if child.stderr else line
        assert "n9" in live_ids(watcher)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        wait_until("n9 expired after its SIGKILL", lambda: "n9" not in live_ids(watcher))
        assert live_ids(watcher) == ["n6"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        watcher.leave()


def test_a_bad_node_id_or_ttl_is_refused(session: NatsSession) -> None:
    with pytest.raises(ValidationError, match="node id 'n 1'"):
        Membership(session, NodeInfo("n 1", "", "", 0.0))
    with pytest.raises(ValidationError, match="at least 1 s"):
        Membership(session, info("n7"), ttl=0.5)


# -- shard maps: every change revision-checked --

def test_a_shard_map_is_created_once_and_replaced_when_nodes_change(session: NatsSession) -> None:
    maps = ShardMaps(session)
    first = maps.create("docs.v1.", 4, 3, ["n1", "n2", "n3"])  # a name no key could hold as it is
    assert first.epoch == 1 and all(sorted(r) == ["n1", "n2", "n3"] for r in first.replicas)
    with pytest.raises(CollectionExistsError, match=r"docs\.v1\."):
        maps.create("docs.v1.", 2, 1, ["n1"])
    found = maps.get("docs.v1.")
    assert found is not None and found[0] == first
    assert maps.rebalance("docs.v1.", ["n1", "n2", "n3"]) == first  # nothing moved: nothing written
    assert maps.get("docs.v1.") == found
    moved = maps.rebalance("docs.v1.", ["n1", "n2", "n4"])  # n3 left, n4 joined
    assert moved.epoch == 2 and all(sorted(r) == ["n1", "n2", "n4"] for r in moved.replicas)
    assert ShardMap.decode(moved.encode()) == moved and [m.collection for m in maps.all()] == ["docs.v1."]
    assert moved.shards_of("n4") == [0, 1, 2, 3]
    maps.drop("docs.v1.")
    assert maps.get("docs.v1.") is None
    with pytest.raises(CollectionNotFoundError, match=r"docs\.v1\."):
        maps.rebalance("docs.v1.", ["n1"])


def test_concurrent_changes_from_two_connections_are_never_lost(nats3_shared: NatsCluster) -> None:
    """Two sessions (two nodes) each bump the epoch 25 times at once: every bump lands exactly once."""
    sessions = [NatsSession(nats3_shared.urls, f"node-{i}", deadline=WAIT) for i in range(2)]
    try:
        stores = [ShardMaps(s) for s in sessions]
        stores[0].create("race", 2, 1, ["n1"])
        seen: list[list[int]] = [[], []]

        def bump(i: int) -> None:
            for _ in range(25):
                done = stores[i].change("race", lambda m: ShardMap(m.collection, m.shards, m.replication_factor,
                                                                    m.epoch + 1, m.replicas))
                seen[i].append(done.epoch)

        threads = [threading.Thread(target=bump, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = stores[1].get("race")
        assert final is not None and final[0].epoch == 51
        assert sorted(seen[0] + seen[1]) == list(range(2, 52))  # each write based on the one before it
        stores[0].drop("race")
    finally:
        for s in sessions:
            s.close()


def test_the_node_info_format(tmp_path: Path) -> None:
    node = NodeInfo("n1", "http://127.0.0.1:5678", "127.0.0.1:5679", 1764934800.5)
    assert json.loads(node.encode()) == {"id": "n1", "rest": "http://127.0.0.1:5678", "grpc": "127.0.0.1:5679",
                                         "started_at": 1764934800.5, "applied": {}, "checkpointed": {}}
    assert NodeInfo.decode(node.encode()) == node
    beating = NodeInfo("n2", "", "", 1.0, {"docs/0": 12}, {"docs/0": 10})
    assert NodeInfo.decode(beating.encode()) == beating


def test_reads_go_to_a_holder_that_has_the_entry_then_here_then_the_least_loaded() -> None:
    from proximadb.cluster.fanout import rank

    def info(node: str, applied: int, rest: str = "http://x") -> NodeInfo:
        return NodeInfo(node, rest, "", 0.0, {"docs/0": applied})

    live = {"n2": info("n2", 10), "n3": info("n3", 4), "n4": info("n4", 10), "n5": info("n5", 10, rest="")}
    holders = ["n1", "n2", "n3", "n4", "n5", "n6"]  # n5 has no REST address, n6 is not live
    # Here (n1) has the entry: here first; then the peers that have it, least loaded first; the laggard last.
    assert rank("n1", "docs/0", 8, holders, live, 9, {"n2": 3, "n4": 1}) == ["n1", "n4", "n2", "n3"]
    # Here is behind (or still catching up): the peers that have the entry go before it.
    assert rank("n1", "docs/0", 8, holders, live, 5, {"n2": 0, "n4": 2}) == ["n2", "n4", "n1", "n3"]
    assert rank("n1", "docs/0", 0, holders, live, -1, {})[-1] == "n1"
    # No replica here: only peers; with equal load either may come first, and both do over many reads.
    firsts = {rank("n1", "docs/0", 8, holders, live, None, {})[0] for _ in range(200)}
    assert firsts == {"n2", "n4"}
