"""One copy of the vectors (issue #11): the float32 HNSW index reads vectors it is given instead of
keeping its own, its file (format 2, proximadb/index/hnsw.pyx) holds the graph without them, and
version-1 files (with them) still open."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.index import distance, registry
from proximadb.index.hnsw import HNSWIndex

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"


def _rows(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered rows of norms 0.2 to 5 (cosine must not assume unit vectors)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    rows = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return (rows * rng.uniform(0.2, 5.0, (n, 1))).astype(np.float32)


def _file_size(path: Path, n: int, m0: int, cosine: bool) -> int:
    """The size hnsw.pyx documents for format 2: header, ids, links0, upper pool, levels, deleted,
    norms (cosine), body CRC and end magic; the upper pool's length is the header's field at 72."""
    upper = struct.unpack_from("<Q", path.read_bytes(), 72)[0]
    return 96 + 8 * n + 4 * n * (m0 + 1) + 4 * upper + 2 * n + (4 * n if cosine else 0) + 8


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_the_index_file_holds_the_graph_not_the_vectors(metric: str, tmp_path: Path) -> None:
    n, dim = 500, 24
    base = _rows(n, dim, 1)
    index = HNSWIndex(dim, metric, M=6, ef_construction=40, seed=3)
    index.add(np.arange(n), base)
    path = tmp_path / "index.hnsw"
    index.save(path)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 8)[0] == 2
    assert len(raw) == _file_size(path, n, 12, metric == "cosine")  # dim * 4 bytes a row less than version 1
    assert not any(base[r].tobytes() in raw for r in range(0, n, 50))
    loaded = HNSWIndex.load(path)
    loaded.attach_vectors(base)
    queries = _rows(20, dim, 2)
    for a, b in zip(index.search_batch(queries, 10), loaded.search_batch(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_built_index_reads_the_array_it_was_given_and_copies_only_when_asked(tmp_path: Path) -> None:
    n, dim = 400, 16
    base = _rows(n, dim, 4)
    file = tmp_path / "vectors.f32"
    base.tofile(file)
    mapped = np.memmap(file, dtype="<f4", mode="r", shape=(n, dim))  # read-only, like a segment's
    kept = HNSWIndex(dim, "cosine", M=6, ef_construction=40, seed=1)
    kept.add(np.arange(n), mapped, copy=False)
    owned = HNSWIndex(dim, "cosine", M=6, ef_construction=40, seed=1)
    owned.add(np.arange(n), base)
    assert not kept.owns_vectors and kept.memory_usage()["vectors"] == 0
    assert kept.memory_usage()["vectors_mapped"] == n * dim * 4
    assert owned.owns_vectors and owned.memory_usage()["vectors"] == n * dim * 4
    queries = _rows(10, dim, 5)
    for a, b in zip(kept.search_batch(queries, 5), owned.search_batch(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)  # same graph, same distances: one walk over either storage
    # Adding to an index over kept vectors copies them into its own memory first.
    extra = _rows(50, dim, 6)
    kept.add(np.arange(n, n + 50), extra)
    assert kept.owns_vectors
    assert kept.search(extra[7], 1)[0][0] == n + 7 and kept.search(base[3], 1)[0][0] == 3
    with pytest.raises(ValidationError, match=r"shape \(450, 16\)"):
        kept.attach_vectors(base)


@pytest.mark.parametrize(("threads", "unit"), [(1, False), (2, False), (1, True)])
def test_cosine_distances_equal_the_exact_scans(threads: int, unit: bool) -> None:
    """Rows are stored as given (not normalised); 1 / |row| per row makes the walk's distances those of
    the exact scans: the index's own (exact=True) and the segment's kernel over normalised rows. Rows
    normalised already (a collection's: unit) are walked without the norms, to the same distances."""
    n, dim = 3000, 32
    base = _rows(n, dim, 7)
    if unit:
        base = distance.normalize_rows(base)
    queries = _rows(40, dim, 8) * 3
    index = HNSWIndex(dim, "cosine", M=12, ef_construction=100, seed=0)
    index.add(np.arange(n), base, threads=threads, copy=False)
    found, dist = index.search_batch(queries, 10, ef=200)
    unit = base / np.linalg.norm(base.astype(np.float64), axis=1, keepdims=True)
    qunit = queries / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    truth = 1.0 - qunit @ unit.T  # float64
    np.testing.assert_allclose(dist, np.take_along_axis(truth, found, 1), rtol=0, atol=2e-6)
    ex_ids, ex_d = index.search_batch(queries, 10, exact=True)
    np.testing.assert_array_equal(ex_ids, np.argsort(truth, axis=1, kind="stable")[:, :10])
    same = found == ex_ids
    assert same.mean() > 0.95
    np.testing.assert_array_equal(dist[same], ex_d[same])
    seg_ids, seg_d = distance.topk_batch(distance.normalize_rows(queries), distance.normalize_rows(base), 10,
                                         metric="cosine")
    np.testing.assert_array_equal(seg_ids, ex_ids)
    np.testing.assert_allclose(ex_d, seg_d, rtol=0, atol=1e-6)


def _cosine_fixture_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tests/fixtures/index_v1/make_hnsw_cosine.py's data (its generator, replayed)."""
    rng = np.random.default_rng(2025)
    base = rng.standard_normal((300, 8)).astype(np.float32) * rng.uniform(0.5, 3.0, (300, 1)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    return np.arange(300, dtype=np.int64) * 2 + 500, base, queries


def test_a_version_1_cosine_file_opens_and_answers_alike(tmp_path: Path) -> None:
    """Written by the version-1 code (normalised vectors in the file): the vectors are dropped, the
    norms come from the raw vectors attached, the answers are the old ones, and it saves as version 2."""
    expected = json.loads((FIXTURE / "cosine_hnsw.json").read_text())
    _ids, base, queries = _cosine_fixture_data()
    index = HNSWIndex.load(FIXTURE / "cosine.hnsw")
    assert (len(index), index.metric, index.M, index.ef) == (expected["len"], "cosine", 4, 24)
    with pytest.raises(ValidationError, match="attach_vectors"):
        index.save(tmp_path / "early.hnsw")  # its norms are not known before the vectors are
    index.attach_vectors(base[(index.ids - 500) // 2])
    found, dist = index.search_batch(queries, 5, threads=1)
    np.testing.assert_array_equal(found, np.array(expected["ids"]))
    np.testing.assert_allclose(dist, np.array(expected["distances"], dtype=np.float32), rtol=0, atol=1e-6)
    index.save(tmp_path / "index.hnsw")
    assert (tmp_path / "index.hnsw").stat().st_size == (FIXTURE / "cosine.hnsw").stat().st_size - 300 * 8 * 4 + 300 * 4
    assert (tmp_path / "index.hnsw").stat().st_size == _file_size(tmp_path / "index.hnsw", 300, 8, True)
    again = HNSWIndex.load(tmp_path / "index.hnsw")
    again.attach_vectors(base[(again.ids - 500) // 2])
    for a, b in zip(again.search_batch(queries, 5, threads=1), (found, dist), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_segment_build_keeps_the_segment_vectors_and_uses_every_core() -> None:
    kind = registry.kind("hnsw")
    assert kind.build_options == {"threads": 0, "repair": True, "copy": False}  # threads=0: os.cpu_count()
    base = _rows(300, 8, 9)
    index = kind.build(8, "l2", kind.params({}, 300), base)
    assert isinstance(index, HNSWIndex) and not index.owns_vectors and index.reachable_count() == 300


def test_reorder_moves_kept_vectors_and_cosine_norms_into_its_own_memory() -> None:
    n, dim = 600, 12
    base = _rows(n, dim, 10)
    index = HNSWIndex(dim, "cosine", M=6, ef_construction=40, seed=2)
    index.add(np.arange(n) + 7, base, copy=False)
    queries = _rows(15, dim, 11)
    before = index.search_batch(queries, 8, ef=40)
    index.reorder()
    assert index.owns_vectors and index.ids.tolist() != list(range(7, n + 7))
    for a, b in zip(before, index.search_batch(queries, 8, ef=40), strict=True):
        np.testing.assert_array_equal(a, b)
