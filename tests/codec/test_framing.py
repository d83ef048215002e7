"""The versioned payload frame: layout, zero-copy decode, and every way a frame can be wrong."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.framing import HEADER_SIZE, MAX_OP_TYPE_LEN, decode_frame, encode_frame
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, OP_RECORDS
from proximadb.errors import (
    MalformedPayloadError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
    ValidationError,
)

FRAME_ERRORS = (MalformedPayloadError, UnsupportedSchemaVersionError, UnknownOperationError)


def frame(version: int, op: bytes, datum: bytes = b"", op_len: int | None = None) -> bytes:
    return struct.pack("<II", version, len(op) if op_len is None else op_len) + op + datum


def test_layout_is_version_length_op_datum_little_endian() -> None:
    data = encode_frame("vector_delete", b"\x01\x02\x03")
    version = CURRENT_SCHEMA_VERSION.to_bytes(4, "little")
    assert data == version + b"\x0d\x00\x00\x00" + b"vector_delete" + b"\x01\x02\x03"
    assert HEADER_SIZE == 8 and MAX_OP_TYPE_LEN == 64


@pytest.mark.parametrize("op_type", sorted(OP_RECORDS))
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_round_trip_every_op_type(op_type: str, wrap: type) -> None:
    datum = bytes(range(256)) * 3
    data = encode_frame(op_type, wrap(datum))
    version, op, view = decode_frame(wrap(data))
    assert (version, op) == (CURRENT_SCHEMA_VERSION, op_type)
    assert isinstance(view, memoryview) and view.format == "B" and bytes(view) == datum


def test_empty_datum() -> None:
    version, op, view = decode_frame(encode_frame("vector_search", b""))
    assert (version, op, len(view)) == (CURRENT_SCHEMA_VERSION, "vector_search", 0)


def test_datum_is_a_view_into_the_callers_buffer() -> None:
    buf = bytearray(encode_frame("vector_insert", b"abc"))
    _, _, view = decode_frame(buf)
    assert view.obj is buf
    buf[-1] = ord("z")
    assert bytes(view) == b"abz"
    view.release()  # let the bytearray be resized again


def test_non_byte_buffers_are_read_as_bytes() -> None:
    data = encode_frame("vector_delete", b"wxyz")  # 8 + 13 + 4 = 25 bytes
    padded = np.frombuffer(data + b"\0" * 3, dtype=np.uint32)  # a 'I' buffer of 7 items
    version, op, view = decode_frame(padded)
    assert (version, op) == (CURRENT_SCHEMA_VERSION, "vector_delete")
    assert view.format == "B" and bytes(view) == b"wxyz\0\0\0"


@pytest.mark.parametrize("length", range(HEADER_SIZE))
def test_shorter_than_the_header(length: int) -> None:
    with pytest.raises(MalformedPayloadError, match=rf"frame is {length} bytes, shorter than its 8-byte header"):
        decode_frame(encode_frame("vector_insert", b"")[:length])


@pytest.mark.parametrize("op_len", [0, MAX_OP_TYPE_LEN + 1, 2**32 - 1])
def test_op_type_length_out_of_range(op_len: int) -> None:
    with pytest.raises(MalformedPayloadError, match=rf"op_type_len {op_len} at offset 4 is out of range \(1..64\)"):
        decode_frame(frame(1, b"vector_insert", b"datum", op_len=op_len))


def test_op_type_running_past_the_end() -> None:
    with pytest.raises(
        MalformedPayloadError, match=r"op type of 20 bytes at offset 8 runs past the end .*5 bytes left"
    ):
        decode_frame(frame(1, b"vecto", op_len=20))


def test_op_type_not_utf8() -> None:
    with pytest.raises(MalformedPayloadError, match=r"op type at offset 10 is not valid UTF-8"):
        decode_frame(frame(1, b"ve\xffctor"))


@pytest.mark.parametrize("version", [0, 5, 2**32 - 1])
def test_unsupported_version_lists_the_supported_ones(version: int) -> None:
    with pytest.raises(
        UnsupportedSchemaVersionError, match=rf"version {version} is not supported \(supported versions: 1, 2, 3, 4\)"
    ):
        decode_frame(frame(version, b"vector_insert"))


def test_version_is_checked_before_the_rest_of_the_header() -> None:
    with pytest.raises(UnsupportedSchemaVersionError):
        decode_frame(frame(9, b"", op_len=0))


def test_unknown_op_type() -> None:
    with pytest.raises(UnknownOperationError, match=r"unknown op type 'vector_explode' \(known: collection_create"):
        decode_frame(frame(1, b"vector_explode", b"x"))


def test_not_a_buffer() -> None:
    with pytest.raises(TypeError):
        decode_frame("vector_insert")  # type: ignore[arg-type]


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(UnknownOperationError):
        encode_frame("vector_explode", b"")
    with pytest.raises(UnsupportedSchemaVersionError, match="supported versions: 1, 2, 3, 4"):
        encode_frame("vector_insert", b"", schema_version=5)
    with pytest.raises(TypeError):
        encode_frame(b"vector_insert", b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_frame("vector_insert", "text datum")  # type: ignore[arg-type]
    assert issubclass(UnknownOperationError, ValidationError)


def test_every_truncation_of_a_frame_is_malformed() -> None:
    data = encode_frame("collection_create", b"\x00\x01\x02")
    for cut in range(HEADER_SIZE + len("collection_create")):
        with pytest.raises(MalformedPayloadError):
            decode_frame(data[:cut])
    assert len(decode_frame(data[: HEADER_SIZE + len("collection_create")])[2]) == 0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=40))
def test_garbage_is_refused_with_a_frame_error(data: bytes) -> None:
    try:
        version, op, view = decode_frame(data)
    except FRAME_ERRORS:
        return
    assert version == CURRENT_SCHEMA_VERSION and op in OP_RECORDS
    assert len(view) == len(data) - HEADER_SIZE - len(op.encode())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from(sorted(OP_RECORDS)),
    st.binary(max_size=30),
    st.integers(0, 2**32 - 1),
    st.integers(0, 40),
    st.integers(0, 255),
)
def test_mutated_headers_are_refused_or_consistent(op: str, datum: bytes, value: int, pos: int, byte: int) -> None:
    data = bytearray(encode_frame(op, datum))
    if pos < HEADER_SIZE:
        struct.pack_into("<I", data, pos - pos % 4, value)
    elif pos < len(data):
        data[pos] = byte
    try:
        _, op_out, view = decode_frame(bytes(data))
    except FRAME_ERRORS:
        return
    assert HEADER_SIZE + len(op_out.encode()) + len(view) == len(data)
