"""Named dense vectors (schema v4) in storage: a collection without declared names refuses them, and InsertOp
carries them through both WAL strategies (the collection side: test_named_vectors_collection.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.framing import encode_frame
from proximadb.errors import InvalidVectorError, MalformedPayloadError, ValidationError
from proximadb.limits import MAX_NAMED_VECTORS
from proximadb.storage import wal_codec
from proximadb.storage.engine import Engine
from proximadb.storage.operations import InsertOp, Operation
from proximadb.storage.wal import WriteAheadLog

DIM = 4


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_a_collection_without_named_vectors_refuses_them_and_changes_nothing(tmp_path: Path, strategy: str) -> None:
    with Engine.open(tmp_path, wal_strategy=strategy) as engine:
        engine.create_collection("c", dimension=DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert([{"id": "a", "vector": [1.0] * DIM}])
        datum = encode_vector_batch(["b"], np.ones((1, DIM)), schema_version=4,
                                    named_vectors={"title": np.ones((1, 2))})
        with pytest.raises(InvalidVectorError, match=r"record 0 \(id 'b'\): named vector 'title' is not one of"):
            col.insert_payload(encode_frame("vector_insert", datum, 4))
        assert col.count() == 1 and col.get("b") is None
    with Engine.open(tmp_path, wal_strategy=strategy) as engine:  # nothing of it was logged
        assert engine.collection("c").count() == 1


def _named(n: int, dims: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((n, dim)).astype(np.float32) for name, dim in dims.items()}


def _insert(n: int, dims: dict[str, int], seed: int) -> InsertOp:
    rng = np.random.default_rng(seed)
    return InsertOp(upsert=bool(seed % 2), ids=[f"nv{seed}-{i}" for i in range(n)],
                    vectors=rng.standard_normal((n, DIM)).astype(np.float32), metadata=[{"i": i} for i in range(n)],
                    timestamps=np.arange(n, dtype=np.int64) + 1_700_000_000_000_000,
                    named_vectors=_named(n, dims, seed) if dims else None)


def assert_ops_equal(expected: list[tuple[int, Operation]], got: list[tuple[int, Operation]]) -> None:
    assert [s for s, _ in expected] == [s for s, _ in got]
    for (_, a), (_, b) in zip(expected, got, strict=True):
        assert isinstance(a, InsertOp) and isinstance(b, InsertOp)
        assert (a.upsert, a.ids, list(a.metadata)) == (b.upsert, b.ids, list(b.metadata))
        assert np.array_equal(a.timestamps, b.timestamps)
        assert not a.ids or np.array_equal(a.vectors, b.vectors)  # an empty Avro batch has no dimension
        assert list(a.named_vectors or {}) == list(b.named_vectors or {})
        for name, col in (a.named_vectors or {}).items():
            back = b.named_vectors[name]  # type: ignore[index]
            assert back.dtype == np.float32 and back.flags.c_contiguous and back.shape == col.shape
            assert np.array_equal(col, back)


COMBOS = [(s, c) for s in ("avro", "binary") for c in ("none", "lz4")]


OPS_DIMS = [{"title": 3, "body-2": 7}, {f"v{j}": j + 1 for j in range(MAX_NAMED_VECTORS)}, {}, {"t": 1}]


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_named_vectors_survive_a_real_wal_file_and_replay(tmp_path: Path, strategy: str, compression: str) -> None:
    # two names (a body part each), sixteen (joined into one part), none, and an empty batch with one name
    ops: list[Operation] = [_insert(5, dims, seed) for seed, dims in enumerate(OPS_DIMS)]
    ops.append(_insert(0, {"t": 2}, 9))
    with WriteAheadLog.open(tmp_path, strategy=strategy, compression=compression, fsync="never") as wal:
        written = [(wal.append(op), op) for op in ops]
    with WriteAheadLog.open(tmp_path, strategy=strategy) as wal:
        replayed = list(wal.replay())
    if strategy == "avro":  # an empty batch's datum holds no record, so no name: the column is not there
        written[-1] = (written[-1][0], _insert(0, {}, 9))
    assert_ops_equal(written, replayed)
    assert replayed[1][1].named_vectors is not None and len(replayed[1][1].named_vectors) == MAX_NAMED_VECTORS


def test_a_client_payload_is_logged_as_is_and_replays_its_named_vectors(tmp_path: Path) -> None:
    op = _insert(3, {"title": 2}, 4)
    datum = encode_vector_batch(op.ids, op.vectors, op.metadata, op.timestamps, op.upsert, schema_version=4,
                                named_vectors=op.named_vectors)
    payload = encode_frame("vector_insert", datum, 4)
    with WriteAheadLog.open(tmp_path, strategy="avro", fsync="never") as wal:
        seq = wal.append(op, payload)
    with WriteAheadLog.open(tmp_path, strategy="avro") as wal:
        assert_ops_equal([(seq, op)], list(wal.replay()))


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_older_frames_have_no_named_vectors_and_refuse_to_carry_them(strategy: str) -> None:
    plain = _insert(2, {}, 1)
    for version in (1, 2, 3):
        enc = wal_codec.encode(strategy, plain, schema_version=version)
        body = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts)
        back = wal_codec.decode(wal_codec.strategy_code(strategy), enc.op_code, version, enc.flags, body)
        assert isinstance(back, InsertOp) and back.named_vectors is None
        with pytest.raises((ValueError, ValidationError), match="schema version 4"):
            wal_codec.encode(strategy, _insert(2, {"t": 2}, 1), schema_version=version)


def test_a_damaged_binary_named_section_is_malformed() -> None:
    op = _insert(2, {"title": 3}, 1)
    enc = wal_codec.encode("binary", op)
    body = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts)
    head = b"".join(bytes(memoryview(p).cast("B")) for p in enc.parts[:-3])  # up to the named section
    assert body[len(head):len(head) + 4] == (1).to_bytes(4, "little")
    for cut in (len(head) + 2, len(head) + 10, len(head) + 20, len(head) + 30):
        with pytest.raises(MalformedPayloadError):
            wal_codec.decode(wal_codec.STRATEGY_BINARY, enc.op_code, enc.schema_version, enc.flags, body[:cut])
    zero_dim = body[:len(head) + 4 + 4 + 5] + (0).to_bytes(4, "little") + body[len(head) + 17:]
    with pytest.raises(MalformedPayloadError, match="dimension 0"):
        wal_codec.decode(wal_codec.STRATEGY_BINARY, enc.op_code, enc.schema_version, enc.flags, zero_dim)
    not_utf8 = body[:len(head) + 8] + b"\xff" * 5 + body[len(head) + 13:]  # the name "title" (5 bytes)
    with pytest.raises(MalformedPayloadError, match="a named vector's name is not UTF-8"):
        wal_codec.decode(wal_codec.STRATEGY_BINARY, enc.op_code, enc.schema_version, enc.flags, not_utf8)
    with pytest.raises(ValueError, match=r"named_vectors\['title'\] has shape \(3, 3\)"):
        wal_codec.encode("binary", InsertOp(op.upsert, op.ids, op.vectors, op.metadata, op.timestamps,
                                            named_vectors={"title": np.ones((3, 3), np.float32)}))
