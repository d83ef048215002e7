"""Bounded load test: several client processes, mixed reads and writes over gRPC and REST, on loopback.

Usage (opt-in; starts its own daemon on free loopback ports in a temp directory)::

    python bench/load_test.py --duration 120 --clients 6

Each client process runs for ``--duration`` seconds (or ``--max-ops`` ops):
30% upserts of 10 records (over a fixed id space, so the data set stops
growing and memory should stay flat), 10% deletes, 35% searches (k=10), 25%
gets of 10 ids. Even clients speak gRPC, odd ones REST. The report gives
throughput, p50/p99 latency per operation and protocol, errors (must be 0)
and the daemon worker's RSS sampled every 0.5 s (first / last / max).
``tests/test_load_smoke.py`` runs the same code for a few seconds.
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


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_load(workdir: Path, duration: float, clients: int, max_ops: int = 10**9) -> dict[str, Any]:
    sys.path[:0] = [str(TESTS), str(HERE.parent)]  # the harness in tests/, and this checkout's proximadb
    from _daemon import Daemon
    from _support import child_env

    import proximadb

    data = workdir / "data"
    data.mkdir(parents=True)
    daemon = Daemon(data, "--flush-bytes", "4000000").start()
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
                              "--duration", str(duration), "--max-ops", str(max_ops), "--out", str(outs[w])],
                             env=child_env())
            for w in range(clients)
        ]
        rss: list[tuple[float, int]] = []
        started = time.monotonic()
        while any(p.poll() is None for p in procs):
            if worker is not None and (kib := _rss_kib(worker)) is not None:
                rss.append((time.monotonic() - started, kib))
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
    kib = [k for _, k in rss]
    report["rss_mib"] = {
        "first": round(kib[0] / 1024, 1), "last": round(kib[-1] / 1024, 1), "max": round(max(kib) / 1024, 1),
        "samples": len(kib),
        # steady state: the first and the last quarter of the run, after warm-up
        "first_quarter_max": round(max(kib[: max(1, len(kib) // 4)]) / 1024, 1),
        "last_quarter_max": round(max(kib[-max(1, len(kib) // 4) :]) / 1024, 1),
    } if kib else {}
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--max-ops", type=int, default=10**9, help="per client")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--protocol", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        _client(args.worker, args.protocol, args.target, args.duration, args.max_ops, Path(args.out))
        return
    with tempfile.TemporaryDirectory(prefix="pxdb-load-") as tmp:
        report = run_load(Path(tmp), args.duration, args.clients, args.max_ops)
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
