"""``proximadb compact``: offline, on a real data directory; refuses while the directory is in use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from proximadb.cli.main import cli
from proximadb.storage.engine import Engine


def _make(data: Path) -> None:
    with Engine.open(data, auto_compact=False, fsync="never") as engine:
        engine.create_collection("docs", 8)
        col = engine.collection("docs")
        for b in range(3):
            col.insert(ids=[f"{b}-{i}" for i in range(100)],
                       vectors=np.random.default_rng(b).standard_normal((100, 8)).astype(np.float32))
            col.flush()
        col.delete([f"0-{i}" for i in range(60)])
        col.flush()
        engine.create_collection("empty", 4)


def test_compact_merges_and_reports(tmp_path: Path) -> None:
    _make(tmp_path / "d")
    result = CliRunner().invoke(cli, ["compact", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "docs: 3 segment(s) -> 1, 300 rows -> 240" in result.output
    assert "empty: nothing to compact" in result.output
    with Engine.open(tmp_path / "d") as engine:
        col = engine.collection("docs")
        assert col.count() == 240 and col.stats()["segments"] == 1
    again = CliRunner().invoke(cli, ["compact", str(tmp_path / "d"), "--collection", "docs"])
    assert again.exit_code == 0 and "docs: nothing to compact (1 segment(s))" in again.output


def test_compact_refuses_a_directory_in_use_and_bad_input(tmp_path: Path) -> None:
    _make(tmp_path / "d")
    with Engine.open(tmp_path / "d"):
        result = CliRunner().invoke(cli, ["compact", str(tmp_path / "d")])
        assert result.exit_code == 1
        assert "in use by process" in result.output and "/compact" in result.output
    missing = CliRunner().invoke(cli, ["compact", str(tmp_path / "d"), "--collection", "nope"])
    assert missing.exit_code == 1 and "'nope' does not exist" in missing.output
    not_data = CliRunner().invoke(cli, ["compact", str(tmp_path / "elsewhere")])
    assert not_data.exit_code == 1 and "not a ProximaDB data directory" in not_data.output
