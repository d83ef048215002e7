"""Stub for the compiled module proximadb.storage.metadata_check (see metadata_check.pyx)."""

import numpy as np
import numpy.typing as npt

def metadata_sizes(rows: list[object], max_key_bytes: int) -> npt.NDArray[np.int64]: ...
