"""Type stubs for the compiled proximadb.index._hnsw_grow module."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from proximadb.index.hnsw import HNSWIndex

def growth_order(
    placement: npt.ArrayLike, base_rows: int, total: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...

GROW_CHUNK: int

class GrowthCancelled(Exception): ...

def grown(
    base: HNSWIndex,
    placement: npt.ArrayLike,
    vectors: npt.ArrayLike,
    threads: int = 0,
    cancelled: Callable[[], bool] | None = None,
) -> HNSWIndex: ...
