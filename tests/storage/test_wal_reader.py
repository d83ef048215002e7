"""wal_reader: the typed frames and problems of real WAL files, and the two policies that consume them.

Every log here is written by the real writer (``WriteAheadLog``; ``wal_io.write_frame``
where a test needs frames the writer never writes, such as a seq gap), then
damaged by hand. The last tests check that recovery (``WriteAheadLog.open`` and
``replay``) and inspection (``wal_inspect.verify_wal``) judge every damage the same
way, since both now take it from the reader.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import CorruptionError
from proximadb.storage import wal_codec, wal_io, wal_reader
from proximadb.storage.operations import DeleteOp, InsertOp, MetadataPatch, Operation, UpdateOp
from proximadb.storage.wal import WriteAheadLog
from proximadb.storage.wal_reader import (
    ProblemKind,
    WalFrame,
    WalFrames,
    WalHeader,
    WalItem,
    WalProblem,
    segment_name,
)
from proximadb.tools import wal_inspect

COMBOS = [(s, c) for s in ("avro", "binary") for c in ("none", "lz4")]


def _ops(n: int) -> list[Operation]:
    rng = np.random.default_rng(n)
    out: list[Operation] = []
    for i in range(n):
        if i % 3 == 0:
            out.append(InsertOp(upsert=False, ids=[f"id{i}-{j}" for j in range(4)],
                                vectors=rng.standard_normal((4, 8)).astype(np.float32),
                                metadata=[{"i": i, "tag": "x" * 40} for _ in range(4)],
                                timestamps=np.arange(4, dtype=np.int64) + 1_700_000_000_000_000))
        elif i % 3 == 1:
            out.append(DeleteOp([f"id{i - 1}-0", f"id{i - 1}-1"]))
        else:
            out.append(UpdateOp([MetadataPatch(f"id{i - 2}-2", {"seen": True})], timestamp=42))
    return out


def _same_op(a: Operation, b: Operation) -> bool:
    if isinstance(a, InsertOp) and isinstance(b, InsertOp):
        return (a.ids == b.ids and np.array_equal(a.vectors, b.vectors) and list(a.metadata) == list(b.metadata)
                and np.array_equal(a.timestamps, b.timestamps))
    return a == b


def _write(directory: Path, ops: list[Operation], *, strategy: str = "binary", compression: str = "none",
           segment_bytes: int = 1 << 20) -> None:
    with WriteAheadLog.open(directory, strategy=strategy, compression=compression, fsync="never",
                            segment_bytes=segment_bytes) as wal:
        for op in ops:
            wal.append(op)


def _read(path: Path, *, is_last: bool = True) -> list[WalItem]:
    first_seq = int(path.name[4:24])
    return list(wal_reader.read_file(path, path.read_bytes(), first_seq, is_last=is_last))


def _frames(items: list[WalItem]) -> list[WalFrame]:
    return [frame for item in items if isinstance(item, WalFrames) for frame in item.frames]


def _end(frame: WalFrame) -> int:
    return frame.body_offset + frame.body_len


def _problems(items: list[WalItem]) -> list[WalProblem]:
    return [i for i in items if isinstance(i, WalProblem)]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- good frames


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_good_frames_are_typed_back_to_back_and_decode(tmp_path: Path, strategy: str, compression: str) -> None:
    ops = _ops(7)
    _write(tmp_path, ops, strategy=strategy, compression=compression)
    path = tmp_path / segment_name(1)
    items = _read(path)
    header = items[0]
    assert header == WalHeader(path, 1, path.stat().st_size, wal_io.FORMAT_VERSION,
                               wal_codec.strategy_code(strategy))
    assert _problems(items) == []
    assert len(items) == 2 and isinstance(items[1], WalFrames)  # one run: the whole file
    frames = _frames(items)
    assert all(isinstance(f, WalFrame) for f in frames)
    assert not gc.is_tracked(frames[0])  # ints only: wal_io leaves them out of the cyclic collector
    assert [f.seq for f in frames] == list(range(1, 8))
    assert frames[0].offset == wal_io.FILE_HEADER_SIZE
    assert all(_end(a) == b.offset for a, b in itertools.pairwise(frames))
    assert _end(frames[-1]) == path.stat().st_size
    assert all(f.body_offset == f.offset + wal_io.FRAME_HEADER_SIZE for f in frames)
    if compression == "lz4":  # the inserts' repeated metadata compresses
        assert any(f.flags & wal_io.FLAG_LZ4 and f.body_len < f.raw_len for f in frames)
    data = path.read_bytes()
    decoded = [wal_reader.decode_frame(header.strategy, f, memoryview(data)) for f in frames]  # type: ignore[arg-type]
    assert all(_same_op(a, b) for a, b in zip(ops, decoded, strict=True))
    assert wal_reader.next_seq(items, 1) == 8


def test_segment_files_and_file_gaps(tmp_path: Path) -> None:
    _write(tmp_path, _ops(9), segment_bytes=400)
    files = wal_reader.segment_files(tmp_path)
    assert len(files) >= 3 and files[0][0] == 1
    assert [p.name for _, p in files] == sorted(p.name for p in tmp_path.iterdir())
    assert wal_reader.segment_files(tmp_path / "nowhere") == []
    expected = 1
    for first_seq, path in files:
        assert wal_reader.file_gap(path, first_seq, expected) is None
        expected = wal_reader.next_seq(_read(path, is_last=path == files[-1][1]), first_seq)
    assert expected == 10
    (_, first), (second_seq, second), (third_seq, third) = files[:3]
    second.unlink()
    after_first = wal_reader.next_seq(_read(first, is_last=False), 1)
    gap = wal_reader.file_gap(third, third_seq, after_first)
    assert gap == WalProblem(ProblemKind.SEQ_GAP, third, 0, "seq gap", seq=third_seq, expected_seq=second_seq)


# ---------------------------------------------------------------- torn tail


@pytest.mark.parametrize("how", ["cut", "flip"])
def test_torn_tail_of_the_last_file(tmp_path: Path, how: str) -> None:
    _write(tmp_path, _ops(4))
    path = tmp_path / segment_name(1)
    last = _frames(_read(path))[-1]
    if how == "cut":
        os.truncate(path, last.offset + 30)
        cause, size = "frame cut short", last.offset + 30
    else:
        _flip(path, _end(last) - 2)
        cause, size = "checksum mismatch", _end(last)
    items = _read(path)
    assert [f.seq for f in _frames(items)] == [1, 2, 3]
    assert items[-1] == WalProblem(ProblemKind.TORN_TAIL, path, last.offset, cause, bytes=size - last.offset,
                                   expected_seq=4)
    assert items[-1].kind.recoverable
    # the same bytes in a file that is not the last: damage, not a torn tail
    assert _read(path, is_last=False)[-1].kind is ProblemKind.DAMAGED

    with WriteAheadLog.open(tmp_path, fsync="never") as wal:  # recovery cuts exactly there
        assert [seq for seq, _ in wal.replay()] == [1, 2, 3]
    assert path.stat().st_size == last.offset
    assert _problems(_read(path)) == []


# ---------------------------------------------------------------- damage in the middle


def test_bad_checksum_in_the_middle_is_damage_and_reading_goes_on(tmp_path: Path) -> None:
    _write(tmp_path, _ops(6), strategy="avro")
    path = tmp_path / segment_name(1)
    good = _frames(_read(path))
    second, third = good[1], good[2]
    _flip(path, second.body_offset + 3)
    items = _read(path)
    problem = WalProblem(ProblemKind.DAMAGED, path, second.offset, "checksum mismatch",
                         bytes=third.offset - second.offset, seq=3, expected_seq=2, resume_offset=third.offset)
    assert items[1:] == [WalFrames([good[0]]), problem, WalFrames(good[2:])]  # runs of frames around the problem
    assert not problem.kind.recoverable

    before = path.read_bytes()
    with pytest.raises(CorruptionError, match=f"{path.name}: offset {second.offset}: .*checksum mismatch"):
        WriteAheadLog.open(tmp_path)
    assert path.read_bytes() == before  # refused, nothing cut


def test_seq_gap_inside_a_file(tmp_path: Path) -> None:
    path = tmp_path / segment_name(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, wal_io.encode_file_header(wal_io.STRATEGY_BINARY, 0, 1))
        for seq in (1, 2, 5, 6):
            enc = wal_codec.encode("binary", DeleteOp([str(seq)]))
            wal_io.write_frame(fd, seq, enc.op_code, 0, 1, sum(len(p) for p in enc.parts), enc.parts)
    finally:
        os.close(fd)
    items = _read(path)
    frames = _frames(items)
    assert [f.seq for f in frames] == [1, 2, 5, 6]
    gap = WalProblem(ProblemKind.SEQ_GAP, path, frames[2].offset, "seq gap", seq=5, expected_seq=3)
    assert items[1:] == [WalFrames(frames[:2]), gap, WalFrames(frames[2:])]  # just before the frame, between runs
    with pytest.raises(CorruptionError, match="seq gap: expected seq 3, found 5"):
        WriteAheadLog.open(tmp_path)


# ---------------------------------------------------------------- headers


def test_torn_and_bad_headers(tmp_path: Path) -> None:
    _write(tmp_path, _ops(2))
    with WriteAheadLog.open(tmp_path, fsync="never") as wal:
        wal.rotate()
    new = tmp_path / segment_name(3)
    new.write_bytes(new.read_bytes()[:11])  # a crash while the file was created
    items = _read(new)
    assert items == [WalHeader(new, 3, 11, None, None),
                     WalProblem(ProblemKind.TORN_HEADER, new, 0, "file header truncated (11 of 24 bytes)",
                                bytes=11)]
    assert _read(new, is_last=False)[1] == WalProblem(ProblemKind.BAD_HEADER, new, 0,
                                                      "bad file header: file header truncated (11 of 24 bytes)")
    # a bad header over frames: damage; the frames are still read, undecodable (no strategy)
    old = tmp_path / segment_name(1)
    _flip(old, 2)
    items = _read(old)
    assert items[0].strategy is None  # type: ignore[union-attr]
    assert [p.kind for p in _problems(items)] == [ProblemKind.BAD_HEADER]
    assert "bad magic" in _problems(items)[0].cause
    assert [f.seq for f in _frames(items)] == [1, 2]


# ---------------------------------------------------------------- the two policies agree


def _cut_last_frame(d: Path) -> None:
    path = sorted(d.iterdir())[-1]
    os.truncate(path, _frames(_read(path))[-1].offset + 5)


def _flip_last_frame(d: Path) -> None:
    path = sorted(d.iterdir())[-1]
    _flip(path, _end(_frames(_read(path))[-1]) - 1)


def _flip_middle_frame(d: Path) -> None:
    path = sorted(d.iterdir())[-1]
    _flip(path, _frames(_read(path))[0].body_offset)


def _cut_earlier_file(d: Path) -> None:
    path = sorted(d.iterdir())[0]
    os.truncate(path, path.stat().st_size - 3)


def _drop_middle_file(d: Path) -> None:
    sorted(d.iterdir())[1].unlink()


def _new_file(header: Callable[[int], bytes]) -> Callable[[Path], None]:
    """A last file with ``header(first seq)`` and nothing after it, as a crash while creating it could leave."""
    def damage(d: Path) -> None:
        last = sorted(d.iterdir())[-1]
        first_seq = wal_reader.next_seq(_read(last), int(last.name[4:24]))
        (d / segment_name(first_seq)).write_bytes(header(first_seq))
    return damage


DAMAGE: dict[str, tuple[Callable[[Path], None], bool]] = {  # name: (damage, recoverable)
    "torn tail": (_cut_last_frame, True),
    "flipped last frame": (_flip_last_frame, True),
    "torn header": (_new_file(lambda seq: wal_io.encode_file_header(0, 0, seq)[:5]), True),
    "header naming another seq": (_new_file(lambda seq: wal_io.encode_file_header(0, 0, seq + 7)), True),
    "header with an unknown strategy": (_new_file(lambda seq: wal_io.encode_file_header(7, 0, seq)), True),
    "flipped middle frame": (_flip_middle_frame, False),
    "cut earlier file": (_cut_earlier_file, False),
    "missing middle file": (_drop_middle_file, False),
    "bad magic over frames": (lambda d: _flip(sorted(d.iterdir())[-1], 0), False),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_recovery_and_inspection_agree(tmp_path: Path, name: str) -> None:
    damage, recoverable = DAMAGE[name]
    _write(tmp_path, _ops(12), segment_bytes=700)
    assert len(list(tmp_path.iterdir())) >= 3
    damage(tmp_path)
    verdict = wal_inspect.verify_wal(wal_inspect.WalTarget(tmp_path)).verdict
    if recoverable:
        assert verdict == wal_inspect.VERDICT_TORN
        with WriteAheadLog.open(tmp_path, strategy="binary", fsync="never") as wal:
            seqs = [seq for seq, _ in wal.replay()]
        assert seqs == list(range(1, len(seqs) + 1))
        assert wal_inspect.verify_wal(wal_inspect.WalTarget(tmp_path)).verdict == wal_inspect.VERDICT_CLEAN
    else:
        assert verdict == wal_inspect.VERDICT_CORRUPT
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        with pytest.raises(CorruptionError):
            with WriteAheadLog.open(tmp_path, strategy="binary", fsync="never") as wal:
                list(wal.replay())
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
