"""Stub for the compiled module proximadb.codec.avro_batch (see avro_batch.pyx for the format)."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

from proximadb.codec.avro_batch_encode import NO_EXPIRY as NO_EXPIRY
from proximadb.codec.avro_batch_encode import check_codec_version as check_codec_version
from proximadb.codec.avro_batch_encode import encode_vector_batch as encode_vector_batch
from proximadb.storage.operations import InsertOp, Metadata
from proximadb.storage.sparse_column import SparseColumn

class DecodedBatch:
    @property
    def upsert(self) -> bool: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def vectors(self) -> npt.NDArray[np.float32]: ...  # (n, dim), C-contiguous
    @property
    def metadata(self) -> Sequence[Metadata]: ...  # a list of dicts, or a MetadataColumn (metadata_maps=True)
    @property
    def timestamps(self) -> npt.NDArray[np.int64]: ...  # (n,)
    @property
    def expires_at(self) -> npt.NDArray[np.int64] | None: ...  # (n,), NO_EXPIRY for null; None: no expiry at all
    @property
    def schema_version(self) -> int: ...
    @property
    def sparse_vectors(self) -> dict[str, SparseColumn] | None: ...  # v3; None: no record has one
    @property
    def named_vectors(self) -> dict[str, npt.NDArray[np.float32]] | None: ...  # v4, (n, dim) per name; None: none
    @property
    def dim(self) -> int: ...
    def __init__(
        self,
        upsert: bool,
        ids: list[str],
        vectors: npt.NDArray[np.float32],
        metadata: Sequence[Metadata],
        timestamps: npt.NDArray[np.int64],
        expires_at: npt.NDArray[np.int64] | None = None,
        schema_version: int = 1,
        sparse_vectors: dict[str, SparseColumn] | None = None,
        named_vectors: dict[str, npt.NDArray[np.float32]] | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    def to_insert_op(self) -> InsertOp: ...
    def to_dict(self) -> dict[str, Any]: ...

def decode_vector_batch(
    datum: Buffer,
    expected_dim: int = -1,
    schema_version: int = 1,
    metadata_maps: bool = False,
    named_dims: Mapping[str, int] | None = None,
) -> DecodedBatch: ...
