"""The engine: one data directory, its catalog and its collections, in-process.

Layout of a data directory::

    LOCK                  flock held by the owning process (lockfile.py)
    catalog.pxdb          every collection's settings (catalog.py)
    collections/<uuid>/   one collection's MANIFEST, wal/ and segments/ (collection.py)
    quarantine/           what the open found under collections/ and could not explain (integrity.py)

Opening checks the directory against the catalog before anything is read or
removed (integrity.py): a missing catalog next to collection directories is a
refusal to start, not an empty database. Every failure to open is one line
(a ProximaDBError) that names the file and says what to do.

The service layer (REST and gRPC) calls this API; so does in-process use::

    with Engine.open("./data") as engine:
        engine.create_collection("docs", dimension=128, distance_metric="euclidean")
        docs = engine.collection("docs")
        docs.insert(ids=["a", "b"], vectors=matrix)
        hits = docs.search(matrix[0], k=5)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from proximadb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    EngineClosedError,
    ValidationError,
    storage_error_from_os,
)
from proximadb.storage import integrity, intents
from proximadb.storage.allocator import pin_malloc_mmap_threshold
from proximadb.storage.catalog import Catalog, CollectionConfig, check_dimension_limits
from proximadb.storage.collection import Collection, StorageOptions
from proximadb.storage.lockfile import DataDirLock
from proximadb.storage.manifest import LOGS_OF_RECORD
from proximadb.storage.memtable import MEMTABLE_TYPES

log = logging.getLogger("proximadb.engine")


class Engine:
    def __init__(self, data_dir: Path, options: StorageOptions) -> None:
        self.data_dir = data_dir
        self.options = options
        self._lock = threading.RLock()
        self._dir_lock = DataDirLock(data_dir)
        self._collections: dict[str, Collection] = {}  # by uuid
        self.catalog: Catalog | None = None

    @classmethod
    def open(cls, data_dir: str | Path, **options: Any) -> Engine:
        """Open (creating if needed) a data directory; replays every collection's WAL.

        Options are the fields of :class:`StorageOptions` (wal_strategy, wal_compression,
        fsync, memtable_type, flush_bytes, wal_segment_bytes, verify_segments, limits, auto_compact,
        log_of_record: "external" in cluster mode, where collections keep no WAL and apply a shard log,
        rewrite_chunk_rows: rows per chunk of a compaction's or migration's merge, which bounds its memory,
        memtable_index_rows: a memtable of more rows keeps an HNSW graph of them, 0 = never);
        ``limits`` is a :class:`proximadb.limits.Limits`.
        """
        known = {f.name for f in fields(StorageOptions)}
        unknown = set(options) - known
        if unknown:
            raise ValidationError(f"unknown engine option(s): {', '.join(sorted(unknown))}")
        pin_malloc_mmap_threshold()  # before the first big buffer (storage/allocator.py)
        opts = StorageOptions(**options)
        if opts.memtable_type not in MEMTABLE_TYPES:
            raise ValidationError(f"memtable_type must be one of {', '.join(MEMTABLE_TYPES)}")
        if opts.log_of_record not in LOGS_OF_RECORD:
            raise ValidationError(f"log_of_record must be one of {', '.join(LOGS_OF_RECORD)}")
        if isinstance(opts.rewrite_chunk_rows, bool) or not isinstance(opts.rewrite_chunk_rows, int) \
                or opts.rewrite_chunk_rows < 1:
            raise ValidationError(f"rewrite_chunk_rows must be a positive integer, not {opts.rewrite_chunk_rows!r}")
        if isinstance(opts.memtable_index_rows, bool) or not isinstance(opts.memtable_index_rows, int) \
                or opts.memtable_index_rows < 0:
            raise ValidationError(
                f"memtable_index_rows must be an integer >= 0 (0: off), not {opts.memtable_index_rows!r}")
        path = Path(data_dir).expanduser().resolve()
        engine = cls(path, opts)
        engine._dir_lock.acquire()  # creates the directory if needed
        try:
            engine._load()
        except BaseException as exc:
            engine._close_collections()
            engine._dir_lock.release()
            if isinstance(exc, OSError):
                raise storage_error_from_os(exc, f"cannot open data directory {path}") from exc
            raise
        return engine

    def _load(self) -> None:
        started = time.monotonic()
        catalog = integrity.open_catalog(self.data_dir)
        for uuid, cfg in catalog.collections.items():
            self._collections[uuid] = Collection.open(cfg, catalog.collections_dir / uuid, self.options)
        self.catalog = catalog
        log.info(
            "opened data directory %s: %d collection(s) in %.2fs",
            self.data_dir, len(self._collections), time.monotonic() - started,
        )

    # ------------------------------------------------------------------ collections
    @property
    def _catalog(self) -> Catalog:
        if self.catalog is None:
            raise EngineClosedError(f"the engine for {self.data_dir} is closed")
        return self.catalog

    def create_collection(self, name: str, dimension: int, *, from_files: Path | None = None,
                          vectors: Mapping[str, Mapping[str, Any]] | None = None,
                          **settings: Any) -> dict[str, Any]:
        """A new collection; with ``from_files`` (a directory on this filesystem holding a collection's
        ``MANIFEST`` and segments: a cluster replica's snapshot), it opens with those files, moved in.
        ``vectors``: its named dense vectors, ``{name: {"dimension": int, "distance_metric": str}}`` and
        optionally each one's own index settings (storage/catalog.py: validate_named_vectors); names,
        dimensions and metrics fixed from now on."""
        cfg = CollectionConfig.new(name, dimension, vectors=vectors, **settings)
        check_dimension_limits(cfg, self.options.limits.max_dimension)
        with self._lock:
            catalog = self._catalog
            if catalog.find(cfg.name) is not None:
                raise CollectionExistsError(f"collection {cfg.name!r} already exists")
            directory = catalog.collections_dir / cfg.uuid
            with intents.new_dir(directory) as tmp:
                # collections/<uuid>/ with its PENDING marker, removed once the catalog names it
                for item in sorted(from_files.iterdir()) if from_files is not None else []:
                    os.replace(item, tmp / item.name)
            try:
                collection = Collection.open(cfg, directory, self.options)
            except BaseException:
                intents.discard(directory)
                raise
            catalog.collections[cfg.uuid] = cfg
            try:
                catalog.save()
            except BaseException:
                del catalog.collections[cfg.uuid]
                collection.close()
                intents.discard(directory)
                raise
            intents.settle(committed=[directory])
            self._collections[cfg.uuid] = collection
            log.info("created collection %s (%s): dimension %d, %s, %s", cfg.name, cfg.uuid, cfg.dimension,
                     cfg.distance_metric, cfg.indexing_algorithm)
            return cfg.to_dict()

    def _config(self, name_or_uuid: str) -> CollectionConfig:
        cfg = self._catalog.find(name_or_uuid)
        if cfg is None:
            raise CollectionNotFoundError(f"collection {name_or_uuid!r} does not exist")
        return cfg

    def get_collection(self, name_or_uuid: str) -> dict[str, Any]:
        with self._lock:
            cfg = self._config(name_or_uuid)
            info = cfg.to_dict()
            info["vector_count"] = self._collections[cfg.uuid].count()
            return info

    def list_collections(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.get_collection(uuid) for uuid in self._catalog.collections]

    def update_collection(self, name_or_uuid: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            old = self._config(name_or_uuid)
            new = old.updated(changes)
            catalog = self._catalog
            catalog.collections[old.uuid] = new
            try:
                catalog.save()
            except BaseException:
                catalog.collections[old.uuid] = old
                raise
            self._collections[old.uuid].reconfigure(new)
            return new.to_dict()

    def delete_collection(self, name_or_uuid: str) -> None:
        with self._lock:
            cfg = self._config(name_or_uuid)
            catalog = self._catalog
            del catalog.collections[cfg.uuid]
            catalog.dropped.append(cfg.uuid)  # the proof, for the next open, that its directory may go
            try:
                catalog.save()  # from here on the collection is gone, even after a crash
            except BaseException:
                catalog.collections[cfg.uuid] = cfg
                catalog.dropped.remove(cfg.uuid)
                raise
            collection = self._collections.pop(cfg.uuid)
            collection.close(flush=False)  # its files go: nothing to flush
            intents.settle(dropped=[collection.directory])
            log.info("deleted collection %s (%s)", cfg.name, cfg.uuid)

    def collection(self, name_or_uuid: str) -> Collection:
        with self._lock:
            return self._collections[self._config(name_or_uuid).uuid]

    # ------------------------------------------------------------------ lifecycle
    def flush_all(self) -> None:
        for collection in list(self._collections.values()):
            collection.flush()

    def _close_collections(self) -> None:
        for collection in self._collections.values():
            collection.close()
        self._collections.clear()

    def close(self) -> None:
        with self._lock:
            if self.catalog is None:
                return
            self._close_collections()
            self.catalog = None
            self._dir_lock.release()
            log.info("closed data directory %s", self.data_dir)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
