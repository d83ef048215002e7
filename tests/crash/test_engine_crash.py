"""kill -9 a real writer process at random moments; every acknowledged write must survive.

The child (tests/crash/_crash_workload.py) writes with fsync=always, a tiny flush
threshold and tiny WAL segments, so kills land during appends, flushes,
checkpoints and WAL truncation. After each kill a fresh process opens the data
directory and dumps it; the state must equal the model after all acknowledged
operations, or after those plus the one in flight (never a part of it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _crash_workload import apply_to_model
from _support import child_env, dump_in_fresh_process, rest_of_output

WORKLOAD = Path(__file__).with_name("_crash_workload.py")


def _matches(state: dict, model: dict) -> bool:
    if state.keys() != model.keys():
        return False
    for id_, (vec, meta) in model.items():
        got = state[id_]
        if got["metadata"] != meta or not np.array_equal(np.asarray(got["vector"], np.float32), vec):
            return False
    return True


def _run_round(data_dir: Path, seed: int, start: int, opts: dict, kill_after: float) -> list[str]:
    """Run the workload, kill -9 it ``kill_after`` seconds after it is ready (with ``hold_flush``: after it
    reports its held flush); its output lines."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKLOAD), str(data_dir), str(seed), str(start), json.dumps(opts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(PYTHONPATH=f"{WORKLOAD.parent}{os.pathsep}{child_env()['PYTHONPATH']}"),
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "READY", proc.stderr.read() if proc.stderr else ready
    errors: list[str] = []
    while opts.get("hold_flush") and "HELD" not in errors:  # on stderr, where nothing else is mid-line
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line, f"writer ended before its flush was held:\n{''.join(errors)}{proc.stderr.read()}"
        errors.append(line.strip())
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    out, err = rest_of_output(proc)
    assert proc.returncode == -signal.SIGKILL, f"writer died on its own ({proc.returncode}):\n{err}"
    return out.splitlines()


@pytest.mark.parametrize(
    ("strategy", "compact_every", "hold_flush"),
    [("avro", 0, False), ("binary", 0, False), ("avro", 7, False), ("avro", 0, True)],
    ids=["avro", "binary", "avro-compacting", "avro-held-flush"],
)
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, strategy: str, compact_every: int,
                                            hold_flush: bool) -> None:
    """With compact_every, the writer also compacts every few operations (and in the background). With
    hold_flush, one flush per round is held after writing its segment, before its install (the flush
    runs outside the collection lock: writes, deletes and upserts of the sealed rows go on), and every
    kill lands while it is held."""
    seed = 1234 + compact_every + 100 * hold_flush
    opts = {
        "wal_strategy": strategy,
        "wal_compression": "lz4" if strategy == "binary" else "none",
        "fsync": "always",
        "flush_bytes": 24_000,
        "wal_segment_bytes": 16_384,
    }
    rnd = random.Random(seed)
    model: dict = {}
    applied = 0  # operations known to be in the data directory
    data_dir = tmp_path / "data"
    total_acked = 0
    for _round in range(5):
        extra = {"compact_every": compact_every, "hold_flush": rnd.randint(1, 3) if hold_flush else 0}
        lines = _run_round(data_dir, seed, applied, {**opts, **extra},
                           kill_after=rnd.uniform(0.05, 0.5) if hold_flush else rnd.uniform(0.2, 1.2))
        acked = [int(line.split()[1]) for line in lines if line.startswith("A ")]
        begun = [int(line.split()[1]) for line in lines if line.startswith("B ")]
        assert acked == list(range(applied, applied + len(acked))), "acks out of order"
        total_acked += len(acked)
        for i in acked:
            apply_to_model(model, seed, i)
        applied += len(acked)
        state = dump_in_fresh_process(data_dir, **opts).get("crash", {})
        if _matches(state, model):
            continue
        # The one in-flight operation may have reached the log before the kill.
        assert begun and begun[-1] == applied, "state differs and no operation was in flight"
        with_inflight = {k: (v[0].copy(), dict(v[1])) for k, v in model.items()}
        apply_to_model(with_inflight, seed, applied)
        assert _matches(state, with_inflight), "state is neither before nor after the in-flight operation"
        model = with_inflight
        applied += 1
    assert total_acked > 20, f"the workload barely ran ({total_acked} acknowledged operations)"
