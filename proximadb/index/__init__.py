"""Distance kernels and vector indexes (flat, HNSW, IVF)."""
