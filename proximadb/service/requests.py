"""Typed requests: what each operation of :class:`~proximadb.service.unified.UnifiedAvroService` takes.

Every adapter parses its wire request into one of these frozen objects and the service takes
only them, so the shape checks live in one place:

* REST: ``Request.from_json(body)`` checks a JSON body (unknown fields, missing fields, types of
  flags) and raises :class:`~proximadb.errors.ValidationError` naming what is wrong;
* gRPC: ``proximadb/api/grpc/convert.py`` builds the same objects from the protobuf messages
  (which cannot carry unknown fields or wrong types);
* the constructors check what both share (``ids`` is a list of strings, a record is an object
  with a numeric ``vector``, ...).

Value checks that need the collection or the server's limits (dimension, ``k`` against
``max_k``, metadata size, batch size) stay where they are, in the service and the engine. The
collection a request is about is not part of it: it comes from the path (REST) or the request
message (gRPC) and is the service method's first argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from proximadb.consistency import parse_level
from proximadb.errors import ValidationError
from proximadb.fusion import METHODS as FUSION_METHODS
from proximadb.storage.validation import check_ids
from proximadb.text.bm25 import CorpusStats

Filter = dict[str, Any] | str | None


def check_keys(body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    """Refuse fields outside ``allowed`` (the message lists what is allowed)."""
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError(
            f"unknown {what} field(s): {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})"
        )


def optional_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{key} must be true or false")
    return value


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)


def check_using(value: Any) -> str | None:
    """``using``: None (the default vector) or the name of a named vector (the engine checks it is declared)."""
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"using must be the name of a named vector (a string) or null, not {value!r:.80}")
    return value


def _check_id_list(ids: Any) -> list[str]:
    if not isinstance(ids, list):
        raise ValidationError("'ids' must be a list of strings")
    return ids


# ---------------------------------------------------------------- collections

_COLLECTION_SETTINGS = ("distance_metric", "indexing_algorithm", "index_params", "filterable_metadata_fields",
                        "description", "default_ttl_seconds", "text_analyzer", "sparse_vectors", "vectors")
CLUSTER_SETTINGS = ("shards", "replication_factor")  # cluster mode only (serve --cluster)


@dataclass(frozen=True, slots=True)
class CreateCollection:
    """``name``, ``dimension`` and the optional settings given (the engine checks their values)."""

    name: Any
    dimension: Any
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any) -> CreateCollection:
        if not isinstance(body, Mapping):
            raise ValidationError("collection body must be a JSON object")
        unknown = set(body) - {"name", "dimension", *_COLLECTION_SETTINGS, *CLUSTER_SETTINGS}
        if unknown:
            raise ValidationError(f"unknown collection field(s): {', '.join(sorted(map(str, unknown)))}")
        if "name" not in body or "dimension" not in body:
            raise ValidationError("a collection needs 'name' and 'dimension'")
        return cls(body["name"], body["dimension"],
                   {k: v for k, v in body.items() if k in _COLLECTION_SETTINGS or k in CLUSTER_SETTINGS})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dimension": self.dimension, **self.settings}


@dataclass(frozen=True, slots=True)
class UpdateCollection:
    changes: Mapping[str, Any]

    @classmethod
    def from_json(cls, body: Any) -> UpdateCollection:
        if not isinstance(body, Mapping):
            raise ValidationError("collection update must be a JSON object")
        return cls(dict(body))


# ---------------------------------------------------------------- writes

_RECORD_FIELDS = {"id", "vector", "metadata", "timestamp", "expires_at", "sparse_vectors", "named_vectors"}


@dataclass(frozen=True, slots=True)
class InsertRecords:
    """JSON records ``{id?, vector, metadata?, timestamp?, expires_at?, sparse_vectors?, named_vectors?}``
    (``sparse_vectors``: ``{name: {"indices", "values"}}``; ``named_vectors``: ``{name: [numbers]}``, every
    name the collection declares, checked by the codec against its declaration); ``upsert`` replaces existing
    ids."""

    records: list[dict[str, Any]]
    upsert: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.records, list):
            raise ValidationError("'vectors' must be a list of records")

    def check_records(self) -> None:
        """Each record's shape (run by the service after the batch-size limit, so 413 comes first)."""
        for i, rec in enumerate(self.records):
            if not isinstance(rec, dict):
                raise ValidationError(f"record {i} must be an object")
            unknown = set(rec) - _RECORD_FIELDS
            if unknown:
                raise ValidationError(f"record {i}: unknown field(s) {', '.join(sorted(unknown))}")
            if not _is_numbers(rec.get("vector")):
                raise ValidationError(f"record {i}: 'vector' must be a list of numbers")
            sparse = rec.get("sparse_vectors")
            if sparse is not None:
                if not isinstance(sparse, dict):
                    raise ValidationError(f"record {i}: 'sparse_vectors' must be an object {{name: {{indices, "
                                          "values}}}")
                for name, vec in sparse.items():
                    _sparse_part({"name": name, **vec} if isinstance(vec, dict) else vec,
                                 f"record {i}: sparse vector {name!r}")
            named = rec.get("named_vectors")
            if named is not None:
                if not isinstance(named, dict):
                    raise ValidationError(f"record {i}: 'named_vectors' must be an object {{name: [numbers]}}")
                for name, vec in named.items():
                    if not _is_numbers(vec):
                        raise ValidationError(f"record {i}: named vector {name!r} must be a list of numbers")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> InsertRecords:
        """A batch body ``{"vectors": [...], "upsert": bool}``."""
        check_keys(body, {"vectors", "upsert"}, "batch insert")
        if "vectors" not in body:
            raise ValidationError("a batch insert needs 'vectors': a list of records")
        upsert = optional_bool(body, "upsert", False)
        return cls(body["vectors"], upsert)


@dataclass(frozen=True, slots=True)
class PutVector:
    """Replace a record by id (``vector`` given: an upsert) or only its metadata."""

    id: str
    vector: Any = None
    metadata: Any = None
    with_vector: bool = False  # the body had a 'vector' (null included: refused as a record)
    named_vectors: Any = None  # {name: [numbers]} beside 'vector' (schema v4)

    @classmethod
    def from_json(cls, id_: str, body: Mapping[str, Any]) -> PutVector:
        check_keys(body, {"vector", "metadata", "named_vectors"}, "vector")
        if "vector" not in body and "metadata" not in body:
            raise ValidationError("give 'vector' (replace the record) and/or 'metadata'")
        if "named_vectors" in body and "vector" not in body:
            raise ValidationError("'named_vectors' replace the record with 'vector': give 'vector' too")
        return cls(id_, body.get("vector"), body.get("metadata"), "vector" in body, body.get("named_vectors"))

    def record(self) -> dict[str, Any]:
        """The record the replacement writes (its named vectors: every name the collection declares)."""
        out = {"id": self.id, "vector": self.vector, "metadata": self.metadata}
        if self.named_vectors is not None:
            out["named_vectors"] = self.named_vectors
        return out


@dataclass(frozen=True, slots=True)
class UpdateMetadata:
    """Merge (``replace``: swap) one record's metadata; a None value removes a key on merge."""

    id: str
    metadata: Any
    replace: bool = False

    @classmethod
    def from_json(cls, id_: str, body: Mapping[str, Any]) -> UpdateMetadata:
        check_keys(body, {"metadata", "replace"}, "metadata update")
        if "metadata" not in body:
            raise ValidationError("a metadata update needs 'metadata': an object")
        return cls(id_, body["metadata"], optional_bool(body, "replace", False))


@dataclass(frozen=True, slots=True)
class DeleteVectors:
    """Exactly one of ``ids`` or ``filter``."""

    ids: list[str] | None = None
    filter: Filter = None

    def __post_init__(self) -> None:
        if (self.ids is None) == (self.filter is None):
            raise ValidationError("delete needs exactly one of 'ids' or 'filter'")
        if self.ids is not None:
            _check_id_list(self.ids)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeleteVectors:
        check_keys(body, {"ids", "filter"}, "delete")
        return cls(body.get("ids"), body.get("filter"))


# ---------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class GetVectors:
    """The records of ``ids`` that exist, in the order asked."""

    ids: list[str]
    include_vectors: bool = True
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)

    def __post_init__(self) -> None:
        check_ids(_check_id_list(self.ids), allow_duplicates=True)
        parse_level(self.consistency)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GetVectors:
        check_keys(body, {"ids", "include_vectors", "consistency"}, "get")
        if "ids" not in body:
            raise ValidationError("get needs 'ids': a list of strings")
        include = optional_bool(body, "include_vectors", True)
        return cls(body["ids"], include, body.get("consistency"))


@dataclass(frozen=True, slots=True)
class Scroll:
    """One page in ascending id order after ``cursor`` (the engine checks ``limit``)."""

    limit: Any = 100
    cursor: str | None = None
    filter: Filter = None
    include_vectors: bool = False
    consistency: str | None = None

    def __post_init__(self) -> None:
        if self.cursor is not None and not isinstance(self.cursor, str):
            raise ValidationError("cursor must be a string")
        parse_level(self.consistency)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Scroll:
        check_keys(body, {"limit", "cursor", "filter", "include_vectors", "consistency"}, "scroll")
        include = optional_bool(body, "include_vectors", False)
        return cls(body.get("limit", 100), body.get("cursor"), body.get("filter"), include, body.get("consistency"))


@dataclass(frozen=True, slots=True)
class Count:
    filter: Filter = None
    consistency: str | None = None

    def __post_init__(self) -> None:
        parse_level(self.consistency)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Count:
        check_keys(body, {"filter", "consistency"}, "count")
        return cls(body.get("filter"), body.get("consistency"))


_SEARCH_KEYS = {"vector", "queries", "vectors", "k", "top_k", "filter", "include_vectors", "include_metadata",
                "ef", "nprobe", "exact", "score_threshold", "oversampling", "consistency", "using"}


def optional_number(value: Any, name: str) -> float | None:
    """None, or a finite JSON number (the engine checks the range: storage/query_shapes.py)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number or null, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class SearchParams:
    """Top-``k`` per query vector; the engine checks ``k``, the vectors' dimension and values."""

    queries: Any
    k: Any = 10
    filter: Filter = None
    include_vectors: bool = False
    include_metadata: bool = True
    ef: int | None = None
    nprobe: int | None = None
    exact: bool = False
    score_threshold: float | None = None  # distance <= it (euclidean), score >= it (cosine, dot_product)
    oversampling: float | None = None  # a quantized collection's rescoring factor for this request
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)
    using: str | None = None  # a named vector's name (schema v4); None: the default vector

    def __post_init__(self) -> None:
        optional_number(self.score_threshold, "score_threshold")
        optional_number(self.oversampling, "oversampling")
        parse_level(self.consistency)
        check_using(self.using)

    @classmethod
    def from_json(cls, body: Any, *, batch: bool) -> SearchParams:
        """From a JSON body: ``vector`` for one query, ``queries`` (or ``vectors``) for a batch."""
        if not isinstance(body, dict):
            raise ValidationError("search body must be a JSON object")
        unknown = set(body) - _SEARCH_KEYS
        if unknown:
            raise ValidationError(f"unknown search field(s): {', '.join(sorted(unknown))}")
        if batch:
            queries = body.get("queries", body.get("vectors"))
            if not isinstance(queries, list) or not queries:
                raise ValidationError("batch search needs 'queries': a non-empty list of vectors")
        else:
            vector = body.get("vector")
            if not isinstance(vector, list) or not vector:
                raise ValidationError("search needs 'vector': a non-empty list of numbers")
            queries = [vector]
        for q in queries:
            if not _is_numbers(q):
                raise ValidationError("each query vector must be a list of numbers")
        flags = {}
        for flag in ("include_vectors", "include_metadata", "exact"):
            if flag in body:
                if not isinstance(body[flag], bool):
                    raise ValidationError(f"{flag} must be true or false")
                flags[flag] = body[flag]
        for opt in ("ef", "nprobe"):
            value = body.get(opt)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValidationError(f"{opt} must be a positive integer")
            flags[opt] = value
        for opt in ("score_threshold", "oversampling"):
            flags[opt] = optional_number(body.get(opt), opt)
        return cls(queries=queries, k=body.get("k", body.get("top_k", 10)), filter=body.get("filter"),
                   consistency=body.get("consistency"), using=check_using(body.get("using")), **flags)


# ---------------------------------------------------------------- text, sparse and hybrid search

_TEXT_KEYS = {"text", "k", "filter", "include_metadata", "score_threshold", "consistency"}
_HYBRID_KEYS = _TEXT_KEYS | {"vector", "sparse", "fusion", "weights", "rrf_k", "depth", "ef", "using"}


def _text_body(body: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError(f"{what} body must be a JSON object")
    check_keys(body, allowed, what)
    if "text" not in body:
        raise ValidationError(f"{what} needs 'text': a string")
    return body


def _positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(f"{name} must be a positive integer, not {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class SearchText:
    """BM25 top-``k`` over the records' ``document`` text; the engine checks ``k`` against ``max_k``."""

    text: Any
    k: Any = 10
    filter: Filter = None
    include_metadata: bool = True
    score_threshold: float | None = None  # BM25 score >= it
    # Cluster mode's fan-out to a shard address only (proximadb/cluster/queries.py): True asks for the
    # shard's BM25 statistics of the text's terms, CorpusStats scores with the whole collection's.
    corpus_stats: CorpusStats | bool | None = None
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValidationError(f"text must be a string, got {type(self.text).__name__}")
        if not isinstance(self.include_metadata, bool):
            raise ValidationError("include_metadata must be true or false")
        optional_number(self.score_threshold, "score_threshold")
        parse_level(self.consistency)
        _check_corpus_stats(self.corpus_stats)

    @classmethod
    def from_json(cls, body: Any) -> SearchText:
        body, stats = _corpus_stats(body)
        body = _text_body(body, _TEXT_KEYS, "search_text")
        return cls(body["text"], body.get("k", 10), body.get("filter"), optional_bool(body, "include_metadata", True),
                   body.get("score_threshold"), stats, body.get("consistency"))

    def to_json(self) -> dict[str, Any]:
        out = {"text": self.text, "k": self.k, "filter": self.filter, "include_metadata": self.include_metadata,
               "score_threshold": self.score_threshold, "consistency": self.consistency}
        if self.corpus_stats is not None:
            out["corpus_stats"] = _corpus_stats_json(self.corpus_stats)
        return out


def _corpus_stats(body: Any) -> tuple[Any, CorpusStats | bool | None]:
    """``body`` without its ``corpus_stats`` field, and that field (None, also for null; True; or a
    CorpusStats): a cluster's fan-out to a shard address only (cluster/queries.py; the service refuses it
    elsewhere), so not listed among a body's public keys."""
    if not isinstance(body, Mapping) or "corpus_stats" not in body:
        return body, None
    stats = body["corpus_stats"]
    rest = {key: value for key, value in body.items() if key != "corpus_stats"}
    return rest, stats if stats is None or stats is True else CorpusStats.from_json(stats)


def _corpus_stats_json(stats: CorpusStats | bool) -> Any:
    return stats.to_json() if isinstance(stats, CorpusStats) else True


def _check_corpus_stats(stats: object) -> None:
    if stats is not None and stats is not True and not isinstance(stats, CorpusStats):
        raise ValidationError("corpus_stats must be true or a CorpusStats")


def _sparse_part(value: Any, what: str) -> dict[str, Any]:
    """A sparse query ``{"name", "indices", "values"}``: its shape (the engine checks the name against the
    collection's, the indices' order and range, the values' finiteness and the lengths)."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be an object {{\"name\", \"indices\", \"values\"}}, not {value!r:.80}")
    check_keys(value, {"name", "indices", "values"}, what)
    for key in ("name", "indices", "values"):
        if key not in value:
            raise ValidationError(f"{what} needs '{key}'")
    if not isinstance(value["name"], str):
        raise ValidationError(f"{what}: name must be a string (a sparse vector name of the collection)")
    indices, values = value["indices"], value["values"]
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise ValidationError(f"{what}: indices must be a list of integers")
    if not _is_numbers(values):
        raise ValidationError(f"{what}: values must be a list of numbers")
    return {"name": value["name"], "indices": indices, "values": values}


_SPARSE_KEYS = {"name", "indices", "values", "k", "filter", "include_metadata", "score_threshold", "consistency"}


@dataclass(frozen=True, slots=True)
class SearchSparse:
    """Top-``k`` by dot product with the sparse query ``indices``/``values`` over the named sparse vectors."""

    name: Any
    indices: Any
    values: Any
    k: Any = 10
    filter: Filter = None
    include_metadata: bool = True
    score_threshold: float | None = None  # dot product >= it
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)
    # Cluster mode's fan-out to a shard address only (proximadb/cluster/queries.py), for a name with the
    # "idf" modifier: True asks for the shard's statistics of the query's indices, CorpusStats weighs the
    # query with the whole collection's.
    corpus_stats: CorpusStats | bool | None = None

    def __post_init__(self) -> None:
        _sparse_part({"name": self.name, "indices": self.indices, "values": self.values}, "search_sparse")
        if not isinstance(self.include_metadata, bool):
            raise ValidationError("include_metadata must be true or false")
        optional_number(self.score_threshold, "score_threshold")
        parse_level(self.consistency)
        _check_corpus_stats(self.corpus_stats)

    @classmethod
    def from_json(cls, body: Any) -> SearchSparse:
        body, stats = _corpus_stats(body)
        if not isinstance(body, Mapping):
            raise ValidationError("search_sparse body must be a JSON object")
        check_keys(body, _SPARSE_KEYS, "search_sparse")
        part = _sparse_part({key: body[key] for key in ("name", "indices", "values") if key in body},
                            "search_sparse")
        return cls(part["name"], part["indices"], part["values"], body.get("k", 10), body.get("filter"),
                   optional_bool(body, "include_metadata", True), body.get("score_threshold"),
                   body.get("consistency"), stats)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "corpus_stats"}
        if self.corpus_stats is not None:
            out["corpus_stats"] = _corpus_stats_json(self.corpus_stats)
        return out


_HYBRID_PARTS = ("vector", "text", "sparse")


@dataclass(frozen=True, slots=True)
class HybridSearch:
    """Up to three searches fused: ``vector`` (dense), ``text`` (BM25), ``sparse`` ({name, indices, values}),
    at least one (``fusion``: rrf, dbsf, relative_score; ``weights``: one per part given, in that order;
    ``depth``: an integer for every part or ``{part: n}``; ``using``: the named vector the ``vector`` part
    searches, None: the default one)."""

    vector: Any = None
    text: Any = None
    k: Any = 10
    filter: Filter = None
    fusion: Any = "rrf"
    weights: Any = None
    rrf_k: Any = 60.0
    depth: Any = None
    ef: Any = None
    include_metadata: bool = True
    score_threshold: float | None = None  # fused score >= it
    consistency: str | None = None  # proximadb.consistency.LEVELS; None: the default (bounded)
    sparse: Any = None
    using: str | None = None  # the named vector of the vector part; None: the default vector

    def __post_init__(self) -> None:
        optional_number(self.score_threshold, "score_threshold")
        parse_level(self.consistency)
        check_using(self.using)
        if self.using is not None and self.vector is None:
            raise ValidationError("hybrid_search: 'using' names the vector searched by the 'vector' part, which is "
                                  "not given")
        present = [p for p, v in zip(_HYBRID_PARTS, (self.vector, self.text, self.sparse), strict=True)
                   if v is not None]
        if not present:
            raise ValidationError("hybrid_search needs at least one part: 'vector', 'text' or 'sparse' (none given)")
        if self.vector is not None and (not isinstance(self.vector, list) or not self.vector
                                        or not _is_numbers(self.vector)):
            raise ValidationError("hybrid_search: 'vector' must be a non-empty list of numbers")
        if self.text is not None and not isinstance(self.text, str):
            raise ValidationError(f"text must be a string, got {type(self.text).__name__}")
        if self.sparse is not None:
            _sparse_part(self.sparse, "hybrid_search's sparse part")
        if not isinstance(self.fusion, str) or self.fusion not in FUSION_METHODS:
            raise ValidationError(f"fusion {self.fusion!r}: use one of {', '.join(FUSION_METHODS)}")
        if self.weights is not None and (
            not isinstance(self.weights, list) or len(self.weights) != len(present)
            or not all(_finite(w) and w >= 0 for w in self.weights)
        ):
            raise ValidationError(f"weights must be {len(present)} finite numbers >= 0, one per part given "
                                  f"([{', '.join(present)}]), not {self.weights!r}")
        if not _finite(self.rrf_k) or self.rrf_k < 0:
            raise ValidationError(f"rrf_k must be a finite number >= 0, not {self.rrf_k!r}")
        if isinstance(self.depth, Mapping):
            unknown = set(self.depth) - set(present)
            if unknown:
                raise ValidationError(f"depth names part(s) not in the request: {', '.join(sorted(map(str, unknown)))}"
                                      f" (parts given: {', '.join(present)})")
            for part, n in self.depth.items():
                _positive_int(f"depth of the {part} part", n)
        else:
            _positive_int("depth", self.depth)
        _positive_int("ef", self.ef)
        if not isinstance(self.include_metadata, bool):
            raise ValidationError("include_metadata must be true or false")

    @classmethod
    def from_json(cls, body: Any) -> HybridSearch:
        if not isinstance(body, Mapping):
            raise ValidationError("hybrid_search body must be a JSON object")
        check_keys(body, _HYBRID_KEYS, "hybrid_search")
        return cls(
            body.get("vector"), body.get("text"), body.get("k", 10), body.get("filter"), body.get("fusion", "rrf"),
            body.get("weights"), body.get("rrf_k", 60.0), body.get("depth"), body.get("ef"),
            optional_bool(body, "include_metadata", True), body.get("score_threshold"), body.get("consistency"),
            body.get("sparse"), body.get("using"),
        )

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


__all__ = [
    "Count", "CreateCollection", "DeleteVectors", "GetVectors", "HybridSearch", "InsertRecords", "PutVector", "Scroll",
    "SearchParams", "SearchSparse", "SearchText", "UpdateCollection", "UpdateMetadata", "check_keys", "check_using",
    "optional_bool", "optional_number",
]
