"""API-key check for the gRPC API: a server interceptor over :class:`proximadb.server.auth.KeyStore`.

The key comes from the ``authorization`` metadata (``Bearer <key>``). Which
RPCs need a key, and which a read-write one, is the operation table's
(:mod:`proximadb.api.operations`), shared with REST: open without a key are
the standard ``grpc.health.v1.Health`` service and ProximaDB's own ``Health``
RPC (the gRPC twin of ``GET /health``); reads take any key, writes a
read-write key, and an RPC missing from the table counts as a write.

A refused call is aborted with UNAUTHENTICATED / PERMISSION_DENIED and the
stable error code in the ``proximadb-error-code`` trailing metadata, exactly as
the servicer reports its own errors (:mod:`proximadb.api.grpc.status`), so the
SDK raises AuthenticationError / PermissionDeniedError as it does over REST.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from proximadb.api import operations
from proximadb.api.grpc import SERVICE_NAME
from proximadb.api.grpc.status import abort, status_code
from proximadb.errors import ProximaDBError
from proximadb.server.auth import KeyStore, bearer_token

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


def _refusal(handler: grpc.RpcMethodHandler, exc: ProximaDBError) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, exc)

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
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
        op = operations.for_rpc(rpc)
        if op.open:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        header = next((v for k, v in handler_call_details.invocation_metadata or () if k == "authorization"), None)
        try:
            self.keys.check(bearer_token(header if isinstance(header, str) else None), op.write, what=f"call {rpc}")
        except ProximaDBError as exc:
            if self.metrics is not None:
                operations.record_request(self.metrics, "grpc", rpc, status_code(exc.grpc_status).name, None)
            return _refusal(handler, exc)
        return handler
