"""Named dense vectors (schema v4) in storage: what the engine does with them today (this slice: refuse them,
since no collection can declare any yet) and how InsertOp carries them through both WAL strategies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.framing import encode_frame
from proximadb.errors import InvalidVectorError
from proximadb.storage.engine import Engine

DIM = 4


@pytest.mark.parametrize("strategy", ["avro", "binary"])
def test_a_collection_without_named_vectors_refuses_them_and_changes_nothing(tmp_path: Path, strategy: str) -> None:
    with Engine.open(tmp_path, wal_strategy=strategy) as engine:
        engine.create_collection("c", dimension=DIM, distance_metric="euclidean")
        col = engine.collection("c")
        col.insert([{"id": "a", "vector": [1.0] * DIM}])
        datum = encode_vector_batch(["b"], np.ones((1, DIM)), schema_version=4,
                                    named_vectors={"title": np.ones((1, 2))})
        with pytest.raises(InvalidVectorError, match=r"record 0 \(id 'b'\): named vector 'title' is not one of"):
            col.insert_payload(encode_frame("vector_insert", datum, 4))
        assert col.count() == 1 and col.get("b") is None
    with Engine.open(tmp_path, wal_strategy=strategy) as engine:  # nothing of it was logged
        assert engine.collection("c").count() == 1
