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
from filtered_search import DIM, clustered

from proximadb.index.hnsw import HNSWIndex

SHARES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.14, 0.25, 0.5, 0.9)


def p50_ms(index: HNSWIndex, queries: np.ndarray, allowed: np.ndarray, exact: bool | None,
           ef: int) -> tuple[float, list[np.ndarray], float]:
    """p50 latency (ms), the answers, and the mean rows measured per walk (``last_measured``)."""
    found: list[np.ndarray] = []
    times: list[float] = []
    measured: list[int] = []
    for q in queries:
        t0 = time.perf_counter()
        ids, _ = index.search(q, 10, ef=ef, filter_ids=allowed, exact=exact)
        times.append(time.perf_counter() - t0)
        found.append(ids)
        measured.append(index.last_measured)
    return float(np.median(times) * 1e3), found, float(np.mean(measured))


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / max(1, sum(len(t) for t in truth))


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
        truth = [index.search(q, 10, filter_ids=allowed, exact=True)[0] for q in queries]
        walk_ms, walk_found, walk_measured = p50_ms(index, queries, allowed, False, args.ef)
        scan_ms, _, _ = p50_ms(index, queries, allowed, True, args.ef)
        auto_ms, auto_found, auto_measured = p50_ms(index, queries, allowed, None, args.ef)
        row = {"share": share, "allowed": int(allowed.sum()), "walk_p50_ms": walk_ms,
               "walk_recall": recall(walk_found, truth), "walk_rows_measured": walk_measured, "scan_p50_ms": scan_ms,
               "picked": "walk" if auto_measured else "scan", "picked_p50_ms": auto_ms,
               "picked_recall": recall(auto_found, truth)}
        rows.append(row)
        print(f"| {share:.1%} ({int(allowed.sum())}) | {walk_ms:.3f} | {row['walk_recall']:.3f} | "
              f"{walk_measured:,.0f} | {scan_ms:.3f} | {row['picked']} | {auto_ms:.3f} | {row['picked_recall']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {"rows": args.rows, "ef": args.ef, "seed": args.seed},
                                         "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
