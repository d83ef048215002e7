"""A collection's vector quantization: ``index_params={"quantization": {...}}``.

``{"type": "int8", "rescore": true, "oversampling": 2.0}`` with ``indexing_algorithm="hnsw"`` makes
every segment's index an :class:`~proximadb.index.hnsw_int8.HNSWInt8Index` (file ``index.hnsw8``):
the graph is walked on one byte per dimension and the ``ceil(k * oversampling)`` best candidates
are rescored with the float32 vectors, which stay memory-mapped in the segment. ``rescore`` and
``oversampling`` may be left out (defaults below); there is no per-request oversampling yet (it
would need a field in the search payload schemas and the proto).
Only ``int8`` exists: binary and product quantization are not implemented, and are refused as
unknown types. The setting lives in the catalog with the other index parameters, so it survives a
reopen, and changing it (``update_collection``) rebuilds the segment indexes like any parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index import registry
from proximadb.index._base import VectorIndex
from proximadb.index.hnsw_int8 import HNSWInt8Index

KEY = "quantization"  # the key of index_params
TYPES = ("int8",)
DEFAULTS: dict[str, Any] = {"rescore": True, "oversampling": 2.0}
OVERSAMPLING_RANGE = (1.0, 100.0)
_FIELDS = ("type", "rescore", "oversampling")


def check_oversampling(value: object, field: str = "oversampling") -> float:
    lo, hi = OVERSAMPLING_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field} must be a number between {lo:g} and {hi:g}, not {value!r}")
    if not lo <= value <= hi:
        raise ValidationError(f"{field} must be between {lo:g} and {hi:g}, not {value!r}")
    return float(value)


def validate(algorithm: str, value: object) -> dict[str, Any] | None:
    """The checked, completed setting (None: no quantization); ValidationError otherwise."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("index_params.quantization must be an object such as {\"type\": \"int8\"}")
    unknown = sorted(set(map(str, value)) - set(_FIELDS))
    if unknown:
        raise ValidationError(f"index_params.quantization: unknown field(s) {', '.join(unknown)} "
                              f"(accepted: {', '.join(_FIELDS)})")
    qtype = value.get("type")
    if qtype not in TYPES:
        raise ValidationError(f"index_params.quantization.type must be one of {', '.join(TYPES)}, not {qtype!r} "
                              "(binary and pq are not supported)")
    if (algorithm, qtype) not in _VARIANTS:
        raise ValidationError(f"{qtype} quantization is available with indexing_algorithm "
                              f"{' or '.join(sorted({a for a, _ in _VARIANTS}))}, not {algorithm!r}")
    rescore = value.get("rescore", DEFAULTS["rescore"])
    if not isinstance(rescore, bool):
        raise ValidationError(f"index_params.quantization.rescore must be true or false, not {rescore!r}")
    oversampling = check_oversampling(value.get("oversampling", DEFAULTS["oversampling"]),
                                      "index_params.quantization.oversampling")
    return {"type": qtype, "rescore": rescore, "oversampling": oversampling}


class QuantizedKind(registry.IndexKind):
    """An index kind whose search also takes the quantization's rescore / oversampling settings."""

    def configure(self, index: VectorIndex, params: Mapping[str, Any]) -> None:
        super().configure(index, params)
        setting = params[KEY]
        index.rescore = setting["rescore"]  # type: ignore[attr-defined]
        index.oversampling = setting["oversampling"]  # type: ignore[attr-defined]

    def attach(self, index: VectorIndex, vectors: np.ndarray) -> None:
        index.attach_vectors(vectors)  # type: ignore[attr-defined]


_hnsw = registry.kind("hnsw")
HNSW_INT8 = registry.register_variant(QuantizedKind(
    "hnsw", HNSWInt8Index, "index.hnsw8", build_params=_hnsw.build_params, search_param=_hnsw.search_param,
    ranges=_hnsw.ranges, defaults=_hnsw.defaults, build_options=_hnsw.build_options,
))
_VARIANTS: dict[tuple[str, str], registry.IndexKind] = {("hnsw", "int8"): HNSW_INT8}


def kind_for(algorithm: str, params: Mapping[str, Any]) -> registry.IndexKind:
    """The index kind of a segment: the algorithm's, or its quantized variant when params ask for one."""
    setting = params.get(KEY)
    if setting:
        return _VARIANTS[(algorithm, setting["type"])]
    return registry.kind(algorithm)
