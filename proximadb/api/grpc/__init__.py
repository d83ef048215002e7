"""The gRPC adapter (port 5679): a thin servicer over UnifiedAvroService.

* ``server.build_server`` — the grpc.Server with the ProximaDB and ``grpc.health.v1`` services;
* ``servicer`` — one method per RPC: proto in, service call, proto out; payload bytes are passed on untouched;
* ``convert`` — every proto <-> dict conversion (used by the servicer and by the SDK's GrpcTransport);
* ``_generated`` — protoc output, made at build time by ``codegen`` (see setup.py), never committed.

This module imports nothing heavy: the SDK imports ``convert`` without pulling in the server side.
"""

from __future__ import annotations

SERVICE_NAME = "proximadb.v1.ProximaDB"

# Trailing metadata key holding the stable error code of proximadb/errors.py on every failed call.
ERROR_CODE_METADATA = "proximadb-error-code"

# Headroom over the payload limit for the rest of a message (collection name, field tags), so a
# payload at the limit reaches the service and one over it gets the service's own error.
ENVELOPE_BYTES = 64 << 10

__all__ = ["ENVELOPE_BYTES", "ERROR_CODE_METADATA", "SERVICE_NAME"]
