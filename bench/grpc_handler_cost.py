"""What a plain grpcio server adds to a unary call whose handler works for a while (issue 13).

    python bench/grpc_handler_cost.py [--calls 2000] [--rounds 3] [--json bench/results/grpc_handler_cost.json]

No ProximaDB code on either side: a ``grpc.server`` with a thread pool (as the daemon's) in a child process,
one generic unary method whose handler holds the GIL for N µs (a busy loop: Python work, as a servicer's),
and a blocking client in this process. For N in 0, 100 and 200 µs it reports the round trip's p50 and that
minus N: how much a handler's own time costs the call beyond itself, the floor under the SDK's round trip
that no change inside ProximaDB's servicer removes. The sizes turn in rounds, the median of the rounds' p50
is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

from proximadb.free_ports import free_port

SPINS_US = (0, 100, 200)


def _serve(port: int) -> None:
    def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        seconds = int.from_bytes(request[:4], "little") / 1e6
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            pass
        return b"x" * 300  # about a search answer's size

    method = grpc.unary_unary_rpc_method_handler(handler)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), maximum_concurrent_rpcs=8,
                         handlers=(grpc.method_handlers_generic_handler("bench.Spin", {"Spin": method}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per size and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve is not None:
        _serve(args.serve)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            spin = channel.unary_unary("/bench.Spin/Spin")
            rounds: dict[int, list[float]] = {us: [] for us in SPINS_US}
            for _ in range(args.rounds):
                for us in SPINS_US:
                    request = us.to_bytes(4, "little")
                    for _ in range(100):
                        spin(request, timeout=30)
                    times = []
                    for _ in range(args.calls):
                        start = time.perf_counter()
                        spin(request, timeout=30)
                        times.append(time.perf_counter() - start)
                    rounds[us].append(float(np.percentile(times, 50)) * 1e6)
    finally:
        server.kill()
        server.wait()
    results = {}
    for us, p50s in rounds.items():
        p50 = float(np.median(p50s))
        results[f"spin_{us}us"] = {"p50_us": p50, "beyond_handler_us": p50 - us, "rounds_p50_us": p50s}
        print(f"handler {us:3d} µs: round trip p50 {p50:6.1f} µs, {p50 - us:6.1f} µs beyond the handler")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
