"""The Python SDK: ``proximadb.connect(url)`` and friends.

* ``connect(url=None)``: gRPC when the server answers on it, REST otherwise.
  With no URL it tries 127.0.0.1:5679 (gRPC), then http://127.0.0.1:5678.
  Given a REST URL (``http://host:5678``) it asks ``/health`` for the gRPC port
  the server advertises and uses gRPC when that answers.
  Given ``grpc://host:port`` it uses gRPC only.
* ``connect_grpc(target)`` / ``connect_rest(url)`` force one protocol.

``client.protocol`` says which is in use.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from proximadb.errors import ProximaDBError
from proximadb.sdk.client import ProximaDBClient

DEFAULT_GRPC = "127.0.0.1:5679"
DEFAULT_REST = "http://127.0.0.1:5678"
PROBE_TIMEOUT = 2.0

__all__ = ["ProximaDBClient", "connect", "connect_grpc", "connect_rest"]


def _api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("PROXIMADB_API_KEY")


def connect_grpc(target: str = DEFAULT_GRPC, *, timeout: float = 30.0, api_key: str | None = None,
                 **client_options: Any) -> ProximaDBClient:
    """A client over gRPC (``host:port`` or ``grpc://host:port``)."""
    from proximadb.sdk.grpc_transport import GrpcTransport

    if target.startswith("grpc://"):
        target = target[len("grpc://"):]
    transport = GrpcTransport(target, timeout=timeout, api_key=_api_key(api_key))
    try:
        return ProximaDBClient(transport, **client_options)
    except BaseException:
        transport.close()
        raise


def connect_rest(url: str = DEFAULT_REST, *, timeout: float = 30.0, api_key: str | None = None,
                 **client_options: Any) -> ProximaDBClient:
    """A client over REST (``http://host:port``)."""
    from proximadb.sdk.rest_transport import RestTransport

    transport = RestTransport(url, timeout=timeout, api_key=_api_key(api_key))
    try:
        return ProximaDBClient(transport, **client_options)
    except BaseException:
        transport.close()
        raise


def _grpc_answers(target: str, api_key: str | None) -> bool:
    """A quick health probe, so an absent gRPC server costs a short timeout, not the full one."""
    from proximadb.sdk.grpc_transport import GrpcTransport

    probe = GrpcTransport(target, timeout=PROBE_TIMEOUT, api_key=_api_key(api_key))
    try:
        probe.health()
        return True
    except ProximaDBError:
        return False
    finally:
        probe.close()


def connect(url: str | None = None, *, timeout: float = 30.0, api_key: str | None = None,
            **client_options: Any) -> ProximaDBClient:
    """gRPC preferred, REST as the fallback; see the module docstring."""
    if url is not None and url.startswith("grpc://"):
        return connect_grpc(url, timeout=timeout, api_key=api_key, **client_options)
    if url is None:
        if _grpc_answers(DEFAULT_GRPC, api_key):
            return connect_grpc(DEFAULT_GRPC, timeout=timeout, api_key=api_key, **client_options)
        return connect_rest(DEFAULT_REST, timeout=timeout, api_key=api_key, **client_options)
    if "://" not in url:
        url = "http://" + url
    rest = connect_rest(url, timeout=timeout, api_key=api_key, **client_options)
    grpc_port = rest.health().get("grpc_port")
    if not grpc_port:
        return rest
    host = urlsplit(url).hostname or "127.0.0.1"
    target = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
    if not _grpc_answers(target, api_key):
        return rest
    rest.close()
    return connect_grpc(target, timeout=timeout, api_key=api_key, **client_options)
