"""Fuzz target: the WAL reader (file header, frame scan, torn-tail search, frame body decode).

The first input byte picks a mode:

* even: the input (after the mode byte) is a WAL segment file as found on disk:
  header check, ``scan_frames``, ``find_next_valid_frame``, then every valid
  frame's body is decoded as replay would.
* odd: the rest is one frame whose CRC is recomputed first, so mutations get
  past the checksum and reach the body decoders (avro and binary strategy,
  LZ4) -- what a bug in a writer, rather than a bit flip, would hand recovery.

Run: ``python fuzz/fuzz_wal_scan.py fuzz/corpus/wal_scan -max_total_time=60``.
"""

from __future__ import annotations

import struct
import sys

from _common import run_atheris  # fuzz/ is sys.path[0] when run as a script; puts the repo on sys.path
from lz4.block import LZ4BlockError

from proximadb.errors import ValidationError
from proximadb.storage import wal_codec, wal_io

# decode_file_header: ValueError; frame bodies: ValueError (bad flags/lengths, bad UTF-8),
# the payload decoders' ValidationError family (MalformedPayloadError, DimensionMismatchError, ...),
# LZ4BlockError. Replay turns each into CorruptionError naming file and offset.


# MalformedPayloadError is a ValidationError; damaged bodies must surface as one of these.
ALLOWED: tuple[type[BaseException], ...] = (ValueError, ValidationError, LZ4BlockError)

HDR = wal_io.FILE_HEADER_SIZE
FRAME = wal_io.FRAME_HEADER_SIZE


def _decode_bodies(data: bytes, start: int, strategy: int) -> None:
    frames, stop, status = wal_io.scan_frames(data, start)
    assert start <= stop <= len(data)
    if status != wal_io.SCAN_CLEAN:
        later = wal_io.find_next_valid_frame(data, stop + 1, 0)
        assert later == -1 or stop < later <= len(data) - FRAME
    view = memoryview(data)
    for _offset, _seq, op_code, flags, schema_version, raw_len, body_offset, body_len in frames:
        body = view[body_offset : body_offset + body_len]
        wal_codec.decode_frame_body(strategy, op_code, flags, schema_version, raw_len, body)


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 2 == 0:
        _version, strategy, _flags, _first_seq = wal_io.decode_file_header(rest)
        _decode_bodies(rest, HDR, strategy)
        return
    if len(rest) < FRAME:
        return
    strategy = (mode >> 1) & 1
    frame = bytearray(rest)
    struct.pack_into("<I", frame, 0, len(frame) - FRAME)  # body_len: the rest of the input
    struct.pack_into("<I", frame, 4, wal_io.crc32c(bytes(frame[8:])))
    _decode_bodies(bytes(frame), 0, strategy)


if __name__ == "__main__":
    run_atheris(one_input, ALLOWED)
    sys.exit(0)
