"""Stub for the compiled module proximadb.storage.id_table (see id_table.pyx)."""

from collections.abc import Sequence
from typing import SupportsIndex

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

class IdTable(Sequence[str]):
    rows: int
    def __init__(self, offsets: Buffer | npt.NDArray[np.uint64], blob: Buffer, keep: object = None) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, row: SupportsIndex) -> str: ...  # type: ignore[override]
    def find_one(self, id_: str) -> int: ...
    def find(self, ids: Sequence[str]) -> npt.NDArray[np.int64]: ...
