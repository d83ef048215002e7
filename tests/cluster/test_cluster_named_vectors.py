"""Named dense vectors in cluster mode (issue 12, "Named vectors"; docs/architecture.md), end to end: a
dev-cluster of three NATS servers and three daemons, a collection declaring two named vectors over 2 shards x 2
replicas (so every node holds some shards and reads others from a peer).

- the declaration is in the shard map: every node describes it, every replica is made with it;
- inserts through the SDK (REST: columns; gRPC: per record) are split by shard with their named vectors;
- search and search_batch ``using=`` each name, on every node, equal a numpy brute force with that name's
  metric; recommend, search_groups and hybrid_search ``using=`` equal the embedded engine over the same rows;
- get and scroll give the named vectors back from a node that holds no replica of the record's shard;
- bad inserts and searches are refused with one node's typed errors, and nothing is written;
- a wiped node's replicas, rebuilt from a peer's snapshot (the logs keep nothing below every replica's
  checkpoint: PROXIMADB_CLUSTER_LOG_RETAIN=0) or from the log, hold the named vectors.

And, without servers: a replica snapshot (proximadb/cluster/snapshot.py) carries the segments' ``named/`` files.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _api_scenario import _plain
from _devcluster import DevCluster
from _support import wait_until

import proximadb
from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.nats_servers import NatsCluster
from proximadb.cluster.node import ClusterNode
from proximadb.cluster.placement import shard_of
from proximadb.cluster.snapshot import receive_snapshot, snapshot_stream
from proximadb.errors import (
    CollectionConfigMismatchError,
    DimensionMismatchError,
    InvalidVectorError,
    ProximaDBError,
    ValidationError,
)
from proximadb.storage.catalog import Catalog
from proximadb.storage.engine import Engine

NAME = "nv"
DIM = 8
ROWS = 200
SHARDS = 2
WAIT = 90.0
DECLARED = {"title": {"dimension": 6, "distance_metric": "cosine"},
            "body": {"dimension": 4, "distance_metric": "dot_product"}}
METRICS = {"": "euclidean", **{name: d["distance_metric"] for name, d in DECLARED.items()}}


def _data() -> tuple[list[str], np.ndarray, list[dict[str, Any]], dict[str, np.ndarray]]:
    rng = np.random.default_rng(12)
    ids = [f"r{i:03d}" for i in range(ROWS)]
    vectors = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    metadata = [{"topic": f"t{i % 5}", "even": i % 2 == 0, "document": f"word{i % 7} filler{i}"} for i in range(ROWS)]
    named = {name: rng.normal(size=(ROWS, d["dimension"])).astype(np.float32) for name, d in DECLARED.items()}
    return ids, vectors, metadata, named


IDS, VECTORS, METADATA, NAMED = _data()


def stored(name: str, rows: np.ndarray) -> np.ndarray:
    """Named vectors as get gives them back: float32, unit length under cosine (stored normalised)."""
    if METRICS[name] == "cosine":
        return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return rows


def brute(query: np.ndarray, k: int, using: str | None, keep: np.ndarray | None = None) -> list[str]:
    """The top-k ids by the metric of ``using`` (None: the default vector's), best first."""
    rows = (VECTORS if using is None else NAMED[using]).astype(np.float64)
    q = np.asarray(query, np.float64)
    metric = METRICS[using or ""]
    if metric == "euclidean":
        key = np.linalg.norm(rows - q, axis=1)
    elif metric == "cosine":
        key = -(rows @ q) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
    else:
        key = -(rows @ q)
    if keep is not None:
        key = np.where(keep, key, np.inf)
    order = np.argsort(key, kind="stable")[:k]
    return [IDS[i] for i in order if keep is None or keep[i]]


def load(db: Any, **placement: Any) -> dict[str, Any]:
    """Create the collection and insert its rows: the first half as columns, the second as records."""
    info = db.create_collection(NAME, DIM, distance_metric="euclidean", vectors=DECLARED, **placement)
    half = ROWS // 2
    db.insert_vectors(NAME, ids=IDS[:half], vectors=VECTORS[:half], metadatas=METADATA[:half],
                      named_vectors={name: col[:half] for name, col in NAMED.items()})
    records = [{"id": IDS[i], "vector": VECTORS[i].tolist(), "metadata": METADATA[i],
                "named_vectors": {name: NAMED[name][i].tolist() for name in DECLARED}} for i in range(half, ROWS)]
    db.insert_vectors(NAME, records, batch_size=25)  # several log entries per shard
    return info  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path_factory.mktemp("devcluster"), PROXIMADB_CLUSTER_LOG_RETAIN="0")
    try:
        rest, grpc = running.rest(0), running.grpc(1)
        info = rest.create_collection(NAME, DIM, distance_metric="euclidean", vectors=DECLARED, shards=SHARDS,
                                      replication_factor=2)
        assert info["vectors"] == DECLARED
        half = ROWS // 2
        rest.insert_vectors(NAME, ids=IDS[:half], vectors=VECTORS[:half], metadatas=METADATA[:half],
                            named_vectors={name: col[:half] for name, col in NAMED.items()})  # columns, REST
        records = [{"id": IDS[i], "vector": VECTORS[i].tolist(), "metadata": METADATA[i],
                    "named_vectors": {name: NAMED[name][i].tolist() for name in DECLARED}} for i in range(half, ROWS)]
        grpc.insert_vectors(NAME, records, batch_size=25)  # records, gRPC: several log entries per shard
        for i in range(3):
            client = running.rest(i)
            wait_until(f"node {i} counts every row", lambda c=client: c.count(NAME) == ROWS, WAIT)
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with proximadb.connect_embedded(tmp_path_factory.mktemp("embedded"), fsync="never") as db:
        load(db)
        yield db


def clients(cluster: DevCluster) -> list[tuple[str, Any]]:
    return [*((f"rest n{i + 1}", cluster.rest(i)) for i in range(3)), *((f"grpc n{i + 1}", cluster.grpc(i))
                                                                        for i in range(3))]


def test_every_node_describes_the_declared_vectors(cluster: DevCluster) -> None:
    for label, client in clients(cluster):
        info = client.get_collection(NAME)
        assert info["vectors"] == DECLARED, label
        assert info["shards"] == SHARDS and all(len(r) == 2 for r in info["placement"]), label
        assert {c["name"]: c for c in client.list_collections()}[NAME]["vectors"] == DECLARED, label
    client = cluster.rest(1)
    assert client.update_collection(NAME, vectors=DECLARED)["vectors"] == DECLARED  # unchanged: accepted
    with pytest.raises(ValidationError, match="cannot be"):
        client.update_collection(NAME, vectors={**DECLARED, "extra": {"dimension": 2}})
    assert cluster.grpc(2).get_collection(NAME)["vectors"] == DECLARED
    again = client.create_collection(NAME, DIM, distance_metric="euclidean", vectors=DECLARED, exist_ok=True)
    assert again["vectors"] == DECLARED
    with pytest.raises(CollectionConfigMismatchError):
        client.create_collection(NAME, DIM, distance_metric="euclidean", vectors={"title": {"dimension": 6}},
                                 exist_ok=True)
    for bad in ({"a b": {"dimension": 3}}, {"x": {"dimension": 0}}, {"x": {"dimension": 3, "distance_metric": "l7"}},
                {"x": {"dimension": 3}, "X": {"dimension": 3}}, {"x": {"dimension": 1 << 20}}):
        for maker in (cluster.rest(2), cluster.grpc(0)):
            with pytest.raises(ValidationError):
                maker.create_collection("nv_bad", DIM, vectors=bad, shards=SHARDS)
    assert "nv_bad" not in {c["name"] for c in client.list_collections()}


def test_per_name_index_settings_are_in_the_spec_and_an_update_reaches_every_replica(cluster: DevCluster) -> None:
    """A name's own index and quantization settings go into the map's spec (every node describes them, every
    replica is made with them); an update of them reaches every node's replicas."""
    declared = {"q": {"dimension": 6, "indexing_algorithm": "hnsw", "quantization": {"type": "int8"}},
                "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "flat"}}
    stored = {"q": {"dimension": 6, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
                    "index_params": {"quantization": {"type": "int8", "rescore": True, "oversampling": 2.0}}},
              "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "flat", "index_params": {}}}
    info = cluster.grpc(0).create_collection("nv_idx", DIM, indexing_algorithm="hnsw", vectors=declared,
                                             shards=SHARDS, replication_factor=2)
    assert info["vectors"] == stored
    for label, client in clients(cluster):
        assert client.get_collection("nv_idx")["vectors"] == stored, label
    with pytest.raises(ValidationError, match=r"vectors\['f'\]"):
        cluster.rest(1).update_collection("nv_idx", vectors={**declared, "f": {**declared["f"],
                                                                            "quantization": {"type": "int8"}}})
    changed = {**stored, "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "ivf",
                               "index_params": {"nlist": 2}}}
    assert cluster.rest(1).update_collection("nv_idx", vectors=changed)["vectors"] == changed
    for label, client in clients(cluster):
        assert client.get_collection("nv_idx")["vectors"] == changed, label

    uuid = info["uuid"]

    def replica_settings() -> list[Any]:  # every node's local replicas, from its catalog on disk
        return [(cfg.index_settings("q"), cfg.index_settings("f")) for path in cluster.directory.rglob("catalog.pxdb")
                for cfg in Catalog(path.parent).collections.values() if cfg.name.startswith(f"{uuid}.s")]

    made = replica_settings()
    assert len(made) == SHARDS * 2 and all(q[0] == "hnsw" and q[1]["quantization"]["type"] == "int8"
                                           for q, _ in made)
    wait_until("every replica has the new settings of f",
               lambda: all(f == ("ivf", {"nlist": 2}) for _, f in replica_settings()), WAIT)
    cluster.rest(2).delete_collection("nv_idx")


def test_search_using_each_name_on_every_node_equals_numpy(cluster: DevCluster) -> None:
    rng = np.random.default_rng(5)
    even = np.array([m["even"] for m in METADATA])
    for label, client in clients(cluster):
        for using in (*DECLARED, None):
            dim = DIM if using is None else DECLARED[using]["dimension"]
            queries = rng.normal(size=(3, dim)).astype(np.float32)
            options = {} if using is None else {"using": using}
            got = [h["id"] for h in client.search(NAME, queries[0], k=10, **options)]
            assert got == brute(queries[0], 10, using), (label, using)
            batch = client.search_batch(NAME, queries, k=7, filter={"even": True}, **options)
            for q, hits in zip(queries, batch, strict=True):
                assert [h["id"] for h in hits] == brute(q, 7, using, even), (label, using)
            deep = client.search(NAME, queries[1], k=ROWS, **options)  # every row of both shards, in order
            assert [h["id"] for h in deep] == brute(queries[1], ROWS, using), (label, using)
        hits = client.search(NAME, rng.normal(size=6), k=30, using="title", include_vectors=True)
        for hit in hits:  # rows of both shards, local and a peer's: each with every named vector
            i = IDS.index(hit["id"])
            np.testing.assert_array_equal(np.asarray(hit["vector"], np.float32), VECTORS[i])
            for name in DECLARED:
                np.testing.assert_allclose(np.asarray(hit["named_vectors"][name], np.float32),
                                           stored(name, NAMED[name][i]), rtol=1e-6, atol=1e-6)


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", _plain(call()))
    except ProximaDBError as exc:
        return ("error", type(exc).__name__, exc.code)


def same(got: Any, want: Any, where: str) -> None:
    """Equal, floats within tolerance (the same numbers, summed in other orders)."""
    if isinstance(want, float) or isinstance(got, float):
        assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} != {want}"
        for key in want:
            same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def query_calls() -> list[tuple[str, Callable[[Any], Any]]]:
    t, b = NAMED["title"][3] + np.float32(0.1), NAMED["body"][9] * np.float32(0.5)
    return [
        ("recommend title ids", lambda c: c.recommend(NAME, ["r003", "r050"], ["r120"], k=8, using="title")),
        ("recommend body vectors best_score", lambda c: c.recommend(NAME, [b], [NAMED["body"][4]], k=6,
                                                                    strategy="best_score", using="body")),
        ("recommend title filtered", lambda c: c.recommend(NAME, ["r007"], k=5, filter={"even": False},
                                                           using="title")),
        ("groups title", lambda c: c.search_groups(NAME, t, "topic", limit=3, group_size=2, using="title")),
        ("groups body", lambda c: c.search_groups(NAME, b, "topic", limit=5, group_size=3, using="body")),
        ("recommend with vectors", lambda c: c.recommend(NAME, ["r011"], k=4, using="body", include_vectors=True)),
        ("groups with vectors", lambda c: c.search_groups(NAME, t, "topic", limit=2, group_size=2, using="title",
                                                          include_vectors=True)),
        ("hybrid title + text", lambda c: c.hybrid_search(NAME, t, "word3", k=10, using="title")),
        ("hybrid body dbsf", lambda c: c.hybrid_search(NAME, b, "word1 word2", k=6, fusion="dbsf", using="body")),
        ("recommend unknown name", lambda c: c.recommend(NAME, ["r003"], k=3, using="nope")),
        ("recommend unknown id", lambda c: c.recommend(NAME, ["zzz"], k=3, using="title")),
        ("groups wrong dimension", lambda c: c.search_groups(NAME, [1.0, 2.0], "topic", using="body")),
        ("hybrid unknown name", lambda c: c.hybrid_search(NAME, t, "word3", k=3, using="nope")),
    ]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_recommend_groups_and_hybrid_using_answer_as_one_node(cluster: DevCluster, embedded: Any,
                                                              protocol: str) -> None:
    nodes = [getattr(cluster, protocol)(i) for i in range(3)]
    for label, call in query_calls():
        want = outcome(lambda call=call: call(embedded))
        for i, client in enumerate(nodes):
            same(outcome(lambda call=call, client=client: call(client)), want, f"{label} on n{i + 1}")
    assert outcome(lambda: embedded.recommend(NAME, ["r003"], k=3, using="title"))[0] == "ok"


def _holders(cluster: DevCluster) -> list[list[str]]:
    return [list(r) for r in cluster.rest(0).get_collection(NAME)["placement"]]


def test_get_and_scroll_give_named_vectors_from_a_node_without_the_shard(cluster: DevCluster) -> None:
    placement = _holders(cluster)
    node_ids = [n["id"] for n in cluster.doc["nodes"]]
    checked = 0
    for shard in range(SHARDS):
        outside = [i for i, node in enumerate(node_ids) if node not in placement[shard]]
        assert outside, placement  # 3 nodes, 2 replicas: one node holds no replica of each shard
        rows = [i for i in range(ROWS) if shard_of(IDS[i], SHARDS) == shard][:15]
        for client in (cluster.rest(outside[0]), cluster.grpc(outside[0])):
            got = client.get_vectors(NAME, [IDS[i] for i in rows])
            assert [r["id"] for r in got] == [IDS[i] for i in rows]
            for i, record in zip(rows, got, strict=True):
                np.testing.assert_array_equal(np.asarray(record["vector"], np.float32), VECTORS[i])
                assert set(record["named_vectors"]) == set(DECLARED)
                for name in DECLARED:
                    np.testing.assert_allclose(np.asarray(record["named_vectors"][name], np.float32),
                                               stored(name, NAMED[name][i]), rtol=1e-6, atol=1e-6)
                checked += 1
            bare = client.get_vectors(NAME, [IDS[rows[0]]], include_vectors=False)
            assert "named_vectors" not in bare[0] or not bare[0]["named_vectors"]
    assert checked == 4 * 15
    client = cluster.rest(2)
    records, cursor = [], None
    while True:
        page, cursor = client.scroll(NAME, limit=70, cursor=cursor, include_vectors=True)
        records.extend(page)
        if cursor is None:
            break
    assert [r["id"] for r in records] == IDS
    for name in DECLARED:
        np.testing.assert_allclose(np.stack([np.asarray(r["named_vectors"][name], np.float32) for r in records]),
                                   stored(name, NAMED[name]), rtol=1e-6, atol=1e-6)


GOOD = {name: NAMED[name][0].tolist() for name in DECLARED}
BAD_INSERTS: list[tuple[str, dict[str, Any], type[ProximaDBError]]] = [
    ("a name missing", {"title": GOOD["title"]}, InvalidVectorError),
    ("an undeclared name", {**GOOD, "summary": [1.0]}, InvalidVectorError),
    ("a wrong dimension", {**GOOD, "body": [1.0, 2.0]}, DimensionMismatchError),
    ("not finite", {**GOOD, "body": [1.0, float("nan"), 0.0, 0.0]}, InvalidVectorError),
    ("a zero cosine vector", {**GOOD, "title": [0.0] * 6}, InvalidVectorError),
]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_bad_named_vectors_are_refused_and_nothing_is_written(cluster: DevCluster, embedded: Any,
                                                               protocol: str) -> None:
    client = getattr(cluster, protocol)(1)
    for label, named, error in BAD_INSERTS:
        records = [{"id": f"bad{j}", "vector": [0.5] * DIM, "named_vectors": GOOD} for j in range(6)]
        records[4] = {**records[4], "named_vectors": named}  # one bad record among good ones on both shards
        with pytest.raises(error):
            client.insert_vectors(NAME, records)
        want = outcome(lambda records=records: embedded.insert_vectors(NAME, records))
        got = outcome(lambda records=records: client.insert_vectors(NAME, records))
        assert got == want and got[0] == "error", (label, got, want)
    bad_searches: list[tuple[Callable[[Any], Any], type[ProximaDBError], str]] = [
        (lambda c: c.search(NAME, [1.0] * 6, 3, using="nope"), ValidationError, "nope"),
        (lambda c: c.search(NAME, [1.0] * 4, 3, using="title"), DimensionMismatchError, "title"),
        (lambda c: c.search_batch(NAME, [[1.0] * DIM], 3, using="body"), DimensionMismatchError, "body"),
    ]
    for call, error, word in bad_searches:
        with pytest.raises(error) as caught:
            call(client)
        assert word in str(caught.value) and f"{NAME}.s" not in str(caught.value)
        assert outcome(lambda call=call: call(client)) == outcome(lambda call=call: call(embedded))
    for i in range(3):
        assert cluster.rest(i).count(NAME, consistency="strong") == ROWS
        assert cluster.rest(i).get_vectors(NAME, [f"bad{j}" for j in range(6)], consistency="strong") == []


def test_upserts_updates_and_deletes_keep_named_vectors_on_every_node(cluster: DevCluster) -> None:
    """Another collection (so the module's rows stay as loaded): upserts replace named vectors, a metadata
    update of a flushed row and a vector update (which re-sends the record's named vectors) keep them, deletes
    remove rows, every replica flushes and compacts; every node then gives the model's named vectors and
    searches them."""
    name, dim = "nvu", 3
    rng = np.random.default_rng(31)
    ids = [f"u{i:02d}" for i in range(30)]
    model = {i: {"vector": rng.normal(size=DIM).astype(np.float32), "a": rng.normal(size=dim).astype(np.float32),
                 "metadata": {"n": k}} for k, i in enumerate(ids)}
    cluster.rest(0).create_collection(name, DIM, distance_metric="euclidean",
                                      vectors={"a": {"dimension": dim, "distance_metric": "euclidean"}},
                                      shards=SHARDS, replication_factor=2)
    cluster.rest(0).insert_vectors(name, ids=ids, vectors=np.stack([model[i]["vector"] for i in ids]),
                                   metadatas=[model[i]["metadata"] for i in ids],
                                   named_vectors={"a": np.stack([model[i]["a"] for i in ids])})
    grpc = cluster.grpc(1)
    for i in ids[:6]:  # upserts through gRPC: new named vectors
        model[i]["a"] = rng.normal(size=dim).astype(np.float32)
    grpc.insert_vectors(name, [{"id": i, "vector": model[i]["vector"].tolist(), "metadata": model[i]["metadata"],
                                "named_vectors": {"a": model[i]["a"].tolist()}} for i in ids[:6]], upsert=True)
    rest = cluster.rest(2)
    rest.flush(name)  # every replica's rows into segments (named/a.f32): the metadata update moves a segment row
    rest.update_vector(name, ids[10], metadata={"tag": "x"})  # a log entry of its own: the row moves, keeps "a"
    model[ids[10]]["metadata"] = {"n": 10, "tag": "x"}
    model[ids[11]]["vector"] = rng.normal(size=DIM).astype(np.float32)
    rest.update_vector(name, ids[11], vector=model[ids[11]]["vector"])  # an upsert that re-sends "a"
    rest.delete_vectors(name, ids=ids[20:23])
    for gone in ids[20:23]:
        del model[gone]
    rest.flush(name)
    assert cluster.rest(0).compact(name)["replicas"]  # every replica of both shards merges its segments
    kept = sorted(model)
    for label, client in clients(cluster):
        got = client.get_vectors(name, ids, consistency="strong")
        assert [r["id"] for r in got] == kept, label
        for record in got:
            want = model[record["id"]]
            where = f"{label} {record['id']}"
            np.testing.assert_array_equal(np.asarray(record["vector"], np.float32), want["vector"], where)
            np.testing.assert_array_equal(np.asarray(record["named_vectors"]["a"], np.float32), want["a"])
            assert record["metadata"] == want["metadata"], label
        q = rng.normal(size=dim)
        order = sorted(kept, key=lambda i: float(np.linalg.norm(model[i]["a"].astype(np.float64) - q)))
        assert [h["id"] for h in client.search(name, q, k=8, using="a", consistency="strong")] == order[:8], label
    rest.delete_collection(name)


def _log_first_seqs(cluster: DevCluster) -> list[int]:
    run = subprocess.run([sys.executable, "-m", "proximadb", "cluster", "status", "--nats",
                          ",".join(cluster.doc["nats"]), "--json"], capture_output=True, text=True, timeout=120,
                         cwd=str(cluster.directory))
    assert run.returncode == 0, run.stderr
    (col,) = [c for c in json.loads(run.stdout)["collections"] if c["name"] == NAME]
    return [int(p["log_first_seq"]) for p in col["placement"]]


def _snapshots_installed(cluster: DevCluster, i: int) -> float:
    with urllib.request.urlopen(cluster.doc["nodes"][i]["rest"] + "/metrics", timeout=60) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("proximadb_cluster_snapshots_installed_total "):
                return float(line.split()[-1])
    return 0.0


def test_a_wiped_node_rebuilds_its_replicas_with_the_named_vectors(cluster: DevCluster) -> None:
    """Last in the module: it restarts node 3 with an empty disk. Its shards' logs were purged below their
    first entries (every replica checkpoints every few seconds), so its replicas come from a peer's snapshot."""
    placement = _holders(cluster)
    me = cluster.doc["nodes"][2]["id"]
    held = [s for s in range(SHARDS) if me in placement[s]]
    assert held, placement
    wait_until("the logs of node 3's shards are purged below their first entries",
               lambda: all(_log_first_seqs(cluster)[s] > 1 for s in held), WAIT)
    cluster.kill_and_restart(2, wipe=True)
    n3 = cluster.rest(2)
    for s in held:
        rows = [i for i in range(ROWS) if shard_of(IDS[i], SHARDS) == s]
        local, count = f"{NAME}.s{s}@0", len(rows)  # node 3's own replica (the address peers use between nodes)
        wait_until(f"node 3's replica of shard {s} is rebuilt", lambda a=local, n=count: n3.count(a) == n, WAIT)
        got = n3.get_vectors(local, [IDS[i] for i in rows])
        assert [r["id"] for r in got] == [IDS[i] for i in rows]
        for name in DECLARED:
            np.testing.assert_allclose(np.stack([np.asarray(r["named_vectors"][name], np.float32) for r in got]),
                                       stored(name, NAMED[name][rows]), rtol=1e-6, atol=1e-6)
            q = NAMED[name][rows[5]] + np.float32(0.01)
            keep = np.array([shard_of(i, SHARDS) == s for i in IDS])
            assert [h["id"] for h in n3.search(local, q, k=10, using=name)] == brute(q, 10, name, keep)
    assert _snapshots_installed(cluster, 2) >= 1.0
    # ... and the cluster as a whole answers as before, through the rebuilt node too
    q = NAMED["title"][42]
    assert [h["id"] for h in n3.search(NAME, q, k=10, using="title")] == brute(q, 10, "title")


def test_a_snapshot_carries_the_named_vectors(tmp_path: Path) -> None:
    """The snapshot of a replica (the backup capture) holds each segment's named/ files; installed elsewhere,
    the collection gives the same named vectors and searches them."""
    with Engine.open(tmp_path / "source") as engine:
        engine.create_collection("c", DIM, distance_metric="euclidean", vectors=DECLARED)
        col = engine.collection("c")
        half = ROWS // 2
        col.insert(ids=IDS[:half], vectors=VECTORS[:half], named_vectors={n: c[:half] for n, c in NAMED.items()})
        col.flush()
        col.insert(ids=IDS[half:], vectors=VECTORS[half:], named_vectors={n: c[half:] for n, c in NAMED.items()})
        col.flush()
        doc, chunks = snapshot_stream(col.directory, tmp_path / "source" / ".snapshot-out-t", "c.s0", "replica")
        raw = b"".join(chunks)
    named_files = sorted(f for f in doc["files"] if "/named/" in f)
    assert len([f for f in named_files if f.endswith(".f32")]) == 2 * len(DECLARED), doc["files"]
    receive_snapshot(io.BytesIO(raw), tmp_path / "target" / ".snapshot-in")
    with Engine.open(tmp_path / "target") as engine:
        engine.create_collection("copy", DIM, from_files=tmp_path / "target" / ".snapshot-in",
                                 distance_metric="euclidean", vectors=DECLARED)
        copy = engine.collection("copy")
        assert copy.count() == ROWS
        for name in DECLARED:
            got = copy.get(IDS[150], include_vector=True)
            assert got is not None
            np.testing.assert_allclose(got["named_vectors"][name], stored(name, NAMED[name][150]), rtol=1e-6,
                                       atol=1e-6)
            q = NAMED[name][77]
            assert [h["id"] for h in copy.search(q, 5, using=name, exact=True)] == brute(q, 5, name)


def test_cluster_nodes_route_named_vectors_and_a_joining_node_replays_them(nats3: NatsCluster, tmp_path: Path) -> None:
    """In-process ClusterNodes: ClusterNode.insert(named_vectors=) slices the columns by shard; every holder's
    replica applies the v4 frames; a node that joins later is placed on the shards and replays the log."""
    running: list[tuple[ClusterNode, Engine]] = []

    def start(node_id: str) -> ClusterNode:
        engine = Engine.open(tmp_path / node_id, log_of_record="external")
        info = NodeInfo(node_id, f"http://127.0.0.1:0/{node_id}", f"127.0.0.1:0/{node_id}", time.time())
        node = ClusterNode(engine, nats3.urls, info, ttl=6.0, sync_interval=0.2, deadline=WAIT).start()
        running.append((node, engine))
        return node

    try:
        n1, n2 = start("n1"), start("n2")
        n1.create_collection(NAME, DIM, shards=SHARDS, replication_factor=3, distance_metric="euclidean",
                             vectors=DECLARED)  # 3 replicas wanted, 2 nodes live: a third joins later
        acked = n1.insert(NAME, IDS, VECTORS, METADATA, named_vectors=NAMED)
        # n2 starts its replicas at its next map sync (sync_interval): a search there before that finds no shard
        wait_until("n1 and n2 hold every shard",
                   lambda: all(n.held().get(NAME) == list(range(SHARDS)) for n in (n1, n2)), WAIT)
        assert sorted(acked) == list(range(SHARDS))
        rng = np.random.default_rng(8)
        for node in (n1, n2):
            for name in DECLARED:
                q = rng.normal(size=DECLARED[name]["dimension"]).astype(np.float32)
                hits = node.search(NAME, q, k=10, wait_for=acked, using=name)
                assert [h["id"] for h in hits] == brute(q, 10, name), (node.node.id, name)
        with pytest.raises(ValidationError):
            n2.search(NAME, NAMED["title"][0], k=3, wait_for=acked, using="nope")
        n3 = start("n3")
        wait_until("n3 holds every shard", lambda: n3.held().get(NAME) == list(range(SHARDS)), WAIT)
        assert n3.wait_idle(WAIT)
        replica = n3.engine.collection(f"{NAME}.s0")
        assert replica.named_dims == {name: d["dimension"] for name, d in DECLARED.items()}
        q = NAMED["body"][17]
        assert [h["id"] for h in n3.search(NAME, q, k=10, wait_for=acked, using="body")] == brute(q, 10, "body")
        got = n3.engine.collection(f"{NAME}.s{shard_of(IDS[17], SHARDS)}").get(IDS[17], include_vector=True)
        assert got is not None
        for name in DECLARED:
            np.testing.assert_allclose(got["named_vectors"][name], stored(name, NAMED[name][17]), rtol=1e-6,
                                       atol=1e-6)
    finally:
        for node, engine in reversed(running):
            node.stop()
            engine.close()
