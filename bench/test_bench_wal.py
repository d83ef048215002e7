"""WAL benchmarks: durable ingest (fsync=always) against a plain write+fdatasync loop, and replay speed.

Run: ``PROXIMADB_SKIP_NATIVE_CHECK=1 python -m pytest bench/test_bench_wal.py -q -s``.
Data lives in a temporary directory on the same file system as the repository.
``PROXIMADB_BENCH_STRICT=1`` turns the ingest goal (>= 0.8 of the plain loop) into an assertion.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from proximadb.storage import wal_codec
from proximadb.storage.operations import InsertOp
from proximadb.storage.wal import WriteAheadLog

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.bench

N, DIM = 1_000, 128  # 512 KiB of float32 per batch
INGEST_BATCHES = 25
INGEST_ROUNDS = 4
REPLAY_TARGET_BYTES = 200 * 1024 * 1024
STRATEGIES = ["avro", "binary"]


def _batch(seed: int) -> InsertOp:
    rng = np.random.default_rng(seed)
    return InsertOp(
        upsert=False,
        ids=[f"doc-{seed}-{i:06d}" for i in range(N)],
        vectors=rng.standard_normal((N, DIM)).astype(np.float32),
        metadata=[{"category": f"c{i % 10}", "rank": i} for i in range(N)],
        timestamps=np.full(N, 1_700_000_000_000_000 + seed, dtype=np.int64),
    )


@pytest.fixture(scope="module")
def batches() -> list[tuple[InsertOp, bytes]]:
    """A few distinct batches with the client payload each would arrive as."""
    return [(op, wal_codec.encode_op_payload(op)) for op in (_batch(s) for s in range(4))]


@pytest.fixture
def bench_dir() -> Iterator[Path]:
    parent = Path(tempfile.gettempdir())
    if os.stat(parent).st_dev != os.stat(ROOT).st_dev:  # keep the data on the disk /work is on
        parent = ROOT.parent
    path = Path(tempfile.mkdtemp(prefix="pxdb-bench-wal-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bench_durable_ingest(benchmark, bench_dir: Path, batches: list[tuple[InsertOp, bytes]],
                              strategy: str) -> None:
    payloads = [p if strategy == "avro" else None for _, p in batches]
    ops = [op for op, _ in batches]
    bodies = [b"".join(wal_codec.encode(strategy, op, p).parts) for op, p in zip(ops, payloads, strict=True)]
    wal = WriteAheadLog.open(bench_dir / "wal", strategy=strategy, fsync="always")
    list(wal.replay())
    fd = os.open(bench_dir / "plain.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def ingest() -> None:
        for i in range(INGEST_BATCHES):
            wal.append(ops[i % len(ops)], payloads[i % len(ops)])

    try:
        ingest()  # warm-up: first file growth, imports
        # Batch by batch, alternating, so drift in the disk's fsync latency hits both sides alike.
        wal_t = plain_t = 0.0
        for i in range(INGEST_ROUNDS * INGEST_BATCHES):
            k = i % len(ops)
            start = time.perf_counter()
            os.write(fd, bodies[k])
            os.fdatasync(fd)
            mid = time.perf_counter()
            wal.append(ops[k], payloads[k])
            wal_t += time.perf_counter() - mid
            plain_t += mid - start
        benchmark.pedantic(ingest, rounds=1, iterations=1)
        stats = wal.stats()
    finally:
        os.close(fd)
        wal.close()

    vectors = INGEST_ROUNDS * INGEST_BATCHES * N
    ratio = plain_t / wal_t
    mib = sum(len(b) for b in bodies) / len(bodies) / 2**20
    print(
        f"\n[wal ingest {strategy}] fsync=always, {INGEST_ROUNDS * INGEST_BATCHES} batches of {N}x{DIM} f32 "
        f"({mib:.2f} MiB/frame body): WAL {vectors / wal_t:,.0f} vectors/s "
        f"({wal_t / (vectors / N) * 1e3:.2f} ms/batch), plain os.write+fdatasync {vectors / plain_t:,.0f} vectors/s "
        f"({plain_t / (vectors / N) * 1e3:.2f} ms/batch); ratio {ratio:.2f} (goal >= 0.8); "
        f"mean WAL fsync {stats.fsync_seconds / max(stats.fsync_count, 1) * 1e3:.2f} ms"
    )
    benchmark.extra_info.update({"vectors_per_s": vectors / wal_t, "plain_vectors_per_s": vectors / plain_t,
                                 "ratio_to_plain": ratio})
    if os.environ.get("PROXIMADB_BENCH_STRICT") == "1":
        assert ratio >= 0.8


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bench_replay(benchmark, bench_dir: Path, batches: list[tuple[InsertOp, bytes]],
                      strategy: str) -> None:
    wal_dir = bench_dir / "wal"
    with WriteAheadLog.open(wal_dir, strategy=strategy, fsync="never") as wal:
        list(wal.replay())
        i = 0
        while wal.stats().bytes_written < REPLAY_TARGET_BYTES:
            op, payload = batches[i % len(batches)]
            wal.write(op, payload if strategy == "avro" else None)
            i += 1
    wal_bytes = sum(p.stat().st_size for p in wal_dir.iterdir())
    frames = i

    def replay() -> int:
        with WriteAheadLog.open(wal_dir, strategy=strategy, fsync="never") as reader:
            count = 0
            for _seq, _op in reader.replay():
                count += 1
            return count

    times = []
    for _ in range(2):
        start = time.perf_counter()
        assert replay() == frames
        times.append(time.perf_counter() - start)
    benchmark.pedantic(replay, rounds=1, iterations=1)
    best = min(times)
    print(
        f"\n[wal replay {strategy}] {wal_bytes / 2**20:.0f} MiB in {frames} frames ({frames * N:,} vectors), "
        f"warm page cache: {best:.2f} s = {wal_bytes / 2**20 / best:,.0f} MiB/s, "
        f"{frames * N / best:,.0f} vectors/s"
    )
    benchmark.extra_info.update({"mib_per_s": wal_bytes / 2**20 / best, "wal_mib": wal_bytes / 2**20})
