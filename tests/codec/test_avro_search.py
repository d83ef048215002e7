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
             "vector": np.array([1.5, -2.0], dtype=np.float32), **({"expires_at": 123} if version >= 2 else {})},
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
                     **({"expires_at": h.get("expires_at")} if version >= 2 else {})} for h in q] for q in hits]
    assert data == _fastavro_write("search_result", {"results": as_fastavro}, version)
    decoded = avro_search.decode_search_result(data, version)
    assert [[h["id"] for h in q] for q in decoded] == [["a", "b\u00e9", "c"], []]
    first = decoded[0][0]
    np.testing.assert_array_equal(first.pop("vector"), hits[0][0]["vector"])
    assert first == {k: v for k, v in hits[0][0].items() if k != "vector"}
    assert decoded[0][1] == hits[0][1] and decoded[0][2] == hits[0][2]


def test_malformed_results_are_a_typed_error() -> None:
    data = avro_search.encode_search_result(_hits(2), 2)
    for cut in range(len(data) - 1):
        with pytest.raises(MalformedPayloadError):
            avro_search.decode_search_result(data[:cut], 2)
    with pytest.raises(MalformedPayloadError):
        avro_search.decode_search_result(data + b"\x00", 2)
