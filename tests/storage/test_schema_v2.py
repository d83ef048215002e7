"""Schema v2 (``expires_at``): codec, resolution of v1 data, storage plumbing, version negotiation."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from _daemon import Daemon
from fastavro import schemaless_reader, schemaless_writer

import proximadb
from proximadb import errors
from proximadb.codec import schemas
from proximadb.codec.avro_batch import NO_EXPIRY, decode_vector_batch, encode_vector_batch
from proximadb.codec.framing import encode_frame
from proximadb.codec.payload import decode_payload, encode_insert
from proximadb.storage import wal_codec
from proximadb.storage.engine import Engine
from proximadb.storage.operations import InsertOp

DIM = 4
FAR = 4_000_000_000_000_000  # an expiry in 2096: rows stay visible (expired rows are hidden)


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_versions_and_schemas() -> None:
    assert schemas.SUPPORTED_SCHEMA_VERSIONS == (1, 2, 3, 4)
    assert schemas.CURRENT_SCHEMA_VERSION == 4
    v1 = [f["name"] for f in schemas.record_schema("VectorRecord", 1)["fields"]]
    v2 = [f["name"] for f in schemas.record_schema("VectorRecord", 2)["fields"]]
    assert v1 == ["id", "vector", "metadata", "timestamp"] and v2 == [*v1, "expires_at"]
    assert "expires_at" in [f["name"] for f in schemas.record_schema("SegmentRow", 2)["fields"]]
    with pytest.raises(errors.UnsupportedSchemaVersionError):
        schemas.op_schema("vector_insert", 5)


def test_fastavro_resolution_reads_v1_as_v2() -> None:
    datum = {"upsert": False, "records": [{"id": "a", "vector": [1.0, 2.0], "metadata": {"k": 1}, "timestamp": 7}]}
    out = io.BytesIO()
    schemaless_writer(out, schemas.record_schema("VectorBatch", 1), datum)
    out.seek(0)
    got = schemaless_reader(out, schemas.record_schema("VectorBatch", 1),
                            schemas.resolving_reader_schema("VectorBatch", 1))
    assert got["records"][0]["expires_at"] is None and got["records"][0]["timestamp"] == 7


def test_cython_codec_both_versions_match_fastavro() -> None:
    ids, vecs = ["a", "b", "c"], _vecs(3)
    expires = [None, 1_800_000_000_000_000, None]
    v2 = encode_vector_batch(ids, vecs, [{"x": 1}, None, {}], [1, 2, 3], True, expires, schema_version=2)
    ref = schemaless_reader(io.BytesIO(v2), schemas.record_schema("VectorBatch", 2), None)
    batch = decode_vector_batch(v2, DIM, schema_version=2)
    assert batch.to_dict() == ref
    assert batch.expires_at.tolist() == [NO_EXPIRY, 1_800_000_000_000_000, NO_EXPIRY]
    assert batch.to_insert_op().expires_at is batch.expires_at
    # no expiry at all: no array
    assert decode_vector_batch(encode_vector_batch(ids, vecs, schema_version=2), DIM, 2).expires_at is None
    # v1 layout is unchanged and still the default of the unframed codec
    v1 = encode_vector_batch(ids, vecs)
    assert v1 == encode_vector_batch(ids, vecs, schema_version=1)
    assert len(v2) > len(v1)
    b1 = decode_vector_batch(v1, DIM)
    assert b1.expires_at is None and "expires_at" not in b1.to_dict()["records"][0]
    with pytest.raises(errors.MalformedPayloadError):
        decode_vector_batch(v1, DIM, schema_version=2)  # a v1 datum is not a v2 datum
    with pytest.raises(errors.ValidationError, match="schema version 2"):
        encode_vector_batch(ids, vecs, expires_at=expires, schema_version=1)
    with pytest.raises(errors.UnsupportedSchemaVersionError):
        decode_vector_batch(v1, DIM, schema_version=5)


def test_bad_expiry_union_index_is_malformed() -> None:
    good = encode_vector_batch(["a"], _vecs(1), timestamps=[0], schema_version=2)
    assert good[-2:] == b"\x00\x00"  # expires_at null, end of array
    with pytest.raises(errors.MalformedPayloadError, match="expires_at"):
        decode_vector_batch(good[:-2] + b"\x04\x00", DIM, 2)


def test_payload_frames_carry_the_version() -> None:
    recs = [{"id": "a", "vector": [1.0] * DIM, "expires_at": 99}, {"id": "b", "vector": [2.0] * DIM}]
    frame = encode_insert(recs)
    version, op, batch = decode_payload(frame)
    assert (version, op) == (4, "vector_insert") and batch.expires_at.tolist() == [99, NO_EXPIRY]
    v1 = encode_insert([{"id": "a", "vector": [1.0] * DIM}], schema_version=1)
    assert struct.unpack_from("<I", v1)[0] == 1
    assert decode_payload(v1)[2].expires_at is None
    with pytest.raises(errors.ValidationError):
        encode_insert(recs, schema_version=1)
    with pytest.raises(errors.UnsupportedSchemaVersionError):
        decode_payload(struct.pack("<I", 5) + v1[4:])


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_wal_codec_round_trips_expiry(strategy: str) -> None:
    op = InsertOp(False, ["a", "b"], _vecs(2), [{}, {"k": "v"}], np.array([5, 6], dtype=np.int64),
                  np.array([NO_EXPIRY, 42], dtype=np.int64))
    enc = wal_codec.encode(strategy, op)
    assert enc.schema_version == schemas.CURRENT_SCHEMA_VERSION
    body = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts)
    back = wal_codec.decode(wal_codec.strategy_code(strategy), op.op_code, enc.schema_version, enc.flags, body)
    assert back.expires_at.tolist() == [NO_EXPIRY, 42] and back.ids == ["a", "b"]
    plain = InsertOp(False, ["a"], _vecs(1), [{}], np.array([5], dtype=np.int64))
    enc = wal_codec.encode(strategy, plain)
    body = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts)
    back = wal_codec.decode(wal_codec.strategy_code(strategy), 1, enc.schema_version, enc.flags, body)
    assert back.expires_at is None


def test_v1_binary_insert_body_still_decodes() -> None:
    plain = InsertOp(True, ["a"], _vecs(1), [{"k": 1}], np.array([5], dtype=np.int64))
    enc = wal_codec.encode("binary", plain, schema_version=1)
    body = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts)
    back = wal_codec.decode(wal_codec.STRATEGY_BINARY, 1, 1, enc.flags, body)
    assert back.ids == ["a"] and back.metadata == [{"k": 1}] and back.expires_at is None


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_engine_stores_and_returns_expires_at(tmp_path: Path, strategy: str) -> None:
    opts = {"wal_strategy": strategy, "auto_compact": False}
    with Engine.open(tmp_path, **opts) as engine:
        engine.create_collection("c", dimension=DIM, distance_metric="euclidean")
        col = engine.collection("c")
        vecs = _vecs(4)
        col.insert([{"id": "a", "vector": vecs[0], "expires_at": FAR + 1000},
                    {"id": "b", "vector": vecs[1]}])
        assert col.get("a")["expires_at"] == FAR + 1000 and "expires_at" not in col.get("b")
        col.flush()
        col.insert([{"id": "c", "vector": vecs[2], "expires_at": FAR + 2000}])
        col.update_metadata("a", {"m": 1})  # moves a segment row to the memtable: keeps its expiry
        assert col.get("a")["expires_at"] == FAR + 1000
        hits = col.search(vecs[2], k=1)
        assert hits[0]["id"] == "c" and hits[0]["expires_at"] == FAR + 2000
        assert engine.get_collection("c")["schema_version"] == schemas.CURRENT_SCHEMA_VERSION
    with Engine.open(tmp_path, **opts) as engine:  # WAL replay + v2 segment
        col = engine.collection("c")
        assert [col.get(i).get("expires_at") for i in "abc"] == [FAR + 1000, None, FAR + 2000]
        assert all(s.schema_version == schemas.CURRENT_SCHEMA_VERSION for s in col.segments)
        col.flush()
        col.compact()
        assert len(col.segments) == 1
        assert [col.get(i).get("expires_at") for i in "abc"] == [FAR + 1000, None, FAR + 2000]


def test_v1_payload_into_v2_engine(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        engine.create_collection("c", dimension=DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert_payload(encode_insert(ids=["a"], vectors=_vecs(1), schema_version=1))
        col.insert_payload(encode_frame("vector_insert", encode_vector_batch(["b"], _vecs(1, 1)), 1))
    with Engine.open(tmp_path) as engine:  # the avro WAL stored the v1 payloads as sent
        assert engine.collection("c").count() == 2


# ------------------------------------------------------------------ negotiation against a real daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("schema_v2") / "data") as d:
        yield d


def _connect(daemon: Daemon, protocol: str) -> proximadb.ProximaDBClient:
    return proximadb.connect_grpc(daemon.grpc_target) if protocol == "grpc" else proximadb.connect_rest(daemon.rest_url)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_negotiation_and_old_clients(daemon: Daemon, protocol: str) -> None:
    with _connect(daemon, protocol) as client:
        assert client.health()["schema_versions"] == [1, 2, 3, 4]
        assert client.schema_version == 4
        name = f"neg-{protocol}"
        client.create_collection(name, DIM, distance_metric="euclidean")
        client.insert_vectors(name, [{"id": "new", "vector": [1.0] * DIM, "expires_at": FAR}])  # far future: visible
        assert client.get_vector(name, "new")["id"] == "new"
    with mock.patch("proximadb.sdk.calls.SUPPORTED_SCHEMA_VERSIONS", (1,)):
        with _connect(daemon, protocol) as old:
            assert old.schema_version == 1
            old.insert_vectors(name, ids=["old1", "old2"], vectors=_vecs(2))
            old.insert_vectors(name, [{"id": "old3", "vector": [3.0] * DIM}])
            assert old.count(name) == 4
            assert old.get_vector(name, "old2")["id"] == "old2"
            with pytest.raises(errors.ValidationError):
                old.insert_vectors(name, [{"id": "x", "vector": [1.0] * DIM, "expires_at": 1}])
    with mock.patch("proximadb.sdk.calls.SUPPORTED_SCHEMA_VERSIONS", (5,)):
        with pytest.raises(errors.UnsupportedSchemaVersionError):
            _connect(daemon, protocol)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unsupported_version_payload_is_refused(daemon: Daemon, protocol: str) -> None:
    with _connect(daemon, protocol) as client:
        name = f"v3-{protocol}"
        client.create_collection(name, DIM)
        frame = encode_insert(ids=["a"], vectors=_vecs(1), schema_version=1)
        bad = struct.pack("<I", 5) + frame[4:]
        with pytest.raises(errors.UnsupportedSchemaVersionError):
            client._transport.insert_payload(name, bad)
