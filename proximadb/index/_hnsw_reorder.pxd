# Renumbering an HNSW graph's rows (HNSWIndex.reorder and grow_from in hnsw.pyx); see _hnsw_reorder.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t

from proximadb.index._ann cimport ann_idmap
from proximadb.index._base cimport IndexRows
from proximadb.index._hnsw_graph cimport HnswGraph

cdef float *reorder_rows(IndexRows *rows, HnswGraph *graph, ann_idmap *idmap, float **norms) except NULL
cdef int64_t move_links(const HnswGraph *graph, const int32_t *perm, const int32_t *inv, int64_t n,
                        char *level0, uint8_t *levels, int64_t *upper_offset, int32_t *upper_links) noexcept nogil
