"""The state every part of a collection shares, as the mixins of ``storage.collection.Collection`` see it.

``Collection`` is assembled from one mixin per concern (``collection_writes.WritePath``,
``collection_reads.ReadPath``, ``search.SearchPath``, ``flush.FlushPath``,
``compaction.CompactionPath``). Each mixin inherits :class:`CollectionState`, which declares
the attributes ``Collection.__init__`` sets and the methods one part calls on another, so the
type checker checks every part against one description. The declarations exist for the type
checker only; at run time this class adds nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

    from proximadb.filters import Filter
    from proximadb.storage.catalog import CollectionConfig
    from proximadb.storage.collection import StorageOptions
    from proximadb.storage.flush import FlushRetry
    from proximadb.storage.log_of_record import LogOfRecord
    from proximadb.storage.manifest import Manifest
    from proximadb.storage.memtable import Memtable
    from proximadb.storage.memtable_index import MemtableIndexer
    from proximadb.storage.operations import InsertOp, Operation
    from proximadb.storage.segment import Segment
    from proximadb.storage.segment_index import IndexBuilder


KernelMetric = Literal["l2", "dot", "cosine"]  # the distance kernels' names of the metrics


class CollectionState:
    config: CollectionConfig
    directory: Path
    options: StorageOptions
    dim: int
    _metric: KernelMetric
    _lock: threading.RLock
    memtable: Memtable
    sealed: list[Memtable]
    segments: list[Segment]
    manifest: Manifest
    wal: LogOfRecord | None  # the WAL, or in cluster mode an ExternalLogPosition (log_of_record.py)
    last_flush_error: str | None
    _flush_retry: FlushRetry
    _background: threading.Thread | None
    _closing: bool
    _flush_mutex: threading.Lock
    _flush_thread: threading.Thread | None
    _flushing: bool
    write_stalls: int
    _stalled_writers: int
    _flush_done: threading.Condition
    flush_hook: Callable[[str], None] | None
    memtable_indexer: MemtableIndexer
    index_builder: IndexBuilder  # the segment index builds (segment_index.py)

    if TYPE_CHECKING:  # implemented by Collection or by another mixin

        def _require_open(self) -> LogOfRecord: ...
        def _request_lock(self) -> Any: ...
        def _new_memtable(self) -> Memtable: ...
        def _index_segment(self, seg: Segment, *, load_existing: bool) -> None: ...
        def compact(self, segment_ids: Sequence[int] | None = None) -> dict[str, Any]: ...
        # collection_writes.WritePath
        def _locate(self, id_: str) -> tuple[Memtable | Segment, int] | None: ...
        def _apply(self, op: Operation) -> None: ...
        def _check_insert(self, op: InsertOp, now: int | None, *, applying: bool = False) -> bool: ...
        def _refuse_existing(self, ids: Sequence[str], now: int | None) -> None: ...
        # collection_reads.ReadPath
        def _locate_alive(self, id_: str, now: int) -> tuple[Memtable | Segment, int] | None: ...
        def _live_matches(self, flt: Filter, now: int) -> Iterator[tuple[Memtable | Segment, Sequence[str],
                                                                          np.ndarray]]: ...
        # flush.FlushPath
        def _maybe_flush(self) -> None: ...
        def _stall_for_flush(self) -> None: ...
        def _flush_now(self) -> None: ...
        def _unflushed_rows(self) -> int: ...
        def _free_bytes(self) -> int | None: ...
        # compaction.CompactionPath
        def _maybe_compact_in_background(self) -> None: ...
