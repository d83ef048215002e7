"""The workload of the cluster chaos tests (crash, daemon partition, NATS partition) and its checker.

Writer threads (SDK clients given every node's address, so they move to another node when theirs fails)
insert, upsert and delete under ids of their own and record each write's outcome in a :class:`History`:
acknowledged, or uncertain (the call raised: it may or may not have been applied). A :class:`Reader` counts
and searches; a :class:`StrongReader` reads single records with ``consistency="strong"``, and none may miss a
write acknowledged before the read began (:func:`stale_strong_reads`, over the recorded histories).

:func:`check_every_replica`: afterwards, on EVERY node, each shard's local replica (``<collection>.s<shard>@0``:
that node's own copy, not a fan-out) must, once it caught up (waited for as a condition with a deadline), hold

* every id whose last acknowledged write was an insert or upsert, with that write's vector and metadata,
  or a later uncertain write's (an uncertain write after the last acknowledged one may have landed);
* no id whose last acknowledged write was a delete, unless a later uncertain insert/upsert may have landed;
* the same rows as the shard's other replicas (they apply the same log), and only ids of that shard.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _devcluster import DevCluster
from _support import wait_until

from proximadb.cluster.placement import shard_of
from proximadb.errors import ProximaDBError

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



class FreshInserter(Writer):
    """Inserts fresh ids only, five at a time: for a client of one node, which cannot move on. A write whose
    call gave up while that node was cut off may still be applied once it reconnects (its NATS client sends
    what it had pending), after a later write to the same id; fresh ids keep that case out of the judging."""

    def run(self) -> None:
        fresh = 0
        try:
            while not self.stop.is_set():
                self.write("insert", list(range(fresh, fresh + 5)))
                fresh += 5
        except BaseException as exc:  # reported by the test
            self.error = exc

@dataclass
class Call:
    started: float
    finished: float
    error: ProximaDBError | None


@dataclass
class Recording:
    """A client for a writer to one node that records every insert's times and outcome (the Writer keeps
    only whether it was acknowledged)."""

    client: Any
    calls: list[Call] = field(default_factory=list)

    def insert_vectors(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            result = self.client.insert_vectors(*args, **kwargs)
        except ProximaDBError as exc:
            self.calls.append(Call(started, time.monotonic(), exc))
            raise
        self.calls.append(Call(started, time.monotonic(), None))
        return result

    def failed_since(self, start: float) -> list[ProximaDBError]:
        return [c.error for c in list(self.calls) if c.error is not None and c.started >= start]

    def acked_since(self, start: float) -> int:
        return sum(1 for c in list(self.calls) if c.error is None and c.started >= start)


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
