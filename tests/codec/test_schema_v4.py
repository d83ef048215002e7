"""Schema v4: VectorRecord.named_vectors and CollectionConfig.vectors, and older data read as v4 by Avro resolution."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from proximadb.codec import schemas


def _fields(name: str, version: int) -> list[str]:
    return [f["name"] for f in schemas.record_schema(name, version)["fields"]]


def test_v4_adds_named_vectors_to_the_record_only() -> None:
    assert schemas.CURRENT_SCHEMA_VERSION == 4
    assert _fields("VectorRecord", 4) == [*_fields("VectorRecord", 3), "named_vectors"]
    assert _fields("SegmentRow", 4) == _fields("SegmentRow", 3)  # named vectors live in their own files
    assert _fields("CollectionConfig", 4) == [*_fields("CollectionConfig", 3), "vectors"]
    field = schemas.record_schema("VectorRecord", 4)["fields"][-1]
    assert field["default"] == {} and field["type"]["values"] == {"type": "array", "items": "float"}
    for name in ("VectorBatch", "VectorDelete", "VectorUpdate", "SearchRequest", "SearchResult"):
        assert schemas.record_schema(name, 4)["name"] == f"proximadb.v4.{name}"


def _write(name: str, version: int, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.record_schema(name, version), datum)
    return out.getvalue()


def _read_as_current(name: str, version: int, data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), schemas.record_schema(name, version),
                                      schemas.resolving_reader_schema(name, version))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_batches_read_as_v4_without_named_vectors(version: int) -> None:
    record: dict[str, Any] = {"id": "a", "vector": [1.0, -2.5], "metadata": {"k": "v"}, "timestamp": 7}
    if version >= 2:
        record["expires_at"] = 99
    if version >= 3:
        record["sparse_vectors"] = {"kw": {"indices": [3], "values": [0.5]}}
    got = _read_as_current("VectorBatch", version, _write("VectorBatch", version, {"upsert": True,
                                                                                   "records": [record]}))
    assert got["records"][0] == {"expires_at": None, "sparse_vectors": {}, **record, "named_vectors": {}}


def test_v4_batch_and_config_round_trip() -> None:
    record = {"id": "a", "vector": [1.0], "metadata": {}, "timestamp": 0, "expires_at": None, "sparse_vectors": {},
              "named_vectors": {"title": [0.5, 0.25], "body": [1.0, 2.0, 3.0]}}
    batch = {"upsert": False, "records": [record]}
    assert _read_as_current("VectorBatch", 4, _write("VectorBatch", 4, batch)) == batch
    config = {"name": "c", "dimension": 4, "distance_metric": "cosine", "indexing_algorithm": "flat",
              "index_params": {}, "filterable_metadata_fields": [], "description": None}
    old = _read_as_current("CollectionConfig", 3, _write("CollectionConfig", 3, config))
    assert old == {**config, "vectors": {}}
    declared = {**config, "vectors": {"title": {"dimension": 2, "distance_metric": "dot_product"}}}
    # the per-name index settings left out read as null: the collection's
    assert _read_as_current("CollectionConfig", 4, _write("CollectionConfig", 4, declared)) == {
        **config, "vectors": {"title": {"dimension": 2, "distance_metric": "dot_product", "indexing_algorithm": None,
                                        "index_params": None}}}
