"""Ingest with the five metadata fields through a real daemon and the SDK (issue 11: >= 100,000 rows/s over gRPC).

    python bench/daemon_ingest.py --rows 300000 --json bench/results/daemon_ingest_after.json
    PYTHONPATH=/path/to/another/checkout python bench/daemon_ingest.py --label before ...

Starts ``proximadb serve`` (defaults: fsync always; on free loopback ports, a fresh data directory beside
this file) and inserts the rows of bench/filtered_search.py (128 float32 and the five fields, same
generator and seed) in batches of 10,000 through ``proximadb.connect``, once over gRPC and once over REST
(application/avro), each into its own flat collection (no index build competes for the 2 cores). It
reports rows/s and the slowest and median call per protocol. The ``proximadb`` the client and the daemon
import (path and commit) is recorded, so "before" and "after" runs are told apart; compare runs made side
by side on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import Security, _start  # the daemon start of the end-to-end benchmark
from filtered_search import BATCH, DIM, make_data
from ingest_latency import git_commit

import proximadb


def ingest(client: Any, name: str, vectors: np.ndarray, metadata: list[dict[str, Any]]) -> dict[str, Any]:
    client.create_collection(name, DIM, distance_metric="euclidean")
    ids = [f"{i:08d}" for i in range(len(vectors))]
    calls = []
    t0 = time.perf_counter()
    for s in range(0, len(vectors), BATCH):
        t1 = time.perf_counter()
        client.insert_vectors(name, ids=ids[s : s + BATCH], vectors=vectors[s : s + BATCH],
                              metadatas=metadata[s : s + BATCH])
        calls.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    assert client.count(name) == len(vectors)
    lat = np.asarray(calls)
    return {"rows_s": round(len(vectors) / total), "slowest_call_s": round(float(lat.max()), 3),
            "p50_call_s": round(float(np.median(lat)), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--label", default="", help="a name for this run in the results (e.g. before, after)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    data = make_data(args.rows, seed=7)
    vectors, metadata = data.vectors, data.metadata(0, len(data))
    src = Path(proximadb.__file__).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="pxdb-daemon-ingest-", dir=Path(__file__).resolve().parent))
    security = Security()
    proc, rest, grpc = _start(root / "data", security)
    result: dict[str, Any] = {"label": args.label, "proximadb": str(src), "commit": git_commit(src),
                              "rows": args.rows, "batch": BATCH, "dim": DIM, "fsync": "always"}
    try:
        for proto, connect in (("grpc", lambda: security.grpc(grpc)), ("rest", lambda: security.rest(rest))):
            client = connect()
            try:
                result[proto] = ingest(client, proto, vectors, metadata)
            finally:
                client.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
