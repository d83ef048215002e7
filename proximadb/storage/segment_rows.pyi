"""Stub for the compiled module proximadb.storage.segment_rows (see segment_rows.pyx)."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

DEFAULT_SYNC_INTERVAL: int

class RowBlocks:
    def __init__(self, schema_version: int, sync_marker: bytes, compress: Callable[[bytes], bytes], no_expiry: int,
                 sync_interval: int = ...) -> None: ...
    def add(self, blob: Buffer, offsets: npt.NDArray[np.uint64], timestamps: npt.NDArray[np.int64],
            expires_at: npt.NDArray[np.int64] | None = None,
            sparse: list[bytes | None] | None = None) -> list[bytes]: ...
    def finish(self) -> bytes | None: ...
