"""Filtered search and count through the real daemon, over both protocols: the filter masks come
from the payload indexes of every part (segments with HNSW, the memtable), and a filtered search
returns k hits whenever k rows match, whatever the selectivity."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _daemon import Daemon

import proximadb
from proximadb.filters import compile_filter

ROWS = 3_000
DIM = 16


def _metadata(i: int) -> dict[str, object]:
    return {
        "tenant": f"t{i % 300}",  # 10 rows each
        "cat": f"c{i % 7}" if i % 10 else None,
        "year": 1990 + i % 30,
        "price": (i % 1000) / 10,
        "tags": [f"g{i % 3}", f"h{i % 11}"],
    }


FILTERS = [
    {"tenant": "t7"},
    {"tenant": {"$in": ["t1", "t2"]}, "year": {"$gte": 2000}},
    {"cat": None},
    {"cat": {"$ne": "c3"}, "tags": "h4"},
    {"year": {"$gte": 1995, "$lt": 1997}},
    {"price": {"$lte": 0.5}},
    {"$or": [{"tags": "g1"}, {"price": {"$gt": 99.5}}]},
    {"$not": {"tags": {"$in": ["g0", "g1"]}}},
    {"tenant": "nobody"},
]


def test_filtered_search_returns_k_hits_whenever_k_rows_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    metadata = [_metadata(i) for i in range(ROWS)]
    # Several HNSW segments (a flush after each 500 rows), and the last 100 rows (~17 KB, under the
    # 40 KB flush threshold) stay in the memtable.
    with Daemon(tmp_path / "data", "--flush-bytes", "40000") as daemon:
        with proximadb.connect_grpc(daemon.grpc_target) as client:
            client.create_collection("f", DIM, distance_metric="euclidean", indexing_algorithm="hnsw",
                                     index_params={"M": 8, "ef_construction": 40})
            ids = [f"r{i:05d}" for i in range(ROWS)]
            for start in range(0, ROWS - 100, 500):
                end = min(start + 500, ROWS - 100)
                client.insert_vectors("f", ids=ids[start:end], vectors=vectors[start:end],
                                      metadatas=metadata[start:end])
                client.flush("f")  # after the background flush the batch may have started
            client.insert_vectors("f", ids=ids[-100:], vectors=vectors[-100:], metadatas=metadata[-100:])
            client.delete_vectors("f", ids=ids[::13])
            deadline = time.monotonic() + 120
            while client.stats("f")["index_builds_pending"] and time.monotonic() < deadline:
                time.sleep(0.2)
            stats = client.stats("f")
            assert stats["segments"] >= 2 and stats["memtable_rows"] > 0 and stats["indexed_segments"] >= 1
        live = np.ones(ROWS, dtype=bool)
        live[::13] = False
        protocols = ((proximadb.connect_grpc, daemon.grpc_target), (proximadb.connect_rest, daemon.rest_url))
        for connect, target in protocols:
            with connect(target) as client:
                for spec in FILTERS:
                    flt = compile_filter(spec)
                    assert flt is not None
                    matching = {ids[i] for i in np.flatnonzero(flt.mask(metadata) & live)}
                    assert client.count("f", filter=spec) == len(matching), spec
                    for k in (1, 10, 50):
                        hits = client.search("f", vectors[5], k=k, filter=spec)
                        assert len(hits) == min(k, len(matching)), (spec, k)
                        assert {h["id"] for h in hits} <= matching, spec
