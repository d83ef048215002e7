"""Type stubs for the compiled proximadb.index.ivf module."""

import numpy as np
import numpy.typing as npt

from proximadb.index._base import VectorIndex
from proximadb.index.index_file import IndexFileFormat

METRICS: tuple[str, ...]
FILE_FORMAT: IndexFileFormat
MAGIC: bytes
END_MAGIC: bytes
FORMAT_VERSION: int
KMEANS_ITERATIONS: int
SAMPLE_PER_LIST: int

def assign(x: np.ndarray, centroids: np.ndarray, metric: str, chunk: int = 8192) -> npt.NDArray[np.int32]: ...
def kmeans(x: np.ndarray, k: int, metric: str, seed: int, iterations: int = ...) -> npt.NDArray[np.float32]: ...

class IVFIndex(VectorIndex):
    def __init__(self, dim: int, metric: str = "l2", nlist: int = 100, seed: int = 0, nprobe: int = 8) -> None: ...
    @property
    def nlist(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def nprobe(self) -> int: ...
    @nprobe.setter
    def nprobe(self, value: int) -> None: ...
    @property
    def centroids(self) -> npt.NDArray[np.float32]: ...
    def list_sizes(self) -> npt.NDArray[np.int64]: ...
    def train(self, sample: npt.ArrayLike) -> None: ...
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None: ...
    def search(
        self,
        query: npt.ArrayLike,
        k: int = 10,
        nprobe: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
        allowed_count: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_batch(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        nprobe: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
        threads: int | None = None,
        allowed_count: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...

def simd_level() -> int: ...
