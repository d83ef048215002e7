"""The catalog: every collection's settings, persisted as ``<data dir>/catalog.pxdb``.

A checksummed JSON document of kind ``catalog`` (layout in docfile.py),
replaced atomically on every change. Body::

    {"format": 1, "collections": [<CollectionConfig.to_dict()>, ...],
     "dropped": [<uuid of a deleted collection whose directory may still exist>, ...]}

``dropped`` (absent in catalogs written before it existed: empty) is the
proof that a directory under ``collections/`` was deleted by a committed
delete: a uuid stays in it until its directory is gone. At open, a collection
directory the catalog does not name is removed only with such proof (or a
PENDING marker, a temporary name: intents.py); anything else is quarantined,
and a missing catalog next to collection directories stops the open
(integrity.py).

A collection's files live under ``collections/<uuid>/``: the user-chosen name
is only ever a key in this document, never part of a path, so no name can
reach outside the data directory.
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION
from proximadb.errors import CorruptionError, ValidationError
from proximadb.index import quantization, registry
from proximadb.limits import MAX_NAMED_VECTORS, NAMED_VECTOR_NAME_PATTERN, SPARSE_NAME_PATTERN
from proximadb.storage.docfile import read_doc, write_doc
from proximadb.text.analyzer import Analyzer

CATALOG_NAME = "catalog.pxdb"
CATALOG_FORMAT = 1
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
METRICS = ("cosine", "euclidean", "dot_product")
# "flat" (exact scan, no index) and every index kind of the registry
ALGORITHMS = ("flat", *registry.KINDS)
MAX_DIMENSION = 65536
MAX_DESCRIPTION = 4096
MAX_TTL_SECONDS = 100 * 366 * 24 * 3600  # a century: now + ttl stays a valid timestamp until year 9899
MAX_STOP_WORDS = 10000
MAX_STOP_WORD_LENGTH = 256
TEXT_ANALYZER_KEYS = ("lowercase", "stopwords", "stemmer")

# index_params accepted per algorithm: name -> (min, max), from the index registry
INDEX_PARAMS: dict[str, dict[str, tuple[int, int]]] = {
    "flat": {}, **{name: dict(kind.ranges) for name, kind in registry.KINDS.items()}
}


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or set(name) == {"."}:
        raise ValidationError(
            f"invalid collection name {name!r}: use 1-255 characters from A-Z a-z 0-9 _ . - (not only dots)"
        )
    return name


def _int_in(field_name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field_name} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValidationError(f"{field_name} must be between {lo} and {hi}, not {value}")
    return value


def validate_index_params(algorithm: str, params: object, dim: int) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationError("index_params must be an object")
    allowed = INDEX_PARAMS[algorithm]
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == quantization.KEY:  # {"type": "int8", ...}: proximadb/index/quantization.py
            setting = quantization.validate(algorithm, value, dim)
            if setting is not None:
                out[key] = setting
            continue
        if key not in allowed:
            known = ", ".join([*allowed, quantization.KEY] if algorithm != "flat" else allowed) or "none"
            raise ValidationError(f"index_params.{key} is not a parameter of {algorithm} (accepted: {known})")
        lo, hi = allowed[key]
        out[key] = _int_in(f"index_params.{key}", value, lo, hi)
    return out


@dataclass(slots=True)
class NamedVectorConfig:
    """One named dense vector of a collection (schema v4 ``NamedVectorConfig``). Its rows are indexed with this
    metric and with its own ``indexing_algorithm`` and ``index_params`` (quantization included, as the
    collection's: ``index_params["quantization"]``), or, when both are None, with the collection's (following
    any later change of them): :meth:`CollectionConfig.index_settings`."""

    dimension: int
    distance_metric: str = "cosine"
    indexing_algorithm: str | None = None  # None: the collection's (and index_params None too)
    index_params: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As stored and described: dimension and distance_metric, and the index settings when it has its own."""
        out: dict[str, Any] = {"dimension": self.dimension, "distance_metric": self.distance_metric}
        if self.indexing_algorithm is not None:
            out["indexing_algorithm"] = self.indexing_algorithm
            out["index_params"] = dict(self.index_params or {})
        return out


@dataclass(slots=True)
class CollectionConfig:
    name: str
    dimension: int
    distance_metric: str = "cosine"
    indexing_algorithm: str = "flat"
    index_params: dict[str, Any] = field(default_factory=dict)
    filterable_metadata_fields: list[str] = field(default_factory=list)
    description: str | None = None
    uuid: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    schema_version: int = CURRENT_SCHEMA_VERSION  # of the data it writes; catalogs written by v1 say 1
    # Rows written without expires_at expire this many seconds after the write (storage/expiry.py);
    # None: they never expire. Absent in catalogs written before it existed: None.
    default_ttl_seconds: int | None = None
    # The analyzer of full-text search (proximadb/text/analyzer.py: Analyzer.settings()). Absent in
    # catalogs written before it existed: the default analyzer (lowercase, English stop words, no stemmer).
    text_analyzer: dict[str, Any] = field(default_factory=lambda: default_text_analyzer())
    # The names of the records' sparse vectors (schema v3), each with its settings (an object: "modifier",
    # "none" or "idf": storage/sparse_search.py). A name can be added by an update, never removed; its
    # modifier can change (it weighs queries only). Absent: none.
    sparse_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The named dense vectors (schema v4) every record carries besides the default one: name -> its dimension
    # and metric, fixed at creation, and its own index settings or none (validate_named_vectors; an update may
    # change those). Absent in catalogs written before it existed: none.
    vectors: dict[str, NamedVectorConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a catalog read back (or to_dict() fed to the constructor) holds plain objects
        self.vectors = {name: v if isinstance(v, NamedVectorConfig) else NamedVectorConfig(**v)
                        for name, v in self.vectors.items()}

    def index_settings(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """The indexing_algorithm and index_params the rows of ``name`` (None: the default vector) are indexed
        with: a named vector's own, or the collection's when it declares none."""
        vec = None if name is None else self.vectors[name]
        if vec is None or vec.indexing_algorithm is None:
            return self.indexing_algorithm, self.index_params
        return vec.indexing_algorithm, vec.index_params or {}

    @property
    def named_dims(self) -> dict[str, int]:
        """The named vectors' dimensions, name -> dimension (what the batch decoder checks records against)."""
        return {name: v.dimension for name, v in self.vectors.items()}

    @classmethod
    def new(
        cls,
        name: object,
        dimension: object,
        distance_metric: object = "cosine",
        indexing_algorithm: object = "flat",
        index_params: object = None,
        filterable_metadata_fields: object = None,
        description: object = None,
        default_ttl_seconds: object = None,
        text_analyzer: object = None,
        sparse_vectors: object = None,
        vectors: object = None,
    ) -> CollectionConfig:
        now = time.time()
        cfg = cls(
            name=validate_name(name),
            dimension=_int_in("dimension", dimension, 1, MAX_DIMENSION),
            distance_metric=_choice("distance_metric", distance_metric, METRICS),
            indexing_algorithm=_choice("indexing_algorithm", indexing_algorithm, ALGORITHMS),
            uuid=str(uuidlib.uuid4()),
            created_at=now,
            updated_at=now,
        )
        cfg.index_params = validate_index_params(cfg.indexing_algorithm, index_params, cfg.dimension)
        cfg.filterable_metadata_fields = _fields(filterable_metadata_fields)
        cfg.description = _description(description)
        cfg.default_ttl_seconds = _ttl(default_ttl_seconds)
        cfg.text_analyzer = validate_text_analyzer(text_analyzer)
        cfg.sparse_vectors = validate_sparse_vectors(sparse_vectors)
        cfg.vectors = validate_named_vectors(vectors, algorithm=cfg.indexing_algorithm, index_params=cfg.index_params)
        _check_named_index(cfg.indexing_algorithm, cfg.index_params, cfg.vectors)
        return cfg

    def updated(self, changes: dict[str, Any]) -> CollectionConfig:
        """A copy with ``changes`` applied; dimension and metric cannot change."""
        data = self.to_dict()
        for key, value in changes.items():
            if key in ("dimension", "distance_metric", "name", "uuid", "created_at", "updated_at"):
                if value != data.get(key):
                    raise ValidationError(f"{key} of an existing collection cannot be changed")
            elif key == "indexing_algorithm":
                data[key] = _choice(key, value, ALGORITHMS)
            elif key == "index_params":
                data[key] = value
            elif key == "filterable_metadata_fields":
                data[key] = _fields(value)
            elif key == "description":
                data[key] = _description(value)
            elif key == "default_ttl_seconds":
                data[key] = _ttl(value)
            elif key == "text_analyzer":
                data[key] = validate_text_analyzer(value)
            elif key == "sparse_vectors":
                data[key] = validate_sparse_vectors(value, self.sparse_vectors)
            elif key == "vectors":
                data[key] = value
            else:
                raise ValidationError(f"unknown collection field {key!r}")
        data["index_params"] = validate_index_params(data["indexing_algorithm"], data["index_params"],
                                                     data["dimension"])
        if "vectors" in changes:
            # resolved against the collection's (new) settings; names, dimensions and metrics stay fixed
            vectors = validate_named_vectors(changes["vectors"], algorithm=data["indexing_algorithm"],
                                             index_params=data["index_params"])
            shape = {n: (v.dimension, v.distance_metric) for n, v in vectors.items()}
            if shape != {n: (v.dimension, v.distance_metric) for n, v in self.vectors.items()}:
                raise ValidationError("vectors (the named dense vectors) of an existing collection cannot be "
                                      "changed: their names, dimensions and metrics are fixed when the collection "
                                      "is created (only each one's indexing_algorithm, index_params and "
                                      "quantization may change)")
        else:
            vectors = self.vectors
        data["vectors"] = vectors
        _check_named_index(data["indexing_algorithm"], data["index_params"], vectors)
        data["updated_at"] = time.time()
        return CollectionConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vectors"] = {name: v.to_dict() for name, v in self.vectors.items()}
        return data


def default_text_analyzer() -> dict[str, Any]:
    return Analyzer().settings()


def validate_text_analyzer(value: object) -> dict[str, Any]:
    """``text_analyzer``: an object of lowercase (bool), stopwords ("english", a list of words, or null) and
    stemmer (null or a PyStemmer language); a key left out keeps its default; null: the default analyzer.
    Returns the settings as stored (Analyzer.settings(): stop words lowercased when lowercase, sorted)."""
    if value is None:
        return default_text_analyzer()
    if not isinstance(value, dict):
        raise ValidationError(f"text_analyzer must be an object of {', '.join(TEXT_ANALYZER_KEYS)}")
    unknown = set(value) - set(TEXT_ANALYZER_KEYS)
    if unknown:
        raise ValidationError(f"text_analyzer: unknown setting(s) {', '.join(sorted(map(str, unknown)))} "
                              f"(allowed: {', '.join(TEXT_ANALYZER_KEYS)})")
    if "lowercase" in value and not isinstance(value["lowercase"], bool):
        raise ValidationError("text_analyzer.lowercase must be true or false")
    stopwords = value.get("stopwords", "english")
    if isinstance(stopwords, list):
        if len(stopwords) > MAX_STOP_WORDS:
            raise ValidationError(f"text_analyzer.stopwords: at most {MAX_STOP_WORDS} words, not {len(stopwords)}")
        if not all(isinstance(w, str) and 0 < len(w) <= MAX_STOP_WORD_LENGTH for w in stopwords):
            raise ValidationError(f"text_analyzer.stopwords must be a list of non-empty strings of at most "
                                  f"{MAX_STOP_WORD_LENGTH} characters")
    elif stopwords is not None and stopwords != "english":
        raise ValidationError(f"text_analyzer.stopwords must be \"english\", a list of words or null, "
                              f"not {stopwords!r}")
    stemmer = value.get("stemmer")
    if stemmer is not None and not isinstance(stemmer, str):
        raise ValidationError(f"text_analyzer.stemmer must be a language name or null, not {stemmer!r}")
    try:
        return Analyzer.from_settings(dict(value)).settings()
    except ValidationError as exc:
        raise ValidationError(f"text_analyzer: {exc}") from exc


# setting -> accepted values (the first is the default); an update may change any (they weigh queries only)
SPARSE_SETTINGS = {"modifier": ("none", "idf")}


def validate_sparse_vectors(value: object,
                            before: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``sparse_vectors``: an object of name -> settings (an object, maybe empty; ``modifier``: "none" or
    "idf"). An update (``before``: the names declared so far) may add names and change a name's modifier,
    not remove a name. Returns the settings as stored (every setting filled in)."""
    before = before or {}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValidationError("sparse_vectors must be an object of name -> settings (e.g. {\"title\": {}})")
    out: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        if not isinstance(name, str) or not re.fullmatch(SPARSE_NAME_PATTERN, name):
            raise ValidationError(f"sparse_vectors: name {name!r} must be 1 to 64 characters of letters, digits, "
                                  "'_', '.' or '-'")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise ValidationError(f"sparse_vectors[{name!r}] must be an object of settings, not {settings!r}")
        unknown = set(settings) - set(SPARSE_SETTINGS)
        if unknown:
            unknown_text = ", ".join(sorted(map(str, unknown)))
            raise ValidationError(f"sparse_vectors[{name!r}]: unknown setting(s) {unknown_text} "
                                  f"(allowed: {', '.join(SPARSE_SETTINGS)})")
        stored = {}
        for key, choices in SPARSE_SETTINGS.items():
            got = settings.get(key, choices[0])
            if got not in choices:
                allowed = ", ".join(map(repr, choices))
                raise ValidationError(f"sparse_vectors[{name!r}].{key} must be one of {allowed}, not {got!r}")
            stored[key] = got
        out[name] = stored
    missing = [name for name in before if name not in out]
    if missing:
        raise ValidationError(f"sparse_vectors: a declared sparse vector cannot be removed ({', '.join(missing)}); "
                              "give every declared name and the new ones")
    return out


NAMED_KEYS = ("dimension", "distance_metric", "indexing_algorithm", "index_params", "quantization")


def validate_named_vectors(value: object, max_dimension: int = MAX_DIMENSION, *, algorithm: str = "flat",
                           index_params: dict[str, Any] | None = None) -> dict[str, NamedVectorConfig]:
    """``vectors``: an object of name -> {"dimension": int, "distance_metric": one of METRICS (default
    "cosine"), and optionally "indexing_algorithm", "index_params" and "quantization"}. Names:
    NAMED_VECTOR_NAME_PATTERN (they become file names), unique ignoring case (a case-insensitive file
    system), at most MAX_NAMED_VECTORS. Errors name the vector.

    Index settings (:func:`_named_index`): none given (or all null): the name follows the collection's
    (``algorithm``, ``index_params``); any given: the name's own, resolved and stored whole."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("vectors must be an object of name -> {\"dimension\": ..., \"distance_metric\": ...}")
    if len(value) > MAX_NAMED_VECTORS:
        raise ValidationError(f"vectors: {len(value)} named vectors declared; at most {MAX_NAMED_VECTORS} are "
                              "allowed")
    out: dict[str, NamedVectorConfig] = {}
    folded: dict[str, str] = {}
    for name, settings in value.items():
        if not isinstance(name, str) or not re.fullmatch(NAMED_VECTOR_NAME_PATTERN, name):
            raise ValidationError(f"vectors: name {name!r} must be 1 to 64 characters of letters, digits, '_' "
                                  "or '-'")
        if name.lower() in folded:
            raise ValidationError(f"vectors: names {folded[name.lower()]!r} and {name!r} differ only in case "
                                  "(a named vector's files are named after it)")
        folded[name.lower()] = name
        if isinstance(settings, NamedVectorConfig):
            settings = settings.to_dict()
        if not isinstance(settings, Mapping):
            raise ValidationError(f"vectors[{name!r}] must be an object of dimension and distance_metric, "
                                  f"not {settings!r}")
        unknown = set(settings) - set(NAMED_KEYS)
        if unknown:
            raise ValidationError(f"vectors[{name!r}]: unknown setting(s) {', '.join(sorted(map(str, unknown)))} "
                                  f"(allowed: {', '.join(NAMED_KEYS)})")
        if "dimension" not in settings:
            raise ValidationError(f"vectors[{name!r}]: dimension is required")
        vec = NamedVectorConfig(
            dimension=_int_in(f"vectors[{name!r}].dimension", settings["dimension"], 1, max_dimension),
            distance_metric=_choice(f"vectors[{name!r}].distance_metric", settings.get("distance_metric", "cosine"),
                                    METRICS))
        own = _named_index(name, vec.dimension, settings, algorithm, index_params or {})
        if own is not None:
            vec.indexing_algorithm, vec.index_params = own
        out[name] = vec
    return out


def _named_index(name: str, dim: int, settings: Mapping[str, Any], algorithm: str,
                 index_params: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A named vector's own index settings, or None: the collection's. A setting left out (or null) is the
    collection's: its ``indexing_algorithm``; its ``index_params`` and quantization when the name keeps the
    collection's algorithm, none otherwise. ``quantization`` is ``index_params["quantization"]``'s shorthand
    (as the SDK's ``quantization=``) and wins over it."""
    given = {k: settings.get(k) for k in ("indexing_algorithm", "index_params", "quantization")}
    if all(v is None for v in given.values()):
        return None
    label = f"vectors[{name!r}]"
    own_algorithm = _choice(f"{label}.indexing_algorithm", given["indexing_algorithm"] or algorithm, ALGORITHMS)
    if given["index_params"] is not None:
        if not isinstance(given["index_params"], Mapping):
            raise ValidationError(f"{label}.index_params must be an object")
        params = dict(given["index_params"])
    elif own_algorithm == algorithm:
        params = dict(index_params)
    else:
        params = {}
    if given["quantization"] is not None:
        params[quantization.KEY] = given["quantization"]
    try:
        return own_algorithm, validate_index_params(own_algorithm, params, dim)
    except ValidationError as exc:
        raise ValidationError(f"{label} (dimension {dim}, indexing_algorithm {own_algorithm}): {exc}") from None


def check_dimension_limits(cfg: CollectionConfig, limit: int) -> None:
    """A new collection's default and named dimensions against a server's ``max_dimension`` limit (below the
    format's own MAX_DIMENSION, which the settings' checks apply): ValidationError naming the vector."""
    if cfg.dimension > limit:
        raise ValidationError(f"dimension {cfg.dimension} is over this server's max_dimension limit of {limit}")
    for name, vec in cfg.vectors.items():
        if vec.dimension > limit:
            raise ValidationError(f"vectors[{name!r}].dimension {vec.dimension} is over this server's "
                                  f"max_dimension limit of {limit}")


def _check_named_index(algorithm: str, params: dict[str, Any], vectors: dict[str, NamedVectorConfig]) -> None:
    """The collection's index settings also index each named vector that has none of its own: they must suit
    its dimension too (product quantization's ``m`` divides it)."""
    for name, vec in vectors.items():
        if vec.indexing_algorithm is not None:
            continue
        try:
            validate_index_params(algorithm, params, vec.dimension)
        except ValidationError as exc:
            raise ValidationError(f"named vector {name!r} (dimension {vec.dimension}) is indexed with the "
                                  f"collection's index_params: {exc}") from None


def _choice(field_name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(f"{field_name} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _fields(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError("filterable_metadata_fields must be a list of non-empty strings")
    return list(value)


def _ttl(value: object) -> int | None:
    if value is None:
        return None
    return _int_in("default_ttl_seconds", value, 1, MAX_TTL_SECONDS)


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise ValidationError(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return value


class Catalog:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CATALOG_NAME
        self.collections: dict[str, CollectionConfig] = {}  # by uuid
        self.dropped: list[str] = []  # deleted collections whose directories may still exist
        if self.path.exists():
            body = read_doc(self.path, "catalog")
            if body.get("format") != CATALOG_FORMAT:
                raise CorruptionError(f"{self.path}: catalog format {body.get('format')} is not supported")
            for raw in body["collections"]:
                cfg = CollectionConfig(**raw)
                self.collections[cfg.uuid] = cfg
            self.dropped = [str(u) for u in body.get("dropped", [])]

    @property
    def collections_dir(self) -> Path:
        return self.path.parent / "collections"

    def save(self) -> None:
        """Replace the document; uuids in ``dropped`` whose directories are gone are left out."""
        self.dropped = [u for u in self.dropped if (self.collections_dir / u).exists()]
        write_doc(
            self.path,
            "catalog",
            {"format": CATALOG_FORMAT, "collections": [c.to_dict() for c in self.collections.values()],
             "dropped": self.dropped},
        )

    def find(self, name_or_uuid: str) -> CollectionConfig | None:
        cfg = self.collections.get(name_or_uuid)
        if cfg is not None:
            return cfg
        for cfg in self.collections.values():
            if cfg.name == name_or_uuid:
                return cfg
        return None
