"""The committed v3 data directory (tests/fixtures/v3_datadir, written by the schema-v3 code of branch main)
with the current code: read as is, ``proximadb migrate`` to v4 (CLI and function) and reopened in a fresh
process with every record (vector, metadata, timestamp, expires_at, sparse vectors) and every vector, text
and sparse search answer unchanged; the migrated segments are v4 with no ``named/``, the collections declare
no named vectors (and cannot gain any), and a new collection with named vectors lives beside them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import child_env
from click.testing import CliRunner

from proximadb.cli.main import cli
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION as CURRENT
from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.storage.engine import Engine
from proximadb.tools import migrate as tool

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v3_datadir"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())

DUMP = r"""
import json, sys
from proximadb.storage.engine import Engine
expected = json.loads(sys.argv[2])
out = {"records": {}, "searches": {}, "text_searches": {}, "sparse_searches": {}, "versions": {}, "named": {}}
hits = lambda found: [[h["id"], h["score"]] for h in found]
with Engine.open(sys.argv[1], flush_on_close=False) as engine:
    for info in engine.list_collections():
        name = info["name"]
        col = engine.collection(name)
        page, cursor = col.scroll(limit=1000, include_vectors=True)
        assert cursor is None and col.count() == len(page)
        out["records"][name] = {r["id"]: {"vector": [float(x) for x in r["vector"]], "metadata": r["metadata"],
                                          "timestamp": r["timestamp"], "expires_at": r.get("expires_at"),
                                          "sparse_vectors": r.get("sparse_vectors")} for r in page}
        if name not in expected["searches"]:
            continue
        out["searches"][name] = [
            {"exact": hits(col.search(q["vector"], q["k"], filter=q["filter"], exact=True)),
             "default": hits(col.search(q["vector"], q["k"], filter=q["filter"]))}
            for q in expected["searches"][name]]
        out["text_searches"][name] = [hits(col.search_text(q["text"], q["k"])) for q in expected["text_searches"][name]]
        out["sparse_searches"][name] = [hits(col.search_sparse(q["name"], q["indices"], q["values"], k=q["k"]))
                                        for q in expected["sparse_searches"][name]]
        out["versions"][name] = [info["schema_version"], sorted({s.schema_version for s in col.segments})]
        out["named"][name] = [info["vectors"], sorted(str(p) for s in col.segments for p in s.path.glob("named"))]
print(json.dumps(out))
"""


def fresh_dump(data_dir: Path) -> dict[str, Any]:
    queries = {key: EXPECTED[key] for key in ("searches", "text_searches", "sparse_searches")}
    proc = subprocess.run([sys.executable, "-c", DUMP, str(data_dir), json.dumps(queries)], capture_output=True,
                          text=True, env=child_env(), cwd=str(data_dir.parent), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def same_ranking(got: list[list[Any]], want: list[list[Any]], where: str) -> None:
    """Equal scores in the same order; ids equal except among equal scores at the cut."""
    assert len(got) == len(want), (where, got, want)
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-7), (where, got, want)
    last = want[-1][1] if want else None
    groups: dict[float, tuple[set[str], set[str]]] = {}
    for (gid, _), (wid, w) in zip(got, want, strict=True):
        groups.setdefault(round(w, 5), (set(), set()))[0].add(gid)
        groups[round(w, 5)][1].add(wid)
    for key, (gids, wids) in groups.items():
        if last is None or key != round(last, 5):
            assert gids == wids, (where, got, want)


def check_unchanged(dump: dict[str, Any]) -> None:
    for name, want in EXPECTED["records"].items():
        have = dump["records"][name]
        assert sorted(have) == sorted(want), name
        for i, r in want.items():
            assert have[i] == r, (name, i, have[i], r)
        for n, q in enumerate(EXPECTED["searches"][name]):
            for how in ("exact", "default"):
                same_ranking(dump["searches"][name][n][how], q["hits"], f"{name} search {n} {how}")
        for n, q in enumerate(EXPECTED["text_searches"][name]):
            same_ranking(dump["text_searches"][name][n], q["hits"], f"{name} text {q['text']!r}")
        for n, q in enumerate(EXPECTED["sparse_searches"][name]):
            same_ranking(dump["sparse_searches"][name][n], q["hits"], f"{name} sparse {n}")
        assert dump["named"][name] == [{}, []], name  # no named vectors, no named/ directory


@pytest.fixture
def v3_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", dst)
    return dst


def test_fixture_is_small_and_v3() -> None:
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 250_000
    plan = tool.plan(FIXTURE / "data")  # reads only
    assert {c.name: c.catalog_version for c in plan.collections} == {"delta": 3, "gamma": 3}
    for c in plan.collections:
        assert [s.schema_version for s in c.segments] == [3, 3] and c.wal_old_frames == c.wal_frames == 4, c
    assert len(EXPECTED["records"]["gamma"]) == len(EXPECTED["records"]["delta"]) == 17
    assert any(r["sparse_vectors"] for r in EXPECTED["records"]["delta"].values())
    assert all(q["hits"] for q in EXPECTED["sparse_searches"]["delta"])


def test_current_code_reads_the_v3_fixture(v3_dir: Path) -> None:
    dump = fresh_dump(v3_dir)
    check_unchanged(dump)
    assert dump["versions"] == {"delta": [3, [3]], "gamma": [3, [3]]}  # the WAL replays into the memtable


@pytest.mark.parametrize("how", ["cli", "function"])
def test_migrate_v3_fixture_to_v4(v3_dir: Path, how: str) -> None:
    assert CURRENT == 4
    if how == "cli":
        result = CliRunner().invoke(cli, ["migrate", str(v3_dir), "--chunk-rows", "5"])
        assert result.exit_code == 0, result.output
        assert "migrated 2 collection(s) to schema version 4" in result.output, result.output
    else:
        done = tool.migrate(v3_dir)
        assert done.target == 4 and not done.already_current
    assert not tool.plan(v3_dir).pending
    dump = fresh_dump(v3_dir)
    assert dump["versions"] == {"delta": [4, [4]], "gamma": [4, [4]]}
    check_unchanged(dump)
    again = CliRunner().invoke(cli, ["migrate", str(v3_dir)])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output


def test_migrated_collections_have_no_named_vectors_and_a_new_one_does(v3_dir: Path) -> None:
    tool.migrate(v3_dir)
    rng = np.random.default_rng(5)
    title = rng.standard_normal((30, 5)).astype(np.float32)
    with Engine.open(v3_dir) as engine:
        gamma = engine.collection("gamma")
        assert gamma.named_dims == {}
        with pytest.raises(ValidationError, match="cannot be changed"):
            engine.update_collection("gamma", vectors={"title": {"dimension": 5}})
        with pytest.raises(ValidationError, match="declared: none"):
            gamma.search(np.ones(5), using="title")
        with pytest.raises(InvalidVectorError, match="named vector 'title' is not one of"):
            gamma.insert(ids=["x"], vectors=np.ones((1, 4)), named_vectors={"title": title[:1]})
        engine.create_collection("nv", 4, vectors={"title": {"dimension": 5, "distance_metric": "euclidean"}})
        nv = engine.collection("nv")
        nv.insert(ids=[f"n{i:02d}" for i in range(30)], vectors=rng.standard_normal((30, 4)).astype(np.float32),
                  named_vectors={"title": title})
        nv.flush()
    dump = fresh_dump(v3_dir)
    check_unchanged(dump)
    assert len(dump["records"]["nv"]) == 30
    with Engine.open(v3_dir) as engine:
        assert engine.collection("nv").search(title[12], k=1, using="title")[0]["id"] == "n12"
