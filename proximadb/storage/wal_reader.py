"""Reading a write-ahead log: typed frames and typed problems, one set of rules.

The bytes of segment files and frames are documented once, in ``wal_io.pyx``
(which writes them); frame bodies in ``wal_codec.py``. This module decides
what those bytes mean when they are not what the writer wrote. Two policies
consume it and neither has rules of its own:

* recovery (:mod:`proximadb.storage.wal_recovery`, used by ``wal.py``): cuts a
  torn tail, rewrites a torn header, raises CorruptionError on every other problem;
* inspection (``proximadb wal dump`` / ``verify``,
  :mod:`proximadb.tools.wal_inspect`): reports every problem and goes on.

:func:`read_file` yields, for the bytes of one segment file, a
:class:`WalHeader`, then every :class:`WalFrame` whose checksum matches (in
runs, :class:`WalFrames`) and every :class:`WalProblem`, in file order. After a
bad frame it resynchronises on the next valid frame
(``wal_io.find_next_valid_frame``), so a reader that goes on sees everything
that can be read; one that stops at the first problem never pays for the
search beyond it. :func:`file_gap` is the rule between files. The rules:

* **torn header** (recoverable): the last file holds no byte past its header
  and the header is cut short, fails its checksum or is not this file's (a
  crash while the file was being created; nothing was ever written to it).
* **torn tail** (recoverable): in the last file, a frame cut short or failing
  its checksum with no valid frame after it (a crash during an append).
* **bad header**: any other file header that does not decode, names an
  unknown strategy, or names another first seq than the file name.
* **damaged**: a bad frame followed by a valid one, or a bad frame anywhere in
  a file that is not the last.
* **seq gap**: a frame whose seq is not the previous one + 1, or a file whose
  name does not continue the log before it.

A checksummed frame whose body does not decode (:func:`decode_frame` raises)
is damage too; each policy catches that itself.
"""

from __future__ import annotations

import enum
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TypeAlias

from proximadb.storage import wal_codec, wal_io
from proximadb.storage.operations import Operation

FILE_NAME = re.compile(r"^wal-(\d{20})\.log$")


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first frame carries ``first_seq``."""
    return f"wal-{first_seq:020d}.log"


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """``(first_seq, path)`` of every segment file in ``directory``, oldest first ([] if it does not exist)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted((int(m.group(1)), directory / name) for name in names if (m := FILE_NAME.match(name)))


class ProblemKind(enum.Enum):
    TORN_HEADER = "torn_header"
    TORN_TAIL = "torn_tail"
    BAD_HEADER = "bad_header"
    DAMAGED = "damaged"
    SEQ_GAP = "seq_gap"

    @property
    def recoverable(self) -> bool:
        """Whether the next open repairs it (cuts the tail or rewrites the header) instead of refusing."""
        return self in (ProblemKind.TORN_HEADER, ProblemKind.TORN_TAIL)


class WalHeader(NamedTuple):
    """A segment file's header, yielded first for every file (``version`` / ``strategy`` None: unreadable)."""

    path: Path
    first_seq: int  # from the file name
    size: int  # bytes of the file that were read
    version: int | None
    strategy: int | None  # wal_codec strategy code


WalFrame: TypeAlias = wal_io.Frame
"""A frame whose checksum matches: ``wal_io.Frame``, a tuple with named fields built in C by
``scan_frames``: offset (of the frame header), seq, op_code, flags, schema_version, raw_len (body
bytes before compression), body_offset, body_len (body bytes on disk). Built in Python (a
NamedTuple) it would cost about as much as decoding a small frame, on every recovery."""


class WalFrames(NamedTuple):
    """A run of valid frames with consecutive seqs, in file order (never empty).

    Frames come in runs, not one by one, so that a consumer that only counts
    them (recovery at open) or takes them all (replay) does no work per frame.
    """

    frames: list[WalFrame]


class WalProblem(NamedTuple):
    """Damage at ``offset`` of ``path``, typed by ``kind``; ``cause`` says what is wrong there.

    ``cause``: for a bad header the whole fault ("bad file header: bad magic
    ...", "unknown strategy code 7", "header says first seq ..."), for a torn
    header the same without "bad file header: "; for frames "frame cut short"
    or "checksum mismatch"; for a seq gap "seq gap".
    ``expected_seq``: the seq the next frame should carry (frames and gaps).
    ``seq``: the seq found instead (gaps) or where reading resumed (damage).
    ``bytes``: how many bytes from ``offset`` are not readable as frames;
    ``resume_offset``: where the next valid frame of the same file starts
    (None: there is none).
    """

    kind: ProblemKind
    path: Path
    offset: int
    cause: str
    bytes: int = 0
    seq: int | None = None
    expected_seq: int | None = None
    resume_offset: int | None = None


WalItem = WalHeader | WalFrames | WalProblem

_SEQ_FIELD = struct.Struct("<Q")
_FRAME_FAULT = {wal_io.SCAN_TRUNCATED: "frame cut short", wal_io.SCAN_BAD_CRC: "checksum mismatch"}


def read_header(path: Path, data: bytes | memoryview, name_seq: int, *,
                is_last: bool) -> tuple[WalHeader, WalProblem | None]:
    """The header at the start of ``data`` (a whole file, or at least its first bytes) and its problem, if any."""
    version: int | None = None
    strategy: int | None = None
    fault: str | None = None
    prefix = ""  # "bad file header: " for a header that does not decode at all
    try:
        version, code, _flags, header_seq = wal_io.decode_file_header(memoryview(data)[: wal_io.FILE_HEADER_SIZE])
    except ValueError as exc:
        fault, prefix = str(exc), "bad file header: "
    else:
        if code not in wal_codec.STRATEGY_NAMES:
            fault = f"unknown strategy code {code}"
        else:
            strategy = int(code)
            if header_seq != name_seq:
                fault = f"header says first seq {header_seq}, the file name says {name_seq}"
    header = WalHeader(path, name_seq, len(data), version, strategy)
    if fault is None:
        return header, None
    if is_last and len(data) <= wal_io.FILE_HEADER_SIZE:
        return header, WalProblem(ProblemKind.TORN_HEADER, path, 0, fault, bytes=len(data))
    return header, WalProblem(ProblemKind.BAD_HEADER, path, 0, prefix + fault)


def read_file(path: Path, data: bytes, name_seq: int, *, is_last: bool) -> Iterator[WalItem]:
    """The header, frames and problems of one segment file's bytes, in file order (see the module rules).

    ``is_last``: the file is the log's last, the only one a crash can leave torn.
    Frames are checked against seqs counted from ``name_seq``; after a bad header
    that is not torn the frames are still read (their bodies cannot be decoded).
    """
    header, problem = read_header(path, data, name_seq, is_last=is_last)
    yield header
    if problem is not None:
        yield problem
        if problem.kind is ProblemKind.TORN_HEADER:
            return
    expected = name_seq
    size = len(data)
    pos = wal_io.FILE_HEADER_SIZE
    while pos < size:
        frames, stop, status = wal_io.scan_frames(data, pos)
        run_start = 0
        for i, frame in enumerate(frames):
            if frame.seq != expected:  # a seq gap: the problem stands between the runs before and after it
                if i > run_start:
                    yield WalFrames(frames[run_start:i])
                run_start = i
                yield WalProblem(ProblemKind.SEQ_GAP, path, frame.offset, "seq gap", seq=frame.seq,
                                 expected_seq=expected)
            expected = frame.seq + 1
        if run_start < len(frames):
            yield WalFrames(frames if run_start == 0 else frames[run_start:])
        if status == wal_io.SCAN_CLEAN:
            return
        fault = _FRAME_FAULT[status]
        later = wal_io.find_next_valid_frame(data, stop + 1, expected)
        if later < 0:
            kind = ProblemKind.TORN_TAIL if is_last else ProblemKind.DAMAGED
            yield WalProblem(kind, path, stop, fault, bytes=size - stop, expected_seq=expected)
            return
        (resume_seq,) = _SEQ_FIELD.unpack_from(data, later + 8)  # a frame header's seq: bytes 8..16
        yield WalProblem(ProblemKind.DAMAGED, path, stop, fault, bytes=later - stop, seq=resume_seq,
                         expected_seq=expected, resume_offset=later)
        expected = resume_seq
        pos = later


def file_gap(path: Path, name_seq: int, expected: int) -> WalProblem | None:
    """The seq gap at the start of file ``path`` (named for ``name_seq``) after a log ending at ``expected - 1``."""
    if name_seq == expected:
        return None
    return WalProblem(ProblemKind.SEQ_GAP, path, 0, "seq gap", seq=name_seq, expected_seq=expected)


def next_seq(items: list[WalItem], name_seq: int) -> int:
    """The seq the frame after ``items`` (one file's, as read) should carry."""
    for item in reversed(items):
        if isinstance(item, WalFrames):
            return item.frames[-1].seq + 1
    return name_seq


def decode_frame(strategy: int, frame: WalFrame, view: memoryview) -> Operation:
    """The operation in ``frame`` of the file bytes ``view``; raises whatever the codec raises on a bad body."""
    start = frame.body_offset
    return wal_codec.decode_frame_body(strategy, frame.op_code, frame.flags, frame.schema_version, frame.raw_len,
                                       view[start : start + frame.body_len])
