"""A :class:`~proximadb.errors.ProximaDBError` as a failed gRPC call, the one way both the servicer and the
key check report errors: the error's gRPC status (``grpc_status`` in proximadb/errors.py) and message, with its
stable code in the trailing metadata ``proximadb-error-code``, from which the SDK rebuilds the same exception."""

from __future__ import annotations

from typing import NoReturn

import grpc

from proximadb.api.grpc import ERROR_CODE_METADATA
from proximadb.errors import ProximaDBError


def status_code(name: str) -> grpc.StatusCode:
    """The gRPC status of an error's ``grpc_status`` name (INTERNAL for a name gRPC does not know)."""
    try:
        return grpc.StatusCode[name]
    except KeyError:
        return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, exc: ProximaDBError) -> NoReturn:
    """Fail the call with ``exc``; raises (as ``context.abort`` does)."""
    context.set_trailing_metadata(((ERROR_CODE_METADATA, exc.code),))
    context.abort(status_code(exc.grpc_status), exc.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
