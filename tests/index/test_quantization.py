"""int8 scalar, binary and product quantization (index_params.quantization): the indexes on their own,
inside the engine (build, search, reopen in a fresh process, reconfigure, a damaged file) and their
validation."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _support import child_env

from proximadb.errors import CorruptionError, ValidationError
from proximadb.index.hnsw import HNSWIndex
from proximadb.index.hnsw_int8 import HNSWBinaryIndex, HNSWInt8Index
from proximadb.index.hnsw_pq import TRAIN_ROWS, HNSWPQIndex, training_rows
from proximadb.storage.engine import Engine
from proximadb.storage.wal_io import crc32c
from proximadb.tools.datasets import recall_at

METRIC_NAMES = {"l2": "euclidean", "cosine": "cosine", "dot": "dot_product"}


def _clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows around 50 centres (as real embeddings are), and 100 queries drawn the same way."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32) * 3
    rows = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    queries = centres[rng.integers(0, 50, 100)] + rng.standard_normal((100, dim)).astype(np.float32)
    return rows.astype(np.float32), queries.astype(np.float32)


def _exact(rows: np.ndarray, queries: np.ndarray, metric: str, k: int = 10) -> np.ndarray:
    if metric == "l2":
        d = (queries ** 2).sum(1)[:, None] - 2 * queries @ rows.T + (rows ** 2).sum(1)[None, :]
    elif metric == "cosine":
        d = -(queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
            rows / np.linalg.norm(rows, axis=1, keepdims=True)).T
    else:
        d = -(queries @ rows.T)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _stored(rows: np.ndarray, metric: str) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True) if metric == "cosine" else rows


def _check_int8_codes(index: HNSWInt8Index, rows: np.ndarray, metric: str) -> None:
    """Codes decode to within half a step of the (normalised) rows."""
    lo, step = index.quantizer()
    decoded = lo + step * index.codes_array().astype(np.float32)
    assert np.all(np.abs(decoded - _stored(rows, metric)) <= step / 2 + 1e-5)


def _check_binary_codes(index: HNSWInt8Index, rows: np.ndarray, metric: str) -> None:
    """One bit per dimension: set where the stored row is above the per-dimension mean."""
    dim = rows.shape[1]
    center, step = index.quantizer()
    stored = _stored(rows, metric)
    np.testing.assert_allclose(center, stored.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert not step.any()
    bits = np.unpackbits(index.codes_array(), axis=1, bitorder="little")[:, :dim]
    np.testing.assert_array_equal(bits, (stored > center).astype(np.uint8))
    usage = index.memory_usage()
    assert usage["codes"] - 8 * dim == len(rows) * dim // 8 and usage["vectors_mapped"] == len(rows) * dim * 4


def _pq_reconstruction(index: HNSWPQIndex) -> np.ndarray:
    codes = index.codes_array()
    books = index.codebooks()
    return np.concatenate([books[j][codes[:, j]] for j in range(index.m)], axis=1)


def _check_pq_codes(index: HNSWInt8Index, rows: np.ndarray, metric: str) -> None:
    """m bytes per row, each the nearest of the subspace's 256 trained centroids."""
    assert isinstance(index, HNSWPQIndex)
    dim, m = rows.shape[1], index.m
    books, codes, stored = index.codebooks(), index.codes_array(), _stored(rows, metric)
    assert books.shape == (m, 256, dim // m) and codes.shape == (len(rows), m) and index.ksub == 256
    for j in range(m):
        sub = stored[:, j * (dim // m):(j + 1) * (dim // m)]
        d = ((sub[:, None, :] - books[j][None, :, :]) ** 2).sum(axis=2)
        picked = d[np.arange(len(rows)), codes[:, j]]
        np.testing.assert_allclose(picked, d.min(axis=1), rtol=1e-4, atol=1e-5)  # (ties: either is nearest)
    usage = index.memory_usage()
    assert usage["codes"] == len(rows) * m + 256 * dim * 4 and usage["vectors_mapped"] == len(rows) * dim * 4


# kind, dim, oversampling (None: the kind's default), recall@10 bar at ef 64, the check of its codes. pq on
# these Gaussian clusters (m 12, sub-vectors of 4 dims; seeds 1-3) measured 0.87-0.92 (cosine 0.68-0.70) at
# its default oversampling 4, 0.92-0.999 at 8, 0.998-1.0 at 16
KINDS = {
    "int8": (HNSWInt8Index, 48, None, 0.95, _check_int8_codes),
    "binary": (HNSWBinaryIndex, 64, 16.0, 0.9, _check_binary_codes),
    "pq": (HNSWPQIndex, 48, 16.0, 0.95, _check_pq_codes),
}


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_rescored_recall_and_codes(kind: str, metric: str) -> None:
    cls, dim, oversampling, bar, check_codes = KINDS[kind]
    rows, queries = _clustered(6000, dim, seed=1)
    truth = _exact(rows, queries, metric)
    index = cls(dim, metric, M=16, ef_construction=100)
    index.add(np.arange(len(rows)), rows, threads=1)
    assert index.oversampling == {"int8": 2.0, "binary": 4.0, "pq": 4.0}[kind]
    if oversampling is not None:
        index.oversampling = oversampling
    found, dist = index.search_batch(queries, 10, ef=64)
    assert recall_at(found, truth) >= bar
    # rescored distances are the float32 distances of the rows returned, as HNSWIndex reports them
    ref = HNSWIndex(dim, metric, M=16, ef_construction=100)
    ref.add(np.arange(len(rows)), rows)
    for i in range(5):
        _, ref_d = ref.search(queries[i], 20, exact=True, filter_ids=found[i])
        np.testing.assert_allclose(np.sort(ref_d[:10]), dist[i], rtol=1e-4, atol=1e-4)
    check_codes(index, rows, metric)


def test_oversampling_and_rescore_settings() -> None:
    rows, queries = _clustered(4000, 32, seed=2)
    truth = _exact(rows, queries, "l2")
    index = HNSWInt8Index(32, "l2", M=8, ef_construction=64)
    index.add(np.arange(len(rows)), rows)
    index.rescore = False
    raw, _ = index.search_batch(queries, 10, ef=10)
    index.rescore = True
    index.oversampling = 4.0
    rescored, _ = index.search_batch(queries, 10, ef=10)
    assert recall_at(rescored, truth) >= recall_at(raw, truth)
    assert recall_at(rescored, truth) >= 0.95
    with pytest.raises(ValidationError):
        index.oversampling = 0.5
    # filters and deletions apply inside the code walk and in the exact scan of a small filter
    allowed = np.arange(0, len(rows), 7)
    hits, _ = index.search_batch(queries[:10], 10, filter_ids=allowed)
    assert np.isin(hits, allowed).all()
    few, _ = index.search(queries[0], 10, filter_ids=allowed[:15])
    assert set(few) <= set(allowed[:15]) and len(few) == 10
    index.mark_deleted(int(rescored[0][0]))
    assert int(rescored[0][0]) not in index.search(queries[0], 10)[0]


@pytest.mark.parametrize("cls", [HNSWInt8Index, HNSWPQIndex])
def test_file_round_trip_needs_vectors_and_detects_damage(tmp_path: Path, cls: type[HNSWInt8Index]) -> None:
    rows, queries = _clustered(2000, 16, seed=3)
    index = cls(16, "cosine", M=8, ef_construction=64)
    index.add(np.arange(len(rows)) * 3, rows)
    path = tmp_path / "index.file"
    index.save(path)
    loaded = cls.load(path)
    with pytest.raises(ValidationError, match="attach_vectors"):
        loaded.search(queries[0], 5)
    loaded.attach_vectors(rows)
    loaded.oversampling = index.oversampling
    a, b = index.search_batch(queries, 10), loaded.search_batch(queries, 10)
    np.testing.assert_array_equal(a[0], b[0])
    if isinstance(index, HNSWPQIndex):  # the codebooks and codes come back as they were
        assert isinstance(loaded, HNSWPQIndex) and (loaded.m, loaded.ksub) == (index.m, 256) == (4, 256)
        np.testing.assert_array_equal(loaded.codebooks(), index.codebooks())
    np.testing.assert_array_equal(loaded.codes_array(), index.codes_array())
    usage = loaded.memory_usage()
    assert usage["codes"] < usage["vectors_mapped"] / 3.5
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError):
        cls.load(path)


def _collection(engine: Engine, rows: np.ndarray, metric: str, quant: dict | None) -> None:
    params: dict = {"M": 16, "ef_construction": 100}
    if quant is not None:
        params["quantization"] = quant
    engine.create_collection("c", rows.shape[1], distance_metric=METRIC_NAMES[metric], indexing_algorithm="hnsw",
                             index_params=params)
    col = engine.collection("c")
    col.insert(ids=[str(i) for i in range(len(rows))], vectors=rows,
               metadatas=[{"m": i % 10} for i in range(len(rows))])
    col.flush()
    assert col.wait_for_indexes(timeout=120)


@pytest.mark.parametrize("given, stored, cls, file_name", [
    ({"type": "int8"}, {"type": "int8", "rescore": True, "oversampling": 2.0}, HNSWInt8Index, "index.hnsw8"),
    # pq: m defaults to 32 for 128 dimensions; recall@10 measured 0.99-1.0 (ef 64, oversampling 8)
    ({"type": "pq", "oversampling": 8}, {"type": "pq", "rescore": True, "oversampling": 8.0, "m": 32}, HNSWPQIndex,
     "index.hnswpq"),
])
def test_engine_siftsmall_recall_and_reopen_in_fresh_process(tmp_path: Path, sift, given: dict,  # type: ignore[no-untyped-def]
                                                             stored: dict, cls: type, file_name: str) -> None:
    base, queries, gt = sift
    engine = Engine.open(tmp_path / "d", fsync="never")
    _collection(engine, base, "l2", given)
    col = engine.collection("c")
    assert col.config.index_params["quantization"] == stored
    index = col.segments[0].index
    assert type(index) is cls and index.oversampling == stored["oversampling"]
    found = [[int(h["id"]) for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in queries]
    assert recall_at(found, gt) >= 0.95
    filtered = col.search(queries[0], k=10, filter={"m": 3})
    assert len(filtered) == 10 and all(h["metadata"]["m"] == 3 for h in filtered)
    engine.close()
    seg_dir = next((tmp_path / "d").rglob(file_name)).parent
    assert not (seg_dir / "index.hnsw").exists()

    script = r"""
import json, sys
import numpy as np
from proximadb.storage.engine import Engine
from proximadb.index.hnsw_int8 import HNSWInt8Index
queries = np.array(json.loads(sys.stdin.read()), dtype=np.float32)
with Engine.open(sys.argv[1]) as engine:
    col = engine.collection("c")
    index = col.segments[0].index
    out = {"kind": type(index).__name__, "builds": col.index_builder.builds,
           "params": col.config.index_params,
           "found": [[int(h["id"]) for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in queries]}
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], input=json.dumps(queries.tolist()),
                          capture_output=True, text=True, env=child_env(), timeout=120,
                          cwd=tmp_path)  # not the repository root: "-c" puts the cwd first on sys.path
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["kind"] == cls.__name__ and out["builds"] == 0  # loaded from its file, not rebuilt
    assert out["params"]["quantization"] == stored
    assert recall_at(out["found"], gt) >= 0.95


def test_update_collection_switches_quantization_and_rebuilds(tmp_path: Path) -> None:
    rows, queries = _clustered(3000, 32, seed=4)
    truth = _exact(rows, queries, "cosine")
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        _collection(engine, rows, "cosine", None)
        col = engine.collection("c")
        assert type(col.segments[0].index).__name__ == "HNSWIndex"
        engine.update_collection("c", index_params={"M": 16, "ef_construction": 100,
                                                     "quantization": {"type": "int8", "oversampling": 3}})
        assert col.wait_for_indexes(timeout=120)
        index = col.segments[0].index
        assert isinstance(index, HNSWInt8Index) and index.oversampling == 3.0
        found = [[int(h["id"]) for h in col.search(q, k=10, include_metadata=False)] for q in queries]
        assert recall_at(found, truth) >= 0.95
        seg_dir = col.segments[0].path
        assert (seg_dir / "index.hnsw8").exists() and not (seg_dir / "index.hnsw").exists()
        for m in (8, 16):  # int8 -> pq, then pq with another m: rebuilt each time
            builds = col.index_builder.builds
            engine.update_collection("c", index_params={"M": 16, "ef_construction": 100,
                                                         "quantization": {"type": "pq", "m": m, "oversampling": 16}})
            assert col.wait_for_indexes(timeout=120)
            index = col.segments[0].index
            assert isinstance(index, HNSWPQIndex) and index.m == m and col.index_builder.builds == builds + 1
            assert col.config.index_params["quantization"] == {"type": "pq", "rescore": True, "oversampling": 16.0,
                                                               "m": m}
            found = [[int(h["id"]) for h in col.search(q, k=10, include_metadata=False)] for q in queries]
            assert recall_at(found, truth) >= 0.95
            assert (seg_dir / "index.hnswpq").exists() and not (seg_dir / "index.hnsw8").exists()
        engine.update_collection("c", index_params={"M": 16, "ef_construction": 100})
        assert col.wait_for_indexes(timeout=120)
        assert type(col.segments[0].index).__name__ == "HNSWIndex"
        assert not (seg_dir / "index.hnswpq").exists()


@pytest.mark.parametrize("setting, message", [
    ({"type": "int4"}, "must be one of int8, binary, pq"),
    ({}, "must be one of int8, binary, pq"),
    ({"type": "pq", "m": 3}, "m must divide the dimension 8"),
    ({"type": "pq", "m": 0}, "m must be between 1 and the dimension 8"),
    ({"type": "pq", "m": 16}, "m must be between 1 and the dimension 8"),
    ({"type": "pq", "m": "2"}, "m must be an integer"),
    ({"type": "pq", "m": 2.0}, "m must be an integer"),
    ({"type": "int8", "m": 2}, "m is a field of pq only"),
    ({"type": "pq", "nbits": 4}, "unknown field"),
    ("int8", "must be an object"),
    ({"type": "int8", "oversampling": 0.5}, "between 1 and 100"),
    ({"type": "int8", "oversampling": "2"}, "must be a number"),
    ({"type": "int8", "oversampling": float("nan")}, "must be a number"),
    ({"type": "int8", "rescore": 1}, "true or false"),
    ({"type": "int8", "bits": 4}, "unknown field"),
])
def test_bad_settings_are_refused_and_change_nothing(tmp_path: Path, setting: object, message: str) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        with pytest.raises(ValidationError, match=message):
            engine.create_collection("c", 8, indexing_algorithm="hnsw", index_params={"quantization": setting})
        assert engine.list_collections() == []
        engine.create_collection("c", 8, indexing_algorithm="hnsw")
        with pytest.raises(ValidationError, match=message):
            engine.update_collection("c", index_params={"quantization": setting})
        assert engine.collection("c").config.index_params == {}
        with pytest.raises(ValidationError, match="indexing_algorithm hnsw"):
            engine.create_collection("d", 8, indexing_algorithm="ivf", index_params={"quantization": {"type": "int8"}})
        with pytest.raises(ValidationError, match="indexing_algorithm hnsw"):
            engine.create_collection("d", 8, indexing_algorithm="ivf", index_params={"quantization": {"type": "pq"}})


@pytest.mark.parametrize("cls", [HNSWIndex, HNSWInt8Index, HNSWBinaryIndex, HNSWPQIndex])
def test_both_hnsw_kinds_share_the_load_checks(cls: type, tmp_path: Path) -> None:
    """Both kinds' files go through the one header check and the one graph check (HnswGraphIndex):
    fields out of range, or a link list out of range, under valid CRCs, are CorruptionErrors."""
    rows, _ = _clustered(300, 16, 3)
    index = cls(16, "l2", M=8, ef_construction=40, seed=2)
    index.add(np.arange(300), rows)
    path = tmp_path / "g.idx"
    index.save(path)
    raw = path.read_bytes()
    h = struct.unpack_from("<I", raw, 12)[0]

    def write(data: bytearray) -> Path:
        struct.pack_into("<I", data, h - 8, crc32c(bytes(data[: h - 8])))
        struct.pack_into("<I", data, len(data) - 8, crc32c(bytes(data[h : len(data) - 8])))
        out = tmp_path / "bad.idx"
        out.write_bytes(bytes(data))
        return out

    data = bytearray(raw)
    struct.pack_into("<II", data, 24, 4096, 8192)  # M, M0 beyond the range both kinds accept
    with pytest.raises(CorruptionError, match=r"bad\.idx.*header fields out of range"):
        cls.load(write(data))
    vectors = {HNSWIndex: 0, HNSWInt8Index: 2 * 16 * 4 + 300 * 16, HNSWBinaryIndex: 2 * 16 * 4 + 300 * 2,
               HNSWPQIndex: 256 * 16 * 4 + 300 * 4}[cls]  # the body's bytes between ids and level-0 links (pq: m 4)
    data = bytearray(raw)
    struct.pack_into("<i", data, h + 300 * 8 + vectors, 10**6)  # row 0's level-0 link count
    with pytest.raises(CorruptionError, match=r"link list is out of range \(level 0\)"):
        cls.load(write(data))
    assert cls.load(write(bytearray(raw))).n_rows == 300


def _binary_code_distances(index: HNSWInt8Index, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """-(q - center) . signs(row): +1 for a set bit, -1 else."""
    center, _ = index.quantizer()
    bits = np.unpackbits(index.codes_array(), axis=1, bitorder="little")[:, :rows.shape[1]]
    return -(np.where(bits == 1, 1.0, -1.0) @ (q - center))


def _pq_code_distances(index: HNSWInt8Index, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The metric's distance from q to each row's reconstruction (its codes' centroids, end to end)."""
    assert isinstance(index, HNSWPQIndex)
    recon = _pq_reconstruction(index).astype(np.float64)
    if index.metric == "l2":
        return ((recon - q) ** 2).sum(axis=1)
    if index.metric == "cosine":
        return 1.0 - recon @ (q / np.linalg.norm(q))
    return -(recon @ q)


@pytest.mark.parametrize("cls, metric, dim, m", [
    (HNSWBinaryIndex, "l2", 20, None),  # 20 dims: the last code byte is half padding
    (HNSWPQIndex, "l2", 20, 5),
    (HNSWPQIndex, "cosine", 24, 6),
    (HNSWPQIndex, "dot", 24, 3),
])
def test_code_distance_is_the_table_sum(cls: type, metric: str, dim: int, m: int | None) -> None:
    """Without rescoring the distance is the per-query table's sum over the code bytes, which is exactly
    the definition computed here in numpy: binary -(q - center) . signs(row); pq the metric's distance to
    the row's reconstruction."""
    rows, queries = _clustered(500, dim, seed=6)
    index = cls(dim, metric, M=8, ef_construction=64) if m is None else cls(dim, metric, M=8, ef_construction=64, m=m)
    index.add(np.arange(len(rows)), rows)
    index.rescore = False
    definition = _binary_code_distances if cls is HNSWBinaryIndex else _pq_code_distances
    for q in queries[:10]:
        found, dist = index.search(q, 5, ef=400)  # a graph walk (ef < rows: not the exact scan of float32 rows)
        want = definition(index, rows, q)
        np.testing.assert_allclose(dist, want[found], rtol=1e-4, atol=1e-4)
        assert dist[0] <= np.sort(want)[4] + 1e-4  # ef 400 of 500 rows: among the best codes


def test_pq_training_is_seeded_and_deterministic() -> None:
    """The codebooks depend on the rows and the seed only: two builds (one graph built on every core, so a
    different graph) give the same codebooks and codes; a large segment trains on a seeded sample."""
    rows, _ = _clustered(3000, 16, seed=10)
    a, b = HNSWPQIndex(16, "dot", M=8, ef_construction=32), HNSWPQIndex(16, "dot", M=8, ef_construction=32)
    a.add(np.arange(len(rows)), rows, threads=1)
    b.add(np.arange(len(rows)), rows, threads=0)
    np.testing.assert_array_equal(a.codebooks(), b.codebooks())
    np.testing.assert_array_equal(a.codes_array(), b.codes_array())
    c = HNSWPQIndex(16, "dot", M=8, ef_construction=32, seed=1)
    c.add(np.arange(len(rows)), rows)
    assert not np.array_equal(a.codebooks(), c.codebooks())
    assert training_rows(TRAIN_ROWS, 0) is None  # every row
    sample = training_rows(TRAIN_ROWS * 3, 5)
    assert sample is not None and len(np.unique(sample)) == TRAIN_ROWS and np.all(np.diff(sample) > 0)
    assert sample.max() < TRAIN_ROWS * 3
    np.testing.assert_array_equal(sample, training_rows(TRAIN_ROWS * 3, 5))
    assert not np.array_equal(sample, training_rows(TRAIN_ROWS * 3, 6))


@pytest.mark.parametrize("cls", [HNSWInt8Index, HNSWBinaryIndex, HNSWPQIndex])
def test_a_one_row_index_keeps_its_graph(tmp_path: Path, cls: type) -> None:
    """A one-row segment: the links kept from the float32 build are a copy (HNSWIndex.graph_arrays once
    returned a view of one row's links into the freed build: garbage links, the file refused on load)."""
    for dim in (16, 24):
        for degree in (4, 8, 16):
            index = cls(dim, "l2", M=degree, ef_construction=16)
            index.add([7], np.ones((1, dim), dtype=np.float32))
            assert list(index.search(np.zeros(dim, dtype=np.float32), 3)[0]) == [7]
            index.save(tmp_path / "one.idx")
            assert cls.load(tmp_path / "one.idx").n_rows == 1


@pytest.mark.parametrize("n", [1, 2, 37, 255])
def test_pq_small_segments_train_fewer_centroids(tmp_path: Path, n: int) -> None:
    """Fewer than 256 rows: one centroid per row and subspace (ksub = n), so every code is exact; the
    file keeps ksub, and a code naming a centroid beyond it is a CorruptionError."""
    rows, queries = _clustered(n, 8, seed=8)
    index = HNSWPQIndex(8, "l2", M=4, ef_construction=16, m=4)
    index.add(np.arange(n) + 100, rows)
    assert index.ksub == n and not index.codebooks()[:, n:].any()
    np.testing.assert_allclose(_pq_reconstruction(index), rows, rtol=1e-5, atol=1e-5)
    found, _ = index.search(queries[0], min(n, 3))
    exact = ((rows - queries[0]) ** 2).sum(axis=1)
    np.testing.assert_array_equal(found, np.argsort(exact, kind="stable")[:min(n, 3)] + 100)
    path = tmp_path / "small.hnswpq"
    index.save(path)
    loaded = HNSWPQIndex.load(path)
    assert loaded.ksub == n
    loaded.attach_vectors(rows)
    np.testing.assert_array_equal(loaded.search(queries[0], min(n, 3))[0], found)
    data = bytearray(path.read_bytes())
    h = struct.unpack_from("<I", data, 12)[0]
    data[h + n * 8 + 256 * 8 * 4] = n  # row 0's first code: the centroid after the last trained one
    struct.pack_into("<I", data, len(data) - 8, crc32c(bytes(data[h:len(data) - 8])))
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="beyond the"):
        HNSWPQIndex.load(path)


@pytest.mark.parametrize("quant, file_name", [({"type": "int8"}, "index.hnsw8"), ({"type": "pq"}, "index.hnswpq")])
def test_a_damaged_index_file_is_rebuilt_on_open(tmp_path: Path, quant: dict, file_name: str) -> None:
    rows, queries = _clustered(2000, 16, seed=9)
    truth = _exact(rows, queries, "l2")
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        _collection(engine, rows, "l2", quant)
    path = next((tmp_path / "d").rglob(file_name))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        col = engine.collection("c")
        assert col.wait_for_indexes(timeout=120)
        assert col.index_builder.builds == 1 and col.index_builder.last_error is None
        index = col.segments[0].index
        assert type(index).load(path).n_rows == len(rows)  # saved again, whole
        found = [[int(h["id"]) for h in col.search(q, k=10, include_metadata=False)] for q in queries]
        assert recall_at(found, truth) >= 0.95


def test_binary_file_round_trip_and_engine_setting(tmp_path: Path, sift) -> None:  # type: ignore[no-untyped-def]
    rows, queries = _clustered(1500, 24, seed=7)
    index = HNSWBinaryIndex(24, "cosine", M=8, ef_construction=64)
    index.add(np.arange(len(rows)) * 2, rows)
    path = tmp_path / "index.hnswb"
    index.save(path)
    with pytest.raises(CorruptionError):
        HNSWInt8Index.load(path)  # another kind's magic
    loaded = HNSWBinaryIndex.load(path)
    loaded.attach_vectors(rows)
    loaded.oversampling = index.oversampling
    np.testing.assert_array_equal(index.search_batch(queries, 10)[0], loaded.search_batch(queries, 10)[0])

    base, sift_queries, gt = sift
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        _collection(engine, base, "l2", {"type": "binary", "oversampling": 16})
        col = engine.collection("c")
        assert col.config.index_params["quantization"] == {"type": "binary", "rescore": True, "oversampling": 16.0}
        assert isinstance(col.segments[0].index, HNSWBinaryIndex)
        found = [[int(h["id"]) for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in sift_queries]
        assert recall_at(found, gt) >= 0.95
    assert next((tmp_path / "d").rglob("index.hnswb")).is_file()
    with Engine.open(tmp_path / "d", fsync="never") as engine:  # reopened: loaded, not rebuilt
        col = engine.collection("c")
        assert isinstance(col.segments[0].index, HNSWBinaryIndex) and col.index_builder.builds == 0
