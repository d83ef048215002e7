"""The ProximaDB gRPC servicer: one thin method per RPC over UnifiedAvroService.

Each method converts its request (convert.py) into the service's typed request
(:mod:`proximadb.service.requests`), makes one service call and converts the
result back. Payload frames (Insert, Mutate, Search, SearchBatch) are handed to the service
as the ``bytes`` they arrived as; nothing here decodes them.

Every method goes through :func:`_rpc`, which

* maps a :class:`~proximadb.errors.ProximaDBError` to its gRPC status and message, with the
  stable error code in the trailing metadata ``proximadb-error-code`` (the SDK rebuilds the
  same exception from it; :mod:`proximadb.api.grpc.status`);
* turns anything else into INTERNAL with a generic message, the traceback going to the log;
* holds an admission slot and the request's deadline (the server's request_timeout or the
  client's deadline, whichever is shorter) while the method runs, unless the operation table
  (:mod:`proximadb.api.operations`) says the RPC is a probe (``Health``);
* opens the request's read-consistency scope (:mod:`proximadb.consistency`) with the session token of
  the request metadata ``proximadb-session`` (malformed: INVALID_ARGUMENT), and returns the session token
  of a request that wrote in the trailing metadata ``proximadb-session``, and its write request-id scope
  (:mod:`proximadb.idempotency`) with the request metadata ``proximadb-request-id`` (malformed:
  INVALID_ARGUMENT);
* records ``proximadb_requests_total{protocol="grpc",route,code}`` and
  ``proximadb_request_seconds{protocol="grpc",route}`` (:func:`proximadb.api.operations.record_request`).

:func:`add_to_server` registers the servicer (instead of the generated
``add_ProximaDBServicer_to_server``) with request deserializers that hand bytes which are not
the RPC's protobuf message on as an :class:`UndecodableRequest`; ``_rpc`` answers it with
INVALID_ARGUMENT (``malformed_payload``) where gRPC itself would say INTERNAL.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import DecodeError

from proximadb import consistency, idempotency
from proximadb.api import operations
from proximadb.api.grpc import SERVICE_NAME, convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.grpc.status import abort, status_code
from proximadb.errors import MalformedPayloadError, ProximaDBError
from proximadb.service.unified import UnifiedAvroService, encode_records

log = logging.getLogger("proximadb.api.grpc")

Request = TypeVar("Request")
Response = TypeVar("Response")
Context: TypeAlias = grpc.ServicerContext
Method = Callable[["ProximaDBServicer", Request, Context], Response]


@dataclass(frozen=True, slots=True)
class UndecodableRequest:
    """What the request deserializer hands on for bytes that are not the RPC's request message."""

    message: str


def _lenient_deserializer(message_type: Any) -> Callable[[bytes], Any]:
    name = message_type.DESCRIPTOR.name

    def deserialize(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return UndecodableRequest(f"the request bytes are not a valid protobuf {name}: {exc}")

    return deserialize


def add_to_server(servicer: ProximaDBServicer, server: grpc.Server) -> None:
    """Register every RPC of the service descriptor, with :func:`_lenient_deserializer`."""
    handlers = {}
    for rpc in pb.DESCRIPTOR.services_by_name["ProximaDB"].methods:
        assert not (rpc.client_streaming or rpc.server_streaming), f"{rpc.name}: only unary RPCs are registered here"
        handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, rpc.name),
            request_deserializer=_lenient_deserializer(getattr(pb, rpc.input_type.name)),
            response_serializer=getattr(pb, rpc.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _metadata(context: Context) -> tuple[str | None, str | None]:
    """The session token and the request id the client sent (request metadata ``proximadb-session`` and
    ``proximadb-request-id``; the first of each), None for one it did not: one pass over the metadata."""
    session = request_id = None
    for key, value in context.invocation_metadata() or ():
        if key == _SESSION:
            if session is None:
                session = str(value)
        elif key == _REQUEST_ID and request_id is None:
            request_id = str(value)
    return session, request_id


_SESSION, _REQUEST_ID = consistency.SESSION_METADATA, idempotency.REQUEST_ID_METADATA


def _rpc(method: Method[Request, Response]) -> Method[Request, Response]:
    route = method.__name__
    op = operations.for_rpc(route)
    admitted, read = op.admitted, op.kind is operations.Kind.READ

    @functools.wraps(method)
    def handler(self: ProximaDBServicer, request: Request, context: Context) -> Response:
        started = time.perf_counter()
        code = "OK"
        try:
            if isinstance(request, UndecodableRequest):
                raise MalformedPayloadError(request.message)
            if not admitted:
                return method(self, request, context)
            session, request_id = _metadata(context)
            with self.service.admission.request("grpc", context.time_remaining()):
                if read and session is None and request_id is None:
                    return method(self, request, context)  # no token to read at, nothing to answer once
                with consistency.request(session) as state, idempotency.request(request_id):
                    response = method(self, request, context)
                token = consistency.response_token(state)
                if token is not None:
                    context.set_trailing_metadata(((consistency.SESSION_METADATA, token),))
                return response
        except ProximaDBError as exc:
            code = status_code(exc.grpc_status).name
            abort(context, exc)
        except Exception:
            code = "INTERNAL"
            log.exception("gRPC %s failed", route)
            abort(context, ProximaDBError("internal error (the server log has the details)"))
        finally:
            operations.record_request(self.service.metrics, "grpc", route, code, time.perf_counter() - started)

    return handler


class ProximaDBServicer(pb_grpc.ProximaDBServicer):
    """Method names are the RPC names of proto/proximadb/v1/proximadb.proto (hence the noqa: N802)."""

    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    @_rpc
    def Health(self, request: pb.HealthRequest, context: Context) -> pb.HealthResponse:  # noqa: N802
        return convert.health_to_proto(self.service.health())

    # ------------------------------------------------------------ collections
    @_rpc
    def CreateCollection(self, request: pb.CreateCollectionRequest, context: Context) -> pb.CollectionInfo:  # noqa: N802
        return convert.collection_to_proto(self.service.create_collection(convert.create_request(request)))

    @_rpc
    def GetCollection(self, request: pb.CollectionRef, context: Context) -> pb.CollectionInfo:  # noqa: N802
        return convert.collection_to_proto(self.service.get_collection(request.collection))

    @_rpc
    def ListCollections(self, request: pb.ListCollectionsRequest, context: Context) -> pb.ListCollectionsResponse:  # noqa: N802
        return convert.collections_to_proto(self.service.list_collections())

    @_rpc
    def UpdateCollection(self, request: pb.UpdateCollectionRequest, context: Context) -> pb.CollectionInfo:  # noqa: N802
        update = convert.update_request(request)
        return convert.collection_to_proto(self.service.update_collection(request.collection, update))

    @_rpc
    def DeleteCollection(self, request: pb.CollectionRef, context: Context) -> pb.DeleteCollectionResponse:  # noqa: N802
        self.service.delete_collection(request.collection)
        return pb.DeleteCollectionResponse()

    @_rpc
    def Compact(self, request: pb.CollectionRef, context: Context) -> pb.CompactionReport:  # noqa: N802
        return convert.compaction_to_proto(self.service.compact_collection(request.collection))

    @_rpc
    def Stats(self, request: pb.CollectionRef, context: Context) -> pb.CollectionStats:  # noqa: N802
        return convert.stats_to_proto(self.service.collection_stats(request.collection))

    @_rpc
    def Flush(self, request: pb.CollectionRef, context: Context) -> pb.CollectionStats:  # noqa: N802
        return convert.stats_to_proto(self.service.flush_collection(request.collection))

    # ------------------------------------------------------------ vectors (payload frames pass through)
    @_rpc
    def Insert(self, request: pb.PayloadRequest, context: Context) -> pb.InsertResponse:  # noqa: N802
        return convert.insert_response(self.service.insert_payload(request.collection, request.payload))

    @_rpc
    def Mutate(self, request: pb.PayloadRequest, context: Context) -> pb.MutateResponse:  # noqa: N802
        return convert.mutate_response(self.service.mutate_payload(request.collection, request.payload))

    @_rpc
    def Search(self, request: pb.PayloadRequest, context: Context) -> pb.PayloadResponse:  # noqa: N802
        return pb.PayloadResponse(payload=self.service.search_payload(request.collection, request.payload,
                                                                      **convert.search_extras(request)))

    @_rpc
    def SearchBatch(self, request: pb.PayloadRequest, context: Context) -> pb.PayloadResponse:  # noqa: N802
        return pb.PayloadResponse(payload=self.service.search_payload(request.collection, request.payload,
                                                                      **convert.search_extras(request)))

    @_rpc
    def SearchGroups(self, request: pb.JsonSearchRequest, context: Context) -> pb.GroupsResponse:  # noqa: N802
        groups = self.service.search_groups(request.collection, convert.search_groups_request(request))
        return convert.groups_to_proto(groups)

    @_rpc
    def Recommend(self, request: pb.JsonSearchRequest, context: Context) -> pb.HitsResponse:  # noqa: N802
        hits = self.service.recommend(request.collection, convert.recommend_request(request))
        return convert.hits_to_proto(hits)

    @_rpc
    def SearchText(self, request: pb.JsonSearchRequest, context: Context) -> pb.HitsResponse:  # noqa: N802
        hits = self.service.search_text(request.collection, convert.search_text_request(request))
        return convert.hits_to_proto(hits)

    @_rpc
    def HybridSearch(self, request: pb.JsonSearchRequest, context: Context) -> pb.HitsResponse:  # noqa: N802
        hits = self.service.hybrid_search(request.collection, convert.hybrid_search_request(request))
        return convert.hits_to_proto(hits)

    @_rpc
    def SearchSparse(self, request: pb.JsonSearchRequest, context: Context) -> pb.HitsResponse:  # noqa: N802
        hits = self.service.search_sparse(request.collection, convert.search_sparse_request(request))
        return convert.hits_to_proto(hits)

    # ------------------------------------------------------------ reads
    @_rpc
    def Get(self, request: pb.GetRequest, context: Context) -> pb.RecordsResponse:  # noqa: N802
        version = convert.records_version(request.schema_version)
        records = self.service.get_vectors(request.collection, convert.get_request(request))
        return convert.records_response(encode_records(records, version), schema_version=version)

    @_rpc
    def Scroll(self, request: pb.ScrollRequest, context: Context) -> pb.RecordsResponse:  # noqa: N802
        version = convert.records_version(request.schema_version)
        page: dict[str, Any] = self.service.scroll(request.collection, convert.scroll_request(request))
        return convert.records_response(encode_records(page["records"], version), page["next_cursor"], version)

    @_rpc
    def Count(self, request: pb.CountRequest, context: Context) -> pb.CountResponse:  # noqa: N802
        return pb.CountResponse(count=self.service.count(request.collection, convert.count_request(request)))
