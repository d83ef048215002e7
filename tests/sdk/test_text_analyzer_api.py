"""The text_analyzer collection setting through a real daemon (gRPC, REST) and embedded: created, read back,
used by search_text when the call names no analyzer, changed by update_collection; bad values refused with
ValidationError naming the field and nothing changed; raw REST answers 400."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _daemon import Daemon

import proximadb
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ValidationError

DOCS = {"a": "the dog runs home", "b": "a cat sleeps", "c": "running water", "d": "run fast"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("analyzer") / "data", "--fsync", "never") as d:
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


def test_setting_created_used_updated_and_bad_values_refused(db: ProximaDBAPI, request: pytest.FixtureRequest) -> None:
    name = f"an-{request.node.callspec.id}"
    info = db.create_collection(name, 2, text_analyzer={"stemmer": "english"})
    assert info["text_analyzer"] == {"lowercase": True, "stopwords": "english", "stemmer": "english"}
    db.insert_vectors(name, [{"id": i, "vector": [1.0, 0.0], "metadata": {"document": t}} for i, t in DOCS.items()])
    assert {h["id"] for h in db.search_text(name, "running", 10)} == {"a", "c", "d"}
    with pytest.raises(ValidationError, match="text_analyzer"):
        db.update_collection(name, text_analyzer={"stemmer": "klingon"})
    with pytest.raises(ValidationError, match="text_analyzer"):
        db.create_collection(name + "-bad", 2, text_analyzer={"lowercase": "yes"})
    assert db.get_collection(name)["text_analyzer"]["stemmer"] == "english"
    assert name + "-bad" not in {c["name"] for c in db.list_collections()}
    db.update_collection(name, text_analyzer={"stemmer": None})
    assert db.get_collection(name)["text_analyzer"]["stemmer"] is None
    assert {h["id"] for h in db.search_text(name, "running", 10)} == {"c"}


def test_raw_rest_bad_setting_is_400_naming_the_field(daemon: Daemon) -> None:
    body = json.dumps({"name": "raw", "dimension": 2, "text_analyzer": {"stopwords": 5}}).encode()
    req = urllib.request.Request(f"{daemon.rest_url}/collections", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    assert "text_analyzer.stopwords" in err.value.read().decode()
