"""Every conversion between protobuf messages and the service's dicts, for both ends of the wire.

Server side (servicer.py): request messages -> the typed requests of
:mod:`proximadb.service.requests` (the same objects the REST adapter builds from JSON), service
results -> response messages. Client side (proximadb/sdk/grpc_transport.py): SDK arguments -> request messages,
response messages -> the same dicts the service returns, so a scenario gives the same answer
over gRPC and REST.

Payload frames and the VectorBatch records datum are ``bytes`` fields and are never decoded
here on the server side; only the SDK decodes records (``records_from_bytes``).

Proto3 scalars have no "unset": an empty string means "default" in requests
(``distance_metric``, ``indexing_algorithm``, ``index_params_json``, ``filter_json``);
fields that may really be absent are ``optional`` in the .proto.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proximadb import strict_json
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.codec.avro_batch import NO_EXPIRY, decode_vector_batch
from proximadb.codec.schemas import check_version
from proximadb.errors import ValidationError
from proximadb.service.query_requests import Recommend, SearchGroups
from proximadb.service.requests import (
    CLUSTER_SETTINGS,
    Count,
    CreateCollection,
    GetVectors,
    HybridSearch,
    Scroll,
    SearchSparse,
    SearchText,
    UpdateCollection,
)
from proximadb.storage.sparse_column import row_dict


def parse_json(text: str, what: str) -> Any:
    """JSON text from a request field; ``None`` for an empty string."""
    if not text:
        return None
    try:
        return strict_json.loads(text)
    except strict_json.StrictJSONError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None


def dump_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{what} cannot be sent as JSON: {exc}") from None


def build(message_type: type[Any], what: str, **fields: Any) -> Any:
    """A message from keyword fields; wrong types or out-of-range numbers become a ValidationError."""
    try:
        return message_type(**{k: v for k, v in fields.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid {what}: {exc}") from None


# ---------------------------------------------------------------- health


def health_to_proto(health: Mapping[str, Any]) -> pb.HealthResponse:
    msg = pb.HealthResponse(
        status=str(health.get("status", "")),
        version=str(health.get("version", "")),
        schema_versions=list(health.get("schema_versions", ())),
        current_schema_version=int(health.get("current_schema_version", 0)),
        uptime_seconds=float(health.get("uptime_seconds", 0.0)),
    )
    for port in ("rest_port", "grpc_port"):
        if health.get(port) is not None:
            setattr(msg, port, int(health[port]))
    return msg


def health_from_proto(msg: pb.HealthResponse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": msg.status,
        "version": msg.version,
        "schema_versions": list(msg.schema_versions),
        "current_schema_version": msg.current_schema_version,
        "uptime_seconds": msg.uptime_seconds,
    }
    for port in ("rest_port", "grpc_port"):
        if msg.HasField(port):
            out[port] = getattr(msg, port)
    return out


# ---------------------------------------------------------------- collections


def create_request(req: pb.CreateCollectionRequest) -> CreateCollection:
    """CreateCollectionRequest -> the service's request (empty strings: defaults)."""
    settings: dict[str, Any] = {}
    if req.distance_metric:
        settings["distance_metric"] = req.distance_metric
    if req.indexing_algorithm:
        settings["indexing_algorithm"] = req.indexing_algorithm
    index_params = parse_json(req.index_params_json, "index_params_json")
    if index_params is not None:
        settings["index_params"] = index_params
    if req.filterable_metadata_fields:
        settings["filterable_metadata_fields"] = list(req.filterable_metadata_fields)
    if req.HasField("description"):
        settings["description"] = req.description
    if req.HasField("default_ttl_seconds"):
        settings["default_ttl_seconds"] = req.default_ttl_seconds
    for key in CLUSTER_SETTINGS:
        if req.HasField(key):
            settings[key] = getattr(req, key)
    for key in ("text_analyzer", "sparse_vectors", "vectors"):
        value = parse_json(getattr(req, key + "_json"), key + "_json")
        if value is not None:
            settings[key] = value
    return CreateCollection(req.name, req.dimension, settings)


def create_request_from_body(body: Mapping[str, Any]) -> pb.CreateCollectionRequest:
    """The SDK's collection body (the REST JSON shape, checked as REST checks it) -> CreateCollectionRequest."""
    create = CreateCollection.from_json(body)
    dimension = create.dimension
    # Range checks are the server's (same messages as over REST); only what proto cannot carry is refused here.
    if isinstance(dimension, bool):
        raise ValidationError("dimension must be an integer, not bool")
    if isinstance(dimension, int) and dimension < 0:
        raise ValidationError(f"dimension must be a positive integer, not {dimension}")
    settings = create.settings
    ttl = settings.get("default_ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise ValidationError(f"default_ttl_seconds must be a positive integer of seconds or None, not {ttl!r}")
    index_params = settings.get("index_params")
    text_analyzer = settings.get("text_analyzer")
    sparse_vectors = settings.get("sparse_vectors")
    vectors = settings.get("vectors")
    return build(
        pb.CreateCollectionRequest,
        "collection body",
        name=create.name,
        dimension=dimension,
        distance_metric=settings.get("distance_metric"),
        indexing_algorithm=settings.get("indexing_algorithm"),
        index_params_json=None if index_params is None else dump_json(index_params, "index_params"),
        filterable_metadata_fields=settings.get("filterable_metadata_fields"),
        description=settings.get("description"),
        default_ttl_seconds=ttl,
        **{key: _count(settings[key], key) for key in CLUSTER_SETTINGS if settings.get(key) is not None},
        text_analyzer_json=None if text_analyzer is None else dump_json(text_analyzer, "text_analyzer"),
        sparse_vectors_json=None if sparse_vectors is None else dump_json(sparse_vectors, "sparse_vectors"),
        vectors_json=None if vectors is None else dump_json(vectors, "vectors"),
    )


def _count(value: Any, key: str) -> int:
    """A cluster setting for the proto's uint32: the server checks its range (the same message as over REST)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{key} must be an integer from 1, not {value!r}")
    return value


def collection_to_proto(info: Mapping[str, Any]) -> pb.CollectionInfo:
    msg = pb.CollectionInfo(
        uuid=info["uuid"],
        name=info["name"],
        dimension=info["dimension"],
        distance_metric=info["distance_metric"],
        indexing_algorithm=info["indexing_algorithm"],
        index_params_json=json.dumps(info.get("index_params") or {}, separators=(",", ":")),
        filterable_metadata_fields=list(info.get("filterable_metadata_fields") or ()),
        created_at=float(info.get("created_at", 0.0)),
        updated_at=float(info.get("updated_at", 0.0)),
        schema_version=int(info.get("schema_version", 0)),
    )
    if info.get("description") is not None:
        msg.description = info["description"]
    if info.get("vector_count") is not None:
        msg.vector_count = int(info["vector_count"])
    if info.get("default_ttl_seconds") is not None:
        msg.default_ttl_seconds = int(info["default_ttl_seconds"])
    for key in ("shards", "replication_factor", "epoch"):  # cluster mode
        if info.get(key) is not None:
            setattr(msg, key, int(info[key]))
    for holders in info.get("placement") or ():
        msg.placement.add(nodes=list(holders))
    if info.get("text_analyzer") is not None:
        msg.text_analyzer_json = json.dumps(info["text_analyzer"], separators=(",", ":"))
    if info.get("sparse_vectors"):
        msg.sparse_vectors_json = json.dumps(info["sparse_vectors"], separators=(",", ":"))
    if info.get("vectors"):
        msg.vectors_json = json.dumps(info["vectors"], separators=(",", ":"))
    return msg


def collection_from_proto(msg: pb.CollectionInfo) -> dict[str, Any]:
    """CollectionInfo -> the dict ``service.get_collection`` returns."""
    out: dict[str, Any] = {
        "name": msg.name,
        "dimension": msg.dimension,
        "distance_metric": msg.distance_metric,
        "indexing_algorithm": msg.indexing_algorithm,
        "index_params": json.loads(msg.index_params_json) if msg.index_params_json else {},
        "filterable_metadata_fields": list(msg.filterable_metadata_fields),
        "description": msg.description if msg.HasField("description") else None,
        "uuid": msg.uuid,
        "created_at": msg.created_at,
        "updated_at": msg.updated_at,
        "schema_version": msg.schema_version,
        "default_ttl_seconds": msg.default_ttl_seconds if msg.HasField("default_ttl_seconds") else None,
    }
    if msg.text_analyzer_json:
        out["text_analyzer"] = json.loads(msg.text_analyzer_json)
    out["sparse_vectors"] = json.loads(msg.sparse_vectors_json) if msg.sparse_vectors_json else {}
    out["vectors"] = json.loads(msg.vectors_json) if msg.vectors_json else {}
    if msg.HasField("vector_count"):
        out["vector_count"] = msg.vector_count
    for key in ("shards", "replication_factor", "epoch"):  # cluster mode
        if msg.HasField(key):
            out[key] = getattr(msg, key)
    if msg.placement:
        out["placement"] = [list(h.nodes) for h in msg.placement]
    return out


def collections_to_proto(infos: Sequence[Mapping[str, Any]]) -> pb.ListCollectionsResponse:
    return pb.ListCollectionsResponse(collections=[collection_to_proto(i) for i in infos])


def collections_from_proto(msg: pb.ListCollectionsResponse) -> list[dict[str, Any]]:
    return [collection_from_proto(c) for c in msg.collections]


def update_request(req: pb.UpdateCollectionRequest) -> UpdateCollection:
    """UpdateCollectionRequest -> the service's request (changes_json must hold a JSON object)."""
    changes = parse_json(req.changes_json, "changes_json")
    return UpdateCollection.from_json({} if changes is None else changes)


def update_request_from_changes(collection: str, changes: Mapping[str, Any]) -> pb.UpdateCollectionRequest:
    update = UpdateCollection.from_json(changes)
    return build(
        pb.UpdateCollectionRequest, "collection update",
        collection=collection, changes_json=dump_json(dict(update.changes), "collection update"),
    )


# ---------------------------------------------------------------- compaction report and statistics
# One typed field per key of the service's dict, in its order; ``None`` is an unset ``optional`` field.
# Field 1, ``json``, repeats the dict for clients built when these RPCs answered JsonResponse.


def _report_to_proto(message_type: type[Any], values: Mapping[str, Any]) -> Any:
    fields = [f for f in message_type.DESCRIPTOR.fields if f.name != "json"]
    names = [f.name for f in fields]
    if set(values) != set(names):  # a key the .proto lacks would vanish over gRPC only
        raise ValueError(f"{message_type.__name__} has fields {names}, the service gave {sorted(values)}")
    msg = message_type(json=json.dumps(dict(values), separators=(",", ":")))
    _fill(msg, fields, values)
    return msg


def _fill(msg: Any, fields: Sequence[Any], values: Mapping[str, Any]) -> None:
    for field in fields:
        value = values[field.name]
        if field.is_repeated and field.message_type is not None:  # CompactionReport.replicas
            for item in value:
                _fill(getattr(msg, field.name).add(), field.message_type.fields, item)
        elif field.is_repeated:
            getattr(msg, field.name).extend(value)
        elif value is not None:
            setattr(msg, field.name, value)


def _report_from_proto(msg: Any, presence: str) -> dict[str, Any]:
    """The service's dict; from an older server (``presence`` empty, as it sends only ``json``) the JSON."""
    if not getattr(msg, presence):
        return json.loads(msg.json) if msg.json else {}  # type: ignore[no-any-return]
    return _plain(msg)


def _plain(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        if field.name == "json":
            continue
        if field.is_repeated and field.message_type is not None:
            out[field.name] = [_plain(item) for item in getattr(msg, field.name)]
        elif field.is_repeated:
            out[field.name] = list(getattr(msg, field.name))
        elif field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = getattr(msg, field.name)
    return out


def compaction_to_proto(report: Mapping[str, Any]) -> pb.CompactionReport:
    return _report_to_proto(pb.CompactionReport, report)  # type: ignore[no-any-return]


def compaction_from_proto(msg: pb.CompactionReport) -> dict[str, Any]:
    return _report_from_proto(msg, "collection")


def stats_to_proto(stats: Mapping[str, Any]) -> pb.CollectionStats:
    return _report_to_proto(pb.CollectionStats, stats)  # type: ignore[no-any-return]


def stats_from_proto(msg: pb.CollectionStats) -> dict[str, Any]:
    return _report_from_proto(msg, "name")


# ---------------------------------------------------------------- writes and reads


def insert_response(result: Mapping[str, Any]) -> pb.InsertResponse:
    return pb.InsertResponse(count=result["count"], ids=result["ids"])


def insert_from_proto(msg: pb.InsertResponse) -> dict[str, Any]:
    return {"count": msg.count, "ids": list(msg.ids)}


def mutate_response(result: Mapping[str, Any]) -> pb.MutateResponse:
    return pb.MutateResponse(deleted=result.get("deleted", 0), updated=result.get("updated", 0))


def mutate_from_proto(msg: pb.MutateResponse) -> dict[str, Any]:
    return {"deleted": msg.deleted, "updated": msg.updated}


def scroll_request(req: pb.ScrollRequest) -> Scroll:
    """ScrollRequest -> the service's request (the filter stays JSON text; the engine parses it)."""
    return Scroll(
        limit=req.limit or 100,
        cursor=req.cursor if req.HasField("cursor") else None,
        filter=req.filter_json or None,
        include_vectors=req.include_vectors,
        consistency=req.consistency or None,
    )


def get_request(req: pb.GetRequest) -> GetVectors:
    return GetVectors(list(req.ids), include_vectors=req.include_vectors, consistency=req.consistency or None)


def count_request(req: pb.CountRequest) -> Count:
    return Count(req.filter_json or None, req.consistency or None)


def records_response(
    records_datum: bytes, next_cursor: str | None = None, schema_version: int = 1
) -> pb.RecordsResponse:
    msg = pb.RecordsResponse(records=records_datum, schema_version=schema_version)
    if next_cursor is not None:
        msg.next_cursor = next_cursor
    return msg


def records_version(requested: int) -> int:
    """The VectorBatch layout to answer in: what the client asked for (0 = 1); a version this
    server does not speak is refused (UnsupportedSchemaVersionError, INVALID_ARGUMENT)."""
    version = requested or 1
    check_version(version)
    return version


def records_from_bytes(datum: bytes, *, include_vectors: bool, schema_version: int = 1) -> list[dict[str, Any]]:
    """A VectorBatch datum -> record dicts ``{"id", "vector"?, "metadata", "timestamp", "expires_at"?,
    "sparse_vectors"?, "named_vectors"?}`` (v3: ``{name: {"indices", "values"}}``, only on records that have
    some; v4: ``{name: float32 array}``, on every record when the datum carries named vectors)."""
    batch = decode_vector_batch(datum, -1, schema_version)
    with_vectors = include_vectors and batch.dim > 0
    vectors = batch.vectors
    expires = batch.expires_at
    sparse = getattr(batch, "sparse_vectors", None)
    named = getattr(batch, "named_vectors", None)
    out = []
    for i, (record_id, metadata) in enumerate(zip(batch.ids, batch.metadata, strict=True)):
        rec: dict[str, Any] = {"id": record_id}
        if with_vectors:
            rec["vector"] = np.array(vectors[i], dtype=np.float32)
        rec["metadata"] = metadata
        rec["timestamp"] = int(batch.timestamps[i])
        if expires is not None and expires[i] != NO_EXPIRY:
            rec["expires_at"] = int(expires[i])
        if sparse:
            own = row_dict(sparse, i)
            if own:
                rec["sparse_vectors"] = own
        if named:
            rec["named_vectors"] = {name: np.array(col[i], dtype=np.float32) for name, col in named.items()}
        out.append(rec)
    return out


def records_from_proto(msg: pb.RecordsResponse, *, include_vectors: bool) -> tuple[list[dict[str, Any]], str | None]:
    records = records_from_bytes(msg.records, include_vectors=include_vectors, schema_version=msg.schema_version or 1)
    return records, (msg.next_cursor if msg.HasField("next_cursor") else None)


# ---------------------------------------------------------------- text, sparse and hybrid search (JSON request bodies)
def search_text_request(req: pb.JsonSearchRequest) -> SearchText:
    return SearchText.from_json(parse_json(req.request_json, "request_json"))


def hybrid_search_request(req: pb.JsonSearchRequest) -> HybridSearch:
    return HybridSearch.from_json(parse_json(req.request_json, "request_json"))


def search_sparse_request(req: pb.JsonSearchRequest) -> SearchSparse:
    return SearchSparse.from_json(parse_json(req.request_json, "request_json"))


def json_search_request(collection: str, body: Mapping[str, Any]) -> pb.JsonSearchRequest:
    return build(pb.JsonSearchRequest, "search request", collection=collection,
                 request_json=dump_json(dict(body), "search request"))


def hits_to_proto(hits: Sequence[Mapping[str, Any]]) -> pb.HitsResponse:
    out = pb.HitsResponse()
    _add_hits(out.hits, hits)
    return out


def _add_hits(target: Any, hits: Sequence[Mapping[str, Any]]) -> None:
    for hit in hits:
        msg = target.add(id=hit["id"], score=float(hit["score"]))
        if "metadata" in hit:
            msg.metadata_json = dump_json(hit["metadata"], "hit metadata")
        if hit.get("expires_at") is not None:
            msg.expires_at = int(hit["expires_at"])
        if hit.get("distance") is not None:
            msg.distance = float(hit["distance"])
        if hit.get("vector") is not None:
            msg.vector.extend(np.asarray(hit["vector"], dtype=np.float32).tolist())
        for name, vec in (hit.get("named_vectors") or {}).items():
            msg.named_vectors.add(name=name, values=np.asarray(vec, dtype=np.float32).tolist())


def _hit_from_proto(h: pb.Hit) -> dict[str, Any]:
    hit: dict[str, Any] = {"id": h.id, "score": h.score}
    if h.HasField("distance"):
        hit["distance"] = h.distance
    if h.HasField("metadata_json"):
        hit["metadata"] = parse_json(h.metadata_json, "hit metadata")
    if h.vector:
        hit["vector"] = np.asarray(h.vector, dtype=np.float32)
    if h.HasField("expires_at"):
        hit["expires_at"] = h.expires_at
    if h.named_vectors:
        hit["named_vectors"] = {nv.name: np.asarray(nv.values, dtype=np.float32) for nv in h.named_vectors}
    return hit


# ---------------------------------------------------------------- search options beside the Avro payload, groups
def search_extras(req: pb.PayloadRequest) -> dict[str, Any]:
    """score_threshold / oversampling / consistency of a Search or SearchBatch request (None when unset)."""
    extras: dict[str, Any] = {name: (getattr(req, name) if req.HasField(name) else None)
                              for name in ("score_threshold", "oversampling")}
    extras["consistency"] = req.consistency or None
    return extras


def search_groups_request(req: pb.JsonSearchRequest) -> SearchGroups:
    return SearchGroups.from_json(parse_json(req.request_json, "request_json"))


def recommend_request(req: pb.JsonSearchRequest) -> Recommend:
    return Recommend.from_json(parse_json(req.request_json, "request_json"))


def groups_to_proto(groups: Sequence[Mapping[str, Any]]) -> pb.GroupsResponse:
    out = pb.GroupsResponse()
    for group in groups:
        msg = out.groups.add(value_json=dump_json(group["value"], "group value"))
        _add_hits(msg.hits, group["hits"])
    return out


def groups_from_proto(msg: pb.GroupsResponse) -> list[dict[str, Any]]:
    return [{"value": parse_json(g.value_json, "group value"), "hits": [_hit_from_proto(h) for h in g.hits]}
            for g in msg.groups]


def hits_from_proto(msg: pb.HitsResponse) -> list[dict[str, Any]]:
    return [_hit_from_proto(h) for h in msg.hits]
