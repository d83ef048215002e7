"""The real daemon: start-up, settings, refusal cases, clean stop, kill -9 under load."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.errors import ProximaDBError, ValidationError
from proximadb.server.config import load_config


def test_serves_both_protocols_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data").start()
    logs = daemon.logs()
    assert f"REST http://127.0.0.1:{daemon.rest_port}" in logs and f"gRPC 127.0.0.1:{daemon.grpc_port}" in logs
    assert str(tmp_path / "data") in logs
    health = daemon.health()
    assert health is not None and health["grpc_port"] == daemon.grpc_port and health["rest_port"] == daemon.rest_port
    with proximadb.connect(daemon.rest_url) as client:
        assert client.protocol == "grpc"  # learned from /health
        client.create_collection("c", 4, distance_metric="euclidean")
        client.insert_vectors("c", ids=["a", "b"], vectors=np.eye(2, 4, dtype=np.float32))
    assert daemon.stop(signal.SIGTERM) == 0
    assert "stopped cleanly" in daemon.logs()
    with Daemon(tmp_path / "data") as again, proximadb.connect_rest(again.rest_url) as client:
        assert client.count("c") == 2
        np.testing.assert_array_equal(client.get_vector("c", "b")["vector"], [0, 1, 0, 0])


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data").start()
    assert daemon.stop(signal.SIGINT) == 0
    assert "stopped cleanly" in daemon.logs()


def test_second_daemon_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data") as first:
        second = Daemon(tmp_path / "data").start(wait=False)
        assert second.proc is not None
        code = second.proc.wait(timeout=30)
        assert code != 0
        assert "in use by process" in second.logs()
        assert "Traceback" not in second.logs()
        assert first.health() is not None


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        daemon = Daemon(tmp_path / "data")
        daemon.grpc_port = blocker.getsockname()[1]
        daemon.start(wait=False)
        assert daemon.proc is not None and daemon.proc.wait(timeout=30) != 0
        assert "cannot listen for gRPC" in daemon.logs() and "Traceback" not in daemon.logs()
    finally:
        blocker.close()


def test_kill_9_under_load_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", "--flush-bytes", "200000").start()
    with proximadb.connect_grpc(daemon.grpc_target) as client:
        client.create_collection("load", 16, distance_metric="euclidean")
    acked: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(worker: int, protocol: str) -> None:
        rng = np.random.default_rng(worker)
        connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
        target = daemon.grpc_target if protocol == "grpc" else daemon.rest_url
        try:
            with connect(target, timeout=5) as client:
                batch = 0
                while not stop.is_set():
                    ids = [f"w{worker}-{batch}-{i}" for i in range(50)]
                    vecs = rng.standard_normal((50, 16)).astype(np.float32)
                    client.insert_vectors("load", ids=ids, vectors=vecs)
                    acked.update(zip(ids, vecs, strict=True))  # only after the server acknowledged
                    batch += 1
        except ProximaDBError:
            pass  # the daemon died under us: expected
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w, "grpc" if w % 2 else "rest")) for w in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 3000 and not errors:
        threading.Event().wait(0.05)
    daemon.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    snapshot = dict(acked)
    with Daemon(tmp_path / "data") as again, proximadb.connect_grpc(again.grpc_target) as client:
        ids = list(snapshot)
        found = {}
        for start in range(0, len(ids), 1000):
            for rec in client.get_vectors("load", ids[start : start + 1000]):
                found[rec["id"]] = rec["vector"]
        missing = [i for i in ids if i not in found]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        for id_, vec in snapshot.items():
            np.testing.assert_array_equal(found[id_], vec)
        assert client.count("load") >= len(snapshot)


def test_config_precedence_flags_env_file(tmp_path: Path) -> None:
    cfg = tmp_path / "proximadb.toml"
    cfg.write_text('rest_port = 7001\ngrpc_port = 7002\nfsync = "never"\ndata_dir = "/tmp/from-file"\n')
    env = {"PROXIMADB_GRPC_PORT": "7102", "PROXIMADB_WAL_STRATEGY": "binary"}
    conf = load_config({"config": str(cfg), "rest_port": 7201}, env)
    assert (conf.rest_port, conf.grpc_port, conf.fsync, conf.wal_strategy) == (7201, 7102, "never", "binary")
    assert conf.data_dir == Path("/tmp/from-file")
    with pytest.raises(ValidationError, match="unknown setting 'bogus'"):
        cfg.write_text("bogus = 1\n")
        load_config({"config": str(cfg)}, {})
    with pytest.raises(ValidationError, match="PROXIMADB_REST_PORT"):
        load_config({}, {"PROXIMADB_REST_PORT": "eighty"})
    with pytest.raises(ValidationError, match="fsync"):
        load_config({"fsync": "sometimes"}, {})
