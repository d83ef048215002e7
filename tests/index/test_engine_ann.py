"""HNSW and IVF inside the engine: sealed segments get an index, searched with deletions and filters applied."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from proximadb.storage.engine import Engine
from proximadb.storage.segment import VEC_HEADER
from proximadb.storage.wal_io import crc32c
from proximadb.tools.datasets import recall_at


def _load(tmp_path: Path, base: np.ndarray, algorithm: str, params: dict) -> Engine:
    engine = Engine.open(tmp_path / "d", fsync="never")
    engine.create_collection("sift", 128, distance_metric="euclidean", indexing_algorithm=algorithm,
                             index_params=params)
    col = engine.collection("sift")
    metadata = [{"m": i % 100} for i in range(len(base))]
    col.insert(ids=[str(i) for i in range(len(base))], vectors=base, metadatas=metadata)
    col.flush()
    assert col.wait_for_indexes(timeout=120)
    return engine


def test_hnsw_segment_recall_deletions_filters_and_reopen(tmp_path: Path, sift, caplog) -> None:  # type: ignore[no-untyped-def]
    base, queries, gt = sift
    engine = _load(tmp_path, base, "hnsw", {"M": 16, "ef_construction": 200})
    col = engine.collection("sift")
    assert col.stats()["indexed_segments"] == 1
    found = [[h["id"] for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in queries]
    assert recall_at(found, gt) >= 0.95
    exact = [[h["id"] for h in col.search(q, k=10, exact=True, include_metadata=False)] for q in queries]
    assert recall_at(exact, gt) == 1.0
    assert col.search_batch(queries[:8], k=10, ef=64)[3] == col.search(queries[3], k=10, ef=64)

    # deletions are respected inside the graph search
    doomed = {str(int(i)) for i in gt[:, :3].ravel()}
    col.delete(sorted(doomed))
    for q in queries[:30]:
        assert not doomed & {h["id"] for h in col.search(q, k=10)}

    # filters: 10% and 1% selectivity still give k hits that all match
    for cond, allowed in (({"m": {"$lt": 10}}, 10), ({"m": 42}, 1)):
        for q in queries[:20]:
            hits = col.search(q, k=10, filter=cond)
            assert len(hits) == 10
            assert all(h["metadata"]["m"] < allowed if allowed == 10 else h["metadata"]["m"] == 42 for h in hits)
            assert not doomed & {h["id"] for h in hits}
    engine.close()

    # reopened: the index file is loaded, checked and used; no rebuild
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="proximadb.index"), Engine.open(tmp_path / "d") as engine:
        col = engine.collection("sift")
        assert col.stats()["indexed_segments"] == 1 and col.index_builder.pending == 0
        again = [[h["id"] for h in col.search(q, k=10, ef=64, include_metadata=False)] for q in queries[:10]]
        assert all(not doomed & set(f) for f in again)
    assert "building" not in caplog.text


def test_damaged_index_file_is_rebuilt_not_trusted(tmp_path: Path, sift, caplog) -> None:  # type: ignore[no-untyped-def]
    base, _queries, _gt = sift
    _load(tmp_path, base[:3000], "hnsw", {"M": 8, "ef_construction": 64}).close()
    index_file = next((tmp_path / "d").rglob("index.hnsw"))
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0x5A
    index_file.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="proximadb.index"), Engine.open(tmp_path / "d") as engine:
        col = engine.collection("sift")
        hits = col.search(base[7], k=1)  # exact until the rebuild is done, still correct
        assert hits[0]["id"] == "7"
        assert col.wait_for_indexes(timeout=60)
        assert col.stats()["indexed_segments"] == 1 and col.index_builder.builds == 1
        assert col.search(base[7], k=1)[0]["id"] == "7"
    assert "unusable" in caplog.text and "rebuilding" in caplog.text


def test_ivf_segment_recall_with_nprobe(tmp_path: Path, sift) -> None:  # type: ignore[no-untyped-def]
    base, queries, gt = sift
    with _load(tmp_path, base, "ivf", {"nlist": 100}) as engine:
        col = engine.collection("sift")
        found = [[h["id"] for h in col.search(q, k=10, nprobe=16, include_metadata=False)] for q in queries]
        assert recall_at(found, gt) >= 0.9
        hits = col.search(queries[0], k=10, nprobe=8, filter={"m": 3})
        assert len(hits) == 10 and all(h["metadata"]["m"] == 3 for h in hits)


def test_switching_a_flat_collection_to_hnsw_builds_indexes(tmp_path: Path, sift) -> None:  # type: ignore[no-untyped-def]
    base, _queries, _gt = sift
    with _load(tmp_path, base[:2000], "flat", {}) as engine:
        col = engine.collection("sift")
        assert col.stats()["indexed_segments"] == 0
        engine.update_collection("sift", indexing_algorithm="hnsw", index_params={"M": 8})
        assert col.wait_for_indexes(timeout=60)
        assert col.stats()["indexed_segments"] == 1
        assert col.search(base[11], k=1)[0]["id"] == "11"


def test_a_version_1_index_file_opens_without_a_rebuild(tmp_path: Path, sift, caplog) -> None:  # type: ignore[no-untyped-def]
    """A data directory of the code before index.hnsw format 2 (whose file held the vectors, normalised
    under cosine): its index loads, is given the segment's mapped vectors and answers alike; no rebuild.
    The version-1 file is written here from the format-2 one by hnsw.pyx's documented layouts."""
    base, queries, _gt = sift
    engine = Engine.open(tmp_path / "d", fsync="never")
    engine.create_collection("c", 128, distance_metric="cosine", indexing_algorithm="hnsw",
                             index_params={"M": 8, "ef_construction": 64})
    col = engine.collection("c")
    col.insert(ids=[str(i) for i in range(3000)], vectors=base[:3000])
    col.flush()
    assert col.wait_for_indexes(timeout=120)
    before = [col.search(q, k=10, ef=32, include_metadata=False) for q in queries[:20]]
    engine.close()

    index_file = next((tmp_path / "d").rglob("index.hnsw"))
    raw = index_file.read_bytes()
    n = struct.unpack_from("<Q", raw, 56)[0]
    assert struct.unpack_from("<I", raw, 8)[0] == 2 and n == 3000
    vecs = np.fromfile(index_file.parent / "vectors.f32", dtype="<f4", offset=VEC_HEADER.size).reshape(n, 128)
    inv = (1.0 / np.sqrt(np.einsum("ij,ij->i", vecs.astype(np.float64), vecs.astype(np.float64)))).astype(np.float32)
    unit = (vecs * inv[:, None]).astype("<f4")  # what version 1 stored: each row scaled by its float32 1/|row|
    body = raw[96:-8]
    body_v1 = body[:8 * n] + unit.tobytes() + body[8 * n:len(body) - 4 * n]  # vectors in, norms out
    head = bytearray(raw[:96])
    struct.pack_into("<I", head, 8, 1)
    struct.pack_into("<I", head, 88, crc32c(bytes(head[:88])))
    v1 = bytes(head) + body_v1 + struct.pack("<I", crc32c(body_v1)) + b"PXHE"
    index_file.write_bytes(v1)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="proximadb.index"), Engine.open(tmp_path / "d") as engine:
        col = engine.collection("c")
        assert col.stats()["indexed_segments"] == 1 and col.index_builder.pending == 0
        after = [col.search(q, k=10, ef=32, include_metadata=False) for q in queries[:20]]
    assert "building" not in caplog.text and "unusable" not in caplog.text
    assert index_file.read_bytes() == v1  # a derived file that loads is kept as it is
    for old, new in zip(before, after, strict=True):
        assert [h["id"] for h in old] == [h["id"] for h in new]
        np.testing.assert_allclose([h["distance"] for h in old], [h["distance"] for h in new], rtol=0, atol=1e-6)
