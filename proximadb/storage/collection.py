"""One collection: its WAL, memtable and segments, and every read and write on them.

Files under ``collections/<uuid>/``: ``MANIFEST`` (manifest.py), ``wal/``
(wal.py) and ``segments/`` (segment.py).

Write path: validate -> (under the collection lock) check ids, hand the frame
to the WAL, apply to the memtable -> (outside the lock) wait until the frame
is as durable as the fsync policy promises -> acknowledge. Concurrent writers
therefore share fsyncs (group commit). A write is visible to searches as soon
as it is applied; it is acknowledged only once durable.

Invariant: every id is live in at most one place (the memtable, a sealed
memtable that a flush is writing, or one segment row). An upsert or metadata
update of a segment row or a sealed memtable row marks that row deleted and
puts the new version in the memtable, so segments and sealed memtables stay
immutable but for deletions.

Recovery: load the manifest and check ``segments/`` against it (integrity.py:
only proven crash leftovers are removed), load the segments, replay WAL frames
after the checkpoint through the same ``_apply`` the live path uses.

Steps that replace segments (flush, compaction, migration) are one
transaction, segment_rewrite.py: build under PENDING, carry deletions, commit
the manifest, swap, reindex; anything before the commit point rolls back.

This class is the facade: open/close and the public methods. The paths behind
them live in modules named for what they do and are mixed in:

    collection_writes.py  batch checks, apply (live writes and WAL replay)
    collection_reads.py   record lookups for get / get_many / count / scroll
    search.py             the top-k search core
    text_search.py        BM25 and hybrid search
    query_shapes.py       search_groups, recommend; score_threshold and per-request oversampling checks
    flush.py              memtable -> segment (written outside the lock), WAL checkpoint, retry policy
    sealed.py             the sealed memtables a flush writes while reads and writes go on
    compaction.py         merging segments, the background compaction policy
    collection_indexes.py the segment indexes (default and named vectors): attach, build, rebuild
    segment_rewrite.py    the transaction flush, compaction and migration share
"""

from __future__ import annotations

import errno
import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proximadb import deadline, progress
from proximadb.codec.avro_batch import decode_vector_batch
from proximadb.codec.framing import decode_frame
from proximadb.codec.payload import encode_insert
from proximadb.errors import (
    DiskFullError,
    EngineClosedError,
    UnknownOperationError,
    ValidationError,
    VectorNotFoundError,
)
from proximadb.filters import compile_filter
from proximadb.index import distance
from proximadb.limits import Limits
from proximadb.renamed import renamed
from proximadb.storage import expiry, integrity, memtable_index, named_columns, named_search, segment_index
from proximadb.storage.catalog import CollectionConfig
from proximadb.storage.collection_apply import LogApplyPath
from proximadb.storage.collection_indexes import IndexPath
from proximadb.storage.collection_reads import ReadPath
from proximadb.storage.collection_writes import WritePath, now_us
from proximadb.storage.compaction import CompactionPath
from proximadb.storage.disk_usage import directory_bytes
from proximadb.storage.flush import FlushPath, FlushRetry, is_disk_full
from proximadb.storage.log_of_record import LogOfRecord
from proximadb.storage.manifest import Manifest
from proximadb.storage.memtable import Memtable
from proximadb.storage.named_search import KERNEL_METRIC
from proximadb.storage.operations import DeleteOp, Metadata, MetadataPatch, Operation, UpdateOp
from proximadb.storage.query_shapes import QueryShapesPath, check_score_threshold
from proximadb.storage.segment import Segment, segment_dir_name
from proximadb.storage.segment_writer import DEFAULT_CHUNK_ROWS
from proximadb.storage.sparse_search import SparseSearchPath
from proximadb.storage.text_search import check_text
from proximadb.storage.validation import (
    check_ids,
    check_k,
    check_metadata,
    check_search_knob,
    query_matrix,
)
from proximadb.storage.wal import WriteAheadLog
from proximadb.text.bm25 import CorpusStats

log = logging.getLogger("proximadb.collection")


# A new memtable reserves (as address space: np.empty) MEMTABLE_RESERVE_FACTOR times the rows that fit
# under the flush threshold, so that rows are never copied while it fills, nor while writes go on into it
# during the flush before (a flush of 440k rows with metadata takes longer than writing them: growing
# the full memtable by half copied 220 MB under the lock, a one-second insert batch). Untouched pages
# cost nothing; the reserve is capped at MEMTABLE_RESERVE_MAX_BYTES of vectors. Every row also reserves
# 21 bytes of side arrays (int64 timestamp, uint8 alive flag, uint64 metadata place): at a small
# dimension those would dwarf the vectors (dim 1: 5x flush_bytes). MEMTABLE_RESERVE_MAX_ROWS bounds
# them at ~84 MB; a memtable that outgrows its reserve grows by half at a time (Memtable._reserve).
MEMTABLE_RESERVE_FACTOR = 4
MEMTABLE_RESERVE_MAX_BYTES = 4 << 30
MEMTABLE_RESERVE_MAX_ROWS = 4_000_000


@dataclass(slots=True)
class StorageOptions:
    """Engine-wide storage settings (the daemon fills them from flags, env and config)."""

    wal_strategy: str = "avro"
    wal_compression: str = "none"
    fsync: str = "always"
    memtable_type: str = "hash"
    flush_bytes: int = 256 << 20
    wal_segment_bytes: int = 64 << 20
    verify_segments: bool = True
    limits: Limits = field(default_factory=Limits)  # request limits (proximadb.limits), enforced here
    auto_compact: bool = True  # background compaction after flushes, by compaction.needs_compaction
    flush_on_close: bool = True  # a graceful close flushes the memtable (Collection.close), so no WAL replay at open
    # Rows per chunk when compaction and migration write a merged segment (merge.py, segment_writer.py): their
    # memory is about rewrite_chunk_rows x (4 x dim x 2 + ~2 kB of decoded metadata) plus the payload index being built,
    # whatever the segments' size (bench/results/compaction_memory.md).
    rewrite_chunk_rows: int = DEFAULT_CHUNK_ROWS
    # "wal": each collection's own WAL is its log of record. "external" (cluster mode): no WAL; writes arrive as
    # entries of a shard log, applied by Collection.apply_log_entry (collection_apply.py, log_of_record.py).
    log_of_record: str = "wal"
    # A memtable of more rows than this keeps an HNSW graph of them, grown in the background (memtable_index.py);
    # 0 = never (fresh rows are scanned exactly until the flush).
    memtable_index_rows: int = memtable_index.DEFAULT_INDEX_ROWS



class Collection(WritePath, LogApplyPath, ReadPath, QueryShapesPath, SparseSearchPath, FlushPath, CompactionPath,
                 IndexPath):
    """One collection. The public methods are here; the paths behind them are mixed in from their modules."""

    def __init__(self, config: CollectionConfig, directory: Path, options: StorageOptions) -> None:
        self.config = config
        self.directory = directory
        self.options = options
        self.dim = config.dimension
        self._metric = KERNEL_METRIC[config.distance_metric]
        self._lock = threading.RLock()
        self.memtable = self._new_memtable()
        self.sealed: list[Memtable] = []  # memtables a flush is writing (sealed.py), oldest first
        self.segments: list[Segment] = []
        self.manifest = Manifest()
        self.wal: LogOfRecord | None = None  # the WAL, or in cluster mode an ExternalLogPosition
        self.last_flush_error: str | None = None
        self.last_compaction_at: float | None = None  # unix seconds of this process's last compaction that merged
        self._flush_retry = FlushRetry()
        self.index_builder = segment_index.IndexBuilder(config.name, on_built=self._ask_compaction_policy,
                                                        wanted=self._index_wanted)
        self._compaction_lock = threading.Lock()  # one compaction at a time per collection
        self._background: threading.Thread | None = None
        self._closing = False  # set by close(): no new index builds or background compactions
        self._flush_mutex = threading.Lock()  # one flush at a time per collection (flush.py)
        self._flush_thread: threading.Thread | None = None  # the background flush a full memtable started
        self._flushing = False  # a flush is between its seal and its install (set under the lock)
        self.write_stalls = 0  # inserts that waited for a flush (flush.py: write stalls)
        self._stalled_writers = 0  # inserts waiting in a write stall now
        self._flush_done = threading.Condition(self._lock)  # notified when _flushing goes back to False
        self.flush_hook: Callable[[str], None] | None = None  # tests: called mid-flush, without the lock
        self.memtable_indexer = memtable_index.MemtableIndexer(
            config.name, self._lock, self._memtable_to_index, options.memtable_index_rows, self._new_memtable_graph)

    def _request_lock(self) -> Any:
        """The collection lock for a client request: gives up at the request's deadline (proximadb.deadline)."""
        return deadline.locked(self._lock, self._waiting)

    def _waiting(self) -> str:  # worded only for a request that timed out waiting
        return f"waiting for collection {self.config.name!r} (busy with a flush or compaction)"

    # ------------------------------------------------------------------ open/close
    @property
    def named_dims(self) -> dict[str, int]:
        """The collection's named dense vectors, name -> dimension (schema v4; {} when it declares none)."""
        return self.config.named_dims

    def _new_memtable(self) -> Memtable:
        named = self.named_dims
        row_bytes = 4 * (self.dim + sum(named.values()))
        full = self.options.flush_bytes // row_bytes + 1
        rows = min(MEMTABLE_RESERVE_FACTOR * full, MEMTABLE_RESERVE_MAX_BYTES // row_bytes, MEMTABLE_RESERVE_MAX_ROWS)
        try:
            return Memtable(self.dim, self.options.memtable_type, initial_rows=max(rows, 16), named=named)
        except MemoryError:  # address space refused (strict overcommit, ulimit -v): the threshold's rows only
            log.warning("collection %s: a memtable of %d rows could not be reserved; reserving %d",
                        self.config.name, rows, min(full, MEMTABLE_RESERVE_MAX_ROWS))
            return Memtable(self.dim, self.options.memtable_type,
                            initial_rows=max(min(full, MEMTABLE_RESERVE_MAX_ROWS), 16), named=named)

    def _memtable_to_index(self) -> Memtable | None:
        """(Lock held.) The memtable whose graphs the indexer grows now; None: stop (closing, or every vector,
        default and named, is ``flat``)."""
        if self._closing or all(memtable_index.graph_params(*self.config.index_settings(name)) is None
                                for name in [None, *self.config.vectors]):
            return None
        return self.memtable

    def _new_memtable_graph(self, name: str | None = None) -> memtable_index.MemtableGraph | None:
        """An empty memtable graph of the default vector, or of the named vector ``name``, with its own index
        settings (CollectionConfig.index_settings); None when they are ``flat`` (its rows are scanned)."""
        params = memtable_index.graph_params(*self.config.index_settings(name))
        if params is None:
            return None
        if name is None:
            return memtable_index.MemtableGraph(self.dim, self._metric, params)
        vec = self.config.vectors[name]
        return memtable_index.MemtableGraph(vec.dimension, KERNEL_METRIC[vec.distance_metric], params)

    @classmethod
    def open(cls, config: CollectionConfig, directory: Path, options: StorageOptions) -> Collection:
        self = cls(config, directory, options)
        (directory / "segments").mkdir(parents=True, exist_ok=True)
        self.manifest = integrity.open_manifest(directory, config.name)
        for ref in self.manifest.segments:
            seg = Segment(
                directory / "segments" / segment_dir_name(ref.id),
                deletes_generation=ref.deletes_generation,
                verify=options.verify_segments,
            )
            seg.remove_stale_bitmaps()
            named_columns.check_stored(seg.path, seg.named, config.named_dims)  # before anything is served
            self.segments.append(seg)
        for seg in self.segments:
            self._index_segment(seg, load_existing=True)
        if options.log_of_record == "external":
            self.wal = self._open_external_log()
            return self
        self._refuse_external_manifest()
        wal = self.wal = WriteAheadLog.open(
            directory / "wal",
            strategy=options.wal_strategy,
            compression=options.wal_compression,
            fsync=options.fsync,
            segment_bytes=options.wal_segment_bytes,
            first_seq=self.manifest.checkpoint_seq + 1,  # new frames are numbered above the checkpoint
        )
        started = time.monotonic()
        replayed = 0
        with progress.track("replay", config.name, unit="operations") as task:
            for seq, op in wal.replay(after_seq=self.manifest.checkpoint_seq):
                self._replay(seq, op)
                replayed += 1
                task.update(replayed)
        if replayed:
            log.info(
                "collection %s: replayed %d WAL operations after checkpoint %d in %.2fs (%d rows in memtable)",
                config.name, replayed, self.manifest.checkpoint_seq, time.monotonic() - started,
                self.memtable.live_count,
            )
        return self

    def close(self, *, flush: bool | None = None) -> None:
        """Stop index builds, let a compaction and a background flush finish, flush the memtable
        (``flush``, default the ``flush_on_close`` option) and close the WAL.

        The flush on close is the ordinary flush transaction, so a kill -9 during it still recovers
        from the WAL; it writes at most ``flush_bytes`` of rows and builds no index (the new segment
        is indexed on the next open). It is skipped when the disk could not hold it, and a failure is
        logged, not raised: the rows stay in the WAL and are replayed on the next open.
        """
        self._closing = True
        self.index_builder.stop()
        self.memtable_indexer.stop()
        with self._compaction_lock:  # let a running compaction reach its commit point or give up
            pass
        self.wait_for_flush()  # a background flush in progress installs its segment (or fails) first
        wal = self.wal
        if wal is not None and (self.options.flush_on_close if flush is None else flush):
            self._flush_on_close(wal)
        with self._lock:
            if self.wal is not None:
                self.wal.close()
                self.wal = None

    def _flush_on_close(self, wal: LogOfRecord) -> None:
        if wal.last_seq <= self.manifest.checkpoint_seq:
            return  # nothing the next open would replay
        try:
            self._flush_now()
        except Exception as exc:
            log.warning("collection %s: no flush on close (%s); the WAL keeps the %d memtable rows and the next "
                        "open replays them", self.config.name, exc, self._unflushed_rows())

    def _require_open(self) -> LogOfRecord:
        """The log of record (WAL or external position) of an open collection; EngineClosedError once closed."""
        if self.wal is None:
            raise EngineClosedError(f"collection {self.config.name} is closed")
        return self.wal

    # ------------------------------------------------------------------ writes
    @renamed(metadata="metadatas")
    def insert(
        self,
        records: Sequence[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        metadatas: Sequence[Metadata | None] | None = None,
        upsert: bool = False,
        sparse_vectors: Any = None,
        named_vectors: Any = None,
    ) -> list[str]:
        """Insert a batch (all or nothing); an existing id is an error unless ``upsert``. ``sparse_vectors``:
        per record ``{name: {"indices", "values"}}`` or None (or a record key of that name).
        ``named_vectors``: ``{name: (n, dim) array-like}``, or per record ``{name: vector}`` (or a record key
        of that name): in a collection that declares named vectors every record carries every one."""
        payload = encode_insert(records, ids=ids, vectors=vectors, metadata=metadatas, upsert=upsert,
                                sparse_vectors=sparse_vectors, named_vectors=named_vectors)
        return self.insert_payload(payload)

    @renamed(metadata="metadatas")
    def upsert(self, records: Sequence[dict[str, Any]] | None = None, **kwargs: Any) -> list[str]:
        return self.insert(records, upsert=True, **kwargs)

    def insert_payload(self, payload: bytes | bytearray | memoryview) -> list[str]:
        """Apply a versioned ``vector_insert`` payload exactly as a client sent it."""
        version, op_type, datum = decode_frame(payload)
        if op_type != "vector_insert":
            raise UnknownOperationError(f"expected a vector_insert payload, got {op_type!r}")
        # the metadata stays encoded: checked, stored and indexed without a dict per row (metadata_scan.pyx)
        # named vectors checked against the declared ones: every record carries each, no other (named_columns.py)
        batch = decode_vector_batch(datum, expected_dim=self.dim, schema_version=version, metadata_maps=True,
                                    named_dims=self.named_dims)
        op = batch.to_insert_op()
        return self._write_insert(op, bytes(payload))

    def delete(self, ids: Sequence[str]) -> int:
        """Delete the given ids; returns how many existed. Unknown ids are ignored."""
        ids = check_ids(list(ids), allow_duplicates=True, max_bytes=self.options.limits.max_id_bytes)
        with self._request_lock():
            now = expiry.now_us()
            present = list(dict.fromkeys(i for i in ids if self._locate_alive(i, now) is not None))
            if not present:
                return 0
            seq = self._log_and_apply(DeleteOp(present))
        self._require_open().wait_durable(seq)
        return len(present)

    @renamed(filter_spec="filter")
    def delete_where(self, filter: dict[str, Any] | str) -> int:
        """Delete every live row whose metadata matches the filter; returns the count."""
        flt = compile_filter(filter)
        if flt is None:
            raise ValidationError("delete by filter needs a non-empty filter")
        with self._request_lock():
            now = expiry.now_us()
            matched = [ids[row] for _, ids, hits in self._live_matches(flt, now)
                       for row in np.flatnonzero(hits).tolist()]
            if not matched:
                return 0
            deadline.check(f"matching the delete filter in collection {self.config.name!r}")
            seq = self._log_and_apply(DeleteOp(matched))
        self._require_open().wait_durable(seq)
        return len(matched)

    def update_metadata(self, id_: str, metadata: Metadata, *, replace: bool = False) -> dict[str, Any]:
        """Merge (or with ``replace``, swap) a record's metadata; a None value removes a key on merge."""
        check_ids([id_], max_bytes=self.options.limits.max_id_bytes)
        plain = check_metadata(metadata, f"id {id_!r}", self.options.limits.max_metadata_bytes)
        with self._request_lock():
            now = expiry.now_us()
            if self._locate_alive(id_, now) is None:
                raise VectorNotFoundError(f"no vector with id {id_!r} in collection {self.config.name}")
            seq = self._log_and_apply(UpdateOp([MetadataPatch(id_, dict(plain), replace)], now_us()))
            record = self._record(id_, include_vector=False, now=now)
        self._require_open().wait_durable(seq)
        assert record is not None
        return record

    def _log_and_apply(self, op: Operation) -> int:
        seq = self._require_open().write(op, None)
        self._apply(op)
        self._maybe_flush()
        return seq

    # ------------------------------------------------------------------ compaction
    def compact(self, segment_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Merge segments (default: all) into one, dropping deleted and superseded rows.

        Reads and writes go on during the merge; only the manifest swap takes the
        collection lock. See compaction.py for why this is crash-safe.
        """
        with self._compaction_lock:
            try:
                report = self._compact(segment_ids).to_dict()
                if report["merged"]:  # segments were rewritten (a compaction with nothing to do is not one)
                    self.last_compaction_at = time.time()
                return report
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise DiskFullError(
                    f"disk full while compacting collection {self.config.name}: its segments are untouched and "
                    f"the partial output was removed; free space and compact again ({exc})"
                ) from exc

    # ------------------------------------------------------------------ flush
    def flush(self) -> None:
        """Seal the memtable into a segment and checkpoint the WAL.

        Writes go on meanwhile (flush.py: only the seal and the install take the
        lock); a background flush in progress finishes first. On failure nothing is
        lost (the rows stay readable and in the WAL) and the error is raised:
        DiskFullError when the disk is full.
        """
        self._require_open()
        try:
            self._flush_now()
        except Exception as exc:
            with self._lock:
                self._flush_failed(exc, explicit=True)
                unflushed = self._unflushed_rows()
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise DiskFullError(
                    f"disk full while flushing collection {self.config.name}: "
                    f"{unflushed} records stay in the WAL/memtable (nothing is lost); "
                    f"free space and flush again ({exc})"
                ) from exc
            raise

    # ------------------------------------------------------------------ reads
    def get(self, id_: str, *, include_vector: bool = True) -> dict[str, Any] | None:
        (id_,) = check_ids([id_], max_bytes=self.options.limits.max_id_bytes)  # a str (numpy.str_ made one)
        with self._request_lock():
            return self._record(id_, include_vector)

    def get_many(self, ids: Sequence[str], *, include_vectors: bool = True) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out)."""
        ids = check_ids(list(ids), allow_duplicates=True, max_bytes=self.options.limits.max_id_bytes)
        with self._request_lock():
            now = expiry.now_us()
            found = (self._record(i, include_vectors, now) for i in ids)
            return [r for r in found if r is not None]

    @renamed(filter_spec="filter")
    def count(self, filter: dict[str, Any] | str | None = None) -> int:
        flt = compile_filter(filter)
        with self._request_lock():
            now = expiry.now_us()
            if flt is None:
                return self._live_count(now)
            return sum(int(np.count_nonzero(hits)) for _, _, hits in self._live_matches(flt, now))

    @renamed(filter_spec="filter")
    def scroll(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Records in ascending id order after ``cursor``; returns (page, next cursor or None)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be an integer from 1 to 10000, not {limit!r}")
        flt = compile_filter(filter)
        page: list[dict[str, Any]] = []
        with self._request_lock():
            now = expiry.now_us()
            streams = [self._segment_ids_after(seg, cursor) for seg in self.segments]
            streams += [m.live_ids_sorted(cursor) for m in self.sealed]
            streams.append(self.memtable.live_ids_sorted(cursor))
            matches = None if flt is None else {id(part): hits for part, _, hits in self._live_matches(flt, now)}
            for id_ in heapq.merge(*streams):
                where = self._locate_alive(id_, now)
                if where is None or (matches is not None and not matches[id(where[0])][where[1]]):
                    continue
                rec = self._record_at(*where, include_vectors)
                page.append(rec)
                if len(page) == limit:
                    return page, id_
        return page, None

    # ------------------------------------------------------------------ search
    @renamed(filter_spec="filter")
    def search(self, vector: Any, k: int = 10, **kwargs: Any) -> list[dict[str, Any]]:
        return self.search_batch([vector] if np.ndim(vector) == 1 else vector, k, **kwargs)[0]

    @renamed(filter_spec="filter")
    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
        include_metadata: bool = True,
        exact: bool | None = None,
        ef: int | None = None,
        nprobe: int | None = None,
        score_threshold: float | None = None,
        oversampling: float | None = None,
        using: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Top-k per query over memtable + segments, best first; filters apply inside the scan.
        ``using``: a named vector of the collection (None: the default vector): its rows are searched, the
        queries have its dimension, scores and distances are by its metric (named_search.py).
        ``score_threshold``: only hits at least that good (euclidean: distance <= it, so not negative;
        cosine, dot_product: score >= it). ``oversampling`` (1 to 100): a quantized collection rescores
        about k x it candidates (at least its own setting); ignored by an unquantized one, as Qdrant does."""
        check_k(k, self.options.limits.max_k)
        ef = check_search_knob("ef", ef)
        nprobe = check_search_knob("nprobe", nprobe)
        threshold, over = self._check_search_extras(score_threshold, oversampling, using)
        dim, metric = self.dim, self._metric
        if using is not None:
            using, dim, metric = named_search.resolve(self.config, using)
            named_search.check_query_dim(vectors, using, dim)
        queries = query_matrix(vectors, dim, cosine=metric == "cosine")
        if metric == "cosine":
            queries = distance.normalize_rows(queries)
        flt = compile_filter(filter)
        return self._search(queries, k, flt, include_vectors=include_vectors, include_metadata=include_metadata,
                            exact=exact, ef=ef, nprobe=nprobe, score_threshold=threshold, oversampling=over,
                            using=using)

    def search_text(self, text: str, k: int = 10, *, filter: dict[str, Any] | str | None = None,
                    include_metadata: bool = True, analyzer: Any = None, score_threshold: float | None = None,
                    stats: CorpusStats | None = None) -> list[dict[str, Any]]:
        """BM25 top-k over the records' ``document`` text (storage/text_search.py), best first; the
        filter applies inside. ``analyzer``: a proximadb.text.analyzer.Analyzer (default: the collection's
        ``text_analyzer`` setting). Hits: id, score (BM25), metadata. ``score_threshold``: only
        hits with score >= it (BM25 is never negative, nor may the threshold be). ``stats``: score with
        these statistics, not the collection's own (a cluster shard's search: :meth:`text_stats`)."""
        check_k(k, self.options.limits.max_k)
        threshold = check_score_threshold(score_threshold, distance_metric=True)
        hits = self._search_text(check_text(text), k, compile_filter(filter), analyzer or self.collection_analyzer(),
                                 include_metadata, stats)
        return hits if threshold is None else [h for h in hits if h["score"] >= threshold]

    def text_stats(self, text: str) -> CorpusStats:
        """The BM25 statistics of this collection's live rows for ``text``'s terms (analysed with the
        collection's analyzer): what a cluster adds up over its shards before it scores."""
        return self._text_stats(check_text(text), self.collection_analyzer())

    # ------------------------------------------------------------------ info
    def wal_stats(self) -> dict[str, Any]:
        wal = self.wal
        return asdict(wal.stats()) if wal is not None else {}

    def _indexing(self) -> tuple[int, int]:
        """(indexed_rows, unindexed_rows): live rows searched through an index (a segment's: every segment
        row of a flat collection, which has no index to build; or a memtable's graph, memtable_index.py)
        and the rest: memtable rows not in a graph yet and rows of segments whose index build is pending."""
        needs_index = self.config.indexing_algorithm != "flat"
        waiting = sum(s.live_count for s in self.segments if needs_index and s.index is None)
        graphed = self._memtable_indexed_rows()
        return (sum(s.live_count for s in self.segments) - waiting + graphed,
                self._unflushed_rows() - graphed + waiting)

    def _memtable_indexed_rows(self) -> int:
        """Live rows of the memtable and the sealed ones that their graphs cover."""
        return sum(memtable_index.live_indexed(mt) for mt in [*self.sealed, self.memtable])

    def wait_for_memtable_index(self, timeout: float | None = None) -> bool:
        """Block until the memtable's graph covers every row it will get (memtable_index.py); False on timeout."""
        return self.memtable_indexer.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        with self._request_lock():
            wal = self.wal
            indexed, unindexed = self._indexing()
            pending = self.index_builder.pending
            return {
                "name": self.config.name,
                "uuid": self.config.uuid,
                "vectors": self._live_count(expiry.now_us()),  # as count(): expired rows left out
                "memtable_rows": self._unflushed_rows(),  # the sealed memtables a flush is writing too
                "memtable_bytes": self.memtable.approx_bytes + sum(m.approx_bytes for m in self.sealed),
                "segments": len(self.segments),
                "segment_rows": sum(s.rows for s in self.segments),
                "checkpoint_seq": self.manifest.checkpoint_seq,
                "wal_last_seq": wal.last_seq if wal else None,
                "last_flush_error": self.last_flush_error,
                "indexing_algorithm": self.config.indexing_algorithm,
                "indexed_segments": sum(1 for s in self.segments if s.index is not None),
                "index_builds_pending": pending,
                "last_index_error": self.index_builder.last_error,
                # green: every live row is searched through an index and no build is queued (Qdrant's meaning)
                "status": "green" if unindexed == 0 and pending == 0 else "yellow",
                "indexed_rows": indexed,
                "unindexed_rows": unindexed,
                # (in the .proto's field order: gRPC answers the keys in that order)
                "wal_bytes": directory_bytes(wal.directory) if isinstance(wal, WriteAheadLog) else 0,
                "last_compaction_at": self.last_compaction_at,
                "memtable_indexed_rows": self._memtable_indexed_rows(),  # live memtable rows in its HNSW graph
                # segment filter plans (filter_cache.py): segments replaced by a compaction take theirs along
                "filter_plan_cache_hits": sum(s.plan_cache.hits for s in self.segments),
                "filter_plan_cache_misses": sum(s.plan_cache.misses for s in self.segments),
                "filter_plan_cache_bytes": sum(s.plan_cache.nbytes for s in self.segments),
            }
