"""Ingest and query throughput through one node of a local dev-cluster (3 NATS servers, 3 daemons):
collections of 1 and 3 shards, each with 1 and 3 replicas.

    python bench/cluster_ingest.py [--rows 20000] [--dim 64] [--batch 1000] [--queries 200] [--json OUT]

Writes go through node n1's REST API and count as done when acknowledged (JetStream's quorum has them);
"applied" is when every node counts them all (replication caught up). Replication lag: every node's
``proximadb_cluster_replica_lag`` (log entries its replica is behind the log's last one; one entry is one
shard's part of a batch), scraped from ``/metrics`` every 0.2 s during the ingest: p50 and p99 over the
samples. Queries: k=10 through n1 over REST.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from proximadb.sdk import connect_rest


@contextlib.contextmanager
def dev_cluster(nodes: int = 3) -> Iterator[list[dict[str, Any]]]:
    """``proximadb dev-cluster --nodes N`` in a temporary directory (run from there, not the source tree):
    its nodes from cluster.json once every one is ready; stopped with SIGTERM at the end."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "proximadb", "dev-cluster", "--nodes", str(nodes), tmp],
                                stdout=subprocess.DEVNULL, cwd=tmp)
        try:
            manifest = Path(tmp) / "cluster.json"
            while not manifest.exists():
                if proc.poll() is not None:
                    raise SystemExit("dev-cluster exited")
                time.sleep(0.2)
            yield list(json.loads(manifest.read_text())["nodes"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


def lag_sampler(urls: list[str], stop: threading.Event, samples: list[float]) -> None:
    """Scrape every node's replica lags (entries) until ``stop``."""
    while not stop.wait(0.2):
        for url in urls:
            try:
                with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                continue
            samples.extend(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("proximadb_cluster_replica_lag{"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    ids = [f"v{i}" for i in range(args.rows)]
    results = {}
    with dev_cluster() as nodes:
        clients = [connect_rest(n["rest"]) for n in nodes]
        for shards, replicas in ((1, 1), (1, 3), (3, 1), (3, 3)):
            name = f"s{shards}r{replicas}"
            clients[0].create_collection(name, args.dim, distance_metric="euclidean", shards=shards,
                                         replication_factor=replicas)
            lags: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=lag_sampler, args=([n["rest"] for n in nodes], stop, lags), daemon=True)
            sampler.start()
            start = time.perf_counter()
            for lo in range(0, args.rows, args.batch):
                clients[0].insert_vectors(name, ids=ids[lo:lo + args.batch], vectors=vectors[lo:lo + args.batch])
            acked = time.perf_counter() - start
            stop.set()
            sampler.join()
            while not all(c.count(name) == args.rows for c in clients):
                time.sleep(0.05)
            applied = time.perf_counter() - start
            start = time.perf_counter()
            for q in range(args.queries):
                clients[0].search_batch(name, vectors[q:q + 1], k=10)
            qps = args.queries / (time.perf_counter() - start)
            results[name] = {"ingest_rows_per_s_acked": round(args.rows / acked),
                             "ingest_rows_per_s_all_nodes_applied": round(args.rows / applied),
                             "queries_per_s_k10": round(qps, 1),
                             "replica_lag_entries_p50": float(np.percentile(lags, 50)) if lags else None,
                             "replica_lag_entries_p99": float(np.percentile(lags, 99)) if lags else None}
            print(name, results[name], flush=True)
        for c in clients:
            c.close()
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "dim": args.dim, "batch": args.batch,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
