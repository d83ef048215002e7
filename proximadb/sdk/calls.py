"""What the SDK clients do, without the I/O: the requests they build, the answers they decode, when they retry.

Every client method is a *plan*: a generator that yields the transport calls it needs, each a
:class:`Call` (a :class:`~proximadb.sdk.transport.Transport` method name, its arguments, and
whether it is safe to repeat), receives each call's answer, and returns the method's result.
:class:`~proximadb.sdk.client.ProximaDBClient` runs a plan with blocking calls and
:class:`~proximadb.sdk.async_client.AsyncClient` with awaited ones (each in a ``_run`` loop of a
few lines), so validation, record preparation, Avro payload encoding
(:mod:`proximadb.codec.payload`), search-result decoding, the retry policy (:func:`retry_pause`)
and the choice of protocol in ``connect`` (:func:`route`) exist once, here.

Plans and the Transport are where the two clients meet; the convenience forms of the blocking
client (``search`` = the first of ``search_batch``, ``insert_vector``, ``get_vector`` ...) are
:class:`proximadb.client_api.ProximaDBAPI`'s, and AsyncClient awaits the same calls for them.

The client turns records (plain dicts, or ids + a numpy matrix) into versioned Avro payloads
itself; the transport only carries them, so the bytes built here are the bytes the server's
WAL stores. Ids missing from a record are generated here (UUID4), and records are stamped with
the client's time, so the server can log the payload untouched.

Every record write (insert, upsert, delete, update) is a call with a request id of its own, sent with it and
with every retry of it (:mod:`proximadb.idempotency`): the server applies it once however often it arrives,
so writes are retried like reads when a server was unreachable, and on the next node after a failover.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from proximadb import idempotency
from proximadb.codec import avro_search
from proximadb.codec.avro_search import encode_search_request
from proximadb.codec.framing import decode_frame, encode_frame
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.codec.schemas import SUPPORTED_SCHEMA_VERSIONS
from proximadb.consistency import parse_level
from proximadb.embeddings import with_documents
from proximadb.errors import (
    CollectionConfigMismatchError,
    CollectionExistsError,
    ProximaDBError,
    ResourceExhaustedError,
    UnavailableError,
    UnsupportedSchemaVersionError,
    ValidationError,
    VectorNotFoundError,
)
from proximadb.sdk import columns

T = TypeVar("T")
DEFAULT_BATCH_SIZE = 1000
DEFAULT_GRPC = "127.0.0.1:5679"
DEFAULT_REST = "http://127.0.0.1:5678"
PROBE_TIMEOUT = 2.0  # seconds a gRPC health probe may take before connect() settles for REST
FilterArg = dict[str, Any] | str | None  # a metadata filter: a dict, its JSON text, or none
SEARCH_OPTIONS = frozenset({"filter", "include_vectors", "include_metadata", "ef", "nprobe", "exact",
                            "score_threshold", "oversampling", "consistency", "using"})
_SHAPE_OPTIONS = frozenset({"filter", "score_threshold", "include_vectors", "include_metadata", "exact", "ef",
                            "nprobe", "consistency", "using"})
GROUP_OPTIONS = _SHAPE_OPTIONS | {"oversampling"}
RECOMMEND_OPTIONS = _SHAPE_OPTIONS
SPARSE_SCHEMA_VERSION = 3  # the payload schema version that carries sparse vectors (schemas/v3)
NAMED_SCHEMA_VERSION = 4  # the one that carries named dense vectors and a search's ``using`` (schemas/v4)


@dataclass(frozen=True)
class Call:
    """One transport call a plan needs: ``getattr(transport, method)(*args)``."""

    method: str
    args: tuple[Any, ...] = ()
    safe: bool = True  # idempotent: may be repeated when the server was unreachable
    request_id: str | None = None  # a write's id, sent with it and every retry of it (proximadb/idempotency.py)


@dataclass(frozen=True)
class Compute:
    """Work a plan needs done on the client that may take long (embedding texts): ``fn(*args)``.

    The blocking client calls it; the asyncio client runs it in a worker thread (``asyncio.to_thread``),
    or awaits it when ``fn`` is a coroutine function, so the event loop is not blocked."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


Plan = Generator[Call | Compute, Any, T]


def _write(method: str, collection: str, payload: bytes) -> Call:
    """A record write: with a request id of its own, so the server applies it once however often it is sent
    (a retry after the connection broke, or on the next node after a failover): safe to repeat."""
    return Call(method, (collection, payload), True, idempotency.new_request_id())


def retry_pause(exc: ProximaDBError, attempt: int, *, retries: int, backoff: float, safe: bool) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` after ``exc``, or None: raise it.

    A busy server (ResourceExhaustedError: max_concurrent_requests in flight) did nothing with
    the request, so every call is retried then, with jitter to spread a busy herd. An
    unreachable server (UnavailableError) may have done it before the connection broke, so
    only ``safe`` calls are retried (idempotent ones, and record writes: their request id makes the
    server apply them once). The pause doubles from ``backoff`` on.
    """
    busy = type(exc) is ResourceExhaustedError  # not DiskFullError and the like
    if attempt >= retries or not (busy or (safe and isinstance(exc, UnavailableError))):
        return None
    delay = backoff * (2 ** attempt)
    return delay * (1.0 + random.random()) if busy else delay


def api_key(given: str | None) -> str | None:
    """The key to send: the one given, else ``PROXIMADB_API_KEY`` from the environment."""
    return given if given is not None else os.environ.get("PROXIMADB_API_KEY")


def describe_client(kind: str, protocol: str, url: str) -> str:
    """A client's repr: ``<ProximaDBClient grpc 127.0.0.1:5679>``, ``<EmbeddedClient embedded ./data>``."""
    for scheme in ("grpc://", "embedded://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    return f"<{kind} {protocol} {url}>"


def _now_us() -> int:
    return time.time_ns() // 1000


def filter_json(filter: dict[str, Any] | str | None) -> str | None:
    if filter is None or isinstance(filter, str):
        return filter
    if not isinstance(filter, dict):
        raise ValidationError("filter must be a dict (or its JSON text)")
    return json.dumps(filter)


# ---------------------------------------------------------------------- server and collections
def negotiate(url: str) -> Plan[int]:
    """The highest payload schema version both sides speak."""
    health = yield Call("health")
    server = set(health.get("schema_versions") or [1])
    common = server & set(SUPPORTED_SCHEMA_VERSIONS)
    if not common:
        raise UnsupportedSchemaVersionError(
            f"the server at {url} speaks payload schema versions {sorted(server)}, this client "
            f"{list(SUPPORTED_SCHEMA_VERSIONS)}; upgrade the older side"
        )
    return max(common)


def single(method: str, *args: Any, safe: bool = True) -> Plan[Any]:
    """A plan of one transport call whose answer is the result."""
    return (yield Call(method, args, safe))


def create_collection(
    name: str,
    dimension: int,
    *,
    distance_metric: str = "cosine",
    indexing_algorithm: str = "flat",
    index_params: dict[str, Any] | None = None,
    filterable_metadata_fields: Sequence[str] | None = None,
    description: str | None = None,
    default_ttl_seconds: int | None = None,
    quantization: dict[str, Any] | None = None,
    exist_ok: bool = False,
    shards: int | None = None,
    replication_factor: int | None = None,
    text_analyzer: dict[str, Any] | None = None,
    sparse_vectors: dict[str, Any] | None = None,
    vectors: dict[str, Any] | None = None,
) -> Plan[dict[str, Any]]:
    """Create the collection; its description. With ``exist_ok``, a collection of that name with the same
    dimension and distance metric is returned as it is (its other settings are not compared); another
    dimension or metric raises :class:`~proximadb.errors.CollectionConfigMismatchError`."""
    if quantization is not None:  # stored as index_params.quantization (proximadb/index/quantization.py)
        index_params = {**(index_params or {}), "quantization": quantization}
    body: dict[str, Any] = {
        "name": name,
        "dimension": dimension,
        "distance_metric": distance_metric,
        "indexing_algorithm": indexing_algorithm,
        "index_params": index_params or {},
        "filterable_metadata_fields": list(filterable_metadata_fields or []),
    }
    if description is not None:
        body["description"] = description
    if default_ttl_seconds is not None:  # rows written without expires_at expire this long after the write
        body["default_ttl_seconds"] = default_ttl_seconds
    if shards is not None:  # cluster mode (serve --cluster); one node accepts only 1
        body["shards"] = shards
    if replication_factor is not None:
        body["replication_factor"] = replication_factor
    if text_analyzer is not None:  # full-text search's analyzer (storage/catalog.py: validate_text_analyzer)
        body["text_analyzer"] = text_analyzer
    if sparse_vectors is not None:  # the names of the sparse vectors records may carry: {name: {}}
        body["sparse_vectors"] = sparse_vectors
    if vectors is not None:  # named dense vectors: {name: {"dimension", "distance_metric"?, index settings?}} (v4)
        body["vectors"] = vectors
    try:  # with exist_ok, repeating the create is harmless: a second attempt finds the first's collection
        return (yield Call("create_collection", (body,), safe=exist_ok))
    except CollectionExistsError:
        if not exist_ok:
            raise
    existing: dict[str, Any] = yield Call("get_collection", (name,))
    differences = [
        f"{what} {existing[key]!r} (asked for {asked!r})"
        for what, key, asked in (("dimension", "dimension", dimension), ("distance metric", "distance_metric",
                                                                        distance_metric))
        if existing[key] != asked
    ]
    if vectors is not None:  # the named vectors asked for must be the ones declared (names, dimensions, metrics)
        declared = {n: (v.get("dimension"), v.get("distance_metric"))
                    for n, v in (existing.get("vectors") or {}).items()}
        asked_named = {n: (v.get("dimension"), v.get("distance_metric", "cosine")) if isinstance(v, Mapping) else v
                       for n, v in vectors.items()}
        if declared != asked_named:
            differences.append(f"named vectors {existing.get('vectors') or {}!r} (asked for {vectors!r})")
    if differences:
        raise CollectionConfigMismatchError(
            f"collection {name!r} exists with " + " and ".join(differences)
            + "; use another name, or delete the collection first"
        )
    return existing


def id_list(ids: Any) -> list[Any]:
    """``ids`` as a list of plain ``str`` (a numpy or pandas column of strings is accepted; other values are
    left for the payload encoder to refuse)."""
    if isinstance(ids, str):
        raise ValidationError("ids must be a sequence of str, not a single string")
    if columns.is_arrow(ids):
        return columns.arrow_strings(ids, "ids")  # type: ignore[return-value]
    return [str(i) if isinstance(i, str) else i for i in ids]


def vector_matrix(vectors: Any, what: str = "vectors") -> np.ndarray:
    """``vectors`` (a 2-D array-like, a pyarrow list column, or one 1-D vector) as a contiguous float32
    (n, dim) matrix."""
    if type(vectors) is np.ndarray and vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        if vectors.ndim == 2:
            return vectors
        if vectors.ndim == 1:
            return vectors.reshape(1, -1)
    elif columns.is_arrow(vectors):
        return columns.arrow_matrix(vectors, what)
    try:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be a matrix of numbers (rows of equal length): {exc}") from None
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise ValidationError(f"{what} must be a 2-D matrix (or one 1-D vector), got {matrix.ndim} dimension(s)")
    return matrix


# ---------------------------------------------------------------------- writes
def insert_vectors(
    schema_version: int,
    batch_size: int,
    collection: str,
    records: Sequence[dict[str, Any]] | None = None,
    *,
    ids: Sequence[str] | None = None,
    vectors: Any = None,
    metadatas: Sequence[dict[str, Any] | None] | None = None,
    upsert: bool = False,
    sparse_vectors: Sequence[dict[str, Any] | None] | None = None,
    named_vectors: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Plan[dict[str, Any]]:
    """Records (dicts, or a table: :mod:`proximadb.sdk.columns`) or ``ids`` + a ``vectors`` matrix
    (+ ``metadatas``, + ``sparse_vectors``: one ``{name: {"indices", "values"}}`` or None per record; a record
    dict carries its own under the key ``sparse_vectors``; + ``named_vectors``: ``{name: (n, dim) matrix}`` or
    one ``{name: vector}`` per record, every name the collection declares; a record dict carries its own under
    the key ``named_vectors``) in payloads of ``batch_size``.

    Each batch is applied all or nothing; an insert is never retried (it may have been applied),
    an upsert is. Returns ``{"count", "ids"}``.
    """
    all_ids: list[str] = []
    stamp = _now_us()
    if records is not None and columns.is_table(records):
        if ids is not None or vectors is not None or metadatas is not None:
            raise ValidationError("give either a table of records, or ids + vectors (+ metadatas), not both")
        table = columns.table_columns(records)
        if table.vectors is None:
            raise ValidationError("a table of records needs a vector column here (documents are embedded by a "
                                  "collection handle with an embedding function)")
        records, ids, vectors, metadatas = None, table.ids, table.vectors, table.metadatas
        if table.documents is not None:
            metadatas = with_documents(table.documents, metadatas)
    if records is not None:
        if ids is not None or vectors is not None or metadatas is not None or sparse_vectors is not None \
                or named_vectors is not None:
            raise ValidationError("give either records, or ids + vectors (+ metadatas, sparse_vectors, "
                                  "named_vectors), not both")
        prepared = [
            {
                "id": r.get("id") or str(uuid.uuid4()),
                "vector": r["vector"],
                "metadata": r.get("metadata") or {},
                "timestamp": r.get("timestamp") or stamp,
                **({"expires_at": r["expires_at"]} if r.get("expires_at") is not None else {}),
                **({"sparse_vectors": r["sparse_vectors"]} if r.get("sparse_vectors") is not None else {}),
                **({"named_vectors": r["named_vectors"]} if r.get("named_vectors") is not None else {}),
            }
            for r in records
        ]
        if any("sparse_vectors" in r for r in prepared):
            require_sparse(schema_version, "insert")
        if any("named_vectors" in r for r in prepared):
            require_named(schema_version, "insert")
        for start in range(0, len(prepared), batch_size):
            payload = encode_insert(prepared[start : start + batch_size], upsert=upsert, schema_version=schema_version)
            all_ids.extend((yield _write("insert_payload", collection, payload))["ids"])
        return {"count": len(all_ids), "ids": all_ids}
    if vectors is None:
        raise ValidationError("give records, or vectors (with ids and optional metadatas)")
    matrix = vector_matrix(vectors)
    n = matrix.shape[0]
    row_ids = id_list(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(n)]
    if len(row_ids) != n or (metadatas is not None and len(metadatas) != n):
        raise ValidationError(f"{n} vectors need as many ids and metadatas")
    if sparse_vectors is not None:
        require_sparse(schema_version, "insert")
        if isinstance(sparse_vectors, dict) or len(sparse_vectors) != n:
            raise ValidationError(f"{n} vectors need as many sparse_vectors entries (one mapping or None per record)")
    named = named_columns(named_vectors, n) if named_vectors is not None else None
    if named is not None:
        require_named(schema_version, "insert")
    stamps = np.full(n, stamp, dtype=np.int64)
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        payload = encode_insert(
            ids=row_ids[start:end],
            vectors=matrix[start:end],
            metadata=list(metadatas[start:end]) if metadatas is not None else None,
            timestamps=stamps[start:end],
            upsert=upsert,
            schema_version=schema_version,
            sparse_vectors=None if sparse_vectors is None else list(sparse_vectors[start:end]),
            named_vectors=named_slice(named, start, end),
        )
        all_ids.extend((yield _write("insert_payload", collection, payload))["ids"])
    return {"count": len(all_ids), "ids": all_ids}


def named_columns(named_vectors: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                   n: int) -> dict[str, np.ndarray] | list[Mapping[str, Any]]:
    """``named_vectors`` beside a matrix of ``n`` rows: columns ``{name: float32 (n, dim)}``, or the list of
    one ``{name: vector}`` per record (the encoder turns it into columns; it and the server check the names
    against the collection's declaration and word the errors, naming the vector and the record)."""
    if isinstance(named_vectors, Mapping):
        out = {}
        for name, column in named_vectors.items():
            matrix = vector_matrix(column, f"named vector {name!r}")
            if matrix.shape[0] != n:
                raise ValidationError(f"{n} vectors need as many rows of named vector {name!r}, got {matrix.shape[0]}")
            out[name] = matrix
        return out
    if isinstance(named_vectors, str | bytes) or len(named_vectors) != n:
        raise ValidationError(f"{n} vectors need as many named_vectors entries (one mapping per record), or a "
                              "mapping {name: matrix}")
    return list(named_vectors)


def named_slice(named: dict[str, np.ndarray] | list[Mapping[str, Any]] | None, start: int,
                 end: int) -> dict[str, np.ndarray] | list[Mapping[str, Any]] | None:
    if named is None:
        return None
    if isinstance(named, dict):
        return {name: column[start:end] for name, column in named.items()}
    return named[start:end]


def require_named(schema_version: int, what: str) -> None:
    """Named dense vectors (and ``using``) need payload schema version 4 (schemas/v4) agreed with the server."""
    if schema_version < NAMED_SCHEMA_VERSION:
        raise UnsupportedSchemaVersionError(
            f"{what}: named vectors need payload schema version {NAMED_SCHEMA_VERSION}, and this server speaks "
            f"at most {schema_version}; upgrade the server"
        )


def require_sparse(schema_version: int, what: str) -> None:
    """Sparse vectors need payload schema version 3 (schemas/v3) agreed with the server."""
    if schema_version < SPARSE_SCHEMA_VERSION:
        raise UnsupportedSchemaVersionError(
            f"{what}: sparse vectors need payload schema version {SPARSE_SCHEMA_VERSION}, and this server speaks "
            f"at most {schema_version}; upgrade the server"
        )


def update_vector(
    schema_version: int,
    batch_size: int,
    collection: str,
    id: str,
    *,
    metadata: dict[str, Any] | None = None,
    vector: Any = None,
    replace: bool = False,
) -> Plan[None]:
    """Change a record's metadata (merge; ``replace=True`` swaps it) and/or its vector."""
    if vector is not None:  # the record is read: its metadata may be merged, its sparse and named vectors are kept
        found = yield from get_vectors(collection, [id], include_vectors=True)
        if not found and (metadata is None or not replace):
            raise VectorNotFoundError(f"no vector with id {id!r} in collection {collection!r}")
        if metadata is None or not replace:
            merged = dict(found[0]["metadata"])
            for k, v in (metadata or {}).items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            metadata = merged
        record = {"id": id, "vector": vector, "metadata": metadata,
                  **({"sparse_vectors": found[0]["sparse_vectors"]} if found and found[0].get("sparse_vectors")
                     else {}),
                  **({"named_vectors": found[0]["named_vectors"]} if found and found[0].get("named_vectors")
                     else {})}
        yield from insert_vectors(schema_version, batch_size, collection, [record], upsert=True)
        return
    if metadata is None:
        raise ValidationError("update_vector needs metadata and/or vector")
    datum = {"updates": [{"id": id, "metadata": metadata, "replace": replace}], "timestamp": _now_us()}
    payload = encode_payload("vector_update", datum, schema_version)
    yield _write("mutate_payload", collection, payload)


def delete_vectors(
    schema_version: int, collection: str, ids: Sequence[str] | None = None, *,
    filter: dict[str, Any] | str | None = None,
) -> Plan[int]:
    """Delete by ids or by a metadata filter; returns how many were deleted."""
    if (ids is None) == (filter is None):
        raise ValidationError("delete_vectors needs exactly one of ids or filter")
    datum = {"ids": list(ids or []), "filter": filter_json(filter)}
    payload = encode_payload("vector_delete", datum, schema_version)
    return int((yield _write("mutate_payload", collection, payload))["deleted"])


# ---------------------------------------------------------------------- reads
def _level(consistency: Any) -> tuple[str, ...]:
    """The transport's trailing ``consistency`` argument: none for the default, else the checked level."""
    level = parse_level(consistency)  # ValidationError naming the levels
    return () if level is None else (level.value,)


def get_vectors(collection: str, ids: Sequence[str], *, include_vectors: bool = True,
                consistency: str | None = None) -> Plan[list[dict[str, Any]]]:
    return (yield Call("get_vectors", (collection, id_list(ids), include_vectors, *_level(consistency))))


def count(collection: str, filter: dict[str, Any] | str | None = None, consistency: str | None = None) -> Plan[int]:
    return (yield Call("count", (collection, filter_json(filter), *_level(consistency))))


def scroll(
    collection: str, *, limit: int = 100, cursor: str | None = None, filter: dict[str, Any] | str | None = None,
    include_vectors: bool = False, consistency: str | None = None,
) -> Plan[tuple[list[dict[str, Any]], str | None]]:
    return (yield Call("scroll", (collection, limit, cursor, filter_json(filter), include_vectors,
                                  *_level(consistency))))


def search_batch(
    schema_version: int, collection: str, queries: Any, k: int, options: dict[str, Any]
) -> Plan[list[list[dict[str, Any]]]]:
    """Top-k hits per query, best first (options: filter, include_vectors, include_metadata, ef, nprobe, exact,
    using, score_threshold, oversampling, consistency: these three travel beside the Avro payload, see
    Transport.search_payload; ``using``, the named vector searched, inside it: schema v4)."""
    q = vector_matrix(queries, "queries")
    flt, flags, ef, nprobe, exact, using = None, (False, True), None, None, False, None  # the defaults
    if options:  # a plain search (every option its default) skips their checks
        unknown = set(options) - SEARCH_OPTIONS
        if unknown:
            raise ValidationError(f"unknown search option(s): {', '.join(sorted(unknown))}")
        flt = filter_json(options.get("filter"))
        flags = (bool(options.get("include_vectors", False)), bool(options.get("include_metadata", True)))
        ef, nprobe, exact = options.get("ef"), options.get("nprobe"), bool(options.get("exact", False))
        using = options.get("using")
        if using is not None:
            if not isinstance(using, str):
                raise ValidationError(f"using must be the name of a named vector (a string) or None, not {using!r}")
            require_named(schema_version, "search")
    if _int32(k) and (ef is None or _int32(ef)) and (nprobe is None or _int32(nprobe)):
        datum = encode_search_request(q, k, flt, *flags, ef, nprobe, exact, using,
                                      schema_version)  # no Python float per component
        payload = encode_frame("vector_search", datum, schema_version)
    else:  # an odd k / ef / nprobe: fastavro's checks word the error, as for every payload
        payload = encode_payload("vector_search", {
            "queries": q.tolist(), "k": k, "filter": flt, "include_vectors": flags[0],
            "include_metadata": flags[1], "ef": ef, "nprobe": nprobe, "exact": exact,
            **({"using": using} if schema_version >= NAMED_SCHEMA_VERSION else {}),
        }, schema_version)
    extras: dict[str, Any] = {}
    if options:
        extras = {name: _number(options[name], name) for name in ("score_threshold", "oversampling")
                  if options.get(name) is not None}
        for level in _level(options.get("consistency")):
            extras["consistency"] = level
    answer = yield Call("search_payload", (collection, payload, extras) if extras else (collection, payload))
    return decode_search_result(answer)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValidationError(f"{name} must be a number, not {value!r}")
    return float(value)


def _shape_body(options: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    unknown = set(options) - allowed
    if unknown:
        raise ValidationError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")
    body = {**options, **_level_field(options.get("consistency"))}
    if body.get("consistency") is None:
        body.pop("consistency", None)
    if "filter" in body:
        body["filter"] = filter_json(body["filter"])
    for name in ("score_threshold", "oversampling"):
        if body.get(name) is not None:
            body[name] = _number(body[name], name)
    return body


def _hit(hit: dict[str, Any]) -> dict[str, Any]:
    """A JSON or gRPC hit as search hits read: the vector and the named vectors float32 arrays."""
    if isinstance(hit.get("vector"), list):
        hit["vector"] = np.asarray(hit["vector"], dtype=np.float32)
    if hit.get("named_vectors"):
        hit["named_vectors"] = {name: np.asarray(vec, dtype=np.float32) for name, vec in hit["named_vectors"].items()}
    return hit


def _one_vector(vector: Any, what: str) -> list[float]:
    matrix = vector_matrix(vector, what)
    if matrix.shape[0] != 1:
        raise ValidationError(f"{what}: one vector, got {matrix.shape[0]}")
    return [float(x) for x in matrix[0].tolist()]


def search_groups(
    collection: str, vector: Any, group_by: str, limit: int = 10, group_size: int = 1, **options: Any,
) -> Plan[list[dict[str, Any]]]:
    """Hits grouped by ``group_by``'s value: ``[{"value", "hits"}]``, groups by their best hit (options: filter,
    score_threshold, include_vectors, include_metadata, exact, ef, nprobe, oversampling, consistency, using)."""
    body = {"vector": _one_vector(vector, "vector"), "group_by": group_by, "limit": limit, "group_size": group_size,
            **_shape_body(options, GROUP_OPTIONS, "search_groups")}
    groups = yield Call("search_groups", (collection, body))
    return [{"value": g["value"], "hits": [_hit(h) for h in g["hits"]]} for g in groups]


def recommend(
    collection: str, positive: Sequence[Any], negative: Sequence[Any] | None = None, k: int = 10,
    strategy: str = "average_vector", **options: Any,
) -> Plan[list[dict[str, Any]]]:
    """Records like ``positive`` and unlike ``negative`` (each an id or a vector), example ids left out (options:
    filter, score_threshold, include_vectors, include_metadata, exact, ef, nprobe, consistency, using)."""
    def examples(given: Any, name: str) -> list[Any]:
        if given is None:
            return []
        if isinstance(given, str) or (isinstance(given, np.ndarray) and given.ndim == 1):
            given = [given]
        return [e if isinstance(e, str) else _one_vector(e, f"{name} example") for e in given]

    body = {"positive": examples(positive, "positive"), "negative": examples(negative, "negative"), "k": k,
            "strategy": strategy, **_shape_body(options, RECOMMEND_OPTIONS, "recommend")}
    hits = yield Call("recommend", (collection, body))
    return [_hit(h) for h in hits]


def _level_field(consistency: Any) -> dict[str, Any]:
    """A JSON body's ``consistency`` field (checked here as :func:`_level` does); left out when None."""
    levels = _level(consistency)
    return {"consistency": levels[0]} if levels else {}


def _int32(value: Any) -> bool:
    return type(value) is int and -(2**31) <= value < 2**31


def decode_search_result(answer: bytes) -> list[list[dict[str, Any]]]:
    """A ``search_result`` payload frame as lists of hit dicts (vectors as float32 arrays)."""
    version, op_type, datum = decode_frame(answer)
    if op_type != "search_result":
        raise UnavailableError(f"the server answered a search with {op_type!r}")
    return avro_search.decode_search_result(datum, version)


__all__ = ["DEFAULT_BATCH_SIZE", "Call", "Plan", "filter_json", "retry_pause"]
