"""The approximate index of a sealed segment (HNSW, IVF: any kind of proximadb/index/registry.py),
built in the background.

A collection whose ``indexing_algorithm`` names an index kind gets one index
per segment, over the segment's rows (index ids = row numbers), stored beside
the segment's data under the kind's file name (``index.hnsw`` / ``index.ivf``; ``index.hnsw8`` /
``index.hnswb`` / ``index.hnswpq`` for an HNSW with int8 / binary / product quantization,
``proximadb/index/quantization.py``,
whose float32 vectors are the segment's own memory map, attached on load).
The framing, magic, version and CRC32C of those files are documented at the
top of ``proximadb/index/_base.pyx``, each kind's header and body in its
module (``hnsw.pyx``, ``ivf.pyx``); files are written to a temporary name,
fsynced and renamed, so a crash leaves no half index under the real name.

A flush never waits for an index: the new segment is searched exactly until
its index is ready, then the index is swapped in. On open an index file is
loaded and checked (its checksum, and that its dimension, metric, parameters
and row count are the segment's); a file that is missing, damaged or built
with other parameters is logged and rebuilt, never trusted blindly.

A compaction's merged segment does not wait for the builder: its graph is grown before the commit
from the largest input's, when that is a float32 HNSW graph built with the collection's parameters
whose every row the merge kept (:func:`growth_seed`, :func:`grow`; ``index/_hnsw_grow.pyx``): the
base's rows keep their links and only the other inputs' rows are inserted, so a merge costs the rows
it adds, not all of them, and the merged segment is never searched exactly. Otherwise it is built
like a flush's, in the background.

A collection's named dense vectors (schema v4) get an index per segment too, each over that name's rows
with that name's metric and its algorithm and parameters (its own, or the collection's:
``CollectionConfig.index_settings``; a ``flat`` name gets none), stored as
``named/<name>.<ext>`` (the extension of the kind's file name: ``named/title.hnsw``, ``named/title.ivf``;
:func:`index_path`) and attached as ``Segment.named_index[name]``; every function here takes the name
(None: the default vector). A merged segment's named indexes are built in the background (no growth).

A build that fails leaves the segment searched exactly (``last_error`` says
why) until the next open rebuilds it. An index that was built but cannot be
saved (ENOSPC above all) leaves no partial file behind; it is attached from
memory anyway (it is complete), saving is retried every
``SAVE_RETRY_SECONDS`` while the builder runs, and an index never saved is
simply rebuilt on the next open.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from proximadb import progress
from proximadb.errors import CorruptionError
from proximadb.index import quantization, registry
from proximadb.index._base import VectorIndex
from proximadb.index._hnsw_graph import HnswGraphIndex
from proximadb.index._hnsw_grow import grown
from proximadb.index.hnsw import HNSWIndex
from proximadb.storage import expiry
from proximadb.storage.docfile import fsync_dir
from proximadb.storage.segment import NAMED_DIR, Segment

log = logging.getLogger("proximadb.index")

SAVE_RETRY_SECONDS = 5.0  # how often the builder retries saving indexes it could not save


def effective_params(algorithm: str, params: dict[str, Any], rows: int) -> dict[str, Any]:
    """Collection index_params completed with the kind's defaults (IVF's nlist depends on the segment size)."""
    return quantization.kind_for(algorithm, params).params(params, rows)


def vectors_of(segment: Segment, name: str | None) -> np.ndarray:
    """The rows an index of ``name`` (None: the default vector) is built over."""
    return segment.vectors if name is None else segment.named[name]


def index_path(segment: Segment, file_name: str, name: str | None) -> Path:
    """Where the index of ``name`` (None: the default vector) of a kind (its ``file_name``) lives."""
    if name is None:
        return segment.path / file_name
    return segment.path / NAMED_DIR / f"{name}.{file_name.split('.', 1)[1]}"


def current(segment: Segment, name: str | None) -> VectorIndex | None:
    """The index of ``name`` attached to the segment now, or None."""
    return segment.index if name is None else segment.named_index.get(name)  # type: ignore[no-any-return]


def attach(segment: Segment, index: VectorIndex | None, algorithm: str, name: str | None) -> None:
    if name is None:
        segment.attach_index(index, algorithm)
    elif index is None:
        segment.named_index.pop(name, None)
    else:
        segment.named_index[name] = index


def remove_named(segment: Segment, name: str) -> None:
    """Delete the saved index files of the named vector ``name`` (of every kind): its settings are ``flat`` now,
    so none is built or loaded (the segment may be gone meanwhile: nothing to delete)."""
    for kind in registry.all_kinds():
        try:
            index_path(segment, kind.file_name, name).unlink(missing_ok=True)
        except OSError as exc:  # a leftover is only disk space: loaded only if valid for the settings of the day
            log.warning("segment %s: stale index file not removed: %s", _label(segment, name), exc)


def _label(segment: Segment, name: str | None) -> str:
    return segment.path.name if name is None else f"{segment.path.name} (named vector {name!r})"


def build(segment: Segment, algorithm: str, metric: str, params: dict[str, Any],
          name: str | None = None) -> VectorIndex:
    """A new index of the segment's rows of ``name`` (None: the default vector; an int8 one keeps the
    segment's memory-mapped vectors for rescoring)."""
    kind = quantization.kind_for(algorithm, params)
    vectors = vectors_of(segment, name)
    index = kind.build(int(vectors.shape[1]), metric, params, np.asarray(vectors))
    if isinstance(index, HnswGraphIndex):
        lost = len(index) - index.reachable_count()  # O(rows * M0): a fraction of the build's cost
        if lost:
            log.warning("segment %s: %d of %d rows are unreachable in the new %s graph; approximate searches "
                        "miss them", _label(segment, name), lost, len(index), algorithm)
    return index


def matches(index: VectorIndex, algorithm: str, params: dict[str, Any]) -> bool:
    """Whether index is of the kind and built with the parameters a segment's index must have now."""
    kind = quantization.kind_for(algorithm, params)
    return type(index) is kind.cls and kind.built_with(index, params)


def can_grow(segment: Segment, algorithm: str, params: dict[str, Any]) -> bool:
    """Whether a merge could grow its graph from this segment's (growth_seed's test, before the merge):
    a float32 HNSW graph with these parameters, and no row the merge would drop."""
    index = segment.index
    if quantization.kind_for(algorithm, params).cls is not HNSWIndex or index is None or len(index) != segment.rows:
        return False
    alive = expiry.alive_mask((segment.deleted == 0).view(np.uint8), segment.expires_at, expiry.now_us())
    return matches(index, algorithm, params) and bool(alive.all())


def growth_seed(inputs: list[Segment], source_segment: np.ndarray, source_row: np.ndarray, algorithm: str,
                params: dict[str, Any]) -> tuple[Segment, HNSWIndex, np.ndarray] | None:
    """The input whose graph the merged segment's can grow from, that graph, and where its rows land
    (merged row j holds row ``source_row[j]`` of input ``source_segment[j]``: merge.py): the largest
    input with a float32 HNSW graph built with ``params`` and every row kept by the merge, in order;
    None when there is none."""
    if quantization.kind_for(algorithm, params).cls is not HNSWIndex:
        return None
    best: tuple[Segment, HNSWIndex, np.ndarray] | None = None
    for i, seg in enumerate(inputs):
        index = seg.index
        if not isinstance(index, HNSWIndex) or len(index) != seg.rows or not matches(index, algorithm, params):
            continue
        rows = np.flatnonzero(source_segment == i)
        if (rows.shape[0] == seg.rows and seg.rows and (best is None or seg.rows > best[0].rows)
                and np.array_equal(source_row[rows], np.arange(seg.rows))):
            best = (seg, index, rows)
    return best


def grow(segment: Segment, seed: tuple[Segment, HNSWIndex, np.ndarray], params: dict[str, Any],
         cancelled: Callable[[], bool] | None = None) -> HNSWIndex:
    """The merged segment's graph grown from ``seed`` (:func:`growth_seed`); logged with its cost.
    ``cancelled`` is asked between chunks of rows (GrowthCancelled)."""
    base_segment, base, placement = seed
    started = time.monotonic()
    added = segment.rows - base_segment.rows
    log.info("segment %s: growing its hnsw graph from segment %s's (%d rows kept, %d inserted)",
             segment.path.name, base_segment.path.name, base_segment.rows, added)
    index = grown(base, placement, np.asarray(segment.vectors), cancelled=cancelled)
    quantization.kind_for("hnsw", params).configure(index, params)
    lost = len(index) - index.reachable_count()
    if lost:
        log.warning("segment %s: %d of %d rows are unreachable in the grown graph; approximate searches miss them",
                    segment.path.name, lost, len(index))
    seconds = time.monotonic() - started
    log.info("segment %s: hnsw graph grown in %.1fs (%.0f rows inserted/s)", segment.path.name, seconds,
             added / max(seconds, 1e-9))
    return index


def search_options(index: VectorIndex, **requested: int | None) -> dict[str, int | None]:
    """The keyword of index.search()/search_batch() out of a request's knobs (ef=..., nprobe=...)."""
    return registry.kind_of(index).search_options(**requested)


def load(segment: Segment, algorithm: str, metric: str, params: dict[str, Any],
         name: str | None = None) -> VectorIndex | None:
    """The segment's index of ``name`` (None: the default vector) from disk, or None (logged) when it must
    be rebuilt."""
    kind = quantization.kind_for(algorithm, params)
    path = index_path(segment, kind.file_name, name)
    label = _label(segment, name)
    if not path.exists():
        log.info("segment %s: no %s index file yet; it will be built", label, algorithm)
        return None
    try:
        index = kind.cls.load(path)
    except (CorruptionError, OSError, ValueError) as exc:
        log.warning("segment %s: %s index unusable (%s); rebuilding it", label, algorithm, exc)
        return None
    vectors = vectors_of(segment, name)
    if (index.dim != vectors.shape[1] or index.metric != metric or len(index) != segment.rows
            or not kind.built_with(index, params)):
        log.warning("segment %s: %s index was built for other settings; rebuilding it", label, algorithm)
        return None
    kind.attach(index, np.asarray(vectors))
    kind.configure(index, params)
    return index


def save(index: VectorIndex, segment: Segment, algorithm: str, name: str | None = None) -> None:
    """Write the index file (of ``name``; None: the default vector) durably; on failure (ENOSPC) no partial
    file is left and the error is raised."""
    final = index_path(segment, registry.kind_of(index).file_name, name)
    tmp = final.with_name(final.name + ".tmp")
    try:
        index.save(tmp)  # itself writes tmp + ".tmp" and renames it to tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        for leftover in (tmp, tmp.with_name(tmp.name + ".tmp")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        raise
    fsync_dir(final.parent)
    for other in registry.all_kinds():  # an index of another algorithm or quantization is stale now
        stale = index_path(segment, other.file_name, name)
        if stale != final:
            stale.unlink(missing_ok=True)


class IndexBuilder:
    """One background thread per collection that builds, saves and attaches segment indexes."""

    def __init__(self, collection_name: str, on_built: Callable[[], None] | None = None,
                 wanted: Callable[[Segment, str | None], tuple[str, dict[str, Any]]] | None = None) -> None:
        """``on_built``: called on the builder thread after each index is attached. ``wanted(segment, name)``:
        the (algorithm, effective params) the index of ``name`` must have now; a job of other settings (a
        settings change came after it was scheduled, and scheduled its own) is dropped, before its build and
        before its index is attached."""
        self.name = collection_name
        self.on_built = on_built
        self.wanted = wanted
        self._queue: queue.Queue[tuple[Segment, str, str, dict[str, Any], str | None] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self.builds = 0
        self.last_error: str | None = None
        # Built and attached, but not saved yet (disk full): (segment, index, algorithm, named vector or None);
        # builder thread only.
        self._unsaved: list[tuple[Segment, VectorIndex, str, str | None]] = []

    def schedule(self, segment: Segment, algorithm: str, metric: str, params: dict[str, Any],
                 name: str | None = None) -> None:
        """Build the index of ``name`` (None: the default vector) of the segment, in the background."""
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"index-builder-{self.name}", daemon=True)
                self._thread.start()
        self._queue.put((segment, algorithm, metric, params, name))

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every scheduled build is done (tests, benchmarks, compaction)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def stop(self) -> None:
        """Finish the build in progress (it cannot be interrupted inside the C code), drop the rest.

        Waiting matters: a process that exits while a build runs in native code aborts
        ("terminate called without an active exception"). Dropped builds are redone on the next open.
        """
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()
        self._queue.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=SAVE_RETRY_SECONDS if self._unsaved else None)
            except queue.Empty:
                self._retry_saves()
                continue
            if job is None:
                return
            segment, algorithm, metric, params, name = job
            try:
                now = current(segment, name)
                if self._outdated(segment, algorithm, params, name):
                    log.info("collection %s: index build for segment %s skipped: the settings changed since",
                             self.name, _label(segment, name))
                elif now is None or not matches(now, algorithm, params):
                    self._build_one(segment, algorithm, metric, params, name)
            except Exception as exc:
                self.last_error = f"segment {segment.path.name}: {exc}"
                log.exception("collection %s: index build for segment %s failed", self.name, segment.path.name)
            finally:
                # While it waits for the next job this thread must not keep the last segment alive:
                # once compacted away, it (its mmap, ids, metadata and index) would linger until then.
                job = None
                segment = None  # type: ignore[assignment]  # drop the reference; the loop assigns it again
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()

    def _outdated(self, segment: Segment, algorithm: str, params: dict[str, Any], name: str | None) -> bool:
        return self.wanted is not None and self.wanted(segment, name) != (algorithm, params)

    def _retry_saves(self) -> None:
        still: list[tuple[Segment, VectorIndex, str, str | None]] = []
        for segment, index, algorithm, name in self._unsaved:
            if current(segment, name) is not index or not Path(segment.path).exists():
                continue  # replaced by a rebuild, or the segment was dropped meanwhile
            try:
                save(index, segment, algorithm, name)
            except OSError as exc:
                log.debug("collection %s: %s index of segment %s still not saved: %s", self.name, algorithm,
                          segment.path.name, exc)
                still.append((segment, index, algorithm, name))
                continue
            log.info("collection %s: %s index of segment %s saved", self.name, algorithm, segment.path.name)
        self._unsaved = still
        if not still and self.last_error is not None and " index not saved: " in self.last_error:
            self.last_error = None

    def _build_one(self, segment: Segment, algorithm: str, metric: str, params: dict[str, Any],
                   name: str | None) -> None:
        if not Path(segment.path).exists():
            return  # dropped by a flush or compaction meanwhile
        started = time.monotonic()
        label = _label(segment, name)
        log.info("collection %s: building %s index for segment %s (%d rows, %s)",
                 self.name, algorithm, label, segment.rows, params)
        with progress.track("index_build", self.name, total=segment.rows) as task:
            index = build(segment, algorithm, metric, params, name)  # one GIL-free call: done jumps to total
            task.update(segment.rows)
        if self._outdated(segment, algorithm, params, name):  # changed during the build: the new job builds
            log.info("collection %s: the %s index built for segment %s is dropped: the settings changed meanwhile",
                     self.name, algorithm, label)
            return
        try:
            save(index, segment, algorithm, name)
        except OSError as exc:
            if not Path(segment.path).exists():
                return  # dropped by a flush or compaction meanwhile
            # The index is complete: search with it from memory and keep trying to save it.
            self._unsaved.append((segment, index, algorithm, name))
            self.last_error = f"segment {label}: {algorithm} index not saved: {exc}"
            log.error("collection %s: cannot save the %s index of segment %s (%s); it is used from memory, "
                      "saving is retried every %gs (free space if the disk is full), and an index never saved "
                      "is rebuilt on the next open", self.name, algorithm, segment.path.name, exc,
                      SAVE_RETRY_SECONDS)
        attach(segment, index, algorithm, name)
        self.builds += 1
        seconds = time.monotonic() - started
        log.info("collection %s: %s index for segment %s ready in %.1fs (%.0f rows/s)",
                 self.name, algorithm, label, seconds, segment.rows / max(seconds, 1e-9))
        if self.on_built is not None:
            try:
                self.on_built()
            except Exception:  # the index is built and attached: what follows is not its failure
                log.exception("collection %s: after the index of segment %s was built", self.name,
                              segment.path.name)
