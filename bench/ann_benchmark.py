"""ANN benchmark: ProximaDB HNSW/IVF against hnswlib and faiss on the same data.

Builds every index on the same base vectors with the same parameters (HNSW:
M / ef_construction; IVF: nlist), single-threaded, then times one query at a
time through each library's Python call (the per-request shape of the daemon)
and reports recall@10 against the dataset's exact ground truth.

    python bench/ann_benchmark.py --dataset siftsmall
    python bench/ann_benchmark.py --dataset glove-angular --efs 16,32,64,128,256
    python bench/ann_benchmark.py --dataset glove-l2 --libs ours,hnswlib --queries 2000

Our HNSW is renumbered after its build (``reorder()``, counted in the build time) unless
--no-reorder: an option of the index on its own; the database never reorders a segment's index,
which reads the segment's memory-mapped vectors in the segment's row order.

Results go to stdout and to bench/results/<dataset>-M<M>-efc<efc>.{json,md}.
Timings on a shared machine are noisy: each sweep point is the best of
--repeat passes over the queries.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from proximadb.tools.datasets import fvecs_read, ivecs_read, recall_at, siftsmall

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path(os.environ.get("PROXIMADB_DATASETS", ROOT.parent / "shared" / "datasets"))
ALL_LIBS = ("ours", "hnswlib", "faiss-hnsw", "ours-ivf", "faiss-ivf")
K = 10




def load_dataset(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(base, queries, ground truth ids, metric) with metric in l2 / cosine."""
    if name == "siftsmall":
        return (*siftsmall(root), "l2")
    d = root / "glove-6b-50d"
    base, queries = fvecs_read(d / "glove50_base.fvecs"), fvecs_read(d / "glove50_query.fvecs")
    if name == "glove-l2":
        return base, queries, ivecs_read(d / "glove50_groundtruth_l2.ivecs"), "l2"
    if name == "glove-angular":
        return base, queries, ivecs_read(d / "glove50_groundtruth_angular.ivecs"), "cosine"
    raise SystemExit(f"unknown dataset {name!r}")




def timed_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
                  repeat: int) -> tuple[list[np.ndarray], float]:
    """Run every query one call at a time; (results of the first pass, best QPS)."""
    best = float("inf")
    found: list[np.ndarray] = []
    for q in queries[:1000]:  # warm-up: caches, page tables, CPU clocks after the build
        search(q)
    for r in range(repeat):
        t0 = time.perf_counter()
        out = [search(q) for q in queries]
        best = min(best, time.perf_counter() - t0)
        if r == 0:
            found = out
    return found, len(queries) / best


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- runners --

def run_ours_hnsw(base, queries, truth, metric, args, out):  # type: ignore[no-untyped-def]
    from proximadb.index.hnsw import HNSWIndex

    index = HNSWIndex(base.shape[1], metric=metric, M=args.M, ef_construction=args.efc, seed=0)
    t0 = time.perf_counter()
    index.add(np.arange(len(base), dtype=np.int64), base, threads=args.build_threads)
    if not args.no_reorder:
        # Not what the database does: a segment's index is built over its memory-mapped vectors.f32
        # (add(copy=False), registry.py) and never reordered, as reorder() copies the vectors into the
        # index's own memory. Counted in the build time here; --no-reorder builds as a segment does.
        index.reorder()
    build = time.perf_counter() - t0
    mem = index.memory_usage()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.hnsw"
        index.save(path)
        file_extra = path.stat().st_size  # index.hnsw format 2 holds no vectors: all of it is beyond them
    extra = sum(v for k, v in mem.items() if k not in ("vectors", "vectors_mapped"))
    rows = []
    for ef in args.efs:
        found, qps = timed_queries(lambda q, ef=ef: index.search(q, K, ef=ef)[0], queries, args.repeat)
        rows.append({"param": ef, "recall": recall_at(found, truth), "qps": qps})
    out["ours"] = {"build_s": build, "sweep": rows, "param": "ef", "mem_bytes_per_vector": extra / len(base),
                   "file_bytes_per_vector": file_extra / len(base)}


def run_hnswlib(base, queries, truth, metric, args, out):  # type: ignore[no-untyped-def]
    import hnswlib

    index = hnswlib.Index(space="l2" if metric == "l2" else "cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=args.M, ef_construction=args.efc, random_seed=0)
    index.set_num_threads(1)
    t0 = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=args.build_threads)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.bin"
        index.save_index(str(path))
        file_extra = path.stat().st_size - base.nbytes
    # In memory hnswlib also keeps, per element: a linkLists_ pointer (8), its level
    # (4), a std::mutex (40) and a label_lookup_ unordered_map node + bucket (~40);
    # the saved file holds level-0 block (links + label) + 4-byte upper-size + upper links.
    mem_extra = file_extra / len(base) - 4 + 8 + 4 + 40 + 40
    rows = []
    for ef in args.efs:
        index.set_ef(ef)
        found, qps = timed_queries(lambda q: index.knn_query(q, k=K)[0][0], queries, args.repeat)
        rows.append({"param": ef, "recall": recall_at(found, truth), "qps": qps})
    out["hnswlib"] = {"build_s": build, "sweep": rows, "param": "ef", "mem_bytes_per_vector": mem_extra,
                      "file_bytes_per_vector": file_extra / len(base)}


def run_faiss_hnsw(base, queries, truth, metric, args, out):  # type: ignore[no-untyped-def]
    import faiss

    faiss.omp_set_num_threads(args.build_threads)
    if metric == "cosine":
        base, queries = normalized(base), normalized(queries)
        index = faiss.IndexHNSWFlat(base.shape[1], args.M, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(base.shape[1], args.M)
    index.hnsw.efConstruction = args.efc
    t0 = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    file_extra = faiss.serialize_index(index).nbytes - base.nbytes
    rows = []
    for ef in args.efs:
        index.hnsw.efSearch = ef
        found, qps = timed_queries(lambda q: index.search(q[None], K)[1][0], queries, args.repeat)
        rows.append({"param": ef, "recall": recall_at(found, truth), "qps": qps})
    out["faiss-hnsw"] = {"build_s": build, "sweep": rows, "param": "ef",
                         "file_bytes_per_vector": file_extra / len(base)}


def run_ours_ivf(base, queries, truth, metric, args, out):  # type: ignore[no-untyped-def]
    from proximadb.index.ivf import IVFIndex

    index = IVFIndex(base.shape[1], metric=metric, nlist=args.nlist, seed=0)
    t0 = time.perf_counter()
    index.train(base)
    train = time.perf_counter() - t0
    index.add(np.arange(len(base), dtype=np.int64), base)
    build = time.perf_counter() - t0
    rows = []
    for nprobe in args.nprobes:
        found, qps = timed_queries(lambda q, p=nprobe: index.search(q, K, nprobe=p)[0], queries, args.repeat)
        rows.append({"param": nprobe, "recall": recall_at(found, truth), "qps": qps})
    out["ours-ivf"] = {"build_s": build, "train_s": train, "sweep": rows, "param": "nprobe"}


def run_faiss_ivf(base, queries, truth, metric, args, out):  # type: ignore[no-untyped-def]
    import faiss

    faiss.omp_set_num_threads(1)
    d = base.shape[1]
    if metric == "cosine":
        base, queries = normalized(base), normalized(queries)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, args.nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, args.nlist)
    t0 = time.perf_counter()
    index.train(base)
    train = time.perf_counter() - t0
    index.add(base)
    build = time.perf_counter() - t0
    rows = []
    for nprobe in args.nprobes:
        index.nprobe = nprobe
        found, qps = timed_queries(lambda q: index.search(q[None], K)[1][0], queries, args.repeat)
        rows.append({"param": nprobe, "recall": recall_at(found, truth), "qps": qps})
    out["faiss-ivf"] = {"build_s": build, "train_s": train, "sweep": rows, "param": "nprobe"}


RUNNERS = {"ours": run_ours_hnsw, "hnswlib": run_hnswlib, "faiss-hnsw": run_faiss_hnsw,
           "ours-ivf": run_ours_ivf, "faiss-ivf": run_faiss_ivf}


def best_qps(result: dict | None, min_recall: float) -> float | None:
    """Highest QPS among the sweep points reaching min_recall (None if none does)."""
    if not result:
        return None
    ok = [r["qps"] for r in result["sweep"] if r["recall"] >= min_recall]
    return max(ok) if ok else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(res: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for bar in (0.9, 0.95):
        out[f"hnsw_qps_vs_hnswlib@{bar}"] = ratio(best_qps(res.get("ours"), bar), best_qps(res.get("hnswlib"), bar))
        out[f"hnsw_qps_vs_faiss_hnsw@{bar}"] = ratio(best_qps(res.get("ours"), bar),
                                                     best_qps(res.get("faiss-hnsw"), bar))
    out["ivf_qps_vs_faiss_ivf@0.9"] = ratio(best_qps(res.get("ours-ivf"), 0.9), best_qps(res.get("faiss-ivf"), 0.9))
    if "ours" in res and "hnswlib" in res:
        out["hnsw_build_time_vs_hnswlib"] = res["ours"]["build_s"] / res["hnswlib"]["build_s"]
        out["hnsw_mem_vs_hnswlib"] = res["ours"]["mem_bytes_per_vector"] / res["hnswlib"]["mem_bytes_per_vector"]
    if "ours-ivf" in res and "faiss-ivf" in res:
        out["ivf_build_time_vs_faiss"] = res["ours-ivf"]["build_s"] / res["faiss-ivf"]["build_s"]
    return out


def markdown(report: dict) -> str:
    lines = [f"# ANN benchmark: {report['dataset']} ({report['n_base']} x {report['dim']}, {report['metric']}, "
             f"{report['n_queries']} queries)", "",
             f"{report['date']}, {report['machine']}, SIMD level {report['simd_level']}, "
             f"M={report['M']}, ef_construction={report['efc']}, nlist={report['nlist']}, "
             f"HNSW build threads {report['build_threads']} (ours: reorder() {report['reorder']}, "
             f"included in build time; a segment's index is never reordered), search single thread, "
             f"one query per call, best of {report['repeat']}; "
             f"load average before/after {report['loadavg_before']} / {report['loadavg_after']}.", "",
             "| library | build s | param | recall@10 | QPS |", "|---|---:|---:|---:|---:|"]
    for lib, res in report["results"].items():
        for i, row in enumerate(res["sweep"]):
            build = f"{res['build_s']:.2f}" if i == 0 else ""
            lines.append(f"| {lib if i == 0 else ''} | {build} | {res['param']}={row['param']} | "
                         f"{row['recall']:.4f} | {row['qps']:.0f} |")
    lines += ["", "| memory beyond raw vectors (bytes/vector) | in memory | saved file |", "|---|---:|---:|"]
    for lib, res in report["results"].items():
        if "file_bytes_per_vector" in res:
            mem = res.get("mem_bytes_per_vector")
            lines.append(f"| {lib} | {'' if mem is None else f'{mem:.1f}'} | {res['file_bytes_per_vector']:.1f} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    for name, value in report["ratios"].items():
        lines.append(f"| {name} | {'n/a' if value is None else f'{value:.3f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["siftsmall", "glove-l2", "glove-angular"], default="siftsmall")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="datasets directory")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--efc", type=int, default=200, help="ef_construction")
    p.add_argument("--efs", default="16,32,64,128", help="search ef sweep")
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (default: 100 for siftsmall, 1024 for glove)")
    p.add_argument("--nprobes", default="1,2,4,8,16,32,64", help="IVF nprobe sweep")
    p.add_argument("--libs", default=",".join(ALL_LIBS), help=f"comma list out of {ALL_LIBS}")
    p.add_argument("--queries", type=int, default=0, help="use only the first N queries")
    p.add_argument("--base", type=int, default=0, help="use only the first N base rows (recomputes ground truth)")
    p.add_argument("--repeat", type=int, default=0, help="passes per sweep point (default: 20 small, 2 glove)")
    p.add_argument("--build-threads", type=int, default=1, help="threads for the HNSW builds (all libraries)")
    p.add_argument("--no-reorder", action="store_true",
                   help="skip our HNSW's reorder() after the build, as a segment's index build does")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    args.efs = [int(x) for x in args.efs.split(",")]
    args.nprobes = [int(x) for x in args.nprobes.split(",")]
    libs = [x for x in args.libs.split(",") if x]
    for lib in libs:
        if lib not in RUNNERS:
            p.error(f"unknown library {lib!r}")

    base, queries, truth, metric = load_dataset(args.dataset, args.data)
    if args.queries:
        queries, truth = queries[: args.queries], truth[: args.queries]
    if args.base:
        from tests.index.test_hnsw import brute_force  # exact float64 ground truth

        base = base[: args.base]
        truth = brute_force(base, queries, K, metric)
    args.nlist = args.nlist or (100 if args.dataset == "siftsmall" else 1024)
    args.repeat = args.repeat or (20 if len(queries) <= 1000 else 2)
    args.nprobes = [x for x in args.nprobes if x <= args.nlist]

    from proximadb.index.hnsw import simd_level

    report: dict = {
        "dataset": args.dataset, "metric": metric, "n_base": len(base), "dim": base.shape[1],
        "n_queries": len(queries), "M": args.M, "efc": args.efc, "nlist": args.nlist, "repeat": args.repeat,
        "build_threads": args.build_threads, "reorder": not args.no_reorder,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
        "simd_level": simd_level(), "loadavg_before": round(os.getloadavg()[0], 2), "results": {},
    }
    for lib in libs:
        print(f"[{lib}] building on {len(base)} x {base.shape[1]} ({metric}) ...", flush=True)
        RUNNERS[lib](base, queries, truth, metric, args, report["results"])
        res = report["results"][lib]
        print(f"[{lib}] build {res['build_s']:.2f} s", flush=True)
        for row in res["sweep"]:
            print(f"    {res['param']}={row['param']:<4d} recall@10={row['recall']:.4f}  QPS={row['qps']:.0f}",
                  flush=True)
    report["loadavg_after"] = round(os.getloadavg()[0], 2)
    report["ratios"] = ratios(report["results"])
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.dataset}-M{args.M}-efc{args.efc}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
