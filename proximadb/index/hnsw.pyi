"""Type stubs for the compiled proximadb.index.hnsw module."""

import numpy as np
import numpy.typing as npt

from proximadb.index._hnsw_graph import HnswGraphIndex
from proximadb.index.index_file import IndexFileFormat

METRICS: tuple[str, ...]
FILE_FORMAT: IndexFileFormat
MAGIC: bytes
END_MAGIC: bytes
FORMAT_VERSION: int

class HNSWIndex(HnswGraphIndex):
    repaired: int  # rows linked back after adds because no walk reached them
    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        M: int = 16,  # noqa: N803 - the HNSW paper's and hnswlib's name
        ef_construction: int = 200,
        seed: int = 0,
        max_elements: int = 0,
    ) -> None: ...
    @property
    def max_level(self) -> int: ...
    @property
    def vectors_attached(self) -> bool: ...
    @property
    def owns_vectors(self) -> bool: ...
    def memory_usage(self) -> dict[str, int]: ...
    def attach_vectors(self, vectors: npt.ArrayLike) -> None: ...
    def add(
        self, ids: npt.ArrayLike, vectors: npt.ArrayLike, threads: int = 1, repair: bool = False, copy: bool = True
    ) -> None: ...
    def repair(self) -> int: ...
    def _add_interleaved(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None: ...
    def graph_arrays(
        self,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.uint8], int, int]: ...
    def reorder(self) -> None: ...

def simd_level() -> int: ...
