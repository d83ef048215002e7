"""The README's examples run as written (against a real daemon / a temporary data directory)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _daemon import Daemon

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python example under {heading!r}"
    return match.group(1)


def test_daemon_example_runs(tmp_path: Path) -> None:
    code = _block_after("## Using the daemon from Python")
    with Daemon(tmp_path / "data") as daemon:
        exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})


def test_asyncio_example_runs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = _block_after("### From asyncio")
    with Daemon(tmp_path / "data") as daemon:
        exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})
    assert capsys.readouterr().out.split() == ["a", "2"]


def test_in_process_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("## In-process use"), "README", "exec"), {})
    assert os.path.isdir(tmp_path / "data")
    assert capsys.readouterr().out.strip()
