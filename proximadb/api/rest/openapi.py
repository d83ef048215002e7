"""The OpenAPI 3.1 document of the REST API, served at ``GET /openapi.json``.

Written by hand next to the route table in :mod:`proximadb.api.rest.app`;
``tests/api/test_rest_api.py`` walks the mounted Falcon router and this document
and fails when their paths or methods differ.
"""

from __future__ import annotations

from typing import Any

from proximadb.consistency import LEVELS, SESSION_HEADER
from proximadb.idempotency import REQUEST_ID_HEADER
from proximadb.limits import MAX_NAMED_VECTORS, MAX_SPARSE_NNZ, NAMED_VECTOR_NAME_PATTERN, SPARSE_NAME_PATTERN
from proximadb.storage.catalog import MAX_TTL_SECONDS
from proximadb.storage.validation import MAX_TIMESTAMP_US

JSON = "application/json"
AVRO = "application/avro"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_ref("Envelope"), {"type": "object", "properties": {"data": data}}]}


def _body(schema: dict[str, Any], *, avro: str | None = None, required: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if avro:
        content[AVRO] = {"schema": {"type": "string", "format": "binary", "description": f"a versioned {avro} payload"}}
    return {"required": required, "content": content}


_ERRORS = {
    str(status): {"$ref": f"#/components/responses/{name}"}
    for status, name in ((400, "BadRequest"), (401, "Unauthenticated"), (403, "PermissionDenied"), (404, "NotFound"),
                         (408, "BodyTimeout"), (409, "Conflict"), (413, "TooLarge"), (415, "UnsupportedMediaType"),
                         (422, "UnsupportedSchemaVersion"), (429, "TooManyRequests"), (500, "InternalError"),
                         (503, "Unavailable"), (504, "Timeout"), (507, "DiskFull"))
}


_TIMEOUT_HEADER = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "description": "seconds this request may take (the server's request_timeout is the upper bound); "
                   "past it the answer is 504 and nothing was changed",
    "schema": {"type": "number", "minimum": 0.001, "maximum": 86400},
}


def _op(summary: str, data: dict[str, Any], *, status: int = 200, body: dict[str, Any] | None = None,
        avro_result: bool = False, params: list[dict[str, Any]] | None = None, limited: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _envelope(data)}}
    if avro_result:
        content[AVRO] = {"schema": {"type": "string", "format": "binary",
                                    "description": "a versioned search_result payload (when Accept prefers it)"}}
    op: dict[str, Any] = {"summary": summary, "responses": {str(status): {"description": summary, "content": content},
                                                             **_ERRORS}}
    if body is not None:
        op["requestBody"] = body
    params = [*(params or []), *([_TIMEOUT_HEADER] if limited else [])]
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_COLLECTION = _path_param("collection", "collection name or uuid")
_ID = _path_param("id", "vector id (may contain '/')")
_OBJ = {"type": "object"}
# storage/catalog.py: validate_index_params; the quantization setting: proximadb/index/quantization.py
_INDEX_PARAMS = {"type": "object", "description": "hnsw: M, ef_construction, ef, seed; ivf: nlist, nprobe, seed; "
                 "hnsw also quantization: {\"type\": \"int8\" | \"binary\" | \"pq\", \"rescore\": bool "
                 "(default true), \"oversampling\": 1-100 (default int8 2, binary and pq 4), \"m\": pq only, "
                 "sub-vectors per vector, must divide the dimension (default: the largest divisor <= dimension / 4)}"}
# full-text search's analyzer (storage/catalog.py: validate_text_analyzer); null: the default
_ANALYZER = {"type": ["object", "null"], "additionalProperties": False, "properties": {
    "lowercase": {"type": "boolean"},
    "stopwords": {"oneOf": [{"const": "english"}, {"type": "array", "items": {"type": "string", "minLength": 1}},
                            {"type": "null"}]},
    "stemmer": {"type": ["string", "null"], "description": "a PyStemmer language, e.g. english"}}}
_TTL = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TTL_SECONDS,
        "description": "rows written without expires_at expire this many seconds after the write; null: never"}
_FILTER = {"description": "metadata filter: an object, or the same as JSON text",
           "oneOf": [{"type": "object"}, {"type": "string"}]}
_FLOATS = {"type": "array", "items": {"type": "number"}}
_THRESHOLD = {"type": ["number", "null"], "description": "only hits at least this good: euclidean distance <= it "
              "(so >= 0); cosine / dot_product score >= it; BM25 and fused scores >= it (so >= 0)"}
_OVERSAMPLING = {"type": ["number", "null"], "minimum": 1, "maximum": 100, "description": "quantized collections: "
                 "rescore about k x this many candidates (at least the collection's setting); ignored otherwise"}
_TIME = {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP_US}  # storage/validation.py
# named sparse vectors (storage/catalog.py declares them; storage/sparse_column.py states the rules)
_SPARSE_NAME = {"type": "string", "pattern": f"^{SPARSE_NAME_PATTERN.strip('^$')}$"}
_SPARSE_DECLARED = {"type": "object", "propertyNames": _SPARSE_NAME, "description": "the sparse vectors records "
                    "may carry, by name: {name: {modifier?}} (modifier \"idf\": a search weighs each query value "
                    "by its index's IDF among the live records carrying the name); names can be added, not "
                    "removed; a modifier can change",
                    "additionalProperties": {"type": "object", "additionalProperties": False,
                                             "properties": {"modifier": {"enum": ["none", "idf"],
                                                                         "default": "none"}}}}
_SPARSE_QUERY = {
    "name": {**_SPARSE_NAME, "description": "a sparse vector name the collection declares"},
    "indices": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                "maxItems": MAX_SPARSE_NNZ, "description": "strictly increasing"},
    "values": {"type": "array", "items": {"type": "number"}, "maxItems": MAX_SPARSE_NNZ,
               "description": "finite, as many as indices"}}
# named dense vectors (schema v4; storage/catalog.py declares them, storage/named_columns.py states the rules)
_NAMED_NAME = {"type": "string", "pattern": f"^{NAMED_VECTOR_NAME_PATTERN}$"}
_METRIC = {"enum": ["cosine", "euclidean", "dot_product"]}
_NAMED_DECLARED = {"type": "object", "propertyNames": _NAMED_NAME, "maxProperties": MAX_NAMED_VECTORS,
                   "description": "named dense vectors every record carries besides its default vector, by name "
                                  "(unique ignoring case): {name: {dimension, distance_metric, and optionally "
                                  "indexing_algorithm, index_params, quantization}}. Names, dimensions and metrics "
                                  "are fixed at creation; a name's index settings may change (update: every name "
                                  "again), which rebuilds its indexes. A name without index settings is indexed "
                                  "with the collection's (and is described without them); with any, they are its "
                                  "own, described whole (quantization inside index_params, as the collection's); "
                                  "one left out is the collection's when the name keeps its algorithm, none "
                                  "otherwise",
                   "additionalProperties": {"type": "object", "required": ["dimension"], "additionalProperties": False,
                                            "properties": {
                                                "dimension": {"type": "integer", "minimum": 1},
                                                "distance_metric": {**_METRIC, "default": "cosine"},
                                                "indexing_algorithm": {"enum": ["flat", "hnsw", "ivf", None],
                                                                       "description": "this vector's index; absent "
                                                                       "or null: the collection's"},
                                                "index_params": {**_INDEX_PARAMS, "type": ["object", "null"]},
                                                "quantization": {"type": ["object", "null"], "description":
                                                                 "shorthand of index_params.quantization (hnsw "
                                                                 "only): {type: int8 | binary | pq, rescore, "
                                                                 "oversampling, m}; accepted on input, described "
                                                                 "inside index_params"}}}}
_NAMED_VECTORS = {"type": "object", "propertyNames": _NAMED_NAME, "additionalProperties": _FLOATS,
                  "description": "a record's named vectors: every name the collection declares, each with its "
                                 "dimension and finite numbers, and no other name"}
_USING = {"type": ["string", "null"], "description": "the named vector searched (one the collection declares); "
          "absent or null: the default vector"}
_CONSISTENCY = {"type": "string", "enum": list(LEVELS), "default": "bounded", "description": "cluster mode: what "
                "the read must see (proximadb/consistency.py); one node meets every level"}

SCHEMAS: dict[str, Any] = {
    "Envelope": {
        "type": "object",
        "required": ["success", "data", "error", "message"],
        "properties": {
            "success": {"type": "boolean"},
            "data": {},
            "error": {"oneOf": [{"type": "null"}, _ref("Error")]},
            "message": {"type": ["string", "null"]},
        },
    },
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "stable code, e.g. collection_not_found"},
                       "message": {"type": "string"}},
    },
    "CollectionCreate": {
        "type": "object",
        "required": ["name", "dimension"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,255}$"},
            "dimension": {"type": "integer", "minimum": 1},
            "distance_metric": {"enum": ["cosine", "euclidean", "dot_product"]},
            "indexing_algorithm": {"enum": ["flat", "hnsw", "ivf"]},
            "index_params": _INDEX_PARAMS,
            "filterable_metadata_fields": {"type": "array", "items": {"type": "string"}},
            "description": {"type": ["string", "null"]},
            "default_ttl_seconds": _TTL,
            "shards": {"type": "integer", "minimum": 1,
                       "description": "cluster mode (serve --cluster); one node accepts only 1"},
            "replication_factor": {"type": "integer", "minimum": 1,
                                   "description": "cluster mode; default min(3, live nodes); one node accepts only 1"},
            "text_analyzer": _ANALYZER,
            "sparse_vectors": _SPARSE_DECLARED,
            "vectors": _NAMED_DECLARED,
        },
    },
    "CollectionUpdate": {
        "type": "object",
        "properties": {"indexing_algorithm": {"enum": ["flat", "hnsw", "ivf"]}, "index_params": _INDEX_PARAMS,
                       "filterable_metadata_fields": {"type": "array", "items": {"type": "string"}},
                       "description": {"type": ["string", "null"]}, "default_ttl_seconds": _TTL,
                       "text_analyzer": _ANALYZER, "sparse_vectors": _SPARSE_DECLARED,
                       "vectors": _NAMED_DECLARED},
    },
    "Collection": {"type": "object", "properties": {"name": {"type": "string"}, "uuid": {"type": "string"},
                                                    "dimension": {"type": "integer"},
                                                    "vector_count": {"type": "integer"},
                                                    "default_ttl_seconds": _TTL,
                                                    "text_analyzer": _ANALYZER,
                                                    "sparse_vectors": _SPARSE_DECLARED,
                                                    "vectors": _NAMED_DECLARED}},
    "CollectionStats": {"type": "object", "description": "statistics of the collection's storage", "properties": {
        "status": {"type": "string", "enum": ["green", "yellow"],
                   "description": "green: every live row is searched through an index and no build is queued"},
        "indexed_rows": {"type": "integer", "minimum": 0},
        "unindexed_rows": {"type": "integer", "minimum": 0,
                           "description": "memtable rows not in its graph + rows of segments whose index build "
                                          "is pending"},
        "name": {"type": "string"}, "uuid": {"type": "string"}, "vectors": {"type": "integer"},
        "memtable_rows": {"type": "integer"}, "memtable_bytes": {"type": "integer"},
        "segments": {"type": "integer"}, "segment_rows": {"type": "integer"},
        "checkpoint_seq": {"type": "integer"}, "wal_last_seq": {"type": ["integer", "null"]},
        "last_flush_error": {"type": ["string", "null"]}, "indexing_algorithm": {"type": "string"},
        "indexed_segments": {"type": "integer"}, "index_builds_pending": {"type": "integer"},
        "last_index_error": {"type": ["string", "null"]},
        "wal_bytes": {"type": "integer", "minimum": 0, "description": "bytes of the WAL files on disk now"},
        "last_compaction_at": {"type": ["number", "null"],
                               "description": "unix seconds of the last compaction that rewrote segments "
                                              "since the daemon started (null: none)"},
        "memtable_indexed_rows": {"type": "integer", "minimum": 0,
                                  "description": "live memtable rows in the memtable's HNSW graph "
                                                 "(part of indexed_rows)"},
        "filter_plan_cache_hits": {"type": "integer", "minimum": 0,
                                   "description": "segment filter plans answered from the segments' plan caches "
                                                  "since the collection opened"},
        "filter_plan_cache_misses": {"type": "integer", "minimum": 0,
                                     "description": "segment filter plans made anew (a plan is kept on its "
                                                    "second sight)"},
        "filter_plan_cache_bytes": {"type": "integer", "minimum": 0,
                                    "description": "bytes of the plans the segments' caches hold now"}}},
    "Metadata": {"type": "object", "additionalProperties": {
        "oneOf": [{"type": "null"}, {"type": "boolean"}, {"type": "integer"}, {"type": "number"}, {"type": "string"},
                  {"type": "array", "items": {"type": "string"}}]}},
    "VectorInput": {"type": "object", "required": ["vector"], "properties": {
        "id": {"type": "string"}, "vector": _FLOATS, "metadata": _ref("Metadata"),
        "timestamp": {**_TIME, "description": "µs since the epoch; 0 (default): the server's time"},
        "expires_at": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_TIMESTAMP_US},
        "sparse_vectors": _ref("SparseVectors"), "named_vectors": _NAMED_VECTORS}},
    "Record": {"type": "object", "required": ["id", "metadata", "timestamp"], "properties": {
        "id": {"type": "string"}, "vector": _FLOATS, "metadata": _ref("Metadata"), "timestamp": {"type": "integer"},
        "sparse_vectors": _ref("SparseVectors"),
        "named_vectors": {**_NAMED_VECTORS, "description": "with the vectors: the record's named vectors"}}},
    "SparseVector": {"type": "object", "required": ["indices", "values"], "additionalProperties": False,
                     "properties": {"indices": _SPARSE_QUERY["indices"], "values": _SPARSE_QUERY["values"]}},
    "SparseVectors": {"type": ["object", "null"], "propertyNames": _SPARSE_NAME,
                      "additionalProperties": _ref("SparseVector"),
                      "description": "a record's sparse vectors by name (each a declared one); a record without "
                                     "any has none in get/scroll answers"},
    "InsertResult": {"type": "object", "properties": {"count": {"type": "integer"},
                                                      "ids": {"type": "array", "items": {"type": "string"}}}},
    "DeleteResult": {"type": "object", "properties": {"deleted": {"type": "integer"}, "updated": {"type": "integer"}}},
    "Hit": {"type": "object", "required": ["id", "score", "distance"], "properties": {
        "id": {"type": "string"}, "score": {"type": "number"}, "distance": {"type": "number"},
        "metadata": _ref("Metadata"), "vector": _FLOATS,
        "named_vectors": {**_NAMED_VECTORS, "description": "with include_vectors: the record's named vectors"}}},
    "TextHit": {"type": "object", "required": ["id", "score"], "properties": {
        "id": {"type": "string"},
        "score": {"type": "number", "description": "BM25, dot product or fused score, higher is better"},
        "metadata": _ref("Metadata"), "expires_at": {"type": "integer"}}},
    "SearchOptions": {"type": "object", "properties": {
        "k": {"type": "integer", "minimum": 1, "default": 10}, "filter": _FILTER,
        "include_vectors": {"type": "boolean", "default": False},
        "include_metadata": {"type": "boolean", "default": True},
        "ef": {"type": "integer", "minimum": 1}, "nprobe": {"type": "integer", "minimum": 1},
        "exact": {"type": "boolean", "default": False},
        "score_threshold": _THRESHOLD, "oversampling": _OVERSAMPLING, "consistency": _CONSISTENCY,
        "using": _USING}},
    "ScoredHit": {"type": "object", "required": ["id", "score"], "properties": {
        "id": {"type": "string"}, "score": {"type": "number"}, "distance": {"type": "number"},
        "metadata": _ref("Metadata"), "vector": _FLOATS, "expires_at": {"type": "integer"},
        "named_vectors": {**_NAMED_VECTORS, "description": "with include_vectors: the record's named vectors"}}},
    "Group": {"type": "object", "required": ["value", "hits"], "properties": {
        "value": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "hits": {"type": "array", "items": _ref("Hit")}}},
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Envelope")}}}


RESPONSES = {
    "BadRequest": _error_response("invalid input: malformed JSON or payload, wrong types or dimension, NaN"),
    "NotFound": _error_response("unknown collection, vector or route"),
    "TooLarge": _error_response("body larger than the server's max request size"),
    "UnsupportedMediaType": _error_response("Content-Type not accepted by this route"),
    "UnsupportedSchemaVersion": _error_response("payload frame with a schema version this server does not read"),
    "InternalError": _error_response("unexpected server error (details only in the server log)"),
    "Unauthenticated": _error_response("API keys are configured and the request has no valid one"),
    "PermissionDenied": _error_response("a read-only API key used for a write"),
    "Conflict": _error_response("the collection or vector id already exists"),
    "TooManyRequests": {**_error_response("max_concurrent_requests are in flight; nothing was done: retry after "
                                          "Retry-After seconds"),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    "BodyTimeout": _error_response("the client stalled while sending the request body"),
    "Unavailable": _error_response("the server is starting, stopping or not ready"),
    "Timeout": _error_response("the request ran out of time (request_timeout or X-Request-Timeout) before it "
                               "changed anything"),
    "DiskFull": _error_response("no space left on the server's disk: the write was refused, nothing kept"),
}

_HITS = {"type": "array", "items": _ref("Hit")}
_SEARCH_ONE = {"allOf": [_ref("SearchOptions"), {"type": "object", "required": ["vector"],
                                                   "properties": {"vector": _FLOATS}}]}
_SEARCH_BATCH = {"allOf": [_ref("SearchOptions"), {"type": "object", "required": ["queries"],
                                                     "properties": {"queries": {"type": "array", "items": _FLOATS}}}]}
_TEXT_HITS = {"type": "array", "items": _ref("TextHit")}
_TEXT_OPTIONS = {
    "text": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "default": 10}, "filter": _FILTER,
    "include_metadata": {"type": "boolean", "default": True},
    "score_threshold": {"type": ["number", "null"], "minimum": 0, "description": "only scores >= it"},
    "consistency": _CONSISTENCY,
}
_SEARCH_TEXT = {"type": "object", "required": ["text"], "additionalProperties": False, "properties": _TEXT_OPTIONS}
_SEARCH_SPARSE = {"type": "object", "required": ["name", "indices", "values"], "additionalProperties": False,
                  "properties": {**{key: v for key, v in _TEXT_OPTIONS.items() if key != "text"}, **_SPARSE_QUERY,
                                 "score_threshold": {"type": ["number", "null"],
                                                     "description": "only dot products >= it"}}}
_DEPTH = {"type": ["integer", "null"], "minimum": 1}
_HYBRID = {"type": "object", "additionalProperties": False,
           "description": "at least one part of vector, text and sparse", "properties": {
    **_TEXT_OPTIONS, "vector": _FLOATS, "using": {**_USING, "description": "the named vector the vector part "
                                                   "searches; absent or null: the default vector"},
    "sparse": {"type": "object", "required": ["name", "indices", "values"], "additionalProperties": False,
               "properties": _SPARSE_QUERY, "description": "a sparse search's query"},
    "fusion": {"type": "string", "enum": ["rrf", "dbsf", "relative_score"], "default": "rrf"},
    "weights": {"type": ["array", "null"], "items": {"type": "number", "minimum": 0}, "minItems": 1, "maxItems": 3,
                "description": "one per part given, in the order [vector, text, sparse]"},
    "rrf_k": {"type": "number", "minimum": 0, "default": 60},
    "depth": {"oneOf": [_DEPTH, {"type": "object", "additionalProperties": False, "properties": {
        "vector": _DEPTH, "text": _DEPTH, "sparse": _DEPTH}}],
              "description": "hits taken from each search (default max(k, 100)), or per part"},
    "ef": {"type": ["integer", "null"], "minimum": 1}}}
_SHAPE_OPTIONS = {
    "filter": _FILTER, "score_threshold": _THRESHOLD, "include_vectors": {"type": "boolean", "default": False},
    "include_metadata": {"type": "boolean", "default": True}, "exact": {"type": "boolean", "default": False},
    "ef": {"type": ["integer", "null"], "minimum": 1}, "nprobe": {"type": ["integer", "null"], "minimum": 1},
    "consistency": _CONSISTENCY, "using": {**_USING, "description": "the named vector searched (recommend: also "
                                           "the vector of the example ids); absent or null: the default vector"}}
_GROUPS = {"type": "object", "required": ["vector", "group_by"], "additionalProperties": False, "properties": {
    **_SHAPE_OPTIONS, "vector": _FLOATS, "group_by": {"type": "string", "minLength": 1},
    "limit": {"type": "integer", "minimum": 1, "default": 10, "description": "groups"},
    "group_size": {"type": "integer", "minimum": 1, "default": 1, "description": "hits per group"},
    "oversampling": _OVERSAMPLING}}
_EXAMPLES = {"type": "array", "items": {"oneOf": [{"type": "string", "description": "a record id"}, _FLOATS]}}
_RECOMMEND = {"type": "object", "required": ["positive"], "additionalProperties": False, "properties": {
    **_SHAPE_OPTIONS, "positive": {**_EXAMPLES, "minItems": 1}, "negative": _EXAMPLES,
    "k": {"type": "integer", "minimum": 1, "default": 10},
    "strategy": {"type": "string", "enum": ["average_vector", "best_score"], "default": "average_vector"}}}
_AVRO_SEARCH_PARAMS = [
    _query_param("score_threshold", {"type": "number"}, "with an application/avro body: the body's score_threshold"),
    _query_param("oversampling", {"type": "number", "minimum": 1, "maximum": 100},
                 "with an application/avro body: the body's oversampling"),
]
_SESSION = {"name": SESSION_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
            "description": "with consistency=session: the session token write responses carry in this header "
                           "(v1:<log>=<seq>,...; proximadb/consistency.py)"}
_REQUEST_ID = {"name": REQUEST_ID_HEADER, "in": "header", "required": False,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
               "description": "the write's request id, the same on every retry of it: applied once, a retry "
                              "within 120 s gets the first answer; reused for another request: 400 "
                              "(proximadb/idempotency.py)"}
_READ_PARAMS = [_query_param("consistency", _CONSISTENCY, "read consistency (cluster mode)"), _SESSION]
_AVRO_SEARCH_PARAMS += [_query_param("consistency", _CONSISTENCY, "with an application/avro body: the read "
                                     "consistency (a JSON body has the field)"), _SESSION]
_GET_PARAMS = [_query_param("include_vector", {"type": "boolean", "default": True}, "include the vector"),
               *_READ_PARAMS]

PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _op("service health, version, schema versions, advertised ports", _OBJ, limited=False)},
    "/ready": {"get": _op("ready to serve (503 when not)", _OBJ, limited=False)},
    "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4)", "responses": {"200": {
        "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {
        "description": "OpenAPI document", "content": {JSON: {"schema": _OBJ}}}}}},
    "/dashboard": {"get": {"summary": "the web dashboard (HTML; open: its data calls send the API key)",
                           "responses": {"200": {"description": "the dashboard page",
                                                 "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    "/dashboard/{asset}": {
        "parameters": [_path_param("asset", "a file of the dashboard: index.html, app.js, metrics.js, style.css")],
        "get": {"summary": "a static file of the dashboard", "responses": {
            "200": {"description": "the file", "content": {"text/html": {}, "text/javascript": {}, "text/css": {}}},
            "404": {"$ref": "#/components/responses/NotFound"}}},
    },
    "/collections": {
        "get": _op("list collections", {"type": "array", "items": _ref("Collection")}),
        "post": _op("create a collection", _ref("Collection"), status=201, body=_body(_ref("CollectionCreate"))),
    },
    "/collections/{collection}": {
        "parameters": [_COLLECTION],
        "get": _op("get a collection", _ref("Collection")),
        "patch": _op("update a collection's mutable settings", _ref("Collection"),
                     body=_body(_ref("CollectionUpdate"))),
        "delete": _op("delete a collection and its data", {"type": "null"}),
    },
    "/collections/{collection}/compact": {
        "parameters": [_COLLECTION],
        "post": _op("merge the collection's segments now, dropping deleted and superseded rows",
                    {"type": "object", "description": "compaction report: segments/rows/bytes before and after, "
                     "seconds, merged (segment ids), replicas (cluster mode: every replica of every shard is "
                     "compacted, the figures are totals and replicas lists each one's report with its node and "
                     "shard; [] on one node; a replica that does not answer: 503 naming it)"}),
    },
    "/collections/{collection}/flush": {
        "parameters": [_COLLECTION],
        "post": _op("seal the memtable into a segment now (its index is built in the background; cluster mode: "
                    "every replica's); the statistics after it", _ref("CollectionStats")),
    },
    "/collections/{collection}/stats": {
        "parameters": [_COLLECTION],
        "get": _op("storage statistics: memtable, segments, WAL, indexes; status green once fully indexed",
                   _ref("CollectionStats")),
    },
    "/collections/{collection}/vectors": {
        "parameters": [_COLLECTION],
        "post": _op("insert one record (an id is generated when missing; an existing id is 409)",
                    _ref("InsertResult"), status=201, body=_body(_ref("VectorInput"), avro="vector_insert"),
                    params=[_REQUEST_ID]),
    },
    "/collections/{collection}/vectors/batch": {
        "parameters": [_COLLECTION],
        "post": _op("insert or upsert a batch, all or nothing", _ref("InsertResult"), status=201, body=_body(
            {"type": "object", "required": ["vectors"], "properties": {
                "vectors": {"type": "array", "items": _ref("VectorInput")}, "upsert": {"type": "boolean"}}},
            avro="vector_insert"), params=[_REQUEST_ID]),
    },
    "/collections/{collection}/vectors/get": {
        "parameters": [_COLLECTION],
        "post": _op("get records by id (missing ids are left out)", {"type": "array", "items": _ref("Record")},
                    body=_body({"type": "object", "required": ["ids"], "properties": {
                        "ids": {"type": "array", "items": {"type": "string"}},
                        "include_vectors": {"type": "boolean", "default": True},
                        "consistency": _CONSISTENCY}}), params=[_SESSION]),
    },
    "/collections/{collection}/vectors/delete": {
        "parameters": [_COLLECTION],
        "post": _op("delete by ids or filter (Avro: a vector_delete or vector_update payload)", _ref("DeleteResult"),
                    body=_body({"type": "object", "properties": {
                        "ids": {"type": "array", "items": {"type": "string"}}, "filter": _FILTER}},
                        avro="vector_delete or vector_update"), params=[_REQUEST_ID]),
    },
    "/collections/{collection}/vectors/scroll": {
        "parameters": [_COLLECTION],
        "post": _op("page through records in id order", {"type": "object", "properties": {
            "records": {"type": "array", "items": _ref("Record")}, "next_cursor": {"type": ["string", "null"]}}},
            body=_body({"type": "object", "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                "cursor": {"type": ["string", "null"]}, "filter": _FILTER,
                "include_vectors": {"type": "boolean", "default": False}, "consistency": _CONSISTENCY}},
                required=False), params=[_SESSION]),
    },
    "/collections/{collection}/vectors/count": {
        "parameters": [_COLLECTION],
        "get": _op("count records", {"type": "object", "properties": {"count": {"type": "integer"}}},
                   params=[_query_param("filter", {"type": "string"}, "metadata filter as JSON text"),
                           *_READ_PARAMS]),
        "post": _op("count records matching a filter", {"type": "object", "properties": {
            "count": {"type": "integer"}}}, body=_body({"type": "object", "properties": {
                "filter": _FILTER, "consistency": _CONSISTENCY}}, required=False), params=[_SESSION]),
    },
    "/collections/{collection}/vectors/{id}": {
        "parameters": [_COLLECTION, _ID],
        "get": _op("get one record", _ref("Record"), params=_GET_PARAMS),
        "put": _op("replace a record (with 'vector') or only its metadata", _ref("Record"), body=_body(
            {"type": "object", "properties": {"vector": _FLOATS, "metadata": _ref("Metadata"),
                                              "named_vectors": {**_NAMED_VECTORS, "description": "with 'vector': "
                                                                "the replacement's named vectors"}}}),
            params=[_REQUEST_ID]),
        "patch": _op("merge (or with replace, swap) a record's metadata; null removes a key", _ref("Record"),
                     body=_body({"type": "object", "required": ["metadata"], "properties": {
                         "metadata": _ref("Metadata"), "replace": {"type": "boolean", "default": False}}}),
                     params=[_REQUEST_ID]),
        "delete": _op("delete one record (404 when it does not exist)", _ref("DeleteResult"),
                      params=[_REQUEST_ID]),
    },
    "/collections/{collection}/search": {
        "parameters": [_COLLECTION],
        "post": _op("k nearest neighbours of one query, best first", _HITS,
                    body=_body(_SEARCH_ONE, avro="vector_search"), avro_result=True, params=_AVRO_SEARCH_PARAMS),
    },
    "/collections/{collection}/search/batch": {
        "parameters": [_COLLECTION],
        "post": _op("k nearest neighbours of each query", {"type": "array", "items": _HITS},
                    body=_body(_SEARCH_BATCH, avro="vector_search"), avro_result=True, params=_AVRO_SEARCH_PARAMS),
    },
    "/collections/{collection}/search/sparse": {
        "parameters": [_COLLECTION],
        "post": _op("exact top-k by dot product over a named sparse vector, best first", _TEXT_HITS,
                    body=_body(_SEARCH_SPARSE), params=[_SESSION]),
    },
    "/collections/{collection}/search_text": {
        "parameters": [_COLLECTION],
        "post": _op("BM25 full-text search over the records' 'document' metadata text, best first", _TEXT_HITS,
                    body=_body(_SEARCH_TEXT), params=[_SESSION]),
    },
    "/collections/{collection}/hybrid_search": {
        "parameters": [_COLLECTION],
        "post": _op("up to three searches fused (a vector, a text, a sparse search; rrf, dbsf, relative_score), "
                    "best first", _TEXT_HITS,
                    body=_body(_HYBRID), params=[_SESSION]),
    },
    "/collections/{collection}/search_groups": {
        "parameters": [_COLLECTION],
        "post": _op("hits grouped by a metadata field's value (groups ordered by their best hit); rows without "
                    "the field are left out", {"type": "array", "items": _ref("Group")}, body=_body(_GROUPS),
                    params=[_SESSION]),
    },
    "/collections/{collection}/recommend": {
        "parameters": [_COLLECTION],
        "post": _op("records like the positive examples and unlike the negative ones (ids or vectors; "
                    "average_vector or best_score), example ids left out, best first",
                    {"type": "array", "items": _ref("ScoredHit")}, body=_body(_RECOMMEND), params=[_SESSION]),
    },
    "/cluster/replicas/{replica}/snapshot": {
        "parameters": [_path_param("replica", "a replica held here, <collection>.s<shard>")],
        "get": {"summary": "cluster mode, between nodes: the replica's files at a fresh checkpoint, for a replica "
                           "that is behind its shard log's first entry (404 on a single node)",
                "responses": {"200": {"description": "a tar stream; its format is documented in "
                                                     "proximadb/cluster/snapshot.py",
                                      "content": {"application/x-tar": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}},
                              **_ERRORS}},
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ProximaDB REST API",
            "version": version,
            "description": "Every JSON response is {success, data, error: {code, message} | null, message}. "
                           "Write and search routes also take application/avro versioned payloads.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "responses": RESPONSES},
    }
