"""CRC-32C (pxd/crc32c.h through wal_io): known vectors, hardware vs table path."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from proximadb.storage import wal_io


@pytest.fixture
def software() -> Iterator[None]:
    wal_io.force_software_crc32c(True)
    try:
        yield
    finally:
        wal_io.force_software_crc32c(False)


KNOWN = [
    (b"", 0x00000000),
    (b"a", 0xC1D04330),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of 0xff
    (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing
    (bytes(range(31, -1, -1)), 0x113FDB5C),  # RFC 3720 B.4: decrementing
]


@pytest.mark.parametrize(("data", "expected"), KNOWN)
def test_known_vectors(data: bytes, expected: int) -> None:
    assert wal_io.crc32c(data) == expected


@pytest.mark.parametrize(("data", "expected"), KNOWN)
def test_known_vectors_software(software: None, data: bytes, expected: int) -> None:
    assert wal_io.crc32c_implementation() == "table"
    assert wal_io.crc32c(data) == expected


def test_never_zlib_crc32() -> None:
    import zlib

    assert wal_io.crc32c(b"123456789") != zlib.crc32(b"123456789")


def test_hardware_and_software_agree_on_random_data() -> None:
    rng = random.Random(1234)
    cases = []
    for _ in range(200):
        n = rng.choice([rng.randrange(0, 17), rng.randrange(0, 300), rng.randrange(0, 70000)])
        data = rng.randbytes(n)
        start = rng.randrange(0, 8)  # unaligned starts exercise the head loop of the SSE4.2 path
        cases.append(memoryview(data)[min(start, n):])
    fast = [wal_io.crc32c(c) for c in cases]
    wal_io.force_software_crc32c(True)
    try:
        slow = [wal_io.crc32c(c) for c in cases]
    finally:
        wal_io.force_software_crc32c(False)
    assert fast == slow


def test_continuation_equals_whole() -> None:
    data = random.Random(7).randbytes(10_000)
    for cut in (0, 1, 7, 8, 9, 4096, 9999, 10_000):
        assert wal_io.crc32c(data[cut:], wal_io.crc32c(data[:cut])) == wal_io.crc32c(data)


def test_accepts_buffers() -> None:
    import numpy as np

    data = b"123456789"
    assert wal_io.crc32c(bytearray(data)) == wal_io.crc32c(memoryview(data)) == 0xE3069283
    arr = np.frombuffer(data, dtype=np.uint8)
    assert wal_io.crc32c(arr) == 0xE3069283


def test_implementation_name() -> None:
    assert wal_io.crc32c_implementation() in ("sse4.2", "table")
