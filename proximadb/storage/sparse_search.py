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
"""

from __future__ import annotations

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


class SparseSearchPath(TextSearchPath):
    """Sparse vector search (public entry: :meth:`search_sparse`), on the vector search path's planner."""

    # False on a cluster node's replica (cluster/node.py): the node that took the request checked the name
    # against the collection's map, which may declare a name this replica's settings learn only at its next
    # sync; an undeclared name then finds the rows that carry it, if any.
    check_sparse_names = True

    def search_sparse(self, name: str, indices: Any, values: Any, k: int = 10, *,
                      filter: dict[str, Any] | str | None = None, include_metadata: bool = True,
                      score_threshold: float | None = None) -> list[dict[str, Any]]:
        """The ``k`` live records whose sparse vector ``name`` has the largest dot product with the query
        (``indices`` strictly increasing, >= 0; ``values`` finite), among those sharing an index with it,
        best first: ``{"id", "score", "metadata"?, "expires_at"?}``. The filter applies inside;
        ``score_threshold``: only hits with score >= it."""
        declared = self.config.sparse_vectors  # type: ignore[attr-defined]
        if not isinstance(name, str) or (self.check_sparse_names and name not in declared):
            known = ", ".join(repr(n) for n in declared) or "none"
            raise ValidationError(f"unknown sparse vector {name!r} (declared: {known})")
        check_k(k, self.options.limits.max_k)  # type: ignore[attr-defined]
        threshold = check_score_threshold(score_threshold, distance_metric=False)
        q_indices, q_values = check_vector(indices, values, f"the query of sparse vector {name!r}")
        hits = self._search_sparse(name, q_indices, q_values, k, compile_filter(filter), include_metadata)
        return hits if threshold is None else [h for h in hits if h["score"] >= threshold]

    def _search_sparse(self, name: str, indices: np.ndarray, values: np.ndarray, k: int, flt: Filter | None,
                       include_metadata: bool) -> list[dict[str, Any]]:
        if not indices.shape[0]:
            return []
        now, segments, fresh = self._snapshot(flt)
        scored: list[tuple[float, str, Any, int]] = []
        for seg in segments:
            index = seg.sparse.get(name)
            if index is None:
                continue
            alive = expiry.alive_mask(seg.alive(), seg.expires_at, now).astype(bool)
            plan = None if flt is None else self._plan(flt, seg.payload, seg.rows, False, seg.plan_cache)
            self._score_part(scored, seg, index, self._allowed(alive, plan), indices, values, k)
        kept: MemtableKept[SparseIndex] = self.__dict__.setdefault("_memtable_sparse", MemtableKept())
        kept.keep_only(snap for snap, _ in fresh)
        for snap, plan in fresh:
            column = (snap.sparse or {}).get(name)
            if column is None or not column.nnz:
                continue
            alive = expiry.alive_mask(snap.alive, snap.expires_at, now).astype(bool)
            allowed = self._allowed(alive, plan)
            if allowed.any():
                # kept until the memtable has more rows (its sparse vectors are only appended)
                index = kept.get(snap, name, snap.rows, partial(SparseIndex.build, column))
                self._score_part(scored, snap, index, allowed, indices, values, k)
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [self._text_hit(owner, row, score, include_metadata) for score, _, owner, row in scored[:k]]

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
