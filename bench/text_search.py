"""BM25 on debian-packages (56,238 package descriptions, 5,000 known-item queries): ProximaDB's
compiled inverted index beside ``bm25s`` in the same run, on the same tokens.

    python bench/text_search.py                 # writes bench/results/text_search.json
    python bench/text_search.py --queries 1000  # quicker

Both sides get the very same terms: each description and query goes through
``proximadb.text.analyzer.Analyzer(stopwords="english", stemmer="english")`` (lowercase, words of
two or more word characters, English stop words, Snowball stemming by PyStemmer), and both score
with Lucene's BM25, k1 = 1.5, b = 0.75. Reported per side: MRR@10 and recall@10 over the queries,
without and with the metadata filter on the relevant package's section (which the right answer
always passes; ProximaDB takes an allowed-row mask, bm25s a ``weight_mask``; queries are grouped by
section for both), and QPS of the whole query set in one batch call on 1 thread and on every core.
Build time is the index build from the token lists (analysis is timed once, apart: both share it).

Needs ``pip install bm25s PyStemmer`` (the ``bench`` extra). The machine is shared, so each timed
call is repeated ``--rounds`` times in turns with the peer and the best kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets" / "debian-packages"
K = 10


def load(queries: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    with open(DATA / "queries-dev.jsonl", encoding="utf-8") as f:
        qs = [json.loads(line) for line in f][:queries]
    return corpus, qs


def quality(ranked: Sequence[Sequence[int]], relevant: Sequence[int]) -> dict[str, float]:
    rr, hit = 0.0, 0
    for rows, want in zip(ranked, relevant, strict=True):
        top = list(rows[:K])
        if want in top:
            hit += 1
            rr += 1.0 / (top.index(want) + 1)
    n = len(relevant)
    return {"mrr@10": round(rr / n, 4), "recall@10": round(hit / n, 4)}


def best_of(rounds: int, calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds of each call, best of ``rounds``, the calls taking turns (load bursts hit every side)."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "text_search.json")
    args = parser.parse_args(argv)
    try:
        import bm25s
    except ImportError:
        print("bm25s is not installed: pip install bm25s PyStemmer", file=sys.stderr)
        return 2

    corpus, queries = load(args.queries)
    row_of = {doc["id"]: i for i, doc in enumerate(corpus)}
    relevant = [row_of[q["relevant"]] for q in queries]
    analyzer = Analyzer(stopwords="english", stemmer="english")
    t = time.perf_counter()
    doc_terms = analyzer.terms_of(doc["text"] for doc in corpus)
    query_terms = analyzer.terms_of(q["query"] for q in queries)
    analysis_s = time.perf_counter() - t
    print(f"{len(corpus)} documents, {len(queries)} queries; analysis {analysis_s:.1f}s", flush=True)

    # ProximaDB: vocabulary + compiled postings from the shared token lists
    def build_ours() -> Bm25Index:
        return Bm25Index.from_terms(doc_terms, analyzer)

    def build_theirs() -> Any:
        retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
        retriever.index(doc_terms, show_progress=False)
        return retriever

    t = time.perf_counter()
    ours = build_ours()
    build_ours_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = build_theirs()
    build_theirs_s = time.perf_counter() - t
    print(f"build: ProximaDB {build_ours_s:.2f}s, bm25s {build_theirs_s:.2f}s", flush=True)

    # analyzed queries in, for both: ours looks up term ids and IDF inside the timed call, as bm25s does
    q_tokens = [[t for t in terms if t in theirs.vocab_dict] or [""] for terms in query_terms]

    def ours_batch(threads: int, allowed: Any = None, idx: Sequence[int] | None = None) -> np.ndarray:
        pick = range(len(queries)) if idx is None else idx
        q_ids, q_w = zip(*(ours.query_terms(query_terms[i]) for i in pick), strict=True)
        rows, _, _ = ours.index.search_batch(list(q_ids), list(q_w), K, allowed=allowed, threads=threads)
        return rows

    def theirs_batch(threads: int, mask: Any = None, idx: Sequence[int] | None = None) -> np.ndarray:
        pick = range(len(queries)) if idx is None else idx
        docs, _ = theirs.retrieve([q_tokens[i] for i in pick], k=K, n_threads=threads, show_progress=False,
                                  weight_mask=mask)
        return docs

    by_section: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        by_section[q["section"]].append(i)
    sections = np.asarray([doc["section"] for doc in corpus])
    masks = {s: (sections == s).astype(np.uint8) for s in by_section}

    def filtered(run: Callable[..., np.ndarray], threads: int) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in queries]
        for s, idx in by_section.items():
            rows = run(threads, masks[s] if run is ours_batch else masks[s].astype(np.float32), idx)
            for i, r in zip(idx, rows, strict=True):
                out[i] = [int(x) for x in r if x >= 0]
        return out

    cores = os.cpu_count() or 1
    results: dict[str, Any] = {
        "dataset": "debian-packages", "documents": len(corpus), "queries": len(queries), "k": K,
        "analyzer": analyzer.settings(), "bm25": {"variant": "lucene", "k1": 1.5, "b": 0.75},
        "machine": {"cpus": cores, "python": platform.python_version()},
        "analysis_s": round(analysis_s, 2),
        "build_s": {"proximadb": round(build_ours_s, 2), "bm25s": round(build_theirs_s, 2)},
        "bm25s_version": bm25s.__version__,
    }
    for label, ranked_ours, ranked_theirs in (
        ("unfiltered", [[int(x) for x in r if x >= 0] for r in ours_batch(0)],
         [[int(x) for x in r] for r in theirs_batch(1)]),
        ("section filter", filtered(ours_batch, 0), filtered(theirs_batch, 1)),
    ):
        results[label] = {"proximadb": quality(ranked_ours, relevant), "bm25s": quality(ranked_theirs, relevant)}
        print(f"{label}: ProximaDB {results[label]['proximadb']}  bm25s {results[label]['bm25s']}", flush=True)

    timed = best_of(args.rounds, {
        "proximadb 1 thread": lambda: ours_batch(1),
        "bm25s 1 thread": lambda: theirs_batch(1),
        f"proximadb {cores} threads": lambda: ours_batch(cores),
        f"bm25s {cores} threads": lambda: theirs_batch(cores),
        "proximadb filtered 1 thread": lambda: filtered(ours_batch, 1),
        "bm25s filtered 1 thread": lambda: filtered(theirs_batch, 1),
    })
    results["qps"] = {name: round(len(queries) / s, 1) for name, s in timed.items()}
    for name, qps in results["qps"].items():
        print(f"  {name:32s} {qps:10.1f} queries/s", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
