"""Distance kernels and vector indexes (HNSW, HNSW on int8 codes, IVF; all on VectorIndex), usable alone::

    from proximadb.index import HNSWIndex
    index = HNSWIndex(dim=128, metric="l2", M=16, ef_construction=200, seed=0)
    index.add(ids, vectors)
    ids, distances = index.search(query, k=10, ef=64)
"""

from proximadb.index._base import VectorIndex
from proximadb.index.hnsw import HNSWIndex
from proximadb.index.hnsw_int8 import HNSWInt8Index
from proximadb.index.ivf import IVFIndex

__all__ = ["HNSWIndex", "HNSWInt8Index", "IVFIndex", "VectorIndex"]
