"""Text, hybrid and grouped search and recommend in cluster mode (proximadb/cluster/queries.py), end to end:
a dev-cluster of three NATS servers and three daemons, collections of 4 shards with 2 replicas (so rows
spread and most shards are read from a peer), and every answer compared with the embedded engine's over the
same rows (same hits in the same order, same scores within float tolerance), over the REST and gRPC clients.

The documents give every row a different length (filler words of its own), so no two rows tie on a BM25
score: one node orders equal scores by storage position, the cluster by id, and the comparison is exact.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _api_scenario import _plain
from _devcluster import DevCluster
from _support import wait_until

import proximadb
from proximadb.cluster.queries import _merged, _settled
from proximadb.errors import ProximaDBError, ValidationError, VectorNotFoundError

DIM = 8
ROWS = 240
SHARDS = 4
WAIT = 60.0
WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach", "plum", "melon",
         "river", "stone", "cloud", "forest", "desert", "island"]
METRICS = ("euclidean", "cosine")
DELETED = ["r3", "r17", "r40", "r41", "r99"]


def rows() -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(21)
    ids = [f"r{i}" for i in range(ROWS)]
    vectors = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    weights = 1.0 / np.arange(1, len(WORDS) + 1)
    metadata = []
    for i in range(ROWS):
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 7)), p=weights / weights.sum()))
        filler = [f"f{i}x{j}" for j in range(i + 4 - len(words))]  # every document a length of its own
        doc = " ".join(rng.permutation(words + filler).tolist())
        meta: dict[str, Any] = {"document": doc, "topic": f"t{i % 5}", "n": int(i % 7), "even": i % 2 == 0}
        if i % 11 == 0:
            del meta["topic"]  # rows without the group field are left out of groups
        metadata.append(meta)
    return ids, vectors, metadata


def sparse_rows() -> list[dict[str, Any] | None]:
    """Each row's sparse vectors: "kw" on most rows (random values, so no two scores tie), "tag" on some."""
    rng = np.random.default_rng(22)
    out: list[dict[str, Any] | None] = []
    for i in range(ROWS):
        own: dict[str, Any] = {}
        if i % 6 != 1:
            idx = np.sort(rng.choice(64, size=int(rng.integers(1, 9)), replace=False))
            own["kw"] = {"indices": idx.tolist(), "values": rng.uniform(0.1, 3.0, size=idx.size).tolist()}
        if i % 4 == 0:
            own["tag"] = {"indices": [int(i % 5)], "values": [1.0 + i / 1000]}
        if i % 3 != 2:  # index i % 9 on a ninth of the rows each, 9 + i % 2 on half: IDF weighs them apart
            own["idf"] = {"indices": [int(i % 9), 9 + i % 2], "values": [1.0 + i / 997, 1.0 + i / 1000]}
        out.append(own or None)
    return out


def load(db: Any, name: str, metric: str, **placement: Any) -> None:
    ids, vectors, metadata = rows()
    sparse = {"kw": {}, "tag": {}, "idf": {"modifier": "idf"}}
    db.create_collection(name, DIM, distance_metric=metric, sparse_vectors=sparse, **placement)
    db.insert_vectors(name, ids=ids, vectors=vectors, metadatas=metadata, sparse_vectors=sparse_rows())
    db.delete_vectors(name, ids=DELETED)  # deleted rows weigh nothing in BM25's statistics
    db.update_vector(name, "r5", metadata={"document": "apple apple apple banana", "topic": "t0"}, replace=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path_factory.mktemp("devcluster"))
    try:
        writer = running.rest(0)
        for metric in METRICS:
            load(writer, f"q_{metric}", metric, shards=SHARDS, replication_factor=2)
        live = ROWS - len(DELETED)
        for i in range(3):
            for metric in METRICS:
                client = running.rest(i)
                wait_until(f"node {i} sees q_{metric}", lambda c=client, m=metric: c.count(f"q_{m}") == live, WAIT)
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with proximadb.connect_embedded(tmp_path_factory.mktemp("embedded"), fsync="never") as db:
        for metric in METRICS:
            load(db, f"q_{metric}", metric)
        yield db


def same(got: Any, want: Any, where: str = "") -> None:
    """Equal, floats within tolerance (scores are computed from the same numbers, summed in other orders)."""
    if isinstance(want, float) or isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} != {want}"
        for key in want:
            same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert type(got) is type(want) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", _plain(call()))
    except ProximaDBError as exc:
        return ("error", type(exc).__name__, exc.code)


def calls(name: str) -> list[tuple[str, Callable[[Any], Any]]]:
    """Each call of the comparison, by label: text, hybrid with each fusion, groups, recommend (ids, vectors),
    with and without a filter, and bad input that must give the same typed error."""
    _ids, vectors, _ = rows()
    q = vectors[7] + np.float32(0.05)
    out: list[tuple[str, Callable[[Any], Any]]] = [
        ("text", lambda c: c.search_text(name, "apple banana", k=10)),
        ("text deep", lambda c: c.search_text(name, "cherry lemon river", k=60)),
        ("text repeated term", lambda c: c.search_text(name, "apple apple plum", k=8)),
        ("text filtered", lambda c: c.search_text(name, "apple melon", k=7, filter={"topic": "t2"})),
        ("text threshold", lambda c: c.search_text(name, "island desert", k=20, score_threshold=1.0,
                                                   include_metadata=False)),
        ("text unknown word", lambda c: c.search_text(name, "zebra", k=5)),
        ("text only stopwords", lambda c: c.search_text(name, "the and of", k=5)),
        ("text k=0", lambda c: c.search_text(name, "apple", k=0)),
        ("text bad filter", lambda c: c.search_text(name, "apple", filter={"n": {"$bogus": 1}})),
        ("text unknown collection", lambda c: c.search_text("absent", "apple")),
        ("groups", lambda c: c.search_groups(name, q, "topic", limit=3, group_size=2)),
        ("groups int field, big", lambda c: c.search_groups(name, q, "n", limit=7, group_size=12)),
        ("groups more than exist", lambda c: c.search_groups(name, q, "topic", limit=9, group_size=3)),
        ("groups filtered", lambda c: c.search_groups(name, vectors[30], "topic", limit=4, group_size=3,
                                                      filter={"even": True}, include_vectors=True)),
        ("groups limit 0", lambda c: c.search_groups(name, q, "topic", limit=0)),
        ("groups bad vector", lambda c: c.search_groups(name, np.ones(DIM + 1), "topic")),
        ("recommend ids", lambda c: c.recommend(name, ["r1", "r2"], ["r8"], k=6)),
        ("recommend vectors", lambda c: c.recommend(name, [vectors[12], "r60"], [vectors[61]], k=5,
                                                    include_vectors=True)),
        ("recommend filtered", lambda c: c.recommend(name, ["r10"], k=5, filter={"n": {"$in": [1, 2]}})),
        ("recommend best_score", lambda c: c.recommend(name, ["r1", "r2"], ["r8", "r9"], k=6,
                                                       strategy="best_score")),
        ("recommend best_score filtered", lambda c: c.recommend(name, ["r20", vectors[21]], k=4,
                                                                strategy="best_score", filter={"even": False})),
        ("recommend unknown id", lambda c: c.recommend(name, ["r1", "nope"], k=3)),
        ("recommend deleted id", lambda c: c.recommend(name, ["r1"], ["r3"], k=3)),
        ("recommend bad strategy", lambda c: c.recommend(name, ["r1"], strategy="mean")),
        ("recommend bad vector", lambda c: c.recommend(name, [np.ones(DIM + 2)], k=3)),
        ("recommend bad vector before an unknown id", lambda c: c.recommend(name, ["r1", np.ones(DIM + 2), "nope"])),
        ("recommend zero vector", lambda c: c.recommend(name, [np.zeros(DIM)], k=3)),
    ]
    for fusion in ("rrf", "dbsf", "relative_score"):
        out += [
            (f"hybrid {fusion}", lambda c, f=fusion: c.hybrid_search(name, q, "apple cherry", k=10, fusion=f)),
            (f"hybrid {fusion} filtered", lambda c, f=fusion: c.hybrid_search(
                name, vectors[50], "banana grape stone", k=8, fusion=f, filter={"even": True}, depth=30,
                weights=[0.3, 0.7])),
        ]
    out += [("hybrid bad vector", lambda c: c.hybrid_search(name, np.ones(DIM + 1), "apple")),
            ("hybrid bad fusion", lambda c: c.hybrid_search(name, q, "apple", fusion="max"))]
    kw = {"name": "kw", "indices": [3, 10, 17, 40, 63], "values": [1.0, 0.5, 2.0, 1.5, 0.75]}
    out += [
        ("sparse", lambda c: c.search_sparse(name, "kw", kw["indices"], kw["values"], k=10)),
        ("sparse deep", lambda c: c.search_sparse(name, "kw", list(range(64)), [1.0] * 64, k=ROWS)),
        ("sparse filtered", lambda c: c.search_sparse(name, "kw", kw["indices"], kw["values"], k=7,
                                                      filter={"topic": "t2"}, include_metadata=False)),
        ("sparse threshold", lambda c: c.search_sparse(name, "tag", [1, 2], [1.0, 2.0], k=50, score_threshold=1.5)),
        ("sparse idf", lambda c: c.search_sparse(name, "idf", [0, 4, 9, 10], [1.0, 1.0, 1.0, 1.0], k=12)),
        ("sparse idf filtered", lambda c: c.search_sparse(name, "idf", [1, 10], [2.0, 1.0], k=9,
                                                          filter={"even": True})),
        ("sparse unknown name", lambda c: c.search_sparse(name, "nope", [1], [1.0])),
        ("sparse unsorted", lambda c: c.search_sparse(name, "kw", [5, 1], [1.0, 1.0])),
        ("sparse k=0", lambda c: c.search_sparse(name, "kw", [1], [1.0], k=0)),
        ("hybrid sparse + text", lambda c: c.hybrid_search(name, text="apple cherry", sparse=kw, k=10)),
        ("hybrid all three", lambda c: c.hybrid_search(name, q, "banana", k=8, sparse=kw, fusion="dbsf",
                                                       weights=[0.2, 0.3, 0.5], filter={"even": True},
                                                       depth={"sparse": 40})),
        ("hybrid no part", lambda c: c.hybrid_search(name, k=3)),
    ]
    return out


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_every_query_answers_as_one_node(cluster: DevCluster, embedded: Any, metric: str, protocol: str) -> None:
    client = cluster.rest(1) if protocol == "rest" else cluster.grpc(2)
    name = f"q_{metric}"
    for label, call in calls(name):
        want = outcome(lambda c=call: c(embedded))
        got = outcome(lambda c=call: c(client))
        same(got, want, label)
    assert outcome(lambda: embedded.search_text(name, "apple", k=50))[1], "the data gives the text search hits"
    assert len(embedded.search_sparse(name, "kw", list(range(64)), [1.0] * 64, k=ROWS)) > ROWS // 2  # sparse hits
    assert outcome(lambda: embedded.hybrid_search(name, text="apple cherry", k=10, sparse={
        "name": "kw", "indices": [3, 10], "values": [1.0, 1.0]}))[0] == "ok"


def test_text_search_scores_with_the_whole_collections_statistics(cluster: DevCluster, embedded: Any) -> None:
    """Each shard alone ranks differently (its own statistics); the cluster's answer is one node's."""
    name = "q_euclidean"
    rest = {n["id"]: n["rest"] for n in cluster.doc["nodes"]}
    holder = [rest[h[0]] for h in cluster.rest(0).get_collection(name)["placement"]]  # a node with shard s
    shard_stats = [post(holder[s], f"{name}.s{s}@0", {"text": "apple cherry", "corpus_stats": True})
                   for s in range(SHARDS)]
    assert sum(s["rows"] for s in shard_stats) == ROWS - len(DELETED)
    assert all(0 < s["df"]["apple"] < sum(t["df"]["apple"] for t in shard_stats) for s in shard_stats)
    local = post(holder[0], f"{name}.s0@0", {"text": "apple cherry", "k": 5})  # shard 0's own statistics
    whole = {h["id"]: h["score"] for h in embedded.search_text(name, "apple cherry", k=ROWS)}
    assert any(not math.isclose(h["score"], whole[h["id"]], rel_tol=1e-4) for h in local)
    cluster_hits = cluster.rest(2).search_text(name, "apple cherry", k=ROWS)
    assert [h["id"] for h in cluster_hits] == list(whole)


def test_sparse_idf_weighs_with_the_whole_collections_statistics(cluster: DevCluster, embedded: Any) -> None:
    """The "idf" modifier: each shard's statistics (``corpus_stats: true`` on its address) add up to one
    node's; a shard weighing by its own would score differently; the cluster's scores are one node's."""
    name = "q_euclidean"
    query = {"name": "idf", "indices": [0, 4, 9], "values": [1.0, 1.0, 1.0]}
    rest = {n["id"]: n["rest"] for n in cluster.doc["nodes"]}
    holder = [rest[h[0]] for h in cluster.rest(0).get_collection(name)["placement"]]
    shard_stats = [post(holder[s], f"{name}.s{s}@0", {**query, "corpus_stats": True}, "search/sparse")
                   for s in range(SHARDS)]
    assert sum(s["rows"] for s in shard_stats) == sum(1 for i in range(ROWS) if i % 3 != 2 and f"r{i}" not in DELETED)
    whole = {h["id"]: h["score"] for h in embedded.search_sparse(name, "idf", query["indices"], query["values"],
                                                                 k=ROWS)}
    local = post(holder[0], f"{name}.s0@0", {**query, "k": 5}, "search/sparse")  # a replica: unweighted
    assert local and all(not math.isclose(h["score"], whole[h["id"]], rel_tol=1e-4) for h in local)
    got = cluster.rest(2).search_sparse(name, "idf", query["indices"], query["values"], k=ROWS)
    assert [h["id"] for h in got] == list(whole)
    for hit in got:
        assert math.isclose(hit["score"], whole[hit["id"]], rel_tol=1e-5)
    with pytest.raises(urllib.error.HTTPError) as refused:  # a public caller naming a collection: 400
        post(rest[cluster.doc["nodes"][1]["id"]], name, {**query, "corpus_stats": True}, "search/sparse")
    assert refused.value.code == 400 and "shard addresses" in refused.value.read().decode()


def test_corpus_stats_is_refused_on_a_collection_name(cluster: DevCluster) -> None:
    """The fan-out's field is taken by shard addresses only: a public caller naming a collection gets 400 and
    nothing else happens; a malformed one is 400 on a shard address too."""
    rest = cluster.doc["nodes"][1]["rest"]
    for body in ({"text": "apple", "corpus_stats": True},
                 {"text": "apple", "corpus_stats": {"rows": 5, "total_terms": 20.0, "df": {"apple": 2}}}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(rest, "q_euclidean", body)
        assert refused.value.code == 400 and "shard addresses" in refused.value.read().decode()
    holder = {n["id"]: n["rest"] for n in cluster.doc["nodes"]}[
        cluster.rest(0).get_collection("q_euclidean")["placement"][1][0]]
    for bad in (False, {"rows": -1, "total_terms": 1, "df": {}}, {"rows": 1, "df": {}}, "x"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(holder, "q_euclidean.s1@0", {"text": "apple", "corpus_stats": bad})
        assert refused.value.code == 400
    with pytest.raises(ValidationError, match="shard addresses"):  # over gRPC too
        cluster.grpc(0)._run(proximadb.sdk.calls.single(
            "search_text", "q_euclidean", {"text": "apple", "corpus_stats": True}))


def test_strong_and_session_text_search_and_recommend_see_the_write_just_made(cluster: DevCluster) -> None:
    """No polling: two rows written through n1 are found at once by strong reads on n2 and n3 and by a session
    read of a client that carries the writer's token (3 shards, 1 replica each: most shards are a peer's)."""
    writer = cluster.rest(0)
    writer.create_collection("fresh", DIM, distance_metric="euclidean", shards=3, replication_factor=1)
    rng = np.random.default_rng(8)
    strong_readers = (cluster.grpc(1), cluster.rest(2))
    session_reader = cluster.grpc(2)
    for round_ in range(4):
        ids = [f"z{round_}a", f"z{round_}b"]
        writer.insert_vectors("fresh", ids=ids, vectors=rng.normal(size=(2, DIM)).astype(np.float32),
                              metadatas=[{"document": f"zebra{round_} stripes", "round": round_},
                                         {"document": f"zebra{round_}", "round": round_}])
        session_reader.add_session_token(writer.session_token())
        for reader, level in ((*strong_readers[:1], "strong"), (strong_readers[1], "strong"),
                              (session_reader, "session")):
            where = f"round {round_}, {reader.url}, {level}"
            found = reader.search_text("fresh", f"zebra{round_}", k=5, consistency=level)
            assert sorted(h["id"] for h in found) == ids, where
            assert [h["id"] for h in reader.recommend("fresh", [ids[0]], k=5, filter={"round": round_},
                                                      consistency=level)] == [ids[1]], where
            assert sorted(h["id"] for h in reader.hybrid_search("fresh", [0.0] * DIM, f"zebra{round_}", k=5,
                                                                filter={"round": round_}, consistency=level)) \
                == ids, where
            assert [g["value"] for g in reader.search_groups("fresh", [0.0] * DIM, "round", limit=10,
                                                             consistency=level)] \
                .count(round_) == 1, where
    with pytest.raises(ValidationError, match="consistency must be one of"):
        cluster.rest(1).search_text("fresh", "zebra0", consistency="linearizable")
    writer.delete_collection("fresh")


def test_a_sparse_name_added_is_written_at_once_and_lands_on_every_replica(cluster: DevCluster) -> None:
    """Inserts naming a sparse vector update_collection just added, sent at once through n1, are on every
    replica, and every node searches and writes the name at once. (The races this guards, a replica that has
    not synced the new setting yet applying such an entry or asked to search it, and a node whose map is a
    sync behind, are made deterministic in tests/storage/test_sparse_edges.py; here the nodes may or may not
    have synced first.)"""
    writer = cluster.rest(0)
    writer.create_collection("grown", DIM, sparse_vectors={"t": {}}, shards=1, replication_factor=3)
    writer.update_collection("grown", sparse_vectors={"t": {}, "u": {}})
    for i in range(12):
        writer.insert_vectors("grown", [{"id": f"g{i}", "vector": [1.0] * DIM,
                                         "sparse_vectors": {"u": {"indices": [i], "values": [1.0]}}}])
    for node in range(3):  # every node holds the one shard: a strong read there is its own replica's answer
        for client in (cluster.rest(node), cluster.grpc(node)):
            assert client.count("grown", consistency="strong") == 12, client.url
            hits = client.search_sparse("grown", "u", [3], [1.0], k=5, consistency="strong")
            assert [h["id"] for h in hits] == ["g3"], client.url
    writer.update_collection("grown", sparse_vectors={"t": {}, "u": {}, "w": {}})
    for node in (1, 2):  # nodes whose map may be a sync behind the update made through n1
        client = cluster.grpc(node)
        # index [node]: only w{node} has it, written below; n1's w1 (index 1) may already be on n2's replica
        assert client.search_sparse("grown", "w", [node], [1.0], k=5) == [], client.url
        client.insert_vectors("grown", [{"id": f"w{node}", "vector": [1.0] * DIM,
                                         "sparse_vectors": {"w": {"indices": [node], "values": [1.0]}}}])
    assert writer.count("grown", consistency="strong") == 14
    writer.delete_collection("grown")


def stats_of_replicas(cluster: DevCluster, name: str, placement: list[list[str]]) -> dict[tuple[int, str], Any]:
    """Each replica's own statistics, asked on its node by shard address (seq 0: no wait)."""
    nodes = {n["id"]: i for i, n in enumerate(cluster.doc["nodes"])}
    return {(shard, holder): cluster.rest(nodes[holder]).stats(f"{name}.s{shard}@0")
            for shard, holders in enumerate(placement) for holder in holders}


def test_compact_reaches_every_replica_and_changes_no_answer(cluster: DevCluster) -> None:
    """Insert, flush (every replica), insert, flush, delete some, compact through another node: every replica
    of every shard ends with one segment without the deleted rows, the report lists each, answers unchanged."""
    writer = cluster.rest(0)
    info = writer.create_collection("packed", DIM, distance_metric="euclidean", shards=2, replication_factor=2)
    placement = info["placement"]
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(120, DIM)).astype(np.float32)
    ids = [f"p{i}" for i in range(120)]
    for part in (slice(0, 60), slice(60, 120)):
        writer.insert_vectors("packed", ids=ids[part], vectors=vectors[part],
                              metadatas=[{"document": f"word{i % 7} other"} for i in range(part.start, part.stop)])
        writer.flush("packed")  # every replica seals what it applied, this write included
    gone = ids[:6]  # a few of the first segment's rows: under the background policy's dead share
    assert writer.delete_vectors("packed", gone) == 6
    writer.flush("packed")
    before = stats_of_replicas(cluster, "packed", placement)
    assert len(before) == 4
    for where, stats in before.items():
        assert stats["segments"] >= 2, (where, stats)
        assert stats["segment_rows"] > stats["vectors"], (where, stats)  # the deleted rows are still there
    queries = vectors[10:14] + np.float32(0.01)
    reader = cluster.grpc(2)
    want = (reader.search_batch("packed", queries, k=8, consistency="strong"),
            reader.search_text("packed", "word3", k=10, consistency="strong"), reader.count("packed"))

    report = cluster.rest(1).compact("packed")
    replicas = report["replicas"]
    assert sorted((r["shard"], r["node"]) for r in replicas) == sorted(before)
    for r in replicas:
        stats = before[(r["shard"], r["node"])]
        assert r["collection"] == f"packed.s{r['shard']}"
        assert (r["segments_before"], r["segments_after"]) == (stats["segments"], 1), r
        assert (r["rows_before"], r["rows_after"]) == (stats["segment_rows"], stats["vectors"]), r
        assert len(r["merged"]) == stats["segments"]
    for key in ("segments_before", "segments_after", "rows_before", "rows_after", "bytes_before", "bytes_after"):
        assert report[key] == sum(r[key] for r in replicas), key
    assert report["collection"] == "packed" and report["rows_after"] == 2 * (120 - 6)  # 2 replicas of each row
    assert report["merged"] == [m for r in replicas for m in r["merged"]]
    for where, stats in stats_of_replicas(cluster, "packed", placement).items():
        assert (stats["segments"], stats["segment_rows"], stats["vectors"]) == (1, stats["vectors"],
                                                                                before[where]["vectors"]), where
    got = (reader.search_batch("packed", queries, k=8, consistency="strong"),
           reader.search_text("packed", "word3", k=10, consistency="strong"), reader.count("packed"))
    same(_plain(got), _plain(want), "after compaction")
    again = cluster.grpc(0).compact("packed")  # over gRPC too; nothing left to merge
    assert len(again["replicas"]) == 4 and again["merged"] == [] and again["segments_after"] == 4
    # The whole collection's statistics, in one node's fields over both protocols (flush answers them too):
    # one replica of each shard, each of one compacted segment.
    for stats in (cluster.rest(2).stats("packed"), cluster.grpc(1).stats("packed"), cluster.grpc(0).flush("packed")):
        assert (stats["name"], stats["uuid"]) == ("packed", info["uuid"]), stats
        assert (stats["vectors"], stats["segments"], stats["segment_rows"]) == (114, 2, 114), stats
        assert (stats["wal_last_seq"], stats["wal_bytes"], stats["checkpoint_seq"]) == (None, 0, 0), stats
        assert stats["memtable_rows"] == 0 and stats["indexing_algorithm"] == "flat", stats
        plans = [stats[f"filter_plan_cache_{key}"] for key in ("hits", "misses", "bytes")]
        assert all(isinstance(v, int) and v >= 0 for v in plans), stats  # each replica's, summed
    writer.delete_collection("packed")


def test_an_unknown_example_id_names_it(cluster: DevCluster) -> None:
    for client in (cluster.rest(0), cluster.grpc(1)):
        with pytest.raises(VectorNotFoundError, match="'nope'"):
            client.recommend("q_cosine", ["r1"], ["nope"], k=3)


def post(rest: str, collection: str, body: dict[str, Any], route: str = "search_text") -> Any:
    request = urllib.request.Request(f"{rest}/collections/{collection}/{route}", json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["data"]



def hit(id_: str, distance: float) -> dict[str, Any]:
    return {"id": id_, "distance": distance, "score": -distance}


def test_a_shards_groups_are_settled_only_when_no_group_it_left_out_can_change_the_answer() -> None:
    """The merge rule of search_groups (proximadb/cluster/queries.py), on answers made up here: shard A
    answered its one group asked for (X, best 0.1), shard B all of its groups (Y, best 0.05)."""
    a = [{"value": "X", "hits": [hit("a1", 0.1)]}]
    b = [{"value": "Y", "hits": [hit("b1", 0.05)]}]
    merged = _merged([a, b], 1, 2)
    assert merged == [{"value": "Y", "hits": [hit("b1", 0.05)]}]
    # Y has one hit of the two asked for: A may hold more of Y's hits (at least 0.1 away): ask A for more.
    assert not _settled(a, 1, merged, 1, 2) and _settled(b, 5, merged, 1, 2)
    # With group_size 1, Y is full and nearer than anything A left out: settled.
    assert _settled(a, 1, _merged([a, b], 1, 1), 1, 1)
    # A's next answer holds Y's second hit; Y's two hits come from two shards, and 1 and "1" stay apart.
    a2 = [{"value": "X", "hits": [hit("a1", 0.1)]}, {"value": "Y", "hits": [hit("a2", 0.3)]},
          {"value": 1, "hits": [hit("a3", 0.4)]}, {"value": "1", "hits": [hit("a4", 0.5)]}]
    merged = _merged([a2, b], 1, 2)
    assert merged == [{"value": "Y", "hits": [hit("b1", 0.05), hit("a2", 0.3)]}]
    assert _settled(a2, 4, merged, 1, 2)  # every group A left out is at least 0.5 away; Y's hits are nearer
    assert [g["value"] for g in _merged([a2, b], 4, 1)] == ["Y", "X", 1, "1"]
    # The limit-th merged group no nearer than what A left out: not settled.
    assert not _settled(a2, 4, _merged([a2, b], 4, 1), 4, 1)


def test_a_group_whose_hits_are_on_two_shards_makes_the_cluster_ask_again(cluster: DevCluster, embedded: Any) -> None:
    """Rows placed on purpose (ids chosen by their shard): shard 0 holds A at 0.5 and G at 0.9 from the query,
    shard 1 holds G at 0.1 and B at 0.2. One group of two hits: G with 0.1 and 0.9; the first round (one
    group from each shard) gives G one hit, so shard 0 must be asked for more groups."""
    from proximadb.cluster.placement import shard_of

    def on(shard: int, taken: set[str]) -> str:
        found = next(f"g{i}" for i in range(1000) if f"g{i}" not in taken and shard_of(f"g{i}", 2) == shard)
        taken.add(found)
        return found

    taken: set[str] = set()
    rows_ = [(on(0, taken), 0.5, "A"), (on(0, taken), 0.9, "G"), (on(1, taken), 0.1, "G"), (on(1, taken), 0.2, "B")]
    vectors = np.zeros((len(rows_), DIM), dtype=np.float32)
    vectors[:, 0] = [d for _, d, _ in rows_]
    writer = cluster.rest(0)
    for db, placement in ((writer, {"shards": 2, "replication_factor": 2}), (embedded, {})):
        db.create_collection("two", DIM, distance_metric="euclidean", **placement)
        db.insert_vectors("two", ids=[r[0] for r in rows_], vectors=vectors, metadatas=[{"g": g} for *_, g in rows_])
    query = np.zeros(DIM, dtype=np.float32)
    want = embedded.search_groups("two", query, "g", limit=1, group_size=2)
    assert [(g["value"], [h["id"] for h in g["hits"]]) for g in want] == [("G", [rows_[2][0], rows_[1][0]])]
    for client in (writer, cluster.grpc(1)):
        wait_until(f"{client.url} holds 'two'", lambda c=client: c.count("two") == len(rows_), WAIT)
        same(_plain(client.search_groups("two", query, "g", limit=1, group_size=2)), _plain(want))
