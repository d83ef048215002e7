"""A collection whose log of record is external (cluster mode), without a log server: entries handed over directly.

storage/collection_apply.py, storage/log_of_record.py and the manifest's ``"log"`` field (storage/manifest.py).
The shard log and the applier thread on real NATS servers are tests/cluster/test_applier.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.errors import CorruptionError, ExternalLogError
from proximadb.storage.docfile import encode_doc, read_doc
from proximadb.storage.engine import Engine
from proximadb.storage.manifest import Manifest

T = 1_800_000_000_000_000  # a log time, µs


def _open(path: Path, **options: object) -> Engine:
    engine = Engine.open(path, log_of_record="external", **options)
    if not engine.list_collections():
        engine.create_collection("docs", 2, distance_metric="euclidean")
    return engine


def test_the_manifest_records_the_applied_sequence_at_each_flush_and_the_open_resumes_there(tmp_path: Path) -> None:
    with _open(tmp_path / "d", flush_on_close=False) as engine:
        col = engine.collection("docs")
        manifest_dir = col.directory
        assert read_doc(manifest_dir / "MANIFEST", "manifest")["log"] == "external"  # marked at the first open
        assert not (manifest_dir / "wal").exists()
        col.apply_log_entry(1, encode_insert(ids=["a", "b"], vectors=[[1, 0], [0, 1]]), T)
        col.apply_log_entry(2, encode_payload("vector_delete", {"ids": ["a"], "filter": None}), T)
        col.flush()
        assert Manifest.load(manifest_dir).checkpoint_seq == 2
        col.apply_log_entry(3, encode_insert(ids=["c"], vectors=[[1, 1]]), T)  # in the memtable only
        assert col.stats()["checkpoint_seq"] == 2 and col.applied_seq == 3
    with _open(tmp_path / "d") as engine:
        col = engine.collection("docs")
        assert col.applied_seq == 2 and sorted(r["id"] for r in col.get_many(["a", "b", "c"])) == ["b"]
        assert col.apply_log_entry(3, encode_insert(ids=["c"], vectors=[[1, 1]]), T).outcome == "applied"
        assert col.count() == 2


def test_entries_are_stamped_with_their_log_time_and_resolved_at_their_position(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as engine:
        col = engine.collection("docs")
        col.apply_log_entry(1, encode_insert(ids=["a"], vectors=[[1, 0]], metadata=[{"k": "x"}]), T)
        col.apply_log_entry(2, encode_payload("vector_update", {
            "updates": [{"id": "a", "metadata": {"n": 1}, "replace": False}], "timestamp": 0}), T + 5)
        col.apply_log_entry(3, encode_payload("vector_delete", {"ids": [], "filter": json.dumps({"k": "x"})}), T + 9)
        col.apply_log_entry(4, encode_insert(ids=["b"], vectors=[[0, 1]], metadata=[{"k": "x"}]), T + 10)
        assert col.get("a") is None
        assert col.get("b", include_vector=False) == {"id": "b", "metadata": {"k": "x"}, "timestamp": T + 10}
        with pytest.raises(ValueError, match="no log time"):
            col.apply_log_entry(5, encode_insert(ids=["c"], vectors=[[0, 1]]), 0)
        assert col.applied_seq == 4
        refused = col.apply_log_entry(5, encode_insert(ids=["b"], vectors=[[1, 1]]), T + 11)
        assert (refused.outcome, col.refused_entries, col.applied_seq) == ("refused", 1, 5)
        search = encode_payload("vector_search", {"queries": [[1.0, 0.0]], "k": 1, "filter": None,
                                                  "include_vectors": False, "include_metadata": False,
                                                  "exact": False})
        assert col.apply_log_entry(6, search, T).outcome == "refused"  # a read is not a log entry
        assert col.count() == 1


def test_a_manifest_naming_an_unknown_log_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as engine:
        directory = engine.collection("docs").directory
    body = read_doc(directory / "MANIFEST", "manifest")
    (directory / "MANIFEST").write_bytes(encode_doc("manifest", {**body, "log": "kafka"}))
    with pytest.raises(CorruptionError, match="unknown log of record 'kafka'"):
        Manifest.load(directory)
    (directory / "MANIFEST").write_bytes(encode_doc("manifest", body))
    with pytest.raises(ExternalLogError, match="open it in cluster mode"):
        Engine.open(tmp_path / "d")
