"""Sparse vectors through every client (embedded, gRPC, REST, async gRPC, async REST) against a real daemon:
collections declare them, records carry them (records form, columns form, handles), search_sparse equals a
numpy brute force, get and scroll give them back, hybrid search fuses a sparse part, and bad input is refused
with ValidationError naming what was wrong and changes nothing; raw REST (400) and gRPC (INVALID_ARGUMENT) too.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _any_client import KINDS, maybe, opened, raises
from _daemon import Daemon

import proximadb
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.errors import UnsupportedSchemaVersionError, ValidationError
from proximadb.fusion import fuse

DIM = 4
N = 48
VOCAB = 40
WORDS = ["river", "stone", "cloud", "forest", "desert"]


def _sparse(rng: np.random.Generator, most: int) -> dict[str, list[Any]]:
    nnz = int(rng.integers(1, most + 1))
    indices = sorted(int(i) for i in rng.choice(VOCAB, size=nnz, replace=False))
    values = [float(np.float32(v)) for v in rng.uniform(0.05, 2.0, size=nnz)]  # float32-exact: get gives them back
    return {"indices": indices, "values": values}


def _records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(12)
    out = []
    for i in range(N):
        record: dict[str, Any] = {
            "id": f"s{i:02d}", "vector": [float(x) for x in rng.normal(size=DIM).astype(np.float32)],
            "metadata": {"group": "even" if i % 2 == 0 else "odd", "document": f"{WORDS[i % 5]} {WORDS[i % 3]}"},
        }
        sparse = {}
        if i % 7 != 3:  # some records have no "kw" vector
            sparse["kw"] = _sparse(rng, 8)
        if i % 3 == 0:
            sparse["title"] = _sparse(rng, 3)
        if sparse:
            record["sparse_vectors"] = sparse
        out.append(record)
    return out


RECORDS = _records()
EVEN = {"group": "even"}


def brute(name: str, indices: list[int], values: list[float], k: int, flt: dict[str, Any] | None = None,
          records: list[dict[str, Any]] = RECORDS) -> list[tuple[str, float]]:
    """The top-k by dot product over the records that share an index with the query, best first."""
    query = dict(zip(indices, values, strict=True))
    scored = []
    for record in records:
        if flt is not None and record["metadata"]["group"] != flt["group"]:
            continue
        vec = record.get("sparse_vectors", {}).get(name)
        if vec is None or not set(vec["indices"]) & set(query):
            continue
        score = sum(query[i] * v for i, v in zip(vec["indices"], vec["values"], strict=True) if i in query)
        scored.append((record["id"], score))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:k]


def idf_weighted(name: str, indices: list[int], values: list[float]) -> list[float]:
    """The query values times their IDF among the records carrying ``name`` (storage/sparse_search.py)."""
    carried = [r["sparse_vectors"][name] for r in RECORDS if name in r.get("sparse_vectors", {})]
    out = []
    for i, v in zip(indices, values, strict=True):
        n = sum(1 for vec in carried if i in vec["indices"])
        out.append(v * math.log1p((len(carried) - n + 0.5) / (n + 0.5)))
    return out


def same_hits(hits: list[dict[str, Any]], want: list[tuple[str, float]], where: str) -> None:
    assert [h["id"] for h in hits] == [i for i, _ in want], where
    for hit, (_, score) in zip(hits, want, strict=True):
        assert math.isclose(hit["score"], score, rel_tol=1e-5, abs_tol=1e-6), (where, hit, score)


QUERIES: list[tuple[str, list[int], list[float], int, dict[str, Any] | None]] = [
    ("kw", [1, 5, 9, 17, 30], [1.0, 0.5, 2.0, 1.5, 0.25], 5, None),
    ("kw", [0, 2, 3, 4, 6, 8, 11, 13, 21, 34, 39], [0.3] * 11, 12, EVEN),
    ("kw", list(range(VOCAB)), [1.0] * VOCAB, N, None),  # every row that has "kw"
    ("title", [2, 7, 19, 33], [2.0, 1.0, 0.5, 1.25], 4, None),
    ("kw", [], [], 5, None),  # an empty query: no hit
]


def _columns(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ids": [r["id"] for r in records], "vectors": np.array([r["vector"] for r in records], np.float32),
            "metadatas": [r["metadata"] for r in records],
            "sparse_vectors": [r.get("sparse_vectors") for r in records]}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("sparseapi") / "data", "--fsync", "never") as d:
        yield d


BAD_SEARCHES: list[tuple[Callable[[Any, str], Any], str]] = [
    (lambda db, c: db.search_sparse(c, "nope", [1], [1.0]), "nope"),
    (lambda db, c: db.search_sparse(c, "kw", [3, 1], [1.0, 1.0]), "unsorted"),
    (lambda db, c: db.search_sparse(c, "kw", [2, 2], [1.0, 1.0]), "duplicated"),
    (lambda db, c: db.search_sparse(c, "kw", [-1, 2], [1.0, 1.0]), "negative"),
    (lambda db, c: db.search_sparse(c, "kw", [1, 2], [1.0, float("nan")]), "not finite"),
    (lambda db, c: db.search_sparse(c, "kw", [1, 2], [1.0]), "must match"),
    (lambda db, c: db.search_sparse(c, "kw", [1], [1.0], k=0), "k"),
    (lambda db, c: db.hybrid_search(c), "at least one part"),
    (lambda db, c: db.hybrid_search(c, sparse={"name": "nope", "indices": [1], "values": [1.0]}), "nope"),
    (lambda db, c: db.hybrid_search(c, [0.0] * DIM, sparse={"name": "kw", "indices": [1], "values": [1.0]},
                                    weights=[1.0, 1.0, 1.0]), "weights"),
    (lambda db, c: db.hybrid_search(c, text="river", sparse={"name": "kw", "indices": [4, 1], "values": [1, 1]}),
     "unsorted"),
    (lambda db, c: db.hybrid_search(c, text="river", depth={"vector": 5}), "depth"),
]
BAD_INSERTS: list[tuple[dict[str, Any], str]] = [
    ({"undeclared": {"indices": [1], "values": [1.0]}}, "undeclared"),
    ({"kw": {"indices": [5, 2], "values": [1.0, 1.0]}}, "unsorted"),
    ({"kw": {"indices": [2, 2], "values": [1.0, 1.0]}}, "duplicated"),
    ({"kw": {"indices": [-4], "values": [1.0]}}, "negative"),
    ({"kw": {"indices": [1, 2], "values": [1.0]}}, "must match"),
    ({"kw": {"indices": [1], "values": [float("inf")]}}, "not finite"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_vectors_on_every_client(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    asyncio.run(_scenario(kind, daemon, tmp_path))


async def _scenario(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    name = f"sparse-{kind}"
    async with opened(kind, daemon, tmp_path / "data") as db:
        info = await maybe(db.create_collection(name, DIM, distance_metric="euclidean", sparse_vectors={"kw": {}}))
        assert info["sparse_vectors"] == {"kw": {"modifier": "none"}}
        # "title" is not declared yet: the batch is refused whole, naming it
        message = await raises(ValidationError, lambda: db.insert_vectors(name, RECORDS[:4]))
        assert "title" in message, message
        assert await maybe(db.count(name)) == 0
        info = await maybe(db.update_collection(name, sparse_vectors={"kw": {}, "title": {}}))
        assert set(info["sparse_vectors"]) == {"kw", "title"}
        assert set((await maybe(db.get_collection(name)))["sparse_vectors"]) == {"kw", "title"}

        half = N // 2
        await maybe(db.insert_vectors(name, RECORDS[:half]))  # records with a sparse_vectors key
        await maybe(db.insert_vectors(name, **_columns(RECORDS[half:])))  # one sparse_vectors entry per row

        for vec_name, indices, values, k, flt in QUERIES:
            hits = await maybe(db.search_sparse(name, vec_name, indices, values, k, filter=flt))
            same_hits(hits, brute(vec_name, indices, values, k, flt), f"{kind} {vec_name} {indices} {flt}")
            assert all(h["metadata"]["group"] == (flt or h["metadata"])["group"] for h in hits)
        assert len(brute(*QUERIES[2][:4])) > 30 and brute(*QUERIES[4][:4]) == []  # the queries are not trivial
        # numpy queries, no metadata, a threshold
        idx, val = np.array([1, 5, 9, 17, 30], np.int64), np.array([1.0, 0.5, 2.0, 1.5, 0.25], np.float32)
        want = brute("kw", idx.tolist(), val.tolist(), 10)
        hits = await maybe(db.search_sparse(name, "kw", idx, val, 10, include_metadata=False))
        same_hits(hits, want, "numpy query")
        assert all("metadata" not in h for h in hits)
        cut = want[3][1]
        hits = await maybe(db.search_sparse(name, "kw", idx, val, 10, score_threshold=cut))
        same_hits(hits, [w for w in want if w[1] >= cut], "threshold")

        # get and scroll give the sparse vectors back (only on records that have some)
        got = await maybe(db.get_vectors(name, [r["id"] for r in RECORDS]))
        assert [g.get("sparse_vectors") for g in got] == [r.get("sparse_vectors") for r in RECORDS]
        page, _cursor = await maybe(db.scroll(name, limit=N, include_vectors=True))
        assert [p.get("sparse_vectors") for p in page] == [r.get("sparse_vectors") for r in RECORDS]

        # hybrid: a sparse part alone, and fused with a text part (RRF over the two rankings)
        sparse = {"name": "kw", "indices": [1, 5, 9, 17, 30], "values": [1.0, 0.5, 2.0, 1.5, 0.25]}
        alone = await maybe(db.hybrid_search(name, sparse=sparse, k=6, fusion="relative_score"))
        assert [h["id"] for h in alone] == [i for i, _ in brute("kw", sparse["indices"], sparse["values"], 6)]
        text_hits = await maybe(db.search_text(name, "river stone", 100))
        fused = await maybe(db.hybrid_search(name, text="river stone", sparse=sparse, k=8, filter=None))
        ranked = [[(h["id"], h["score"]) for h in text_hits],  # the parts in the order [vector, text, sparse]
                  [(i, s) for i, s in brute("kw", sparse["indices"], sparse["values"], 100)]]
        expected = fuse("rrf", ranked, k=60.0, limit=8)
        assert [h["id"] for h in fused] == [i for i, _ in expected]
        for hit, (_, score) in zip(fused, expected, strict=True):
            assert math.isclose(hit["score"], score, rel_tol=1e-9)
        three = await maybe(db.hybrid_search(name, RECORDS[0]["vector"], "desert", 5, sparse=sparse,
                                             fusion="dbsf", weights=[0.2, 0.3, 0.5],
                                             depth={"vector": 10, "text": 20, "sparse": 30}, filter=EVEN))
        assert 0 < len(three) <= 5 and all(h["metadata"]["group"] == "even" for h in three)
        old_style = await maybe(db.hybrid_search(name, RECORDS[1]["vector"], "forest", 3))  # vector + text
        assert len(old_style) == 3

        # the "idf" modifier: set by an update, refused when unknown, weighs by every record carrying "title"
        message = await raises(ValidationError, lambda: db.update_collection(
            name, sparse_vectors={"kw": {}, "title": {"modifier": "bm42"}}))
        assert "modifier must be one of 'none', 'idf'" in message, message
        info = await maybe(db.update_collection(name, sparse_vectors={"kw": {}, "title": {"modifier": "idf"}}))
        assert info["sparse_vectors"]["title"] == {"modifier": "idf"}
        q_idx, q_val = [2, 7, 19, 33], [2.0, 1.0, 0.5, 1.25]
        hits = await maybe(db.search_sparse(name, "title", q_idx, q_val, 6))
        same_hits(hits, brute("title", q_idx, idf_weighted("title", q_idx, q_val), 6), f"{kind} idf")
        await maybe(db.update_collection(name, sparse_vectors={"kw": {}, "title": {}}))

        for call, word in BAD_SEARCHES:
            message = await raises(ValidationError, lambda call=call: call(db, name))
            assert word in message, (word, message)
        for sparse_vectors, word in BAD_INSERTS:
            record = {"id": "bad", "vector": [0.0] * DIM, "sparse_vectors": sparse_vectors}
            message = await raises(ValidationError, lambda r=record: db.insert_vectors(name, [r]))
            assert word in message, (word, message)
        assert await maybe(db.count(name)) == N  # nothing changed
        assert await maybe(db.get_vectors(name, ["bad"])) == []

        # handles: add with sparse vectors, search_sparse, hybrid with a sparse part; update_vector keeps them
        handle = db.collection(name)
        if kind.startswith("async"):
            handle = await handle
        extra = {"kw": {"indices": [41, 50], "values": [3.0, 1.0]}}
        await maybe(handle.add(ids=["h1"], vectors=[[0.0] * DIM], metadatas=[{"group": "odd"}],
                               sparse_vectors=[extra]))
        hits = await maybe(handle.search_sparse("kw", [41], [2.0], k=3))
        assert [(h["id"], h["score"]) for h in hits] == [("h1", 6.0)]
        fused = await maybe(handle.hybrid_search(sparse={"name": "kw", "indices": [50], "values": [1.0]}, k=2))
        assert [h["id"] for h in fused] == ["h1"]
        await maybe(db.update_vector(name, "h1", vector=[1.0] * DIM, metadata={"group": "even"}))
        assert (await maybe(handle.get(["h1"])))[0]["sparse_vectors"] == extra
        await maybe(db.delete_vectors(name, ["h1"]))
        assert await maybe(handle.search_sparse("kw", [41], [2.0], k=3)) == []


def test_a_client_whose_server_speaks_no_v3_refuses_sparse_inserts(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "data", fsync="never") as db:
        db.create_collection("c", DIM, sparse_vectors={"kw": {}})
        db.schema_version = 2  # as agreed with a server that speaks payload versions 1 and 2
        for call in (lambda: db.insert_vectors("c", RECORDS[:2]),
                     lambda: db.insert_vectors("c", **_columns(RECORDS[:2]))):
            with pytest.raises(UnsupportedSchemaVersionError, match="version 3"):
                call()
        db.insert_vectors("c", [{"id": "plain", "vector": [1.0] * DIM}])  # without sparse vectors: as before
        assert db.count("c") == 1


def _post(daemon: Daemon, path: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(daemon.rest_url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_raw_rest_and_grpc(daemon: Daemon) -> None:
    status, answer = _post(daemon, "/collections", {"name": "raw", "dimension": DIM,
                                                    "sparse_vectors": {"kw": {}, "title": {}}})
    assert status == 201 and set(answer["data"]["sparse_vectors"]) == {"kw", "title"}, answer
    status, answer = _post(daemon, "/collections/raw/vectors/batch", {"vectors": RECORDS})
    assert status == 201 and answer["data"]["count"] == N, answer
    status, answer = _post(daemon, "/collections/raw/vectors/get", {"ids": ["s00", "s10"]})
    assert [r.get("sparse_vectors") for r in answer["data"]] == [RECORDS[0]["sparse_vectors"], None]
    good = {"name": "kw", "indices": [1, 5, 9], "values": [1.0, 0.5, 2.0], "k": 4, "filter": EVEN}
    status, answer = _post(daemon, "/collections/raw/search/sparse", good)
    assert status == 200
    same_hits(answer["data"], brute("kw", [1, 5, 9], [1.0, 0.5, 2.0], 4, EVEN), "raw REST")
    status, answer = _post(daemon, "/collections/raw/hybrid_search",
                           {"sparse": {"name": "title", "indices": [2, 7], "values": [1.0, 1.0]}, "k": 3})
    assert status == 200 and [h["id"] for h in answer["data"]] == [i for i, _ in brute("title", [2, 7], [1, 1], 3)]
    bad_bodies = [
        ({"name": "kw", "indices": [2, 1], "values": [1, 1]}, "unsorted"),
        ({"name": "kw", "indices": [1], "values": [1, 2]}, "must match"),
        ({"name": "nope", "indices": [1], "values": [1]}, "nope"),
        ({"name": "kw", "indices": [1.5], "values": [1]}, "indices"),
        ({"name": "kw", "indices": [1], "values": ["x"]}, "values"),
        ({"indices": [1], "values": [1]}, "name"),
        ({"name": "kw", "indices": [1], "values": [1], "bogus": 1}, "bogus"),
    ]
    for body, word in bad_bodies:
        status, answer = _post(daemon, "/collections/raw/search/sparse", body)
        assert status == 400 and answer["error"]["code"] in ("validation_error", "invalid_vector"), (body, answer)
        assert word in answer["error"]["message"], (body, answer)
    for body, word in [({"k": 3}, "at least one part"), ({"sparse": {"name": "kw"}}, "indices"),
                       ({"text": "x", "weights": [1, 2]}, "weights")]:
        status, answer = _post(daemon, "/collections/raw/hybrid_search", body)
        assert status == 400 and word in answer["error"]["message"], (body, answer)
    bad_record = {"id": "bad", "vector": [0.0] * DIM, "sparse_vectors": {"kw": {"indices": [3, 3], "values": [1, 1]}}}
    status, answer = _post(daemon, "/collections/raw/vectors/batch", {"vectors": [bad_record]})
    assert status == 400 and "duplicated" in answer["error"]["message"], answer
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        info = stub.GetCollection(pb.CollectionRef(collection="raw"))
        assert set(json.loads(info.sparse_vectors_json)) == {"kw", "title"}
        ok = stub.SearchSparse(pb.JsonSearchRequest(collection="raw", request_json=json.dumps(good)))
        assert [h.id for h in ok.hits] == [i for i, _ in brute("kw", [1, 5, 9], [1.0, 0.5, 2.0], 4, EVEN)]
        for text in ('{"name": "kw", "indices": [-1], "values": [1]}', '{"name": "zz", "indices": [], "values": []}',
                     "not json"):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SearchSparse(pb.JsonSearchRequest(collection="raw", request_json=text))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        made = stub.CreateCollection(pb.CreateCollectionRequest(name="raw2", dimension=DIM,
                                                                sparse_vectors_json='{"kw": {}}'))
        assert set(json.loads(made.sparse_vectors_json)) == {"kw"}
    status, answer = _post(daemon, "/collections/raw/vectors/count", {})
    assert answer["data"]["count"] == N
