"""Search while fresh rows sit in the memtable (issue 11: "search before the memtable is flushed (120k rows
unindexed): QPS 437, 8x below indexed"), with the memtable's HNSW graph off and on.

    python bench/search_during_ingest.py --rows 120000 --json bench/results/search_during_ingest_120k.json

In-process engine, HNSW M=16 ef_construction=200 collection, euclidean, N x 128 float32 clustered rows
(bench/filtered_search.py's generator; queries drawn the same way), batches of 10,000, fsync never, a flush
threshold above the data (so every row stays in the memtable). Three runs, each in a fresh data directory:

* ``off``: ``memtable_index_rows=0``, every memtable row scanned exactly (today's behaviour);
* ``on``: ``memtable_index_rows`` (default 20,000): searched at once after the ingest (``on_at_once``: the
  graph still catching up, its missing rows scanned exactly), then once the graph has every row (``on``);
  ``catch_up_s`` is how long the graph took after the last insert returned;
* ``indexed``: the same rows flushed into a segment and its index built (the reference).

* ``during`` (issue 11's bar: "searches during continuous ingest >= 0.5x the QPS of the fully indexed
  collection, measured while writes go on"): the rows are inserted, flushed and indexed, searched
  (``indexed``), then a writer thread inserts ``--ingest-rows`` more in batches of 10,000 (at
  ``--rate`` rows/s, 0 = as fast as it can) with the engine's defaults (fsync always, flush
  threshold, memtable graph, background builds and compaction), while the main thread searches
  until the writer is done (``during``). The rows written then are the same clustered rows moved
  far from every query (each component + 100), so they cost what any row costs to write, index and
  search through, while the exact answer stays that of the first rows and recall is measurable.
  ``ratio`` is during QPS / indexed QPS.

Each reports QPS and p50 of single-query searches at ef 64 and recall@10 against numpy's exact answer,
plus ingest rows/s and the slowest insert batch. It reports, never asserts: on a shared machine compare
runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_search import BATCH, DIM, EF, K, clustered, ground_truth, measure
from ingest_latency import git_commit

import proximadb
from proximadb.storage.engine import Engine


def run(root: Path, mode: str, vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]],
        threshold: int) -> dict[str, Any]:
    rows = vectors.shape[0]
    ids = [f"{i:08d}" for i in range(rows)]
    options = {"fsync": "never", "auto_compact": False, "flush_bytes": 4 * rows * DIM * 2,
               "memtable_index_rows": 0 if mode == "off" else threshold}
    out: dict[str, Any] = {}
    with Engine.open(root, **options) as engine:  # type: ignore[arg-type]
        engine.create_collection("bench", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 16, "ef_construction": 200})
        col = engine.collection("bench")
        batches = []
        t0 = time.perf_counter()
        for start in range(0, rows, BATCH):
            t1 = time.perf_counter()
            col.insert(ids=ids[start : start + BATCH], vectors=vectors[start : start + BATCH])
            batches.append(time.perf_counter() - t1)
        ingest = time.perf_counter() - t0
        out["ingest_rows_s"] = round(rows / ingest)
        out["slowest_batch_s"] = round(max(batches), 3)

        def search(q: np.ndarray) -> list[int]:
            return [int(h["id"]) for h in col.search(q, K, ef=EF, include_metadata=False)]

        stats = col.stats()
        assert stats["segments"] == 0 and stats["memtable_rows"] == rows, stats
        if mode == "on":
            out["memtable_indexed_rows_at_once"] = stats["memtable_indexed_rows"]
            out["on_at_once"] = measure(search, queries, truth)
            assert col.wait_for_memtable_index(3600)
            out["catch_up_s"] = round(time.perf_counter() - (t0 + ingest), 2)  # since the last insert returned
            out["memtable_indexed_rows"] = col.stats()["memtable_indexed_rows"]
        elif mode == "indexed":
            t2 = time.perf_counter()
            col.flush()
            assert col.wait_for_indexes(3600)
            out["flush_and_build_s"] = round(time.perf_counter() - t2, 2)
            assert col.stats()["status"] == "green"
        out[mode] = measure(search, queries, truth)
    return out


def run_during(root: Path, vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]], ingest_rows: int,
               rate: float) -> dict[str, Any]:
    rows = vectors.shape[0]
    out: dict[str, Any] = {}
    with Engine.open(root) as engine:
        engine.create_collection("bench", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 16, "ef_construction": 200})
        col = engine.collection("bench")
        for start in range(0, rows, BATCH):
            col.insert(ids=[f"{i:08d}" for i in range(start, min(rows, start + BATCH))],
                       vectors=vectors[start : start + BATCH])
        col.flush()
        assert col.wait_for_indexes(3600)

        def search(q: np.ndarray) -> list[int]:
            return [int(h["id"]) for h in col.search(q, K, ef=EF, include_metadata=False)]

        out["indexed"] = measure(search, queries, truth)
        far = clustered(np.random.default_rng(9), ingest_rows)
        far += 100.0
        batches: list[float] = []
        failed: list[BaseException] = []

        def write() -> None:
            try:
                t0 = time.perf_counter()
                for start in range(0, ingest_rows, BATCH):
                    if rate > 0:  # keep to the rate: batch b starts no earlier than b * BATCH / rate
                        time.sleep(max(0.0, t0 + start / rate - time.perf_counter()))
                    t1 = time.perf_counter()
                    col.insert(ids=[f"w{i:08d}" for i in range(start, min(ingest_rows, start + BATCH))],
                               vectors=far[start : start + BATCH])
                    batches.append(time.perf_counter() - t1)
            except BaseException as exc:  # reported by the main thread
                failed.append(exc)

        writer = threading.Thread(target=write, name="bench-writer")
        times: list[float] = []
        hits = 0.0
        t0 = time.perf_counter()
        writer.start()
        while writer.is_alive():
            qi = len(times) % len(queries)
            t1 = time.perf_counter()
            found = search(queries[qi])
            times.append(time.perf_counter() - t1)
            hits += len(truth[qi] & set(found)) / len(truth[qi])
        writing = time.perf_counter() - t0
        writer.join()
        if failed:
            raise failed[0]
        stats = col.stats()
        out["during"] = {"p50_ms": float(np.median(times) * 1000), "qps": len(times) / writing,
                         "recall": hits / max(1, len(times)), "queries": len(times)}
        out["ingest_rows_s"] = round(ingest_rows / writing)
        out["slowest_batch_s"] = round(max(batches), 3)
        out["after"] = {"segments": stats["segments"], "memtable_rows": stats["memtable_rows"],
                        "memtable_indexed_rows": stats.get("memtable_indexed_rows"), "status": stats["status"]}
        out["ratio"] = round(out["during"]["qps"] / out["indexed"]["qps"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threshold", type=int, default=20_000, help="memtable_index_rows of the 'on' run")
    parser.add_argument("--modes", default="off,on,indexed", help="any of off, on, indexed, during")
    parser.add_argument("--ingest-rows", type=int, default=300_000, help="rows the 'during' run writes while searching")
    parser.add_argument("--rate", type=float, default=0.0, help="rows/s of the 'during' run's writer (0: flat out)")
    parser.add_argument("--dir", type=Path, help="scratch directory [default: a temporary one]")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    vectors = clustered(rng, args.rows)
    queries = clustered(np.random.default_rng(8), args.queries)
    truth = ground_truth(vectors, queries, np.ones(args.rows, dtype=bool))
    scratch = args.dir or Path(tempfile.mkdtemp(prefix="pxdb-sdi-"))
    results: dict[str, Any] = {}
    for mode in args.modes.split(","):
        root = scratch / mode
        shutil.rmtree(root, ignore_errors=True)
        if mode == "during":
            results[mode] = run_during(root, vectors, queries, truth, args.ingest_rows, args.rate)
        else:
            results[mode] = run(root, mode, vectors, queries, truth, args.threshold)
        shutil.rmtree(root, ignore_errors=True)
        print(mode, json.dumps(results[mode]), flush=True)
    if args.dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "what": f"bench/search_during_ingest.py, {args.rows:,} x {DIM} float32 clustered rows in the memtable, "
                f"HNSW M=16 ef_construction=200, single-query searches at ef {EF}, k {K}, "
                f"{args.queries} queries, fsync never (the during run: the engine defaults), in-process",
        "proximadb": f"{Path(proximadb.__file__).parent} {git_commit(Path(proximadb.__file__).parent)}",
        "machine": f"{platform.machine()} {platform.python_version()}",
        "threshold": args.threshold,
        "results": results,
    }
    print("| run | QPS | p50 ms | recall@10 |\n|---|---|---|---|")
    for mode, res in results.items():
        for key in (f"{mode}_at_once", mode) if mode == "on" else ("indexed", mode) if mode == "during" else (mode,):
            if key in res:
                m = res[key]
                print(f"| {key} | {m['qps']:.0f} | {m['p50_ms']:.2f} | {m['recall']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
