"""Text, hybrid and grouped search and recommend on a local dev-cluster (3 NATS servers, 3 daemons): what the
fan-out of proximadb/cluster/queries.py costs, next to the same data in one shard.

    python bench/cluster_queries.py [--rows 20000] [--dim 64] [--queries 100] [--json OUT]

Two collections with the same rows (vectors, a ``document`` of 5-40 words drawn from a Zipf vocabulary, a
``topic`` of 20 values): ``spread``, 3 shards x 2 replicas (every node reads some shards from a peer), and
``whole``, 1 shard x 3 replicas (every node holds it: no peer is asked). Per query shape, through node n2's
REST API, one at a time: p50 / p99 latency in ms. A text search over ``spread`` takes two rounds to the
shards (statistics, then scoring), a hybrid search a vector and a two-round text search; search_groups
one round or more, recommend by ids a get_many round before the search. The machine is shared: the
figures are noisy; the ratio between the two collections is what they show.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_ingest import dev_cluster

from proximadb.sdk import connect_rest


def documents(rows: int, rng: np.random.Generator) -> list[str]:
    vocabulary = [f"w{i}" for i in range(2000)]
    p = 1.0 / np.arange(1, len(vocabulary) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(vocabulary, size=int(rng.integers(5, 41)), p=p)) for _ in range(rows)]


def timed(call: Callable[[int], Any], queries: int) -> dict[str, float]:
    times = []
    for q in range(queries):
        start = time.perf_counter()
        call(q)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    docs = documents(args.rows, rng)
    texts = [" ".join(rng.choice([f"w{i}" for i in range(200)], size=2)) for _ in range(args.queries)]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with dev_cluster() as nodes:
        writer, reader = connect_rest(nodes[0]["rest"]), connect_rest(nodes[1]["rest"])
        for name, shards, replicas in (("spread", 3, 2), ("whole", 1, 3)):
            writer.create_collection(name, args.dim, distance_metric="euclidean", shards=shards,
                                     replication_factor=replicas)
            for lo in range(0, args.rows, 1000):
                hi = min(lo + 1000, args.rows)
                writer.insert_vectors(name, ids=[f"v{i}" for i in range(lo, hi)], vectors=vectors[lo:hi],
                                      metadatas=[{"document": docs[i], "topic": f"t{i % 20}"} for i in range(lo, hi)])
            while reader.count(name, consistency="strong") != args.rows:
                time.sleep(0.05)
        for node in nodes:  # every replica builds its segments' text index (text.idx) before the timing
            with connect_rest(node["rest"]) as client:
                for name in ("spread", "whole"):
                    for shard, holders in enumerate(client.get_collection(name)["placement"]):
                        if node["id"] in holders:
                            client.search_text(f"{name}.s{shard}@0", texts[0], k=1)
        for name in ("spread", "whole"):
            shapes: dict[str, Callable[[int], Any]] = {
                "search k=10": lambda q, n=name: reader.search(n, vectors[q], k=10),
                "search_text k=10": lambda q, n=name: reader.search_text(n, texts[q], k=10),
                "hybrid_search rrf k=10 (depth 100)": lambda q, n=name: reader.hybrid_search(
                    n, vectors[q], texts[q], k=10),
                "search_groups topic limit=5 size=3": lambda q, n=name: reader.search_groups(
                    n, vectors[q], "topic", limit=5, group_size=3),
                "recommend 2 ids, 1 negative, k=10": lambda q, n=name: reader.recommend(
                    n, [f"v{q}", f"v{q + 1}"], [f"v{q + 2}"], k=10),
                "recommend best_score k=10": lambda q, n=name: reader.recommend(
                    n, [f"v{q}", f"v{q + 1}"], [f"v{q + 2}"], k=10, strategy="best_score"),
            }
            results[name] = {}
            for shape, call in shapes.items():
                call(0)
                results[name][shape] = timed(call, args.queries)
                print(name, shape, results[name][shape], flush=True)
        writer.close()
        reader.close()
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "dim": args.dim, "queries": args.queries,
                                         "collections": {"spread": "3 shards x 2 replicas",
                                                         "whole": "1 shard x 3 replicas"},
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
