"""``proximadb compact``: offline, on a real data directory; refuses while the directory is in use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from _support import child_env
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


def test_compact_chunk_rows_streams_the_same_segment(tmp_path: Path) -> None:
    """--chunk-rows 1 writes the merged segment a row at a time: its vectors and ids are the same bytes as a
    default compaction's (meta.avro differs only by Avro's random sync marker: test_segment_stream.py pins it)."""
    for name in ("default", "one"):
        _make(tmp_path / name)
    assert CliRunner().invoke(cli, ["compact", str(tmp_path / "default")]).exit_code == 0
    result = CliRunner().invoke(cli, ["compact", str(tmp_path / "one"), "--chunk-rows", "1"])
    assert result.exit_code == 0 and "docs: 3 segment(s) -> 1, 300 rows -> 240" in result.output, result.output

    def files(root: Path) -> dict[str, bytes]:
        (seg,) = (root / "collections").glob("*/segments/seg-*")
        return {f: (seg / f).read_bytes() for f in ("vectors.f32", "ids.bin")}

    assert files(tmp_path / "one") == files(tmp_path / "default")
    bad = CliRunner().invoke(cli, ["compact", str(tmp_path / "one"), "--chunk-rows", "0"])
    assert bad.exit_code == 2 and "--chunk-rows" in bad.output


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


def _collections_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "collections").rglob("*") if p.is_file())


def test_compact_folds_the_wal_into_segments_first_and_reports_what_it_freed(tmp_path: Path) -> None:
    """Issue 15.9: half the rows deleted, the deletes (and half the rows) only in the WAL of a stopped daemon."""
    data = tmp_path / "d"
    n, dim = 8000, 64
    rng = np.random.default_rng(3)
    ids = [f"r{i:05d}" for i in range(n)]
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    # the daemon's default flush size: no flush by itself; no flush on close either (a daemon that was killed)
    with Engine.open(data, auto_compact=False, flush_on_close=False) as engine:
        engine.create_collection("big", dim, distance_metric="euclidean")
        col = engine.collection("big")
        col.insert(ids=ids[: n // 2], vectors=vectors[: n // 2])
        col.flush()  # the first half in a segment
        col.insert(ids=ids[n // 2 :], vectors=vectors[n // 2 :])  # the second half only in the WAL
        assert col.delete(ids[::2]) == n // 2  # every other row, in both halves: only in the WAL
    before = _collections_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "proximadb", "compact", str(data)], capture_output=True, text=True,
                          env=child_env(), cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    after = _collections_bytes(data)
    assert after < 0.6 * before, (before, after, proc.stdout)
    totals = re.search(r"data directory: ([\d,]+) bytes -> ([\d,]+) bytes, ([\d,]+) bytes freed", proc.stdout)
    assert totals is not None, proc.stdout
    reported = [int(g.replace(",", "")) for g in totals.groups()]
    assert reported == [before, after, before - after], (reported, before, after)
    assert "big: flushed 2 WAL operation(s) (2,000 live rows) into a segment, 2 segment(s) -> 1" in proc.stdout
    with Engine.open(data) as engine:
        col = engine.collection("big")
        assert col.count() == n // 2 and col.stats()["segments"] == 1 and col.stats()["memtable_rows"] == 0
        got = {r["id"]: r["vector"] for r in col.get_many(ids[1::2])}
        assert len(got) == n // 2 and not col.get_many(ids[::2])
        np.testing.assert_array_equal(np.stack([got[i] for i in ids[1::2]]), vectors[1::2])
