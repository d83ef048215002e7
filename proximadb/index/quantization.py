"""A collection's vector quantization: ``index_params={"quantization": {...}}``.

``{"type": "int8", "rescore": true, "oversampling": 2.0}`` with ``indexing_algorithm="hnsw"`` makes
every segment's index an :class:`~proximadb.index.hnsw_int8.HNSWInt8Index` (file ``index.hnsw8``):
the graph is walked on one byte per dimension and the ``ceil(k * oversampling)`` best candidates
are rescored with the float32 vectors, which stay memory-mapped in the segment.
``{"type": "binary", ...}`` makes it an :class:`~proximadb.index.hnsw_int8.HNSWBinaryIndex` (file
``index.hnswb``): one bit per dimension (32 times smaller than float32), coarser, so its default
oversampling is 4 and it suits embeddings of a few hundred dimensions and up.
``{"type": "pq", "m": 32, ...}`` makes it an :class:`~proximadb.index.hnsw_pq.HNSWPQIndex` (file
``index.hnswpq``): product quantization, the vector split into ``m`` sub-vectors (``m`` must divide
the dimension; default :func:`~proximadb.index.hnsw_pq.default_m`, sub-vectors of 4 dimensions or
more: 128 -> 32), each coded by one byte, the nearest of 256 centroids trained per subspace on the
segment's rows (at most 65,536 of them, sampled with the index's seed; a segment of fewer than 256
rows trains one centroid per row). ``m`` bytes per row plus the codebooks (``256 * dim`` floats per
segment); default oversampling 4. The stored setting always holds ``m`` (the default filled in
from the dimension), and only ``pq`` accepts it. ``rescore`` and
``oversampling`` may be left out (defaults below, per type); a search may raise the oversampling
for one request (``oversampling=``: storage/search.py asks the index for a wider k). The setting
lives in the catalog with the other index parameters, so it survives a reopen, and changing it
(``update_collection``) rebuilds the segment indexes like any parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from proximadb.errors import ValidationError
from proximadb.index import registry
from proximadb.index._base import VectorIndex
from proximadb.index.hnsw_int8 import HNSWBinaryIndex, HNSWInt8Index
from proximadb.index.hnsw_pq import HNSWPQIndex, check_m, default_m

KEY = "quantization"  # the key of index_params
TYPES = ("int8", "binary", "pq")
DEFAULTS: dict[str, Any] = {"rescore": True, "oversampling": 2.0}  # int8's
DEFAULT_OVERSAMPLING = {"int8": 2.0, "binary": 4.0, "pq": 4.0}
OVERSAMPLING_RANGE = (1.0, 100.0)
_FIELDS = ("type", "rescore", "oversampling", "m")  # m: pq only


def check_oversampling(value: object, field: str = "oversampling") -> float:
    lo, hi = OVERSAMPLING_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field} must be a number between {lo:g} and {hi:g}, not {value!r}")
    if not lo <= value <= hi:
        raise ValidationError(f"{field} must be between {lo:g} and {hi:g}, not {value!r}")
    return float(value)


def validate(algorithm: str, value: object, dim: int) -> dict[str, Any] | None:
    """The checked, completed setting for vectors of dim (None: no quantization); ValidationError otherwise."""
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
        raise ValidationError(f"index_params.quantization.type must be one of {', '.join(TYPES)}, not {qtype!r}")
    if (algorithm, qtype) not in _VARIANTS:
        raise ValidationError(f"{qtype} quantization is available with indexing_algorithm "
                              f"{' or '.join(sorted({a for a, _ in _VARIANTS}))}, not {algorithm!r}")
    rescore = value.get("rescore", DEFAULTS["rescore"])
    if not isinstance(rescore, bool):
        raise ValidationError(f"index_params.quantization.rescore must be true or false, not {rescore!r}")
    oversampling = check_oversampling(value.get("oversampling", DEFAULT_OVERSAMPLING[qtype]),
                                      "index_params.quantization.oversampling")
    setting: dict[str, Any] = {"type": qtype, "rescore": rescore, "oversampling": oversampling}
    if qtype == "pq":
        setting["m"] = check_m(value.get("m", default_m(dim)), dim, "index_params.quantization.m")
    elif "m" in value:
        raise ValidationError(f"index_params.quantization.m is a field of pq only, not of {qtype}")
    return setting


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
    size_defaults=_hnsw.size_defaults,
))
HNSW_BINARY = registry.register_variant(QuantizedKind(
    "hnsw", HNSWBinaryIndex, "index.hnswb", build_params=_hnsw.build_params, search_param=_hnsw.search_param,
    ranges=_hnsw.ranges, defaults=_hnsw.defaults, build_options=_hnsw.build_options,
    size_defaults=_hnsw.size_defaults,
))


class ProductQuantizedKind(QuantizedKind):
    """The pq kind: its index is also built with the setting's m (another m: rebuilt)."""

    def create(self, dim: int, metric: str, params: Mapping[str, Any]) -> VectorIndex:
        index = self.cls(dim, metric, **{name: params[name] for name in self.build_params},  # type: ignore[call-arg]
                         m=params[KEY]["m"])
        self.configure(index, params)
        return index

    def built_with(self, index: VectorIndex, params: Mapping[str, Any]) -> bool:
        return super().built_with(index, params) and index.m == params[KEY]["m"]  # type: ignore[attr-defined]


HNSW_PQ = registry.register_variant(ProductQuantizedKind(
    "hnsw", HNSWPQIndex, "index.hnswpq", build_params=_hnsw.build_params, search_param=_hnsw.search_param,
    ranges=_hnsw.ranges, defaults=_hnsw.defaults, build_options=_hnsw.build_options,
    size_defaults=_hnsw.size_defaults,
))
_VARIANTS: dict[tuple[str, str], registry.IndexKind] = {
    ("hnsw", "int8"): HNSW_INT8, ("hnsw", "binary"): HNSW_BINARY, ("hnsw", "pq"): HNSW_PQ}


def kind_for(algorithm: str, params: Mapping[str, Any]) -> registry.IndexKind:
    """The index kind of a segment: the algorithm's, or its quantized variant when params ask for one."""
    setting = params.get(KEY)
    if setting:
        return _VARIANTS[(algorithm, setting["type"])]
    return registry.kind(algorithm)
