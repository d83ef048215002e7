"""Overload: many more concurrent requests than ``--max-concurrent-requests``; does the daemon stay responsive?

Usage (opt-in; starts its own daemon on free loopback ports in a temp directory)::

    python bench/overload.py --limit 4 --processes 4 --threads 8 --duration 20

Each of ``--processes`` client processes runs ``--threads`` threads that send
exact searches (k=10 over 20,000 x 128, about a millisecond of work each) as
fast as they can, half over gRPC and half over REST, with the SDK's retries
off, so each refusal is seen. A prober sends ``GET /health`` every 50 ms. The
report gives, per protocol: answered and refused requests per second, p50/p99
latency of answers and of refusals, any other error (must be none), and the
probe's p50/p99. A daemon that queued the excess would show refusals = 0 and
answer latencies that grow with the number of clients; a hung one would fail
the probe.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent)]  # the harness in tests/, this checkout's proximadb

DIM = 128
ROWS = 20_000


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values) * 1000
    return {"count": len(values), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def _client_process(args: tuple[int, str, str, int, float]) -> dict[str, Any]:
    import proximadb
    from proximadb.errors import ResourceExhaustedError

    worker, grpc_target, rest_url, threads, duration = args
    out: dict[str, Any] = {"ok": [], "refused": [], "errors": []}
    lock = threading.Lock()

    def run(t: int) -> None:
        protocol = "grpc" if (worker * threads + t) % 2 == 0 else "rest"
        connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
        rng = np.random.default_rng(worker * 1000 + t)
        with connect(grpc_target if protocol == "grpc" else rest_url, timeout=30) as client:
            client.retries = 0
            until = time.monotonic() + duration
            while time.monotonic() < until:
                started = time.perf_counter()
                try:
                    client.search("c", rng.standard_normal(DIM).astype(np.float32), k=10)
                    kind = "ok"
                except ResourceExhaustedError:
                    kind = "refused"
                except Exception as exc:  # reported, must stay empty
                    with lock:
                        out["errors"].append(f"{protocol}: {type(exc).__name__}: {exc}"[:200])
                    continue
                with lock:
                    out[kind].append((protocol, time.perf_counter() - started))

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=4, help="the daemon's --max-concurrent-requests")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args()

    from _daemon import Daemon

    import proximadb

    with tempfile.TemporaryDirectory(prefix="pxdb-overload-") as tmp:
        daemon = Daemon(Path(tmp) / "data", "--max-concurrent-requests", str(args.limit)).start()
        try:
            with proximadb.connect_grpc(daemon.grpc_target) as c:
                c.create_collection("c", DIM, distance_metric="euclidean")
                rng = np.random.default_rng(0)
                for start in range(0, ROWS, 5000):
                    c.insert_vectors("c", ids=[f"r{i}" for i in range(start, start + 5000)],
                                     vectors=rng.standard_normal((5000, DIM)).astype(np.float32))
            probes: list[float] = []
            probe_failures = 0
            stop = threading.Event()

            def probe() -> None:
                nonlocal probe_failures
                while not stop.is_set():
                    started = time.perf_counter()
                    if daemon.health() is None:
                        probe_failures += 1
                    else:
                        probes.append(time.perf_counter() - started)
                    stop.wait(0.05)

            prober = threading.Thread(target=probe)
            prober.start()
            jobs = [(w, daemon.grpc_target, daemon.rest_url, args.threads, args.duration)
                    for w in range(args.processes)]
            started = time.monotonic()
            with Pool(args.processes) as pool:
                parts = pool.map(_client_process, jobs)
            seconds = time.monotonic() - started
            stop.set()
            prober.join()
        finally:
            daemon.stop()

    report: dict[str, Any] = {"limit": args.limit, "clients": args.processes * args.threads,
                              "seconds": round(seconds, 1)}
    for protocol in ("grpc", "rest"):
        ok = [d for part in parts for p, d in part["ok"] if p == protocol]
        refused = [d for part in parts for p, d in part["refused"] if p == protocol]
        report[protocol] = {"answered_per_s": round(len(ok) / seconds, 1),
                            "refused_per_s": round(len(refused) / seconds, 1),
                            "answered": _pct(ok), "refused": _pct(refused)}
    report["errors"] = [e for part in parts for e in part["errors"]][:20]
    report["health_probe"] = {**_pct(probes), "failures": probe_failures}
    print(json.dumps(report, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
