"""The SDK's gRPC transport: payload frames in ``bytes`` fields, typed errors from the status.

Errors: a server that failed on purpose sends its stable error code in the trailing
metadata ``proximadb-error-code``, rebuilt here with
:func:`proximadb.errors.error_from_code` (the same class the REST transport raises).
Without that code the status decides: UNAVAILABLE -> UnavailableError naming the target,
DEADLINE_EXCEEDED -> RequestTimeoutError, RESOURCE_EXHAUSTED (gRPC's own message size
limit) -> PayloadTooLargeError, or ResourceExhaustedError for gRPC's own concurrent-RPC
limit, and otherwise the class of :data:`proximadb.errors.BY_GRPC_STATUS` (the REST
transport does the same by HTTP status). Every call carries the transport's ``timeout``
as its gRPC deadline, which the server also uses as the request's budget. Which RPC
serves a call is the operation table's (:mod:`proximadb.api.operations`).

Each call's request and the decoding of its answer are an :class:`Exchange` built by the
module functions below, and the target, TLS and error mapping are :class:`GrpcEndpoint`'s:
both are shared with the asyncio transport (:mod:`proximadb.sdk.async_transports`), which
differs only in sending the request through ``grpc.aio``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc

from proximadb import idempotency
from proximadb.api import operations as ops
from proximadb.api.grpc import ENVELOPE_BYTES, ERROR_CODE_METADATA, convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.operations import Operation
from proximadb.consistency import SESSION_METADATA, SessionTokens, wants_session
from proximadb.errors import (
    BY_GRPC_STATUS,
    PayloadTooLargeError,
    ProximaDBError,
    RequestTimeoutError,
    ResourceExhaustedError,
    UnavailableError,
    ValidationError,
    error_from_code,
)

DEFAULT_TARGET = "127.0.0.1:5679"
T = TypeVar("T")


@dataclass(frozen=True)
class Exchange(Generic[T]):
    """One RPC: the operation (whose ``rpc`` names the stub method), its request, and how to read the answer."""

    op: Operation
    request: Any
    decode: Callable[[Any], T]
    session: bool = False  # a read with consistency=session: send the client's session token


def _ref(collection: str) -> pb.CollectionRef:
    return convert.build(pb.CollectionRef, "collection name", collection=collection)


def _payload_request(collection: str, payload: bytes) -> pb.PayloadRequest:
    return convert.build(pb.PayloadRequest, "payload request", collection=collection, payload=bytes(payload))


# ---------------------------------------------------------------- the exchange of each Transport call
def health() -> Exchange[dict[str, Any]]:
    return Exchange(ops.HEALTH, pb.HealthRequest(), convert.health_from_proto)


def create_collection(body: dict[str, Any]) -> Exchange[dict[str, Any]]:
    return Exchange(ops.CREATE_COLLECTION, convert.create_request_from_body(body), convert.collection_from_proto)


def get_collection(collection: str) -> Exchange[dict[str, Any]]:
    return Exchange(ops.GET_COLLECTION, _ref(collection), convert.collection_from_proto)


def list_collections() -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.LIST_COLLECTIONS, pb.ListCollectionsRequest(), convert.collections_from_proto)


def update_collection(collection: str, changes: dict[str, Any]) -> Exchange[dict[str, Any]]:
    request = convert.update_request_from_changes(collection, changes)
    return Exchange(ops.UPDATE_COLLECTION, request, convert.collection_from_proto)


def delete_collection(collection: str) -> Exchange[None]:
    return Exchange(ops.DELETE_COLLECTION, _ref(collection), lambda _response: None)


def compact(collection: str) -> Exchange[dict[str, Any]]:
    return Exchange(ops.COMPACT, _ref(collection), convert.compaction_from_proto)


def stats(collection: str) -> Exchange[dict[str, Any]]:
    return Exchange(ops.STATS, _ref(collection), convert.stats_from_proto)


def flush(collection: str) -> Exchange[dict[str, Any]]:
    return Exchange(ops.FLUSH, _ref(collection), convert.stats_from_proto)


def insert_payload(collection: str, payload: bytes) -> Exchange[dict[str, Any]]:
    return Exchange(ops.INSERT, _payload_request(collection, payload), convert.insert_from_proto)


def mutate_payload(collection: str, payload: bytes) -> Exchange[dict[str, Any]]:
    return Exchange(ops.MUTATE, _payload_request(collection, payload), convert.mutate_from_proto)


def search_payload(collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> Exchange[bytes]:
    # Search and SearchBatch are the same call on the server; the payload says how many queries.
    # extras: score_threshold / oversampling / consistency, fields of the request beside the Avro payload.
    request = _payload_request(collection, payload)
    if not extras:  # the plain search
        return Exchange(ops.SEARCH, request, _payload_of)
    for name, value in extras.items():
        setattr(request, name, value if name == "consistency" else float(value))
    return Exchange(ops.SEARCH, request, _payload_of, _session(extras.get("consistency")))


def _payload_of(response: pb.PayloadResponse) -> bytes:
    return bytes(response.payload)


_session = wants_session


def search_groups(collection: str, body: dict[str, Any]) -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.SEARCH_GROUPS, convert.json_search_request(collection, body), convert.groups_from_proto,
                    _session(body.get("consistency")))


def recommend(collection: str, body: dict[str, Any]) -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.RECOMMEND, convert.json_search_request(collection, body), convert.hits_from_proto,
                    _session(body.get("consistency")))


def search_text(collection: str, body: dict[str, Any]) -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.SEARCH_TEXT, convert.json_search_request(collection, body), convert.hits_from_proto,
                    _session(body.get("consistency")))


def hybrid_search(collection: str, body: dict[str, Any]) -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.HYBRID_SEARCH, convert.json_search_request(collection, body), convert.hits_from_proto,
                    _session(body.get("consistency")))


def search_sparse(collection: str, body: dict[str, Any]) -> Exchange[list[dict[str, Any]]]:
    return Exchange(ops.SEARCH_SPARSE, convert.json_search_request(collection, body), convert.hits_from_proto,
                    _session(body.get("consistency")))


def get_vectors(collection: str, ids: list[str], include_vectors: bool,
                schema_version: int, consistency: str | None = None) -> Exchange[list[dict[str, Any]]]:
    request = convert.build(
        pb.GetRequest, "get request", collection=collection, ids=ids, include_vectors=include_vectors,
        schema_version=schema_version, consistency=consistency,
    )
    return Exchange(ops.GET, request, lambda response: convert.records_from_bytes(
        response.records, include_vectors=include_vectors, schema_version=response.schema_version or 1),
        _session(consistency))


def count(collection: str, filter_json: str | None, consistency: str | None = None) -> Exchange[int]:
    request = convert.build(pb.CountRequest, "count request", collection=collection, filter_json=filter_json,
                            consistency=consistency)
    return Exchange(ops.COUNT, request, lambda response: int(response.count), _session(consistency))


def scroll(
    collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
    schema_version: int, consistency: str | None = None,
) -> Exchange[tuple[list[dict[str, Any]], str | None]]:
    # limit 0 means "default" on the wire; a caller's 0 (or less) is refused as over REST.
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 0xFFFF_FFFF:
        raise ValidationError(f"limit must be an integer from 1 to 10000, not {limit!r}")
    request = convert.build(
        pb.ScrollRequest, "scroll request", collection=collection, limit=limit, cursor=cursor,
        filter_json=filter_json, include_vectors=include_vectors, schema_version=schema_version,
        consistency=consistency,
    )
    return Exchange(ops.SCROLL, request,
                    lambda response: convert.records_from_proto(response, include_vectors=include_vectors),
                    _session(consistency))


class GrpcEndpoint:
    """Where a gRPC transport connects and how its failures read: shared by the blocking and asyncio transports."""

    protocol = "grpc"
    schema_version = 1  # set by the client to the negotiated payload version

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = 30.0,
        api_key: str | None = None,
        max_message_bytes: int = 64 << 20,
        tls: bool = False,
        ca_file: str | None = None,
    ) -> None:
        if target.startswith("grpcs://"):
            target, tls = target[len("grpcs://"):], True
        if target.startswith("grpc://"):
            target = target[len("grpc://"):]
        self.tls = tls or ca_file is not None
        self.target = target
        self.url = f"{'grpcs' if self.tls else 'grpc'}://{target}"
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key is not None else ()
        )
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes + ENVELOPE_BYTES),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._credentials: grpc.ChannelCredentials | None = None
        if self.tls:  # verified against the system CAs, or ca_file's
            try:
                roots = Path(ca_file).read_bytes() if ca_file is not None else None
            except OSError as exc:
                raise ValidationError(f"cannot read ca_file {ca_file}: {exc.strerror or exc}") from None
            self._credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        self._closed = False
        self.session = SessionTokens()  # the write acknowledgements this client got (proximadb.consistency)

    def _closed_error(self) -> UnavailableError:
        return UnavailableError(f"the gRPC transport to {self.target} is closed")

    def _call_metadata(self, exchange: Exchange[Any]) -> tuple[tuple[str, str], ...]:
        """The request metadata: the API key, the session token for a read with consistency=session, and a
        write's request id (:mod:`proximadb.idempotency`)."""
        metadata = self._metadata
        if exchange.session:
            metadata = (*metadata, (SESSION_METADATA, self.session.token()))
        request_id = idempotency.outgoing()
        if request_id is not None:
            metadata = (*metadata, (idempotency.REQUEST_ID_METADATA, request_id))
        return metadata

    def _note_session(self, trailing: Any) -> None:
        """Merge the session token a write's answer carries (trailing metadata ``proximadb-session``)."""
        for key, value in trailing or ():
            if key == SESSION_METADATA:
                self.session.add(str(value))

    def _error(self, exc: grpc.RpcError) -> ProximaDBError:
        status: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        details: str = exc.details() or status.name  # type: ignore[attr-defined]
        trailing = exc.trailing_metadata() or ()  # type: ignore[attr-defined]
        server_code = next((value for key, value in trailing if key == ERROR_CODE_METADATA), None)
        if server_code is not None:
            return error_from_code(server_code, details)
        if status == grpc.StatusCode.UNAVAILABLE:
            hint = ""
            lowered = details.lower()
            if self.tls and ("ssl" in lowered or "handshake" in lowered or "certificate" in lowered):
                hint = " (TLS failed: pass ca_file= with the CA that signed the server's certificate)"
            return UnavailableError(f"ProximaDB gRPC server at {self.target} is unavailable: {details}{hint}")
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RequestTimeoutError(f"no answer from ProximaDB gRPC server at {self.target} within {self.timeout}s")
        if status == grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent rpc limit" in details.lower():
            return ResourceExhaustedError(f"ProximaDB gRPC server at {self.target} is busy: {details}")
        if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return PayloadTooLargeError(f"{details} (message size limit: {self.max_message_bytes} bytes)")
        kind = BY_GRPC_STATUS.get(status.name, ProximaDBError)
        if kind is not ProximaDBError:
            return kind(details)
        return ProximaDBError(f"gRPC {status.name} from {self.target}: {details}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class GrpcTransport(GrpcEndpoint):
    """The blocking :class:`~proximadb.sdk.transport.Transport` over a ``grpc`` channel."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 30.0, api_key: str | None = None,
                 max_message_bytes: int = 64 << 20, tls: bool = False, ca_file: str | None = None) -> None:
        super().__init__(target, timeout, api_key, max_message_bytes, tls, ca_file)
        if self._credentials is not None:
            self._channel = grpc.secure_channel(self.target, self._credentials, options=self._options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=self._options)
        self._stub = pb_grpc.ProximaDBStub(self._channel)

    def _send(self, exchange: Exchange[T]) -> T:
        if self._closed:
            raise self._closed_error()
        method = getattr(self._stub, str(exchange.op.rpc))
        try:
            response, call = method.with_call(exchange.request, timeout=self.timeout,
                                              metadata=self._call_metadata(exchange))
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        if exchange.op.write:
            self._note_session(call.trailing_metadata())
        return exchange.decode(response)

    # ------------------------------------------------------------ Transport
    def health(self) -> dict[str, Any]:
        return self._send(health())

    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._send(create_collection(body))

    def get_collection(self, collection: str) -> dict[str, Any]:
        return self._send(get_collection(collection))

    def list_collections(self) -> list[dict[str, Any]]:
        return self._send(list_collections())

    def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._send(update_collection(collection, changes))

    def delete_collection(self, collection: str) -> None:
        self._send(delete_collection(collection))

    def compact(self, collection: str) -> dict[str, Any]:
        return self._send(compact(collection))

    def stats(self, collection: str) -> dict[str, Any]:
        return self._send(stats(collection))

    def flush(self, collection: str) -> dict[str, Any]:
        return self._send(flush(collection))

    def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return self._send(insert_payload(collection, payload))

    def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return self._send(mutate_payload(collection, payload))

    def search_payload(self, collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> bytes:
        return self._send(search_payload(collection, payload, extras))

    def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_groups(collection, body))

    def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(recommend(collection, body))

    def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_text(collection, body))

    def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(hybrid_search(collection, body))

    def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_sparse(collection, body))

    def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                    consistency: str | None = None) -> list[dict[str, Any]]:
        return self._send(get_vectors(collection, ids, include_vectors, self.schema_version, consistency))

    def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int:
        return self._send(count(collection, filter_json, consistency))

    def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._send(scroll(collection, limit, cursor, filter_json, include_vectors, self.schema_version,
                                 consistency))

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> GrpcTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
