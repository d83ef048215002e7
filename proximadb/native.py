"""Which compiled (Cython) modules this installation uses.

``.ci/run`` calls :func:`check_compiled` to fail when a module was not built or
is shadowed by a source tree; ``proximadb info`` prints :func:`report`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path

COMPILED_MODULES = (
    "proximadb.codec.framing",
    "proximadb.codec.avro_batch",
    "proximadb.codec.avro_batch_encode",
    "proximadb.codec.avro_check",
    "proximadb.codec.avro_search",
    "proximadb.storage.wal_io",
    "proximadb.storage.id_table",
    "proximadb.storage.metadata_check",
    "proximadb.storage.metadata_scan",
    "proximadb.storage.segment_rows",
    "proximadb.storage.vector_check",
    "proximadb.index.distance",
    "proximadb.index._base",
    "proximadb.index._hnsw_graph",
    "proximadb.index._hnsw_build",
    "proximadb.index._hnsw_reorder",
    "proximadb.index._hnsw_grow",
    "proximadb.index.hnsw",
    "proximadb.index.hnsw_shared",
    "proximadb.index.hnsw_int8",
    "proximadb.index.hnsw_pq",
    "proximadb.index.ivf",
    "proximadb.index.inverted",
)


def check_compiled() -> dict[str, str]:
    """Import every compiled module; return name -> file. Raises if one is not an extension."""
    found: dict[str, str] = {}
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        path = Path(module.__file__ or "")
        if not any(str(path).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES):
            raise ImportError(f"{name} is not a compiled extension (loaded from {path})")
        found[name] = str(path)
    return found


def report() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        from proximadb.index import distance

        out["simd"] = distance.simd_level_name()
    except ImportError as exc:  # pragma: no cover - only on a broken build
        out["simd"] = f"unavailable ({exc})"
    try:
        out["compiled"] = ", ".join(sorted(check_compiled()))
    except ImportError as exc:
        out["compiled"] = f"MISSING: {exc}"
    return out
