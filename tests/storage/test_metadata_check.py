"""The compiled size check of a batch's metadata (storage/metadata_check.pyx) agrees with the rule
(storage/validation.metadata_bytes): the same size wherever it vouches for a row, -1 (the rule
decides) wherever the rule refuses the row or converts one of its values."""

from __future__ import annotations

from typing import Any

import numpy as np
import strategies
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.errors import ValidationError
from proximadb.storage.metadata_check import metadata_sizes
from proximadb.storage.validation import MAX_METADATA_KEY_BYTES, metadata_bytes

odd = st.sampled_from([float("nan"), float("inf"), 2**63, -(2**63) - 1, np.int64(3), np.float32(1.5), ("a",), ["a", 1],
                       {"x": 1}, b"bytes", "\ud800", "é" * 200])
keys = st.one_of(st.text(max_size=8), st.sampled_from(["", "k" * MAX_METADATA_KEY_BYTES, "k" * 257, "é" * 128]))
rows = st.one_of(st.none(), st.dictionaries(keys, st.one_of(strategies.metadata_values(), odd), max_size=5),
                 st.sampled_from([[], "not a dict", 3]))


@settings(max_examples=500, deadline=None)
@given(batch=st.lists(rows, max_size=8))
def test_sizes_agree_with_the_rule(batch: list[Any]) -> None:
    sizes = metadata_sizes(batch, MAX_METADATA_KEY_BYTES).tolist()
    for row, size in zip(batch, sizes, strict=True):
        if size >= 0:
            assert metadata_bytes(row) == size, row
            assert row is None or isinstance(row, dict)
            assert all(type(v) in (type(None), bool, int, float, str, list) for v in (row or {}).values())
        else:
            try:
                metadata_bytes(row)
            except ValidationError:
                continue
            # accepted by the rule: only because a value needs converting (numpy scalar, tuple)
            assert any(type(v) not in (type(None), bool, int, float, str, list) for v in row.values()), row
