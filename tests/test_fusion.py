"""Hybrid fusion (proximadb/fusion.py): RRF, DBSF and relative-score fusion against their definitions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.errors import ValidationError
from proximadb.fusion import METHODS, fuse

ids = st.sampled_from([f"r{i}" for i in range(12)])
part_st = st.lists(st.tuples(ids, st.floats(-100, 100)), max_size=10, unique_by=lambda h: h[0]).map(
    lambda hits: sorted(hits, key=lambda h: -h[1]))


def test_rrf_by_hand() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    text = [("c", 12.0), ("a", 3.0)]
    fused = fuse("rrf", [dense, text], k=60)
    want = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61}
    assert [h for h, _ in fused] == ["a", "c", "b"]
    assert all(math.isclose(s, want[h]) for h, s in fused)
    weighted = fuse("rrf", [dense, text], weights=[0.0, 1.0], limit=1)
    assert weighted == [("c", 1 / 61)]


def test_dbsf_and_relative_score_by_hand() -> None:
    part = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    mean, sd = 2.0, math.sqrt(2 / 3)
    got = dict(fuse("dbsf", [part]))
    assert got["b"] == pytest.approx(0.5) and got["a"] == pytest.approx((3 - (mean - 3 * sd)) / (6 * sd))
    assert dict(fuse("relative_score", [part])) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert fuse("dbsf", [[("x", 5.0), ("y", 5.0)]]) == [("x", 0.5), ("y", 0.5)]
    assert fuse("relative_score", [[("x", 5.0)]]) == [("x", 1.0)]


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(part_st, min_size=1, max_size=4), method=st.sampled_from(METHODS),
       data=st.data())
def test_fused_scores_follow_the_definition_and_the_order_is_total(parts: list[list[tuple[str, float]]],
                                                                    method: str, data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.floats(0, 3), min_size=len(parts), max_size=len(parts)))
    fused = fuse(method, parts, weights=weights)
    everyone = {h for part in parts for h, _ in part}
    assert {h for h, _ in fused} == everyone and len(fused) == len(everyone)
    assert all(fused[i][1] >= fused[i + 1][1] for i in range(len(fused) - 1))
    for hit, score in fused:
        want = 0.0
        for part, w in zip(parts, weights, strict=True):
            ranks = [h for h, _ in part]
            if hit in ranks:
                r = ranks.index(hit)
                if method == "rrf":
                    want += w / (60 + r + 1)
                else:
                    scores = [s for _, s in part]
                    if method == "dbsf":
                        mu = sum(scores) / len(scores)
                        sd = math.sqrt(sum((s - mu) ** 2 for s in scores) / len(scores))
                        v = 0.5 if sd == 0 else min(1.0, max(0.0, (scores[r] - mu + 3 * sd) / (6 * sd)))
                    else:
                        lo, hi = min(scores), max(scores)
                        v = 1.0 if hi == lo else (scores[r] - lo) / (hi - lo)
                    want += w * v
        assert math.isclose(score, want, rel_tol=1e-9, abs_tol=1e-12)
    assert fuse(method, parts, weights=weights) == fused  # deterministic


def test_bad_fusions_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least one part"):
        fuse("rrf", [])
    with pytest.raises(ValidationError, match="fusion method 'max'"):
        fuse("max", [[("a", 1.0)]])
    with pytest.raises(ValidationError, match="1 fusion weights for 2 parts"):
        fuse("rrf", [[("a", 1.0)], []], weights=[1.0])
    with pytest.raises(ValidationError, match="finite and >= 0"):
        fuse("dbsf", [[("a", 1.0)]], weights=[-1.0])
    with pytest.raises(ValidationError, match="rrf k"):
        fuse("rrf", [[("a", 1.0)]], k=-1)
    with pytest.raises(ValidationError, match="scores must be finite"):
        fuse("dbsf", [[("a", math.nan)]])
    with pytest.raises(ValidationError, match="limit must be at least 1"):
        fuse("rrf", [[("a", 1.0)]], limit=0)
