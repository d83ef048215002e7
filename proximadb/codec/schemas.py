"""The Avro schemas of every payload op type, parsed once per process.

Schemas live in ``schemas/v<N>/*.avsc`` (installed as ``proximadb.schemas``).
A record may name records defined in files listed before it in ``_FILES``; each parsed record
has them inlined, so it stands alone (a container file's header holds every type it uses).

Versions: v1 is the original layout; v2 adds ``expires_at: ["null", "long"]``
(default null) to ``VectorRecord`` (so ``VectorBatch``) and ``SegmentRow``; v3 adds
``sparse_vectors: map<SparseVector>`` (default empty; ``sparse_vector.avsc``) to both; v4 adds
``named_vectors: map<array<float>>`` (default empty) to ``VectorRecord`` only (segments keep them in
columnar files, not in ``SegmentRow``) and ``vectors: map<NamedVectorConfig>`` to ``CollectionConfig``. Data
written with an older version is read with :func:`resolving_reader_schema`: fastavro
resolves the writer's schema against the current one (new fields take their default).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from fastavro import parse_schema

from proximadb.errors import UnknownOperationError, UnsupportedSchemaVersionError

CURRENT_SCHEMA_VERSION = 4
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3, 4)

# Parse order matters: later files refer to records defined in earlier ones.
_FILES = (
    "sparse_vector",  # v3 on; absent from older folders
    "vector_record",
    "segment_row",
    "vector_batch",
    "vector_delete",
    "vector_update",
    "collection_config",
    "search_request",
    "search_result",
)

OP_RECORDS: dict[str, str] = {
    "vector_insert": "VectorBatch",
    "vector_delete": "VectorDelete",
    "vector_update": "VectorUpdate",
    "vector_search": "SearchRequest",
    "search_result": "SearchResult",
    "collection_create": "CollectionConfig",
    "collection_update": "CollectionConfig",
}


def check_version(version: int) -> None:
    """Refuse a schema version this build does not speak, naming the ones it does."""
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise UnsupportedSchemaVersionError(
            f"schema version {version} is not supported (this server accepts: {supported})"
        )


def _schema_root() -> Traversable:
    """Installed: the ``proximadb.schemas`` package; a source checkout: ``<repo>/schemas``."""
    try:
        return resources.files("proximadb.schemas")
    except ModuleNotFoundError:
        return resources.files("proximadb").joinpath("..", "schemas")


def _files(version: int) -> tuple[str, ...]:
    """The record files of a version folder, in parse order (SparseVector exists from v3 on)."""
    return _FILES if version >= 3 else _FILES[1:]


@cache
def _parsed(version: int) -> dict[str, Any]:
    check_version(version)
    folder = _schema_root() / f"v{version}"
    defs: dict[str, Any] = {}
    by_name: dict[str, Any] = {}
    for stem in _files(version):
        raw = _inline(json.loads((folder / f"{stem}.avsc").read_text(encoding="utf-8")), defs, set())
        by_name[raw["name"]] = parse_schema(raw)
        defs[f"{raw['namespace']}.{raw['name']}"] = raw
    return by_name


def _inline(node: Any, defs: dict[str, Any], seen: set[str]) -> Any:
    """``node`` with each name of an earlier file replaced by its definition (the first time it appears), so
    every record's schema stands alone: a container file's header (meta.avro) then holds every type it uses."""
    if isinstance(node, str) and node in defs and node not in seen:
        seen.add(node)
        return _inline(json.loads(json.dumps(defs[node])), defs, seen)
    if isinstance(node, dict):
        return {k: _inline(v, defs, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    return node


def record_schema(name: str, version: int = CURRENT_SCHEMA_VERSION) -> Any:
    """Parsed schema of a record by its short name (e.g. ``VectorRecord``)."""
    return _parsed(version)[name]


def op_schema(op_type: str, version: int = CURRENT_SCHEMA_VERSION) -> Any:
    """Parsed schema of the datum that follows a frame of ``op_type``."""
    try:
        record = OP_RECORDS[op_type]
    except KeyError:
        known = ", ".join(sorted(OP_RECORDS))
        raise UnknownOperationError(f"unknown op type {op_type!r} (known: {known})") from None
    return record_schema(record, version)


def resolving_reader_schema(name: str, writer_version: int, reader_version: int = CURRENT_SCHEMA_VERSION) -> Any:
    """Reader schema for ``schemaless_reader(buf, record_schema(name, writer_version), <this>)``.

    The versions' records live in different namespaces (``proximadb.v1``, ``proximadb.v2``);
    Avro resolution matches records by full name, so the reader schema names the writer's
    records as aliases. ``None`` when the versions are the same (no resolution needed).
    """
    if writer_version == reader_version:
        return None
    return _aliased(name, writer_version, reader_version)


@cache
def _aliased(name: str, writer_version: int, reader_version: int) -> Any:
    check_version(writer_version)
    folder = _schema_root() / f"v{reader_version}"
    defs: dict[str, Any] = {}
    result: dict[str, Any] = {}
    old_ns = f"proximadb.v{writer_version}"
    for stem in _files(reader_version):
        raw = _inline(json.loads((folder / f"{stem}.avsc").read_text(encoding="utf-8")), defs, set())
        _add_aliases(raw, old_ns)
        result[raw["name"]] = parse_schema(raw)
        defs[f"{raw['namespace']}.{raw['name']}"] = raw
    return result[name]


def _add_aliases(node: Any, old_ns: str) -> None:
    if isinstance(node, dict):
        if node.get("type") == "record":
            node["aliases"] = [f"{old_ns}.{node['name']}"]
        for value in node.values():
            _add_aliases(value, old_ns)
    elif isinstance(node, list):
        for value in node:
            _add_aliases(value, old_ns)
