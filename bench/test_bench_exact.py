"""Exact top-10 search over siftsmall (10,000 x 128, L2): ProximaDB's kernels vs numpy.

Run: ``PROXIMADB_SKIP_NATIVE_CHECK=1 python -m pytest bench/test_bench_exact.py -q -s``

* ``topk``: the 100 queries one at a time through ``distance.topk``.
* ``numpy``: the usual numpy brute force, one query at a time: BLAS
  ``||x||^2 - 2 q.x`` with the norms computed once, ``np.argpartition`` and a
  sort of the k.
* ``batch_t1`` / ``batch_t2``: all 100 queries in one ``distance.topk_batch``
  call on 1 and 2 OpenMP threads.

Every variant's answers are checked against the official ground truth: recall
must be 1.0 (a search is exact), where a neighbour that ties the 10th
distance counts as a hit (the ground truth orders ties arbitrarily).
The last test prints the QPS table and the topk/numpy ratio.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from proximadb.index import distance
from proximadb.tools.datasets import siftsmall

pytestmark = pytest.mark.bench

K = 10
DATASETS = Path(os.environ.get("PROXIMADB_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
SIFT = DATASETS / "siftsmall"
QPS: dict[str, float] = {}




@pytest.fixture(scope="module")
def sift() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not (SIFT / "siftsmall_base.fvecs").exists():
        pytest.skip(f"siftsmall not found under {DATASETS} (set PROXIMADB_DATASETS)")
    base, queries, truth = siftsmall(DATASETS)
    assert base.shape == (10_000, 128) and queries.shape == (100, 128) and truth.shape == (100, 100)
    return base, queries, truth


def check_exact(found: np.ndarray, base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> float:
    """Plain recall@K vs the ground truth; asserts tie-aware recall is 1.0."""
    plain = np.mean([len(set(f.tolist()) & set(t[:K].tolist())) / K for f, t in zip(found, truth, strict=True)])
    for f, t, q in zip(found, truth, queries, strict=True):
        exact = ((base.astype(np.float64) - q) ** 2).sum(axis=1)  # SIFT: integer-valued, exact
        kth = exact[t[K - 1]]
        assert len(set(f.tolist())) == K
        assert (exact[f] <= kth).all(), "a returned row is farther than the true 10th neighbour"
    return float(plain)


def numpy_topk(base: np.ndarray, norms: np.ndarray, q: np.ndarray) -> np.ndarray:
    d = norms - 2.0 * (base @ q)
    part = np.argpartition(d, K)[:K]
    return part[np.argsort(d[part])]


def run(benchmark, name: str, search: Callable[[], np.ndarray], sift) -> None:
    base, queries, truth = sift
    found = search()
    recall = check_exact(found, base, queries, truth)
    benchmark.pedantic(search, rounds=15, warmup_rounds=1, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        QPS[name] = len(queries) / benchmark.stats.stats.median
    print(f"\n{name}: recall@{K} = {recall:.3f}" + (f", {QPS[name]:,.0f} QPS" if name in QPS else ""))


def test_topk_one_query_at_a_time(benchmark, sift) -> None:
    distance.set_simd_level("best")
    base, queries, _ = sift
    run(benchmark, "topk", lambda: np.stack([distance.topk(q, base, K)[0] for q in queries]), sift)


def test_numpy_reference_one_query_at_a_time(benchmark, sift) -> None:
    base, queries, _ = sift
    norms = np.einsum("ij,ij->i", base, base)
    run(benchmark, "numpy", lambda: np.stack([numpy_topk(base, norms, q) for q in queries]), sift)


@pytest.mark.parametrize("threads", [1, 2])
def test_topk_batch(benchmark, sift, threads: int) -> None:
    distance.set_simd_level("best")
    base, queries, _ = sift
    run(benchmark, f"batch_t{threads}", lambda: distance.topk_batch(queries, base, K, threads=threads)[0], sift)


def test_print_summary() -> None:
    if not QPS:
        pytest.skip("no timings (benchmarks disabled or dataset missing)")
    print(f"\nsiftsmall exact top-{K}, 100 queries, SIMD {distance.simd_level_name()}")
    for name, qps in QPS.items():
        print(f"  {name:10s} {qps:>10,.0f} QPS")
    if "topk" in QPS and "numpy" in QPS:
        print(f"  topk / numpy = {QPS['topk'] / QPS['numpy']:.2f}x")
    if "batch_t1" in QPS and "batch_t2" in QPS:
        print(f"  batch 2 threads / 1 thread = {QPS['batch_t2'] / QPS['batch_t1']:.2f}x")
