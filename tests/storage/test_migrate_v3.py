"""The committed v2 data directory (tests/fixtures/v2_datadir, written by the schema-v2 code) with the current
code: read as is, ``proximadb migrate`` to v3 (CLI and function) and reopened in a fresh process with every
record (vector, metadata, timestamp, expires_at) and every vector and text search answer unchanged; after the
migration a collection declares sparse vectors (update_collection, add-only) and records carrying them are
written, flushed, replayed and searched (search_sparse equals a brute force); and sparse vectors declared and
written while the collection is still v2 survive a later migration.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import child_env
from click.testing import CliRunner

from proximadb.cli.main import cli
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION as CURRENT
from proximadb.storage.engine import Engine
from proximadb.tools import migrate as tool

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v2_datadir"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())

DUMP = r"""
import json, sys
from proximadb.storage.engine import Engine
queries = json.loads(sys.argv[2])
out = {"records": {}, "searches": {}, "text_searches": {}, "sparse": [], "versions": {}, "sparse_names": {}}
with Engine.open(sys.argv[1], flush_on_close=False) as engine:
    for info in engine.list_collections():
        name = info["name"]
        col = engine.collection(name)
        page, cursor = col.scroll(limit=1000, include_vectors=True)
        assert cursor is None and col.count() == len(page)
        out["records"][name] = {r["id"]: {"vector": [float(x) for x in r["vector"]], "metadata": r["metadata"],
                                          "timestamp": r["timestamp"], "expires_at": r.get("expires_at"),
                                          "sparse_vectors": r.get("sparse_vectors")} for r in page}
        hits = lambda found: [[h["id"], h["score"]] for h in found]
        out["searches"][name] = [
            {"exact": hits(col.search(q["vector"], q["k"], filter=q["filter"], exact=True)),
             "default": hits(col.search(q["vector"], q["k"], filter=q["filter"]))}
            for q in queries["searches"][name]]
        out["text_searches"][name] = [hits(col.search_text(q["text"], q["k"])) for q in queries["text_searches"][name]]
        out["versions"][name] = [info["schema_version"], sorted({s.schema_version for s in col.segments})]
        out["sparse_names"][name] = sorted(info.get("sparse_vectors", {}))
    for c, vec_name, indices, values in queries["sparse"]:
        out["sparse"].append(hits(engine.collection(c).search_sparse(vec_name, indices, values, k=50)))
print(json.dumps(out))
"""


def fresh_dump(data_dir: Path, sparse_queries: list[list[Any]] | None = None) -> dict[str, Any]:
    """Open ``data_dir`` in a new process: records, search answers (EXPECTED's queries), versions, sparse hits."""
    queries = {"searches": EXPECTED["searches"], "text_searches": EXPECTED["text_searches"],
               "sparse": sparse_queries or []}
    proc = subprocess.run([sys.executable, "-c", DUMP, str(data_dir), json.dumps(queries)], capture_output=True,
                          text=True, env=child_env(), cwd=str(data_dir.parent), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def same_ranking(got: list[list[Any]], want: list[list[Any]], where: str) -> None:
    """Equal scores in the same order; ids equal except among equal scores (ties may come in any order, and
    at the cut the tied rows beyond k are unknown)."""
    assert len(got) == len(want), (where, got, want)
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-7), (where, got, want)
    last = want[-1][1] if want else None
    groups: dict[float, tuple[set[str], set[str]]] = {}
    for (gid, _), (wid, w) in zip(got, want, strict=True):
        key = round(w, 5)
        groups.setdefault(key, (set(), set()))[0].add(gid)
        groups[key][1].add(wid)
    for key, (gids, wids) in groups.items():
        if last is None or key != round(last, 5):
            assert gids == wids, (where, got, want)


def check_unchanged(dump: dict[str, Any], changed: dict[str, dict[str, Any]] | None = None) -> None:
    """The fixture's records and search answers (records in ``changed``: those instead, or gone if None)."""
    changed = changed or {}
    for name, records in EXPECTED["records"].items():
        want = {i: {**r, "sparse_vectors": None} for i, r in records.items()}
        for i, r in changed.get(name, {}).items():
            if r is None:
                want.pop(i, None)
            else:
                want[i] = r
        have = dump["records"][name]
        assert sorted(have) == sorted(want), name
        for i, r in want.items():
            assert have[i] == r, (name, i, have[i], r)  # vectors exactly as stored (float32 through JSON)
        if changed.get(name):
            continue  # searches: the fixture's answers hold for unchanged collections only
        for n, q in enumerate(EXPECTED["searches"][name]):
            for how in ("exact", "default"):
                same_ranking(dump["searches"][name][n][how], q["hits"], f"{name} search {n} {how}")
        for n, q in enumerate(EXPECTED["text_searches"][name]):
            same_ranking(dump["text_searches"][name][n], q["hits"], f"{name} text {q['text']!r}")


@pytest.fixture
def v2_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", dst)
    return dst


def test_fixture_is_small_and_v2() -> None:
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 200_000
    plan = tool.plan(FIXTURE / "data")  # reads only
    assert {c.name: c.catalog_version for c in plan.collections} == {"delta": 2, "gamma": 2}
    for c in plan.collections:
        assert [s.schema_version for s in c.segments] == [2, 2] and c.wal_old_frames == c.wal_frames == 4, c
    assert len(EXPECTED["records"]["gamma"]) == len(EXPECTED["records"]["delta"]) == 17
    assert all(q["hits"] for q in EXPECTED["searches"]["gamma"])


def test_current_code_reads_the_v2_fixture(v2_dir: Path) -> None:
    dump = fresh_dump(v2_dir)
    check_unchanged(dump)
    assert dump["versions"] == {"delta": [2, [2]], "gamma": [2, [2]]}  # the WAL replays into the memtable


@pytest.mark.parametrize("how", ["cli", "function"])
def test_migrate_v2_fixture_to_v3(v2_dir: Path, how: str) -> None:
    if how == "cli":
        result = CliRunner().invoke(cli, ["migrate", str(v2_dir), "--chunk-rows", "5"])
        assert result.exit_code == 0, result.output
        assert f"migrated 2 collection(s) to schema version {CURRENT}" in result.output, result.output
    else:
        done = tool.migrate(v2_dir)
        assert done.target == CURRENT and not done.already_current
    assert not tool.plan(v2_dir).pending
    dump = fresh_dump(v2_dir)
    assert dump["versions"] == {"delta": [CURRENT, [CURRENT]], "gamma": [CURRENT, [CURRENT]]}
    check_unchanged(dump)
    again = CliRunner().invoke(cli, ["migrate", str(v2_dir)])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output


def _sparse_records(start: int, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        rec: dict[str, Any] = {"id": f"s{i:03d}", "vector": [i / 4, 1.0, -i / 8, 0.5], "metadata": {"n": i},
                               "timestamp": 1_800_000_000_000_000 + i}
        if i % 4:
            idx = sorted({(i * 5 + j * 7) % 30 for j in range(1 + i % 5)})
            rec["sparse_vectors"] = {"kw": {"indices": idx, "values": [(1 + (i + j) % 9) / 4 for j in range(len(idx))]}}
        out.append(rec)
    return out


def _write_sparse(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Declare ``kw`` on gamma, write records with it (a flushed segment, then WAL only) and give g003 and g005
    sparse vectors by upsert; the changed records of gamma, as a dump shows them."""
    new = _sparse_records(0, 24)
    with Engine.open(data_dir, flush_on_close=False, auto_compact=False) as engine:  # segments stay as written
        info = engine.update_collection("gamma", sparse_vectors={"kw": {}})
        assert info["sparse_vectors"] == {"kw": {"modifier": "none"}}
        col = engine.collection("gamma")
        col.insert(new[:12])
        col.flush()
        col.insert(new[12:])
        olds = []
        for id_, sv in (("g003", {"indices": [2, 9], "values": [1.5, 0.25]}),
                        ("g005", {"indices": [9], "values": [4.0]})):
            old = col.get(id_)
            assert old is not None
            olds.append({"id": id_, "vector": [float(x) for x in old["vector"]], "metadata": old["metadata"],
                         "timestamp": old["timestamp"], "expires_at": old.get("expires_at"),
                         "sparse_vectors": {"kw": sv}})
        col.upsert(olds)
    changed = {r["id"]: {"vector": r["vector"], "metadata": r["metadata"], "timestamp": r["timestamp"],
                         "expires_at": None, "sparse_vectors": r.get("sparse_vectors")} for r in new}
    changed.update({r["id"]: {k: v for k, v in r.items() if k != "id"} for r in olds})
    return changed


SPARSE_QUERIES = [["gamma", "kw", [2, 9], [1.0, 2.0]], ["gamma", "kw", list(range(30)), [1.0] * 30],
                  ["gamma", "kw", [0, 5, 10, 25], [0.5, 1.5, 3.0, 0.25]]]


def _check_sparse(dump: dict[str, Any], changed: dict[str, dict[str, Any]]) -> None:
    assert dump["sparse_names"]["gamma"] == ["kw"] and dump["sparse_names"]["delta"] == []
    for (_, _, indices, values), got in zip(SPARSE_QUERIES, dump["sparse"], strict=True):
        q = dict(zip(indices, values, strict=True))
        want = sorted(((i, sum(q[x] * v for x, v in zip(r["sparse_vectors"]["kw"]["indices"],
                                                      r["sparse_vectors"]["kw"]["values"], strict=True) if x in q))
                       for i, r in changed.items()
                       if r["sparse_vectors"] and set(r["sparse_vectors"]["kw"]["indices"]) & set(q)),
                      key=lambda h: (-h[1], h[0]))
        assert len(want) > 3
        same_ranking(got, [list(h) for h in want[:50]], f"search_sparse {indices}")


def test_sparse_vectors_after_the_migration(v2_dir: Path) -> None:
    tool.migrate(v2_dir)
    changed = _write_sparse(v2_dir)
    assert not tool.plan(v2_dir).pending  # the catalog's update kept the current version
    dump = fresh_dump(v2_dir, SPARSE_QUERIES)
    check_unchanged(dump, {"gamma": changed})
    _check_sparse(dump, changed)


def test_sparse_vectors_declared_before_the_migration(v2_dir: Path) -> None:
    changed = _write_sparse(v2_dir)  # a v2 collection: current-version frames and segment beside the v2 ones
    before = fresh_dump(v2_dir, SPARSE_QUERIES)
    assert before["versions"] == {"delta": [2, [2]], "gamma": [2, [2, CURRENT]]}
    check_unchanged(before, {"gamma": changed})
    _check_sparse(before, changed)
    result = CliRunner().invoke(cli, ["migrate", str(v2_dir)])
    assert result.exit_code == 0, result.output
    assert not tool.plan(v2_dir).pending
    dump = fresh_dump(v2_dir, SPARSE_QUERIES)
    assert dump["versions"] == {"delta": [CURRENT, [CURRENT]], "gamma": [CURRENT, [CURRENT]]}
    check_unchanged(dump, {"gamma": changed})
    _check_sparse(dump, changed)
