"""expires_at is enforced and a collection default TTL applies, against a real daemon (gRPC and REST) and
in-process. Expiry times are far in the past or future, or a 1 s TTL polled with a generous deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ValidationError, VectorNotFoundError

DIM = 4
PAST = 1_000_000  # 1970
FUTURE = 4_000_000_000_000_000  # 2096


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("ttl") / "data", "--fsync", "never") as d:
        yield d


@pytest.fixture(params=["grpc", "rest", "embedded"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProximaDBAPI]:
    if request.param == "embedded":
        client: ProximaDBAPI = proximadb.connect_embedded(tmp_path / "data", fsync="never")
    else:
        d: Daemon = request.getfixturevalue("daemon")
        grpc = request.param == "grpc"
        client = proximadb.connect_grpc(d.grpc_target) if grpc else proximadb.connect_rest(d.rest_url)
    with client:
        yield client


def _fresh(db: ProximaDBAPI, name: str, **settings: object) -> str:
    name = f"{name}-{db.protocol}"
    if name in [c["name"] for c in db.list_collections()]:
        db.delete_collection(name)
    db.create_collection(name, DIM, distance_metric="euclidean", **settings)  # type: ignore[arg-type]
    return name


def _records(expires: dict[str, int | None]) -> list[dict[str, object]]:
    return [{"id": i, "vector": [float(n + 1)] * DIM, "metadata": {"g": 1}, "expires_at": x}
            for n, (i, x) in enumerate(expires.items())]


def _seen(db: ProximaDBAPI, name: str) -> dict[str, object]:
    ids = ["gone", "kept", "plain"]
    return {
        "search": sorted(h["id"] for h in db.search(name, [1.0] * DIM, k=10)),
        "search_filtered": sorted(h["id"] for h in db.search(name, [1.0] * DIM, k=10, filter={"g": 1})),
        "get": [r["id"] for r in db.get_vectors(name, ids)],
        "scroll": [r["id"] for r in db.scroll(name, limit=10)[0]],
        "count": db.count(name),
        "count_filtered": db.count(name, filter={"g": 1}),
    }


@pytest.mark.parametrize("flushed", [False, True])
def test_expired_rows_are_never_returned(db: ProximaDBAPI, flushed: bool) -> None:
    name = _fresh(db, f"expired{int(flushed)}")
    db.insert_vectors(name, _records({"gone": PAST, "kept": FUTURE, "plain": None}))
    if flushed:
        db.flush(name)
    want = {"search": ["kept", "plain"], "search_filtered": ["kept", "plain"], "get": ["kept", "plain"],
            "scroll": ["kept", "plain"], "count": 2, "count_filtered": 2}
    assert _seen(db, name) == want
    assert db.get_vector(name, "kept")["expires_at"] == FUTURE  # type: ignore[index]
    assert db.delete_vectors(name, ids=["gone"]) == 0
    with pytest.raises(VectorNotFoundError):
        db.update_vector(name, "gone", metadata={"g": 2})
    db.insert_vectors(name, _records({"gone": None}))  # the expired id is free: no VectorExistsError
    assert db.count(name) == 3


def test_default_ttl_expires_rows_written_without_expiry(db: ProximaDBAPI) -> None:
    name = _fresh(db, "ttl", default_ttl_seconds=1)
    assert db.get_collection(name)["default_ttl_seconds"] == 1
    before = time.time_ns() // 1000
    db.insert_vectors(name, _records({"short": None, "long": FUTURE}))
    stamped = db.get_vector(name, "short")
    if stamped is not None:  # read within the second
        assert before + 1_000_000 <= stamped["expires_at"] <= time.time_ns() // 1000 + 1_000_000
    deadline = time.monotonic() + 30
    while db.count(name) != 1:
        assert time.monotonic() < deadline, "a row with a 1 s TTL was still counted after 30 s"
        time.sleep(0.05)
    assert [r["id"] for r in db.scroll(name)[0]] == ["long"]
    assert [h["id"] for h in db.search(name, [1.0] * DIM, k=5)] == ["long"]

    changed = db.update_collection(name, default_ttl_seconds=None)
    assert changed["default_ttl_seconds"] is None and db.get_collection(name)["default_ttl_seconds"] is None
    db.insert_vectors(name, _records({"forever": None}))
    assert "expires_at" not in db.get_vector(name, "forever")  # type: ignore[operator]
    assert db.update_collection(name, default_ttl_seconds=3600)["default_ttl_seconds"] == 3600


@pytest.mark.parametrize("bad", [0, -1, 1.5, "60", True])
def test_a_bad_default_ttl_is_refused_and_changes_nothing(db: ProximaDBAPI, bad: object) -> None:
    name = f"badttl-{db.protocol}"
    with pytest.raises(ValidationError, match="default_ttl_seconds"):
        db.create_collection(name, DIM, default_ttl_seconds=bad)  # type: ignore[arg-type]
    assert name not in [c["name"] for c in db.list_collections()]
    name = _fresh(db, "badttl-update", default_ttl_seconds=7)
    with pytest.raises(ValidationError, match="default_ttl_seconds"):
        db.update_collection(name, default_ttl_seconds=bad)
    assert db.get_collection(name)["default_ttl_seconds"] == 7


def test_the_ttl_survives_a_restart(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", "--fsync", "always").start()
    try:
        with proximadb.connect_grpc(daemon.grpc_target) as db:
            db.create_collection("c", DIM, default_ttl_seconds=3600)
            db.insert_vectors("c", _records({"a": None}))
            expires = db.get_vector("c", "a")["expires_at"]  # type: ignore[index]
        daemon.kill9()  # replayed from the WAL
        daemon.start()
        with proximadb.connect_rest(daemon.rest_url) as db:
            assert db.get_collection("c")["default_ttl_seconds"] == 3600
            assert db.get_vector("c", "a")["expires_at"] == expires  # type: ignore[index]
    finally:
        daemon.stop()
    assert np.isfinite(expires)
