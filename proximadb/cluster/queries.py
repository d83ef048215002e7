"""Cluster mode's searches beyond plain top-k: ``search_text``, ``hybrid_search``, ``search_groups`` and
``recommend`` of a :class:`~proximadb.cluster.backend.ClusterCollection`. Each answers what one node holding
every row answers (the same hits, in the same order up to equal scores, which come by id; the same scores).
Shards are read as every cluster read is (:mod:`proximadb.cluster.fanout`: one replica per shard, in parallel,
at the read's target sequence).

- **search_text** runs in two phases. BM25 weighs a term by its document frequency among the collection's
  live rows and normalises lengths by their average, so a shard scoring with its own statistics would rank
  differently from one node. Phase 1 asks every shard for its statistics of the query's terms (live rows,
  their total terms, each term's document frequency: :class:`proximadb.text.bm25.CorpusStats`, unfiltered,
  as one node counts them) and adds them up; phase 2 asks every shard for its top-k scored with the sums
  (filter and ``score_threshold`` applied inside the shard) and merges by (score desc, id). A shard is
  asked over REST with the optional ``corpus_stats`` field of ``search_text``, which only shard addresses
  take (a public caller naming a collection gets 400): ``true`` answers the shard's statistics
  ``{"rows", "total_terms", "df": {term: n}}`` instead of hits, an object of that form is the statistics
  to score with. Between the two phases a shard may apply more writes: its rows are then scored with
  statistics a few writes old (a cluster read is not one snapshot across shards).
- **search_sparse** is every shard's exact top-k by dot product (filter and ``score_threshold`` applied inside
  the shard), merged by (score desc, id): a row's score is its own vector's dot product with the query, so the
  collection's top-k is in the union of the shards' top-k. A name with the "idf" modifier
  (storage/sparse_search.py) first takes two phases as text search does: each shard's statistics of the
  query's indices (``corpus_stats: true`` on ``search_sparse``), added up, then every shard weighs the query
  with the sums (``corpus_stats`` the object); a replica never weighs by its own statistics.
- **hybrid_search** is one node's own code (:class:`proximadb.storage.query_shapes.HybridQuery`) over the
  cluster's vector search (top ``depth`` of every shard, merged), its two-phase text search and its sparse
  search (top ``depth`` each), fused by :func:`proximadb.fusion.fuse`; the searches wait for the same read
  targets, taken once (``_one_read``), as recommend's example lookup and its search do.
- **recommend**: example ids are looked up with the cluster's ``get_many`` (an unknown id: the same
  VectorNotFoundError as on one node); then every shard runs one node's recommend with the examples as
  vectors, for its top ``k + len(example ids)``, and the answers are merged (average_vector: by (distance,
  id); best_score: by (score desc, id)) with the example ids left out. Exact, because a row's score is a
  function of its own vector and the examples: the whole collection's top ``k + e`` is in the union of
  the shards' top ``k + e``, and at most ``e`` of it are examples (a shard is asked for at most ``max_k``).
- **search_groups**: every shard answers its own first ``L`` groups (one node's search_groups: each group's
  ``group_size`` best hits in that shard); the groups are merged by value (hits by (distance, id), the
  best ``group_size`` kept) and ordered by best hit. What is enough: a shard that answered fewer groups
  than asked answered all of its groups. A shard that answered all ``L`` may hold more groups, but each of
  those has only hits at least as far as ``t``, its last group's best hit. Its answer is settled when the
  merged ``limit``-th group's best hit is nearer than ``t`` (no group it left out can rank among the
  first ``limit``) and every merged group among the first ``limit`` that it did not answer already has
  ``group_size`` hits nearer than ``t`` (its hits there cannot enter). An unsettled shard is asked again
  for four times as many groups (``L`` starts at ``limit``), up to ``max_k / group_size`` groups; past that
  the request fails with ValidationError (a shard with that many groups nearer than one of the first
  ``limit``: lower ``group_size`` or raise ``max_k``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from proximadb.errors import ValidationError
from proximadb.filters import compile_filter
from proximadb.sdk import calls
from proximadb.storage import named_search
from proximadb.storage.query_shapes import (
    WIDEN,
    HybridQuery,
    check_groups,
    check_recommend,
    check_score_threshold,
    example_vectors,
    group_key,
)
from proximadb.storage.sparse_column import check_vector
from proximadb.storage.text_search import check_text
from proximadb.storage.validation import check_k, query_matrix
from proximadb.text.bm25 import CorpusStats

T = TypeVar("T")


def _nearest(hit: dict[str, Any]) -> tuple[float, str]:
    return float(hit["distance"]), str(hit["id"])


def _best(hit: dict[str, Any]) -> tuple[float, str]:
    return -float(hit["score"]), str(hit["id"])


class ClusterQueries(HybridQuery):
    """The searches of the module's documentation, for :class:`~proximadb.cluster.backend.ClusterCollection`."""

    owner: Any
    shard_map: Any
    config: Any
    _targets: Callable[[], list[int]]
    sparse_names: Callable[[list[str]], dict[str, Any]]
    search_batch: Callable[..., list[list[dict[str, Any]]]]
    get_many: Callable[..., list[dict[str, Any]]]
    _pinned: list[int] | None = None  # the read targets while _one_read() runs

    @property
    def options(self) -> Any:
        return self.owner.options

    def _every_shard(self, local: Callable[[Any, int], T], remote: Callable[[Any, str, int], T],
                     shards: list[int] | None = None, targets: list[int] | None = None) -> list[T]:
        """``local(replica, shard)`` or ``remote(client, shard address, shard)`` on one replica of each shard (of
        ``shards``, default all), in parallel, each at its read target (``targets``, default the request's
        now); the answers in shard order."""
        targets = self._targets() if targets is None else targets
        fanout = self.owner.fanout
        return fanout.each(  # type: ignore[no-any-return]
            lambda shard: fanout.on_shard(self.shard_map, shard, targets[shard], lambda c: local(c, shard),
                                          lambda client, addr: remote(client, addr, shard)),
            range(self.shard_map.shards) if shards is None else shards)

    def search(self, vector: Any, k: int = 10, **options: Any) -> list[dict[str, Any]]:
        return self.search_batch([vector] if np.ndim(vector) == 1 else vector, k, **options)[0]

    @contextmanager
    def _one_read(self) -> Iterator[None]:
        """The reads made inside wait for the same targets, taken once now (one JetStream read for strong):
        hybrid search's two searches, recommend's example lookup and search. A ClusterCollection is one
        request's (ClusterEngine.collection makes one per call), so the pin is never shared."""
        if self._pinned is not None:
            yield
            return
        self._pinned = self._targets()
        try:
            yield
        finally:
            self._pinned = None

    def hybrid_search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """One node's hybrid search (storage/query_shapes.py) over the cluster's searches, at one set of targets."""
        with self._one_read():
            return super().hybrid_search(*args, **kwargs)

    # -- text --

    def text_stats(self, text: str, targets: list[int] | None = None) -> CorpusStats:
        """The collection's BM25 statistics for ``text``'s terms: every shard's, added up (phase 1)."""
        check_text(text)
        body = {"text": text, "corpus_stats": True}
        return CorpusStats.combine(self._every_shard(
            lambda c, _: c.text_stats(text),
            lambda client, addr, _: CorpusStats.from_json(client._run(calls.single("search_text", addr, body))),
            targets=targets))

    def search_text(self, text: str, k: int = 10, *, filter: Any = None, include_metadata: bool = True,
                    analyzer: Any = None, score_threshold: float | None = None) -> list[dict[str, Any]]:
        """BM25 top-k with the whole collection's statistics (the module's documentation)."""
        check_k(k, self.options.limits.max_k)
        check_score_threshold(score_threshold, distance_metric=True)
        check_text(text)
        compile_filter(filter)  # a bad filter is refused before any shard is asked
        if analyzer is not None:
            raise ValidationError("a cluster's text search uses the collection's text_analyzer setting")
        targets = self._targets()  # both phases wait for the same entries
        stats = self.text_stats(text, targets)
        if stats.rows == 0 or not stats.df:  # no row, or no term (the analyzer left none): no hit
            return []
        body = {"text": text, "k": k, "filter": filter, "include_metadata": include_metadata,
                "score_threshold": score_threshold, "corpus_stats": stats.to_json()}
        hits = [hit for part in self._every_shard(
            lambda c, _: c.search_text(text, k, filter=filter, include_metadata=include_metadata,
                                    score_threshold=score_threshold, stats=stats),
            lambda client, addr, _: client._run(calls.single("search_text", addr, body)), targets=targets)
            for hit in part]
        return sorted(hits, key=_best)[:k]

    # -- sparse --

    def search_sparse(self, name: str, indices: Any, values: Any, k: int = 10, *, filter: Any = None,
                      include_metadata: bool = True, score_threshold: float | None = None) -> list[dict[str, Any]]:
        """Exact top-k by dot product: every shard's top-k, merged; a name with the "idf" modifier weighs
        the query with the whole collection's statistics first (the module's documentation)."""
        check_k(k, self.options.limits.max_k)
        check_score_threshold(score_threshold, distance_metric=False)
        declared = self.sparse_names([name] if isinstance(name, str) else [])
        if not isinstance(name, str) or name not in declared:  # one node's message, before any shard is asked
            known = ", ".join(repr(n) for n in declared) or "none"
            raise ValidationError(f"unknown sparse vector {name!r} (declared: {known})")
        idx, val = check_vector(indices, values, "search_sparse query")
        compile_filter(filter)
        body: dict[str, Any] = {"name": name, "indices": idx.tolist(), "values": val.tolist(), "k": k,
                                "filter": filter, "include_metadata": include_metadata,
                                "score_threshold": score_threshold}
        given: dict[str, Any] = {"filter": filter, "include_metadata": include_metadata,
                                 "score_threshold": score_threshold}
        targets = self._targets()  # both phases wait for the same entries
        if declared[name].get("modifier") == "idf":  # phase 1: the shards' statistics, added up
            stats = CorpusStats.combine(self._every_shard(
                lambda c, _: c.sparse_stats(name, idx, val),
                lambda client, addr, _: CorpusStats.from_json(client._run(calls.single(
                    "search_sparse", addr, {**body, "corpus_stats": True}))), targets=targets))
            given["stats"] = stats
            body["corpus_stats"] = stats.to_json()
        # a replica weighs only with the statistics it is sent (storage/sparse_search.py: is_shard_replica)
        hits = [hit for part in self._every_shard(
            lambda c, _: c.search_sparse(name, idx, val, k, **given),
            lambda client, addr, _: client._run(calls.single("search_sparse", addr, body)), targets=targets)
            for hit in part]
        return sorted(hits, key=_best)[:k]

    # -- recommend --

    def recommend(self, positive: Any, negative: Any = (), *, k: int = 10, strategy: str = "average_vector",
                  filter: Any = None, score_threshold: float | None = None, include_vectors: bool = False,
                  include_metadata: bool = True, exact: bool | None = None, ef: int | None = None,
                  nprobe: int | None = None, using: str | None = None) -> list[dict[str, Any]]:
        """One node's recommend on every shard with the examples as vectors, merged (the module's documentation).
        ``using``: a named vector (an id example gives its record's vector of that name)."""
        with self._one_read():
            return self._recommend(positive, negative, k, strategy, filter, score_threshold, include_vectors,
                                   include_metadata, exact, ef, nprobe, using)

    def _recommend(self, positive: Any, negative: Any, k: int, strategy: str, filter: Any,
                   score_threshold: float | None, include_vectors: bool, include_metadata: bool,
                   exact: bool | None, ef: int | None, nprobe: int | None,
                   using: str | None = None) -> list[dict[str, Any]]:
        check_recommend(positive, negative, strategy, k, self.options.limits.max_k)
        compile_filter(filter)
        dim, cosine = self.config.dimension, self.config.distance_metric == "cosine"
        if using is not None:  # one node's message (naming this collection), before any shard is asked
            _name, dim, metric = named_search.resolve(self.config, using)
            cosine = metric == "cosine"

        def vector(example: Any) -> Any:  # checked in order with the ids, as one node does
            if using is not None:
                named_search.check_query_dim(example, using, dim)
            return query_matrix(example, dim, cosine=cosine)[0]

        pos = example_vectors(positive, "positive", self.get_many, self.config.name, vector, using)
        neg = example_vectors(negative, "negative", self.get_many, self.config.name, vector, using)
        excluded = {e for e in (*positive, *negative) if isinstance(e, str)}
        options = {"filter": filter, "score_threshold": score_threshold, "include_vectors": include_vectors,
                   "include_metadata": include_metadata, "exact": exact, "ef": ef, "nprobe": nprobe,
                   "using": using}
        given = {o: v for o, v in options.items() if v is not None}
        wide = min(k + len(excluded), self.options.limits.max_k)
        hits = [hit for part in self._every_shard(
            lambda c, _: c.recommend(pos, neg, k=wide, strategy=strategy, **options),
            lambda client, addr, _: client.recommend(addr, pos, neg, wide, strategy, **given)) for hit in part]
        hits.sort(key=_nearest if strategy == "average_vector" else _best)
        return [hit for hit in hits if hit["id"] not in excluded][:k]

    # -- groups --

    def search_groups(self, vector: Any, group_by: str, *, limit: int = 10, group_size: int = 1,
                      filter: Any = None, score_threshold: float | None = None, include_vectors: bool = False,
                      include_metadata: bool = True, exact: bool | None = None, ef: int | None = None,
                      nprobe: int | None = None, oversampling: float | None = None,
                      using: str | None = None) -> list[dict[str, Any]]:
        """Every shard's groups, merged; shards whose answer is not settled asked for more (module doc).
        ``using``: a named vector searched on every shard."""
        max_k = self.options.limits.max_k
        check_groups(group_by, limit, group_size, max_k)
        compile_filter(filter)
        if using is not None:  # one node's messages (naming this collection), before any shard is asked
            named_search.check_query_dim(vector, using, named_search.resolve(self.config, using)[1])
        options = {"filter": filter, "score_threshold": score_threshold, "include_vectors": include_vectors,
                   "include_metadata": include_metadata, "exact": exact, "ef": ef, "nprobe": nprobe,
                   "oversampling": oversampling, "using": using}
        given = {o: v for o, v in options.items() if v is not None}
        shards = self.shard_map.shards
        asked = [limit] * shards
        answers: list[list[dict[str, Any]]] = [[] for _ in range(shards)]
        pending = list(range(shards))
        while True:
            for shard, groups in zip(pending, self._every_shard(
                    lambda c, s: c.search_groups(vector, group_by, limit=asked[s], group_size=group_size, **options),
                    lambda client, addr, s: client.search_groups(addr, vector, group_by, asked[s], group_size,
                                                                 **given),
                    pending), strict=True):
                answers[shard] = groups
            merged = _merged(answers, limit, group_size)
            pending = [s for s in range(shards) if not _settled(answers[s], asked[s], merged, limit, group_size)]
            if not pending:
                return merged
            for s in pending:
                if asked[s] >= max_k // group_size:
                    raise ValidationError(
                        f"search_groups: shard {s} of {self.shard_map.collection!r} has more than {asked[s]} groups "
                        f"nearer than one of the first {limit}; lower group_size or raise the server's max_k")
                asked[s] = min(asked[s] * WIDEN, max_k // group_size)


def _merged(answers: list[list[dict[str, Any]]], limit: int, size: int) -> list[dict[str, Any]]:
    """The shards' groups merged by value: each group's ``size`` nearest hits, the first ``limit`` groups by
    their nearest hit."""
    hits: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    values: dict[tuple[str, Any], Any] = {}
    for groups in answers:
        for group in groups:
            key = group_key(group["value"])
            values.setdefault(key, group["value"])
            hits.setdefault(key, []).extend(group["hits"])
    merged = [{"value": values[key], "hits": sorted(found, key=_nearest)[:size]} for key, found in hits.items()]
    merged.sort(key=lambda g: _nearest(g["hits"][0]))
    return merged[:limit]


def _settled(groups: list[dict[str, Any]], asked: int, merged: list[dict[str, Any]], limit: int,
             size: int) -> bool:
    """Whether the groups a shard left out could change ``merged`` (the module's documentation)."""
    if len(groups) < asked:
        return True  # every group of the shard is in its answer
    bound = float(groups[-1]["hits"][0]["distance"])  # every group it left out: hits at least this far
    if len(merged) < limit or float(merged[-1]["hits"][0]["distance"]) >= bound:
        return False
    answered = {group_key(g["value"]) for g in groups}
    return all(len(g["hits"]) == size and float(g["hits"][-1]["distance"]) < bound
               for g in merged if group_key(g["value"]) not in answered)
