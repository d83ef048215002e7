"""Named dense vectors (schema v4) through every client (embedded, gRPC, REST, async gRPC, async REST) against a
real daemon: collections declare them (``vectors=``, shown by create / get / list), records carry them (records
form, columns form, handles), ``search(..., using=)`` and ``search_batch`` equal a numpy brute force with each
name's metric, get and scroll give them back, and bad input (an undeclared name, a wrong dimension, a missing or
extra named vector, NaN) is refused with a typed error naming what was wrong and changes nothing; raw REST (JSON
and Avro v4 searches: 400) and gRPC (INVALID_ARGUMENT) too.
"""

from __future__ import annotations

import asyncio
import json
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
from proximadb.api.grpc import convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.codec.avro_search import decode_search_result, encode_search_request
from proximadb.codec.framing import decode_frame, encode_frame
from proximadb.codec.payload import encode_insert
from proximadb.errors import DimensionMismatchError, InvalidVectorError, UnsupportedSchemaVersionError, ValidationError
from proximadb.sdk import collection_calls, create_calls
from proximadb.sdk.collection_calls import Target

DIM = 4
N = 40
DECLARED = {"title": {"dimension": 3, "distance_metric": "cosine"},
            "body": {"dimension": 5, "distance_metric": "euclidean"},
            "tags": {"dimension": 2, "distance_metric": "dot_product"}}
METRICS = {"": "euclidean", **{name: d["distance_metric"] for name, d in DECLARED.items()}}


def _f32(values: Any) -> list[float]:
    return [float(x) for x in np.asarray(values, dtype=np.float32)]


def _records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(41)
    return [{"id": f"n{i:02d}", "vector": _f32(rng.normal(size=DIM)),
             "metadata": {"group": "even" if i % 2 == 0 else "odd"},
             "named_vectors": {name: _f32(rng.normal(size=d["dimension"])) for name, d in DECLARED.items()}}
            for i in range(N)]


RECORDS = _records()


def _rows(using: str | None, records: list[dict[str, Any]] = RECORDS) -> np.ndarray:
    return np.array([r["vector"] if using is None else r["named_vectors"][using] for r in records], np.float64)


def brute(query: list[float], k: int, using: str | None = None, group: str | None = None) -> list[str]:
    """The top-k ids by the metric of ``using`` (None: the default vector's), best first."""
    records = [r for r in RECORDS if group is None or r["metadata"]["group"] == group]
    rows, q = _rows(using, records), np.asarray(query, np.float64)
    metric = METRICS[using or ""]
    if metric == "euclidean":
        key = np.linalg.norm(rows - q, axis=1)
    elif metric == "cosine":
        key = -(rows @ q) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
    else:
        key = -(rows @ q)
    order = np.argsort(key, kind="stable")[:k]
    return [records[i]["id"] for i in order]


QUERIES: list[tuple[str | None, list[float]]] = [
    ("title", [0.3, -1.0, 0.5]), ("body", [0.0, 1.0, -0.5, 0.25, 2.0]), ("tags", [1.0, -0.25]),
    (None, [0.5, 0.5, -1.0, 0.0]),
]


def stored(name: str, vec: list[float]) -> list[float]:
    """A named vector as get gives it back: float32, unit length under cosine (stored normalized)."""
    v = np.asarray(vec, np.float32)
    if METRICS[name] == "cosine":
        v = v / np.linalg.norm(v)
    return [float(x) for x in v.astype(np.float32)]


def _columns(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ids": [r["id"] for r in records], "vectors": np.array([r["vector"] for r in records], np.float32),
            "metadatas": [r["metadata"] for r in records],
            "named_vectors": {name: np.array([r["named_vectors"][name] for r in records], np.float32)
                              for name in DECLARED}}


def _record(named: dict[str, Any], id_: str = "bad") -> dict[str, Any]:
    return {"id": id_, "vector": [0.0] * DIM, "named_vectors": named}


GOOD_NAMED = {"title": [1.0, 0.0, 0.0], "body": [0.0] * 5, "tags": [1.0, 1.0]}
BAD_INSERTS: list[tuple[dict[str, Any], type[ValidationError], list[str]]] = [
    ({k: v for k, v in GOOD_NAMED.items() if k != "body"}, InvalidVectorError, ["body", "missing"]),
    ({**GOOD_NAMED, "summary": [1.0]}, InvalidVectorError, ["summary", "not one of"]),
    ({**GOOD_NAMED, "title": [1.0, 0.0]}, DimensionMismatchError, ["title", "dimension 2", "expected 3"]),
    ({**GOOD_NAMED, "tags": [1.0, float("nan")]}, InvalidVectorError, ["tags", "not finite"]),
]
BAD_SEARCHES: list[tuple[Callable[[Any, str], Any], type[ValidationError], list[str]]] = [
    (lambda db, c: db.search(c, [1.0, 0.0, 0.0], 3, using="nope"), ValidationError, ["nope", "title", "body"]),
    (lambda db, c: db.search(c, [1.0, 0.0], 3, using="title"), DimensionMismatchError, ["title", "3"]),
    (lambda db, c: db.search(c, [1.0] * DIM, 3, using="title"), DimensionMismatchError, ["title"]),
    (lambda db, c: db.search_batch(c, [[1.0, 0.0]], 3, using="tags2"), ValidationError, ["tags2"]),
    (lambda db, c: db.search(c, [1.0, 0.0, 0.0], 3, using=7), ValidationError, ["using"]),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("namedapi") / "data", "--fsync", "never") as d:
        yield d


@pytest.mark.parametrize("kind", KINDS)
def test_named_vectors_on_every_client(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    asyncio.run(_scenario(kind, daemon, tmp_path))


async def _scenario(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    name = f"named-{kind}"
    async with opened(kind, daemon, tmp_path / "data") as db:
        info = await maybe(db.create_collection(name, DIM, distance_metric="euclidean", vectors=DECLARED))
        assert info["vectors"] == DECLARED
        assert (await maybe(db.get_collection(name)))["vectors"] == DECLARED
        listed = {c["name"]: c for c in await maybe(db.list_collections())}
        assert listed[name]["vectors"] == DECLARED

        half = N // 2
        await maybe(db.insert_vectors(name, RECORDS[:half]))  # records with a named_vectors key
        await maybe(db.insert_vectors(name, **_columns(RECORDS[half:])))  # {name: matrix} beside the matrix
        assert await maybe(db.count(name)) == N

        for using, query in QUERIES:
            hits = await maybe(db.search(name, query, 7, using=using))
            assert [h["id"] for h in hits] == brute(query, 7, using), (kind, using)
            hits = await maybe(db.search(name, np.asarray(query, np.float32), 5, using=using, filter={"group": "odd"},
                                         include_metadata=True))
            assert [h["id"] for h in hits] == brute(query, 5, using, "odd"), (kind, using, "filter")
            assert all(h["metadata"]["group"] == "odd" for h in hits)
        # with include_vectors, hits carry the record's named vectors (float32) beside its vector
        hits = await maybe(db.search(name, QUERIES[1][1], 3, using="body", include_vectors=True))
        first = next(r for r in RECORDS if r["id"] == hits[0]["id"])
        assert set(hits[0]["named_vectors"]) == set(DECLARED)
        assert hits[0]["named_vectors"]["body"].dtype == np.float32
        assert hits[0]["named_vectors"]["body"].tolist() == first["named_vectors"]["body"]
        assert "named_vectors" not in (await maybe(db.search(name, QUERIES[1][1], 3, using="body")))[0]
        batch = await maybe(db.search_batch(name, [QUERIES[0][1], [0.0, 0.0, 1.0]], 4, using="title"))
        assert [[h["id"] for h in hits] for hits in batch] == [brute(QUERIES[0][1], 4, "title"),
                                                               brute([0.0, 0.0, 1.0], 4, "title")]
        assert brute(QUERIES[0][1], 7, "title") != brute(QUERIES[0][1] + [0.0], 7)  # the names are not the default

        # get and scroll give every record's named vectors back (float32), with the vectors only
        got = await maybe(db.get_vectors(name, [r["id"] for r in RECORDS]))
        for rec, want in zip(got, RECORDS, strict=True):
            assert set(rec["named_vectors"]) == set(DECLARED)
            for vec_name, vec in want["named_vectors"].items():
                np.testing.assert_allclose(np.asarray(rec["named_vectors"][vec_name]), stored(vec_name, vec),
                                           rtol=1e-6, atol=1e-7)
        page, _cursor = await maybe(db.scroll(name, limit=N, include_vectors=True))
        assert [p["named_vectors"]["tags"].tolist() for p in page] == [r["named_vectors"]["tags"] for r in RECORDS]
        bare = await maybe(db.get_vectors(name, ["n00"], include_vectors=False))
        assert "named_vectors" not in bare[0]

        for named, error, words in BAD_INSERTS:
            bad = _record(named)
            message = await raises(error, lambda bad=bad: db.insert_vectors(name, [bad]))
            assert all(w in message for w in words), (words, message)
        unnamed = {"id": "bad", "vector": [0.0] * DIM}
        message = await raises(InvalidVectorError, lambda: db.insert_vectors(name, [unnamed]))
        assert "missing" in message, message
        for call, error, words in BAD_SEARCHES:
            message = await raises(error, lambda call=call: call(db, name))
            assert all(w in message for w in words), (words, message)
        assert await maybe(db.count(name)) == N  # nothing changed
        assert await maybe(db.get_vectors(name, ["bad"])) == []

        # handles: add with named vectors (columns), query using a name; update_vector keeps them
        handle = db.collection(name)
        if kind.startswith("async"):
            handle = await handle
        await maybe(handle.add(ids=["h1"], vectors=[[9.0] * DIM], metadatas=[{"group": "odd"}],
                               named_vectors={"title": [[0.0, 0.0, 5.0]], "body": [[9.0] * 5], "tags": [[50.0, 50.0]]}))
        hits = await maybe(handle.query([1.0, 1.0], k=1, using="tags"))
        assert [h["id"] for h in hits] == ["h1"]
        await maybe(db.update_vector(name, "h1", vector=[1.0] * DIM, metadata={"group": "even"}))
        kept = (await maybe(handle.get(["h1"])))[0]["named_vectors"]
        assert kept["tags"].tolist() == [50.0, 50.0] and kept["title"].tolist() == [0.0, 0.0, 1.0]
        await maybe(handle.upsert(ids=["h1"], vectors=[[1.0] * DIM],
                                  named_vectors=[{"title": [1.0, 0.0, 0.0], "body": [0.0] * 5, "tags": [-1.0, 0.0]}]))
        assert (await maybe(handle.get(["h1"])))[0]["named_vectors"]["tags"].tolist() == [-1.0, 0.0]
        await maybe(db.delete_vectors(name, ["h1"]))
        assert await maybe(db.count(name)) == N

        # a collection without named vectors: using is refused, naming that none are declared
        plain = f"plain-{kind}"
        info = await maybe(db.create_collection(plain, DIM))
        assert info["vectors"] == {}
        await maybe(db.insert_vectors(plain, [{"id": "p", "vector": [1.0] * DIM}]))
        await raises(ValidationError, lambda: db.search(plain, [1.0], 1, using="title"))
        await raises(InvalidVectorError, lambda: db.insert_vectors(plain, [_record(GOOD_NAMED, "q")]))
        assert await maybe(db.count(plain)) == 1


@pytest.mark.parametrize("kind", ["embedded", "grpc", "rest"])
def test_query_shapes_take_using(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    """search_groups, recommend and hybrid_search with ``using`` (waits on the storage layer's query shapes)."""
    asyncio.run(_shapes(kind, daemon, tmp_path))


async def _shapes(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    name = f"shapes-{kind}"
    async with opened(kind, daemon, tmp_path / "data") as db:
        await maybe(db.create_collection(name, DIM, distance_metric="euclidean", vectors=DECLARED))
        await maybe(db.insert_vectors(name, RECORDS))
        query = QUERIES[0][1]
        groups = await maybe(db.search_groups(name, query, "group", limit=2, group_size=3, using="title"))
        best = brute(query, 1, "title")[0]
        assert groups[0]["hits"][0]["id"] == best
        hits = await maybe(db.recommend(name, [query], k=5, using="title"))
        assert [h["id"] for h in hits] == brute(query, 5, "title")
        hits = await maybe(db.recommend(name, [query], k=2, using="title", include_vectors=True))
        assert hits[0]["named_vectors"]["tags"].dtype == np.float32
        want = next(r for r in RECORDS if r["id"] == hits[0]["id"])["named_vectors"]["tags"]
        assert hits[0]["named_vectors"]["tags"].tolist() == want
        fused = await maybe(db.hybrid_search(name, query, k=5, using="title", fusion="relative_score"))
        assert [h["id"] for h in fused] == brute(query, 5, "title")
        await raises(ValidationError, lambda: db.recommend(name, [query], k=5, using="nope"))


def test_a_client_whose_server_speaks_no_v4_refuses_named_vectors(tmp_path: Path) -> None:
    with proximadb.connect_embedded(tmp_path / "data", fsync="never") as db:
        db.create_collection("c", DIM, vectors=DECLARED)
        db.schema_version = 3  # as agreed with a server that speaks payload versions 1 to 3
        for call in (lambda: db.insert_vectors("c", RECORDS[:2]),
                     lambda: db.insert_vectors("c", **_columns(RECORDS[:2])),
                     lambda: db.search("c", [1.0, 0.0, 0.0], 2, using="title"),
                     lambda: db.hybrid_search("c", [1.0, 0.0, 0.0], k=2, using="title"),
                     lambda: db.create_collection("d", DIM, vectors=DECLARED)):
            with pytest.raises(UnsupportedSchemaVersionError, match=r"version 4.*upgrade the server"):
                call()
        assert db.count("c") == 0
        assert [c["name"] for c in db.list_collections()] == ["c"]  # "d" was refused before the request


def test_documents_with_named_vectors_are_refused_by_a_v3_server_before_any_embedding() -> None:
    embedded: list[str] = []
    target = Target("c", embedding_function=lambda docs: embedded.extend(docs) or [[1.0, 0.0, 0.0]] * len(docs))
    plan = collection_calls._embed_and_write(target, 3, 10, None, ["a doc"], [{}], False, None,
                                             named_vectors=[{"title": [1.0, 0.0]}])
    with pytest.raises(UnsupportedSchemaVersionError, match="add/upsert of documents: named vectors need "
                                                            "payload schema version 4"):
        next(plan)
    assert embedded == []


def test_a_server_that_ignored_the_named_vectors_of_a_create_is_an_error() -> None:
    """A v3 gRPC server keeps proto field 22 (vectors_json) as an unknown field and creates the collection
    without them: the answer says so, and the client raises instead of returning a half-made collection."""
    plan = create_calls.create_collection("c", DIM, vectors=DECLARED, schema_version=4)
    assert next(plan).method == "create_collection"
    with pytest.raises(UnsupportedSchemaVersionError, match="created collection 'c' without its named vectors"):
        plan.send({"name": "c", "dimension": DIM, "distance_metric": "cosine"})


def _post(daemon: Daemon, path: str, body: Any, *, data: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(daemon.rest_url + path, data=data if data is not None else json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(daemon: Daemon, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(daemon.rest_url + path, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _avro_search(query: list[float], k: int, using: str | None, version: int = 4) -> bytes:
    datum = encode_search_request(np.asarray([query], np.float32), k, None, False, True, None, None, False, using,
                                  version)
    return encode_frame("vector_search", datum, version)


def test_raw_rest(daemon: Daemon) -> None:
    status, answer = _post(daemon, "/collections", {"name": "raw", "dimension": DIM, "distance_metric": "euclidean",
                                                    "vectors": DECLARED})
    assert status == 201 and answer["data"]["vectors"] == DECLARED, answer
    status, answer = _post(daemon, "/collections/raw/vectors/batch", {"vectors": RECORDS})
    assert status == 201 and answer["data"]["count"] == N, answer
    status, answer = _get(daemon, "/collections/raw/vectors/n03")
    assert status == 200, answer
    for vec_name, vec in RECORDS[3]["named_vectors"].items():
        np.testing.assert_allclose(answer["data"]["named_vectors"][vec_name], stored(vec_name, vec), rtol=1e-6)
    status, answer = _post(daemon, "/collections/raw/vectors/get", {"ids": ["n00", "n01"]})
    assert [r["named_vectors"]["tags"] for r in answer["data"]] == [RECORDS[0]["named_vectors"]["tags"],
                                                                    RECORDS[1]["named_vectors"]["tags"]]
    for using, query in QUERIES:
        status, answer = _post(daemon, "/collections/raw/search", {"vector": query, "k": 6, "using": using})
        assert status == 200 and [h["id"] for h in answer["data"]] == brute(query, 6, using), (using, answer)
        status, answer = _post(daemon, "/collections/raw/search", None, data=_avro_search(query, 6, using),
                               content_type="application/avro")
        assert status == 200 and [h["id"] for h in answer["data"]] == brute(query, 6, using), (using, answer)
    for data, content_type in [(None, "application/json"),
                               (encode_frame("vector_search", encode_search_request(
                                   np.asarray([QUERIES[2][1]], np.float32), 2, None, True, True, None, None, False,
                                   "tags", 4), 4), "application/avro")]:
        status, answer = _post(daemon, "/collections/raw/search", {"vector": QUERIES[2][1], "k": 2, "using": "tags",
                                                                   "include_vectors": True},
                               data=data, content_type=content_type)
        assert status == 200, answer
        hit = answer["data"][0]
        assert hit["id"] == brute(QUERIES[2][1], 1, "tags")[0]
        assert hit["named_vectors"]["tags"] == next(r for r in RECORDS if r["id"] == hit["id"])["named_vectors"]["tags"]
    status, answer = _post(daemon, "/collections/raw/search/batch", {"queries": [QUERIES[1][1]], "k": 3,
                                                                     "using": "body"})
    assert status == 200 and [h["id"] for h in answer["data"][0]] == brute(QUERIES[1][1], 3, "body")
    # a v3 Avro search has no using: the default vector
    status, answer = _post(daemon, "/collections/raw/search", None, data=_avro_search(QUERIES[3][1], 4, None, 3),
                           content_type="application/avro")
    assert status == 200 and [h["id"] for h in answer["data"]] == brute(QUERIES[3][1], 4)

    bad_searches = [
        ({"vector": [1.0, 0.0, 0.0], "using": "nope"}, ["nope", "title"]),
        ({"vector": [1.0, 0.0], "using": "title"}, ["title"]),
        ({"vector": [1.0, 0.0, 0.0], "using": 3}, ["using"]),
        ({"vector": [1.0, 0.0, 0.0], "using": ["title"]}, ["using"]),
    ]
    for body, words in bad_searches:
        status, answer = _post(daemon, "/collections/raw/search", body)
        assert status == 400 and all(w in answer["error"]["message"] for w in words), (body, answer)
    status, answer = _post(daemon, "/collections/raw/search", None, data=_avro_search([1.0, 0.0, 0.0], 3, "nope"),
                           content_type="application/avro")
    assert status == 400 and "nope" in answer["error"]["message"], answer
    status, answer = _post(daemon, "/collections/raw/search", None, data=_avro_search([1.0, 0.0], 3, "title"),
                           content_type="application/avro")
    assert status == 400 and answer["error"]["code"] == "dimension_mismatch", answer

    bad_records = [
        (_record({k: v for k, v in GOOD_NAMED.items() if k != "title"}), ["title", "missing"]),
        (_record({**GOOD_NAMED, "extra": [1.0]}), ["extra"]),
        (_record({**GOOD_NAMED, "body": [1.0]}), ["body", "dimension"]),
        (_record({**GOOD_NAMED, "body": [1.0, "x", 0, 0, 0]}), ["body", "numbers"]),
        (_record({**GOOD_NAMED, "tags": [1.0, 1e39]}), ["tags"]),  # beyond float32: not finite once stored
        ({**_record(GOOD_NAMED), "named_vectors": [1.0]}, ["named_vectors"]),
        ({"id": "bad", "vector": [0.0] * DIM}, ["missing"]),
    ]
    for record, words in bad_records:
        status, answer = _post(daemon, "/collections/raw/vectors/batch", {"vectors": [RECORDS[0] | {"id": "ok"},
                                                                                      record]})
        assert status == 400 and all(w in answer["error"]["message"] for w in words), (record, answer)
    bad_collections = [
        ({"vectors": {"bad name": {"dimension": 3}}}, ["bad name"]),
        ({"vectors": {"t": {"dimension": 0}}}, ["dimension"]),
        ({"vectors": {"t": {"dimension": 3, "distance_metric": "manhattan"}}}, ["distance_metric"]),
        ({"vectors": {"t": {"dimension": 3}, "T": {"dimension": 3}}}, ["case"]),
        ({"vectors": {"t": {}}}, ["dimension"]),
        ({"vectors": ["t"]}, ["vectors"]),
    ]
    for extra, words in bad_collections:
        status, answer = _post(daemon, "/collections", {"name": "rawbad", "dimension": DIM, **extra})
        assert status == 400 and all(w in answer["error"]["message"] for w in words), (extra, answer)
    status, answer = _get(daemon, "/collections/rawbad")
    assert status == 404
    status, answer = _post(daemon, "/collections/raw/vectors/count", {})
    assert answer["data"]["count"] == N  # nothing changed


def test_raw_grpc(daemon: Daemon) -> None:
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        made = stub.CreateCollection(pb.CreateCollectionRequest(name="rawg", dimension=DIM,
                                                                distance_metric="euclidean",
                                                                vectors_json=json.dumps(DECLARED)))
        assert json.loads(made.vectors_json) == DECLARED
        assert json.loads(stub.GetCollection(pb.CollectionRef(collection="rawg")).vectors_json) == DECLARED
        stub.Insert(pb.PayloadRequest(collection="rawg", payload=encode_insert(RECORDS, schema_version=4)))
        for using, query in QUERIES:
            answer = stub.Search(pb.PayloadRequest(collection="rawg", payload=_avro_search(query, 5, using)))
            version, _op, datum = decode_frame(answer.payload)
            assert [h["id"] for h in decode_search_result(datum, version)[0]] == brute(query, 5, using), using
        got = stub.Get(pb.GetRequest(collection="rawg", ids=["n05"], include_vectors=True, schema_version=4))
        records, _ = convert.records_from_proto(got, include_vectors=True)
        assert set(records[0]["named_vectors"]) == set(DECLARED)
        for vec_name, vec in RECORDS[5]["named_vectors"].items():
            np.testing.assert_allclose(records[0]["named_vectors"][vec_name], stored(vec_name, vec), rtol=1e-6)
        older = stub.Get(pb.GetRequest(collection="rawg", ids=["n05"], include_vectors=True, schema_version=3))
        assert "named_vectors" not in convert.records_from_proto(older, include_vectors=True)[0][0]
        bad = [
            lambda: stub.Search(pb.PayloadRequest(collection="rawg", payload=_avro_search([1.0, 0.0, 0.0], 3, "no"))),
            lambda: stub.Search(pb.PayloadRequest(collection="rawg", payload=_avro_search([1.0, 0.0], 3, "title"))),
            lambda: stub.Insert(pb.PayloadRequest(collection="rawg", payload=encode_insert(
                [{"id": "x", "vector": [0.0] * DIM}], schema_version=4))),
            lambda: stub.CreateCollection(pb.CreateCollectionRequest(name="rawg2", dimension=DIM,
                                                                     vectors_json='{"a": {"dimension": -1}}')),
            lambda: stub.CreateCollection(pb.CreateCollectionRequest(name="rawg2", dimension=DIM,
                                                                     vectors_json="not json")),
        ]
        for call in bad:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert stub.Count(pb.CountRequest(collection="rawg")).count == N


def _put(daemon: Daemon, path: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(daemon.rest_url + path, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rest_put_replaces_a_record_with_its_named_vectors(daemon: Daemon) -> None:
    status, _ = _post(daemon, "/collections", {"name": "put", "dimension": DIM, "vectors": DECLARED})
    assert status == 201
    status, answer = _put(daemon, "/collections/put/vectors/p1", {"vector": [1.0] * DIM, "named_vectors": GOOD_NAMED})
    assert status == 200, answer
    status, answer = _get(daemon, "/collections/put/vectors/p1")
    assert answer["data"]["named_vectors"]["tags"] == GOOD_NAMED["tags"]
    for body, words in [({"vector": [1.0] * DIM}, ["missing"]),
                        ({"metadata": {}, "named_vectors": GOOD_NAMED}, ["vector"]),
                        ({"vector": [1.0] * DIM, "named_vectors": {**GOOD_NAMED, "tags": [1.0]}}, ["tags"])]:
        status, answer = _put(daemon, "/collections/put/vectors/p1", body)
        assert status == 400 and all(w in answer["error"]["message"] for w in words), (body, answer)
    status, answer = _get(daemon, "/collections/put/vectors/p1")
    assert answer["data"]["named_vectors"]["tags"] == GOOD_NAMED["tags"]  # unchanged


def test_get_or_create_compares_the_named_vectors(tmp_path: Path) -> None:
    from proximadb.errors import CollectionConfigMismatchError

    with proximadb.connect_embedded(tmp_path / "data", fsync="never") as db:
        first = db.get_or_create_collection("c", DIM, vectors={"title": {"dimension": 3}})
        assert first.info()["vectors"] == {"title": {"dimension": 3, "distance_metric": "cosine"}}
        again = db.get_or_create_collection("c", DIM, vectors={"title": {"dimension": 3, "distance_metric": "cosine"}})
        assert again.name == "c"
        for other in ({"title": {"dimension": 4}}, {"title": {"dimension": 3, "distance_metric": "euclidean"}},
                      {"body": {"dimension": 3}}, {}):
            with pytest.raises(CollectionConfigMismatchError, match="named vectors"):
                db.get_or_create_collection("c", DIM, vectors=other)
        db.get_or_create_collection("c", DIM)  # vectors not given: not compared


# a name's own index and quantization settings: declared as given, described whole
OWN_DECLARED = {"q": {"dimension": 6, "indexing_algorithm": "hnsw", "index_params": {"M": 8},
                      "quantization": {"type": "int8"}},
                "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "flat"},
                "c": {"dimension": 3}}
OWN_DESCRIBED = {"q": {"dimension": 6, "distance_metric": "cosine", "indexing_algorithm": "hnsw",
                       "index_params": {"M": 8, "quantization": {"type": "int8", "rescore": True,
                                                                 "oversampling": 2.0}}},
                 "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "flat",
                       "index_params": {}},
                 "c": {"dimension": 3, "distance_metric": "cosine"}}  # the collection's settings


def test_per_name_index_settings_round_trip_over_rest_and_grpc(daemon: Daemon) -> None:
    status, answer = _post(daemon, "/collections", {"name": "own", "dimension": DIM, "indexing_algorithm": "ivf",
                                                    "vectors": OWN_DECLARED})
    assert status == 201 and answer["data"]["vectors"] == OWN_DESCRIBED, answer
    assert _get(daemon, "/collections/own")[1]["data"]["vectors"] == OWN_DESCRIBED
    status, answer = _post(daemon, "/collections", {"name": "own-bad", "dimension": DIM, "vectors": {
        "q": {"dimension": 6, "indexing_algorithm": "flat", "quantization": {"type": "int8"}}}})
    assert status == 400 and "vectors['q']" in json.dumps(answer), answer
    assert _get(daemon, "/collections/own-bad")[0] == 404
    changed = {**OWN_DESCRIBED, "f": {"dimension": 4, "distance_metric": "euclidean", "indexing_algorithm": "hnsw",
                                      "quantization": {"type": "binary"}}}
    req = urllib.request.Request(daemon.rest_url + "/collections/own", data=json.dumps({"vectors": changed}).encode(),
                                 method="PATCH", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        updated = json.loads(resp.read())["data"]["vectors"]
    assert updated["f"]["indexing_algorithm"] == "hnsw" and updated["f"]["index_params"]["quantization"]["type"] \
        == "binary" and updated["q"] == OWN_DESCRIBED["q"]
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        stub = pb_grpc.ProximaDBStub(channel)
        assert json.loads(stub.GetCollection(pb.CollectionRef(collection="own")).vectors_json) == updated
        made = stub.CreateCollection(pb.CreateCollectionRequest(name="owng", dimension=DIM,
                                                                vectors_json=json.dumps(OWN_DECLARED)))
        assert json.loads(made.vectors_json) == OWN_DESCRIBED
        assert json.loads(stub.GetCollection(pb.CollectionRef(collection="owng")).vectors_json) == OWN_DESCRIBED
        again = stub.UpdateCollection(convert.update_request_from_changes("owng", {"vectors": {
            **OWN_DESCRIBED, "q": {"dimension": 6, "indexing_algorithm": "flat"}}}))
        assert json.loads(again.vectors_json)["q"] == {"dimension": 6, "distance_metric": "cosine",
                                                       "indexing_algorithm": "flat", "index_params": {}}
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateCollection(pb.CreateCollectionRequest(name="owng2", dimension=DIM, vectors_json=json.dumps(
                {"q": {"dimension": 6, "indexing_algorithm": "ivf", "index_params": {"M": 4}}})))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "vectors['q']" in caught.value.details()


@pytest.mark.parametrize("kind", KINDS)
def test_per_name_index_settings_on_every_client(kind: str, daemon: Daemon, tmp_path: Path) -> None:
    async def scenario() -> None:
        name = f"own-{kind}"
        async with opened(kind, daemon, tmp_path / "data") as db:
            info = await maybe(db.create_collection(name, DIM, indexing_algorithm="ivf", vectors=OWN_DECLARED))
            assert info["vectors"] == OWN_DESCRIBED
            assert (await maybe(db.get_collection(name)))["vectors"] == OWN_DESCRIBED
            again = await maybe(db.create_collection(name, DIM, indexing_algorithm="ivf", vectors=OWN_DECLARED,
                                                     exist_ok=True))
            assert again["vectors"] == OWN_DESCRIBED
            changed = {**OWN_DESCRIBED, "c": {"dimension": 3, "indexing_algorithm": "hnsw"}}
            updated = await maybe(db.update_collection(name, vectors=changed))
            assert updated["vectors"]["c"] == {"dimension": 3, "distance_metric": "cosine",
                                               "indexing_algorithm": "hnsw", "index_params": {}}
            wider = {**changed, "c": {"dimension": 4}}
            await raises(ValidationError, lambda: db.update_collection(name, vectors=wider))

    asyncio.run(scenario())
