"""Sparse vectors (schema v3): codec round trip and refusals, and search_sparse against brute force
across memtable, segments, deletes, upserts, compaction, a damaged sparse.idx and a reopen."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.avro_batch import decode_vector_batch, encode_vector_batch
from proximadb.codec.schemas import record_schema
from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.storage.engine import Engine
from proximadb.storage.sparse_index_file import FILE_NAME


def _datum(sparse: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, record_schema("VectorBatch", 3), {"upsert": False, "records": [
        {"id": "x", "vector": [1.0], "metadata": {}, "timestamp": 0, "expires_at": None, "sparse_vectors": sparse}]})
    return out.getvalue()


def test_codec_round_trip_v3_and_old_versions() -> None:
    sv = [{"t": {"indices": [1, 9], "values": [0.5, -2.0]}}, None]
    data = encode_vector_batch(["a", "b"], np.ones((2, 1), np.float32), None, None, False, None, 3, sv)
    ref = fastavro.schemaless_reader(io.BytesIO(data), record_schema("VectorBatch", 3), None)
    batch = decode_vector_batch(data, 1, 3)
    assert batch.to_dict() == ref
    assert batch.sparse_vectors["t"].row_start.tolist() == [0, 2, 2]
    for version in (1, 2):
        assert decode_vector_batch(encode_vector_batch(["a"], np.ones((1, 1)), schema_version=version), 1,
                                   version).sparse_vectors is None
    with pytest.raises(ValidationError, match="schema version 3"):
        encode_vector_batch(["a", "b"], np.ones((2, 1)), schema_version=2, sparse_vectors=sv)


@pytest.mark.parametrize(("vector", "words"), [
    ({"indices": [5, 1], "values": [1.0, 1.0]}, "unsorted"),
    ({"indices": [1, 1], "values": [1.0, 1.0]}, "duplicated"),
    ({"indices": [-1], "values": [1.0]}, "negative"),
    ({"indices": [1], "values": [float("nan")]}, "not finite"),
    ({"indices": [1], "values": [float("inf")]}, "not finite"),
    ({"indices": [1, 2], "values": [1.0]}, "must match"),
    ({"indices": list(range(65_537)), "values": [1.0] * 65_537}, "limit"),
])
def test_bad_sparse_vectors_are_refused(vector: dict, words: str) -> None:
    with pytest.raises(InvalidVectorError, match=words):
        decode_vector_batch(_datum({"n": vector}), -1, 3)
    with pytest.raises(InvalidVectorError, match=words):
        encode_vector_batch(["a"], np.ones((1, 1)), schema_version=3, sparse_vectors=[{"n": vector}])
    with pytest.raises(InvalidVectorError, match="name"):
        decode_vector_batch(_datum({"bad name": {"indices": [1], "values": [1.0]}}), -1, 3)


def test_bad_insert_changes_nothing(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        engine.create_collection("c", dimension=1, sparse_vectors={"t": {}})
        col = engine.collection("c")
        with pytest.raises(ValidationError, match="declared: 't'"):
            col.insert([{"id": "a", "vector": [1.0], "sparse_vectors": {"zz": {"indices": [1], "values": [1.0]}}}])
        with pytest.raises(InvalidVectorError, match="unsorted"):
            col.insert([{"id": "a", "vector": [1.0], "sparse_vectors": {"t": {"indices": [2, 1], "values": [1, 1]}}}])
        assert col.count() == 0
        with pytest.raises(ValidationError, match="declared: 't'"):
            col.search_sparse("zz", [1], [1.0])


def _brute(rows: dict, query: tuple, flt_ok: dict) -> list[float]:
    qi, qv = query
    q = dict(zip(qi, qv, strict=True))
    scores = []
    for id_, (idx, val) in rows.items():
        if not flt_ok[id_] or not set(idx) & set(q):
            continue
        scores.append(sum(v * q.get(i, 0.0) for i, v in zip(idx, val, strict=True)))
    return sorted(scores, reverse=True)


def _vec(rng: np.random.Generator) -> tuple[list[int], list[float]]:
    nnz = int(rng.integers(0, 6))
    idx = sorted(rng.choice(40, size=nnz, replace=False).tolist())
    return idx, rng.standard_normal(nnz).round(3).tolist()


def _check(col, model: dict, groups: dict, rng: np.random.Generator) -> None:
    for _ in range(4):
        qi, qv = _vec(rng)
        if not qi:
            continue
        for flt, ok in ((None, dict.fromkeys(model, True)), ({"g": 1}, {i: groups[i] == 1 for i in model})):
            got = [h["score"] for h in col.search_sparse("t", qi, qv, k=7, filter=flt)]
            want = _brute(model, (qi, qv), ok)[:7]
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_search_sparse_equals_brute_force(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("sparse")
    model: dict[str, tuple[list[int], list[float]]] = {}
    groups: dict[str, int] = {}
    with Engine.open(path, auto_compact=False) as engine:
        engine.create_collection("c", dimension=2, sparse_vectors={"t": {}})
        col = engine.collection("c")
        for step in range(4):
            recs = []
            for _ in range(30):
                id_ = f"r{int(rng.integers(0, 80)):03d}"
                if any(r["id"] == id_ for r in recs):
                    continue
                v = _vec(rng)
                g = int(rng.integers(0, 2))
                rec = {"id": id_, "vector": [1.0, 0.5], "metadata": {"g": g}}
                if v[0]:
                    rec["sparse_vectors"] = {"t": {"indices": v[0], "values": v[1]}}
                recs.append(rec)
                model[id_] = v
                groups[id_] = g
            col.upsert(recs)
            dead = [i for i in list(model) if rng.random() < 0.1]
            col.delete(dead)
            for i in dead:
                del model[i]
            _check(col, model, groups, rng)
            if step % 2 == 0:
                col.flush()
                _check(col, model, groups, rng)
        col.compact()
        _check(col, model, groups, rng)
        seg = col.segments[0].path
    (seg / FILE_NAME).write_bytes(b"damaged")
    with Engine.open(path) as engine:
        col = engine.collection("c")
        _check(col, model, groups, rng)
        for id_, (idx, _val) in list(model.items())[:5]:
            rec = col.get(id_)
            if idx:
                assert rec["sparse_vectors"]["t"]["indices"] == idx
            else:
                assert "sparse_vectors" not in rec
    assert (seg / FILE_NAME).read_bytes() != b"damaged"
