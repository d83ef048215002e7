"""One error taxonomy for the engine, both protocols and the SDK.

Each error knows its stable machine-readable ``code``, its HTTP status and its
gRPC status name, so the REST and gRPC adapters map errors the same way and
the SDK can rebuild the same exception class from either transport.

:data:`BY_HTTP_STATUS` and :data:`BY_GRPC_STATUS` go the other way, for an
answer that carries a status but no code (a proxy, or a protocol error of the
server's framework): the most specific class that every error reporting that
status is an instance of. ``RESOURCE_EXHAUSTED``, shared by unrelated errors,
so maps to the base class; the SDK's gRPC transport tells those apart itself.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Hashable
from typing import TypeVar


class ProximaDBError(Exception):
    """Base of every error ProximaDB raises on purpose."""

    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ValidationError(ProximaDBError):
    """The request is well formed but a value in it is not acceptable."""

    code = "validation_error"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class DimensionMismatchError(ValidationError):
    code = "dimension_mismatch"


class EmbeddingFunctionRequiredError(ValidationError):
    """Documents or query texts were given to a collection handle that has no embedding function."""

    code = "embedding_function_required"


class InvalidVectorError(ValidationError):
    """NaN/inf components, empty vectors, zero vectors under cosine."""

    code = "invalid_vector"


class InvalidFilterError(ValidationError):
    code = "invalid_filter"


class MalformedPayloadError(ValidationError):
    """Bytes that do not parse: a bad frame, truncated or garbage Avro."""

    code = "malformed_payload"


class UnsupportedSchemaVersionError(ValidationError):
    code = "unsupported_schema_version"
    http_status = 422


class UnknownOperationError(ValidationError):
    code = "unknown_operation"


class PayloadTooLargeError(ProximaDBError):
    code = "payload_too_large"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class NotFoundError(ProximaDBError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class CollectionNotFoundError(NotFoundError):
    code = "collection_not_found"


class VectorNotFoundError(NotFoundError):
    code = "vector_not_found"


class AlreadyExistsError(ProximaDBError):
    code = "already_exists"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class CollectionExistsError(AlreadyExistsError):
    code = "collection_exists"


class CollectionConfigMismatchError(CollectionExistsError):
    """``create_collection(..., exist_ok=True)`` / ``get_or_create_collection``: a collection of that name
    exists with another dimension or distance metric (the message names both)."""

    code = "collection_config_mismatch"


class VectorExistsError(AlreadyExistsError):
    code = "vector_exists"


class AuthenticationError(ProximaDBError):
    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDeniedError(ProximaDBError):
    code = "permission_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class ResourceExhaustedError(ProximaDBError):
    code = "resource_exhausted"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"


class UnavailableError(ProximaDBError):
    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


class RequestTimeoutError(ProximaDBError):
    """The request ran out of time (the server's request_timeout or the client's deadline) before it changed
    anything; the SDK also raises it when no answer came within its own timeout."""

    code = "timeout"
    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"


class IndexingTimeoutError(RequestTimeoutError):
    """``wait_for_indexing`` gave up: the collection was still not fully indexed (status yellow) at its timeout.
    Raised by the client; nothing was changed by waiting."""

    code = "indexing_timeout"


class BodyTimeoutError(RequestTimeoutError):
    """The client stalled while sending its request body (REST); the connection is closed."""

    code = "request_body_timeout"
    http_status = 408


class StorageError(ProximaDBError):
    """The storage layer cannot do what was asked (I/O error, disk full)."""

    code = "storage_error"


class DiskFullError(StorageError):
    """No space left on the device (ENOSPC) for a write; nothing of it was kept. Retry once space is freed."""

    code = "disk_full"
    http_status = 507
    grpc_status = "RESOURCE_EXHAUSTED"


class CorruptionError(StorageError):
    """Damaged data that recovery must not silently skip; names file and offset."""

    code = "corruption"
    grpc_status = "DATA_LOSS"


class DataDirLockedError(StorageError):
    code = "data_dir_locked"
    grpc_status = "FAILED_PRECONDITION"


class ExternalLogError(StorageError):
    """Cluster mode: the collection's log of record is a shard log, not its own WAL (or a directory was opened
    in the other mode). Writes reach such a collection only as log entries, applied in log order."""

    code = "external_log"
    grpc_status = "FAILED_PRECONDITION"


class EngineClosedError(UnavailableError):
    code = "engine_closed"


class LogUnavailableError(UnavailableError):
    """Cluster mode: the shard's log (NATS JetStream) did not acknowledge an append or a read in time.

    An append may or may not have been recorded; retrying it with the same message id is safe
    (JetStream drops the duplicate within the stream's duplicate window)."""

    code = "log_unavailable"


class SnapshotRequiredError(UnavailableError):
    """Cluster mode: a replica is behind the first entry its shard log still holds (the log was purged below
    its applied sequence); it can catch up only from a peer's snapshot, then the log."""

    code = "snapshot_required"


_OS_ERROR_ADVICE = {
    errno.EROFS: "the data directory must be writable: remount its file system read-write or use another "
                 "data directory",
    errno.EACCES: "the data directory must be writable by the user running proximadb (uid {uid}): fix the "
                  "owner or mode of the file, or use another data directory",
    errno.ENOENT: "a file the data directory needs is missing: restore the data directory from a backup "
                  "(proximadb restore)",
    errno.ENOSPC: "the disk is full: free space and try again",
}
_OS_ERROR_ADVICE[errno.EPERM] = _OS_ERROR_ADVICE[errno.EACCES]


def storage_error_from_os(exc: OSError, doing: str, advice: str | None = None) -> StorageError:
    """One line for an OSError met while ``doing`` (e.g. "cannot open data directory X"): the file, the
    system's reason and what to do (``advice``, else by errno). DiskFullError for ENOSPC."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    if advice is None:
        advice = _OS_ERROR_ADVICE.get(exc.errno or 0, "check the file, its permissions and the disk (dmesg)")
    message = f"{doing}: {where}{exc.strerror or exc}; {advice.format(uid=os.geteuid())}"
    return DiskFullError(message) if exc.errno == errno.ENOSPC else StorageError(message)


def _all_subclasses(cls: type[ProximaDBError]) -> list[type[ProximaDBError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[ProximaDBError]] = {c.code: c for c in _all_subclasses(ProximaDBError)}


def error_from_code(code: str, message: str) -> ProximaDBError:
    """Rebuild the typed exception a server reported (used by the SDK)."""
    return ERRORS_BY_CODE.get(code, ProximaDBError)(message)


_Status = TypeVar("_Status", bound=Hashable)


def _by_status(status_of: Callable[[type[ProximaDBError]], _Status]) -> dict[_Status, type[ProximaDBError]]:
    groups: dict[_Status, list[type[ProximaDBError]]] = {}
    for cls in ERRORS_BY_CODE.values():
        groups.setdefault(status_of(cls), []).append(cls)
    return {
        status: next(base for base in classes[0].__mro__ if all(issubclass(c, base) for c in classes))
        for status, classes in groups.items()
    }


BY_HTTP_STATUS: dict[int, type[ProximaDBError]] = _by_status(lambda c: c.http_status)
BY_GRPC_STATUS: dict[str, type[ProximaDBError]] = _by_status(lambda c: c.grpc_status)
