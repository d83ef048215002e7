"""The metadata filter language (proximadb.filters).

Examples pin the documented semantics; a Hypothesis property compares the
compiled closures with a plain reference interpreter written below, on random
filter trees and random metadata.
"""

from __future__ import annotations

import json
import operator
from typing import Any

import numpy as np
import pytest
import strategies
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.errors import InvalidFilterError, ValidationError
from proximadb.filters import MAX_DEPTH, Filter, compile_filter

RECORDS: list[dict[str, Any]] = [
    {"genre": "jazz", "year": 1995, "price": 9.5, "tags": ["live", "vinyl"], "sold": True},
    {"genre": "rock", "year": 2001, "price": 12, "tags": ["cd"], "sold": False},
    {"genre": "jazz", "year": "1999", "price": None, "tags": []},
    {"year": 1, "sold": 1},
    {},
]


def which(spec: Any) -> list[int]:
    compiled = compile_filter(spec)
    assert compiled is not None
    rows = [i for i, md in enumerate(RECORDS) if compiled.matches(md)]
    assert np.flatnonzero(compiled.mask(RECORDS)).tolist() == rows
    return rows


# -- semantics -------------------------------------------------------------------


def test_equality_and_implicit_and() -> None:
    assert which({"genre": "jazz"}) == [0, 2]
    assert which({"genre": "jazz", "year": 1995}) == [0]
    assert which({"genre": {"$eq": "rock"}}) == [1]


def test_list_field_matches_when_it_contains_the_value() -> None:
    assert which({"tags": "vinyl"}) == [0]
    assert which({"tags": {"$in": ["cd", "live"]}}) == [0, 1]
    assert which({"tags": {"$ne": "cd"}}) == [0, 2, 3, 4]
    assert which({"tags": {"$gt": "l"}}) == [0]  # "live" and "vinyl" > "l"


def test_ne_and_nin_match_missing_fields() -> None:
    assert which({"genre": {"$ne": "jazz"}}) == [1, 3, 4]
    assert which({"genre": {"$nin": ["jazz", "rock"]}}) == [3, 4]
    assert which({"genre": {"$nin": []}}) == [0, 1, 2, 3, 4]
    assert which({"genre": {"$in": []}}) == []


def test_incompatible_types_do_not_match() -> None:
    assert which({"year": {"$gt": 1990}}) == [0, 1]  # "1999" is a string
    assert which({"year": {"$gt": "1990"}}) == [2]
    assert which({"year": "1999"}) == [2]
    assert which({"year": 1999}) == []
    assert which({"price": {"$lt": 100}}) == [0, 1]  # null is not a number


def test_bool_is_not_a_number() -> None:
    assert which({"sold": True}) == [0]
    assert which({"sold": 1}) == [3]
    assert which({"year": True}) == []
    assert which({"sold": {"$in": [1, 0]}}) == [3]
    assert which({"sold": {"$in": [False]}}) == [1]


def test_int_equals_float() -> None:
    assert which({"price": 12.0}) == [1]
    assert which({"price": {"$in": [9.5, 3]}}) == [0]
    assert which({"price": {"$gte": 9.5, "$lte": 12}}) == [0, 1]


def test_null_and_exists() -> None:
    assert which({"price": None}) == [2, 3, 4]  # null value or missing field
    assert which({"price": {"$ne": None}}) == [0, 1]
    assert which({"price": {"$exists": True}}) == [0, 1, 2]
    assert which({"price": {"$exists": False}}) == [3, 4]


def test_logical_operators() -> None:
    assert which({"$or": [{"genre": "rock"}, {"year": 1}]}) == [1, 3]
    assert which({"$and": [{"genre": "jazz"}, {"tags": "live"}]}) == [0]
    assert which({"$not": {"genre": "jazz"}}) == [1, 3, 4]
    assert which({"$or": [{"genre": "rock"}], "sold": False}) == [1]
    assert which({"$and": [{}]}) == [0, 1, 2, 3, 4]


def test_string_ordering() -> None:
    assert which({"genre": {"$gte": "jazz", "$lt": "k"}}) == [0, 2]


def test_no_filter() -> None:
    assert compile_filter(None) is None
    assert compile_filter({}) is None
    assert compile_filter("null") is None
    assert compile_filter(" {} ") is None


def test_json_text_and_filter_object() -> None:
    compiled = compile_filter('{"genre": "jazz", "year": {"$lt": 2000}}')
    assert isinstance(compiled, Filter)
    assert compiled.fields == frozenset({"genre", "year"})
    assert compiled.matches(RECORDS[0]) and not compiled.matches(RECORDS[1])
    assert not compiled.matches(None)
    assert "genre" in repr(compiled)
    mask = compiled.mask([RECORDS[0], None, RECORDS[2]])
    assert mask.dtype == np.bool_ and mask.tolist() == [True, False, False]
    assert compiled.mask([]).shape == (0,)


def test_numpy_scalars_in_metadata() -> None:
    compiled = compile_filter({"n": {"$gt": 1}, "b": True})
    assert compiled is not None
    assert compiled.matches({"n": np.int64(2), "b": np.bool_(True)})
    assert not compiled.matches({"n": np.float32(0.5), "b": True})


# -- invalid filters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"$and": [{"a": 1}, {"price": {"$gt": True}}]}, r"^filter\.\$and\[1\]\.price: \$gt needs a number or string"),
        ({"price": {"$gt": None}}, r"^filter\.price: \$gt needs a number or string, got null"),
        ({"price": {"$gt": [1]}}, r"\$gt needs a number or string, got list"),
        ({"a": {"$regex": "x"}}, r"^filter\.a: unknown operator \$regex"),
        ({"$nor": [{"a": 1}]}, r"^filter: unknown operator \$nor"),
        ({"$gt": 3}, r"^filter: \$gt must be applied to a field"),
        ({"a": {"$in": "x"}}, r"^filter\.a: \$in needs a list of values, got str"),
        ({"a": {"$nin": 3}}, r"\$nin needs a list of values, got int"),
        ({"a": {"$in": [1, {"b": 2}]}}, r"^filter\.a: \$in\[1\] needs a string, number, boolean or null, got object"),
        ({"$and": {"a": 1}}, r"^filter\.\$and: \$and needs a list of filters, got object"),
        ({"$or": []}, r"^filter\.\$or: \$or needs at least one filter"),
        ({"$or": [{"a": 1}, 5]}, r"^filter\.\$or\[1\]: a filter must be an object, got int"),
        ({"$not": [{"a": 1}]}, r"^filter\.\$not: a filter must be an object, got list"),
        ({3: "a"}, r"^filter: field names must be strings, got int 3"),
        ({"": 1}, r"^filter: empty field name"),
        ({"a": {"$gt": 1, "b": 2}}, r"^filter\.a: operator object mixes operators \(\$gt\) and plain keys \('b'\)"),
        ({"a": {"b": 2}}, r"^filter\.a: nested objects are not values"),
        ({"a": {}}, r"^filter\.a: empty operator object"),
        ({"a": [1, 2]}, r"^filter\.a: a list is not a value; use \{\"\$in\""),
        ({"a": {"$eq": [1]}}, r"\$eq needs a string, number, boolean or null, got list"),
        ({"a": b"x"}, r"^filter\.a: \$eq needs a string, number, boolean or null, got bytes"),
        ({"a": float("nan")}, r"^filter\.a: \$eq needs a finite number"),
        ({"a": {"$lt": float("inf")}}, r"^filter\.a: \$lt needs a finite number"),
        ({"a": {"$exists": 1}}, r"^filter\.a: \$exists needs true or false, got int"),
        ({"a": {"$and": [{"b": 1}]}}, r"^filter\.a: \$and is not a field operator"),
        ([{"a": 1}], r"^filter: must be a JSON object, got list"),
        (42, r"^filter: must be a JSON object, got int"),
        ("{not json", r"^filter: not valid JSON"),
        ('"a string"', r"^filter: must be a JSON object, got str"),
    ],
)
def test_invalid_filters_name_the_path(spec: Any, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message) as info:
        compile_filter(spec)
    assert isinstance(info.value, ValidationError)  # an HTTP 400 / INVALID_ARGUMENT


def nested_not(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(depth - 1):
        spec = {"$not": spec}
    return spec


def test_depth_limit() -> None:
    assert compile_filter(nested_not(MAX_DEPTH)) is not None
    with pytest.raises(InvalidFilterError, match=f"nested deeper than {MAX_DEPTH} levels"):
        compile_filter(nested_not(MAX_DEPTH + 1))
    deep_and: dict[str, Any] = {"a": 1}
    for _ in range(40):
        deep_and = {"$and": [deep_and]}
    with pytest.raises(InvalidFilterError, match=r"^filter(\.\$and\[0\])+: nested deeper"):
        compile_filter(json.dumps(deep_and))
    with pytest.raises(InvalidFilterError, match="nested deeper"):
        compile_filter('{"$and": [' * 100_000 + "]}" * 100_000)


# -- property: compiled filter == reference interpreter ---------------------------

FIELDS = ["a", "b", "tags"]
STRINGS = ["", "x", "y", "1"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5, -0.5]),
    st.sampled_from(STRINGS),
)
string_lists = st.lists(st.sampled_from(STRINGS), max_size=3)
# one_of flattens nested one_of branches: draw the kind first so lists are not rare.
metadata_values = st.sampled_from(["scalar", "list"]).flatmap(
    lambda kind: scalars if kind == "scalar" else string_lists
)
metadata = st.dictionaries(st.sampled_from(FIELDS), metadata_values, max_size=3)

ordered_operands = st.one_of(st.integers(-2, 2), st.sampled_from([0.5, -1.0]), st.sampled_from(["", "x", "y"]))
field_conditions = strategies.field_conditions(FIELDS, scalars, ordered_operands)
filters = strategies.filter_trees(field_conditions)

_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def ref_condition(op: str, arg: Any, field: str, md: dict[str, Any]) -> bool:
    present = field in md
    value = md.get(field)
    elements = value if isinstance(value, list) else [value]
    if op == "$eq":
        return (arg is None and not present) or (present and any(_same(e, arg) for e in elements))
    if op == "$ne":
        return not ref_condition("$eq", arg, field, md)
    if op == "$in":
        return any(ref_condition("$eq", a, field, md) for a in arg)
    if op == "$nin":
        return not ref_condition("$in", arg, field, md)
    if op == "$exists":
        return present == arg
    comparable = _is_number if _is_number(arg) else (lambda e: isinstance(e, str))
    return present and any(comparable(e) and _ORDER[op](e, arg) for e in elements)


def ref_match(spec: dict[str, Any], md: dict[str, Any]) -> bool:
    for key, value in spec.items():
        if key == "$and":
            ok = all(ref_match(s, md) for s in value)
        elif key == "$or":
            ok = any(ref_match(s, md) for s in value)
        elif key == "$not":
            ok = not ref_match(value, md)
        elif isinstance(value, dict):
            ok = all(ref_condition(op, arg, key, md) for op, arg in value.items())
        else:
            ok = ref_condition("$eq", value, key, md)
        if not ok:
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(spec=filters, records=st.lists(metadata, min_size=4, max_size=12))
def test_compiled_filter_matches_reference(spec: dict[str, Any], records: list[dict[str, Any]]) -> None:
    compiled = compile_filter(json.dumps(spec))
    expected = [ref_match(spec, md) for md in records]
    if compiled is None:
        assert all(expected)
        return
    assert [compiled.matches(md) for md in records] == expected
    assert compiled.mask(records).tolist() == expected


@settings(max_examples=400, deadline=None)
@given(spec=field_conditions, records=st.lists(metadata, min_size=4, max_size=12))
def test_single_condition_matches_reference(spec: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Leaves alone, densely: every operator on every value type (trees above test composition)."""
    compiled = compile_filter(spec)
    assert compiled is not None
    assert compiled.mask(records).tolist() == [ref_match(spec, md) for md in records]
