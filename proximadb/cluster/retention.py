"""The shard log does not grow forever: it is purged below what every holder has checkpointed.

Each node reports, in its heartbeat (:class:`~proximadb.cluster.membership.NodeInfo`
``checkpointed``), the last log sequence each of its replicas' files hold (the manifest's
checkpoint: what a restart resumes from). For a shard, :func:`purge_floor` is the lowest of its
holders' reports, and the log is purged below ``floor + 1 - retain``: every holder's files
already hold the entries dropped, so no holder ever has to read them again. ``retain``
(``serve --cluster-log-retain``, default 10,000 entries) keeps a margin, so that a replica away
for a short while (a restart after its slot moved) catches up from the log, not a snapshot.
Only the shard's first holder in the map purges (one purge per advance, not one per node); a
holder that has not reported its replica yet (just placed, or its node restarted with a wiped
disk) holds the floor back.

A log that is gone (its collection was dropped, maybe while this node's sync pass ran on a map read before)
has nothing left to purge: :meth:`LogRetention.run` counts it done at once (``LogDeletedError`` from the log,
never retried as an outage), and forgets it.

A replica outside this reckoning — on a node that was down when its slot moved, or wiped —
later finds its entries gone and catches up from a holder's snapshot
(proximadb/cluster/snapshot.py): any live holder can give one at its own checkpoint, which is at
or above the floor, so snapshot + log always cover the shard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.shard_log import LogDeletedError, ShardLog
from proximadb.cluster.shard_map import ShardMap

log = logging.getLogger("proximadb.cluster")


def purge_floor(shard_map: ShardMap, shard: int, nodes: Mapping[str, NodeInfo]) -> int | None:
    """The last entry every holder of ``shard`` has checkpointed, or None while one has not said."""
    holders = shard_map.replicas[shard] if shard < len(shard_map.replicas) else ()
    key = f"{shard_map.collection}/{shard}"
    floors = []
    for holder in holders:
        info = nodes.get(holder)
        if info is None or key not in info.checkpointed:
            return None
        floors.append(info.checkpointed[key])
    return min(floors) if floors else None


class LogRetention:
    """Purges the logs of the shards this node is the first holder of, as their floor rises."""

    def __init__(self, node_id: str, retain: int = 10_000) -> None:
        if retain < 0:
            raise ValueError(f"retain must be 0 or more entries, not {retain}")
        self.node_id = node_id
        self.retain = retain
        self.purged_entries = 0  # entries dropped by this node's purges (approximate: from first_seq)
        self._done: dict[str, int] = {}  # by log name: the floor last purged to
        self._lock = threading.Lock()

    def run(self, shard_map: ShardMap, shard: int, nodes: Mapping[str, NodeInfo], shard_log: ShardLog,
            log_name: str) -> int | None:
        """Purge ``shard_log`` when this node is the shard's first holder and the floor rose; the floor (None
        when not this node's to purge, not known yet, or the log is gone)."""
        holders = shard_map.replicas[shard] if shard < len(shard_map.replicas) else ()
        if not holders or holders[0] != self.node_id:
            return None
        floor = purge_floor(shard_map, shard, nodes)
        if floor is None:
            return None
        keep_from = floor + 1 - self.retain
        with self._lock:
            if keep_from <= self._done.get(log_name, 1):
                return floor
        try:
            first = shard_log.first_seq()
            if keep_from > first:
                shard_log.purge_below(keep_from)
        except LogDeletedError as exc:  # dropped: done, nothing to purge, and nothing to remember
            log.info("cluster: %s: log %s is gone, nothing to purge (%s)", self.node_id, log_name, exc)
            with self._lock:
                self._done.pop(log_name, None)
            return None
        if keep_from > first:
            self.purged_entries += keep_from - first
            log.info("cluster: %s purged log %s below entry %d (every holder has checkpointed %d; %d kept below)",
                     self.node_id, log_name, keep_from, floor, self.retain)
        with self._lock:
            self._done[log_name] = keep_from
        return floor
