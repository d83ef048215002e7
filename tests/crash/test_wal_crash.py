"""Crash test: a child process appends with fsync=always and is killed -9 at random moments.

Every seq the child acknowledged (printed after ``append`` returned) must replay
with exactly the content it was given; frames after the last acknowledged one
may survive (they were written, not yet acknowledged) but only whole, never
half-applied. Rounds alternate strategy and compression over the same WAL, and
the parent checkpoints between rounds.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _support import child_env

# Shared by the child (exec'd) and this module: the op logged at each seq.
COMMON = r'''
import sys

def op_for(seq):
    import numpy as np
    from proximadb.storage.operations import DeleteOp, InsertOp
    if seq % 7 == 0:
        return DeleteOp([f"s{seq}-{i}" for i in range(seq % 5)])
    rng = np.random.default_rng(seq)
    n = 1 + (seq * 7919) % 160
    dim = 32
    return InsertOp(
        upsert=seq % 2 == 0,
        ids=[f"s{seq}-{i}" for i in range(n)],
        vectors=rng.standard_normal((n, dim)).astype(np.float32),
        metadata=[{"seq": seq, "i": i, "name": f"n{i}"} if i % 3 else {} for i in range(n)],
        timestamps=np.full(n, seq, dtype=np.int64),
    )
'''

CHILD = COMMON + r'''
from proximadb.storage.wal import WriteAheadLog

wal = WriteAheadLog.open(sys.argv[1], strategy=sys.argv[2], compression=sys.argv[3], fsync="always",
                         segment_bytes=512 * 1024)
for _ in wal.replay(wal.last_seq):
    pass
while True:
    seq = wal.last_seq + 1
    got = wal.append(op_for(seq))
    assert got == seq, (got, seq)
    sys.stdout.write(f"{seq}\n")
    sys.stdout.flush()
'''

_ns: dict[str, object] = {}
exec(COMMON, _ns)
op_for = _ns["op_for"]

from proximadb.storage.operations import InsertOp  # noqa: E402
from proximadb.storage.wal import WriteAheadLog  # noqa: E402

ROUNDS = 10
COMBOS = [("avro", "none"), ("binary", "lz4"), ("binary", "none"), ("avro", "lz4")]


def _run_child_and_kill(wal_dir: Path, strategy: str, compression: str, rng: random.Random) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(wal_dir), strategy, compression],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=str(wal_dir.parent), text=True,
    )
    acked: list[int] = []
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line))
            first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not first.wait(30):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child never acknowledged a write:\n{err}")
    time.sleep(rng.uniform(0.05, 1.2))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    return acked


def _check_same(seq: int, got: object) -> None:
    want = op_for(seq)  # type: ignore[operator]
    assert type(got) is type(want), seq
    if isinstance(want, InsertOp):
        assert isinstance(got, InsertOp)
        assert got.upsert == want.upsert and got.ids == want.ids, seq
        assert np.array_equal(got.vectors, want.vectors), seq
        assert list(got.metadata) == list(want.metadata), seq  # replay keeps the maps encoded
        assert np.array_equal(got.timestamps, want.timestamps), seq
    else:
        assert got == want, seq


def test_kill_9_during_appends(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    wal_dir = tmp_path / "wal"
    floor = 0  # checkpointed seq: replay starts after it
    last_acked = 0
    for round_no in range(ROUNDS):
        strategy, compression = COMBOS[round_no % len(COMBOS)]
        acked = _run_child_and_kill(wal_dir, strategy, compression, rng)
        assert acked == list(range(last_acked + 1, last_acked + 1 + len(acked))), "acks out of order"
        last_acked = acked[-1]
        print(f"round {round_no} ({strategy}/{compression}): {len(acked)} acknowledged, last seq {last_acked}")
        with WriteAheadLog.open(wal_dir, strategy=strategy, compression=compression, fsync="never") as wal:
            replayed = list(wal.replay(floor))
            seqs = [s for s, _ in replayed]
            assert seqs == list(range(floor + 1, wal.last_seq + 1)), "replay is not consecutive"
            assert wal.last_seq >= last_acked, f"acknowledged seq {last_acked} lost (last {wal.last_seq})"
            for seq, op in replayed:
                _check_same(seq, op)
            # frames beyond the last ack were written whole (checked above); the next round continues
            last_acked = wal.last_seq
            if round_no % 2 == 1:
                floor = last_acked - rng.randrange(0, 50) if last_acked > 50 else 0
                wal.checkpoint(floor)
                assert [s for s, _ in wal.replay(floor)][:1] in ([floor + 1], [])
    assert last_acked > ROUNDS  # the child did real work every round
