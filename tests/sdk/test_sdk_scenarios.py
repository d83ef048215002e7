"""One scenario suite, run against a real daemon over both gRPC and REST.

The same calls must give the same answers whichever transport carries them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb import errors
from proximadb.sdk import ProximaDBClient

DIM = 16
_names = itertools.count()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("scenarios") / "data") as d:
        yield d


@pytest.fixture(params=["grpc", "rest"])
def client(request: pytest.FixtureRequest, daemon: Daemon) -> Iterator[ProximaDBClient]:
    if request.param == "grpc":
        c = proximadb.connect_grpc(daemon.grpc_target)
    else:
        c = proximadb.connect_rest(daemon.rest_url)
    assert c.protocol == request.param
    with c:
        yield c


@pytest.fixture
def collection(client: ProximaDBClient) -> str:
    name = f"s{next(_names)}-{client.protocol}"
    client.create_collection(name, DIM, distance_metric="euclidean", description="scenario")
    return name


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_health_and_negotiation(client: ProximaDBClient) -> None:
    health = client.health()
    assert health["status"] == "ok" and health["version"] == proximadb.__version__
    assert client.schema_version in health["schema_versions"]


def test_collection_lifecycle_and_errors(client: ProximaDBClient) -> None:
    name = f"life-{client.protocol}"
    info = client.create_collection(name, DIM, distance_metric="dot_product", index_params={})
    assert info["dimension"] == DIM and info["distance_metric"] == "dot_product"
    assert client.get_collection(name)["uuid"] == info["uuid"]
    assert name in [c["name"] for c in client.list_collections()]
    assert client.update_collection(name, description="changed")["description"] == "changed"
    with pytest.raises(errors.CollectionExistsError):
        client.create_collection(name, DIM)
    with pytest.raises(errors.ValidationError):
        client.update_collection(name, dimension=3)
    client.delete_collection(name)
    with pytest.raises(errors.CollectionNotFoundError):
        client.get_collection(name)
    for hostile in ("../x", "a/b", "..", "x" * 300):
        with pytest.raises((errors.ValidationError, errors.NotFoundError)):
            client.create_collection(hostile, DIM)
    with pytest.raises(errors.ValidationError):
        client.create_collection("bad-dim", 0)


def test_records_round_trip(client: ProximaDBClient, collection: str) -> None:
    vecs = _vecs(30)
    meta = [{"i": i, "even": i % 2 == 0, "tags": ["x", str(i)], "score": i / 3} for i in range(30)]
    result = client.insert_vectors(collection, ids=[f"r{i:02d}" for i in range(30)], vectors=vecs,
                                   metadatas=meta, batch_size=7)
    assert result["count"] == 30
    generated = client.insert_vector(collection, vecs[0], metadata={"auto": True})
    assert isinstance(generated, str) and len(generated) == 36
    client.insert_vectors(collection, [{"id": "dict-1", "vector": vecs[1].tolist(), "metadata": {"k": "v"}}])
    rec = client.get_vector(collection, "r05")
    assert rec is not None and rec["metadata"] == meta[5] and rec["timestamp"] > 0
    np.testing.assert_array_equal(rec["vector"], vecs[5])
    assert client.get_vector(collection, "missing") is None
    assert [r["id"] for r in client.get_vectors(collection, ["r01", "nope", "r00"])] == ["r01", "r00"]
    assert "vector" not in client.get_vectors(collection, ["r01"], include_vectors=False)[0]
    assert client.count(collection) == 32
    assert client.count(collection, filter={"even": True}) == 15

    with pytest.raises(errors.VectorExistsError):
        client.insert_vectors(collection, ids=["new", "r01"], vectors=_vecs(2, 1))
    assert client.get_vector(collection, "new") is None  # all or nothing
    client.upsert_vectors(collection, ids=["r01"], vectors=_vecs(1, 2), metadatas=[{"v": 2}])
    assert client.get_vector(collection, "r01")["metadata"] == {"v": 2}

    client.update_vector(collection, "r02", metadata={"i": None, "extra": "yes"})
    assert client.get_vector(collection, "r02")["metadata"] == {**{k: v for k, v in meta[2].items() if k != "i"},
                                                                "extra": "yes"}
    client.update_vector(collection, "r03", vector=np.ones(DIM, np.float32))
    r3 = client.get_vector(collection, "r03")
    np.testing.assert_array_equal(r3["vector"], np.ones(DIM))
    assert r3["metadata"] == meta[3]
    with pytest.raises(errors.VectorNotFoundError):
        client.update_vector(collection, "ghost", metadata={"a": 1})

    assert client.delete_vector(collection, "r04") is True
    assert client.delete_vector(collection, "r04") is False
    assert client.delete_vectors(collection, ["r06", "r07", "zzz"]) == 2
    assert client.delete_vectors(collection, filter={"i": {"$gte": 25}}) == 5
    assert client.count(collection) == 32 - 1 - 2 - 5

    seen, cursor = [], None
    while True:
        page, cursor = client.scroll(collection, limit=6, cursor=cursor)
        seen.extend(r["id"] for r in page)
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == client.count(collection)


def test_search_exact_filtered_and_batch(client: ProximaDBClient, collection: str) -> None:
    base = _vecs(500, 3)
    client.insert_vectors(collection, ids=[f"p{i:03d}" for i in range(500)], vectors=base,
                          metadatas=[{"bucket": i % 50} for i in range(500)])
    queries = _vecs(4, 9)
    for q in queries:
        hits = client.search(collection, q, k=5)
        d = np.sqrt(((base - q) ** 2).sum(axis=1))
        assert [h["id"] for h in hits] == [f"p{j:03d}" for j in np.argsort(d)[:5]]
        np.testing.assert_allclose([h["distance"] for h in hits], np.sort(d)[:5], rtol=1e-4)
        assert hits[0]["metadata"]["bucket"] == int(np.argmin(d)) % 50
    filtered = client.search(collection, queries[0], k=10, filter={"bucket": 7}, include_vectors=True)
    assert len(filtered) == 10 and all(h["metadata"]["bucket"] == 7 for h in filtered)
    idx = int(filtered[0]["id"][1:])
    np.testing.assert_array_equal(filtered[0]["vector"], base[idx])
    no_meta = client.search(collection, queries[0], k=3, include_metadata=False)
    assert "metadata" not in no_meta[0]
    batch = client.search_batch(collection, queries, k=5)
    assert [[h["id"] for h in hits] for hits in batch] == [
        [h["id"] for h in client.search(collection, q, k=5)] for q in queries
    ]


def test_bad_input_is_refused_and_changes_nothing(client: ProximaDBClient, collection: str) -> None:
    client.insert_vectors(collection, ids=["keep"], vectors=_vecs(1))
    bad_calls = [
        (errors.DimensionMismatchError, lambda: client.insert_vectors(collection, ids=["x"], vectors=_vecs(1)[:, :5])),
        (errors.InvalidVectorError,
         lambda: client.insert_vectors(collection, ids=["x"], vectors=np.full((1, DIM), np.nan, np.float32))),
        (errors.ValidationError, lambda: client.insert_vectors(collection, ids=["x", "x"], vectors=_vecs(2))),
        (errors.DimensionMismatchError, lambda: client.search(collection, np.ones(3), k=1)),
        (errors.ValidationError, lambda: client.search(collection, np.ones(DIM), k=0)),
        (errors.InvalidFilterError, lambda: client.search(collection, np.ones(DIM), k=1, filter={"a": {"$nope": 1}})),
        (errors.CollectionNotFoundError, lambda: client.count("no-such-collection")),
        (errors.CollectionNotFoundError, lambda: client.insert_vectors("no-such", ids=["x"], vectors=_vecs(1))),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert client.count(collection) == 1
    assert client.health()["status"] == "ok"


def test_same_answers_over_both_protocols(daemon: Daemon) -> None:
    with proximadb.connect_grpc(daemon.grpc_target) as g, proximadb.connect_rest(daemon.rest_url) as r:
        g.create_collection("both", DIM)
        g.insert_vectors("both", ids=[f"b{i}" for i in range(100)], vectors=_vecs(100, 5),
                         metadatas=[{"i": i} for i in range(100)])
        q = _vecs(1, 6)[0]
        assert g.search("both", q, k=10, filter={"i": {"$lt": 50}}) == r.search("both", q, k=10,
                                                                                 filter={"i": {"$lt": 50}})
        assert g.scroll("both", limit=20) == r.scroll("both", limit=20)
        assert g.count("both", filter={"i": {"$in": [1, 2, 3]}}) == r.count("both", filter={"i": {"$in": [1, 2, 3]}})
        assert g.get_collection("both") == r.get_collection("both")


def test_connect_picks_grpc_and_rest_forced(daemon: Daemon, tmp_path: Path) -> None:
    with proximadb.connect(daemon.rest_url) as c:
        assert c.protocol == "grpc"
    with proximadb.connect(f"grpc://{daemon.grpc_target}") as c:
        assert c.protocol == "grpc"
    with proximadb.connect_rest(daemon.rest_url) as c:
        assert c.protocol == "rest"
    with pytest.raises(errors.UnavailableError):
        proximadb.connect_grpc("127.0.0.1:1", timeout=1)
    with pytest.raises(errors.UnavailableError):
        proximadb.connect_rest("http://127.0.0.1:1", timeout=1)


def test_stats_and_compaction_report_are_the_same_dict_over_both_protocols(daemon: Daemon) -> None:
    """gRPC carries them as typed messages, REST as JSON: the SDK gives the same dicts, key order included."""
    with proximadb.connect_grpc(daemon.grpc_target) as g, proximadb.connect_rest(daemon.rest_url) as r:
        g.create_collection("same-dicts", DIM)
        g.insert_vectors("same-dicts", ids=[f"d{i}" for i in range(7)], vectors=_vecs(7, 30))
        over_grpc, over_rest = g.stats("same-dicts"), r.stats("same-dicts")
        assert over_grpc == over_rest and list(over_grpc) == list(over_rest)
        assert over_grpc["last_flush_error"] is None and over_grpc["vectors"] == 7
        reports = [g.compact("same-dicts"), r.compact("same-dicts")]
        assert [list(rep) for rep in reports] == [list(reports[1])] * 2
        assert all(isinstance(rep.pop("seconds"), float) for rep in reports)
        assert reports[0] == reports[1] and reports[0]["collection"] == "same-dicts"


def test_online_compaction_and_stats(client: ProximaDBClient, collection: str) -> None:
    # The merge itself is covered by tests/storage/test_compaction.py and tests/crash/test_compaction_crash.py;
    # here: the API path on both transports.
    client.insert_vectors(collection, ids=[f"c{i}" for i in range(50)], vectors=_vecs(50, 20))
    client.delete_vectors(collection, [f"c{i}" for i in range(25)])
    stats = client.stats(collection)
    assert stats["vectors"] == 25 and stats["memtable_rows"] == 25 and stats["name"] == collection
    report = client.compact(collection)
    assert report["collection"] == collection
    assert report["segments_before"] == stats["segments"] == report["segments_after"]  # memtable only
    assert client.count(collection) == 25
    with pytest.raises(errors.CollectionNotFoundError):
        client.compact("no-such-collection")
