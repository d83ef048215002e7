"""Read-only inspection of write-ahead logs: the logic behind ``proximadb wal dump`` and ``proximadb wal verify``.

Works offline or while a daemon owns the data directory: it never takes the
data directory's lock and opens every file read-only. WAL files are read whole,
one at a time, by :mod:`proximadb.storage.wal_reader`, the reader recovery uses
too: what is a torn tail and what is corruption is decided there, once, and
this module only reports it (the bytes themselves are documented in
``proximadb/storage/wal_io.pyx``, frame bodies in ``proximadb/storage/wal_codec.py``).

:func:`iter_wal` yields, for one collection's WAL, a :class:`FileStart` per
file, a :class:`FrameRecord` per valid frame (decoded unless asked not to) and
a :class:`Problem` per damage it finds, and goes on past damage where it safely
can: after a bad frame the reader resynchronises on the next frame whose
checksum matches and this module says how many bytes it skipped.

Severity, as recovery (``WriteAheadLog.open`` and ``replay``) treats each kind:

* **torn tail**: a problem recovery repairs (``ProblemKind.recoverable``): in
  the last file, a frame cut short or failing its checksum with no valid frame
  after it, or a header cut short (or not this file's) with no byte after it.
  The next open cuts it.
* **corruption**: every other problem the reader reports (a bad frame followed
  by a valid one or in an earlier file, a bad file header, a seq gap inside a
  file or between files), a checksummed frame whose body does not decode, and
  one check of this tool's own: a log that starts after the manifest
  checkpoint + 1. Recovery refuses all of these but the last, which it does
  not check (it replays whatever files follow the checkpoint).

Verdicts, and the exit codes of ``proximadb wal verify`` (the worst collection wins)::

    0  clean      every file header, checksum, frame boundary and seq is right
    3  torn_tail  only a torn tail at the end of the last file (the next open cuts it)
    4  corrupt    damage that recovery refuses (see above)

A frame being appended by a live daemon can look like a torn tail for an
instant: a last file that looks torn is read again a few times (within about
a quarter of a second) before it is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proximadb.errors import CorruptionError
from proximadb.storage import wal_codec, wal_io, wal_reader
from proximadb.storage.catalog import CATALOG_NAME, Catalog
from proximadb.storage.manifest import MANIFEST_NAME, Manifest
from proximadb.storage.operations import OP_DELETE, OP_INSERT, OP_UPDATE, DeleteOp, InsertOp, Operation, UpdateOp
from proximadb.storage.wal_reader import ProblemKind, WalFrame, WalFrames, WalHeader, WalItem, WalProblem

OP_NAMES: dict[int, str] = {OP_INSERT: "insert", OP_DELETE: "delete", OP_UPDATE: "update"}
OP_CODES: dict[str, int] = {name: code for code, name in OP_NAMES.items()}

SEVERITY_NOTE = "note"
SEVERITY_TORN = "torn"
SEVERITY_CORRUPT = "corrupt"

VERDICT_CLEAN = "clean"
VERDICT_TORN = "torn_tail"
VERDICT_CORRUPT = "corrupt"
EXIT_CLEAN = 0
EXIT_TORN = 3
EXIT_CORRUPT = 4
EXIT_CODES: dict[str, int] = {VERDICT_CLEAN: EXIT_CLEAN, VERDICT_TORN: EXIT_TORN, VERDICT_CORRUPT: EXIT_CORRUPT}

# A last file that looks torn is read again after these pauses when it grew or may still grow: a live
# daemon may be appending a frame or have created the file without its header yet.
_REREAD_PAUSES = (0.0, 0.01, 0.05, 0.2)


class InspectError(Exception):
    """The data directory, WAL directory or collection cannot be found (the CLI exits 1)."""


# ---------------------------------------------------------------- what to inspect


@dataclass(frozen=True, slots=True)
class WalTarget:
    """One collection's WAL directory (name and uuid are None when not known from a catalog)."""

    wal_dir: Path
    name: str | None = None
    uuid: str | None = None
    checkpoint_seq: int | None = None  # from the collection's MANIFEST, when it could be read

    @property
    def label(self) -> str:
        return self.name or self.uuid or str(self.wal_dir)


@dataclass(slots=True)
class DataDirScan:
    root: Path
    targets: list[WalTarget]
    notes: list[str] = field(default_factory=list)  # an unreadable catalog, collections not in it, ...


def _checkpoint(collection_dir: Path, notes: list[str]) -> int | None:
    if not (collection_dir / MANIFEST_NAME).exists():
        return 0  # what the engine assumes for a collection that never flushed
    try:
        return Manifest.load(collection_dir).checkpoint_seq
    except (CorruptionError, OSError, ValueError, KeyError) as exc:
        notes.append(f"{collection_dir / MANIFEST_NAME}: unreadable ({exc}); checkpoint not checked")
        return None


def find_targets(path: str | os.PathLike[str], collection: str | None = None) -> DataDirScan:
    """The WALs under ``path``: a data directory, one collection's directory, or a WAL directory.

    ``collection`` (a name or a uuid) picks one collection of a data directory.
    Reads ``catalog.pxdb`` and each ``MANIFEST`` without locking. Raises
    InspectError when ``path`` or the collection does not exist.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise InspectError(f"data directory {root} does not exist")
    if not root.is_dir():
        raise InspectError(f"{root} is not a directory")
    notes: list[str] = []
    is_data_dir = (root / CATALOG_NAME).exists() or (root / "collections").is_dir()
    if not is_data_dir:
        wal_dir = root / "wal" if (root / "wal").is_dir() else root
        if wal_dir == root and not wal_reader.segment_files(root):
            raise InspectError(f"{root} is not a ProximaDB data directory (no {CATALOG_NAME}, no collections/) "
                               "and holds no WAL files (wal-<seq>.log)")
        if collection is not None:
            raise InspectError(f"--collection needs a data directory; {root} is a single WAL")
        checkpoint = _checkpoint(wal_dir.parent, notes) if wal_dir != root else None
        uuid = root.name if wal_dir != root else None
        return DataDirScan(root, [WalTarget(wal_dir, None, uuid, checkpoint)], notes)

    catalog: Catalog | None = None
    try:
        catalog = Catalog(root)
    except (CorruptionError, OSError, ValueError, KeyError, TypeError) as exc:
        notes.append(f"{root / CATALOG_NAME}: unreadable ({exc}); collection names unknown")
    collections_dir = root / "collections"
    on_disk = sorted(p.name for p in collections_dir.iterdir() if p.is_dir()) if collections_dir.is_dir() else []
    known = catalog.collections if catalog is not None else {}

    def target(uuid: str, name: str | None) -> WalTarget:
        cdir = collections_dir / uuid
        return WalTarget(cdir / "wal", name, uuid, _checkpoint(cdir, notes) if cdir.is_dir() else None)

    if collection is not None:
        cfg = catalog.find(collection) if catalog is not None else None
        if cfg is not None:
            return DataDirScan(root, [target(cfg.uuid, cfg.name)], notes)
        if collection in on_disk:  # a uuid whose directory is not (or no longer) in the catalog
            return DataDirScan(root, [target(collection, None)], notes)
        names = ", ".join(sorted(c.name for c in known.values())) or "none"
        raise InspectError(f"collection {collection!r} not found in {root} (collections: {names})")

    targets = [target(uuid, cfg.name) for uuid, cfg in sorted(known.items(), key=lambda kv: kv[1].name)]
    for uuid in on_disk:
        if uuid not in known and catalog is not None:
            notes.append(f"collections/{uuid} is not in the catalog (the next open removes it if an interrupted "
                         f"delete left it, else moves it to quarantine/); not inspected (pass --collection {uuid} "
                         f"to look at it)")
        elif catalog is None:
            targets.append(target(uuid, None))
    return DataDirScan(root, targets, notes)


# ---------------------------------------------------------------- what it finds


@dataclass(frozen=True, slots=True)
class FileStart:
    """A WAL file about to be read (``strategy`` is None when its header is unreadable)."""

    target: WalTarget
    path: Path
    first_seq: int  # from the file name
    size: int
    strategy: str | None
    version: int | None


@dataclass(slots=True)
class FrameRecord:
    """One frame whose checksum matches; ``op`` is its decoded operation, ``error`` why it did not decode."""

    target: WalTarget
    path: Path
    offset: int
    seq: int
    op_code: int
    flags: int
    schema_version: int
    strategy: str | None
    stored_size: int  # body bytes on disk
    raw_size: int  # body bytes before compression
    op: Operation | None = None
    error: str | None = None  # set: a checksummed frame whose body does not decode (corruption)

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self.op_code, f"op{self.op_code}")

    @property
    def compression(self) -> str:
        return "lz4" if self.flags & wal_io.FLAG_LZ4 else "none"

    @property
    def frame_size(self) -> int:
        return wal_io.FRAME_HEADER_SIZE + self.stored_size

    @property
    def upsert(self) -> bool | None:
        return bool(self.op.upsert) if isinstance(self.op, InsertOp) else None

    @property
    def ids(self) -> list[str] | None:
        op = self.op
        if isinstance(op, InsertOp | DeleteOp):
            return list(op.ids)
        if isinstance(op, UpdateOp):
            return [patch.id for patch in op.updates]
        return None


@dataclass(frozen=True, slots=True)
class Problem:
    """Damage (or a note) at ``offset`` of ``path``.

    ``kind``: ``damaged`` (bytes that are not valid frames, or a frame that does
    not decode), ``torn_tail``, ``seq_gap``, ``bad_header``, ``missing`` (no WAL
    files), ``vanished`` (a file deleted by a checkpoint while it was read),
    ``unreadable`` (an I/O error). ``bytes``: how many bytes could not be read as
    frames; ``resume_offset``: where reading went on in the same file (None: at
    the next file).
    """

    kind: str
    severity: str  # note | torn | corrupt
    target: WalTarget
    path: Path
    offset: int
    reason: str
    bytes: int = 0
    seq: int | None = None
    resume_offset: int | None = None


@dataclass(frozen=True, slots=True)
class FrameFilter:
    """Which frames :func:`iter_wal` yields (problems are always yielded)."""

    from_seq: int | None = None
    to_seq: int | None = None
    ops: frozenset[int] | None = None

    def wants(self, seq: int, op_code: int) -> bool:
        return ((self.from_seq is None or seq >= self.from_seq)
                and (self.to_seq is None or seq <= self.to_seq)
                and (self.ops is None or op_code in self.ops))

    def overlaps(self, first_seq: int, last_seq: int | None) -> bool:
        """Whether a file holding seqs ``first_seq..last_seq`` (None: open-ended) may hold a wanted frame."""
        if self.to_seq is not None and first_seq > self.to_seq:
            return False
        return not (self.from_seq is not None and last_seq is not None and last_seq < self.from_seq)

    @property
    def is_everything(self) -> bool:
        return self.from_seq is None and self.to_seq is None and self.ops is None


Event = FileStart | FrameRecord | Problem


# ---------------------------------------------------------------- reading one WAL


def _seq_range(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seqs {first}..{last}"


def _problem(target: WalTarget, p: WalProblem) -> Problem:
    """The report of a problem the reader found inside a file."""
    if p.kind.recoverable:
        reason = f"torn file header ({p.cause}); the file holds no frame" if p.kind is ProblemKind.TORN_HEADER \
            else p.cause
        return Problem("torn_tail", SEVERITY_TORN, target, p.path, p.offset, reason, bytes=p.bytes)
    if p.kind is ProblemKind.SEQ_GAP:
        assert p.seq is not None and p.expected_seq is not None
        expected, found = p.expected_seq, p.seq
        missing = _seq_range(expected, found - 1)
        if p.offset < wal_io.FILE_HEADER_SIZE:  # no frame starts there: the file (its name) does not continue the log
            if found > expected:
                reason = f"file starts at seq {found}, the log before it ends at seq {expected - 1}: {missing} missing"
            else:
                reason = f"file starts at seq {found}, but the log before it already reached seq {expected - 1}"
        elif found > expected:
            reason = f"expected seq {expected}, found seq {found}: {missing} missing"
        else:
            reason = f"expected seq {expected}, found seq {found} (seqs go backwards)"
        return Problem("seq_gap", SEVERITY_CORRUPT, target, p.path, p.offset, reason, seq=found)
    if p.kind is ProblemKind.DAMAGED:
        if p.resume_offset is None:
            reason = f"{p.cause}; no valid frame after it in this file (not the last file)"
        else:
            assert p.seq is not None and p.expected_seq is not None
            reason = f"{p.cause}; skipped {p.bytes} bytes, resumed at offset {p.resume_offset} (seq {p.seq})"
            if p.seq > p.expected_seq:
                reason += f"; {_seq_range(p.expected_seq, p.seq - 1)} lost"
        return Problem("damaged", SEVERITY_CORRUPT, target, p.path, p.offset, reason, bytes=p.bytes,
                       resume_offset=p.resume_offset)
    return Problem(p.kind.value, SEVERITY_CORRUPT, target, p.path, p.offset, p.cause, bytes=p.bytes)


def _frame_record(target: WalTarget, frame: WalFrame, header: WalHeader, view: memoryview,
                  decode: bool) -> FrameRecord:
    strategy = header.strategy
    record = FrameRecord(target, header.path, frame.offset, frame.seq, frame.op_code, frame.flags,
                         frame.schema_version, wal_codec.STRATEGY_NAMES.get(strategy) if strategy is not None else None,
                         frame.body_len, frame.raw_len)
    if decode and strategy is not None:
        try:
            record.op = wal_reader.decode_frame(strategy, frame, view)
        except Exception as exc:  # any failure of a checksummed body is reported, never raised
            record.error = f"undecodable body: {type(exc).__name__}: {exc}"
    return record


def iter_wal(target: WalTarget, selection: FrameFilter | None = None, *, decode: bool = True) -> Iterator[Event]:
    """Every file, wanted frame and problem of one collection's WAL, in log order. Read-only.

    With a ``selection`` that bounds seqs, files entirely outside the range are
    not read (and seq continuity is not checked across them).
    """
    selection = selection or FrameFilter()
    files = wal_reader.segment_files(target.wal_dir)
    if not files:
        checkpoint = target.checkpoint_seq
        if checkpoint:
            yield Problem("missing", SEVERITY_CORRUPT, target, target.wal_dir, 0,
                          f"no WAL files, but the manifest checkpoint is at seq {checkpoint}: the next open "
                          "would restart the log at seq 1")
        else:
            where = "no WAL directory" if not target.wal_dir.is_dir() else "no WAL files"
            yield Problem("missing", SEVERITY_NOTE, target, target.wal_dir, 0,
                          f"{where} (the next open starts an empty log)")
        return
    expected: int | None = None
    for index, (name_seq, path) in enumerate(files):
        is_last = index == len(files) - 1
        next_first = None if is_last else files[index + 1][0]
        if not selection.overlaps(name_seq, None if next_first is None else next_first - 1):
            expected = None
            continue
        if index == 0 and target.checkpoint_seq is not None and name_seq > target.checkpoint_seq + 1:
            # A live daemon may have flushed (manifest first, then old files deleted) since it was read.
            checkpoint = _checkpoint(target.wal_dir.parent, [])
            if checkpoint is not None and name_seq > checkpoint + 1:
                yield Problem("seq_gap", SEVERITY_CORRUPT, target, path, 0,
                              f"the manifest checkpoint is at seq {checkpoint} but the log starts at seq "
                              f"{name_seq}: {_seq_range(checkpoint + 1, name_seq - 1)} missing")
        if expected is not None and (gap := wal_reader.file_gap(path, name_seq, expected)) is not None:
            yield _problem(target, gap)
        try:
            data, items = _read_file(path, name_seq, is_last)
        except FileNotFoundError:
            yield Problem("vanished", SEVERITY_NOTE, target, path, 0,
                          "file removed while reading (a checkpoint of a running daemon)")
            expected = None
            continue
        except OSError as exc:
            yield Problem("unreadable", SEVERITY_CORRUPT, target, path, 0, f"cannot read: {exc}")
            expected = None
            continue
        header = items[0]
        assert isinstance(header, WalHeader)
        yield FileStart(target, path, name_seq, header.size,
                        wal_codec.STRATEGY_NAMES.get(header.strategy) if header.strategy is not None else None,
                        header.version)
        view = memoryview(data)
        for item in items[1:]:
            if isinstance(item, WalProblem):
                yield _problem(target, item)
                continue
            assert isinstance(item, WalFrames)
            for frame in item.frames:
                if selection.wants(frame.seq, frame.op_code):
                    yield _frame_record(target, frame, header, view, decode)
        expected = wal_reader.next_seq(items, name_seq)


def _read_file(path: Path, name_seq: int, is_last: bool) -> tuple[bytes, list[WalItem]]:
    """The bytes of one file and what the reader finds in them, read again while the last file looks torn."""
    for pause in (*_REREAD_PAUSES, None):
        with open(path, "rb") as f:
            data = f.read()
        items = list(wal_reader.read_file(path, data, name_seq, is_last=is_last))
        torn = any(isinstance(item, WalProblem) and item.kind.recoverable for item in items)
        if not torn or pause is None:
            break
        if os.stat(path).st_size <= len(data):
            time.sleep(pause)
    return data, items


def iter_targets(targets: Iterable[WalTarget], selection: FrameFilter | None = None, *,
                 decode: bool = True) -> Iterator[Event]:
    for target in targets:
        yield from iter_wal(target, selection, decode=decode)


# ---------------------------------------------------------------- verify


def frame_problem(frame: FrameRecord) -> Problem | None:
    """The damage an undecodable frame stands for (None for a frame that decoded or was not decoded)."""
    if frame.error is None:
        return None
    return Problem("damaged", SEVERITY_CORRUPT, frame.target, frame.path, frame.offset, frame.error,
                   bytes=frame.frame_size, seq=frame.seq, resume_offset=frame.offset + frame.frame_size)


@dataclass(slots=True)
class WalSummary:
    target: WalTarget
    files: int = 0
    frames: int = 0
    bytes: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        severities = {p.severity for p in self.problems}
        if SEVERITY_CORRUPT in severities:
            return VERDICT_CORRUPT
        if SEVERITY_TORN in severities:
            return VERDICT_TORN
        return VERDICT_CLEAN

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def verify_wal(target: WalTarget) -> WalSummary:
    """Check one collection's WAL: headers, checksums, frame boundaries, seq continuity, frame bodies."""
    summary = WalSummary(target)
    for event in iter_wal(target):
        if isinstance(event, FileStart):
            summary.files += 1
            summary.bytes += event.size
        elif isinstance(event, FrameRecord):
            summary.frames += 1
            if summary.first_seq is None:
                summary.first_seq = event.seq
            summary.last_seq = event.seq
            problem = frame_problem(event)
            if problem is not None:
                summary.problems.append(problem)
        else:
            summary.problems.append(event)
    return summary


def exit_code(summaries: Iterable[WalSummary]) -> int:
    """0 clean, 3 torn tail only, 4 corruption: the worst of ``summaries``."""
    return max((s.exit_code for s in summaries), default=EXIT_CLEAN)


# ---------------------------------------------------------------- JSON records (``wal dump --format jsonl``)

FRAME_KEYS = ("type", "collection", "collection_uuid", "file", "offset", "seq", "op", "op_code", "upsert",
              "schema_version", "strategy", "compression", "stored_size", "raw_size", "records", "ids")
FULL_KEYS = ("vectors", "metadata", "replace", "timestamps")
PROBLEM_KEYS = ("type", "collection", "collection_uuid", "file", "offset", "seq", "reason", "bytes",
                "resume_offset")


def _where(target: WalTarget, path: Path) -> dict[str, Any]:
    return {"collection": target.name, "collection_uuid": target.uuid, "file": path.name}


def frame_json(frame: FrameRecord, full: bool = False) -> dict[str, Any]:
    """The jsonl record of a frame (keys FRAME_KEYS, plus FULL_KEYS with ``full``), or of its damage."""
    problem = frame_problem(frame)
    if problem is not None:
        return problem_json(problem)
    ids = frame.ids
    out: dict[str, Any] = {
        "type": "frame", **_where(frame.target, frame.path), "offset": frame.offset, "seq": frame.seq,
        "op": frame.op_name, "op_code": frame.op_code, "upsert": frame.upsert,
        "schema_version": frame.schema_version, "strategy": frame.strategy, "compression": frame.compression,
        "stored_size": frame.stored_size, "raw_size": frame.raw_size,
        "records": None if ids is None else len(ids), "ids": ids,
    }
    if full:
        out.update(dict.fromkeys(FULL_KEYS))
        op = frame.op
        if isinstance(op, InsertOp):
            out["vectors"] = [[float(x) for x in row] for row in op.vectors]
            out["metadata"] = list(op.metadata)
            out["timestamps"] = [int(t) for t in op.timestamps]
        elif isinstance(op, UpdateOp):
            out["metadata"] = [patch.metadata for patch in op.updates]
            out["replace"] = [bool(patch.replace) for patch in op.updates]
            out["timestamps"] = [int(op.timestamp)] * len(op.updates)
    return out


def problem_json(problem: Problem) -> dict[str, Any]:
    """The jsonl record of a problem (keys PROBLEM_KEYS); ``type`` is the problem's kind."""
    return {
        "type": problem.kind, **_where(problem.target, problem.path), "offset": problem.offset,
        "seq": problem.seq, "reason": problem.reason, "bytes": problem.bytes,
        "resume_offset": problem.resume_offset,
    }
