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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from proximadb.api import operations as ops
from proximadb.api.grpc import ENVELOPE_BYTES, ERROR_CODE_METADATA, convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.operations import Operation
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


class GrpcTransport:
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
        options = [
            ("grpc.max_send_message_length", max_message_bytes + ENVELOPE_BYTES),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if self.tls:  # verified against the system CAs, or ca_file's
            try:
                roots = Path(ca_file).read_bytes() if ca_file is not None else None
            except OSError as exc:
                raise ValidationError(f"cannot read ca_file {ca_file}: {exc.strerror or exc}") from None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.ProximaDBStub(self._channel)
        self._closed = False

    # ------------------------------------------------------------ plumbing
    def _call(self, op: Operation, request: Any) -> Any:
        if self._closed:
            raise UnavailableError(f"the gRPC transport to {self.target} is closed")
        method = getattr(self._stub, str(op.rpc))
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

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

    # ------------------------------------------------------------ health and collections
    def health(self) -> dict[str, Any]:
        return convert.health_from_proto(self._call(ops.HEALTH, pb.HealthRequest()))

    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        request = convert.create_request_from_body(body)
        return convert.collection_from_proto(self._call(ops.CREATE_COLLECTION, request))

    def get_collection(self, collection: str) -> dict[str, Any]:
        request = convert.build(pb.CollectionRef, "collection name", collection=collection)
        return convert.collection_from_proto(self._call(ops.GET_COLLECTION, request))

    def list_collections(self) -> list[dict[str, Any]]:
        return convert.collections_from_proto(self._call(ops.LIST_COLLECTIONS, pb.ListCollectionsRequest()))

    def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        request = convert.update_request_from_changes(collection, changes)
        return convert.collection_from_proto(self._call(ops.UPDATE_COLLECTION, request))

    def delete_collection(self, collection: str) -> None:
        request = convert.build(pb.CollectionRef, "collection name", collection=collection)
        self._call(ops.DELETE_COLLECTION, request)

    def compact(self, collection: str) -> dict[str, Any]:
        request = convert.build(pb.CollectionRef, "collection name", collection=collection)
        return convert.compaction_from_proto(self._call(ops.COMPACT, request))

    def stats(self, collection: str) -> dict[str, Any]:
        request = convert.build(pb.CollectionRef, "collection name", collection=collection)
        return convert.stats_from_proto(self._call(ops.STATS, request))

    def flush(self, collection: str) -> dict[str, Any]:
        request = convert.build(pb.CollectionRef, "collection name", collection=collection)
        return convert.stats_from_proto(self._call(ops.FLUSH, request))

    # ------------------------------------------------------------ vectors
    def _payload_request(self, collection: str, payload: bytes) -> pb.PayloadRequest:
        return convert.build(pb.PayloadRequest, "payload request", collection=collection, payload=bytes(payload))

    def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        response = self._call(ops.INSERT, self._payload_request(collection, payload))
        return convert.insert_from_proto(response)

    def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        response = self._call(ops.MUTATE, self._payload_request(collection, payload))
        return convert.mutate_from_proto(response)

    def search_payload(self, collection: str, payload: bytes) -> bytes:
        # Search and SearchBatch are the same call on the server; the payload says how many queries.
        return bytes(self._call(ops.SEARCH, self._payload_request(collection, payload)).payload)

    def get_vectors(self, collection: str, ids: list[str], include_vectors: bool) -> list[dict[str, Any]]:
        request = convert.build(
            pb.GetRequest, "get request", collection=collection, ids=ids, include_vectors=include_vectors,
            schema_version=self.schema_version,
        )
        response = self._call(ops.GET, request)
        return convert.records_from_bytes(response.records, include_vectors=include_vectors,
                                          schema_version=response.schema_version or 1)

    def count(self, collection: str, filter_json: str | None) -> int:
        request = convert.build(pb.CountRequest, "count request", collection=collection, filter_json=filter_json)
        return int(self._call(ops.COUNT, request).count)

    def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        # limit 0 means "default" on the wire; a caller's 0 (or less) is refused as over REST.
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 0xFFFF_FFFF:
            raise ValidationError(f"limit must be an integer from 1 to 10000, not {limit!r}")
        request = convert.build(
            pb.ScrollRequest, "scroll request", collection=collection, limit=limit, cursor=cursor,
            filter_json=filter_json, include_vectors=include_vectors, schema_version=self.schema_version,
        )
        return convert.records_from_proto(self._call(ops.SCROLL, request), include_vectors=include_vectors)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> GrpcTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GrpcTransport({self.target!r})"
