"""The collection setting ``text_analyzer`` (storage/catalog.py): full-text search goes through the
collection's analyzer unless a call names one; the saved text.idx is that analyzer's, so a changed
setting rebuilds it at the next text search; a reopen keeps the setting and maps the saved index.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.storage.catalog import CATALOG_NAME
from proximadb.storage.docfile import read_doc, write_doc
from proximadb.storage.engine import Engine
from proximadb.text.analyzer import Analyzer

DIM = 4
DOCS = {"a": "the dog runs home", "b": "a cat sleeps", "c": "running water and stones", "d": "run fast"}
DEFAULT = {"lowercase": True, "stopwords": "english", "stemmer": None}


def _fill(engine: Engine, name: str, **settings: object) -> None:
    engine.create_collection(name, DIM, **settings)
    col = engine.collection(name)
    col.insert(ids=list(DOCS), vectors=np.ones((len(DOCS), DIM), dtype=np.float32),
               metadatas=[{"document": t} for t in DOCS.values()])


def _ids(hits: list[dict]) -> set[str]:
    return {h["id"] for h in hits}


def test_default_setting_and_the_stemming_setting(tmp_path: Path) -> None:
    with Engine.open(tmp_path, fsync="never") as engine:
        _fill(engine, "plain")
        _fill(engine, "stem", text_analyzer={"stemmer": "english"})
        assert engine.get_collection("plain")["text_analyzer"] == DEFAULT
        assert engine.get_collection("stem")["text_analyzer"] == {**DEFAULT, "stemmer": "english"}
        assert _ids(engine.collection("plain").search_text("running", 10)) == {"c"}
        assert _ids(engine.collection("stem").search_text("running", 10)) == {"a", "c", "d"}
        # a call's own analyzer still wins over the setting
        assert _ids(engine.collection("stem").search_text("running", 10, analyzer=Analyzer())) == {"c"}
        hybrid = engine.collection("stem").hybrid_search([1.0] * DIM, "running", 10, fusion="rrf",
                                                         weights=[0.0, 1.0])
        assert {h["id"] for h in hybrid if h["score"] > 0} == {"a", "c", "d"}


def test_custom_stop_words_and_case(tmp_path: Path) -> None:
    with Engine.open(tmp_path, fsync="never") as engine:
        _fill(engine, "c", text_analyzer={"stopwords": ["Dog", "cat"]})
        col = engine.collection("c")
        assert engine.get_collection("c")["text_analyzer"]["stopwords"] == ["cat", "dog"]
        assert col.search_text("dog cat", 10) == []
        assert _ids(col.search_text("the", 10)) == {"a"}  # "the" is no longer a stop word
        engine.update_collection("c", text_analyzer={"lowercase": False, "stopwords": None})
        assert _ids(col.search_text("dog", 10)) == {"a"}
        assert col.search_text("DOG", 10) == []  # case kept now


def test_reopen_keeps_the_setting_and_maps_the_saved_index_update_rebuilds_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proximadb.collection")
    with Engine.open(tmp_path, fsync="never") as engine:
        _fill(engine, "c", text_analyzer={"stemmer": "english"})
        col = engine.collection("c")
        col.flush()
        (seg_dir,) = [s.path for s in col.segments]
        first = col.search_text("running", 10)
        assert _ids(first) == {"a", "c", "d"}
    saved_settings = json.dumps(Analyzer(stemmer="english").settings(), sort_keys=True).encode()
    assert saved_settings in (seg_dir / "text.idx").read_bytes()  # the saved index is the collection analyzer's
    caplog.clear()
    with Engine.open(tmp_path, fsync="never") as engine:
        assert engine.get_collection("c")["text_analyzer"]["stemmer"] == "english"
        col = engine.collection("c")
        assert col.search_text("running", 10) == first
        assert "building text.idx" not in caplog.text  # mapped, not rebuilt
        before = (seg_dir / "text.idx").read_bytes()
        engine.update_collection("c", text_analyzer={"stemmer": None})
        assert _ids(col.search_text("running", 10)) == {"c"}  # update changes results
        assert "building text.idx" in caplog.text  # made with other settings: rebuilt and saved again
        after = (seg_dir / "text.idx").read_bytes()
        assert after != before
    caplog.clear()
    with Engine.open(tmp_path, fsync="never") as engine:
        assert _ids(engine.collection("c").search_text("running", 10)) == {"c"}
        assert "building text.idx" not in caplog.text


@pytest.mark.parametrize("bad, words", [
    ({"stemmer": "klingon"}, "text_analyzer: stemmer 'klingon'"),
    ({"stemmer": 3}, "text_analyzer.stemmer"),
    ({"lowercase": "yes"}, "text_analyzer.lowercase"),
    ({"stopwords": "french"}, "text_analyzer.stopwords"),
    ({"stopwords": ["ok", 1]}, "text_analyzer.stopwords"),
    ({"stopwords": [""]}, "text_analyzer.stopwords"),
    ({"stop_words": None}, "text_analyzer: unknown setting(s) stop_words"),
    ("english", "text_analyzer must be an object"),
])
def test_bad_settings_are_refused_naming_the_field_and_change_nothing(tmp_path: Path, bad: object,
                                                                      words: str) -> None:
    with Engine.open(tmp_path, fsync="never") as engine:
        with pytest.raises(ValidationError, match=None) as created:
            engine.create_collection("new", DIM, text_analyzer=bad)
        assert words in str(created.value)
        assert engine.list_collections() == []
        _fill(engine, "c", text_analyzer={"stemmer": "english"})
        before = engine.get_collection("c")
        with pytest.raises(ValidationError) as updated:
            engine.update_collection("c", text_analyzer=bad)
        assert words in str(updated.value)
        assert engine.get_collection("c") == before
    with Engine.open(tmp_path, fsync="never") as engine:
        assert engine.get_collection("c")["text_analyzer"] == before["text_analyzer"]


def test_a_catalog_written_before_the_setting_loads_with_the_default(tmp_path: Path) -> None:
    with Engine.open(tmp_path, fsync="never") as engine:
        _fill(engine, "c")
        engine.collection("c").flush()
    body = read_doc(tmp_path / CATALOG_NAME, "catalog")
    for raw in body["collections"]:
        del raw["text_analyzer"]
    write_doc(tmp_path / CATALOG_NAME, "catalog", body)
    with Engine.open(tmp_path, fsync="never") as engine:
        assert engine.get_collection("c")["text_analyzer"] == DEFAULT
        assert _ids(engine.collection("c").search_text("running dog", 10)) == {"a", "c"}
