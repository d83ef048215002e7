"""The files a segment derives from meta.avro (meta.rows, payload.idx): exact round trips, and a
reopen that answers the same whatever happened to them (missing, damaged, from another segment,
not a file): they are rebuilt from meta.avro, never trusted blindly, never a reason not to open."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_payload_index import FIELDS, STRINGS, filters, scalars

from proximadb.filters import compile_filter
from proximadb.storage import metadata_store, payload_index_file
from proximadb.storage.engine import Engine
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.payload_index import PayloadIndex

DIM = 4
stored_values = st.one_of(scalars, st.lists(st.sampled_from(STRINGS), max_size=3))  # what a segment row holds
stored_metadata = st.dictionaries(st.sampled_from(FIELDS), stored_values, max_size=3)


@settings(max_examples=300, deadline=None)
@given(spec=filters, records=st.lists(stored_metadata, min_size=1, max_size=14))
def test_a_saved_payload_index_answers_as_the_built_one(spec: dict[str, Any], records: list[Any]) -> None:
    built = PayloadIndex.build(records)
    body = b"".join(bytes(memoryview(p).cast("B")) for p in payload_index_file.encode_index(built))
    loaded = payload_index_file._decode(memoryview(body))
    flt = compile_filter(json.dumps(spec))
    assert flt.index_mask(loaded, len(records)).tolist() == flt.mask(records).tolist()


@settings(max_examples=200, deadline=None)
@given(records=st.lists(stored_metadata, max_size=20), data=st.data())
def test_metadata_columns_round_trip(records: list[dict[str, Any]], data: st.DataObject) -> None:
    n = len(records)
    timestamps = np.array(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), np.int64)
    expiring = data.draw(st.booleans())
    expires = np.array([NO_EXPIRY if i % 2 else 10**15 + i for i in range(n)], np.int64) if expiring else None
    body = b"".join(bytes(memoryview(p).cast("B")) for p in metadata_store.encode_columns(records, timestamps, expires))
    columns = metadata_store.MetadataColumns(body, n)
    assert list(columns.metadata) == records
    assert columns.timestamps.tolist() == timestamps.tolist()
    if expires is None or not (expires != NO_EXPIRY).any():
        assert columns.expires_at is None
    else:
        assert columns.expires_at is not None and columns.expires_at.tolist() == expires.tolist()


def _build(data: Path) -> Path:
    """A collection with two segments of varied metadata (one row expiring); returns its segments dir."""
    rng = np.random.default_rng(7)
    with Engine.open(data, fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean")
        col = engine.collection("c")
        for part in range(2):
            ids = [f"{part}-{i:03d}" for i in range(150)]
            metadatas: list[Any] = [
                {"a": i % 7, "b": STRINGS[i % len(STRINGS)], "tags": ["x", "y"][: i % 3], "big": 2**62 + i,
                 "f": i / 3, "t": i % 2 == 0, "n": None} if i % 11 else {}
                for i in range(150)
            ]
            col.insert(ids=ids, vectors=rng.standard_normal((150, DIM)).astype(np.float32), metadatas=metadatas)
            col.flush()
        col.insert([{"id": "expiring", "vector": np.ones(DIM, np.float32), "metadata": {"a": 1},
                     "expires_at": 253402300799999999}])
        col.flush()
        return col.directory / "segments"


COUNTED: list[dict[str, Any]] = [{"a": 3}, {"b": "é"}, {"tags": "y"}, {"big": {"$gt": 2**62 + 100}},
                                 {"f": {"$lt": 10.5}}, {"t": True}, {"n": None}, {"a": {"$exists": False}}]


def _answers(data: Path) -> dict[str, Any]:
    with Engine.open(data, fsync="never", auto_compact=False) as engine:
        col = engine.collection("c")
        page, _ = col.scroll(limit=1000, include_vectors=False)
        return {
            "scroll": page,
            "counts": [col.count(f) for f in COUNTED],
            "search": col.search(np.ones(DIM, np.float32), k=20, filter={"a": {"$in": [1, 2]}}),
            "get": _plain(col.get("expiring")),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.tolist() if isinstance(value, np.ndarray) else value


def _damage(path: Path, how: str, other: Path) -> None:
    if how == "missing":
        path.unlink()
    elif how == "flipped":
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0x40
        path.write_bytes(bytes(raw))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "other segment's":
        shutil.copyfile(other, path)
    elif how == "a directory":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize("name", ["meta.rows", "payload.idx"])
@pytest.mark.parametrize("how", ["missing", "flipped", "truncated", "other segment's", "a directory"])
def test_a_derived_file_in_doubt_is_rebuilt_and_answers_do_not_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, how: str
) -> None:
    data = tmp_path / "data"
    segments = sorted(p for p in _build(data).iterdir())
    assert all((seg / name).is_file() for seg in segments)  # written with the segment by the flush
    before = _answers(data)
    _damage(segments[0] / name, how, segments[1] / name)
    with caplog.at_level(logging.INFO, logger="proximadb.storage"):
        assert _answers(data) == before
    assert f"rebuilding {name}" in caplog.text
    if how != "a directory":  # a directory in its place cannot be replaced: the segment opens without the file
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="proximadb.storage"):
            assert _answers(data) == before
        assert "rebuilding" not in caplog.text  # saved again by the first reopen


def test_segments_from_before_derived_files_open_and_gain_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    segments = sorted(_build(data).iterdir())
    before = _answers(data)
    for seg in segments:
        (seg / "meta.rows").unlink()
        (seg / "payload.idx").unlink()
    assert _answers(data) == before
    assert all((seg / "meta.rows").is_file() and (seg / "payload.idx").is_file() for seg in segments)
