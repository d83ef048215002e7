"""Sparse vectors at their edges (each test failed on the code before its fix): a cluster replica applying an
entry that names a sparse vector its settings do not have yet, the binary WAL with several names, scores
beyond float32's range, column input that a cast would wrap, numbers beyond float range, the memtable's
postings kept between searches, and a replica searching a name its settings do not have yet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import proximadb
from proximadb.codec.payload import encode_insert
from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.storage.engine import Engine
from proximadb.storage.sparse_column import SparseColumn

T0 = 1_700_000_000_000_000


def test_a_replica_applies_an_entry_naming_a_sparse_vector_it_has_not_declared_yet(tmp_path: Path) -> None:
    """update_collection adds a name on the node that takes it; another replica learns it at its next sync.
    An insert with the new name accepted meanwhile is in the shard log: the replica applies it (refusing would
    lose it for good: an entry is applied once) and searches it once it declares the name."""
    engine = Engine.open(tmp_path, log_of_record="external")
    engine.create_collection("c.s0", 2, sparse_vectors={"t": {}})
    col = engine.collection("c.s0")
    first = encode_insert(ids=["a"], vectors=[[1.0, 0.0]], sparse_vectors=[{"t": {"indices": [1], "values": [1.0]}}])
    second = encode_insert(ids=["b"], vectors=[[0.0, 1.0]], sparse_vectors=[{"u": {"indices": [2], "values": [2.0]}}])
    assert col.apply_log_entry(1, first, T0).outcome == "applied"
    assert col.apply_log_entry(2, second, T0 + 1).outcome == "applied"
    engine.update_collection("c.s0", sparse_vectors={"t": {}, "u": {}})  # its sync, later
    col = engine.collection("c.s0")
    assert col.count() == 2
    assert [h["id"] for h in col.search_sparse("u", [2], [1.0], 5)] == ["b"]
    engine.close()


def test_a_replica_searches_a_sparse_name_its_settings_do_not_have_yet(tmp_path: Path) -> None:
    """A cluster node checks a search's sparse name against the collection's map; a replica's settings learn a
    name that update_collection added on another node only at that replica's next sync. A replica
    (``is_shard_replica``, as cluster/node.py makes each) searches the name as it is, finding the rows
    that carry it; a collection of its own refuses a name it does not declare."""
    engine = Engine.open(tmp_path, log_of_record="external")
    engine.create_collection("c.s0", 2, sparse_vectors={"t": {}})
    col = engine.collection("c.s0")
    entry = encode_insert(ids=["b"], vectors=[[0.0, 1.0]], sparse_vectors=[{"u": {"indices": [2], "values": [2.0]}}])
    assert col.apply_log_entry(1, entry, T0).outcome == "applied"
    with pytest.raises(ValidationError, match="unknown sparse vector 'u'"):
        col.search_sparse("u", [2], [1.0], 5)
    col.is_shard_replica = True
    assert [h["id"] for h in col.search_sparse("u", [2], [1.0], 5)] == ["b"]
    assert col.search_sparse("v", [2], [1.0], 5) == []  # a name no row carries: no hit
    col.flush()
    assert [h["id"] for h in col.search_sparse("u", [2], [1.0], 5)] == ["b"]
    with pytest.raises(ValidationError, match="unknown sparse vector 1"):
        col.search_sparse(1, [2], [1.0], 5)  # type: ignore[arg-type]
    engine.close()


def test_the_binary_wal_logs_inserts_with_several_sparse_names(tmp_path: Path) -> None:
    names = {f"n{i}": {} for i in range(4)}
    record = {"id": "y", "vector": [1.0, 0.0],
              "sparse_vectors": {name: {"indices": [i, i + 5], "values": [1.0, float(i)]}
                                 for i, name in enumerate(names)}}
    engine = Engine.open(tmp_path, wal_strategy="binary")
    engine.create_collection("c", 2, sparse_vectors=names)
    engine.collection("c").insert([record])
    engine.close()
    engine = Engine.open(tmp_path, wal_strategy="binary")  # replayed from the WAL
    got = engine.collection("c").get("y")
    assert got is not None and got["sparse_vectors"] == record["sparse_vectors"]
    engine.close()


@pytest.mark.parametrize("flushed", [False, True])
def test_scores_beyond_float32_are_clamped_never_inf_or_nan(tmp_path: Path, flushed: bool) -> None:
    """Finite inputs whose products overflow float32: summed in double, returned at most float32's largest
    value; both scorers (a filter allowing few rows takes term at a time) give the same finite answer."""
    engine = Engine.open(tmp_path, fsync="never")
    engine.create_collection("c", 2, sparse_vectors={"t": {}})
    col = engine.collection("c")
    col.insert([{"id": "big", "vector": [1, 0], "metadata": {"g": 1},
                 "sparse_vectors": {"t": {"indices": [1, 2], "values": [3e38, -3e38]}}},
                {"id": "good", "vector": [1, 0], "metadata": {"g": 1},
                 "sparse_vectors": {"t": {"indices": [1], "values": [1.0]}}},
                {"id": "huge", "vector": [1, 0], "metadata": {"g": 1},
                 "sparse_vectors": {"t": {"indices": [4], "values": [1e30]}}}]
               + [{"id": f"x{i}", "vector": [1, 0], "metadata": {"g": 0},
                   "sparse_vectors": {"t": {"indices": [3], "values": [1.0]}}} for i in range(100)])
    if flushed:
        col.flush()
    for flt in (None, {"g": 1}):
        hits = col.search_sparse("t", [1, 2], [10.0, 10.0], 2, filter=flt)
        assert [h["id"] for h in hits] == ["good", "big"] and hits[0]["score"] == 10.0
        (top,) = col.search_sparse("t", [4], [1e30], 1, filter=flt)
        assert top["id"] == "huge" and math.isfinite(top["score"]) and top["score"] == np.finfo(np.float32).max
    engine.close()


def test_column_input_a_cast_would_wrap_is_refused(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path, fsync="never")
    engine.create_collection("c", 2, sparse_vectors={"t": {}})
    col = engine.collection("c")
    for indices in (np.array([5, 2**32 + 7], dtype=np.int64), np.array([5.7, 9.2])):
        column = SparseColumn(np.array([0, 2], dtype=np.int64), indices, np.ones(2, dtype=np.float32))
        with pytest.raises(InvalidVectorError, match="indices must be integers"):
            col.insert(ids=["a"], vectors=np.ones((1, 2), np.float32), sparse_vectors={"t": column})
    assert col.count() == 0
    engine.close()


def test_numbers_beyond_float_range_are_invalid_vectors(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path) as client:
        client.create_collection("c", 2, sparse_vectors={"t": {}})
        with pytest.raises(InvalidVectorError):
            client.insert_vectors("c", [{"id": "a", "vector": [1, 0],
                                         "sparse_vectors": {"t": {"indices": [1], "values": [10**309]}}}])
        with pytest.raises(InvalidVectorError):
            client.search_sparse("c", "t", [1], [10**309])
        with pytest.raises(InvalidVectorError, match="below 2\\*\\*31"):
            client.insert_vectors("c", ids=["b"], vectors=[[1, 0]], sparse_vectors=[
                {"t": {"indices": np.array([2**63], dtype=np.uint64), "values": [1.0]}}])
        assert client.count("c") == 0


def test_the_memtables_postings_are_kept_until_it_grows(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path, fsync="never")
    engine.create_collection("c", 2, sparse_vectors={"t": {}})
    col = engine.collection("c")
    rng = np.random.default_rng(3)
    col.insert([{"id": f"r{i}", "vector": [1, 0],
                 "sparse_vectors": {"t": {"indices": sorted(rng.choice(50, 5, replace=False).tolist()),
                                          "values": [0.5] * 5}}} for i in range(200)])
    first = col.search_sparse("t", [7, 9], [1.0, 1.0], 5)
    kept = col.__dict__["_memtable_sparse"].values()
    assert col.search_sparse("t", [7, 9], [1.0, 1.0], 5) == first
    again = col.__dict__["_memtable_sparse"].values()
    assert len(again) == len(kept) == 1 and again[0] is kept[0]
    col.insert([{"id": "new", "vector": [1, 0], "sparse_vectors": {"t": {"indices": [7, 9], "values": [9.0, 9.0]}}}])
    assert col.search_sparse("t", [7, 9], [1.0, 1.0], 5)[0]["id"] == "new"  # the kept postings were not reused
    col.delete(["new"])
    assert col.search_sparse("t", [7, 9], [1.0, 1.0], 5) == first  # a delete changes the alive mask only
    engine.close()
