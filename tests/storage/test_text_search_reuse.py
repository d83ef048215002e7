"""A memtable's BM25 index is kept between text searches while it holds (proximadb/storage/text_search.py).

A cluster's text search asks each shard twice (its statistics, then its scores with the whole
collection's: proximadb/cluster/queries.py); the memtable's index is built once for both unless a write
came between, and a write between (a new row, a document changed in place by update_metadata, a
delete) gives the second round exactly what a collection that never kept an index answers: the same
data reopened (the memtable replayed from the WAL into a new collection object) with the same stats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proximadb.storage import text_search
from proximadb.storage.engine import Engine
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index, CorpusStats

DIM = 4
WORDS = ["vector", "database", "python", "graph", "search", "text", "index", "fast"]
K = 100  # more than the rows: every hit, so no tie is cut at the k-th place


class CountingBm25(Bm25Index):
    """Bm25Index whose build counts the rows it indexes (text_search.py builds a memtable's index with it)."""

    built: list[int] = []

    @classmethod
    def build(cls, texts: Any, analyzer: Any = None, **kwargs: Any) -> Bm25Index:
        cls.built.append(len(texts))
        return Bm25Index.build(texts, analyzer, **kwargs)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    CountingBm25.built = []
    monkeypatch.setattr(text_search, "Bm25Index", CountingBm25)
    return CountingBm25.built


def _fill(col: Any, n: int = 40) -> None:
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))) for _ in range(n)]
    col.insert(ids=[f"r{i}" for i in range(n)], vectors=rng.standard_normal((n, DIM)),
               metadatas=[{"document": t, "n": i % 2} for i, t in enumerate(texts)])


def _two_rounds(col: Any, query: str, between: Any = None, **options: Any) -> tuple[CorpusStats, list[dict]]:
    """A shard's part of a cluster text search: its statistics, then (after ``between``) its scores."""
    stats = col.text_stats(query)
    if between is not None:
        between()
    return stats, col.search_text(query, K, stats=stats, **options)


def _ranked(hits: list[dict]) -> list[tuple[str, float]]:
    """Hits as (id, score), in id order (rows of equal score may come in another order after a reopen)."""
    return sorted((h["id"], round(h["score"], 5)) for h in hits)


def test_the_two_rounds_build_the_memtable_index_once(tmp_path: Path, builds: list[int]) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        _fill(col)
        stats, hits = _two_rounds(col, "vector graph")
        assert builds == [40]
        assert hits and stats.rows == 40
        assert col.search_text("vector graph", K) == hits  # the stats were the collection's own; no build
        _two_rounds(col, "fast python", filter={"n": 1})  # another query and a filter: same index
        assert builds == [40]
        col.search_text("vector graph", 10, analyzer=Analyzer(stopwords=None))  # another analyzer: its own index
        assert builds == [40, 40]


@pytest.mark.parametrize("write", ["insert", "update_metadata", "delete"])
def test_a_write_between_the_rounds_is_seen_in_the_second(tmp_path: Path, builds: list[int], write: str) -> None:
    query = "zebra vector"
    with Engine.open(tmp_path / "d") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        _fill(col)
        col.search_text(query, K)  # an index kept from an earlier search
        assert builds == [40]
        actions = {
            "insert": lambda: col.insert(ids=["new"], vectors=np.ones((1, DIM)),
                                         metadatas=[{"document": "zebra zebra vector"}]),
            # r3's metadata replaced by a new dict in the memtable's own list: the row count stays 40
            "update_metadata": lambda: col.update_metadata("r3", {"document": "zebra zebra vector"}),
            "delete": lambda: col.delete(["r0", "r1", "r2"]),
        }
        stats, hits = _two_rounds(col, query, actions[write])
        assert stats.df.get("zebra", 0) == 0  # round 1 ran before the write
        found = {h["id"] for h in hits}
        if write == "insert":
            assert "new" in found
        elif write == "update_metadata":
            assert "r3" in found and hits[0]["metadata"] == {"document": "zebra zebra vector", "n": 1}
        else:
            assert not found & {"r0", "r1", "r2"}
        # a new row or a changed document: a new index; a delete changes only the alive mask
        assert builds == ([40] if write == "delete" else [40, 41 if write == "insert" else 40])
    with Engine.open(tmp_path / "d") as engine:  # the same rows in a new collection object: no index kept
        again = engine.collection("c").search_text(query, K, stats=stats)
    assert _ranked(hits) == _ranked(again)


def test_a_flushed_memtable_index_is_not_kept(tmp_path: Path, builds: list[int]) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        _fill(col)
        before = col.search_text("vector graph", K)
        assert len(col.__dict__["_memtable_text"]) == 1
        col.flush()
        after = col.search_text("vector graph", K)  # the segment's index now (text.idx), none of a memtable
        assert len(col.__dict__["_memtable_text"]) == 0
        assert _ranked(after) == _ranked(before)
