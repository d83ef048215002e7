"""Fuzz target: the whole payload decoder (frame + every op's Avro datum), proximadb.codec.payload.

Run: ``python fuzz/fuzz_payload.py fuzz/corpus/payload -max_total_time=60``.
"""

from __future__ import annotations

import sys

from _common import run_atheris  # fuzz/ is sys.path[0] when run as a script; puts the repo on sys.path

from proximadb.codec.payload import decode_payload
from proximadb.errors import (
    DimensionMismatchError,
    MalformedPayloadError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
)

ALLOWED: tuple[type[BaseException], ...] = (
    MalformedPayloadError,
    UnsupportedSchemaVersionError,
    UnknownOperationError,
    DimensionMismatchError,
)


def one_input(data: bytes) -> None:
    version, op_type, value = decode_payload(data)
    assert isinstance(version, int) and isinstance(op_type, str)
    assert value is not None


if __name__ == "__main__":
    run_atheris(one_input, ALLOWED)
    sys.exit(0)
