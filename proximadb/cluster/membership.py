"""Which daemons are in the cluster: heartbeats in a JetStream key-value bucket with a time to live.

Each node writes its :class:`NodeInfo` under its id in the bucket ``pxdb_nodes`` every
``ttl / 3`` seconds. The bucket is created with that ``ttl``: the servers drop a key nobody has
written for ``ttl`` seconds, so a node that was killed, hung or cut off from the servers leaves
the list on its own, and :meth:`Membership.nodes` (every node can ask) is the live set. A node
that stops cleanly deletes its key at once (:meth:`Membership.leave`).

A value is JSON, UTF-8::

    {"id": "n1", "rest": "http://127.0.0.1:5678", "grpc": "127.0.0.1:5679", "started_at": 1764934800.5,
     "applied": {"docs/0": 1520, "docs/1": 1498}, "checkpointed": {"docs/0": 1400, "docs/1": 1400}}

``started_at`` (seconds since the epoch) changes when a node restarts, which tells a restart
from a node that merely missed a beat. ``applied`` is, per replica the node runs
(``<collection>/<shard>``), the last log sequence it had applied at the beat: what
``proximadb cluster status`` shows as each replica's lag. ``checkpointed`` is, per replica, the last
sequence its local files hold (the manifest's checkpoint): the log may be purged below the lowest
of every holder's (proximadb/cluster/retention.py). Both are absent in beats of older nodes.
The bucket's ``ttl`` is the one of the first node that created it (a bucket's configuration is
not changed by the nodes that open it). Node ids use letters, digits, ``-`` and ``_``.

The heartbeat runs in a daemon thread; a beat that fails (the servers are electing or out of
reach) is logged and tried again at the next period: the node drops out of the list if that
lasts ``ttl`` seconds, and comes back with its next successful beat.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from proximadb.cluster.nats_session import NatsSession
from proximadb.errors import LogUnavailableError, ValidationError

BUCKET = "pxdb_nodes"
NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
log = logging.getLogger("proximadb.cluster")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    rest: str
    grpc: str
    started_at: float
    applied: Mapping[str, int] = field(default_factory=dict)
    checkpointed: Mapping[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = asdict(self)
        doc["applied"] = dict(self.applied)
        doc["checkpointed"] = dict(self.checkpointed)
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> NodeInfo:
        doc = json.loads(raw)
        return cls(str(doc["id"]), str(doc["rest"]), str(doc["grpc"]), float(doc["started_at"]),
                   {str(k): int(v) for k, v in (doc.get("applied") or {}).items()},
                   {str(k): int(v) for k, v in (doc.get("checkpointed") or {}).items()})


def live_nodes(session: NatsSession) -> list[NodeInfo]:
    """The live nodes as bucket ``pxdb_nodes`` lists them, by id (none when it does not exist yet)."""
    from nats.js.errors import NotFoundError

    try:
        entries = session.call(lambda: session.entries(BUCKET), f"listing {BUCKET}", answers=(NotFoundError,))
    except NotFoundError:
        return []
    found = []
    for key, entry in sorted(entries.items()):
        try:
            found.append(NodeInfo.decode(entry.value))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cluster: ignoring the unreadable membership entry %r: %s", key, exc)
    return found


def check_node_id(node_id: str) -> str:
    if not isinstance(node_id, str) or not NODE_ID_RE.fullmatch(node_id):
        raise ValidationError(f"node id {node_id!r}: use 1 to 64 letters, digits, '-' and '_'")
    return node_id


class Membership:
    """This node's heartbeat, and the live nodes as the bucket shows them."""

    def __init__(self, session: NatsSession, node: NodeInfo, *, ttl: float = 10.0, replicas: int = 3,
                 report: Callable[[], Mapping[str, Mapping[str, int]]] | None = None) -> None:
        check_node_id(node.id)
        if ttl < 1.0:
            raise ValidationError(f"membership ttl {ttl:g}s: at least 1 s (a beat every ttl/3)")
        self.session = session
        self.node = node
        self.ttl = ttl
        self._kv: Any = session.call(lambda: session.bucket(BUCKET, replicas=replicas, ttl=ttl),
                                     f"opening bucket {BUCKET}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.report = report  # what a beat says of the replicas here: {"applied": ..., "checkpointed": ...}
        self.beats = 0  # successful heartbeats so far

    def join(self) -> Membership:
        """Write the first beat now (so the node is listed when this returns), then beat in the background."""
        self.heartbeat()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.node.id}", daemon=True)
        self._thread.start()
        log.info("cluster: node %s joined (rest %s, grpc %s), heartbeat every %.1fs",
                 self.node.id, self.node.rest, self.node.grpc, self.ttl / 3)
        return self

    def heartbeat(self) -> None:
        info = self.node
        if self.report is not None:
            positions = self.report()
            info = replace(info, applied=dict(positions.get("applied", {})),
                           checkpointed=dict(positions.get("checkpointed", {})))
        self.session.call(lambda: self._kv.put(self.node.id, info.encode()), f"heartbeat of {self.node.id}")
        self.beats += 1

    def nodes(self) -> list[NodeInfo]:
        """The live nodes, by id."""
        return live_nodes(self.session)

    def stop_beating(self) -> None:
        """Stop the heartbeat thread and leave the key to expire (what a crash looks like to the others)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.session.deadline + 10)

    def leave(self) -> None:
        """Stop beating and remove this node's key now: the others see it gone at once."""
        self.stop_beating()
        try:
            self.session.call(lambda: self._kv.delete(self.node.id), f"removing {self.node.id} from {BUCKET}")
            log.info("cluster: node %s left", self.node.id)
        except LogUnavailableError as exc:
            log.warning("cluster: node %s could not remove its membership key (it expires in %.0fs): %s",
                        self.node.id, self.ttl, exc)

    def _run(self) -> None:
        period = self.ttl / 3
        next_beat = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat += period
            try:
                self.heartbeat()
            except LogUnavailableError as exc:
                log.warning("cluster: heartbeat of %s failed (%s); trying again in %.1fs", self.node.id, exc, period)
            now = time.monotonic()
            if next_beat < now:  # a beat took longer than the period: start counting from now
                next_beat = now + period
