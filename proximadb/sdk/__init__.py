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

Several nodes (a cluster): give a list of addresses, ``connect_grpc(["h1:5679", "h2:5679"])``,
``connect_rest(["http://h1:5678", ...])`` or ``connect([...])`` (REST when every address is
``http(s)://``, gRPC otherwise). The client uses the first and moves to the next when a node does not
answer (:mod:`proximadb.sdk.failover`).

asyncio: ``await connect_async(url)`` (or ``async with connect_async(url) as client``) gives an
:class:`~proximadb.sdk.async_client.AsyncClient` with the same methods as coroutines, chosen by
the same rules; ``connect_async_grpc`` / ``connect_async_rest`` force one protocol
(:mod:`proximadb.sdk.async_client`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from proximadb.errors import AuthenticationError, PermissionDeniedError, ProximaDBError
from proximadb.sdk.async_client import AsyncClient, connect_async, connect_async_grpc, connect_async_rest
from proximadb.sdk.calls import DEFAULT_GRPC, DEFAULT_REST, PROBE_TIMEOUT
from proximadb.sdk.calls import api_key as _api_key
from proximadb.sdk.client import ProximaDBClient
from proximadb.sdk.collection import AsyncCollection, Collection
from proximadb.sdk.routing import AskRest, Probe, all_rest, route
from proximadb.sdk.transport import Transport

__all__ = [
    "AsyncClient", "AsyncCollection", "Collection", "ProximaDBClient",
    "connect", "connect_async", "connect_async_grpc", "connect_async_rest",
    "connect_grpc", "connect_rest",
]


def connect_grpc(target: str | Sequence[str] = DEFAULT_GRPC, *, timeout: float = 30.0, api_key: str | None = None,
                 tls: bool = False, ca_file: str | None = None, **client_options: Any) -> ProximaDBClient:
    """A client over gRPC (``host:port``, ``grpc://host:port``, or ``grpcs://host:port`` for TLS).

    ``tls=True`` (implied by ``ca_file`` or ``grpcs://``) verifies the server against ``ca_file`` or the system CAs.
    A list of targets: one client that moves to the next node when one does not answer.
    """
    from proximadb.sdk.grpc_transport import GrpcTransport

    def make(one: str) -> Transport:
        return GrpcTransport(one, timeout=timeout, api_key=_api_key(api_key), tls=tls, ca_file=ca_file)

    return _client(_transport(target, make), client_options)


def connect_rest(url: str | Sequence[str] = DEFAULT_REST, *, timeout: float = 30.0, api_key: str | None = None,
                 ca_file: str | None = None, verify: bool = True, **client_options: Any) -> ProximaDBClient:
    """A client over REST (``http://host:port`` or ``https://host:port``; ``ca_file``/``verify`` for https).

    A list of URLs: one client that moves to the next node when one does not answer."""
    from proximadb.sdk.rest_transport import RestTransport

    def make(one: str) -> Transport:
        return RestTransport(one, timeout=timeout, api_key=_api_key(api_key), ca_file=ca_file, verify=verify)

    return _client(_transport(url, make), client_options)


def _transport(where: str | Sequence[str], make: Any) -> Transport:
    if isinstance(where, str):
        return cast(Transport, make(where))
    from proximadb.sdk.failover import FailoverTransport

    return cast(Transport, FailoverTransport(where, make))


def _client(transport: Transport, client_options: dict[str, Any]) -> ProximaDBClient:
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


def connect(url: str | Sequence[str] | None = None, *, timeout: float = 30.0, api_key: str | None = None,
            ca_file: str | None = None, **client_options: Any) -> ProximaDBClient:
    """gRPC preferred, REST as the fallback; see the module docstring (the rules: :func:`routing.route`).

    A list of addresses: REST when every one is ``http(s)://``, gRPC otherwise, moving to the next node
    when one does not answer (:mod:`proximadb.sdk.failover`)."""
    if url is not None and not isinstance(url, str):
        urls = list(url)
        if all_rest(urls):
            return connect_rest(urls, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
        return connect_grpc(urls, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
    plan = route(url, ca_file)
    rest: ProximaDBClient | None = None
    try:
        step = next(plan)
        while True:
            if isinstance(step, Probe):
                answer: Any = _grpc_answers(step.target, api_key, step.tls, step.ca_file)
            else:
                assert isinstance(step, AskRest)
                rest = connect_rest(step.url, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
                answer = rest.health().get("grpc_port")
            step = plan.send(answer)
    except StopIteration as done:
        chosen = done.value
    except BaseException:
        if rest is not None:
            rest.close()
        raise
    if chosen.protocol == "rest":
        return rest or connect_rest(chosen.address, timeout=timeout, api_key=api_key, ca_file=chosen.ca_file,
                                    **client_options)
    if rest is not None:
        rest.close()
    return connect_grpc(chosen.address, timeout=timeout, api_key=api_key, tls=chosen.tls, ca_file=chosen.ca_file,
                        **client_options)
