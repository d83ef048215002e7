"""A crash-loop client process: insert / upsert / delete over one protocol, logging only what was acked.

``python _crash_loop_client.py WORKER PROTOCOL REST_URL GRPC_TARGET WORKDIR SEED``

Each worker owns its ids (``w<worker>-<n>``), so its own log orders every write
to them. Log lines (JSON, appended and flushed; this process is never killed):
``{"t": "try", "n": k, "op": ..., "ids": [...], "v": version}`` before a request and
``{"t": "ok", "n": k}`` / ``{"t": "fail", "n": k}`` after it. A failed request
may or may not have been applied; the checker allows both for those ids until
a later acked write to them. Pausing: while ``WORKDIR/pause`` exists the worker
finishes its request and waits, after writing ``WORKDIR/paused-<worker>``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

import proximadb
from proximadb.errors import ProximaDBError

DIM = 16


def vector_for(version: int, record_id: str) -> list[float]:
    base = float(version) + (sum(map(ord, record_id)) % 97) / 128.0
    return [base + i / 64.0 for i in range(DIM)]


def main() -> None:
    worker, protocol, rest_url, grpc_target, workdir, seed = sys.argv[1:7]
    wid, work = int(worker), Path(workdir)
    rng = random.Random(int(seed))
    log = open(work / f"acks-{wid}.jsonl", "a", buffering=1)
    pause, paused, stop = work / "pause", work / f"paused-{wid}", work / "stop"
    live: dict[str, int] = {}  # ids whose state is certain and live -> version
    uncertain: set[str] = set()
    next_id = n = 0
    client = None
    while not stop.exists():
        if pause.exists():
            if client is not None:
                client.close()
                client = None
            paused.touch()
            while pause.exists() and not stop.exists():
                time.sleep(0.01)
            paused.unlink(missing_ok=True)
            continue
        try:
            if client is None:
                connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
                client = connect(grpc_target if protocol == "grpc" else rest_url, timeout=5)
        except ProximaDBError:
            time.sleep(0.05)
            continue
        roll = rng.random()
        certain = [i for i in live if i not in uncertain]
        if roll < 0.5 or len(certain) < 5:
            ids = [f"w{wid}-{next_id + i}" for i in range(rng.randint(1, 20))]
            next_id += len(ids)
            op, version = "ins", 0
        elif roll < 0.8:
            ids = rng.sample(certain, min(len(certain), rng.randint(1, 5)))
            op, version = "ups", n + 1
        else:
            ids = rng.sample(certain, min(len(certain), rng.randint(1, 3)))
            op, version = "del", -1
        n += 1
        log.write(json.dumps({"t": "try", "n": n, "op": op, "ids": ids, "v": version}) + "\n")
        try:
            if op == "del":
                client.delete_vectors("crash", ids=ids)
            else:
                vecs = np.array([vector_for(version, i) for i in ids], dtype=np.float32)
                client.insert_vectors("crash", ids=ids, vectors=vecs, metadatas=[{"v": version}] * len(ids),
                                      upsert=op == "ups")
        except (ProximaDBError, OSError):
            log.write(json.dumps({"t": "fail", "n": n}) + "\n")
            uncertain.update(ids)
            for i in ids:
                live.pop(i, None)
            client.close()
            client = None
            time.sleep(0.05)
            continue
        log.write(json.dumps({"t": "ok", "n": n}) + "\n")  # only after the server acknowledged
        if wid == 0 and n % 150 == 0:
            try:
                client.compact("crash")  # so kills also land during compaction
            except (ProximaDBError, OSError):
                pass
        for i in ids:
            if op == "del":
                live.pop(i, None)
            else:
                live[i] = version
    log.close()


if __name__ == "__main__":
    main()
