"""Rebuild the seed corpora in fuzz/corpus/<target>/ from real, valid inputs.

``python fuzz/make_corpus.py`` (deterministic: the same files every run). Seeds
are produced by the real encoders and the real WAL writer, so every seed is
an input the system itself emits.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _common import CORPUS

from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.storage.operations import DeleteOp, InsertOp, MetadataPatch, UpdateOp
from proximadb.storage.wal import WriteAheadLog


def _batches() -> list[tuple[bool, list[str], np.ndarray, list, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for n, dim, upsert in ((1, 4, False), (3, 8, True), (5, 2, False), (0, 4, False), (2, 16, True)):
        ids = [f"id-{i}-é" if i % 2 else f"v{i}" for i in range(n)]
        vecs = rng.standard_normal((n, dim)).astype(np.float32)
        md = [
            {"tag": "a", "n": i, "x": 0.5 * i, "ok": bool(i % 2), "tags": ["p", "q"], "none": None} if i % 2 == 0
            else None
            for i in range(n)
        ]
        ts = np.arange(n, dtype=np.int64) * 1000 + 1_700_000_000_000_000
        out.append((upsert, ids, vecs, md, ts))
    return out


def frames() -> list[bytes]:
    seeds = []
    for upsert, ids, vecs, md, ts in _batches():
        seeds.append(encode_insert(ids=ids, vectors=vecs, metadata=md, timestamps=ts, upsert=upsert))
    seeds.append(encode_payload("vector_delete", {"ids": ["a", "b", "c"], "filter": None}))
    seeds.append(encode_payload("vector_delete", {"ids": [], "filter": '{"tag": {"$eq": "a"}}'}))
    seeds.append(encode_payload("vector_update", {
        "updates": [{"id": "a", "metadata": {"k": 1, "s": "x", "l": ["u"]}, "replace": False},
                    {"id": "b", "metadata": {}, "replace": True}],
        "timestamp": 1_700_000_000_000_000,
    }))
    seeds.append(encode_payload("vector_search", {
        "queries": [[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]], "k": 10, "filter": '{"n": {"$gt": 1}}',
        "include_vectors": True, "include_metadata": True, "ef": 64, "nprobe": None, "exact": False,
    }))
    seeds.append(encode_payload("search_result", {"results": [[
        {"id": "a", "score": 0.9, "distance": 0.1, "metadata": {"t": "x", "n": 3}, "vector": [1.0, 2.0]},
        {"id": "b", "score": 0.5, "distance": 0.5, "metadata": None, "vector": None},
    ], []]}))
    seeds.append(encode_payload("collection_create", {
        "name": "docs", "dimension": 128, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
        "index_params": {"m": 16, "ef_construction": 200, "ratio": 0.5, "name": "x", "flag": True},
        "filterable_metadata_fields": ["tag", "n"], "description": "seed",
    }))
    seeds.append(encode_payload("collection_update", {
        "name": "docs", "dimension": 4, "distance_metric": "euclidean", "description": None,
    }))
    return seeds


def avro_batches() -> list[bytes]:
    seeds = []
    for upsert, ids, vecs, md, ts in _batches():
        datum = encode_vector_batch(ids, vecs, md, ts, upsert)
        seeds.append(bytes([0xFF]) + datum)  # any dimension
        seeds.append(bytes([vecs.shape[1]]) + datum)  # the right dimension
    return seeds


def wal_files() -> list[bytes]:
    seeds = []
    ops = [
        InsertOp(False, ["a", "b"], np.eye(2, 4, dtype=np.float32), [{"t": "x", "n": 1}, {}],
                 np.array([1, 2], dtype=np.int64)),
        InsertOp(True, ["c"], np.full((1, 4), 0.25, dtype=np.float32), [{"l": ["p"]}], np.array([3], dtype=np.int64)),
        DeleteOp(["a"]),
        UpdateOp([MetadataPatch("b", {"n": 2}, False)], 4),
        InsertOp(False, [f"r{i}" for i in range(20)], np.zeros((20, 4), dtype=np.float32), [{}] * 20,
                 np.arange(20, dtype=np.int64)),  # compressible: takes the LZ4 path
    ]
    tmp = Path(tempfile.mkdtemp(prefix="pxdb-corpus-"))
    try:
        for strategy in ("avro", "binary"):
            for compression in ("none", "lz4"):
                d = tmp / f"{strategy}-{compression}"
                wal = WriteAheadLog.open(d, strategy=strategy, compression=compression,
                                         fsync="never")
                for op in ops:
                    wal.append(op)
                wal.close()
                (data,) = [p.read_bytes() for p in sorted(d.glob("wal-*.log"))]
                seeds.append(b"\x00" + data)  # mode 0: a whole segment file
                # mode 1/3: single frames (CRC recomputed by the target), per strategy
                mode = 1 if strategy == "avro" else 3
                pos = 24
                while pos < len(data):
                    body_len = int.from_bytes(data[pos : pos + 4], "little")
                    seeds.append(bytes([mode]) + data[pos : pos + 24 + body_len])
                    pos += 24 + body_len
    finally:
        shutil.rmtree(tmp)
    return seeds


def write(target: str, seeds: list[bytes]) -> None:
    d = CORPUS / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for seed in seeds:
        (d / hashlib.sha1(seed).hexdigest()[:16]).write_bytes(seed)
    print(f"{target}: {len(list(d.iterdir()))} seeds, {sum(map(len, seeds))} bytes")


if __name__ == "__main__":
    fr = frames()
    write("frame", fr)
    write("payload", fr)
    write("avro_batch", avro_batches())
    write("wal_scan", wal_files())
