"""What a cluster collection's shard logs and local replicas are called, derived from its shard map.

A shard's log is named from a hash of the collection name and the map's incarnation
(``c<16 hex>-s<shard>``: stream names allow fewer characters than collection names). Every create
of a name writes a new incarnation into the map's ``spec`` (:data:`INCARNATION`), so a name dropped
and made again gets new logs, and a replica of the old collection tells itself apart by its
description (:func:`replica_marker`). A node keeps each shard it holds in a local collection
``<collection>.s<shard>`` (:func:`local_name`) made with the map's settings (:func:`local_spec`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from proximadb.cluster.shard_map import ShardMap

INCARNATION = "_incarnation"  # in a map's spec: makes the logs of a re-created name new ones


def log_name(collection: str, shard: int, incarnation: str = "") -> str:
    key = f"{collection}/{incarnation}" if incarnation else collection
    return f"c{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}-s{shard}"


def shard_log_name(shard_map: ShardMap, shard: int) -> str:
    """The log of one shard of the collection ``shard_map`` describes (this incarnation of its name)."""
    return log_name(shard_map.collection, shard, incarnation_of(shard_map))


def incarnation_of(shard_map: ShardMap) -> str:
    """Which collection of its name ``shard_map`` describes (made anew by every create)."""
    return str(shard_map.spec.get(INCARNATION, ""))


def local_name(collection: str, shard: int) -> str:
    return f"{collection}.s{shard}"


def replica_marker(shard_map: ShardMap, shard: int) -> str:
    """A local replica's description: which collection, shard and log (incarnation) it applies."""
    return f"replica of {shard_map.collection} shard {shard}, log {shard_log_name(shard_map, shard)}"


def local_spec(shard_map: ShardMap, shard: int) -> dict[str, Any]:
    """The settings of the local collection a replica lives in (the map's spec, its own description)."""
    spec = dict(shard_map.spec)
    spec.pop(INCARNATION, None)
    spec["description"] = replica_marker(shard_map, shard)
    return spec
