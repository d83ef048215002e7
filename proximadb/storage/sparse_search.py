"""Exact top-k by dot product over a Collection's named sparse vectors: ``Collection.search_sparse``.

A record's sparse vectors (schema v3) are part of the record (WAL, ``meta.avro``); what a search
reads is derived:

- a **segment**'s rows and postings per name come from its ``sparse.idx`` (sparse_index_file.py,
  memory-mapped at open, rebuilt from ``meta.avro`` when in doubt);
- the **memtable** (and a sealed memtable a flush is writing) is indexed from the snapshot's CSR
  (:class:`proximadb.storage.sparse_index_file.SparseIndex.build`) and the index kept until the
  memtable has more rows (rows are only appended): correct at every instant; a search after a write
  pays a build proportional to the memtable's non-zeros, as text search does for BM25.

Each part is scored term at a time by the compiled inverted index (``index/inverted.pyx``, scoring
"dot", GIL released) with the part's allowed rows inside: alive now (deleted and expired rows never
count) and matching the filter, by the same planner as vector and text search (filter_plan.py). A
row is a candidate only when it shares at least one index with the query (a row sharing none scores
0 and is not a hit), so the answer is exact: the ``k`` best candidates of every part, merged by
(score descending, id). The kernel prunes by MaxScore (rows that cannot reach the part's k-th best
are skipped; see inverted.pyx), which changes no answer.

**The IDF modifier.** A name declared with ``{"modifier": "idf"}`` (storage/catalog.py) is searched with
each query value multiplied by its index's inverse document frequency, BM25's formula (Qdrant's modifier
of the same name): ``ln(1 + (N - n + 0.5) / (n + 0.5))``, N the live rows carrying a vector of that name
and n those whose value at the index is not 0, counted at the search through every part's alive mask
(``_sparse_corpus_stats``), so the weights are the same whatever the split into segments, and deleted
or expired rows weigh nothing; a filter does not change them. Stored vectors are never rewritten, so the
setting can change at any time. A cluster applies it in two phases, as it does BM25: the shards' statistics
added up, then every shard scores with the sums (``stats``; cluster/queries.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from proximadb.errors import ValidationError
from proximadb.filters import Filter, compile_filter
from proximadb.storage import expiry
from proximadb.storage.memtable_kept import MemtableKept
from proximadb.storage.part_hits import part_best
from proximadb.storage.query_shapes import check_score_threshold
from proximadb.storage.sparse_column import check_vector
from proximadb.storage.sparse_index_file import SparseIndex
from proximadb.storage.text_search import TextSearchPath
from proximadb.storage.validation import check_k
from proximadb.text.bm25 import CorpusStats, idf


@dataclass(frozen=True, slots=True)
class SparsePart:
    """One part of a sparse search: a segment or a memtable snapshot holding vectors of the name."""

    owner: Any
    index: SparseIndex
    alive: np.ndarray  # bool per row: not deleted nor expired now
    allowed: np.ndarray  # bool per row: alive and matching the filter
    # a segment none of whose rows expires: the deletions array ``alive`` was made from (the key of its kept
    # counts, Segment.alive(): the same object until its next delete); None otherwise
    deletions: np.ndarray | None


class SparseSearchPath(TextSearchPath):
    """Sparse vector search (public entries: :meth:`search_sparse`, :meth:`sparse_stats`), on the vector
    search path's planner."""

    # True on a cluster node's replica (cluster/node.py). The node that took the request checked the name
    # against the collection's map, which may declare a name this replica's settings learn only at its next
    # sync: an undeclared name then finds the rows that carry it, if any. That node also applies the name's
    # modifier, by sending the whole collection's statistics (``stats``): a replica never weighs by its own.
    is_shard_replica = False

    def _declared_sparse(self, name: object) -> dict[str, Any]:
        """The settings of sparse vector ``name``; ValidationError naming the declared ones when it is not
        one of them (a replica takes any name: see ``is_shard_replica``)."""
        declared = self.config.sparse_vectors  # type: ignore[attr-defined]
        if isinstance(name, str) and (name in declared or self.is_shard_replica):
            return dict(declared.get(name, {}))
        known = ", ".join(repr(n) for n in declared) or "none"
        raise ValidationError(f"unknown sparse vector {name!r} (declared: {known})")

    def search_sparse(self, name: str, indices: Any, values: Any, k: int = 10, *,
                      filter: dict[str, Any] | str | None = None, include_metadata: bool = True,
                      score_threshold: float | None = None, stats: CorpusStats | None = None) -> list[dict[str, Any]]:
        """The ``k`` live records whose sparse vector ``name`` has the largest dot product with the query
        (``indices`` strictly increasing, >= 0; ``values`` finite), among those sharing an index with it,
        best first: ``{"id", "score", "metadata"?, "expires_at"?}``. The filter applies inside;
        ``score_threshold``: only hits with score >= it. With the name's ``modifier`` "idf", each query
        value is first multiplied by its index's IDF among the collection's live rows (the module's
        documentation); ``stats`` given replaces those statistics and always weighs (a cluster shard)."""
        settings = self._declared_sparse(name)
        check_k(k, self.options.limits.max_k)  # type: ignore[attr-defined]
        threshold = check_score_threshold(score_threshold, distance_metric=False)
        q_indices, q_values = check_vector(indices, values, f"the query of sparse vector {name!r}")
        weigh = stats is not None or (settings.get("modifier") == "idf" and not self.is_shard_replica)
        hits = self._search_sparse(name, q_indices, q_values, k, compile_filter(filter), include_metadata,
                                   weigh, stats)
        return hits if threshold is None else [h for h in hits if h["score"] >= threshold]

    def sparse_stats(self, name: str, indices: Any, values: Any) -> CorpusStats:
        """The live statistics of sparse vector ``name`` for a query's indices (a cluster shard's part of the
        collection's: phase 1 of an IDF-weighted search; the query is checked as :meth:`search_sparse` checks
        it): see :meth:`_sparse_corpus_stats`."""
        self._declared_sparse(name)
        q_indices, _ = check_vector(indices, values, f"the query of sparse vector {name!r}")
        return self._sparse_corpus_stats(name, self._sparse_parts(name, None), q_indices)

    def _sparse_parts(self, name: str, flt: Filter | None) -> list[SparsePart]:
        """Per part holding vectors of ``name`` (segments, then the sealed memtables and the memtable)."""
        now, segments, fresh = self._snapshot(flt)
        parts: list[SparsePart] = []
        for seg in segments:
            index = seg.sparse.get(name)
            if index is None:
                continue
            deletions = seg.alive()  # read once: the same array until the segment's next delete
            alive = expiry.alive_mask(deletions, seg.expires_at, now).astype(bool)
            plan = None if flt is None else self._plan(flt, seg.payload, seg.rows, False, seg.plan_cache)
            parts.append(SparsePart(seg, index, alive, self._allowed(alive, plan),
                                    deletions if seg.expires_at is None else None))
        kept: MemtableKept[SparseIndex] = self.__dict__.setdefault("_memtable_sparse", MemtableKept())
        kept.keep_only(snap for snap, _ in fresh)
        for snap, plan in fresh:
            column = (snap.sparse or {}).get(name)
            if column is None or not column.nnz:
                continue
            alive = expiry.alive_mask(snap.alive, snap.expires_at, now).astype(bool)
            # kept until the memtable has more rows (its sparse vectors are only appended)
            index = kept.get(snap, name, snap.rows, partial(SparseIndex.build, column))
            parts.append(SparsePart(snap, index, alive, self._allowed(alive, plan), None))
        return parts

    def _search_sparse(self, name: str, indices: np.ndarray, values: np.ndarray, k: int, flt: Filter | None,
                       include_metadata: bool, weigh: bool = False,
                       stats: CorpusStats | None = None) -> list[dict[str, Any]]:
        if not indices.shape[0]:
            return []
        parts = self._sparse_parts(name, flt)
        if weigh:
            if stats is None:
                stats = self._sparse_corpus_stats(name, parts, indices)  # of alive rows, whatever the filter
            values = values * idf_weights(stats, indices)
        scored: list[tuple[float, str, Any, int]] = []
        for part in parts:
            self._score_part(scored, part.owner, part.index, part.allowed, indices, values, k)
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [self._text_hit(owner, row, score, include_metadata) for score, _, owner, row in scored[:k]]

    def _sparse_corpus_stats(self, name: str, parts: list[SparsePart], indices: np.ndarray) -> CorpusStats:
        """The live statistics of ``parts`` for the query ``indices``, as BM25's
        :class:`~proximadb.text.bm25.CorpusStats`: ``rows``, the alive rows carrying the vector;
        ``total_terms``, their stored entries; ``df``, per query index (its decimal string), the alive rows
        whose value there is not 0. A segment none of whose rows expires keeps its counts until its next
        delete, and while none of its rows is deleted and no stored value is 0 its df is read off the
        postings' bounds, so a query costs O(query indices) there (O(rows) in the memtable and in
        expiring segments)."""
        rows, total = 0, 0.0
        df = np.zeros(indices.shape[0], np.int64)
        for part in parts:
            index, alive = part.index, part.alive
            carried, nnz, whole = self._sparse_live(part, name)
            rows += carried
            total += nnz
            inverted, dims = index.index, index.dims
            terms = np.searchsorted(dims, indices)
            known = terms < dims.shape[0]
            known[known] = dims[terms[known]] == indices[known]
            if whole:
                at = terms[known]
                df[known] += inverted.term_start[at + 1] - inverted.term_start[at]
                continue
            for q in np.flatnonzero(known).tolist():
                lo, hi = int(inverted.term_start[terms[q]]), int(inverted.term_start[terms[q] + 1])
                df[q] += int((alive[inverted.post_row[lo:hi]] & (inverted.post_value[lo:hi] != 0)).sum())
        return CorpusStats(rows, total, dict(zip((str(i) for i in indices.tolist()), df.tolist(), strict=True)))

    def _sparse_live(self, part: SparsePart, name: str) -> tuple[int, float, bool]:
        """(alive rows carrying a vector, their stored entries, whether every posting counts in df: no row
        deleted or expired, no value 0) of one part; kept per segment and name, under the deletions array
        the part's alive mask was made from (``part.deletions``), while no row of it expires."""
        index, alive = part.index, part.alive

        def counts() -> tuple[int, float, bool]:
            carried = alive & (index.index.row_length > 0)
            whole = bool(alive.all()) and bool(index.index.post_value.all())
            return int(carried.sum()), float(index.index.row_length[carried].sum()), whole

        if part.deletions is None:
            return counts()
        cache: dict[tuple[int, str], tuple[Any, SparseIndex, tuple[int, float, bool]]] = \
            self.__dict__.setdefault("_sparse_live_counts", {})
        key = (part.owner.id, name)
        found = cache.get(key)
        if found is None or found[0] is not part.deletions or found[1] is not index:
            live = {s.id for s in self.segments}  # type: ignore[attr-defined]
            for old in [k for k in list(cache) if k[0] not in live]:  # segments compacted away
                cache.pop(old, None)
            found = cache[key] = (part.deletions, index, counts())
        return found[2]

    @staticmethod
    def _score_part(scored: list[tuple[float, str, Any, int]], owner: Any, index: SparseIndex, allowed: np.ndarray,
                    indices: np.ndarray, values: np.ndarray, k: int) -> None:
        """The part's best ``k`` allowed rows by (score descending, id), appended to ``scored`` as (score, id,
        owner, row): the kernel's cut, widened in a memtable so that rows tying at the k-th place are cut by id,
        not by row (:func:`proximadb.storage.part_hits.part_best`)."""
        if not allowed.any():
            return
        search = partial(index.search, indices, values, allowed=allowed.view(np.uint8))
        scored.extend(part_best(owner, search, k, allowed.shape[0]))


def idf_weights(stats: CorpusStats, indices: np.ndarray) -> np.ndarray:
    """Each query index's IDF (float32): BM25's (proximadb/text/bm25.py), ``ln(1 + (N - n + 0.5) / (n + 0.5))``
    with ``stats``' rows as N and the index's df as n (an index no live row carries finds no row anyway)."""
    df = np.asarray([stats.df.get(str(i), 0) for i in indices.tolist()], dtype=np.int64)
    return idf(df, stats.rows)
