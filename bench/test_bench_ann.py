"""pytest-benchmark: one query through our HNSW / IVF vs hnswlib / faiss on siftsmall.

Run explicitly: ``python -m pytest bench/test_bench_ann.py --benchmark-only``.
The full sweep with recall and ratios is bench/ann_benchmark.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from proximadb.index.hnsw import HNSWIndex
from proximadb.index.ivf import IVFIndex
from proximadb.tools.datasets import fvecs_read

pytestmark = pytest.mark.bench

DATA = Path(os.environ.get("PROXIMADB_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
SIFT = DATA / "siftsmall" / "siftsmall_base.fvecs"


@pytest.fixture(scope="module")
def sift() -> tuple[np.ndarray, np.ndarray]:
    if not SIFT.exists():
        pytest.skip(f"siftsmall not found under {DATA}")
    return fvecs_read(SIFT), fvecs_read(SIFT.with_name("siftsmall_query.fvecs"))


def _cycle(queries: np.ndarray):  # type: ignore[no-untyped-def]
    state = {"i": 0}

    def next_query() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(queries)
        return queries[state["i"]]

    return next_query


def test_hnsw_search_ours(benchmark, sift) -> None:  # type: ignore[no-untyped-def]
    base, queries = sift
    index = HNSWIndex(128, M=16, ef_construction=200)
    index.add(np.arange(len(base)), base)
    nxt = _cycle(queries)
    benchmark(lambda: index.search(nxt(), 10, ef=64))


def test_hnsw_search_hnswlib(benchmark, sift) -> None:  # type: ignore[no-untyped-def]
    hnswlib = pytest.importorskip("hnswlib")
    base, queries = sift
    index = hnswlib.Index("l2", 128)
    index.init_index(len(base), M=16, ef_construction=200, random_seed=0)
    index.add_items(base, num_threads=1)
    index.set_num_threads(1)
    index.set_ef(64)
    nxt = _cycle(queries)
    benchmark(lambda: index.knn_query(nxt(), k=10))


def test_ivf_search_ours(benchmark, sift) -> None:  # type: ignore[no-untyped-def]
    base, queries = sift
    index = IVFIndex(128, nlist=100)
    index.add(np.arange(len(base)), base)
    nxt = _cycle(queries)
    benchmark(lambda: index.search(nxt(), 10, nprobe=8))


def test_ivf_search_faiss(benchmark, sift) -> None:  # type: ignore[no-untyped-def]
    faiss = pytest.importorskip("faiss")
    base, queries = sift
    faiss.omp_set_num_threads(1)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(128), 128, 100)
    index.train(base)
    index.add(base)
    index.nprobe = 8
    nxt = _cycle(queries)
    benchmark(lambda: index.search(nxt()[None], 10))
