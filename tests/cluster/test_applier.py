"""Replicas apply a shard log into local collections (proximadb/cluster/applier.py, storage/collection_apply.py).

Real NATS JetStream servers on 127.0.0.1 (three, streams with three replicas), real data
directories opened in cluster mode (``log_of_record="external"``). Every test checks the
replicas' contents against each other and against a model of the log computed here.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import child_env, rest_of_output

from proximadb.cluster.applier import ShardApplier
from proximadb.cluster.nats_servers import NatsCluster
from proximadb.cluster.shard_log import JetStreamLog
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.errors import ExternalLogError, LogUnavailableError, SnapshotRequiredError, ValidationError
from proximadb.storage.collection import Collection
from proximadb.storage.engine import Engine
from proximadb.storage.manifest import Manifest

DIM = 4
WAIT = 120.0  # seconds: generous for a loaded machine; the tests wait for events, never for time
CHILD = Path(__file__).with_name("_applier_child.py")


@pytest.fixture
def shard_log(nats3_shared: NatsCluster, request: pytest.FixtureRequest) -> Iterator[JetStreamLog]:
    log = JetStreamLog(nats3_shared.urls, request.node.name.replace("test_", "")[:40], replicas=3, deadline=60.0,
                      create=True)
    try:
        yield log
    finally:
        log.close()


def replica(path: Path, **options: Any) -> Engine:
    """A replica's data directory in cluster mode, with the collection "docs" (created on first open)."""
    engine = Engine.open(path, log_of_record="external", fsync="never", **options)
    if not engine.list_collections():
        engine.create_collection("docs", DIM, distance_metric="euclidean")  # vectors stored as sent
    return engine


# ---------------------------------------------------------------- the workload and its model


def workload(first: int, count: int, seed: int) -> list[tuple[str, bytes]]:
    """(msg id, payload) of ``count`` log entries numbered from ``first``: upserts, inserts (some of ids
    that exist: refused), deletes by ids and by filter, metadata updates, over 60 colliding ids."""
    rng = random.Random(seed)
    out = []
    for i in range(first, first + count):
        kind = rng.randrange(10)
        pool = [f"r{k}" for k in rng.sample(range(60), 3)]
        if kind < 4 or kind == 5:
            records = [{"id": rid, "vector": [rng.uniform(-1, 1) for _ in range(DIM)],
                        "metadata": {"tag": rng.choice("abc"), "i": i},
                        "timestamp": 0 if rng.random() < 0.5 else 1_700_000_000_000_000 + i} for rid in pool]
            payload = encode_insert(records, upsert=kind != 5)
        elif kind == 6:
            payload = encode_payload("vector_delete", {"ids": pool, "filter": None})
        elif kind == 7:
            flt = {"tag": rng.choice("abc"), "i": {"$lt": i - 10}}
            payload = encode_payload("vector_delete", {"ids": [], "filter": json.dumps(flt)})
        else:
            patch = {"id": pool[0], "metadata": {"tag": rng.choice("abc"), "u": i}, "replace": kind == 9}
            payload = encode_payload("vector_update", {"updates": [patch], "timestamp": 0})
        out.append((f"m{i}", payload))
    return out


def model(entries: list[tuple[str, bytes]], seed_pairs: list[tuple[int, int, int]]) -> dict[str, tuple[Any, Any]]:
    """id -> (vector, metadata) after applying the workloads ``(first, count, seed)`` in order."""
    state: dict[str, tuple[list[float], dict[str, Any]]] = {}
    for first, count, seed in seed_pairs:
        rng = random.Random(seed)
        for i in range(first, first + count):
            kind = rng.randrange(10)
            pool = [f"r{k}" for k in rng.sample(range(60), 3)]
            if kind < 4 or kind == 5:
                rows = {}
                for rid in pool:  # the draws of workload(), in its order: vector, tag, timestamp
                    vector = [rng.uniform(-1, 1) for _ in range(DIM)]
                    rows[rid] = (vector, {"tag": rng.choice("abc"), "i": i})
                    rng.random()
                if kind == 5 and any(rid in state for rid in pool):
                    continue  # an insert of an existing id: refused whole
                for rid, (vector, metadata) in rows.items():
                    state[rid] = (np.array(vector, dtype=np.float32).tolist(), metadata)
            elif kind == 6:
                for rid in pool:
                    state.pop(rid, None)
            elif kind == 7:
                tag, below = rng.choice("abc"), i - 10
                for rid in [r for r, (_, md) in state.items() if md.get("tag") == tag and md.get("i", below) < below]:
                    del state[rid]
            else:
                tag = rng.choice("abc")
                if pool[0] in state:
                    vector, md = state[pool[0]]
                    state[pool[0]] = (vector, {"tag": tag, "u": i} if kind == 9 else {**md, "tag": tag, "u": i})
    return state


def contents(col: Collection) -> dict[str, tuple[Any, ...]]:
    """Every live record: id -> (vector, metadata, timestamp, expires_at)."""
    out: dict[str, tuple[Any, ...]] = {}
    cursor = None
    while True:
        page, cursor = col.scroll(limit=1000, cursor=cursor, include_vectors=True)
        for r in page:
            out[r["id"]] = (np.asarray(r["vector"]).tolist(), r["metadata"], r["timestamp"], r.get("expires_at"))
        if cursor is None:
            return out


def as_model(found: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, Any]]:
    return {rid: (row[0], row[1]) for rid, row in found.items()}


def append_all(log: JetStreamLog, entries: list[tuple[str, bytes]]) -> int:
    last = 0
    for msg_id, payload in entries:
        ack = log.append(payload, msg_id)
        assert not ack.duplicate
        last = ack.seq
    return last


def applied(applier: ShardApplier, seq: int) -> None:
    assert applier.wait_for(seq, WAIT), f"applier stuck at {applier.applied_seq}, waiting for {seq}"


# ---------------------------------------------------------------- tests


def test_two_replicas_apply_the_same_stream_to_the_same_contents(shard_log: JetStreamLog, tmp_path: Path) -> None:
    # A delete by filter between two inserts of matching rows: it must take the first rows only, on every replica.
    explicit = [
        ("x1", encode_insert(ids=["z1", "z2"], vectors=np.ones((2, DIM)), metadata=[{"tag": "z"}, {"tag": "z"}])),
        ("x2", encode_payload("vector_delete", {"ids": [], "filter": json.dumps({"tag": "z"})})),
        ("x3", encode_insert(ids=["z3"], vectors=np.ones((1, DIM)), metadata=[{"tag": "z"}])),
    ]
    entries = workload(1, 300, seed=7)
    last = append_all(shard_log, explicit + entries)
    with replica(tmp_path / "a", flush_bytes=2048) as engine_a, replica(tmp_path / "b") as engine_b:
        col_a, col_b = engine_a.collection("docs"), engine_b.collection("docs")
        appliers = [ShardApplier(shard_log, col_a, 37, checkpoint_entries=50).start(),
                    ShardApplier(shard_log, col_b, 1000).start()]
        try:
            for applier in appliers:
                applied(applier, last)
            assert [a.applied_seq for a in appliers] == [last, last]
            assert col_a.manifest.checkpoint_seq > 0  # replica a checkpointed on the way (entries, memtable size)
            found_a, found_b = contents(col_a), contents(col_b)
            assert found_a == found_b  # ids, vectors, metadata, timestamps (stamped with the log time), expiry
            expected = model(entries, [(1, 300, 7)])
            expected["z3"] = ([1.0] * DIM, {"tag": "z"})
            assert as_model(found_a) == expected
            assert col_a.refused_entries == col_b.refused_entries > 0  # inserts of existing ids, refused alike
        finally:
            for applier in appliers:
                applier.stop()
        assert col_a.manifest.checkpoint_seq == col_b.manifest.checkpoint_seq == last  # stop() checkpoints


def test_stamps_come_from_the_log_time_so_replicas_agree_whenever_they_apply(shard_log: JetStreamLog,
                                                                             tmp_path: Path) -> None:
    last = append_all(shard_log, [(f"t{i}", encode_insert(ids=[f"t{i}"], vectors=np.ones((1, DIM))))
                                  for i in range(5)])
    entries = shard_log.read(1, 10)
    assert [e.time_us for e in entries] == [e.time_us for e in shard_log.read(1, 10)] and entries[0].time_us > 0
    found = []
    for name in ("a", "b"):  # one after the other: the clock has moved on for the second
        with Engine.open(tmp_path / name, log_of_record="external") as engine:
            engine.create_collection("docs", DIM, default_ttl_seconds=3600)
            applier = ShardApplier(shard_log, engine.collection("docs")).start()
            applied(applier, last)
            applier.stop()
            found.append(contents(engine.collection("docs")))
    assert found[0] == found[1]
    by_id = {f"t{i}": e.time_us for i, e in enumerate(entries)}
    assert {rid: (row[2], row[3]) for rid, row in found[0].items()} == {
        rid: (t, t + 3600 * 1_000_000) for rid, t in by_id.items()
    }


def test_close_and_reopen_resumes_from_the_manifest_checkpoint(shard_log: JetStreamLog, tmp_path: Path) -> None:
    first = workload(1, 200, seed=11)
    last = append_all(shard_log, first)
    # flush_on_close=False: a close that leaves entries after the checkpoint, as a crash would.
    with replica(tmp_path / "b", flush_on_close=False) as engine:
        applier = ShardApplier(shard_log, engine.collection("docs"), 30, checkpoint_entries=45,
                               checkpoint_seconds=3600).start()
        applied(applier, last)
        applier.stop(checkpoint=False)
        checkpoint = engine.collection("docs").manifest.checkpoint_seq
    assert 0 < checkpoint < last  # some entries were in the memtable only: the reopen applies them again
    second = workload(201, 100, seed=12)
    last = append_all(shard_log, second)
    with replica(tmp_path / "b") as engine:
        col = engine.collection("docs")
        assert col.applied_seq == checkpoint == Manifest.load(col.directory).checkpoint_seq
        applier = ShardApplier(shard_log, col, 64).start()
        applied(applier, last)
        applier.stop()
        resumed = contents(col)
    with replica(tmp_path / "ref") as engine:
        applier = ShardApplier(shard_log, engine.collection("docs")).start()
        applied(applier, last)
        applier.stop()
        assert contents(engine.collection("docs")) == resumed
    assert as_model(resumed) == model(first + second, [(1, 200, 11), (201, 100, 12)])
    with replica(tmp_path / "b") as engine:  # the stop's checkpoint: nothing left to apply again
        assert engine.collection("docs").applied_seq == last


def test_a_replica_killed_with_sigkill_mid_stream_resumes_without_loss_or_duplication(
        nats3_shared: NatsCluster, shard_log: JetStreamLog, tmp_path: Path) -> None:
    first = workload(1, 1500, seed=21)
    total = append_all(shard_log, first)
    data_dir = tmp_path / "b"
    replica(data_dir).close()  # the collection exists before the child opens the directory

    def child(until: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), ",".join(nats3_shared.urls), shard_log.name, "docs",
             str(until)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=str(tmp_path))

    proc = child(total)
    assert proc.stdout is not None
    reported = 0
    for line in proc.stdout:
        event = json.loads(line)
        assert "error" not in event and "done" not in event, event
        reported = event.get("applied", 0)
        if reported >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    rest_of_output(proc)
    assert proc.returncode == -signal.SIGKILL
    assert 300 <= reported < total  # killed mid-stream
    checkpoint = Manifest.load(next((data_dir / "collections").iterdir())).checkpoint_seq
    assert checkpoint <= total

    second = workload(1501, 200, seed=22)
    total = append_all(shard_log, second)
    proc = child(total)
    out, err = proc.communicate(timeout=WAIT * 2)
    events = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 0, (events[-3:], err[-2000:])
    assert events[0] == {"started": checkpoint} and events[-1] == {"done": total}

    with replica(data_dir) as engine:
        resumed = contents(engine.collection("docs"))
        assert engine.collection("docs").applied_seq == total
    with replica(tmp_path / "ref") as engine:
        applier = ShardApplier(shard_log, engine.collection("docs")).start()
        applied(applier, total)
        applier.stop()
        assert contents(engine.collection("docs")) == resumed
    assert as_model(resumed) == model(first + second, [(1, 1500, 21), (1501, 200, 22)])


def test_duplicate_msg_ids_and_entries_read_twice_are_applied_once(shard_log: JetStreamLog, tmp_path: Path) -> None:
    insert = encode_insert(ids=["d1"], vectors=[[1.0, 0.0, 0.0, 0.0]])  # an insert: a second copy would be refused
    first = shard_log.append(insert, "w-1")
    again = shard_log.append(insert, "w-1")  # a client's retry of a write it got no answer for
    assert (again.seq, again.duplicate) == (first.seq, True)
    last = shard_log.append(encode_insert(ids=["d2"], vectors=[[0.0, 1.0, 0.0, 0.0]]), "w-2").seq
    assert last == first.seq + 1
    with replica(tmp_path / "a") as engine:
        col = engine.collection("docs")
        applier = ShardApplier(shard_log, col).start()
        applied(applier, last)
        applier.stop()
        assert col.refused_entries == 0 and col.count() == 2
        before = contents(col)
        # The same entry handed over again (a log read twice): skipped, even with other bytes.
        upsert = encode_insert(ids=["d1"], vectors=[[9.0, 9.0, 9.0, 9.0]], upsert=True)
        entry = shard_log.read(first.seq, 1)[0]
        assert col.apply_log_entry(first.seq, upsert, entry.time_us).outcome == "skipped"
        assert contents(col) == before and col.applied_seq == last


def test_a_log_purged_past_the_replica_stops_the_applier_with_snapshot_required(shard_log: JetStreamLog,
                                                                              tmp_path: Path) -> None:
    append_all(shard_log, workload(1, 20, seed=31))
    shard_log.purge_below(11)
    with replica(tmp_path / "a") as engine:
        applier = ShardApplier(shard_log, engine.collection("docs")).start()
        with pytest.raises(SnapshotRequiredError, match=r"applied the shard log up to 0.*snapshot"):
            applier.wait_for(20, WAIT)
        assert applier.applied_seq == 0 and engine.collection("docs").count() == 0
        applier.stop()


def test_modes_are_not_mixed_and_direct_writes_are_refused(shard_log: JetStreamLog, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="log_of_record must be one of wal, external"):
        Engine.open(tmp_path / "x", log_of_record="kafka")
    with Engine.open(tmp_path / "single") as engine:  # a single-node directory, with its own WAL
        engine.create_collection("docs", DIM)
        col = engine.collection("docs")
        col.insert(ids=["a"], vectors=[[1.0, 2.0, 3.0, 4.0]])
        with pytest.raises(ExternalLogError, match="has its own WAL"):
            ShardApplier(shard_log, col)
        manifest = col.directory / "MANIFEST"
    before = manifest.read_bytes()  # the close flushed: segments and a checkpoint
    with pytest.raises(ExternalLogError, match=r"was written with its own WAL.*nothing was changed"):
        Engine.open(tmp_path / "single", log_of_record="external")
    assert manifest.read_bytes() == before
    with Engine.open(tmp_path / "single") as engine:
        assert engine.collection("docs").count() == 1

    with replica(tmp_path / "cluster") as engine:
        col = engine.collection("docs")
        for write in (lambda: col.insert(ids=["a"], vectors=[[1.0, 2.0, 3.0, 4.0]]),
                      lambda: col.upsert(ids=["a"], vectors=[[1.0, 2.0, 3.0, 4.0]])):
            with pytest.raises(ExternalLogError, match="written through its shard log"):
                write()
        assert col.count() == 0 and col.applied_seq == 0
        # A refused entry changes nothing but still moves the position: every replica passes it over alike.
        outcome = col.apply_log_entry(1, b"not a payload frame", 1)
        assert outcome.outcome == "refused" and col.applied_seq == 1 and col.count() == 0
    with pytest.raises(ExternalLogError, match=r"applies a shard log.*open it in cluster mode"):
        Engine.open(tmp_path / "cluster")


def test_the_applier_waits_out_a_log_outage_and_catches_up(tmp_path: Path) -> None:
    """Every NATS server killed with SIGKILL under a running applier, then started again."""
    with NatsCluster(tmp_path / "nats", 3) as nats:
        writer = JetStreamLog(nats.urls, "outage", replicas=3, create=True)
        first = workload(1, 100, seed=41)
        append_all(writer, first)
        writer.close()
        reader = JetStreamLog(nats.urls, "outage", replicas=3, timeout=1.0, deadline=2.0)
        try:
            with replica(tmp_path / "a") as engine:
                applier = ShardApplier(reader, engine.collection("docs"), 25).start()
                applied(applier, 100)
                for server in nats.servers:
                    server.kill()
                end = time.monotonic() + WAIT
                while applier.log_unavailable < 2 and time.monotonic() < end:  # it saw the outage, twice
                    time.sleep(0.1)
                assert applier.log_unavailable >= 2 and applier.running and applier.error is None
                nats.start()
                second = workload(101, 50, seed=42)
                writer = until_open(nats, "outage")
                try:
                    last = append_all(writer, second)
                finally:
                    writer.close()
                applied(applier, last)
                applier.stop()
                assert as_model(contents(engine.collection("docs"))) == model(
                    first + second, [(1, 100, 41), (101, 50, 42)])
        finally:
            reader.close()


def until_open(nats: NatsCluster, name: str) -> JetStreamLog:
    """A log on servers that are electing leaders after a restart: retried while they do not answer."""
    end = time.monotonic() + WAIT
    while True:
        try:
            return JetStreamLog(nats.urls, name, replicas=3, deadline=60.0)
        except LogUnavailableError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)
