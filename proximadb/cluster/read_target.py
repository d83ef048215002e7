"""Which log sequence a shard's replica must have applied before it answers a read, by consistency level.

The level is the current request's (:mod:`proximadb.consistency`); the sequence is per shard log:

* ``strong``: the log's last sequence, read from JetStream (its stream leader) now, at the start of the read;
* ``bounded`` (default): the log's last sequence as read at most ``staleness_ms`` ago (re-read when the
  cached one is older), and at least the last one this node was acknowledged (read-your-writes per node);
* ``session``: the sequence of that log in the client's session token (0 when it names none);
* ``eventual``: 0, no wait.

The target travels to a peer in the shard address ``<collection>.s<shard>@<seq>``
(:mod:`proximadb.cluster.backend`), so a peer waits for the same entry.
"""

from __future__ import annotations

import threading
import time

from proximadb import consistency
from proximadb.cluster.node import ClusterNode, shard_log_name
from proximadb.cluster.shard_map import ShardMap
from proximadb.consistency import Consistency


class ReadTargets:
    def __init__(self, node: ClusterNode, staleness_ms: int = consistency.DEFAULT_BOUNDED_STALENESS_MS) -> None:
        self.node = node
        self.staleness = staleness_ms / 1000.0
        self._last: dict[str, tuple[int, float]] = {}  # by log: (last sequence, monotonic time it was read)
        self._lock = threading.Lock()

    def target(self, shard_map: ShardMap, shard: int, acked: int) -> int:
        """The sequence to wait for (see the module's documentation); ``acked``: this node's acknowledged one."""
        state = consistency.current()
        level = state.effective
        log = shard_log_name(shard_map, shard)
        if level is Consistency.EVENTUAL:
            return 0
        if level is Consistency.SESSION:
            return state.session.get(log, 0)
        if level is Consistency.STRONG:
            return self._read_last(shard_map, shard, log)
        with self._lock:
            cached = self._last.get(log)
        if cached is None or time.monotonic() - cached[1] > self.staleness:
            return max(acked, self._read_last(shard_map, shard, log))
        return max(acked, cached[0])

    def _read_last(self, shard_map: ShardMap, shard: int, log: str) -> int:
        asked = time.monotonic()  # the answer covers every write acknowledged before this moment
        seq = self.node.last_seq(shard_map, shard)
        with self._lock:
            if log not in self._last or self._last[log][1] < asked:
                self._last[log] = (seq, asked)
        return seq
