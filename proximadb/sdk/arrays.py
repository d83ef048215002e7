"""numpy views of results: ``as_numpy=True`` on a collection handle's ``query``/``search``/``get``, or these
helpers on what any client returns.

:func:`hits_to_numpy` turns one query's hits (a list of hit dicts, best first) into columns::

    {"ids": str array (n,), "scores": float32 (n,), "distances": float32 (n,),
     "vectors": float32 (n, dim)   # only when the hits carry vectors (include_vectors=True)
     "metadatas": list of dicts, "documents": list of str | None}

:func:`records_to_numpy` does the same for records (``get``/``scroll``): ``ids``, ``vectors`` (when
included), ``metadatas``, ``documents`` and ``timestamps`` (int64, microseconds). A list of hit or
record dicts also goes straight into ``pandas.DataFrame(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _vectors(rows: Sequence[dict[str, Any]]) -> np.ndarray | None:
    if not rows or any(r.get("vector") is None for r in rows):
        return None
    return np.stack([np.asarray(r["vector"], dtype=np.float32) for r in rows])


def _common(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"ids": np.asarray([r["id"] for r in rows], dtype=np.str_)}
    vectors = _vectors(rows)
    if vectors is not None:
        out["vectors"] = vectors
    out["metadatas"] = [r.get("metadata") for r in rows]
    out["documents"] = [r.get("document") for r in rows]
    return out


def hits_to_numpy(hits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One query's hits as columns (see the module docstring)."""
    out = _common(hits)
    out["scores"] = np.asarray([h["score"] for h in hits], dtype=np.float32)
    out["distances"] = np.asarray([h["distance"] for h in hits], dtype=np.float32)
    return out


def records_to_numpy(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Records as columns (see the module docstring)."""
    out = _common(records)
    out["timestamps"] = np.asarray([r.get("timestamp") or 0 for r in records], dtype=np.int64)
    return out


__all__ = ["hits_to_numpy", "records_to_numpy"]
