"""One metadata rule (proximadb.codec.metadata) for every path: the insert encoder, update_metadata
and check_metadata accept and refuse the same values with the same words.

Over the embedded engine with real files; each refused call changes nothing, and accepted values
read back as plain Python values, also after the WAL is replayed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.storage.engine import Engine

OVERFLOW = r"metadata value of key 'n' of .+ is out of the signed 64-bit range: 1180591620717411303424$"


def open_engine(path: Path) -> Engine:
    return Engine.open(path, fsync="never")


def test_numpy_integers_are_accepted_by_insert_and_update_alike(tmp_path: Path) -> None:
    eng = open_engine(tmp_path / "data")
    eng.create_collection("c", 2)
    col = eng.collection("c")
    col.insert(ids=["a"], vectors=[[1.0, 2.0]], metadatas=[{"n": np.int64(3)}])
    assert col.get("a")["metadata"] == {"n": 3}
    col.update_metadata("a", {"n": np.int64(4), "f": np.float32(0.5), "b": np.bool_(True)})
    got = col.get("a")["metadata"]
    assert got == {"n": 4, "f": 0.5, "b": True}
    eng.close()
    eng = open_engine(tmp_path / "data")  # replayed from the WAL
    replayed = eng.collection("c").get("a")["metadata"]
    assert replayed == {"n": 4, "f": 0.5, "b": True}
    assert [type(replayed[k]) for k in ("n", "f", "b")] == [int, float, bool]
    eng.close()


def test_integer_overflow_is_worded_the_same_on_insert_and_update(tmp_path: Path) -> None:
    eng = open_engine(tmp_path / "data")
    eng.create_collection("c", 2)
    col = eng.collection("c")
    col.insert(ids=["a"], vectors=[[1.0, 2.0]], metadatas=[{"n": 1}])
    with pytest.raises(ValidationError, match=OVERFLOW):
        col.insert(ids=["b"], vectors=[[1.0, 2.0]], metadatas=[{"n": 2**70}])
    with pytest.raises(ValidationError, match=OVERFLOW):
        col.update_metadata("a", {"n": 2**70})
    with pytest.raises(ValidationError, match=OVERFLOW.replace("1180591620717411303424", "-1180591620717411303424")):
        col.update_metadata("a", {"n": -(2**70)})
    assert col.count() == 1
    assert col.get("a")["metadata"] == {"n": 1}
    eng.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"x": 1}, r"metadata value of key 'n' of .+ has unsupported type dict"),
        (b"raw", r"metadata value of key 'n' of .+ has unsupported type bytes"),
        (["a", 1], r"metadata value of key 'n' of .+: list items must be str, got int"),
    ],
)
def test_bad_types_are_worded_the_same_on_insert_and_update(tmp_path: Path, value: object, problem: str) -> None:
    eng = open_engine(tmp_path / "data")
    eng.create_collection("c", 2)
    col = eng.collection("c")
    col.insert(ids=["a"], vectors=[[1.0, 2.0]], metadatas=[{"n": 1}])
    with pytest.raises(ValidationError, match=problem):
        col.insert(ids=["b"], vectors=[[1.0, 2.0]], metadatas=[{"n": value}])
    with pytest.raises(ValidationError, match=problem):
        col.update_metadata("a", {"n": value})
    assert col.count() == 1
    assert col.get("a")["metadata"] == {"n": 1}
    eng.close()
