"""Type stubs for the compiled proximadb.index.hnsw_shared module (searches beside an add)."""

import numpy as np
import numpy.typing as npt

from proximadb.index.hnsw import HNSWIndex

def room(index: HNSWIndex) -> int: ...
def reserve(index: HNSWIndex, rows: int, upper_words: int) -> None: ...
def attach(index: HNSWIndex, vectors: npt.NDArray[np.float32]) -> None: ...
def add(index: HNSWIndex, ids: npt.ArrayLike, vectors: npt.ArrayLike, ef_construction: int) -> None: ...
def search(
    index: HNSWIndex,
    queries: npt.ArrayLike,
    k: int,
    ef: int | None,
    limit: int,
    mask: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
