"""Typed requests of the query shapes built on search: ``SearchGroups`` and ``Recommend``
(``Collection.search_groups`` / ``Collection.recommend``, proximadb/storage/query_shapes.py).

One JSON shape for both protocols: the REST body of ``POST /collections/{c}/search_groups`` and
``/recommend``, and the ``request_json`` of gRPC's ``JsonSearchRequest``::

    search_groups: {vector, group_by, limit?=10, group_size?=1, filter?, score_threshold?,
                    include_vectors?, include_metadata?, exact?, ef?, nprobe?, oversampling?, consistency?, using?}
    recommend:     {positive: [id | vector, ...], negative?: [...], k?=10,
                    strategy?: "average_vector" | "best_score", filter?, score_threshold?,
                    include_vectors?, include_metadata?, exact?, ef?, nprobe?, consistency?, using?}

``using`` (schema v4 named vectors) names the vector searched (and, for recommend, the vector of the
example ids); absent or null: the default vector.

``consistency`` (strong | bounded | session | eventual; absent: bounded) is the read's consistency level
in cluster mode (:mod:`proximadb.consistency`); one node accepts it (a bad level is refused) and meets it.

Shape checks here (ValidationError naming the field); value checks that need the collection
(dimension, ``max_k``, the threshold's sign per metric, unknown example ids) are the engine's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from proximadb.consistency import parse_level
from proximadb.errors import ValidationError
from proximadb.service.requests import Filter, check_keys, check_using, optional_bool, optional_number
from proximadb.storage.query_shapes import STRATEGIES

_COMMON = {"filter", "score_threshold", "include_vectors", "include_metadata", "exact", "ef", "nprobe",
           "consistency", "using"}
_GROUP_KEYS = _COMMON | {"vector", "group_by", "limit", "group_size", "oversampling"}
_RECOMMEND_KEYS = _COMMON | {"positive", "negative", "k", "strategy"}


def _body(body: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError(f"{what} body must be a JSON object")
    check_keys(body, allowed, what)
    return body


def _numbers(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value))


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name} must be an integer >= 1, not {value!r}")


def _knobs(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"filter": body.get("filter"), "score_threshold": body.get("score_threshold"),
                           "include_vectors": optional_bool(body, "include_vectors", False),
                           "include_metadata": optional_bool(body, "include_metadata", True),
                           "exact": optional_bool(body, "exact", False), "consistency": body.get("consistency"),
                           "using": body.get("using")}
    for knob in ("ef", "nprobe"):
        if body.get(knob) is not None:
            _positive_int(body[knob], knob)
        out[knob] = body.get(knob)
    return out


@dataclass(frozen=True, slots=True)
class SearchGroups:
    """Qdrant's search_groups: ``limit`` groups of at most ``group_size`` hits by ``group_by``'s value."""

    vector: Any
    group_by: Any
    limit: Any = 10
    group_size: Any = 1
    filter: Filter = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_metadata: bool = True
    exact: bool = False
    ef: int | None = None
    nprobe: int | None = None
    oversampling: float | None = None
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)
    using: str | None = None  # a named vector's name; None: the default vector

    def __post_init__(self) -> None:
        parse_level(self.consistency)
        check_using(self.using)
        if not _numbers(self.vector):
            raise ValidationError("search_groups needs 'vector': a non-empty list of numbers")
        if not isinstance(self.group_by, str) or not self.group_by:
            raise ValidationError("group_by must be a metadata field name (a non-empty string)")
        _positive_int(self.group_size, "group_size")
        optional_number(self.score_threshold, "score_threshold")
        optional_number(self.oversampling, "oversampling")

    @classmethod
    def from_json(cls, body: Any) -> SearchGroups:
        body = _body(body, _GROUP_KEYS, "search_groups")
        if "group_by" not in body:
            raise ValidationError("search_groups needs 'group_by': a metadata field name")
        return cls(body.get("vector"), body["group_by"], body.get("limit", 10), body.get("group_size", 1),
                   oversampling=body.get("oversampling"), **_knobs(body))

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def options(self) -> dict[str, Any]:
        """The engine's keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("vector", "group_by", "consistency")
                and not (f.name == "using" and self.using is None)}


@dataclass(frozen=True, slots=True)
class Recommend:
    """Records like the ``positive`` examples and unlike the ``negative`` ones (ids or vectors)."""

    positive: Any
    negative: Any = ()
    k: Any = 10
    strategy: Any = "average_vector"
    filter: Filter = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_metadata: bool = True
    exact: bool = False
    ef: int | None = None
    nprobe: int | None = None
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)
    using: str | None = None  # a named vector's name; None: the default vector

    def __post_init__(self) -> None:
        parse_level(self.consistency)
        check_using(self.using)
        for name in ("positive", "negative"):
            examples = getattr(self, name)
            if not isinstance(examples, list | tuple):
                raise ValidationError(f"{name} must be a list of examples (ids or vectors)")
            for e in examples:
                if not isinstance(e, str) and not _numbers(e):
                    raise ValidationError(f"each {name} example must be an id (a string) or a vector "
                                          f"(a non-empty list of numbers), not {e!r}")
        if not self.positive:
            raise ValidationError("positive needs at least one example (an id or a vector)")
        if self.strategy not in STRATEGIES:
            raise ValidationError(f"strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        optional_number(self.score_threshold, "score_threshold")

    @classmethod
    def from_json(cls, body: Any) -> Recommend:
        body = _body(body, _RECOMMEND_KEYS, "recommend")
        if "positive" not in body:
            raise ValidationError("recommend needs 'positive': a non-empty list of ids or vectors")
        return cls(body["positive"], body.get("negative") or [], body.get("k", 10),
                   body.get("strategy", "average_vector"), **_knobs(body))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["negative"] = list(self.negative)
        return out

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("positive", "negative", "consistency")
                and not (f.name == "using" and self.using is None)}


__all__ = ["Recommend", "SearchGroups"]
