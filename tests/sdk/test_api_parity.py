"""One API: the same script gives the same answers in-process and against a daemon (gRPC and REST).

The scenario is written against :class:`proximadb.client_api.ProximaDBAPI` only and runs on
``proximadb.connect_embedded(path)`` and on a real ``proximadb serve`` over both protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
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


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Daemon(tmp_path_factory.mktemp("parity") / "data") as d:
        yield d


@pytest.fixture(scope="module")
def embedded_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    with proximadb.connect_embedded(tmp_path_factory.mktemp("embedded") / "data", fsync="never") as db:
        assert isinstance(db, ProximaDBAPI) and db.protocol == "embedded"
        return scenario(db)


def test_the_embedded_scenario_does_what_it_says(embedded_answers: list[Any]) -> None:
    errors = [a for a in embedded_answers if a[0] == "error"]
    assert [e[1] for e in errors] == [
        "CollectionExistsError", "VectorExistsError", "DimensionMismatchError", "ValidationError",
        "VectorNotFoundError", "CollectionNotFoundError", "CollectionNotFoundError",
    ]
    assert embedded_answers[2] == ("ok", {"count": 12, "ids": [f"v{i:02d}" for i in range(12)]})


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_a_daemon_gives_the_same_answers_as_the_embedded_engine(
    protocol: str, daemon: Daemon, embedded_answers: list[Any]
) -> None:
    connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
    with connect(daemon.grpc_target if protocol == "grpc" else daemon.rest_url) as db:
        assert isinstance(db, ProximaDBAPI) and db.protocol == protocol
        answers = scenario(db)
    for i, (remote, local) in enumerate(zip(answers, embedded_answers, strict=True)):
        assert remote == local, f"step {i} differs"


def test_embedded_client_owns_the_data_directory(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:
        db.create_collection("c", 2)
        db.insert_vectors("c", ids=["a"], vectors=[[1.0, 0.0]])
        assert db.engine.collection("c").count() == 1
        with pytest.raises(ProximaDBError):  # the lock file: one process (and one engine) at a time
            proximadb.connect_embedded(tmp_path / "d")
    with proximadb.connect_embedded(tmp_path / "d", fsync="never") as db:  # closed, so it opens again
        assert db.count("c") == 1
