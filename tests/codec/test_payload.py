"""Payload helpers: every op type through frame + Avro, insert encoding, and garbage handling."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.avro_batch import DecodedBatch, decode_vector_batch
from proximadb.codec.framing import HEADER_SIZE, decode_frame, encode_frame
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, op_schema
from proximadb.errors import (
    DimensionMismatchError,
    InvalidVectorError,
    MalformedPayloadError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
    ValidationError,
)

PAYLOAD_ERRORS = (MalformedPayloadError, UnsupportedSchemaVersionError, UnknownOperationError, DimensionMismatchError,
                  InvalidVectorError)

METADATA = {"genre": "jazz", "year": 1959, "score": 4.5, "live": False, "tags": ["modal", "cool"], "gone": None}

SAMPLES: dict[str, dict[str, Any]] = {
    "vector_delete": {"ids": ["a", "bé"], "filter": None},
    "vector_update": {
        "updates": [{"id": "a", "metadata": METADATA, "replace": True}, {"id": "b", "metadata": {}, "replace": False}],
        "timestamp": 1_700_000_000_000_000,
    },
    "vector_search": {
        "queries": [[0.5, -1.0, 2.0], [0.0, 0.0, 1.0]],
        "k": 10,
        "filter": '{"genre": "jazz"}',
        "include_vectors": True,
        "include_metadata": False,
        "ef": 64,
        "nprobe": None,
        "exact": False,
        "using": "title",  # schema v4: the named vector searched
    },
    "search_result": {
        "results": [
            [
                {
                    "id": "a",
                    "score": 0.75,
                    "distance": 0.25,
                    "metadata": METADATA,
                    "vector": [1.0, 2.0],
                    "expires_at": 1_900_000_000_000_000,
                    "named_vectors": {"title": [0.5, -1.0]},  # schema v4
                },
                {"id": "b", "score": 0.5, "distance": 0.5, "metadata": None, "vector": None, "expires_at": None,
                 "named_vectors": None},
            ],
            [],
        ]
    },
    "collection_create": {
        "name": "songs",
        "dimension": 128,
        "distance_metric": "cosine",
        "indexing_algorithm": "hnsw",
        "index_params": {"m": 16, "ef_construction": 200, "ratio": 0.5, "name": "x", "flag": True},
        "filterable_metadata_fields": ["genre", "year"],
        "description": "test collection",
        "vectors": {"title": {"dimension": 8, "distance_metric": "dot_product", "indexing_algorithm": None,
                              "index_params": None},  # v4: the collection's index settings
                    "body-2": {"dimension": 384, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
                               "index_params": {"m": 8, "quantization": {"type": "int8"}}}},  # its own
    },
}
SAMPLES["collection_update"] = SAMPLES["collection_create"]


def fastavro_datum(op: str, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, op_schema(op), datum)
    return out.getvalue()


@pytest.mark.parametrize("op", sorted(SAMPLES))
def test_round_trip_every_small_op(op: str) -> None:
    payload = encode_payload(op, SAMPLES[op])
    assert payload == encode_frame(op, fastavro_datum(op, SAMPLES[op]))
    version, op_out, value = decode_payload(payload)
    assert (version, op_out, value) == (CURRENT_SCHEMA_VERSION, op, SAMPLES[op])


def test_defaults_are_filled_in() -> None:
    _, _, value = decode_payload(encode_payload("vector_search", {"queries": [[1.0]], "k": 3}))
    assert value == {
        "queries": [[1.0]],
        "k": 3,
        "filter": None,
        "include_vectors": False,
        "include_metadata": True,
        "ef": None,
        "nprobe": None,
        "exact": False,
        "using": None,  # schema v4; a v1-v3 request has none (resolved to null when read as v4)
    }


def test_insert_goes_through_the_cython_decoder() -> None:
    payload = encode_insert(ids=["a", "b"], vectors=np.ones((2, 3)), metadata=[METADATA, None], timestamps=[5, 6])
    version, op, batch = decode_payload(payload)
    assert (version, op) == (CURRENT_SCHEMA_VERSION, "vector_insert") and isinstance(batch, DecodedBatch)
    assert batch.ids == ["a", "b"] and batch.metadata == [METADATA, {}] and batch.timestamps.tolist() == [5, 6]
    assert decode_payload(payload, expected_dim=3)[2].vectors.shape == (2, 3)
    with pytest.raises(DimensionMismatchError, match=r"record 0 \(id 'a'\) has dimension 3, expected 4"):
        decode_payload(payload, expected_dim=4)
    # encode_payload with a dict datum writes the same bytes as the Cython encoder.
    records = [
        {"id": "a", "vector": [1.0] * 3, "metadata": METADATA, "timestamp": 5},
        {"id": "b", "vector": [1.0] * 3, "metadata": {}, "timestamp": 6},
    ]
    assert encode_payload("vector_insert", {"upsert": False, "records": records}) == payload


def test_encode_insert_from_records_equals_from_columns() -> None:
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    by_records = encode_insert(
        [
            {"id": "x", "vector": vectors[0].tolist(), "metadata": {"k": 1}, "timestamp": 9},
            {"id": "y", "vector": vectors[1]},
        ],
        upsert=True,
    )
    by_columns = encode_insert(
        ids=["x", "y"], vectors=vectors, metadata=[{"k": 1}, None], timestamps=[9, 0], upsert=True
    )
    assert by_records == by_columns
    batch = decode_payload(by_records)[2]
    assert batch.upsert is True and np.array_equal(batch.vectors, vectors)


def test_encode_insert_empty() -> None:
    batch = decode_payload(encode_insert([]))[2]
    assert len(batch) == 0 and batch.vectors.shape == (0, 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((), {"vectors": np.zeros((1, 2))}, ValidationError, "ids are required"),
        ((), {"ids": ["a"]}, ValidationError, "vectors are required"),
        ((), {"ids": [None], "vectors": np.zeros((1, 2))}, ValidationError, "record 0 has no id"),
        ((), {"ids": [""], "vectors": np.zeros((1, 2))}, ValidationError, "id must not be empty"),
        ((), {"ids": "ab", "vectors": np.zeros((2, 2))}, ValidationError, "not a single string"),
        (([{"vector": [1.0]}],), {}, ValidationError, "record 0 has no id"),
        (([{"id": "a"}],), {}, ValidationError, r"record 0 \(id 'a'\) has no vector"),
        (([{"id": "a", "vector": [1.0], "metdata": {}}],), {}, ValidationError, r"unknown keys \['metdata'\]"),
        (([{"id": "a", "vector": [[1.0]]}],), {}, ValidationError, "vector must be 1-D"),
        (([{"id": "a", "vector": ["x"]}],), {}, ValidationError, "vector must be a list of numbers"),
        (([{"id": "a", "vector": [1.0], "timestamp": 1.5}],), {}, ValidationError, "timestamp must be an int"),
        (
            ([{"id": "a", "vector": [1.0]}, {"id": "b", "vector": [1.0, 2.0]}],),
            {},
            DimensionMismatchError,
            r"record 1 \(id 'b'\) has dimension 2, expected 1",
        ),
        (([{"id": "a", "vector": [1.0]}],), {"ids": ["a"]}, ValidationError, "not both"),
        (({"id": "a", "vector": [1.0]},), {}, ValidationError, "not a single dict"),
        ((["a"],), {}, ValidationError, "record 0 must be a dict"),
        (
            ([{"id": "a", "vector": [1.0], "metadata": {"k": object()}}],),
            {},
            ValidationError,
            "unsupported type object",
        ),
    ],
)
def test_encode_insert_refuses_bad_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        encode_insert(*args, **kwargs)


@pytest.mark.parametrize(
    ("op", "datum", "message"),
    [
        ("vector_search", {"queries": [[1.0]]}, "missing required field.* k"),
        ("vector_search", {"queries": [[1.0]], "k": 1, "exact": "no"}, r"SearchRequest.exact is <no>"),
        ("vector_search", {"queries": [[1.0]], "k": 2**40}, r"SearchRequest.k is <1099511627776>"),
        ("vector_search", {"queries": [[1.0]], "k": 1, "typo": 1}, "more fields than the schema"),
        ("vector_delete", {"ids": ["a"], "filter": 5}, r"VectorDelete.filter is <5>"),
        ("vector_update", {"updates": [{"id": "a"}], "timestamp": 0}, r"expected record proximadb.v4.MetadataPatch"),
        ("vector_delete", ["a"], "must be a dict"),
    ],
)
def test_encode_payload_refuses_datums_that_do_not_match(op: str, datum: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        encode_payload(op, datum)
    assert "__named_schemas" not in str(info.value)  # no schema dumps in messages


def test_encode_payload_unknown_op_and_version() -> None:
    with pytest.raises(UnknownOperationError):
        encode_payload("vector_explode", {})
    with pytest.raises(UnsupportedSchemaVersionError):
        encode_payload("vector_delete", {"ids": []}, schema_version=5)


def zigzag(value: int) -> bytes:
    u = ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    return bytes(out + bytes([u]))


@pytest.mark.parametrize(
    ("op", "datum", "message"),
    [
        (
            "vector_delete",
            zigzag(1) + zigzag(2**40) + b"abc" + b"\0\0",
            r"offset 1: length runs past the end of the datum \(1099511627776\) while reading a string",
        ),
        ("vector_delete", zigzag(1) + zigzag(-3) + b"abc\0\0", r"negative length \(-3\) while reading a string"),
        (
            "vector_delete",
            zigzag(2**50) + b"\0" * 8,
            r"block count larger than the bytes left could hold \(1125899906842624\) while reading an array block",
        ),
        (
            "vector_delete",
            zigzag(-(2**40)) + zigzag(3) + b"\0\0\0",
            r"larger than the bytes left could hold \(1099511627776\)",
        ),
        ("vector_delete", zigzag(-1) + zigzag(9) + b"\0\0", r"block byte size runs past the end of the datum \(9\)"),
        (
            "vector_delete",
            zigzag(-1) + zigzag(1) + b"\x02a\0\0",
            r"offset 2: block byte size does not match the bytes its items take \(1\)",
        ),
        ("vector_delete", b"\xff" * 11, r"overlong varint"),
        ("vector_delete", b"\x00\x04", r"offset 1: invalid union index \(2\) while reading a union index"),
        ("vector_delete", b"\x00\x00\x00", r"offset 2: 1 trailing bytes after the VectorDelete datum"),
        (
            "vector_search",
            zigzag(1) + zigzag(2**31) + b"\0" * 16,
            r"block count larger than the bytes left could hold \(2147483648\) while reading a float array block",
        ),
        (
            "vector_search",
            zigzag(1) + zigzag(-1) + zigzag(3) + b"\0" * 12,
            r"block byte size is not 4 bytes per float \(3\)",
        ),
        (
            "vector_search",
            b"\x00\x02\x00\x05\x00\x00\x00\x00\x00",
            r"offset 3: invalid boolean byte \(must be 0 or 1\) \(5\) while reading a boolean",
        ),
        (
            "collection_create",
            b"\x02a" + zigzag(2**31) + b"\x02c\0\0\0\0\0",
            r"int out of the 32-bit range \(2147483648\) while reading an int",
        ),
        ("vector_delete", b"\x02\x02\xff\x00\x00", r"VectorDelete datum: UnicodeDecodeError"),
    ],
)
def test_malformed_datums_are_refused_before_fastavro_allocates(op: str, datum: bytes, message: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(MalformedPayloadError, match=message) as info:
            decode_payload(encode_frame(op, datum))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert "the datum starts at frame offset" in str(info.value) or "UnicodeDecodeError" in str(info.value)


def test_insert_errors_name_the_frame_offset() -> None:
    with pytest.raises(
        MalformedPayloadError, match=r"offset 0: invalid boolean byte .* datum starts at frame offset 21"
    ):
        decode_payload(encode_frame("vector_insert", b"\x05\x00"))


def all_payloads() -> list[bytes]:
    payloads = [encode_payload(op, datum) for op, datum in sorted(SAMPLES.items())]
    payloads.append(encode_insert(ids=["a", "b"], vectors=np.ones((2, 3)), metadata=[METADATA, None]))
    return payloads


@pytest.mark.parametrize("payload", all_payloads(), ids=lambda p: decode_frame(p)[1])
def test_every_truncation_is_malformed(payload: bytes) -> None:
    decode_payload(payload)
    for cut in range(len(payload)):
        with pytest.raises(MalformedPayloadError):
            decode_payload(payload[:cut])


def test_random_byte_flips_never_escape_the_error_taxonomy() -> None:
    rng = random.Random(5)
    payloads = all_payloads()
    accepted = 0
    for _ in range(3000):
        original = rng.choice(payloads)
        datum_start = HEADER_SIZE + len(decode_frame(original)[1])
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            # Mostly the datum: the header's own failures are covered in test_framing.py.
            data[rng.randrange(0 if rng.random() < 0.1 else datum_start, len(data))] = rng.randrange(256)
        try:
            _, op, value = decode_payload(bytes(data))
        except PAYLOAD_ERRORS:
            continue
        accepted += 1
        datum = bytes(decode_frame(bytes(data))[2])
        if op == "vector_insert":
            assert isinstance(value, DecodedBatch)
            assert decode_vector_batch(datum, -1, decode_frame(bytes(data))[0]).ids == value.ids
        else:
            assert isinstance(value, dict)
    assert accepted > 0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from([*sorted(SAMPLES), "vector_insert"]), st.binary(max_size=64))
def test_garbage_datums_never_escape_the_error_taxonomy(op: str, datum: bytes) -> None:
    try:
        decode_payload(encode_frame(op, datum))
    except PAYLOAD_ERRORS:
        pass


def test_garbage_frames_never_escape_the_error_taxonomy() -> None:
    rng = random.Random(9)
    for _ in range(500):
        data = struct.pack("<II", 1, 13) + b"vector_delete" + rng.randbytes(rng.randrange(40))
        try:
            decode_payload(data)
        except PAYLOAD_ERRORS:
            pass
