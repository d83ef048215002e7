"""Recovery policy: what opening and replaying a WAL does with each problem ``wal_reader`` reports.

The rules that tell a torn tail from corruption are :mod:`proximadb.storage.wal_reader`'s;
this module only decides what to do about each kind:

* at open, in the last file: a torn header is rewritten and a torn tail cut
  (:func:`check_last_file` says which; :class:`~proximadb.storage.wal.WriteAheadLog`
  does the writing and logs it);
* everything else, at open and in replay (a torn tail included: open has cut
  it already), is refused with CorruptionError naming file and offset
  (:func:`refusal`). A checksummed frame whose body does not decode is refused too,
  never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from proximadb.errors import CorruptionError
from proximadb.storage import wal_io, wal_reader
from proximadb.storage.operations import Operation
from proximadb.storage.wal_reader import ProblemKind, WalFrame, WalFrames, WalHeader, WalProblem


def refusal(problem: WalProblem) -> CorruptionError:
    """The CorruptionError recovery raises for ``problem``."""
    where = f"WAL file {problem.path}: offset {problem.offset}"
    if problem.kind is ProblemKind.SEQ_GAP:
        return CorruptionError(f"{where}: seq gap: expected seq {problem.expected_seq}, found {problem.seq}")
    if problem.kind in (ProblemKind.DAMAGED, ProblemKind.TORN_TAIL):
        assert problem.expected_seq is not None
        what = f"damaged frame ({problem.cause}) after seq {problem.expected_seq - 1}"
        if problem.resume_offset is not None:
            what += f" is followed by a valid frame at offset {problem.resume_offset}; refusing to skip it"
        return CorruptionError(f"{where}: {what}")
    return CorruptionError(f"{where}: {problem.cause}")


def earlier_file_strategy(path: Path, first_seq: int) -> int:
    """The strategy code in the header of a file that is not the last; refuses a bad header."""
    with open(path, "rb") as f:
        head = f.read(wal_io.FILE_HEADER_SIZE)
    header, problem = wal_reader.read_header(path, head, first_seq, is_last=False)
    if problem is not None:
        raise refusal(problem)
    assert header.strategy is not None
    return header.strategy


class LastFile(NamedTuple):
    strategy: int | None  # None with a torn header
    frames: int  # valid frames before ``repair``
    repair: WalProblem | None  # a torn header (rewrite the file) or a torn tail (cut at its offset)


def check_last_file(path: Path, data: bytes, first_seq: int) -> LastFile:
    """What opening the log's last file (bytes ``data``) must repair; refuses anything it must not."""
    strategy: int | None = None
    frames = 0
    for item in wal_reader.read_file(path, data, first_seq, is_last=True):
        if isinstance(item, WalFrames):
            frames += len(item.frames)
        elif isinstance(item, WalHeader):
            strategy = item.strategy
        elif item.kind.recoverable:
            return LastFile(strategy, frames, item)
        else:
            raise refusal(item)
    return LastFile(strategy, frames, None)


def replay_file(path: Path, data: bytes, first_seq: int, *, is_last: bool, continues_at: int,
                after_seq: int) -> Iterator[tuple[int, Operation]]:
    """``(seq, op)`` of every frame of one file with seq > ``after_seq``, once the whole file is verified.

    ``continues_at``: the seq the log continues at after this file (the next
    file's first seq, or the last seq + 1).
    """
    strategy: int | None = None
    frames: list[WalFrame] = []
    for item in wal_reader.read_file(path, data, first_seq, is_last=is_last):
        if isinstance(item, WalProblem):
            raise refusal(item)
        if isinstance(item, WalHeader):
            strategy = item.strategy
        else:
            frames += item.frames
    assert strategy is not None  # a header without a problem names one
    ends_at = frames[-1].seq + 1 if frames else first_seq
    if ends_at != continues_at:
        raise CorruptionError(f"WAL file {path}: offset {len(data)}: seq gap: the file ends at seq {ends_at - 1} "
                              f"but the log continues at seq {continues_at}")
    view = memoryview(data)
    for frame in itertools.islice(frames, max(0, after_seq + 1 - first_seq), None):  # seqs: first_seq, +1, ...
        try:
            op = wal_reader.decode_frame(strategy, frame, view)
        except CorruptionError:
            raise
        except Exception as exc:  # a checksummed frame that does not decode: refuse, never skip
            raise CorruptionError(f"WAL file {path}: offset {frame.offset}: frame seq {frame.seq} does not decode: "
                                  f"{type(exc).__name__}: {exc}") from exc
        yield frame.seq, op
