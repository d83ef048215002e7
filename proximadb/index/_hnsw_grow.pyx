"""Growing an HNSW graph into a larger set of rows, instead of building it anew (issue #11): what
compaction does with the largest input's graph when it merges segments (storage/segment_index.py).

``grown(base, placement, vectors)`` makes a new ``HNSWIndex`` over ``vectors`` (the merged
segment's memory-mapped rows, kept without a copy) in which base row r is row ``placement[r]``,
with its level and links (``_hnsw_reorder.pyx``'s ``move_links`` renumbers them, the upper blocks
in row order as the file keeps them); the level generator continues the base's sequence; every
other row gets a level and is inserted on every core
(``HNSWIndex._insert_parallel``, the insertion a build uses), then unreachable rows are linked back
(``_repair``). The rows are inserted GROW_CHUNK at a time and ``cancelled()`` is asked between
chunks (a collection that closes need not wait for the whole growth: GrowthCancelled, the graph
is dropped). The cost is that of the rows inserted, not of all of them: merging a 440k-row segment
into a 1M-row one inserts 440k rows. The result is the graph a build would make had the base's rows
been inserted first, so its search quality is a build's. Nothing is written to any file; the file
layout is ``hnsw.pyx``'s.
"""

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t

from proximadb.index._ann cimport ann_idmap_put_nogrow, ann_idmap_reserve
from proximadb.index._base cimport METRIC_COSINE, copy_array
from proximadb.index._hnsw_reorder cimport move_links
from proximadb.index.hnsw cimport HNSWIndex, set_inv_norms

import os

import numpy as np

from proximadb.errors import ValidationError

cnp.import_array()

GROW_CHUNK = 65536  # rows inserted between two cancellation checks (a few seconds of work at most)


class GrowthCancelled(Exception):
    """grown() stopped because its ``cancelled()`` said so; nothing of the new graph is kept."""


def growth_order(placement: object, int64_t base_rows, int64_t total) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(perm, inv, holes), int32: perm[t] the base row at new row t (-1: none), inv[r] the new row of
    base row r, holes the new rows to insert. ValidationError unless ``placement`` gives each base row
    its own row below ``total``."""
    place = np.ascontiguousarray(placement, dtype=np.int64).reshape(-1)
    if place.shape[0] != base_rows or base_rows == 0 or place.min() < 0 or place.max() >= total:
        raise ValidationError(f"grown: placement must give each of the base's {base_rows} rows a row below {total}")
    perm = np.full(total, -1, dtype=np.int32)
    perm[place] = np.arange(base_rows, dtype=np.int32)
    if np.count_nonzero(perm >= 0) != base_rows:
        raise ValidationError("grown: placement gives two base rows the same row")
    return perm, place.astype(np.int32), np.flatnonzero(perm < 0).astype(np.int32)


def grown(HNSWIndex base, placement: object, vectors: object, int threads=0, cancelled: object = None) -> HNSWIndex:
    """A new index over ``vectors`` (n, dim) float32, ``base``'s graph placed at ``placement`` and
    every other row inserted (threads=0: every core); ids are row numbers. ``base`` must have row
    numbers as ids and no deleted row (a segment's graph). ``cancelled``: a callable asked between
    chunks of GROW_CHUNK rows; when it returns true, GrowthCancelled is raised."""
    cdef HNSWIndex index = HNSWIndex(base.dim, base.metric, base.M, base.ef_construction, seed=base.seed)
    cdef cnp.ndarray arr = index._as_matrix(vectors, "vectors")
    cdef int64_t total = arr.shape[0], nb = base.rows.n, i, upper
    cdef int nt = threads if threads > 0 else (os.cpu_count() or 1)
    if base.graph.entry_point < 0 or base.rows.n_deleted:
        raise ValidationError(f"grown: the base graph must be non-empty with no deleted row ({nb} rows, "
                              f"{base.rows.n_deleted} deleted)")
    if total >= 2**31 - 1:
        raise ValidationError(f"HNSWIndex holds at most 2**31 - 2 rows, not {total}")
    if not np.array_equal(copy_array(base.rows.ids, nb, cnp.NPY_INT64), np.arange(nb)):
        raise ValidationError("grown: the base graph's ids are not its row numbers")
    perm, inv, holes = growth_order(placement, nb, total)
    cdef int32_t[::1] pv = perm
    cdef int32_t[::1] iv = inv
    cdef int32_t[::1] hv = holes
    index._ef = base._ef
    index._reserve(total)
    if ann_idmap_reserve(&index._idmap, total) < 0:
        raise MemoryError()
    for i in range(total):
        index.rows.ids[i] = i
        ann_idmap_put_nogrow(&index._idmap, i, <int32_t>i)
    index._kept = arr
    index.graph.vectors = <const float *>cnp.PyArray_DATA(arr)
    index.rows.n = total  # every row visible now (the holes unreachable until inserted); _check_unit reads n
    if index.rows.metric == METRIC_COSINE:
        with nogil:
            set_inv_norms(index.graph.vectors, index._inv, total, index.rows.dim)
        index._check_unit(0)
    index.graph.rng_state = base.graph.rng_state  # the base's level sequence goes on
    upper = index._draw_levels(0, holes.shape[0], &hv[0] if holes.shape[0] else NULL, 0)  # the holes' words
    index._reserve_upper(base.graph.upper_len + upper)
    with nogil:
        upper = move_links(&base.graph, &pv[0], &iv[0], total, index.graph.level0, index.graph.levels,
                           index.graph.upper_offset, index.graph.upper_links)
    index.graph.upper_len = upper
    index.graph.entry_point = iv[base.graph.entry_point]
    index.graph.max_level = base.graph.max_level
    for start in range(0, holes.shape[0], GROW_CHUNK):
        if cancelled is not None and cancelled():
            raise GrowthCancelled(f"grown: cancelled after {start} of {holes.shape[0]} rows")
        if index._insert_parallel(holes[start : start + GROW_CHUNK], nt) < 0:
            raise MemoryError("grown: out of memory while inserting rows")
    if index._repair() < 0:
        raise MemoryError("grown: out of memory while repairing the graph")
    return index
