"""BM25 and hybrid search over a collection's documents (proximadb/storage/text_search.py).

The reference is one BM25 index built here over the live documents only (proximadb.text.bm25):
the collection, whatever its split into memtable and segments, after deletes, upserts, compaction
and a reopen, must give the same ids and scores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proximadb.errors import InvalidFilterError, ValidationError
from proximadb.fusion import fuse
from proximadb.storage.engine import Engine
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index

WORDS = ["vector", "database", "python", "graph", "search", "text", "index", "fast", "small", "disk"]
DIM = 4


def docs(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 9)))) for _ in range(n)]


def reference(live: dict[str, str], query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
    ids = sorted(live)
    index = Bm25Index.build([live[i] for i in ids], Analyzer(stopwords="english"))
    mask = None if allowed is None else np.asarray([i in allowed for i in ids], dtype=np.uint8)
    rows, scores = index.search(query, k, allowed=mask)
    return [(ids[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


def same(got: list[dict], live: dict[str, str], query: str, k: int, allowed: set[str] | None = None) -> None:
    """got is a best-k of the reference: its scores are the reference's top k, each hit scored as the
    reference scores that id (rows of equal score may be cut at the k-th place differently)."""
    every = dict(reference(live, query, len(live) or 1, allowed))
    want = sorted(every.values(), reverse=True)[:k]
    assert np.allclose([h["score"] for h in got], want, rtol=1e-4)
    assert all(np.isclose(h["score"], every[h["id"]], rtol=1e-4) for h in got)
    assert len({h["id"] for h in got}) == len(got)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12))
def test_text_search_equals_one_index_over_the_live_documents(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                              k: int) -> None:
    rng = np.random.default_rng(seed)
    live: dict[str, str] = {}
    with Engine.open(tmp_path_factory.mktemp("t"), fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        for batch in range(3):  # two flushed segments and a memtable
            ids = [f"r{batch}-{i}" for i in range(30)]
            texts = docs(rng, 30)
            col.insert(ids=ids, vectors=rng.standard_normal((30, DIM)),
                       metadatas=[{"document": t, "n": i % 3} for i, t in enumerate(texts)])
            live.update(zip(ids, texts, strict=True))
            if batch < 2:
                col.flush()
        gone = list(rng.choice(sorted(live), size=12, replace=False))
        col.delete(gone)
        for g in gone:
            del live[g]
        swap = sorted(live)[:5]  # upserts: new text under the same ids
        new_texts = docs(rng, 5)
        col.upsert(ids=swap, vectors=rng.standard_normal((5, DIM)),
                   metadatas=[{"document": t, "n": 9} for t in new_texts])
        live.update(zip(swap, new_texts, strict=True))
        query = " ".join(rng.choice(WORDS, size=3))
        same(col.search_text(query, k), live, query, k)
        n_of = {i: 9 if i in swap else int(i.rsplit("-", 1)[1]) % 3 for i in live}
        allowed = {i for i, n in n_of.items() if n == 1}
        same(col.search_text(query, k, filter={"n": 1}), live, query, k, allowed)
        col.compact()
        same(col.search_text(query, k), live, query, k)


def test_text_survives_a_reopen_and_rows_without_text_are_never_hits(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(ids=["a", "b", "c", "d"], vectors=np.eye(DIM),
                   metadatas=[{"document": "fast vector search"}, {"document": "graph database"},
                              {"title": "no document here"}, {"document": 42}])
        col.flush()
        col.insert(ids=["e"], vectors=np.ones((1, DIM)), metadatas=[{"document": "vector graph"}])
        before = col.search_text("vector graph", 10)
    assert {h["id"] for h in before} == {"a", "b", "e"}
    with Engine.open(tmp_path / "d") as engine:  # the segment's index is rebuilt, the memtable replayed
        after = engine.collection("c").search_text("vector graph", 10)
    assert [(h["id"], round(h["score"], 5)) for h in after] == [(h["id"], round(h["score"], 5)) for h in before]
    assert after[0]["metadata"] == {"document": "vector graph"}


def test_hybrid_search_fuses_the_vector_and_text_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        texts = docs(rng, 60)
        vectors = rng.standard_normal((60, DIM)).astype(np.float32)
        col.insert(ids=[str(i) for i in range(60)], vectors=vectors, metadatas=[{"document": t} for t in texts])
        query_vector, query_text = vectors[4] + 0.01, "python graph"
        for method in ("rrf", "dbsf", "relative_score"):
            hybrid = col.hybrid_search(query_vector, query_text, 5, fusion=method, depth=20)
            dense = col.search(query_vector, 20)
            text = col.search_text(query_text, 20)
            want = fuse(method, [[(h["id"], h["score"]) for h in dense], [(h["id"], h["score"]) for h in text]],
                        limit=5)
            assert [(h["id"], h["score"]) for h in hybrid] == want
            assert all("metadata" in h and "distance" not in h for h in hybrid)
        only_text = col.hybrid_search(query_vector, query_text, 3, weights=[0.0, 1.0], depth=20)
        assert [h["id"] for h in only_text] == [h["id"] for h in col.search_text(query_text, 3)]


def test_bad_text_queries_are_refused(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(ids=["a"], vectors=np.ones((1, DIM)), metadatas=[{"document": "text"}])
        with pytest.raises(ValidationError, match="text must be a string"):
            col.search_text(["text"], 3)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="k"):
            col.search_text("text", 0)
        with pytest.raises(InvalidFilterError):
            col.search_text("text", 3, filter={"$bogus": 1})
        with pytest.raises(ValidationError, match="fusion method 'max'"):
            col.hybrid_search(np.ones(DIM), "text", 3, fusion="max")
        assert col.search_text("the and of", 3) == []  # only stop words: no term, no hit


def test_a_segment_text_index_is_saved_mapped_at_reopen_and_rebuilt_when_damaged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proximadb.collection")
    rng = np.random.default_rng(8)
    texts = [*docs(rng, 200), "naïve café déjà vu"]  # non-ASCII terms in the saved vocabulary
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(ids=[str(i) for i in range(201)], vectors=rng.standard_normal((201, DIM)),
                   metadatas=[{"document": t} for t in texts])
        col.flush()
        (seg_dir,) = [s.path for s in col.segments]
        assert not (seg_dir / "text.idx").exists()  # derived at the first text search, not at flush
        first = col.search_text("python graph café", 10)
        assert (seg_dir / "text.idx").is_file()
        stemmed = col.search_text("python graph", 10, analyzer=Analyzer(stemmer="english"))
        assert stemmed  # another analyzer: built in memory, the saved file is the default's
    saved = (seg_dir / "text.idx").read_bytes()
    caplog.clear()
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        again = engine.collection("c").search_text("python graph café", 10)
    assert again == first and "building text.idx" not in caplog.text  # mapped, not rebuilt
    damaged = bytearray(saved)
    damaged[len(damaged) // 2] ^= 0xFF
    (seg_dir / "text.idx").write_bytes(bytes(damaged))
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        assert engine.collection("c").search_text("python graph café", 10) == first  # rebuilt from metadata
    assert "building text.idx (text.idx: body checksum mismatch)" in caplog.text
    assert (seg_dir / "text.idx").read_bytes() == saved
