"""Sparse vectors (schema v3): codec round trip and refusals, and search_sparse against brute force
across memtable, segments, deletes, upserts, compaction, a damaged sparse.idx and a reopen."""

from __future__ import annotations

import io
import math
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.avro_batch import decode_vector_batch, encode_vector_batch
from proximadb.codec.schemas import record_schema
from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.storage import expiry
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


def _brute(rows: dict, query: tuple, flt_ok: dict, modifier: str = "none") -> list[float]:
    """The scores of the hits, best first; with "idf", each query value times its index's IDF among the
    rows carrying a vector (BM25's formula, every row: ``flt_ok`` does not change the weights)."""
    qi, qv = query
    q = dict(zip(qi, qv, strict=True))
    if modifier == "idf":
        carried = [dict(zip(*vec, strict=True)) for vec in rows.values() if vec[0]]
        for i in q:
            n = sum(1 for vec in carried if vec.get(i, 0.0) != 0.0)
            q[i] *= math.log1p((len(carried) - n + 0.5) / (n + 0.5))
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


def _check(col, model: dict, groups: dict, rng: np.random.Generator, modifier: str = "none") -> None:
    for _ in range(4):
        qi, qv = _vec(rng)
        if not qi:
            continue
        for flt, ok in ((None, dict.fromkeys(model, True)), ({"g": 1}, {i: groups[i] == 1 for i in model})):
            got = [h["score"] for h in col.search_sparse("t", qi, qv, k=7, filter=flt)]
            want = _brute(model, (qi, qv), ok, modifier)[:7]
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), modifier=st.sampled_from(["none", "idf"]))
def test_search_sparse_equals_brute_force(tmp_path_factory: pytest.TempPathFactory, seed: int, modifier: str) -> None:
    """With either modifier; "idf" weighs by the live rows of the whole collection (every part, deletes
    counted, the filter not), so its scores match the model's after flushes, compaction and a reopen."""
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("sparse")
    model: dict[str, tuple[list[int], list[float]]] = {}
    groups: dict[str, int] = {}
    with Engine.open(path, auto_compact=False) as engine:
        engine.create_collection("c", dimension=2, sparse_vectors={"t": {"modifier": modifier}})
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
            _check(col, model, groups, rng, modifier)
            if step % 2 == 0:
                col.flush()
                _check(col, model, groups, rng, modifier)
        col.compact()
        _check(col, model, groups, rng, modifier)
        seg = col.segments[0].path
    (seg / FILE_NAME).write_bytes(b"damaged")
    with Engine.open(path) as engine:
        col = engine.collection("c")
        _check(col, model, groups, rng, modifier)
        for id_, (idx, _val) in list(model.items())[:5]:
            rec = col.get(id_)
            if idx:
                assert rec["sparse_vectors"]["t"]["indices"] == idx
            else:
                assert "sparse_vectors" not in rec
    assert (seg / FILE_NAME).read_bytes() != b"damaged"


def test_the_idf_modifier_can_change_and_weighs_by_the_whole_collection(tmp_path: Path) -> None:
    """An update switches the modifier (nothing stored changes) and it holds after a reopen; a bad one is
    refused and changes nothing; a shard replica weighs only with the statistics it is given."""
    rows = {"a": ([1, 2], [1.0, 1.0]), "b": ([1], [1.0]), "c": ([1, 3], [1.0, 0.0]), "d": ([3], [2.0])}
    with Engine.open(tmp_path) as engine:
        engine.create_collection("c", dimension=1, sparse_vectors={"t": {}})
        col = engine.collection("c")
        col.insert([{"id": i, "vector": [1.0], "sparse_vectors": {"t": {"indices": v[0], "values": v[1]}}}
                    for i, v in rows.items()] + [{"id": "e", "vector": [1.0]}])
        plain = {h["id"]: h["score"] for h in col.search_sparse("t", [1, 2, 3], [1.0, 1.0, 1.0], k=10)}
        assert plain == {"a": 2.0, "b": 1.0, "c": 1.0, "d": 2.0}
        with pytest.raises(ValidationError, match="modifier must be one of 'none', 'idf', not 'bm25'"):
            engine.update_collection("c", sparse_vectors={"t": {"modifier": "bm25"}})
        assert engine.collection("c").config.sparse_vectors == {"t": {"modifier": "none"}}
        engine.update_collection("c", sparse_vectors={"t": {"modifier": "idf"}})
        col = engine.collection("c")
        stats = col.sparse_stats("t", [1, 2, 3], [1.0, 1.0, 1.0])
        # 4 rows carry "t" ("e" has none); index 3's value on "c" is 0, so only "d" counts for it
        assert (stats.rows, stats.total_terms, stats.df) == (4, 6.0, {"1": 3, "2": 1, "3": 1})
        w = {i: math.log1p((4 - n + 0.5) / (n + 0.5)) for i, n in ((1, 3), (2, 1), (3, 1))}
        want = {"a": w[1] + w[2], "b": w[1], "c": w[1], "d": 2 * w[3]}
        got = {h["id"]: h["score"] for h in col.search_sparse("t", [1, 2, 3], [1.0, 1.0, 1.0], k=10)}
        assert got == pytest.approx(want, rel=1e-6)
        col.delete(["d"])  # the weights follow the live rows
        stats = col.sparse_stats("t", [3], [1.0])
        assert (stats.rows, stats.df) == (3, {"3": 0})
    with Engine.open(tmp_path) as engine:
        col = engine.collection("c")
        assert col.config.sparse_vectors == {"t": {"modifier": "idf"}}
        w1 = math.log1p((3 - 3 + 0.5) / 3.5)
        assert col.search_sparse("t", [1], [1.0], k=1)[0]["score"] == pytest.approx(w1, rel=1e-6)
        col.is_shard_replica = True  # as cluster/node.py makes a replica: weighs only with given statistics
        assert col.search_sparse("t", [1], [1.0], k=1)[0]["score"] == 1.0
        given = col.sparse_stats("t", [1], [1.0])
        assert col.search_sparse("t", [1], [1.0], k=1, stats=given)[0]["score"] == pytest.approx(w1, rel=1e-6)


def test_idf_statistics_of_a_segment_follow_its_deletes(tmp_path: Path) -> None:
    """A segment's counts are kept between searches (read off the postings while no row is deleted): a
    delete, or a row of a later flush, shows in the next statistics and scores."""
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", dimension=1, sparse_vectors={"t": {"modifier": "idf"}})
        col = engine.collection("c")
        vec = {"a": ([1, 2], [1.0, 2.0]), "b": ([1], [3.0]), "c": ([2, 5], [1.0, 1.0])}
        col.insert([{"id": i, "vector": [1.0], "sparse_vectors": {"t": {"indices": v[0], "values": v[1]}}}
                    for i, v in vec.items()])
        col.flush()
        for _ in range(2):  # the second time from the kept counts
            stats = col.sparse_stats("t", [1, 2, 5], [1.0, 1.0, 1.0])
            assert (stats.rows, stats.total_terms, stats.df) == (3, 5.0, {"1": 2, "2": 2, "5": 1})
        col.delete(["a"])
        stats = col.sparse_stats("t", [1, 2, 5], [1.0, 1.0, 1.0])
        assert (stats.rows, stats.total_terms, stats.df) == (2, 3.0, {"1": 1, "2": 1, "5": 1})
        col.insert([{"id": "d", "vector": [1.0], "sparse_vectors": {"t": {"indices": [5], "values": [2.0]}}}])
        col.flush()
        assert len(col.segments) == 2
        stats = col.sparse_stats("t", [1, 2, 5], [1.0, 1.0, 1.0])
        assert (stats.rows, stats.total_terms, stats.df) == (3, 4.0, {"1": 1, "2": 1, "5": 2})
        w5 = math.log1p((3 - 2 + 0.5) / 2.5)
        assert [(h["id"], h["score"]) for h in col.search_sparse("t", [5], [1.0])] == [
            ("d", pytest.approx(2 * w5)), ("c", pytest.approx(w5))]


def test_idf_statistics_see_zero_values_expiry_and_a_delete_racing_a_search(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """In a segment: a stored 0 is not counted in df (the postings' bounds are not used then); a row that
    expires stops counting at its moment (a controllable clock); a delete landing between a search's snapshot
    and its counts does not leave counts from before it kept under the mask from after it."""
    now = [2_000_000_000_000_000]
    monkeypatch.setattr(expiry, "now_us", lambda: now[0])
    with Engine.open(tmp_path, auto_compact=False) as engine:
        engine.create_collection("c", dimension=1, sparse_vectors={"t": {"modifier": "idf"}})
        col = engine.collection("c")
        col.insert([{"id": f"r{i}", "vector": [1.0], "sparse_vectors": {"t": {"indices": [1, 2], "values": [1.0, v]}}}
                    for i, v in enumerate([0.0, 1.0, 1.0, 1.0])])
        col.flush()
        stats = col.sparse_stats("t", [1, 2], [1.0, 1.0])
        assert (stats.rows, stats.df) == (4, {"1": 4, "2": 3})

        parts = col._sparse_parts("t", None)  # a search's snapshot ...
        col.delete(["r3"])  # ... a delete before its counts ...
        col._sparse_corpus_stats("t", parts, np.asarray([1], np.int32))  # ... counted from the snapshot
        for _ in range(2):  # and every search after sees the delete
            stats = col.sparse_stats("t", [1, 2], [1.0, 1.0])
            assert (stats.rows, stats.df) == (3, {"1": 3, "2": 2})

        col.insert([{"id": "x", "vector": [1.0], "expires_at": now[0] + 10,
                     "sparse_vectors": {"t": {"indices": [2], "values": [1.0]}}}])
        col.flush()
        assert col.sparse_stats("t", [2], [1.0]).df == {"2": 3}
        now[0] += 10  # expires_at is the first moment the row is gone
        stats = col.sparse_stats("t", [1, 2], [1.0, 1.0])
        assert (stats.rows, stats.df) == (3, {"1": 3, "2": 2})
        w2 = math.log1p((3 - 2 + 0.5) / 2.5)
        assert [h["id"] for h in col.search_sparse("t", [2], [1.0], k=5)] == ["r1", "r2", "r0"]  # r0: a stored 0
        assert col.search_sparse("t", [2], [1.0], k=1)[0]["score"] == pytest.approx(w2)
