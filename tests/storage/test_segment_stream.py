"""The streaming merge and segment writer (storage/merge.py, storage/segment_writer.py) write the very bytes
the whole-segment writer they replaced wrote, for every chunk size down to one row.

The reference below is the code this change replaced (compaction.merge_rows and segment._write_segment_files
as of issue 11's start), kept here verbatim but for the pinned Avro sync marker: it materialises the merged
segment (a list of ids, a list of metadata dicts, a full vector array) and writes each file whole. Random
segments (hypothesis) with deletions, duplicates superseded by a later segment, expiry (past, future, none)
and random metadata are merged both ways; every file of the two segment directories must be equal byte for
byte (meta.avro's sync marker is random by Avro's rule: both writers get the same one here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import metadata_maps, metadata_values

from proximadb.codec.schemas import record_schema
from proximadb.errors import ValidationError
from proximadb.storage import metadata_store, payload_index_file
from proximadb.storage.docfile import write_doc
from proximadb.storage.engine import Engine
from proximadb.storage.merge import MergePlan, kept_rows, merge_rows
from proximadb.storage.operations import NO_EXPIRY, expiry_or_none
from proximadb.storage.payload_index import PayloadIndex
from proximadb.storage.placed_file import crc_of
from proximadb.storage.segment import (
    FORMAT_VERSION,
    VEC_HEADER,
    VEC_MAGIC,
    Segment,
    SegmentData,
    _encode_ids,
    _write_file,
)
from proximadb.storage.segment_writer import RowStream, write_segment

DIM = 3
SYNC = b"0123456789abcdef"
NOW = 10**15
FILES = ("vectors.f32", "ids.bin", "meta.avro", "meta.rows", "payload.idx", "segment.pxdb")


# -- the reference: the whole-segment merge and writer as they were -------------------------------------
def _reference_merge(plan: MergePlan) -> SegmentData:
    ids: list[str] = []
    src_seg: list[np.ndarray] = []
    src_row: list[np.ndarray] = []
    for i, (seg, persisted) in enumerate(zip(plan.inputs, plan.persisted, strict=True)):
        rows = np.flatnonzero(kept_rows(seg, persisted, plan.now))
        ids.extend(seg.ids[r] for r in rows)
        src_seg.append(np.full(len(rows), i, dtype=np.int32))
        src_row.append(rows.astype(np.int64))
    seg_of = np.concatenate(src_seg) if src_seg else np.zeros(0, np.int32)
    row_of = np.concatenate(src_row) if src_row else np.zeros(0, np.int64)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    seg_of, row_of = seg_of[order], row_of[order]
    dim = plan.inputs[0].dim
    vectors = np.empty((len(order), dim), dtype=np.float32)
    metadata = []
    timestamps = np.empty(len(order), dtype=np.int64)
    expiring = any(getattr(seg, "expires_at", None) is not None for seg in plan.inputs)
    expires = np.full(len(order), NO_EXPIRY, dtype=np.int64) if expiring else None
    for out, (s, r) in enumerate(zip(seg_of.tolist(), row_of.tolist(), strict=True)):
        seg = plan.inputs[s]
        vectors[out] = seg.vectors[r]
        metadata.append(seg.metadata[r])
        timestamps[out] = seg.timestamps[r]
        if expires is not None and seg.expires_at is not None:
            expires[out] = seg.expires_at[r]
    return SegmentData([ids[j] for j in order], vectors, metadata, timestamps, expires)


def _reference_write(tmp: Path, segment_id: int, data: SegmentData, extra: dict[str, Any],
                     schema_version: int) -> None:
    tmp.mkdir(parents=True)
    rows, dim = data.vectors.shape
    vectors = np.ascontiguousarray(data.vectors, dtype="<f4")
    files = {
        "vectors.f32": _write_file(
            tmp / "vectors.f32", [VEC_HEADER.pack(VEC_MAGIC, FORMAT_VERSION, 0, dim, rows), vectors.data]
        ),
        "ids.bin": _write_file(tmp / "ids.bin", _encode_ids(data.ids)),
    }
    if schema_version >= 2:
        expires = data.expires_at.tolist() if data.expires_at is not None else [NO_EXPIRY] * rows
        more = {"sparse_vectors": {}} if schema_version >= 3 else {}  # these rows have none
        meta_rows: Any = (
            {"metadata": m, "timestamp": int(t), "expires_at": expiry_or_none(x), **more}
            for m, t, x in zip(data.metadata, data.timestamps, expires, strict=True)
        )
    else:
        meta_rows = ({"metadata": m, "timestamp": int(t)} for m, t in zip(data.metadata, data.timestamps, strict=True))
    with open(tmp / "meta.avro", "wb") as f:
        fastavro.writer(f, record_schema("SegmentRow", schema_version), meta_rows, codec="lz4", sync_marker=SYNC)
        f.flush()
        os.fsync(f.fileno())
    size, crc = crc_of(tmp / "meta.avro")
    files["meta.avro"] = {"bytes": size, "crc32c": crc}
    metadata_store.write_columns(tmp / metadata_store.FILE_NAME, crc,
                                 metadata_store.encode_columns(data.metadata, data.timestamps, data.expires_at))
    payload_index_file.write_index(tmp / payload_index_file.FILE_NAME, crc, PayloadIndex.build(data.metadata))
    descriptor = {"format": FORMAT_VERSION, "id": segment_id, "rows": rows, "dim": dim, "files": files, **extra,
                  "schema_version": schema_version}
    write_doc(tmp / "segment.pxdb", "segment", descriptor)


def _bytes(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FILES}


# -- random segments ----------------------------------------------------------------------------------------
stored_metadata = metadata_maps(metadata_values(text_size=4, list_text_size=3, list_size=3),
                                keys=["a", "b", "tags", "n"], max_size=4)
expiry_values = st.sampled_from([NO_EXPIRY, NO_EXPIRY, NOW - 1, NOW, NOW + 1, 2**62])


@st.composite
def segment_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 segments over a small id universe: an id in a later segment supersedes (deletes) earlier copies."""
    universe = [f"k{i:02d}" if i % 3 else f"id-é{i}" for i in range(24)]
    segments = []
    for _ in range(draw(st.integers(1, 4))):
        ids = sorted(draw(st.sets(st.sampled_from(universe), min_size=1, max_size=12)))
        n = len(ids)
        segments.append({
            "ids": ids,
            "metadata": draw(st.lists(stored_metadata, min_size=n, max_size=n)),
            "timestamps": draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
            "expires": draw(st.none() | st.lists(expiry_values, min_size=n, max_size=n)),
            "deleted": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
            "seed": draw(st.integers(0, 2**16)),
        })
    return segments


def _inputs(root: Path, specs: list[dict[str, Any]]) -> MergePlan:
    inputs, persisted = [], []
    for k, spec in enumerate(specs):
        n = len(spec["ids"])
        vectors = np.random.default_rng(spec["seed"]).standard_normal((n, DIM)).astype(np.float32)
        expires = None if spec["expires"] is None else np.asarray(spec["expires"], dtype=np.int64)
        data = SegmentData(spec["ids"], vectors, spec["metadata"], np.asarray(spec["timestamps"], np.int64), expires)
        inputs.append(Segment(write_segment(root, k, data, {"k": k}), verify=True))
        mask = np.asarray(spec["deleted"], dtype=np.uint8)
        for later in specs[k + 1 :]:  # superseded by a later segment's copy
            mask |= np.isin(spec["ids"], later["ids"]).astype(np.uint8)
        persisted.append(mask)
    return MergePlan(inputs, persisted, 99, NOW)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=segment_sets(), chunk_rows=st.sampled_from([1, 2, 3, 5, 8192]), version=st.sampled_from([1, 2, 3, 4]))
def test_a_streamed_merge_writes_the_bytes_of_the_whole_segment_writer(tmp_path_factory: pytest.TempPathFactory,
                                                                       specs: list[dict[str, Any]], chunk_rows: int,
                                                                       version: int) -> None:
    root = tmp_path_factory.mktemp("merge")
    plan = _inputs(root / "in", specs)
    reference = _reference_merge(plan)
    merged = merge_rows(plan, None, chunk_rows)
    assert merged.rows == len(reference.ids)
    if not merged.rows:
        return
    has_expiry = reference.expires_at is not None and bool((reference.expires_at != NO_EXPIRY).any())
    assert merged.has_expiry == has_expiry
    extra = {"created_at": 1.5, "compacted_from": [0, 1]}
    if version == 1 and has_expiry:  # v1 has no expiry column: both refuse
        with pytest.raises(ValueError, match="schema version 2"):
            write_segment(root / "out", plan.segment_id, merged.stream(), extra, schema_version=1)
        assert not (root / "out").exists() or not any((root / "out").iterdir())
        return
    _reference_write(root / "ref" / "seg", plan.segment_id, reference, extra, version)
    chunks = []
    stream = merged.stream()
    stream.chunks = [chunks.append(len(c.ids)) or c for c in stream.chunks]  # type: ignore[func-returns-value]
    path = write_segment(root / "out", plan.segment_id, stream, extra, schema_version=version, sync_marker=SYNC)
    assert max(chunks) <= chunk_rows and sum(chunks) == merged.rows
    assert _bytes(path) == _bytes(root / "ref" / "seg")
    # and the flush path (rows already in memory) writes them too
    again = write_segment(root / "flush", plan.segment_id, RowStream.of(reference, chunk_rows), extra,
                          schema_version=version, sync_marker=SYNC)
    assert _bytes(again) == _bytes(root / "ref" / "seg")


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_large_postings_stream_to_the_same_bytes(tmp_path: Path, chunk_rows: int) -> None:
    """Postings past one roaring container (65,536 rows) and past the array/bitset boundary (4,096), runs
    and sparse sets: the bitmaps of a chunked build serialize as a whole build's."""
    rng = np.random.default_rng(5)
    specs = []
    for k in range(3):
        n = 24_000
        ids = sorted(f"r{i * 3 + k:07d}" for i in range(n))
        specs.append({"ids": ids, "timestamps": list(range(n)), "expires": None, "seed": k,
                      "deleted": (rng.random(n) < 0.05).tolist(),
                      "metadata": [{"run": "a" if i < 20_000 else "b", "sparse": bool(i % 97 == 0), "n": i % 13,
                                    "tags": [f"t{i % 5}"] if i % 2 else None} for i in range(n)]})
    plan = _inputs(tmp_path / "in", specs)
    reference = _reference_merge(plan)
    extra = {"created_at": 2.5}
    _reference_write(tmp_path / "ref" / "seg", plan.segment_id, reference, extra, 2)
    path = write_segment(tmp_path / "out", plan.segment_id, merge_rows(plan, None, chunk_rows).stream(), extra,
                         schema_version=2, sync_marker=SYNC)
    assert _bytes(path) == _bytes(tmp_path / "ref" / "seg")


def test_the_row_mapping_names_each_output_rows_source(tmp_path: Path) -> None:
    specs = [{"ids": ["a", "c", "e"], "metadata": [{"x": 1}, {}, {"x": 3}], "timestamps": [1, 2, 3],
              "expires": [NO_EXPIRY, NOW - 1, NO_EXPIRY], "deleted": [False, False, False], "seed": 1},
             {"ids": ["b", "c", "d"], "metadata": [{}, {"y": "c2"}, {}], "timestamps": [4, 5, 6],
              "expires": None, "deleted": [False, False, True], "seed": 2}]
    plan = _inputs(tmp_path, specs)
    merged = merge_rows(plan, None, 1)
    # a (input 0 row 0), b (1, 0), c (1, 1: supersedes input 0's), e (0, 2); c of input 0 superseded, d deleted
    assert merged.source_segment.tolist() == [0, 1, 1, 0]
    assert merged.source_row.tolist() == [0, 0, 1, 2]
    assert not merged.has_expiry  # the one expiring kept row... is none: input 0's row 1 is superseded
    done: list[tuple[int, int]] = []
    merged.progress = lambda d, t: done.append((d, t))
    assert [c.ids for c in merged.stream().chunks] == [["a"], ["b"], ["c"], ["e"]]
    assert done[-1] == (6, 6)


def test_rewrite_chunk_rows_is_checked(tmp_path: Path) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="rewrite_chunk_rows"):
            Engine.open(tmp_path / "d", rewrite_chunk_rows=bad)


def test_the_daemon_setting_reaches_the_engine(tmp_path: Path) -> None:
    from proximadb.server.config import load_config

    toml = tmp_path / "p.toml"
    toml.write_text("rewrite_chunk_rows = 512\n")
    assert load_config({"config": str(toml)}, environ={}).storage_options()["rewrite_chunk_rows"] == 512
    cfg = load_config({"config": str(toml)}, environ={"PROXIMADB_REWRITE_CHUNK_ROWS": "64"})
    with Engine.open(tmp_path / "d", **cfg.storage_options()) as engine:
        assert engine.options.rewrite_chunk_rows == 64
    with pytest.raises(ValidationError, match="rewrite_chunk_rows must be positive"):
        load_config({"rewrite_chunk_rows": 0}, environ={})
