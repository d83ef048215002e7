"""A segment's ids read in place (proximadb/storage/id_table.pyx) against a dict and bisect."""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.errors import CorruptionError
from proximadb.storage.segment import _encode_ids, _map_ids

ids_strategy = st.lists(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12), unique=True)


def _table_of(tmp: Path, ids: list[str]):  # type: ignore[no-untyped-def]
    path = tmp / "ids.bin"
    path.write_bytes(b"".join(bytes(memoryview(p).cast("B")) for p in _encode_ids(sorted(ids))))
    return _map_ids(path)


@settings(max_examples=200, deadline=None)
@given(ids=ids_strategy, probes=st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)))
def test_find_and_getitem_agree_with_a_dict(tmp_path_factory: pytest.TempPathFactory, ids: list[str],
                                            probes: list[str]) -> None:
    table = _table_of(tmp_path_factory.mktemp("ids"), ids)
    ordered = sorted(ids)
    row_of = {id_: row for row, id_ in enumerate(ordered)}
    assert len(table) == len(ordered) and list(table) == ordered
    queries = probes + ordered
    assert table.find(queries).tolist() == [row_of.get(q, -1) for q in queries]
    assert [table.find_one(q) for q in queries] == [row_of.get(q, -1) for q in queries]
    for q in probes:
        assert bisect.bisect_right(table, q) == bisect.bisect_right(ordered, q)


def test_damaged_offsets_are_corruption(tmp_path: Path) -> None:
    path = tmp_path / "ids.bin"
    raw = bytearray(b"".join(bytes(memoryview(p).cast("B")) for p in _encode_ids(["a", "b", "c"])))
    raw[32 + 8] = 9  # the second offset now points past the third
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="ascending"):
        _map_ids(path)
