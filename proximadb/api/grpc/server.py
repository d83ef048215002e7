"""Build the gRPC server: the ProximaDB service plus the standard ``grpc.health.v1`` service.

The caller owns the lifecycle (``server.start()``, :func:`stop_serving`); build it after any
fork (docs/architecture.md, "The daemon process": gunicorn forks, and a gRPC server made
before the fork breaks in the child).
"""

from __future__ import annotations

import logging
import weakref
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proximadb.api.grpc import ENVELOPE_BYTES, SERVICE_NAME
from proximadb.api.grpc.auth import AuthInterceptor
from proximadb.api.grpc.servicer import ProximaDBServicer, add_to_server
from proximadb.server.auth import KeyStore
from proximadb.service.unified import UnifiedAvroService

log = logging.getLogger("proximadb.api.grpc")


_HEALTH: weakref.WeakKeyDictionary[grpc.Server, health.HealthServicer] = weakref.WeakKeyDictionary()


def stop_serving(server: grpc.Server, grace: float) -> None:
    """Stop: grpc.health.v1 says NOT_SERVING first (load balancers and watchers see it), then
    in-flight RPCs get ``grace`` seconds, then the server is gone."""
    servicer = _HEALTH.pop(server, None)
    if servicer is not None:
        servicer.enter_graceful_shutdown()
    server.stop(grace=grace).wait()


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # IPv6 literal
    return f"{host}:{port}"


def build_server(
    service: UnifiedAvroService,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    max_workers: int = 8,
    keys: KeyStore | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started server and the port it is bound to (useful with ``port=0``).

    ``max_message_bytes`` is the largest payload accepted; the receive limit adds
    ENVELOPE_BYTES for the rest of the message, so payloads just over the service's own
    limit still reach it and get its PayloadTooLargeError. Larger messages are refused by
    gRPC itself with RESOURCE_EXHAUSTED. Responses are not capped here (a client sets its
    own receive limit). Raises OSError when the address cannot be bound (e.g. port in use).

    ``keys`` (when it holds any) puts the API-key interceptor (:mod:`proximadb.api.grpc.auth`) in
    front of every RPC; ``tls`` is ``(private key PEM, certificate chain PEM)`` for a TLS port.
    """
    if max_message_bytes <= 0:
        raise ValueError(f"max_message_bytes must be positive, not {max_message_bytes}")
    options = [
        ("grpc.max_receive_message_length", max_message_bytes + ENVELOPE_BYTES),
        ("grpc.max_send_message_length", -1),
        # Without this, gRPC binds with SO_REUSEPORT and a second daemon would share the port silently.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="proximadb-grpc"),
        options=options,
        # Bounds the RPCs gRPC holds (running + queued for a worker); more are refused with RESOURCE_EXHAUSTED
        # instead of queueing without end. The daemon-wide limit is admission's (servicer.py).
        maximum_concurrent_rpcs=max_workers,
        interceptors=[AuthInterceptor(keys, service.metrics)] if keys is not None and keys.enabled else None,
    )
    add_to_server(ProximaDBServicer(service), server)  # undecodable requests: INVALID_ARGUMENT (servicer.py)

    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _HEALTH[server] = health_servicer

    address = _address(host, port)
    try:
        if tls is not None:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio >= 1.x raises instead of returning 0
        server.stop(None)
        raise OSError(f"cannot listen for gRPC on {address}: {exc} (is the port in use?)") from None
    if bound == 0:
        server.stop(None)
        raise OSError(f"cannot listen for gRPC on {address} (is the port in use?)")
    log.debug("gRPC server bound to %s (port %d)", address, bound)
    return server, bound
