"""Readers for the TEXMEX vector formats of the ANN benchmark datasets, and recall@k.

``.fvecs``/``.ivecs``: per row an int32 ``d`` (little-endian) then ``d`` float32 /
int32 values. Used by the tests and benchmarks on ``shared/datasets`` (siftsmall,
glove-6b-50d), and handy for anyone loading those sets into ProximaDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def ivecs_read(path: str | Path) -> np.ndarray:
    a = np.fromfile(path, dtype="<i4")
    return a.reshape(-1, a[0] + 1)[:, 1:].copy()


def fvecs_read(path: str | Path) -> np.ndarray:
    return ivecs_read(path).view(np.float32)


def recall_at(found: Sequence[Sequence[int]] | np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of the true k nearest found among the first k results, over all queries."""
    hits = [len({int(x) for x in f[:k]} & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def siftsmall(datasets_root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base 10,000 x 128, queries 100 x 128, ground truth 100 x 100) of ``<root>/siftsmall``."""
    d = Path(datasets_root) / "siftsmall"
    return (fvecs_read(d / "siftsmall_base.fvecs"), fvecs_read(d / "siftsmall_query.fvecs"),
            ivecs_read(d / "siftsmall_groundtruth.ivecs"))
