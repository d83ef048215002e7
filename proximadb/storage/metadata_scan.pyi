"""Stub for the compiled module proximadb.storage.metadata_scan (see metadata_scan.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

KIND_KEY: int
KIND_STRING: int
KIND_NUMBER: int
KIND_BIG_INT: int
KIND_TRUE: int
KIND_FALSE: int
KIND_NULL: int

Entries = tuple[
    npt.NDArray[np.int64],  # bounds: field f's entries are bounds[f]:bounds[f + 1]
    npt.NDArray[np.uint8],  # kind
    npt.NDArray[np.int32],  # code (KIND_STRING)
    npt.NDArray[np.uint32],  # row
    npt.NDArray[np.float64],  # number (KIND_NUMBER)
    npt.NDArray[np.int64],  # big (KIND_BIG_INT)
]

def scan_maps(
    blob: Buffer, offsets: npt.NDArray[np.uint64], max_key_bytes: int
) -> tuple[npt.NDArray[np.int64], list[str], list[str], Entries]: ...
def gather_maps(
    chunks: list[Any], where: npt.NDArray[np.uint64], offset_bits: int
) -> tuple[bytes, npt.NDArray[np.uint64]]: ...
