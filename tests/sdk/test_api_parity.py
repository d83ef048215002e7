"""One API: the same script gives the same answers in-process and against a daemon (gRPC and REST).

The scenario (tests/_api_scenario.py) is written against :class:`proximadb.client_api.ProximaDBAPI` only and runs on
``proximadb.connect_embedded(path)`` and on a real ``proximadb serve`` over both protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _api_scenario import scenario
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ProximaDBError


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


def test_embedded_hits_are_what_grpc_hands_over_and_never_the_engines_own(tmp_path: Path) -> None:
    """The embedded client's JSON-bodied searches skip the proto trip (embedded._as_sent) but give what it gives:
    same keys in the same order, same types (metadata values, float scores, float32 vectors); and a hit's
    metadata is a copy: changing it changes nothing stored."""
    import numpy as np

    from proximadb.api.grpc.convert import hits_from_proto, hits_to_proto
    from proximadb.embedded import _as_sent

    hits = [{"id": "a", "score": np.float32(0.1), "metadata": {"s": "x", "n": 3, "f": 2.5, "b": True, "z": None,
                                                                "l": ["p", "q"], "big": 2**62, "neg": -0.0}},
            {"id": "b", "score": 1 / 3, "distance": 2 / 3, "metadata": {}, "expires_at": np.int64(17)},
            {"id": "c", "score": 5, "vector": np.arange(3, dtype=np.float64) / 3}]
    for mine, wire in zip(_as_sent(hits), hits_from_proto(hits_to_proto(hits)), strict=True):
        assert list(mine) == list(wire)
        for key, value in mine.items():
            if key == "vector":
                assert value.dtype == wire[key].dtype and (value == wire[key]).all()
            else:
                assert value == wire[key] and type(value) is type(wire[key])
                if key == "metadata":
                    assert {k: type(v) for k, v in value.items()} == {k: type(v) for k, v in wire[key].items()}
    with proximadb.connect_embedded(tmp_path / "data", fsync="never") as db:
        db.create_collection("c", 2)
        db.insert_vectors("c", [{"id": "a", "vector": [1, 0], "metadata": {"document": "zebra", "tags": ["x"]}}])
        (hit,) = db.search_text("c", "zebra")
        hit["metadata"]["document"] = "changed"
        hit["metadata"]["tags"].append("y")
        assert db.get_vector("c", "a")["metadata"] == {"document": "zebra", "tags": ["x"]}
        assert db.search_text("c", "zebra")[0]["metadata"] == {"document": "zebra", "tags": ["x"]}
