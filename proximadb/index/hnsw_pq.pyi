"""Type stubs for the compiled proximadb.index.hnsw_pq module."""

import numpy as np
import numpy.typing as npt

from proximadb.index.hnsw_int8 import HNSWInt8Index
from proximadb.index.index_file import IndexFileFormat

FILE_FORMAT: IndexFileFormat
KSUB: int
TRAIN_ROWS: int

def default_m(dim: int) -> int: ...
def training_rows(n: int, seed: int) -> npt.NDArray[np.int64] | None: ...
def check_m(m: object, dim: int, field: str = "m") -> int: ...

class HNSWPQIndex(HNSWInt8Index):
    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        M: int = 16,  # noqa: N803 - the HNSW paper's and hnswlib's name
        ef_construction: int = 200,
        seed: int = 0,
        m: int = 0,
    ) -> None: ...
    @property
    def m(self) -> int: ...
    @property
    def ksub(self) -> int: ...
    def codebooks(self) -> npt.NDArray[np.float32]: ...
