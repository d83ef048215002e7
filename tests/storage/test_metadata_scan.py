"""An insert's metadata kept encoded: the compiled scan (storage/metadata_scan.pyx) sizes and indexes the
maps as the dict path does (validation.metadata_bytes, PayloadIndex.add_rows), refuses what the decoder
refuses, and the memtable stores the maps (memtable_metadata.py) without a Python object per row."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import strategies
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.codec.payload import encode_insert
from proximadb.errors import MalformedPayloadError, ValidationError
from proximadb.storage.engine import Engine
from proximadb.storage.memtable_metadata import MemtableMetadata
from proximadb.storage.metadata_scan import gather_maps, scan_maps
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.payload_index import NumberColumn, PayloadIndex
from proximadb.storage.validation import MAX_METADATA_KEY_BYTES, metadata_bytes
from proximadb.storage.wal_io import encode_metadata_maps

EDGE = st.sampled_from([2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 2**63 - 1, -(2**63), 0.5, -0.0, float("inf")])
keys = st.one_of(st.sampled_from(["a", "b", "tags", "é", "\U0001f600"]),
                 st.sampled_from(["", "k" * MAX_METADATA_KEY_BYTES, "k" * (MAX_METADATA_KEY_BYTES + 1)]))
maps = st.one_of(st.none(), strategies.metadata_maps(st.one_of(strategies.metadata_values(), EDGE), max_size=4),
                 st.dictionaries(keys, st.one_of(strategies.metadata_values(), EDGE), max_size=4))


def _encoded(batch: list[Any]) -> tuple[bytes, np.ndarray]:
    offsets = np.empty(len(batch) + 1, dtype=np.uint64)
    return encode_metadata_maps(batch, offsets), offsets


def _numbers(column: NumberColumn) -> tuple[list[tuple[float, int]], dict[int, list[Any]], bool]:
    column.seal()
    pairs = sorted(zip(column._base_v.tolist(), column._base_r.tolist(), strict=True))
    return pairs, column._exact, column._multi


def _same_index(a: PayloadIndex, b: PayloadIndex) -> None:
    assert sorted(a.fields) == sorted(b.fields)
    for name, field in a.fields.items():
        other = b.fields[name]
        assert field.exists == other.exists, name
        assert field.postings == other.postings, name
        assert _numbers(field.numbers) == _numbers(other.numbers), name


@settings(max_examples=400, deadline=None)
@given(batch=st.lists(maps, max_size=10), start=st.integers(0, 2**20))
def test_the_scan_sizes_and_indexes_every_map_as_the_dict_path_does(batch: list[Any], start: int) -> None:
    blob, offsets = _encoded(batch)
    sizes, fields, strings, entries = scan_maps(blob, offsets, MAX_METADATA_KEY_BYTES)
    for row, size in zip(batch, sizes.tolist(), strict=True):
        if size >= 0:
            assert size == metadata_bytes(row), row
        else:  # left to the rule: it refuses the row (an empty or long key, an infinity)
            with pytest.raises(ValidationError):
                metadata_bytes(row)
    if (sizes >= 0).all():
        scanned, decoded = PayloadIndex(), PayloadIndex()
        scanned.add_scanned(start, fields, strings, entries)
        decoded.add_rows(start, batch)
        _same_index(scanned, decoded)


def test_a_key_given_twice_in_one_map_is_left_to_the_dict_path() -> None:
    # map of 2 entries: "a" -> long 1, "a" -> long 2; then the end of the map
    blob = b"\x04\x02a\x04\x02\x02a\x04\x04\x00"
    sizes, *_ = scan_maps(blob, np.array([0, len(blob)], dtype=np.uint64), MAX_METADATA_KEY_BYTES)
    assert sizes.tolist() == [-1]


@pytest.mark.parametrize(("good", "bad", "what"), [
    (b"QQQQ", b"\xff\xfe\xfd\xfc", "a metadata string of record 1 is not valid UTF-8"),
    (b"KKKK", b"\xed\xa0\x80K", "a metadata key of record 1 is not valid UTF-8"),
])
def test_metadata_that_is_not_utf8_is_refused_and_changes_nothing(tmp_path: Path, good: bytes, bad: bytes,
                                                                   what: str) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        payload = encode_insert(None, ids=["x", "y"], vectors=np.ones((2, 2), np.float32),
                                metadata=[{"s": "ok"}, {"KKKK": "QQQQ"}])
        assert payload.count(good) == 1
        with pytest.raises(MalformedPayloadError, match=what):
            col.insert_payload(payload.replace(good, bad))
        assert col.count() == 0
        col.insert_payload(payload)
        assert [col.get(i)["metadata"] for i in ("x", "y")] == [{"s": "ok"}, {"KKKK": "QQQQ"}]


def test_a_payload_with_a_key_twice_stores_and_filters_the_last_value_only(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        payload = encode_insert(None, ids=["x"], vectors=np.ones((1, 2), np.float32),
                                metadata=[{"kA": "v" * 50_000, "kB": 2}])
        col.insert_payload(payload.replace(b"kB", b"kA"))  # the map now says kA twice: a dict keeps the last
        assert col.get("x")["metadata"] == {"kA": 2}
        assert col.count(filter={"kA": 2}) == 1
        assert col.count(filter={"kA": "v" * 50_000}) == 0
        assert col.memtable._metadata.nbytes < 100  # what the dict holds, not the map's first copy of kA


def test_bad_utf8_after_a_row_left_to_the_rule_is_still_malformed(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        payload = encode_insert(None, ids=["x"], vectors=np.ones((1, 2), np.float32),
                                metadata=[{"kA": 1, "kB": 2, "s": "QQQQ"}])
        bad = payload.replace(b"kB", b"kA").replace(b"QQQQ", b"\xff\xfe\xfd\xfc")
        with pytest.raises(MalformedPayloadError, match="a metadata string of record 0 is not valid UTF-8"):
            col.insert_payload(bad)
        assert col.count() == 0


def test_metadata_updates_count_toward_the_flush(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never", flush_bytes=200_000, auto_compact=False) as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        col.insert(ids=["x"], vectors=np.ones((1, 2), np.float32), metadatas=[{"n": 0}])
        for n in range(300):  # ~1 kB each: past flush_bytes by the 200th
            col.update_metadata("x", {"n": n, "text": "t" * 1000}, replace=True)
        col.wait_for_flush()
        assert col.stats()["segments"] >= 1
        assert col.get("x")["metadata"] == {"n": 299, "text": "t" * 1000}


def _rows(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    metadata = [{"tenant": f"t{i % 97}", "year": 1990 + i % 30, "price": float(i) / 7,
                 "tags": [f"g{i % 5}", f"g{i % 11}"], "flag": bool(i % 2)} for i in range(n)]
    return {"ids": [f"{seed}-{i}" for i in range(n)], "vectors": rng.random((n, 4), dtype=np.float32),
            "metadatas": metadata}


def test_the_memtable_keeps_no_python_object_per_row_of_metadata(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", 4)
        col = engine.collection("c")
        col.insert(**_rows(1000, 0))
        gc.collect()
        before = len(gc.get_objects())
        for seed in range(1, 5):
            col.insert(**_rows(5000, seed))
        gc.collect()
        grown = len(gc.get_objects()) - before
        assert col.count() == 21_000 and col.stats()["segments"] == 0  # all in the memtable
        assert grown < 2_000, f"{grown} more objects tracked by the collector after 20,000 rows"
        assert col.count(filter={"tenant": "t3", "flag": True}) == sum(
            1 for n in (1000, 5000, 5000, 5000, 5000) for i in range(n) if i % 97 == 3 and i % 2)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("append"), st.lists(maps, min_size=1, max_size=6)),
                              st.tuples(st.just("set"), st.integers(0, 10**6), maps)), max_size=12),
       picks=st.lists(st.integers(0, 10**6), max_size=20))
def test_memtable_metadata_reads_back_what_was_written(ops: list[Any], picks: list[int]) -> None:
    column, model, replaced = MemtableMetadata(initial_rows=2), [], 0
    for op, *args in ops:
        if op == "append":
            batch = args[0]
            if len(model) % 2:
                column.append(batch)
            else:
                column.append_encoded(*_encoded(batch))
            model.extend(m or {} for m in batch)
        elif model:
            row = args[0] % len(model)
            column.set(row, args[1])
            model[row] = args[1] or {}
            replaced += 1
    assert len(column) == len(model)
    assert column[:] == model
    rows = [p % len(model) for p in picks] if model else []
    assert column.take(np.array(sorted(rows), dtype=np.int64)) == [model[r] for r in sorted(rows)]
    assert column.take(np.array(rows, dtype=np.int64)) == [model[r] for r in rows]
    assert column.replaced == replaced
    # a flush's view: the maps of any rows, in any order, gathered without decoding (metadata_scan.gather_maps)
    blob, offsets = column.encoded(np.array(rows, dtype=np.int64))
    assert offsets.shape == (len(rows) + 1,) and int(offsets[0]) == 0 and int(offsets[-1]) == len(blob)
    expected_blob, expected_offsets = _encoded([model[r] for r in rows])
    assert blob == expected_blob and offsets.tolist() == expected_offsets.tolist()


def test_gathering_maps_refuses_what_is_not_a_held_map() -> None:
    blob, _ = _encoded([{"a": "b"}])
    with pytest.raises(ValueError, match="chunk 1 of 1"):
        gather_maps([blob], np.array([1 << 36], dtype=np.uint64), 36)
    with pytest.raises(ValueError, match="past chunk 0"):
        gather_maps([blob], np.array([len(blob)], dtype=np.uint64), 36)
    with pytest.raises(MalformedPayloadError):
        gather_maps([blob[:-2]], np.array([0], dtype=np.uint64), 36)  # truncated
    with pytest.raises(IndexError):
        MemtableMetadata().encoded(np.array([0], dtype=np.int64))


def test_a_seal_whose_new_memtable_cannot_be_made_changes_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine.open(tmp_path / "d", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        col.insert(ids=[f"a{i}" for i in range(10)], vectors=np.ones((10, 2), np.float32))

        def refused() -> Any:
            raise MemoryError("address space refused")

        monkeypatch.setattr(col, "_new_memtable", refused)
        with pytest.raises(MemoryError):
            col.flush()
        monkeypatch.undo()
        assert col.count() == 10 and not col.sealed
        col.insert(ids=["b"], vectors=np.ones((1, 2), np.float32))
        col.flush()
        assert col.count() == 11 and sum(seg.rows for seg in col.segments) == 11


def test_expiry_fills_only_the_rows_written_of_the_memtable_reserve(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2)
        col = engine.collection("c")
        col.insert(ids=["never"], vectors=np.ones((1, 2), np.float32))
        later = 4_102_444_800_000_000  # 2100-01-01, in microseconds
        col.insert([{"id": "soon", "vector": [1.0, 2.0], "expires_at": later}])
        expires = col.memtable.expires_at
        assert expires is not None and expires.shape[0] > 1000  # the reserve, not the rows
        assert expires[:2].tolist() == [NO_EXPIRY, later]
        assert col.count() == 2 and col.get("soon")["expires_at"] == later
