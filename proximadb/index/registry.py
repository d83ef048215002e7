"""Index kinds by name: the one place that maps a collection's ``indexing_algorithm`` to its class,
its parameters and its file in a segment directory.

Every kind is a subclass of :class:`proximadb.index._base.VectorIndex` (which owns the rows, the
query drivers and the file framing) described by an :class:`IndexKind`: the constructor keywords
that shape the built index (an index file built with other values is rebuilt), the per-query knob
(``ef``, ``nprobe``: both a keyword of ``search``/``search_batch`` and a settable default), the
defaults of both, and the defaults that depend on the segment's size. Callers (the segment index
builder, the collection's search) go through this table and never branch on a kind's name; a new
kind (quantized lists, a disk graph...) is one more :func:`register` call; a quantized form of a
kind (``quantization.py``) is a :func:`register_variant`, picked by the collection's index_params.

``flat`` (exact search, no index) is not a kind: a flat segment has no index at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import VectorIndex
from proximadb.index.hnsw import HNSWIndex
from proximadb.index.ivf import IVFIndex


def _no_size_defaults(params: dict[str, int], rows: int) -> dict[str, int]:
    return params


@dataclass(frozen=True)
class IndexKind:
    name: str  # the collection's indexing_algorithm
    cls: type[VectorIndex]
    file_name: str  # in the segment directory
    build_params: tuple[str, ...]  # constructor keywords after (dim, metric), also properties of the index
    search_param: str  # the per-query knob: a keyword of search()/search_batch() and a settable default
    # Every parameter a collection's index_params may set, with its inclusive range (checked by the catalog).
    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    defaults: Mapping[str, int] = field(default_factory=dict)
    # Keywords of add() for a segment's index build: HNSW inserts on every core (threads=0); a graph
    # built so depends on thread timing (recall does not), so index-level tests that need a
    # reproducible graph call add() themselves with threads=1. HNSW reads the segment's memory-mapped
    # vectors where they are (copy=False), and is given them again after a load (MappedVectorsKind).
    build_options: Mapping[str, int] = field(default_factory=dict)
    # Completes the parameters with the defaults that depend on the segment's row count.
    size_defaults: Callable[[dict[str, int], int], dict[str, int]] = _no_size_defaults

    def params(self, given: Mapping[str, Any], rows: int) -> dict[str, int]:
        """A collection's index_params completed with this kind's defaults for a segment of rows."""
        return self.size_defaults({**self.defaults, **given}, rows)

    def create(self, dim: int, metric: str, params: Mapping[str, int]) -> VectorIndex:
        """An empty index of this kind (params: complete, see :meth:`params`)."""
        index = self.cls(dim, metric, **{name: params[name] for name in self.build_params})
        self.configure(index, params)
        return index

    def build(self, dim: int, metric: str, params: Mapping[str, int], vectors: np.ndarray) -> VectorIndex:
        """An index of this kind over ``vectors`` (row i gets id i), built with :attr:`build_options`."""
        index = self.create(dim, metric, params)
        index.add(np.arange(vectors.shape[0], dtype=np.int64), vectors, **self.build_options)
        return index

    def configure(self, index: VectorIndex, params: Mapping[str, int]) -> None:
        """Set the search default that a loaded index does not take from its file."""
        setattr(index, self.search_param, params[self.search_param])

    def built_with(self, index: VectorIndex, params: Mapping[str, int]) -> bool:
        """Whether index was built with params (else it must be rebuilt)."""
        return all(getattr(index, name) == params[name] for name in self.build_params)

    def attach(self, index: VectorIndex, vectors: np.ndarray) -> None:
        """Give a loaded index what its file does not hold (the int8 kind: the float32 vectors)."""

    def search_options(self, **requested: int | None) -> dict[str, int | None]:
        """The keyword for search()/search_batch() out of a request's knobs (ef=..., nprobe=...)."""
        return {self.search_param: requested.get(self.search_param)}


class MappedVectorsKind(IndexKind):
    """A kind whose index keeps no copy of the segment's float32 vectors: it is built over the memory
    map (``add(copy=False)``) and, loaded from its file (which does not hold them), given it again."""

    def attach(self, index: VectorIndex, vectors: np.ndarray) -> None:
        index.attach_vectors(vectors)  # type: ignore[attr-defined]


KINDS: dict[str, IndexKind] = {}
_BY_CLASS: dict[type, IndexKind] = {}


def register(kind: IndexKind) -> IndexKind:
    if kind.name in KINDS or kind.cls in _BY_CLASS:
        raise ValueError(f"index kind {kind.name!r} ({kind.cls.__name__}) is registered already")
    KINDS[kind.name] = kind
    _BY_CLASS[kind.cls] = kind
    return kind


def register_variant(kind: IndexKind) -> IndexKind:
    """A kind that is not an indexing_algorithm of its own (a quantized form of one, chosen by
    index_params, see proximadb/index/quantization.py): known by its class and its file only."""
    if kind.cls in _BY_CLASS:
        raise ValueError(f"index class {kind.cls.__name__} is registered already")
    _BY_CLASS[kind.cls] = kind
    return kind


def all_kinds() -> list[IndexKind]:
    """Every kind, variants included (each with its own file name in a segment directory)."""
    return list(_BY_CLASS.values())


def kind(name: str) -> IndexKind:
    """The kind registered under name; ValidationError naming the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValidationError(f"unknown index kind {name!r} (known: {', '.join(KINDS)})") from None


def kind_of(index: VectorIndex) -> IndexKind:
    return _BY_CLASS[type(index)]


def _hnsw_size_defaults(params: dict[str, int], rows: int) -> dict[str, int]:
    """ef_construction at least M: the graph builds with max(ef_construction, M) and reports that, so a
    smaller setting would never match a built graph (every open would rebuild it)."""
    params["ef_construction"] = max(params["ef_construction"], params["M"])
    return params


def _ivf_size_defaults(params: dict[str, int], rows: int) -> dict[str, int]:
    """nlist 4·√rows (at most 65536, at most rows); nprobe nlist / 8 when unset (0)."""
    if "nlist" not in params:
        params["nlist"] = max(1, min(65536, int(4 * math.sqrt(max(rows, 1)))))
    params["nlist"] = max(1, min(params["nlist"], max(rows, 1)))
    if not params["nprobe"]:
        params["nprobe"] = max(1, params["nlist"] // 8)
    return params


register(MappedVectorsKind(
    "hnsw", HNSWIndex, "index.hnsw", build_params=("M", "ef_construction", "seed"), search_param="ef",
    ranges={"M": (2, 128), "ef_construction": (4, 4096), "ef": (1, 65536), "seed": (0, 2**31)},
    defaults={"M": 16, "ef_construction": 200, "ef": 64, "seed": 0},
    build_options={"threads": 0, "repair": True, "copy": False}, size_defaults=_hnsw_size_defaults,
))
register(IndexKind(
    "ivf", IVFIndex, "index.ivf", build_params=("nlist", "seed"), search_param="nprobe",
    ranges={"nlist": (1, 1 << 20), "nprobe": (1, 1 << 20), "seed": (0, 2**31)},
    defaults={"nprobe": 0, "seed": 0}, size_defaults=_ivf_size_defaults,
))
