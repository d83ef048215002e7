"""Where ``proximadb.connect`` goes: gRPC preferred, REST as the fallback (the rules are :mod:`proximadb.sdk`'s
docstring). :func:`route` is a plan of its own: it yields a :class:`Probe` (does a gRPC server answer a health
check?) or an :class:`AskRest` (open the REST client, which gRPC port does its /health advertise?) and returns a
:class:`Route`; the sync and asyncio drivers (``proximadb.sdk.connect``, ``connect_async``) answer them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proximadb.sdk.calls import DEFAULT_GRPC, DEFAULT_REST


@dataclass(frozen=True)
class Probe:
    """Does a gRPC server answer a health check at ``target`` (quickly)? The driver sends back a bool."""

    target: str
    tls: bool
    ca_file: str | None


@dataclass(frozen=True)
class AskRest:
    """Open the REST client at ``url``; the driver keeps it and sends back the gRPC port its /health advertises."""

    url: str


@dataclass(frozen=True)
class Route:
    """Where ``connect`` goes: ``protocol`` "grpc" (``address`` a host:port) or "rest" (a URL)."""

    protocol: str
    address: str
    tls: bool = False
    ca_file: str | None = None


def all_rest(urls: Sequence[str]) -> bool:
    """A list of addresses is spoken to over REST when every one is ``http(s)://``, else over gRPC."""
    return bool(urls) and all(u.startswith(("http://", "https://")) for u in urls)


def route(url: str | None, ca_file: str | None) -> Generator[Probe | AskRest, Any, Route]:
    """gRPC preferred, REST as the fallback (the rules are :mod:`proximadb.sdk`'s docstring)."""
    if url is not None and url.startswith(("grpc://", "grpcs://")):
        tls = url.startswith("grpcs://") or ca_file is not None
        return Route("grpc", url.split("://", 1)[1], tls, ca_file)
    if url is None:
        if (yield Probe(DEFAULT_GRPC, False, None)):
            return Route("grpc", DEFAULT_GRPC)
        return Route("rest", DEFAULT_REST)
    if "://" not in url:
        url = "http://" + url
    tls = url.startswith("https://")
    grpc_port = yield AskRest(url)
    if not grpc_port:
        return Route("rest", url, tls, ca_file)
    host = urlsplit(url).hostname or "127.0.0.1"
    target = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
    if not (yield Probe(target, tls, ca_file)):
        return Route("rest", url, tls, ca_file)
    return Route("grpc", target, tls, ca_file)


__all__ = ["AskRest", "Probe", "Route", "all_rest", "route"]
