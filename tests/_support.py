"""Helpers for tests that run real child processes against real data directories."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import proximadb

PACKAGE_PARENT = str(Path(proximadb.__file__).resolve().parent.parent)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports the same proximadb as this test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


DUMP_SCRIPT = r"""
import json, sys
from proximadb.storage.engine import Engine
opts = json.loads(sys.argv[2])
out = {}
with Engine.open(sys.argv[1], **opts) as engine:
    for info in engine.list_collections():
        col = engine.collection(info["name"])
        records, cursor = [], None
        while True:
            page, cursor = col.scroll(limit=500, cursor=cursor, include_vectors=True)
            records.extend(page)
            if cursor is None:
                break
        out[info["name"]] = {
            r["id"]: {"vector": [float(x) for x in r["vector"]], "metadata": r["metadata"]} for r in records
        }
        assert col.count() == len(records), (col.count(), len(records))
print(json.dumps(out))
"""


def dump_in_fresh_process(data_dir: Path, **options: Any) -> dict[str, dict[str, Any]]:
    """Open the data directory in a new process and return every live record per collection."""
    proc = subprocess.run(
        [sys.executable, "-c", DUMP_SCRIPT, str(data_dir), json.dumps(options)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=str(data_dir.parent),
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"dump process failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def rest_of_output(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Everything a killed child wrote after the lines already read with ``readline()``.

    Not ``communicate()``: it reads the raw pipe and silently drops what ``readline()`` had
    already buffered, which on a busy machine is many lines (acknowledgements, in crash tests).
    """
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=30)
    return out, err


@contextlib.contextmanager
def size_limited_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's syntax, e.g. "16m") at ``mnt``; skips the test without root or mount(8)."""
    import pytest

    mnt.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full test needs root and mount(8) to mount a size-limited tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def wait_until(what: str, check: Callable[[], object], deadline: float = 60.0) -> None:
    """Poll ``check()`` every 0.1 s until it is true; AssertionError naming ``what`` after ``deadline``
    seconds (generous: a condition another process or a server brings about, never a timing bet)."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:g}s")
        time.sleep(0.1)
