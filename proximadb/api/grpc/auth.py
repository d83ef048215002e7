"""API-key check for the gRPC API: a server interceptor over :class:`proximadb.server.auth.KeyStore`.

The key comes from the ``authorization`` metadata (``Bearer <key>``). Open
without a key: the standard ``grpc.health.v1.Health`` service and ProximaDB's
own ``Health`` RPC (the gRPC twin of ``GET /health``). Writes are the RPCs in
:data:`WRITE_RPCS`; any ProximaDB RPC not in :data:`READ_RPCS` counts as a
write, so an RPC added later is refused to read-only keys until listed.

A refused call is aborted with UNAUTHENTICATED / PERMISSION_DENIED and the
stable error code in the ``proximadb-error-code`` trailing metadata, exactly as
the servicer reports its own errors, so the SDK raises AuthenticationError /
PermissionDeniedError as it does over REST.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from proximadb.api.grpc import ERROR_CODE_METADATA, SERVICE_NAME
from proximadb.errors import ProximaDBError
from proximadb.server.auth import KeyStore, bearer_token

OPEN_SERVICES = ("/grpc.health.v1.Health/",)
OPEN_RPCS = frozenset({"Health"})
READ_RPCS = frozenset({"GetCollection", "ListCollections", "Stats", "Get", "Scroll", "Count", "Search", "SearchBatch"})
WRITE_RPCS = frozenset({"CreateCollection", "UpdateCollection", "DeleteCollection", "Compact", "Insert", "Mutate"})


def _refusal(handler: grpc.RpcMethodHandler, exc: ProximaDBError) -> grpc.RpcMethodHandler:
    status = grpc.StatusCode[exc.grpc_status] if exc.grpc_status in grpc.StatusCode.__members__ else (
        grpc.StatusCode.UNAUTHENTICATED)

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata(((ERROR_CODE_METADATA, exc.code),))
        context.abort(status, exc.message)

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, keys: KeyStore, metrics: Any = None) -> None:
        self.keys = keys
        self.metrics = metrics
        self._prefix = f"/{SERVICE_NAME}/"

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return continuation(handler_call_details)
        rpc = method[len(self._prefix):] if method.startswith(self._prefix) else method
        if rpc in OPEN_RPCS:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        header = next((v for k, v in handler_call_details.invocation_metadata or () if k == "authorization"), None)
        try:
            self.keys.check(bearer_token(header if isinstance(header, str) else None), rpc not in READ_RPCS,
                            what=f"call {rpc}")
        except ProximaDBError as exc:
            if self.metrics is not None:
                self.metrics.inc("proximadb_requests_total",
                                 (("protocol", "grpc"), ("route", rpc), ("code", exc.grpc_status)))
            return _refusal(handler, exc)
        return handler
