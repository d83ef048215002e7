"""A deterministic write workload shared by the crash test and its child process.

Operation ``i`` depends only on ``(seed, i)`` and, for metadata updates, on
whether the id exists; the parent replays the same sequence on a dict model.
Run as a script it applies operations from ``start`` on, printing
``B <i>`` before and ``A <i>`` after each acknowledged one (flushed at once).
With the option ``hold_flush`` = n, the n-th flush of the process is held for
good between writing its segment and installing it (a ``HELD`` line on
stderr), so the kill lands while the sealed rows are in a written but
uncommitted segment.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import numpy as np

DIM = 8
POOL = 60


def operation(seed: int, i: int) -> tuple[str, Any]:
    rng = np.random.default_rng([seed, i])
    kind = ("insert", "upsert", "upsert", "delete", "update")[int(rng.integers(5))]
    if kind == "insert":
        n = int(rng.integers(1, 40))
        ids = [f"n{i}-{j}" for j in range(n)]
        return kind, (ids, rng.standard_normal((n, DIM)).astype(np.float32), [{"op": i, "j": j} for j in range(n)])
    if kind == "upsert":
        n = int(rng.integers(1, 12))
        ids = sorted({f"p{int(x)}" for x in rng.integers(0, POOL, n)})
        return kind, (ids, rng.standard_normal((len(ids), DIM)).astype(np.float32), [{"op": i} for _ in ids])
    if kind == "delete":
        ids = sorted({f"p{int(x)}" for x in rng.integers(0, POOL, int(rng.integers(1, 6)))})
        if rng.random() < 0.3:
            ids.append(f"n{int(rng.integers(0, max(i, 1)))}-0")
        return kind, ids
    return kind, (f"p{int(rng.integers(0, POOL))}", {"u": i, "op": None} if rng.random() < 0.5 else {"u": i})


def apply_to_model(model: dict[str, tuple[np.ndarray, dict]], seed: int, i: int) -> None:
    kind, arg = operation(seed, i)
    if kind in ("insert", "upsert"):
        ids, vecs, metas = arg
        for id_, v, m in zip(ids, vecs, metas, strict=True):
            model[id_] = (v, m)
    elif kind == "delete":
        for id_ in arg:
            model.pop(id_, None)
    else:
        id_, patch = arg
        if id_ in model:
            v, m = model[id_]
            m = dict(m)
            for k, val in patch.items():
                if val is None:
                    m.pop(k, None)
                else:
                    m[k] = val
            model[id_] = (v, m)


def _holder(nth: int) -> Any:
    """A flush_hook that holds the ``nth`` flush of this process forever once its segment is written
    (outside the collection lock, before the install) and says so (``HELD`` on stderr); writes go on."""
    seen = [0]
    never = threading.Event()

    def hook(step: str) -> None:
        if step != "written":
            return
        seen[0] += 1
        if seen[0] == nth:
            os.write(2, b"HELD\n")  # on stderr: a stdout line of the main thread may be half written now
            never.wait()

    return hook


def main() -> None:
    from proximadb.errors import VectorNotFoundError
    from proximadb.storage.engine import Engine

    data_dir, seed, start, opts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    compact_every = int(opts.pop("compact_every", 0))
    hold_flush = int(opts.pop("hold_flush", 0))
    with Engine.open(data_dir, **opts) as engine:
        if not engine.list_collections():
            engine.create_collection("crash", DIM, distance_metric="euclidean")
        col = engine.collection("crash")
        if hold_flush:
            col.flush_hook = _holder(hold_flush)
        print("READY", flush=True)
        i = start
        while True:
            print(f"B {i}", flush=True)
            kind, arg = operation(seed, i)
            if kind in ("insert", "upsert"):
                ids, vecs, metas = arg
                col.insert(ids=ids, vectors=vecs, metadatas=metas, upsert=(kind == "upsert"))
            elif kind == "delete":
                col.delete(arg)
            else:
                try:
                    col.update_metadata(arg[0], arg[1])
                except VectorNotFoundError:
                    pass
            print(f"A {i}", flush=True)
            i += 1
            if compact_every and i % compact_every == 0:
                col.compact()  # logical content unchanged: the model needs no step for it


if __name__ == "__main__":
    main()
