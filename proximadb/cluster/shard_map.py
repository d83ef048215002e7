"""The shard map of each clustered collection, in a JetStream key-value bucket, changed only by revision.

Bucket ``pxdb_shards``, one key per collection: ``c_`` and the hexadecimal of the collection's
UTF-8 name (collection names may hold characters a key may not: a leading or trailing ``.``).
A value is JSON, UTF-8::

    {"collection": "docs", "shards": 3, "replication_factor": 3, "epoch": 7,
     "replicas": [["n1", "n2", "n3"], ["n2", "n3", "n1"], ["n3", "n1", "n2"]],
     "spec": {"dimension": 384, "distance_metric": "cosine", ...}}

``replicas[s]`` lists the nodes that hold shard ``s``, preferred first (see
:mod:`proximadb.cluster.placement`); ``epoch`` grows by one with every change. ``spec`` is how
every replica creates its local collection: the dimension and the settings of
``create_collection``, the same on every node.

Every change is a compare-and-set on the key's revision (JetStream's expected-last-subject-
sequence): :meth:`ShardMaps.change` reads the map and its revision, computes the next map, and
writes it only if the revision is still the one it read; otherwise it reads again and
recomputes. Two nodes that recompute a placement at once therefore cannot both win: one write
lands, the other is computed again from it, and every map ever written follows from the one
before it. A node holds a replica slot when the map it last read says so; the epoch tells it
whether that map is still the current one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from proximadb.cluster.nats_session import NatsSession
from proximadb.cluster.placement import place
from proximadb.errors import CollectionExistsError, CollectionNotFoundError

BUCKET = "pxdb_shards"


@dataclass(frozen=True, slots=True)
class ShardMap:
    collection: str
    shards: int
    replication_factor: int
    epoch: int
    replicas: tuple[tuple[str, ...], ...]
    spec: Mapping[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"collection": self.collection, "shards": self.shards,
                           "replication_factor": self.replication_factor, "epoch": self.epoch,
                           "replicas": [list(r) for r in self.replicas], "spec": dict(self.spec)},
                          separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ShardMap:
        doc = json.loads(raw)
        return cls(str(doc["collection"]), int(doc["shards"]), int(doc["replication_factor"]), int(doc["epoch"]),
                   tuple(tuple(str(n) for n in r) for r in doc["replicas"]), dict(doc.get("spec") or {}))

    def shards_of(self, node: str) -> list[int]:
        """The shards ``node`` holds a replica of."""
        return [s for s, owners in enumerate(self.replicas) if node in owners]

    def replaced(self, nodes: Sequence[str]) -> ShardMap:
        """The map after placing on ``nodes`` (the live ones): itself when nothing moves, else the next epoch."""
        placed = tuple(tuple(r) for r in place(self.collection, self.shards, self.replication_factor, nodes,
                                               self.replicas))
        return self if placed == self.replicas else replace(self, replicas=placed, epoch=self.epoch + 1)


def map_key(collection: str) -> str:
    return "c_" + collection.encode().hex()


class ShardMaps:
    """Read, create and change collections' shard maps; every change revision-checked."""

    def __init__(self, session: NatsSession, *, replicas: int = 3) -> None:
        self.session = session
        self._kv: Any = session.call(lambda: session.bucket(BUCKET, replicas=replicas), f"opening bucket {BUCKET}")

    def get(self, collection: str) -> tuple[ShardMap, int] | None:
        """The collection's map and the revision it was read at, or None."""
        entry = self.session.call(lambda: self.session.read_key(BUCKET, map_key(collection)),
                                  f"reading the shard map of {collection!r}")
        return None if entry is None else (ShardMap.decode(entry.value), entry.revision)

    def all(self) -> list[ShardMap]:
        entries = self.session.call(lambda: self.session.entries(BUCKET), f"listing {BUCKET}")
        return [ShardMap.decode(entry.value) for _, entry in sorted(entries.items())]

    def create(self, collection: str, shards: int, replication_factor: int, nodes: Sequence[str],
               spec: Mapping[str, Any] | None = None) -> ShardMap:
        """The first map of a new collection, placed on ``nodes``. A second create of the same name raises
        CollectionExistsError, also when two nodes race (the key is created once)."""
        from nats.js.errors import KeyWrongLastSequenceError

        placed = tuple(tuple(r) for r in place(collection, shards, replication_factor, nodes))
        first = ShardMap(collection, shards, replication_factor, 1, placed, dict(spec or {}))
        try:
            self.session.call(lambda: self._kv.create(map_key(collection), first.encode()),
                              f"creating the shard map of {collection!r}", answers=(KeyWrongLastSequenceError,))
        except KeyWrongLastSequenceError:
            raise CollectionExistsError(f"collection {collection!r} already has a shard map") from None
        return first

    def change(self, collection: str, step: Callable[[ShardMap], ShardMap]) -> ShardMap:
        """Apply ``step`` to the current map and write the result if the map did not change meanwhile;
        else read it again and apply ``step`` to that. Returns the map in force afterwards. ``step``
        returning its argument writes nothing. ``step`` must compute a target from the map it is given
        (as a placement does), not a delta: a write whose answer was lost in an outage is retried, finds
        its own map in force, and ``step`` is applied to that."""
        from nats.js.errors import KeyWrongLastSequenceError

        while True:
            found = self.get(collection)
            if found is None:
                raise CollectionNotFoundError(f"collection {collection!r} has no shard map")
            current, revision = found
            nxt = step(current)
            if nxt == current:
                return current
            try:
                self.session.call(functools.partial(self._kv.update, map_key(collection), nxt.encode(), last=revision),
                                  f"changing the shard map of {collection!r}", answers=(KeyWrongLastSequenceError,))
                return nxt
            except KeyWrongLastSequenceError:
                continue  # another node changed it first: recompute from theirs

    def rebalance(self, collection: str, nodes: Sequence[str]) -> ShardMap:
        """Place the collection's replicas on the live ``nodes`` (see placement.place)."""
        return self.change(collection, lambda current: current.replaced(nodes))

    def drop(self, collection: str) -> None:
        self.session.call(lambda: self._kv.delete(map_key(collection)), f"removing the shard map of {collection!r}")
