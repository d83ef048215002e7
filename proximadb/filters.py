"""The metadata filter language, compiled once and evaluated inside a search.

A filter is a JSON object (a ``dict``, or its JSON text as sent in
``SearchRequest.filter``; every API's filter text is parsed here, by
:func:`parse_filter_text`, which refuses what :mod:`proximadb.strict_json` refuses:
bad JSON, giant integers, duplicate keys, runaway nesting)::

    {"genre": "jazz"}                               equality
    {"year": {"$gte": 1990, "$lt": 2000}}           operators on a field (AND)
    {"genre": "jazz", "year": {"$gt": 1990}}        several keys in one object: AND
    {"$and": [f, ...]}  {"$or": [f, ...]}  {"$not": f}

Field operators: ``$eq $ne $gt $gte $lt $lte`` take one value, ``$in $nin`` a
list of values, ``$exists`` true or false. Values are strings, numbers,
booleans or null (the metadata value types of ``VectorRecord``, whose
``array<string>`` values are matched element-wise).

Semantics (those of MongoDB and Qdrant where they agree):

* Equality on a list-valued field matches when the list contains the value;
  ``$in`` when it contains any of the values; ``$gt`` & co. when any element
  satisfies the comparison.
* ``$ne`` and ``$nin`` are the negations of ``$eq`` and ``$in``, so they also
  match records that lack the field.
* ``{"f": null}`` (``$eq: null``) matches a null value and a missing field;
  ``$exists`` only asks whether the key is present (a null value counts).
* Values of different types never compare: a string is neither equal to nor
  greater than a number, and those rows simply do not match. A boolean is
  not a number (``true`` does not equal ``1``); ``1`` equals ``1.0``.
* ``$gt``, ``$gte``, ``$lt``, ``$lte`` need a number or a string operand
  (strings compare by code point).
* ``{}`` matches everything; ``compile_filter`` returns ``None`` for it, for
  ``None`` and for JSON ``null``, meaning "no filter".

Anything else is refused with :class:`~proximadb.errors.InvalidFilterError`
naming where in the filter the problem is, e.g.
``filter.$and[1].price: $gt needs a number or string, got bool``: unknown
operators, ``$in`` without a list, ``$and``/``$or`` without a non-empty list,
nesting deeper than 32 objects, non-string field names, an operator object
that mixes ``$operators`` and plain keys, and values of other types (lists
outside ``$in``/``$nin``, nested objects, NaN/infinity).

A filter compiles into nested closures, so evaluating it per row does no
parsing: ``Filter.mask(metadatas)`` gives the boolean candidate mask that the
search kernels (``proximadb.index.distance``) take. That per-row evaluator is the
reference; the storage engine uses the second one, ``Filter.index_mask(index, rows)``,
which computes the same mask by set operations on a part's payload index
(:mod:`proximadb.storage.payload_index`): postings, sorted numbers, exists bitmaps.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from proximadb import strict_json
from proximadb.errors import InvalidFilterError

MAX_DEPTH = 32
LOGICAL_OPERATORS = ("$and", "$or", "$not")
FIELD_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata], bool]

_MISSING: Any = object()
_EMPTY: Metadata = MappingProxyType({})
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


class PayloadIndexLike(Protocol):
    """What :meth:`Filter.index_mask` asks of a part's payload index: bool masks of ``rows`` rows."""

    def exists(self, name: str, rows: int) -> np.ndarray: ...

    def members(self, name: str, values: Sequence[Any], rows: int) -> np.ndarray: ...

    def ordered(self, name: str, op: str, operand: Any, rows: int) -> np.ndarray: ...

    def between(self, name: str, bounds: Sequence[tuple[str, Any]], rows: int) -> np.ndarray: ...


class Filter:
    """A compiled filter. ``spec`` is the filter as given (parsed); ``fields`` the field names it reads."""

    __slots__ = ("_key", "_predicate", "fields", "spec")

    def __init__(self, predicate: Predicate, spec: dict[str, Any], fields: frozenset[str]) -> None:
        self._predicate = predicate
        self.spec = spec
        self.fields = fields
        self._key: Hashable | None = None

    @property
    def key(self) -> Hashable:
        """The filter's canonical form, what the segment's plan cache keys on: objects with their keys
        sorted, every value as the typed key the filter compares by (:func:`typed_key`: a str subclass
        as its ``str()``, ``1`` and ``True`` apart), so that two filters with the same key select the
        same rows whatever the types and key order their caller gave."""
        if self._key is None:
            self._key = _canonical(self.spec)
        return self._key

    def matches(self, metadata: Metadata | None) -> bool:
        """Whether one record's metadata passes (``None`` = a record without metadata)."""
        return self._predicate(_EMPTY if metadata is None else metadata)

    def mask(self, metadatas: Sequence[Metadata | None]) -> np.ndarray:
        """A bool array: ``mask[i]`` is ``matches(metadatas[i])``."""
        predicate = self._predicate
        return np.fromiter((predicate(_EMPTY if m is None else m) for m in metadatas), dtype=bool, count=len(metadatas))

    def index_mask(self, index: PayloadIndexLike, rows: int) -> np.ndarray:
        """The same bool mask as :meth:`mask` over rows ``[0, rows)`` of a part, computed by set
        operations on the part's payload index instead of per row."""
        return _index_object(self.spec, index, rows)

    def __repr__(self) -> str:
        return f"Filter({json.dumps(self.spec, sort_keys=True, default=str)})"


def compile_filter(spec: Mapping[str, Any] | str | None) -> Filter | None:
    """Check and compile a filter; ``None`` when it filters nothing (``None``, ``{}``, ``"null"``)."""
    if isinstance(spec, str):
        spec = parse_filter_text(spec)
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidFilterError(f"filter: must be a JSON object, got {_type_name(spec)}")
    if not spec:
        return None
    fields: set[str] = set()
    predicate = _compile_object(spec, "filter", 1, fields)
    return Filter(predicate, dict(spec), frozenset(fields))


def parse_filter_text(text: str) -> Any:
    """A filter given as JSON text, parsed by :func:`proximadb.strict_json.loads` (the one parser of
    client JSON); anything it refuses is an InvalidFilterError (HTTP 400 / INVALID_ARGUMENT)."""
    try:
        return strict_json.loads(text)
    except strict_json.JSONTooDeepError:
        raise InvalidFilterError(f"filter: nested deeper than {MAX_DEPTH} levels") from None
    except strict_json.StrictJSONError as exc:
        raise InvalidFilterError(f"filter: not valid JSON: {exc}") from None


# -- compilation ---------------------------------------------------------------


def _compile_object(node: Any, path: str, depth: int, fields: set[str]) -> Predicate:
    if depth > MAX_DEPTH:
        raise InvalidFilterError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, Mapping):
        raise InvalidFilterError(f"{path}: a filter must be an object, got {_type_name(node)}")
    predicates: list[Predicate] = []
    for key, value in node.items():
        if not isinstance(key, str):
            raise InvalidFilterError(f"{path}: field names must be strings, got {_type_name(key)} {key!r}")
        if key in ("$and", "$or"):
            predicates.append(_compile_logical_list(key, value, f"{path}.{key}", depth, fields))
        elif key == "$not":
            inner = _compile_object(value, f"{path}.$not", depth + 1, fields)
            predicates.append(_negation(inner))
        elif key in FIELD_OPERATORS:
            raise InvalidFilterError(f'{path}: {key} must be applied to a field, e.g. {{"field": {{"{key}": ...}}}}')
        elif key.startswith("$"):
            raise InvalidFilterError(f"{path}: unknown operator {key}")
        elif not key:
            raise InvalidFilterError(f"{path}: empty field name")
        else:
            fields.add(key)
            predicates.append(_compile_field(key, value, f"{path}.{key}"))
    return _all_of(predicates)


def _negation(inner: Predicate) -> Predicate:
    return lambda md: not inner(md)


def _compile_logical_list(op: str, value: Any, path: str, depth: int, fields: set[str]) -> Predicate:
    if not isinstance(value, (list, tuple)):
        raise InvalidFilterError(f"{path}: {op} needs a list of filters, got {_type_name(value)}")
    if not value:
        raise InvalidFilterError(f"{path}: {op} needs at least one filter")
    children = [_compile_object(item, f"{path}[{i}]", depth + 1, fields) for i, item in enumerate(value)]
    return _all_of(children) if op == "$and" else _any_of(children)


def _compile_field(field: str, value: Any, path: str) -> Predicate:
    if not isinstance(value, Mapping):
        if isinstance(value, (list, tuple)):
            raise InvalidFilterError(
                f'{path}: a list is not a value; use {{"$in": [...]}} to match any of several values'
            )
        return _membership(field, [_check_scalar(value, path, "$eq")])
    if not value:
        raise InvalidFilterError(f"{path}: empty operator object")
    keys = list(value)
    operators = [k for k in keys if isinstance(k, str) and k.startswith("$")]
    if not operators:
        raise InvalidFilterError(f'{path}: nested objects are not values; use operators such as {{"$eq": ...}}')
    if len(operators) != len(keys):
        plain = next(k for k in keys if k not in operators)
        raise InvalidFilterError(f"{path}: operator object mixes operators ({operators[0]}) and plain keys ({plain!r})")
    return _all_of([_compile_operator(field, op, arg, path) for op, arg in value.items()])


def _compile_operator(field: str, op: str, arg: Any, path: str) -> Predicate:
    if op == "$eq":
        return _membership(field, [_check_scalar(arg, path, op)])
    if op == "$ne":
        return _negate(_membership(field, [_check_scalar(arg, path, op)]))
    if op in ("$in", "$nin"):
        if not isinstance(arg, (list, tuple)):
            raise InvalidFilterError(f"{path}: {op} needs a list of values, got {_type_name(arg)}")
        values = [_check_scalar(v, path, f"{op}[{i}]") for i, v in enumerate(arg)]
        member = _membership(field, values)
        return member if op == "$in" else _negate(member)
    if op in _ORDERINGS:
        return _ordering(field, op, arg, path)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise InvalidFilterError(f"{path}: $exists needs true or false, got {_type_name(arg)}")
        return (lambda md: field in md) if arg else (lambda md: field not in md)
    if op in LOGICAL_OPERATORS:
        raise InvalidFilterError(f'{path}: {op} is not a field operator; put it at filter level, e.g. {{"{op}": ...}}')
    raise InvalidFilterError(f"{path}: unknown operator {op}")


def _check_scalar(value: Any, path: str, op: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilterError(f"{path}: {op} needs a finite number, got {value}")
        return value
    raise InvalidFilterError(f"{path}: {op} needs a string, number, boolean or null, got {_type_name(value)}")


# -- predicates -------------------------------------------------------------------
# Values are compared through a typed key, so that bools, numbers, strings and
# null never equal one another (Python alone has True == 1 and hash(True) == hash(1)).


def _canonical(node: Any) -> Hashable:
    """:attr:`Filter.key` of a (checked) filter node. Field names are keyed by their characters (a
    record is looked up by them); a str subclass value by both its ``str()`` (how ``$eq`` and ``$in``
    compare it, :func:`typed_key`) and its characters (how ``$gt`` and co. compare it)."""
    if isinstance(node, Mapping):
        return ("o", tuple(sorted((str.__str__(k), _canonical(v)) for k, v in node.items())))
    if isinstance(node, (list, tuple)):
        return ("l", tuple(_canonical(v) for v in node))
    typed = typed_key(node)
    if typed is None:
        return ("r", type(node).__qualname__, repr(node))
    if isinstance(node, str) and type(node) is not str:
        return ("v", typed, str.__str__(node))
    return ("v", typed)


def typed_key(value: Any) -> tuple[str, Any] | None:
    """The typed comparison key of a metadata value; None for values no filter matches."""
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is int or kind is float:
        return ("n", value)
    if kind is bool:
        return ("b", value)
    if value is None:
        return ("z", None)
    # Subclasses and numpy scalars from in-process callers; JSON/Avro give the exact types above.
    if isinstance(value, str):
        return ("s", str(value))
    if isinstance(value, (bool, np.bool_)):
        return ("b", bool(value))
    if isinstance(value, numbers.Integral):
        return ("n", int(value))
    if isinstance(value, numbers.Real):
        return ("n", float(value))
    return None


def _membership(field: str, values: list[Any]) -> Predicate:
    """The field's value (or, for a list value, one of its elements) is one of ``values``."""
    keys = frozenset(typed_key(v) for v in values)
    missing_matches = ("z", None) in keys

    def predicate(md: Metadata) -> bool:
        value = md.get(field, _MISSING)
        if value is _MISSING:
            return missing_matches
        if type(value) is list or type(value) is tuple:
            return any(typed_key(e) in keys for e in value)
        return typed_key(value) in keys

    return predicate


def _ordering(field: str, op: str, arg: Any, path: str) -> Predicate:
    if isinstance(arg, bool) or not isinstance(arg, (int, float, str)):
        raise InvalidFilterError(f"{path}: {op} needs a number or string, got {_type_name(arg)}")
    if isinstance(arg, float) and not math.isfinite(arg):
        raise InvalidFilterError(f"{path}: {op} needs a finite number, got {arg}")
    kind = "s" if isinstance(arg, str) else "n"
    compare = _ORDERINGS[op]

    def holds(value: Any) -> bool:
        key = typed_key(value)
        return key is not None and key[0] == kind and compare(key[1], arg)

    def predicate(md: Metadata) -> bool:
        value = md.get(field, _MISSING)
        if type(value) is list or type(value) is tuple:
            return any(holds(e) for e in value)
        return holds(value)

    return predicate


def _negate(predicate: Predicate) -> Predicate:
    return lambda md: not predicate(md)


def _all_of(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return lambda md: True
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda md: first(md) and second(md)

    def predicate(md: Metadata) -> bool:
        for p in predicates:
            if not p(md):
                return False
        return True

    return predicate


def _any_of(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]

    def predicate(md: Metadata) -> bool:
        for p in predicates:
            if p(md):
                return True
        return False

    return predicate


# -- evaluation on a payload index (the spec was checked by compile_filter) -------------


def _index_object(node: Mapping[str, Any], index: PayloadIndexLike, rows: int) -> np.ndarray:
    result: np.ndarray | None = None
    for key, value in node.items():
        if key == "$and" or key == "$or":
            masks = [_index_object(child, index, rows) for child in value]
            part = masks[0]
            for other in masks[1:]:
                if key == "$and":
                    part &= other
                else:
                    part |= other
        elif key == "$not":
            part = ~_index_object(value, index, rows)
        else:
            part = _index_field(key, value, index, rows)
        if result is None:
            result = part
        else:
            result &= part
    return np.ones(rows, dtype=bool) if result is None else result


def _index_field(field: str, value: Any, index: PayloadIndexLike, rows: int) -> np.ndarray:
    if not isinstance(value, Mapping):
        return index.members(field, [value], rows)
    result: np.ndarray | None = None
    bounds = [(op, arg) for op, arg in value.items() if op in _ORDERINGS and not isinstance(arg, str)]
    if len(bounds) > 1:  # a numeric range: one pass over the field's sorted numbers
        result = index.between(field, bounds, rows)
    for op, arg in value.items():
        if len(bounds) > 1 and (op, arg) in bounds:
            continue
        if op in ("$eq", "$ne"):
            part = index.members(field, [arg], rows)
        elif op in ("$in", "$nin"):
            part = index.members(field, arg, rows)
        elif op == "$exists":
            part = index.exists(field, rows)
        else:
            part = index.ordered(field, op, arg, rows)
        if op in ("$ne", "$nin") or (op == "$exists" and not arg):
            part = ~part
        if result is None:
            result = part
        else:
            result &= part
    assert result is not None  # compile_filter refuses an empty operator object
    return result


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__
