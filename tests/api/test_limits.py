"""Configurable request limits (proximadb.limits): settings, and enforcement in the engine.

Every limit is tried just under and just over, through the engine that both
protocols share; a refused request names the limit and changes nothing. The
daemon-level tests (flags reach the engine; both protocols refuse the same
way) are in test_admission.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proximadb.codec.payload import encode_insert
from proximadb.errors import PayloadTooLargeError, ValidationError
from proximadb.limits import CEILINGS, Limits
from proximadb.server.config import load_config
from proximadb.storage.engine import Engine
from proximadb.storage.validation import metadata_bytes

SMALL = Limits(max_batch=10, max_k=5, max_dimension=16, max_id_bytes=8, max_metadata_bytes=100)


@pytest.fixture
def engine(tmp_path: Path):
    eng = Engine.open(tmp_path / "data", fsync="never", limits=SMALL)
    eng.create_collection("c", 4)
    yield eng
    eng.close()


def vecs(n: int, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize("name", sorted(CEILINGS))
def test_each_limit_refuses_values_outside_its_range(name: str) -> None:
    lo, hi = CEILINGS[name]
    assert getattr(Limits(**{name: lo}), name) == lo
    assert getattr(Limits(**{name: hi}), name) == hi
    for bad in (lo - 1, hi + 1, True, 1.5, "10"):
        with pytest.raises(ValidationError, match=name):
            Limits(**{name: bad})


def test_config_takes_limits_from_flags_env_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("max_k = 50\nmax_batch = 200\nrequest_timeout = 2\nmax_concurrent_requests = 3\n")
    cfg = load_config({"config": str(toml), "max_k": 40}, environ={"PROXIMADB_MAX_ID_BYTES": "64",
                                                                     "PROXIMADB_REQUEST_TIMEOUT": "2.5"})
    assert (cfg.limits.max_k, cfg.limits.max_batch, cfg.limits.max_id_bytes) == (40, 200, 64)
    assert cfg.request_timeout == 2.5 and cfg.max_concurrent_requests == 3
    assert cfg.rest_threads == 3 + 8 and cfg.grpc_threads == 3 + 8  # 0 = automatic
    assert cfg.storage_options()["limits"] == cfg.limits


@pytest.mark.parametrize(("flags", "fragment"), [
    ({"max_k": 0}, "max_k must be an integer from 1"),
    ({"max_dimension": 70000}, "max_dimension must be an integer from 1 to 65536"),
    ({"max_concurrent_requests": 0}, "max_concurrent_requests must be positive"),
    ({"request_timeout": -1.0}, "request_timeout must be from 0"),
    ({"request_timeout": "soon"}, "request_timeout has an invalid value"),
    ({"max_batch": "1.5"}, "max_batch has an invalid value"),
    ({"threads": -1}, "threads must be 0"),
])
def test_config_refuses_bad_limits_with_the_setting_named(flags: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        load_config(flags, environ={})


def test_metadata_size_counts_utf8_bytes() -> None:
    assert metadata_bytes({"ab": "cd"}) == 4
    assert metadata_bytes({"k": "é"}) == 1 + 2
    assert metadata_bytes({"n": 5, "f": 1.5, "b": True, "z": None}) == 4 + 3 * 8
    assert metadata_bytes({"tags": ["x", "yz"]}) == 4 + 2 + 3


# ---------------------------------------------------------------- enforcement
def test_batch_over_max_batch_is_refused_whole(engine: Engine) -> None:
    col = engine.collection("c")
    col.insert(ids=[f"i{i}" for i in range(10)], vectors=vecs(10))
    with pytest.raises(PayloadTooLargeError, match="max_batch limit of 10"):
        col.insert(ids=[f"j{i}" for i in range(11)], vectors=vecs(11))
    assert col.count() == 10


def test_k_over_max_k_is_refused(engine: Engine) -> None:
    col = engine.collection("c")
    col.insert(ids=["a", "b"], vectors=vecs(2))
    assert len(col.search(vecs(1)[0], k=5)) == 2
    with pytest.raises(ValidationError, match="max_k limit"):
        col.search(vecs(1)[0], k=6)


def test_dimension_over_max_dimension_is_refused_but_old_collections_open(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with Engine.open(data, fsync="never") as eng:
        eng.create_collection("wide", 64)
        eng.collection("wide").insert(ids=["w"], vectors=vecs(1, 64))
    with Engine.open(data, fsync="never", limits=SMALL) as eng:
        with pytest.raises(ValidationError, match="dimension 17 is over this server's max_dimension limit of 16"):
            eng.create_collection("too-wide", 17)
        assert [c["name"] for c in eng.list_collections()] == ["wide"]
        assert eng.collection("wide").get("w") is not None  # lowering the limit strands nothing
        eng.create_collection("ok", 16)


def test_long_id_is_refused_on_every_path(engine: Engine) -> None:
    col = engine.collection("c")
    col.insert(ids=["12345678"], vectors=vecs(1))  # exactly max_id_bytes
    with pytest.raises(ValidationError, match="max_id_bytes"):
        col.insert(ids=["ok", "123456789"], vectors=vecs(2))
    with pytest.raises(ValidationError, match="max_id_bytes"):
        col.insert(ids=["éééé1"], vectors=vecs(1))  # 5 characters, 9 bytes
    with pytest.raises(ValidationError, match="max_id_bytes"):
        col.update_metadata("123456789", {"a": 1})
    payload = encode_insert(ids=["123456789"], vectors=vecs(1))  # the Avro path (both protocols)
    with pytest.raises(ValidationError, match="max_id_bytes"):
        col.insert_payload(payload)
    assert col.count() == 1


def test_large_metadata_is_refused_on_insert_and_update(engine: Engine) -> None:
    col = engine.collection("c")
    col.insert(ids=["a"], vectors=vecs(1), metadatas=[{"t": "x" * 99}])  # 1 + 99 = 100 bytes: at the limit
    with pytest.raises(ValidationError, match="over the server's max_metadata_bytes limit of 100"):
        col.insert(ids=["b"], vectors=vecs(1), metadatas=[{"t": "x" * 100}])
    with pytest.raises(ValidationError, match="max_metadata_bytes"):
        col.insert(ids=["b"], vectors=vecs(1), metadatas=[{"tags": ["y" * 30] * 4}])
    with pytest.raises(ValidationError, match="max_metadata_bytes"):
        col.update_metadata("a", {"t": "x" * 99, "more": "z"}, replace=True)
    with pytest.raises(ValidationError, match="unsupported type dict"):
        col.insert(ids=["b"], vectors=vecs(1), metadatas=[{"deep": {"er": 1}}])  # depth is fixed at one
    assert col.count() == 1
    assert col.get("a")["metadata"] == {"t": "x" * 99}
