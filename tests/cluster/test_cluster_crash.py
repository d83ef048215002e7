"""Cluster crash test: SIGKILL daemons of a dev-cluster (3 NATS servers, 3 daemons) under concurrent writes
and reads, restart them, and check every replica afterwards.

Writer threads (one over gRPC, one over REST; SDK clients given every node's address, so they move to
another node when theirs dies) insert, upsert and delete under ids of their own and record each write's
outcome: acknowledged, or uncertain (the call raised: it may or may not have been applied). A reader
thread keeps counting and searching through a failover client and records each answer's time and outcome;
a strong reader reads single records with ``consistency="strong"`` and none may miss a write acknowledged
before the read began (:func:`stale_strong_reads`, over the recorded histories).
Meanwhile one daemon after another is SIGKILLed (its process group: master and worker) and, once reads
and writes were served without it, started again with the same command line (DevCluster.kill/restart).

Afterwards, on EVERY node, each shard's local replica (``<collection>.s<shard>@0``: that node's own copy,
not a fan-out) must — once it caught up, waited for as a condition with a deadline — hold:

* every id whose last acknowledged write was an insert or upsert, with that write's vector and metadata,
  or a later uncertain write's (an uncertain write after the last acknowledged one may have landed);
* no id whose last acknowledged write was a delete, unless a later uncertain insert/upsert may have landed;
* the same rows as the shard's other replicas (they apply the same log), and only ids of that shard.

Default: 2 kills on different nodes. ``PROXIMADB_SLOW=1`` (``slow`` marker): 8 kills, every third one
wiping the node's data directory (it rebuilds from a peer's snapshot and the log);
``PROXIMADB_CLUSTER_KILLS`` overrides the number.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _devcluster import DevCluster
from _support import wait_until

from proximadb.cluster.nats_servers import stream_leader
from proximadb.cluster.placement import shard_of
from proximadb.errors import ProximaDBError
from proximadb.sdk import connect_grpc, connect_rest

DIM = 8
SHARDS = 2
NAME = "chaos"
WAIT = 120.0
IDS_PER_WRITER = 400

Effect = tuple[Any, ...] | None  # (writer, id number, version) of the value a write leaves; None: absent


def vector_of(effect: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(list(effect)).normal(size=DIM).astype(np.float32)


@dataclass
class History:
    """Per id, every write in the order its writer made them: (effect, acknowledged)."""

    writes: dict[str, list[tuple[Effect, bool]]] = field(default_factory=dict)
    ended: dict[str, list[float]] = field(default_factory=dict)  # per id, when each write's call returned
    acked_at: list[tuple[float, list[str]]] = field(default_factory=list)  # acknowledged calls: (when, ids)
    uncertain: int = 0

    def record(self, ids: list[str], effects: list[Effect], acked: bool) -> None:
        now = time.monotonic()
        for id_, effect in zip(ids, effects, strict=True):
            self.ended.setdefault(id_, []).append(now)  # before the write itself: a reader pairs them by index
            self.writes.setdefault(id_, []).append((effect, acked))
        if acked:
            self.acked_at.append((time.monotonic(), ids))
        else:
            self.uncertain += 1

    def acked_since(self, start: float, shard: int | None = None) -> int:
        """Acknowledged calls since ``start`` (with ``shard``: those that wrote to that shard)."""
        return sum(1 for at, ids in list(self.acked_at)
                   if at >= start and (shard is None or any(shard_of(i, SHARDS) == shard for i in ids)))

    def allowed(self, id_: str) -> list[Effect]:
        """The states the id may be in: the last acknowledged write's, or any later uncertain one's."""
        writes = self.writes[id_]
        last = max((i for i, (_, acked) in enumerate(writes) if acked), default=-1)
        base: list[Effect] = [None] if last < 0 else [writes[last][0]]
        return base + [effect for effect, _ in writes[last + 1:]]


class Writer(threading.Thread):
    """Inserts fresh ids, upserts and deletes ids it wrote before, under ids ``w<n>-*`` of its own."""

    def __init__(self, number: int, client: Any, stop: threading.Event) -> None:
        super().__init__(name=f"writer-{number}", daemon=True)
        self.number, self.client, self.stop = number, client, stop
        self.history = History()
        self.rng = random.Random(number)
        self.version = 0
        self.error: BaseException | None = None

    def id_of(self, i: int) -> str:
        return f"w{self.number}-{i}"

    def run(self) -> None:
        fresh = 0
        try:
            while not self.stop.is_set():
                kind = self.rng.random()
                if fresh < 20 or (kind < 0.3 and fresh < IDS_PER_WRITER):
                    numbers = list(range(fresh, min(fresh + 5, IDS_PER_WRITER)))
                    fresh = numbers[-1] + 1
                    self.write("insert", numbers)
                elif kind < 0.8:
                    self.write("upsert", self.rng.sample(range(fresh), 4))
                else:
                    self.write("delete", self.rng.sample(range(fresh), 2))
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def write(self, kind: str, numbers: list[int]) -> None:
        ids = [self.id_of(i) for i in numbers]
        effects: list[Effect] = []
        for i in numbers:
            self.version += 1
            effects.append(None if kind == "delete" else (self.number, i, self.version))
        try:
            if kind == "delete":
                self.client.delete_vectors(NAME, ids)
            else:
                vectors = np.stack([vector_of(e) for e in effects if e is not None])
                metadatas = [{"w": self.number, "v": e[2]} for e in effects if e is not None]
                call = self.client.upsert_vectors if kind == "upsert" else self.client.insert_vectors
                call(NAME, ids=ids, vectors=vectors, metadatas=metadatas)
        except ProximaDBError:
            self.history.record(ids, effects, acked=False)
            return
        self.history.record(ids, effects, acked=True)


class Reader(threading.Thread):
    """Counts and searches through a failover client; records (monotonic time, succeeded) per call."""

    def __init__(self, client: Any, stop: threading.Event) -> None:
        super().__init__(name="reader", daemon=True)
        self.client, self.stop = client, stop
        self.calls: list[tuple[float, bool]] = []
        self.rng = np.random.default_rng(5)

    def run(self) -> None:
        while not self.stop.is_set():
            for call in (lambda: self.client.count(NAME),
                         lambda: self.client.search(NAME, self.rng.normal(size=DIM).astype(np.float32), k=5)):
                try:
                    call()
                    ok = True
                except ProximaDBError:
                    ok = False
                self.calls.append((time.monotonic(), ok))

    def successes_since(self, start: float) -> int:
        return sum(1 for at, ok in list(self.calls) if ok and at >= start)

    def failures_per_second(self) -> dict[int, int]:
        calls = list(self.calls)
        if not calls:
            return {}
        first = calls[0][0]
        out: dict[int, int] = {}
        for at, ok in calls:
            if not ok:
                out[int(at - first)] = out.get(int(at - first), 0) + 1
        return out


class StrongReader(threading.Thread):
    """Reads one record at a time with consistency="strong" through a failover client, and records
    (when the read started, id, the effect it saw) for :func:`stale_strong_reads`."""

    def __init__(self, client: Any, writers: list[Writer], stop: threading.Event) -> None:
        super().__init__(name="strong-reader", daemon=True)
        self.client, self.writers, self.stop = client, writers, stop
        self.reads: list[tuple[float, str, Effect]] = []
        self.failed = 0
        self.rng = random.Random(9)

    def run(self) -> None:
        while not self.stop.is_set():
            ids = list(self.rng.choice(self.writers).history.writes)
            if not ids:
                self.stop.wait(0.05)
                continue
            id_ = self.rng.choice(ids)
            started = time.monotonic()
            try:
                found = self.client.get_vectors(NAME, [id_], include_vectors=False, consistency="strong")
            except ProximaDBError:
                self.failed += 1
                continue
            meta = found[0]["metadata"] if found else None
            self.reads.append((started, id_, None if meta is None else (meta["w"], int(id_.split("-")[1]), meta["v"])))


def stale_strong_reads(reader: StrongReader, writers: list[Writer]) -> list[str]:
    """Strong reads that missed a write acknowledged before they started: a read may see the last write whose
    call returned acknowledged before the read began, or any later write (acknowledged, uncertain, or made
    while the read ran), nothing older."""
    stale = []
    for started, id_, seen in reader.reads:
        history = next(w.history for w in writers if id_ in w.history.writes)
        writes, ended = history.writes[id_], history.ended[id_]
        last = max((i for i, (_, acked) in enumerate(writes) if acked and ended[i] < started), default=-1)
        allowed = ([None] if last < 0 else [writes[last][0]]) + [effect for effect, _ in writes[last + 1:]]
        if seen not in allowed:
            stale.append(f"strong read of {id_} at {started:.3f} saw {seen}; allowed {allowed}")
    return stale


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


def check_every_replica(cluster: DevCluster, writers: list[Writer]) -> History:
    """Wait until every node's replica of every shard holds what the writers recorded (:func:`replica_problems`);
    the first problems as the AssertionError when that does not come. Returns the writers' merged history."""
    history = History()
    for writer in writers:
        history.writes.update(writer.history.writes)
    direct = [cluster.rest(i) for i in range(len(cluster.doc["nodes"]))]
    problems: list[str] = []

    def converged() -> bool:
        problems[:] = replica_problems(direct, history)
        return not problems

    try:
        wait_until("every replica caught up and holds every acknowledged write", converged, WAIT)
    except AssertionError:
        raise AssertionError("\n".join(problems[:30])) from None
    return history


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



def replica_problems(direct: list[Any], history: History) -> list[str]:
    """What is wrong with the replicas now (empty: every replica holds what the history allows, alike)."""
    problems: list[str] = []
    placement = direct[0].get_collection(NAME)["placement"]
    if any(len(set(holders)) != len(direct) for holders in placement):
        return [f"not every node holds every shard yet: {placement}"]
    for shard in range(SHARDS):
        rows: list[dict[str, Any]] = []
        for i, client in enumerate(direct):
            try:
                rows.append(scroll_all(client, f"{NAME}.s{shard}@0"))
            except ProximaDBError as exc:
                problems.append(f"node {i} shard {shard}: {exc!r}")
                rows.append({})
        for i, got in enumerate(rows):
            where = f"node {i} shard {shard}"
            for id_ in got:
                if id_ not in history.writes or shard_of(id_, SHARDS) != shard:
                    problems.append(f"{where}: {id_!r} was never written to this shard")
            for id_ in history.writes:
                if shard_of(id_, SHARDS) != shard:
                    continue
                state = state_of(got.get(id_))
                if state not in history.allowed(id_):
                    problems.append(f"{where}: {id_!r} is {state}, allowed {history.allowed(id_)}")
        for i, got in enumerate(rows[1:], start=1):
            if got != rows[0]:
                differ = sorted(k for k in set(got) | set(rows[0]) if got.get(k) != rows[0].get(k))
                problems.append(f"shard {shard}: node {i}'s replica differs from node 0's at {differ[:5]} "
                                f"({len(got)} vs {len(rows[0])} rows)")
    return problems


def state_of(record: dict[str, Any] | None) -> Effect:
    """The write a stored record shows (its metadata names it), checked against that write's vector."""
    if record is None:
        return None
    writer, number = (int(p) for p in record["id"][1:].split("-"))
    effect = (writer, number, int(record["metadata"]["v"]))
    stored = np.asarray(record["vector"], np.float32)
    if record["metadata"]["w"] != writer or not np.array_equal(stored, vector_of(effect)):
        return ("mismatched vector or metadata", *effect)
    return effect


def scroll_all(client: Any, name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        page, cursor = client.scroll(name, limit=500, cursor=cursor, include_vectors=True)
        for record in page:
            out[record["id"]] = {"id": record["id"], "metadata": record["metadata"],
                                 "vector": tuple(np.asarray(record["vector"], dtype=np.float32).tolist())}
        if cursor is None:
            return out


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
