"""Which nodes hold the replicas of each shard of a collection: one pure function, :func:`place`.

A collection in cluster mode has ``shards`` shards, each with ``replication_factor`` replica
slots; a slot is held by one node, and the nodes of one shard are distinct. :func:`place` is
given the live nodes and the placement in force (or none) and returns the next one:

- a node that holds a slot and is still live keeps it (no data moves without a reason);
- slots left empty (a new collection, a node that left) go to the live node holding the fewest
  slots of this collection that does not hold one of this shard already; ties go to the
  highest rendezvous hash of (collection, shard, node), so every node computes the same answer
  from the same inputs, and a new collection starts balanced to within one slot per node;
- with fewer live nodes than ``replication_factor`` a shard has as many replicas as there are
  nodes; it gets the rest when nodes join.

A record belongs to shard :func:`shard_of` (a stable hash of its id), on every node. A replica is
addressed over the API as ``<collection>.s<shard>@<seq>[~<ms>][+<incarnation>]`` (:data:`SHARD_ADDRESS`;
its meaning: :mod:`proximadb.cluster.backend`); :func:`is_shard_address` tells one from a collection name.

The first node of a shard's list is its preferred one (the first to ask for reads). Who may
write a placement, and how two nodes are kept from writing different ones, is
:mod:`proximadb.cluster.shard_map`'s business.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from proximadb.errors import ValidationError

SHARD_ADDRESS = re.compile(r"(?P<name>.+)\.s(?P<shard>\d+)@(?P<seq>\d+)(?:~(?P<wait_ms>\d+))?"
                           r"(?:\+(?P<incarnation>[0-9a-f]+))?")


def is_shard_address(name: str) -> bool:
    """Whether ``name`` is a shard address (a replica, not a collection): what the fan-out sends."""
    return SHARD_ADDRESS.fullmatch(name) is not None


def shard_of(record_id: str, shards: int) -> int:
    """The shard a record id belongs to: a stable hash of its UTF-8 bytes, modulo ``shards``."""
    digest = hashlib.blake2b(record_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def rendezvous(collection: str, shard: int, node: str) -> int:
    """A stable score of ``node`` for one shard (highest wins): the same on every node and every run."""
    digest = hashlib.blake2b(f"{collection}\0{shard}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def place(collection: str, shards: int, replication_factor: int, nodes: Sequence[str],
          previous: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """The nodes of each shard (a list per shard, preferred first); see the module's rules."""
    if shards < 1 or replication_factor < 1:
        raise ValidationError(f"shards={shards}, replication_factor={replication_factor}: both must be at least 1")
    if previous is not None and len(previous) != shards:
        raise ValidationError(f"the placement in force has {len(previous)} shards, not {shards}")
    live = sorted(set(nodes))
    alive = set(live)
    want = min(replication_factor, len(live))
    result: list[list[str]] = []
    for shard in range(shards):
        kept: list[str] = []
        for node in (previous[shard] if previous is not None else ()):
            if node in alive and node not in kept and len(kept) < want:
                kept.append(node)
        result.append(kept)
    load = {node: 0 for node in live}
    for owners in result:
        for node in owners:
            load[node] += 1
    for shard, owners in enumerate(result):
        while len(owners) < want:
            candidates = [node for node in live if node not in owners]
            best = max(candidates, key=lambda node: (-load[node], rendezvous(collection, shard, node)))
            owners.append(best)
            load[best] += 1
    return result
