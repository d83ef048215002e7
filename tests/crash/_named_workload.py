"""The writer of tests/crash/test_named_crash.py: named-vector writes to an embedded engine until killed.

    python _named_workload.py DATA_DIR SEED START WAL_STRATEGY

Opens DATA_DIR (fsync=always, a small flush threshold so rows live in segments, the WAL and the memtable),
creates collection ``c`` with named vectors if it is missing, reads its live records as the model, then
sends operation START, START + 1, ... (each depends only on the seed, its number and the model: inserts,
upserts, deletes, metadata updates that bring segment rows back to the memtable, compactions, and every 17th
a flush that waits, so that segments exist whatever the background flushes' timing) and prints
``ack <i>`` once operation i returned (durable: fsync=always). The test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

DIM = 8
VECTORS = {"title": {"dimension": 6, "distance_metric": "euclidean"},
           "img": {"dimension": 4, "distance_metric": "dot_product"}}
POOL = 60
OPTIONS: dict[str, Any] = {"fsync": "always", "flush_bytes": 24_000, "wal_segment_bytes": 64_000,
                           "flush_on_close": False}
Model = dict[str, dict[str, Any]]  # id -> {"vector", "named": {name: ndarray}, "metadata"}
Op = tuple[Any, ...]


def _records(rng: np.random.Generator, ids: list[str], i: int) -> list[dict[str, Any]]:
    # multiples of 1/16: exact in float32, so stored values compare equal
    return [{"id": id_, "vector": (rng.integers(-32, 33, DIM) / 16).astype(np.float32),
             "named": {name: (rng.integers(-32, 33, v["dimension"]) / 16).astype(np.float32)
                       for name, v in VECTORS.items()},
             "metadata": {"op": i, "g": j % 3}} for j, id_ in enumerate(ids)]


def make_op(seed: int, i: int, model: Model) -> Op:
    rng = np.random.default_rng([seed, i])
    live = sorted(model)
    if i % 23 == 22:
        return ("compact",)
    if i % 17 == 16:  # a flush that waits: segments exist from operation 16 on, whatever the background timing
        return ("flush",)
    roll = rng.random()
    if roll < 0.4 or len(live) < 10:
        return ("insert", _records(rng, [f"n{i}-{j}" for j in range(int(rng.integers(5, 25)))], i))
    if roll < 0.7:
        ids = sorted({f"p{int(x)}" for x in rng.integers(0, POOL, int(rng.integers(1, 12)))})
        return ("upsert", _records(rng, ids, i))
    if roll < 0.82:
        return ("delete", sorted({str(x) for x in rng.choice(live, int(rng.integers(1, 5)), replace=False)}))
    return ("meta", str(rng.choice(live)), {"u": i})


def send(col: Any, op: Op) -> None:
    kind = op[0]
    if kind in ("insert", "upsert"):
        recs = op[1]
        col.insert(ids=[r["id"] for r in recs], vectors=np.stack([r["vector"] for r in recs]),
                   metadatas=[r["metadata"] for r in recs], upsert=kind == "upsert",
                   named_vectors={name: np.stack([r["named"][name] for r in recs]) for name in VECTORS})
    elif kind == "delete":
        col.delete(op[1])
    elif kind == "meta":
        col.update_metadata(op[1], op[2])
    elif kind == "flush":
        col.flush()
    else:
        col.compact()


def apply(model: Model, op: Op) -> None:
    kind = op[0]
    if kind in ("insert", "upsert"):
        for r in op[1]:
            model[r["id"]] = {"vector": r["vector"], "named": r["named"], "metadata": dict(r["metadata"])}
    elif kind == "delete":
        for id_ in op[1]:
            model.pop(id_, None)
    elif kind == "meta":
        model[op[1]]["metadata"].update(op[2])


def read_model(col: Any) -> Model:
    out: Model = {}
    cursor = None
    while True:
        page, cursor = col.scroll(limit=500, cursor=cursor, include_vectors=True)
        for r in page:
            out[r["id"]] = {"vector": r["vector"], "named": r["named_vectors"], "metadata": r["metadata"]}
        if cursor is None:
            return out


def main() -> None:
    from proximadb.storage.engine import Engine

    data_dir, seed, start, strategy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    engine = Engine.open(data_dir, wal_strategy=strategy, **OPTIONS)
    if not engine.list_collections():
        engine.create_collection("c", DIM, distance_metric="euclidean", vectors=VECTORS)
    col = engine.collection("c")
    model = read_model(col)
    print("ready", flush=True)
    i = start
    while True:
        op = make_op(seed, i, model)
        send(col, op)
        apply(model, op)
        print(f"ack {i}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
