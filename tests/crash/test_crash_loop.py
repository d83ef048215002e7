"""Crash loop: a real daemon under insert/upsert/delete load from several client processes, SIGKILLed over and over.

Client processes (tests/crash/_crash_loop_client.py; gRPC and REST) log every write
before sending it and its ack only after the server acknowledged it. The
daemon runs with a small --flush-bytes (flushes, with HNSW index builds, every
few hundred records) and one client compacts every 150 ops, so kills land in
flush, compaction and index build as well as plain WAL appends. After every
restart: every acknowledged write is there with its latest value, no
acknowledged delete is back (a write that failed may or may not have been
applied, until a later ack settles that id), and the directory opened clean
(the daemon started; a final fresh-process open of the directory agrees).

Default: 3 short cycles. ``PROXIMADB_SLOW=1``: 50 cycles (``PROXIMADB_CRASH_CYCLES`` overrides).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon
from _support import child_env, dump_in_fresh_process

import proximadb

CLIENT = Path(__file__).resolve().parent / "_crash_loop_client.py"
PROTOCOLS = ["grpc", "rest", "grpc", "rest"]
DAEMON_ARGS = ("--flush-bytes", "60000")


def _expected(workdir: Path) -> tuple[dict[str, tuple[int | None, set[int | None]]], int, int]:
    """Per id: (acked state, other states a failed write may have left); plus acked and failed op counts.

    A state is a version (live) or None (deleted / never inserted).
    """
    state: dict[str, tuple[int | None, set[int | None]]] = {}
    acked = failed = 0
    for path in sorted(workdir.glob("acks-*.jsonl")):
        tries: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["t"] == "try":
                tries[entry["n"]] = entry
                continue
            attempt = tries.pop(entry["n"])
            new = None if attempt["op"] == "del" else attempt["v"]
            for record_id in attempt["ids"]:
                current, maybe = state.get(record_id, (None, set()))
                if entry["t"] == "ok":
                    state[record_id] = (new, set())
                else:
                    state[record_id] = (current, maybe | {new})
            acked += entry["t"] == "ok"
            failed += entry["t"] == "fail"
        for attempt in tries.values():  # in flight when the client stopped: never acked
            for record_id in attempt["ids"]:
                current, maybe = state.get(record_id, (None, set()))
                state[record_id] = (current, maybe | {None if attempt["op"] == "del" else attempt["v"]})
    return state, acked, failed


def _verify(found: dict[str, dict[str, Any]], workdir: Path) -> tuple[int, int, int]:
    """Compare what the database holds (id -> record with metadata and vector) with the ack logs."""
    sys.path.insert(0, str(CLIENT.parent))
    from _crash_loop_client import vector_for

    state, acked, failed = _expected(workdir)
    lost, resurrected, wrong = [], [], []
    for record_id, (want, maybe) in state.items():
        rec = found.get(record_id)
        have = None if rec is None else int(rec["metadata"]["v"])
        if have == want or have in maybe:
            if rec is not None:
                np.testing.assert_allclose(rec["vector"], vector_for(have, record_id), rtol=0, atol=0)
            continue
        if want is not None and have is None:
            lost.append(record_id)
        elif want is None:
            resurrected.append(record_id)
        else:
            wrong.append((record_id, want, have))
    unknown = [i for i in found if i not in state]
    assert not lost and not resurrected and not wrong and not unknown, (
        f"lost {len(lost)} {lost[:5]}, deleted-but-back {len(resurrected)} {resurrected[:5]}, "
        f"stale {len(wrong)} {wrong[:5]}, never written {unknown[:5]}")
    return acked, failed, sum(1 for want, _ in state.values() if want is not None)


def _check(client: Any, workdir: Path) -> tuple[int, int, int]:
    state, _, _ = _expected(workdir)
    ids = list(state)
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        for rec in client.get_vectors("crash", ids[start : start + 500]):
            found[rec["id"]] = rec
    assert client.count("crash") == len(found)  # nothing live that no client wrote
    return _verify(found, workdir)


def _pause(workdir: Path, workers: int, clients: list[subprocess.Popen[bytes]]) -> None:
    (workdir / "pause").touch()
    deadline = time.monotonic() + 60
    while not all((workdir / f"paused-{w}").exists() for w in range(workers)):
        assert all(c.poll() is None for c in clients), "a client process died"
        assert time.monotonic() < deadline, "clients did not pause"
        time.sleep(0.01)


def _resume(workdir: Path) -> None:
    (workdir / "pause").unlink()


def run_crash_loop(tmp_path: Path, cycles: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    data, workdir = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    workdir.mkdir()
    daemon = Daemon(data, *DAEMON_ARGS)
    clients: list[subprocess.Popen[bytes]] = []
    report = {"cycles": 0, "acked": 0, "failed": 0, "live": 0}
    try:
        daemon.start()
        with proximadb.connect_grpc(daemon.grpc_target) as client:
            client.create_collection("crash", 16, distance_metric="euclidean", indexing_algorithm="hnsw",
                                     index_params={"M": 8, "ef_construction": 32})
        (workdir / "pause").touch()
        clients = [
            subprocess.Popen([sys.executable, str(CLIENT), str(w), proto, daemon.rest_url, daemon.grpc_target,
                              str(workdir), str(seed * 100 + w)], env=child_env(), cwd=str(tmp_path))
            for w, proto in enumerate(PROTOCOLS)
        ]
        _pause(workdir, len(clients), clients)
        for _cycle in range(cycles):
            _resume(workdir)
            time.sleep(rng.uniform(0.3, 2.0))  # the kill lands wherever the load is
            daemon.kill9()
            _pause(workdir, len(clients), clients)
            daemon.start()  # same ports; recovery must open the directory cleanly
            with proximadb.connect_grpc(daemon.grpc_target, timeout=30) as client:
                acked, failed, live = _check(client, workdir)
            report.update(cycles=report["cycles"] + 1, acked=acked, failed=failed, live=live)
        (workdir / "stop").touch()
        for c in clients:
            c.wait(timeout=30)
        assert all(c.returncode == 0 for c in clients), [c.returncode for c in clients]
        daemon.stop()
    finally:
        (workdir / "stop").touch()
        for c in clients:
            if c.poll() is None:
                c.kill()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    # The directory also opens in a fresh process (no daemon) and agrees on what is live.
    _verify(dump_in_fresh_process(data)["crash"], workdir)
    assert "orrupt" not in daemon.logs(), daemon.logs()[-2000:]
    print(f"\ncrash loop: {report['cycles']} cycles, {report['acked']} write ops acknowledged "
          f"({report['failed']} failed at a kill), {report['live']} live records, lost = 0")
    return report


def test_crash_loop_short(tmp_path: Path) -> None:
    report = run_crash_loop(tmp_path, cycles=3, seed=1)
    assert report["cycles"] == 3 and report["acked"] > 50


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_crash_loop_long(tmp_path: Path) -> None:
    cycles = int(os.environ.get("PROXIMADB_CRASH_CYCLES", "50"))
    report = run_crash_loop(tmp_path, cycles=cycles, seed=2)
    assert report["cycles"] == cycles
