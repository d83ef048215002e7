"""kill -9 a real daemon while a client writes records with sparse vectors; every acknowledged write survives.

A writer thread sends a deterministic stream of operations (operation ``i`` depends only on the seed, ``i``
and the acknowledged state): inserts (records form) and upserts (columns form) whose records carry the
sparse vectors ``kw`` and/or ``title`` or none (an upsert without them drops the old ones), deletes,
metadata merges and vector updates (which keep the sparse vectors), and now and then a compaction. The
daemon flushes every ~20 kB of memtable, so rows live in segments (sparse.idx), in the WAL and in the
memtable at the kill. The model is updated only after the server acknowledged an operation. The kill
comes once ``BATCHES`` operations were acknowledged in the round and the daemon reported a flushed segment
(no sleep), while the writer still runs (an operation in flight, its outcome unknown). After the restart
on the same directory: the whole content (scroll) equals the model, or the model plus the one in-flight
operation (never a part of it); ``get`` of every id ever written agrees (dense vector, metadata, sparse
vectors exactly; deleted ids absent); and ``search_sparse`` with each live record's own sparse vector
(with and without a metadata filter) equals a numpy brute force over the model. Sparse values are
multiples of 1/8, so every score is exact in float32: the scores must be equal and the ids may differ only
on equal scores. Two rounds (gRPC, then REST), the second on top of the first's recovered directory.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import numpy as np
from _daemon import Daemon

import proximadb
from proximadb.errors import ProximaDBError

DIM = 8
BATCHES = 60  # acknowledged operations per round before the kill (flushes every ~8)
POOL = 80  # ids that upserts, deletes and updates come back to
VOCAB = {"kw": 64, "title": 12}
K = 10
Model = dict[str, dict[str, Any]]  # id -> {"vector": ndarray, "metadata": dict, "sparse": {name: {...}}}
Op = tuple[Any, ...]


def _sparse(rng: np.random.Generator) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for name, vocab in VOCAB.items():
        if rng.random() < (0.8 if name == "kw" else 0.35):
            nnz = int(rng.integers(1, min(vocab, 8) + 1))
            out[name] = {"indices": sorted(int(x) for x in rng.choice(vocab, nnz, replace=False)),
                         "values": [float(x) / 8 for x in rng.integers(1, 33, nnz)]}  # exact in float32
    return out


def _records(rng: np.random.Generator, ids: list[str], i: int) -> list[dict[str, Any]]:
    return [{"id": id_, "vector": rng.standard_normal(DIM).astype(np.float32), "metadata": {"op": i, "g": j % 3},
             "sparse": _sparse(rng)} for j, id_ in enumerate(ids)]


def make_op(seed: int, i: int, model: Model) -> Op:
    rng = np.random.default_rng([seed, i])
    live = sorted(model)
    if i % 29 == 28:
        return ("compact",)
    roll = rng.random()
    if roll < 0.35 or len(live) < 10:
        return ("insert", _records(rng, [f"n{i}-{j}" for j in range(int(rng.integers(5, 30)))], i))
    if roll < 0.65:
        ids = sorted({f"p{int(x)}" for x in rng.integers(0, POOL, int(rng.integers(1, 15)))})
        ids += [str(x) for x in rng.choice(live, 2, replace=False) if not str(x).startswith("p")]
        return ("upsert", _records(rng, sorted(set(ids)), i))
    if roll < 0.77:
        gone = {str(x) for x in rng.choice(live, int(rng.integers(1, 6)), replace=False)}
        return ("delete", sorted(gone | {f"p{int(rng.integers(0, POOL))}"}))  # maybe a missing id
    target = str(rng.choice(live))
    if roll < 0.93:
        return ("meta", target, {"u": i, "g": int(rng.integers(0, 3)), "op": None if rng.random() < 0.5 else i})
    return ("vector", target, rng.standard_normal(DIM).astype(np.float32))


def send(client: Any, op: Op) -> None:
    kind = op[0]
    if kind == "insert":
        client.insert_vectors("c", [{"id": r["id"], "vector": r["vector"].tolist(), "metadata": r["metadata"],
                                     **({"sparse_vectors": r["sparse"]} if r["sparse"] else {})} for r in op[1]])
    elif kind == "upsert":
        recs = op[1]
        client.insert_vectors("c", ids=[r["id"] for r in recs], vectors=np.stack([r["vector"] for r in recs]),
                              metadatas=[r["metadata"] for r in recs],
                              sparse_vectors=[r["sparse"] or None for r in recs], upsert=True)
    elif kind == "delete":
        client.delete_vectors("c", ids=op[1])
    elif kind == "meta":
        client.update_vector("c", op[1], metadata=op[2])
    elif kind == "vector":
        client.update_vector("c", op[1], vector=op[2])
    else:
        client.compact("c")


def apply(model: Model, op: Op) -> None:
    kind = op[0]
    if kind in ("insert", "upsert"):
        for r in op[1]:
            model[r["id"]] = {"vector": r["vector"], "metadata": dict(r["metadata"]), "sparse": r["sparse"]}
    elif kind == "delete":
        for id_ in op[1]:
            model.pop(id_, None)
    elif kind == "meta":
        meta = model[op[1]]["metadata"]
        for key, value in op[2].items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
    elif kind == "vector":
        model[op[1]]["vector"] = op[2]


class Writer(threading.Thread):
    """Sends operations back to back; ``model`` holds exactly the acknowledged ones, ``inflight`` the one
    whose answer never came (the kill)."""

    def __init__(self, client: Any, model: Model, seed: int, start: int) -> None:
        super().__init__(daemon=True)
        self.client, self.model, self.seed, self.next = client, model, seed, start
        self.acked = 0
        self.inflight: Op | None = None
        self.error: BaseException | None = None
        self.ever: set[str] = set()  # every id an operation was sent for
        self.killed = threading.Event()
        self.cond = threading.Condition()

    def run(self) -> None:
        try:
            while True:
                op = make_op(self.seed, self.next, self.model)
                self.inflight = op
                if op[0] in ("insert", "upsert"):
                    self.ever.update(r["id"] for r in op[1])
                elif op[0] == "delete":
                    self.ever.update(op[1])
                send(self.client, op)
                apply(self.model, op)
                self.inflight = None
                self.next += 1
                with self.cond:
                    self.acked += 1
                    self.cond.notify_all()
        except (ProximaDBError, OSError) as exc:
            if not self.killed.is_set():
                self.error = exc  # a failure before the kill: a bug, reported by the test
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            with self.cond:
                self.cond.notify_all()

    def wait_acked(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.acked >= n or not self.is_alive(), timeout=60)
        assert self.error is None, f"write failed before the kill: {self.error!r}"
        assert self.acked >= n, "the writer stopped"


def _state(client: Any) -> Model:
    out: Model = {}
    cursor = None
    while True:
        page, cursor = client.scroll("c", limit=500, cursor=cursor, include_vectors=True)
        for r in page:
            out[r["id"]] = {"vector": np.asarray(r["vector"], np.float32), "metadata": r["metadata"],
                            "sparse": r.get("sparse_vectors") or {}}
        if cursor is None:
            return out


def _diff(state: Model, model: Model) -> list[str]:
    problems = [f"lost {i}" for i in sorted(model.keys() - state.keys())]
    problems += [f"never acknowledged {i}" for i in sorted(state.keys() - model.keys())]
    for id_ in sorted(model.keys() & state.keys()):
        have, want = state[id_], model[id_]
        if not np.array_equal(have["vector"], want["vector"]):
            problems.append(f"{id_}: vector {have['vector']} != {want['vector']}")
        if have["metadata"] != want["metadata"] or have["sparse"] != want["sparse"]:
            problems.append(f"{id_}: {have['metadata']} {have['sparse']} != {want['metadata']} {want['sparse']}")
    return problems


def _brute(model: Model, name: str, query: dict[str, list[Any]], flt: dict[str, Any] | None) -> dict[str, float]:
    """id -> dot product, over the records with ``name`` that share an index with the query and pass ``flt``."""
    q = np.zeros(VOCAB[name], np.float64)
    q[query["indices"]] = query["values"]
    out = {}
    for id_, rec in model.items():
        vec = rec["sparse"].get(name)
        if vec is None or (flt and rec["metadata"].get("g") != flt["g"]) or not q[vec["indices"]].any():
            continue
        out[id_] = float(q[vec["indices"]] @ np.asarray(vec["values"], np.float64))
    return out


def _check_searches(client: Any, model: Model) -> int:
    searches = 0
    for n, (id_, rec) in enumerate(sorted(model.items())):
        for name, vec in sorted(rec["sparse"].items()):
            flt = {"g": rec["metadata"]["g"]} if n % 2 and "g" in rec["metadata"] else None
            truth = _brute(model, name, vec, flt)
            best = sorted(truth.values(), reverse=True)[:K]
            hits = client.search_sparse("c", name, vec["indices"], vec["values"], K, filter=flt)
            where = f"search_sparse({name}) with {id_}'s vector, filter {flt}"
            assert len({h["id"] for h in hits}) == len(hits) == len(best), (where, hits, best)
            assert [h["score"] for h in hits] == best, (where, hits, best)  # exact: dyadic values
            for h in hits:  # each hit's own score is its true one: ids differ from numpy's only on ties
                assert truth.get(h["id"]) == h["score"], (where, h, truth.get(h["id"]))
                assert h["metadata"] == model[h["id"]]["metadata"], (where, h)
            assert id_ in {h["id"] for h in hits} or truth[id_] <= best[-1], (where, "own record missing")
            searches += 1
    return searches


def _recover_and_check(daemon: Daemon, model: Model, inflight: Op | None, ever: set[str]) -> Model:
    daemon.start()
    with proximadb.connect_grpc(daemon.grpc_target, timeout=30) as client:
        state = _state(client)
        problems = _diff(state, model)
        if problems and inflight is not None:  # the operation in flight at the kill may have been applied, whole
            with_inflight = copy.deepcopy(model)
            apply(with_inflight, inflight)
            other = _diff(state, with_inflight)
            if not other:
                model, problems = with_inflight, []
            else:
                problems = min(problems, other, key=len)  # the nearer of the two states
        assert not problems, f"{len(problems)} differences after the restart: {problems[:8]}"
        assert client.count("c") == len(model)
        ids = sorted(ever)
        for s in range(0, len(ids), 400):
            got = {r["id"]: r for r in client.get_vectors("c", ids[s:s + 400])}
            for id_ in ids[s:s + 400]:
                want, have = model.get(id_), got.get(id_)
                assert (want is None) == (have is None), (id_, want, have)
                if want is not None and have is not None:
                    assert np.array_equal(np.asarray(have["vector"], np.float32), want["vector"]), id_
                    assert have["metadata"] == want["metadata"], id_
                    assert (have.get("sparse_vectors") or {}) == want["sparse"], id_
        assert _check_searches(client, model) > 0.8 * len(model)
    assert "orrupt" not in daemon.logs(), daemon.logs()[-3000:]
    return model


def test_kill_9_daemon_during_sparse_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    daemon = Daemon(data, "--flush-bytes", "20000")
    seed, next_op = 20251, 0
    model: Model = {}
    ever: set[str] = set()
    try:
        daemon.start()
        with proximadb.connect_grpc(daemon.grpc_target) as admin:
            admin.create_collection("c", DIM, distance_metric="euclidean", sparse_vectors={"kw": {}, "title": {}})
        for round_no, connect, target in ((0, proximadb.connect_grpc, daemon.grpc_target),
                                          (1, proximadb.connect_rest, daemon.rest_url)):
            admin = proximadb.connect_grpc(daemon.grpc_target, timeout=10)
            checkpoint = admin.stats("c")["checkpoint_seq"]
            client = connect(target, timeout=10, retries=0)
            writer = Writer(client, model, seed, next_op)
            writer.start()
            writer.wait_acked(BATCHES)
            extra = 0  # until a flush of this round has installed a segment (flushes run in the background)
            while admin.stats("c")["checkpoint_seq"] == checkpoint:
                extra += 1
                assert extra < 200, "no flush before the kill"
                writer.wait_acked(BATCHES + extra)
            admin.close()
            assert writer.is_alive(), repr(writer.error)
            writer.killed.set()
            daemon.kill9()  # the writer is still sending: an operation is in flight
            writer.join(30)
            assert not writer.is_alive() and writer.error is None, repr(writer.error)
            client.close()
            ever |= writer.ever
            model = _recover_and_check(daemon, writer.model, writer.inflight, ever)
            next_op = writer.next + 1  # past the in-flight one, whether it was applied or not
            print(f"round {round_no}: {writer.acked} operations acknowledged, killed with "
                  f"{writer.inflight[0] if writer.inflight else 'none'} in flight; {len(model)} live records")
        daemon.stop()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
