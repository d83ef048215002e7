"""Fuzz target: the Cython Avro VectorBatch decoder (proximadb.codec.avro_batch.decode_vector_batch).

The first input byte picks ``expected_dim`` (0xFF: any dimension, else byte % 64); the
rest is the Avro datum. Run: ``python fuzz/fuzz_avro_batch.py fuzz/corpus/avro_batch -max_total_time=60``.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import run_atheris  # fuzz/ is sys.path[0] when run as a script; puts the repo on sys.path

from proximadb.codec.avro_batch import decode_vector_batch, encode_vector_batch
from proximadb.errors import DimensionMismatchError, MalformedPayloadError

ALLOWED: tuple[type[BaseException], ...] = (MalformedPayloadError, DimensionMismatchError)


def one_input(data: bytes) -> None:
    if not data:
        return
    expected_dim = -1 if data[0] == 0xFF else data[0] % 64
    batch = decode_vector_batch(data[1:], expected_dim)
    n = len(batch)
    assert len(batch.ids) == n and len(batch.metadata) == n and len(batch.timestamps) == n
    vectors = np.asarray(batch.vectors)
    assert vectors.dtype == np.float32 and vectors.shape[0] == n
    if expected_dim >= 0 and n:
        assert vectors.shape[1] == expected_dim
    # Whatever decodes re-encodes to a datum that decodes to the same records.
    again = decode_vector_batch(
        encode_vector_batch(batch.ids, vectors, batch.metadata, batch.timestamps, batch.upsert), expected_dim
    )
    assert again.ids == batch.ids and again.upsert == batch.upsert
    assert np.array_equal(np.asarray(again.vectors).view(np.uint32), vectors.view(np.uint32))


if __name__ == "__main__":
    run_atheris(one_input, ALLOWED)
    sys.exit(0)
