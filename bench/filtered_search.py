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
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    picks = rng.integers(0, 1000, rows)
    vectors = rng.standard_normal((rows, DIM), dtype=np.float32)  # scaled and moved in place: 10M rows are 5 GB
    for a in range(0, rows, 1 << 20):
        vectors[a : a + (1 << 20)] *= 0.5
        vectors[a : a + (1 << 20)] += centres[picks[a : a + (1 << 20)]]
    return vectors


@dataclass(slots=True)
class Data:
    """The rows: vectors and the five fields as columns (dicts are made a batch at a time, so 10M rows fit)."""

    vectors: np.ndarray  # (rows, DIM) float32
    tenants: np.ndarray  # int: "tenant-N"
    categories: np.ndarray  # int: "cat-N"
    years: np.ndarray
    prices: np.ndarray
    n_tags: np.ndarray
    tag_ids: np.ndarray  # (rows, 3): the first n_tags are the row's "tag-N"

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def metadata(self, start: int, stop: int) -> list[dict[str, Any]]:
        return [
            {
                "tenant": f"tenant-{self.tenants[i]}",
                "category": f"cat-{self.categories[i]}",
                "year": int(self.years[i]),
                "price": float(self.prices[i]),
                "tags": [f"tag-{t}" for t in self.tag_ids[i, : self.n_tags[i]]],
            }
            for i in range(start, min(stop, len(self)))
        ]

    def allowed(self, spec: dict[str, Any]) -> np.ndarray:
        """The rows a benchmark filter matches (keyword equality and number ranges), by numpy over the columns."""
        out = np.ones(len(self), dtype=bool)
        for field, cond in spec.items():
            if isinstance(cond, dict):
                column = {"year": self.years, "price": self.prices}[field]
                for op, bound in cond.items():
                    out &= {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less,
                            "$lte": np.less_equal}[op](column, bound)
            else:
                column = {"tenant": self.tenants, "category": self.categories}[field]
                out &= column == int(cond.rsplit("-", 1)[1])
        return out


def make_data(rows: int, seed: int) -> Data:
    """The same numbers for a seed as every earlier run of this benchmark (the draws keep their order)."""
    rng = np.random.default_rng(seed)
    vectors = clustered(rng, rows)
    zipf = 1.0 / np.arange(1, 101) ** 0.9
    categories = rng.choice(100, size=rows, p=zipf / zipf.sum())
    tenants = rng.integers(0, 1000, rows)
    years = rng.integers(1990, 2025, rows)
    prices = np.round(rng.uniform(0, 1000, rows), 2)
    n_tags = rng.integers(1, 4, rows)
    tag_ids = rng.integers(0, 50, (rows, 3))
    return Data(vectors, tenants, categories, years, prices, n_tags, tag_ids)


def make_filters(data: Data) -> dict[str, dict[str, Any]]:
    counts = np.bincount(data.categories, minlength=100) / len(data)

    def category_near(share: float) -> str:
        return f"cat-{int(np.argmin(np.abs(counts - share)))}"

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
    """Exact top K among the allowed rows, a million rows at a time (10M rows do not fit twice)."""
    best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_r = np.zeros((len(queries), 0), dtype=np.int64)
    for a in range(0, len(vectors), 1 << 20):
        rows = a + np.flatnonzero(allowed[a : a + (1 << 20)])
        if not len(rows):
            continue
        base = vectors[rows]
        d = (base * base).sum(1)[None, :] - 2 * queries @ base.T
        d = np.concatenate([best_d, d], axis=1)
        r = np.concatenate([best_r, np.broadcast_to(rows, (len(queries), len(rows)))], axis=1)
        if d.shape[1] > K:
            top = np.argpartition(d, K - 1, axis=1)[:, :K]
            d, r = np.take_along_axis(d, top, 1), np.take_along_axis(r, top, 1)
        best_d, best_r = d, r
    return [{int(j) for j in row} for row in best_r]


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


def status_mib(field: str) -> float:
    """A line of /proc/self/status (RssAnon, VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def query_proximadb(root: Path, queries: np.ndarray, filters: dict[str, dict[str, Any]],
                    truths: dict[str, list[set[int]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"anon_before_open_mib": status_mib("RssAnon")}
    t0 = time.perf_counter()
    with Engine.open(root, fsync="always") as engine:
        col = engine.collection("bench")
        col.search(queries[0], k=K, ef=EF)
        out["open_to_first_answer_s"] = time.perf_counter() - t0
        out["anon_after_open_mib"] = status_mib("RssAnon")
        out["segments"] = col.stats()["segments"]

        def search(flt: dict[str, Any] | None) -> Callable[[np.ndarray], list[int]]:
            return lambda q: [int(h["id"]) for h in col.search(q, k=K, filter=flt, ef=EF, include_metadata=False)]

        out["unfiltered"] = measure(search(None), queries, truths["unfiltered"])
        for ef in (128, 256):  # the unfiltered recall/QPS curve, to compare sizes "at the same recall"
            out[f"unfiltered_ef{ef}"] = measure(
                lambda q, ef=ef: [int(h["id"]) for h in col.search(q, k=K, ef=ef, include_metadata=False)],
                queries, truths["unfiltered"])
        for name, flt in filters.items():
            out[name] = measure(search(flt), queries, truths[name])
        out["anon_after_queries_mib"] = status_mib("RssAnon")
        out["rss_after_queries_mib"] = status_mib("VmRSS")
    return out


def ingest_proximadb(root: Path, data: Data, out: dict[str, Any]) -> None:
    rows = len(data)
    with Engine.open(root, fsync="always") as engine:
        engine.create_collection("bench", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 16, "ef_construction": 200})
        col = engine.collection("bench")
        t0 = time.perf_counter()
        slowest = 0.0
        for start in range(0, rows, BATCH):
            ids = [f"{i:08d}" for i in range(start, min(rows, start + BATCH))]
            metadata = data.metadata(start, start + BATCH)
            t1 = time.perf_counter()
            col.insert(ids=ids, vectors=data.vectors[start : start + BATCH], metadatas=metadata)
            slowest = max(slowest, time.perf_counter() - t1)
            if start and start % 1_000_000 == 0:
                print(f"ProximaDB: {start:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        out["ingest_rows_s"] = rows / (time.perf_counter() - t0)
        out["slowest_batch_s"] = slowest
        t0 = time.perf_counter()
        col.flush()
        while col.stats()["index_builds_pending"] or col.stats()["indexed_segments"] < col.stats()["segments"]:
            time.sleep(0.2)
        out["index_build_s"] = time.perf_counter() - t0
        # Background compactions (growing the largest segment's graph) may still run: the figures are
        # of the collection once they are done.
        while True:
            running = getattr(col, "_background", None)  # compaction.CompactionPath's thread
            if running is None or not running.is_alive():
                break
            running.join()
            col.wait_for_indexes()
        out["settled_s"] = time.perf_counter() - t0
        out["segment_rows"] = sorted((s.rows for s in col.segments), reverse=True)


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


def _qdrant_config(qe: Any) -> Any:
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Euclid),
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=200, full_scan_threshold=10_000),
    )


def query_qdrant(root: Path, queries: np.ndarray, filters: dict[str, dict[str, Any]],
                 truths: dict[str, list[set[int]]]) -> dict[str, Any]:
    import qdrant_edge as qe

    out: dict[str, Any] = {}

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


def ingest_qdrant(root: Path, data: Data, out: dict[str, Any]) -> None:
    import qdrant_edge as qe

    shard = qe.EdgeShard.create(str(root), _qdrant_config(qe))
    schema = {"tenant": qe.PayloadSchemaType.Keyword, "category": qe.PayloadSchemaType.Keyword,
              "year": qe.PayloadSchemaType.Integer, "price": qe.PayloadSchemaType.Float,
              "tags": qe.PayloadSchemaType.Keyword}
    for field, kind in schema.items():
        shard.update(qe.UpdateOperation.create_field_index(field, kind))
    t0 = time.perf_counter()
    slowest = 0.0
    for start in range(0, len(data), BATCH):
        metadata = data.metadata(start, start + BATCH)
        t1 = time.perf_counter()
        points = [qe.Point(start + j, data.vectors[start + j].tolist(), md) for j, md in enumerate(metadata)]
        shard.update(qe.UpdateOperation.upsert_points(points))
        slowest = max(slowest, time.perf_counter() - t1)
    shard.flush()
    out["ingest_rows_s"] = len(data) / (time.perf_counter() - t0)
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
                       ("open_to_first_answer_s", "reopen: open until the first answer (s)"),
                       ("segments", "segments searched"),
                       ("anon_after_open_mib", "anonymous memory after the reopen (MiB, the process)"),
                       ("anon_after_queries_mib", "anonymous memory after the queries (MiB)"),
                       ("rss_after_queries_mib", "resident memory after the queries (MiB)")):
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

    data = make_data(args.rows, args.seed)
    queries = clustered(np.random.default_rng(args.seed + 1), args.queries)
    filters = make_filters(data)
    shares: dict[str, float] = {}
    truths: dict[str, list[set[int]]] = {"unfiltered": ground_truth(data.vectors, queries, np.ones(len(data), bool))}
    for name, spec in filters.items():
        allowed = data.allowed(spec)
        shares[name] = float(allowed.mean())
        truths[name] = ground_truth(data.vectors, queries, allowed)
    print(f"data and ground truth ready ({args.rows:,} rows)", file=sys.stderr, flush=True)

    root = args.dir or Path(tempfile.mkdtemp(prefix="pxdb-filtered-"))
    results: dict[str, dict[str, Any]] = {"ProximaDB": {}}
    qdrant = not args.no_qdrant
    if qdrant:
        try:
            import qdrant_edge  # noqa: F401
        except ImportError:
            print("qdrant_edge is not importable: Qdrant edge skipped", file=sys.stderr)
            qdrant = False
    try:
        # Both engines ingest first; the rows are then dropped, so the anonymous memory measured after the
        # reopen is the engine's, not the benchmark's copy of the vectors.
        if (root / "proximadb").exists():
            print(f"reusing the ProximaDB data in {root / 'proximadb'}", file=sys.stderr)
        else:
            ingest_proximadb(root / "proximadb", data, results["ProximaDB"])
            print(f"ProximaDB ingested and indexed: {json.dumps(results['ProximaDB'])}", file=sys.stderr, flush=True)
        if qdrant:
            results["Qdrant edge"] = {}
            if (root / "qdrant").exists():
                print(f"reusing the Qdrant edge data in {root / 'qdrant'}", file=sys.stderr)
            else:
                ingest_qdrant(root / "qdrant", data, results["Qdrant edge"])
        del data
        gc.collect()
        results["ProximaDB"].update(query_proximadb(root / "proximadb", queries, filters, truths))
        print(f"ProximaDB done: {json.dumps(results['ProximaDB'])}", file=sys.stderr, flush=True)
        if qdrant:
            results["Qdrant edge"].update(query_qdrant(root / "qdrant", queries, filters, truths))
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
