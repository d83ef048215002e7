"""The engine against a plain dict model under random operation sequences.

A Hypothesis state machine drives inserts, upserts, deletes, metadata
updates, flushes and in-process reopens; at the end of every run the data
directory is opened again in a separate process and must hold exactly the
model's records (the shape of chroma's test_persist.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import strategies
from _support import dump_in_fresh_process
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from proximadb import errors
from proximadb.storage.engine import Engine

DIM = 4
ID = st.sampled_from([f"k{i}" for i in range(16)])
VEC = st.lists(st.integers(-8, 8), min_size=DIM, max_size=DIM).map(lambda v: np.array(v, np.float32))
META_VALUE = strategies.metadata_values(ints=(-5, 5), floats=False, text_size=3, list_text_size=2, list_size=None)
META = strategies.metadata_maps(META_VALUE, keys=["a", "b", "c"], max_size=3)


class EngineVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="pxdb-model-"))
        self.opts = {"fsync": "never", "flush_bytes": 1 << 30}
        self.engine = Engine.open(self.root / "d", **self.opts)
        self.engine.create_collection("m", DIM, distance_metric="euclidean")
        self.model: dict[str, tuple[np.ndarray, dict]] = {}

    @property
    def col(self):  # type: ignore[no-untyped-def]
        return self.engine.collection("m")

    @rule(items=st.lists(st.tuples(ID, VEC, META), min_size=1, max_size=5, unique_by=lambda t: t[0]))
    def insert(self, items: list) -> None:
        ids = [i for i, _, _ in items]
        vecs = np.stack([v for _, v, _ in items])
        metas = [m for _, _, m in items]
        if any(i in self.model for i in ids):
            try:
                self.col.insert(ids=ids, vectors=vecs, metadatas=metas)
            except errors.VectorExistsError:
                return
            raise AssertionError("insert of an existing id succeeded")
        self.col.insert(ids=ids, vectors=vecs, metadatas=metas)
        for i, v, m in items:
            self.model[i] = (v, m)

    @rule(items=st.lists(st.tuples(ID, VEC, META), min_size=1, max_size=5, unique_by=lambda t: t[0]))
    def upsert(self, items: list) -> None:
        self.col.upsert(ids=[i for i, _, _ in items], vectors=np.stack([v for _, v, _ in items]),
                        metadatas=[m for _, _, m in items])
        for i, v, m in items:
            self.model[i] = (v, m)

    @rule(ids=st.lists(ID, max_size=4))
    def delete(self, ids: list[str]) -> None:
        expected = len({i for i in ids if i in self.model})
        assert self.col.delete(ids) == expected
        for i in ids:
            self.model.pop(i, None)

    @rule(value=st.integers(-5, 5))
    def delete_where(self, value: int) -> None:
        doomed = [i for i, (_, m) in self.model.items() if m.get("a") == value and not isinstance(m.get("a"), bool)]
        assert self.col.delete_where({"a": value}) == len(doomed)
        for i in doomed:
            del self.model[i]

    @rule(id_=ID, patch=META, replace=st.booleans())
    def update(self, id_: str, patch: dict, replace: bool) -> None:
        if id_ not in self.model:
            try:
                self.col.update_metadata(id_, patch, replace=replace)
            except errors.VectorNotFoundError:
                return
            raise AssertionError("update of a missing id succeeded")
        self.col.update_metadata(id_, patch, replace=replace)
        vec, meta = self.model[id_]
        if replace:
            new = dict(patch)
        else:
            new = dict(meta)
            for k, v in patch.items():
                if v is None:
                    new.pop(k, None)
                else:
                    new[k] = v
        self.model[id_] = (vec, new)

    @rule()
    def flush(self) -> None:
        self.col.flush()

    @rule()
    def reopen(self) -> None:
        self.engine.close()
        self.engine = Engine.open(self.root / "d", **self.opts)

    @precondition(lambda self: len(self.model) > 0)
    @rule(q=VEC, k=st.integers(1, 20))
    def search(self, q: np.ndarray, k: int) -> None:
        hits = self.col.search(q, k=k)
        ids = list(self.model)
        d = np.sqrt(((np.stack([self.model[i][0] for i in ids]) - q) ** 2).sum(axis=1))
        assert len(hits) == min(k, len(ids))
        np.testing.assert_allclose([h["distance"] for h in hits], np.sort(d)[: len(hits)], rtol=1e-5, atol=1e-5)
        for h in hits:
            assert h["metadata"] == self.model[h["id"]][1]

    @invariant()
    def counts_agree(self) -> None:
        assert self.col.count() == len(self.model)

    def teardown(self) -> None:
        try:
            self.engine.close()
            state = dump_in_fresh_process(self.root / "d", **self.opts)["m"]
            assert state.keys() == self.model.keys()
            for i, (vec, meta) in self.model.items():
                assert state[i]["metadata"] == meta
                np.testing.assert_array_equal(np.asarray(state[i]["vector"], np.float32), vec)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


EngineVsModel.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVsModel = EngineVsModel.TestCase
