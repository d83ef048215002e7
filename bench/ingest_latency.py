"""Insert latency during ingest: does a write wait for a flush? (issue 11, "No write waits for a flush")

    python bench/ingest_latency.py --rows 300000 --json bench/results/ingest_latency_after.json
    PYTHONPATH=/path/to/a/main/checkout python bench/ingest_latency.py --label before ...

In-process engine, fsync always, batches of 10,000 rows of 128 float32 with the five metadata fields
of bench/filtered_search.py (same generator and seed). The flush threshold is scaled to the row count
(default 64 MiB for 300,000 rows: two automatic flushes, as 256 MiB gives at 1,000,000 rows), so that
the run sees the flushes that used to hold the collection lock. It reports the slowest batch, the
median and 99th percentile batch, and rows/s over the ingest; then the time of a final explicit flush.
The ``proximadb`` it imports (path and git commit) is recorded, so that a "before" run against another
checkout (``PYTHONPATH``) and an "after" run are told apart. One process, one run: on a shared machine
compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_search import BATCH, DIM, make_data  # the same data as the filtered benchmark

import proximadb
from proximadb.storage.engine import Engine


def git_commit(path: Path) -> str:
    """The short commit of the checkout ``path`` is in ('' when git cannot tell)."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def run(root: Path, rows: int, flush_bytes: int, index: str) -> dict[str, Any]:
    data = make_data(rows, seed=7)
    vectors, metadata = data.vectors, data.metadata(0, len(data))
    ids = [f"{i:08d}" for i in range(rows)]
    batches: list[float] = []
    with Engine.open(root, fsync="always", flush_bytes=flush_bytes, auto_compact=False) as engine:
        params = {"M": 16, "ef_construction": 200} if index == "hnsw" else {}
        engine.create_collection("bench", DIM, distance_metric="euclidean", indexing_algorithm=index,
                                 index_params=params)
        col = engine.collection("bench")
        t0 = time.perf_counter()
        for start in range(0, rows, BATCH):
            t1 = time.perf_counter()
            col.insert(ids=ids[start : start + BATCH], vectors=vectors[start : start + BATCH],
                       metadatas=metadata[start : start + BATCH])
            batches.append(time.perf_counter() - t1)
        ingest = time.perf_counter() - t0
        segments_after_ingest = col.stats()["segments"]
        t2 = time.perf_counter()
        col.flush()  # waits for a background flush in progress (where there is one), then flushes the rest
        final_flush = time.perf_counter() - t2
        stats = col.stats()
        assert stats["vectors"] == rows, stats
        col.index_builder.stop()
    lat = np.asarray(batches)
    return {
        "rows": rows,
        "batch": BATCH,
        "dim": DIM,
        "flush_bytes": flush_bytes,
        "index": index,
        "ingest_rows_s": round(rows / ingest),
        "slowest_batch_s": round(float(lat.max()), 3),
        "p50_batch_s": round(float(np.median(lat)), 3),
        "p99_batch_s": round(float(np.percentile(lat, 99)), 3),
        "batches_over_1s": int((lat > 1.0).sum()),
        "segments_after_ingest": segments_after_ingest,
        "final_flush_s": round(final_flush, 3),
        "segments": stats["segments"],
        "batch_seconds": [round(float(x), 3) for x in lat],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--flush-bytes", type=int, default=64 << 20)
    ap.add_argument("--index", choices=["flat", "hnsw"], default="flat",
                    help="flat (default): no background index build competes with the writer for the CPU")
    ap.add_argument("--label", default="", help="a name for this run in the results (e.g. before, after)")
    ap.add_argument("--dir", type=Path, default=None, help="data directory parent (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    src = Path(proximadb.__file__).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="pxdb-ingest-", dir=args.dir))
    try:
        result = run(root / "data", args.rows, args.flush_bytes, args.index)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"label": args.label, "proximadb": str(src), "commit": git_commit(src),
              "python": platform.python_version(), **result}
    shown = {k: v for k, v in result.items() if k != "batch_seconds"}
    print(json.dumps(shown, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
