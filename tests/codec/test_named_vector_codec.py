"""Named dense vectors (schema v4) in the compiled VectorBatch codec: the same bytes as fastavro both ways, one
float32 (n, dim) column per name, and every broken rule refused with the vector and the record named."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.avro_batch import decode_vector_batch, encode_vector_batch
from proximadb.codec.schemas import record_schema
from proximadb.errors import DimensionMismatchError, InvalidVectorError, MalformedPayloadError, ValidationError
from proximadb.limits import MAX_NAMED_VECTORS

DIM = 3


def _fastavro_bytes(records: list[dict[str, Any]], version: int = 4) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, record_schema("VectorBatch", version), {"upsert": False, "records": records})
    return out.getvalue()


def _record(i: int, named: dict[str, list[float]] | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": f"r{i}", "vector": [1.0] * DIM, "metadata": {}, "timestamp": i}
    if named is not None:
        rec["named_vectors"] = named
    return rec


names_st = st.lists(st.text("abcXYZ019_-", min_size=1, max_size=64), min_size=1, max_size=MAX_NAMED_VECTORS,
                    unique=True)


@settings(max_examples=60, deadline=None)
@given(names=names_st, n=st.integers(0, 6), dims=st.lists(st.integers(1, 9), min_size=MAX_NAMED_VECTORS,
                                                         max_size=MAX_NAMED_VECTORS), seed=st.integers(0, 2**31))
def test_round_trip_is_fastavro_both_ways(names: list[str], n: int, dims: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    columns = {name: rng.standard_normal((n, dims[j])).astype(np.float32) for j, name in enumerate(names)}
    declared = {name: dims[j] for j, name in enumerate(names)}
    ids = [f"r{i}" for i in range(n)]
    ours = encode_vector_batch(ids, np.ones((n, DIM)), None, np.arange(n), schema_version=4, named_vectors=columns)
    theirs = _fastavro_bytes([_record(i, {k: c[i].tolist() for k, c in columns.items()}) for i in range(n)])
    assert ours == theirs
    ref = fastavro.schemaless_reader(io.BytesIO(ours), record_schema("VectorBatch", 4), None)
    for named_dims in (declared, None):
        batch = decode_vector_batch(theirs, DIM, 4, named_dims=named_dims)
        assert batch.to_dict() == ref
        if n == 0 and named_dims is None:
            assert batch.named_vectors is None  # no record: no names known
            continue
        assert batch.named_vectors is not None and list(batch.named_vectors) == names
        for name, col in batch.named_vectors.items():
            assert col.dtype == np.float32 and col.flags.c_contiguous and col.shape == (n, declared[name])
            assert np.array_equal(col, columns[name])
        assert batch.to_insert_op().named_vectors is batch.named_vectors


def test_per_record_input_and_no_named_vectors() -> None:
    rows = [{"t": [1.0, 2.0], "u": [3.0]}, {"u": [4.0], "t": [5.0, 6.0]}]
    data = encode_vector_batch(["a", "b"], np.zeros((2, DIM)), schema_version=4, named_vectors=rows)
    got = decode_vector_batch(data, DIM, 4, named_dims={"t": 2, "u": 1}).named_vectors
    assert got is not None and got["t"].tolist() == [[1, 2], [5, 6]] and got["u"].tolist() == [[3], [4]]
    plain = encode_vector_batch(["a"], np.zeros((1, DIM)), schema_version=4)
    assert plain == _fastavro_bytes([{**_record(0, None), "id": "a", "vector": [0.0] * DIM}])
    for named_dims in (None, {}):
        assert decode_vector_batch(plain, DIM, 4, named_dims=named_dims).named_vectors is None


def _varint(v: int) -> bytes:
    u = (v << 1) ^ (v >> 63)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode()
    return _varint(len(raw)) + raw


def test_blocks_split_and_with_byte_sizes_decode_the_same() -> None:
    """Avro lets a writer cut a map or array into blocks, with negative counts and byte sizes: same result."""
    floats = [1.5, -2.0, 3.25, 4.0]
    body = _varint(-2) + _varint(8) + struct.pack("<2f", *floats[:2]) + _varint(2) + struct.pack("<2f", *floats[2:])
    entry_t = _string("t") + body + _varint(0)
    entry_u = _string("u") + _varint(1) + struct.pack("<f", 7.0) + _varint(0)
    named = _varint(1) + entry_t + _varint(-1) + _varint(len(entry_u)) + entry_u + _varint(0)
    record = (_string("a") + _varint(DIM) + struct.pack(f"<{DIM}f", 1, 2, 3) + _varint(0) + _varint(0) + _varint(9)
              + _varint(0) + _varint(0) + named)
    datum = b"\x00" + _varint(1) + record + _varint(0)
    batch = decode_vector_batch(datum, DIM, 4, named_dims={"t": 4, "u": 1})
    assert batch.named_vectors is not None
    assert batch.named_vectors["t"].tolist() == [floats] and batch.named_vectors["u"].tolist() == [[7.0]]
    assert batch.to_dict() == fastavro.schemaless_reader(io.BytesIO(datum), record_schema("VectorBatch", 4), None)
    wrong_size = _varint(1) + entry_t + _varint(-1) + _varint(len(entry_u) + 1) + entry_u + _varint(0)
    with pytest.raises(MalformedPayloadError, match="named_vectors block"):
        decode_vector_batch(datum.replace(named, wrong_size), DIM, 4, named_dims={"t": 4, "u": 1})
    wrong_floats = named.replace(body, _varint(-2) + _varint(9) + body[2:], 1)
    with pytest.raises(MalformedPayloadError, match="named vector block byte size"):
        decode_vector_batch(datum.replace(named, wrong_floats), DIM, 4, named_dims={"t": 4, "u": 1})


GOOD = {"title": [1.0, 2.0], "body": [3.0, 4.0, 5.0]}
DECLARED = {"title": 2, "body": 3}


@pytest.mark.parametrize(("second", "declared", "error", "words"), [
    ({"title": [1.0, 2.0]}, DECLARED, InvalidVectorError, ("'body' is missing", "declared by the collection")),
    ({}, DECLARED, InvalidVectorError, ("'title' is missing",)),
    ({**GOOD, "extra": [1.0]}, DECLARED, InvalidVectorError, ("'extra' is not one of the named vectors",)),
    ({"title": [1.0, 2.0, 3.0], "body": [3.0, 4.0, 5.0]}, DECLARED, DimensionMismatchError,
     ("'title' has dimension 3, expected 2",)),
    ({"title": [1.0, math.nan], "body": [3.0, 4.0, 5.0]}, DECLARED, InvalidVectorError,
     ("'title' has a value that is not finite (nan) at position 1",)),
    ({"title": [1.0, 2.0], "body": [3.0, -math.inf, 5.0]}, DECLARED, InvalidVectorError,
     ("'body' has a value that is not finite (-inf) at position 1",)),
    ({"title": [1.0, 2.0], "bo.dy": [3.0, 4.0, 5.0]}, DECLARED, InvalidVectorError,
     ("'bo.dy' must be 1 to 64 characters",)),
    ({"title": [1.0, 2.0], "x" * 65: [3.0]}, DECLARED, InvalidVectorError, ("must be 1 to 64 characters",)),
    ({"title": [1.0, 2.0], "": [3.0]}, DECLARED, InvalidVectorError, ("'' must be 1 to 64 characters",)),
    ({"title": [1.0, 2.0]}, None, InvalidVectorError, ("'body' is missing", "given by record 0")),
    ({**GOOD, "more": [1.0]}, None, InvalidVectorError, ("'more' is not one of", "given by record 0")),
    ({"title": [1.0], "body": [3.0, 4.0, 5.0]}, None, DimensionMismatchError,
     ("'title' has dimension 1, expected 2 (given by record 0",)),
    (GOOD, {}, InvalidVectorError, ("'title' is not one of the named vectors declared",)),
])
def test_a_broken_rule_names_the_vector_and_the_record(second: dict[str, list[float]],
                                                       declared: dict[str, int] | None,
                                                       error: type[Exception], words: tuple[str, ...]) -> None:
    first = GOOD if declared != {} else {}
    data = _fastavro_bytes([_record(0, first), _record(1, second)])
    with pytest.raises(error) as info:
        decode_vector_batch(data, DIM, 4, named_dims=declared)
    assert str(info.value).startswith("record 1 (id 'r1'): "), str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_a_name_twice_in_a_record_is_refused() -> None:
    entry = _string("t") + _varint(1) + struct.pack("<f", 1.0) + _varint(0)
    named = _varint(2) + entry + entry + _varint(0)
    record = (_string("a") + _varint(DIM) + struct.pack(f"<{DIM}f", 1, 2, 3) + _varint(0) + _varint(0) + _varint(9)
              + _varint(0) + _varint(0) + named)
    datum = b"\x00" + _varint(1) + record + _varint(0)
    for declared in ({"t": 1}, None):
        with pytest.raises(InvalidVectorError, match=r"record 0 \(id 'a'\): named vector 't' is given twice"):
            decode_vector_batch(datum, DIM, 4, named_dims=declared)


def test_record_zero_fixes_at_most_the_limit_and_no_empty_vector() -> None:
    many = {f"v{j}": [1.0] for j in range(MAX_NAMED_VECTORS + 1)}
    with pytest.raises(InvalidVectorError, match=f"record 0 \\(id 'r0'\\): more than {MAX_NAMED_VECTORS} named"):
        decode_vector_batch(_fastavro_bytes([_record(0, many)]), DIM, 4)
    with pytest.raises(InvalidVectorError, match=r"record 0 .*'e' is empty"):
        decode_vector_batch(_fastavro_bytes([_record(0, {"e": []})]), DIM, 4)
    with pytest.raises(DimensionMismatchError, match=r"record 0 .*'e' has dimension 0, expected 2"):
        decode_vector_batch(_fastavro_bytes([_record(0, {"e": []})]), DIM, 4, named_dims={"e": 2})


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_batch_has_no_named_vectors_so_a_declaring_collection_refuses_it(version: int) -> None:
    data = encode_vector_batch(["a"], np.ones((1, DIM)), schema_version=version)
    assert decode_vector_batch(data, DIM, version).named_vectors is None
    assert decode_vector_batch(data, DIM, version, named_dims={}).named_vectors is None
    with pytest.raises(InvalidVectorError, match=r"record 0 \(id 'a'\): named vector 't' is missing"):
        decode_vector_batch(data, DIM, version, named_dims={"t": 4})


@pytest.mark.parametrize(("declared", "words"), [
    ({"t": 0}, "dimension must be a positive integer"),
    ({"t": True}, "dimension must be a positive integer"),
    ({"a.b": 2}, "must be 1 to 64 characters"),
    ({f"v{j}": 1 for j in range(MAX_NAMED_VECTORS + 1)}, f"at most {MAX_NAMED_VECTORS}"),
])
def test_bad_declarations_are_refused(declared: dict[str, Any], words: str) -> None:
    data = encode_vector_batch(["a"], np.ones((1, DIM)), schema_version=4)
    with pytest.raises(ValidationError, match=words):
        decode_vector_batch(data, DIM, 4, named_dims=declared)


def test_every_truncation_is_malformed_never_a_crash() -> None:
    data = encode_vector_batch(["a", "b"], np.ones((2, DIM)), schema_version=4,
                               named_vectors={"t": np.ones((2, 2)), "u": np.ones((2, 5))})
    for cut in range(len(data)):
        with pytest.raises(ValidationError):
            decode_vector_batch(data[:cut], DIM, 4, named_dims={"t": 2, "u": 5})


@pytest.mark.parametrize(("named", "version", "words"), [
    ({"t": np.ones((2, 2))}, 3, "named_vectors need schema version 4"),
    ({"t": np.ones((3, 2))}, 4, r"must be an \(2, dim\) array"),
    ({"t": np.ones((2, 0))}, 4, "'t' is empty"),
    ({"t": [[1.0, 2.0], [1.0, math.nan]]}, 4, r"record 1 \(id 'b'\): named vector 't' has a value that is not finite"),
    ({"t.x": np.ones((2, 2))}, 4, "must be 1 to 64 characters"),
    ([{"t": [1.0]}, {"u": [1.0]}], 4, r"record 1 \(id 'b'\): named vector 'u' is not one of"),
    ([{"t": [1.0]}, None], 4, r"record 1 \(id 'b'\): named vector 't' is missing"),
    ([{"t": [1.0]}, {"t": [1.0, 2.0]}], 4, r"record 1 \(id 'b'\): named vector 't' has dimension 2, expected 1"),
    ([{"t": ["x", "y"]}, {"t": ["z", "w"]}], 4, r"record 0 \(id 'a'\): named vector 't' must be a list of numbers"),
    ([{"t": [1, 2]}, {"t": 3.0}], 4, r"record 1 \(id 'b'\): named vector 't' must be a list of numbers, not 3.0"),
    ([{"t": [1, 2]}, {"t": None}], 4, r"record 1 \(id 'b'\): named vector 't' must be a list of numbers, not None"),
    ([None, {"t": [1.0]}], 4, r"record 0 \(id 'a'\) has no named vectors, record 1 has 't'"),
])
def test_the_encoder_refuses_what_the_decoder_would(named: Any, version: int, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        encode_vector_batch(["a", "b"], np.ones((2, DIM)), schema_version=version, named_vectors=named)
