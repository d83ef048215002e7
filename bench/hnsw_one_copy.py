"""One copy of the vectors (issue #11): the float32 HNSW index of a segment as a collection uses it.

    python bench/hnsw_one_copy.py ann --dataset siftsmall      # QPS / recall at ef 16, 32, 64
    python bench/hnsw_one_copy.py ann --dataset glove-angular
    python bench/hnsw_one_copy.py memory --rows 200000         # anonymous memory of a reopened collection

``ann``: builds ``HNSWIndex`` (M 16, ef_construction 200, seed 0, one thread: reproducible) over the
dataset, saves it, and searches the index loaded back the way a segment does: with the vectors of a
memory-mapped float32 file attached (``attach_vectors``) where the index has that method, else (older
code, whose index file holds the vectors) as loaded. Reports recall@10 and single-query QPS per ef, the
index file's size and the index's own memory per vector (``memory_usage()`` without ``vectors``).

``memory``: a collection of ``--rows`` x 128 clustered rows (bench/filtered_search.py's data), HNSW
M 16, flushed and indexed, then reopened in a fresh process; reports that process's anonymous memory
(``RssAnon`` of /proc/self/status) before the open and after the open and a first search (the
index loaded), and the size of the segment's index file.

QPS figures are noisy on the shared 2-core machine (the load average is recorded); recall, memory and
file sizes are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

K = 10


def rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return -1


def timed(search: Any, queries: np.ndarray, repeat: int) -> tuple[list[np.ndarray], float, float]:
    """Every query one call at a time, repeat passes: (first pass's results, best QPS by the clock, best
    QPS by this process's CPU time, which other processes on the machine disturb less)."""
    wall = cpu = float("inf")
    found: list[np.ndarray] = []
    for r in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = [search(q) for q in queries]
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        if r == 0:
            found = out
    return found, len(queries) / wall, len(queries) / cpu


def run_ann(args: argparse.Namespace) -> dict[str, Any]:
    from bench.ann_benchmark import DEFAULT_DATA, load_dataset, recall_at
    from proximadb.index import distance
    from proximadb.index.hnsw import HNSWIndex

    base, queries, truth, metric = load_dataset(args.dataset, DEFAULT_DATA)
    out: dict[str, Any] = {"dataset": args.dataset, "n_base": len(base), "dim": base.shape[1], "metric": metric,
                           "loadavg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        path = keep / "index.hnsw"
        if path.exists():
            out["index"] = f"reused {path} (same graph as an earlier run)"
        else:
            index = HNSWIndex(base.shape[1], metric=metric, M=16, ef_construction=200, seed=0)
            t0 = time.perf_counter()
            index.add(np.arange(len(base), dtype=np.int64), base, threads=args.build_threads)
            out[f"build_s_{args.build_threads}_threads"] = round(time.perf_counter() - t0, 2)
            index.save(path)
            del index
        out["file_bytes_per_vector"] = path.stat().st_size / len(base)
        loaded = HNSWIndex.load(path)
        vec_path = Path(tmp) / "vectors.f32"
        # As a collection's segment holds them: normalised under cosine (collection_writes.py).
        (distance.normalize_rows(base) if metric == "cosine" else base).astype("<f4").tofile(vec_path)
        mapped = np.memmap(vec_path, dtype="<f4", mode="r", shape=base.shape)
        if hasattr(loaded, "attach_vectors"):
            loaded.attach_vectors(mapped)
            out["vectors"] = "attached memory map"
        else:
            out["vectors"] = "in the index (interleaved with the level-0 links)"
        mem = loaded.memory_usage()
        graph_bytes = sum(v for k, v in mem.items() if k not in ("vectors", "vectors_mapped"))
        out["mem_bytes_per_vector"] = graph_bytes / len(base)
        out["vectors_in_index_memory"] = "vectors" in mem
        rows = []
        for q in queries[:1000]:  # warm-up: page cache mapped, caches
            loaded.search(q, K, ef=64)
        for ef in (16, 32, 64):
            found, qps, cpu_qps = timed(lambda q, ef=ef: loaded.search(q, K, ef=ef)[0], queries, args.repeat)
            rows.append({"ef": ef, "recall": round(recall_at(found, truth), 4), "qps": round(qps),
                         "qps_cpu": round(cpu_qps)})
        out["sweep"] = rows
    out["loadavg_after"] = round(os.getloadavg()[0], 2)
    return out


def _reopen_child(root: str, queries_path: str) -> None:
    from proximadb.storage.engine import Engine

    before = rss_anon_kib()
    q = np.load(queries_path)
    with Engine.open(root) as engine:
        col = engine.collection("bench")
        col.search(q[0], k=K, ef=64)
        stats = col.stats()
        after = rss_anon_kib()
        hits = [[h["id"] for h in col.search(v, k=K, ef=64, include_metadata=False)] for v in q]
    print(json.dumps({"rss_anon_kib_before_open": before, "rss_anon_kib_after_open_and_search": after,
                      "indexed_segments": stats["indexed_segments"], "segments": stats["segments"],
                      "hits": hits}))


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    from bench.filtered_search import clustered
    from proximadb.storage.engine import Engine

    rng = np.random.default_rng(args.seed)
    vectors = clustered(rng, args.rows)
    queries = clustered(np.random.default_rng(args.seed + 1), 50)
    out: dict[str, Any] = {"rows": args.rows, "dim": vectors.shape[1]}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp) / "db"
        with Engine.open(root) as engine:
            engine.create_collection("bench", vectors.shape[1], distance_metric="euclidean",
                                     indexing_algorithm="hnsw", index_params={"M": 16, "ef_construction": 200})
            col = engine.collection("bench")
            for s in range(0, args.rows, 10_000):
                col.insert(ids=[f"{i:08d}" for i in range(s, min(s + 10_000, args.rows))],
                           vectors=vectors[s:s + 10_000])
            t0 = time.perf_counter()
            col.flush()
            while col.stats()["index_builds_pending"] or col.stats()["indexed_segments"] < col.stats()["segments"]:
                time.sleep(0.2)
            out["flush_and_index_build_s"] = round(time.perf_counter() - t0, 1)
        out["index_file_bytes"] = sum(p.stat().st_size for p in root.rglob("index.hnsw"))
        out["vectors_file_bytes"] = sum(p.stat().st_size for p in root.rglob("vectors.f32"))
        qpath = Path(tmp) / "q.npy"
        np.save(qpath, queries)
        child = subprocess.run([sys.executable, __file__, "_reopen", str(root), str(qpath)], check=True,
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        reopened = json.loads(child.stdout.strip().splitlines()[-1])
    hits = reopened.pop("hits")
    out.update(reopened)
    out["rss_anon_index_mib"] = round((reopened["rss_anon_kib_after_open_and_search"]
                                       - reopened["rss_anon_kib_before_open"]) / 1024, 1)
    # Recall against an exact scan of the rows (ids are row numbers).
    d = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1) if args.rows <= 20_000 else None
    if d is None:
        truth = []
        for q in queries:
            dist = ((vectors - q) ** 2).sum(1)
            truth.append(set(np.argpartition(dist, K)[:K].tolist()))
    else:
        truth = [set(np.argpartition(row, K)[:K].tolist()) for row in d]
    out["recall_at_10_ef64"] = round(float(np.mean([len(truth[i] & {int(h) for h in hits[i]}) / K
                                                    for i in range(len(queries))])), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_reopen":
        _reopen_child(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ann")
    a.add_argument("--dataset", choices=["siftsmall", "glove-l2", "glove-angular"], default="siftsmall")
    a.add_argument("--repeat", type=int, default=0, help="passes per ef (default: 10 small, 3 glove)")
    a.add_argument("--build-threads", type=int, default=1)
    a.add_argument("--keep", type=Path, default=None,
                   help="directory to save the index in, or to load it from when it is there (compare code "
                        "versions on one graph: a version-1 file opens in the newer code)")
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, default=200_000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tmp", default=None, help="directory for the temporary collection")
    for sp in (a, m):
        sp.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    if args.cmd == "ann":
        args.repeat = args.repeat or (10 if args.dataset == "siftsmall" else 3)
        out = run_ann(args)
    else:
        out = run_memory(args)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
