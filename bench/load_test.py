"""Bounded load test: several client processes, mixed reads and writes over gRPC and REST, on loopback.

Usage (opt-in; starts its own daemon on free loopback ports in a temp directory)::

    python bench/load_test.py --duration 120 --clients 6

Each client process runs for ``--duration`` seconds (or ``--max-ops`` ops):
30% upserts of 10 records (over a fixed id space, so the data set stops
growing and memory should stay flat), 10% deletes, 35% searches (k=10), 25%
gets of 10 ids. Even clients speak gRPC, odd ones REST. The report gives
throughput, p50/p99 latency per operation and protocol, errors (must be 0)
and the daemon worker's memory, sampled every 0.5 s from /proc/<pid>/status:

* ``rss_mib.total`` / ``.anon`` / ``.file``: VmRSS, RssAnon (heap, malloc
  arenas, numpy buffers: where a leak shows) and RssFile (mapped segment
  files and shared libraries: page cache, not a leak), each first / last /
  max / mean.
* ``rss_mib.second_half``: the steady state. Min, max and least-squares slope
  (MiB/min) of RssAnon and VmRSS over the second half of the run, once the
  working set (20k ids, the memtable, a few segments and their indexes) is
  in place. Flushes and compactions make RSS a saw-tooth of some tens of MiB;
  a leak shows as a slope that stays positive however long the run.
* ``rss_mib.series``: [seconds, VmRSS, RssAnon, RssFile] every 5 s.
* ``storage``: segments / memtable rows / indexed segments seen on
  ``GET /collections/load/stats`` every 5 s (min / max), to tell a growing
  working set from a leak.

Flat means: second-half RssAnon slope near 0 (a few MiB/min at most, which
is the saw-tooth's noise on a short run). ``--out`` writes the JSON report;
``--env KEY=VALUE`` passes a variable to the daemon (e.g.
``PROXIMADB_MALLOC_PIN=0`` to measure without the malloc fix, see
proximadb/storage/allocator.py). ``tests/daemon/test_load_smoke.py`` runs the same
code for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
DIM = 32
ID_SPACE = 20_000


def _client(worker: int, protocol: str, target: str, duration: float, max_ops: int, out: Path) -> None:
    import proximadb
    from proximadb.errors import ProximaDBError

    rng = np.random.default_rng(worker)
    connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
    lat: dict[str, list[float]] = {"upsert": [], "delete": [], "search": [], "get": []}
    errors: list[str] = []
    with connect(target, timeout=30) as client:
        deadline = time.monotonic() + duration
        ops = 0
        while time.monotonic() < deadline and ops < max_ops:
            roll = rng.random()
            ids = [f"r{int(i)}" for i in rng.choice(ID_SPACE, 10, replace=False)]
            started = time.perf_counter()
            try:
                if roll < 0.30:
                    op = "upsert"
                    vecs = rng.standard_normal((10, DIM)).astype(np.float32)
                    client.upsert_vectors("load", ids=ids, vectors=vecs, metadatas=[{"w": worker}] * 10)
                elif roll < 0.40:
                    op = "delete"
                    client.delete_vectors("load", ids=ids[:2])
                elif roll < 0.75:
                    op = "search"
                    client.search("load", rng.standard_normal(DIM).astype(np.float32), k=10)
                else:
                    op = "get"
                    client.get_vectors("load", ids)
            except ProximaDBError as exc:
                errors.append(f"{op}: {exc.code}: {exc}")
                continue
            lat[op].append(time.perf_counter() - started)
            ops += 1
    out.write_text(json.dumps({"protocol": protocol, "lat": lat, "errors": errors}))


def _worker_pid(master: int) -> int | None:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


_STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def _memory_kib(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS, RssAnon, RssFile) of the process in KiB, or None once it is gone."""
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in _STATUS_FIELDS:
                found[key] = int(value.split()[0])
    except (OSError, ValueError):
        return None
    if len(found) != len(_STATUS_FIELDS):
        return None
    return found["VmRSS"], found["RssAnon"], found["RssFile"]


def _slope_per_min(t: np.ndarray, mib: np.ndarray) -> float:
    """Least-squares slope of mib over t (seconds), in MiB/min."""
    if t.size < 2 or float(np.ptp(t)) == 0.0:
        return 0.0
    return float(np.polyfit(t, mib, 1)[0]) * 60.0


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"first": round(float(values[0]), 1), "last": round(float(values[-1]), 1),
            "max": round(float(values.max()), 1), "mean": round(float(values.mean()), 1)}


def memory_report(samples: list[tuple[float, int, int, int]]) -> dict[str, Any]:
    """The ``rss_mib`` part of the report from (seconds, VmRSS KiB, RssAnon KiB, RssFile KiB) samples."""
    if not samples:
        return {}
    arr = np.array(samples, dtype=np.float64)
    t = arr[:, 0]
    total, anon, file = (arr[:, i] / 1024 for i in (1, 2, 3))
    n = len(samples)
    quarter = max(1, n // 4)
    half = t >= t[-1] / 2
    series, next_at = [], 0.0
    for ts, v, a, f in zip(t, total, anon, file, strict=True):
        if ts >= next_at:
            series.append([round(float(ts), 1), round(float(v), 1), round(float(a), 1), round(float(f), 1)])
            next_at = ts + 5.0
    return {
        "samples": n,
        "total": _summary(total),
        "anon": _summary(anon),
        "file": _summary(file),
        "second_half": {
            "from_s": round(float(t[half][0]), 1),
            "anon_min": round(float(anon[half].min()), 1),
            "anon_max": round(float(anon[half].max()), 1),
            "anon_slope_mib_per_min": round(_slope_per_min(t[half], anon[half]), 2),
            "total_min": round(float(total[half].min()), 1),
            "total_max": round(float(total[half].max()), 1),
            "total_slope_mib_per_min": round(_slope_per_min(t[half], total[half]), 2),
        },
        "whole_run_anon_slope_mib_per_min": round(_slope_per_min(t, anon), 2),
        # Kept for a quick look: the peaks of the first and the last quarter (RssAnon).
        "anon_first_quarter_max": round(float(anon[:quarter].max()), 1),
        "anon_last_quarter_max": round(float(anon[-quarter:].max()), 1),
        "series": series,
    }


def run_load(workdir: Path, duration: float, clients: int, max_ops: int = 10**9,
             daemon_env: dict[str, str] | None = None) -> dict[str, Any]:
    sys.path[:0] = [str(TESTS), str(HERE.parent)]  # the harness in tests/, and this checkout's proximadb
    from _daemon import Daemon
    from _support import child_env

    import proximadb

    data = workdir / "data"
    data.mkdir(parents=True)
    daemon = Daemon(data, "--flush-bytes", "4000000", env=daemon_env).start()
    try:
        with proximadb.connect_grpc(daemon.grpc_target) as c:
            c.create_collection("load", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
            rng = np.random.default_rng(0)
            for start in range(0, ID_SPACE, 2000):  # the whole id space exists before the clock starts
                c.upsert_vectors("load", ids=[f"r{i}" for i in range(start, start + 2000)],
                                 vectors=rng.standard_normal((2000, DIM)).astype(np.float32))
        worker = _worker_pid(daemon.proc.pid)
        outs = [workdir / f"client-{w}.json" for w in range(clients)]
        procs = [
            subprocess.Popen([sys.executable, __file__, "--worker", str(w),
                              "--protocol", "grpc" if w % 2 == 0 else "rest",
                              "--target", daemon.grpc_target if w % 2 == 0 else daemon.rest_url,
                              "--duration", str(duration), "--max-ops", str(max_ops), "--client-out", str(outs[w])],
                             env=child_env())
            for w in range(clients)
        ]
        mem: list[tuple[float, int, int, int]] = []
        storage: list[dict[str, Any]] = []
        started = time.monotonic()
        next_stats = 0.0
        while any(p.poll() is None for p in procs):
            now = time.monotonic() - started
            if worker is not None and (kib := _memory_kib(worker)) is not None:
                mem.append((now, *kib))
            if now >= next_stats:
                next_stats = now + 5.0
                if (st := daemon.get_data("/collections/load/stats", timeout=5)) is not None:
                    storage.append(st)
            time.sleep(0.5)
        wall = time.monotonic() - started
        assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    results = [json.loads(o.read_text()) for o in outs]
    report: dict[str, Any] = {"clients": clients, "seconds": round(wall, 1), "ops": {}, "errors": []}
    total = 0
    for proto in ("grpc", "rest"):
        for op in ("upsert", "delete", "search", "get"):
            samples = np.array([x for r in results if r["protocol"] == proto for x in r["lat"][op]])
            if samples.size:
                total += samples.size
                report["ops"][f"{proto}/{op}"] = {
                    "count": int(samples.size),
                    "p50_ms": round(float(np.percentile(samples, 50)) * 1e3, 2),
                    "p99_ms": round(float(np.percentile(samples, 99)) * 1e3, 2),
                }
    for r in results:
        report["errors"].extend(r["errors"])
    report["total_ops"] = total
    report["ops_per_s"] = round(total / wall, 1)
    report["rss_mib"] = memory_report(mem)
    report["storage"] = {
        key: {"min": min(st[key] for st in storage), "max": max(st[key] for st in storage)}
        for key in ("vectors", "segments", "segment_rows", "memtable_rows", "indexed_segments")
        if storage and all(key in st for st in storage)
    }
    report["daemon_env"] = dict(daemon_env or {})
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--max-ops", type=int, default=10**9, help="per client")
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for the daemon (repeatable)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--protocol", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--client-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        _client(args.worker, args.protocol, args.target, args.duration, args.max_ops, Path(args.client_out))
        return
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="pxdb-load-") as tmp:
        report = run_load(Path(tmp), args.duration, args.clients, args.max_ops, daemon_env=env)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
