"""``proximadb dev-cluster`` and ``serve --cluster``, end to end: three NATS servers and three daemons, real
processes started as a user would (``proximadb dev-cluster --nodes 3 DIR``), reached through cluster.json
over REST and gRPC with the SDK. Answers are compared with a brute-force reference computed here.

Reads use the default consistency (bounded, which includes read-your-writes per node): a read on another
node than the writer's is polled until it sees the writes (wait_until), a read on the writer's node must see
them at once. The consistency tests read with strong and session consistency on other nodes, at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _api_scenario import scenario
from _devcluster import DevCluster
from _support import child_env, wait_until

import proximadb
from proximadb import idempotency
from proximadb.cluster.placement import shard_of
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.consistency import LEVELS
from proximadb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    RequestTimeoutError,
    ValidationError,
    VectorExistsError,
    VectorNotFoundError,
)
from proximadb.sdk import connect_async_grpc, connect_async_rest, connect_grpc, connect_rest

DIM = 8
ROWS = 300
WAIT = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    running = DevCluster(tmp_path_factory.mktemp("devcluster"))
    try:
        yield running
    finally:
        running.stop()
        running.kill_leftovers()


def reference(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    d = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    return [list(np.argsort(row, kind="stable")[:k]) for row in d]


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(14)
    return [f"r{i}" for i in range(ROWS)], rng.normal(size=(ROWS, DIM)).astype(np.float32)


def test_cluster_json_and_sharded_reads_on_every_node(cluster: DevCluster, data: tuple[list[str], np.ndarray]) -> None:
    ids, vectors = data
    assert [n["id"] for n in cluster.doc["nodes"]] == ["n1", "n2", "n3"] and len(cluster.doc["nats"]) == 3
    n1 = cluster.rest(0)
    for name, replicas in (("r3", 3), ("r2", 2)):
        info = n1.create_collection(name, DIM, distance_metric="euclidean", shards=3, replication_factor=replicas)
        assert (info["shards"], info["replication_factor"]) == (3, replicas)
        assert len(info["placement"]) == 3 and all(len(set(h)) == replicas for h in info["placement"])
        over_grpc = cluster.grpc(0).get_collection(name)  # the same shard map over both protocols
        assert {k: over_grpc[k] for k in ("shards", "replication_factor", "placement", "epoch")} == \
            {k: n1.get_collection(name)[k] for k in ("shards", "replication_factor", "placement", "epoch")}
        assert n1.insert_vectors(name, ids=ids, vectors=vectors, metadatas=[{"i": i} for i in range(ROWS)])["count"] \
            == ROWS
        assert n1.count(name) == ROWS  # the writer's node reads its own writes at once
    queries = vectors[:5] + np.float32(0.01)
    want = [[ids[i] for i in row] for row in reference(vectors, queries, 7)]
    for client in (cluster.grpc(1), cluster.rest(2), cluster.grpc(2), cluster.rest(1)):
        for name in ("r3", "r2"):
            wait_until(f"{name} replicated to {client.url}", lambda c=client, n=name: c.count(n) == ROWS, WAIT)
            assert [[h["id"] for h in hits] for hits in client.search_batch(name, queries, k=7)] == want
            got = client.get_vectors(name, ["r5", "missing", "r250"])
            assert [g["id"] for g in got] == ["r5", "r250"]
            assert np.array_equal(np.asarray(got[0]["vector"], dtype=np.float32), vectors[5])
            assert got[1]["metadata"] == {"i": 250}
            assert client.count(name, {"i": {"$lt": 10}}) == 10
    assert sorted(c["name"] for c in cluster.rest(2).list_collections()) == ["r2", "r3"]
    for client in (cluster.rest(2), cluster.grpc(1)):  # scroll: every shard's rows, merged in id order
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page, cursor = client.scroll("r2", limit=64, cursor=cursor, filter={"i": {"$gte": 20}})
            seen.extend(r["id"] for r in page)
            if cursor is None:
                break
        assert seen == sorted(ids[20:])


def test_bad_input_gets_typed_errors_and_changes_nothing(cluster: DevCluster) -> None:
    for client in (cluster.rest(1), cluster.grpc(2)):
        with pytest.raises(CollectionExistsError):
            client.create_collection("r3", DIM, shards=3)
        with pytest.raises(ValidationError):
            client.create_collection("bad", DIM, shards=0)
        with pytest.raises(ValidationError):
            client.create_collection("bad", 0)
        with pytest.raises(CollectionNotFoundError):
            client.count("nope")
        with pytest.raises(ValidationError):
            client.insert_vectors("r3", ids=["x1"], vectors=np.zeros((1, DIM + 1), dtype=np.float32))
        with pytest.raises(ValidationError):
            client.insert_vectors("r3", ids=["x1"], vectors=np.full((1, DIM), np.nan, dtype=np.float32))
        with pytest.raises(VectorExistsError):
            client.insert_vectors("r3", ids=["r1"], vectors=np.zeros((1, DIM), dtype=np.float32))
        with pytest.raises(ValidationError):
            client.search_batch("r2", np.zeros((1, DIM + 2), dtype=np.float32), k=3)
        with pytest.raises(ValidationError):
            client.count("r2", {"i": {"$bogus": 1}})
        with pytest.raises(ValidationError):  # text search in cluster mode: tests/cluster/test_cluster_queries.py
            client.search_text("r3", "words", k=0)
        with pytest.raises(ValidationError):
            client.scroll("r3", limit=0)
        assert client.search_text("r3", "words") == []  # no row has a document
        assert client.count("r3") == ROWS and client.get_vectors("r3", ["x1"]) == []
        assert "bad" not in [c["name"] for c in client.list_collections()]


def test_deletes_are_read_by_the_writer_at_once(cluster: DevCluster) -> None:
    n3 = cluster.rest(2)
    n3.create_collection("del", DIM, shards=2, replication_factor=2)
    vectors = np.random.default_rng(3).normal(size=(40, DIM)).astype(np.float32)
    n3.insert_vectors("del", ids=[f"d{i}" for i in range(40)], vectors=vectors,
                      metadatas=[{"even": i % 2 == 0} for i in range(40)])
    assert n3.delete_vectors("del", ["d1", "d3", "nope"]) == 2
    assert n3.count("del") == 38 and n3.get_vectors("del", ["d1", "d2"])[0]["id"] == "d2"
    n3.update_vector("del", "d2", metadata={"even": True, "tag": "x"})  # merged, over both protocols below
    assert n3.get_vectors("del", ["d2"])[0]["metadata"] == {"even": True, "tag": "x"}
    g2 = cluster.grpc(1)
    wait_until("n2 sees the update", lambda: g2.get_vectors("del", ["d2"])[0]["metadata"].get("tag") == "x", WAIT)
    g2.update_vector("del", "d2", metadata={"even": True}, replace=True)
    assert g2.get_vectors("del", ["d2"])[0]["metadata"] == {"even": True}
    with pytest.raises(VectorNotFoundError):
        g2.update_vector("del", "d1", metadata={"a": 1})
    wait_until("n3 sees n2's update", lambda: n3.get_vectors("del", ["d2"])[0]["metadata"] == {"even": True}, WAIT)
    assert n3.delete_vectors("del", filter={"even": True}) == 20
    assert n3.count("del") == 18
    n3.delete_collection("del")
    with pytest.raises(CollectionNotFoundError):
        n3.count("del")
    # The same name again, at once: a new collection with new logs; no node serves the old rows.
    n3.create_collection("del", DIM, shards=2, replication_factor=3)
    n3.insert_vectors("del", ids=["new"], vectors=vectors[:1])
    for client in (n3, cluster.rest(0), cluster.grpc(1)):
        wait_until(f"{client.url} sees the new 'del'", lambda c=client: c.count("del") == 1, WAIT)
        assert [r["id"] for r in client.scroll("del")[0]] == ["new"]
    n3.delete_collection("del")


def test_a_write_retried_on_another_node_is_applied_once(cluster: DevCluster) -> None:
    """A write sent again with its request id (proximadb/idempotency.py), to another node, or to two nodes at
    once, is answered as the first time, and each shard's log holds it once: JetStream de-duplicates the
    appends by message id, and the answer comes from the cluster's ledger (bucket pxdb_requests)."""
    n1, n2 = cluster.rest(0), cluster.grpc(1)
    n1.create_collection("once", DIM, shards=2, replication_factor=2)
    before = cluster.log_lengths()
    vectors = np.random.default_rng(5).normal(size=(20, DIM)).astype(np.float32)
    stamps = np.full(20, 1_700_000_000_000_000, dtype=np.int64)
    first_ids, both_ids = [f"o{i}" for i in range(20)], [f"p{i}" for i in range(20)]
    insert = encode_insert(ids=first_ids, vectors=vectors, metadata=None, timestamps=stamps, upsert=False)
    with idempotency.sending("once-insert"):
        first = n1._transport.insert_payload("once", insert)
        assert n2._transport.insert_payload("once", insert) == first and first["count"] == 20

    answers: list[Any] = []
    both = encode_insert(ids=both_ids, vectors=vectors, metadata=None, timestamps=stamps, upsert=False)

    def send(transport: Any) -> None:
        with idempotency.sending("once-both"):
            answers.append(transport.insert_payload("once", both))

    threads = [threading.Thread(target=send, args=(c._transport,)) for c in (cluster.rest(2), cluster.grpc(0))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert len(answers) == 2 and answers[0] == answers[1] and answers[0]["ids"] == both_ids

    delete = encode_payload("vector_delete", {"ids": first_ids[:5], "filter": None})
    with idempotency.sending("once-delete"):
        assert n2._transport.mutate_payload("once", delete)["deleted"] == 5
        assert n1._transport.mutate_payload("once", delete)["deleted"] == 5
    assert n1.count("once") == 35
    after = cluster.log_lengths()
    appended = sum(after[s] - before.get(s, 0) for s in after)
    assert appended == sum(len({shard_of(i, 2) for i in ids}) for ids in (first_ids, both_ids, first_ids[:5]))
    n1.delete_collection("once")


def test_collection_settings_change_on_every_replica(cluster: DevCluster) -> None:
    """update_collection in cluster mode: the same checks as one node, the map changed, and every node's
    replica of every shard reconfigured (seen in each replica's own stats, ``<name>.s<shard>@0``)."""
    n2 = cluster.rest(1)
    n2.create_collection("cfg", DIM, shards=2, replication_factor=3)
    info = n2.update_collection("cfg", indexing_algorithm="hnsw", description="tuned")
    assert (info["indexing_algorithm"], info["description"]) == ("hnsw", "tuned")
    for client in (cluster.grpc(0), cluster.rest(2)):
        assert client.get_collection("cfg")["indexing_algorithm"] == "hnsw"
        for shard in (0, 1):
            wait_until(f"{client.url} reconfigures its replica of shard {shard}",
                       lambda c=client, s=shard: c.stats(f"cfg.s{s}@0")["indexing_algorithm"] == "hnsw", WAIT)
    for client in (n2, cluster.grpc(2)):
        with pytest.raises(ValidationError, match="default_ttl_seconds"):
            client.update_collection("cfg", default_ttl_seconds=60)
        with pytest.raises(ValidationError):
            client.update_collection("cfg", dimension=DIM + 1)
    assert n2.get_collection("cfg")["default_ttl_seconds"] is None
    n2.delete_collection("cfg")


CLUSTER_FIELDS = ("shards", "replication_factor", "placement", "epoch")  # describe a collection in cluster mode only


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_single_node_scenario_gives_the_same_answers_on_the_cluster(
        cluster: DevCluster, protocol: str, tmp_path: Path) -> None:
    """tests/_api_scenario.py (every client call, its answers and typed errors) on one node of the cluster,
    over each protocol, against the embedded engine's answers: the same, apart from the placement fields."""
    with proximadb.connect_embedded(tmp_path / "embedded", fsync="never") as db:
        want = scenario(db)
    client = cluster.grpc(1) if protocol == "grpc" else cluster.rest(2)
    got = scenario(client)

    def local(answer: Any) -> Any:
        if answer[0] == "ok" and isinstance(answer[1], dict):
            return ("ok", {k: v for k, v in answer[1].items() if k not in CLUSTER_FIELDS})
        if answer[0] == "ok" and isinstance(answer[1], list) and all(isinstance(n, str) for n in answer[1]):
            return ("ok", [n for n in answer[1] if n == "parity"])  # list_collections: the other tests' left out
        return answer

    for step, (theirs, ours) in enumerate(zip(got, want, strict=True)):
        assert local(theirs) == local(ours), f"step {step} differs"


def test_every_consistency_level_is_served_over_both_protocols(cluster: DevCluster,
                                                                data: tuple[list[str], np.ndarray]) -> None:
    """r3 has a replica of every shard on every node, each caught up (the first test waited for it), so every
    level must give the whole answer; bounded's staleness is not asserted, only that it is served."""
    ids, vectors = data
    queries = vectors[:3] + np.float32(0.01)
    want = [[ids[i] for i in row] for row in reference(vectors, queries, 5)]
    for client in (cluster.rest(1), cluster.grpc(2)):
        for level in LEVELS:
            assert client.count("r3", consistency=level) == ROWS
            assert [[h["id"] for h in hits] for hits in client.search_batch("r3", queries, k=5, consistency=level)] \
                == want
            assert client.search("r3", vectors[7], k=1, consistency=level)[0]["id"] == "r7"
            assert [r["id"] for r in client.get_vectors("r3", ["r9", "r1"], consistency=level)] == ["r9", "r1"]
            page, _cursor = client.scroll("r3", limit=3, consistency=level)
            assert [r["id"] for r in page] == sorted(ids)[:3]
        with pytest.raises(ValidationError, match="strong, bounded, session, eventual"):
            client.count("r3", consistency="linearizable")
        with pytest.raises(ValidationError):
            client.add_session_token("v1:not-a-log=1")


def test_strong_reads_on_other_nodes_see_every_acknowledged_write(cluster: DevCluster) -> None:
    """No polling: each write acknowledged on one node is read with strong consistency on the others at once."""
    writer = cluster.rest(0)
    writer.create_collection("strong", DIM, shards=3, replication_factor=2)  # some shards are not held locally
    readers = (cluster.grpc(1), cluster.rest(2), cluster.grpc(2))
    rng = np.random.default_rng(5)
    total = 0
    for round_ in range(4):
        batch = [f"s{round_}-{i}" for i in range(10)]
        writer.insert_vectors("strong", ids=batch, vectors=rng.normal(size=(10, DIM)).astype(np.float32))
        total += len(batch)
        for reader in readers:
            assert reader.count("strong", consistency="strong") == total
            assert len(reader.get_vectors("strong", batch, include_vectors=False, consistency="strong")) == 10
    gone = [f"s0-{i}" for i in range(5)]
    assert cluster.grpc(2).delete_vectors("strong", gone) == 5
    for reader in (cluster.rest(0), cluster.rest(1)):
        assert reader.get_vectors("strong", gone, consistency="strong") == []
        assert reader.count("strong", consistency="strong") == total - 5
    writer.delete_collection("strong")


def test_a_session_token_carries_a_clients_writes_to_another_client(cluster: DevCluster) -> None:
    a, b = cluster.grpc(0), cluster.rest(2)
    a.create_collection("sess", DIM, shards=2, replication_factor=2)
    assert a.session_token() == "v1:"
    rng = np.random.default_rng(6)
    for round_ in range(4):
        batch = [f"x{round_ * 5 + i}" for i in range(5)]
        a.insert_vectors("sess", ids=batch, vectors=rng.normal(size=(5, DIM)).astype(np.float32))
        token = a.session_token()
        assert token.startswith("v1:c") and token.count("=") in (1, 2)  # one entry per shard written
        b.add_session_token(token)
        assert b.session_token() == token
        assert b.count("sess", consistency="session") == 5 * (round_ + 1)  # at once: b waits for a's entries
        assert len(b.get_vectors("sess", batch, consistency="session")) == 5
    b.update_vector("sess", "x3", metadata={"by": "b"})  # and back: b's write, read by a in its session
    a.add_session_token(b.session_token())
    assert a.get_vectors("sess", ["x3"], consistency="session")[0]["metadata"] == {"by": "b"}
    # Over REST without the SDK: the write's response carries the token in its header; a read sends it back.
    rest = cluster.doc["nodes"][1]["rest"]
    body = json.dumps({"vectors": [{"id": "y", "vector": [0.5] * DIM}]}).encode()
    request = urllib.request.Request(f"{rest}/collections/sess/vectors/batch", body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        header = answer.headers["ProximaDB-Session"]
    assert header.startswith("v1:c")
    other = cluster.doc["nodes"][0]["rest"]
    count = urllib.request.Request(f"{other}/collections/sess/vectors/count?consistency=session",
                                   headers={"ProximaDB-Session": header})
    with urllib.request.urlopen(count, timeout=60) as answer:
        assert json.loads(answer.read())["data"]["count"] == 21
    # Several addresses share one session; the asyncio clients keep theirs as the blocking ones do.
    nodes = cluster.doc["nodes"]
    with connect_rest([nodes[2]["rest"], nodes[0]["rest"]]) as multi:
        multi.insert_vectors("sess", ids=["z"], vectors=np.ones((1, DIM), dtype=np.float32))
        assert multi.session_token().startswith("v1:c")
        b.add_session_token(multi.session_token())
        b.add_session_token(header)  # y's write too: its shard may not be z's, and b's session must cover it
        assert b.count("sess", consistency="session") == 22

    async def asyncio_writes() -> None:
        for connecting in (connect_async_grpc(nodes[1]["grpc"]), connect_async_rest(nodes[2]["rest"])):
            async with connecting as client:
                await client.upsert_vectors("sess", ids=["z"], vectors=np.ones((1, DIM), dtype=np.float32))
                assert client.session_token().startswith("v1:c")
                client.add_session_token(b.session_token())  # every write counted below, not only z's
                assert await client.count("sess", consistency="session") == 22

    asyncio.run(asyncio_writes())
    a.delete_collection("sess")


def test_a_read_whose_target_is_never_applied_times_out_at_its_deadline(cluster: DevCluster) -> None:
    """A session token naming entries the logs do not have: no replica gets there, so the read ends at the
    request's deadline with 504 / RequestTimeoutError, whether the node waits on its own replica or asks a
    peer (whose wait the shard address bounds by the request's time left)."""
    writer = cluster.rest(0)
    writer.create_collection("far", DIM, shards=2, replication_factor=3)
    writer.insert_vectors("far", ids=["a", "b", "c"], vectors=np.eye(3, DIM, dtype=np.float32))
    for client in (cluster.rest(1), cluster.rest(2)):
        wait_until(f"{client.url} holds 'far'", lambda c=client: c.count("far") == 3, WAIT)
    far = "v1:" + ",".join(f"{entry.split('=')[0]}=1000000000000"
                           for entry in writer.session_token()[3:].split(","))
    rest = cluster.doc["nodes"][1]["rest"]
    request = urllib.request.Request(f"{rest}/collections/far/vectors/count?consistency=session",
                                     headers={"ProximaDB-Session": far, "X-Request-Timeout": "2"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 504, info.value.read()
    with connect_grpc(cluster.doc["nodes"][2]["grpc"], timeout=2, retries=0) as late:
        late.add_session_token(far)
        with pytest.raises(RequestTimeoutError):
            late.count("far", consistency="session")
        assert late.count("far", consistency="strong") == 3  # the same client, another level: served
    writer.delete_collection("far")


def test_sigkill_one_daemon_reads_go_on_from_the_others(cluster: DevCluster,
                                                        data: tuple[list[str], np.ndarray]) -> None:
    ids, vectors = data
    victim = cluster.doc["nodes"][2]
    lone = cluster.rest(0)  # one copy of each shard: the one on n3 has no other holder while n3 is down
    lone.create_collection("lone", DIM, shards=3, replication_factor=1)
    lone.insert_vectors("lone", ids=ids[:30], vectors=vectors[:30])
    assert n3_holds_a_shard(lone.get_collection("lone")["placement"])
    os.killpg(victim["pid"], signal.SIGKILL)  # the daemon's master and worker: a crash
    # /metrics keeps answering: the collection that cannot be counted now is left out of the scrape.
    with urllib.request.urlopen(cluster.doc["nodes"][0]["rest"] + "/metrics", timeout=60) as answer:
        scrape = answer.read().decode()
    counted = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
               for line in scrape.splitlines() if line.startswith("proximadb_vectors{")}
    # "lone" is left out while its shard on n3 has no holder (or, should the placement already have
    # moved, counted whole by the new holder).
    assert counted["r3"] == ROWS and counted.get("lone", 30) == 30, scrape
    queries = vectors[10:13]
    want = [[ids[i] for i in row] for row in reference(vectors, queries, 5)]
    n1 = cluster.rest(0)
    # At once, while n3 still counts as live: its shards are read from their other holders.
    assert n1.count("r2") == ROWS
    assert [[h["id"] for h in hits] for hits in n1.search_batch("r2", queries, k=5)] == want
    wait_until("the placement moved off n3",
               lambda: all("n3" not in holders for holders in n1.get_collection("r2")["placement"]), WAIT)
    for client in (n1, cluster.grpc(1)):
        for name in ("r3", "r2"):  # r2: some shards had n3 as one of two holders; the other answers
            assert client.count(name) == ROWS
            assert [[h["id"] for h in hits] for hits in client.search_batch(name, queries, k=5)] == want
            assert len(client.get_vectors(name, ids, include_vectors=False)) == ROWS


def n3_holds_a_shard(placement: list[list[str]]) -> bool:
    return any("n3" in holders for holders in placement)


def test_dev_cluster_stops_everything_on_sigterm(cluster: DevCluster) -> None:
    assert cluster.processes()  # the daemons and NATS servers, before
    out = cluster.stop()
    assert cluster.proc.returncode == 0, out
    assert cluster.processes() == [], out
    assert not (cluster.directory / "cluster.json").exists()


def test_one_node_accepts_one_shard_and_refuses_more(tmp_path: Path) -> None:
    """Without --cluster, shards and replication_factor of 1 are accepted (and ignored), more refused."""
    from _daemon import Daemon

    with Daemon(tmp_path / "data") as daemon:
        for client in (connect_rest(daemon.rest_url), connect_grpc(daemon.grpc_target)):
            with client:
                with pytest.raises(ValidationError, match="cluster mode"):
                    client.create_collection(f"c{client.protocol}", DIM, shards=2)
                with pytest.raises(ValidationError, match="cluster mode"):
                    client.create_collection(f"c{client.protocol}", DIM, replication_factor=3)
                info = client.create_collection(f"c{client.protocol}", DIM, shards=1, replication_factor=1)
                assert info["dimension"] == DIM and "shards" not in info


def test_serve_refuses_an_incomplete_cluster_configuration(tmp_path: Path) -> None:
    """--cluster without --node-id, or with a URL that is not NATS: a one-line error, nothing started."""
    for extra in ([], ["--node-id", "n1", "--cluster", "http://x:1"], ["--node-id", "bad id"]):
        args = ["--cluster", "nats://127.0.0.1:1", *extra] if "--cluster" not in extra else extra
        done = subprocess.run([sys.executable, "-m", "proximadb", "serve", "--data-dir", str(tmp_path / "d"), *args],
                              capture_output=True, text=True, env=child_env(), timeout=60)
        assert done.returncode != 0 and "Error:" in done.stderr, done.stderr
        assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_dev_cluster_restarted_on_its_directory_keeps_the_data(tmp_path: Path) -> None:
    """Stop the whole cluster with SIGTERM and start it again on the same directory (new ports): the
    collections and their rows are there, on every node."""
    first = DevCluster(tmp_path / "dc")
    client = first.rest(0)
    client.create_collection("keep", DIM, shards=2, replication_factor=2)
    client.insert_vectors("keep", ids=[f"k{i}" for i in range(50)], vectors=np.ones((50, DIM), np.float32))
    first.stop()
    assert first.processes() == []
    second = DevCluster(tmp_path / "dc")
    try:
        for i in range(3):
            node = second.rest(i)
            wait_until(f"node {i} serves 'keep'", lambda n=node: n.count("keep") == 50, WAIT)
    finally:
        second.stop()
    assert second.processes() == []
