# Building an HNSW graph on float32 vectors (HNSWIndex.add and repair in hnsw.pyx); see _hnsw_build.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t

from proximadb.index._ann cimport ann_scratch
from proximadb.index._base cimport IndexRows
from proximadb.index._hnsw_graph cimport HnswGraph


# An insertion in progress (insert_begin, then insert_levels down to level 0; insert_row does both).
ctypedef struct Insertion:
    const float *q          # the row's vector as a query (normalised under cosine: in the scratch's qbuf)
    int32_t cur             # the row the next level's search starts from
    int maxlevel            # the graph's max level when the insertion began
    int next_level          # the next level to connect (-1: none left)

cdef int insert_begin(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row,
                      Insertion *ins) noexcept nogil
cdef int insert_levels(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row, Insertion *ins,
                       int down_to) noexcept nogil
cdef int insert_row(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row) noexcept nogil
cdef int64_t repair_level0(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, uint8_t *seen,
                           int32_t *queue) noexcept nogil
