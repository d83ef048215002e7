"""A short run of bench/load_test.py: several client processes, both protocols, mixed reads/writes.

errors = 0, every kind of operation ran on both protocols, and the daemon
worker's anonymous RSS (from /proc) does not keep climbing. The minutes-long
run is ``python bench/load_test.py --duration 240 --clients 6``.

Two deterministic guards for what made that RSS climb (see the docstring of
proximadb/storage/memtable.py): glibc keeps serving big buffers with mmap (so
they go back to the system when freed) once the engine runs, and the index
builder thread does not keep a dropped segment alive.
"""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from _support import child_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from load_test import memory_report, run_load

from proximadb.storage.engine import Engine


def test_load_smoke(tmp_path: Path) -> None:
    report = run_load(tmp_path, duration=10.0, clients=4, max_ops=5000)
    print(f"\nload smoke: {report}")
    assert report["errors"] == [], report["errors"][:5]
    assert {f"{p}/{op}" for p in ("grpc", "rest") for op in ("upsert", "delete", "search", "get")} <= set(
        report["ops"]
    )
    assert report["total_ops"] > 200
    rss = report["rss_mib"]
    assert rss["samples"] >= 5
    assert rss["anon"]["max"] > 0 and rss["file"]["max"] > 0
    # Flat: the last quarter's peak is not far above the first quarter's (a leak would climb).
    # Ten seconds are one or two flush/compaction cycles: the slope is measured by the long run.
    assert rss["anon_last_quarter_max"] <= rss["anon_first_quarter_max"] * 1.3 + 64, rss
    assert report["storage"]["segments"]["max"] <= 8, report["storage"]


def test_memory_report_slope() -> None:
    t = np.arange(0, 120, 0.5)
    flat = [(float(s), 100_000 + 1024 * int(s % 10), 80_000 + 1024 * int(s % 10), 20_000) for s in t]
    rep = memory_report(flat)
    assert abs(rep["second_half"]["anon_slope_mib_per_min"]) < 3.0  # a saw-tooth: noise, no trend
    climbing = [(float(s), 100_000 + int(s * 1024), 80_000 + int(s * 1024), 20_000) for s in t]  # 1 MiB/s
    rep = memory_report(climbing)
    assert rep["second_half"]["anon_slope_mib_per_min"] == pytest.approx(60.0, rel=0.01)
    assert rep["anon"]["first"] == pytest.approx(80_000 / 1024, abs=0.1)
    assert rep["file"]["max"] == pytest.approx(20_000 / 1024, abs=0.1)


MALLOC_PROBE = r"""
import ctypes, sys
from proximadb.storage import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print("no-mallinfo2"); sys.exit(0)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
print("pinned" if allocator.pin_malloc_mmap_threshold() else "not-pinned")
big = libc.malloc(8 << 20)  # mmapped; freeing it raises glibc's dynamic threshold to 8 MiB, unless pinned
libc.free(big)
before = libc.mallinfo2().hblkhd
buf = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(buf)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
@pytest.mark.parametrize("pin", ["1", "0"])
def test_big_buffers_stay_mmapped_after_a_big_free(tmp_path: Path, pin: str) -> None:
    """glibc raises its mmap threshold to the size of each mmapped chunk freed, so later buffers of a
    few MiB (memtables, index graphs, merge buffers) come from per-thread arenas and stay resident
    after free: the daemon's RSS climbed ~33 MiB/min under bench/load_test.py. Engine.open pins it
    (proximadb/storage/allocator.py). A fresh process, so no earlier test has shaped the heap; the
    unpinned run shows the probe can tell the difference."""
    env = {k: v for k, v in child_env(PROXIMADB_MALLOC_PIN=pin).items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    proc = subprocess.run([sys.executable, "-c", MALLOC_PROBE], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    if lines[0] == "no-mallinfo2":
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    mapped = int(lines[1])
    if pin == "1":
        assert lines[0] == "pinned"
        assert mapped >= 2 << 20, "a 2 MiB buffer came from a malloc arena: freed, it would stay resident"
    else:
        assert lines[0] == "not-pinned"
        assert mapped == 0, "without the pin glibc's dynamic threshold should have risen past 2 MiB"


def test_index_builder_does_not_keep_a_dropped_segment(tmp_path: Path) -> None:
    """The builder thread used to hold its last job while waiting for the next: a segment that a flush
    or compaction dropped stayed in memory (ids, metadata, vector mmap of a deleted file, HNSW graph)."""
    with Engine.open(tmp_path / "data", fsync="never", auto_compact=False) as engine:
        engine.create_collection("c", 8, indexing_algorithm="hnsw", index_params={"M": 8, "ef_construction": 32})
        col = engine.collection("c")
        ids = [f"v{i}" for i in range(300)]
        col.upsert(ids=ids, vectors=np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))
        col.flush()
        assert col.wait_for_indexes(60)
        (seg,) = col.segments
        assert seg.index is not None
        ref = weakref.ref(seg)
        del seg
        col.delete(ids)
        col.flush()  # no live row left: the segment is dropped, no new one is written
        assert col.segments == []
        gc.collect()
        assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
