"""kill -9 an embedded writer of named dense vectors; every acknowledged write survives, named vectors included.

The child (tests/crash/_named_workload.py) writes to a collection with two named vectors (euclidean and
dot_product, values exact in float32) with fsync=always and a small flush threshold: inserts, upserts,
deletes, metadata updates (a segment row's named vectors move back to the memtable with it), compactions
and flushes that wait (operations 16, 33, 50, 67, ...: segments exist before the first kill whatever the
background flushes' timing), so at the kill rows live in segments (``named/<name>.f32``), in the WAL and in
the memtable, and the kill may land in a flush or a compaction. After each kill the test opens the directory
itself: the content (scroll with vectors) equals the model of the acknowledged operations, or that plus the
one in flight (never a part of it); ``search(using=)`` with model vectors equals a numpy brute force. Two
rounds per WAL strategy, the second on the first's recovered directory.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _named_workload import OPTIONS, VECTORS, Model, apply, make_op, read_model
from _support import child_env, rest_of_output

from proximadb.storage.engine import Engine

WORKLOAD = Path(__file__).with_name("_named_workload.py")


def _diff(state: Model, model: Model) -> list[str]:
    problems = [f"lost {i}" for i in sorted(model.keys() - state.keys())]
    problems += [f"never acknowledged {i}" for i in sorted(state.keys() - model.keys())]
    for id_ in sorted(model.keys() & state.keys()):
        have, want = state[id_], model[id_]
        if not np.array_equal(have["vector"], want["vector"]) or have["metadata"] != want["metadata"]:
            problems.append(f"{id_}: {have} != {want}")
        elif have["named"].keys() != want["named"].keys() or not all(
                np.array_equal(have["named"][n], want["named"][n]) for n in VECTORS):
            problems.append(f"{id_}: named {have['named']} != {want['named']}")
    return problems


def _run(data_dir: Path, seed: int, start: int, strategy: str, acks: int) -> list[int]:
    """The writer from operation ``start``, killed once ``acks`` operations were acknowledged; the acked ones."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKLOAD), str(data_dir), str(seed), str(start), strategy],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(PYTHONPATH=f"{WORKLOAD.parent}{os.pathsep}{child_env()['PYTHONPATH']}"),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    acked: list[int] = []
    while len(acked) < acks:
        line = proc.stdout.readline()
        assert line, f"writer ended before the kill:\n{proc.stderr.read() if proc.stderr else ''}"
        acked.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)  # the writer is mid-operation
    out, err = rest_of_output(proc)
    assert proc.returncode == -signal.SIGKILL, f"writer died on its own ({proc.returncode}):\n{err}"
    acked += [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack ")]
    return acked


def _check_searches(col: Any, model: Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = sorted(model)
    for name, v in VECTORS.items():
        mat = np.stack([model[i]["named"][name] for i in ids]).astype(np.float64)
        for probe in rng.choice(len(ids), 4, replace=False).tolist():
            q = model[ids[probe]]["named"][name]
            if v["distance_metric"] == "euclidean":
                score = 1.0 / (1.0 + np.linalg.norm(mat - q, axis=1))
            else:
                score = mat @ q.astype(np.float64)
            hits = col.search(q, k=10, using=name)
            best = np.sort(score)[::-1][:10]
            assert np.allclose([h["score"] for h in hits], best, atol=1e-5), (name, hits, best)
            for h in hits:  # ids may differ from numpy's only on equal scores
                assert abs(score[ids.index(h["id"])] - h["score"]) < 1e-5


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_kill_9_during_named_vector_writes_loses_nothing(tmp_path: Path, strategy: str) -> None:
    data = tmp_path / "data"
    seed, start = 4242, 0
    model: Model = {}
    for round_no, acks in enumerate((70, 55)):
        acked = _run(data, seed, start, strategy, acks)
        assert acked == list(range(start, start + len(acked)))
        for i in acked:
            apply(model, make_op(seed, i, model))
        inflight = make_op(seed, start + len(acked), model)
        with Engine.open(data, wal_strategy=strategy, **OPTIONS) as engine:
            col = engine.collection("c")
            state = read_model(col)
            problems = _diff(state, model)
            if problems:  # the operation in flight may have been applied, whole
                with_inflight = copy.deepcopy(model)
                apply(with_inflight, inflight)
                other = _diff(state, with_inflight)
                assert not other, f"round {round_no}: {len(problems)} differences: {problems[:5]}"
                model = with_inflight
            assert col.count() == len(model)
            assert col.stats()["segments"] >= 1  # operation 16, a flush that waited, was acknowledged
            _check_searches(col, model, seed + round_no)
        start += len(acked) + 1  # past the in-flight one, whether it was applied or not
