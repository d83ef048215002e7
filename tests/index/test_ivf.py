"""IVF-Flat index: recall against ground truth, filters, deletions, determinism, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import CorruptionError, ValidationError, VectorNotFoundError
from proximadb.index.ivf import IVFIndex
from proximadb.tools.datasets import recall_at


def brute_force_l2(base: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    x = base[rows].astype(np.float64)
    q = queries.astype(np.float64)
    d = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]
    return rows[np.argsort(d, axis=1, kind="stable")[:, :k]]


@pytest.fixture(scope="module")
def sift_index(sift: tuple[np.ndarray, np.ndarray, np.ndarray]) -> IVFIndex:
    base = sift[0]
    index = IVFIndex(128, metric="l2", nlist=100, seed=0)
    index.train(base)
    index.add(np.arange(len(base)), base)
    return index


def test_siftsmall_recall(sift_index: IVFIndex, sift: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, queries, truth = sift
    found = [sift_index.search(q, 10, nprobe=8)[0] for q in queries]
    assert recall_at(found, truth) >= 0.9
    # One list out of 100 cannot reach that: the lists really partition the data.
    assert recall_at([sift_index.search(q, 10, nprobe=1)[0] for q in queries], truth) < 0.8
    assert recall_at([sift_index.search(q, 10, nprobe=100)[0] for q in queries], truth) >= 0.99
    assert int(sift_index.list_sizes().sum()) == len(sift_index) == 10_000


def test_batch_matches_single(sift_index: IVFIndex, sift: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    queries = sift[1]
    ids, dist = sift_index.search_batch(queries, 10, nprobe=8, threads=2)
    for i in range(0, len(queries), 9):
        one_ids, one_d = sift_index.search(queries[i], 10, nprobe=8)
        np.testing.assert_array_equal(ids[i], one_ids)
        np.testing.assert_array_equal(dist[i], one_d)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01])
def test_filtered_recall(sift_index: IVFIndex, sift: tuple[np.ndarray, np.ndarray, np.ndarray],
                         fraction: float) -> None:
    base, queries, _ = sift
    rng = np.random.default_rng(11)
    allowed = np.sort(rng.choice(len(base), int(len(base) * fraction), replace=False))
    truth = brute_force_l2(base, queries, 10, allowed)
    allowed_set = set(allowed.tolist())
    found = []
    for q in queries:
        ids, _ = sift_index.search(q, 10, nprobe=8, filter_ids=allowed)
        assert len(ids) == 10 and set(ids.tolist()) <= allowed_set
        found.append(ids)
    assert recall_at(found, truth) >= 0.85


def test_deleted_never_returned(sift: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    base, queries, _ = sift
    index = IVFIndex(128, nlist=20, seed=3)
    index.add(np.arange(3000), base[:3000])  # trains on the first add
    assert index.is_trained
    gone = set()
    for q in queries[:10]:
        for i in index.search(q, 5, nprobe=4)[0].tolist():
            if i not in gone:
                index.mark_deleted(i)
                gone.add(i)
    for q in queries[:10]:
        ids, _ = index.search(q, 10, nprobe=1)
        assert len(ids) == 10 and not gone & set(ids.tolist())
    with pytest.raises(VectorNotFoundError):
        index.mark_deleted(next(iter(gone)))


def test_deterministic_and_save_load(sift: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    base, queries, _ = sift
    a = IVFIndex(128, nlist=32, seed=5)
    b = IVFIndex(128, nlist=32, seed=5)
    a.add(np.arange(5000), base[:5000])
    b.add(np.arange(5000), base[:5000])
    np.testing.assert_array_equal(a.centroids, b.centroids)
    a.mark_deleted(10)
    b.mark_deleted(10)
    a.save(tmp_path / "a.ivf")
    b.save(tmp_path / "b.ivf")
    assert (tmp_path / "a.ivf").read_bytes() == (tmp_path / "b.ivf").read_bytes()
    loaded = IVFIndex.load(tmp_path / "a.ivf")
    assert (len(loaded), loaded.nlist, loaded.metric) == (4999, 32, "l2")
    i0, d0 = a.search_batch(queries, 10, nprobe=4)
    i1, d1 = loaded.search_batch(queries, 10, nprobe=4)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(d0, d1)
    e0 = a.search(queries[0], 5, filter_ids=np.arange(0, 5000, 50))
    e1 = loaded.search(queries[0], 5, filter_ids=np.arange(0, 5000, 50))
    np.testing.assert_array_equal(e0[0], e1[0])


def test_corrupted_file_detected(sift: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    index = IVFIndex(128, nlist=8, seed=1)
    index.add(np.arange(1000), sift[0][:1000])
    path = tmp_path / "c.ivf"
    index.save(path)
    raw = path.read_bytes()
    for name, bad_bytes in {
        "flip": raw[:9000] + bytes([raw[9000] ^ 4]) + raw[9001:],
        "truncated": raw[:-1],
        "header": raw[:30] + bytes([raw[30] ^ 1]) + raw[31:],
    }.items():
        bad = tmp_path / f"{name}.ivf"
        bad.write_bytes(bad_bytes)
        with pytest.raises(CorruptionError, match=bad.name):
            IVFIndex.load(bad)


def test_cosine_and_validation() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2000, 16)).astype(np.float32)
    index = IVFIndex(16, metric="cosine", nlist=10, seed=0)
    with pytest.raises(ValidationError):
        index.search(base[0], 1)
    index.add(np.arange(2000), base * 3)
    ids, dist = index.search(base[5], 3, nprobe=10)
    assert ids[0] == 5 and abs(dist[0]) < 1e-5
    with pytest.raises(ValidationError):
        IVFIndex(16, nlist=50).train(base[:10])
