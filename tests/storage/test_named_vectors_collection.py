"""Named dense vectors (schema v4) in a collection: declared in the catalog, inserted, kept in the memtable
and in segments (``named/<name>.f32``), moved by flush, compaction and metadata updates, returned by get and
scroll, searched with ``using=`` (compared with a numpy brute force), and surviving reopen and WAL replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb import errors
from proximadb.errors import DimensionMismatchError, InvalidVectorError, ValidationError
from proximadb.limits import MAX_NAMED_VECTORS
from proximadb.storage.collection import Collection
from proximadb.storage.engine import Engine

DIM = 4
VECTORS = {"title": {"dimension": 3, "distance_metric": "cosine"},
           "body": {"dimension": 5, "distance_metric": "euclidean"},
           "img": {"dimension": 2, "distance_metric": "dot_product"}}


def _data(n: int, seed: int = 0, prefix: str = "r") -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    named = {name: rng.standard_normal((n, v["dimension"])).astype(np.float32) for name, v in VECTORS.items()}
    return ids, rng.standard_normal((n, DIM)).astype(np.float32), named


def _create(engine: Engine, name: str = "c", **kw: Any) -> Collection:
    engine.create_collection(name, DIM, distance_metric="euclidean", vectors=VECTORS, **kw)
    return engine.collection(name)


def _brute(rows: dict[str, np.ndarray], query: np.ndarray, metric: str, k: int) -> list[tuple[str, float]]:
    """(id, score) best first, by numpy in float64."""
    ids = sorted(rows)
    mat = np.array([rows[i] for i in ids], dtype=np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        mat = mat / np.linalg.norm(mat, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
        score = mat @ q
    elif metric == "dot_product":
        score = mat @ q
    else:
        score = 1.0 / (1.0 + np.linalg.norm(mat - q, axis=1))
    order = np.argsort(-score, kind="stable")[:k]
    return [(ids[i], float(score[i])) for i in order]


def _check_search(col: Collection, live: dict[str, dict[str, np.ndarray]], seed: int, **kw: Any) -> None:
    rng = np.random.default_rng(seed)
    for name, v in VECTORS.items():
        for _ in range(3):
            q = rng.standard_normal(v["dimension"]).astype(np.float32)
            got = col.search(q, k=7, using=name, **kw)
            want = _brute({i: vecs[name] for i, vecs in live.items()}, q, v["distance_metric"], 7)
            assert [h["id"] for h in got] == [i for i, _ in want], name
            assert np.allclose([h["score"] for h in got], [s for _, s in want], atol=1e-4), name


def _live(ids: list[str], named: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {i: {name: col[r] for name, col in named.items()} for r, i in enumerate(ids)}


# ---------------------------------------------------------------- catalog


def test_declared_named_vectors_are_stored_in_the_catalog_and_fixed(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        info = engine.create_collection("c", DIM, vectors={"title": {"dimension": 3}, "b-2": VECTORS["body"]})
        assert info["vectors"] == {"title": {"dimension": 3, "distance_metric": "cosine"},
                                   "b-2": {"dimension": 5, "distance_metric": "euclidean"}}
        col = engine.collection("c")
        assert col.named_dims == {"title": 3, "b-2": 5}
        assert col.config.vectors["b-2"].dimension == 5 and col.config.vectors["b-2"].distance_metric == "euclidean"
        with pytest.raises(ValidationError, match=r"vectors .*cannot be changed"):
            engine.update_collection("c", vectors={"title": {"dimension": 4}})
        engine.update_collection("c", description="kept")  # other settings still change
        engine.create_collection("plain", DIM)
        assert engine.collection("plain").named_dims == {}
    with Engine.open(tmp_path) as engine:
        col = engine.collection("c")
        assert col.named_dims == {"title": 3, "b-2": 5}
        assert col.config.description == "kept"


@pytest.mark.parametrize(("vectors", "message"), [
    ({"ti.tle": {"dimension": 3}}, r"vectors: name 'ti\.tle' must be 1 to 64"),
    ({"": {"dimension": 3}}, r"vectors: name '' must be"),
    ({"x" * 65: {"dimension": 3}}, r"must be 1 to 64"),
    ({"Title": {"dimension": 3}, "title": {"dimension": 3}}, r"'Title' and 'title' differ only in case"),
    ({"t": {"dimension": 0}}, r"vectors\['t'\]\.dimension must be between 1 and"),
    ({"t": {"dimension": "3"}}, r"vectors\['t'\]\.dimension must be an integer"),
    ({"t": {}}, r"vectors\['t'\]: dimension is required"),
    ({"t": {"dimension": 3, "distance_metric": "manhattan"}}, r"vectors\['t'\]\.distance_metric must be one of"),
    ({"t": {"dimension": 3, "index": "hnsw"}}, r"vectors\['t'\]: unknown setting"),
    ({"t": 3}, r"vectors\['t'\] must be an object"),
    ({f"v{i}": {"dimension": 1} for i in range(MAX_NAMED_VECTORS + 1)}, rf"at most {MAX_NAMED_VECTORS}"),
    ([("t", 3)], r"vectors must be an object"),
])
def test_bad_declarations_are_refused_naming_the_vector(tmp_path: Path, vectors: Any, message: str) -> None:
    with Engine.open(tmp_path) as engine:
        with pytest.raises(ValidationError, match=message):
            engine.create_collection("c", DIM, vectors=vectors)
        assert engine.list_collections() == []


def test_a_named_dimension_over_the_server_limit_is_refused(tmp_path: Path) -> None:
    from proximadb.limits import Limits
    with Engine.open(tmp_path, limits=Limits(max_dimension=8)) as engine:
        with pytest.raises(ValidationError, match=r"vectors\['big'\]\.dimension 9 is over .*max_dimension"):
            engine.create_collection("c", DIM, vectors={"big": {"dimension": 9}})


# ---------------------------------------------------------------- insert, get, scroll, search (memtable)


def test_insert_columns_and_records_then_get_scroll_and_search_the_memtable(tmp_path: Path) -> None:
    ids, vecs, named = _data(60)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids[:40], vectors=vecs[:40], named_vectors={k: v[:40] for k, v in named.items()})
        col.insert([{"id": ids[i], "vector": vecs[i], "named_vectors": {k: v[i].tolist() for k, v in named.items()}}
                    for i in range(40, 60)])
        rec = col.get(ids[45])
        assert rec is not None and set(rec["named_vectors"]) == set(VECTORS)
        assert np.allclose(rec["named_vectors"]["body"], named["body"][45])  # euclidean: as given
        title = named["title"][45] / np.linalg.norm(named["title"][45])  # cosine: stored normalised
        assert rec["named_vectors"]["title"].dtype == np.float32 and np.allclose(rec["named_vectors"]["title"], title)
        assert "named_vectors" not in col.get(ids[0], include_vector=False)  # type: ignore[operator]
        page, _ = col.scroll(limit=5, include_vectors=True)
        assert [r["id"] for r in page] == ids[:5]
        assert np.allclose(page[2]["named_vectors"]["img"], named["img"][2])
        assert all("named_vectors" not in r for r in col.scroll(limit=5)[0])
        _check_search(col, _live(ids, named), seed=1)
        # the default vector is searched as before
        assert col.search(vecs[3], k=1)[0]["id"] == ids[3]


def test_a_collection_without_names_has_no_named_vectors_key(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        engine.create_collection("p", DIM)
        col = engine.collection("p")
        col.insert([{"id": "a", "vector": [1.0] * DIM}])
        assert "named_vectors" not in col.get("a")  # type: ignore[operator]
        with pytest.raises(ValidationError, match=r"using: 'title' is not a named vector .*declared: none"):
            col.search([1.0] * DIM, using="title")


def test_inserts_missing_or_misshapen_named_vectors_are_refused_whole(tmp_path: Path) -> None:
    ids, vecs, named = _data(3)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        partial = {k: v for k, v in named.items() if k != "img"}
        with pytest.raises(InvalidVectorError, match=r"named vector 'img' is missing"):
            col.insert(ids=ids, vectors=vecs, named_vectors=partial)
        with pytest.raises(InvalidVectorError, match=r"record 0 \(id 'r00000'\): named vector 'title' is missing"):
            col.insert(ids=ids, vectors=vecs)
        wrong = dict(named, body=np.ones((3, 4), np.float32))
        with pytest.raises(DimensionMismatchError, match=r"named vector 'body' has dimension 4, expected 5"):
            col.insert(ids=ids, vectors=vecs, named_vectors=wrong)
        extra = dict(named, other=np.ones((3, 2), np.float32))
        with pytest.raises(InvalidVectorError, match=r"named vector 'other' is not one of"):
            col.insert(ids=ids, vectors=vecs, named_vectors=extra)
        zero = dict(named, title=np.zeros((3, 3), np.float32))  # cosine: no direction
        with pytest.raises(InvalidVectorError, match=r"named vector 'title'.*all-zero"):
            col.insert(ids=ids, vectors=vecs, named_vectors=zero)
        assert col.count() == 0


def test_search_using_checks_the_name_and_the_dimension(tmp_path: Path) -> None:
    ids, vecs, named = _data(10)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        with pytest.raises(ValidationError, match=r"using: 'nope' is not a named vector .*'title', 'body', 'img'"):
            col.search(np.ones(3), using="nope")
        with pytest.raises(DimensionMismatchError, match=r"query has dimension 4, named vector 'title' has 3"):
            col.search(np.ones(4), using="title")
        with pytest.raises(DimensionMismatchError):
            col.search_batch(np.ones((2, 5)), using="img")
        with pytest.raises(ValidationError, match="score_threshold"):
            col.search(np.ones(5), using="body", score_threshold=-1.0)  # euclidean: a distance, never negative
        batch = col.search_batch(np.ones((2, 5), np.float32), k=3, using="body")
        assert len(batch) == 2 and [h["id"] for h in batch[0]] == [h["id"] for h in batch[1]]


def test_filters_deletes_thresholds_and_expiry_apply_to_named_searches(tmp_path: Path) -> None:
    ids, vecs, named = _data(80)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids, vectors=vecs, named_vectors=named, metadatas=[{"even": i % 2 == 0} for i in range(80)])
        col.delete(ids[:10])
        live = {i: v for i, v in _live(ids, named).items() if i not in ids[:10]}
        _check_search(col, live, seed=2)
        even = {i: v for i, v in live.items() if int(i[1:]) % 2 == 0}
        _check_search(col, even, seed=3, filter={"even": True})
        q = named["body"][20]
        hits = col.search(q, k=80, using="body", score_threshold=1.5)  # euclidean: distance <= 1.5
        want = [i for i, s in _brute({i: v["body"] for i, v in live.items()}, q, "euclidean", 80)
                if 1.0 / s - 1.0 <= 1.5]
        assert [h["id"] for h in hits] == want and hits[0]["id"] == ids[20] and hits[0]["distance"] < 1e-3


# ---------------------------------------------------------------- segments, compaction, movers, reopen


def test_flush_writes_named_files_listed_and_checked_and_reopen_searches_them(tmp_path: Path) -> None:
    ids, vecs, named = _data(120)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids[:70], vectors=vecs[:70], named_vectors={k: v[:70] for k, v in named.items()})
        col.flush()
        col.insert(ids=ids[70:], vectors=vecs[70:], named_vectors={k: v[70:] for k, v in named.items()})
        seg = col.segments[0]
        for name, v in VECTORS.items():
            f = seg.path / "named" / f"{name}.f32"
            assert f.stat().st_size == 64 + 70 * v["dimension"] * 4
            assert f"named/{name}.f32" in seg.descriptor["files"]
        assert seg.descriptor["named_vectors"] == {n: v["dimension"] for n, v in VECTORS.items()}
        _check_search(col, _live(ids, named), seed=4)  # a segment and the memtable
        _check_search(col, _live(ids, named), seed=4, exact=True)
        directory = col.directory
    with Engine.open(tmp_path) as engine:  # the close flushed the rest: two segments
        col = engine.collection("c")
        assert len(col.segments) == 2 and col.stats()["memtable_rows"] == 0
        _check_search(col, _live(ids, named), seed=5)
        rec = col.get(ids[100])
        assert rec is not None and np.allclose(rec["named_vectors"]["img"], named["img"][100])
    target = directory / "segments" / col.segments[0].path.name / "named" / "body.f32"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptionError, match=r"named/body\.f32"):
        Engine.open(tmp_path)


def test_compaction_and_metadata_updates_move_named_vectors_with_their_rows(tmp_path: Path) -> None:
    ids, vecs, named = _data(90)
    with Engine.open(tmp_path, auto_compact=False, rewrite_chunk_rows=7) as engine:
        col = _create(engine)
        for a in range(0, 90, 30):  # three segments
            col.insert(ids=ids[a:a + 30], vectors=vecs[a:a + 30],
                       named_vectors={k: v[a:a + 30] for k, v in named.items()})
            col.flush()
        col.delete(ids[::9])
        col.update_metadata(ids[31], {"moved": True})  # a segment row brought back to the memtable
        live = {i: v for i, v in _live(ids, named).items() if i not in ids[::9]}
        _check_search(col, live, seed=6)
        rec = col.get(ids[31])
        assert rec is not None and rec["metadata"] == {"moved": True}
        assert np.allclose(rec["named_vectors"]["body"], named["body"][31])
        report = col.compact()
        assert report["merged"] and len(col.segments) == 1
        _check_search(col, live, seed=7)
        col.flush()
        col.compact()
        assert len(col.segments) == 1 and col.segments[0].rows == len(live)
        _check_search(col, live, seed=8)
        assert np.allclose(col.get(ids[31])["named_vectors"]["img"], named["img"][31])  # type: ignore[index]
    with Engine.open(tmp_path) as engine:
        _check_search(engine.collection("c"), live, seed=9)


def test_named_vectors_replay_from_the_wal(tmp_path: Path) -> None:
    ids, vecs, named = _data(50)
    for strategy in ("avro", "binary"):
        data_dir = tmp_path / strategy
        with Engine.open(data_dir, wal_strategy=strategy, flush_on_close=False) as engine:
            col = _create(engine)
            col.insert(ids=ids[:30], vectors=vecs[:30], named_vectors={k: v[:30] for k, v in named.items()})
            col.flush()
            col.insert([{"id": ids[i], "vector": vecs[i], "named_vectors": {k: v[i] for k, v in named.items()}}
                        for i in range(30, 50)])
            col.update_metadata(ids[5], {"x": 1})
            col.delete([ids[7]])
        with Engine.open(data_dir, wal_strategy=strategy) as engine:
            col = engine.collection("c")
            assert col.stats()["memtable_rows"] == 21  # the 20 replayed rows and the moved one
            live = {i: v for i, v in _live(ids, named).items() if i != ids[7]}
            _check_search(col, live, seed=10)
            assert np.allclose(col.get(ids[44])["named_vectors"]["body"], named["body"][44])  # type: ignore[index]


def test_an_interrupted_named_index_save_is_cleaned_up_at_open(tmp_path: Path) -> None:
    ids, vecs, named = _data(10)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        col.flush()
        leftover = col.segments[0].path / "named" / "title.hnsw.tmp"
    leftover.write_bytes(b"partial")
    with Engine.open(tmp_path) as engine:
        assert not leftover.exists()
        _check_search(engine.collection("c"), _live(ids, named), seed=12)


def test_recommend_and_search_groups_using_a_named_vector(tmp_path: Path) -> None:
    ids, vecs, named = _data(50)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids[:25], vectors=vecs[:25], named_vectors={k: v[:25] for k, v in named.items()},
                   metadatas=[{"g": i % 3} for i in range(25)])
        col.flush()
        col.insert(ids=ids[25:], vectors=vecs[25:], named_vectors={k: v[25:] for k, v in named.items()},
                   metadatas=[{"g": i % 3} for i in range(25, 50)])
        live = _live(ids, named)
        body = {i: v["body"] for i, v in live.items()}
        # average_vector: the examples' body vectors (an id: its record's), searched by body's metric
        got = col.recommend([ids[3], named["body"][40]], [ids[9]], k=5, using="body")
        query = (named["body"][3] + named["body"][40]) - named["body"][9]  # 2 * mean(pos) - mean(neg)
        want = [i for i, _ in _brute(body, query, "euclidean", 8) if i not in (ids[3], ids[9])][:5]
        assert [h["id"] for h in got] == want
        # best_score: candidates scored by their body vectors against the examples
        best = col.recommend([ids[3], ids[30]], k=4, strategy="best_score", using="body", include_vectors=True)
        per = {i: max(1.0 / (1.0 + float(np.linalg.norm(v.astype(np.float64) - named["body"][j])))
                      for j in (3, 30)) for i, v in body.items() if i not in (ids[3], ids[30])}
        assert [h["id"] for h in best] == sorted(per, key=lambda i: (-per[i], i))[:4]
        assert np.allclose([h["score"] for h in best], sorted(per.values(), reverse=True)[:4], atol=1e-5)
        assert np.allclose(best[0]["named_vectors"]["body"], body[best[0]["id"]])
        with pytest.raises(DimensionMismatchError, match="named vector 'img' has 2"):
            col.recommend([np.ones(3)], using="img")
        groups = col.search_groups(named["title"][7], "g", limit=3, group_size=2, using="title")
        ranked = [i for i, _ in _brute({i: v["title"] for i, v in live.items()}, named["title"][7], "cosine", 50)]
        assert groups[0]["hits"][0]["id"] == ids[7] and len(groups) == 3
        for group in groups:
            members = [i for i in ranked if int(i[1:]) % 3 == group["value"]][:2]
            assert [h["id"] for h in group["hits"]] == members


def test_search_hits_with_vectors_carry_the_named_vectors(tmp_path: Path) -> None:
    ids, vecs, named = _data(20)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids[:10], vectors=vecs[:10], named_vectors={k: v[:10] for k, v in named.items()})
        col.flush()
        col.insert(ids=ids[10:], vectors=vecs[10:], named_vectors={k: v[10:] for k, v in named.items()})
        for using in (None, "img"):
            for hit in col.search(vecs[0] if using is None else named["img"][0], k=20, using=using,
                                  include_vectors=True):
                r = ids.index(hit["id"])
                assert np.allclose(hit["vector"], vecs[r]) and np.allclose(hit["named_vectors"]["img"], named["img"][r])
            assert all("named_vectors" not in h for h in col.search(vecs[0], k=3, using=None))


def test_hybrid_search_vector_part_using_a_named_vector(tmp_path: Path) -> None:
    ids, vecs, named = _data(30)
    with Engine.open(tmp_path) as engine:
        col = _create(engine)
        col.insert(ids=ids, vectors=vecs, named_vectors=named,
                   metadatas=[{"document": "river stone" if i % 2 else "forest"} for i in range(30)])
        alone = col.search(named["body"][4], k=10, using="body")
        fused = col.hybrid_search(named["body"][4], k=10, using="body", depth=10)
        assert [h["id"] for h in fused] == [h["id"] for h in alone]  # one part: its order
        both = col.hybrid_search(named["title"][5], "river", k=5, using="title")
        assert both[0]["id"] == ids[5]  # best in both parts
        with pytest.raises(DimensionMismatchError):
            col.hybrid_search(named["title"][5], k=5, using="body")


def test_a_failed_flush_then_sealed_row_moves_keep_named_vectors(tmp_path: Path) -> None:
    """A flush that fails leaves its sealed memtable; a metadata update of one of its rows moves the row (and
    its named vectors) to the memtable; the next flush gathers two sealed memtables into one segment."""
    import errno

    from proximadb.errors import DiskFullError

    ids, vecs, named = _data(60)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        col = _create(engine)
        col.insert(ids=ids[30:], vectors=vecs[30:], named_vectors={k: v[30:] for k, v in named.items()})

        def no_space(step: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

        col.flush_hook = no_space
        with pytest.raises(DiskFullError):
            col.flush()
        col.flush_hook = None
        assert len(col.sealed) == 1 and col.segments == []
        col.update_metadata(ids[40], {"moved": 1})  # a sealed row back to the memtable
        col.insert(ids=ids[:30], vectors=vecs[:30], named_vectors={k: v[:30] for k, v in named.items()})
        live = _live(ids, named)
        _check_search(col, live, seed=13)
        col.flush()
        assert col.sealed == [] and len(col.segments) == 1 and col.segments[0].rows == 60
        seg = col.segments[0]
        order = [seg.ids[r] for r in range(60)]
        assert order == sorted(ids)
        for name in VECTORS:
            want = np.stack([live[i][name] for i in order])
            if VECTORS[name]["distance_metric"] == "cosine":
                want = want / np.linalg.norm(want, axis=1, keepdims=True)
            assert np.allclose(seg.named[name], want, atol=1e-6), name
        _check_search(col, live, seed=14)
        assert col.get(ids[40])["metadata"] == {"moved": 1}  # type: ignore[index]


def test_named_and_sparse_vectors_travel_together(tmp_path: Path) -> None:
    ids, vecs, named = _data(12)
    sparse = [{"kw": {"indices": [i % 5, 7], "values": [1.0, 0.5]}} for i in range(12)]
    with Engine.open(tmp_path, wal_strategy="binary", flush_on_close=False) as engine:
        col = _create(engine, sparse_vectors={"kw": {}})
        col.insert([{"id": ids[i], "vector": vecs[i], "sparse_vectors": sparse[i],
                     "named_vectors": {k: v[i] for k, v in named.items()}} for i in range(6)])
        col.flush()
        col.insert(ids=ids[6:], vectors=vecs[6:], sparse_vectors=sparse[6:],
                   named_vectors={k: v[6:] for k, v in named.items()})
        col.update_metadata(ids[2], {"m": 1})  # a segment row (sparse and named) back to the memtable
    with Engine.open(tmp_path, wal_strategy="binary") as engine:  # the WAL replayed
        col = engine.collection("c")
        for i in range(12):
            rec = col.get(ids[i])
            assert rec is not None
            assert rec["sparse_vectors"]["kw"]["indices"] == [i % 5, 7]
            assert np.allclose(rec["named_vectors"]["body"], named["body"][i])
        assert col.search_sparse("kw", [2], [1.0], k=3)[0]["id"] in (ids[2], ids[7])
        _check_search(col, _live(ids, named), seed=15)


def test_a_segment_whose_named_vectors_differ_from_the_declaration_is_refused_at_open(tmp_path: Path) -> None:
    """A segment copied in from a collection with other named vectors (operator error, a foreign snapshot)
    is refused at open, before anything is served, naming the segment and both sets."""
    ids, vecs, named = _data(20)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        col = _create(engine)
        col.insert(ids=ids, vectors=vecs, named_vectors=named)
        col.flush()
        engine.create_collection("plain", DIM, distance_metric="euclidean")
        plain = engine.collection("plain")
        plain.insert(ids=ids, vectors=vecs)
        plain.flush()
        target, foreign = col.segments[0].path, plain.segments[0].path
    for f in target.iterdir():
        if f.is_dir():
            for g in f.iterdir():
                g.unlink()
            f.rmdir()
        else:
            f.unlink()
    for f in foreign.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    with pytest.raises(errors.CorruptionError, match=r"seg-\d+: named vectors none, but the collection declares "
                                                     r"\{'body': 5, 'img': 2, 'title': 3\}"):
        Engine.open(tmp_path, auto_compact=False)


def test_a_compaction_refuses_inputs_with_different_named_vectors(tmp_path: Path) -> None:
    ids, vecs, named = _data(40)
    with Engine.open(tmp_path, auto_compact=False) as engine:
        col = _create(engine)
        for a in (0, 20):
            col.insert(ids=ids[a:a + 20], vectors=vecs[a:a + 20],
                       named_vectors={k: v[a:a + 20] for k, v in named.items()})
            col.flush()
        kept = col.segments[1].named
        col.segments[1].named = {"title": kept["title"]}  # as if it lacked declared names
        with pytest.raises(errors.CorruptionError, match=r"seg-00000002: named vectors \{'title': 3\}, but "
                                                         r".*seg-00000001 has \{'body': 5"):
            col.compact()
        col.segments[1].named = kept
        assert len(col.segments) == 2 and col.count() == 40
