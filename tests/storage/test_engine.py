"""The in-process engine: collections, writes, reads, exact search, flush, reopen, bad input."""

from __future__ import annotations

import itertools
import shutil
import struct

import numpy as np
import pytest

from proximadb import errors
from proximadb.codec.payload import encode_insert
from proximadb.storage.engine import Engine

DIM = 8


@pytest.fixture(params=["avro", "binary"])
def strategy(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine(tmp_path, strategy):  # type: ignore[no-untyped-def]
    eng = Engine.open(tmp_path / "data", wal_strategy=strategy, fsync="never")
    yield eng
    eng.close()


def _vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"v{i:05d}" for i in range(start, start + n)]


# ---------------------------------------------------------------- collections
def test_collection_lifecycle(engine: Engine) -> None:
    info = engine.create_collection("docs", DIM, distance_metric="euclidean", description="test")
    assert info["name"] == "docs" and info["dimension"] == DIM and info["indexing_algorithm"] == "flat"
    assert engine.get_collection("docs")["uuid"] == info["uuid"]
    assert engine.get_collection(info["uuid"])["name"] == "docs"
    assert [c["name"] for c in engine.list_collections()] == ["docs"]
    updated = engine.update_collection("docs", description="new", index_params={})
    assert updated["description"] == "new"
    with pytest.raises(errors.ValidationError, match="dimension"):
        engine.update_collection("docs", dimension=4)
    with pytest.raises(errors.CollectionExistsError):
        engine.create_collection("docs", DIM)
    engine.delete_collection("docs")
    with pytest.raises(errors.CollectionNotFoundError):
        engine.get_collection("docs")
    assert engine.list_collections() == []


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", "", "a/b", "a\\b", "x" * 256, "café", "a b", "/etc/passwd", None, 5]
)
def test_hostile_collection_names_refused(engine: Engine, name: object, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    with pytest.raises(errors.ValidationError, match="collection name"):
        engine.create_collection(name, DIM)  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"dimension": 0}, "dimension"),
        ({"dimension": 65537}, "dimension"),
        ({"dimension": True}, "dimension"),
        ({"distance_metric": "manhattan"}, "distance_metric"),
        ({"indexing_algorithm": "lsh"}, "indexing_algorithm"),
        ({"indexing_algorithm": "hnsw", "index_params": {"M": 1}}, "index_params.M"),
        ({"indexing_algorithm": "flat", "index_params": {"M": 16}}, "not a parameter"),
    ],
)
def test_bad_collection_settings(engine: Engine, settings: dict, match: str) -> None:
    args = {"dimension": DIM, **settings}
    with pytest.raises(errors.ValidationError, match=match):
        engine.create_collection("c", **args)
    assert engine.list_collections() == []


def test_second_open_is_refused_with_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d"):
        with pytest.raises(errors.DataDirLockedError, match="in use by process"):
            Engine.open(tmp_path / "d")
    with Engine.open(tmp_path / "d"):  # released on close
        pass


# ---------------------------------------------------------------- writes and reads
def test_insert_get_upsert_delete(engine: Engine) -> None:
    engine.create_collection("c", DIM, distance_metric="euclidean")
    col = engine.collection("c")
    vecs = _vectors(10)
    meta = [{"n": i, "even": i % 2 == 0, "tag": f"t{i % 3}", "tags": ["a", f"b{i}"], "x": None} for i in range(10)]
    assert col.insert(ids=_ids(10), vectors=vecs, metadatas=meta) == _ids(10)
    rec = col.get("v00003")
    assert rec is not None
    np.testing.assert_array_equal(rec["vector"], vecs[3])
    assert rec["metadata"] == meta[3] and rec["timestamp"] > 0
    with pytest.raises(errors.VectorExistsError, match="v00003"):
        col.insert(ids=["new", "v00003"], vectors=_vectors(2, 1))
    assert col.get("new") is None and col.count() == 10  # all or nothing
    col.upsert(ids=["v00003", "new"], vectors=_vectors(2, 2), metadatas=[{"n": 99}, {}])
    assert col.count() == 11 and col.get("v00003")["metadata"] == {"n": 99}
    assert col.delete(["v00001", "v00002", "nope", "v00001"]) == 2
    assert col.count() == 9 and col.get("v00001") is None
    assert [r["id"] for r in col.get_many(["v00004", "gone", "v00000"])] == ["v00004", "v00000"]
    assert col.delete_where({"even": True}) == 4  # v0, v4, v6, v8 (v2 is gone, v3 was replaced)
    assert col.count() == 5


def test_delete_where_counts(engine: Engine) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    col.insert(ids=_ids(20), vectors=_vectors(20), metadatas=[{"g": i % 4} for i in range(20)])
    assert col.count({"g": 1}) == 5
    assert col.delete_where({"g": {"$in": [1, 2]}}) == 10
    assert col.count() == 10 and col.count({"g": 1}) == 0
    with pytest.raises(errors.InvalidFilterError):
        col.delete_where({"g": {"$bogus": 1}})
    assert col.count() == 10


def test_update_metadata_merge_and_replace_in_memtable_and_segment(engine: Engine) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    col.insert(ids=["a", "b"], vectors=_vectors(2), metadatas=[{"x": 1, "y": "s"}, {"x": 2}])
    col.flush()  # "a" and "b" now live in a segment
    col.insert(ids=["c"], vectors=_vectors(1, 5), metadatas=[{"x": 3}])
    assert col.update_metadata("a", {"y": None, "z": True})["metadata"] == {"x": 1, "z": True}
    assert col.update_metadata("c", {"k": ["p", "q"]}, replace=True)["metadata"] == {"k": ["p", "q"]}
    np.testing.assert_allclose(col.get("a")["vector"], _vectors(2)[0] / np.linalg.norm(_vectors(2)[0]), rtol=1e-6)
    with pytest.raises(errors.VectorNotFoundError):
        col.update_metadata("zzz", {"x": 1})
    with pytest.raises(errors.ValidationError, match=r"metadata\.bad"):
        col.update_metadata("a", {"bad": {"nested": 1}})
    assert col.count() == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ids": ["a"], "vectors": np.zeros((1, DIM + 1), np.float32)}, errors.DimensionMismatchError, "dimension"),
        ({"ids": ["a"], "vectors": np.full((1, DIM), np.nan, np.float32)}, errors.InvalidVectorError, "finite"),
        ({"ids": ["a"], "vectors": np.full((1, DIM), np.inf, np.float32)}, errors.InvalidVectorError, "finite"),
        ({"ids": ["a", "a"], "vectors": np.ones((2, DIM), np.float32)}, errors.ValidationError, "more than once"),
        ({"ids": [""], "vectors": np.ones((1, DIM), np.float32)}, errors.ValidationError, "id"),
        ({"ids": ["x" * 2000], "vectors": np.ones((1, DIM), np.float32)}, errors.ValidationError, "id"),
        (
            {"ids": ["a"], "vectors": np.ones((1, DIM), np.float32), "metadatas": [{"k": object()}]},
            errors.ValidationError,
            "k",
        ),
        ({"ids": ["a"], "vectors": np.zeros((1, DIM), np.float32)}, errors.InvalidVectorError, "zero"),
    ],
)
def test_bad_writes_change_nothing(engine: Engine, kwargs: dict, error: type, match: str) -> None:
    engine.create_collection("c", DIM)  # cosine
    col = engine.collection("c")
    col.insert(ids=["keep"], vectors=_vectors(1))
    before = col.wal.last_seq
    with pytest.raises(error, match=match):
        col.insert(**kwargs)
    assert col.count() == 1 and col.wal.last_seq == before


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", errors.MalformedPayloadError),
        (b"\x01\x00\x00\x00", errors.MalformedPayloadError),
        (struct.pack("<II", 1, 200) + b"vector_insert", errors.MalformedPayloadError),
        (struct.pack("<II", 99, 13) + b"vector_insert" + b"\x00\x00", errors.UnsupportedSchemaVersionError),
        (struct.pack("<II", 1, 7) + b"bananas", errors.UnknownOperationError),
        (struct.pack("<II", 1, 13) + b"vector_insert" + b"\x00\x02\x02a\x7f", errors.MalformedPayloadError),
    ],
)
def test_malformed_payloads_change_nothing(engine: Engine, payload: bytes, error: type) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    with pytest.raises(error):
        col.insert_payload(payload)
    assert col.count() == 0 and col.wal.last_seq == 0


def test_truncated_real_payload_is_refused_at_every_length(engine: Engine) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    payload = encode_insert(ids=["a", "b"], vectors=_vectors(2), metadata=[{"k": "v"}, {"n": 1}])
    for cut in range(len(payload)):
        with pytest.raises(errors.ValidationError):
            col.insert_payload(payload[:cut])
    assert col.count() == 0
    assert col.insert_payload(payload) == ["a", "b"]


# ---------------------------------------------------------------- search
def _brute(base: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    if metric == "euclidean":
        return np.sqrt(((base.astype(np.float64) - q) ** 2).sum(axis=1))
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        return 1 - b.astype(np.float64) @ (q / np.linalg.norm(q))
    return -(base.astype(np.float64) @ q)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot_product"])
def test_exact_search_matches_brute_force_across_memtable_and_segments(engine: Engine, metric: str) -> None:
    engine.create_collection("c", DIM, distance_metric=metric)
    col = engine.collection("c")
    base = _vectors(300, seed=1)
    col.insert(ids=_ids(150), vectors=base[:150])
    col.flush()
    col.insert(ids=_ids(100, 150), vectors=base[150:250])
    col.flush()
    col.insert(ids=_ids(50, 250), vectors=base[250:])
    # superseded and deleted rows must never come back
    col.upsert(ids=["v00010"], vectors=base[299:300])
    col.delete(["v00020", "v00200", "v00260"])
    truth = {i: base[int(i[1:])] for i in _ids(300)}
    truth["v00010"] = base[299]
    for gone in ("v00020", "v00200", "v00260"):
        del truth[gone]
    ids = list(truth)
    mat = np.stack([truth[i] for i in ids])
    for q in _vectors(5, seed=7):
        hits = col.search(q, k=10)
        d = _brute(mat, q.astype(np.float64), metric)
        want = [ids[j] for j in np.argsort(d, kind="stable")[:10]]
        assert [h["id"] for h in hits] == want
        np.testing.assert_allclose([h["distance"] for h in hits], np.sort(d)[:10], rtol=1e-4, atol=1e-4)
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(hits))


def test_filtered_search_still_returns_k_hits(engine: Engine) -> None:
    engine.create_collection("c", DIM, distance_metric="euclidean")
    col = engine.collection("c")
    base = _vectors(1000, seed=3)
    meta = [{"bucket": i % 100, "name": f"n{i}"} for i in range(1000)]
    col.insert(ids=_ids(600), vectors=base[:600], metadatas=meta[:600])
    col.flush()
    col.insert(ids=_ids(400, 600), vectors=base[600:], metadatas=meta[600:])
    q = _vectors(1, seed=9)[0]
    hits = col.search(q, k=10, filter={"bucket": {"$lt": 1}})  # 1% of rows match
    assert len(hits) == 10 and all(h["metadata"]["bucket"] == 0 for h in hits)
    allowed = [i for i in range(1000) if i % 100 == 0]
    d = np.sqrt(((base[allowed] - q) ** 2).sum(axis=1))
    assert [h["id"] for h in hits] == [f"v{allowed[j]:05d}" for j in np.argsort(d)]
    assert col.search(q, k=5, filter={"bucket": -1}) == []
    hits = col.search(q, k=3, include_vectors=True, include_metadata=False)
    assert "metadata" not in hits[0] and hits[0]["vector"].shape == (DIM,)


def test_search_bad_input(engine: Engine) -> None:
    engine.create_collection("c", DIM)
    col = engine.collection("c")
    col.insert(ids=["a"], vectors=_vectors(1))
    with pytest.raises(errors.DimensionMismatchError):
        col.search(np.ones(DIM + 2), k=1)
    with pytest.raises(errors.InvalidVectorError):
        col.search(np.full(DIM, np.nan), k=1)
    with pytest.raises(errors.InvalidVectorError):
        col.search(np.zeros(DIM), k=1)  # cosine
    for k in (0, -1, 10_001, 2.5, True):
        with pytest.raises(errors.ValidationError, match="k must be"):
            col.search(np.ones(DIM), k=k)  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError):
        col.search("not a vector", k=1)
    for knob in ({"ef": 0}, {"nprobe": -1}, {"ef": 10**9}, {"nprobe": True}):
        with pytest.raises(errors.ValidationError, match="must be an integer"):
            col.search(np.ones(DIM), k=1, **knob)


# ---------------------------------------------------------------- scroll
@pytest.mark.parametrize("memtable_type", ["hash", "btree"])
def test_scroll_visits_every_live_id_once_in_order(tmp_path, memtable_type: str) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d", memtable_type=memtable_type, fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        rng = np.random.default_rng(5)
        all_ids = [f"id-{x}" for x in rng.permutation(500)]
        col.insert(ids=all_ids[:200], vectors=_vectors(200), metadatas=[{"i": i} for i in range(200)])
        col.flush()
        col.insert(ids=all_ids[200:], vectors=_vectors(300, 1), metadatas=[{"i": i} for i in range(200, 500)])
        col.delete(all_ids[::7])
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = col.scroll(limit=37, cursor=cursor)
            seen.extend(r["id"] for r in page)
            if cursor is None:
                break
        assert seen == sorted(set(all_ids) - set(all_ids[::7]))
        page, _ = col.scroll(limit=1000, filter={"i": {"$gte": 490}})
        deleted = set(all_ids[::7])
        assert sorted(r["metadata"]["i"] for r in page) == [i for i in range(490, 500) if all_ids[i] not in deleted]


# ---------------------------------------------------------------- durability
@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_reopen_restores_everything(tmp_path, strategy: str, compression: str) -> None:  # type: ignore[no-untyped-def]
    opts = {"wal_strategy": strategy, "wal_compression": compression, "fsync": "always"}
    base = _vectors(120, seed=11)
    with Engine.open(tmp_path / "d", **opts) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=_ids(60), vectors=base[:60], metadatas=[{"i": i} for i in range(60)])
        col.flush()
        col.insert(ids=_ids(60, 60), vectors=base[60:], metadatas=[{"i": i} for i in range(60, 120)])
        col.delete(["v00000", "v00070"])
        col.update_metadata("v00001", {"hot": True})
        col.update_metadata("v00080", {"i": None})
        before = {r["id"]: r for r in col.scroll(limit=1000, include_vectors=True)[0]}
    with Engine.open(tmp_path / "d", **opts) as engine:
        col = engine.collection("c")
        after = {r["id"]: r for r in col.scroll(limit=1000, include_vectors=True)[0]}
        assert after.keys() == before.keys() and len(after) == 118
        for id_, rec in before.items():
            np.testing.assert_array_equal(after[id_]["vector"], rec["vector"])
            assert after[id_]["metadata"] == rec["metadata"]
            assert after[id_]["timestamp"] == rec["timestamp"]
        assert after["v00001"]["metadata"] == {"i": 1, "hot": True}
        assert after["v00080"]["metadata"] == {}


def test_small_flush_threshold_flushes_automatically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d", flush_bytes=20_000, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        for b in range(10):
            col.insert(ids=_ids(100, b * 100), vectors=_vectors(100, b))
            assert col.wait_for_flush(60)  # a write that fills the memtable starts a background flush
        stats = col.stats()
        assert stats["segments"] >= 3 and stats["vectors"] == 1000
        assert stats["checkpoint_seq"] > 0
    with Engine.open(tmp_path / "d") as engine:
        assert engine.collection("c").count() == 1000


def test_corrupt_segment_is_reported_with_its_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("c", DIM)
        engine.collection("c").insert(ids=_ids(50), vectors=_vectors(50))
        engine.collection("c").flush()
    vec_file = next((tmp_path / "d").rglob("vectors.f32"))
    data = bytearray(vec_file.read_bytes())
    data[200] ^= 0xFF
    vec_file.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptionError, match=r"vectors\.f32"):
        Engine.open(tmp_path / "d")


def test_interrupted_flush_leftovers_are_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("c", DIM)
        engine.collection("c").insert(ids=_ids(5), vectors=_vectors(5))
        seg_root = engine.collection("c").directory / "segments"
        engine.collection("c").flush()
        (live,) = list(seg_root.iterdir())
    (seg_root / "seg-00000007.tmp").mkdir()
    (seg_root / "seg-00000007.tmp" / "vectors.f32").write_bytes(b"partial")
    interrupted_saves = [seg_root.parent / "MANIFEST.tmp", live / "index.hnsw.tmp", live / "index.ivf.tmp.tmp"]
    for path in interrupted_saves:
        path.write_bytes(b"partial")
    with Engine.open(tmp_path / "d") as engine:
        assert engine.collection("c").count() == 5
    assert not (seg_root / "seg-00000007.tmp").exists()
    assert not [p for p in interrupted_saves if p.exists()]
    assert live.exists()


def test_deleted_collection_is_gone_after_reopen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("a", DIM)
        engine.create_collection("b", DIM)
        engine.collection("a").insert(ids=["x"], vectors=_vectors(1))
        engine.delete_collection("a")
    with Engine.open(tmp_path / "d") as engine:
        assert [c["name"] for c in engine.list_collections()] == ["b"]
    assert len(list((tmp_path / "d" / "collections").iterdir())) == 1


def test_replaced_row_in_a_reloaded_segment_never_shadows_the_live_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Found by the crash test: after a reopen, a segment row already deleted in its bitmap
    # was still reachable by id, so a later upsert deleted the stale row and kept two versions.
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=["a", "b"], vectors=np.full((2, DIM), 1, np.float32), metadatas=[{"v": 1}, {}])
        col.flush()  # segment 1 keeps "b" live, so it is not dropped when "a" moves on
        col.upsert(ids=["a"], vectors=np.full((1, DIM), 2, np.float32), metadatas=[{"v": 2}])
        col.flush()
    with Engine.open(tmp_path / "d") as engine:
        col = engine.collection("c")
        col.upsert(ids=["a"], vectors=np.full((1, DIM), 3, np.float32), metadatas=[{"v": 3}])
        col.delete(["a"])
        assert col.count() == 1 and col.get("a") is None
    with Engine.open(tmp_path / "d") as engine:
        col = engine.collection("c")
        assert col.count() == 1 and [r["id"] for r in col.scroll(limit=10)[0]] == ["b"]


def test_writes_after_a_lost_wal_directory_are_numbered_above_the_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A collection whose WAL directory vanished after a flush is refused; once the operator recreates it
    empty, new writes survive a restart (they used to restart at seq 1, under the checkpoint, and the next
    replay skipped them)."""
    data = tmp_path / "data"
    with Engine.open(data, fsync="always") as eng:
        eng.create_collection("c", dimension=DIM, distance_metric="euclidean")
        col = eng.collection("c")
        col.insert(ids=_ids(10), vectors=_vectors(10))
        col.flush()
        wal_dir = col.directory / "wal"
    shutil.rmtree(wal_dir)
    with pytest.raises(errors.CorruptionError, match=r"WAL directory .*wal is missing.*mkdir"):
        Engine.open(data, fsync="always")
    wal_dir.mkdir()
    with Engine.open(data, fsync="always") as eng:
        eng.collection("c").insert(ids=_ids(5, start=10), vectors=_vectors(5, seed=1))
    with Engine.open(data, fsync="always") as eng:
        assert eng.collection("c").count() == 15
        assert eng.collection("c").get(_ids(1, start=14)[0]) is not None


def test_numpy_string_ids_work_on_every_id_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """numpy.str_ ids (np.array of strings, a pandas column) are str: insert, get, update, delete and
    upsert take them, on memtable and segment rows (the compiled id table wants exact str)."""
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert(ids=np.array(["a", "b", "c"]), vectors=np.eye(3, 2), metadatas=[{"n": 1}] * 3)
        col.flush()
        col.insert(ids=np.array(["d"]), vectors=np.ones((1, 2)))
        assert [r["id"] for r in col.get_many(np.array(["a", "d"]))] == ["a", "d"]
        assert col.get(np.str_("a"))["id"] == "a"  # type: ignore[index]
        with pytest.raises(errors.ValidationError, match="id must be a string"):
            col.get(["a"])  # type: ignore[arg-type]
        assert col.delete(np.array(["a", "d"])) == 2
        col.upsert(ids=np.array(["b"]), vectors=np.ones((1, 2)), metadatas=[{"n": 2}])
        assert sorted(r["id"] for r in col.get_many(["a", "b", "c", "d"])) == ["b", "c"]
        assert col.count() == 2
