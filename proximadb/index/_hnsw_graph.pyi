"""Type stubs for the compiled proximadb.index._hnsw_graph module: the base of both HNSW kinds."""

import numpy as np
import numpy.typing as npt

from proximadb.index._base import VectorIndex

def exact_scan_limit(n_live: int, ef: int = 64, M: int = 16) -> int: ...  # noqa: N803 - HNSW's M

class HnswGraphIndex(VectorIndex):
    # HNSWIndex (float32 vectors) and HNSWInt8Index (int8 codes): one graph, one walk, one knob set.
    @property
    def M(self) -> int: ...  # noqa: N802 - the HNSW paper's and hnswlib's name
    @property
    def ef_construction(self) -> int: ...
    @ef_construction.setter
    def ef_construction(self, value: int) -> None: ...
    @property
    def ef(self) -> int: ...
    @ef.setter
    def ef(self, value: int) -> None: ...
    def search(
        self,
        query: npt.ArrayLike,
        k: int = 10,
        ef: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
        allowed_count: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_batch(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        ef: int | None = None,
        filter_ids: npt.ArrayLike | None = None,
        exact: bool | None = None,
        threads: int | None = None,
        allowed_count: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    @property
    def last_measured(self) -> int: ...
    def reachable_count(self) -> int: ...
    def unreachable_ids(self) -> npt.NDArray[np.int64]: ...
