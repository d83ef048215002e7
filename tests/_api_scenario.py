"""The one-API scenario: a script over every client call, whose answers (and typed errors) are compared.

Written against :class:`proximadb.client_api.ProximaDBAPI` only; tests/sdk/test_api_parity.py runs it
on the embedded engine and a daemon, tests/sdk/test_async_client.py on the asyncio client too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ProximaDBError

DIM = 4
_VOLATILE = {"timestamp", "uuid", "created_at", "updated_at"}


def _plain(value: Any) -> Any:
    """Comparable values: numpy arrays as lists; times and uuids (which differ per run) left out."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", _plain(call()))
    except ProximaDBError as exc:
        return ("error", type(exc).__name__, exc.code)


def scenario(db: ProximaDBAPI) -> list[Any]:
    vectors = np.random.default_rng(7).standard_normal((12, DIM)).astype(np.float32)
    ids = [f"v{i:02d}" for i in range(12)]
    out: list[Any] = []

    def step(call: Callable[[], Any]) -> None:
        out.append(_outcome(call))

    step(lambda: db.create_collection("parity", DIM, distance_metric="euclidean", description="p",
                                      filterable_metadata_fields=["g"]))
    step(lambda: db.create_collection("parity", DIM))
    step(lambda: db.insert_vectors("parity", ids=ids, vectors=vectors, metadatas=[{"g": i % 3} for i in range(12)]))
    step(lambda: db.insert_vector("parity", vectors[0] * 2, id="x", metadata={"g": 9}))
    step(lambda: db.insert_vectors("parity", ids=["v01"], vectors=vectors[:1]))  # exists already
    step(lambda: db.insert_vectors("parity", ids=["bad"], vectors=np.ones((1, DIM + 1))))  # wrong dimension
    step(lambda: db.search("parity", vectors[3], k=3))
    step(lambda: db.search("parity", vectors[3], k=5, filter={"g": 1}, include_vectors=True))
    step(lambda: db.search_batch("parity", vectors[:2], k=2, filter='{"g": {"$in": [0, 2]}}', exact=True))
    step(lambda: db.search("parity", vectors[3], k=0))
    step(lambda: db.update_vector("parity", "v01", metadata={"tag": "t"}))
    step(lambda: db.update_vector("parity", "v02", vector=vectors[5], metadata={"g": 7}, replace=True))
    step(lambda: db.update_vector("parity", "nope", metadata={"tag": "t"}))
    step(lambda: db.get_vectors("parity", ["v02", "missing", "v01"]))
    step(lambda: db.get_vector("parity", "v03", include_vector=False))
    step(lambda: db.get_vector("parity", "missing"))
    step(lambda: db.scroll("parity", limit=3, filter={"g": 0}))
    step(lambda: db.scroll("parity", limit=3, cursor="v05", include_vectors=True))
    step(lambda: db.count("parity", filter={"g": 1}))
    step(lambda: db.delete_vectors("parity", ids=["v00", "nope"]))
    step(lambda: db.delete_vectors("parity", filter={"g": 2}))
    step(lambda: db.delete_vector("parity", "v00"))
    step(lambda: db.upsert_vectors("parity", [{"id": "x", "vector": vectors[1], "metadata": {"g": 1}}]))
    step(lambda: db.count("parity"))
    step(lambda: db.update_collection("parity", description="changed"))
    step(lambda: [c["name"] for c in db.list_collections()])
    step(lambda: db.get_collection("parity")["vector_count"])
    step(lambda: db.search("absent", vectors[0]))
    step(lambda: db.delete_collection("parity"))
    step(lambda: db.count("parity"))
    return out
