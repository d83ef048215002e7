"""Which log sequence a shard's replica must have applied before it answers a read, by consistency level.

The level is the current request's (:mod:`proximadb.consistency`); the sequence is per shard log:

* ``strong``: below a barrier appended to the log at the start of the read
  (:func:`~proximadb.cluster.log_positions.barrier_seqs`): acknowledged by a quorum, after every write
  acknowledged before it, so a stream leader cut off from its quorum fails the read rather than answer
  from the state it had. The target is the sequence just below the barrier, or lower still when only this
  node's own barriers lie between (:meth:`ReadTargets._below`): strong reads one after another on a node
  then wait for no barrier to be applied, only for writes;
* ``bounded`` (default): the log's last sequence as its stream leader answered (never a member's own state
  while the stream elects one: :func:`~proximadb.cluster.log_positions.last_seqs`) at most ``staleness_ms``
  ago (re-read when the cached one is older), and at least the last one this node was acknowledged
  (read-your-writes per node);
* ``session``: the sequence of that log in the client's session token (0 when it names none);
* ``eventual``: 0, no wait.

Every shard's target is worked out at the start of the read, the JetStream requests it needs sent at once
(one round trip, :mod:`proximadb.cluster.log_positions`). The target travels to a peer in
the shard address ``<collection>.s<shard>@<seq>`` (:mod:`proximadb.cluster.backend`), so a peer waits for
the same entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from proximadb import consistency
from proximadb.cluster.names import shard_log_name
from proximadb.cluster.node import ClusterNode
from proximadb.cluster.shard_map import ShardMap
from proximadb.consistency import Consistency


class ReadTargets:
    def __init__(self, node: ClusterNode, staleness_ms: int = consistency.DEFAULT_BOUNDED_STALENESS_MS) -> None:
        self.node = node
        self.staleness = staleness_ms / 1000.0
        self._last: dict[str, tuple[int, float]] = {}  # by log: (last sequence, monotonic time it was read)
        self._barrier: dict[str, tuple[int, int]] = {}  # by log: this node's highest barrier, and its target
        self._lock = threading.Lock()

    def targets(self, shard_map: ShardMap, acked: Sequence[int]) -> list[int]:
        """Per shard of ``shard_map``, the sequence to wait for (see the module's documentation); ``acked``:
        per shard, the last sequence this node was acknowledged. Logs read from JetStream are read at once."""
        state = consistency.current()
        level = state.effective
        logs = [shard_log_name(shard_map, shard) for shard in range(shard_map.shards)]
        if level is Consistency.EVENTUAL:
            return [0] * len(logs)
        if level is Consistency.SESSION:
            return [state.session.get(log, 0) for log in logs]
        now = time.monotonic()
        with self._lock:
            known = [self._last.get(log) for log in logs]
        stale = [shard for shard, cached in enumerate(known)
                 if level is Consistency.STRONG or cached is None or now - cached[1] > self.staleness]
        strong = level is Consistency.STRONG
        fresh = dict(zip(stale, self._read_last(shard_map, stale, [logs[s] for s in stale], strong), strict=True))
        out = []
        for shard, cached in enumerate(known):
            last = fresh[shard] if shard in fresh else cached[0] if cached is not None else 0
            out.append(last if level is Consistency.STRONG else max(acked[shard], last))
        return out

    def _read_last(self, shard_map: ShardMap, shards: list[int], logs: list[str], barrier: bool) -> list[int]:
        """Each log's last sequence: a barrier's (``barrier``: a strong read) or its stream leader's answer."""
        if not shards:
            return []
        asked = time.monotonic()  # the answers cover every write acknowledged before this moment
        seqs = (self.node.barrier_seqs if barrier else self.node.last_seqs)(shard_map, shards)
        with self._lock:
            if barrier:
                seqs = [self._below(log, seq) for log, seq in zip(logs, seqs, strict=True)]
            for log, seq in zip(logs, seqs, strict=True):
                if log not in self._last or self._last[log][1] < asked:
                    self._last[log] = (seq, asked)
        return seqs

    def _below(self, log: str, barrier: int) -> int:
        """(Lock held.) The target of a strong read whose barrier got sequence ``barrier``: every write
        acknowledged before the read is below it, and when the entry just below is this node's previous
        barrier, below that one's target too (every entry between a recorded target and its barrier is a
        barrier of this node, so no write lies there). Reads that finish out of order only lose the shortcut."""
        previous = self._barrier.get(log)
        target = previous[1] if previous is not None and previous[0] == barrier - 1 else barrier - 1
        if previous is None or barrier > previous[0]:
            self._barrier[log] = (barrier, target)
        return target
