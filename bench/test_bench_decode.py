"""VectorBatch codec speed against fastavro: a 1,000 x 128 float32 batch with small metadata.

Run: ``PROXIMADB_SKIP_NATIVE_CHECK=1 python -m pytest bench/test_bench_decode.py -q``

* ``test_decode_*`` / ``test_encode_*``: pytest-benchmark timings of each side.
* ``test_*_speedup``: both sides timed back to back (best of several runs, so a
  busy machine slows both alike); the ratio is printed and stored in the
  benchmark's ``extra_info``. The decode goal is >= 20x; the assertion floor
  is ``PROXIMADB_BENCH_MIN_DECODE_SPEEDUP`` (default 20).

fastavro is given its best case: the bare datum (no frame) and, for encoding,
vectors already converted to Python lists.
"""

from __future__ import annotations

import io
import os
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_reader, schemaless_writer

from proximadb.codec.avro_batch import decode_vector_batch
from proximadb.codec.framing import decode_frame
from proximadb.codec.payload import decode_payload, encode_insert
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, op_schema

pytestmark = pytest.mark.bench

N, DIM = 1_000, 128
SCHEMA = op_schema("vector_insert")
MIN_DECODE_SPEEDUP = float(os.environ.get("PROXIMADB_BENCH_MIN_DECODE_SPEEDUP", "20"))


@dataclass(frozen=True)
class Batch:
    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]
    payload: bytes
    datum: bytes
    records: dict[str, Any]  # the fastavro-shaped datum


@pytest.fixture(scope="module")
def batch() -> Batch:
    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"vec-{i:06d}" for i in range(N)]
    metadata = [{"category": f"c{i % 10}", "rank": i} for i in range(N)]
    payload = encode_insert(ids=ids, vectors=vectors, metadata=metadata)
    records = {
        "upsert": False,
        "records": [
            {"id": i, "vector": v, "metadata": m, "timestamp": 0}
            for i, v, m in zip(ids, vectors.tolist(), metadata, strict=True)
        ],
    }
    return Batch(ids, vectors, metadata, payload, bytes(decode_frame(payload)[2]), records)


def fastavro_decode(datum: bytes) -> Any:
    return schemaless_reader(io.BytesIO(datum), SCHEMA, None)


def fastavro_encode(records: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, SCHEMA, records)
    return out.getvalue()


def best_of(fn: Callable[[], Any], seconds: float = 0.3) -> float:
    """Best per-call time over 5 runs of ~seconds/5 each."""
    number = max(1, int(seconds / 5 / max(timeit.timeit(fn, number=1), 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def report(benchmark: Any, name: str, ours: float, theirs: float, capsys: pytest.CaptureFixture[str]) -> float:
    ratio = theirs / ours
    benchmark.extra_info.update(
        {
            f"{name}_proximadb_us": round(ours * 1e6, 1),
            f"{name}_fastavro_us": round(theirs * 1e6, 1),
            f"{name}_speedup": round(ratio, 1),
        }
    )
    with capsys.disabled():
        print(
            f"\n{name} {N}x{DIM}: proximadb {ours * 1e6:,.0f} us, fastavro {theirs * 1e6:,.0f} us "
            f"-> {ratio:.1f}x faster"
        )
    return ratio


def test_decode_proximadb_payload(benchmark: Any, batch: Batch) -> None:
    _, _, decoded = benchmark(decode_payload, batch.payload)
    assert decoded.vectors.shape == (N, DIM)


def test_decode_proximadb_datum(benchmark: Any, batch: Batch) -> None:
    decoded = benchmark(decode_vector_batch, batch.datum, DIM, CURRENT_SCHEMA_VERSION)  # the frame's version
    assert np.array_equal(decoded.vectors, batch.vectors)


def test_decode_fastavro(benchmark: Any, batch: Batch) -> None:
    value = benchmark.pedantic(fastavro_decode, args=(batch.datum,), rounds=10, iterations=1)
    assert len(value["records"]) == N


def test_encode_proximadb(benchmark: Any, batch: Batch) -> None:
    payload = benchmark(encode_insert, ids=batch.ids, vectors=batch.vectors, metadata=batch.metadata)
    assert payload == batch.payload


def test_encode_fastavro(benchmark: Any, batch: Batch) -> None:
    datum = benchmark.pedantic(fastavro_encode, args=(batch.records,), rounds=10, iterations=1)
    assert datum == batch.datum


def test_decode_speedup(benchmark: Any, batch: Batch, capsys: pytest.CaptureFixture[str]) -> None:
    benchmark(decode_payload, batch.payload)
    ours = best_of(lambda: decode_payload(batch.payload))
    theirs = best_of(lambda: fastavro_decode(batch.datum), seconds=1.0)
    ratio = report(benchmark, "decode", ours, theirs, capsys)
    assert ratio >= MIN_DECODE_SPEEDUP, f"decode is only {ratio:.1f}x faster than fastavro"


def test_encode_speedup(benchmark: Any, batch: Batch, capsys: pytest.CaptureFixture[str]) -> None:
    benchmark(encode_insert, ids=batch.ids, vectors=batch.vectors, metadata=batch.metadata)
    ours = best_of(lambda: encode_insert(ids=batch.ids, vectors=batch.vectors, metadata=batch.metadata))
    theirs = best_of(lambda: fastavro_encode(batch.records), seconds=1.0)
    ratio = report(benchmark, "encode", ours, theirs, capsys)
    assert ratio > 1.0
