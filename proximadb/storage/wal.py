"""The write-ahead log of one collection: segment files, group commit, recovery.

Byte layout of files and frames: ``wal_io.pyx``; frame bodies: ``wal_codec.py``.

Invariants the code keeps:

* Seqs are consecutive across the whole log; file ``wal-<N>.log`` holds seqs
  ``N .. next_file_first_seq - 1`` and every file but the last holds at least
  one frame. Only the last (active) file is written.
* Only the active file can hold data that is not yet durable: rotation makes
  the old file durable before the new one is used, so one fdatasync of the
  active file covers every frame written so far.
* A new file's header is made durable, and the directory fsynced, before the
  file receives frames; a checkpoint creates the new file before it deletes
  old ones, so the first surviving file always carries the next seq.
* Any failed write or fsync stops the log (fail-stop): after an fsync error the
  kernel may have dropped the dirty pages, so nothing written since can be
  trusted as durable. Every later call raises StorageError until a restart,
  whose recovery sees what really reached the disk. One exception: ENOSPC on
  a write (or on creating the next file) raises DiskFullError after cutting
  the file back to its last whole frame; that frame was never acknowledged and
  nothing else changed, so the log stays usable and writes succeed again once
  space is freed. ENOSPC or EIO from fdatasync still stops the log (restart
  required: Postgres's "fsyncgate" lesson).

Recovery: :meth:`WriteAheadLog.open` cuts a torn tail and rewrites a torn
header of the last file, logging both, and refuses every other problem with
CorruptionError naming file and offset; :meth:`replay` refuses every problem
in the files it reads. What is torn and what is damage: ``wal_reader.py``;
what recovery does about each: ``wal_recovery.py``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lz4.block

from proximadb.errors import CorruptionError, DiskFullError, EngineClosedError, StorageError
from proximadb.storage import wal_codec, wal_io, wal_recovery
from proximadb.storage.docfile import fsync_dir
from proximadb.storage.fsync_policy import FsyncPolicy
from proximadb.storage.operations import Operation
from proximadb.storage.wal_reader import FILE_NAME as FILE_NAME  # re-exported: tools.backup lists segments with it
from proximadb.storage.wal_reader import ProblemKind, segment_files, segment_name

log = logging.getLogger("proximadb.wal")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# With lz4 on, bodies up to this many bytes are stored as they are: LZ4 saves little on so few bytes and
# every try costs a compress call per frame. A larger body is stored compressed only when that is smaller.
LZ4_MIN_RAW_BYTES = 64


def _fdatasync(fd: int) -> None:
    """os.fdatasync (releases the GIL); a module function so tests can inject failures."""
    os.fdatasync(fd)


@dataclass(frozen=True, slots=True)
class WalStats:
    bytes_written: int
    frames_written: int
    fsync_count: int
    fsync_seconds: float
    rotations: int
    last_seq: int
    durable_seq: int


@dataclass(slots=True)
class _Segment:
    path: Path
    first_seq: int
    strategy: int
    size: int = 0  # bytes, header included (known for the active file only)
    frames: int = 0  # frames in the active file
    fd: int = -1
    pins: int = 0  # syncs in flight on fd
    retired: bool = False


class WriteAheadLog:
    """Append-only, checksummed log of operations for one collection.

    Use :meth:`open`; consume :meth:`replay` before the first write. ``write`` /
    ``append`` / ``wait_durable`` are thread-safe.
    """

    def __init__(self, directory: Path, strategy: int, compress: bool, policy: FsyncPolicy,
                 segment_bytes: int) -> None:
        self._dir = directory
        self._strategy = strategy
        self._compress = compress
        self._policy = policy
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._last_seq = 0
        self._write_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        # guarded by _cond
        self._written_seq = 0
        self._durable_seq = 0
        self._syncing = False
        self._failure: str | None = None
        self._closed = False
        self._fsync_count = 0
        self._fsync_seconds = 0.0
        # guarded by _write_lock
        self._bytes_written = 0
        self._frames_written = 0
        self._rotations = 0
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

    # ------------------------------------------------------------ open / recovery

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, strategy: str = "avro", compression: str = "none",
             fsync: str | FsyncPolicy = "always", segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             first_seq: int = 1) -> WriteAheadLog:
        """Open (creating if needed) the WAL in ``directory``, repairing a torn tail.

        ``first_seq``: the seq an empty log starts at (the owner's checkpoint + 1), so that new
        frames are never numbered at or below a checkpoint and skipped by the next replay. A log
        whose directory is missing while ``first_seq`` > 1 is refused: frames after the
        checkpoint may have been in it.

        Raises CorruptionError for damage that is not a torn tail, StorageError on I/O errors.
        """
        if compression not in ("none", "lz4"):
            raise ValueError(f"unknown WAL compression {compression!r} (known: none, lz4)")
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        wal = cls(Path(directory), wal_codec.strategy_code(strategy), compression == "lz4",
                  FsyncPolicy.parse(fsync), segment_bytes)
        try:
            wal._recover(first_seq)
        except OSError as exc:
            wal._close_fds()
            raise StorageError(f"cannot open WAL in {directory}: {exc}") from exc
        except BaseException:
            wal._close_fds()
            raise
        if wal._policy.mode == "interval":
            wal._syncer = threading.Thread(target=wal._interval_loop, name=f"wal-sync:{wal._dir.name}",
                                           daemon=True)
            wal._syncer.start()
        return wal

    def _recover(self, first_seq: int) -> None:
        if not self._dir.is_dir():
            if first_seq > 1:
                raise CorruptionError(
                    f"WAL directory {self._dir} is missing, and the manifest's checkpoint is at seq {first_seq - 1}: "
                    f"writes after it may be lost; restore the directory from a backup (or, if you know it held "
                    f"nothing after the checkpoint, create it empty: mkdir {self._dir})")
            self._dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self._dir.parent)
        found = segment_files(self._dir)
        for first_seq, path in found[:-1]:
            self._segments.append(_Segment(path, first_seq, wal_recovery.earlier_file_strategy(path, first_seq)))
        if found:
            first_seq, path = found[-1]
            active = self._recover_last(path, first_seq)
            self._segments.append(active)
            self._last_seq = active.first_seq + active.frames - 1
            active.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._active = active
            # What replay hands to the engine must be on disk before newer writes are acknowledged.
            self._timed_sync(active.fd)
            if active.strategy != self._strategy:
                if active.frames:
                    self._rotate_locked()
                else:
                    self._rewrite_header(active)
        else:
            self._active = self._create_segment(max(first_seq, 1))
            self._segments.append(self._active)
            self._last_seq = self._active.first_seq - 1
        self._written_seq = self._durable_seq = self._last_seq
        log.info("WAL %s open: %d file(s), last seq %d, strategy %s, fsync %s",
                 self._dir, len(self._segments), self._last_seq,
                 wal_codec.STRATEGY_NAMES[self._strategy], self._policy)

    def _recover_last(self, path: Path, first_seq: int) -> _Segment:
        """Open the last file: rewrite a torn header, cut a torn tail (both logged); refuse anything else."""
        data = path.read_bytes()
        strategy, frames, repair = wal_recovery.check_last_file(path, data, first_seq)
        if repair is None:
            assert strategy is not None
            return _Segment(path, first_seq, strategy, size=len(data), frames=frames)
        if repair.kind is ProblemKind.TORN_HEADER:  # a crash while the file was created: it never held a frame
            log.warning("WAL file %s: torn file header (%d bytes), rewriting it: %s", path, repair.bytes, repair.cause)
            seg = _Segment(path, first_seq, self._strategy)
            self._rewrite_header(seg)
            return seg
        assert strategy is not None and repair.expected_seq is not None
        log.warning("WAL file %s: cutting torn tail at offset %d (%s): %d bytes removed, last seq %d",
                    path, repair.offset, repair.cause, repair.bytes, repair.expected_seq - 1)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, repair.offset)
            _fdatasync(fd)
        finally:
            os.close(fd)
        return _Segment(path, first_seq, strategy, size=repair.offset, frames=frames)

    # ------------------------------------------------------------ files

    def _create_segment(self, first_seq: int) -> _Segment:
        path = self._dir / segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self._write_all(fd, wal_io.encode_file_header(self._strategy, 0, first_seq))
            self._timed_sync(fd)
            fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        return _Segment(path, first_seq, self._strategy, size=wal_io.FILE_HEADER_SIZE, fd=fd)

    def _rewrite_header(self, seg: _Segment) -> None:
        """Give a file without frames a fresh header of the configured strategy."""
        fd = os.open(seg.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            self._write_all(fd, wal_io.encode_file_header(self._strategy, 0, seg.first_seq))
            self._timed_sync(fd)
        finally:
            os.close(fd)
        seg.strategy = self._strategy
        seg.size = wal_io.FILE_HEADER_SIZE
        seg.frames = 0

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def _timed_sync(self, fd: int) -> None:
        start = time.perf_counter()
        _fdatasync(fd)
        with self._cond:
            self._fsync_count += 1
            self._fsync_seconds += time.perf_counter() - start

    def _close_fds(self) -> None:
        for seg in self._segments:
            if seg.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(seg.fd)
                seg.fd = -1
        if self._active is not None and self._active.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._active.fd)
            self._active.fd = -1

    # ------------------------------------------------------------ replay

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, Operation]]:
        """Yield ``(seq, op)`` for every logged operation with seq > ``after_seq``, in order.

        Files whose frames are all <= after_seq are not read. Raises
        CorruptionError (file and offset) on any problem the reader reports, a
        torn tail included (open has cut it already); must be consumed before
        the first write.
        """
        segments = list(self._segments)
        if segments and segments[0].first_seq > after_seq + 1:
            raise CorruptionError(
                f"WAL {self._dir} starts at seq {segments[0].first_seq}, but replay must start after seq "
                f"{after_seq} (the manifest's checkpoint): frames {after_seq + 1}..{segments[0].first_seq - 1} are "
                f"missing, so a WAL file was removed or the MANIFEST is an older copy; restore the collection "
                f"directory from a backup")
        for i, seg in enumerate(segments):
            is_last = i == len(segments) - 1
            continues_at = self._last_seq + 1 if is_last else segments[i + 1].first_seq
            if continues_at - 1 <= after_seq:
                continue
            yield from self._replay_file(seg, continues_at, after_seq, seg.size if is_last else -1)

    def _replay_file(self, seg: _Segment, continues_at: int, after_seq: int,
                     size: int) -> Iterator[tuple[int, Operation]]:
        path = seg.path
        try:
            with open(path, "rb") as f:
                data = f.read() if size < 0 else f.read(size)
        except OSError as exc:
            raise StorageError(f"cannot read WAL file {path}: {exc}") from exc
        yield from wal_recovery.replay_file(path, data, seg.first_seq, is_last=size >= 0, continues_at=continues_at,
                                            after_seq=after_seq)

    # ------------------------------------------------------------ write path

    @property
    def last_seq(self) -> int:
        """Seq of the last frame handed to the OS (0 for an empty log)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every frame up to this seq is known to be on disk."""
        return self._durable_seq

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def strategy(self) -> str:
        return wal_codec.STRATEGY_NAMES[self._strategy]

    @property
    def fsync_policy(self) -> FsyncPolicy:
        return self._policy

    def write(self, op: Operation, payload: bytes | memoryview | None = None) -> int:
        """Log ``op`` (avro strategy: store ``payload`` as-is when given); returns its seq.

        The frame is handed to the OS, not yet durable: see :meth:`wait_durable`.
        """
        enc = wal_codec.encode(self._strategy, op, payload)
        parts: list[Any] = enc.parts
        flags = enc.flags
        raw_len = sum(memoryview(p).nbytes for p in parts)
        if self._compress and raw_len > LZ4_MIN_RAW_BYTES:
            joined = b"".join(parts)
            packed = lz4.block.compress(joined, store_size=False)
            if len(packed) < raw_len:
                parts = [packed]
                flags |= wal_io.FLAG_LZ4
        with self._write_lock:
            self._check_writable()
            seg = self._active
            assert seg is not None
            if seg.frames and seg.size >= self._segment_bytes:
                self._rotate_locked()
                seg = self._active
                assert seg is not None
            seq = self._last_seq + 1
            try:
                n = wal_io.write_frame(seg.fd, seq, enc.op_code, flags, enc.schema_version, raw_len, parts)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise self._refuse_disk_full(seg, seq, exc) from exc
                raise self._fail(f"write of seq {seq} to {seg.path} failed: {exc}") from exc
            self._last_seq = seq
            seg.size += n
            seg.frames += 1
            self._bytes_written += n
            self._frames_written += 1
            with self._cond:
                self._written_seq = seq
        return seq

    def wait_durable(self, seq: int) -> None:
        """Return once frame ``seq`` is as durable as the fsync policy promises.

        ``always``: after an fdatasync that began after the frame was written;
        concurrent callers share one fdatasync (group commit). ``interval`` and
        ``never``: at once. Raises StorageError when the log has failed.
        """
        if self._policy.mode != "always":
            if self._failure is not None:
                raise StorageError(self._failure)
            return
        self._wait_synced(seq)

    def append(self, op: Operation, payload: bytes | memoryview | None = None) -> int:
        """:meth:`write` then :meth:`wait_durable`; returns the seq."""
        seq = self.write(op, payload)
        self.wait_durable(seq)
        return seq

    def sync(self) -> None:
        """Make every frame written so far durable, whatever the policy."""
        with self._cond:
            target = self._written_seq
        self._wait_synced(target)

    def _wait_synced(self, seq: int) -> None:
        with self._cond:
            while self._durable_seq < seq:
                if self._failure is not None:
                    raise StorageError(self._failure)
                if self._syncing:
                    self._cond.wait()
                else:
                    self._sync_round_locked()

    def _sync_round_locked(self) -> None:
        """One fdatasync of the active file covering every frame written so far.

        Called with ``_cond`` held and no round in flight; releases it during the
        fdatasync. Raises StorageError (and stops the log) when the sync fails.
        """
        seg = self._active
        assert seg is not None
        target = self._written_seq
        self._syncing = True
        seg.pins += 1
        self._cond.release()
        error: OSError | None = None
        start = time.perf_counter()
        try:
            _fdatasync(seg.fd)
        except OSError as exc:
            error = exc
        finally:
            elapsed = time.perf_counter() - start
            self._cond.acquire()
            seg.pins -= 1
            if seg.retired and seg.pins == 0 and seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
            self._syncing = False
            self._fsync_count += 1
            self._fsync_seconds += elapsed
            if error is None:
                self._durable_seq = max(self._durable_seq, target)
            self._cond.notify_all()
        if error is not None:
            raise self._fail_locked(f"fdatasync of {seg.path} failed: {error}") from error

    def _interval_loop(self) -> None:
        interval = self._policy.interval_ms / 1000.0
        while not self._stop.wait(interval):
            with self._cond:
                if self._failure is not None or self._closed:
                    return
                if self._durable_seq >= self._written_seq or self._syncing:
                    continue
                try:
                    self._sync_round_locked()
                except StorageError as exc:
                    log.error("WAL %s: background sync failed, log stopped: %s", self._dir, exc)
                    return

    def _refuse_disk_full(self, seg: _Segment, seq: int, exc: OSError) -> StorageError:
        """ENOSPC while appending seq: cut the file back to its last whole frame and stay usable.

        Nothing of the refused frame is kept (it was never acknowledged) and the frames
        before it are untouched, so the next write, once space is freed, simply retries.
        If the cut itself fails the log stops (fail-stop) as for any other I/O error.
        """
        try:
            os.ftruncate(seg.fd, seg.size)
        except OSError as cut:
            return self._fail(f"write of seq {seq} to {seg.path} failed: {exc}; cutting the partial frame "
                              f"failed too: {cut}")
        log.error("WAL %s: disk full, write of seq %d refused (nothing kept): %s", self._dir, seq, exc)
        return DiskFullError(f"disk full: WAL {self._dir} cannot append (seq {seq} refused, nothing written): "
                             f"{exc.strerror}; free space and retry")

    def _check_writable(self) -> None:
        if self._closed:
            raise EngineClosedError(f"WAL {self._dir} is closed")
        if self._failure is not None:
            raise StorageError(self._failure)

    def _fail(self, reason: str) -> StorageError:
        with self._cond:
            return self._fail_locked(reason)

    def _fail_locked(self, reason: str) -> StorageError:
        if self._failure is None:
            self._failure = (f"WAL {self._dir} stopped after an I/O error and refuses further writes "
                             f"until restart: {reason}")
            log.error("%s", self._failure)
            self._cond.notify_all()
        return StorageError(self._failure)

    # ------------------------------------------------------------ rotation / checkpoint

    def rotate(self) -> None:
        """Start a new segment file (no-op when the active file holds no frame)."""
        with self._write_lock:
            self._check_writable()
            self._rotate_locked()

    def _rotate_locked(self) -> None:
        old = self._active
        assert old is not None
        if old.frames == 0:
            return
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._failure is not None:
                raise StorageError(self._failure)
            if self._durable_seq < self._written_seq:
                self._sync_round_locked()
        try:
            new = self._create_segment(self._last_seq + 1)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the old file stays active; no frame went anywhere
                with contextlib.suppress(OSError):
                    (self._dir / segment_name(self._last_seq + 1)).unlink()
                raise DiskFullError(f"disk full: WAL {self._dir} cannot start a new file for seq "
                                    f"{self._last_seq + 1}: {exc.strerror}; free space and retry") from exc
            raise self._fail(f"cannot create WAL file for seq {self._last_seq + 1}: {exc}") from exc
        with self._cond:
            self._active = new
            old.retired = True
            if old.pins == 0 and old.fd >= 0:
                os.close(old.fd)
                old.fd = -1
        self._segments.append(new)
        self._rotations += 1
        log.debug("WAL %s: rotated to %s", self._dir, new.path.name)

    def checkpoint(self, seq: int) -> list[Path]:
        """Delete the files whose frames all have seq <= ``seq``; returns the deleted paths.

        Rotates first when the active file is entirely covered, so it can go too.
        """
        removed: list[Path] = []
        with self._write_lock:
            self._check_writable()
            assert self._active is not None
            if self._active.frames and self._last_seq <= seq:
                self._rotate_locked()
            while len(self._segments) > 1 and self._segments[1].first_seq - 1 <= seq:
                seg = self._segments[0]
                try:
                    seg.path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(f"checkpoint cannot delete {seg.path}: {exc}") from exc
                self._segments.pop(0)
                removed.append(seg.path)
            if removed:
                try:
                    fsync_dir(self._dir)
                except OSError as exc:
                    raise StorageError(f"checkpoint cannot fsync {self._dir}: {exc}") from exc
                log.info("WAL %s: checkpoint at seq %d removed %d file(s)", self._dir, seq, len(removed))
        return removed

    def files(self) -> list[Path]:
        """Segment files, oldest first."""
        return [seg.path for seg in self._segments]

    # ------------------------------------------------------------ stats / close

    def stats(self) -> WalStats:
        with self._cond:
            return WalStats(
                bytes_written=self._bytes_written,
                frames_written=self._frames_written,
                fsync_count=self._fsync_count,
                fsync_seconds=self._fsync_seconds,
                rotations=self._rotations,
                last_seq=self._last_seq,
                durable_seq=self._durable_seq,
            )

    def close(self) -> None:
        """Final fdatasync and close. Idempotent; raises StorageError if the final sync fails."""
        if self._closed:
            return
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._write_lock:
            try:
                if self._failure is None:
                    self.sync()
            finally:
                with self._cond:
                    self._closed = True
                    while self._syncing:
                        self._cond.wait()
                self._close_fds()
                log.info("WAL %s closed at seq %d", self._dir, self._last_seq)

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
