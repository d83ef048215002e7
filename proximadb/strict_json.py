"""The one reader of JSON text that comes from clients.

Every JSON a client sends goes through :func:`loads`: REST request bodies
(``api/rest/media.py``), the JSON text fields of gRPC requests
(``index_params_json``, ``changes_json``: ``api/grpc/convert.py``) and filters
given as JSON text (``filters.compile_filter``, whichever API they came in
through). It refuses, with :class:`StrictJSONError` (a ``ValueError``) whose
message says what and where:

* text that is not JSON (line, column and character offset);
* ``NaN``/``Infinity`` literals and numbers that overflow a double, so no
  non-finite value enters from JSON;
* integers of more than :data:`MAX_INT_DIGITS` digits (more than any int64 or
  finite double needs; Python itself would stop at 4,300 digits with a message
  about ``sys.set_int_max_str_digits``, which is no help to a client);
* an object that has the same key twice (``{"k": 1, "k": 2}``): JSON leaves
  it undefined, Python would keep the last value silently;
* nesting deeper than the parser's recursion limit (about 1,000 levels):
  :class:`JSONTooDeepError`, so that callers with their own depth rule (the
  filter language allows 32) can word it their way.

Callers map the error to their own typed error (``MalformedPayloadError``,
``InvalidFilterError``, ``ValidationError``), i.e. HTTP 400 / INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_INT_DIGITS = 400

__all__ = ["MAX_INT_DIGITS", "JSONTooDeepError", "StrictJSONError", "loads"]


class StrictJSONError(ValueError):
    """JSON text refused; ``str(exc)`` says why (it is meant for the client)."""


class JSONTooDeepError(StrictJSONError):
    """Nested deeper than the parser can go."""


def _refuse_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:40]} is out of range for a double")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise StrictJSONError(f"an integer of {digits} digits is too long (at most {MAX_INT_DIGITS} digits)")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(f"duplicate key {key!r} in an object")
            seen.add(key)
    return obj


def loads(text: str | bytes | bytearray) -> Any:
    """Parse client JSON by the rules above; bytes must be UTF-8."""
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}") from None
    except RecursionError:
        raise JSONTooDeepError("nested too deeply") from None
    except ValueError as exc:  # not expected past the hooks above; still the client's text, still a 400
        raise StrictJSONError(str(exc)) from None
