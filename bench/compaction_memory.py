"""Peak memory and time of a compaction (issue 11: "compaction and migration stream").

Builds a collection of ``--segments`` flat segments totalling ``--rows`` x ``--dim`` float32 rows
with five metadata fields (a keyword of 1,000 values, a keyword of 100, an integer year, a float
price, a list of 1-3 tags; data from a seed), deletes ``--delete-share`` of the rows and gives
``--expire-share`` of them an expiry (a year ahead: kept, but the expiry column is written),
then compacts it in a fresh child process and
reports, for the compaction alone:

* ``anon_peak_mib``: the peak of the process's anonymous resident memory (RssAnon, sampled every
  5 ms by a thread) above its value just before the compaction: the Python heap, numpy arrays and
  buffers; what a chunk size bounds;
* ``hwm_mib``: the rise of the resident high-water mark (VmHWM, reset just before the compaction
  through /proc/self/clear_refs), which also counts the pages of the memory-mapped input and output
  files that the compaction touched (page cache, shared, reclaimable);
* ``seconds``: the compaction's wall time.

Run (about a minute at the defaults)::

    python bench/compaction_memory.py --rows 400000 --dim 128 --segments 4
    python bench/compaction_memory.py --chunk-rows 1024      # a smaller rewrite chunk

``--chunk-rows`` sets ``StorageOptions.rewrite_chunk_rows`` (omitted: the default; ignored by
versions of ProximaDB without the setting). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path
from proximadb.storage.engine import Engine
from proximadb.storage.collection import StorageOptions

data_dir, chunk_rows = sys.argv[1], int(sys.argv[2])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

opts = {"fsync": "always", "auto_compact": False}
if chunk_rows and "rewrite_chunk_rows" in StorageOptions.__dataclass_fields__:
    opts["rewrite_chunk_rows"] = chunk_rows
with Engine.open(data_dir, **opts) as engine:
    col = engine.collection("bench")
    stop = threading.Event()
    base = status("RssAnon")
    peak = [base]
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], status("RssAnon"))
            time.sleep(0.005)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    hwm_base = status("VmRSS")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    report = col.compact()
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], status("RssAnon"))
    out = {"seconds": round(seconds, 2), "anon_peak_mib": round((peak[0] - base) / 2**20, 1),
           "hwm_mib": round((status("VmHWM") - hwm_base) / 2**20, 1),
           "rows_before": report["rows_before"], "rows_after": report["rows_after"],
           "segments": [report["segments_before"], report["segments_after"]],
           "chunk_rows": getattr(engine.options, "rewrite_chunk_rows", None)}
print(json.dumps(out))
"""


def build(data_dir: Path, rows: int, dim: int, segments: int, delete_share: float, expire_share: float,
          seed: int) -> None:
    from proximadb.codec.payload import encode_insert
    from proximadb.storage.engine import Engine

    rng = np.random.default_rng(seed)
    tenants = [f"tenant-{i:04d}" for i in range(1000)]
    zipf = np.minimum(rng.zipf(1.3, rows), 100) - 1
    tags = [f"tag{i}" for i in range(50)]
    per = -(-rows // segments)
    later = int(time.time() * 1e6) + 365 * 86400 * 10**6
    with Engine.open(data_dir, fsync="never", auto_compact=False) as engine:
        engine.create_collection("bench", dim, distance_metric="euclidean")
        col = engine.collection("bench")
        for s in range(segments):
            lo, hi = s * per, min(rows, (s + 1) * per)
            for b in range(lo, hi, 10_000):
                e = min(hi, b + 10_000)
                idx = range(b, e)
                meta: list[dict[str, Any]] = [
                    {"tenant": tenants[int(rng.integers(1000))], "category": f"cat-{zipf[i]:03d}",
                     "year": int(1990 + rng.integers(35)), "price": round(float(rng.uniform(1, 1000)), 2),
                     "tags": [tags[int(t)] for t in rng.integers(50, size=int(rng.integers(1, 4)))]}
                    for i in idx
                ]
                expiring = rng.random(e - b) < expire_share
                col.insert_payload(encode_insert(
                    None, ids=[f"doc-{i:09d}" for i in idx],
                    vectors=rng.standard_normal((e - b, dim)).astype(np.float32), metadata=meta,
                    expires_at=[later if x else None for x in expiring]))
            col.flush()
        victims = rng.choice(rows, int(rows * delete_share), replace=False)
        for b in range(0, len(victims), 10_000):
            col.delete([f"doc-{int(i):09d}" for i in victims[b:b + 10_000]])
        col.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--delete-share", type=float, default=0.05)
    ap.add_argument("--expire-share", type=float, default=0.02)
    ap.add_argument("--chunk-rows", type=int, default=0, help="rewrite_chunk_rows (0: the default)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", type=Path, default=None, help="build here (reused if present) and keep it")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pxdb-compact-bench-"))
    source = args.keep or work / "source"
    try:
        if not source.exists():
            t0 = time.perf_counter()
            build(source, args.rows, args.dim, args.segments, args.delete_share, args.expire_share, args.seed)
            print(f"built {args.rows:,} x {args.dim} in {args.segments} segments in "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        target = work / "run"
        shutil.copytree(source, target)
        out = subprocess.run([sys.executable, "-c", CHILD, str(target), str(args.chunk_rows)],
                             capture_output=True, text=True, check=False, env=dict(os.environ))
        if out.returncode:
            sys.exit(out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(rows=args.rows, dim=args.dim)
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
