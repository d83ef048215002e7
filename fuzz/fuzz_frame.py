"""Fuzz target: the Cython payload frame parser (proximadb.codec.framing.decode_frame).

Run: ``python fuzz/fuzz_frame.py fuzz/corpus/frame -max_total_time=60`` (needs ``pip install atheris``).
"""

from __future__ import annotations

import sys

from _common import run_atheris  # fuzz/ is sys.path[0] when run as a script; puts the repo on sys.path

from proximadb.codec.framing import decode_frame, encode_frame
from proximadb.errors import MalformedPayloadError, UnknownOperationError, UnsupportedSchemaVersionError

ALLOWED: tuple[type[BaseException], ...] = (
    MalformedPayloadError,
    UnsupportedSchemaVersionError,
    UnknownOperationError,
)


def one_input(data: bytes) -> None:
    version, op_type, datum = decode_frame(data)
    assert len(datum) <= len(data)
    # A frame that parses re-encodes to the same bytes (the layout has no slack).
    assert encode_frame(op_type, datum, version) == data, "frame does not round-trip"


if __name__ == "__main__":
    run_atheris(one_input, ALLOWED)
    sys.exit(0)
