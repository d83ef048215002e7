"""Disk full below the WAL: flush, index build and compaction on a real, full tmpfs.

The engine runs in-process on a 16 MiB tmpfs that a filler file fills so that
the WAL still takes writes but a segment (or an index, or a merged segment)
does not fit. Each test checks that nothing acknowledged is lost, that what
the failed step wrote is gone at once (the space is free again, no ``.tmp``
left, the manifest unchanged), that reads and writes go on, that the step
succeeds once space is freed, and that a fresh process opens the directory
cleanly with every acknowledged record. Two faults that a tmpfs cannot aim at
(ENOSPC creating the next WAL file after the manifest swap, a failed directory
fsync after the manifest rename) are injected. The tmpfs tests need root and
``mount -t tmpfs``; they are skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import dump_in_fresh_process, size_limited_tmpfs

from proximadb.errors import DiskFullError
from proximadb.storage import flush as flush_mod
from proximadb.storage import manifest as manifest_mod
from proximadb.storage import segment as segment_mod
from proximadb.storage import segment_index
from proximadb.storage.engine import Engine
from proximadb.storage.wal import WriteAheadLog

DIM = 64
PAGE = 4096


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with size_limited_tmpfs(tmp_path / "tiny", "16m") as mnt:
        yield mnt


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, leave: int) -> Path:
    """Grow the filler file until about ``leave`` bytes stay free."""
    filler = mnt / "filler"
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free_bytes(mnt) - leave))
    assert abs(free_bytes(mnt) - leave) <= 2 * PAGE, (free_bytes(mnt), leave)
    return filler


class Model:
    """The acknowledged records, and the batches that make them (ids, vectors, ~200-byte metadata)."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    @staticmethod
    def batch(tag: str, n: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        rng = np.random.default_rng(zlib.crc32(tag.encode()))
        ids = [f"{tag}-{i:05d}" for i in range(n)]
        text = rng.integers(0, 16, (n, 200))
        metas = [{"text": "".join("0123456789abcdef"[c] for c in row), "i": i} for i, row in enumerate(text)]
        return ids, rng.standard_normal((n, DIM)).astype(np.float32), metas

    def insert(self, col: Any, tag: str, n: int) -> list[str]:
        ids, vecs, metas = self.batch(tag, n)
        assert col.insert(ids=ids, vectors=vecs, metadatas=metas) == ids  # acknowledged
        self.records.update(zip(ids, zip(vecs, metas, strict=True), strict=True))
        return ids

    def delete(self, col: Any, ids: list[str]) -> None:
        assert col.delete(ids) == len(ids)
        for id_ in ids:
            del self.records[id_]

    def check_live(self, col: Any) -> None:
        assert col.count() == len(self.records)
        ids = list(self.records)
        got = {r["id"]: r for r in col.get_many(ids)}
        assert got.keys() == self.records.keys()
        for id_, (vec, meta) in self.records.items():
            np.testing.assert_array_equal(got[id_]["vector"], vec)
            assert got[id_]["metadata"] == meta
        for id_ in ids[:: max(1, len(ids) // 5)]:  # exact search finds each record itself
            assert col.search(self.records[id_][0], k=1, exact=True)[0]["id"] == id_

    def check_fresh_process(self, data: Path, **options: Any) -> None:
        state = dump_in_fresh_process(data, **options)["c"]
        assert state.keys() == self.records.keys()
        for id_, (vec, meta) in self.records.items():
            np.testing.assert_array_equal(np.asarray(state[id_]["vector"], np.float32), vec)
            assert state[id_]["metadata"] == meta


def disk_state(col: Any) -> dict[str, Any]:
    """What a failed step must leave exactly as it was: the manifest and every file under segments/."""
    root = col.directory
    return {
        "manifest": (root / "MANIFEST").read_bytes() if (root / "MANIFEST").exists() else None,
        "files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p != root / "wal"
                        and root / "wal" not in p.parents),
    }


@pytest.mark.parametrize("short", ["vectors", "metadata"])
def test_flush_enospc_keeps_everything_and_retries(tiny_fs: Path, short: str) -> None:
    """An explicit flush that runs out of space (in vectors.f32, or later in meta.avro) changes nothing."""
    data = tiny_fs / "data"
    model = Model()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        first = model.insert(col, "seg", 1000)
        col.flush()  # one segment; deleting from it makes the next flush write a bitmap too
        model.delete(col, first[:100])
        for k in range(5):
            model.insert(col, f"mem{k}", 1000)
        before = disk_state(col)
        vec_bytes = 5000 * DIM * 4
        # "vectors": not even the vector block fits; "metadata": vectors and ids do, meta.avro (~1 MB) not.
        leave = vec_bytes // 2 if short == "vectors" else vec_bytes + 300_000
        filler = fill(tiny_fs, leave)
        free = free_bytes(tiny_fs)
        with pytest.raises(DiskFullError, match="disk full while flushing collection c: 5000 records stay"):
            col.flush()
        # Rolled back at once: manifest, segments and bitmaps as before, the space free again.
        assert disk_state(col) == before
        assert free_bytes(tiny_fs) >= free - PAGE
        stats = col.stats()
        assert (stats["memtable_rows"], stats["segments"], stats["checkpoint_seq"]) == (5000, 1, 1)
        assert "No space left on device" in stats["last_flush_error"]
        model.check_live(col)
        # Writes that fit in the WAL keep working, deletes too.
        model.insert(col, "during", 50)
        model.delete(col, first[100:150])
        model.check_live(col)
        # Still full: the flush fails again, cleanly.
        with pytest.raises(DiskFullError):
            col.flush()
        assert free_bytes(tiny_fs) >= free - 8 * PAGE  # the WAL grew by the two writes, nothing else
    # A restart while the disk is still full opens clean and replays everything from the WAL.
    model.check_fresh_process(data)
    filler.unlink()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        col = engine.collection("c")
        assert col.stats()["memtable_rows"] == 5050
        col.flush()
        stats = col.stats()
        assert (stats["memtable_rows"], stats["segments"], stats["last_flush_error"]) == (0, 2, None)
        model.check_live(col)
    assert sorted(p.name for p in (data / "collections").glob("*/segments/*")) == ["seg-00000001", "seg-00000002"]
    model.check_fresh_process(data)


def test_write_that_triggers_a_failing_flush_is_acknowledged(
    tiny_fs: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The flush a write triggers runs out of space: the write is still acknowledged (it is in the WAL)."""
    monkeypatch.setattr(flush_mod, "FLUSH_RETRY_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="proximadb.collection")
    data = tiny_fs / "data"
    model = Model()
    with Engine.open(data, flush_bytes=1_500_000, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        for k in range(8):  # 4000 rows: just under the flush threshold
            model.insert(col, f"a{k}", 500)
        assert col.stats()["segments"] == 0
        before = disk_state(col)
        # Room for the next batch in the WAL (~250 kB) and for the vector block of the 4500-row
        # segment (1.15 MB), not for all of it (~2.3 MB with ids and metadata).
        fill(tiny_fs, 250_000 + 4500 * DIM * 4 + 300_000)
        trigger = model.insert(col, "trigger", 500)  # acknowledged although its flush fails
        assert col.wait_for_flush(60)  # the flush it started runs in the background
        stats = col.stats()
        assert (stats["memtable_rows"], stats["segments"]) == (4500, 0)
        assert "No space left on device" in stats["last_flush_error"]
        assert disk_state(col) == before  # the partial segment is gone
        assert col.get(trigger[-1]) is not None
        # More writes are acknowledged until the WAL itself is full; only that refuses a write.
        refused = None
        for k in range(40):
            time.sleep(0.05)  # let the flush be retried now and then
            try:
                model.insert(col, f"b{k}", 500)
            except DiskFullError as exc:
                refused = exc
                break
            assert col.wait_for_flush(60)
        assert refused is not None and "WAL" in str(refused), refused
        assert col.stats()["segments"] == 0 and disk_state(col) == before
        model.check_live(col)
        lines = [r.getMessage() for r in caplog.records if "disk full while flushing collection c" in r.getMessage()]
        assert len(lines) == 1, lines  # repeats within FLUSH_LOG_SECONDS are not logged again
        assert "records stay in the WAL/memtable" in lines[0] and "free space" in lines[0]
        # Space freed: the next write past the retry delay flushes.
        (tiny_fs / "filler").unlink()
        time.sleep(0.25)
        model.insert(col, "after", 10)
        assert col.wait_for_flush(60)
        stats = col.stats()
        assert (stats["memtable_rows"], stats["segments"], stats["last_flush_error"]) == (0, 1, None)
        assert any("flush succeeded after" in r.getMessage() for r in caplog.records)
        model.check_live(col)
    model.check_fresh_process(data)


def test_enospc_at_wal_checkpoint_after_flush_commit_does_not_fail_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest swap is done, then the WAL cannot start its next file: the flush counts, the write too."""
    data = tmp_path / "data"
    model = Model()
    with Engine.open(data, flush_bytes=200_000, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        col = engine.collection("c")
        model.insert(col, "a", 400)
        calls = []

        def no_space(self: WriteAheadLog, first_seq: int) -> Any:
            calls.append(first_seq)
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(WriteAheadLog, "_create_segment", no_space)
            model.insert(col, "b", 400)  # crosses flush_bytes: used to raise DiskFullError here
            assert col.wait_for_flush(60)  # the flush it started runs in the background
        assert calls, "the flush did not reach the WAL checkpoint"
        stats = col.stats()
        assert (stats["memtable_rows"], stats["segments"], stats["last_flush_error"]) == (0, 1, None)
        assert col.wait_for_indexes(30) and col.stats()["indexed_segments"] == 1  # still scheduled
        model.insert(col, "c", 600)  # the next flush checkpoints the WAL
        assert col.wait_for_flush(60) and col.stats()["segments"] == 2
        model.check_live(col)
    model.check_fresh_process(data)


def test_manifest_renamed_but_not_durable_keeps_what_the_old_manifest_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync of the directory fails after the manifest rename: if a crash brought the old manifest
    back, its segments, bitmaps and WAL frames must all still be there."""
    data = tmp_path / "data"
    model = Model()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        first = model.insert(col, "a", 300)
        col.flush()
        model.delete(col, first[:30])
        model.insert(col, "b", 300)
        old_manifest = (col.directory / "MANIFEST").read_bytes()
        real = manifest_mod.fsync_dir

        def failing(path: Path) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(manifest_mod, "fsync_dir", failing)
        col.flush()  # in force from here on, so it counts
        monkeypatch.setattr(manifest_mod, "fsync_dir", real)
        assert col.stats()["memtable_rows"] == 0
        model.check_live(col)
    # The crash loses the rename: the old manifest is back. Nothing it names was removed.
    (data / "collections" / col.config.uuid / "MANIFEST").write_bytes(old_manifest)
    model.check_fresh_process(data)


def test_index_save_enospc_keeps_searching_and_saves_later(tiny_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_index, "SAVE_RETRY_SECONDS", 0.2)
    data = tiny_fs / "data"
    model = Model()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        model.insert(col, "a", 3000)
        col.flush()
        seg_dir = col.segments[0].path
        filler = fill(tiny_fs, 64 * 1024)  # room for the catalog, not for an HNSW index of 3000 rows
        engine.update_collection("c", indexing_algorithm="hnsw")  # rebuilds the segment's index
        assert col.wait_for_indexes(30)
        stats = col.stats()
        assert "index not saved" in stats["last_index_error"] and "No space left" in stats["last_index_error"]
        assert sorted(p.name for p in seg_dir.iterdir() if p.name.startswith("index")) == []  # no partial file
        assert stats["indexed_segments"] == 1  # the complete index is used from memory
        model.check_live(col)
        ids = list(model.records)
        for id_ in ids[::300]:  # through the index (ANN) and exactly
            assert col.search(model.records[id_][0], k=5)[0]["id"] == id_
            assert col.search(model.records[id_][0], k=5, exact=True)[0]["id"] == id_
        model.insert(col, "during", 20)
        filler.unlink()
        deadline = time.monotonic() + 10
        while not (seg_dir / "index.hnsw").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (seg_dir / "index.hnsw").exists(), "the index save was not retried"
        assert col.stats()["last_index_error"] is None
    model.check_fresh_process(data)


def test_compaction_enospc_leaves_inputs_and_removes_partial_output(tiny_fs: Path) -> None:
    data = tiny_fs / "data"
    model = Model()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        for k in range(3):
            ids = model.insert(col, f"s{k}", 1500)
            col.flush()
            model.delete(col, ids[:200])
        col.flush()  # the deletions in bitmaps: compaction merges the persisted state
        before = disk_state(col)
        fill(tiny_fs, 1_000_000)  # the merged segment needs ~2.6 MB
        free = free_bytes(tiny_fs)
        with pytest.raises(DiskFullError, match="disk full while compacting collection c: its segments are untouched"):
            col.compact()
        assert disk_state(col) == before
        assert free_bytes(tiny_fs) >= free - PAGE
        assert col.stats()["segments"] == 3
        model.check_live(col)
        model.insert(col, "during", 20)
        (tiny_fs / "filler").unlink()
        report = col.compact()
        assert report["segments_after"] == 1
        model.check_live(col)
    model.check_fresh_process(data)


@pytest.mark.parametrize("stage", ["bitmap", "manifest"])
def test_flush_enospc_after_the_segment_is_in_place_removes_it(
    tiny_fs: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """ENOSPC on the steps after the segment directory is renamed into place (injected: a tmpfs cannot
    aim that precisely): the loaded segment and its files go at once, its space is free again."""
    data = tiny_fs / "data"
    model = Model()
    with Engine.open(data, flush_bytes=64 << 20, auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        first = model.insert(col, "a", 500)
        col.flush()
        model.delete(col, first[:50])
        model.insert(col, "b", 3000)
        before = disk_state(col)
        free = free_bytes(tiny_fs)

        def no_space(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as m:
            if stage == "bitmap":
                m.setattr(segment_mod, "write_bitmap", no_space)
            else:
                m.setattr(manifest_mod.Manifest, "save", no_space)
            with pytest.raises(DiskFullError, match="3000 records stay"):
                col.flush()
        assert disk_state(col) == before
        assert free_bytes(tiny_fs) >= free - PAGE  # the mapped vectors.f32 was unmapped and removed
        model.check_live(col)
        col.flush()
        assert col.stats()["segments"] == 2
        model.check_live(col)
    model.check_fresh_process(data)


def test_manifest_save_on_a_full_disk_leaves_the_old_one(tiny_fs: Path) -> None:
    (tiny_fs / "col").mkdir()
    manifest_mod.Manifest(checkpoint_seq=7, next_segment_id=3,
                          segments=[manifest_mod.SegmentRef(1), manifest_mod.SegmentRef(2, 4)]).save(tiny_fs / "col")
    old = (tiny_fs / "col" / "MANIFEST").read_bytes()
    fill(tiny_fs, 0)
    big = manifest_mod.Manifest(checkpoint_seq=9, next_segment_id=5000,
                                segments=[manifest_mod.SegmentRef(i) for i in range(1, 5000)])
    with pytest.raises(OSError) as caught:
        big.save(tiny_fs / "col")
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tiny_fs / "col").iterdir()) == ["MANIFEST"]  # no MANIFEST.tmp
    assert (tiny_fs / "col" / "MANIFEST").read_bytes() == old
    assert manifest_mod.Manifest.load(tiny_fs / "col").checkpoint_seq == 7
