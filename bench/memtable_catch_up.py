"""What the memtable graph's catch-up ef_construction costs and gives (storage/memtable_index.py:
CATCH_UP_EF_CONSTRUCTION, used while the graph lags more than LAG_COMPONENTS behind the memtable).

    python bench/memtable_catch_up.py --json bench/results/memtable_catch_up.json

The index alone, as the memtable's indexer adds rows: one thread, chunks of ``--chunk`` rows, M 16, at
ef_construction 200 (the collection default) and 64 (the catch-up one). Two data sets: the first
``--rows`` of bench/filtered_search.py's clustered 128-dimensional rows (l2), and the first ``--rows``
GloVe-50 vectors (cosine, from ../shared/datasets), each with ``--queries`` queries (clustered: drawn
the same way; GloVe: its query file) and the exact top 10 over those rows. Reports rows/s and
recall@10 at ef 64 and 128.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_search import DIM, K, clustered, ground_truth
from ingest_latency import git_commit

import proximadb
from proximadb.index import distance
from proximadb.index.hnsw import HNSWIndex
from proximadb.tools.datasets import fvecs_read

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PROXIMADB_DATASETS", ROOT.parent / "shared" / "datasets"))


def data_sets(rows: int, queries: int) -> dict[str, tuple[np.ndarray, np.ndarray, str, list[set[int]]]]:
    out = {}
    base = clustered(np.random.default_rng(7), rows)
    q = clustered(np.random.default_rng(8), queries)
    out["clustered-128"] = (base, q, "l2", ground_truth(base, q, np.ones(rows, dtype=bool)))
    glove = DATA / "glove-6b-50d"
    gb = distance.normalize_rows(np.ascontiguousarray(fvecs_read(glove / "glove50_base.fvecs")[:rows]))
    gq = distance.normalize_rows(np.ascontiguousarray(fvecs_read(glove / "glove50_query.fvecs")[:queries]))
    top = np.argpartition(-(gq @ gb.T), K - 1, axis=1)[:, :K]
    out["glove-50-angular"] = (gb, gq, "cosine", [set(row.tolist()) for row in top])
    return out


def run(base: np.ndarray, queries: np.ndarray, metric: str, truth: list[set[int]], efc: int,
        chunk: int) -> dict[str, Any]:
    index = HNSWIndex(base.shape[1], metric, 16, efc)
    t0 = time.perf_counter()
    for start in range(0, base.shape[0], chunk):
        index.add(np.arange(start, min(start + chunk, base.shape[0])), base[start : start + chunk], threads=1)
    out: dict[str, Any] = {"rows_s": round(base.shape[0] / (time.perf_counter() - t0))}
    for ef in (64, 128):
        hits = sum(len(truth[i] & set(index.search(q, K, ef=ef)[0].tolist())) for i, q in enumerate(queries))
        out[f"recall_ef{ef}"] = round(hits / (K * len(queries)), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"rows": args.rows, "queries": args.queries, "chunk": args.chunk, "dim_clustered": DIM,
                              "proximadb": git_commit(Path(proximadb.__file__).parent), "results": {}}
    for name, (base, queries, metric, truth) in data_sets(args.rows, args.queries).items():
        for efc in (200, 64):
            res = run(base, queries, metric, truth, efc, args.chunk)
            report["results"].setdefault(name, {})[f"ef_construction_{efc}"] = res
            print(name, efc, json.dumps(res), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
