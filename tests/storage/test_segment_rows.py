"""meta.avro's blocks from the compiled encoder (storage/segment_rows.pyx) are the bytes fastavro's writer
makes for the same SegmentRow records, in every schema version, with expiry and sparse vectors, whatever
the block size; and a flushed collection with sparse vectors reads back what was written."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import metadata_maps, metadata_values

from proximadb.codec.schemas import record_schema
from proximadb.storage.engine import Engine
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.segment_rows import RowBlocks
from proximadb.storage.segment_writer import _sparse_maps
from proximadb.storage.sparse_column import SparseColumn, row_dict
from proximadb.storage.wal_io import encode_metadata_maps

SYNC = b"fedcba9876543210"
KEYS = ["tenant", "n", "tags", "flag", "price"]
STORED = st.one_of(metadata_values(floats=False), st.floats(allow_nan=False, allow_infinity=False))

sparse_rows = st.dictionaries(
    st.sampled_from(["a", "b"]),
    st.lists(st.tuples(st.integers(0, 2**31 - 1), st.floats(-1e3, 1e3, width=32)), min_size=1, max_size=4,
             unique_by=lambda t: t[0]).map(sorted),
    max_size=2)


def _column(rows: list[dict[str, list[tuple[int, float]]]], name: str) -> SparseColumn:
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    idx: list[int] = []
    val: list[float] = []
    for r, row in enumerate(rows):
        for i, v in row.get(name, []):
            idx.append(i)
            val.append(v)
        starts[r + 1] = len(idx)
    return SparseColumn(starts, np.asarray(idx, dtype=np.int32), np.asarray(val, dtype=np.float32))


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from([1, 2, 3]),
       rows=st.lists(st.tuples(metadata_maps(), st.integers(-2**62, 2**62),
                               st.one_of(st.just(NO_EXPIRY), st.integers(0, 2**62)), sparse_rows),
                     min_size=1, max_size=40),
       interval=st.sampled_from([1, 40, 300, 16000]), step=st.sampled_from([1, 3, 64]))
def test_blocks_are_the_bytes_fastavro_writes(version: int, rows: list[tuple[Any, ...]], interval: int,
                                              step: int) -> None:
    schema = record_schema("SegmentRow", version)
    columns = {n: _column([sp for *_, sp in rows], n) for n in ("a", "b")} if version >= 3 else None
    records = []
    for r, (md, ts, exp, _) in enumerate(rows):
        rec: dict[str, Any] = {"metadata": md, "timestamp": ts}
        if version >= 2:
            rec["expires_at"] = None if exp == NO_EXPIRY else exp
        if version >= 3:
            rec["sparse_vectors"] = row_dict(columns, r)  # as the writer before this one made them
        records.append(rec)
    expected = io.BytesIO()
    fastavro.writer(expected, schema, records, codec="lz4", sync_marker=SYNC, sync_interval=interval)

    got = io.BytesIO()
    fastavro.writer(got, schema, [], codec="lz4", sync_marker=SYNC)
    blocks = RowBlocks(version, SYNC, lz4.block.compress, NO_EXPIRY, interval)
    stamps = np.asarray([ts for _, ts, _, _ in rows], dtype=np.int64)
    expires = np.asarray([exp for _, _, exp, _ in rows], dtype=np.int64)
    for a in range(0, len(rows), step):
        b = min(len(rows), a + step)
        offsets = np.empty(b - a + 1, dtype=np.uint64)
        blob = encode_metadata_maps([md for md, *_ in rows[a:b]], offsets)
        sparse = None if columns is None else _sparse_maps(columns, a, b, schema)
        for block in blocks.add(blob, offsets, stamps[a:b], expires[a:b] if version >= 2 else None, sparse):
            got.write(block)
    last = blocks.finish()
    if last is not None:
        got.write(last)
    assert got.getvalue() == expected.getvalue()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="schema version 4"):
        RowBlocks(4, SYNC, lz4.block.compress, NO_EXPIRY)
    with pytest.raises(ValueError, match="16 bytes"):
        RowBlocks(3, b"short", lz4.block.compress, NO_EXPIRY)
    blocks = RowBlocks(2, SYNC, lz4.block.compress, NO_EXPIRY)
    with pytest.raises(ValueError, match="as many timestamps"):
        blocks.add(b"\x00", np.array([0, 1], dtype=np.uint64), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="outside"):
        blocks.add(b"\x00", np.array([0, 2], dtype=np.uint64), np.zeros(1, dtype=np.int64))
    assert blocks.finish() is None


def test_a_flushed_segment_with_sparse_vectors_and_expiry_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    ids = [f"r{i:05d}" for i in range(n)]
    vectors = rng.standard_normal((n, 4)).astype(np.float32)
    metadatas = [{"k": f"v{i % 7}", "n": i, "flag": i % 2 == 0} for i in range(n)]
    sparse = [{"s": {"indices": [i % 50, 60 + i % 9], "values": [1.0, 0.5]}} if i % 3 else None for i in range(n)]
    with Engine.open(tmp_path / "data") as engine:
        engine.create_collection("c", 4, sparse_vectors={"s": {}})
        col = engine.collection("c")
        col.insert(ids=ids, vectors=vectors, metadatas=metadatas, sparse_vectors=sparse)
        col.flush()
    with Engine.open(tmp_path / "data") as engine:
        col = engine.collection("c")
        seg_dir = next((tmp_path / "data").rglob("seg-*"))
        with open(seg_dir / "meta.avro", "rb") as f:
            records = list(fastavro.reader(f))
        assert len(records) == n
        for i in (0, 1, 2, 1234, n - 1):
            assert records[i]["metadata"] == metadatas[i]
            want = {} if sparse[i] is None else {"s": sparse[i]["s"]}
            assert records[i]["sparse_vectors"] == want
            got = col.get(ids[i])
            assert got is not None and got["metadata"] == metadatas[i]


@settings(max_examples=15, deadline=None)
@given(rows=st.lists(metadata_maps(STORED, keys=KEYS), min_size=1, max_size=60), data=st.data())
def test_a_flush_writes_from_the_held_maps_the_files_a_rebuild_from_meta_avro_makes(
        tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], data: st.DataObject) -> None:
    """A flush copies the memtable's maps as they are held (metadata_scan.gather_maps), after updates that
    replaced some and deletes: meta.avro holds each live row's metadata, and meta.rows and payload.idx are
    the bytes a reopen rebuilds from meta.avro when they are gone."""
    root = tmp_path_factory.mktemp("flush") / "data"
    n = len(rows)
    model = {f"id{i:03d}": md for i, md in enumerate(rows)}
    with Engine.open(root) as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        col.insert(ids=list(model), vectors=np.ones((n, 2), dtype=np.float32), metadatas=rows)
        for i in data.draw(st.lists(st.integers(0, n - 1), max_size=5)):
            replaced = data.draw(metadata_maps(STORED, keys=KEYS))
            col.update_metadata(f"id{i:03d}", replaced, replace=True)
            model[f"id{i:03d}"] = replaced
        for i in data.draw(st.lists(st.integers(0, n - 1), max_size=5, unique=True)):
            col.delete([f"id{i:03d}"])
            del model[f"id{i:03d}"]
        col.flush()
    segs = sorted(root.rglob("seg-*"))
    if not model:
        return
    assert len(segs) == 1
    with open(segs[0] / "meta.avro", "rb") as f:
        assert [r["metadata"] for r in fastavro.reader(f)] == [model[k] for k in sorted(model)]
    written = {name: (segs[0] / name).read_bytes() for name in ("meta.rows", "payload.idx")}
    for name in written:
        (segs[0] / name).unlink()
    with Engine.open(root) as engine:
        assert engine.collection("c").count() == len(model)
    assert {name: (segs[0] / name).read_bytes() for name in written} == written
