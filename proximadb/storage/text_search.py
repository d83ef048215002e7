"""Full-text (BM25) and hybrid search over a Collection's documents: ``Collection.search_text`` and
``Collection.hybrid_search``.

The text of a record is its metadata's ``document`` value (:data:`proximadb.embeddings.DOCUMENT_KEY`,
what ``add(documents=...)`` stores; a record without one, or with a non-string one, has no terms).
So the text is as durable as the rest of the record (WAL, segments) and its index is derived:

- a **segment**'s BM25 index (:class:`proximadb.text.bm25.Bm25Index`, compiled postings) is built
  from its rows' documents the first time a text search reaches it and saved beside the segment
  (``text.idx``, a derived file: text_index_file.py), so a reopen maps it; it is kept in memory
  while the segment exists (segment rows never change; their deletions are a mask). The saved index
  is the one of the **collection's analyzer** (the ``text_analyzer`` setting, storage/catalog.py); a
  changed setting finds a text.idx made with other settings, rebuilds it at the next text search and
  saves it again. An analyzer named by one call (``analyzer=``) other than the collection's gets an
  index built in memory only;
- the **memtable** (and a sealed memtable a flush is writing) is indexed from the snapshot's
  documents, a cost proportional to the unflushed rows, and that index is kept for the next search
  while it still holds: same memtable (its metadata list, the one object for the memtable's life),
  same row count, every row's metadata the same object (or an equal one) and the same analyzer.
  A memtable's rows are only appended, and a row's metadata is replaced by a new dict, never changed
  in place (``Memtable.set_metadata``, what ``update_metadata`` of a memtable row does), so that
  check sees every write: a new row changes the count, a changed document the row's dict. It is
  O(rows) pointer comparisons, not the O(terms) analysis of a build. So a cluster's text search,
  which asks each shard twice (its statistics, then its scores: cluster/queries.py), builds the
  memtable's index once unless a write came between; one that did gets the index of the second
  snapshot, as before. One index is kept per memtable (sealed ones too) present at the last search.

Scores are BM25 with statistics of the **live rows of the whole collection** (rows, total terms,
and each query term's document frequency, counted through each part's alive mask), so a query
ranks the same whatever the split into segments, and deleted or expired rows weigh nothing. The
filter applies inside each part (the planner's rows or mask, filter_plan.py), as for vector search.
Each part's best ``k`` are its ``k`` best by (score descending, id), rows of equal score at the k-th
place cut by id, not by row (a memtable's rows are in insertion order: storage/part_hits.py), and the
parts' hits are merged by (score descending, id): equal scores come by id, and the answer is the same
before and after a flush, a compaction or a reopen.

``stats`` given to a search replaces the collection's own statistics: a cluster shard scores with the
whole collection's (proximadb/cluster/queries.py), so its scores are the ones one node holding every
row would give. ``text_stats`` answers a part's share of them (:class:`proximadb.text.bm25.CorpusStats`).

``hybrid_search`` (storage/query_shapes.py's :class:`HybridQuery`) runs a vector search and a text search for
the top ``depth`` each (same filter) and fuses them (:func:`proximadb.fusion.fuse`: ``"rrf"``, ``"dbsf"`` or
``"relative_score"``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np

from proximadb.embeddings import DOCUMENT_KEY
from proximadb.errors import ValidationError
from proximadb.filters import Filter
from proximadb.storage import expiry, filter_plan, text_index_file
from proximadb.storage.derived_file import StaleDerivedFile, save_derived
from proximadb.storage.memtable_kept import MemtableKept
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.part_hits import part_best
from proximadb.storage.search import SearchPath
from proximadb.text.analyzer import Analyzer
from proximadb.text.bm25 import Bm25Index, CorpusStats, idf

DEFAULT_ANALYZER = Analyzer(stopwords="english")
log = logging.getLogger("proximadb.collection")


def _text(metadata: Any) -> str:
    value = metadata.get(DOCUMENT_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


class TextSearchPath(SearchPath):
    """BM25 and hybrid search (public entries: Collection.search_text, Collection.text_stats,
    HybridQuery.hybrid_search), on the vector search path's planner."""

    def collection_analyzer(self) -> Analyzer:
        """The analyzer of the collection's ``text_analyzer`` setting (kept while the setting is unchanged)."""
        settings = self.config.text_analyzer  # type: ignore[attr-defined]
        found: tuple[dict[str, Any], Analyzer] | None = self.__dict__.get("_analyzer")
        if found is None or found[0] != settings:
            found = (settings, Analyzer.from_settings(dict(settings)))
            self.__dict__["_analyzer"] = found
        return found[1]

    def _segment_text_index(self, seg: Any, analyzer: Analyzer) -> Bm25Index:
        cache: dict[tuple[int, str], Bm25Index] = self.__dict__.setdefault("_text_indexes", {})
        key = (seg.id, repr(analyzer.settings()))
        found = cache.get(key)
        if found is None:
            found = self._load_or_build(seg, analyzer, saved=analyzer == self.collection_analyzer())
            live = {s.id for s in self.segments}
            for old in [k for k in list(cache) if k[0] not in live]:  # segments compacted away
                cache.pop(old, None)  # (a concurrent search may prune too)
            cache[key] = found
        return found

    @staticmethod
    def _load_or_build(seg: Any, analyzer: Analyzer, *, saved: bool) -> Bm25Index:
        """The collection analyzer's index (``saved``) is mapped from the segment's text.idx, or built and
        saved there; another analyzer's is built in memory only."""
        path = seg.path / text_index_file.FILE_NAME
        source_crc = int(seg.descriptor["files"]["meta.avro"]["crc32c"])
        if saved:
            try:
                return text_index_file.load_index(path, source_crc, analyzer, seg.rows)
            except StaleDerivedFile as why:
                log.info("segment %s: building %s (%s)", seg.path, text_index_file.FILE_NAME, why)
        built = Bm25Index.build([_text(seg.metadata[r]) for r in range(seg.rows)], analyzer)
        if saved:
            save_derived(seg.path, lambda: text_index_file.write_index(path, source_crc, built))
        return built

    def _live(self, seg: Any, index: Bm25Index, now: int) -> tuple[np.ndarray, int, float]:
        """A segment's alive rows (bool), their count and their terms: kept until its next delete when no
        row of it expires (an O(rows) pass per query otherwise)."""
        if seg.expires_at is not None:
            alive = expiry.alive_mask(seg.alive(), seg.expires_at, now).astype(bool)
            return alive, int(alive.sum()), float(index.index.row_length[alive].sum())
        cache: dict[int, tuple[Any, Bm25Index, np.ndarray, int, float]] = self.__dict__.setdefault("_text_live", {})
        mask = seg.alive()  # the same array until the segment's next delete
        found = cache.get(seg.id)
        if found is None or found[0] is not mask or found[1] is not index:
            alive = mask.astype(bool)
            found = (mask, index, alive, int(alive.sum()), float(index.index.row_length[alive].sum()))
            live_ids = {s.id for s in self.segments}
            for old in [i for i in list(cache) if i not in live_ids]:
                cache.pop(old, None)
            cache[seg.id] = found
        return found[2], found[3], found[4]

    def _text_parts(self, flt: Filter | None, analyzer: Analyzer) -> list[tuple[Any, Bm25Index, np.ndarray,
                                                                                np.ndarray, int, float]]:
        """Per part (segments, then the sealed memtables and the memtable): owner, index, alive (bool),
        allowed (bool: alive and matching ``flt``), live rows, live terms."""
        now, segments, fresh = self._snapshot(flt)
        parts: list[tuple[Any, Bm25Index, np.ndarray, np.ndarray, int, float]] = []
        for seg in segments:
            index = self._segment_text_index(seg, analyzer)
            alive, live_rows, live_terms = self._live(seg, index, now)
            plan = None if flt is None else self._plan(flt, seg.payload, seg.rows, False, seg.plan_cache)
            parts.append((seg, index, alive, self._allowed(alive, plan), live_rows, live_terms))
        for snap, plan in fresh:
            alive = expiry.alive_mask(snap.alive, snap.expires_at, now).astype(bool)
            index = self._memtable_text_index(snap, analyzer)
            parts.append((snap, index, alive, self._allowed(alive, plan), int(alive.sum()),
                          float(index.index.row_length[alive].sum())))
        self._memtable_text_kept().keep_only(snap for snap, _ in fresh)
        return parts

    def _memtable_text_kept(self) -> MemtableKept[Bm25Index]:
        kept: MemtableKept[Bm25Index] = self.__dict__.setdefault("_memtable_text", MemtableKept())
        return kept

    def _memtable_text_index(self, snap: Any, analyzer: Analyzer) -> Bm25Index:
        """The BM25 index of a memtable snapshot's documents: the one kept from an earlier search while it
        still holds (see the module's documentation), else built and kept."""
        metadata = snap.metadata  # the memtable's own, still growing: rows [0, snap.rows) are the snapshot's
        # the rows and the analyzer; rows are only appended, and ``replaced`` counts maps replaced in place
        stamp = (repr(analyzer.settings()), snap.rows, metadata.replaced)
        return self._memtable_text_kept().get(
            snap, "", stamp, lambda: Bm25Index.build([_text(m) for m in metadata[: snap.rows]], analyzer))

    @staticmethod
    def _corpus_stats(parts: list[tuple[Any, Bm25Index, np.ndarray, np.ndarray, int, float]],
                      terms: list[str]) -> CorpusStats:
        """The live statistics of ``parts``: rows, total terms, and each query term's document frequency."""
        df = dict.fromkeys(terms, 0)
        for _, index, alive, *_ in parts:
            starts = index.index.term_start
            posting_rows = index.index.post_row
            for term in df:
                t = index.vocabulary.get(term)
                if t is not None:
                    df[term] += int(alive[posting_rows[starts[t]:starts[t + 1]]].sum())
        return CorpusStats(sum(part[4] for part in parts), sum(part[5] for part in parts), df)

    def _text_stats(self, text: str, analyzer: Analyzer) -> CorpusStats:
        """The collection's live BM25 statistics for ``text``'s terms (a cluster shard's part of them)."""
        return self._corpus_stats(self._text_parts(None, analyzer), analyzer.terms(text))

    def _search_text(self, text: str, k: int, flt: Filter | None, analyzer: Analyzer,
                     include_metadata: bool, stats: CorpusStats | None = None) -> list[dict[str, Any]]:
        """BM25 top-k, scored with the collection's live statistics, or with ``stats`` when given (the
        whole cluster collection's, for one shard: proximadb/cluster/queries.py)."""
        parts = self._text_parts(flt, analyzer)
        terms = analyzer.terms(text)
        if stats is None:
            stats = self._corpus_stats(parts, terms)
        if stats.rows == 0 or not terms:
            return []
        weights = idf(np.asarray([stats.df.get(t, 0) for t in terms], dtype=np.int64), stats.rows)
        avg = stats.total_terms / stats.rows
        scored: list[tuple[float, str, Any, int]] = []
        for owner, index, _, allowed, _, _ in parts:
            known = [(index.vocabulary[t], w) for t, w in zip(terms, weights.tolist(), strict=True)
                     if t in index.vocabulary]
            if not known or not allowed.any():
                continue
            search = partial(index.index.search, [t for t, _ in known], [w for _, w in known], k1=index.k1, b=index.b,
                             avg_length=avg, allowed=allowed.view(np.uint8))
            scored.extend(part_best(owner, search, k, allowed.shape[0]))
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [self._text_hit(owner, row, score, include_metadata) for score, _, owner, row in scored[:k]]

    @staticmethod
    def _allowed(alive: np.ndarray, plan: filter_plan.PartPlan | None) -> np.ndarray:
        if plan is None:
            return alive
        if plan.rows is not None:
            return alive & filter_plan.to_mask(plan.rows, alive.shape[0])
        assert plan.mask is not None
        return alive & plan.mask.astype(bool, copy=False)

    @staticmethod
    def _text_hit(owner: Any, row: int, score: float, include_metadata: bool) -> dict[str, Any]:
        hit: dict[str, Any] = {"id": owner.ids[row], "score": score}
        if include_metadata:
            hit["metadata"] = owner.metadata[row]
        expires = owner.expires_at
        if expires is not None and expires[row] != NO_EXPIRY:
            hit["expires_at"] = int(expires[row])
        return hit


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"text must be a string, got {type(text).__name__}")
    return text
