"""The filtered HNSW walk against the exact scan of the allowed rows, by selectivity.

    python bench/filtered_walk.py --rows 200000
    python bench/filtered_walk.py --rows 200000 --json bench/results/filtered_walk_200k.json

One index (HNSW M=16 ef_construction=200) over N x 128 clustered float32 rows (the vectors of
``filtered_search.py``: 1,000 Gaussian centres, queries drawn the same way); for each
share of allowed rows (a random subset), single-query p50 latency and recall@10 of the graph
walk (``exact=False``; and the rows it measures, ``last_measured``) and of the exact scan
(``exact=True``), and of what the index picks by itself (``exact=None``). This is how
``use_exact`` in ``index/_hnsw_graph.pyx`` is calibrated. The built index is cached in
``--cache`` (a file per --rows/--seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_search import DIM, K, clustered, ground_truth, measure

from proximadb.index.hnsw import HNSWIndex

SHARES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.14, 0.25, 0.5, 0.9)


def run(index: HNSWIndex, queries: np.ndarray, allowed: np.ndarray, exact: bool | None, ef: int,
        truth: list[set[int]]) -> tuple[dict[str, float], float]:
    """filtered_search.measure's p50 / QPS / recall of single-query searches, and the mean rows measured per
    search (``last_measured``: 0 for an exact scan)."""
    measured: list[int] = []

    def search(q: np.ndarray) -> list[int]:
        ids, _ = index.search(q, K, ef=ef, filter_ids=allowed, exact=exact)
        measured.append(index.last_measured)
        return [int(i) for i in ids]

    return measure(search, queries, truth), float(np.mean(measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/proximadb-filtered-walk"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    data = clustered(rng, args.rows)
    queries = clustered(np.random.default_rng(args.seed + 1), args.queries)
    args.cache.mkdir(parents=True, exist_ok=True)
    path = args.cache / f"walk2_{args.rows}_{args.seed}.hnsw"
    if path.exists():
        index = HNSWIndex.load(str(path))
        index.attach_vectors(data)
    else:
        index = HNSWIndex(DIM, "l2", M=16, ef_construction=200, seed=args.seed)
        t0 = time.perf_counter()
        index.add(np.arange(args.rows, dtype=np.int64), data, threads=0, repair=True)
        print(f"built {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        index.save(str(path))
    rows: list[dict[str, object]] = []
    print("| allowed | walk p50 ms | walk recall | rows a walk measures | scan p50 ms | picked | p50 ms | recall |")
    print("|---|---|---|---|---|---|---|---|")
    for share in SHARES:
        # A bitmap over internal rows (ids are 0..N-1, added in order), as a collection passes it.
        allowed = (rng.random(args.rows) < share).astype(np.uint8)
        truth = ground_truth(data, queries, allowed)
        walk, walk_measured = run(index, queries, allowed, False, args.ef, truth)
        scan, _ = run(index, queries, allowed, True, args.ef, truth)
        auto, auto_measured = run(index, queries, allowed, None, args.ef, truth)
        row = {"share": share, "allowed": int(allowed.sum()), "walk_p50_ms": walk["p50_ms"],
               "walk_recall": walk["recall"], "walk_rows_measured": walk_measured, "scan_p50_ms": scan["p50_ms"],
               "picked": "walk" if auto_measured else "scan", "picked_p50_ms": auto["p50_ms"],
               "picked_recall": auto["recall"]}
        rows.append(row)
        print(f"| {share:.1%} ({row['allowed']}) | {walk['p50_ms']:.3f} | {walk['recall']:.3f} | "
              f"{walk_measured:,.0f} | {scan['p50_ms']:.3f} | {row['picked']} | {auto['p50_ms']:.3f} | "
              f"{auto['recall']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {"rows": args.rows, "ef": args.ef, "seed": args.seed},
                                         "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
