"""Search ``using=`` a named dense vector (schema v4): the parts of a search over a name's rows.

``Collection.search(..., using="title")`` runs the search core (search.py) unchanged but for what each part
scans: instead of the default vector's rows (a segment's ``vectors.f32``, a memtable's matrix) the rows of
the name (a segment's ``named/<name>.f32``, the memtable's matrix of that name), scored with the name's
metric. A part is then a :class:`NamedPart`: the segment or memtable snapshot it stands for (ids, metadata,
expiry, deletions and filters are that part's: the rows are the same), the name's index over that part
(a segment's ``named/<name>.<ext>`` once built: segment_index.py; None: an exact scan), and a memtable's
graph of that name (``Memtable.named_graph``, grown like the default vector's: memtable_index.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from proximadb.errors import DimensionMismatchError, ValidationError
from proximadb.storage.catalog import CollectionConfig
from proximadb.storage.collection_state import KernelMetric
from proximadb.storage.segment import Segment

KERNEL_METRIC: dict[str, KernelMetric] = {"euclidean": "l2", "cosine": "cosine", "dot_product": "dot"}


def resolve(config: CollectionConfig, using: object) -> tuple[str, int, KernelMetric]:
    """(name, dimension, kernel metric) of the named vector ``using``; ValidationError naming it and the
    declared names when the collection has no such named vector."""
    if not isinstance(using, str) or using not in config.vectors:
        declared = ", ".join(repr(n) for n in config.vectors) or "none"
        raise ValidationError(f"using: {using!r} is not a named vector of collection {config.name!r} "
                              f"(declared: {declared}; leave using out to search the default vector)")
    vec = config.vectors[using]
    return using, vec.dimension, KERNEL_METRIC[vec.distance_metric]


def check_query_dim(queries: Any, name: str, dim: int) -> None:
    """DimensionMismatchError when the queries' width is not the named vector's dimension."""
    try:
        shape = np.shape(queries)
    except ValueError:  # ragged: query_matrix says why
        return
    got = shape[-1] if len(shape) in (1, 2) else None
    if got is not None and got != dim:
        raise DimensionMismatchError(f"query has dimension {got}, named vector {name!r} has {dim}")


class NamedPart:
    """A part of the collection (a segment or a memtable snapshot) searched through a named vector's rows."""

    __slots__ = ("base", "graph", "in_id_order", "index", "metric", "source")

    def __init__(self, source: Any, base: np.ndarray, index: Any, metric: KernelMetric, graph: Any = None) -> None:
        self.source = source
        self.base = base  # the name's rows of the part
        self.index = index
        self.graph = graph  # a memtable snapshot's graph of the name (memtable_index.py), or None
        self.metric = metric
        self.in_id_order = isinstance(source, Segment)

    @property
    def ids(self) -> Any:
        return self.source.ids

    @property
    def metadata(self) -> Any:
        return self.source.metadata

    @property
    def expires_at(self) -> np.ndarray | None:
        return self.source.expires_at  # type: ignore[no-any-return]

    @property
    def vectors(self) -> np.ndarray:  # the default vector (a hit's "vector")
        return self.source.vectors  # type: ignore[no-any-return]

    @property
    def named(self) -> dict[str, np.ndarray] | None:  # every named vector (a hit's "named_vectors")
        return self.source.named  # type: ignore[no-any-return]


def segment_part(seg: Segment, name: str, metric: KernelMetric, exact: bool | None) -> NamedPart:
    return NamedPart(seg, seg.named[name], None if exact else seg.named_index.get(name), metric)


def memtable_part(snap: Any, name: str, metric: KernelMetric) -> NamedPart:
    return NamedPart(snap, snap.named[name][: snap.rows], None, metric, (snap.named_graph or {}).get(name))
