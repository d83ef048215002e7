"""In-process engine benchmarks (issue 2): durable ingest and exact search.

Run: ``pytest bench/test_bench_engine.py -s`` (figures are printed and stored in
pytest-benchmark's extra_info; nothing here is a pass/fail timing test).

* Durable ingest: batches of 1,000 x 128 float32 through ``insert_payload``
  with fsync=always, against the physical limit measured in the same run: a
  plain Python loop of ``os.write`` + ``os.fdatasync`` of the same payload
  bytes on the same disk.
* Exact search: siftsmall (10k x 128) top-10 through ``Collection.search``, one
  query at a time, against numpy: BLAS distances + argpartition + sort.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from proximadb.codec.payload import encode_insert
from proximadb.storage.engine import Engine
from proximadb.tools.datasets import fvecs_read

BATCH, DIM, BATCHES = 1000, 128, 40
DATASETS = Path(os.environ.get("PROXIMADB_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def _bench_dir() -> Path:
    # Same disk as the project (not a tmpfs), so fsync costs what it costs for users.
    return Path(tempfile.mkdtemp(prefix="pxdb-bench-", dir=Path(__file__).resolve().parent))


def _payloads() -> list[bytes]:
    rng = np.random.default_rng(0)
    stamp = time.time_ns() // 1000
    return [
        encode_insert(
            ids=[f"b{b}-{i}" for i in range(BATCH)],
            vectors=rng.standard_normal((BATCH, DIM)).astype(np.float32),
            timestamps=np.full(BATCH, stamp, np.int64),
        )
        for b in range(BATCHES)
    ]


def _raw_write_fsync(path: Path, payloads: list[bytes]) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for p in payloads:
            os.write(fd, p)
            os.fdatasync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_durable_ingest_vs_write_fsync(benchmark, strategy: str) -> None:  # type: ignore[no-untyped-def]
    import shutil

    payloads = _payloads()
    root = _bench_dir()
    try:
        raw_seconds = min(_raw_write_fsync(root / f"raw-{i}.bin", payloads) for i in range(3))
        runs: list[float] = []

        def ingest() -> None:
            data = root / f"engine-{len(runs)}"
            with Engine.open(data, wal_strategy=strategy, fsync="always") as engine:
                engine.create_collection("bench", DIM, distance_metric="euclidean")
                col = engine.collection("bench")
                start = time.perf_counter()
                for p in payloads:
                    col.insert_payload(p)
                runs.append(time.perf_counter() - start)
            shutil.rmtree(data)

        benchmark.pedantic(ingest, rounds=3, iterations=1)
        ours = min(runs)
        vectors = BATCH * BATCHES
        ratio = raw_seconds / ours
        benchmark.extra_info.update(
            vectors_per_s=vectors / ours, raw_vectors_per_s=vectors / raw_seconds, ratio_to_raw=ratio
        )
        print(
            f"\n[{strategy}] durable ingest: {vectors / ours:,.0f} vectors/s; raw write+fdatasync of the same "
            f"bytes: {vectors / raw_seconds:,.0f} vectors/s; ratio {ratio:.2f} (goal >= 0.8)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)




def test_exact_search_siftsmall_vs_numpy(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_file = DATASETS / "siftsmall" / "siftsmall_base.fvecs"
    if not base_file.exists():
        pytest.skip("siftsmall not found")
    base = fvecs_read(base_file)
    queries = fvecs_read(DATASETS / "siftsmall" / "siftsmall_query.fvecs")
    gt = np.fromfile(DATASETS / "siftsmall" / "siftsmall_groundtruth.ivecs", dtype=np.int32).reshape(-1, 101)[:, 1:]
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("sift", 128, distance_metric="euclidean")
        col = engine.collection("sift")
        col.insert(ids=[str(i) for i in range(len(base))], vectors=base)
        col.flush()  # search a memory-mapped segment, as a daemon would after a flush

        def ours() -> list[list[str]]:
            return [[h["id"] for h in col.search(q, k=10, include_metadata=False)] for q in queries]

        found = benchmark.pedantic(ours, rounds=5, iterations=1)
        ours_s = benchmark.stats.stats.min
    recall = np.mean([len({int(i) for i in f} & set(gt[qi, :10].tolist())) / 10 for qi, f in enumerate(found)])
    norms = (base.astype(np.float32) ** 2).sum(axis=1)

    def numpy_search() -> None:
        for q in queries:
            d = norms - 2 * (base @ q)
            part = np.argpartition(d, 10)[:10]
            part[np.argsort(d[part])]

    times = []
    for _ in range(5):
        start = time.perf_counter()
        numpy_search()
        times.append(time.perf_counter() - start)
    np_s = min(times)
    n = len(queries)
    benchmark.extra_info.update(qps=n / ours_s, numpy_qps=n / np_s, ratio=np_s / ours_s, recall_at_10=recall)
    print(
        f"\nexact search siftsmall top-10 through the engine: {n / ours_s:,.0f} QPS; numpy BLAS+argpartition: "
        f"{n / np_s:,.0f} QPS; ratio {np_s / ours_s:.2f}; recall@10 {recall:.3f}"
    )
    assert recall == 1.0
