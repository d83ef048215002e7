"""What one request may ask of the server: the configurable request limits.

Every limit has a safe default and a hard ceiling. The daemon takes them from
``proximadb serve`` flags, ``PROXIMADB_*`` variables or the config file
(``max_batch``, ``max_k``, ...); an embedded :class:`~proximadb.storage.engine.Engine`
takes them with ``Engine.open(path, limits=Limits(...))``. The storage engine
enforces them on every write and search, whichever protocol the request came
by, so they cannot be bypassed by choosing a different door. A request over a
limit is refused whole with a message that names the limit and its setting;
nothing of it is written.

* ``max_request_bytes``: a request body or gRPC message (HTTP 413 / RESOURCE_EXHAUSTED).
* ``max_batch``: records in one write (413 / RESOURCE_EXHAUSTED).
* ``max_k``: results per query (400 / INVALID_ARGUMENT).
* ``max_dimension``: vector dimension of a new collection (400). Existing
  collections keep working if the limit is later lowered below their dimension.
* ``max_id_bytes``: UTF-8 bytes of one record id (400).
* ``max_metadata_bytes``: one record's metadata, measured as the UTF-8 bytes of
  its keys and string values plus 8 bytes per number or boolean (400).

Metadata depth needs no limit: the schema allows only flat values (null,
boolean, integer, float, string, list of strings); a nested object is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from proximadb.errors import ValidationError

# Settings -> (lowest, highest) accepted value. The highest are what the formats and the
# query code are built and tested for; the defaults sit well inside them.
CEILINGS: dict[str, tuple[int, int]] = {
    "max_request_bytes": (1024, (2 << 30) - 1),  # gRPC messages are at most 2 GiB - 1
    "max_batch": (1, 1_000_000),
    "max_k": (1, 100_000),
    "max_dimension": (1, 65_536),
    "max_id_bytes": (1, 4096),
    "max_metadata_bytes": (64, 16 << 20),
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_bytes: int = 64 << 20
    max_batch: int = 100_000
    max_k: int = 10_000
    max_dimension: int = 65_536
    max_id_bytes: int = 1024
    max_metadata_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = CEILINGS[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValidationError(f"{f.name} must be an integer from {lo} to {hi}, not {value!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        """The limits among ``settings`` (other keys are ignored)."""
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})



# Sparse vectors (schema v3): fixed by the format, not settings. A vector has at most MAX_SPARSE_NNZ
# non-zeros (the compiled decoder, codec/_sparse.pxd, refuses more); a name is 1 to 64 characters of
# SPARSE_NAME_PATTERN (a regular expression).
MAX_SPARSE_NNZ = 65_536
SPARSE_NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,64}"

# Named dense vectors (schema v4): a collection declares at most MAX_NAMED_VECTORS besides its default vector
# (the compiled decoder, codec/_named.pxd, holds them in fixed arrays of NV_MAX = 16); a name is 1 to 64
# characters of NAMED_VECTOR_NAME_PATTERN (no '.', unlike sparse names: a name may become a file name,
# named/<name>.f32 in a segment).
MAX_NAMED_VECTORS = 16
NAMED_VECTOR_NAME_PATTERN = r"[A-Za-z0-9_\-]{1,64}"
