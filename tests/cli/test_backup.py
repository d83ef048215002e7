"""Backup while a real daemon takes writes; restore verified by checksums."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon
from _support import dump_in_fresh_process
from click.testing import CliRunner

import proximadb
from proximadb.cli.main import cli
from proximadb.errors import CorruptionError, ValidationError
from proximadb.tools.backup import backup, restore

DIM = 12


def _vector(id_: str) -> np.ndarray:
    return np.random.default_rng(abs(hash(id_)) % (2**32)).standard_normal(DIM).astype(np.float32)


def test_backup_under_load_then_restore(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", "--flush-bytes", "60000").start()
    acked: list[str] = []
    deleted: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with proximadb.connect_grpc(daemon.grpc_target) as client:
            n = 0
            while not stop.is_set():
                ids = [f"w{n}-{i}" for i in range(40)]
                client.insert_vectors("c", ids=ids, vectors=np.stack([_vector(i) for i in ids]),
                                      metadatas=[{"n": n}] * 40)
                acked.extend(ids)
                n += 1
                if n % 5 == 0:
                    doomed = [f"w{n - 5}-{i}" for i in range(10)]
                    client.delete_vectors("c", doomed)
                    deleted.extend(doomed)

    with proximadb.connect_grpc(daemon.grpc_target) as client:
        client.create_collection("c", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
        client.create_collection("other", 4)
        client.insert_vectors("other", ids=["x"], vectors=np.ones((1, 4), np.float32))
    thread = threading.Thread(target=writer)
    thread.start()
    while len(acked) < 2000:
        threading.Event().wait(0.02)
    before_backup = set(acked)
    deleted_before = set(deleted)
    summary = backup(tmp_path / "data", tmp_path / "backup")
    stop.set()
    thread.join(timeout=30)
    assert daemon.stop() == 0
    assert set(summary["collections"]) == {"c", "other"}

    restore(tmp_path / "backup", tmp_path / "restored")
    state = dump_in_fresh_process(tmp_path / "restored")
    assert state["other"].keys() == {"x"}
    restored = state["c"]
    missing = before_backup - set(deleted) - set(restored)
    assert not missing, f"{len(missing)} writes acknowledged before the backup are not in it"
    assert not deleted_before & set(restored), "deletions acknowledged before the backup came back"
    for id_, rec in restored.items():  # whatever is there is intact
        np.testing.assert_array_equal(np.asarray(rec["vector"], np.float32), _vector(id_))


def test_damaged_backup_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    from proximadb.storage.engine import Engine

    with Engine.open(tmp_path / "data") as engine:
        engine.create_collection("c", DIM)
        col = engine.collection("c")
        col.insert(ids=["a", "b"], vectors=np.stack([_vector("a"), _vector("b")]))
        col.flush()
        col.insert(ids=["c"], vectors=_vector("c")[None])
    backup(tmp_path / "data", tmp_path / "bk")
    with pytest.raises(ValidationError, match="not empty"):
        backup(tmp_path / "data", tmp_path / "bk")
    victim = next((tmp_path / "bk").rglob("vectors.f32"))
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 1
    victim.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match=r"vectors\.f32"):
        restore(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    result = CliRunner().invoke(cli, ["restore", "--verify-only", str(tmp_path / "bk"), str(tmp_path / "x")])
    assert result.exit_code == 1 and "vectors.f32" in result.output


def test_backup_and_restore_cli(tmp_path: Path) -> None:
    from proximadb.storage.engine import Engine

    with Engine.open(tmp_path / "data") as engine:
        engine.create_collection("c", DIM)
        engine.collection("c").insert(ids=["a"], vectors=_vector("a")[None], metadatas=[{"k": "v"}])
    runner = CliRunner()
    out = runner.invoke(cli, ["backup", str(tmp_path / "data"), str(tmp_path / "bk")])
    assert out.exit_code == 0 and "1 collection(s)" in out.output
    out = runner.invoke(cli, ["restore", str(tmp_path / "bk"), str(tmp_path / "new")])
    assert out.exit_code == 0, out.output
    assert dump_in_fresh_process(tmp_path / "new")["c"]["a"]["metadata"] == {"k": "v"}
    out = runner.invoke(cli, ["restore", str(tmp_path / "bk"), str(tmp_path / "new")])
    assert out.exit_code == 1 and "not empty" in out.output
    out = runner.invoke(cli, ["backup", str(tmp_path / "nope"), str(tmp_path / "bk2")])
    assert out.exit_code == 1 and "not a ProximaDB data directory" in out.output


def test_backup_carries_named_vectors_and_restore_reads_them(tmp_path: Path) -> None:
    from proximadb.storage.engine import Engine

    rng = np.random.default_rng(3)
    ids = [f"r{i}" for i in range(20)]
    title = rng.standard_normal((20, 3)).astype(np.float32)
    with Engine.open(tmp_path / "data") as engine:
        engine.create_collection("c", DIM, vectors={"title": {"dimension": 3, "distance_metric": "euclidean"}})
        col = engine.collection("c")
        col.insert(ids=ids, vectors=np.stack([_vector(i) for i in ids]), named_vectors={"title": title})
        col.flush()
    backup(tmp_path / "data", tmp_path / "bk")
    assert list((tmp_path / "bk").rglob("named/title.f32"))
    restore(tmp_path / "bk", tmp_path / "restored")
    with Engine.open(tmp_path / "restored") as engine:
        col = engine.collection("c")
        assert col.search(title[7], k=1, using="title")[0]["id"] == "r7"
        assert np.array_equal(col.get("r4")["named_vectors"]["title"], title[4])  # type: ignore[index]
