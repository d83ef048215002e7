"""The memtable: fresh rows of one collection, searchable at once.

Rows live in one contiguous float32 matrix that grows geometrically; rows are
only ever appended, so a search may keep a reference to the matrix and the
row count of the moment without holding a lock (see :meth:`Memtable.snapshot`).
A replaced or deleted row is marked dead in ``alive`` and dropped from the id
map; the flush writes only live rows. Every row's metadata is indexed as it arrives
(``payload``: :mod:`proximadb.storage.payload_index`), so filters never walk it per row.
Sparse vectors (schema v3) are one growing CSR per name (``sparse``: sparse_column.GrowingSparse);
a row written without a name has none of it (an upsert replaces the row whole).
Named dense vectors (schema v4) are one float32 matrix per declared name (``named``), with the default
vector's row numbering, reserve and growth: every row has every name (the collection's declaration),
so they share its ``alive`` flags, expiry and id map. Past ``memtable_index_rows`` rows each name has
an HNSW graph of its own too (``named_graph``; not a ``flat`` name), grown by the same background thread.

Past ``memtable_index_rows`` rows a memtable also has an HNSW graph of its rows (``graph``), grown
in the background (:mod:`proximadb.storage.memtable_index`).

A flush seals a memtable (storage/sealed.py): from then on it takes no new rows and
no metadata changes, only deletions, so the flush can read it without the lock.

Two id maps: ``hash`` (a dict, the fast default) and ``btree`` (a sorted map:
ids stay ordered, so scrolling the memtable in id order needs no sort).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sortedcontainers import SortedDict

from proximadb.errors import ValidationError
from proximadb.storage import named_columns
from proximadb.storage.memtable_metadata import MemtableMetadata, MetadataRows
from proximadb.storage.metadata_store import MetadataColumn
from proximadb.storage.operations import NO_EXPIRY, Metadata
from proximadb.storage.payload_index import PayloadIndex
from proximadb.storage.sparse_column import GrowingSparse, SparseColumn, row_dict

if TYPE_CHECKING:
    from proximadb.storage.memtable_index import MemtableGraph

MEMTABLE_TYPES = ("hash", "btree")
_ROW_OVERHEAD = 96  # bytes of bookkeeping per row, beyond the vector and the id


@dataclass(slots=True)
class MemtableSnapshot:
    """A consistent read view: rows [0, n) of ``vectors`` with ``alive`` copied."""

    vectors: np.ndarray
    alive: np.ndarray  # uint8 (n,)
    ids: list[str]
    metadata: MemtableMetadata  # the memtable's own (rows are only appended): read rows [0, rows)
    timestamps: np.ndarray
    expires_at: np.ndarray | None = None  # int64 (NO_EXPIRY = never) or None: no row expires
    graph: MemtableGraph | None = None  # an HNSW graph over the memtable's first rows (memtable_index.py)
    sparse: dict[str, SparseColumn] | None = None  # rows [0, n) per sparse vector name (views)
    named: dict[str, np.ndarray] | None = None  # per named vector the matrix (rows [0, n) written); None: none
    named_graph: dict[str, MemtableGraph] | None = None  # per named vector its graph, once it has one
    all_alive: bool = False  # no row of [0, n) is deleted or replaced (as many live ids as rows)

    @property
    def rows(self) -> int:
        return int(self.alive.shape[0])


class Memtable:
    def __init__(self, dim: int, kind: str = "hash", initial_rows: int = 1024,
                 named: Mapping[str, int] | None = None) -> None:
        """``initial_rows``: capacity to reserve; the engine passes what fits under its flush
        threshold, so rows are never copied. np.empty only reserves address space: pages
        become resident as rows are written. ``named``: the declared named vectors, name -> dimension."""
        if kind not in MEMTABLE_TYPES:
            raise ValidationError(f"memtable type must be one of {', '.join(MEMTABLE_TYPES)}, not {kind!r}")
        self.dim = dim
        self.kind = kind
        self._vectors = np.empty((initial_rows, dim), dtype=np.float32)
        # named dense vectors (schema v4): one matrix per declared name, rows as _vectors'
        self._named = {name: np.empty((initial_rows, d), dtype=np.float32) for name, d in (named or {}).items()}
        self._named_row_bytes = 4 * sum((named or {}).values())
        self._timestamps = np.empty(initial_rows, dtype=np.int64)
        self._alive = np.zeros(initial_rows, dtype=np.uint8)
        self._expires: np.ndarray | None = None  # int64 (schema v2), allocated by the first expiring row
        self._ids: list[str] = []
        self._metadata = MemtableMetadata(initial_rows)  # encoded maps: no dict per row (memtable_metadata.py)
        self._index: dict[str, int] | SortedDict = SortedDict() if kind == "btree" else {}
        self.sparse = GrowingSparse()
        self._bytes = 0
        self.payload = PayloadIndex()  # rows [0, rows) indexed; dead rows stay (alive removes them)
        self.graph: MemtableGraph | None = None  # HNSW graph over rows [0, graph.indexed): memtable_index.py
        self.named_graph: dict[str, MemtableGraph] = {}  # per named vector its graph, as ``graph``

    # -- size ---------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows written, dead ones included."""
        return len(self._ids)

    @property
    def live_count(self) -> int:
        return len(self._index)

    @property
    def approx_bytes(self) -> int:
        """What flushing cares about: vectors, ids and bookkeeping of every row written."""
        return self._bytes

    # -- writes -------------------------------------------------------------
    def _reserve(self, extra: int) -> None:
        need = len(self._ids) + extra
        cap = self._vectors.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap + cap // 2, 1024)
        vectors = np.empty((new_cap, self.dim), dtype=np.float32)
        vectors[:cap] = self._vectors
        timestamps = np.empty(new_cap, dtype=np.int64)
        timestamps[:cap] = self._timestamps
        alive = np.zeros(new_cap, dtype=np.uint8)
        alive[:cap] = self._alive
        named = {}
        for name, old in self._named.items():
            named[name] = np.empty((new_cap, old.shape[1]), dtype=np.float32)
            named[name][:cap] = old
        self._named = named
        if self._expires is not None:  # rows past the written ones get their value when written (put_batch)
            expires = np.empty(new_cap, dtype=np.int64)
            expires[:cap] = self._expires
            self._expires = expires
        # Readers holding the old arrays keep a valid (older) view.
        self._vectors, self._timestamps, self._alive = vectors, timestamps, alive

    def put_batch(
        self, ids: list[str], vectors: np.ndarray, metadata: Sequence[Metadata | None], timestamps: np.ndarray,
        expires_at: np.ndarray | None = None, sparse: dict[str, SparseColumn] | None = None,
        scanned: tuple[Any, ...] | None = None, named: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Append rows; an id already in the memtable has its old row marked dead.

        ``metadata``: dicts, or the batch's encoded maps (a MetadataColumn), stored as they are;
        ``scanned``: what metadata_scan.scan_maps read from those maps, indexed without a dict per row.
        ``expires_at``: int64 per row (NO_EXPIRY = never) or None (no row expires); ``sparse``: the
        rows' sparse vectors per name (None: none); ``named``: every declared named vector's ``(n, dim)``
        rows (the collection checked them: exactly the declared names)."""
        n = len(ids)
        if n == 0:
            return
        self._reserve(n)
        start = len(self._ids)
        if set(named or ()) != self._named.keys():
            raise ValueError(f"rows with named vectors {sorted(named or ())}, the memtable holds {sorted(self._named)}")
        self._vectors[start : start + n] = vectors
        for name, column in (named or {}).items():
            self._named[name][start : start + n] = column
        self._timestamps[start : start + n] = timestamps
        if expires_at is not None:
            if self._expires is None:  # address space for the whole reserve; only the rows written are filled
                self._expires = np.empty(self._vectors.shape[0], dtype=np.int64)
                self._expires[:start] = NO_EXPIRY
            self._expires[start : start + n] = expires_at
        elif self._expires is not None:
            self._expires[start : start + n] = NO_EXPIRY
        if sparse or self.sparse.names:
            self._bytes += self.sparse.append(start, n, sparse)
        self._alive[start : start + n] = 1
        index = self._index
        replaced = index.keys() & ids if index else ()
        for id_ in replaced:
            self._alive[index[id_]] = 0
        index.update(zip(ids, range(start, start + n), strict=True))
        self._bytes += sum(map(len, ids)) + n * _ROW_OVERHEAD
        self._ids.extend(ids)
        if isinstance(metadata, MetadataColumn):
            self._metadata.append_encoded(metadata.blob, metadata.offsets)
        else:
            self._metadata.append(metadata)
        if scanned is not None:
            _, fields, strings, entries = scanned
            self.payload.add_scanned(start, fields, strings, entries)
        else:
            self.payload.add_rows(start, metadata)
        self._bytes += n * (self.dim * 4 + self._named_row_bytes)

    def delete(self, id_: str) -> bool:
        row = self._index.pop(id_, None)
        if row is None:
            return False
        self._alive[row] = 0
        return True

    def set_metadata(self, id_: str, metadata: Metadata) -> bool:
        row = self._index.get(id_)
        if row is None:
            return False
        self.payload.replace_row(row, self._metadata[row], metadata)
        self._bytes += self._metadata.set(row, metadata) + _ROW_OVERHEAD  # an update holds memory until the flush
        return True

    # -- reads --------------------------------------------------------------
    def __contains__(self, id_: str) -> bool:
        return id_ in self._index

    def id_keys(self):  # type: ignore[no-untyped-def]
        """A set-like view of the live ids."""
        return self._index.keys()

    def row_of(self, id_: str) -> int | None:
        return self._index.get(id_)

    def record(self, row: int) -> dict[str, Any]:
        rec = {
            "id": self._ids[row],
            "vector": self._vectors[row].copy(),
            "metadata": self._metadata[row],
            "timestamp": int(self._timestamps[row]),
        }
        if self._expires is not None and self._expires[row] != NO_EXPIRY:
            rec["expires_at"] = int(self._expires[row])
        sparse = row_dict(self.sparse.view(len(self._ids)), row) if self.sparse.names else None
        if sparse:
            rec["sparse_vectors"] = sparse
        if self._named:
            rec["named_vectors"] = named_columns.row_vectors(self._named, row)
        return rec

    @property
    def named_names(self) -> list[str]:
        return list(self._named)

    def named_columns(self, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """The named vectors of the given rows (a flush's, a row moved to another memtable), or None."""
        return {name: m[rows] for name, m in self._named.items()} if self._named else None

    def sparse_columns(self, rows: np.ndarray) -> dict[str, SparseColumn] | None:
        """The sparse vectors of the given rows (a flush's, a row moved to another memtable), or None."""
        return self.sparse.take(rows, len(self._ids)) if self.sparse.names else None

    @property
    def expires_at(self) -> np.ndarray | None:
        """int64 expiry per row (longer than ``rows``: the reserve), NO_EXPIRY = never; None: no row expires."""
        return self._expires

    def expires_of(self, row: int) -> int:
        """The row's expires_at, NO_EXPIRY when it never expires."""
        return NO_EXPIRY if self._expires is None else int(self._expires[row])

    def expires_columns(self, rows: np.ndarray) -> np.ndarray | None:
        """expires_at of the given rows (for a flush), or None when no row of the memtable expires."""
        return None if self._expires is None else self._expires[rows]

    @property
    def vector_array(self) -> np.ndarray:
        """The array rows are written to (more rows of room than written): the same object until the memtable
        grows into a larger one, which holds the written rows too (a memtable graph reads it in place)."""
        return self._vectors

    def vectors_of(self, start: int, end: int, name: str | None = None) -> np.ndarray:
        """Rows [start, end) (written already) of the default vector or the named vector ``name``: a view
        that stays valid, as rows are never rewritten."""
        return (self._vectors if name is None else self._named[name])[start:end]

    def array_of(self, name: str | None) -> np.ndarray:
        """:attr:`vector_array`, or the named vector ``name``'s array (as it: more rows of room than written)."""
        return self._vectors if name is None else self._named[name]

    def metadata_of(self, row: int) -> Metadata:
        return self._metadata[row]

    def snapshot(self) -> MemtableSnapshot:
        n = len(self._ids)
        return MemtableSnapshot(
            vectors=self._vectors,
            alive=self._alive[:n].copy(),
            ids=self._ids,
            metadata=self._metadata,
            timestamps=self._timestamps,
            expires_at=self._expires,
            graph=self.graph,
            sparse=self.sparse.view(n) if self.sparse.names else None,
            named=dict(self._named) if self._named else None,
            named_graph=dict(self.named_graph) if self.named_graph else None,
            all_alive=len(self._index) == n,
        )

    def live_ids_sorted(self, after: str | None = None) -> Iterator[str]:
        """Live ids in ascending order, starting after ``after``."""
        if isinstance(self._index, SortedDict):
            keys = self._index.irange(minimum=after, inclusive=(False, False)) if after else self._index
            yield from keys
        else:
            keys = sorted(k for k in self._index if after is None or k > after)
            yield from keys

    def live_rows(self) -> np.ndarray:
        """Row numbers of live rows, in id order (the order a flushed segment keeps)."""
        if isinstance(self._index, SortedDict):
            return np.fromiter(self._index.values(), dtype=np.int64, count=len(self._index))
        order = sorted(self._index.items())
        return np.fromiter((row for _, row in order), dtype=np.int64, count=len(order))

    def alive_rows(self) -> np.ndarray:
        """Row numbers of the live rows, in row order (a flush's view of a sealed memtable, taken under the lock)."""
        return np.flatnonzero(self._alive[: len(self._ids)])

    def ids_of(self, rows: np.ndarray) -> list[str]:
        ids = self._ids
        return [ids[r] for r in rows.tolist()]

    def is_alive(self, rows: np.ndarray) -> np.ndarray:
        """bool per row of ``rows``: still live (not deleted or replaced since)."""
        return self._alive[rows] != 0

    def columns(self, rows: np.ndarray) -> tuple[list[str], np.ndarray, MetadataRows, np.ndarray]:
        """ids, vectors, metadata (decoded as it is read) and timestamps of the given rows (for a flush)."""
        return self.ids_of(rows), self._vectors[rows], MetadataRows(self._metadata, rows), self._timestamps[rows]
