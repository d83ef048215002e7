"""Write-ahead log: frame layer, codecs, replay, torn tails, corruption, group commit, fail-stop."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from proximadb.errors import CorruptionError, EngineClosedError, StorageError, ValidationError
from proximadb.storage import wal as wal_mod
from proximadb.storage import wal_codec, wal_io
from proximadb.storage.fsync_policy import FsyncPolicy
from proximadb.storage.operations import (
    DeleteOp,
    InsertOp,
    MetadataPatch,
    Operation,
    UpdateOp,
)
from proximadb.storage.wal import WriteAheadLog

COMBOS = [(s, c) for s in ("avro", "binary") for c in ("none", "lz4")]


# ---------------------------------------------------------------- helpers


def make_insert(n: int = 3, dim: int = 4, seed: int = 0, prefix: str = "v") -> InsertOp:
    rng = np.random.default_rng(seed)
    return InsertOp(
        upsert=bool(seed % 2),
        ids=[f"{prefix}{seed}-{i}" for i in range(n)],
        vectors=rng.standard_normal((n, dim)).astype(np.float32),
        metadata=[{"i": i, "tag": f"t{i % 3}", "ok": i % 2 == 0, "f": i / 3, "l": ["a", "b"], "z": None}
                  for i in range(n)],
        timestamps=np.arange(n, dtype=np.int64) + 1_700_000_000_000_000 + seed,
    )


def sample_ops() -> list[Operation]:
    return [
        make_insert(3, 4, 1),
        DeleteOp(["v1-0", "ünïcødé", ""]),
        UpdateOp([MetadataPatch("v1-1", {"tag": None, "n": 5}), MetadataPatch("v1-2", {"x": ["y"]}, True)],
                 timestamp=42),
        make_insert(1, 4, 2),
        with_named(make_insert(50, 4, 3)),
    ]


def with_named(op: InsertOp) -> InsertOp:
    """The op with two named dense vectors (schema v4)."""
    rng = np.random.default_rng(len(op.ids))
    op.named_vectors = {"title": rng.standard_normal((len(op.ids), 3)).astype(np.float32),
                        "body": rng.standard_normal((len(op.ids), 5)).astype(np.float32)}
    return op


def assert_op_equal(a: Operation, b: Operation) -> None:
    assert type(a) is type(b)
    if isinstance(a, InsertOp):
        assert isinstance(b, InsertOp)
        assert a.upsert == b.upsert
        assert a.ids == b.ids
        assert b.vectors.dtype == np.float32 and b.vectors.flags.c_contiguous
        assert a.vectors.shape == b.vectors.shape
        assert np.array_equal(a.vectors, b.vectors)
        assert list(a.metadata) == list(b.metadata)  # a list, or a MetadataColumn (maps kept encoded)
        assert b.timestamps.dtype == np.int64
        assert np.array_equal(a.timestamps, b.timestamps)
        assert list(a.named_vectors or {}) == list(b.named_vectors or {})
        for name, col in (a.named_vectors or {}).items():
            got = b.named_vectors[name]  # type: ignore[index]
            assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(col, got)
    else:
        assert a == b


def assert_ops_equal(expected: list[tuple[int, Operation]], got: list[tuple[int, Operation]]) -> None:
    assert [s for s, _ in expected] == [s for s, _ in got]
    for (_, a), (_, b) in zip(expected, got, strict=True):
        assert_op_equal(a, b)


def write_all(directory: Path, ops: list[Operation], **kw: object) -> list[tuple[int, Operation]]:
    with WriteAheadLog.open(directory, **kw) as wal:  # type: ignore[arg-type]
        assert list(wal.replay()) == []
        return [(wal.append(op), op) for op in ops]


def replay_all(directory: Path, after_seq: int = 0, **kw: object) -> list[tuple[int, Operation]]:
    with WriteAheadLog.open(directory, **kw) as wal:  # type: ignore[arg-type]
        return list(wal.replay(after_seq))


# ---------------------------------------------------------------- wal_io


def test_file_header_round_trip_and_errors() -> None:
    head = wal_io.encode_file_header(1, 0, 77)
    assert len(head) == wal_io.FILE_HEADER_SIZE and head.startswith(wal_io.MAGIC)
    assert wal_io.decode_file_header(head) == (1, 1, 0, 77)
    with pytest.raises(ValueError, match="truncated"):
        wal_io.decode_file_header(head[:10])
    with pytest.raises(ValueError, match="magic"):
        wal_io.decode_file_header(b"X" + head[1:])
    bad = bytearray(head)
    bad[15] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        wal_io.decode_file_header(bytes(bad))


def test_write_and_scan_frames(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert wal_io.write_frame(fd, 7, 1, 0, 1, 5, b"hello") == 29
        arr = np.arange(6, dtype=np.float32)
        assert wal_io.write_frame(fd, 8, 2, 0, 3, 26, [b"ab", arr]) == 24 + 26
        assert wal_io.write_frame(fd, 9, 3, 0, 1, 0, b"") == 24
    finally:
        os.close(fd)
    data = path.read_bytes()
    frames, stop, status = wal_io.scan_frames(data, 0)
    assert status == wal_io.SCAN_CLEAN and stop == len(data)
    assert frames[0] == (0, 7, 1, 0, 1, 5, 24, 5)
    assert frames[1][:6] == (29, 8, 2, 0, 3, 26)
    assert data[frames[1][6]:frames[1][6] + 26] == b"ab" + arr.tobytes()
    assert frames[2][1] == 9 and frames[2][7] == 0
    # cut short
    frames, stop, status = wal_io.scan_frames(data[:-1], 0)
    assert (len(frames), stop, status) == (2, 79, wal_io.SCAN_TRUNCATED)
    frames, stop, status = wal_io.scan_frames(data[:40], 29)
    assert (frames, stop, status) == ([], 29, wal_io.SCAN_TRUNCATED)
    # bad checksum
    bad = bytearray(data)
    bad[30 + 24] ^= 0x10
    frames, stop, status = wal_io.scan_frames(bytes(bad), 0)
    assert (len(frames), stop, status) == (1, 29, wal_io.SCAN_BAD_CRC)
    assert wal_io.find_next_valid_frame(bytes(bad), 30, 0) == 79
    assert wal_io.find_next_valid_frame(bytes(bad), 30, 10) == -1
    assert wal_io.scan_frames(b"", 0) == ([], 0, wal_io.SCAN_CLEAN)


def test_write_frame_errors(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as info:
            wal_io.write_frame(fd, 1, 1, 0, 1, 3, b"abc")
        assert info.value.errno == errno.EBADF
    finally:
        os.close(fd)
    with pytest.raises(ValueError):
        wal_io.write_frame(1, 1, 256, 0, 1, 0, b"")
    with pytest.raises(ValueError):
        wal_io.write_frame(1, 1, 1, 0, 1, -1, b"")
    with pytest.raises(TypeError):
        wal_io.write_frame(1, 1, 1, 0, 1, 0, "not bytes")


def test_str_list_round_trip_and_overrun() -> None:
    items = ["a", "", "ünï", "x" * 1000]
    blob = wal_io.pack_str_list(items)
    assert wal_io.unpack_str_list(blob, 0, 4) == (items, len(blob))
    with pytest.raises(ValueError):
        wal_io.unpack_str_list(blob[:-1], 0, 4)
    with pytest.raises(ValueError):
        wal_io.unpack_str_list(blob, 0, 10**9)
    with pytest.raises(UnicodeDecodeError):
        wal_io.unpack_str_list(b"\x01\x00\x00\x00\xff", 0, 1)
    with pytest.raises(TypeError):
        wal_io.pack_str_list(["a", 1])  # type: ignore[list-item]


def test_metadata_maps_are_avro_maps() -> None:
    import io

    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    maps = [{"a": None, "b": True, "c": False, "d": -5, "e": 2**63 - 1, "f": 1.5, "g": "hé", "h": ["x", ""],
             "i": []}, {}, {"k": -(2**63)}]
    blob = wal_io.encode_metadata_maps(maps)
    assert wal_io.decode_metadata_maps(blob, 0, 3) == (maps, len(blob))
    schema = parse_schema({"type": "map", "values": ["null", "boolean", "long", "double", "string",
                                                     {"type": "array", "items": "string"}]})
    stream = io.BytesIO(blob)
    assert [schemaless_reader(stream, schema, None) for _ in maps] == maps
    # and what fastavro writes (it may use other block layouts) reads back too
    out = io.BytesIO()
    for m in maps:
        schemaless_writer(out, schema, m)
    assert wal_io.decode_metadata_maps(out.getvalue(), 0, 3)[0] == maps
    with pytest.raises(ValueError):
        wal_io.decode_metadata_maps(blob[:-1], 0, 3)
    with pytest.raises(ValueError):
        wal_io.decode_metadata_maps(b"\x02\x02k\x0e", 0, 1)  # union branch 7
    with pytest.raises(OverflowError):
        wal_io.encode_metadata_maps([{"big": 2**63}])
    with pytest.raises(TypeError):
        wal_io.encode_metadata_maps([{"x": object()}])
    with pytest.raises(TypeError):
        wal_io.encode_metadata_maps([{"x": ["a", 1]}])


def test_fsync_policy_parse() -> None:
    assert FsyncPolicy.parse("always") == FsyncPolicy("always")
    assert FsyncPolicy.parse("interval:250") == FsyncPolicy("interval", 250)
    assert str(FsyncPolicy.parse("never")) == "never"
    for bad in ("sometimes", "interval:", "interval:0", "interval:x"):
        with pytest.raises(ValidationError):
            FsyncPolicy.parse(bad)


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_codec_round_trip(strategy: str) -> None:
    code = wal_codec.strategy_code(strategy)
    for op in sample_ops():
        enc = wal_codec.encode(strategy, op)
        body = b"".join(enc.parts)
        assert_op_equal(op, wal_codec.decode(code, enc.op_code, enc.schema_version, enc.flags, body))


def test_avro_body_is_the_payload_frame() -> None:
    op = DeleteOp(["a", "b"])
    enc = wal_codec.encode("avro", op)
    body = b"".join(enc.parts)
    assert body[:4] == (4).to_bytes(4, "little")  # CURRENT_SCHEMA_VERSION
    assert body[4:8] == len(b"vector_delete").to_bytes(4, "little")
    assert body[8:21] == b"vector_delete"


def test_avro_payload_is_stored_verbatim_with_server_timestamps(tmp_path: Path) -> None:
    client = make_insert(4, 3, 5)
    client.timestamps = np.array([0, 5, 0, 7], dtype=np.int64)  # 0 = "server, stamp it"
    payload = wal_codec.encode_op_payload(client)
    stamped = make_insert(4, 3, 5)
    stamped.timestamps = np.array([99, 5, 99, 7], dtype=np.int64)
    with WriteAheadLog.open(tmp_path, strategy="avro", fsync="never") as wal:
        wal.append(stamped, payload)
        wal.append(DeleteOp(["x"]), wal_codec.encode_op_payload(DeleteOp(["x"])))
        with pytest.raises(ValueError, match="does not match"):
            wal.write(DeleteOp(["x"]), payload)
    assert payload in wal.files()[0].read_bytes()
    got = replay_all(tmp_path)
    assert_op_equal(stamped, got[0][1])
    assert_op_equal(DeleteOp(["x"]), got[1][1])


# ---------------------------------------------------------------- replay


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_append_replay_reopen(tmp_path: Path, strategy: str, compression: str) -> None:
    ops = sample_ops()
    expected = write_all(tmp_path, ops, strategy=strategy, compression=compression)
    assert [s for s, _ in expected] == list(range(1, len(ops) + 1))
    got = replay_all(tmp_path, strategy=strategy, compression=compression)
    assert_ops_equal(expected, got)
    assert_ops_equal(expected[2:], replay_all(tmp_path, after_seq=2))
    with WriteAheadLog.open(tmp_path, strategy=strategy) as wal:
        assert wal.last_seq == len(ops)
        list(wal.replay())
        assert wal.append(DeleteOp(["z"])) == len(ops) + 1


def test_lz4_compresses_only_when_it_helps(tmp_path: Path) -> None:
    big = make_insert(200, 8, 1)
    big.vectors[:] = 1.0  # compresses very well
    with WriteAheadLog.open(tmp_path / "a", strategy="binary", compression="lz4") as wal:
        wal.append(big)
        compressed = wal.stats().bytes_written
    with WriteAheadLog.open(tmp_path / "b", strategy="binary", compression="none") as wal:
        wal.append(big)
        plain = wal.stats().bytes_written
    assert compressed < plain / 2
    data = (tmp_path / "a" / wal_mod.segment_name(1)).read_bytes()
    frames, _, _ = wal_io.scan_frames(data, wal_io.FILE_HEADER_SIZE)
    assert frames[0][3] & wal_io.FLAG_LZ4
    with WriteAheadLog.open(tmp_path / "c", strategy="binary", compression="lz4") as wal:
        wal.append(DeleteOp(["tiny"]))
    data = (tmp_path / "c" / wal_mod.segment_name(1)).read_bytes()
    frames, _, _ = wal_io.scan_frames(data, wal_io.FILE_HEADER_SIZE)
    assert not frames[0][3] & wal_io.FLAG_LZ4
    assert_op_equal(big, replay_all(tmp_path / "a")[0][1])


def test_strategy_switch_keeps_old_files_readable(tmp_path: Path) -> None:
    first = write_all(tmp_path, sample_ops()[:2], strategy="avro")
    with WriteAheadLog.open(tmp_path, strategy="binary") as wal:
        assert_ops_equal(first, list(wal.replay()))
        second = [(wal.append(op), op) for op in sample_ops()[2:]]
        assert len(wal.files()) == 2
    headers = [wal_io.decode_file_header(p.read_bytes()[:24])[1] for p in sorted(tmp_path.iterdir())]
    assert headers == [wal_io.STRATEGY_AVRO, wal_io.STRATEGY_BINARY]
    assert_ops_equal(first + second, replay_all(tmp_path, strategy="avro"))


def test_strategy_switch_on_empty_file_rewrites_header(tmp_path: Path) -> None:
    WriteAheadLog.open(tmp_path, strategy="avro").close()
    with WriteAheadLog.open(tmp_path, strategy="binary") as wal:
        assert len(wal.files()) == 1
        wal.append(DeleteOp(["a"]))
    assert wal_io.decode_file_header(wal.files()[0].read_bytes()[:24])[1] == wal_io.STRATEGY_BINARY


def test_rotation_and_checkpoint(tmp_path: Path) -> None:
    ops = [make_insert(5, 8, i) for i in range(20)]
    with WriteAheadLog.open(tmp_path, strategy="binary", segment_bytes=1000, fsync="never") as wal:
        expected = [(wal.write(op), op) for op in ops]
        files = wal.files()
        assert len(files) > 5 and wal.stats().rotations == len(files) - 1
        firsts = [int(p.name[4:24]) for p in files]
        assert firsts[0] == 1 and firsts == sorted(firsts)
        removed = wal.checkpoint(10)
        assert removed and all(int(p.name[4:24]) <= 10 for p in removed)
        assert not any(p.exists() for p in removed)
        kept_first = int(wal.files()[0].name[4:24])
        assert kept_first <= 11
        assert_ops_equal(expected[10:], list(wal.replay(after_seq=10)))
    assert_ops_equal(expected[kept_first - 1:], replay_all(tmp_path, after_seq=kept_first - 1))
    with pytest.raises(CorruptionError, match="are missing"):  # below the log's start: frames are gone
        replay_all(tmp_path, after_seq=kept_first - 2)
    # everything checkpointed: an empty file keeps the seq going
    with WriteAheadLog.open(tmp_path, strategy="binary") as wal:
        wal.checkpoint(20)
        assert len(wal.files()) == 1 and wal.files()[0].name == wal_mod.segment_name(21)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.last_seq == 20
        assert list(wal.replay(20)) == []
        assert wal.append(DeleteOp(["q"])) == 21


def test_checkpoint_keeps_partly_covered_files(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, fsync="never") as wal:
        for i in range(3):
            wal.write(make_insert(2, 2, i))
        wal.rotate()
        for i in range(3):
            wal.write(make_insert(2, 2, i))
        assert wal.checkpoint(2) == []
        assert len(wal.checkpoint(3)) == 1
        assert [s for s, _ in wal.replay(3)] == [4, 5, 6]


# property: random op sequences, both strategies x compression, tiny segments, checkpoints

_metadata = strategies.metadata_maps(strategies.metadata_values(text_size=6, list_text_size=4, list_size=3), max_size=3)


@st.composite
def _insert_ops(draw: st.DrawFn) -> InsertOp:
    n = draw(st.integers(1, 4))
    dim = draw(st.integers(1, 5))
    return InsertOp(
        upsert=draw(st.booleans()),
        ids=draw(st.lists(st.text(max_size=8), min_size=n, max_size=n)),
        vectors=draw(arrays(np.float32, (n, dim), elements=st.floats(width=32, allow_nan=False))),
        metadata=draw(st.lists(_metadata, min_size=n, max_size=n)),
        timestamps=np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
                            dtype=np.int64),
    )


_ops = st.one_of(
    _insert_ops(),
    st.builds(DeleteOp, st.lists(st.text(max_size=8), max_size=4)),
    st.builds(UpdateOp, st.lists(st.builds(MetadataPatch, st.text(max_size=8), _metadata, st.booleans()),
                                 max_size=3), st.integers(-(2**63), 2**63 - 1)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_ops, min_size=1, max_size=12),
    strategy=st.sampled_from(["avro", "binary"]),
    compression=st.sampled_from(["none", "lz4"]),
    segment_bytes=st.sampled_from([1, 300, 1 << 20]),
    checkpoint_at=st.integers(0, 12),
)
def test_property_append_replay(ops: list[Operation], strategy: str, compression: str, segment_bytes: int,
                                checkpoint_at: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("PROXIMADB_TEST_TMP")) as tmp:
        path = Path(tmp)
        kw = {"strategy": strategy, "compression": compression, "fsync": "never", "segment_bytes": segment_bytes}
        with WriteAheadLog.open(path, **kw) as wal:  # type: ignore[arg-type]
            expected = [(wal.write(op), op) for op in ops]
            assert_ops_equal(expected, list(wal.replay()))
        other = "binary" if strategy == "avro" else "avro"
        with WriteAheadLog.open(path, strategy=other, segment_bytes=segment_bytes) as wal:
            assert_ops_equal(expected, list(wal.replay()))
            cut = min(checkpoint_at, len(ops))
            wal.checkpoint(cut)
            assert_ops_equal(expected[cut:], list(wal.replay(cut)))
        with WriteAheadLog.open(path, **kw) as wal:  # type: ignore[arg-type]
            got = list(wal.replay(cut))
            assert_ops_equal(expected[cut:], got)
            assert wal.last_seq == len(ops)


# ---------------------------------------------------------------- torn tails and corruption


def _frame_offsets(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    frames, _, status = wal_io.scan_frames(data, wal_io.FILE_HEADER_SIZE)
    assert status == wal_io.SCAN_CLEAN
    return [(f[0], f[6] + f[7]) for f in frames]


@pytest.mark.parametrize(("strategy", "compression"), [("binary", "none"), ("avro", "lz4")])
def test_torn_tail_at_every_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch, strategy: str, compression: str) -> None:
    monkeypatch.setattr(wal_mod, "_fdatasync", lambda fd: None)  # durability is not under test here
    src = tmp_path / "src"
    ops: list[Operation] = [make_insert(2, 3, 1), DeleteOp(["a"]), make_insert(3, 2, 2)]
    expected = write_all(src, ops, strategy=strategy, compression=compression)
    seg = src / wal_mod.segment_name(1)
    start, end = _frame_offsets(seg)[-1]
    original = seg.read_bytes()
    work = tmp_path / "work"
    caplog.set_level(logging.WARNING, logger="proximadb.wal")
    for cut in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / seg.name).write_bytes(original[:cut])
        caplog.clear()
        with WriteAheadLog.open(work, strategy=strategy, compression=compression, fsync="never") as wal:
            assert_ops_equal(expected[:-1], list(wal.replay()))
            assert wal.last_seq == 2
        assert (work / seg.name).stat().st_size == start
        if cut > start:
            assert any(seg.name in r.getMessage() and f"offset {start}" in r.getMessage()
                       and f"{cut - start} bytes" in r.getMessage() for r in caplog.records), caplog.text
    # after the cut the log continues normally
    with WriteAheadLog.open(work, strategy=strategy, fsync="never") as wal:
        assert wal.append(ops[2]) == 3
    assert_ops_equal(expected, replay_all(work))


def test_flipped_byte_in_last_frame_is_a_torn_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = write_all(tmp_path, sample_ops(), strategy="binary")
    seg = tmp_path / wal_mod.segment_name(1)
    start, end = _frame_offsets(seg)[-1]
    data = bytearray(seg.read_bytes())
    data[end - 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="proximadb.wal"):
        got = replay_all(tmp_path)
    assert_ops_equal(expected[:-1], got)
    assert "checksum mismatch" in caplog.text and f"offset {start}" in caplog.text


@pytest.mark.parametrize("where", ["header", "body", "length"])
def test_corruption_before_a_valid_frame_is_refused(tmp_path: Path, where: str) -> None:
    write_all(tmp_path, sample_ops(), strategy="binary")
    seg = tmp_path / wal_mod.segment_name(1)
    start, end = _frame_offsets(seg)[1]
    data = bytearray(seg.read_bytes())
    data[{"header": start + 9, "body": end - 1, "length": start}[where]] ^= 0x01
    seg.write_bytes(bytes(data))
    for _ in range(2):  # refused every time: nothing was cut
        with pytest.raises(CorruptionError) as info:
            WriteAheadLog.open(tmp_path)
        assert seg.name in str(info.value) and f"offset {start}" in str(info.value)
    assert seg.read_bytes() == bytes(data)


def test_corruption_in_earlier_file_is_refused_at_replay(tmp_path: Path) -> None:
    write_all(tmp_path, [make_insert(3, 3, i) for i in range(6)], strategy="avro", segment_bytes=400)
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 3
    victim = files[1]
    start, end = _frame_offsets(victim)[0]
    data = bytearray(victim.read_bytes())
    data[end - 2] ^= 0x40
    victim.write_bytes(bytes(data))
    with WriteAheadLog.open(tmp_path) as wal:
        with pytest.raises(CorruptionError) as info:
            list(wal.replay())
    assert victim.name in str(info.value) and f"offset {start}" in str(info.value)


def test_bad_header_in_earlier_file_is_refused(tmp_path: Path) -> None:
    write_all(tmp_path, [make_insert(3, 3, i) for i in range(4)], segment_bytes=300)
    first = sorted(tmp_path.iterdir())[0]
    data = bytearray(first.read_bytes())
    data[13] ^= 1
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=f"{first.name}.*offset 0"):
        WriteAheadLog.open(tmp_path)


def test_missing_file_is_a_seq_gap(tmp_path: Path) -> None:
    write_all(tmp_path, [make_insert(3, 3, i) for i in range(6)], segment_bytes=300)
    files = sorted(tmp_path.iterdir())
    files[1].unlink()
    with WriteAheadLog.open(tmp_path) as wal:
        with pytest.raises(CorruptionError, match=f"{files[0].name}.*seq gap"):
            list(wal.replay())


def test_seq_gap_inside_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / wal_mod.segment_name(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    os.write(fd, wal_io.encode_file_header(1, 0, 1))
    for seq in (1, 2, 4):
        enc = wal_codec.encode("binary", DeleteOp([str(seq)]))
        wal_io.write_frame(fd, seq, enc.op_code, 0, 1, sum(len(p) for p in enc.parts), enc.parts)
    os.close(fd)
    with pytest.raises(CorruptionError, match="seq gap: expected seq 3, found 4"):
        WriteAheadLog.open(tmp_path)


def test_torn_header_of_last_file_is_rewritten(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = write_all(tmp_path, sample_ops()[:2])
    torn = tmp_path / wal_mod.segment_name(3)
    torn.write_bytes(wal_io.encode_file_header(0, 0, 3)[:11])
    with caplog.at_level(logging.WARNING, logger="proximadb.wal"):
        with WriteAheadLog.open(tmp_path, strategy="binary") as wal:
            assert_ops_equal(expected, list(wal.replay()))
            assert wal.append(DeleteOp(["n"])) == 3
    assert "torn file header" in caplog.text
    assert wal_io.decode_file_header(torn.read_bytes()[:24])[3] == 3


def test_undecodable_frame_is_corruption_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / wal_mod.segment_name(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    os.write(fd, wal_io.encode_file_header(1, 0, 1))
    wal_io.write_frame(fd, 1, 1, 0, 1, 3, b"\x01\x02\x03")  # checksummed but not an insert body
    os.close(fd)
    with WriteAheadLog.open(tmp_path, strategy="binary") as wal:
        with pytest.raises(CorruptionError, match=r"offset 24.*seq 1 does not decode"):
            list(wal.replay())


# ---------------------------------------------------------------- durability


def _slow_fdatasync(monkeypatch: pytest.MonkeyPatch, delay: float) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def fake(fd: int) -> None:
        calls.append(fd)
        time.sleep(delay)
        real(fd)

    monkeypatch.setattr(wal_mod, "_fdatasync", fake)
    return calls


def test_group_commit_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog.open(tmp_path, strategy="binary", fsync="always")
    list(wal.replay())
    _slow_fdatasync(monkeypatch, 0.002)
    base = wal.stats().fsync_count
    threads_n, per_thread = 8, 25
    acked: list[list[int]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(per_thread):
                seq = wal.append(make_insert(2, 4, t * 1000 + i, prefix=f"t{t}-"))
                assert wal.durable_seq >= seq
                acked[t].append(seq)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    stats = wal.stats()
    wal.close()
    total = threads_n * per_thread
    assert sorted(s for a in acked for s in a) == list(range(1, total + 1))
    fsyncs = stats.fsync_count - base
    assert 0 < fsyncs < total, fsyncs
    assert stats.frames_written == total and stats.durable_seq == total and stats.fsync_seconds > 0
    replayed = replay_all(tmp_path)
    assert [s for s, _ in replayed] == list(range(1, total + 1))


def test_wait_durable_needs_an_fsync_that_began_after_the_write(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog.open(tmp_path, fsync="always")
    started: list[int] = []
    release_first = threading.Event()
    first_running = threading.Event()

    def fake(fd: int) -> None:
        started.append(wal.last_seq)
        if len(started) == 1:
            first_running.set()
            assert release_first.wait(10)
        os.fdatasync(fd)

    monkeypatch.setattr(wal_mod, "_fdatasync", fake)
    a = threading.Thread(target=wal.append, args=(DeleteOp(["a"]),))
    a.start()
    assert first_running.wait(10)  # A's fsync (covering seq 1 only) is in progress
    done = threading.Event()

    def writer_b() -> None:
        seq = wal.append(DeleteOp(["b"]))
        assert seq == 2
        done.set()

    b = threading.Thread(target=writer_b)
    b.start()
    time.sleep(0.1)
    assert not done.is_set()  # B must not ride on A's fsync, which began before B's write
    release_first.set()
    a.join(10)
    b.join(10)
    assert done.is_set()
    assert len(started) == 2 and wal.durable_seq == 2
    wal.close()


def test_interval_policy_syncs_in_background(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, fsync="interval:20") as wal:
        base = wal.stats().fsync_count
        seq = wal.append(make_insert())
        deadline = time.monotonic() + 5
        while wal.durable_seq < seq and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.durable_seq == seq
        assert wal.stats().fsync_count > base


def test_never_policy_syncs_only_on_close(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path, fsync="never")
    base = wal.stats().fsync_count
    for i in range(5):
        wal.append(make_insert(seed=i))
    assert wal.stats().fsync_count == base and wal.durable_seq == 0
    wal.close()
    assert wal.stats().fsync_count == base + 1 and wal.durable_seq == 5


def test_fsync_failure_stops_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog.open(tmp_path, fsync="always")
    wal.append(DeleteOp(["ok"]))

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal_mod, "_fdatasync", broken)
    with pytest.raises(StorageError, match=r"fdatasync .* failed"):
        wal.append(DeleteOp(["lost"]))
    monkeypatch.undo()
    with pytest.raises(StorageError, match="refuses further writes"):
        wal.write(DeleteOp(["after"]))
    with pytest.raises(StorageError):
        wal.wait_durable(2)
    wal.close()
    with pytest.raises(EngineClosedError):
        wal.write(DeleteOp(["closed"]))
    assert [s for s, _ in replay_all(tmp_path)] == [1, 2]


def test_write_failure_stops_the_log(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path, fsync="never")
    wal.append(DeleteOp(["ok"]))
    assert wal._active is not None
    readonly = os.open(tmp_path / "readonly", os.O_RDONLY | os.O_CREAT)
    os.dup2(readonly, wal._active.fd)  # the next write fails with EBADF inside write_frame
    os.close(readonly)
    with pytest.raises(StorageError, match=r"write of seq 2 .* failed"):
        wal.write(DeleteOp(["x"]))
    with pytest.raises(StorageError, match="refuses further writes"):
        wal.append(DeleteOp(["y"]))
    wal.close()
    assert wal.last_seq == 1


def test_open_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        WriteAheadLog.open(tmp_path, strategy="json")
    with pytest.raises(ValueError):
        WriteAheadLog.open(tmp_path, compression="zstd")
    with pytest.raises(ValidationError):
        WriteAheadLog.open(tmp_path, fsync="sometimes")


# ---------------------------------------------------------------- the log's start and the owner's checkpoint


def test_an_empty_log_starts_after_the_checkpoint(tmp_path: Path) -> None:
    """New frames are numbered above the checkpoint, or the next replay (after the checkpoint) would skip them."""
    (tmp_path / "wal").mkdir()
    with WriteAheadLog.open(tmp_path / "wal", fsync="never", first_seq=101) as wal:
        assert wal.last_seq == 100
        assert wal.append(DeleteOp(["a"])) == 101
    with WriteAheadLog.open(tmp_path / "wal", fsync="never", first_seq=101) as wal:
        assert [seq for seq, _ in wal.replay(after_seq=100)] == [101]


def test_a_log_that_starts_after_the_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    with WriteAheadLog.open(tmp_path / "wal", fsync="never", first_seq=11) as wal:
        wal.append(DeleteOp(["a"]))
    with WriteAheadLog.open(tmp_path / "wal", fsync="never") as wal:
        with pytest.raises(CorruptionError, match=r"starts at seq 11.*frames 6\.\.10 are missing"):
            list(wal.replay(after_seq=5))
        assert [seq for seq, _ in wal.replay(after_seq=10)] == [11]


def test_a_missing_wal_directory_after_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptionError, match=r"WAL directory .* is missing.*checkpoint is at seq 7"):
        WriteAheadLog.open(tmp_path / "wal", fsync="never", first_seq=8)
    assert not (tmp_path / "wal").exists()
