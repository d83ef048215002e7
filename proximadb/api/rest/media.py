"""Request bodies in, response envelopes out: the only JSON and Avro handling of the REST adapter.

Every JSON response is the envelope ``{"success", "data", "error", "message"}``.
Bodies are read with a size cap decided before reading (``Content-Length``)
and enforced while reading (chunked bodies: at most limit + 1 bytes).
JSON is parsed by :mod:`proximadb.strict_json` (no ``NaN``/``Infinity``, no
numbers that overflow a double, no giant integers, no duplicate keys), so no
non-finite value enters the service from JSON; on the way out
``allow_nan=False`` keeps them out of responses too.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
import numpy as np

from proximadb import strict_json
from proximadb.errors import BodyTimeoutError, MalformedPayloadError, PayloadTooLargeError, ValidationError

JSON = "application/json"
AVRO = "application/avro"
_READ_CHUNK = 1 << 20


class UnsupportedMediaTypeError(falcon.HTTPUnsupportedMediaType):
    """415 with the content types the route accepts."""

    def __init__(self, got: str, accepted: tuple[str, ...]) -> None:
        super().__init__(description=f"Content-Type {got!r} is not supported here; send one of: {', '.join(accepted)}")


def media_type(req: falcon.Request) -> str:
    """The request's media type without parameters, lower case ('' when absent)."""
    return (req.content_type or "").split(";", 1)[0].strip().lower()


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes (413) before reading what it can.

    A client that stalls mid-body past the socket timeout the admission middleware set gets 408.
    """
    try:
        return _read_body(req, limit)
    except (TimeoutError, BlockingIOError):
        raise BodyTimeoutError(
            "the request body did not arrive in time (the client stalled while sending it); "
            "the connection is closed"
        ) from None


def _read_body(req: falcon.Request, limit: int) -> bytes:
    length = req.content_length  # falcon refuses a malformed header with 400
    if length is not None:
        if length > limit:
            raise PayloadTooLargeError(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        return req.bounded_stream.read(length) if length else b""
    if not req.env.get("wsgi.input_terminated"):
        return b""  # no Content-Length and no chunked framing: no body
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = req.stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (:mod:`proximadb.strict_json`); errors say where and why parsing failed."""
    try:
        return strict_json.loads(raw)
    except strict_json.StrictJSONError as exc:
        raise MalformedPayloadError(f"malformed JSON: {exc}") from None


def json_body(req: falcon.Request, limit: int, *, required: bool = True) -> dict[str, Any]:
    """A JSON object body. ``required=False``: an empty body is ``{}``."""
    kind = media_type(req)
    if kind not in ("", JSON):
        raise UnsupportedMediaTypeError(kind, (JSON,))
    raw = read_body(req, limit)
    if not raw.strip():
        if required:
            raise ValidationError("this request needs a JSON object body")
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationError(f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def body_or_payload(req: falcon.Request, limit: int) -> tuple[dict[str, Any] | None, bytes | None]:
    """For routes that take JSON or a versioned Avro payload: ``(json_object, None)`` or ``(None, payload)``."""
    kind = media_type(req)
    if kind == AVRO:
        return None, read_body(req, limit)
    if kind not in ("", JSON):
        raise UnsupportedMediaTypeError(kind, (JSON, AVRO))
    return json_body(req, limit), None


def wants_avro(req: falcon.Request) -> bool:
    """True when the client's Accept header prefers application/avro over JSON."""
    accept = req.get_header("Accept")
    if accept is None:
        return False
    if accept == AVRO:  # what the SDK sends: nothing to negotiate
        return True
    return AVRO in accept.lower() and req.client_prefers([JSON, AVRO]) == AVRO


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _jsonable(value: Any) -> Any:
    """``json.dumps`` default: numpy arrays and scalars become lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(document: Any) -> str:
    return json.dumps(document, default=_jsonable, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def envelope(data: Any = None, *, error: dict[str, str] | None = None, message: str | None = None) -> dict[str, Any]:
    return {"success": error is None, "data": data, "error": error, "message": message}


def send(resp: falcon.Response, data: Any = None, *, status: int = 200, message: str | None = None) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.text = dumps(envelope(data, message=message))


def send_error(resp: falcon.Response, status: int, code: str, message: str) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.text = dumps(envelope(error={"code": code, "message": message}, message=message))


def send_avro(resp: falcon.Response, payload: bytes) -> None:
    resp.status = 200
    resp.content_type = AVRO
    resp.data = payload
