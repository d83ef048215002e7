"""Read consistency levels on a local dev-cluster (3 NATS servers, 3 daemons): what each costs and what it sees.

    python bench/cluster_consistency.py [--rows 5000] [--dim 64] [--queries 200] [--rounds 100] [--json OUT]

A collection of 3 shards x 2 replicas (so some shards of every node are read from a peer). Per level:

* query latency: k=10 searches through node n2's REST API, p50 / p99 in ms and queries/s;
* read-after-write on another node: ``rounds`` times, one record is written through n1 and read at once
  through n2 (get by id); the fraction of reads that saw the write (session reads carry n1's token).
  Reported, not asserted: bounded and eventual may miss, strong and session must not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_ingest import dev_cluster

from proximadb.consistency import LEVELS
from proximadb.sdk import connect_rest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    results: dict[str, dict[str, float]] = {}
    with dev_cluster() as nodes:
        writer, reader = connect_rest(nodes[0]["rest"]), connect_rest(nodes[1]["rest"])
        writer.create_collection("b", args.dim, distance_metric="euclidean", shards=3, replication_factor=2)
        for lo in range(0, args.rows, 1000):
            writer.insert_vectors("b", ids=[f"v{i}" for i in range(lo, min(lo + 1000, args.rows))],
                                  vectors=vectors[lo:lo + 1000])
        while reader.count("b", consistency="strong") != args.rows:
            time.sleep(0.05)
        for level in LEVELS:
            times = []
            for q in range(args.queries):
                start = time.perf_counter()
                reader.search_batch("b", vectors[q:q + 1], k=10, consistency=level)
                times.append(time.perf_counter() - start)
            seen = 0
            for r in range(args.rounds):
                new = f"{level}-{r}"
                writer.insert_vectors("b", ids=[new], vectors=vectors[r:r + 1])
                reader.add_session_token(writer.session_token())
                seen += len(reader.get_vectors("b", [new], include_vectors=False, consistency=level))
            ms = np.array(times) * 1000
            results[level] = {"search_p50_ms": round(float(np.percentile(ms, 50)), 2),
                              "search_p99_ms": round(float(np.percentile(ms, 99)), 2),
                              "queries_per_s_k10": round(float(args.queries / (ms.sum() / 1000)), 1),
                              "read_after_write_on_another_node_seen": round(seen / args.rounds, 3)}
            print(level, results[level], flush=True)
        writer.close()
        reader.close()
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "dim": args.dim, "queries": args.queries,
                                         "rounds": args.rounds, "shards": 3, "replication_factor": 2,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
