"""Filtered search at scale: ProximaDB (in-process engine) and, in the same run, the embedded
Qdrant engine (``qdrant_edge``, pip package qdrant-edge-py) when it is importable.

    python bench/filtered_search.py --rows 200000
    python bench/filtered_search.py --rows 1000000 --json bench/results/filtered_1m.json
    python bench/filtered_search.py --rows 200000 --dir /tmp/f200k   # again: reuses the data
    python bench/filtered_search.py --rows 200000 --dir /tmp/f200k --no-plan-cache  # plan every query

Data from a seed: N x 128 float32 (around 1,000 Gaussian centres; queries drawn the same
way), five metadata fields: ``tenant`` (a keyword of 1,000 values), ``category`` (a keyword
of 100 values, Zipf-like), ``year`` (an integer, 1990-2024), ``price`` (a float, 0-1000) and
``tags`` (a list of 1-3 keywords of 50). ProximaDB: fsync always, batches of 10,000, HNSW
M=16 ef_construction=200, then a flush and the index build.
For each filter (and unfiltered) it reports p50 latency and QPS of single-query searches at
ef 64, and recall@10 against an exact search over the matching rows; also ingest rows/s, the
index build and open-until-first-answer of the reopened collection. Results print as a
Markdown table (``--json`` also writes them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from proximadb.storage.engine import Engine

DIM = 128
BATCH = 10_000
K = 10
EF = 64


def clustered(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows around 1,000 centres (like embeddings, unlike i.i.d. noise on which no graph index
    reaches a useful recall at ef 64); the same centres for any ``rows`` (seeded separately)."""
    centres = np.random.default_rng(12345).standard_normal((1000, DIM), dtype=np.float32)
    return centres[rng.integers(0, 1000, rows)] + 0.5 * rng.standard_normal((rows, DIM), dtype=np.float32)


def make_data(rows: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = clustered(rng, rows)
    zipf = 1.0 / np.arange(1, 101) ** 0.9
    categories = rng.choice(100, size=rows, p=zipf / zipf.sum())
    tenants = rng.integers(0, 1000, rows)
    years = rng.integers(1990, 2025, rows)
    prices = np.round(rng.uniform(0, 1000, rows), 2)
    n_tags = rng.integers(1, 4, rows)
    tag_ids = rng.integers(0, 50, (rows, 3))
    metadata = [
        {
            "tenant": f"tenant-{tenants[i]}",
            "category": f"cat-{categories[i]}",
            "year": int(years[i]),
            "price": float(prices[i]),
            "tags": [f"tag-{t}" for t in tag_ids[i, : n_tags[i]]],
        }
        for i in range(rows)
    ]
    return vectors, metadata


def make_filters(metadata: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    counts: dict[str, int] = {}
    for md in metadata:
        counts[md["category"]] = counts.get(md["category"], 0) + 1

    def category_near(share: float) -> str:
        return min(counts, key=lambda c: abs(counts[c] / len(metadata) - share))

    years = {"$gte": 2000, "$lt": 2005}
    return {
        "tenant (~0.1%)": {"tenant": "tenant-42"},
        "category (~1%)": {"category": category_near(0.01)},
        "year range (~14%)": {"year": years},
        "category ~10% AND year": {"category": category_near(0.10), "year": years},
        "price (~0.01%)": {"price": {"$gte": 100.0, "$lt": 100.1}},
        "price (~50%)": {"price": {"$lt": 500.0}},
    }


def ground_truth(vectors: np.ndarray, queries: np.ndarray, allowed: np.ndarray) -> list[set[int]]:
    rows = np.flatnonzero(allowed)
    base = vectors[rows]
    norms = (base * base).sum(1)
    truth = []
    for q in queries:
        d = norms - 2 * base @ q
        top = np.argpartition(d, min(K, len(d) - 1))[:K] if len(d) > K else np.arange(len(d))
        truth.append({int(rows[j]) for j in top})
    return truth


def measure(search: Callable[[np.ndarray], list[int]], queries: np.ndarray,
            truth: list[set[int]] | None) -> dict[str, float]:
    search(queries[0])  # warm
    times = []
    hits = 0.0
    for qi, q in enumerate(queries):
        t0 = time.perf_counter()
        found = search(q)
        times.append(time.perf_counter() - t0)
        if truth is not None:
            want = truth[qi]
            hits += len(want & set(found)) / len(want) if want else float(not found)
    return {
        "p50_ms": float(np.median(times) * 1000),
        "qps": float(len(times) / sum(times)),
        "recall": hits / len(queries) if truth is not None else float("nan"),
    }


# -- ProximaDB ---------------------------------------------------------------------


def run_proximadb(root: Path, vectors: np.ndarray, metadata: list[dict[str, Any]], queries: np.ndarray,
                  filters: dict[str, dict[str, Any]], truths: dict[str, list[set[int]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not root.exists():
        _ingest_proximadb(root, vectors, metadata, out)
    else:
        print(f"reusing the ProximaDB data in {root}", file=sys.stderr)
    t0 = time.perf_counter()
    with Engine.open(root, fsync="always") as engine:
        col = engine.collection("bench")
        col.search(queries[0], k=K, ef=EF)
        out["open_to_first_answer_s"] = time.perf_counter() - t0

        def search(flt: dict[str, Any] | None) -> Callable[[np.ndarray], list[int]]:
            return lambda q: [int(h["id"]) for h in col.search(q, k=K, filter=flt, ef=EF, include_metadata=False)]

        out["unfiltered"] = measure(search(None), queries, truths["unfiltered"])
        for name, flt in filters.items():
            out[name] = measure(search(flt), queries, truths[name])
    return out


def _ingest_proximadb(root: Path, vectors: np.ndarray, metadata: list[dict[str, Any]], out: dict[str, Any]) -> None:
    rows = len(vectors)
    ids = [f"{i:08d}" for i in range(rows)]
    with Engine.open(root, fsync="always") as engine:
        engine.create_collection("bench", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 16, "ef_construction": 200})
        col = engine.collection("bench")
        t0 = time.perf_counter()
        slowest = 0.0
        for start in range(0, rows, BATCH):
            t1 = time.perf_counter()
            col.insert(ids=ids[start : start + BATCH], vectors=vectors[start : start + BATCH],
                       metadatas=metadata[start : start + BATCH])
            slowest = max(slowest, time.perf_counter() - t1)
        out["ingest_rows_s"] = rows / (time.perf_counter() - t0)
        out["slowest_batch_s"] = slowest
        t0 = time.perf_counter()
        col.flush()
        while col.stats()["index_builds_pending"] or col.stats()["indexed_segments"] < col.stats()["segments"]:
            time.sleep(0.2)
        out["index_build_s"] = time.perf_counter() - t0


# -- Qdrant edge ---------------------------------------------------------------------


def _qdrant_filter(qe: Any, spec: dict[str, Any]) -> Any:
    must = []
    for field, cond in spec.items():
        if isinstance(cond, dict):
            bounds = {op[1:]: value for op, value in cond.items()}
            must.append(qe.FieldCondition(key=field, range=qe.RangeFloat(**bounds)))
        else:
            must.append(qe.FieldCondition(key=field, match=qe.MatchValue(cond)))
    return qe.Filter(must=must)


def run_qdrant(root: Path, vectors: np.ndarray, metadata: list[dict[str, Any]], queries: np.ndarray,
               filters: dict[str, dict[str, Any]], truths: dict[str, list[set[int]]]) -> dict[str, Any]:
    import qdrant_edge as qe

    config = qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Euclid),
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=200, full_scan_threshold=10_000),
    )
    out: dict[str, Any] = {}
    if root.exists():
        print(f"reusing the Qdrant edge data in {root}", file=sys.stderr)
    else:
        _ingest_qdrant(qe, root, config, vectors, metadata, out)

    def query(flt: Any) -> Callable[[np.ndarray], list[int]]:
        params = qe.SearchParams(hnsw_ef=EF)
        return lambda q: [int(p.id) for p in shard.query(
            qe.QueryRequest(limit=K, query=qe.Query.Nearest(q.tolist()), filter=flt, params=params))]

    t0 = time.perf_counter()
    shard = qe.EdgeShard.load(str(root))
    query(None)(queries[0])
    out["open_to_first_answer_s"] = time.perf_counter() - t0
    out["unfiltered"] = measure(query(None), queries, truths["unfiltered"])
    for name, spec in filters.items():
        out[name] = measure(query(_qdrant_filter(qe, spec)), queries, truths[name])
    shard.close()
    return out


def _ingest_qdrant(qe: Any, root: Path, config: Any, vectors: np.ndarray, metadata: list[dict[str, Any]],
                   out: dict[str, Any]) -> None:
    shard = qe.EdgeShard.create(str(root), config)
    schema = {"tenant": qe.PayloadSchemaType.Keyword, "category": qe.PayloadSchemaType.Keyword,
              "year": qe.PayloadSchemaType.Integer, "price": qe.PayloadSchemaType.Float,
              "tags": qe.PayloadSchemaType.Keyword}
    for field, kind in schema.items():
        shard.update(qe.UpdateOperation.create_field_index(field, kind))
    t0 = time.perf_counter()
    slowest = 0.0
    for start in range(0, len(vectors), BATCH):
        t1 = time.perf_counter()
        points = [qe.Point(i, vectors[i].tolist(), metadata[i]) for i in range(start, min(start + BATCH, len(vectors)))]
        shard.update(qe.UpdateOperation.upsert_points(points))
        slowest = max(slowest, time.perf_counter() - t1)
    shard.flush()
    out["ingest_rows_s"] = len(vectors) / (time.perf_counter() - t0)
    out["slowest_batch_s"] = slowest
    t0 = time.perf_counter()
    shard.optimize()
    shard.flush()
    out["index_build_s"] = time.perf_counter() - t0
    shard.close()


def table(results: dict[str, dict[str, Any]], filters: list[str], shares: dict[str, float]) -> str:
    engines = list(results)
    lines = ["| figure | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for name in ["unfiltered", *filters]:
        share = f" ({shares[name]:.3%} match)" if name in shares else ""
        cells = [f"p50 {r[name]['p50_ms']:.2f} ms, {r[name]['qps']:,.0f} QPS, recall {r[name]['recall']:.3f}"
                 for r in results.values()]
        lines.append(f"| {name}{share} | " + " | ".join(cells) + " |")
    for key, label in (("ingest_rows_s", "ingest rows/s"), ("slowest_batch_s", "slowest 10,000-row batch (s)"),
                       ("index_build_s", "flush + index build (s)"),
                       ("open_to_first_answer_s", "reopen: open until the first answer (s)")):
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:,.2f}" if key in r else "- (reused data)"
                                                  for r in results.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to keep the data (default: a temporary dir, removed after the run); a --dir "
                             "that already holds a run's data (same --rows and --seed) is reused: no ingest")
    parser.add_argument("--no-qdrant", action="store_true", help="skip Qdrant edge even when it is importable")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--no-plan-cache", action="store_true",
                        help="keep no filter plans (storage/filter_cache.py): every query plans its filter again, "
                             "as a filter seen for the first time")
    args = parser.parse_args(argv)
    if args.no_plan_cache:
        from proximadb.storage import filter_cache

        filter_cache.BYTES = 0  # no plan fits: none is kept

    vectors, metadata = make_data(args.rows, args.seed)
    queries = clustered(np.random.default_rng(args.seed + 1), args.queries)
    filters = make_filters(metadata)
    shares: dict[str, float] = {}
    truths: dict[str, list[set[int]]] = {"unfiltered": ground_truth(vectors, queries, np.ones(len(vectors), bool))}
    from proximadb.filters import compile_filter

    for name, spec in filters.items():
        flt = compile_filter(spec)
        assert flt is not None
        allowed = flt.mask(metadata)
        shares[name] = float(allowed.mean())
        truths[name] = ground_truth(vectors, queries, allowed)

    root = args.dir or Path(tempfile.mkdtemp(prefix="pxdb-filtered-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        results["ProximaDB"] = run_proximadb(root / "proximadb", vectors, metadata, queries, filters, truths)
        print(f"ProximaDB done: {json.dumps(results['ProximaDB'])}", file=sys.stderr, flush=True)
        try:
            import qdrant_edge  # noqa: F401
        except ImportError:
            print("qdrant_edge is not importable: Qdrant edge skipped", file=sys.stderr)
        else:
            if not args.no_qdrant:
                results["Qdrant edge"] = run_qdrant(root / "qdrant", vectors, metadata, queries, filters, truths)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"rows={args.rows} dim={DIM} queries={args.queries} seed={args.seed} k={K} ef={EF}")
    print(table(results, list(filters), shares))
    if args.json:
        args.json.write_text(json.dumps({"args": {"rows": args.rows, "queries": args.queries, "seed": args.seed,
                                                  "no_plan_cache": args.no_plan_cache},
                                         "shares": shares, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
