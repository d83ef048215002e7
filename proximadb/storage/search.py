"""Top-k search over a Collection's segments (their HNSW/IVF index or an exact scan) and memtable.

Under the collection lock only a snapshot is taken (the arrays of the memtable
and of the sealed memtables a flush is writing, the segment list and their
deletion masks); the scans run without it, the kernels
with the GIL released. Each part yields (m, k) candidates, merged by distance.
Filters apply inside each scan, never after it, so k hits come back whenever k rows match.
Per part, the planner (filter_plan.py) estimates the filter's cardinality from the part's payload
index: a small set of matching rows is scanned exactly (a sorted row array, gather + SIMD kernel),
a larger one becomes a mask (``Filter.index_mask``: set operations, payload_index.py) that the
graph walk or the dense scan takes; never a per-row walk of metadata.
A memtable past ``memtable_index_rows`` rows has an HNSW graph over its first rows
(memtable_index.py): it is planned and walked like a segment's index, and the rows the graph does
not cover yet are scanned exactly.
Equal distances come by id: the kernels cut ties by row, which is id order in a segment (``ids.bin``
is sorted) but insertion order in a memtable, so a memtable's exact scan gives k + 1 and a query whose
best k + 1 hold equal distances is cut again by (distance, id) over the candidates up to its k-th
distance (:func:`_cut_by_id`). The answer then does not change when a flush or a compaction
moves rows, and a cluster's merge (by distance, then id) agrees with one node's.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
from typing import Any

import numpy as np

from proximadb import deadline
from proximadb.filters import Filter
from proximadb.index import distance
from proximadb.storage import expiry, filter_plan, memtable_index, named_columns, named_search, segment_index
from proximadb.storage.collection_state import CollectionState, KernelMetric
from proximadb.storage.filter_cache import PlanCache
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.segment import Segment

# One query's candidates up to this many (over all parts) are merged in lists, more in numpy: the list merge
# costs about 16% less per search at k 10 over a segment and a memtable graph, and more than numpy's past
# a k of about 150-200 over a few parts.
MERGE_IN_LISTS = 256


class SearchPath(CollectionState):
    """The search core behind Collection.search_batch (which checks the arguments)."""

    # filter_plan.plan's thresholds: None = exact_limit for a part with a graph/IVF index, every
    # matching row for one without; an int forces it for every part (tests reach both sides with it).
    planner_exact_rows: int | None = None
    planner_eval_rows = filter_plan.EVAL_ROWS

    def _plan(self, flt: Filter, payload: Any, rows: int, indexed: bool,
              cache: PlanCache | None = None) -> filter_plan.PartPlan:
        """The part's plan of ``flt``; a sealed segment passes its ``cache`` (filter_cache.py)."""
        limit = self.planner_exact_rows
        if limit is None:
            limit = filter_plan.exact_limit(rows) if indexed else rows
        eval_rows = self.planner_eval_rows

        def make() -> filter_plan.PartPlan:
            return filter_plan.plan(flt, payload, rows, exact_rows=limit, eval_rows=eval_rows)

        return make() if cache is None else cache.plan((flt.key, rows, limit, eval_rows), make)

    def _snapshot(self, flt: Filter | None) -> tuple[int, list[Any], list[tuple[Any, filter_plan.PartPlan | None]]]:
        """Under the lock, what a search reads: the time (rows expired by then are left out like deleted
        ones, expiry.py), the segment list, and the non-empty snapshots of the sealed memtables a flush is
        writing (sealed.py) and of the memtable, each with its filter plan (a memtable's payload index
        changes with every write: planned under the lock, like its alive flags). The scans run without it."""
        with self._request_lock():
            now = expiry.now_us()
            segments = list(self.segments)
            fresh = []
            for mt in [*self.sealed, self.memtable]:
                snap = mt.snapshot()
                if snap.rows:  # a memtable with a graph is planned as an indexed part (memtable_index.py)
                    graphed = snap.graph is not None
                    fresh.append((snap, None if flt is None else self._plan(flt, mt.payload, snap.rows, graphed)))
        return now, segments, fresh

    def _search(self, queries: np.ndarray, k: int, flt: Filter | None, *, include_vectors: bool,
                include_metadata: bool, exact: bool | None, ef: int | None,
                nprobe: int | None, score_threshold: float | None = None,
                oversampling: float | None = None, using: str | None = None) -> list[list[dict[str, Any]]]:
        """Top-k per query; ``score_threshold`` (checked by the caller) keeps the hits at least that good
        (:meth:`_good_enough`); ``oversampling`` widens a quantized index's rescoring (:meth:`_index_topk`).
        ``using``: a named vector (checked by the caller, queries of its dimension, normalised under its
        metric) whose rows are searched instead of the default vector's (named_search.py)."""
        hits = self._search_raw(queries, k, flt, include_vectors=include_vectors, include_metadata=include_metadata,
                                exact=exact, ef=ef, nprobe=nprobe, oversampling=oversampling, using=using)
        if score_threshold is None:
            return hits
        metric = self._metric if using is None else named_search.resolve(self.config, using)[2]
        return [[h for h in per_query if self._good_enough(h, score_threshold, metric)] for per_query in hits]

    def _good_enough(self, hit: dict[str, Any], threshold: float, metric: KernelMetric | None = None) -> bool:
        """``score_threshold`` per metric, as Qdrant's: euclidean compares the distance (``distance <=
        threshold``), cosine and dot_product the score (``score >= threshold``: the cosine similarity,
        the inner product)."""
        if (metric or self._metric) == "l2":
            return bool(hit["distance"] <= threshold)
        return bool(hit["score"] >= threshold)

    def _search_raw(self, queries: np.ndarray, k: int, flt: Filter | None, *, include_vectors: bool,
                    include_metadata: bool, exact: bool | None, ef: int | None,
                    nprobe: int | None, oversampling: float | None,
                    using: str | None = None) -> list[list[dict[str, Any]]]:
        now, segments, fresh = self._snapshot(flt)
        metric = self._metric if using is None else named_search.resolve(self.config, using)[2]
        # Each part: (vectors, owner, rows to scan exactly or None, mask of candidates or None = every row,
        # the rows that mask allows when the planner counted them or None).
        parts: list[tuple[np.ndarray, Any, np.ndarray | None, np.ndarray | None, int | None]] = []
        for seg in segments:  # a segment's payload index is immutable: planned without the lock
            whole = seg.expires_at is None and seg.all_alive()  # no row deleted or expiring: nothing to drop
            part: Any = seg
            if using is not None:  # the named vector's rows and index of the segment (named_search.py)
                part = named_search.segment_part(seg, using, metric, exact)
            vecs = seg.vectors if using is None else part.base
            if flt is None:
                parts.append((vecs, part, None, None if whole else self._alive(seg.alive(), seg, now), None))
            else:
                indexed = part.index is not None and not exact
                planned = self._plan(flt, seg.payload, seg.rows, indexed, seg.plan_cache)
                parts.append(self._planned(vecs, part, planned, None if whole else seg.alive(), now))
        for snap, plan in fresh:
            fresh_part: Any = snap if using is None else named_search.memtable_part(snap, using, metric)
            base = snap.vectors[: snap.rows] if using is None else fresh_part.base
            if plan is None:  # no mask at all when every row is live and none expires (as a whole segment)
                whole = snap.all_alive and snap.expires_at is None
                parts.append((base, fresh_part, None, None if whole else self._alive(snap.alive, snap, now), None))
            else:
                parts.append(self._planned(base, fresh_part, plan, snap.alive, now))
        m = len(queries)
        # per part: (m, width) rows and distances, the owner, and for a memtable's exact scan its pass over
        # every candidate up to a distance (ties at the cut: :func:`_cut_by_id`)
        cand: list[tuple[np.ndarray, np.ndarray, Any, Again | None]] = []
        for p_idx, (base, owner, rows, mask, count) in enumerate(parts):
            if base.shape[0] == 0 or (rows is not None and rows.shape[0] == 0):
                continue
            if cand:  # between parts, never before the first
                deadline.check(f"searching collection {self.config.name!r} ({p_idx} of {len(parts)} parts done)")
            index = getattr(owner, "index", None)
            graph = getattr(owner, "graph", None)  # a memtable snapshot's graph (memtable_index.py)
            # an exact scan of a memtable (rows in insertion order) gives one more, to show a tie at its cut
            in_id_order = _in_id_order(owner)
            width = k if in_id_order else k + 1
            if rows is not None:  # the planner's exact path: only the matching rows, gathered
                idx, dist = distance.topk_rows_batch(queries, base, rows, width, metric,
                                                     threads=None if m >= 4 else 1)
                again: Again | None = None if in_id_order else Again(metric, queries, base, rows, None)
            elif graph is not None and not exact:  # the graph's rows walked, the rows it lacks scanned
                def topk(q: np.ndarray, b: np.ndarray, w: int, msk: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
                    return self._topk(q, b, w, msk, metric)

                for i, d, tail in memtable_index.search(graph, base, queries, k, mask, ef, topk):
                    # tail: the first of the rows the graph lacks, scanned exactly (None: the graph's walk)
                    cand.append((i, d, owner, None if tail is None else Again(
                        metric, queries, base[tail:], None, None if mask is None else mask[tail:], first=tail)))
                continue
            elif index is not None and not exact:
                idx, dist = self._index_topk(index, queries, k, mask, ef, nprobe, oversampling, count)
                again = None
            else:
                idx, dist = self._topk(queries, base, width, mask, metric)
                again = None if in_id_order else Again(metric, queries, base, None, mask)
            cand.append((idx, dist, owner, again))
        if not cand:
            return [[] for _ in range(m)]
        if len(cand) == 1:  # one part's lists are best first
            all_row, all_d, owner, _ = cand[0]
            tied = _tied(all_d) if not _in_id_order(owner) else np.zeros(m, bool)  # a segment: by id
            return [self._tie_cut(cand, qi, k, all_d[qi], include_vectors, include_metadata) if tied[qi] else
                    [self._hit(owner, r, d, include_vectors, include_metadata)
                     for r, d in zip(all_row[qi, :k].tolist(), all_d[qi, :k].tolist(), strict=True) if r >= 0]
                    for qi in range(m)]
        if m == 1 and sum(c[1].shape[1] for c in cand) <= MERGE_IN_LISTS:
            return [self._merge_one(cand, k, include_vectors, include_metadata)]
        return self._merge_many(cand, k, m, include_vectors, include_metadata)

    def _merge_many(self, cand: list[tuple[np.ndarray, np.ndarray, Any, Again | None]], k: int, m: int,
                    include_vectors: bool, include_metadata: bool) -> list[list[dict[str, Any]]]:
        """Each query's hits from several parts' candidates, merged in numpy: a stable sort by distance (equal
        distances keep the parts' order), ties at the cut by id (:meth:`_tie_cut`)."""
        all_d = np.concatenate([c[1] for c in cand], axis=1)
        order = np.argsort(all_d, axis=1, kind="stable")[:, : k + 1]
        top = np.take_along_axis(all_d, order, axis=1)
        tied = _tied(top)
        order = order[:, :k]
        rows = np.take_along_axis(np.concatenate([c[0] for c in cand], axis=1), order, axis=1).tolist()
        src = np.take_along_axis(np.concatenate([np.full(c[0].shape, i, dtype=np.int32) for i, c in enumerate(cand)],
                                                axis=1), order, axis=1).tolist()
        dist = top[:, :k].tolist()
        return [self._tie_cut(cand, qi, k, top[qi], include_vectors, include_metadata) if tied[qi] else
                [self._hit(cand[p][2], r, d, include_vectors, include_metadata)
                 for r, p, d in zip(rows[qi], src[qi], dist[qi], strict=True) if r >= 0]
                for qi in range(m)]

    def _merge_one(self, cand: list[tuple[np.ndarray, np.ndarray, Any, Again | None]], k: int,
                   include_vectors: bool, include_metadata: bool) -> list[dict[str, Any]]:
        """The one query's hits from several parts' candidates, what :meth:`_merge_many` gives, merged in plain
        lists: for a few dozen candidates cheaper than numpy's calls (MERGE_IN_LISTS)."""
        best: list[tuple[float, int, int]] = []
        for p, (idx, dist, _, _) in enumerate(cand):
            best.extend(zip(dist[0].tolist(), itertools.repeat(p), idx[0].tolist()))
        best.sort(key=operator.itemgetter(0))
        top = best[: k + 1]
        if any(a[0] == b[0] != math.inf for a, b in itertools.pairwise(top)):
            return self._tie_cut(cand, 0, k, [t[0] for t in top], include_vectors, include_metadata)
        return [self._hit(cand[p][2], r, d, include_vectors, include_metadata) for d, p, r in top[:k] if r >= 0]

    def _tie_cut(self, cand: list[tuple[np.ndarray, np.ndarray, Any, Again | None]], qi: int, k: int,
                 best: np.ndarray | list[float], include_vectors: bool,
                 include_metadata: bool) -> list[dict[str, Any]]:
        """Query ``qi``'s hits when equal distances are among its best k + 1 (``best``, ascending)."""
        kth = float(best[k - 1]) if len(best) >= k else math.inf
        return [self._hit(owner, row, d, include_vectors, include_metadata)
                for d, _, owner, row in _cut_by_id(cand, qi, k, kth)]

    @staticmethod
    def _alive(alive: np.ndarray, owner: Any, now: int) -> np.ndarray:
        return expiry.alive_mask(alive, owner.expires_at, now)

    def _planned(self, base: np.ndarray, owner: Any, plan: filter_plan.PartPlan, alive: np.ndarray | None,
                 now: int) -> tuple[np.ndarray, Any, np.ndarray | None, np.ndarray | None, int | None]:
        """A part as the planner chose: its matching rows alive now, or the mask of them (``alive``
        None: every row of the part is alive and none expires, the plan is taken as it is, count too)."""
        if alive is None:
            return base, owner, plan.rows, plan.mask, plan.count
        if plan.rows is not None:
            return base, owner, expiry.alive_rows(plan.rows, alive, owner.expires_at, now), None, None
        assert plan.mask is not None
        return base, owner, None, self._alive(alive, owner, now) & plan.mask, None

    def _topk(self, queries: np.ndarray, base: np.ndarray, k: int,
              mask: np.ndarray | None, metric: KernelMetric | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) rows and distances, padded with -1 / inf. A thread team costs more than one query.
        ``metric``: the kernel's (None: the collection's default vector's)."""
        metric = metric or self._metric
        if len(queries) >= 4:
            return distance.topk_batch(queries, base, k, metric, mask=mask)
        if len(queries) == 1:  # the common single query: its lists as they come (padded only when short)
            rows, d = distance.topk(queries[0], base, k, metric, mask=mask)
            if len(rows) == k:
                return rows.astype(np.int64, copy=False)[None, :], d[None, :]
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = distance.topk(q, base, k, metric, mask=mask)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    @staticmethod
    def _index_topk(
        index: Any, queries: np.ndarray, k: int, mask: np.ndarray | None, ef: int | None, nprobe: int | None,
        oversampling: float | None = None, count: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Graph/IVF search; deleted and filtered-out rows are excluded inside the traversal (mask None: none;
        ``count``: the rows the mask allows, when known)."""
        wider = _rescored_k(index, k, oversampling)
        if wider > k:  # the index rescores ceil(wider x its oversampling) >= k x the request's; its best k kept
            idx, dist = SearchPath._index_topk(index, queries, wider, mask, ef, nprobe, None, count)
            return np.ascontiguousarray(idx[:, :k]), np.ascontiguousarray(dist[:, :k])
        allowed = None if mask is None or (count == mask.shape[0] if count is not None else mask.all()) else mask
        knob = segment_index.search_options(index, ef=ef, nprobe=nprobe)
        if allowed is not None and count is not None:
            knob["allowed_count"] = count
        if len(queries) >= 4:
            return index.search_batch(queries, k, filter_ids=allowed, **knob)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = index.search(q, k, filter_ids=allowed, **knob)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    def _hit(self, owner: Any, row: int, raw: float, with_vector: bool, with_metadata: bool) -> dict[str, Any]:
        metric = getattr(owner, "metric", None) or self._metric  # a NamedPart: its named vector's metric
        if metric == "l2":
            dist = math.sqrt(raw) if raw > 0.0 else 0.0
            score = 1.0 / (1.0 + dist)
        elif metric == "cosine":
            dist = raw
            score = 1.0 - raw
        else:  # dot: the kernel returns the negated inner product
            dist = raw
            score = -raw
        hit: dict[str, Any] = {"id": owner.ids[row], "score": score, "distance": dist}
        if with_metadata:
            hit["metadata"] = owner.metadata[row]
        if with_vector:
            hit["vector"] = np.array(owner.vectors[row], dtype=np.float32)
            named = getattr(owner, "named", None)  # a segment's, a memtable snapshot's, a NamedPart's source's
            if named:  # as get/scroll: every named vector of the record
                hit["named_vectors"] = named_columns.row_vectors(named, row)
        expires = owner.expires_at
        if expires is not None and expires[row] != NO_EXPIRY:
            hit["expires_at"] = int(expires[row])
        return hit


def _in_id_order(owner: Any) -> bool:
    """A part whose rows are in id order (a segment's, also searched through a named vector)."""
    return isinstance(owner, Segment) or (isinstance(owner, named_search.NamedPart) and owner.in_id_order)


def _rescored_k(index: Any, k: int, oversampling: float | None) -> int:
    """The k to ask a quantized index (one with ``oversampling`` and ``rescore``) for so that it rescores
    about ``k * oversampling`` candidates: it rescores ``ceil(k' * its own oversampling)`` and keeps the
    best k' by the float32 distance, so the best k of those are the answer with the request's factor.
    A request's factor below the collection's cannot narrow the index's work: k itself then (the
    collection's setting is the floor). Unquantized indexes, and rescore off: k."""
    own = getattr(index, "oversampling", None)
    if oversampling is None or own is None or not getattr(index, "rescore", False) or oversampling <= own:
        return k
    return max(k, math.ceil(k * oversampling / own - 1e-9))


class Again:
    """An exact part's scan again for one query: every candidate row (allowed by its rows or mask) whose
    distance is at most a bound, by one pass of the kernel that scored it (``pairwise``: the same per-pair
    distances as the top-k kernels, bit for bit). ``first``: the part's row number of ``base[0]`` when
    ``base`` is the rows from there on (a memtable's rows past its graph), with a mask, not rows."""

    __slots__ = ("base", "first", "mask", "metric", "queries", "rows")

    def __init__(self, metric: KernelMetric, queries: np.ndarray, base: np.ndarray, rows: np.ndarray | None,
                 mask: np.ndarray | None, first: int = 0) -> None:
        self.metric, self.queries, self.base, self.rows, self.mask = metric, queries, base, rows, mask
        self.first = first

    def upto(self, qi: int, bound: float) -> tuple[np.ndarray, np.ndarray]:
        """(rows int64, distances) of query ``qi``'s candidates at most ``bound``, in row order."""
        query = self.queries[qi : qi + 1]
        if self.rows is not None:
            d = distance.pairwise(query, np.ascontiguousarray(self.base[self.rows]), self.metric)[0]
            keep = d <= bound
            return self.rows[keep].astype(np.int64, copy=False), d[keep]
        d = distance.pairwise(query, self.base, self.metric)[0]
        keep = d <= bound
        if self.mask is not None:
            keep &= self.mask.astype(bool, copy=False)
        found = np.flatnonzero(keep)
        return found + self.first, d[found]


def _tied(best: np.ndarray) -> np.ndarray:
    """Per query (a row of ``best``: its best k + 1 distances, ascending, +inf padding): two equal ones."""
    return ((best[:, 1:] == best[:, :-1]) & np.isfinite(best[:, 1:])).any(axis=1)  # type: ignore[no-any-return]


def _cut_by_id(cand: list[tuple[np.ndarray, np.ndarray, Any, Again | None]], qi: int, k: int,
               kth: float) -> list[tuple[float, str, Any, int]]:
    """Query ``qi``'s best ``k`` by (distance, id) when equal distances are among its best k + 1: every
    part's candidates nearer than ``kth`` (the k-th best distance: fewer than k of them, all in the answer),
    then the smallest ids of those at ``kth``. A memtable's exact scan whose answer was full and whose last
    one is not beyond ``kth`` (a row it left out may tie) gives every candidate up to ``kth`` instead
    (:meth:`Again.upto`: one pass); a segment's does not need to: its rows are in id order, so the rows at
    ``kth`` it left out have larger ids than every row of it the answer can take. An approximate part (a
    graph or IVF) adds what it found. As (distance, id, owner, row), best first."""
    nearer: list[tuple[float, str, Any, int]] = []
    at_kth: list[tuple[str, Any, int]] = []
    for idx, dist, owner, again in cand:
        rows, d = idx[qi], dist[qi]
        if again is not None and rows.shape[0] and rows[-1] >= 0 and d[-1] <= kth:
            rows, d = again.upto(qi, kth)
        keep = rows >= 0
        rows, d = rows[keep], d[keep]
        ids = owner.ids
        near = d < kth
        nearer.extend((float(x), ids[r], owner, r) for r, x in zip(rows[near].tolist(), d[near].tolist(), strict=True))
        at_kth.extend((ids[r], owner, r) for r in rows[d == kth].tolist())
    nearer.sort(key=lambda hit: (hit[0], hit[1]))
    ties = heapq.nsmallest(k - len(nearer), at_kth, key=lambda hit: hit[0]) if len(nearer) < k else []
    return nearer + [(kth, id_, owner, row) for id_, owner, row in ties]
