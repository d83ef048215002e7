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
@given(version=st.sampled_from([1, 2, 3, 4]),
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
    with pytest.raises(ValueError, match="schema version 5"):
        RowBlocks(5, SYNC, lz4.block.compress, NO_EXPIRY)
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


# -- maps as a client may send them: any valid Avro encoding ---------------------------------------------
def _long(n: int, pad: int = 0) -> bytes:
    """A zig-zag varint, padded with ``pad`` redundant continuation bytes (still valid: at most 10)."""
    z = ((n << 1) ^ (n >> 63)) & (2**64 - 1)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    for _ in range(min(pad, 10 - len(out) - 1)):
        out.append(z | 0x80)
        z = 0
    out.append(z)
    return bytes(out)


def _loose_items(items: list[bytes], split: bool, pad: int) -> bytes:
    """Items in blocks with negative counts and byte sizes, one block each when ``split``."""
    if not items:
        return _long(0, pad)
    if split:
        return b"".join(_long(-1, pad) + _long(len(i), pad) + i for i in items) + _long(0, pad)
    body = b"".join(items)
    return _long(-len(items), pad) + _long(len(body), pad) + body + _long(0, pad)


def _loose_map(md: dict[str, Any], split: bool, pad: int) -> bytes:
    def text(x: str) -> bytes:
        return _long(len(x.encode()), pad) + x.encode()

    def value(v: Any) -> bytes:
        if v is None:
            return _long(0, pad)
        if isinstance(v, bool):
            return _long(1, pad) + bytes([v])
        if isinstance(v, int):
            return _long(2, pad) + _long(v, pad)
        if isinstance(v, float):
            return _long(3, pad) + np.float64(v).tobytes()
        if isinstance(v, str):
            return _long(4, pad) + text(v)
        return _long(5, pad) + _loose_items([text(x) for x in v], split, pad)

    return _loose_items([text(k) + value(v) for k, v in md.items()], split, pad)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(metadata_maps(STORED, keys=KEYS), min_size=1, max_size=20), split=st.booleans(),
       pad=st.integers(0, 3), order=st.randoms())
def test_gathered_maps_are_canonical_whatever_valid_encoding_was_held(rows: list[dict[str, Any]], split: bool,
                                                                       pad: int, order: Any) -> None:
    """A flush or merge writes each map in the encoding encode_metadata_maps gives its decoded dict (so
    meta.rows is what a rebuild from meta.avro makes), whatever valid encoding a client sent."""
    from proximadb.storage.metadata_scan import gather_maps
    from proximadb.storage.wal_io import decode_metadata_maps

    loose = [_loose_map(md, split, pad) for md in rows]
    chunks = [b"".join(loose[: len(loose) // 2]), b"".join(loose[len(loose) // 2 :])]
    where = []
    for k in range(len(loose)):
        chunk = 0 if k < len(loose) // 2 else 1
        first = 0 if chunk == 0 else len(loose) // 2
        where.append((chunk << 36) | sum(len(b) for b in loose[first:k]))
    picks = list(range(len(rows)))
    order.shuffle(picks)
    assert decode_metadata_maps(loose[picks[0]], 0, 1)[0][0] == rows[picks[0]]  # the loose map is valid
    blob, offsets = gather_maps(chunks, np.array([where[k] for k in picks], dtype=np.uint64), 36)
    expected_offsets = np.empty(len(picks) + 1, dtype=np.uint64)
    assert blob == encode_metadata_maps([rows[k] for k in picks], expected_offsets)
    assert offsets.tolist() == expected_offsets.tolist()


def test_a_payload_of_loose_maps_is_flushed_canonical(tmp_path: Path) -> None:
    """Maps a client sent in blocks with byte sizes and padded varints are held as sent until the flush,
    which writes them canonical: meta.rows and payload.idx are what a reopen rebuilds from meta.avro."""
    from proximadb.codec.framing import encode_frame

    rows = [{"tenant": f"t{i % 3}", "n": i, "tags": ["a", f"b{i % 2}"], "flag": i % 2 == 0, "z": None,
             "x": 0.5 * i} for i in range(50)]
    body = bytearray(b"\x00" + _long(len(rows)))  # vector_batch v3: upsert false, then the records
    for i, md in enumerate(rows):
        rid = f"id{i:03d}".encode()
        body += _long(len(rid)) + rid + _long(2) + np.array([1.0, i], dtype="<f4").tobytes() + _long(0)
        body += _loose_map(md, split=True, pad=2) + _long(1000 + i) + _long(0) + _long(0)
    body += _long(0)
    root = tmp_path / "data"
    with Engine.open(root) as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        col.insert_payload(encode_frame("vector_insert", bytes(body), 3))
        assert col.count(filter={"tags": "b1"}) == 25
        col.flush()
        assert col.get("id007")["metadata"] == rows[7]
    seg = next(root.rglob("seg-*"))
    written = {name: (seg / name).read_bytes() for name in ("meta.rows", "payload.idx")}
    for name in written:
        (seg / name).unlink()
    with Engine.open(root) as engine:
        col = engine.collection("c")
        assert col.count(filter={"n": {"$gte": 10}, "flag": True}) == 20
    assert {name: (seg / name).read_bytes() for name in written} == written
