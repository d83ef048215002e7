"""Stub for the compiled module proximadb.codec.avro_batch_encode (see avro_batch_encode.pyx)."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt

from proximadb.storage.sparse_column import SparseColumn

NO_EXPIRY: int

def check_codec_version(schema_version: int) -> None: ...
def encode_vector_batch(
    ids: Sequence[str],
    vectors: npt.ArrayLike,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    timestamps: npt.ArrayLike | None = None,
    upsert: bool = False,
    expires_at: npt.ArrayLike | Sequence[int | None] | None = None,
    schema_version: int = 1,
    sparse_vectors: Sequence[Mapping[str, Mapping[str, Any]] | None] | Mapping[str, SparseColumn] | None = None,
    named_vectors: Mapping[str, npt.ArrayLike] | Sequence[Mapping[str, npt.ArrayLike] | None] | None = None,
) -> bytes: ...
