"""Start-up failures are one line that names the file and says what to do (issue 15).

A real daemon over a real data directory: a file of a segment that is gone, a
read-only data directory: the daemon exits non-zero with one line, no
traceback, and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon
from _support import child_env

from proximadb.storage.engine import Engine

DIM = 8
ROWS_PER_SEGMENT = 500


def _build(data: Path, name: str = "docs", segments: int = 4) -> str:
    """A collection of ``segments`` x 500 rows, one segment per flush; returns its uuid."""
    with Engine.open(data, auto_compact=False, fsync="never") as engine:
        engine.create_collection(name, DIM, distance_metric="euclidean")
        col = engine.collection(name)
        for b in range(segments):
            rng = np.random.default_rng(b)
            col.insert(ids=[f"{b}-{i}" for i in range(ROWS_PER_SEGMENT)],
                       vectors=rng.standard_normal((ROWS_PER_SEGMENT, DIM)).astype(np.float32))
            col.flush()
        assert len(col.segments) == segments
        return col.config.uuid


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(data: Path) -> tuple[Daemon, str]:
    """Start a daemon that must refuse: its exit code is non-zero; returns it and its one error line."""
    daemon = Daemon(data).start(wait=False)
    assert daemon.proc is not None
    deadline = time.monotonic() + 60
    while daemon.proc.poll() is None and time.monotonic() < deadline:
        if daemon.health() is not None:  # it started: the refusal did not happen
            daemon.stop()
            raise AssertionError(f"the daemon started instead of refusing:\n{daemon.logs()}")
        time.sleep(0.05)
    code = daemon.stop()  # waits for the exit (or stops it after the deadline); closes its log
    logs = daemon.logs()
    assert code != 0, logs
    assert "Traceback" not in logs, logs
    lines = [line for line in logs.splitlines() if "cannot start" in line]
    assert len(lines) == 1, logs
    return daemon, lines[0]


def _count(daemon: Daemon, name: str) -> int:
    info = daemon.get_data(f"/collections/{name}")
    assert info is not None, daemon.logs()
    return int(info["vector_count"])


def test_missing_file_of_a_segment_is_a_one_line_refusal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uuid = _build(data, segments=2)
    gone = data / "collections" / uuid / "segments" / "seg-00000002" / "ids.bin"
    gone.unlink()
    before = _files(data / "collections")
    _, line = _refused(data)
    assert str(gone) in line and "missing" in line and "backup" in line, line
    assert "[Errno" not in line
    assert _files(data / "collections") == before


def _read_only(path: Path) -> None:
    """Make ``path`` read-only for this process: a read-only bind mount as root (chmod binds no root)."""
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return
    if shutil.which("mount") is None:
        pytest.skip("running as root, where chmod does not stop writes, and mount(8) is missing")
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"running as root, where chmod does not stop writes, and no bind mount: {bind.stderr.strip()}")
    ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
    if ro.returncode != 0:
        subprocess.run(["umount", str(path)], check=False)
        pytest.skip(f"cannot remount the bind mount read-only: {ro.stderr.strip()}")


def _writable_again(path: Path) -> None:
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    else:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_data_directory_is_a_one_line_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _build(data, segments=1)
    before = _files(data)
    _read_only(data)
    try:
        daemon = Daemon(data)
        proc = subprocess.run(daemon.command(), capture_output=True, text=True, env=child_env(),
                              cwd=str(tmp_path), timeout=60)
    finally:
        _writable_again(data)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if str(data) in line and "LOCK" in line]
    assert len(errors) == 1, proc.stderr
    assert "read-only" in errors[0].lower() or "permission" in errors[0].lower(), errors[0]
    assert "writable" in errors[0], errors[0]
    assert _files(data) == before
