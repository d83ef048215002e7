"""Stub for the compiled module proximadb.codec.avro_search (see avro_search.pyx for the format)."""

from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

def encode_search_request(
    queries: npt.NDArray[np.float32], k: int, filter: str | None, include_vectors: bool, include_metadata: bool,
    ef: int | None, nprobe: int | None, exact: bool, using: str | None = None, schema_version: int = 1,
) -> bytes: ...
def decode_search_request(datum: Buffer, schema_version: int = 1) -> dict[str, Any] | None: ...
def encode_search_result(results: list[list[dict[str, Any]]], schema_version: int = 1) -> bytes: ...
def decode_search_result(datum: Buffer, schema_version: int = 1) -> list[list[dict[str, Any]]]: ...
