"""Stub for the compiled module proximadb.storage.wal_io (see wal_io.pyx for the byte layout)."""

from collections.abc import Sequence
from typing import Any

from typing_extensions import Buffer

MAGIC: bytes
FORMAT_VERSION: int
FILE_HEADER_SIZE: int
FRAME_HEADER_SIZE: int
MAX_BODY_LEN: int
STRATEGY_AVRO: int
STRATEGY_BINARY: int
FLAG_LZ4: int
FLAG_TIMESTAMPS: int
KNOWN_FLAGS: int
SCAN_CLEAN: int
SCAN_TRUNCATED: int
SCAN_BAD_CRC: int

# (offset, seq, op, flags, schema_version, raw_len, body_offset, body_len)
FrameTuple = tuple[int, int, int, int, int, int, int, int]

def crc32c(data: Buffer, value: int = 0) -> int: ...
def force_software_crc32c(on: bool) -> None: ...
def crc32c_implementation() -> str: ...
def encode_file_header(strategy: int, flags: int, first_seq: int) -> bytes: ...
def decode_file_header(buf: Buffer) -> tuple[int, int, int, int]: ...
def write_frame(
    fd: int,
    seq: int,
    op: int,
    flags: int,
    schema_version: int,
    raw_len: int,
    body: Buffer | Sequence[Buffer],
) -> int: ...
def scan_frames(buf: Buffer, start_offset: int) -> tuple[list[FrameTuple], int, int]: ...
def find_next_valid_frame(buf: Buffer, start_offset: int, min_seq: int) -> int: ...
def pack_str_list(items: list[str]) -> bytes: ...
def unpack_str_list(buf: Buffer, offset: int, count: int) -> tuple[list[str], int]: ...
def encode_metadata_maps(maps: list[dict[str, Any]]) -> bytes: ...
def decode_metadata_maps(buf: Buffer, offset: int, count: int) -> tuple[list[dict[str, Any]], int]: ...
