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
