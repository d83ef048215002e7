"""The query shapes built on top-k search: ``Collection.search_groups`` and ``Collection.recommend``
(Qdrant's search_groups and recommend APIs), ``hybrid_search`` (:class:`HybridQuery`: any of a vector, a BM25
and a sparse search fused; shared with the cluster's collections, whose searches each fan out), and the checks of
``score_threshold`` and per-request ``oversampling`` that search, search_batch, search_text and hybrid_search
share.

**search_groups**: the hits of one query grouped by the value of a metadata field (``group_by``):
at most ``limit`` groups, each with at most ``group_size`` hits best first, the groups ordered by
their best hit. A string or integer value is a group (``1`` and ``"1"`` are different groups); a
list of strings puts the row in each of its elements' groups; rows without the field (or with a
null, float or boolean value) are left out: the filter handed to the search is the request's
filter AND ``{group_by: {"$exists": true}}``, so the planner drops them inside the scan. The
search is widened until enough groups are filled: top ``limit * group_size``, then four times more
each round, until the first ``limit`` groups (by best hit) each hold ``group_size`` hits, or a
search answers fewer hits than asked (every matching row seen). Once filled, no wider search can
change the answer: a later hit is worse than every hit seen, so it cannot start a group ranked
before them nor enter a full group.

**recommend**: examples are ids (looked up; an unknown id is a VectorNotFoundError naming it) or
vectors; example ids never come back as hits. ``average_vector`` (Qdrant's default): one search
with ``avg(positive) + (avg(positive) - avg(negative))`` (just ``avg(positive)`` without
negatives), cosine examples normalised first. ``best_score``: each candidate is scored by
similarity (the hit's score: cosine similarity, inner product, or ``1 / (1 + euclidean
distance)``): ``s+ = max over positives``, ``s- = max over negatives``; the score is ``s+`` when
``s+ > s-`` (or there are no negatives), else ``-(s-)**2``, as Qdrant's best-score strategy.
Candidates are the top N around each positive (same filter); N grows (x4 a round) until the k-th
best score is at least every positive's N-th similarity and at least 0, so no row left unseen
could score higher (its best positive similarity is at most that positive's N-th, its penalised
score at most 0), or until a positive's search is exhausted. With an exact search (or a flat
collection) the answer is the brute-force one; through HNSW as exact as the graph's recall.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from proximadb.errors import ValidationError, VectorNotFoundError
from proximadb.filters import compile_filter
from proximadb.fusion import fuse
from proximadb.index import distance
from proximadb.index.quantization import check_oversampling
from proximadb.storage import named_search
from proximadb.storage.collection_state import KernelMetric
from proximadb.storage.text_search import TextSearchPath
from proximadb.storage.validation import check_k, check_search_knob, query_matrix

STRATEGIES = ("average_vector", "best_score")
WIDEN = 4  # each round of search_groups / best_score asks for this many times more hits


def check_score_threshold(value: object, *, distance_metric: bool, what: str = "score_threshold") -> float | None:
    """None, or a finite number; a distance (euclidean) or a BM25 / fused score cannot be negative."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{what} must be a finite number, not {value!r}")
    if distance_metric and value < 0:
        raise ValidationError(f"{what} must be >= 0 here (a distance or a score that is never negative), "
                              f"not {value!r}")
    return float(value)


def check_request_oversampling(value: object) -> float | None:
    """None (the collection's setting), or a number from 1 to 100."""
    return None if value is None else check_oversampling(value, "oversampling")


def group_key(value: str | int) -> tuple[str, Any]:
    """A group's key: (type name, value), so that 1 and "1" stay apart."""
    return type(value).__name__, value


def _group_keys(value: Any) -> list[tuple[str, Any]]:
    """The groups a metadata value puts its row in: a string or an integer (not a bool), or each
    string of a list."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return [group_key(value)]
    if isinstance(value, list):
        return [group_key(v) for v in dict.fromkeys(v for v in value if isinstance(v, str))]
    return []


def check_groups(group_by: object, limit: object, group_size: object, max_k: int) -> None:
    """search_groups' own arguments (the search's are checked by the search)."""
    if not isinstance(group_by, str) or not group_by:
        raise ValidationError(f"group_by must be a metadata field name (a non-empty string), not {group_by!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_k:
        raise ValidationError(f"limit (groups) must be an integer from 1 to {max_k}, not {limit!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValidationError(f"group_size must be an integer >= 1, not {group_size!r}")
    if limit * group_size > max_k:  # the hits answered, at most
        raise ValidationError(f"limit x group_size is {limit * group_size}, over the server's max_k limit "
                              f"of {max_k}")


def check_recommend(positive: object, negative: object, strategy: object, k: object, max_k: int) -> None:
    """recommend's own arguments, before any example is looked up."""
    if strategy not in STRATEGIES:
        raise ValidationError(f"strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    check_k(k, max_k)
    if isinstance(positive, str | bytes) or not isinstance(positive, Sequence | np.ndarray) or len(positive) == 0:
        raise ValidationError("positive needs at least one example (an id or a vector)")
    if isinstance(negative, str | bytes) or not isinstance(negative, Sequence | np.ndarray):
        raise ValidationError("negative must be a list of examples (ids or vectors)")


def example_vectors(examples: Sequence[Any], what: str, get_many: Callable[..., list[dict[str, Any]]],
                    collection: str, vector: Callable[[Any], Any] = lambda e: e, using: str | None = None) -> list[Any]:
    """The examples with each id replaced by its record's vector (looked up with ``get_many``: a collection's
    or a cluster's; ``using``: its named vector of that name) and each vector by ``vector(it)`` (a check), in
    order: the first unknown id is a VectorNotFoundError naming it, unless a bad vector comes before it."""
    ids = [e for e in examples if isinstance(e, str)]
    records = get_many(ids, include_vectors=True) if ids else []
    found = {r["id"]: r["vector"] if using is None else _named_of(r, using, what, collection) for r in records}
    out = []
    for e in examples:
        if isinstance(e, str) and e not in found:
            raise VectorNotFoundError(f"{what} example id {e!r} not found in collection {collection!r}")
        out.append(found[e] if isinstance(e, str) else vector(e))
    return out


def _named_of(record: dict[str, Any], using: str, what: str, collection: str) -> Any:
    """The example record's named vector ``using``; a record without it (a peer still on schema v3 during a
    rolling upgrade answering get_many) is a ValidationError naming the id and the vector, not a KeyError."""
    named = record.get("named_vectors") or {}
    if using not in named:
        raise ValidationError(f"{what} example id {record['id']!r} in collection {collection!r} came back without "
                              f"its named vector {using!r}")
    return named[using]


PARTS = ("vector", "text", "sparse")  # a hybrid query's parts, in the order of its weights


def check_sparse_part(sparse: Any) -> tuple[str, Any, Any]:
    """A hybrid query's sparse part ``{"name", "indices", "values"}`` as (name, indices, values); the values
    themselves are checked by the sparse search (proximadb/storage/sparse_search.py)."""
    if not isinstance(sparse, Mapping) or set(sparse) != {"name", "indices", "values"}:
        raise ValidationError("the sparse part must be an object {\"name\", \"indices\", \"values\"}, not "
                              f"{sparse!r:.120}")
    return sparse["name"], sparse["indices"], sparse["values"]


def part_depths(depth: Any, present: Sequence[str], k: int, max_k: int) -> dict[str, int]:
    """Hits taken from each part: ``depth`` an integer for every part, or ``{part: n}`` (a part left out: the
    default max(k, 100)); each from 1 to ``max_k``."""
    default = max(k, 100)
    if isinstance(depth, Mapping):
        unknown = set(depth) - set(present)
        if unknown:
            raise ValidationError(f"depth names part(s) not in the request: {', '.join(sorted(map(str, unknown)))}"
                                  f" (parts given: {', '.join(present)})")
        depths = {part: depth.get(part, default) for part in present}
    else:
        depths = {part: default if depth is None else depth for part in present}
    for part, n in depths.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_k:
            raise ValidationError(f"depth of the {part} part must be an integer from 1 to {max_k}, not {n!r}")
    return depths


class HybridQuery:
    """``hybrid_search`` on top of a collection's ``search``, ``search_text`` and ``search_sparse``: a local
    Collection's, and a cluster collection's (proximadb/cluster/backend.py, whose searches each fan out to
    every shard)."""

    options: Any
    search: Callable[..., list[dict[str, Any]]]
    search_text: Callable[..., list[dict[str, Any]]]
    search_sparse: Callable[..., list[dict[str, Any]]]

    def hybrid_search(self, vector: Any = None, text: str | None = None, k: int = 10, *, sparse: Any = None,
                      filter: dict[str, Any] | str | None = None, fusion: str = "rrf",
                      weights: Sequence[float] | None = None, rrf_k: float = 60.0, depth: Any = None,
                      ef: int | None = None, include_metadata: bool = True, analyzer: Any = None,
                      score_threshold: float | None = None, using: str | None = None) -> list[dict[str, Any]]:
        """Up to three searches fused by ``fusion`` ("rrf", "dbsf", "relative_score"; proximadb/fusion.py): a
        vector search (``vector``), a BM25 search (``text``) and a sparse search (``sparse``: ``{"name",
        "indices", "values"}``), those given (at least one), each for its top ``depth`` (an integer for each
        part, or ``{"vector"|"text"|"sparse": n}``; default max(k, 100)), all with the same filter.
        ``weights``: one per part given, in the order [vector, text, sparse]. ``score_threshold``: only fused
        scores >= it (fused scores are never negative, nor may it be). ``using``: the vector part searches that
        named vector (passed on only when given: a search without the keyword keeps working)."""
        max_k = self.options.limits.max_k
        check_k(k, max_k)
        threshold = check_score_threshold(score_threshold, distance_metric=True)
        present = [part for part, given in zip(PARTS, (vector, text, sparse), strict=True) if given is not None]
        if not present:
            raise ValidationError("hybrid_search needs at least one part: vector, text or sparse (none given)")
        if weights is not None and (isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray)
                                    or len(weights) != len(present)):
            raise ValidationError(f"weights: one per part given, in the order [{', '.join(present)}]; got "
                                  f"{weights!r}")
        depths = part_depths(depth, present, k, max_k)
        ranked = []
        if vector is not None:
            named = {} if using is None else {"using": using}
            ranked.append(self.search(vector, depths["vector"], filter=filter, ef=ef,
                                      include_metadata=include_metadata, **named))
        if text is not None:
            ranked.append(self.search_text(text, depths["text"], filter=filter, include_metadata=include_metadata,
                                           analyzer=analyzer))
        if sparse is not None:
            name, indices, values = check_sparse_part(sparse)
            ranked.append(self.search_sparse(name, indices, values, depths["sparse"], filter=filter,
                                             include_metadata=include_metadata))
        fused = fuse_hits(ranked, k, fusion, None if weights is None else [float(w) for w in weights], rrf_k)
        return fused if threshold is None else [h for h in fused if h["score"] >= threshold]


def fuse_hits(parts: Sequence[list[dict[str, Any]]], k: int, fusion: str, weights: list[float] | None,
              rrf_k: float) -> list[dict[str, Any]]:
    """The ranked lists fused; each hit keeps the fields of its first appearance, its score the fused one."""
    by_id: dict[Any, dict[str, Any]] = {}
    for part in parts:
        for hit in part:
            by_id.setdefault(hit["id"], hit)
    ranked = [[(h["id"], float(h["score"])) for h in part] for part in parts]
    fused = fuse(fusion, ranked, weights=weights, k=rrf_k, limit=k)
    out = []
    for hit_id, score in fused:
        hit = {key: value for key, value in by_id[hit_id].items() if key != "distance"}
        hit["score"] = score
        out.append(hit)
    return out


class QueryShapesPath(TextSearchPath, HybridQuery):
    """search_groups and recommend (public here; the facade's search_batch checks and runs the rest)."""

    get_many: Callable[..., list[dict[str, Any]]]  # the facade's (collection_reads.py's lookups)

    def _check_search_extras(self, score_threshold: object, oversampling: object,
                             using: str | None = None) -> tuple[float | None, float | None]:
        """``using``: a named vector whose metric the threshold is read by (None: the default vector's)."""
        metric = self._metric if using is None else named_search.resolve(self.config, using)[2]
        return (check_score_threshold(score_threshold, distance_metric=metric == "l2"),
                check_request_oversampling(oversampling))

    def _row_cap(self) -> int:
        """Rows that could match at most: every row of every part (deleted ones included)."""
        with self._request_lock():
            return (sum(s.rows for s in self.segments) + self.memtable.snapshot().rows
                    + sum(m.snapshot().rows for m in self.sealed))

    def search_groups(
        self, vector: Any, group_by: str, *, limit: int = 10, group_size: int = 1,
        filter: dict[str, Any] | str | None = None, score_threshold: float | None = None,
        include_vectors: bool = False, include_metadata: bool = True, exact: bool | None = None,
        ef: int | None = None, nprobe: int | None = None, oversampling: float | None = None,
        using: str | None = None,
    ) -> list[dict[str, Any]]:
        """Hits grouped by ``group_by``'s value: ``[{"value", "hits": [...]}]``, groups by best hit (module doc).
        ``using``: search a named vector (as Collection.search)."""
        check_groups(group_by, limit, group_size, self.options.limits.max_k)
        threshold, over = self._check_search_extras(score_threshold, oversampling, using)
        ef, nprobe = check_search_knob("ef", ef), check_search_knob("nprobe", nprobe)
        queries = self._queries(vector, one=True, using=using)
        user = compile_filter(filter)  # checked on its own: its errors name the request's filter
        has_field: dict[str, Any] = {group_by: {"$exists": True}}
        flt = compile_filter(has_field if user is None else {"$and": [user.spec, has_field]})
        cap = max(self._row_cap(), 1)
        k = min(limit * group_size, cap)
        while True:
            hits = self._search(queries, k, flt, include_vectors=include_vectors, include_metadata=True,
                                exact=exact, ef=ef, nprobe=nprobe, score_threshold=threshold,
                                oversampling=over, using=using)[0]
            groups = _grouped(hits, group_by, limit, group_size)
            full = len(groups) == limit and all(len(g["hits"]) == group_size for g in groups)
            if full or len(hits) < k or k >= cap:
                break
            k = min(k * WIDEN, cap)
        if not include_metadata:
            for group in groups:
                for hit in group["hits"]:
                    hit.pop("metadata", None)
        return groups

    def recommend(
        self, positive: Sequence[Any], negative: Sequence[Any] = (), *, k: int = 10,
        strategy: str = "average_vector", filter: dict[str, Any] | str | None = None,
        score_threshold: float | None = None, include_vectors: bool = False, include_metadata: bool = True,
        exact: bool | None = None, ef: int | None = None, nprobe: int | None = None, using: str | None = None,
    ) -> list[dict[str, Any]]:
        """Hits like the positive examples and unlike the negative ones, best first (module doc). ``using``: a
        named vector: the examples' vectors of that name (an id: its record's), searched and scored by it."""
        check_recommend(positive, negative, strategy, k, self.options.limits.max_k)
        ef, nprobe = check_search_knob("ef", ef), check_search_knob("nprobe", nprobe)
        metric = self._space(using)[1]
        flt = compile_filter(filter)
        pos, pos_ids = self._examples(positive, "positive", using)
        neg, neg_ids = self._examples(negative, "negative", using)
        excluded = set(pos_ids) | set(neg_ids)
        if strategy == "average_vector":
            threshold = check_score_threshold(score_threshold, distance_metric=metric == "l2")
            avg = pos.mean(axis=0, dtype=np.float64)
            query = avg if len(neg) == 0 else 2 * avg - neg.mean(axis=0, dtype=np.float64)
            queries = self._queries(query.astype(np.float32), one=True, using=using)
            hits = self._search(queries, k + len(excluded), flt, include_vectors=include_vectors,
                                include_metadata=include_metadata, exact=exact, ef=ef, nprobe=nprobe,
                                score_threshold=threshold, using=using)[0]
            return [h for h in hits if h["id"] not in excluded][:k]
        threshold = check_score_threshold(score_threshold, distance_metric=False)
        return self._best_score(pos, neg, excluded, k, flt, threshold, include_vectors, include_metadata,
                                exact, ef, nprobe, using)

    # ------------------------------------------------------------------ helpers
    def _space(self, using: str | None) -> tuple[int, KernelMetric]:
        """(dimension, kernel metric) of the vector searched: the default one, or the named vector ``using``
        (ValidationError when the collection declares no such name)."""
        if using is None:
            return self.dim, self._metric
        _, dim, metric = named_search.resolve(self.config, using)
        return dim, metric

    def _queries(self, vector: Any, *, one: bool, using: str | None = None) -> np.ndarray:
        dim, metric = self._space(using)
        if using is not None:
            named_search.check_query_dim(vector, using, dim)
        queries = query_matrix(vector, dim, cosine=metric == "cosine")
        if one and queries.shape[0] != 1:
            raise ValidationError(f"this search takes one query vector, got {queries.shape[0]}")
        return distance.normalize_rows(queries) if metric == "cosine" else queries

    def _examples(self, examples: Sequence[Any], what: str,
                  using: str | None = None) -> tuple[np.ndarray, list[str]]:
        """The examples as a (n, dim) float32 matrix (cosine: normalised) and the ids among them."""
        dim, metric = self._space(using)
        ids = [e for e in examples if isinstance(e, str)]
        rows = [np.asarray(e, dtype=np.float32) for e in example_vectors(
            examples, what, self.get_many, self.config.name, lambda e: self._queries(e, one=True, using=using)[0],
            using)]
        if not rows:
            return np.zeros((0, dim), dtype=np.float32), ids
        matrix = np.stack(rows).astype(np.float32)
        return (distance.normalize_rows(matrix) if metric == "cosine" else matrix), ids

    def _similarity(self, vectors: np.ndarray, examples: np.ndarray,
                    metric: KernelMetric | None = None) -> np.ndarray:
        """(candidates, examples) similarities as the hits' score: cosine, inner product, 1/(1+l2)."""
        a, b = vectors.astype(np.float64), examples.astype(np.float64)
        metric = metric or self._metric
        if metric == "l2":
            sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
            return 1.0 / (1.0 + np.sqrt(np.maximum(sq, 0.0)))
        if metric == "cosine":
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
        return a @ b.T

    def _best_score(self, pos: np.ndarray, neg: np.ndarray, excluded: set[str], k: int, flt: Any,
                    threshold: float | None, include_vectors: bool, include_metadata: bool,
                    exact: bool | None, ef: int | None, nprobe: int | None,
                    using: str | None = None) -> list[dict[str, Any]]:
        cap = max(self._row_cap(), 1)
        n = min(k + len(excluded), cap)
        metric = self._space(using)[1]

        def similarity(vectors: np.ndarray, examples: np.ndarray) -> np.ndarray:
            return self._similarity(vectors, examples, metric)

        while True:
            per_positive = self._search(pos, n, flt, include_vectors=True, include_metadata=include_metadata,
                                        exact=exact, ef=ef, nprobe=nprobe, using=using)
            candidates: dict[str, dict[str, Any]] = {}
            for hits in per_positive:
                for hit in hits:
                    if hit["id"] not in excluded:
                        candidates.setdefault(hit["id"], hit)
            scored = _scored(list(candidates.values()), similarity, pos, neg, using)
            exhausted = any(len(hits) < n for hits in per_positive) or n >= cap
            bound = max([0.0] + [float(hits[-1]["score"]) for hits in per_positive if hits])
            if exhausted or (len(scored) >= k and scored[k - 1][0] >= bound):
                break
            n = min(n * WIDEN, cap)
        out = []
        for score, hit in scored[:k]:
            if threshold is not None and score < threshold:
                break
            kept = {key: v for key, v in hit.items() if key not in ("distance", "vector", "named_vectors")}
            kept["score"] = score
            if include_vectors:
                kept["vector"] = hit["vector"]
                if "named_vectors" in hit:
                    kept["named_vectors"] = hit["named_vectors"]
            out.append(kept)
        return out


def _scored(hits: list[dict[str, Any]], similarity: Any, pos: np.ndarray,
            neg: np.ndarray, using: str | None = None) -> list[tuple[float, dict[str, Any]]]:
    """Qdrant's best score of each candidate (by its vector, or its named vector ``using``), best first (ties
    by id)."""
    if not hits:
        return []
    vectors = np.stack([h["vector"] if using is None else h["named_vectors"][using] for h in hits])
    best_pos = similarity(vectors, pos).max(axis=1)
    if len(neg):
        best_neg = similarity(vectors, neg).max(axis=1)
        score = np.where(best_pos > best_neg, best_pos, -(best_neg ** 2))
    else:
        score = best_pos
    out = [(float(s), h) for s, h in zip(score.tolist(), hits, strict=True)]
    out.sort(key=lambda item: (-item[0], item[1]["id"]))
    return out


def _grouped(hits: list[dict[str, Any]], field: str, limit: int, size: int) -> list[dict[str, Any]]:
    """The first ``limit`` groups by best hit, each with its first ``size`` hits (hits are best first)."""
    groups: dict[tuple[str, Any], dict[str, Any]] = {}
    for hit in hits:
        for key in _group_keys((hit.get("metadata") or {}).get(field)):
            group = groups.get(key)
            if group is None:
                if len(groups) == limit:
                    continue
                group = groups[key] = {"value": key[1], "hits": []}
            if len(group["hits"]) < size:
                group["hits"].append(dict(hit))
    return list(groups.values())
