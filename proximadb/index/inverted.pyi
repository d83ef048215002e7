"""Type stub for the compiled module proximadb.index.inverted (see inverted.pyx)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SCORINGS: tuple[str, ...]
MAXSCORE_TERMS: int

class InvertedIndex:
    term_start: npt.NDArray[np.int64]
    post_row: npt.NDArray[np.int32]
    post_value: npt.NDArray[np.float32]
    row_length: npt.NDArray[np.float32]
    n_rows: int
    n_terms: int
    avg_length: float
    def __init__(self, term_start: npt.ArrayLike, post_row: npt.ArrayLike, post_value: npt.ArrayLike,
                 row_length: npt.ArrayLike) -> None: ...
    @staticmethod
    def build(row_start: npt.ArrayLike, term_ids: npt.ArrayLike, n_terms: int) -> InvertedIndex: ...
    @staticmethod
    def build_weighted(row_start: npt.ArrayLike, term_ids: npt.ArrayLike, weights: npt.ArrayLike,
                       n_terms: int) -> InvertedIndex: ...
    def document_frequency(self, term_ids: npt.ArrayLike) -> npt.NDArray[np.int64]: ...
    def search(self, term_ids: npt.ArrayLike, weights: npt.ArrayLike, k: int, *, scoring: str = "bm25",
               k1: float = 1.5, b: float = 0.75, avg_length: float | None = None,
               allowed: npt.ArrayLike | None = None, maxscore: bool = True,
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def term_bounds(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def search_batch(self, term_ids: Sequence[npt.ArrayLike], weights: Sequence[npt.ArrayLike], k: int, *,
                     scoring: str = "bm25", k1: float = 1.5, b: float = 0.75, avg_length: float | None = None,
                     allowed: npt.ArrayLike | None = None, threads: int = 0, maxscore: bool = True,
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
