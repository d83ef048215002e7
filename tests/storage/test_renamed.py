"""One vocabulary: the engine's Collection takes metadatas= and filter=; metadata= and filter_spec= warn."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

from proximadb.storage.collection import Collection
from proximadb.storage.engine import Engine


@pytest.fixture
def col(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Engine.open(tmp_path / "d", fsync="never") as engine:
        engine.create_collection("c", 2, distance_metric="euclidean")
        yield engine.collection("c")


def test_new_names_work_without_a_warning(col: Collection) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        col.insert(ids=["a", "b"], vectors=np.eye(2, dtype=np.float32), metadatas=[{"g": 1}, {"g": 2}])
        col.upsert(ids=["c"], vectors=np.ones((1, 2), np.float32), metadatas=[{"g": 2}])
        assert col.count(filter={"g": 2}) == 2
        assert [r["id"] for r in col.scroll(filter={"g": 2})[0]] == ["b", "c"]
        assert [h["id"] for h in col.search([1, 0], k=3, filter={"g": 1})] == ["a"]
        assert [h["id"] for h in col.search_batch([[1, 0]], k=3, filter={"g": 2})[0]] == ["c", "b"]
        assert col.delete_where(filter={"g": 1}) == 1


@pytest.mark.parametrize(("call", "old", "new"), [
    (lambda c: c.insert(ids=["x"], vectors=np.ones((1, 2), np.float32), metadata=[{"g": 1}]), "metadata", "metadatas"),
    (lambda c: c.upsert(ids=["x"], vectors=np.ones((1, 2), np.float32), metadata=[{"g": 1}]), "metadata", "metadatas"),
    (lambda c: c.count(filter_spec={"g": 1}), "filter_spec", "filter"),
    (lambda c: c.scroll(filter_spec={"g": 1}), "filter_spec", "filter"),
    (lambda c: c.search([1, 0], k=1, filter_spec={"g": 1}), "filter_spec", "filter"),
    (lambda c: c.search_batch([[1, 0]], k=1, filter_spec={"g": 1}), "filter_spec", "filter"),
    (lambda c: c.delete_where(filter_spec={"g": 1}), "filter_spec", "filter"),
])
def test_old_names_still_work_with_a_deprecation_warning_naming_the_new(col: Collection, call, old, new) -> None:  # type: ignore[no-untyped-def]
    col.insert(ids=["a"], vectors=np.eye(1, 2, dtype=np.float32), metadatas=[{"g": 1}])
    with pytest.warns(DeprecationWarning, match=rf"\({old}=\) is deprecated; use {new}=") as caught:
        call(col)
    assert len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller, not at the wrapper


def test_giving_both_names_is_refused(col: Collection) -> None:
    with pytest.raises(TypeError, match="got both filter_spec= and filter="):
        col.count(filter={"g": 1}, filter_spec={"g": 1})


def test_signatures_show_the_new_names() -> None:
    assert "metadatas" in inspect.signature(Collection.insert).parameters
    assert "filter" in inspect.signature(Collection.scroll).parameters
    assert "filter_spec" not in inspect.signature(Collection.search_batch).parameters
