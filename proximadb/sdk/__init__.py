"""The Python SDK: ``proximadb.connect(url)`` and friends.

* ``connect(url=None)``: gRPC when the server answers on it, REST otherwise.
  With no URL it tries 127.0.0.1:5679 (gRPC), then http://127.0.0.1:5678.
  Given a REST URL (``http://host:5678``) it asks ``/health`` for the gRPC port
  the server advertises and uses gRPC when that answers.
  Given ``grpc://host:port`` it uses gRPC only (``grpcs://`` with TLS).
  Given ``https://host:port`` the gRPC probe uses TLS too, with the same ``ca_file``.
* ``connect_grpc(target)`` / ``connect_rest(url)`` force one protocol.

Authentication: ``api_key=`` (default: ``PROXIMADB_API_KEY``) is sent as
``Authorization: Bearer`` / ``authorization`` metadata. TLS: certificates are
verified by default, against the system CAs or ``ca_file`` (a PEM bundle);
``connect_rest(..., verify=False)`` turns verification off (REST only).

``client.protocol`` says which is in use.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from proximadb.errors import AuthenticationError, PermissionDeniedError, ProximaDBError
from proximadb.sdk.client import ProximaDBClient

DEFAULT_GRPC = "127.0.0.1:5679"
DEFAULT_REST = "http://127.0.0.1:5678"
PROBE_TIMEOUT = 2.0

__all__ = ["ProximaDBClient", "connect", "connect_grpc", "connect_rest"]


def _api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("PROXIMADB_API_KEY")


def connect_grpc(target: str = DEFAULT_GRPC, *, timeout: float = 30.0, api_key: str | None = None,
                 tls: bool = False, ca_file: str | None = None, **client_options: Any) -> ProximaDBClient:
    """A client over gRPC (``host:port``, ``grpc://host:port``, or ``grpcs://host:port`` for TLS).

    ``tls=True`` (implied by ``ca_file`` or ``grpcs://``) verifies the server against ``ca_file`` or the system CAs.
    """
    from proximadb.sdk.grpc_transport import GrpcTransport

    transport = GrpcTransport(target, timeout=timeout, api_key=_api_key(api_key), tls=tls, ca_file=ca_file)
    return _client(transport, client_options)


def connect_rest(url: str = DEFAULT_REST, *, timeout: float = 30.0, api_key: str | None = None,
                 ca_file: str | None = None, verify: bool = True, **client_options: Any) -> ProximaDBClient:
    """A client over REST (``http://host:port`` or ``https://host:port``; ``ca_file``/``verify`` for https)."""
    from proximadb.sdk.rest_transport import RestTransport

    transport = RestTransport(url, timeout=timeout, api_key=_api_key(api_key), ca_file=ca_file, verify=verify)
    return _client(transport, client_options)


def _client(transport: Any, client_options: dict[str, Any]) -> ProximaDBClient:
    """The client over ``transport`` (which it closes when the client cannot be made, e.g. no common schema)."""
    try:
        return ProximaDBClient(transport, **client_options)
    except BaseException:
        transport.close()
        raise


def _grpc_answers(target: str, api_key: str | None, tls: bool = False, ca_file: str | None = None) -> bool:
    """A quick health probe, so an absent gRPC server costs a short timeout, not the full one."""
    from proximadb.sdk.grpc_transport import GrpcTransport

    probe = GrpcTransport(target, timeout=PROBE_TIMEOUT, api_key=_api_key(api_key), tls=tls, ca_file=ca_file)
    try:
        probe.health()
        return True
    except (AuthenticationError, PermissionDeniedError):
        return True  # it answers; the client's calls will report the key problem
    except ProximaDBError:
        return False
    finally:
        probe.close()


def connect(url: str | None = None, *, timeout: float = 30.0, api_key: str | None = None,
            ca_file: str | None = None, **client_options: Any) -> ProximaDBClient:
    """gRPC preferred, REST as the fallback; see the module docstring."""
    if url is not None and url.startswith(("grpc://", "grpcs://")):
        tls = url.startswith("grpcs://") or ca_file is not None
        return connect_grpc(url.split("://", 1)[1], timeout=timeout, api_key=api_key, tls=tls, ca_file=ca_file,
                            **client_options)
    if url is None:
        if _grpc_answers(DEFAULT_GRPC, api_key):
            return connect_grpc(DEFAULT_GRPC, timeout=timeout, api_key=api_key, **client_options)
        return connect_rest(DEFAULT_REST, timeout=timeout, api_key=api_key, **client_options)
    if "://" not in url:
        url = "http://" + url
    tls = url.startswith("https://")
    rest = connect_rest(url, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
    grpc_port = rest.health().get("grpc_port")
    if not grpc_port:
        return rest
    host = urlsplit(url).hostname or "127.0.0.1"
    target = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
    if not _grpc_answers(target, api_key, tls, ca_file):
        return rest
    rest.close()
    return connect_grpc(target, timeout=timeout, api_key=api_key, tls=tls, ca_file=ca_file, **client_options)
