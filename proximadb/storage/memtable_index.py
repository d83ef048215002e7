"""An HNSW graph over the memtable's rows, grown in the background, so fresh rows are searched
through an index too (issue #11: "fresh rows are indexed too").

Once a memtable holds more than ``StorageOptions.memtable_index_rows`` rows (``serve
--memtable-index-rows``, default 20000, 0 = off; a collection whose ``indexing_algorithm`` is
``flat`` never gets one), the collection's :class:`MemtableIndexer` gives it a
:class:`MemtableGraph` and adds its rows to it in order, a chunk at a time, from a background
thread: graph row ``i`` (its id) is memtable row ``i``, so the graph always covers rows
``[0, indexed)``; it reads the vectors in the memtable's own array (no copy: index/hnsw_shared.pyx's
``attach``; when the memtable grows into a larger array, the next chunk points the graph at that one).
Memtable rows are append-only and never rewritten (a replaced or deleted row is only marked dead), so
the thread reads them without the collection lock; it takes that lock only for a moment per chunk, to
see the memtable of now and how many rows it holds. Nothing in memory
is persisted: after a restart the WAL replay refills the memtable and the thread rebuilds the graph.

A search (storage/search.py, :func:`search`) of a memtable snapshot of ``n`` rows with a graph
over ``g`` rows walks the graph for rows ``[0, min(g, n))``, with the snapshot's liveness and the
filter's mask (deleted, replaced, expired and filtered-out rows) as the walk's allowed set, and
scans rows ``[min(g, n), n)`` exactly; the two candidate lists are merged like any two parts.
So rows not in the graph yet are always found, exactly.

Searches and the thread's adds run side by side (index/hnsw_shared.pyx): a chunk is added to a
graph that has room reserved ahead, and each search walks a snapshot of it, returning rows of
``[0, published)`` only, the rows of chunks whose add has ended (``MemtableGraph.published``); the
rows of the chunk in progress are scanned exactly with the rest. Only when the graph needs more
room (memory a walk reads would move: about every time the rows grow by half) does a chunk take the
graph alone, behind a readers/writer guard: searches share it, that chunk waits for them and holds
back new ones, and searches that waited go in before the next such chunk (neither side starves). A
search of a small graph (``WAIT_COMPONENTS``) does not wait even then: it scans every row exactly,
which costs less than the wait. The chunk is sized to take about ``CHUNK_SECONDS``, which bounds the
rows scanned exactly for the chunk in progress.

While the graph lags behind the memtable by more rows than an exact scan covers in about a graph
walk's time (``LAG_COMPONENTS`` vector components: 5,000 rows at 128 dimensions), its insertions
search ``CATCH_UP_EF_CONSTRUCTION`` candidates instead of the collection's ``ef_construction``: on
the bench's data that inserts 3-4 times faster (200 -> 64: about 3,800 -> 14,000 rows/s on one core),
so a steady ingest of several thousand rows a second leaves little for searches to scan exactly;
once it is that close again, rows are inserted at the collection's ``ef_construction``. A new graph
starts at least ``memtable_index_rows`` rows behind (20,000 by default: more than the lag from about
32 dimensions up), so then most of its first rows are inserted while catching up
(``MemtableGraph.catch_up_rows`` counts them). The graph of a memtable only lives until
its flush (the segment's is built at the collection's parameters), and searches still walk it at the
request's ``ef``; the cost is a little recall on the rows inserted while catching up (recall@10 at ef
64 over 200k rows: GloVe-50 0.9954 -> 0.9936, the clustered rows 0.9998 -> 0.9994;
bench/memtable_catch_up.py).

A memtable with named dense vectors (schema v4) gets, at the same moment, one graph per name as well
(``Memtable.named_graph``: that name's dimension, metric and HNSW parameters; none for a flat name), grown by the same
thread, the graph furthest behind first; a search ``using=`` a name walks that name's graph
(named_search.py) exactly as above.

A flush seals the memtable (sealed.py): the sealed one keeps its graph, searched as above until
the new segment replaces it, and is then dropped with it (the segment builds its own index;
segment rows are renumbered in id order, so the graph cannot be handed over as it is). The
thread moves on to the new memtable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from proximadb.index import hnsw_shared, registry
from proximadb.index._base import NoRoomError
from proximadb.index.hnsw import HNSWIndex

if TYPE_CHECKING:
    from proximadb.storage.memtable import Memtable

log = logging.getLogger("proximadb.index")

DEFAULT_INDEX_ROWS = 20_000  # StorageOptions.memtable_index_rows
CHUNK_SECONDS = 0.002  # a chunk's add aims at this long: its rows are scanned exactly meanwhile
MIN_CHUNK, MAX_CHUNK = 1, 8192
# A search that finds a chunk taking the graph alone (to grow it) waits for it only when the graph covers
# more vector components than the exact scan does in about a chunk's time (the scan: ~0.15 ns a component on
# the 2-core bench machine, 120,000 x 128 rows in 2.3 ms): 1.6M components (12,500 rows at 128 dimensions);
# else it scans every row exactly.
WAIT_COMPONENTS = 1_600_000
# Room a graph reserves when it grows: this share more rows than it needs (and their upper links, twice the
# expected words), so it takes the graph alone about every time its rows grow by that share.
GROWTH = 0.5
# More rows than this many components behind: insert at CATCH_UP_EF_CONSTRUCTION (module docstring).
LAG_COMPONENTS = 640_000
CATCH_UP_EF_CONSTRUCTION = 64

TopK = Callable[[np.ndarray, np.ndarray, int, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


class MemtableGraph:
    """An HNSW index whose ids are memtable row numbers, searched while it grows (index/hnsw_shared.pyx):
    rows ``[0, published)`` are in it; a readers/writer guard for the chunks that grow its memory."""

    def __init__(self, dim: int, metric: str, params: dict[str, int]) -> None:
        kind = registry.kind("hnsw")
        index = kind.create(dim, metric, params)
        assert isinstance(index, HNSWIndex)
        self.index = index
        self.ef_construction = index.ef_construction  # the collection's
        self.lag_rows = max(1, LAG_COMPONENTS // dim)
        self.catch_up_rows = 0  # rows inserted at CATCH_UP_EF_CONSTRUCTION (tests, logs)
        self.published = 0  # rows whose add has ended: a search returns these only
        self.exclusive_chunks = 0  # chunks that took the graph alone to grow it (tests)
        self._source: np.ndarray | None = None  # the memtable's array the index reads (None: its own copy)
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._waiting = 0  # searches waiting for a growing chunk to end: they go before the next one
        self._writer = False  # a chunk grows the graph, or waits for the searches in progress

    @property
    def indexed(self) -> int:
        """Rows in the graph: memtable rows [0, indexed)."""
        return self.published

    @contextlib.contextmanager
    def reading(self, wait: bool = True) -> Iterator[HNSWIndex | None]:
        """The index, for hnsw_shared.search only, while no chunk grows it; None at once if one does and
        not ``wait``."""
        with self._cond:
            if self._writer and not wait:
                busy = True
            elif self._writer:
                busy = False
                self._waiting += 1
                try:
                    while self._writer:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                    self._cond.notify_all()  # the writer waits for the waiting searches to be in
            else:
                busy = False
            if not busy:
                self._readers += 1
        if busy:
            yield None
            return
        try:
            yield self.index
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """No search in the graph meanwhile (those that waited for the last such chunk go first)."""
        with self._cond:
            while self._waiting:
                self._cond.wait()
            self._writer = True  # new searches wait from now on (one writer: the indexer's thread)
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

    def extend(self, vectors: np.ndarray, backlog: int = 0, source: np.ndarray | None = None) -> None:
        """Add the next rows (memtable rows [published, published + len(vectors))), beside the searches
        when the graph has room, else alone after growing it; ``backlog``: the memtable rows not in the
        graph before them (more than ``lag_rows``: inserted at CATCH_UP_EF_CONSTRUCTION). ``source``: the
        memtable's array of vectors, of which ``vectors`` is a view of those rows: the graph reads it in place
        (hnsw_shared.attach, again, alone, after the memtable moved to a larger one); None: a copy is kept."""
        index = self.index
        start, m = index.n_rows, vectors.shape[0]
        lagging = backlog > self.lag_rows
        efc = min(self.ef_construction, CATCH_UP_EF_CONSTRUCTION) if lagging else self.ef_construction
        ids = np.arange(start, start + m, dtype=np.int64)
        moved = source is not None and source is not self._source
        try:
            if moved or hnsw_shared.room(index) < m or not self._add_beside_searches(ids, vectors, efc):
                with self._alone():
                    if source is not None and moved:
                        hnsw_shared.attach(index, source)
                        self._source = source
                    rows = int((start + m) * (1 + GROWTH)) + MAX_CHUNK
                    upper = 2 * (rows - start) * (index.M + 1) // (index.M - 1) + 64 * (index.M + 1)  # 2x expected
                    hnsw_shared.reserve(index, rows, upper)
                    hnsw_shared.add(index, ids, vectors, efc)
                    self.exclusive_chunks += 1
        finally:
            self.published = index.n_rows  # all of them, or those linked before memory ran out
        if lagging:
            self.catch_up_rows += m

    def _add_beside_searches(self, ids: np.ndarray, vectors: np.ndarray, efc: int) -> bool:
        """hnsw_shared.add; False when the graph lacked room (nothing changed: grow it alone, add again)."""
        try:
            hnsw_shared.add(self.index, ids, vectors, efc)
        except NoRoomError:
            return False
        return True


def graph_params(algorithm: str, index_params: dict[str, Any]) -> dict[str, int] | None:
    """The memtable graph's HNSW parameters for a collection: its own M / ef_construction / ef / seed
    when it is an HNSW collection, HNSW's defaults for another index kind, None for ``flat``."""
    if algorithm == "flat":
        return None
    hnsw = registry.kind("hnsw")
    given = {k: v for k, v in index_params.items() if k in hnsw.defaults} if algorithm == "hnsw" else {}
    return hnsw.params(given, 0)


def live_indexed(mt: Memtable) -> int:
    """Live rows of ``mt`` that its graph covers (0 without a graph). Call under the collection lock."""
    graph = mt.graph
    if graph is None:
        return 0
    return int(np.count_nonzero(mt.is_alive(np.arange(min(graph.indexed, mt.rows)))))


class MemtableIndexer:
    """One collection's background thread that grows its memtable's graph (see the module docstring).

    ``current`` returns, under the collection lock, the memtable to index now, or None to stop;
    ``lock`` is the collection lock; ``make(name)`` builds an empty graph for it, of its default vector
    (None) or of a named vector."""

    def __init__(self, name: str, lock: threading.RLock, current: Callable[[], Memtable | None],
                 threshold: int, make: Callable[[str | None], MemtableGraph | None]) -> None:
        self.name = name
        self.threshold = threshold
        self._lock = lock
        self._current = current
        self._make = make
        self._thread: threading.Thread | None = None  # running while set (changed under the collection lock)
        self._stopping = False
        self.last_error: str | None = None

    def kick(self, mt: Memtable) -> None:
        """(Collection lock held.) After rows were added to ``mt``: start the thread if ``mt`` needs it."""
        if self._thread is not None or self._stopping or not self.threshold or self.last_error is not None:
            return
        started = mt.graph is not None or bool(mt.named_graph)
        if mt.rows <= self.threshold and not started:
            return
        if started and all(g.indexed >= mt.rows for g in [mt.graph, *mt.named_graph.values()] if g is not None):
            return
        self._thread = threading.Thread(target=self._run, name=f"memtable-index-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let a chunk in progress end and the thread go; no new one starts."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            thread.join()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the thread has caught up with the memtable (and ended); False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
            if thread.is_alive():
                return False

    def _next(self, chunk: int) -> tuple[MemtableGraph, np.ndarray, int, np.ndarray] | None:
        """(Under the collection lock.) The graph, the rows to add next, the memtable rows the graph lacks and
        the memtable's array of vectors (the rows' source), or None: done (thread ends). A memtable with
        named vectors has a graph per name too (``Memtable.named_graph``): the one furthest behind goes next."""
        with self._lock:
            mt = None if self._stopping else self._current()
            if mt is not None:
                if mt.graph is None and not mt.named_graph and mt.rows > self.threshold:
                    mt.graph = self._make(None)  # None: a flat vector (default or named) gets no graph
                    for vec_name in mt.named_names:
                        if (made := self._make(vec_name)) is not None:
                            mt.named_graph[vec_name] = made
                graphs: list[tuple[str | None, MemtableGraph | None]] = [(None, mt.graph), *mt.named_graph.items()]
                behind = [(g.indexed, which, g) for which, g in graphs if g is not None and g.indexed < mt.rows]
                if behind:
                    start, which, graph = min(behind, key=lambda b: b[0])
                    return (graph, mt.vectors_of(start, min(mt.rows, start + chunk), which), mt.rows - start,
                            mt.array_of(which))
            self._thread = None
            return None

    def _run(self) -> None:
        chunk = MIN_CHUNK  # grown from one row to CHUNK_SECONDS' worth: a search never waits long for the first
        try:
            while (step := self._next(chunk)) is not None:
                graph, vectors, backlog, source = step
                began = time.monotonic()
                graph.extend(vectors, backlog, source)
                took = time.monotonic() - began
                chunk = max(MIN_CHUNK, min(MAX_CHUNK, int(chunk * CHUNK_SECONDS / max(took, 1e-4))))
        except Exception as exc:  # e.g. MemoryError: searches scan the rows the graph lacks, exactly
            log.error("collection %s: the memtable graph stopped growing (%s); the rows it lacks are searched "
                      "exactly until the next flush", self.name, exc, exc_info=exc)
            with self._lock:
                self.last_error = str(exc)
                self._thread = None


def search(graph: MemtableGraph, base: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None,
           ef: int | None, topk: TopK) -> list[tuple[np.ndarray, np.ndarray, int | None]]:
    """Candidates ((m, width) rows, distances; -1 / inf padded; and None, or for the exact scan the first
    row it scanned) over a memtable snapshot's rows ``base`` (``mask``: the rows allowed, alive and
    matching, or None: all): the graph's walk (``ef``: the request's, None: the collection's) over the
    rows it covers, k wide, and ``topk`` (the exact scan) over the rest, k + 1 wide (one more shows a tie
    at its cut, as any memtable scan: storage/search.py), in memtable row numbers."""
    n = base.shape[0]
    out: list[tuple[np.ndarray, np.ndarray, int | None]] = []
    with graph.reading(wait=graph.indexed * base.shape[1] >= WAIT_COMPONENTS) as index:
        covered = 0 if index is None else min(graph.published, n)
        if covered:
            assert index is not None
            out.append((*hnsw_shared.search(index, queries, k, ef, covered, mask), None))
    if covered < n:
        idx, dist = topk(queries, base[covered:], k + 1, None if mask is None else mask[covered:])
        out.append((np.where(idx >= 0, idx + covered, -1), dist, covered))
    return out
