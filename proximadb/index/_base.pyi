"""Type stubs for the compiled proximadb.index._base module (the core of every index kind)."""

import os
import struct
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from proximadb.errors import CorruptionError

METRICS: tuple[str, ...]

_Index = TypeVar("_Index", bound="VectorIndex")

class IndexFileFormat:
    label: str
    magic: bytes
    version: int
    header: struct.Struct
    header_size: int
    end_magic: bytes
    older: tuple[int, ...]
    def __init__(
        self, label: str, magic: bytes, version: int, header: struct.Struct, end_magic: bytes,
        older: tuple[int, ...] = (),
    ) -> None: ...
    def error(self, path: object, what: str) -> CorruptionError: ...

class VectorIndex:
    FILE_FORMAT: IndexFileFormat
    # Every registered kind (HNSWIndex, IVFIndex) takes dim, metric and its build parameters and
    # implements add/search/search_batch with its own knob (ef, nprobe); the base declares the shape.
    def __init__(self, dim: int, metric: str, **params: Any) -> None: ...
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def n_rows(self) -> int: ...
    @property
    def n_deleted(self) -> int: ...
    @property
    def ids(self) -> npt.NDArray[np.int64]: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: int) -> bool: ...
    def mark_deleted(self, id: int) -> None: ...
    def save(self, path: str | os.PathLike[str]) -> None: ...
    @classmethod
    def load(cls: type[_Index], path: str | os.PathLike[str]) -> _Index: ...
