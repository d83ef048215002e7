"""End-to-end benchmark through a real daemon (issue 3).

    python bench/bench_e2e.py [--vectors 100000] [--queries 1000] [--json bench/results/e2e.json]

Starts ``proximadb serve`` on free loopback ports over a fresh data directory
(fsync=always, on the project's disk), then measures:

* durable ingest through the SDK, batches of 1,000 x 128 float32 from numpy,
  over gRPC and over REST (application/avro): vectors/s;
* search over 10k x 128 (exact), one query at a time over gRPC and REST:
  p50/p99 latency and QPS, against an in-process ``Collection.search`` on the
  same data (the protocol overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import proximadb
from proximadb.storage.engine import Engine

DIM = 128
BATCH = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    rest, grpc = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proximadb", "serve", "--data-dir", str(data), "--rest-port", str(rest),
         "--grpc-port", str(grpc), "--log-level", "warning"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with proximadb.connect_rest(f"http://127.0.0.1:{rest}", timeout=1):
                return proc, rest, grpc
        except proximadb.ProximaDBError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("daemon did not start")


def _ingest(client: proximadb.sdk.ProximaDBClient, name: str, vectors: np.ndarray) -> float:
    client.create_collection(name, DIM, distance_metric="euclidean")
    ids = [f"v{i}" for i in range(len(vectors))]
    start = time.perf_counter()
    for s in range(0, len(vectors), BATCH):
        client.insert_vectors(name, ids=ids[s : s + BATCH], vectors=vectors[s : s + BATCH])
    return len(vectors) / (time.perf_counter() - start)


def _latencies(call, queries: np.ndarray) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for q in queries[:20]:
        call(q)
    times = []
    start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        call(q)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    arr = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "qps": len(queries) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, DIM)).astype(np.float32)
    search_base = rng.standard_normal((10_000, DIM)).astype(np.float32)
    queries = rng.standard_normal((args.queries, DIM)).astype(np.float32)
    root = Path(tempfile.mkdtemp(prefix="pxdb-e2e-", dir=Path(__file__).resolve().parent))
    results: dict[str, object] = {"vectors": args.vectors, "queries": args.queries, "fsync": "always"}
    proc, rest, grpc = _start(root / "data")
    try:
        with proximadb.connect_grpc(f"127.0.0.1:{grpc}") as g, proximadb.connect_rest(f"http://127.0.0.1:{rest}") as r:
            results["ingest_grpc_vectors_per_s"] = _ingest(g, "ingest-grpc", vectors)
            results["ingest_rest_vectors_per_s"] = _ingest(r, "ingest-rest", vectors)
            g.create_collection("search", DIM, distance_metric="euclidean")
            g.insert_vectors("search", ids=[str(i) for i in range(len(search_base))], vectors=search_base)
            results["search_grpc"] = _latencies(lambda q: g.search("search", q, k=10), queries)
            results["search_rest"] = _latencies(lambda q: r.search("search", q, k=10), queries)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    with Engine.open(root / "inproc", fsync="never") as engine:
        engine.create_collection("search", DIM, distance_metric="euclidean")
        col = engine.collection("search")
        col.insert(ids=[str(i) for i in range(len(search_base))], vectors=search_base)
        results["search_in_process"] = _latencies(lambda q: col.search(q, k=10), queries)
    shutil.rmtree(root, ignore_errors=True)
    inproc = results["search_in_process"]["p50_ms"]  # type: ignore[index]
    print(f"durable ingest (fsync=always), batches of {BATCH} x {DIM}:")
    print(f"  gRPC  {results['ingest_grpc_vectors_per_s']:>10,.0f} vectors/s   (goal >= 100,000)")
    print(f"  REST  {results['ingest_rest_vectors_per_s']:>10,.0f} vectors/s")
    print(f"search 10k x {DIM} exact, k=10, one query at a time ({args.queries} queries):")
    for key in ("search_grpc", "search_rest", "search_in_process"):
        s = results[key]  # type: ignore[index]
        print(f"  {key[7:]:<11} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms  {s['qps']:,.0f} QPS"
              + ("" if key == "search_in_process" else f"  (overhead p50 +{s['p50_ms'] - inproc:.3f} ms)"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
