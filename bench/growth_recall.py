"""Is a grown HNSW graph as good as a built one? (issue 11: at 10,000,000 rows the one grown graph
had a recall at ef 64 well below what 14 built graphs gave, and the cause was unknown.)

    python bench/growth_recall.py --rows 400000 --base 100000 --json bench/results/growth_recall_400k.json

On bench/filtered_search.py's clustered data (rows around 1,000 centres, so each centre's rows grow
denser as ``--rows`` grows), the index alone, no engine: a graph built over all ``--rows`` rows
(``HNSWIndex.add``, M 16, ef_construction 200, two threads) against one built over the first
``--base`` rows and grown to all of them (``_hnsw_grow.grown``, what compaction does). It reports
build seconds and recall@10 at ef 64 / 128 / 256 of both against the exact answer of
``--queries`` queries drawn the same way. Equal recall at every size says that growth is not what
loses recall at scale; the built graph's recall against ``--rows`` says what the data costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_search import DIM, K, clustered, ground_truth
from ingest_latency import git_commit

import proximadb
from proximadb.index._hnsw_grow import grown
from proximadb.index.hnsw import HNSWIndex

EFS = (64, 128, 256)


def recall(index: HNSWIndex, queries: np.ndarray, truth: list[set[int]]) -> dict[str, float]:
    out = {}
    for ef in EFS:
        hits = 0.0
        for qi, q in enumerate(queries):
            rows, _ = index.search(q, K, ef=ef)
            hits += len(truth[qi] & set(rows.tolist())) / K
        out[f"ef{ef}"] = round(hits / len(queries), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--base", type=int, default=100_000, help="rows of the graph that is grown")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    vectors = clustered(np.random.default_rng(0), args.rows)
    queries = clustered(np.random.default_rng(1), args.queries)
    truth = ground_truth(vectors, queries, np.ones(args.rows, dtype=bool))
    out: dict[str, Any] = {"rows": args.rows, "base": args.base, "queries": args.queries, "threads": args.threads,
                           "proximadb": git_commit(Path(proximadb.__file__).parent)}
    t0 = time.perf_counter()
    built = HNSWIndex(DIM, "l2", 16, 200)
    built.add(np.arange(args.rows), vectors, threads=args.threads)
    out["built"] = {"seconds": round(time.perf_counter() - t0, 1), **recall(built, queries, truth)}
    print("built", json.dumps(out["built"]), flush=True)
    del built
    t0 = time.perf_counter()
    base = HNSWIndex(DIM, "l2", 16, 200)
    base.add(np.arange(args.base), vectors[: args.base], threads=args.threads)
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = grown(base, np.arange(args.base), vectors, threads=args.threads)
    out["grown"] = {"base_seconds": round(base_s, 1), "seconds": round(time.perf_counter() - t0, 1),
                    **recall(graph, queries, truth)}
    print("grown", json.dumps(out["grown"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
