"""The search round trip's own codec (codec/avro_search.pyx) agrees byte for byte with fastavro and the schemas.

Requests: what the compiled writer produces, fastavro reads as the same datum; what fastavro writes
(any block layout), the fast reader reads the same or hands back None, and then the general decoder
(`decode_payload`) decides. Results: the compiled writer and reader agree with fastavro both ways,
in both schema versions, and malformed bytes are a MalformedPayloadError.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec import avro_search
from proximadb.codec.schemas import SUPPORTED_SCHEMA_VERSIONS, op_schema
from proximadb.errors import MalformedPayloadError


def _fastavro_write(op: str, datum: dict[str, Any], version: int = 2) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, op_schema(op, version), datum)
    return out.getvalue()


def _fastavro_read(op: str, data: bytes, version: int = 2) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), op_schema(op, version), op_schema(op, version))


REQUEST = {"k": 7, "filter": '{"lang": "en"}', "include_vectors": True, "include_metadata": False, "ef": 64,
           "nprobe": None, "exact": True}


def test_a_request_written_here_reads_the_same_in_fastavro_and_back() -> None:
    queries = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    data = avro_search.encode_search_request(queries, **REQUEST)
    assert data == _fastavro_write("vector_search", {"queries": queries.tolist(), **REQUEST})
    decoded = avro_search.decode_search_request(data)
    assert decoded is not None
    np.testing.assert_array_equal(decoded.pop("queries"), queries)
    assert decoded == REQUEST


def test_a_request_in_sized_blocks_or_of_ragged_rows_goes_the_general_way() -> None:
    queries = [[1.0, 2.0], [3.0, 4.0]]
    sized = io.BytesIO()
    fastavro.schemaless_writer(sized, {"type": "array", "items": {"type": "array", "items": "float"}}, queries)
    plain = avro_search.encode_search_request(np.array(queries, dtype=np.float32), **REQUEST)
    # the same datum with the outer array as one sized block (count -2, byte size): valid Avro
    body = plain[1:plain.index(b"\x00\x0e")]  # rows, up to the end of the outer array (k=7 is 0x0e)
    resized = b"\x03" + bytes([len(body) * 2]) + body + plain[plain.index(b"\x00\x0e"):]
    assert _fastavro_read("vector_search", resized)["queries"] == queries
    assert avro_search.decode_search_request(resized) is None
    ragged = _fastavro_write("vector_search", {"queries": [[1.0, 2.0], [3.0]], **REQUEST})
    assert avro_search.decode_search_request(ragged) is None
    empty = _fastavro_write("vector_search", {"queries": [], **REQUEST})
    assert avro_search.decode_search_request(empty) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_reads_as_a_request_fastavro_refuses(data: bytes) -> None:
    decoded = avro_search.decode_search_request(data)
    if decoded is None:
        return
    expected = _fastavro_read("vector_search", data)  # accepted here: fastavro reads the same
    np.testing.assert_array_equal(decoded.pop("queries"), np.array(expected.pop("queries"), dtype=np.float32))
    assert decoded == expected


def _hits(version: int) -> list[list[dict[str, Any]]]:
    return [
        [
            {"id": "a", "score": 0.5, "distance": 1.0, "metadata": {"n": 1, "f": 2.5, "s": "x", "b": True,
                                                                     "z": None, "l": ["p", "q"]},
             "vector": np.array([1.5, -2.0], dtype=np.float32), **({"expires_at": 123} if version >= 2 else {}),
             **({"named_vectors": {"title": np.array([0.5, 0.25, -1.0], dtype=np.float32),
                                   "b\u00e9": np.array([], dtype=np.float32)}} if version >= 4 else {})},
            {"id": "b\u00e9", "score": 0.25, "distance": 3.0, "metadata": {}},
            {"id": "c", "score": -1.0, "distance": 2.0},
        ],
        [],
    ]


@pytest.mark.parametrize("version", SUPPORTED_SCHEMA_VERSIONS)
def test_results_agree_with_fastavro_both_ways(version: int) -> None:
    hits = _hits(version)
    data = avro_search.encode_search_result(hits, version)
    as_fastavro = [[{"id": h["id"], "score": h["score"], "distance": h["distance"], "metadata": h.get("metadata"),
                     "vector": h["vector"].tolist() if "vector" in h else None,
                     **({"expires_at": h.get("expires_at")} if version >= 2 else {}),
                     **({"named_vectors": {k: v.tolist() for k, v in h["named_vectors"].items()}
                         if "named_vectors" in h else None} if version >= 4 else {})} for h in q] for q in hits]
    assert data == _fastavro_write("search_result", {"results": as_fastavro}, version)
    decoded = avro_search.decode_search_result(data, version)
    assert [[h["id"] for h in q] for q in decoded] == [["a", "b\u00e9", "c"], []]
    first = decoded[0][0]
    np.testing.assert_array_equal(first.pop("vector"), hits[0][0]["vector"])
    if version >= 4:
        named = first.pop("named_vectors")
        assert set(named) == {"title", "b\u00e9"}
        for name, vec in hits[0][0]["named_vectors"].items():
            assert named[name].dtype == np.float32
            np.testing.assert_array_equal(named[name], vec)
    assert first == {k: v for k, v in hits[0][0].items() if k not in ("vector", "named_vectors")}
    assert decoded[0][1] == hits[0][1] and decoded[0][2] == hits[0][2]


@pytest.mark.parametrize("version", [2, 4])
def test_malformed_results_are_a_typed_error(version: int) -> None:
    data = avro_search.encode_search_result(_hits(version), version)
    for cut in range(len(data) - 1):
        with pytest.raises(MalformedPayloadError):
            avro_search.decode_search_result(data[:cut], version)
    with pytest.raises(MalformedPayloadError):
        avro_search.decode_search_result(data + b"\x00", version)


def test_v4_named_vectors_in_hits_read_the_same_when_fastavro_writes_them() -> None:
    hit = {"id": "a", "score": 1.0, "distance": 0.0, "metadata": None, "vector": None, "expires_at": None,
           "named_vectors": {"t": [1.0, 2.0], "u": [3.0]}}
    data = _fastavro_write("search_result", {"results": [[hit]]}, 4)
    decoded = avro_search.decode_search_result(data, 4)
    assert {k: v.tolist() for k, v in decoded[0][0]["named_vectors"].items()} == hit["named_vectors"]
    # a v3 reader of the same hits (the writer's v3 schema) knows no named_vectors: none come back
    v3 = avro_search.encode_search_result([[{**hit, "named_vectors": {"t": np.ones(2, np.float32)}}]], 3)
    assert "named_vectors" not in avro_search.decode_search_result(v3, 3)[0][0]


# ---------------------------------------------------------------- v4: using (named vectors)
@pytest.mark.parametrize("using", [None, "title", "b\u00e9_2-x"])
def test_a_v4_request_carries_using_byte_for_byte_with_fastavro(using: str | None) -> None:
    queries = np.arange(6, dtype=np.float32).reshape(2, 3) / 3
    data = avro_search.encode_search_request(queries, **REQUEST, using=using, schema_version=4)
    assert data == _fastavro_write("vector_search", {"queries": queries.tolist(), **REQUEST, "using": using}, 4)
    decoded = avro_search.decode_search_request(data, 4)
    assert decoded is not None
    np.testing.assert_array_equal(decoded.pop("queries"), queries)
    assert decoded == {**REQUEST, "using": using}
    # the general decoder reads the same
    assert _fastavro_read("vector_search", data, 4)["using"] == using


def test_older_versions_have_no_using_and_resolve_to_null() -> None:
    queries = np.ones((1, 2), dtype=np.float32)
    for version in (1, 2, 3):
        data = avro_search.encode_search_request(queries, **REQUEST, schema_version=version)
        assert "using" not in avro_search.decode_search_request(data, version)  # type: ignore[operator]
        resolved = fastavro.schemaless_reader(io.BytesIO(data), op_schema("vector_search", version),
                                              op_schema("vector_search", 4))
        assert resolved["using"] is None
        with pytest.raises(ValueError, match="using"):
            avro_search.encode_search_request(queries, **REQUEST, using="title", schema_version=version)
    # a v3 datum read as v4 lacks the using union: the fast path leaves it to the general one
    v3 = avro_search.encode_search_request(queries, **REQUEST, schema_version=3)
    assert avro_search.decode_search_request(v3, 4) is None
    bad_branch = avro_search.encode_search_request(queries, **REQUEST, schema_version=4)[:-1] + b"\x04"
    assert avro_search.decode_search_request(bad_branch, 4) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_reads_as_a_v4_request_fastavro_refuses(data: bytes) -> None:
    decoded = avro_search.decode_search_request(data, 4)
    if decoded is None:
        return
    expected = _fastavro_read("vector_search", data, 4)
    np.testing.assert_array_equal(decoded.pop("queries"), np.array(expected.pop("queries"), dtype=np.float32))
    assert decoded == expected


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=70)), st.integers(1, 4), st.integers(1, 5))
def test_v4_requests_agree_with_fastavro(using: str | None, n: int, dim: int) -> None:
    queries = (np.arange(n * dim, dtype=np.float32).reshape(n, dim) - 3) / 5
    data = avro_search.encode_search_request(queries, **REQUEST, using=using, schema_version=4)
    assert data == _fastavro_write("vector_search", {"queries": queries.tolist(), **REQUEST, "using": using}, 4)
    decoded = avro_search.decode_search_request(data, 4)
    assert decoded is not None and decoded["using"] == using
