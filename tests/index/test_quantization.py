"""int8 scalar and binary quantization (index_params.quantization): the indexes on their own, inside
the engine (build, search, reopen in a fresh process, reconfigure) and their validation."""

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


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_int8_rescored_recall_on_random_data(metric: str) -> None:
    rows, queries = _clustered(6000, 48, seed=1)
    truth = _exact(rows, queries, metric)
    index = HNSWInt8Index(48, metric, M=16, ef_construction=100)
    index.add(np.arange(len(rows)), rows, threads=1)
    found, dist = index.search_batch(queries, 10, ef=64)
    assert recall_at(found, truth) >= 0.95
    # rescored distances are the float32 distances of the rows returned, as HNSWIndex reports them
    ref = HNSWIndex(48, metric, M=16, ef_construction=100)
    ref.add(np.arange(len(rows)), rows)
    for i in range(5):
        _, ref_d = ref.search(queries[i], 20, exact=True, filter_ids=found[i])
        np.testing.assert_allclose(np.sort(ref_d[:10]), dist[i], rtol=1e-4, atol=1e-4)
    # codes decode to within half a step of the (normalised) rows
    lo, step = index.quantizer()
    stored = rows / np.linalg.norm(rows, axis=1, keepdims=True) if metric == "cosine" else rows
    decoded = lo + step * index.codes_array().astype(np.float32)
    assert np.all(np.abs(decoded - stored) <= step / 2 + 1e-5)


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


def test_file_round_trip_needs_vectors_and_detects_damage(tmp_path: Path) -> None:
    rows, queries = _clustered(2000, 16, seed=3)
    index = HNSWInt8Index(16, "cosine", M=8, ef_construction=64)
    index.add(np.arange(len(rows)) * 3, rows)
    path = tmp_path / "index.hnsw8"
    index.save(path)
    loaded = HNSWInt8Index.load(path)
    with pytest.raises(ValidationError, match="attach_vectors"):
        loaded.search(queries[0], 5)
    loaded.attach_vectors(rows)
    loaded.oversampling = index.oversampling
    a, b = index.search_batch(queries, 10), loaded.search_batch(queries, 10)
    np.testing.assert_array_equal(a[0], b[0])
    usage = loaded.memory_usage()
    assert usage["codes"] < usage["vectors_mapped"] / 3.5
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError):
        HNSWInt8Index.load(path)


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


def test_engine_siftsmall_recall_and_reopen_in_fresh_process(tmp_path: Path, sift) -> None:  # type: ignore[no-untyped-def]
    base, queries, gt = sift
    engine = Engine.open(tmp_path / "d", fsync="never")
    _collection(engine, base, "l2", {"type": "int8"})
    col = engine.collection("c")
    assert col.config.index_params["quantization"] == {"type": "int8", "rescore": True, "oversampling": 2.0}
    index = col.segments[0].index
    assert isinstance(index, HNSWInt8Index) and index.oversampling == 2.0
    found = [[int(h["id"]) for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in queries]
    assert recall_at(found, gt) >= 0.95
    filtered = col.search(queries[0], k=10, filter={"m": 3})
    assert len(filtered) == 10 and all(h["metadata"]["m"] == 3 for h in filtered)
    engine.close()
    seg_dir = next((tmp_path / "d").rglob("index.hnsw8")).parent
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
    assert out["kind"] == "HNSWInt8Index" and out["builds"] == 0  # loaded from index.hnsw8, not rebuilt
    assert out["params"]["quantization"]["type"] == "int8"
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
        engine.update_collection("c", index_params={"M": 16, "ef_construction": 100})
        assert col.wait_for_indexes(timeout=120)
        assert type(col.segments[0].index).__name__ == "HNSWIndex"
        assert not (seg_dir / "index.hnsw8").exists()


@pytest.mark.parametrize("setting, message", [
    ({"type": "pq"}, "must be one of int8, binary"),
    ({}, "must be one of int8, binary"),
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


@pytest.mark.parametrize("cls", [HNSWIndex, HNSWInt8Index, HNSWBinaryIndex])
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
    vectors = {HNSWIndex: 0, HNSWInt8Index: 2 * 16 * 4 + 300 * 16,
               HNSWBinaryIndex: 2 * 16 * 4 + 300 * 2}[cls]  # the body's bytes between ids and level-0 links
    data = bytearray(raw)
    struct.pack_into("<i", data, h + 300 * 8 + vectors, 10**6)  # row 0's level-0 link count
    with pytest.raises(CorruptionError, match=r"link list is out of range \(level 0\)"):
        cls.load(write(data))
    assert cls.load(write(bytearray(raw))).n_rows == 300


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_binary_rescored_recall_and_codes(metric: str) -> None:
    rows, queries = _clustered(6000, 64, seed=5)
    truth = _exact(rows, queries, metric)
    index = HNSWBinaryIndex(64, metric, M=16, ef_construction=100)
    index.add(np.arange(len(rows)), rows, threads=1)
    assert index.oversampling == 4.0
    index.oversampling = 16.0
    found, dist = index.search_batch(queries, 10, ef=64)
    assert recall_at(found, truth) >= 0.9
    ref = HNSWIndex(64, metric, M=16, ef_construction=100)  # rescored distances are the float32 ones
    ref.add(np.arange(len(rows)), rows)
    for i in range(5):
        _, ref_d = ref.search(queries[i], 20, exact=True, filter_ids=found[i])
        np.testing.assert_allclose(np.sort(ref_d[:10]), dist[i], rtol=1e-4, atol=1e-4)
    # one bit per dimension: set where the stored row is above the per-dimension mean
    center, step = index.quantizer()
    stored = rows / np.linalg.norm(rows, axis=1, keepdims=True) if metric == "cosine" else rows
    np.testing.assert_allclose(center, stored.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert not step.any()
    bits = np.unpackbits(index.codes_array(), axis=1, bitorder="little")[:, :64]
    np.testing.assert_array_equal(bits, (stored > center).astype(np.uint8))
    usage = index.memory_usage()
    assert usage["codes"] - 8 * 64 == len(rows) * 8 and usage["vectors_mapped"] == len(rows) * 64 * 4


def test_binary_code_distance_ranks_by_the_sign_inner_product() -> None:
    """Without rescoring the distance is -(q - center) . signs(row), exactly (the per-query table)."""
    rows, queries = _clustered(500, 20, seed=6)  # 20 dims: the last code byte is half padding
    index = HNSWBinaryIndex(20, "l2", M=8, ef_construction=64)
    index.add(np.arange(len(rows)), rows)
    index.rescore = False
    center, _ = index.quantizer()
    signs = np.where(np.unpackbits(index.codes_array(), axis=1, bitorder="little")[:, :20] == 1, 1.0, -1.0)
    for q in queries[:10]:
        found, dist = index.search(q, 5, ef=400)  # a graph walk (ef < rows: not the exact scan of float32 rows)
        want = -(signs @ (q - center))
        np.testing.assert_allclose(dist, want[found], rtol=1e-4, atol=1e-4)
        assert dist[0] <= np.sort(want)[4] + 1e-4  # ef 400 of 500 rows: among the best codes


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
