"""int8 and pq quantization through a real daemon: set with the SDK over gRPC and REST (``quantization=``,
stored as ``index_params.quantization``), changed by an update, searched, kept across a restart; bad settings
get 400 / INVALID_ARGUMENT and change nothing."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.errors import ValidationError


def _rest(daemon: Daemon, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.rest_port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


BAD = [
    {"type": "pq", "m": 5},  # does not divide the dimension 24
    {"type": "pq", "m": 0},
    {"type": "int8", "m": 4},  # pq only
    {"type": "binary", "oversampling": 0.5},
    {"type": "int4"},
    {"type": "int8", "oversampling": 0},
    {"type": "int8", "oversampling": "lots"},
    {"type": "int8", "rescore": "yes"},
    {"type": "int8", "unknown": 1},
    ["int8"],
]


def test_quantization_over_both_protocols_and_a_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, 24)).astype(np.float32) * 3
    rows = (centres[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 24))).astype(np.float32)
    queries = rows[:20] + 0.01
    with Daemon(tmp_path / "data") as daemon:
        # bad settings over REST: 400 with the validation code, nothing created or changed
        for bad in BAD:
            status, body = _rest(daemon, "POST", "/collections", {
                "name": "q", "dimension": 24, "indexing_algorithm": "hnsw", "index_params": {"quantization": bad}})
            assert status == 400, (bad, body)
            assert body["success"] is False and body["error"]["code"] == "validation_error", body
        status, body = _rest(daemon, "GET", "/collections")
        assert status == 200 and body["data"] == [], body

        with proximadb.connect_grpc(daemon.grpc_target) as db:
            for bad in BAD[:3]:
                with pytest.raises(ValidationError):
                    db.create_collection("q", 24, indexing_algorithm="hnsw", quantization=bad)  # type: ignore[arg-type]
            info = db.create_collection("q", 24, distance_metric="euclidean", indexing_algorithm="hnsw",
                                        index_params={"M": 16}, quantization={"type": "int8", "oversampling": 3})
            assert info["index_params"]["quantization"] == {"type": "int8", "rescore": True, "oversampling": 3.0}
            db.insert_vectors("q", ids=[str(i) for i in range(len(rows))], vectors=rows)
            stats = db.wait_for_indexing("q", timeout=120)
            assert stats["status"] == "green"
            hits = [db.search("q", q, k=5) for q in queries]
            assert sum(h[0]["id"] == str(i) for i, h in enumerate(hits)) >= 19

            # pq over gRPC: m is filled in from the dimension (24: 6 sub-vectors of 4)
            info = db.create_collection("p", 24, distance_metric="euclidean", indexing_algorithm="hnsw",
                                        quantization={"type": "pq"})
            assert info["index_params"]["quantization"] == {"type": "pq", "rescore": True, "oversampling": 4.0, "m": 6}

        # a bad update over REST: 400, the setting is unchanged
        for bad in ({"type": "pq", "m": 7}, {"type": "pq", "m": 48}, {"type": "binary", "m": 3}):
            status, body = _rest(daemon, "PATCH", "/collections/q", {"index_params": {"quantization": bad}})
            assert status == 400 and body["error"]["code"] == "validation_error", (bad, body)
            assert "index_params.quantization.m" in body["error"]["message"], body
        status, body = _rest(daemon, "GET", "/collections/q")
        assert body["data"]["index_params"]["quantization"]["type"] == "int8", body
        # int8 -> pq over REST: the segment indexes are rebuilt as pq
        pq = {"type": "pq", "rescore": True, "oversampling": 8.0, "m": 12}
        status, body = _rest(daemon, "PATCH", "/collections/q",
                             {"index_params": {"M": 16, "quantization": {"type": "pq", "m": 12, "oversampling": 8}}})
        assert status == 200 and body["data"]["index_params"]["quantization"] == pq, body
        with proximadb.connect_rest(daemon.rest_url) as db:
            assert db.wait_for_indexing("q", timeout=120)["status"] == "green"
        assert list((tmp_path / "data").rglob("index.hnswpq")) and not list((tmp_path / "data").rglob("index.hnsw8"))
        daemon.stop()
        daemon.start()
        with proximadb.connect_rest(daemon.rest_url) as db:
            assert db.get_collection("q")["index_params"]["quantization"] == pq
            assert db.stats("q")["status"] == "green"
            hits = [db.search("q", q, k=5) for q in queries]
            assert sum(h[0]["id"] == str(i) for i, h in enumerate(hits)) >= 19
            assert db.search("q", queries[0], k=5, oversampling=20.0)[0]["id"] == "0"
