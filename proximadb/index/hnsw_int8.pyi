import numpy as np
import numpy.typing as npt

from proximadb.index._base import IndexFileFormat, VectorIndex

FILE_FORMAT: IndexFileFormat

class HNSWInt8Index(VectorIndex):
    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        M: int = 16,  # noqa: N803 - the HNSW paper's and hnswlib's name
        ef_construction: int = 200,
        seed: int = 0,
    ) -> None: ...
    @property
    def M(self) -> int: ...  # noqa: N802
    @property
    def ef_construction(self) -> int: ...
    @property
    def ef(self) -> int: ...
    @ef.setter
    def ef(self, value: int) -> None: ...
    @property
    def oversampling(self) -> float: ...
    @oversampling.setter
    def oversampling(self, value: float) -> None: ...
    @property
    def rescore(self) -> bool: ...
    @rescore.setter
    def rescore(self, value: bool) -> None: ...
    @property
    def vectors_attached(self) -> bool: ...
    def quantizer(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def codes_array(self) -> npt.NDArray[np.uint8]: ...
    def memory_usage(self) -> dict[str, int]: ...
    def attach_vectors(self, vectors: npt.ArrayLike) -> None: ...
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, threads: int = 1) -> None: ...
    def search(
        self,
        query: npt.ArrayLike,
        k: int = 10,
        ef: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_batch(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        ef: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
        threads: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
