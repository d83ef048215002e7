"""Start-up never trades a lost metadata file for lost data (issue 15).

A real daemon over a real data directory:

* a missing ``catalog.pxdb`` or ``MANIFEST`` next to existing data, a segment
  directory the manifest names but that is gone, a read-only data directory:
  the daemon refuses to start with one line naming the file and what to do,
  and changes nothing;
* what an interrupted flush, compaction or delete left behind is removed only
  when the crash is proven (a temporary name, a PENDING marker written before
  the operation, or the committed catalog/manifest naming what it dropped);
  anything else goes to a ``quarantine/`` folder with an ERROR, never deleted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def test_missing_catalog_refuses_to_start_and_deletes_no_collection(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uuid = _build(data)
    saved = tmp_path / "catalog.pxdb.saved"
    (data / "catalog.pxdb").rename(saved)
    before = _files(data / "collections")
    _, line = _refused(data)
    assert str(data / "catalog.pxdb") in line and "missing" in line and "backup" in line, line
    assert uuid in line
    assert _files(data / "collections") == before  # nothing deleted or moved
    assert not (data / "catalog.pxdb").exists()  # and no empty catalog written in its place
    saved.rename(data / "catalog.pxdb")
    with Daemon(data) as again:
        assert _count(again, "docs") == 4 * ROWS_PER_SEGMENT


def test_missing_manifest_refuses_to_start_and_deletes_no_segment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uuid = _build(data)
    manifest = data / "collections" / uuid / "MANIFEST"
    saved = tmp_path / "MANIFEST.saved"
    manifest.rename(saved)
    before = _files(data / "collections")
    _, line = _refused(data)
    assert str(manifest) in line and "missing" in line and "backup" in line, line
    assert "4 segment" in line
    assert _files(data / "collections") == before
    saved.rename(manifest)
    with Daemon(data) as again:
        assert _count(again, "docs") == 4 * ROWS_PER_SEGMENT


def test_missing_segment_directory_is_a_one_line_refusal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uuid = _build(data)
    gone = data / "collections" / uuid / "segments" / "seg-00000002"
    shutil.rmtree(gone)
    before = _files(data / "collections")
    _, line = _refused(data)
    assert str(gone) in line and "MANIFEST" in line and "backup" in line, line
    assert "[Errno" not in line
    assert _files(data / "collections") == before


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


CRASH = r"""
import os, shutil, sys
import numpy as np
from proximadb.storage import catalog, manifest
from proximadb.storage.engine import Engine

where = sys.argv[2]
engine = Engine.open(sys.argv[1], auto_compact=False, fsync="always")
col = engine.collection("docs")

def die(*_a, **_k):
    os._exit(9)

if where == "flush":  # the new segment is written and renamed into place; the manifest swap never happens
    col.insert(ids=[f"late-{i}" for i in range(50)], vectors=np.ones((50, 8), np.float32))
    manifest.Manifest.save = die
    col.flush()
elif where == "compaction":  # the manifest swap happened; the merged inputs are not yet removed
    shutil.rmtree = die
    col.compact()
elif where == "delete":  # the catalog no longer has the collection; its directory is not yet removed
    shutil.rmtree = die
    engine.delete_collection(sys.argv[3])
elif where == "create":  # the collection's directory is made; the catalog never names it
    catalog.Catalog.save = die
    engine.create_collection(sys.argv[3], 8)
"""


def _crash(data: Path, where: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, str(data), where, *args], env=child_env(),
                          cwd=str(data.parent), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr


def test_unlisted_segment_is_quarantined_while_proven_crash_leftovers_go(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uuid = _build(data)
    col_dir = data / "collections" / uuid
    segments = col_dir / "segments"
    originals = [f"seg-0000000{i}" for i in range(1, 5)]
    _crash(data, "compaction")  # merges seg 1-4 into seg 5 and dies before removing 1-4
    assert all(any(p.name.startswith(o) for p in segments.iterdir()) for o in originals)
    _crash(data, "flush")  # its open removes seg 1-4; then a flush dies before its manifest swap
    assert not any(p.name.startswith(tuple(originals)) for p in segments.iterdir())
    assert not (col_dir / "quarantine").exists()
    (pending,) = [p for p in segments.iterdir() if p.name != "seg-00000005"]  # the crashed flush's directory
    # A segment directory nothing explains (e.g. put back by hand, or left next to an older MANIFEST).
    stray = segments / "seg-00000090"
    shutil.copytree(segments / "seg-00000005", stray)
    stray_files = _files(stray)
    with Daemon(data) as daemon:
        assert _count(daemon, "docs") == 4 * ROWS_PER_SEGMENT + 50  # the 50 rows of the failed flush: WAL
        logs = daemon.logs()
    # seg 6: the graceful stop flushed the 50 replayed rows (a new directory, not the crashed flush's)
    assert sorted(p.name for p in segments.iterdir()) == ["seg-00000005", "seg-00000006"]
    assert "flushed 50 rows into segment(s) [6]" in daemon.logs()
    assert not pending.exists() or not (pending / "PENDING").exists()  # removed (its name may be reused)
    quarantined = col_dir / "quarantine" / stray.name
    assert _files(quarantined) == stray_files  # moved aside whole, not deleted
    errors = [line for line in logs.splitlines() if " ERROR " in line and "quarantine" in line]
    assert len(errors) == 1, logs
    assert str(stray) in errors[0] and str(quarantined) in errors[0] and "MANIFEST" in errors[0], errors[0]


def test_unlisted_collection_dir_is_quarantined_while_interrupted_create_and_delete_finish(tmp_path: Path) -> None:
    data = tmp_path / "data"
    docs_uuid = _build(data, "docs", segments=1)
    gone_uuid = _build(data, "gone", segments=1)
    _crash(data, "delete", "gone")  # committed: "gone" is out of the catalog; its files are not yet removed
    root = data / "collections"
    assert any(p.name.startswith(gone_uuid) for p in root.iterdir())
    _crash(data, "create", "never")  # its open finishes the delete; then a create dies before the catalog save
    assert not any(p.name.startswith(gone_uuid) for p in root.iterdir())
    (half_made,) = [p for p in root.iterdir() if p.name != docs_uuid]
    # A collection directory the catalog does not name and nothing shows was deleted.
    stray = root / "0c4f8a52-1d3e-4f6a-9b7c-2e5d8f1a3b6c"
    shutil.copytree(root / docs_uuid, stray)
    stray_files = _files(stray)
    with Daemon(data) as daemon:
        assert [c["name"] for c in daemon.get_data("/collections")] == ["docs"]
        assert _count(daemon, "docs") == ROWS_PER_SEGMENT
        logs = daemon.logs()
    assert sorted(p.name for p in root.iterdir()) == [docs_uuid]
    assert not half_made.exists()
    assert sorted(p.name for p in (data / "quarantine").iterdir()) == [stray.name]
    quarantined = data / "quarantine" / stray.name
    assert _files(quarantined) == stray_files
    errors = [line for line in logs.splitlines() if " ERROR " in line and "quarantine" in line]
    assert len(errors) == 1, logs
    assert str(stray) in errors[0] and "catalog.pxdb" in errors[0], errors[0]
