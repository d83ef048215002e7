"""Search answers come in the schema version of the request; v2 hits carry expires_at."""

from __future__ import annotations

from pathlib import Path

from proximadb.codec.framing import decode_frame
from proximadb.codec.payload import decode_payload, encode_payload
from proximadb.service.requests import CreateCollection, InsertRecords
from proximadb.service.unified import UnifiedAvroService
from proximadb.storage.engine import Engine


def _search(version: int) -> bytes:
    datum = {"queries": [[1.0, 0.0, 0.0]], "k": 2, "filter": None, "include_vectors": False,
             "include_metadata": True, "ef": None, "nprobe": None, "exact": False}
    return encode_payload("vector_search", datum, version)


def test_v1_request_gets_a_v1_answer_and_v2_sees_expiry(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        service = UnifiedAvroService(engine)
        service.create_collection(CreateCollection("c", 3, {"distance_metric": "euclidean"}))
        records = [{"id": "a", "vector": [1, 0, 0], "expires_at": 1_900_000_000_000_000},
                   {"id": "b", "vector": [0, 1, 0]}]
        service.insert_records("c", InsertRecords(records, upsert=False))
        v1 = service.search_payload("c", _search(1))
        assert decode_frame(v1)[0] == 1  # an old client can decode it
        hits = decode_payload(v1)[2]["results"][0]
        assert [h["id"] for h in hits] == ["a", "b"] and "expires_at" not in hits[0]
        v2 = service.search_payload("c", _search(2))
        assert decode_frame(v2)[0] == 2
        hits = decode_payload(v2)[2]["results"][0]
        assert hits[0]["expires_at"] == 1_900_000_000_000_000 and hits[1]["expires_at"] is None


def test_expires_at_round_trips_through_the_sdk_on_both_transports(tmp_path: Path) -> None:
    import numpy as np
    from _daemon import Daemon

    import proximadb

    with Daemon(tmp_path / "data") as daemon:
        for connect, target in ((proximadb.connect_grpc, daemon.grpc_target),
                                (proximadb.connect_rest, daemon.rest_url)):
            with connect(target) as client:
                name = f"exp-{client.protocol}"
                client.create_collection(name, 3, distance_metric="euclidean")
                client.insert_vectors(name, [{"id": "a", "vector": [1, 0, 0], "expires_at": 1_900_000_000_000_000},
                                             {"id": "b", "vector": [0, 1, 0]}])
                got = {r["id"]: r for r in client.get_vectors(name, ["a", "b"])}
                assert got["a"]["expires_at"] == 1_900_000_000_000_000 and "expires_at" not in got["b"]
                page, _ = client.scroll(name, limit=10)
                assert [r.get("expires_at") for r in page] == [1_900_000_000_000_000, None]
                hit = client.search(name, np.array([1, 0, 0], np.float32), k=1)[0]
                assert hit["expires_at"] == 1_900_000_000_000_000
