"""`proximadb wal dump` / `wal verify` on real data directories made by the engine.

Every data directory here is written by ``Engine.open`` (both WAL strategies,
LZ4 on and off), then damaged by hand where a test needs it. The verdicts are
checked against what the engine itself does on the next open: a torn tail is
cut, corruption is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import child_env
from click.testing import CliRunner, Result

from proximadb.cli.main import cli
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION
from proximadb.errors import CorruptionError
from proximadb.storage import wal_io
from proximadb.storage.engine import Engine
from proximadb.tools import wal_inspect

REPO_ROOT = Path(__file__).resolve().parents[2]
COMBOS = [(s, c) for s in ("avro", "binary") for c in ("none", "lz4")]
DIM = 8


@dataclass
class Written:
    """What a test wrote, per seq: (op, upsert, ids, vectors or None, metadata or None)."""

    data_dir: Path
    uuid: str
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "collections" / self.uuid / "wal"

    def wal_files(self) -> list[Path]:
        return sorted(self.wal_dir.glob("wal-*.log"))


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def make_data_dir(root: Path, strategy: str, compression: str, segment_bytes: int = 1 << 20) -> Written:
    """Collection "docs" with inserts, an upsert, metadata updates and deletes; "other" with one insert."""
    data_dir = root / "data"
    with Engine.open(data_dir, wal_strategy=strategy, wal_compression=compression, fsync="never",
                     wal_segment_bytes=segment_bytes, flush_on_close=False) as engine:  # the frames stay in the WAL
        info = engine.create_collection("docs", DIM, distance_metric="euclidean")
        docs = engine.collection("docs")
        out = Written(data_dir, info["uuid"])
        seq = 0
        for batch in range(4):
            ids = [f"doc-{batch}-{i}" for i in range(6)]
            vectors = _vectors(6, batch)
            metadata = [{"batch": batch, "lang": "en", "tags": ["a", "b"], "i": i} for i in range(6)]
            docs.insert(ids=ids, vectors=vectors, metadatas=metadata)
            seq += 1
            out.frames[seq] = {"op": "insert", "upsert": False, "ids": ids, "vectors": vectors, "metadata": metadata}
        up = _vectors(1, 99)
        docs.upsert(ids=["doc-0-0"], vectors=up, metadatas=[{"fresh": True}])
        seq += 1
        out.frames[seq] = {"op": "insert", "upsert": True, "ids": ["doc-0-0"], "vectors": up,
                           "metadata": [{"fresh": True}]}
        docs.update_metadata("doc-1-1", {"reviewed": True})
        seq += 1
        out.frames[seq] = {"op": "update", "ids": ["doc-1-1"], "metadata": [{"reviewed": True}], "replace": [False]}
        docs.update_metadata("doc-1-2", {"lang": "de"}, replace=True)
        seq += 1
        out.frames[seq] = {"op": "update", "ids": ["doc-1-2"], "metadata": [{"lang": "de"}], "replace": [True]}
        docs.delete(["doc-2-0", "doc-2-1", "nope"])
        seq += 1
        out.frames[seq] = {"op": "delete", "ids": ["doc-2-0", "doc-2-1"]}
        docs.insert(ids=["last"], vectors=_vectors(1, 7))
        seq += 1
        out.frames[seq] = {"op": "insert", "upsert": False, "ids": ["last"], "vectors": _vectors(1, 7),
                           "metadata": [{}]}
        engine.create_collection("other", 2)
        engine.collection("other").insert(ids=["solo"], vectors=np.ones((1, 2), np.float32))
    return out


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["wal", *map(str, args)], env=env, catch_exceptions=False)


def jsonl(*args: str | Path) -> list[dict[str, Any]]:
    result = run("dump", *args, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def frames_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "frame"]


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- clean logs, both strategies


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_dump_jsonl_shows_every_frame_as_written(tmp_path: Path, strategy: str, compression: str) -> None:
    w = make_data_dir(tmp_path, strategy, compression)
    frames = frames_of(jsonl(w.data_dir, "--collection", "docs", "--full"))
    assert [f["seq"] for f in frames] == list(w.frames)
    for frame in frames:
        want = w.frames[frame["seq"]]
        assert set(frame) == set(wal_inspect.FRAME_KEYS) | set(wal_inspect.FULL_KEYS)
        assert (frame["collection"], frame["collection_uuid"]) == ("docs", w.uuid)
        assert frame["file"] == "wal-00000000000000000001.log"
        want_version = CURRENT_SCHEMA_VERSION
        assert (frame["op"], frame["strategy"], frame["schema_version"]) == (want["op"], strategy, want_version)
        assert frame["ids"] == want["ids"] and frame["records"] == len(want["ids"])
        assert frame["upsert"] == want.get("upsert")
        if frame["compression"] == "none":
            assert frame["stored_size"] == frame["raw_size"]
        else:
            assert frame["stored_size"] < frame["raw_size"]
        if want["op"] == "insert":
            np.testing.assert_array_equal(np.array(frame["vectors"], dtype=np.float32), want["vectors"])
            assert frame["metadata"] == want["metadata"]
            assert len(frame["timestamps"]) == len(want["ids"]) and all(t > 0 for t in frame["timestamps"])
        elif want["op"] == "update":
            assert (frame["metadata"], frame["replace"]) == (want["metadata"], want["replace"])
            assert frame["vectors"] is None
        else:
            assert frame["vectors"] is frame["metadata"] is frame["timestamps"] is None
    compressions = {f["compression"] for f in frames}
    assert compressions == ({"none"} if compression == "none" else {"lz4", "none"})  # small frames stay raw
    offsets = [f["offset"] for f in frames]
    assert offsets[0] == wal_io.FILE_HEADER_SIZE
    assert all(b == a + wal_io.FRAME_HEADER_SIZE + f["stored_size"]
               for a, b, f in zip(offsets, offsets[1:], frames, strict=False))

    result = run("verify", w.data_dir)
    assert result.exit_code == 0, result.output
    assert "docs" in result.output and "other" in result.output and "CORRUPT" not in result.output


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_dump_text_is_aligned_and_names_what_it_shows(tmp_path: Path, strategy: str, compression: str) -> None:
    w = make_data_dir(tmp_path, strategy, compression)
    result = run("dump", w.data_dir)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"collection docs ({w.uuid})" in out and "collection other (" in out
    assert f"wal-00000000000000000001.log  {strategy}  format v1  first seq 1" in out
    lines = out.splitlines()
    header = next(line for line in lines if "SEQ" in line and "OFFSET" in line)
    rows = [line for line in lines if line.strip().split(" ")[0].isdigit()]
    assert len(rows) == len(w.frames) + 1
    ids_col = header.index("IDS")
    assert all(row[ids_col - 2 : ids_col] == "  " for row in rows)  # columns line up under the header
    first = next(row for row in rows if row.split()[0] == "1")
    assert "insert" in first and strategy in first and "doc-0-0, doc-0-1, doc-0-2, doc-0-3, doc-0-4" in first
    assert "(+1 more)" in first
    assert any("upsert" in row and "doc-0-0" in row for row in rows)
    assert any("delete" in row and "doc-2-0, doc-2-1" in row for row in rows)

    full = run("dump", w.data_dir, "-c", "docs", "--to-seq", "1", "--full").output
    vector = ", ".join(f"{float(x):.7g}" for x in w.frames[1]["vectors"][0])
    assert f"vector [{vector}]" in full
    assert '"batch": 0' in full and "time 20" in full


def test_filters_select_frames(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "binary", "lz4")
    seqs = [f["seq"] for f in frames_of(jsonl(w.data_dir, "-c", "docs", "--from-seq", "3", "--to-seq", "6"))]
    assert seqs == [3, 4, 5, 6]
    updates = frames_of(jsonl(w.data_dir, "-c", "docs", "--op", "update"))
    assert [f["seq"] for f in updates] == [6, 7]
    both = frames_of(jsonl(w.data_dir, "-c", "docs", "--op", "update", "--op", "delete"))
    assert [f["op"] for f in both] == ["update", "update", "delete"]
    assert len(frames_of(jsonl(w.data_dir, "--limit", "3"))) == 3
    limited = run("dump", w.data_dir, "--limit", "2").output
    assert "(stopped after 2 frames: --limit)" in limited
    by_uuid = frames_of(jsonl(w.data_dir, "--collection", w.uuid))
    assert [f["seq"] for f in by_uuid] == list(w.frames)
    assert {f["collection"] for f in frames_of(jsonl(w.data_dir, "-c", "other"))} == {"other"}
    assert {f["collection"] for f in frames_of(jsonl(w.data_dir))} == {"docs", "other"}


def test_rotated_and_checkpointed_logs_are_clean(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "avro", "none", segment_bytes=600)
    files = w.wal_files()
    assert len(files) > 2
    frames = frames_of(jsonl(w.data_dir, "-c", "docs"))
    assert [f["seq"] for f in frames] == list(w.frames)
    assert len({f["file"] for f in frames}) == len(files)
    # --from-seq skips earlier files unread; --to-seq later ones
    later = frames_of(jsonl(w.data_dir, "-c", "docs", "--from-seq", "8"))
    assert [f["seq"] for f in later] == [8, 9] and later[0]["file"] != files[0].name
    # flush: checkpoint deletes old files; the closing engine does not flush "after"
    with Engine.open(w.data_dir, wal_segment_bytes=600, flush_on_close=False) as engine:
        engine.collection("docs").flush()
        engine.collection("docs").insert(ids=["after"], vectors=_vectors(1, 3))
    assert run("verify", w.data_dir).exit_code == 0
    frames = frames_of(jsonl(w.data_dir, "-c", "docs"))
    assert [f["seq"] for f in frames] == [10] and frames[0]["ids"] == ["after"]


# ---------------------------------------------------------------- damage


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_torn_tail_is_reported_and_recoverable(tmp_path: Path, strategy: str, compression: str) -> None:
    w = make_data_dir(tmp_path, strategy, compression)
    last = frames_of(jsonl(w.data_dir, "-c", "docs"))[-1]
    path = w.wal_dir / last["file"]
    os.truncate(path, last["offset"] + 30)

    result = run("verify", w.data_dir)
    assert result.exit_code == 3, result.output
    assert "TORN TAIL" in result.output
    text = run("dump", w.data_dir, "-c", "docs").output
    assert f"torn tail: 30 bytes at offset {last['offset']}" in text
    records = jsonl(w.data_dir, "-c", "docs")
    assert [r["seq"] for r in frames_of(records)] == list(w.frames)[:-1]
    torn = [r for r in records if r["type"] == "torn_tail"]
    assert len(torn) == 1 and (torn[0]["offset"], torn[0]["bytes"]) == (last["offset"], 30)
    assert set(torn[0]) == set(wal_inspect.PROBLEM_KEYS)

    with Engine.open(w.data_dir):  # the engine agrees: it cuts the tail
        pass
    assert run("verify", w.data_dir).exit_code == 0


@pytest.mark.parametrize(("strategy", "compression"), COMBOS)
def test_damaged_early_frame_is_shown_and_the_dump_goes_on(tmp_path: Path, strategy: str, compression: str) -> None:
    w = make_data_dir(tmp_path, strategy, compression)
    frames = frames_of(jsonl(w.data_dir, "-c", "docs"))
    second, third = frames[1], frames[2]
    path = w.wal_dir / second["file"]
    flip_byte(path, second["offset"] + wal_io.FRAME_HEADER_SIZE + 5)  # inside the body of seq 2

    result = run("verify", w.data_dir)
    assert result.exit_code == 4, result.output
    assert "CORRUPT" in result.output and f"offset {second['offset']}" in result.output
    text = run("dump", w.data_dir, "-c", "docs").output
    skipped = third["offset"] - second["offset"]
    assert (f"DAMAGED  {second['file']} offset {second['offset']}: checksum mismatch; skipped {skipped} bytes, "
            f"resumed at offset {third['offset']} (seq 3); seq 2 lost") in text
    records = jsonl(w.data_dir, "-c", "docs")
    kinds = [r["type"] for r in records]
    assert kinds == ["frame", "damaged"] + ["frame"] * (len(w.frames) - 2)
    damaged = records[1]
    assert (damaged["offset"], damaged["bytes"], damaged["resume_offset"]) == (second["offset"], skipped,
                                                                               third["offset"])
    assert [r["seq"] for r in frames_of(records)] == [s for s in w.frames if s != 2]
    assert run("dump", w.data_dir).exit_code == 0  # dump reports, it does not fail

    with pytest.raises(CorruptionError):  # the engine agrees: it refuses to open
        Engine.open(w.data_dir)


def test_damage_in_an_earlier_file_and_a_missing_file_are_corruption(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "binary", "none", segment_bytes=600)
    files = w.wal_files()
    assert len(files) > 2
    os.truncate(files[0], files[0].stat().st_size - 3)  # not the last file: not a torn tail
    summary = wal_inspect.verify_wal(wal_inspect.find_targets(w.data_dir, "docs").targets[0])
    assert summary.verdict == wal_inspect.VERDICT_CORRUPT
    assert [p.kind for p in summary.problems] == ["damaged", "seq_gap"]
    files[1].unlink()
    result = run("verify", w.data_dir, "-c", "docs")
    assert result.exit_code == 4 and "SEQ GAP" in result.output and "missing" in result.output


def test_bad_header_and_undecodable_frame_are_corruption(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "avro", "lz4")
    path = w.wal_files()[-1]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:  # a checksummed frame whose body is garbage
        wal_io.write_frame(fd, len(w.frames) + 1, 1, 0, 1, 7, b"garbage")
    finally:
        os.close(fd)
    records = jsonl(w.data_dir, "-c", "docs")
    bad = records[-1]
    assert bad["type"] == "damaged" and bad["seq"] == len(w.frames) + 1
    assert bad["reason"].startswith("undecodable body")
    assert run("verify", w.data_dir).exit_code == 4
    assert f"seq {len(w.frames) + 1}: undecodable body" in run("dump", w.data_dir).output

    flip_byte(path, 3)  # the magic
    result = run("verify", w.data_dir, "-c", "docs")
    assert result.exit_code == 4 and "BAD HEADER" in result.output and "bad magic" in result.output
    text = run("dump", w.data_dir, "-c", "docs").output  # frames still listed, undecoded
    assert "header unreadable" in text and "not decoded" in text


# ---------------------------------------------------------------- errors, defaults, live daemon


def test_missing_data_dir_and_unknown_collection_exit_1(tmp_path: Path) -> None:
    for command in ("dump", "verify"):
        result = run(command, tmp_path / "nowhere")
        assert result.exit_code == 1
        assert f"data directory {tmp_path / 'nowhere'} does not exist" in result.output
    w = make_data_dir(tmp_path, "binary", "none")
    result = run("verify", w.data_dir, "--collection", "ghost")
    assert result.exit_code == 1
    assert "collection 'ghost' not found" in result.output and "docs, other" in result.output
    assert run("dump", tmp_path).exit_code == 1  # not a data directory
    assert run("dump", w.data_dir, "--format", "xml").exit_code == 2
    assert run("dump", w.data_dir, "--op", "upsert").exit_code == 2


def test_default_data_dir_and_wal_dir_argument(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "binary", "none")
    result = run("verify", env={"PROXIMADB_DATA_DIR": str(w.data_dir)})
    assert result.exit_code == 0 and "docs" in result.output
    # a WAL directory on its own, through the library (no Click)
    scan = wal_inspect.find_targets(w.wal_dir)
    events = list(wal_inspect.iter_targets(scan.targets))
    assert [e.seq for e in events if isinstance(e, wal_inspect.FrameRecord)] == list(w.frames)
    assert frames_of(jsonl(w.wal_dir.parent))[0]["collection_uuid"] == w.uuid


def test_works_read_only_while_the_engine_holds_the_data_dir(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "avro", "lz4")
    with Engine.open(w.data_dir, wal_compression="lz4", fsync="never", flush_on_close=False) as engine:
        docs = engine.collection("docs")
        docs.insert(ids=["live"], vectors=_vectors(1, 5))
        before = tree_digest(w.data_dir)
        result = run("verify", w.data_dir)
        assert result.exit_code == 0, result.output
        frames = frames_of(jsonl(w.data_dir, "-c", "docs"))
        assert frames[-1]["ids"] == ["live"]
        assert tree_digest(w.data_dir) == before  # nothing written, the lock not touched
        docs.insert(ids=["after-dump"], vectors=_vectors(1, 6))  # the engine still owns and writes
    assert frames_of(jsonl(w.data_dir, "-c", "docs"))[-1]["ids"] == ["after-dump"]


def test_verify_stays_clean_while_the_engine_writes_rotates_and_checkpoints(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stop = threading.Event()
    batches = [0]
    errors: list[BaseException] = []
    with Engine.open(data_dir, fsync="never", wal_segment_bytes=1500, flush_bytes=8_000) as engine:
        engine.create_collection("busy", DIM)
        busy = engine.collection("busy")
        target = wal_inspect.find_targets(data_dir, "busy").targets[0]

        def writer() -> None:
            try:
                while not stop.is_set() and batches[0] < 400:
                    busy.insert(ids=[f"w{batches[0]}-{j}" for j in range(4)], vectors=_vectors(4, batches[0]))
                    batches[0] += 1
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        runs = 0
        try:
            while thread.is_alive() or runs < 5:
                summary = wal_inspect.verify_wal(target)
                runs += 1
                assert summary.verdict == wal_inspect.VERDICT_CLEAN, summary.problems
        finally:
            stop.set()
            thread.join()
        assert not errors
        assert busy.count() == 1600 and runs >= 5
    # it rotated, flushed and checkpointed meanwhile
    assert not (data_dir / "collections" / target.uuid / "wal" / "wal-00000000000000000001.log").exists()


def test_log_starting_after_the_checkpoint_is_corruption(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "binary", "lz4", segment_bytes=600)
    first = w.wal_files()[0]
    first.unlink()  # the checkpoint is still 0: the frames of this file were never in a segment
    result = run("verify", w.data_dir, "-c", "docs")
    assert result.exit_code == 4
    assert "the manifest checkpoint is at seq 0 but the log starts at seq" in result.output


def test_real_process_exit_codes(tmp_path: Path) -> None:
    w = make_data_dir(tmp_path, "binary", "lz4")
    env = child_env()

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "proximadb", "wal", "verify", str(w.data_dir)],
                              capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)

    clean = verify()
    assert clean.returncode == 0, clean.stderr
    assert "2 collection(s): 2 clean" in clean.stdout
    last = w.wal_files()[-1]
    os.truncate(last, last.stat().st_size - 1)
    torn = verify()
    assert torn.returncode == 3, torn.stderr
    assert "torn tail: " in torn.stdout
