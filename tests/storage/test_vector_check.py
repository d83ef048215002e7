"""The compiled vector check (storage/vector_check.pyx) against the rule written with numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from proximadb.storage import vector_check
from proximadb.storage.validation import MAX_SQUARED_NORM


def reference(v: np.ndarray, cosine: bool) -> tuple[int, int, int]:
    for i, row in enumerate(v):
        bad = np.flatnonzero(~np.isfinite(row))
        if len(bad):
            return i, int(bad[0]), vector_check.NOT_FINITE
        if cosine and not row.any():
            return i, -1, vector_check.ALL_ZERO
        wide = row.astype(np.float64)
        if not cosine and float(np.dot(wide, wide)) > MAX_SQUARED_NORM:
            return i, -1, vector_check.NORM_OVER
    return -1, -1, vector_check.OK


values = st.one_of(st.just(0.0), st.just(np.inf), st.just(-np.inf), st.just(np.nan), st.just(3e18),
                   st.floats(-1e3, 1e3, width=32))


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 6), st.integers(1, 9)), elements=values), st.booleans())
def test_first_bad_row_is_the_numpy_rule(v: np.ndarray, cosine: bool) -> None:
    assert vector_check.first_bad_row(np.ascontiguousarray(v), cosine, MAX_SQUARED_NORM) == reference(v, cosine)


def test_a_clean_matrix_passes() -> None:
    v = np.random.default_rng(0).standard_normal((100, 128)).astype(np.float32)
    assert vector_check.first_bad_row(v, False, MAX_SQUARED_NORM) == (-1, -1, vector_check.OK)
    assert vector_check.first_bad_row(v, True, MAX_SQUARED_NORM) == (-1, -1, vector_check.OK)
