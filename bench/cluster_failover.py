"""Cluster failover figures (issue 14): how long writes stall when a part of a dev-cluster dies.

A dev-cluster (3 NATS servers, 3 daemons; tests/cluster/_devcluster.py starts it as the tests do) holds a
collection of 2 shards x 3 replicas. One writer inserts batches of fresh rows through a failover gRPC client
over every node (retries on: writes carry request ids), and records each call's start, end and outcome.
Each scenario kills one part with SIGKILL while it writes, waits, and starts it again:

* ``daemon``: the daemon the writer is talking to (the client moves to the next address);
* ``nats-leader``: then the NATS server that leads shard 0's stream (JetStream elects a new leader).

A reader counts in a loop through a failover client of its own. Reported per scenario: the longest time
between two acknowledged writes after the kill (the stall; ``read_stall_s`` the same for the reader), the
calls that took over a second, the writes that failed, the acknowledged ones, and every acknowledged row is
checked present at the end. Also the write latency p50 / p99 outside the kills. Timings are reported, never asserted.

    python bench/cluster_failover.py [--batch 100] [--json bench/results/cluster_failover.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "cluster")]

from _devcluster import DevCluster  # noqa: E402  (the tests' dev-cluster driver)
from _support import wait_until  # noqa: E402

from proximadb.cluster.names import shard_log_name  # noqa: E402
from proximadb.cluster.nats_session import NatsSession  # noqa: E402
from proximadb.cluster.shard_log import stream_name  # noqa: E402
from proximadb.cluster.shard_map import BUCKET, ShardMap, map_key  # noqa: E402
from proximadb.errors import ProximaDBError  # noqa: E402
from proximadb.sdk import connect_grpc  # noqa: E402

NAME = "failover"
DIM = 32


@dataclass
class Writes:
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # (start, end, acknowledged)
    acked_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def writer(client: Any, batch: int, stop: threading.Event, out: Writes) -> None:
    rng = np.random.default_rng(1)
    n = 0
    while not stop.is_set():
        ids = [f"w{n + i}" for i in range(batch)]
        n += batch
        started = time.monotonic()
        try:
            client.insert_vectors(NAME, ids=ids, vectors=rng.normal(size=(batch, DIM)).astype(np.float32))
        except ProximaDBError as exc:
            out.calls.append((started, time.monotonic(), False))
            out.errors.append(f"{type(exc).__name__}: {exc}"[:160])
            continue
        out.calls.append((started, time.monotonic(), True))
        out.acked_ids.extend(ids)


def reader(client: Any, stop: threading.Event, out: Writes) -> None:
    """Counts (bounded consistency) in a loop; records each call like the writer."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            client.count(NAME)
        except ProximaDBError as exc:
            out.calls.append((started, time.monotonic(), False))
            out.errors.append(f"{type(exc).__name__}: {exc}"[:160])
            continue
        out.calls.append((started, time.monotonic(), True))


def stall(calls: list[tuple[float, float, bool]], since: float) -> float:
    """The longest time between two acknowledgements (call ends) after ``since``, the first gap from ``since``."""
    ends = [since, *sorted(end for _, end, ok in calls if ok and end >= since)]
    return max((b - a for a, b in itertools.pairwise(ends)), default=0.0)


def slow_calls(calls: list[tuple[float, float, bool]], since: float) -> list[list[float]]:
    """Calls that took over a second: [start, end] in seconds from ``since``."""
    return [[round(start - since, 2), round(end - since, 2)] for start, end, _ in calls if end - start > 1.0]


def leader_of_shard0(cluster: DevCluster) -> str:
    session = NatsSession(cluster.doc["nats"], "bench")
    try:
        entry = session.call(lambda: session.read_key(BUCKET, map_key(NAME)), "reading the map")
        assert entry is not None
        stream = stream_name(shard_log_name(ShardMap.decode(entry.value), 0))
        info = session.call(lambda: session.js.stream_info(stream), "stream info")
        return str(info.cluster.leader)
    finally:
        session.close()


def run(batch: int, settle: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(Path(tmp) / "dc")
        try:
            nodes = cluster.doc["nodes"]
            admin = cluster.rest(0)
            admin.create_collection(NAME, DIM, shards=2, replication_factor=3)
            client = connect_grpc([n["grpc"] for n in nodes], timeout=30, retries=6, backoff=0.2)
            cluster.clients.append(client)
            out = Writes()
            stop = threading.Event()
            reads = Writes()
            read_client = connect_grpc([n["grpc"] for n in nodes], timeout=30, retries=6, backoff=0.2)
            cluster.clients.append(read_client)
            threads = [threading.Thread(target=writer, args=(client, batch, stop, out), daemon=True),
                       threading.Thread(target=reader, args=(read_client, stop, reads), daemon=True)]
            for thread in threads:
                thread.start()
            time.sleep(settle)
            quiet = [end - start for start, end, ok in out.calls if ok]

            current = next(i for i, n in enumerate(nodes) if client.url.endswith(n["grpc"]))
            before = len(out.calls)
            killed = time.monotonic()
            how = cluster.kill(current)
            time.sleep(settle)
            results["daemon"] = {"killed": nodes[current]["id"], "stall_s": round(stall(out.calls, killed), 3),
                                 "read_stall_s": round(stall(reads.calls, killed), 3),
                                 "slow_calls": slow_calls(out.calls[before:], killed),
                                 "failed": sum(1 for *_, ok in out.calls[before:] if not ok),
                                 "acknowledged": sum(1 for *_, ok in out.calls[before:] if ok)}
            cluster.restart(current, how)
            time.sleep(settle / 2)
            leader = leader_of_shard0(cluster)
            server = next(s for s in cluster.nats_servers() if s.name == leader)
            before = len(out.calls)
            killed = time.monotonic()
            argv = cluster.kill_nats(server)
            time.sleep(settle)
            results["nats-leader"] = {"killed": leader, "stall_s": round(stall(out.calls, killed), 3),
                                      "read_stall_s": round(stall(reads.calls, killed), 3),
                                      "slow_calls": slow_calls(out.calls[before:], killed),
                                      "failed": sum(1 for *_, ok in out.calls[before:] if not ok),
                                      "acknowledged": sum(1 for *_, ok in out.calls[before:] if ok)}
            cluster.restart_nats(server, argv)

            stop.set()
            for thread in threads:
                thread.join(60)

            wait_until("every acknowledged row readable", lambda: admin.count(NAME) >= len(out.acked_ids), 120)
            found = {r["id"] for r in admin.get_vectors(NAME, out.acked_ids, include_vectors=False)}
            results["acknowledged_rows"] = len(out.acked_ids)
            results["acknowledged_rows_missing"] = len(set(out.acked_ids) - found)
            results["write_p50_ms"] = round(float(np.percentile(quiet, 50)) * 1000, 1) if quiet else None
            results["write_p99_ms"] = round(float(np.percentile(quiet, 99)) * 1000, 1) if quiet else None
            results["errors"] = sorted(set(out.errors + reads.errors))[:10]
        finally:
            cluster.stop()
            cluster.kill_leftovers()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=100, help="rows per insert call")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds of writing before and after each kill")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    results = {"batch": args.batch, **run(args.batch, args.settle)}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
