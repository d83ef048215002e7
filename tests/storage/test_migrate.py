"""The committed v1 data directory, read by the current code forever; ``proximadb migrate`` to v2."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import child_env, dump_in_fresh_process
from click.testing import CliRunner

from proximadb.cli.main import cli
from proximadb.storage.engine import Engine
from proximadb.storage.lockfile import DataDirLock
from proximadb.tools import migrate as tool

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v1_datadir"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def v1_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", dst)
    return dst


def _content(engine: Engine) -> dict[str, dict[str, Any]]:
    out = {}
    for info in engine.list_collections():
        col = engine.collection(info["name"])
        page, cursor = col.scroll(limit=1000, include_vectors=True)
        assert cursor is None and col.count() == len(page)
        out[info["name"]] = {
            r["id"]: {"vector": [float(x) for x in r["vector"]], "metadata": r["metadata"], "timestamp": r["timestamp"]}
            for r in page
        }
    return out


def _without_timestamps(expected: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c: {i: {"vector": r["vector"], "metadata": r["metadata"]} for i, r in recs.items()}
            for c, recs in expected.items()}


def _assert_same(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    """``got == expected``, except that a vector component may differ by a float32 rounding step or two:
    cosine rows replayed from the WAL are normalised by the current code, in float64
    (``distance.normalize_rows``), where the v1 code divided by a float32 norm."""
    assert {c: sorted(records) for c, records in got.items()} == {c: sorted(records) for c, records in expected.items()}
    for name, records in expected.items():
        for id_, want in records.items():
            have = got[name][id_]
            assert {k: v for k, v in have.items() if k != "vector"} == {k: v for k, v in want.items() if k != "vector"}
            np.testing.assert_allclose(have["vector"], want["vector"], rtol=2**-22, atol=0, err_msg=f"{name}/{id_}")


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _versions(data_dir: Path) -> tuple[set[int], set[int]]:
    plan = tool.plan(data_dir)
    with Engine.open(data_dir) as engine:
        segs = {s.schema_version for c in engine.list_collections() for s in engine.collection(c["name"]).segments}
        cats = {engine.get_collection(c["name"])["schema_version"] for c in engine.list_collections()}
    assert not plan.pending or cats != {4}
    return cats, segs


def test_fixture_is_small_and_v1() -> None:
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 200_000
    plan = tool.plan(FIXTURE / "data")  # reads only
    assert {c.name: c.catalog_version for c in plan.collections} == {"alpha": 1, "beta": 1}
    assert all(len(c.segments) == 2 and c.wal_old_frames == 4 for c in plan.collections)


def test_current_code_reads_the_v1_fixture(v1_dir: Path) -> None:
    with Engine.open(v1_dir) as engine:
        _assert_same(_content(engine), EXPECTED)
        assert {s.schema_version for s in engine.collection("alpha").segments} == {1}


def test_v1_fixture_then_v2_writes_then_reopen(v1_dir: Path) -> None:
    with Engine.open(v1_dir, wal_strategy="binary", wal_compression="lz4") as engine:
        col = engine.collection("beta")
        col.insert([{"id": "new", "vector": [1.0, 0.0, 0.0], "expires_at": 4_000_000_000_000_000}])
        col.delete(["b000"])
    with Engine.open(v1_dir) as engine:
        col = engine.collection("beta")
        assert col.get("new")["expires_at"] == 4_000_000_000_000_000 and col.get("b000") is None
        assert col.count() == len(EXPECTED["beta"])


def test_dry_run_writes_nothing(v1_dir: Path) -> None:
    before = _checksums(v1_dir)
    result = CliRunner().invoke(cli, ["migrate", str(v1_dir), "--to-schema-version", "4", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "alpha: catalog v1 -> v4; 2 of 2 segment(s) to rewrite (18 rows" in result.output
    assert "dry run: 2 collection(s), 4 segment(s), 36 rows" in result.output
    assert _checksums(v1_dir) == before
    assert not (v1_dir / "LOCK").exists()


@pytest.mark.parametrize("chunk", [[], ["--chunk-rows", "1"]])  # the rewrite streams; here a row at a time
def test_migrate_fixture_to_v2(v1_dir: Path, chunk: list[str]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate", str(v1_dir), "--to-schema-version", "4", *chunk])
    assert result.exit_code == 0, result.output
    assert "migrated 2 collection(s) to schema version 4" in result.output
    assert "(100%)" in result.output and "rows/s" in result.output
    assert _versions(v1_dir) == ({4}, {4})
    with Engine.open(v1_dir) as engine:
        _assert_same(_content(engine), EXPECTED)
    _assert_same(dump_in_fresh_process(v1_dir), _without_timestamps(EXPECTED))
    # idempotent
    before = _checksums(v1_dir)
    again = runner.invoke(cli, ["migrate", str(v1_dir), "--to-schema-version", "4"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {k: v for k, v in _checksums(v1_dir).items() if k != "LOCK"} == \
        {k: v for k, v in before.items() if k != "LOCK"}


def test_migrate_refuses_a_locked_dir_and_bad_versions(v1_dir: Path) -> None:
    lock = DataDirLock(v1_dir)
    lock.acquire()
    try:
        result = CliRunner().invoke(cli, ["migrate", str(v1_dir)])
        assert result.exit_code == 1 and "in use" in result.output and "Stop the daemon" in result.output
    finally:
        lock.release()
    for bad in ("5", "3", "2", "1"):
        result = CliRunner().invoke(cli, ["migrate", str(v1_dir), "--to-schema-version", bad])
        assert result.exit_code == 1, result.output
    result = CliRunner().invoke(cli, ["migrate", str(v1_dir.parent / "nope")])
    assert result.exit_code == 1 and "not a ProximaDB data directory" in result.output


CRASH_SCRIPT = r"""
import os, sys
from proximadb.storage import manifest, segment, segment_rewrite
from proximadb.tools import migrate
target, nth = sys.argv[2], int(sys.argv[3])
calls = {"n": 0}
def crashing(orig):
    def wrapper(*a, **k):
        calls["n"] += 1
        if calls["n"] == nth:
            os._exit(9)
        out = orig(*a, **k)
        return out
    return wrapper
if target == "write_segment":
    segment_rewrite.write_segment = crashing(segment_rewrite.write_segment)  # every segment rewrite builds here
elif target == "manifest_save":
    manifest.Manifest.save = crashing(manifest.Manifest.save)
elif target == "rmtree":  # removing a replaced segment directory (storage/intents.py)
    import shutil
    shutil.rmtree = crashing(shutil.rmtree)
migrate.migrate(sys.argv[1])
"""


@pytest.mark.parametrize(("where", "nth"), [("write_segment", 1), ("write_segment", 3), ("manifest_save", 2),
                                            ("manifest_save", 5), ("rmtree", 1), ("rmtree", 4)])
def test_interrupted_migration_keeps_all_data(v1_dir: Path, where: str, nth: int) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(v1_dir), where, str(nth)],
                          env=child_env(), cwd=str(v1_dir.parent), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    _assert_same(dump_in_fresh_process(v1_dir), _without_timestamps(EXPECTED))
    with Engine.open(v1_dir) as engine:
        _assert_same(_content(engine), EXPECTED)
    tool.migrate(v1_dir)  # finishing the job
    assert _versions(v1_dir) == ({4}, {4})
    _assert_same(dump_in_fresh_process(v1_dir), _without_timestamps(EXPECTED))
