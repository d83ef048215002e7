"""A collection's vector quantization: ``index_params={"quantization": {...}}``.

``{"type": "int8", "rescore": true, "oversampling": 2.0}`` with ``indexing_algorithm="hnsw"`` makes
every segment's index an :class:`~proximadb.index.hnsw_int8.HNSWInt8Index` (file ``index.hnsw8``):
the graph is walked on one byte per dimension and the ``ceil(k * oversampling)`` best candidates
are rescored with the float32 vectors, which stay memory-mapped in the segment.
``{"type": "binary", ...}`` makes it an :class:`~proximadb.index.hnsw_int8.HNSWBinaryIndex` (file
``index.hnswb``): one bit per dimension (32 times smaller than float32), coarser, so its default
oversampling is 4 and it suits embeddings of a few hundred dimensions and up. ``rescore`` and
``oversampling`` may be left out (defaults below, per type); a search may raise the oversampling
for one request (``oversampling=``: storage/search.py asks the index for a wider k). Product quantization
is not implemented, and is refused as an unknown type. The setting lives in the catalog with the
other index parameters, so it survives a reopen, and changing it (``update_collection``) rebuilds
the segment indexes like any parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from proximadb.errors import ValidationError
from proximadb.index import registry
from proximadb.index._base import VectorIndex
from proximadb.index.hnsw_int8 import HNSWBinaryIndex, HNSWInt8Index

KEY = "quantization"  # the key of index_params
TYPES = ("int8", "binary")
DEFAULTS: dict[str, Any] = {"rescore": True, "oversampling": 2.0}  # int8's
DEFAULT_OVERSAMPLING = {"int8": 2.0, "binary": 4.0}
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
                              "(pq is not supported)")
    if (algorithm, qtype) not in _VARIANTS:
        raise ValidationError(f"{qtype} quantization is available with indexing_algorithm "
                              f"{' or '.join(sorted({a for a, _ in _VARIANTS}))}, not {algorithm!r}")
    rescore = value.get("rescore", DEFAULTS["rescore"])
    if not isinstance(rescore, bool):
        raise ValidationError(f"index_params.quantization.rescore must be true or false, not {rescore!r}")
    oversampling = check_oversampling(value.get("oversampling", DEFAULT_OVERSAMPLING[qtype]),
                                      "index_params.quantization.oversampling")
    return {"type": qtype, "rescore": rescore, "oversampling": oversampling}


class QuantizedKind(registry.MappedVectorsKind):
    """An index kind whose search also takes the quantization's rescore / oversampling settings (and,
    as the float32 HNSW, rescores with the segment's memory-mapped vectors: MappedVectorsKind)."""

    def configure(self, index: VectorIndex, params: Mapping[str, Any]) -> None:
        super().configure(index, params)
        setting = params[KEY]
        index.rescore = setting["rescore"]  # type: ignore[attr-defined]
        index.oversampling = setting["oversampling"]  # type: ignore[attr-defined]


_hnsw = registry.kind("hnsw")
HNSW_INT8 = registry.register_variant(QuantizedKind(
    "hnsw", HNSWInt8Index, "index.hnsw8", build_params=_hnsw.build_params, search_param=_hnsw.search_param,
    ranges=_hnsw.ranges, defaults=_hnsw.defaults, build_options=_hnsw.build_options,
))
HNSW_BINARY = registry.register_variant(QuantizedKind(
    "hnsw", HNSWBinaryIndex, "index.hnswb", build_params=_hnsw.build_params, search_param=_hnsw.search_param,
    ranges=_hnsw.ranges, defaults=_hnsw.defaults, build_options=_hnsw.build_options,
))
_VARIANTS: dict[tuple[str, str], registry.IndexKind] = {("hnsw", "int8"): HNSW_INT8, ("hnsw", "binary"): HNSW_BINARY}


def kind_for(algorithm: str, params: Mapping[str, Any]) -> registry.IndexKind:
    """The index kind of a segment: the algorithm's, or its quantized variant when params ask for one."""
    setting = params.get(KEY)
    if setting:
        return _VARIANTS[(algorithm, setting["type"])]
    return registry.kind(algorithm)
