"""Compaction with the merged segment's HNSW graph grown from the largest input's, against building
it anew (``--rebuild``), on the data of ``bench/filtered_search.py``.

    python bench/filtered_search.py --rows 1000000 --dir DIR      # once: ingest, index (two segments)
    python bench/compaction_growth.py --rows 1000000 --dir DIR    # grow
    python bench/compaction_growth.py --rows 1000000 --dir DIR --rebuild

The collection in DIR/proximadb is copied to a temporary directory (DIR stays reusable), opened,
compacted into one segment, and searched: it reports the seconds until the merged segment is
searchable through its graph (compaction, plus the background build when rebuilding), the
segments before and after, and unfiltered p50 / QPS / recall@10 at ef 64 and 128 against the
exact answer (the same queries and ground truth as filtered_search.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filtered_search as fs

from proximadb.storage import segment_index
from proximadb.storage.engine import Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, required=True, help="a filtered_search.py --dir holding its data")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the merged segment's graph anew, as before growth (no seed graph)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rebuild:
        segment_index.growth_seed = lambda *a, **k: None  # type: ignore[assignment]

    data = fs.make_data(args.rows, args.seed)
    queries = fs.clustered(np.random.default_rng(args.seed + 1), args.queries)
    truth = fs.ground_truth(data.vectors, queries, np.ones(len(data), bool))
    del data
    out: dict[str, Any] = {"rebuild": args.rebuild, "rows": args.rows}
    work = Path(tempfile.mkdtemp(prefix="pxdb-growth-"))
    try:
        shutil.copytree(args.dir / "proximadb", work / "proximadb")
        with Engine.open(work / "proximadb", fsync="always", auto_compact=False) as engine:
            col = engine.collection("bench")
            col.wait_for_indexes()
            out["segments_before"] = [s.rows for s in col.segments]
            t0 = time.perf_counter()
            report = col.compact()
            out["compact_s"] = time.perf_counter() - t0
            col.wait_for_indexes()
            out["until_indexed_s"] = time.perf_counter() - t0
            out["segments_after"] = [s.rows for s in col.segments]
            out["merged"] = report["merged"]
            for ef in (64, 128):
                def search(q: np.ndarray, ef: int = ef) -> list[int]:
                    return [int(h["id"]) for h in col.search(q, k=fs.K, ef=ef, include_metadata=False)]
                out[f"unfiltered_ef{ef}"] = fs.measure(search, queries, truth)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
