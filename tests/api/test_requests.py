"""The typed requests of proximadb/service/requests.py: one set of shape checks for REST and gRPC."""

from __future__ import annotations

import dataclasses

import pytest

from proximadb.api.grpc import convert
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.errors import ValidationError
from proximadb.service.requests import (
    Count,
    CreateCollection,
    DeleteVectors,
    GetVectors,
    InsertRecords,
    PutVector,
    Scroll,
    SearchParams,
    SearchSparse,
    SearchText,
    UpdateCollection,
    UpdateMetadata,
)


@pytest.mark.parametrize(("parse", "body", "message"), [
    (CreateCollection.from_json, [], "collection body must be a JSON object"),
    (CreateCollection.from_json, {"name": "c", "dimension": 3, "colour": 1}, "unknown collection field(s): colour"),
    (CreateCollection.from_json, {"name": "c"}, "a collection needs 'name' and 'dimension'"),
    (UpdateCollection.from_json, [1], "collection update must be a JSON object"),
    (InsertRecords.from_json, {"upsert": True}, "a batch insert needs 'vectors': a list of records"),
    (InsertRecords.from_json, {"vectors": {}}, "'vectors' must be a list of records"),
    (InsertRecords.from_json, {"vectors": [], "upsert": 1}, "upsert must be true or false"),
    (DeleteVectors.from_json, {}, "delete needs exactly one of 'ids' or 'filter'"),
    (DeleteVectors.from_json, {"ids": "a"}, "'ids' must be a list of strings"),
    (DeleteVectors.from_json, {"ids": [], "x": 1}, "unknown delete field(s): x (allowed: filter, ids)"),
    (GetVectors.from_json, {}, "get needs 'ids': a list of strings"),
    (Scroll.from_json, {"cursor": 3}, "cursor must be a string"),
    (Count.from_json, {"where": {}}, "unknown count field(s): where (allowed: consistency, filter)"),
    (lambda b: SearchParams.from_json(b, batch=False), {"vector": [1, "x"]}, "each query vector must be a list"),
    (lambda b: SearchParams.from_json(b, batch=True), {"queries": []}, "batch search needs 'queries'"),
    (lambda b: PutVector.from_json("a", b), {}, "give 'vector' (replace the record) and/or 'metadata'"),
    (lambda b: UpdateMetadata.from_json("a", b), {"replace": True}, "a metadata update needs 'metadata'"),
])
def test_json_shapes_are_refused_with_a_message_naming_the_problem(parse, body, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        parse(body)
    assert message in str(err.value)


def test_record_shapes_are_checked_after_the_batch_size() -> None:
    req = InsertRecords([{"vector": [1, 2]}, {"vector": [True]}])
    with pytest.raises(ValidationError, match="record 1: 'vector' must be a list of numbers"):
        req.check_records()


def test_requests_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Scroll().limit = 5  # type: ignore[misc]


def test_grpc_and_rest_build_the_same_requests() -> None:
    body = {"name": "c", "dimension": 4, "distance_metric": "euclidean", "index_params": {"m": 8},
            "filterable_metadata_fields": ["a"], "description": "d"}
    assert convert.create_request(convert.create_request_from_body(body)) == CreateCollection.from_json(body)
    assert convert.scroll_request(pb.ScrollRequest(collection="c", limit=7, cursor="x", filter_json='{"a":1}')) \
        == Scroll.from_json({"limit": 7, "cursor": "x", "filter": '{"a":1}'})
    get = pb.GetRequest(collection="c", ids=["a", "b"], include_vectors=True)
    assert convert.get_request(get) == GetVectors.from_json({"ids": ["a", "b"]})
    assert convert.count_request(pb.CountRequest(collection="c")) == Count.from_json({})
    update = pb.UpdateCollectionRequest(collection="c", changes_json='{"description":"x"}')
    assert convert.update_request(update) == UpdateCollection.from_json({"description": "x"})


def test_the_sdk_refuses_a_bad_collection_body_with_the_rest_message_before_sending() -> None:
    with pytest.raises(ValidationError, match=r"unknown collection field\(s\): colour"):
        convert.create_request_from_body({"name": "c", "dimension": 3, "colour": 1})


def test_corpus_stats_null_is_absent_and_a_df_above_rows_is_refused() -> None:
    """The cluster fan-out's field: null reads as absent (as before it was parsed for sparse search too), a
    term in more rows than there are (it would weigh below zero) is refused, the rest round-trips."""
    assert SearchText.from_json({"text": "a", "corpus_stats": None}).corpus_stats is None
    sparse = {"name": "t", "indices": [1], "values": [1.0]}
    assert SearchSparse.from_json({**sparse, "corpus_stats": None}).corpus_stats is None
    with pytest.raises(ValidationError, match="df of '1' \\(5\\) is above rows \\(1\\)"):
        SearchSparse.from_json({**sparse, "corpus_stats": {"rows": 1, "total_terms": 2.0, "df": {"1": 5}}})
    stats = {"rows": 3, "total_terms": 4.0, "df": {"1": 2}}
    request = SearchSparse.from_json({**sparse, "corpus_stats": stats})
    assert request.to_json()["corpus_stats"] == stats
    assert SearchSparse.from_json({**sparse, "corpus_stats": True}).to_json()["corpus_stats"] is True


def test_named_vector_shapes() -> None:
    """``vectors`` at creation, ``named_vectors`` on records, ``using`` on every search shape (schema v4)."""
    from proximadb.service.query_requests import Recommend, SearchGroups
    from proximadb.service.requests import HybridSearch

    declared = {"title": {"dimension": 3, "distance_metric": "cosine"}}
    create = CreateCollection.from_json({"name": "c", "dimension": 2, "vectors": declared})
    assert create.settings["vectors"] == declared
    assert convert.create_request(convert.create_request_from_body(create.to_json())) == create  # gRPC: vectors_json
    assert SearchParams.from_json({"vector": [1.0], "using": "title"}, batch=False).using == "title"
    assert SearchParams.from_json({"vector": [1.0]}, batch=False).using is None
    assert HybridSearch.from_json({"vector": [1.0], "using": "title"}).using == "title"
    assert SearchGroups.from_json({"vector": [1.0], "group_by": "g", "using": "title"}).options()["using"] == "title"
    assert "using" not in Recommend.from_json({"positive": ["a"]}).options()  # absent: the engine's call as before
    assert Recommend.from_json({"positive": ["a"], "using": "title"}).options()["using"] == "title"
    for parse, body in [(lambda b: SearchParams.from_json(b, batch=False), {"vector": [1.0], "using": 3}),
                        (HybridSearch.from_json, {"vector": [1.0], "using": ["t"]}),
                        (HybridSearch.from_json, {"text": "x", "using": "title"}),
                        (SearchGroups.from_json, {"vector": [1.0], "group_by": "g", "using": {}}),
                        (Recommend.from_json, {"positive": ["a"], "using": 1.5})]:
        with pytest.raises(ValidationError, match="using"):
            parse(body)
    good = InsertRecords([{"id": "a", "vector": [1.0], "named_vectors": {"title": [1, 2, 3]}}])
    good.check_records()
    for named, message in [([1.0], "'named_vectors' must be an object"),
                           ({"title": [1, "x"]}, "named vector 'title' must be a list of numbers"),
                           ({"title": None}, "named vector 'title' must be a list of numbers")]:
        with pytest.raises(ValidationError, match=message):
            InsertRecords([{"id": "a", "vector": [1.0], "named_vectors": named}]).check_records()
    put = PutVector.from_json("a", {"vector": [1.0], "named_vectors": {"title": [1, 2, 3]}})
    assert put.record()["named_vectors"] == {"title": [1, 2, 3]}
    with pytest.raises(ValidationError, match="give 'vector' too"):
        PutVector.from_json("a", {"metadata": {}, "named_vectors": {"title": [1, 2, 3]}})
