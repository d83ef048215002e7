"""The Cython VectorBatch codec against fastavro, the reference Avro implementation."""

from __future__ import annotations

import io
import math
import random
import struct
import threading
import tracemalloc
from typing import Any

import fastavro
import numpy as np
import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proximadb.codec.avro_batch import DecodedBatch, decode_vector_batch, encode_vector_batch
from proximadb.codec.schemas import op_schema
from proximadb.errors import DimensionMismatchError, MalformedPayloadError, ValidationError
from proximadb.storage.operations import InsertOp

SCHEMA = op_schema("vector_insert", 1)  # the layout of the unframed codec (schema_version=1 default)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def fastavro_bytes(batch: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, SCHEMA, batch)
    return out.getvalue()


def fastavro_read(data: bytes) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(data), SCHEMA, None)


def same(a: Any, b: Any) -> bool:
    """Structural equality where NaN equals NaN and bool is not int."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def assert_matches_fastavro(data: bytes, decoded: DecodedBatch | None = None) -> DecodedBatch:
    decoded = decoded if decoded is not None else decode_vector_batch(data)
    reference = fastavro_read(data)
    n = len(reference["records"])
    assert decoded.vectors.dtype == np.float32 and decoded.vectors.flags.c_contiguous
    assert decoded.timestamps.dtype == np.int64 and decoded.timestamps.shape == (n,)
    assert decoded.vectors.shape[0] == n
    assert same(decoded.to_dict(), reference)
    return decoded


# ------------------------------------------------------------------ a hand-rolled Avro writer


def zigzag(value: int) -> bytes:
    u = ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def string(s: str | bytes) -> bytes:
    raw = s.encode("utf-8") if isinstance(s, str) else s
    return zigzag(len(raw)) + raw


def blocks(items: list[bytes], rng: random.Random) -> bytes:
    """Items split into random blocks; some blocks use a negative count followed by their byte size."""
    out = bytearray()
    i = 0
    while i < len(items):
        size = rng.randint(1, len(items) - i)
        chunk = b"".join(items[i : i + size])
        if rng.random() < 0.5:
            out += zigzag(-size) + zigzag(len(chunk)) + chunk
        else:
            out += zigzag(size) + chunk
        i += size
    return bytes(out + zigzag(0))


def value(v: Any, rng: random.Random) -> bytes:
    if v is None:
        return zigzag(0)
    if isinstance(v, bool):
        return zigzag(1) + bytes([v])
    if isinstance(v, int):
        return zigzag(2) + zigzag(v)
    if isinstance(v, float):
        return zigzag(3) + struct.pack("<d", v)
    if isinstance(v, str):
        return zigzag(4) + string(v)
    return zigzag(5) + blocks([string(s) for s in v], rng)


def multi_block_batch(batch: dict[str, Any], rng: random.Random) -> bytes:
    records = []
    for r in batch["records"]:
        floats = [struct.pack("<f", x) for x in r["vector"]]
        entries = [string(k) + value(v, rng) for k, v in r["metadata"].items()]
        records.append(string(r["id"]) + blocks(floats, rng) + blocks(entries, rng) + zigzag(r["timestamp"]))
    return bytes([batch["upsert"]]) + blocks(records, rng)


# ------------------------------------------------------------------ strategies

metadata_values = strategies.metadata_values()
metadata_maps = strategies.metadata_maps(metadata_values)
timestamps = strategies.timestamps


@st.composite
def batches(draw: st.DrawFn, max_records: int = 6) -> dict[str, Any]:
    n = draw(st.integers(0, max_records))
    dim = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, dim)).astype(np.float32)
    if n and dim:  # edge values survive the round trip bit for bit
        special = np.array([np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38], dtype=np.float32)
        matrix.flat[rng.integers(0, n * dim, size=3)] = rng.choice(special, size=3)
    return {
        "upsert": draw(st.booleans()),
        "records": [
            {
                "id": draw(st.text(max_size=12)),
                "vector": matrix[i].tolist(),
                "metadata": draw(metadata_maps),
                "timestamp": draw(timestamps),
            }
            for i in range(n)
        ],
    }


# ------------------------------------------------------------------ decoding = fastavro


@SETTINGS
@given(batches())
def test_decode_equals_fastavro_on_fastavro_bytes(batch: dict[str, Any]) -> None:
    data = fastavro_bytes(batch)
    decoded = assert_matches_fastavro(data)
    assert same(decoded.to_dict(), batch)


@SETTINGS
@given(batches(), st.integers(0, 2**32 - 1))
def test_decode_equals_fastavro_on_multi_block_bytes(batch: dict[str, Any], seed: int) -> None:
    data = multi_block_batch(batch, random.Random(seed))
    decoded = assert_matches_fastavro(data)
    assert same(decoded.to_dict(), batch)


@SETTINGS
@given(batches())
def test_encode_is_byte_identical_to_fastavro(batch: dict[str, Any]) -> None:
    records = batch["records"]
    dim = len(records[0]["vector"]) if records else 0
    data = encode_vector_batch(
        [r["id"] for r in records],
        np.array([r["vector"] for r in records], dtype=np.float32).reshape(len(records), dim),
        [r["metadata"] for r in records],
        [r["timestamp"] for r in records],
        upsert=batch["upsert"],
    )
    assert data == fastavro_bytes(batch)
    assert same(fastavro_read(data), batch)
    assert_matches_fastavro(data)


def test_nan_payloads_are_copied_bit_for_bit() -> None:
    bits = np.array([[0x7FC00001, 0xFFC12345, 0x7F800001, 0]], dtype=np.uint32)
    data = encode_vector_batch(["nan"], bits.view(np.float32))
    assert np.array_equal(decode_vector_batch(data).vectors.view(np.uint32), bits)


def test_empty_batch_shapes() -> None:
    data = encode_vector_batch([], np.empty((0, 5), dtype=np.float32), upsert=True)
    assert data == b"\x01\x00"
    assert decode_vector_batch(data).vectors.shape == (0, 0)
    assert decode_vector_batch(data, expected_dim=7).vectors.shape == (0, 7)
    batch = decode_vector_batch(data)
    assert batch.upsert is True and batch.ids == [] and batch.metadata == [] and batch.timestamps.shape == (0,)


def test_zero_dimension_vectors() -> None:
    data = encode_vector_batch(["a", "b"], np.empty((2, 0)))
    batch = decode_vector_batch(data)
    assert batch.vectors.shape == (2, 0)
    assert batch.ids == ["a", "b"]


def test_accepts_any_bytes_like_and_to_insert_op() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = encode_vector_batch(["x", "y"], vectors, [{"k": 1}, None], [10, 20], upsert=True)
    for buf in (data, bytearray(data), memoryview(data), memoryview(b"pad" + data)[3:], np.frombuffer(data, np.uint8)):
        batch = decode_vector_batch(buf, expected_dim=3)
        assert batch.ids == ["x", "y"] and np.array_equal(batch.vectors, vectors)
    op = batch.to_insert_op()
    assert isinstance(op, InsertOp)
    assert op.upsert is True and op.ids == ["x", "y"] and op.metadata == [{"k": 1}, {}]
    assert np.array_equal(op.vectors, vectors) and op.timestamps.tolist() == [10, 20]
    assert len(batch) == 2 and batch.dim == 3 and "n=2" in repr(batch)


def test_decoding_in_threads_gives_the_same_result() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((300, 64)).astype(np.float32)
    data = encode_vector_batch([f"id{i}" for i in range(300)], vectors)
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(20):
            results.append(decode_vector_batch(data).vectors)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(np.array_equal(r, vectors) for r in results)


# ------------------------------------------------------------------ dimensions


def test_expected_dimension_mismatch_names_record_id_and_dims() -> None:
    data = encode_vector_batch(["first", "second"], np.zeros((2, 4)))
    with pytest.raises(DimensionMismatchError, match=r"record 0 \(id 'first'\) has dimension 4, expected 3"):
        decode_vector_batch(data, expected_dim=3)
    assert decode_vector_batch(data, expected_dim=4).vectors.shape == (2, 4)


def test_records_of_different_dimensions_are_refused() -> None:
    batch = {
        "upsert": False,
        "records": [
            {"id": "a", "vector": [1.0, 2.0], "metadata": {}, "timestamp": 0},
            {"id": "b", "vector": [1.0, 2.0], "metadata": {}, "timestamp": 0},
            {"id": "odd☃", "vector": [1.0], "metadata": {}, "timestamp": 0},
        ],
    }
    with pytest.raises(DimensionMismatchError, match=r"record 2 \(id 'odd☃'\) has dimension 1, expected 2"):
        decode_vector_batch(fastavro_bytes(batch))


# ------------------------------------------------------------------ malformed input

VALID = encode_vector_batch(
    ["a", "bé"],
    np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32),
    [{"s": "x", "n": None, "b": True, "l": -3, "d": 0.5, "arr": ["p", "q"]}, {}],
    [1, 2],
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"offset 0: truncated while reading the upsert flag"),
        (b"\x02\x00", r"offset 0: invalid boolean byte .*\(2\) while reading the upsert flag"),
        (b"\x00" + b"\xff" * 11, r"offset 1: overlong varint .* the records block count"),
        (b"\x00\x02\x01" + b"\x00" * 4, r"negative length \(-1\) while reading the record id of record 0"),
        (b"\x00\x02\x10ab\x00\x00", r"length runs past the end of the datum \(8\) while reading the record id"),
        (b"\x00" + zigzag(2**40), r"offset 1: block count larger than the bytes left could hold"),
        (b"\x00" + zigzag(-(2**63)), r"block count out of range"),
        (b"\x00" + zigzag(-1) + zigzag(-5), r"negative block byte size"),
        (b"\x00" + zigzag(-1) + zigzag(99) + b"\x00" * 4, r"block byte size runs past the end"),
        (b"\x00\x02\x00" + zigzag(-1) + zigzag(5) + b"\x00" * 8, r"must be 4 x the block count \(5\)"),
        (b"\x00\x02\x00" + zigzag(3) + b"\x00" * 8, r"block count larger than the bytes left .* vector block count"),
        (b"\x00\x02\x00\x00\x02\x00\x0c", r"invalid union index \(must be 0..5\) \(6\)"),
        (b"\x00\x02\x00\x00\x02\x00\x01", r"invalid union index \(must be 0..5\) \(-1\)"),
        (
            b"\x00\x02\x00\x00\x02\x00\x02\x07\x00\x00\x00",
            r"invalid boolean byte .*\(7\) while reading a metadata boolean",
        ),
        (b"\x00\x02\x00\x00\x02\x00\x06\x00\x00", r"truncated while reading a metadata double"),
        (b"\x00\x02\x02\xff\x00\x00\x00\x00", r"offset 3: the id of record 0 is not valid UTF-8"),
        (b"\x00\x02\x00\x00\x02\x02\xc3\x00\x00\x00\x00", r"a metadata key of record 0 is not valid UTF-8"),
        (b"\x00\x02\x00\x00\x02\x00\x08\x02\xed\x00\x00\x00", r"a metadata string of record 0 is not valid UTF-8"),
        (b"\x00\x02\x00\x00\x00\x00\x00\x00", r"offset 7: trailing bytes after the datum \(1\)"),
        (b"\x00" + zigzag(-1) + zigzag(5) + b"\x00" * 4 + b"\x00", r"block byte size does not match"),
        (b"\x00\x02\x00\x00\x00\x80", r"truncated varint while reading the record timestamp of record 0"),
    ],
)
def test_malformed_inputs_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPayloadError, match=message):
        decode_vector_batch(data)


def test_absurd_counts_are_refused_before_allocating() -> None:
    absurd = [
        b"\x00" + zigzag(2**62),  # records
        b"\x00\x02\x00" + zigzag(2**61),  # floats of one vector
        b"\x00\x02\x00\x00" + zigzag(2**60),  # metadata entries
        b"\x00\x02\x00\x00\x02\x00\x0a" + zigzag(2**59),  # strings of a metadata array
    ]
    tracemalloc.start()
    try:
        for data in absurd:
            with pytest.raises(MalformedPayloadError, match="larger than the bytes left"):
                decode_vector_batch(data + b"\x00" * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_every_truncation_is_malformed() -> None:
    rng = random.Random(3)
    batch = {
        "upsert": True,
        "records": [
            {"id": "r1", "vector": [1.0, -2.0], "metadata": {"a": ["x", "y"], "b": 2.5}, "timestamp": 10**12},
            {"id": "ré2", "vector": [0.0, 3.0], "metadata": {"c": None, "d": False, "e": "v"}, "timestamp": -1},
        ],
    }
    for data in (VALID, fastavro_bytes(batch), multi_block_batch(batch, rng)):
        decode_vector_batch(data)
        for cut in range(len(data)):
            with pytest.raises(MalformedPayloadError):
                decode_vector_batch(data[:cut])


def test_random_byte_flips_never_escape_the_error_taxonomy() -> None:
    rng = random.Random(11)
    batch = {
        "upsert": False,
        "records": [
            {
                "id": f"id{i}",
                "vector": [float(i), 0.5, -1.0],
                "metadata": {"k": i, "s": ["a"], "f": 1.5},
                "timestamp": i,
            }
            for i in range(4)
        ],
    }
    sources = [VALID, fastavro_bytes(batch), multi_block_batch(batch, rng)]
    decoded_ok = 0
    for _ in range(3000):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            result = decode_vector_batch(bytes(data), expected_dim=rng.choice([-1, 3]))
        except (MalformedPayloadError, DimensionMismatchError):
            continue
        decoded_ok += 1
        # Whatever we accept is a valid datum, so fastavro must read the same thing.
        assert same(result.to_dict(), fastavro_read(bytes(data)))
    assert decoded_ok > 0


@SETTINGS
@given(st.binary(max_size=200))
def test_garbage_never_escapes_the_error_taxonomy(data: bytes) -> None:
    try:
        decode_vector_batch(data)
    except (MalformedPayloadError, DimensionMismatchError):
        pass


# ------------------------------------------------------------------ encoder validation


def test_metadata_value_types_map_to_the_union() -> None:
    metadata = {
        "none": None,
        "t": True,
        "np_bool": np.bool_(False),
        "int": 1,
        "np_int": np.int16(-7),
        "big": -(2**63),
        "float": 1.25,
        "np_float": np.float32(0.5),
        "s": "str",
        "list": ["a", "b"],
        "tuple": ("c",),
        "empty": [],
    }
    data = encode_vector_batch(["x"], np.zeros((1, 1)), [metadata])
    decoded = decode_vector_batch(data).metadata[0]
    expected = dict(metadata, np_bool=False, np_int=-7, np_float=0.5, tuple=["c"])
    assert same(decoded, expected)
    assert same(fastavro_read(data)["records"][0]["metadata"], expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metadata": [{"k": 2**63}]}, r"key 'k' of record 0 is out of the signed 64-bit range"),
        ({"metadata": [{"k": {1, 2}}]}, r"key 'k' of record 0 has unsupported type set"),
        ({"metadata": [{"k": b"raw"}]}, r"key 'k' of record 0 has unsupported type bytes"),
        ({"metadata": [{"k": {"nested": 1}}]}, r"unsupported type dict"),
        ({"metadata": [{"k": ["a", 1]}]}, r"key 'k' of record 0: list items must be str, got int"),
        ({"metadata": [{1: "v"}]}, r"metadata key 1 of record 0 is a int; keys must be str"),
        ({"metadata": ["not a dict"]}, r"metadata of record 0 must be a dict or None, got str"),
        ({"metadata": [{}, {}]}, r"got 2 metadata entries for 1 vectors"),
        ({"ids": ["a", "b"]}, r"got 2 ids for 1 vectors"),
        ({"ids": [7]}, r"ids\[0\] must be a str, got int"),
        ({"ids": "a"}, r"not a single string"),
        ({"ids": ["\ud800"]}, r"ids\[0\] cannot be encoded as UTF-8"),
        ({"metadata": [{"k": "\udc80"}]}, r"metadata value of key 'k' of record 0 cannot be encoded"),
        ({"vectors": np.zeros(3)}, r"must be a 2-D array"),
        ({"vectors": [[1.0], [1.0, 2.0]]}, r"vectors must be a 2-D array of numbers"),
        ({"timestamps": [1, 2]}, r"timestamps must have shape \(1,\)"),
        ({"timestamps": [1.5]}, r"timestamps must be integers"),
        ({"timestamps": np.array([2**64 - 1], dtype=np.uint64)}, r"signed 64-bit"),
        ({"timestamps": [2**70]}, r"signed 64-bit"),
        ({"timestamps": [True]}, r"must be integers"),
    ],
)
def test_encoder_refuses_bad_input(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"ids": ["a"], "vectors": np.zeros((1, 2), dtype=np.float32)}
    args.update(kwargs)
    with pytest.raises(ValidationError, match=message):
        encode_vector_batch(**args)


def test_encoder_converts_vectors_to_float32_c_order() -> None:
    vectors = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))[:, ::-1]
    data = encode_vector_batch(["a", "b", "c"], vectors, timestamps=np.array([1, 2, 3], dtype=np.int32))
    batch = decode_vector_batch(data)
    assert np.array_equal(batch.vectors, vectors.astype(np.float32))
    assert batch.timestamps.tolist() == [1, 2, 3]
