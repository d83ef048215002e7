"""The fuzz targets (fuzz/fuzz_*.py) over their seed corpus plus deterministic mutations, without atheris.

Each target's ``one_input`` may only raise the error types its decoder
documents (``ALLOWED``); anything else, a slow input (hang) or a large
allocation (tracemalloc peak) fails the test. The coverage-guided run is
opt-in: see fuzz/README.md.
"""

from __future__ import annotations

import importlib
import random
import struct
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = ["frame", "avro_batch", "payload", "wal_scan"]
MUTATIONS_PER_TARGET = 3000
PER_INPUT_SECONDS = 1.0
PEAK_BYTES = 16 * 1024 * 1024  # inputs are < 64 KiB; no decoder may allocate beyond this

HUGE_U32 = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000000, 0xFFFF]
# zig-zag varints: huge positive/negative counts and lengths, and an overlong (11-byte) varint
HUGE_VARINTS = [
    b"\xfe\xff\xff\xff\x0f", b"\xff\xff\xff\xff\x0f", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", b"\x7f",
]


def _load(target: str):
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(f"fuzz_{target}")


def _seeds(target: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FUZZ_DIR / "corpus" / target).iterdir())]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:  # bit flip
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # random byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif kind == 2:  # truncation
            del buf[pos:]
        elif kind == 3:  # insertion
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif kind == 4 and len(buf) > 1:  # deletion
            del buf[pos : pos + rng.randrange(1, 9)]
        elif kind == 5 and len(buf) >= 4:  # huge u32 length field (frame, WAL headers)
            i = rng.randrange(len(buf) - 3)
            struct.pack_into("<I", buf, i, rng.choice(HUGE_U32))
        elif kind == 6:  # huge varint (Avro counts, lengths)
            v = rng.choice(HUGE_VARINTS)
            buf[pos : pos + rng.randrange(0, 3)] = v
        else:  # splice with another seed
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
    return bytes(buf)


def _inputs(target: str) -> Iterator[bytes]:
    seeds = _seeds(target)
    yield from seeds
    yield b""
    rng = random.Random(f"proximadb-fuzz-{target}")
    for _ in range(MUTATIONS_PER_TARGET):
        yield mutate(rng, rng.choice(seeds), seeds)


def test_every_target_has_a_seed_corpus() -> None:
    for target in TARGETS:
        assert len(_seeds(target)) >= 5, target


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", TARGETS)
def test_target_survives_corpus_and_mutations(target: str) -> None:
    module = _load(target)
    accepted = refused = 0
    slowest = 0.0
    tracemalloc.start()
    try:
        for data in _inputs(target):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            try:
                module.one_input(data)
                accepted += 1
            except module.ALLOWED:
                refused += 1
            except Exception as exc:  # a finding: show the input so it can be added as a regression seed
                raise AssertionError(f"{target}: {type(exc).__name__}: {exc} on input {data.hex()}") from exc
            elapsed = time.perf_counter() - started
            slowest = max(slowest, elapsed)
            assert elapsed < PER_INPUT_SECONDS, f"{target}: {elapsed:.2f}s on input {data.hex()}"
            peak = tracemalloc.get_traced_memory()[1] - base
            assert peak < PEAK_BYTES, f"{target}: allocated {peak} bytes on a {len(data)}-byte input {data.hex()}"
    finally:
        tracemalloc.stop()
    # Both outcomes are exercised: the seeds decode, most mutations are refused.
    assert accepted >= len(_seeds(target)) and refused > MUTATIONS_PER_TARGET // 4, (accepted, refused)


def test_wal_reader_refuses_impossible_lz4_raw_length() -> None:
    """Regression (fuzz_wal_scan): a checksummed LZ4 frame claiming raw_len up to 4 GiB.

    lz4.block.decompress allocated raw_len bytes up front (2 GiB for 0x7FFFFFFF) and raised
    OverflowError past 2 GiB; the reader now refuses raw_len > 255 x body with ValueError.
    """
    from proximadb.storage import wal_codec, wal_io

    body = memoryview(b"\x10abc")
    for raw_len in (0xFFFFFFFF, 0x7FFFFFFF, 255 * len(body) + 1):
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="impossible"):
                wal_codec.decode_frame_body(0, 1, wal_io.FLAG_LZ4, 1, raw_len, body)
            assert tracemalloc.get_traced_memory()[1] < 1024 * 1024
        finally:
            tracemalloc.stop()
