# Breadth-first renumbering of an HNSW graph's rows (HNSWIndex.reorder in hnsw.pyx); see _hnsw_reorder.pyx.
from proximadb.index._ann cimport ann_idmap
from proximadb.index._base cimport IndexRows
from proximadb.index._hnsw_graph cimport HnswGraph

cdef float *reorder_rows(IndexRows *rows, HnswGraph *graph, ann_idmap *idmap, float **norms) except NULL
