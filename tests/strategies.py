"""Hypothesis strategies shared by the test folders: metadata values and maps, timestamps, filters.

One definition of "a metadata value" (null, boolean, 64-bit integer, float, string, list of
strings: the union of ``schemas/v<N>/vector_record.avsc``), with knobs for the sizes a test
wants: the codec tests draw the whole 64-bit range and longer strings, the model-based engine
test draws from a few small values so that its random operations collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
timestamps = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)


def metadata_values(
    *,
    ints: tuple[int, int] = (INT64_MIN, INT64_MAX),
    floats: bool = True,
    text_size: int = 8,
    list_text_size: int = 5,
    list_size: int | None = 4,
) -> st.SearchStrategy[object]:
    """One metadata value, any member of the union."""
    members: list[st.SearchStrategy[object]] = [
        st.none(),
        st.booleans(),
        st.integers(min_value=ints[0], max_value=ints[1]),
    ]
    if floats:
        members.append(st.floats(allow_nan=False))
    members += [st.text(max_size=text_size), st.lists(st.text(max_size=list_text_size), max_size=list_size)]
    return st.one_of(*members)


def metadata_maps(
    values: st.SearchStrategy[object] | None = None,
    *,
    keys: Sequence[str] | None = None,
    key_size: int = 6,
    max_size: int = 5,
) -> st.SearchStrategy[dict[str, object]]:
    """A record's metadata: keys drawn from ``keys`` when given, else short texts."""
    key_strategy = st.sampled_from(list(keys)) if keys is not None else st.text(max_size=key_size)
    return st.dictionaries(key_strategy, values if values is not None else metadata_values(), max_size=max_size)


def field_conditions(
    fields: Sequence[str], scalars: st.SearchStrategy[Any], ordered_operands: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """One field's condition, ``{field: value}`` or ``{field: {op: arg, ...}}``, every operator of
    proximadb.filters: ``scalars`` for $eq/$ne/$in/$nin, ``ordered_operands`` for ranges."""
    operand = {
        "$eq": scalars,
        "$ne": scalars,
        "$gt": ordered_operands,
        "$gte": ordered_operands,
        "$lt": ordered_operands,
        "$lte": ordered_operands,
        "$in": st.lists(scalars, max_size=3),
        "$nin": st.lists(scalars, max_size=3),
        "$exists": st.booleans(),
    }
    operator_args = st.sampled_from(sorted(operand)).flatmap(lambda op: st.tuples(st.just(op), operand[op]))
    conditions = st.sampled_from(["plain", "operators"]).flatmap(
        lambda kind: scalars if kind == "plain" else st.lists(operator_args, min_size=1, max_size=2).map(dict)
    )
    return st.builds(lambda field, cond: {field: cond}, st.sampled_from(list(fields)), conditions)


def filter_trees(leaves: st.SearchStrategy[dict[str, Any]], max_leaves: int = 8) -> st.SearchStrategy[dict[str, Any]]:
    """Filters built from ``leaves`` with $and, $or, $not and implicit AND (merged objects)."""

    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
            st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
            children.map(lambda f: {"$not": f}),
            st.tuples(children, children).map(lambda pair: {**pair[0], **pair[1]}),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)
