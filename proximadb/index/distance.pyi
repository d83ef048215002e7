"""Type stub for the compiled module proximadb.index.distance (see distance.pyx)."""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

Metric = Literal["l2", "dot", "cosine"]
SimdLevel = Literal["scalar", "avx2", "avx512"]

METRICS: tuple[str, ...]

def simd_level_name() -> SimdLevel: ...
def available_simd_levels() -> tuple[SimdLevel, ...]: ...
def set_simd_level(name: Literal["scalar", "avx2", "avx512", "best"]) -> SimdLevel: ...
def pairwise(
    queries: npt.ArrayLike, base: npt.NDArray[np.float32], metric: Metric = "l2"
) -> npt.NDArray[np.float32]: ...
def topk(
    query: npt.ArrayLike,
    base: npt.NDArray[np.float32],
    k: int,
    metric: Metric = "l2",
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def topk_rows(
    query: npt.ArrayLike,
    base: npt.NDArray[np.float32],
    rows: npt.NDArray[np.integer] | Sequence[int],
    k: int,
    metric: Metric = "l2",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def topk_rows_batch(
    queries: npt.ArrayLike,
    base: npt.NDArray[np.float32],
    rows: npt.NDArray[np.integer] | Sequence[int],
    k: int,
    metric: Metric = "l2",
    threads: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def topk_batch(
    queries: npt.ArrayLike,
    base: npt.NDArray[np.float32],
    k: int,
    metric: Metric = "l2",
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def normalize_rows(matrix: npt.ArrayLike, inplace: bool = False) -> npt.NDArray[np.float32]: ...
