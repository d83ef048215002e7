"""Fusing the ranked lists of several retrievers (dense, sparse, BM25) into one: RRF, DBSF, relative score.

Each part of a hybrid query returns its hits as ``(id, score)`` pairs, best first, a higher score
being better (a dense search's distance is given negated, or as a similarity). :func:`fuse`
combines the parts by one of three methods, each part optionally weighted (default 1):

``"rrf"``   reciprocal rank fusion: ``score(id) = sum over parts of weight / (k + rank)``, the rank
            1-based within the part; ``k`` (default 60) damps the lead of the first ranks. Uses
            ranks only, so parts of any scale mix.
``"dbsf"``  distribution-based score fusion (as Qdrant's): each part's scores are mapped to
            [0, 1] through the part's mean ± 3 standard deviations, ``(s - (mu - 3 sd)) / (6 sd)``,
            clipped; a part whose scores are all equal maps them to 0.5. Then weighted sums.
``"relative_score"``  each part's scores min-max scaled to [0, 1] (all equal: 1), weighted sums.

An id missing from a part gets nothing from it. The fused list is best first; equal fused scores
keep the order in which their ids first appeared (part by part, rank by rank), so results are
deterministic. ``limit`` cuts it. Bad input (no part, an unknown method, weights that do not
match the parts or are negative or not finite, ``k`` below 0) raises ValidationError.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from proximadb.errors import ValidationError

METHODS = ("rrf", "dbsf", "relative_score")
Ranked = Sequence[tuple[Hashable, float]]


def fuse(method: str, parts: Sequence[Ranked], *, weights: Sequence[float] | None = None, k: float = 60.0,
         limit: int | None = None) -> list[tuple[Hashable, float]]:
    """The parts' hits fused by ``method`` (see the module's documentation), best first."""
    if method not in METHODS:
        raise ValidationError(f"fusion method {method!r}: use one of {', '.join(METHODS)}")
    if not parts:
        raise ValidationError("a fusion needs at least one part")
    if weights is None:
        weights = [1.0] * len(parts)
    if len(weights) != len(parts):
        raise ValidationError(f"{len(weights)} fusion weights for {len(parts)} parts")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValidationError(f"fusion weights must be finite and >= 0, got {list(weights)}")
    if method == "rrf" and (not math.isfinite(k) or k < 0):
        raise ValidationError(f"rrf k must be finite and >= 0, got {k}")
    if limit is not None and limit < 1:
        raise ValidationError(f"fusion limit must be at least 1, got {limit}")
    total: dict[Hashable, float] = {}
    for part, weight in zip(parts, weights, strict=True):
        for hit_id, value in zip((h[0] for h in part), _part_scores(method, part, k), strict=True):
            total[hit_id] = total.get(hit_id, 0.0) + weight * value
    order = {hit_id: i for i, hit_id in enumerate(total)}  # first appearance
    fused = sorted(total.items(), key=lambda item: (-item[1], order[item[0]]))
    return fused[:limit] if limit is not None else fused


def _part_scores(method: str, part: Ranked, k: float) -> list[float]:
    if method == "rrf":
        return [1.0 / (k + rank) for rank in range(1, len(part) + 1)]
    scores = [float(s) for _, s in part]
    if any(not math.isfinite(s) for s in scores):
        raise ValidationError("fusion scores must be finite numbers")
    if not scores:
        return []
    if method == "dbsf":
        mean = sum(scores) / len(scores)
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        if sd == 0:
            return [0.5] * len(scores)
        low = mean - 3 * sd
        return [min(1.0, max(0.0, (s - low) / (6 * sd))) for s in scores]
    low, high = min(scores), max(scores)  # relative_score
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]
